//! `LinkEndpoint`: mutually authenticated QUIC links to neighbours (quinn over rustls on
//! aws-lc-rs, TLS 1.3 only, X25519MLKEM768 key exchange, SVIDs both ways).
//!
//! Routing and data packets travel as QUIC datagrams; records and revocations as
//! unidirectional streams; joins and renewals as one request/response on a bidirectional
//! stream of their own connection. Bidirectional streams on a link are service requests
//! (Raft RPC and forwarded key-value requests), handed to the receiver registered with
//! [`LinkEndpoint::serve_requests`] and refused when none is. The endpoint runs a task per connection that turns what arrives into
//! [`LinkEvent`]s on one bounded channel; the node's loop consumes them and decides which
//! links to keep. Nothing is trusted until the handshake and every certificate check pass.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use identity::tls::{self, CertStore, KxLease, KxPolicy};
use identity::verify::VerifierState;
use identity::{NodeSpiffeId, SvidInfo};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::mpsc;
use wire::NodeId;

use crate::TransportError;

/// Capacity of the event channel to the node's loop. A full channel drops datagrams (counted)
/// rather than blocking connection tasks, as a router would drop on a full queue.
pub const EVENT_QUEUE: usize = 4096;

/// A handshake that has not finished by then is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest unidirectional stream (a batch of node records or revocations) or RPC message.
/// A record is under 8 KB; 1 MB carries a directory of over a hundred records at once.
pub const MAX_STREAM_BYTES: usize = 1 << 20;

/// Most concurrent incoming streams per link. Record batches are sent one at a time; a peer
/// that opens more is misbehaving.
const MAX_CONCURRENT_UNI_STREAMS: u32 = 16;

/// QUIC idle timeout. Liveness is the routing probes' job (300 ms); this only reclaims the
/// connection of a peer that is gone for good.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keep-alive interval, inside [`IDLE_TIMEOUT`] with room for one lost keep-alive. Routing
/// and data packets travel on the link channel, so at idle these are the QUIC connection's
/// only packets.
pub const KEEP_ALIVE: Duration = Duration::from_secs(4);

/// Initial QUIC packet size: the UDP payload of a 1,500-byte IPv6 link (1500 - 40 - 8), so
/// that a full 1,400-byte routing packet fits one datagram from the first packet on. quinn
/// falls back towards its 1,200-byte minimum if the path turns out to be smaller.
pub const INITIAL_MTU: u16 = 1452;

/// Error code sent when closing a link on purpose.
pub const CLOSE_POLICY: u32 = 1;

/// Most concurrent request streams a peer may open on one link: Raft replication, votes and
/// forwarded client requests of up to a few hundred concurrent clients. quinn makes the
/// opener wait for room beyond this.
pub const MAX_CONCURRENT_REQUEST_STREAMS: u32 = 256;

/// Error code on a request stream refused because this node serves no requests or its queue
/// is full.
pub const REFUSED_REQUEST: u32 = 1;

/// A bidirectional stream a linked peer opened: one request, one answer.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The authenticated peer that opened it (a relay, for requests from farther away).
    pub from: NodeId,
    /// Where the answer goes.
    pub send: quinn::SendStream,
    /// Where the request comes from.
    pub receive: quinn::RecvStream,
}

/// What a link endpoint needs to know.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Where to listen (QUIC over UDP).
    pub listen: SocketAddr,
    /// Key-exchange policy.
    pub kx: KxPolicy,
    /// Whether this node is the CA node and accepts join requests.
    pub accepts_joins: bool,
}

/// An established, authenticated link.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    /// The peer's SPIFFE ID (from its verified certificate).
    pub spiffe_id: NodeSpiffeId,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Negotiated key-exchange group.
    pub kx_group: String,
    /// Whether this node dialled.
    pub outbound: bool,
    /// quinn's id of the connection, to tell a replaced link's late events from the current.
    pub connection_id: usize,
    /// The peer's certificate expiry (Unix seconds).
    pub peer_svid_not_after: i64,
}

impl LinkInfo {
    /// The peer's node id.
    pub fn node_id(&self) -> NodeId {
        self.spiffe_id.node_id
    }
}

/// What happens on links.
#[derive(Debug)]
pub enum LinkEvent {
    /// A link passed every check. The node decides whether to keep it (it may already have
    /// one to the same peer).
    Up {
        /// About the link.
        link: LinkInfo,
        /// The connection.
        connection: quinn::Connection,
    },
    /// A datagram from a linked peer.
    Datagram {
        /// The authenticated peer.
        from: NodeId,
        /// Which of its connections.
        connection_id: usize,
        /// Payload.
        bytes: Bytes,
    },
    /// A complete unidirectional stream from a linked peer.
    Stream {
        /// The authenticated peer.
        from: NodeId,
        /// Its content.
        bytes: Vec<u8>,
    },
    /// A link ended.
    Down {
        /// The peer.
        node: NodeId,
        /// Which connection ended.
        connection_id: usize,
        /// Why.
        reason: String,
    },
    /// A certificate-less connection asking to join (CA node only).
    Join {
        /// The connection; serve one request on it.
        connection: quinn::Connection,
    },
    /// A member asking for a fresh SVID (CA node only).
    Renew {
        /// The member's verified identity.
        link: LinkInfo,
        /// The member's verified certificate.
        svid: SvidInfo,
        /// The connection; serve one request on it.
        connection: quinn::Connection,
    },
}

/// Link counters, all monotonically increasing.
#[derive(Debug, Default)]
pub struct LinkStats {
    handshakes_ok: AtomicU64,
    handshakes_failed: AtomicU64,
    datagrams_rx: AtomicU64,
    datagrams_tx: AtomicU64,
    datagram_send_errors: AtomicU64,
    events_dropped: AtomicU64,
    streams_rx: AtomicU64,
    streams_refused: AtomicU64,
}

impl LinkStats {
    /// Name -> value.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, u64> {
        [
            ("handshakes_ok", &self.handshakes_ok),
            ("handshakes_failed", &self.handshakes_failed),
            ("link_datagrams_rx", &self.datagrams_rx),
            ("link_datagrams_tx", &self.datagrams_tx),
            ("link_datagram_send_errors", &self.datagram_send_errors),
            ("link_events_dropped", &self.events_dropped),
            ("link_streams_rx", &self.streams_rx),
            ("link_streams_refused", &self.streams_refused),
        ]
        .into_iter()
        .map(|(name, counter)| (name.to_string(), counter.load(Ordering::Relaxed)))
        .collect()
    }

    /// Successful handshakes so far.
    pub fn handshakes_ok(&self) -> u64 {
        self.handshakes_ok.load(Ordering::Relaxed)
    }

    /// Failed handshakes so far.
    pub fn handshakes_failed(&self) -> u64 {
        self.handshakes_failed.load(Ordering::Relaxed)
    }
}

/// The node's QUIC endpoint.
#[derive(Debug, Clone)]
pub struct LinkEndpoint {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: quinn::Endpoint,
    state: Arc<VerifierState>,
    certificate: Arc<CertStore>,
    settings: LinkSettings,
    events: mpsc::Sender<LinkEvent>,
    stats: LinkStats,
    requests: std::sync::OnceLock<mpsc::Sender<IncomingRequest>>,
}

impl LinkEndpoint {
    /// Binds the endpoint and starts accepting. Must be called inside a tokio runtime.
    pub fn bind(
        settings: LinkSettings,
        state: Arc<VerifierState>,
        certificate: Arc<CertStore>,
    ) -> Result<(LinkEndpoint, mpsc::Receiver<LinkEvent>), TransportError> {
        let default_server = server_config(&state, &certificate, &KxLease::acquire(), &settings)?;
        let endpoint =
            quinn::Endpoint::server(default_server, settings.listen).map_err(|source| {
                TransportError::Bind {
                    address: settings.listen,
                    source,
                }
            })?;
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let inner = Arc::new(Inner {
            endpoint,
            state,
            certificate,
            settings,
            events,
            stats: LinkStats::default(),
            requests: std::sync::OnceLock::new(),
        });
        tokio::spawn(accept_loop(inner.clone()));
        Ok((LinkEndpoint { inner }, receiver))
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                address: self.inner.settings.listen,
                source,
            })
    }

    /// Hands request streams peers open on links to `sender` from now on (once; later calls
    /// are ignored). A full channel refuses the stream rather than waiting.
    pub fn serve_requests(&self, sender: mpsc::Sender<IncomingRequest>) {
        if self.inner.requests.set(sender).is_err() {
            tracing::warn!("request streams already have a receiver");
        }
    }

    /// Opens a request stream to the peer of `connection`.
    pub async fn open_request(
        connection: &quinn::Connection,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), TransportError> {
        connection
            .open_bi()
            .await
            .map_err(|error| TransportError::Link(error.to_string()))
    }

    /// Counters.
    pub fn stats(&self) -> &LinkStats {
        &self.inner.stats
    }

    /// The verifier state (revocations, policy, refusal counts).
    pub fn verifier(&self) -> &Arc<VerifierState> {
        &self.inner.state
    }

    /// Dials `address` in the background; success arrives as [`LinkEvent::Up`], failure is
    /// counted and logged.
    pub fn dial(&self, address: SocketAddr, expected: Option<NodeId>) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(error) = dial(&inner, address, expected).await {
                inner
                    .stats
                    .handshakes_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%address, %error, "link handshake failed");
            }
        });
    }

    /// Sends a datagram on `connection`; a full send buffer or a closed link drops it (counted).
    pub fn send_datagram(&self, connection: &quinn::Connection, payload: &[u8]) -> bool {
        match connection.send_datagram(Bytes::copy_from_slice(payload)) {
            Ok(()) => {
                self.inner
                    .stats
                    .datagrams_tx
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(error) => {
                self.inner
                    .stats
                    .datagram_send_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::trace!(%error, "datagram not sent");
                false
            }
        }
    }

    /// Sends `bytes` as one unidirectional stream in the background.
    pub fn send_stream(&self, connection: &quinn::Connection, bytes: Vec<u8>) {
        let connection = connection.clone();
        tokio::spawn(async move {
            let result = async {
                let mut stream = connection.open_uni().await?;
                stream.write_all(&bytes).await?;
                stream.finish()?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
            .await;
            if let Err(error) = result {
                tracing::debug!(%error, "stream not sent");
            }
        });
    }

    /// One request/response with a member at `address` over a fresh connection with `alpn`
    /// (e.g. an SVID renewal with the CA node).
    pub async fn request(
        &self,
        address: SocketAddr,
        alpn: &[u8],
        body: &[u8],
    ) -> Result<Vec<u8>, TransportError> {
        let lease = KxLease::acquire();
        let config = tls::client_config(
            &self.inner.state,
            &self.inner.certificate,
            &lease,
            self.inner.settings.kx,
            None,
            alpn,
        )
        .map_err(tls_error)?;
        let client = client_config(config)?;
        let connecting = self
            .inner
            .endpoint
            .connect_with(client, address, "node")
            .map_err(|error| TransportError::Link(error.to_string()))?;
        let connection = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .map_err(|_| TransportError::Link("handshake timed out".to_string()))?
            .map_err(|error| TransportError::Link(error.to_string()))?;
        let response = rpc(&connection, body).await;
        connection.close(0u32.into(), b"done");
        response
    }

    /// Closes every link.
    pub fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"shutdown");
    }
}

/// Serves one request/response on `connection`: reads the request, passes it to `answer`,
/// writes the answer.
pub async fn serve_one(
    connection: &quinn::Connection,
    answer: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> Result<(), TransportError> {
    let link = |error: &dyn std::fmt::Display| TransportError::Link(error.to_string());
    let (mut send, mut receive) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connection.accept_bi())
        .await
        .map_err(|_| TransportError::Link("no request".to_string()))?
        .map_err(|error| link(&error))?;
    let request = receive
        .read_to_end(MAX_STREAM_BYTES)
        .await
        .map_err(|error| link(&error))?;
    let response = answer(request);
    send.write_all(&response)
        .await
        .map_err(|error| link(&error))?;
    send.finish().map_err(|error| link(&error))?;
    // Wait for the peer to read the answer and close, bounded.
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, connection.closed()).await;
    Ok(())
}

/// A joining node's request to the CA node at `address`, whose CA certificate must hash to
/// `pinned_ca_hash`. Uses its own short-lived client endpoint (the node has no identity yet).
pub async fn join_request(
    address: SocketAddr,
    pinned_ca_hash: [u8; 32],
    body: &[u8],
) -> Result<Vec<u8>, TransportError> {
    let bind: SocketAddr = if address.is_ipv4() {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| TransportError::Link("bind address".to_string()))?
    } else {
        "[::]:0"
            .parse()
            .map_err(|_| TransportError::Link("bind address".to_string()))?
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(|source| TransportError::Bind {
        address: bind,
        source,
    })?;
    let config = tls::join_client_config(pinned_ca_hash).map_err(tls_error)?;
    let connecting = endpoint
        .connect_with(client_config(config)?, address, "ca")
        .map_err(|error| TransportError::Link(error.to_string()))?;
    let connection = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| TransportError::Link(format!("no answer from the CA node at {address}")))?
        .map_err(|error| TransportError::Link(format!("CA node at {address}: {error}")))?;
    let response = rpc(&connection, body).await;
    connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    response
}

async fn rpc(connection: &quinn::Connection, body: &[u8]) -> Result<Vec<u8>, TransportError> {
    let link = |error: &dyn std::fmt::Display| TransportError::Link(error.to_string());
    let (mut send, mut receive) = connection.open_bi().await.map_err(|error| link(&error))?;
    send.write_all(body).await.map_err(|error| link(&error))?;
    send.finish().map_err(|error| link(&error))?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, receive.read_to_end(MAX_STREAM_BYTES))
        .await
        .map_err(|_| TransportError::Link("no response".to_string()))?
        .map_err(|error| link(&error))
}

fn tls_error(error: tls::TlsError) -> TransportError {
    TransportError::Link(error.to_string())
}

fn transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config
        .max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok())
        .keep_alive_interval(Some(KEEP_ALIVE))
        .initial_mtu(INITIAL_MTU)
        .max_concurrent_uni_streams(MAX_CONCURRENT_UNI_STREAMS.into())
        .max_concurrent_bidi_streams(MAX_CONCURRENT_REQUEST_STREAMS.into());
    config
}

fn client_config(config: rustls::ClientConfig) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::try_from(config)
        .map_err(|error| TransportError::Link(error.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport_config()));
    Ok(client)
}

fn server_config(
    state: &Arc<VerifierState>,
    certificate: &Arc<CertStore>,
    lease: &KxLease,
    settings: &LinkSettings,
) -> Result<quinn::ServerConfig, TransportError> {
    let config = tls::server_config(
        state,
        certificate,
        lease,
        settings.kx,
        settings.accepts_joins,
    )
    .map_err(tls_error)?;
    let crypto = QuicServerConfig::try_from(Arc::new(config))
        .map_err(|error| TransportError::Link(error.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config()));
    Ok(server)
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            if let Err(error) = accept(&inner, incoming).await {
                inner
                    .stats
                    .handshakes_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, %error, "incoming link refused");
            }
        });
    }
}

async fn accept(inner: &Arc<Inner>, incoming: quinn::Incoming) -> Result<(), TransportError> {
    let lease = KxLease::acquire();
    let config = server_config(&inner.state, &inner.certificate, &lease, &inner.settings)?;
    let connecting = incoming
        .accept_with(Arc::new(config))
        .map_err(|error| TransportError::Link(error.to_string()))?;
    let connection = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| TransportError::Link("handshake timed out".to_string()))?
        .map_err(|error| TransportError::Link(error.to_string()))?;
    let alpn = negotiated_alpn(&connection);
    let identity = peer_svid(&connection);
    match (alpn.as_deref(), identity) {
        (Some(tls::ALPN_JOIN), None) if inner.settings.accepts_joins => {
            inner.stats.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            deliver(inner, LinkEvent::Join { connection }).await;
            Ok(())
        }
        (Some(tls::ALPN_RENEW), Some(svid)) if inner.settings.accepts_joins => {
            inner.stats.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            let link = link_info(&connection, &svid, &lease, false);
            deliver(
                inner,
                LinkEvent::Renew {
                    link,
                    svid,
                    connection,
                },
            )
            .await;
            Ok(())
        }
        (Some(tls::ALPN_LINK), Some(svid)) => {
            established(inner, connection, &svid, &lease, false).await;
            Ok(())
        }
        _ => {
            connection.close(CLOSE_POLICY.into(), b"not a member");
            Err(TransportError::Link(
                "connection without a member certificate or with an unknown protocol".to_string(),
            ))
        }
    }
}

async fn dial(
    inner: &Arc<Inner>,
    address: SocketAddr,
    expected: Option<NodeId>,
) -> Result<(), TransportError> {
    let lease = KxLease::acquire();
    let config = tls::client_config(
        &inner.state,
        &inner.certificate,
        &lease,
        inner.settings.kx,
        expected,
        tls::ALPN_LINK,
    )
    .map_err(tls_error)?;
    let connecting = inner
        .endpoint
        .connect_with(client_config(config)?, address, "node")
        .map_err(|error| TransportError::Link(error.to_string()))?;
    let connection = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| TransportError::Link("handshake timed out".to_string()))?
        .map_err(|error| TransportError::Link(error.to_string()))?;
    let svid = peer_svid(&connection)
        .ok_or_else(|| TransportError::Link("peer presented no certificate".to_string()))?;
    established(inner, connection, &svid, &lease, true).await;
    Ok(())
}

async fn established(
    inner: &Arc<Inner>,
    connection: quinn::Connection,
    svid: &SvidInfo,
    lease: &KxLease,
    outbound: bool,
) {
    inner.stats.handshakes_ok.fetch_add(1, Ordering::Relaxed);
    let link = link_info(&connection, svid, lease, outbound);
    let node = link.node_id();
    let connection_id = link.connection_id;
    tokio::spawn(read_datagrams(inner.clone(), connection.clone(), node));
    tokio::spawn(read_streams(inner.clone(), connection.clone(), node));
    tokio::spawn(read_requests(inner.clone(), connection.clone(), node));
    deliver(inner, LinkEvent::Up { link, connection }).await;
    tracing::trace!(node = %node.short(), connection_id, "link up");
}

fn link_info(
    connection: &quinn::Connection,
    svid: &SvidInfo,
    lease: &KxLease,
    outbound: bool,
) -> LinkInfo {
    LinkInfo {
        spiffe_id: svid.spiffe_id.clone(),
        remote: connection.remote_address(),
        kx_group: tls::group_name(lease.group()),
        outbound,
        connection_id: connection.stable_id(),
        peer_svid_not_after: svid.not_after,
    }
}

/// Link-state events must not be lost (a lost `Down` would leave a dead link in the table),
/// so they wait for room; only datagrams are dropped on a full queue.
async fn deliver(inner: &Arc<Inner>, event: LinkEvent) {
    if inner.events.send(event).await.is_err() {
        tracing::debug!("node loop gone; link event discarded");
    }
}

async fn read_datagrams(inner: Arc<Inner>, connection: quinn::Connection, node: NodeId) {
    let connection_id = connection.stable_id();
    let reason = loop {
        match connection.read_datagram().await {
            Ok(bytes) => {
                inner.stats.datagrams_rx.fetch_add(1, Ordering::Relaxed);
                let event = LinkEvent::Datagram {
                    from: node,
                    connection_id,
                    bytes,
                };
                if inner.events.try_send(event).is_err() {
                    inner.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(error) => break error.to_string(),
        }
    };
    deliver(
        &inner,
        LinkEvent::Down {
            node,
            connection_id,
            reason,
        },
    )
    .await;
}

async fn read_streams(inner: Arc<Inner>, connection: quinn::Connection, node: NodeId) {
    while let Ok(mut stream) = connection.accept_uni().await {
        match stream.read_to_end(MAX_STREAM_BYTES).await {
            Ok(bytes) => {
                inner.stats.streams_rx.fetch_add(1, Ordering::Relaxed);
                deliver(&inner, LinkEvent::Stream { from: node, bytes }).await;
            }
            Err(error) => {
                inner.stats.streams_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %node.short(), %error, "stream refused");
            }
        }
    }
}

async fn read_requests(inner: Arc<Inner>, connection: quinn::Connection, node: NodeId) {
    while let Ok((send, receive)) = connection.accept_bi().await {
        let request = IncomingRequest {
            from: node,
            send,
            receive,
        };
        let refused = match inner.requests.get() {
            Some(sender) => match sender.try_send(request) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(request))
                | Err(mpsc::error::TrySendError::Closed(request)) => Some(request),
            },
            None => Some(request),
        };
        if let Some(mut request) = refused {
            inner.stats.streams_refused.fetch_add(1, Ordering::Relaxed);
            // Either fails only if the stream is already gone, which is what refusing wants.
            let _ = request.send.reset(REFUSED_REQUEST.into());
            let _ = request.receive.stop(REFUSED_REQUEST.into());
        }
    }
}

fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn peer_svid(connection: &quinn::Connection) -> Option<SvidInfo> {
    let chain = connection
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    identity::svid::read_node_certificate(chain.first()?).ok()
}
