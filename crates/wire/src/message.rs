//! Control messages carried inside a packet, one TLV each (OGMs are batched in one TLV).

use crate::NodeId;

/// Cost that means "no route": a retraction when advertised in an OGM.
pub const COST_INFINITE: u32 = u32::MAX;

/// TTL value meaning "flood to the whole mesh"; it is never decremented.
pub const TTL_UNLIMITED: u8 = u8::MAX;

/// OGM flag: relay at once instead of with the next probe. Set on floods that answer a
/// sequence-number request, i.e. on routes someone is waiting for.
pub const OGM_FLAG_URGENT: u8 = 0b0000_0001;

/// One control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Presence announcement for discovery (multicast or to a static bootstrap peer).
    Hello(Hello),
    /// Link probe: liveness, loss and round-trip time of the link to the receiver.
    Probe(Probe),
    /// A batch of originator messages (route advertisements).
    Ogms(Vec<Ogm>),
    /// A request that the target originate a fresh sequence number.
    SeqnoRequest(SeqnoRequest),
}

/// Presence announcement. The sender is in the packet header; the body only says how often
/// the sender will probe, so the receiver can size its liveness timer from the first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's probe interval in milliseconds.
    pub probe_interval_ms: u16,
}

/// A BFD-style link probe, sent to each neighbour every probe interval. It doubles as the
/// echo of the last probe received from that neighbour (as TCP timestamps do), so one
/// packet per interval and direction gives liveness, loss in both directions and RTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Per-link probe sequence number of the sender; gaps count as losses.
    pub seq: u32,
    /// Sender's clock when sending, in microseconds (truncated; only differences matter).
    pub tx_time_us: u32,
    /// `tx_time_us` of the last probe the sender received from the receiver (0 if none).
    pub echo_time_us: u32,
    /// Microseconds between receiving that probe and sending this one.
    pub echo_delay_us: u32,
    /// How many of the receiver's last `window` probes the sender received.
    pub rx_count: u8,
    /// Size of the window `rx_count` refers to.
    pub window: u8,
    /// The sender's probe interval in milliseconds (the receiver times liveness with it).
    pub interval_ms: u16,
}

/// Domain-separation tag that starts the bytes an originator signs (see [`ogm_signed_part`]).
pub const OGM_SIGNATURE_TAG: &[u8; 17] = b"x0tta6bl4/ogm/v1\0";

/// Length of [`ogm_signed_part`]'s output.
pub const OGM_SIGNED_PART_BYTES: usize = OGM_SIGNATURE_TAG.len() + NodeId::LEN + 4;

/// Size of an originator's Ed25519 signature.
pub const OGM_SIGNATURE_BYTES: usize = 64;

/// The originator's Ed25519 signature over [`ogm_signed_part`]. All zeros when the sender
/// does not sign (the simulator without `--sign-ogms`); a verifying receiver drops those.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OgmSignature(pub [u8; OGM_SIGNATURE_BYTES]);

impl OgmSignature {
    /// The all-zero placeholder of unsigned routing.
    pub const ZERO: OgmSignature = OgmSignature([0; OGM_SIGNATURE_BYTES]);
}

impl Default for OgmSignature {
    fn default() -> Self {
        OgmSignature::ZERO
    }
}

impl std::fmt::Debug for OgmSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OgmSignature({}..)", hex::encode(&self.0[..8]))
    }
}

/// The bytes an originator signs for sequence number `seq`: the only OGM fields no relay
/// changes. Cost, hops, TTL and flags change hop by hop, so no originator signature can
/// cover them (see "Signed OGMs" in `docs/PROTOCOL.md`).
pub fn ogm_signed_part(originator: &NodeId, seq: u32) -> [u8; OGM_SIGNED_PART_BYTES] {
    let mut out = [0u8; OGM_SIGNED_PART_BYTES];
    let tag = OGM_SIGNATURE_TAG.len();
    out[..tag].copy_from_slice(OGM_SIGNATURE_TAG);
    out[tag..tag + NodeId::LEN].copy_from_slice(&originator.0);
    out[tag + NodeId::LEN..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// Originator message: "I can reach `originator` at `cost`", B.A.T.M.A.N.-style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ogm {
    /// The node the route leads to.
    pub originator: NodeId,
    /// The originator's sequence number this route is based on (serial arithmetic).
    pub seq: u32,
    /// Path cost from the sender to the originator, or [`COST_INFINITE`] for a retraction.
    pub cost: u32,
    /// Hops from the sender to the originator.
    pub hops: u8,
    /// How many more hops this OGM may be flooded; [`TTL_UNLIMITED`] floods everywhere.
    pub ttl: u8,
    /// [`OGM_FLAG_URGENT`] or 0; unknown bits are reserved, ignored and relayed as zero.
    pub flags: u8,
    /// The originator's signature of `(originator, seq)`, relayed unchanged.
    pub signature: OgmSignature,
}

/// Asks `target` to originate a sequence number at least `seq` (Babel's seqno request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqnoRequest {
    /// The node whose routes are wanted.
    pub target: NodeId,
    /// The node that lost its route and asked first.
    pub requester: NodeId,
    /// The smallest sequence number that would help the requester.
    pub seq: u32,
    /// Remaining forwarding hops.
    pub hop_limit: u8,
}
