//! `Node`: the daemon's event loop, which drives the routing core over authenticated QUIC links.
//!
//! ```text
//!   link datagrams ──► (sender = link's peer?) ──► handle_datagram ─┐          ┌─► poll_transmit ──► link datagrams
//!   timer (poll_timeout) ─────────────────────► handle_timeout ──► Router ────┤
//!   NodeHandle requests ──► snapshot                                           └─► poll_event ──► log
//!   link up/down, join/renew requests ──► links table, CA
//!   CRDT datagrams, CRDT timer ──► replication (directory, revocations, policies)
//!   multicast adverts ──► dial;   housekeeping tick ──► re-dial, renew SVID, publish revocations
//! ```
//!
//! The loop follows the router's calling contract: after every `handle_*` call it drains
//! `poll_transmit` and `poll_event`, then re-arms its timer from `poll_timeout`. It is the
//! only code that reads the clock (through [`Clock`]). Timers and snapshot requests are
//! served before new packets, so a packet flood cannot starve the node's own work.
//!
//! A packet is given to the router only if the sender in its header is the node the link's
//! certificate names, so no neighbour can speak for another.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use identity::ca::CertificateAuthority;
use identity::tls::{CertStore, KxPolicy};
use identity::verify::VerifierState;
use identity::{KeySet, NodeRecord};
use routing::{Destination, Event, Router, Timestamp};
use tokio::sync::mpsc;
use tokio::time::Instant;
use transport::{
    LinkEndpoint, LinkEvent, LinkInfo, LinkSettings, RECV_BUFFER_BYTES, StaticPeer, Transport,
    TransportConfig,
};
use wire::NodeId;

use crate::advert::Advert;
use crate::channel_links::ChannelLinks;
use crate::clock::Clock;
use crate::config::TunMode;
use crate::dataplane::{self, DataHeader, OverlayMap};
use crate::directory::Directory;
use crate::handle::{NodeHandle, Request};
use crate::identity::{NodeIdentity, check_private_dir};
use crate::kvhost::KvHost;
use crate::membership::{self, Membership};
use crate::ogm_auth::{DirectoryOgmVerifier, NodeOgmSigner};
use crate::replication::{self, Replication, Verified};
use crate::seq_store::SeqStore;
use crate::tun_io::{TunReader, TunWriter};
use crate::view::{DatagramView, IdentityView, PeerView, RouteView, SendOutcome, StatusView};
use crate::{NodeConfig, NodeError, bootstrap};

/// Pause after a failed discovery receive, so a failing socket cannot spin the loop.
const RECV_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// How often the carrier of discovery interfaces is read. A neighbour behind an interface that
/// lost carrier is declared dead at once, instead of after three missed probes (300 ms).
const CARRIER_POLL: Duration = Duration::from_millis(20);

/// Housekeeping period: re-dialling peers, SVID renewal, CA revocations, adverts.
const TICK: Duration = Duration::from_millis(500);

/// A new link gets the periodic hellos this long even when its neighbour already looks alive
/// (a peer that restarted within the probe timeout is new to itself, not to this node).
const HELLO_ON_NEW_LINKS: Duration = Duration::from_secs(5);

/// On interfaces that all have links, adverts go every this many ticks (5 s) instead of every
/// tick.
const LINKED_ADVERT_TICKS: u32 = 10;

/// A peer is dialled again at most this often while no link to it exists.
const REDIAL_INTERVAL: Duration = Duration::from_secs(1);

/// Two links to the same peer that came up within this window are a simultaneous dial; the one
/// dialled by the smaller node id is kept on both sides. Later, the newest link wins (the peer
/// restarted and its old connection is dead).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(2);

/// Most links kept at once. The routing core keeps at most 254 neighbours; links beyond that
/// could not be used.
const MAX_LINKS: usize = 254;

/// Most peers remembered for re-dialling (static peers plus advertised ones).
const MAX_DIAL_TARGETS: usize = 1024;

/// A failed SVID renewal is retried after this long.
const RENEW_RETRY: Duration = Duration::from_secs(2);

/// Error code of a link closed because a better one to the same peer exists.
const CLOSE_DUPLICATE: u32 = 2;
/// Error code of a link closed because its peer was revoked.
const CLOSE_REVOKED: u32 = 3;

/// A node ready to run.
pub struct Node {
    router: Router,
    links: LinkEndpoint,
    link_events: mpsc::Receiver<LinkEvent>,
    active: HashMap<NodeId, ActiveLink>,
    dial_targets: HashMap<SocketAddr, DialTarget>,
    discovery: Option<Transport>,
    clock: Clock,
    seq_store: SeqStore,
    requests: mpsc::Receiver<Request>,
    security: Security,
    directory: Directory,
    /// The CRDT replica carrying records, revocations and policies mesh-wide.
    replication: Replication,
    counters: LinkCounters,
    listen: SocketAddr,
    static_peer_count: usize,
    tun: Option<Arc<tun_rs::AsyncDevice>>,
    tun_reader: TunReader,
    tun_writer: TunWriter,
    channel_socket: transport::channel::ChannelSocket,
    channel: ChannelLinks,
    overlay: OverlayMap,
    overlay_stale: bool,
    data: DataCounters,
    inbox: std::collections::VecDeque<DatagramView>,
    sessions: session::Sessions,
    /// Carrier state of each discovery interface, by kernel index.
    carrier: HashMap<u32, bool>,
    /// The key-value store, when `node.yaml` has a `kv` section.
    kv: Option<KvHost>,
    /// Reused buffer for relayed packets.
    relay_scratch: Vec<u8>,
    /// Path MTUs learned from relays' too-big notices, and this node's notice budget.
    path_mtus: dataplane::PathMtus,
    /// Housekeeping ticks so far, for the advert schedule.
    advert_ticks: u32,
    /// The self-healing loop (`None` when `mapk.enabled` is false).
    healing: Option<crate::healing::Healing>,
    /// Keeps the request channel open while the node runs even if every API handle is
    /// dropped, so the loop never sees a closed channel.
    _own_handle: NodeHandle,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.router.local_id())
            .field("links", &self.active.len())
            .finish_non_exhaustive()
    }
}

struct ActiveLink {
    info: LinkInfo,
    connection: quinn::Connection,
    established: Timestamp,
}

struct DialTarget {
    expected: Option<NodeId>,
    last_dial: Option<Timestamp>,
}

struct Security {
    keys: Arc<KeySet>,
    membership: Membership,
    certificate: Arc<CertStore>,
    state: Arc<VerifierState>,
    ca: Option<Arc<CertificateAuthority>>,
    ca_state_modified: Option<SystemTime>,
    config: NodeConfig,
    renew_after: Timestamp,
    renewal: Option<tokio::task::JoinHandle<Result<Vec<u8>, String>>>,
    renewals: u64,
    /// Issue time of the CA-signed link policy in force, if one arrived.
    policy_issued_at_ms: Option<u64>,
    /// CA-signed link policies applied since start.
    policy_updates: u64,
    /// On the CA node: when the policy file was last published.
    policy_file_modified: Option<SystemTime>,
}

/// Overlay data-plane counters.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct DataCounters {
    /// Packets read from the TUN interface.
    data_from_tun: u64,
    /// Packets written to the TUN interface (delivered here).
    data_to_tun: u64,
    /// Packets relayed for other nodes.
    data_forwarded: u64,
    /// Packets sent on a link (originated or relayed).
    data_sent: u64,
    /// Packets with no route to their destination (answered with ICMPv6 unreachable when
    /// they came from the TUN).
    data_no_route: u64,
    /// Packets too big for the next link or the known path MTU (answered with ICMPv6 packet
    /// too big when local, with a too-big notice to the source node when relayed).
    data_too_big: u64,
    /// Too-big notices sent to the sources of relayed packets that did not fit.
    too_big_notices_sent: u64,
    /// Too-big notices from relays that lowered a path MTU here.
    too_big_notices_applied: u64,
    /// Too-big notices ignored: malformed, or no lower than the path MTU already held.
    too_big_notices_ignored: u64,
    /// Packets whose inner source address is not the source node's overlay address.
    data_spoofed_source: u64,
    /// Packets dropped because their hop limit ran out.
    data_hop_limit: u64,
    /// Malformed data packets or non-IPv6 packets from the TUN.
    data_malformed: u64,
    /// Packets for this node while it has no TUN interface.
    data_without_tun: u64,
    /// TUN read or write errors.
    tun_errors: u64,
    /// Application datagrams delivered to this node's inbox.
    datagrams_delivered: u64,
    /// Payloads the end-to-end session refused to seal (its queue full, peer unknown).
    session_refused: u64,
    /// Application datagrams dropped because the inbox was full (the oldest goes).
    datagrams_inbox_overflow: u64,
}

/// Datagrams kept for the API until taken. Readers poll; when none does, the oldest are
/// dropped (counted) rather than growing without bound.
const INBOX_CAPACITY: usize = 1024;

/// Packets and events refused by the loop itself (the router and verifier count their own).
#[derive(Debug, Default, Clone, serde::Serialize)]
struct LinkCounters {
    /// Datagrams whose header names a sender other than the link's authenticated peer.
    spoofed_sender: u64,
    /// Router packets for a neighbour with no link (it just went away).
    no_link_for_neighbour: u64,
    /// Links closed because a better link to the same peer existed.
    duplicate_links_closed: u64,
    /// Links refused because the table was full.
    links_table_full: u64,
    /// Links closed because the peer was revoked.
    links_closed_revoked: u64,
    /// Links closed because a new CA-signed link policy denies the peer.
    links_closed_policy: u64,
    /// Record batches on link streams, ignored since records travel in the CRDT replica.
    directory_batches_ignored: u64,
    /// Multicast datagrams that were not adverts.
    bad_adverts: u64,
    /// SVID renewals that failed (retried).
    renewals_failed: u64,
    /// Join requests served (CA node).
    joins_served: u64,
    /// Links accepted into the links table since start (a renewal must not add any).
    links_established: u64,
    /// Neighbours declared dead because their interface lost carrier.
    links_lost_carrier: u64,
    /// Periodic hellos not sent on a link whose neighbour is alive.
    hellos_suppressed: u64,
    /// UDP bytes sent by links that have since closed (QUIC headers, acknowledgements and
    /// keep-alives included), so the total on the wire survives link turnover.
    closed_links_udp_tx_bytes: u64,
    /// UDP datagrams sent by links that have since closed.
    closed_links_udp_tx_datagrams: u64,
}

impl LinkCounters {
    /// Keeps what a closing link sent in the totals.
    fn retire(&mut self, connection: &quinn::Connection) {
        let sent = connection.stats().udp_tx;
        self.closed_links_udp_tx_bytes += sent.bytes;
        self.closed_links_udp_tx_datagrams += sent.datagrams;
    }
}

impl Node {
    /// Loads keys, membership and bootstrap peers, binds the link endpoint (and the discovery
    /// socket when interfaces are configured) and builds the router. Must be called inside a
    /// tokio runtime.
    pub fn start(config: &NodeConfig) -> Result<(Node, NodeHandle), NodeError> {
        if !NodeIdentity::exists(&config.key_path)? {
            return Err(NodeError::NotInitialised {
                key_path: config.key_path.clone(),
                config: config.source.clone(),
            });
        }
        check_private_dir(&config.data_dir)?;
        // Configuration files first, so their errors are reported before identity problems.
        let static_peers: Vec<StaticPeer> = match config.bootstrap_path() {
            Some(path) => bootstrap::load(&path)?,
            None => Vec::new(),
        };
        let keys = Arc::new(NodeIdentity::load(&config.key_path)?.into_keys());
        let clock = Clock::start();
        let now_unix = unix_seconds();
        let ca_dir = membership::ca_dir(config);
        let ca = if ca_dir.join("ca.crt").exists() {
            Some(Arc::new(
                CertificateAuthority::load(&ca_dir).map_err(membership::MembershipError::from)?,
            ))
        } else {
            None
        };
        let membership = match (Membership::load(config, &keys, now_unix), &ca) {
            (Ok(membership), _) => membership,
            // The CA node renews its own expired SVID on the spot; a member must re-join.
            (Err(membership::MembershipError::BadSvid { .. }), Some(ca)) => {
                let svid = ca
                    .issue_own(&keys, now_unix, config.svid_ttl_seconds)
                    .map_err(membership::MembershipError::from)?;
                Membership::store_svid(&config.data_dir, &svid)?;
                Membership::load(config, &keys, now_unix)?
            }
            (Err(error), _) => return Err(error.into()),
        };
        let policy = membership::load_policy(config.policy_file.as_deref())?;
        let state = VerifierState::new(membership.bundle.clone(), policy);
        let certificate =
            CertStore::new(&keys, &membership.svid, &membership.bundle.ca_certificate).map_err(
                |error| NodeError::Transport(transport::TransportError::Link(error.to_string())),
            )?;
        let (links, link_events) = LinkEndpoint::bind(
            LinkSettings {
                listen: config.listen,
                kx: KxPolicy {
                    pq_only: config.pq_only,
                },
                accepts_joins: ca.is_some(),
            },
            state.clone(),
            certificate.clone(),
        )?;
        let listen = links.local_addr()?;
        let kv = KvHost::start(config, keys.node_id(), &links);
        let discovery = if config.interfaces.is_empty() {
            None
        } else {
            Some(Transport::bind(&TransportConfig {
                listen: SocketAddr::new(config.listen.ip(), config.discovery_port),
                interfaces: config.interfaces.clone(),
                static_peers: Vec::new(),
            })?)
        };
        let mut dial_targets = HashMap::new();
        for peer in static_peers.iter().take(MAX_DIAL_TARGETS) {
            dial_targets.insert(
                peer.address,
                DialTarget {
                    expected: peer.node_id,
                    last_dial: None,
                },
            );
        }
        let (tun, offload) = open_tun(config, keys.node_id())?;
        let channel_socket = transport::channel::ChannelSocket::bind(config.listen.ip())?;
        let channel = ChannelLinks::new(&channel_socket, keys.node_id(), config.link_channel);
        let sessions = session::Sessions::new(
            session::SessionConfig::default(),
            SharedSigner(keys.clone()),
            session::SystemRng,
        )
        .map_err(|error| {
            NodeError::Membership(membership::MembershipError::Join(error.to_string()))
        })?;
        let (seq_store, initial_seq) = SeqStore::open(&config.data_dir)?;
        let mut directory = Directory::default();
        let mut router = Router::new(
            keys.node_id(),
            config.router.clone(),
            initial_seq,
            random_seed()?,
            clock.now(),
        );
        router.enable_signed_ogms(routing::OgmAuth {
            signer: Box::new(NodeOgmSigner(keys.clone())),
            verifier: Box::new(DirectoryOgmVerifier::new(
                directory.ogm_keys(),
                state.clone(),
                unix_seconds,
            )),
        });
        let renew_after = renewal_time(&clock, &membership, now_unix);
        let keys_id = keys.node_id();
        let (handle, requests) = NodeHandle::channel();
        let handle = handle.with_kv(kv.clone());
        let mut security = Security {
            keys,
            membership,
            certificate,
            state,
            ca,
            ca_state_modified: None,
            config: config.clone(),
            renew_after,
            renewal: None,
            renewals: 0,
            policy_issued_at_ms: None,
            policy_updates: 0,
            policy_file_modified: None,
        };
        let own_record = security.publish_own_record(&mut directory, listen)?;
        let mut replication = Replication::open(
            security.keys.node_id(),
            &config.data_dir,
            security.state.clone(),
            unix_millis(),
            random_seed()?,
        )?;
        replication.publish_record(&own_record, unix_millis())?;
        let healing = if config.healing.enabled {
            Some(crate::healing::Healing::start(
                &config.healing,
                keys_id,
                &config.data_dir,
                clock.unix_ms_of(clock.now()),
            )?)
        } else {
            None
        };
        let mut node = Node {
            router,
            links,
            link_events,
            active: HashMap::new(),
            dial_targets,
            discovery,
            clock,
            seq_store,
            requests,
            security,
            directory,
            replication,
            counters: LinkCounters::default(),
            listen,
            static_peer_count: static_peers.len(),
            tun,
            tun_reader: TunReader::new(offload, usize::from(config.tun_mtu)),
            tun_writer: TunWriter::new(offload),
            channel_socket,
            channel,
            overlay: OverlayMap::default(),
            overlay_stale: true,
            data: DataCounters::default(),
            inbox: std::collections::VecDeque::new(),
            sessions,
            carrier: HashMap::new(),
            kv,
            relay_scratch: Vec::new(),
            path_mtus: dataplane::PathMtus::default(),
            advert_ticks: 0,
            healing,
            _own_handle: handle.clone(),
        };
        node.apply_verified();
        Ok((node, handle))
    }

    /// This node's identifier.
    pub fn node_id(&self) -> NodeId {
        self.router.local_id()
    }

    /// The address the link endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Runs until `shutdown` completes. Returns an error only if the node cannot go on (its
    /// sequence-number reservation can no longer be written).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        tokio::pin!(shutdown);
        let mut buffer = vec![0u8; RECV_BUFFER_BYTES];
        let mut channel_received = transport::channel::Received::default();
        let mut carrier_tick = tokio::time::interval(CARRIER_POLL);
        carrier_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watch_carrier = self.discovery.is_some();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.log_start();
        self.housekeeping().await;
        self.flush().await?;
        loop {
            let wake = self
                .router
                .poll_timeout()
                .map(|at| Instant::from_std(self.clock.instant_of(at)));
            let step = tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = sleep_until(wake) => Step::Timer,
                _ = tick.tick() => Step::Tick,
                () = sleep_until_unix_ms(self.replication.wake_ms()) => Step::Replication,
                _ = carrier_tick.tick(), if watch_carrier => Step::Carrier,
                wake = crate::healing::next(self.healing.as_mut()) => Step::Heal(wake),
                Some(request) = self.requests.recv() => Step::Request(request),
                Some(event) = self.link_events.recv() => Step::Link(event),
                received = recv_discovery(self.discovery.as_ref(), &mut buffer) => Step::Discovery(received),
                read = recv_tun(self.tun.as_deref(), &mut self.tun_reader) => Step::Tun(read),
                received = self.channel_socket.recv(&mut channel_received) => Step::Channel(received),
            };
            match step {
                Step::Timer => self.router.handle_timeout(self.clock.now()),
                Step::Tick => {
                    self.housekeeping().await;
                    self.kv_refresh_routes();
                }
                Step::Replication => self.replication.handle_timeout(unix_millis()),
                Step::Carrier => self.check_carrier(),
                Step::Heal(wake) => self.heal_step(Some(wake), None),
                Step::Request(request) => self.answer(request),
                Step::Link(event) => self.on_link_event(event).await,
                Step::Tun(Ok(count)) => {
                    let reader = std::mem::take(&mut self.tun_reader);
                    for index in 0..count {
                        self.on_tun_packet(reader.packet(index));
                    }
                    self.tun_reader = reader;
                }
                Step::Channel(Ok(())) => self.on_channel_datagrams(&channel_received),
                Step::Channel(Err(error)) => {
                    tracing::warn!(%error, "link channel receive failed");
                    tokio::time::sleep(RECV_ERROR_BACKOFF).await;
                }
                Step::Tun(Err(error)) => {
                    self.data.tun_errors += 1;
                    tracing::warn!(%error, "TUN read failed");
                    tokio::time::sleep(RECV_ERROR_BACKOFF).await;
                }
                Step::Discovery(received) => {
                    if let Some(discovery) = self.discovery.as_mut() {
                        discovery.note_received(&received);
                    }
                    match received {
                        Ok((len, from)) => self.on_advert(&buffer[..len], from),
                        Err(error) => {
                            tracing::warn!(%error, "discovery receive failed");
                            tokio::time::sleep(RECV_ERROR_BACKOFF).await;
                        }
                    }
                }
            }
            self.flush().await?;
            self.flush_io().await;
        }
        if let Err(error) = self.replication.persist(unix_millis()) {
            tracing::warn!(%error, "cannot save the replicated state at shutdown");
        }
        if let Some(kv) = &self.kv {
            kv.shutdown().await;
        }
        self.links.close();
        tracing::info!(node = %self.node_id(), "stopped");
        Ok(())
    }

    async fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Datagram { from, bytes, .. } if dataplane::is_data(&bytes) => {
                self.on_data(from, &mut bytes.to_vec());
            }
            LinkEvent::Datagram {
                from,
                connection_id,
                bytes,
            } if transport::channel::Offer::is_offer(&bytes) => {
                if let (Some(offer), Some(link)) = (
                    transport::channel::Offer::decode(&bytes),
                    self.active.get(&from),
                ) {
                    let remote = link.info.remote;
                    let now_ms = self.uptime_ms();
                    self.channel
                        .offer_received(&from, connection_id, remote, offer, now_ms);
                }
            }
            LinkEvent::Datagram { from, bytes, .. } if replication::is_crdt(&bytes) => {
                self.replication
                    .handle_datagram(from, &bytes, unix_millis());
            }
            LinkEvent::Datagram { from, bytes, .. } => self.on_datagram(from, &bytes),
            LinkEvent::Up { link, connection } => self.on_link_up(link, connection),
            LinkEvent::Down {
                node,
                connection_id,
                reason,
            } => {
                if self
                    .active
                    .get(&node)
                    .is_some_and(|active| active.info.connection_id == connection_id)
                {
                    if let Some(link) = self.active.remove(&node) {
                        self.counters.retire(&link.connection);
                    }
                    self.replication.remove_peer(node);
                    if let Some(kv) = &self.kv {
                        kv.set_link(node, None);
                    }
                    self.channel.link_down(&node);
                    tracing::debug!(peer = %node.short(), %reason, "link down");
                }
            }
            LinkEvent::Stream { from, bytes } if crate::healing::report::is_report(&bytes) => {
                self.heal_step(None, Some((from, &bytes)));
            }
            LinkEvent::Stream { from, bytes } => self.on_directory_batch(from, &bytes),
            LinkEvent::Join { connection } => self.serve_join(connection),
            LinkEvent::Renew {
                link,
                svid,
                connection,
            } => self.serve_renew(&link, svid, connection),
        }
    }

    /// A packet from a local program for another node's overlay address.
    fn on_tun_packet(&mut self, packet: &[u8]) {
        self.data.data_from_tun += 1;
        let Some((_, destination)) = dataplane::ipv6_addresses(packet) else {
            self.data.data_malformed += 1;
            return;
        };
        let destination = match self.overlay_node(&destination) {
            Some(node) => node,
            None => {
                self.data.data_no_route += 1;
                self.answer_icmp(
                    packet,
                    dataplane::ICMP6_UNREACHABLE,
                    dataplane::UNREACHABLE_NO_ROUTE,
                    0,
                );
                return;
            }
        };
        if self.router.next_hop(&destination).is_none() {
            self.data.data_no_route += 1;
            self.answer_icmp(
                packet,
                dataplane::ICMP6_UNREACHABLE,
                dataplane::UNREACHABLE_NO_ROUTE,
                0,
            );
            return;
        }
        let now_ms = self.uptime_ms();
        if let Some(mtu) = self.path_mtus.limit(&destination, now_ms)
            && packet.len() > mtu
        {
            self.data.data_too_big += 1;
            self.answer_icmp(
                packet,
                dataplane::ICMP6_PACKET_TOO_BIG,
                0,
                u32::try_from(mtu).unwrap_or(u32::MAX),
            );
            return;
        }
        // Checked before sealing, against both limits at once (the next link's room and the
        // session's largest packet), so one Packet Too Big gives the MTU that fits.
        let room = self
            .router
            .next_hop(&destination)
            .and_then(|hop| self.link_room(&hop))
            .map(|room| room.min(session::MAX_PACKET_BYTES + dataplane::DATA_HEADER_BYTES));
        let outcome = match room {
            Some(room)
                if packet.len()
                    + dataplane::SESSION_OVERHEAD_BYTES
                    + dataplane::DATA_HEADER_BYTES
                    > room =>
            {
                DataSend::TooBig(room)
            }
            _ => self.seal_and_send(destination, dataplane::PAYLOAD_IPV6, packet),
        };
        match outcome {
            DataSend::Sent => {}
            DataSend::NoRoute => {
                self.data.data_no_route += 1;
                self.answer_icmp(
                    packet,
                    dataplane::ICMP6_UNREACHABLE,
                    dataplane::UNREACHABLE_NO_ROUTE,
                    0,
                );
            }
            DataSend::TooBig(room) => {
                self.data.data_too_big += 1;
                let mtu = dataplane::overlay_mtu(room);
                self.answer_icmp(
                    packet,
                    dataplane::ICMP6_PACKET_TOO_BIG,
                    0,
                    u32::try_from(mtu).unwrap_or(u32::MAX),
                );
            }
        }
    }

    /// A data packet from a link: delivered here or relayed.
    fn on_data(&mut self, from: NodeId, packet: &mut [u8]) {
        let Some((header, inner)) = dataplane::decode(packet) else {
            self.data.data_malformed += 1;
            return;
        };
        let is_notice = dataplane::is_notice(inner);
        if header.destination == self.node_id() {
            if is_notice {
                self.on_too_big_notice(header.source, inner);
            } else {
                self.open_and_deliver(header.source, inner);
            }
            return;
        }
        if !dataplane::take_hop(packet) {
            self.data.data_hop_limit += 1;
            return;
        }
        tracing::trace!(from = %from.short(), to = %header.destination.short(), "relaying data");
        match self.send_data(&header.destination, packet) {
            DataSend::Sent => self.data.data_forwarded += 1,
            DataSend::NoRoute => self.data.data_no_route += 1,
            DataSend::TooBig(room) => {
                self.data.data_too_big += 1;
                if !is_notice {
                    self.send_too_big_notice(header.source, header.destination, room);
                }
            }
        }
    }

    /// Tells `source` that its packets for `destination` do not fit the next link here: the
    /// inner packet is sealed end to end, so only its source node can answer the program that
    /// sent it with Packet Too Big.
    fn send_too_big_notice(&mut self, source: NodeId, destination: NodeId, room: usize) {
        if !self.path_mtus.may_notify(self.uptime_ms()) {
            return;
        }
        let mtu = u16::try_from(dataplane::overlay_mtu(room)).unwrap_or(u16::MAX);
        let header = DataHeader {
            hop_limit: dataplane::DATA_HOP_LIMIT,
            source: self.node_id(),
            destination: source,
        };
        let notice = dataplane::encode(&header, &dataplane::too_big_notice(&destination, mtu));
        if matches!(self.send_data(&source, &notice), DataSend::Sent) {
            self.data.too_big_notices_sent += 1;
        }
    }

    /// A relay's notice that this node's packets for a destination were too big for it. Any
    /// member relaying our packets could send one, and it could as well drop them: a notice
    /// only ever makes packets smaller, and never below IPv6's minimum MTU.
    fn on_too_big_notice(&mut self, relay: NodeId, body: &[u8]) {
        let Some((destination, mtu)) = dataplane::decode_too_big_notice(body) else {
            self.data.too_big_notices_ignored += 1;
            return;
        };
        let now_ms = self.uptime_ms();
        if self.path_mtus.learn(destination, mtu, now_ms) {
            self.data.too_big_notices_applied += 1;
            tracing::debug!(relay = %relay.short(), destination = %destination.short(), mtu, "path MTU lowered");
        } else {
            self.data.too_big_notices_ignored += 1;
        }
    }

    fn uptime_ms(&self) -> u64 {
        u64::try_from(self.clock.uptime().as_millis()).unwrap_or(u64::MAX)
    }

    /// Encrypts `body` (tagged with its payload kind) for `destination` in its end-to-end
    /// session and sends the result, plus any handshake or queued packets the session produced.
    fn seal_and_send(&mut self, destination: NodeId, kind: u8, body: &[u8]) -> DataSend {
        let mut plaintext = Vec::with_capacity(1 + body.len());
        plaintext.push(kind);
        plaintext.extend_from_slice(body);
        let outcome = match self
            .sessions
            .encrypt(destination, &plaintext, unix_micros())
        {
            Ok(session::Outgoing::Sealed(sealed)) => self.send_session_packet(destination, &sealed),
            Ok(session::Outgoing::Queued) => DataSend::Sent,
            Err(session::SessionError::TooLarge(_)) => {
                DataSend::TooBig(session::MAX_PACKET_BYTES + dataplane::DATA_HEADER_BYTES)
            }
            Err(error) => {
                tracing::debug!(%error, peer = %destination.short(), "payload not sealed");
                self.data.session_refused += 1;
                DataSend::Sent
            }
        };
        self.flush_sessions();
        outcome
    }

    fn send_session_packet(&mut self, destination: NodeId, sealed: &[u8]) -> DataSend {
        let header = DataHeader {
            hop_limit: dataplane::DATA_HOP_LIMIT,
            source: self.node_id(),
            destination,
        };
        self.send_data(&destination, &dataplane::encode(&header, sealed))
    }

    /// Sends the sessions' handshake messages and flushed queues.
    fn flush_sessions(&mut self) {
        while let Some(transmit) = self.sessions.poll_transmit() {
            if let DataSend::NoRoute = self.send_session_packet(transmit.to, &transmit.bytes) {
                self.data.data_no_route += 1;
            }
        }
    }

    /// A session packet for this node: authenticated and decrypted, then delivered by kind.
    fn open_and_deliver(&mut self, source: NodeId, sealed: &[u8]) {
        let opened = self
            .sessions
            .handle_incoming(&self.directory, source, sealed, unix_micros());
        self.flush_sessions();
        let (peer, plaintext) = match opened {
            Ok(session::Incoming::Data { peer, plaintext }) => (peer, plaintext),
            Ok(_) => return,
            Err(reason) => {
                tracing::debug!(?reason, peer = %source.short(), "session packet dropped");
                return;
            }
        };
        let Some((&kind, body)) = plaintext.split_first() else {
            self.data.data_malformed += 1;
            return;
        };
        match kind {
            dataplane::PAYLOAD_IPV6 => self.deliver_ipv6(peer, body),
            dataplane::PAYLOAD_APP => match dataplane::app_body(body) {
                Some((port, payload)) => {
                    let view = DatagramView {
                        from: peer,
                        port,
                        payload_hex: hex::encode(payload),
                        received_unix_ms: unix_millis(),
                    };
                    self.deliver_datagram(view);
                }
                None => self.data.data_malformed += 1,
            },
            _ => self.data.data_malformed += 1,
        }
    }

    fn deliver_ipv6(&mut self, peer: NodeId, packet: &[u8]) {
        match dataplane::ipv6_addresses(packet) {
            Some((source, _)) if source == peer.overlay_addr() => {}
            Some(_) => {
                self.data.data_spoofed_source += 1;
                return;
            }
            None => {
                self.data.data_malformed += 1;
                return;
            }
        }
        match &self.tun {
            Some(_) => self.tun_writer.queue(packet),
            None => self.data.data_without_tun += 1,
        }
    }

    fn deliver_datagram(&mut self, view: DatagramView) {
        if self.inbox.len() >= INBOX_CAPACITY {
            self.inbox.pop_front();
            self.data.datagrams_inbox_overflow += 1;
        }
        self.data.datagrams_delivered += 1;
        self.inbox.push_back(view);
    }

    fn send_app_datagram(&mut self, to: NodeId, port: u16, payload: &[u8]) -> SendOutcome {
        if payload.len() > dataplane::MAX_APP_PAYLOAD {
            return SendOutcome::TooBig;
        }
        if to == self.node_id() {
            self.deliver_datagram(DatagramView {
                from: to,
                port,
                payload_hex: hex::encode(payload),
                received_unix_ms: unix_millis(),
            });
            return SendOutcome::Local;
        }
        if self.router.next_hop(&to).is_none() {
            return SendOutcome::NoRoute;
        }
        let mut body = port.to_be_bytes().to_vec();
        body.extend_from_slice(payload);
        match self.seal_and_send(to, dataplane::PAYLOAD_APP, &body) {
            DataSend::Sent => SendOutcome::Sent,
            DataSend::NoRoute => SendOutcome::NoRoute,
            DataSend::TooBig(_) => SendOutcome::TooBig,
        }
    }

    fn take_datagrams(&mut self, port: Option<u16>) -> Vec<DatagramView> {
        match port {
            None => self.inbox.drain(..).collect(),
            Some(port) => {
                let (taken, kept): (Vec<DatagramView>, Vec<DatagramView>) = self
                    .inbox
                    .drain(..)
                    .partition(|datagram| datagram.port == port);
                self.inbox.extend(kept);
                taken
            }
        }
    }

    fn send_data(&mut self, destination: &NodeId, packet: &[u8]) -> DataSend {
        let Some(link) = self
            .router
            .next_hop(destination)
            .and_then(|hop| self.active.get(&hop))
        else {
            return DataSend::NoRoute;
        };
        let hop = link.info.node_id();
        let room = self.link_room(&hop).unwrap_or(0);
        if packet.len() > room {
            return DataSend::TooBig(room);
        }
        if self.channel.queue(&hop, packet) || self.links.send_datagram(&link.connection, packet) {
            self.data.data_sent += 1;
        }
        DataSend::Sent
    }

    /// The largest data packet the link to the neighbour `hop` carries: what the link channel
    /// carries (in fragments if need be), or else one QUIC datagram.
    fn link_room(&self, hop: &NodeId) -> Option<usize> {
        self.channel.room(hop).or_else(|| {
            self.active
                .get(hop)
                .and_then(|link| link.connection.max_datagram_size())
        })
    }

    fn answer_icmp(&mut self, offending: &[u8], kind: u8, code: u8, field: u32) {
        if self.tun.is_none() {
            return;
        }
        if let Some(error) = dataplane::icmp6_error(
            self.router.local_id().overlay_addr(),
            offending,
            kind,
            code,
            field,
        ) {
            self.tun_writer.queue(&error);
        }
    }

    /// Datagrams from the link channel: opened with their link's keys, then handled exactly
    /// like the same payload arriving as a QUIC datagram on that link.
    fn on_channel_datagrams(&mut self, received: &transport::channel::Received) {
        self.channel.counters.channel_rx_batches += 1;
        let now_ms = unix_millis();
        for index in 0..received.len() {
            let Some((datagram, _source)) = self.channel_socket.datagram(received, index) else {
                continue;
            };
            if transport::fragment::is_fragment(datagram) {
                let Some(mut packet) = self.channel.reassemble(datagram, now_ms) else {
                    continue;
                };
                if let Some((peer, range)) = self.channel.open(&mut packet) {
                    self.on_channel_payload(peer, &mut packet[range]);
                }
                self.channel.recycle(packet);
                continue;
            }
            let Some((peer, range)) = self.channel.open(datagram) else {
                continue;
            };
            // The receive buffers are only reused by the next receive, after this loop; a
            // copy-free hand-over would need them outside `self` while the handlers run.
            let payload = &mut datagram[range];
            if replication::is_crdt(payload) {
                self.replication
                    .handle_datagram(peer, payload, unix_millis());
            } else if dataplane::is_data(payload) {
                let mut packet = std::mem::take(&mut self.relay_scratch);
                packet.clear();
                packet.extend_from_slice(payload);
                self.on_data(peer, &mut packet);
                self.relay_scratch = packet;
            } else {
                let bytes = ChannelLinks::restore_routing(&peer, payload)
                    .unwrap_or_else(|| payload.to_vec());
                self.on_datagram(peer, &bytes);
            }
        }
    }

    /// An opened channel payload that does not borrow the receive buffers (a reassembled
    /// packet): handled like the same payload in one datagram.
    fn on_channel_payload(&mut self, peer: NodeId, payload: &mut [u8]) {
        if replication::is_crdt(payload) {
            self.replication
                .handle_datagram(peer, payload, unix_millis());
        } else if dataplane::is_data(payload) {
            self.on_data(peer, payload);
        } else {
            let bytes =
                ChannelLinks::restore_routing(&peer, payload).unwrap_or_else(|| payload.to_vec());
            self.on_datagram(peer, &bytes);
        }
    }

    /// Sends the channel batches and writes the TUN packets that the last input produced.
    async fn flush_io(&mut self) {
        self.channel.flush(&self.channel_socket).await;
        if let Some(tun) = &self.tun
            && !self.tun_writer.is_empty()
        {
            match self.tun_writer.flush(tun).await {
                Ok(written) => self.data.data_to_tun += written as u64,
                Err(error) => {
                    self.data.tun_errors += 1;
                    tracing::debug!(%error, "TUN write failed");
                }
            }
        }
    }

    fn overlay_node(&mut self, address: &std::net::Ipv6Addr) -> Option<NodeId> {
        if self.overlay_stale {
            let destinations: Vec<NodeId> = self
                .router
                .routes()
                .into_iter()
                .map(|route| route.destination)
                .collect();
            self.overlay.rebuild(destinations.into_iter());
            self.overlay_stale = false;
        }
        self.overlay.node(address)
    }

    /// Reads the carrier of every discovery interface; on a loss, the neighbours linked over that
    /// interface are declared dead at once.
    fn check_carrier(&mut self) {
        let Some(discovery) = &self.discovery else {
            return;
        };
        let interfaces: Vec<(String, u32)> = discovery
            .interfaces()
            .iter()
            .map(|interface| (interface.name.clone(), interface.index))
            .collect();
        for (name, index) in interfaces {
            let up = std::fs::read_to_string(format!("/sys/class/net/{name}/carrier"))
                .is_ok_and(|text| text.trim() == "1");
            let was_up = self.carrier.insert(index, up).unwrap_or(true);
            if was_up && !up {
                let lost: Vec<NodeId> = self
                    .active
                    .iter()
                    .filter(|(_, link)| matches!(link.info.remote, SocketAddr::V6(v6) if v6.scope_id() == index))
                    .map(|(peer, _)| *peer)
                    .collect();
                let now = self.clock.now();
                for peer in lost {
                    self.counters.links_lost_carrier += 1;
                    tracing::warn!(interface = %name, peer = %peer.short(), "carrier lost; neighbour declared dead");
                    self.router.handle_link_lost(now, &peer);
                }
            }
        }
    }

    fn on_datagram(&mut self, from: NodeId, bytes: &[u8]) {
        // The header's sender must be the peer the link's certificate names.
        if let Ok(view) = wire::PacketView::parse(bytes)
            && view.sender != from
        {
            self.counters.spoofed_sender += 1;
            return;
        }
        if let Err(reason) = self.router.handle_datagram(self.clock.now(), bytes) {
            // Counted in the router's stats; debug only so the network cannot flood the log.
            tracing::debug!(peer = %from.short(), %reason, "dropped datagram");
        }
    }

    fn on_link_up(&mut self, link: LinkInfo, connection: quinn::Connection) {
        let peer = link.node_id();
        let now = self.clock.now();
        if self.security.state.revocations.contains(&peer) {
            connection.close(CLOSE_REVOKED.into(), b"revoked");
            self.counters.links_closed_revoked += 1;
            return;
        }
        if let Some(existing) = self.active.get(&peer) {
            let alive = existing.connection.close_reason().is_none();
            let simultaneous = now.saturating_since(existing.established) < DUPLICATE_WINDOW;
            let keep_existing =
                alive && simultaneous && existing.info.outbound == (self.node_id() < peer);
            self.counters.duplicate_links_closed += 1;
            if keep_existing {
                connection.close(CLOSE_DUPLICATE.into(), b"duplicate");
                return;
            }
            existing
                .connection
                .close(CLOSE_DUPLICATE.into(), b"duplicate");
            self.counters.retire(&existing.connection);
        } else if self.active.len() >= MAX_LINKS {
            self.counters.links_table_full += 1;
            connection.close(CLOSE_DUPLICATE.into(), b"too many links");
            return;
        }
        tracing::info!(peer = %peer.short(), remote = %link.remote, kx = %link.kx_group, "link up");
        self.counters.links_established += 1;
        // Hello over the new link now, so the router senses the neighbour without waiting up to
        // a hello interval.
        let now = self.clock.now();
        self.router.hello_now(now);
        self.router.handle_timeout(now);
        self.replication.add_peer(peer, unix_millis());
        if let Some(kv) = &self.kv {
            kv.set_link(peer, Some(&connection));
        }
        if let Some(offer) = self.channel.link_up(peer, &connection, link.outbound) {
            self.links.send_datagram(&connection, &offer.encode());
        }
        self.active.insert(
            peer,
            ActiveLink {
                info: link,
                connection,
                established: now,
            },
        );
    }

    /// Records and revocations used to arrive as batches on link streams; they now travel in
    /// the CRDT replica, so a batch is counted and otherwise ignored.
    fn on_directory_batch(&mut self, from: NodeId, batch: &[u8]) {
        self.counters.directory_batches_ignored += 1;
        tracing::debug!(peer = %from.short(), bytes = batch.len(), "directory batch ignored");
    }

    /// Applies what the replica's signature checks accepted: directory entries, revocations
    /// (closing links at once) and a newer CA-signed link policy.
    fn apply_verified(&mut self) {
        for verified in self.replication.take_verified() {
            match verified {
                Verified::Record(record, bytes) => {
                    if self.directory.insert_newer(*record, bytes) {
                        // OGMs that arrived before their originator's record are verified now.
                        self.router.handle_keys_learned(self.clock.now());
                    }
                }
                Verified::Revocation(node, bytes) => {
                    if self.directory.add_revocation(node, bytes) {
                        tracing::warn!(node = %node.short(), "node revoked");
                    }
                    self.apply_revocation(node);
                }
                Verified::Policy(policy) => self.apply_policy(*policy),
            }
        }
    }

    /// Replaces the link policy with a newer CA-signed one and closes links it now denies.
    fn apply_policy(&mut self, policy: identity::SignedPolicy) {
        if self
            .security
            .policy_issued_at_ms
            .is_some_and(|held| held >= policy.issued_at_ms)
        {
            return;
        }
        self.security.policy_issued_at_ms = Some(policy.issued_at_ms);
        self.security.policy_updates += 1;
        tracing::info!(
            issued_at_ms = policy.issued_at_ms,
            "link policy replaced by the CA's"
        );
        let denied: Vec<NodeId> = self
            .active
            .iter()
            .filter(|(_, link)| {
                policy.policy.decide(&link.info.spiffe_id.to_string()) == identity::Decision::Deny
            })
            .map(|(peer, _)| *peer)
            .collect();
        match self.security.state.policy.write() {
            Ok(mut held) => *held = policy.policy,
            Err(poisoned) => *poisoned.into_inner() = policy.policy,
        }
        for peer in denied {
            if let Some(link) = self.active.remove(&peer) {
                self.counters.retire(&link.connection);
                link.connection
                    .close(transport::links::CLOSE_POLICY.into(), b"policy");
                self.counters.links_closed_policy += 1;
                self.replication.remove_peer(peer);
                tracing::warn!(peer = %peer.short(), "link closed: the link policy denies it");
            }
        }
    }

    /// Sends what the replica produced to the neighbours and applies what it verified.
    fn flush_replication(&mut self) {
        while let Some(transmit) = self.replication.poll_transmit() {
            match self.active.get(&transmit.to) {
                Some(link) => {
                    if !self.channel.queue(&transmit.to, &transmit.payload) {
                        self.links
                            .send_datagram(&link.connection, &transmit.payload);
                    }
                }
                None => self.counters.no_link_for_neighbour += 1,
            }
        }
        self.apply_verified();
    }

    fn apply_revocation(&mut self, node: NodeId) {
        if self.security.state.revocations.insert(node).is_err() {
            tracing::error!("revocation set full; revocation not applied");
            return;
        }
        if node == self.node_id() {
            tracing::error!("this node has been revoked by the CA; peers will refuse its links");
        } else {
            self.router
                .handle_originator_revoked(self.clock.now(), &node);
        }
        if let Some(kv) = &self.kv {
            kv.set_link(node, None);
        }
        self.channel.link_down(&node);
        if let Some(link) = self.active.remove(&node) {
            self.counters.retire(&link.connection);
            link.connection.close(CLOSE_REVOKED.into(), b"revoked");
            self.counters.links_closed_revoked += 1;
            tracing::warn!(peer = %node.short(), "link closed: peer revoked");
        }
        self.replication.remove_peer(node);
    }

    fn on_advert(&mut self, bytes: &[u8], from: SocketAddr) {
        let Some(advert) = Advert::decode(bytes) else {
            self.counters.bad_adverts += 1;
            return;
        };
        if advert.node_id == self.node_id() || self.active.contains_key(&advert.node_id) {
            return;
        }
        let address = SocketAddr::new(from.ip(), advert.link_port);
        let address = match (address, from) {
            (SocketAddr::V6(mut v6), SocketAddr::V6(source)) => {
                v6.set_scope_id(source.scope_id());
                SocketAddr::V6(v6)
            }
            (address, _) => address,
        };
        if !self.dial_targets.contains_key(&address) && self.dial_targets.len() < MAX_DIAL_TARGETS {
            self.dial_targets.insert(
                address,
                DialTarget {
                    expected: Some(advert.node_id),
                    last_dial: None,
                },
            );
        }
        self.dial_due(address);
    }

    fn dial_due(&mut self, address: SocketAddr) {
        let now = self.clock.now();
        let Some(target) = self.dial_targets.get_mut(&address) else {
            return;
        };
        if let Some(expected) = target.expected
            && self.active.contains_key(&expected)
        {
            return;
        }
        if target
            .last_dial
            .is_some_and(|last| now.saturating_since(last) < REDIAL_INTERVAL)
        {
            return;
        }
        target.last_dial = Some(now);
        self.links.dial(address, target.expected);
    }

    async fn housekeeping(&mut self) {
        let linked_addresses: Vec<SocketAddr> = self.dial_targets.keys().copied().collect();
        for address in linked_addresses {
            let unlinked_anonymous = self.dial_targets.get(&address).is_some_and(|target| {
                target.expected.is_none()
                    && !self.active.values().any(|link| link.info.remote == address)
            });
            let expected_missing = self
                .dial_targets
                .get(&address)
                .and_then(|target| target.expected)
                .is_some_and(|node| !self.active.contains_key(&node));
            if unlinked_anonymous || expected_missing {
                self.dial_due(address);
            }
        }
        self.advert_ticks = self.advert_ticks.wrapping_add(1);
        // Once every discovery interface has a link, adverts only have to reach nodes that
        // missed them: a new node adverts every tick itself and is dialled when heard.
        let every_interface_linked = self.discovery.as_ref().is_some_and(|discovery| {
            discovery.interfaces().iter().all(|interface| {
                self.active.values().any(|link| {
                    matches!(link.info.remote, SocketAddr::V6(v6) if v6.scope_id() == interface.index)
                })
            })
        });
        let advert_due =
            !every_interface_linked || self.advert_ticks.is_multiple_of(LINKED_ADVERT_TICKS);
        if let Some(discovery) = self.discovery.as_mut().filter(|_| advert_due) {
            let advert = Advert {
                node_id: self.router.local_id(),
                link_port: self.listen.port(),
            };
            discovery.send_discovery(&advert.encode()).await;
        }
        let now_ms = self.uptime_ms();
        self.channel.expire_reassemblies(unix_millis());
        for (peer, offer) in self.channel.offers_due(now_ms) {
            if let Some(link) = self.active.get(&peer) {
                self.links.send_datagram(&link.connection, &offer.encode());
            }
        }
        self.poll_ca_revocations();
        self.publish_ca_policy();
        self.replication.persist_if_due(unix_millis());
        self.renew_if_due().await;
        self.sessions.handle_timeout(unix_micros());
        self.flush_sessions();
    }

    fn poll_ca_revocations(&mut self) {
        let Some(ca) = self.security.ca.clone() else {
            return;
        };
        let state_file = membership::ca_dir(&self.security.config).join("state.json");
        let modified = std::fs::metadata(&state_file)
            .and_then(|meta| meta.modified())
            .ok();
        if modified.is_none() || modified == self.security.ca_state_modified {
            return;
        }
        self.security.ca_state_modified = modified;
        let revocations = match ca.revocations() {
            Ok(revocations) => revocations,
            Err(error) => {
                tracing::warn!(%error, "cannot read the CA's revocations");
                return;
            }
        };
        for signed in revocations {
            let Ok(revocation) = identity::Revocation::verify(&signed, &self.security.state) else {
                continue;
            };
            match self
                .replication
                .publish_revocation(revocation.node_id, &signed, unix_millis())
            {
                Ok(true) => {
                    tracing::warn!(node = %revocation.node_id.short(), "node revoked by the CA");
                    self.directory.add_revocation(revocation.node_id, signed);
                    self.apply_revocation(revocation.node_id);
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot publish a revocation"),
            }
        }
    }

    /// On the CA node: publishes the policy file mesh-wide when it changed.
    fn publish_ca_policy(&mut self) {
        if let (Some(ca), Some(path)) = (&self.security.ca, &self.security.config.policy_file)
            && let Some(policy) = self.replication.publish_policy_file(
                ca,
                path,
                &self.security.state,
                &mut self.security.policy_file_modified,
                unix_millis(),
            )
        {
            self.apply_policy(policy);
        }
    }

    async fn renew_if_due(&mut self) {
        let now = self.clock.now();
        if let Some(task) = &self.security.renewal
            && task.is_finished()
        {
            let result = match self.security.renewal.take() {
                Some(task) => task.await.unwrap_or_else(|error| Err(error.to_string())),
                None => return,
            };
            match result {
                Ok(svid) => self.install_svid(&svid),
                Err(error) => {
                    self.counters.renewals_failed += 1;
                    tracing::warn!(%error, "SVID renewal failed; will retry");
                    self.security.renew_after = now + RENEW_RETRY;
                }
            }
            return;
        }
        if self.security.renewal.is_some() || now < self.security.renew_after {
            return;
        }
        if let Some(ca) = self.security.ca.clone() {
            match ca.issue_own(
                &self.security.keys,
                unix_seconds(),
                self.security.config.svid_ttl_seconds,
            ) {
                Ok(svid) => self.install_svid(&svid),
                Err(error) => {
                    self.counters.renewals_failed += 1;
                    tracing::warn!(%error, "SVID renewal failed; will retry");
                    self.security.renew_after = now + RENEW_RETRY;
                }
            }
            return;
        }
        let Some(ca_node) = self.security.membership.ca_node else {
            return;
        };
        let links = self.links.clone();
        self.security.renewal = Some(tokio::spawn(async move {
            let answer = links
                .request(ca_node, identity::tls::ALPN_RENEW, b"{}")
                .await
                .map_err(|error| error.to_string())?;
            membership::read_renewal(&answer).map_err(|error| error.to_string())
        }));
    }

    fn install_svid(&mut self, svid: &[u8]) {
        let now_unix = unix_seconds();
        let security = &mut self.security;
        let path = security.config.data_dir.join(membership::SVID_NAME);
        let result = membership::check_own_svid(
            &path,
            svid,
            &security.membership.bundle,
            &security.keys,
            now_unix,
        )
        .and_then(|info| {
            security
                .certificate
                .replace(
                    &security.keys,
                    svid,
                    &security.membership.bundle.ca_certificate,
                )
                .map_err(|error| membership::MembershipError::Join(error.to_string()))?;
            Membership::store_svid(&security.config.data_dir, svid)?;
            Ok(info)
        });
        match result {
            Ok(info) => {
                security.membership.svid = svid.to_vec();
                security.membership.svid_info = info;
                security.renewals += 1;
                security.renew_after = renewal_time(&self.clock, &security.membership, now_unix);
                tracing::info!(
                    not_after = security.membership.svid_info.not_after,
                    "SVID renewed"
                );
                let listen = self.listen;
                match self
                    .security
                    .publish_own_record(&mut self.directory, listen)
                {
                    Ok(bytes) => {
                        if let Err(error) = self.replication.publish_record(&bytes, unix_millis()) {
                            tracing::warn!(%error, "cannot publish the node record");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot sign the node record"),
                }
            }
            Err(error) => {
                self.counters.renewals_failed += 1;
                tracing::warn!(%error, "renewed SVID refused");
                self.security.renew_after = self.clock.now() + RENEW_RETRY;
            }
        }
    }

    fn serve_join(&mut self, connection: quinn::Connection) {
        let Some(ca) = self.security.ca.clone() else {
            connection.close(1u32.into(), b"not a CA");
            return;
        };
        self.counters.joins_served += 1;
        let ttl = self.security.config.svid_ttl_seconds;
        tokio::spawn(async move {
            let served = transport::links::serve_one(&connection, |request| {
                let answer = membership::answer_join(&ca, &request, unix_seconds(), ttl);
                if let membership::CaAnswer::Refused(reason) = &answer {
                    tracing::warn!(%reason, "join refused");
                }
                serde_json::to_vec(&answer).unwrap_or_default()
            })
            .await;
            if let Err(error) = served {
                tracing::debug!(%error, "join request not served");
            }
        });
    }

    fn serve_renew(
        &mut self,
        link: &LinkInfo,
        svid: identity::SvidInfo,
        connection: quinn::Connection,
    ) {
        let Some(ca) = self.security.ca.clone() else {
            connection.close(1u32.into(), b"not a CA");
            return;
        };
        let ttl = self.security.config.svid_ttl_seconds;
        tracing::debug!(peer = %link.node_id().short(), "renewal requested");
        tokio::spawn(async move {
            let served = transport::links::serve_one(&connection, |_| {
                let answer = membership::answer_renew(&ca, &svid, unix_seconds(), ttl);
                serde_json::to_vec(&answer).unwrap_or_default()
            })
            .await;
            if let Err(error) = served {
                tracing::debug!(%error, "renewal not served");
            }
        });
    }

    /// Sends everything the router produced, logs its events and keeps the sequence-number
    /// reservation ahead of the numbers in use.
    async fn flush(&mut self) -> Result<(), NodeError> {
        self.flush_replication();
        while let Some(transmit) = self.router.poll_transmit() {
            match transmit.to {
                Destination::Neighbour(id) => match self.active.get(&id) {
                    Some(link) => {
                        if !self.channel.queue(&id, &transmit.payload) {
                            self.links
                                .send_datagram(&link.connection, &transmit.payload);
                        }
                    }
                    None => self.counters.no_link_for_neighbour += 1,
                },
                Destination::Discovery => {
                    // Hellos only find neighbours: a link whose neighbour answers probes both
                    // ways, and that is past its start, needs none (its probes prove it).
                    let now = self.clock.now();
                    let alive: std::collections::HashSet<NodeId> = self
                        .router
                        .neighbours()
                        .into_iter()
                        .filter(|neighbour| neighbour.alive)
                        .map(|neighbour| neighbour.id)
                        .collect();
                    for (peer, link) in &self.active {
                        if alive.contains(peer)
                            && now.saturating_since(link.established) > HELLO_ON_NEW_LINKS
                        {
                            self.counters.hellos_suppressed += 1;
                            continue;
                        }
                        if !self.channel.queue(peer, &transmit.payload) {
                            self.links
                                .send_datagram(&link.connection, &transmit.payload);
                        }
                    }
                }
            }
        }
        while let Some(event) = self.router.poll_event() {
            if matches!(event, Event::RouteChanged { .. }) {
                self.overlay_stale = true;
            }
            if let Some(kv) = &self.kv {
                kv.on_route_event(&event);
            }
            self.log_event(&event);
        }
        if let Some(seq) = self.router.newest_seq(&self.router.local_id())
            && self.seq_store.ensure_covers(seq)?
        {
            tracing::debug!(
                reserved_until = self.seq_store.reserved_until(),
                "reserved more sequence numbers"
            );
        }
        Ok(())
    }

    /// Gives the key-value store the whole routing table (routing events may be dropped under
    /// load; this repairs its copy every tick).
    fn kv_refresh_routes(&self) {
        if let Some(kv) = &self.kv {
            kv.set_routes(
                self.router
                    .routes()
                    .into_iter()
                    .map(|route| (route.destination, route.next_hop)),
            );
        }
    }

    fn log_event(&self, event: &Event) {
        match event {
            Event::NeighbourUp(id) => {
                tracing::info!(neighbour = %id.short(), address = ?self.address_of(id), "neighbour up");
            }
            Event::NeighbourDown(id) => tracing::warn!(neighbour = %id.short(), "neighbour down"),
            Event::RouteChanged {
                destination,
                next_hop: Some(hop),
            } => {
                tracing::debug!(destination = %destination.short(), next_hop = %hop.short(), "route changed");
            }
            Event::RouteChanged {
                destination,
                next_hop: None,
            } => {
                tracing::info!(destination = %destination.short(), "destination unreachable");
            }
        }
    }

    fn log_start(&self) {
        let interfaces = self.discovery.as_ref().map_or(0, |d| d.interfaces().len());
        tracing::info!(
            node = %self.node_id(),
            spiffe_id = %self.security.membership.svid_info.spiffe_id,
            listen = %self.local_addr(),
            static_peers = self.static_peer_count,
            interfaces,
            ca = self.security.ca.is_some(),
            "node started"
        );
        if self.static_peer_count == 0 && interfaces == 0 && self.security.ca.is_none() {
            tracing::warn!(
                "no static peers and no discovery interfaces: this node cannot find neighbours"
            );
        }
    }

    fn address_of(&self, id: &NodeId) -> Option<SocketAddr> {
        self.active.get(id).map(|link| link.info.remote)
    }

    /// One step of the healing loop with the router at hand; sends the reports it queued.
    fn heal_step(&mut self, wake: Option<crate::healing::Wake>, report: Option<(NodeId, &[u8])>) {
        let counters = match &self.healing {
            None => return,
            Some(healing) if wake.is_some() && healing.counters_due() => {
                Some(self.exported_counters())
            }
            Some(_) => None,
        };
        let Some(healing) = self.healing.as_mut() else {
            return;
        };
        let now = self.clock.now();
        let directory = &self.directory;
        let keys = &self.security.keys;
        let key_of = |id: &NodeId| directory.record(id).map(|record| record.keys.ed25519);
        let sign = |message: &[u8]| keys.sign_ed25519(message);
        let mut port = crate::healing::MeshPort {
            router: &mut self.router,
            now,
            unix_ms: self.clock.unix_ms_of(now),
            linked: self.active.keys().copied().collect(),
            key_of: &key_of,
            sign: &sign,
            outbox: Vec::new(),
        };
        if let Some(counters) = counters {
            healing.observe_counters(&counters, now);
        }
        if let Some(wake) = wake {
            healing.handle(wake, &mut port);
        }
        if let Some((from, bytes)) = report {
            healing.receive_report(from, bytes, &mut port);
        }
        let outbox = std::mem::take(&mut port.outbox);
        let unix_ms = port.unix_ms;
        let summary = healing.summary_due(unix_ms);
        for (peer, bytes) in outbox {
            if let Some(link) = self.active.get(&peer) {
                self.links.send_stream(&link.connection, bytes);
            }
        }
        if let Some(summary) = summary {
            let signed = crate::healing::summary::encode(&summary, |message| {
                self.security.keys.sign_ed25519(message)
            });
            let published = match signed {
                Some(bytes) => self
                    .replication
                    .publish_incidents(&bytes, unix_ms)
                    .map_err(|e| e.to_string()),
                None => Err("larger than the summary bound".to_string()),
            };
            if let Err(error) = published {
                tracing::warn!(%error, "incident summary not published to the mesh");
            }
        }
    }

    /// The incidents of every node, from the summaries in the replicated `incidents` map
    /// whose signatures verify with the directory's keys; open ones first, newest first.
    fn mesh_incidents(&self) -> Vec<crate::healing::summary::MeshIncidentView> {
        use crate::healing::summary::{self, MeshIncidentView};
        let local = self.security.keys.node_id();
        let mut all = Vec::new();
        for (node, bytes) in self.replication.incident_summaries() {
            let key_of = |id: &NodeId| self.directory.record(id).map(|r| r.keys.ed25519);
            let Ok(summary) = summary::decode(&bytes, key_of) else {
                continue;
            };
            if summary.node != node {
                continue;
            }
            let reachable = node == local || self.router.next_hop(&node).is_some();
            for incident in summary.incidents {
                all.push(MeshIncidentView {
                    node,
                    node_reachable: reachable,
                    published_unix_ms: summary.published_unix_ms,
                    incident,
                });
            }
        }
        all.sort_by_key(|v| {
            (
                v.incident.closed_unix_ms.is_some(),
                std::cmp::Reverse(v.incident.opened_unix_ms),
            )
        });
        all
    }

    /// Reads node.yaml again and hands its checks and playbooks to the healing loop; a
    /// refusal is logged with its file, line and reason, and the loop keeps its set.
    fn reload_healing(
        &mut self,
    ) -> Result<crate::healing::ReloadOutcome, crate::handle::ReloadError> {
        use crate::handle::ReloadError;
        let Some(healing) = self.healing.as_mut() else {
            return Err(ReloadError::Disabled);
        };
        let file = self.security.config.source.clone();
        let result = crate::config::NodeConfig::load(&file)
            .map_err(|e| crate::healing::ReloadRefused::from_config(&e))
            .and_then(|config| healing.reload(&config.healing, &file, self.clock.now()));
        match result {
            Ok(outcome) => {
                tracing::info!(
                    file = %outcome.file,
                    checks = outcome.checks,
                    changed = ?outcome.checks_changed,
                    removed = ?outcome.checks_removed,
                    playbooks = outcome.playbooks,
                    restart_needed = ?outcome.restart_needed,
                    "healing checks and playbooks reloaded"
                );
                Ok(outcome)
            }
            Err(refused) => {
                tracing::warn!(file = %refused.file, line = ?refused.line, reason = %refused.reason, "healing reload refused; keeping the previous checks and playbooks");
                Err(ReloadError::Refused(refused))
            }
        }
    }

    /// Counters the healing loop watches (drops, refusals, errors), by name.
    fn exported_counters(&self) -> std::collections::BTreeMap<String, u64> {
        let mut all = counters(self.router.stats());
        all.extend(self.links.stats().snapshot());
        all.extend(counters(&self.counters));
        all.extend(counters(&self.data));
        all.extend(counters(self.directory.stats()));
        all
    }

    fn answer(&mut self, request: Request) {
        // A requester that gave up (timed out) has dropped its receiver; that is not an error.
        match request {
            Request::Status(reply) => drop(reply.send(self.status())),
            Request::Peers(reply) => drop(reply.send(self.peers())),
            Request::Routes(reply) => drop(reply.send(self.routes())),
            Request::Identity(reply) => drop(reply.send(self.identity_view())),
            Request::SendDatagram {
                to,
                port,
                payload,
                reply,
            } => drop(reply.send(self.send_app_datagram(to, port, &payload))),
            Request::TakeDatagrams { port, reply } => drop(reply.send(self.take_datagrams(port))),
            Request::Crdt(reply) => drop(reply.send(self.replication.view())),
            Request::Incidents { filter, reply } => ask_incident_store(
                self.healing.as_mut(),
                |tx| crate::healing::store::Job::List { filter, reply: tx },
                reply,
            ),
            Request::Incident { record_id, reply } => ask_incident_store(
                self.healing.as_mut(),
                |tx| crate::healing::store::Job::Get {
                    record_id,
                    reply: tx,
                },
                reply,
            ),
            Request::Subscribe(reply) => drop(
                reply.send(
                    self.healing
                        .as_ref()
                        .map(crate::healing::Healing::subscribe),
                ),
            ),
            Request::ReloadHealing(reply) => drop(reply.send(self.reload_healing())),
            Request::MeshIncidents(reply) => drop(reply.send(self.mesh_incidents())),
            Request::Notices(reply) => drop(
                reply.send(
                    self.healing
                        .as_ref()
                        .map(crate::healing::Healing::notices)
                        .unwrap_or_default(),
                ),
            ),
        }
    }

    fn status(&self) -> StatusView {
        let neighbours = self.router.neighbours();
        let mut links = self.links.stats().snapshot();
        links.extend(self.security.state.refusals.snapshot());
        links.extend(counters(&self.counters));
        links.extend(counters(self.directory.stats()));
        links.extend(self.replication.counters());
        links.insert("policy_updates".to_string(), self.security.policy_updates);
        links.extend(counters(&self.data));
        links.extend(counters(&self.channel.counters));
        links.insert("tun_write_dropped".to_string(), self.tun_writer.dropped);
        let sessions = self.sessions.stats();
        for (name, value) in [
            ("session_sent", sessions.sent),
            ("session_received", sessions.received),
            (
                "session_handshakes_completed",
                sessions.handshakes_completed,
            ),
            ("session_handshakes_answered", sessions.handshakes_answered),
            ("session_rekeys", sessions.rekeys),
            ("session_dropped_replayed", sessions.dropped_replayed),
            ("session_dropped_tampered", sessions.dropped_tampered),
            (
                "session_dropped_unknown_peer",
                sessions.dropped_unknown_peer,
            ),
            (
                "session_dropped_bad_signature",
                sessions.dropped_bad_signature,
            ),
            ("session_dropped_total", sessions.dropped_total()),
        ] {
            links.insert(name.to_string(), value);
        }
        links.insert("links_active".to_string(), self.active.len() as u64);
        let (active_udp_tx, active_udp_datagrams) =
            self.active
                .values()
                .fold((0, 0), |(bytes, datagrams), link| {
                    let sent = link.connection.stats().udp_tx;
                    (bytes + sent.bytes, datagrams + sent.datagrams)
                });
        // QUIC alone (handshakes, keep-alives, acknowledgements, streams, offers), so the
        // channel's share of link traffic can be told apart.
        links.insert(
            "link_quic_udp_tx_bytes".to_string(),
            self.counters.closed_links_udp_tx_bytes + active_udp_tx,
        );
        links.insert(
            "link_quic_udp_tx_datagrams".to_string(),
            self.counters.closed_links_udp_tx_datagrams + active_udp_datagrams,
        );
        // Everything links sent: QUIC (now mostly keep-alives and streams) and the channel.
        links.insert(
            "link_udp_tx_bytes".to_string(),
            self.counters.closed_links_udp_tx_bytes
                + active_udp_tx
                + self.channel.counters.channel_tx_bytes,
        );
        StatusView {
            node_id: self.node_id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: self.uptime_ms(),
            listen: self.local_addr(),
            interfaces: self
                .discovery
                .as_ref()
                .map(|discovery| {
                    discovery
                        .interfaces()
                        .iter()
                        .map(|interface| interface.name.clone())
                        .collect()
                })
                .unwrap_or_default(),
            healing: self.healing.as_ref().map(crate::healing::Healing::view),
            static_peers: self.static_peer_count,
            neighbours_alive: neighbours
                .iter()
                .filter(|neighbour| neighbour.alive)
                .count(),
            neighbours_known: neighbours.len(),
            routes: self.router.routes().len(),
            own_seq: self.router.newest_seq(&self.node_id()),
            seq_reserved_until: self.seq_store.reserved_until(),
            router: counters(self.router.stats()),
            transport: self
                .discovery
                .as_ref()
                .map(Transport::stats)
                .unwrap_or_default(),
            links,
        }
    }

    fn identity_view(&self) -> IdentityView {
        let info = &self.security.membership.svid_info;
        let now = unix_seconds();
        IdentityView {
            node_id: self.node_id(),
            spiffe_id: info.spiffe_id.to_string(),
            trust_domain: info.spiffe_id.trust_domain.to_string(),
            overlay_address: self.node_id().overlay_addr(),
            svid_not_before: info.not_before,
            svid_not_after: info.not_after,
            svid_expires_in_s: info.not_after - now,
            svid_renewals: self.security.renewals,
            fingerprints: self.security.keys.public().fingerprint(),
            bundle_hash: hex::encode(self.security.membership.bundle.hash()),
            pq_only: self.security.config.pq_only,
            is_ca: self.security.ca.is_some(),
            revoked_nodes: self.security.state.revocations.len(),
            node_records: self.directory.record_count(),
        }
    }

    fn peers(&self) -> Vec<PeerView> {
        let now = self.clock.now();
        self.router
            .neighbours()
            .into_iter()
            .map(|neighbour| {
                let link = self.active.get(&neighbour.id);
                PeerView {
                    id: neighbour.id,
                    address: link.map(|link| link.info.remote),
                    alive: neighbour.alive,
                    tq: neighbour.tq,
                    rx_quality: neighbour.rx_quality,
                    tx_quality: neighbour.tx_quality,
                    loss_pct: neighbour.loss_pct,
                    rtt_us: neighbour.rtt_us,
                    last_heard_ms_ago: millis_between(neighbour.last_heard, now),
                    spiffe_id: link.map(|link| link.info.spiffe_id.to_string()),
                    kx_group: link.map(|link| link.info.kx_group.clone()),
                }
            })
            .collect()
    }

    fn routes(&self) -> Vec<RouteView> {
        let now = self.clock.now();
        self.router
            .routes()
            .into_iter()
            .map(|route| RouteView {
                destination: route.destination,
                next_hop: route.next_hop,
                next_hop_address: self.address_of(&route.next_hop),
                cost: route.cost,
                tq: route.tq,
                hops: route.hops,
                seq: route.seq,
                alternates: route.alternates,
                changed_at_unix_ms: self.clock.unix_ms_of(route.changed_at),
                changed_ms_ago: millis_between(route.changed_at, now),
            })
            .collect()
    }
}

impl Security {
    /// Signs this node's record for its current SVID and installs it in the directory;
    /// returns the encoded record.
    fn publish_own_record(
        &mut self,
        directory: &mut Directory,
        listen: SocketAddr,
    ) -> Result<Vec<u8>, NodeError> {
        let info = &self.membership.svid_info;
        let record = NodeRecord {
            node_id: self.keys.node_id(),
            version: unix_millis(),
            not_before: info.not_before,
            not_after: info.not_after,
            keys: self.keys.public().clone(),
            endpoints: vec![listen],
            svid: self.membership.svid.clone(),
        };
        let bytes = record.sign(&self.keys).map_err(|error| {
            NodeError::Membership(membership::MembershipError::Join(error.to_string()))
        })?;
        directory.set_own(record, bytes.clone());
        Ok(bytes)
    }
}

/// What became of a data packet handed to a link.
enum DataSend {
    Sent,
    NoRoute,
    /// Larger than the next link's datagram room (given).
    TooBig(usize),
}

/// Opens the overlay TUN interface as configured. In `auto` mode a failure (not root, no
/// /dev/net/tun) is logged once and the node runs without it.
fn open_tun(
    config: &NodeConfig,
    node: NodeId,
) -> Result<(Option<Arc<tun_rs::AsyncDevice>>, bool), NodeError> {
    if config.tun == TunMode::Off {
        return Ok((None, false));
    }
    let build = |offload: bool| {
        tun_rs::DeviceBuilder::new()
            .name(config.tun_name.clone())
            .ipv6(node.overlay_addr(), wire::OVERLAY_PREFIX_BITS)
            .mtu(config.tun_mtu)
            .offload(offload)
            .build_async()
    };
    let (built, offload) = match build(true) {
        Ok(device) => (Ok(device), true),
        Err(error) => {
            tracing::debug!(%error, "TUN offloads refused; packet by packet");
            (build(false), false)
        }
    };
    match built {
        Ok(device) => {
            tracing::info!(interface = %config.tun_name, address = %node.overlay_addr(), mtu = config.tun_mtu, offload, "overlay interface up");
            Ok((Some(Arc::new(device)), offload))
        }
        Err(error) if config.tun == TunMode::Auto => {
            tracing::warn!(%error, "no overlay TUN interface (needs root and /dev/net/tun); running without it: routing, links and the API work, programs cannot use overlay addresses");
            Ok((None, false))
        }
        Err(error) => Err(NodeError::Tun {
            name: config.tun_name.clone(),
            source: error,
        }),
    }
}

async fn recv_tun(
    tun: Option<&tun_rs::AsyncDevice>,
    reader: &mut TunReader,
) -> std::io::Result<usize> {
    match tun {
        Some(tun) => reader.recv(tun).await,
        None => std::future::pending().await,
    }
}

enum Step {
    Carrier,
    Replication,
    Tun(std::io::Result<usize>),
    Channel(std::io::Result<()>),
    Timer,
    Tick,
    Request(Request),
    Link(LinkEvent),
    Discovery(std::io::Result<(usize, SocketAddr)>),
    Heal(crate::healing::Wake),
}

/// When to renew: at half of the SVID's lifetime, as SPIRE does.
fn renewal_time(clock: &Clock, membership: &Membership, now_unix: i64) -> Timestamp {
    let info = &membership.svid_info;
    let lifetime = (info.not_after - info.not_before).max(0);
    let renew_at = info.not_before + lifetime / 2;
    let wait = Duration::from_secs(u64::try_from(renew_at - now_unix).unwrap_or(0));
    clock.now() + wait
}

async fn recv_discovery(
    discovery: Option<&Transport>,
    buffer: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match discovery {
        Some(discovery) => discovery.recv(buffer).await,
        None => std::future::pending().await,
    }
}

/// Most the replication timer sleeps in one go, so a wall clock set back cannot stall it.
const MAX_REPLICATION_SLEEP_MS: u64 = 1_000;

/// Sleeps until the wall-clock instant `wake_ms` (Unix ms), at most a second; at once if it
/// has passed.
async fn sleep_until_unix_ms(wake_ms: u64) {
    let delay = wake_ms
        .saturating_sub(unix_millis())
        .min(MAX_REPLICATION_SLEEP_MS);
    tokio::time::sleep(Duration::from_millis(delay)).await;
}

/// Sleeps until `wake`, or forever if the router has no timer armed.
async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn millis_between(earlier: Timestamp, later: Timestamp) -> u64 {
    u64::try_from(later.saturating_since(earlier).as_millis()).unwrap_or(u64::MAX)
}

/// Hands a query to the incident database's thread and forwards its answer to `reply` without
/// blocking the loop; a disabled loop or a full queue is answered at once.
fn ask_incident_store<T: Send + 'static>(
    healing: Option<&mut crate::healing::Healing>,
    job: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, String>>) -> crate::healing::store::Job,
    reply: tokio::sync::oneshot::Sender<Result<T, String>>,
) {
    let Some(healing) = healing else {
        let _ = reply.send(Err(
            "the healing loop is disabled (mapk.enabled: false)".into()
        ));
        return;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if healing.query(job(tx)) {
        tokio::spawn(async move {
            let answer = rx
                .await
                .unwrap_or_else(|_| Err("incident database stopped".into()));
            let _ = reply.send(answer);
        });
    } else {
        let _ = reply.send(Err("incident database busy".into()));
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
        })
}

/// The node's key set as the session layer's signer.
struct SharedSigner(Arc<KeySet>);

impl session::NodeSigner for SharedSigner {
    fn node_id(&self) -> NodeId {
        self.0.node_id()
    }

    fn sign_ed25519(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign_ed25519(message)
    }
}

impl session::PeerDirectory for Directory {
    fn identity(&self, peer: &NodeId) -> Option<session::PeerIdentity> {
        self.record(peer)
            .map(|record| session::PeerIdentity::from(&record.keys))
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A serializable counter struct as a name -> value map. Going through serde keeps the API
/// in step as counters are added, without this module listing them.
fn counters(stats: &impl serde::Serialize) -> std::collections::BTreeMap<String, u64> {
    match serde_json::to_value(stats) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(name, value)| value.as_u64().map(|value| (name, value)))
            .collect(),
        _ => std::collections::BTreeMap::new(),
    }
}

fn random_seed() -> Result<u64, NodeError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|error| NodeError::Random(error.to_string()))?;
    Ok(u64::from_le_bytes(bytes))
}
