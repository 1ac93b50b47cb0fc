//! Every bound of the crate, with the reason for its value.
//!
//! The bounds are chosen so that the largest possible entry fits in one anti-entropy datagram
//! (no fragmentation is ever needed) and so that a replica's memory has a known ceiling even
//! when a peer misbehaves.

/// Largest anti-entropy datagram, in bytes: one mesh datagram (the routing packet limit is 1400;
/// 200 bytes stay free for the secure link's header and tag).
pub const MAX_MESSAGE_BYTES: usize = 1200;

/// Largest key (map key, set element), in bytes. Keys name things (node ids, policy names);
/// 64 bytes hold a hex node id twice over.
pub const MAX_KEY_BYTES: usize = 64;

/// Largest value, in bytes. Chosen so that one entry with the largest key and value still fits
/// a single datagram next to the message header (checked by a test and a const assertion in
/// `codec.rs`); larger values are rejected with [`crate::CrdtError::ValueTooLarge`].
pub const MAX_VALUE_BYTES: usize = 1024;

/// Live entries (values, tombstones and set dots) per collection. The node directory of the
/// largest simulated mesh (10,000 nodes) fits with room for policies and revocations.
pub const MAX_ENTRIES: usize = 16_384;

/// Distinct origins (writers) a causal context may track. Every origin costs a version-vector
/// slot forever, so a flood of fake origins must hit a ceiling.
pub const MAX_ORIGINS: usize = 4_096;

/// Out-of-order dots a causal context may hold beyond its contiguous prefix. Anti-entropy only
/// ever delivers contiguous ranges, so this fills only when deltas are merged by hand out of
/// order; the ceiling keeps such misuse from growing without end.
pub const MAX_CLOUD_DOTS: usize = 4_096;

/// Named collections per replica. The node uses three (directory, revocations, policies).
pub const MAX_COLLECTIONS: usize = 16;

/// Longest collection name, in bytes.
pub const MAX_COLLECTION_NAME_BYTES: usize = 32;

/// Peers a replica synchronises with. Matches the routing core's neighbour ceiling (254).
pub const MAX_PEERS: usize = 254;

/// Encoded datagrams waiting for the caller to take them. At 1200 bytes each this is at most
/// about 1.2 MB; when full, further deltas are not queued and anti-entropy resends them later.
pub const MAX_QUEUED_TRANSMITS: usize = 1_024;

/// Datagrams of deltas sent to one peer in answer to one version vector. The peer's next
/// vector shows what arrived, so the rest follows in the next round instead of all at once.
pub const MAX_DELTA_DATAGRAMS_PER_REPLY: usize = 64;

/// Repairs of equal-length but different origin histories (removals) in progress, per replica;
/// each remembers where the next chunk starts so large histories make progress across rounds.
pub const MAX_REPAIR_CURSORS: usize = 1_024;

/// A chunk that brings at most this many new events is relayed to the other peers at once:
/// it is most likely a fresh write. Larger catch-ups (a node back from a partition) are left to
/// anti-entropy, so a returning node does not re-flood its whole backlog.
pub const MAX_RELAY_EVENTS: u64 = 8;

/// Datagrams one relay may send to one peer; eight events with the largest values need eight.
pub const MAX_RELAY_DATAGRAMS: usize = 8;
