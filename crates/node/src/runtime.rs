//! `Node`: the daemon's event loop, which drives the routing core over the UDP transport.
//!
//! ```text
//!   UDP datagrams ──► handle_datagram ─┐                       ┌─► poll_transmit ──► UDP
//!   timer (poll_timeout) ─► handle_timeout ─► routing::Router ─┤
//!   NodeHandle requests ──► snapshot                           └─► poll_event ──► log
//! ```
//!
//! The loop follows the router's calling contract: after every `handle_*` call it drains
//! `poll_transmit` and `poll_event`, then re-arms its timer from `poll_timeout`. It is the
//! only code that reads the clock (through [`Clock`]). Timers and snapshot requests are
//! served before new datagrams, so a packet flood cannot starve the node's own work.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use routing::{Destination, Event, Router, Timestamp};
use tokio::sync::mpsc;
use tokio::time::Instant;
use transport::{RECV_BUFFER_BYTES, StaticPeer, Transport, TransportConfig};
use wire::NodeId;

use crate::clock::Clock;
use crate::handle::{NodeHandle, Request};
use crate::identity::{NodeIdentity, check_private_dir};
use crate::seq_store::SeqStore;
use crate::view::{PeerView, RouteView, StatusView};
use crate::{NodeConfig, NodeError, bootstrap};

/// Pause after a failed receive. Receive errors are rare and usually persistent for a moment
/// (e.g. the interface went away); pausing keeps a failing socket from spinning the loop.
const RECV_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// A node ready to run: its router, its socket and the receiving end of its handle.
#[derive(Debug)]
pub struct Node {
    router: Router,
    transport: Transport,
    clock: Clock,
    seq_store: SeqStore,
    requests: mpsc::Receiver<Request>,
    /// Keeps the request channel open while the node runs even if every API handle is
    /// dropped, so the loop never sees a closed channel.
    _own_handle: NodeHandle,
}

impl Node {
    /// Loads the key, the bootstrap peers and the sequence-number reservation, binds the UDP
    /// socket and builds the router. Must be called inside a tokio runtime.
    pub fn start(config: &NodeConfig) -> Result<(Node, NodeHandle), NodeError> {
        if !config.key_path.exists() {
            return Err(NodeError::NotInitialised {
                key_path: config.key_path.clone(),
                config: config.source.clone(),
            });
        }
        check_private_dir(&config.data_dir)?;
        let identity = NodeIdentity::load(&config.key_path)?;
        let static_peers: Vec<StaticPeer> = match config.bootstrap_path() {
            Some(path) => bootstrap::load(&path)?,
            None => Vec::new(),
        };
        let transport = Transport::bind(&TransportConfig {
            listen: config.listen,
            interfaces: config.interfaces.clone(),
            static_peers,
        })?;
        let (seq_store, initial_seq) = SeqStore::open(&config.data_dir)?;
        let clock = Clock::start();
        let router = Router::new(
            identity.node_id(),
            config.router.clone(),
            initial_seq,
            random_seed()?,
            clock.now(),
        );
        let (handle, requests) = NodeHandle::channel();
        let node = Node {
            router,
            transport,
            clock,
            seq_store,
            requests,
            _own_handle: handle.clone(),
        };
        Ok((node, handle))
    }

    /// This node's identifier.
    pub fn node_id(&self) -> NodeId {
        self.router.local_id()
    }

    /// The address the UDP socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Runs until `shutdown` completes. Returns an error only if the node cannot go on (its
    /// sequence-number reservation can no longer be written).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        tokio::pin!(shutdown);
        let mut buffer = vec![0u8; RECV_BUFFER_BYTES];
        self.log_start();
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
                Some(request) = self.requests.recv() => Step::Request(request),
                received = self.transport.recv(&mut buffer) => Step::Datagram(received),
            };
            match step {
                Step::Timer => self.router.handle_timeout(self.clock.now()),
                Step::Request(request) => self.answer(request),
                Step::Datagram(received) => {
                    self.transport.note_received(&received);
                    match received {
                        Ok((len, from)) => self.on_datagram(&buffer[..len], from),
                        Err(error) => {
                            tracing::warn!(%error, "receive failed");
                            tokio::time::sleep(RECV_ERROR_BACKOFF).await;
                        }
                    }
                }
            }
            self.flush().await?;
        }
        tracing::info!(node = %self.node_id(), "stopped");
        Ok(())
    }

    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        match self.router.handle_datagram(self.clock.now(), bytes) {
            Ok(sender) => self.transport.learn(sender, from),
            // Counted in the router's stats (shown by /api/v1/status); logged at debug only so
            // that garbage from the network cannot flood the log.
            Err(reason) => tracing::debug!(%from, %reason, "dropped datagram"),
        }
    }

    /// Sends everything the router produced, logs its events and keeps the sequence-number
    /// reservation ahead of the numbers in use.
    async fn flush(&mut self) -> Result<(), NodeError> {
        while let Some(transmit) = self.router.poll_transmit() {
            match transmit.to {
                Destination::Neighbour(id) => {
                    self.transport
                        .send_to_neighbour(&id, &transmit.payload)
                        .await;
                }
                Destination::Discovery => {
                    self.transport.send_discovery(&transmit.payload).await;
                }
            }
        }
        while let Some(event) = self.router.poll_event() {
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

    fn log_event(&self, event: &Event) {
        match event {
            Event::NeighbourUp(id) => {
                tracing::info!(neighbour = %id.short(), address = ?self.transport.address_of(id), "neighbour up");
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
        let peers = self.transport.static_peers().len();
        let interfaces = self.transport.interfaces().len();
        tracing::info!(node = %self.node_id(), listen = %self.local_addr(), static_peers = peers, interfaces, "node started");
        if peers == 0 && interfaces == 0 {
            tracing::warn!(
                "no static peers and no discovery interfaces: this node cannot find neighbours"
            );
        }
    }

    fn answer(&self, request: Request) {
        // A requester that gave up (timed out) has dropped its receiver; that is not an error.
        match request {
            Request::Status(reply) => drop(reply.send(self.status())),
            Request::Peers(reply) => drop(reply.send(self.peers())),
            Request::Routes(reply) => drop(reply.send(self.routes())),
        }
    }

    fn status(&self) -> StatusView {
        let neighbours = self.router.neighbours();
        StatusView {
            node_id: self.node_id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: u64::try_from(self.clock.uptime().as_millis()).unwrap_or(u64::MAX),
            listen: self.local_addr(),
            interfaces: self
                .transport
                .interfaces()
                .iter()
                .map(|interface| interface.name.clone())
                .collect(),
            static_peers: self.transport.static_peers().len(),
            neighbours_alive: neighbours
                .iter()
                .filter(|neighbour| neighbour.alive)
                .count(),
            neighbours_known: neighbours.len(),
            routes: self.router.routes().len(),
            own_seq: self.router.newest_seq(&self.node_id()),
            seq_reserved_until: self.seq_store.reserved_until(),
            router: counters(self.router.stats()),
            transport: self.transport.stats(),
        }
    }

    fn peers(&self) -> Vec<PeerView> {
        let now = self.clock.now();
        self.router
            .neighbours()
            .into_iter()
            .map(|neighbour| PeerView {
                id: neighbour.id,
                address: self.transport.address_of(&neighbour.id),
                alive: neighbour.alive,
                tq: neighbour.tq,
                rx_quality: neighbour.rx_quality,
                tx_quality: neighbour.tx_quality,
                loss_pct: neighbour.loss_pct,
                rtt_us: neighbour.rtt_us,
                last_heard_ms_ago: millis_between(neighbour.last_heard, now),
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
                next_hop_address: self.transport.address_of(&route.next_hop),
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

enum Step {
    Timer,
    Request(Request),
    Datagram(std::io::Result<(usize, SocketAddr)>),
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

/// The router's counters as a name -> value map. Going through serde keeps the API in step
/// with `routing::Stats` as counters are added, without this crate listing them.
fn counters(stats: &routing::Stats) -> std::collections::BTreeMap<String, u64> {
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
