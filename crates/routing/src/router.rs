//! `Router`: the sans-IO routing state machine (API skeleton; being implemented).

use wire::NodeId;

use crate::{NeighbourInfo, RouterConfig, Timestamp};

/// Where a packet produced by the router must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// To one neighbour, at the address the caller last saw it send from (or its static address).
    Neighbour(NodeId),
    /// To every discovery target: the link-local multicast group on each configured interface
    /// and every static bootstrap peer.
    Discovery,
}

/// A packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Destination,
    /// The encoded packet (at most `wire::MAX_PACKET_BYTES`).
    pub payload: Vec<u8>,
}

/// Something the caller may want to log or show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A neighbour was heard for the first time, or again after being dead.
    NeighbourUp(NodeId),
    /// A neighbour fell silent for `probe_interval * probe_miss_limit`.
    NeighbourDown(NodeId),
    /// The next hop towards `destination` changed (`None`: unreachable).
    RouteChanged {
        /// The destination.
        destination: NodeId,
        /// The new next hop.
        next_hop: Option<NodeId>,
    },
}

/// One routing-table entry as shown to operators.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteInfo {
    /// Destination node.
    pub destination: NodeId,
    /// Neighbour packets for `destination` are forwarded to.
    pub next_hop: NodeId,
    /// Path cost (log-domain TQ, lower is better).
    pub cost: u32,
    /// Path TQ on B.A.T.M.A.N.'s 0..255 scale, derived from `cost`.
    pub tq: u8,
    /// Hops to the destination.
    pub hops: u8,
    /// Originator sequence number the route is based on.
    pub seq: u32,
    /// Loop-free alternate next hops, best first.
    pub alternates: Vec<NodeId>,
    /// When the next hop last changed.
    pub changed_at: Timestamp,
}

/// Counters, all monotonically increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Packets handed to `handle_datagram`.
    pub packets_rx: u64,
    /// Bytes handed to `handle_datagram`.
    pub bytes_rx: u64,
    /// Packets produced by `poll_transmit`.
    pub packets_tx: u64,
    /// Bytes produced by `poll_transmit`.
    pub bytes_tx: u64,
    /// Packets dropped because they did not decode (truncated, bad length, bad magic).
    pub dropped_malformed: u64,
    /// Packets dropped for an unsupported version.
    pub dropped_version: u64,
    /// Packets dropped for exceeding the size limit.
    pub dropped_oversized: u64,
    /// Packets dropped because they claim to come from this node.
    pub dropped_own: u64,
    /// Packets dropped because the neighbour table is full.
    pub dropped_neighbour_limit: u64,
    /// OGMs dropped because the routing table is full.
    pub dropped_destination_limit: u64,
    /// Unknown TLVs skipped inside otherwise valid packets.
    pub unknown_tlvs: u64,
    /// OGM entries received.
    pub ogms_rx: u64,
    /// OGM entries sent.
    pub ogms_tx: u64,
    /// Next-hop changes.
    pub route_changes: u64,
    /// Switches to a precomputed alternate because a neighbour died.
    pub fast_reroutes: u64,
    /// Sequence-number requests sent or forwarded.
    pub seqno_requests_tx: u64,
}

/// Why `handle_datagram` dropped a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// It did not decode.
    #[error("undecodable packet: {0}")]
    Decode(#[from] wire::DecodeError),
    /// It claims to come from this node (a reflection or a spoof).
    #[error("packet claims to come from this node")]
    Own,
    /// The sender would be a new neighbour but the table is full.
    #[error("neighbour table full")]
    NeighbourLimit,
}

/// A broken internal invariant, found by [`Router::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated at {node}: {what}")]
pub struct InvariantViolation {
    /// The node whose state is inconsistent.
    pub node: NodeId,
    /// What is wrong.
    pub what: String,
}

/// The routing state machine of one node.
#[derive(Debug)]
pub struct Router {
    local: NodeId,
    config: RouterConfig,
    stats: Stats,
}

impl Router {
    /// A router for `local`, whose own OGMs start after `initial_seq`.
    pub fn new(local: NodeId, config: RouterConfig, initial_seq: u32, rng_seed: u64, now: Timestamp) -> Router {
        let _ = (initial_seq, rng_seed, now);
        Router { local, config, stats: Stats::default() }
    }

    /// This node's identifier.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// The configuration in force.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Feeds one received datagram. Returns the sender's id (so the caller can remember its
    /// address) or why the packet was dropped; drops are also counted in [`Stats`].
    pub fn handle_datagram(&mut self, now: Timestamp, bytes: &[u8]) -> Result<NodeId, DropReason> {
        let _ = now;
        let packet = wire::Packet::decode(bytes)?;
        Ok(packet.sender)
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let _ = now;
    }

    /// The next packet to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        None
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }

    /// The neighbour to forward a packet for `destination` to, if any.
    pub fn next_hop(&self, destination: &NodeId) -> Option<NodeId> {
        let _ = destination;
        None
    }

    /// The routing table, sorted by destination.
    pub fn routes(&self) -> Vec<RouteInfo> {
        Vec::new()
    }

    /// The neighbour table, sorted by id.
    pub fn neighbours(&self) -> Vec<NeighbourInfo> {
        Vec::new()
    }

    /// The newest sequence number known for `destination` (own sequence for `local_id`).
    pub fn newest_seq(&self, destination: &NodeId) -> Option<u32> {
        let _ = destination;
        None
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Checks internal invariants; the simulator calls it after every step.
    pub fn validate(&self) -> Result<(), InvariantViolation> {
        Ok(())
    }
}
