//! What the node shows operators: the JSON bodies of the API's status, peers and routes, also
//! read back by `x0tta6bl4 ctl` and the demo.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use transport::TransportStats;
use wire::NodeId;

/// `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// This node.
    pub node_id: NodeId,
    /// The daemon's version.
    pub version: String,
    /// Time since the runtime started, in milliseconds.
    pub uptime_ms: u64,
    /// The UDP address the QUIC link endpoint is bound to.
    pub listen: SocketAddr,
    /// Interfaces with multicast discovery.
    pub interfaces: Vec<String>,
    /// Number of static peers from `nodes.json`.
    pub static_peers: usize,
    /// Neighbours currently alive.
    pub neighbours_alive: usize,
    /// Neighbours known, alive or not.
    pub neighbours_known: usize,
    /// Destinations with a route.
    pub routes: usize,
    /// Newest own OGM sequence number, if one was sent.
    pub own_seq: Option<u32>,
    /// Own sequence numbers are reserved on disk up to here.
    pub seq_reserved_until: u32,
    /// The routing core's counters (`routing::Stats`): traffic, and packets dropped as
    /// malformed, wrong version, oversized, own, over a limit.
    pub router: BTreeMap<String, u64>,
    /// The multicast discovery socket's counters (all zero without discovery interfaces).
    pub transport: TransportStats,
    /// Link and security counters: handshakes, refused certificates by reason, packets whose
    /// sender is not the link's authenticated peer, records and revocations.
    pub links: BTreeMap<String, u64>,
    /// The self-healing loop: open incidents, MTTD/MTTR per type, counters, services
    /// (absent when `mapk.enabled` is false).
    #[serde(default)]
    pub healing: Option<crate::healing::HealingView>,
}

/// `GET /api/v1/identity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityView {
    /// This node.
    pub node_id: NodeId,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// Its trust domain.
    pub trust_domain: String,
    /// Its overlay IPv6 address (derived from its keys).
    pub overlay_address: std::net::Ipv6Addr,
    /// SVID `notBefore`, Unix seconds.
    pub svid_not_before: i64,
    /// SVID `notAfter`, Unix seconds.
    pub svid_not_after: i64,
    /// Seconds until the SVID expires (negative once expired).
    pub svid_expires_in_s: i64,
    /// SVID renewals since start.
    pub svid_renewals: u64,
    /// Key fingerprints (first 8 bytes of SHA-256 of each public key).
    pub fingerprints: String,
    /// SHA-256 of the CA certificate (what join tokens pin), hex.
    pub bundle_hash: String,
    /// Whether only X25519MLKEM768 is allowed on links.
    pub pq_only: bool,
    /// Whether this node is the trust domain's CA node.
    pub is_ca: bool,
    /// Nodes known to be revoked.
    pub revoked_nodes: usize,
    /// Node records held.
    pub node_records: usize,
}

/// One entry of `GET /api/v1/peers`: a neighbour and its link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// The neighbour.
    pub id: NodeId,
    /// Where it was last heard from.
    pub address: Option<SocketAddr>,
    /// False once it was silent for the detection time.
    pub alive: bool,
    /// Link TQ, 0..255.
    pub tq: u8,
    /// Share of its probes we received, 0..255.
    pub rx_quality: u8,
    /// Share of our probes it received, 0..255.
    pub tx_quality: u8,
    /// Probe loss in percent.
    pub loss_pct: f32,
    /// Smoothed round-trip time in microseconds (0 until measured).
    pub rtt_us: u32,
    /// Milliseconds since anything was heard from it.
    pub last_heard_ms_ago: u64,
    /// Its SPIFFE ID, from the certificate of the current link (none without a link).
    pub spiffe_id: Option<String>,
    /// The key-exchange group of the current link.
    pub kx_group: Option<String>,
}

/// One entry of `GET /api/v1/routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteView {
    /// The destination.
    pub destination: NodeId,
    /// The neighbour packets for it go to.
    pub next_hop: NodeId,
    /// Where that neighbour was last heard from.
    pub next_hop_address: Option<SocketAddr>,
    /// Path cost (lower is better).
    pub cost: u32,
    /// Path TQ, 0..255.
    pub tq: u8,
    /// Hops to the destination.
    pub hops: u8,
    /// Originator sequence number the route is based on.
    pub seq: u32,
    /// Loop-free alternate next hops, best first.
    pub alternates: Vec<NodeId>,
    /// When the next hop last changed, in Unix milliseconds (the node's own clock).
    pub changed_at_unix_ms: u64,
    /// Milliseconds since the next hop last changed.
    pub changed_ms_ago: u64,
}

/// A datagram received through the datagram API (`GET /api/v1/datagrams`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatagramView {
    /// The sending node.
    pub from: NodeId,
    /// The port it was sent to.
    pub port: u16,
    /// The payload, hex.
    pub payload_hex: String,
    /// When it arrived, Unix milliseconds (this node's clock).
    pub received_unix_ms: u64,
}

/// What became of a datagram handed to `POST /api/v1/datagrams/{node}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendOutcome {
    /// Handed to the next hop's link.
    Sent,
    /// Delivered to this node's own inbox.
    Local,
    /// No route to the node.
    NoRoute,
    /// Larger than the link can carry.
    TooBig,
}
