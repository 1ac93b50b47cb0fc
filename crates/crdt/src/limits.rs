//! Every bound of the crate, with the reason for its value.
//!
//! Every datagram stays within one mesh datagram. Entries small enough share datagrams; a
//! message that does not fit one (a chunk holding one large value, such as a hybrid-signed node
//! record of about 6 KB) is cut into FRAGMENT datagrams and reassembled by the receiver, with
//! the reassembly bounded in count, bytes and time. A replica's memory has a known ceiling even
//! when a peer misbehaves.

/// Largest anti-entropy datagram, in bytes: one mesh datagram (the routing packet limit is 1400;
/// 200 bytes stay free for the secure link's header and tag).
pub const MAX_MESSAGE_BYTES: usize = 1200;

/// Largest key (map key, set element), in bytes. Keys name things (node ids, policy names);
/// 64 bytes hold a hex node id twice over.
pub const MAX_KEY_BYTES: usize = 64;

/// Largest value, in bytes. A hybrid-signed node record is at most about 6.4 KB (its SVID may
/// take 4 KB) and a revocation 3.4 KB; 16 KB leaves room for a signed policy. Larger values
/// are rejected with [`crate::CrdtError::ValueTooLarge`]. A value above about 1 KB travels as
/// fragments ([`MAX_FRAGMENTS`]).
pub const MAX_VALUE_BYTES: usize = 16_384;

/// Largest message before fragmentation (a reassembled message), in bytes: a DELTA holding one
/// entry with the largest key and value, plus room for its header (checked by a const
/// assertion in `codec.rs`).
pub const MAX_ASSEMBLED_BYTES: usize = MAX_VALUE_BYTES + 1_024;

/// Bytes of a FRAGMENT datagram before its slice of the message: magic, version, type,
/// message id (4), index (1), count (1), total length (2).
pub const FRAGMENT_HEADER_BYTES: usize = 12;

/// Bytes of the message each FRAGMENT carries (the last one carries the rest).
pub const FRAGMENT_PAYLOAD_BYTES: usize = MAX_MESSAGE_BYTES - FRAGMENT_HEADER_BYTES;

/// Most fragments of one message: enough for [`MAX_ASSEMBLED_BYTES`].
pub const MAX_FRAGMENTS: usize = MAX_ASSEMBLED_BYTES.div_ceil(FRAGMENT_PAYLOAD_BYTES);

/// Messages being reassembled at once, over all peers. Each holds at most
/// [`MAX_ASSEMBLED_BYTES`], so reassembly never holds more than about 1.1 MB; when full,
/// fragments of new messages are dropped (counted) and anti-entropy resends the chunk later.
pub const MAX_REASSEMBLIES: usize = 64;

/// Messages being reassembled from one peer at once. The peer sends the fragments of one
/// message back to back, so more than a few open at once means fragments were lost; a new one
/// then evicts that peer's oldest, so one peer cannot fill the table for the others.
pub const MAX_REASSEMBLIES_PER_PEER: usize = 4;

/// A message not complete this long after its first fragment arrived lost a fragment; it is
/// dropped (counted) and the chunk comes again with the next anti-entropy round.
pub const REASSEMBLY_TIMEOUT_MS: u64 = 2_000;

/// Live entries (values, tombstones and set dots) per collection. The node directory of the
/// largest simulated mesh (10,000 nodes) fits with room for policies and revocations. With
/// [`MAX_VALUE_BYTES`] this caps a collection's values at 256 MiB; the node's directory of
/// 10,000 records of about 6 KB takes 60 MiB.
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

/// Datagrams one relay (or the push of a local write) may send to one peer: two messages with
/// the largest values, fragments included. What does not fit is left to anti-entropy.
pub const MAX_RELAY_DATAGRAMS: usize = 2 * MAX_FRAGMENTS;

// Every budget must afford the largest single message, or a large value would never be sent.
const _: () = assert!(MAX_FRAGMENTS <= MAX_RELAY_DATAGRAMS);
const _: () = assert!(MAX_FRAGMENTS <= MAX_DELTA_DATAGRAMS_PER_REPLY);
const _: () =
    assert!(MAX_FRAGMENTS <= u8::MAX as usize && MAX_ASSEMBLED_BYTES <= u16::MAX as usize);
