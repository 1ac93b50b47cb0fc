//! Delta-state CRDTs ordered by hybrid logical clocks, and the bounded anti-entropy state machine that spreads them.
//!
//! The node carries its mesh-wide, eventually consistent data here: the directory of signed
//! node records, revocations and policies. Every node holds a full replica and any node may
//! write; replicas converge without coordination.
//!
//! # Layout
//! - [`hlc`]: hybrid logical clock (wall time + counter + node id) with a drift bound.
//! - [`dot`]: dots (one write of one writer) and causal contexts (what a state has seen).
//! - [`store`]: the dot store and its join, which every CRDT here is a view of.
//! - [`register`], [`map`], [`orset`], [`counter`]: LWW-Register, LWW-Map, OR-Set, PN-Counter.
//! - [`replica`]: the sans-IO anti-entropy machine over named collections.
//! - [`codec`]: the versioned binary encoding of messages (spec in `docs/PROTOCOL.md`),
//!   including the fragments of messages larger than one datagram.
//! - `reassembly`: fragments back into messages, bounded in count, bytes and time.
//! - [`snapshot`]: persistence format (version byte, checksum).
//! - [`limits`]: every bound, with its reason.
//!
//! # Design choices
//!
//! **Delta-state, not operations or full states.** An operation-based CRDT needs exactly-once
//! causal delivery, which a lossy mesh does not give; a state-based one ships whole states. A
//! delta (Almeida et al., 2018) is a small state: merging it is the same join as merging a full
//! state, so duplicates, reordering and loss are harmless, yet only the change travels.
//! Each write gets a *dot* (writer, per-writer counter). A replica's causal context is a
//! version vector, so anti-entropy can name exactly which writes a peer lacks: peers compare
//! one hash per collection, then per-writer vectors, then send only the missing ranges.
//!
//! **Hybrid logical clocks order last-writer-wins.** A write made after seeing another always
//! carries a larger timestamp, even from a node whose clock is seconds behind, so clock skew
//! cannot let an older write win. Remote timestamps more than `max_drift_ms` ahead of local
//! wall time are refused and counted, so a skewed node cannot drag every clock forward.
//!
//! **Removals without tombstones where possible.** OR-Set removes and overwritten values leave
//! no trace but their dot in the version vector: a peer that still holds an entry whose dot
//! the sender has seen but no longer holds drops it. Only LWW-Map deletions keep a tombstone,
//! because a deletion must carry a timestamp to beat an older concurrent write.
//!
//! **Garbage collection of tombstones.** A replica drops a tombstone when (1) it was written
//! more than `tombstone_horizon_ms` ago (default one day), (2) every known peer has been seen
//! to hold its dot (through the peer's version vector, a chunk it sent, or an equal digest),
//! and (3) the replica has at least one peer. Peers silent for `peer_forget_ms` are forgotten
//! so a dead node cannot block collection forever; the peer list is persisted so a restart
//! does not forget who must acknowledge. The dot stays in the version vector, so the absence
//! travels like any removal: a peer still holding the tombstone, or an older value from a
//! write the collector had seen, drops it on the next exchange, and all replicas converge.
//! Stability is checked over neighbours only, not the whole mesh, so one hazard remains: a
//! replica holding a write to the same key that was concurrent with the deletion, older than
//! it, and seen by none of the collector's neighbours within the horizon would bring that
//! value back. The one-day horizon is what makes that unlikely; whole-mesh stability (version
//! vectors of all nodes) would remove it at the cost of carrying every node's vector.
//!
//! **Bounds.** See [`limits`]: keys 64 bytes, values 16,384 bytes (refused with
//! [`CrdtError::ValueTooLarge`]), 16,384 entries per collection, 4,096 writers, 16 collections,
//! 254 peers, 1,024 queued datagrams, 64 delta datagrams per reply, relays of at most 8 fresh
//! events (30 datagrams) per peer. Every datagram is at most 1,200 bytes; longer histories go
//! out as chunks of consecutive ranges.
//!
//! **Large values travel as fragments.** Small entries share a DELTA datagram. A chunk holding
//! one entry too large for a datagram (a signed node record is about 6 KB) is encoded whole
//! (at most 17,408 bytes) and cut into at most 15 FRAGMENT datagrams; the receiver rebuilds it
//! in a buffer of the declared length, each fragment at the place its index fixes, and then
//! handles it like any DELTA. At most 64 messages are rebuilt at once (4 per peer; a fifth
//! evicts that peer's oldest), about 1.1 MB in all, and one not complete 2 s after its first
//! fragment is dropped. A lost fragment costs the whole chunk, which the next anti-entropy
//! round sends again, so loss only delays a large value; it never corrupts one.
//!
//! **Trust.** The replica trusts that the caller authenticated the link a datagram came over;
//! it does not itself verify that an entry's writer is who it claims. Values that need that
//! (signed node records, revocations) carry their own signatures, and the node installs an
//! [`EntryCheck`] per collection that verifies them: entries that fail are skipped and counted.
//!
//! **A known transient.** Under last-writer-wins, a repair can drop a value that the sender
//! overwrote before the overwriting entry (another writer's event) arrives; the key then reads
//! as absent until it does. Replies send missing events before repairs, so this needs a lost
//! datagram, and the next round ends it.

pub mod codec;
pub mod counter;
pub mod dot;
pub mod error;
pub mod hlc;
pub mod limits;
pub mod map;
pub mod orset;
mod reassembly;
pub mod register;
pub mod replica;
pub mod snapshot;
pub mod store;

pub use codec::Message;
pub use counter::PnCounter;
pub use dot::{CausalContext, Dot};
pub use error::{CrdtError, DecodeError};
pub use hlc::{DEFAULT_MAX_DRIFT_MS, Hlc, HlcClock};
pub use map::LwwMap;
pub use orset::OrSet;
pub use register::LwwRegister;
pub use replica::{Dropped, EntryCheck, Kind, PeerStatus, Replica, ReplicaConfig, Stats, Transmit};
pub use store::{DotStore, Entry, Policy};
