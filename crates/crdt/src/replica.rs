//! The anti-entropy state machine: named collections of one node, kept in sync with its peers
//! by digests first and missing deltas second.
//!
//! # Calling contract
//!
//! The replica is sans-IO. The caller (the node runtime, or the simulator) owns the socket and
//! the clock and drives it with three inputs and two outputs:
//!
//! - inputs: [`Replica::handle_message`] for every datagram a peer sent, [`Replica::handle_timeout`]
//!   when the deadline of [`Replica::poll_timeout`] passes, the local mutators
//!   ([`Replica::map_insert`] and friends), and [`Replica::add_peer`] / [`Replica::sync_now`]
//!   when a link comes up;
//! - outputs: [`Replica::poll_transmit`] until it returns `None` after every input, and
//!   [`Replica::poll_timeout`] for the next deadline.
//!
//! `now_ms` is wall-clock milliseconds since the Unix epoch, because hybrid timestamps must
//! stay close to wall time. It may jump backwards (the clock is then re-armed); callers should
//! still wake at least every `sync_interval_ms` so a backwards jump cannot stall the timer.
//!
//! # Protocol
//!
//! Every `sync_interval_ms` the replica sends each peer a DIGEST: one 64-bit hash per
//! collection. While a peer's digest and ours stay equal, the pause to that peer doubles up to
//! `max_sync_interval_ms`; any change or mismatch brings it back. A peer whose hash differs answers with its version vector (VECTOR pages: per
//! origin, the contiguous events seen and a hash of the live entries). The first replica then
//! sends, per origin, the range of events the peer lacks as DELTA chunks; when both have seen
//! the same events but hold different entries (a removal travelled only one way), it resends
//! that origin's live entries in chunks, so the peer drops what was removed. Fresh local writes
//! are also pushed to every peer at once, and a node that learns a few new events relays them
//! to its other peers at once, so anti-entropy only repairs what the pushes lost.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use wire::NodeId;

use crate::codec::{
    CollectionDigest, DELTA_OVERHEAD_BYTES, DeltaChunk, Fragment, Message, ORIGINS_PER_VECTOR,
    OriginSummary, VectorPage, entry_bytes,
};
use crate::counter::PnCounter;
use crate::dot::Dot;
use crate::error::{CrdtError, DecodeError};
use crate::hlc::{DEFAULT_MAX_DRIFT_MS, HlcClock};
use crate::limits::{
    MAX_COLLECTION_NAME_BYTES, MAX_COLLECTIONS, MAX_DELTA_DATAGRAMS_PER_REPLY, MAX_MESSAGE_BYTES,
    MAX_ORIGINS, MAX_PEERS, MAX_QUEUED_TRANSMITS, MAX_RELAY_DATAGRAMS, MAX_RELAY_EVENTS,
    MAX_REPAIR_CURSORS,
};
use crate::map::LwwMap;
use crate::orset::OrSet;
use crate::reassembly::{Progress, Reassembly};
use crate::register::LwwRegister;
use crate::store::{Cover, DotStore, Entry};

/// Default pause between digest rounds. The issue targets 200 to 500 ms per sync; one DIGEST
/// per peer and round is a few dozen bytes, so the short end costs little.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 250;

/// Default longest pause between digests to a peer that is in sync. Digests to such a peer
/// back off from `sync_interval_ms`, doubling each round, up to this; any change or mismatch
/// brings them back to `sync_interval_ms` at once. Fresh writes are pushed at once and relayed,
/// so the back-off only delays the repair of a push lost while nothing else changes.
pub const DEFAULT_MAX_SYNC_INTERVAL_MS: u64 = 4_000;

/// Default age before a tombstone may be collected: one day. Long enough that a peer that was
/// briefly away (a reboot, a partition) still receives the deletion itself.
pub const DEFAULT_TOMBSTONE_HORIZON_MS: u64 = 24 * 60 * 60 * 1000;

/// Which CRDT a collection holds. Every node must configure the same kind for the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`LwwRegister`].
    Register,
    /// [`LwwMap`].
    Map,
    /// [`OrSet`].
    Set,
    /// [`PnCounter`].
    Counter,
}

impl Kind {
    pub(crate) fn code(self) -> u8 {
        match self {
            Kind::Register => 0,
            Kind::Map => 1,
            Kind::Set => 2,
            Kind::Counter => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Kind> {
        [Kind::Register, Kind::Map, Kind::Set, Kind::Counter]
            .into_iter()
            .find(|kind| kind.code() == code)
    }

    fn empty(self) -> Crdt {
        match self {
            Kind::Register => Crdt::Register(LwwRegister::new()),
            Kind::Map => Crdt::Map(LwwMap::new()),
            Kind::Set => Crdt::Set(OrSet::new()),
            Kind::Counter => Crdt::Counter(PnCounter::new()),
        }
    }
}

/// Settings of a replica. Build with [`ReplicaConfig::standard`] or by hand, then `validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This node; the writer of every local mutation.
    pub node: NodeId,
    /// Named collections, at most [`MAX_COLLECTIONS`], names 1 to 32 bytes and unique.
    pub collections: Vec<(String, Kind)>,
    /// Pause between digest rounds, milliseconds (at least 1).
    pub sync_interval_ms: u64,
    /// Longest pause between digests to a peer whose state equals ours (see
    /// [`DEFAULT_MAX_SYNC_INTERVAL_MS`]); below `sync_interval_ms` it counts as
    /// `sync_interval_ms` (no back-off).
    pub max_sync_interval_ms: u64,
    /// How far ahead of the local wall clock a remote timestamp may be.
    pub max_drift_ms: u64,
    /// Minimum age of a collectable tombstone.
    pub tombstone_horizon_ms: u64,
    /// A peer silent for this long is forgotten and no longer holds back garbage collection.
    pub peer_forget_ms: u64,
}

impl ReplicaConfig {
    /// The node's collections, all maps because their values are signed statements of a few
    /// KB: `directory` (node id to signed node record), `revocations` (revoked node id to the
    /// CA's signed revocation) and `policies` (policy name to CA-signed policy), with the
    /// default timings.
    pub fn standard(node: NodeId) -> ReplicaConfig {
        ReplicaConfig {
            node,
            collections: vec![
                ("directory".to_owned(), Kind::Map),
                ("revocations".to_owned(), Kind::Map),
                ("policies".to_owned(), Kind::Map),
            ],
            sync_interval_ms: DEFAULT_SYNC_INTERVAL_MS,
            max_sync_interval_ms: DEFAULT_MAX_SYNC_INTERVAL_MS,
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
            tombstone_horizon_ms: DEFAULT_TOMBSTONE_HORIZON_MS,
            peer_forget_ms: DEFAULT_TOMBSTONE_HORIZON_MS,
        }
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), CrdtError> {
        if self.collections.is_empty() || self.collections.len() > MAX_COLLECTIONS {
            return Err(CrdtError::Config(format!(
                "collections: between 1 and {MAX_COLLECTIONS} required, got {}",
                self.collections.len()
            )));
        }
        for (index, (name, _)) in self.collections.iter().enumerate() {
            if name.is_empty() || name.len() > MAX_COLLECTION_NAME_BYTES {
                return Err(CrdtError::Config(format!(
                    "collections[{index}]: name must be 1 to {MAX_COLLECTION_NAME_BYTES} bytes"
                )));
            }
            if self.collections[..index]
                .iter()
                .any(|(other, _)| other == name)
            {
                return Err(CrdtError::Config(format!(
                    "collections[{index}]: duplicate name {name:?}"
                )));
            }
        }
        if self.sync_interval_ms == 0 {
            return Err(CrdtError::Config(
                "sync_interval_ms: must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer.
    pub to: NodeId,
    /// The encoded message, at most [`MAX_MESSAGE_BYTES`].
    pub payload: Vec<u8>,
}

/// Why an incoming datagram was dropped (each also counted in [`Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// It did not decode.
    Malformed(DecodeError),
    /// The peer table is full and the sender is not in it.
    UnknownPeer,
    /// It names no configured collection.
    UnknownCollection,
    /// A timestamp in it is too far ahead of the local clock.
    ClockSkew,
    /// Its range does not continue the local history; an earlier chunk was lost.
    OutOfOrder,
    /// Applying it would exceed a bound, or it contradicts itself.
    Rejected,
    /// A fragment that contradicts earlier fragments of its message, or that found the
    /// reassembly table full.
    Reassembly,
}

/// Counters for the node's status output. Every dropped datagram is counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received.
    pub messages_rx: u64,
    /// Bytes received.
    pub bytes_rx: u64,
    /// Datagrams queued for sending.
    pub messages_tx: u64,
    /// Bytes queued for sending.
    pub bytes_tx: u64,
    /// Dropped: longer than [`MAX_MESSAGE_BYTES`].
    pub dropped_oversized: u64,
    /// Dropped: another format version.
    pub dropped_version: u64,
    /// Dropped: malformed (bad magic, type, lengths, order, truncation).
    pub dropped_malformed: u64,
    /// Dropped: from an unknown peer while the peer table was full.
    pub dropped_unknown_peer: u64,
    /// Dropped (or skipped, for one DIGEST item): an unconfigured collection.
    pub dropped_unknown_collection: u64,
    /// Dropped: a timestamp beyond the drift bound.
    pub dropped_clock_skew: u64,
    /// Dropped: a DELTA that does not continue the local history.
    pub dropped_out_of_order: u64,
    /// Dropped: a DELTA that would exceed a bound.
    pub dropped_rejected: u64,
    /// Not sent: the transmit queue was full (anti-entropy resends later).
    pub transmit_queue_full: u64,
    /// Entries skipped because the node's [`EntryCheck`] refused them (bad signatures).
    pub dropped_invalid_entries: u64,
    /// DELTA chunks applied.
    pub deltas_applied: u64,
    /// FRAGMENT datagrams received (also in `messages_rx`).
    pub fragments_rx: u64,
    /// Messages rebuilt from fragments.
    pub messages_reassembled: u64,
    /// Dropped: a fragment contradicting the earlier fragments of its message (the partial
    /// message goes too).
    pub dropped_fragment_mismatch: u64,
    /// Dropped: a fragment of a new message while the reassembly table was full.
    pub dropped_reassembly_full: u64,
    /// Partial messages given up: not complete within the timeout, or evicted by a newer
    /// message of the same peer.
    pub reassembly_expired: u64,
    /// Tombstones collected.
    pub tombstones_collected: u64,
}

/// A collection's CRDT.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Crdt {
    Register(LwwRegister),
    Map(LwwMap),
    Set(OrSet),
    Counter(PnCounter),
}

impl Crdt {
    fn store(&self) -> &DotStore {
        match self {
            Crdt::Register(crdt) => crdt.store(),
            Crdt::Map(crdt) => crdt.store(),
            Crdt::Set(crdt) => crdt.store(),
            Crdt::Counter(crdt) => crdt.store(),
        }
    }

    fn store_mut(&mut self) -> &mut DotStore {
        match self {
            Crdt::Register(crdt) => crdt.store_mut(),
            Crdt::Map(crdt) => crdt.store_mut(),
            Crdt::Set(crdt) => crdt.store_mut(),
            Crdt::Counter(crdt) => crdt.store_mut(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Collection {
    name: String,
    kind: Kind,
    crdt: Crdt,
    /// The state digest, computed on first use after a change: every DIGEST from every peer
    /// asks for it, and hashing the whole state each time would cost O(state) per datagram.
    digest: Cell<Option<u64>>,
}

impl Collection {
    fn digest(&self) -> u64 {
        if let Some(digest) = self.digest.get() {
            return digest;
        }
        let digest = self.crdt.store().digest();
        self.digest.set(Some(digest));
        digest
    }

    /// Mutable access to the state; forgets the cached digest.
    fn crdt_mut(&mut self) -> &mut Crdt {
        self.digest.set(None);
        &mut self.crdt
    }
}

/// What this replica knows of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    last_heard_ms: u64,
    /// Per collection, whether the peer's last DIGEST matched our state.
    in_sync: Vec<bool>,
    /// Per collection, the events of each origin the peer has been seen to hold. Only grows
    /// from evidence (its vectors, its chunks, an equal digest), so it may lag but never lead;
    /// garbage collection relies on that. At most [`MAX_ORIGINS`] origins per collection.
    acked: Vec<BTreeMap<NodeId, u64>>,
    /// Per collection, the digest last sent to the peer (empty before the first).
    digests_sent: Vec<u64>,
    /// Current pause between digests to the peer: `sync_interval_ms` while anything differs,
    /// doubling while both sides stay equal.
    digest_interval_ms: u64,
    /// When the peer is next due a digest while both sides stay equal.
    next_digest_ms: u64,
}

/// One node's replicas of the configured collections and its anti-entropy with peers.
#[derive(Debug, Clone)]
pub struct Replica {
    config: ReplicaConfig,
    clock: HlcClock,
    collections: Vec<Collection>,
    peers: BTreeMap<NodeId, Peer>,
    transmits: VecDeque<Transmit>,
    /// Where the next chunk of an equal-length-but-different history starts, per
    /// (peer, collection, origin), so a long history is repaired across rounds.
    repairs: BTreeMap<(NodeId, usize, NodeId), u64>,
    next_sync_ms: u64,
    stats: Stats,
    /// Per collection, the node's test for remote entries (signatures), if any.
    checks: Vec<Option<EntryCheck>>,
    /// Messages from peers that arrive as fragments, until complete.
    reassembly: Reassembly,
    /// Number of the next message this replica sends as fragments.
    next_message_id: u32,
}

/// A test the node applies to every remote entry before it is merged, such as verifying the
/// signature of a node record. An entry that fails is skipped and counted
/// ([`Stats::dropped_invalid_entries`]); the rest of its chunk still applies, so one bad entry
/// cannot stall the writer's history. Its dot counts as seen, so honest replicas also remove
/// it from the peer that sent it, like any removal.
#[derive(Clone)]
pub struct EntryCheck(Arc<CheckFn>);

/// The test itself: writer and entry in, accept or not out.
type CheckFn = dyn Fn(NodeId, &Entry) -> bool + Send + Sync;

impl EntryCheck {
    /// Wraps a test taking the writer and the entry.
    pub fn new(check: impl Fn(NodeId, &Entry) -> bool + Send + Sync + 'static) -> EntryCheck {
        EntryCheck(Arc::new(check))
    }
}

impl fmt::Debug for EntryCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EntryCheck(..)")
    }
}

/// What `ctl crdt status` shows about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub peer: NodeId,
    /// When it was last heard, wall-clock ms.
    pub last_heard_ms: u64,
    /// Per collection (configuration order): whether its last digest matched ours.
    pub in_sync: Vec<(String, bool)>,
}

impl Replica {
    /// A replica with empty collections. `now_ms` arms the first digest round.
    pub fn new(config: ReplicaConfig, now_ms: u64) -> Result<Replica, CrdtError> {
        config.validate()?;
        let collections = config
            .collections
            .iter()
            .map(|(name, kind)| Collection {
                name: name.clone(),
                kind: *kind,
                crdt: kind.empty(),
                digest: Cell::new(None),
            })
            .collect();
        Ok(Replica {
            checks: vec![None; config.collections.len()],
            clock: HlcClock::new(config.node, config.max_drift_ms),
            config,
            collections,
            peers: BTreeMap::new(),
            transmits: VecDeque::new(),
            repairs: BTreeMap::new(),
            next_sync_ms: now_ms,
            stats: Stats::default(),
            reassembly: Reassembly::default(),
            next_message_id: 0,
        })
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.config.node
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// The hybrid clock (its last timestamp and rejection count).
    pub fn clock(&self) -> &HlcClock {
        &self.clock
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Messages from peers being rebuilt from fragments right now.
    pub fn reassembling(&self) -> usize {
        self.reassembly.len()
    }

    /// Peers currently synchronised with.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }

    /// Starts synchronising with `peer` (a neighbour the node has an authenticated link to).
    /// Peers that send messages are added on their own; this only makes it happen sooner.
    pub fn add_peer(&mut self, peer: NodeId, now_ms: u64) -> Result<(), CrdtError> {
        if self.touch_peer(peer, now_ms) {
            Ok(())
        } else {
            Err(CrdtError::Config(format!("peers: at most {MAX_PEERS}")))
        }
    }

    /// Sends `peer` a DIGEST now instead of at the next round, so a new link starts to sync
    /// at once (the answer brings what either side lacks).
    pub fn sync_now(&mut self, peer: NodeId) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        let digests: Vec<CollectionDigest> = self
            .collections
            .iter()
            .map(|collection| CollectionDigest {
                name: collection.name.as_bytes().to_vec(),
                digest: collection.digest(),
            })
            .collect();
        if let Some(known) = self.peers.get_mut(&peer) {
            known.digests_sent = digests.iter().map(|item| item.digest).collect();
            known.digest_interval_ms = self.config.sync_interval_ms;
        }
        self.enqueue(peer, &Message::Digest(digests));
    }

    /// Installs the node's test for remote entries of one collection (see [`EntryCheck`]).
    pub fn set_entry_check(
        &mut self,
        collection: &str,
        check: EntryCheck,
    ) -> Result<(), CrdtError> {
        let index = self
            .find(collection)
            .ok_or_else(|| CrdtError::UnknownCollection(collection.to_owned()))?;
        self.checks[index] = Some(check);
        Ok(())
    }

    /// Every peer with its sync state, for status output.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|(id, peer)| PeerStatus {
                peer: *id,
                last_heard_ms: peer.last_heard_ms,
                in_sync: self
                    .collections
                    .iter()
                    .zip(&peer.in_sync)
                    .map(|(collection, in_sync)| (collection.name.clone(), *in_sync))
                    .collect(),
            })
            .collect()
    }

    /// Stops synchronising with `peer`; it no longer holds back garbage collection.
    pub fn remove_peer(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
        self.repairs.retain(|(to, _, _), _| *to != peer);
        self.reassembly.remove_peer(peer);
    }

    /// The 64-bit digest of a collection (equal on two nodes means equal state).
    pub fn digest(&self, collection: &str) -> Option<u64> {
        self.find(collection)
            .map(|index| self.collections[index].digest())
    }

    /// The dot store of a collection, for inspection.
    pub fn store(&self, collection: &str) -> Option<&DotStore> {
        self.find(collection)
            .map(|index| self.collections[index].crdt.store())
    }

    /// A map collection.
    pub fn map(&self, collection: &str) -> Option<&LwwMap> {
        match &self.collections[self.find(collection)?].crdt {
            Crdt::Map(map) => Some(map),
            _ => None,
        }
    }

    /// A set collection.
    pub fn set(&self, collection: &str) -> Option<&OrSet> {
        match &self.collections[self.find(collection)?].crdt {
            Crdt::Set(set) => Some(set),
            _ => None,
        }
    }

    /// A counter collection.
    pub fn counter(&self, collection: &str) -> Option<&PnCounter> {
        match &self.collections[self.find(collection)?].crdt {
            Crdt::Counter(counter) => Some(counter),
            _ => None,
        }
    }

    /// A register collection.
    pub fn register(&self, collection: &str) -> Option<&LwwRegister> {
        match &self.collections[self.find(collection)?].crdt {
            Crdt::Register(register) => Some(register),
            _ => None,
        }
    }

    /// Sets `key` in a map collection and pushes the write to every peer.
    pub fn map_insert(
        &mut self,
        collection: &str,
        key: &[u8],
        value: &[u8],
        now_ms: u64,
    ) -> Result<(), CrdtError> {
        self.mutate(collection, |crdt, clock| match crdt {
            Crdt::Map(map) => map.insert(clock, now_ms, key, value).map(|_| ()),
            _ => Err(CrdtError::WrongKind(collection.to_owned())),
        })
    }

    /// Deletes `key` from a map collection (a tombstone) and pushes it to every peer.
    pub fn map_remove(
        &mut self,
        collection: &str,
        key: &[u8],
        now_ms: u64,
    ) -> Result<(), CrdtError> {
        self.mutate(collection, |crdt, clock| match crdt {
            Crdt::Map(map) => map.remove(clock, now_ms, key).map(|_| ()),
            _ => Err(CrdtError::WrongKind(collection.to_owned())),
        })
    }

    /// Adds `element` to a set collection and pushes it to every peer.
    pub fn set_add(
        &mut self,
        collection: &str,
        element: &[u8],
        now_ms: u64,
    ) -> Result<(), CrdtError> {
        self.mutate(collection, |crdt, clock| match crdt {
            Crdt::Set(set) => set.add(clock, now_ms, element).map(|_| ()),
            _ => Err(CrdtError::WrongKind(collection.to_owned())),
        })
    }

    /// Removes `element` from a set collection. Nothing is pushed: the removal reaches peers
    /// through the next digest round (their digests now differ).
    pub fn set_remove(&mut self, collection: &str, element: &[u8]) -> Result<(), CrdtError> {
        self.mutate(collection, |crdt, _| match crdt {
            Crdt::Set(set) => set.remove(element).map(|_| ()),
            _ => Err(CrdtError::WrongKind(collection.to_owned())),
        })
    }

    /// Adds `by` (negative: subtracts) to a counter collection and pushes it to every peer.
    pub fn counter_add(&mut self, collection: &str, by: i64, now_ms: u64) -> Result<(), CrdtError> {
        self.mutate(collection, |crdt, clock| match crdt {
            Crdt::Counter(counter) if by >= 0 => counter
                .increment(clock, now_ms, by.unsigned_abs())
                .map(|_| ()),
            Crdt::Counter(counter) => counter
                .decrement(clock, now_ms, by.unsigned_abs())
                .map(|_| ()),
            _ => Err(CrdtError::WrongKind(collection.to_owned())),
        })
    }

    /// Sets a register collection and pushes the write to every peer.
    pub fn register_set(
        &mut self,
        collection: &str,
        value: &[u8],
        now_ms: u64,
    ) -> Result<(), CrdtError> {
        self.mutate(collection, |crdt, clock| match crdt {
            Crdt::Register(register) => register.set(clock, now_ms, value).map(|_| ()),
            _ => Err(CrdtError::WrongKind(collection.to_owned())),
        })
    }

    /// Applies a local mutation, then pushes the new local event to every peer as a one-event
    /// chunk. A peer that missed earlier events drops it as out of order; the next digest
    /// round repairs that.
    fn mutate(
        &mut self,
        collection: &str,
        apply: impl FnOnce(&mut Crdt, &mut HlcClock) -> Result<(), CrdtError>,
    ) -> Result<(), CrdtError> {
        let index = self
            .find(collection)
            .ok_or_else(|| CrdtError::UnknownCollection(collection.to_owned()))?;
        let node = self.config.node;
        let before = self.collections[index].crdt.store().context().max(node);
        apply(self.collections[index].crdt_mut(), &mut self.clock)?;
        let after = self.collections[index].crdt.store().context().max(node);
        if after > before {
            let peers: Vec<NodeId> = self.peers.keys().copied().collect();
            for peer in peers {
                let mut budget = MAX_RELAY_DATAGRAMS;
                self.send_range(peer, index, node, before, after, &mut budget);
            }
        }
        Ok(())
    }

    /// Takes the next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`Replica::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        Some(self.next_sync_ms)
    }

    /// Runs the periodic work that is due: a digest round, forgetting silent peers, and
    /// garbage collection of tombstones.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let interval = self.config.sync_interval_ms;
        if now_ms.saturating_add(interval) < self.next_sync_ms {
            // The wall clock went backwards; waiting for the old deadline could take hours.
            self.next_sync_ms = now_ms;
        }
        if now_ms < self.next_sync_ms {
            return;
        }
        self.next_sync_ms = now_ms.saturating_add(interval);
        self.stats.reassembly_expired += self.reassembly.expire(now_ms) as u64;
        let forget_before = now_ms.saturating_sub(self.config.peer_forget_ms);
        let silent: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.last_heard_ms < forget_before)
            .map(|(id, _)| *id)
            .collect();
        for peer in silent {
            self.remove_peer(peer);
        }
        self.collect_garbage(now_ms);
        let digests: Vec<CollectionDigest> = self
            .collections
            .iter()
            .map(|collection| CollectionDigest {
                name: collection.name.as_bytes().to_vec(),
                digest: collection.digest(),
            })
            .collect();
        let values: Vec<u64> = digests.iter().map(|item| item.digest).collect();
        let fastest = interval;
        let slowest = self.config.max_sync_interval_ms.max(fastest);
        let mut due = Vec::new();
        for (id, peer) in &mut self.peers {
            if peer.digests_sent != values {
                // The peer's last digest matched our former state, not this one: only its
                // next digest (or its silence after ours) can show it caught up.
                peer.in_sync.fill(false);
            }
            // Equal on both sides: our state is what we last told the peer, and the peer's
            // digest matched it since. Anything else (a local change, a mismatch, a new peer,
            // a peer we cannot hear) makes every round send again.
            let quiet = peer.digests_sent == values && peer.in_sync.iter().all(|equal| *equal);
            if !quiet {
                peer.digest_interval_ms = fastest;
            } else if now_ms < peer.next_digest_ms
                && peer.next_digest_ms <= now_ms.saturating_add(slowest)
            {
                // Not due yet (a deadline beyond the longest pause means the wall clock went
                // back: send now).
                continue;
            } else {
                peer.digest_interval_ms = peer.digest_interval_ms.saturating_mul(2).min(slowest);
            }
            peer.next_digest_ms = now_ms.saturating_add(peer.digest_interval_ms);
            peer.digests_sent.clone_from(&values);
            due.push(*id);
        }
        for peer in due {
            self.enqueue(peer, &Message::Digest(digests.clone()));
        }
    }

    /// Handles one datagram from `peer`. Bad input is dropped and counted, never a panic.
    pub fn handle_message(
        &mut self,
        peer: NodeId,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(), Dropped> {
        self.stats.messages_rx += 1;
        self.stats.bytes_rx += bytes.len() as u64;
        let message = match Message::decode(bytes) {
            Ok(message) => message,
            Err(error) => {
                match error {
                    DecodeError::Oversized => self.stats.dropped_oversized += 1,
                    DecodeError::UnknownVersion(_) => self.stats.dropped_version += 1,
                    _ => self.stats.dropped_malformed += 1,
                }
                return Err(Dropped::Malformed(error));
            }
        };
        if peer == self.config.node {
            self.stats.dropped_unknown_peer += 1;
            return Err(Dropped::UnknownPeer);
        }
        if !self.touch_peer(peer, now_ms) {
            self.stats.dropped_unknown_peer += 1;
            return Err(Dropped::UnknownPeer);
        }
        let message = match message {
            Message::Fragment(fragment) => match self.handle_fragment(peer, fragment, now_ms)? {
                Some(message) => message,
                None => return Ok(()),
            },
            whole => whole,
        };
        match message {
            Message::Digest(digests) => {
                self.handle_digest(peer, &digests);
                Ok(())
            }
            Message::Vector(page) => self.handle_vector(peer, &page),
            Message::Delta(chunk) => self.handle_delta(peer, &chunk, now_ms),
            // `decode_assembled` refuses a fragment inside a fragment.
            Message::Fragment(_) => {
                self.stats.dropped_malformed += 1;
                Err(Dropped::Malformed(DecodeError::Invalid("nested fragment")))
            }
        }
    }

    /// Stores one fragment; returns the whole message once its last fragment arrived.
    fn handle_fragment(
        &mut self,
        peer: NodeId,
        fragment: Fragment,
        now_ms: u64,
    ) -> Result<Option<Message>, Dropped> {
        self.stats.fragments_rx += 1;
        let (progress, evicted) = self.reassembly.insert(peer, fragment, now_ms);
        self.stats.reassembly_expired += evicted as u64;
        match progress {
            Progress::Pending => Ok(None),
            Progress::Mismatch => {
                self.stats.dropped_fragment_mismatch += 1;
                Err(Dropped::Reassembly)
            }
            Progress::Full => {
                self.stats.dropped_reassembly_full += 1;
                Err(Dropped::Reassembly)
            }
            Progress::Complete(bytes) => match Message::decode_assembled(&bytes) {
                Ok(message) => {
                    self.stats.messages_reassembled += 1;
                    Ok(Some(message))
                }
                Err(error) => {
                    self.stats.dropped_malformed += 1;
                    Err(Dropped::Malformed(error))
                }
            },
        }
    }

    fn handle_digest(&mut self, peer: NodeId, digests: &[CollectionDigest]) {
        for item in digests {
            let Some(index) = self.find_bytes(&item.name) else {
                self.stats.dropped_unknown_collection += 1;
                continue;
            };
            let collection = &self.collections[index];
            let store = collection.crdt.store();
            if collection.digest() == item.digest {
                // Equal digests mean the peer holds exactly our state, so it has seen our
                // whole version vector.
                let vector: BTreeMap<NodeId, u64> = store.context().vector().collect();
                if let Some(known) = self.peers.get_mut(&peer) {
                    known.acked[index] = vector;
                    known.in_sync[index] = true;
                }
            } else {
                if let Some(known) = self.peers.get_mut(&peer) {
                    known.in_sync[index] = false;
                }
                self.send_vector(peer, index);
            }
        }
    }

    fn handle_vector(&mut self, peer: NodeId, page: &VectorPage) -> Result<(), Dropped> {
        let Some(index) = self.find_bytes(&page.collection) else {
            self.stats.dropped_unknown_collection += 1;
            return Err(Dropped::UnknownCollection);
        };
        let theirs: BTreeMap<NodeId, OriginSummary> = page
            .origins
            .iter()
            .map(|summary| (summary.origin, *summary))
            .collect();
        if let Some(known) = self.peers.get_mut(&peer) {
            let acked = &mut known.acked[index];
            acked.retain(|origin, _| *origin < page.from || *origin > page.to);
            for summary in theirs.values().filter(|summary| summary.max > 0) {
                if acked.len() < MAX_ORIGINS {
                    acked.insert(summary.origin, summary.max);
                }
            }
        }
        let store = self.collections[index].crdt.store();
        let ours: Vec<(NodeId, u64, u64)> = store
            .context()
            .vector()
            .filter(|(origin, _)| *origin >= page.from && *origin <= page.to)
            .map(|(origin, max)| (origin, max, store.origin_digest(origin)))
            .collect();
        // Missing events go first, repairs second: a repair may drop an overwritten entry
        // whose successor travels in another origin's range, and sending that range first
        // keeps the key from vanishing in between unless a datagram is lost.
        let mut budget = MAX_DELTA_DATAGRAMS_PER_REPLY;
        let mut repairs = Vec::new();
        for (origin, max, digest) in ours {
            let (their_max, their_digest) = theirs
                .get(&origin)
                .map_or((0, crate::store::EMPTY_ORIGIN_DIGEST), |s| {
                    (s.max, s.digest)
                });
            let key = (peer, index, origin);
            if max > their_max {
                self.repairs.remove(&key);
                self.send_range(peer, index, origin, their_max, max, &mut budget);
            } else if max == their_max && digest != their_digest {
                repairs.push((origin, max));
            } else {
                self.repairs.remove(&key);
            }
        }
        for (origin, max) in repairs {
            let key = (peer, index, origin);
            let start = self
                .repairs
                .get(&key)
                .copied()
                .filter(|lo| *lo < max)
                .unwrap_or(0);
            let resume = self.send_range(peer, index, origin, start, max, &mut budget);
            match resume {
                Some(next)
                    if self.repairs.len() < MAX_REPAIR_CURSORS
                        || self.repairs.contains_key(&key) =>
                {
                    self.repairs.insert(key, next);
                }
                Some(_) => {}
                None => {
                    self.repairs.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn handle_delta(
        &mut self,
        peer: NodeId,
        chunk: &DeltaChunk,
        now_ms: u64,
    ) -> Result<(), Dropped> {
        let Some(index) = self.find_bytes(&chunk.collection) else {
            self.stats.dropped_unknown_collection += 1;
            return Err(Dropped::UnknownCollection);
        };
        for (_, entry) in &chunk.entries {
            if self.clock.check(entry.hlc, now_ms).is_err() {
                self.stats.dropped_clock_skew += 1;
                return Err(Dropped::ClockSkew);
            }
        }
        if chunk.lo
            > self.collections[index]
                .crdt
                .store()
                .context()
                .max(chunk.origin)
        {
            self.stats.dropped_out_of_order += 1;
            return Err(Dropped::OutOfOrder);
        }
        let check = self.checks[index].clone();
        let accepted = |(_, entry): &&(u64, Entry)| {
            check
                .as_ref()
                .is_none_or(|check| (check.0)(chunk.origin, entry))
        };
        let store = self.collections[index].crdt_mut().store_mut();
        let incoming: Vec<(Dot, &Entry)> = chunk
            .entries
            .iter()
            .filter(accepted)
            .map(|(seq, entry)| {
                (
                    Dot {
                        origin: chunk.origin,
                        seq: *seq,
                    },
                    entry,
                )
            })
            .collect();
        let cover = Cover::Range {
            origin: chunk.origin,
            lo: chunk.lo,
            hi: chunk.hi,
        };
        let before = store.context().max(chunk.origin);
        if store.join(&incoming, cover).is_err() {
            self.stats.dropped_rejected += 1;
            return Err(Dropped::Rejected);
        }
        let after = store.context().max(chunk.origin);
        let applied = incoming.len();
        self.stats.dropped_invalid_entries += (chunk.entries.len() - applied) as u64;
        for (_, entry) in &chunk.entries {
            self.clock.witness(entry.hlc);
        }
        self.stats.deltas_applied += 1;
        if let Some(known) = self.peers.get_mut(&peer) {
            let acked = &mut known.acked[index];
            if acked.len() < MAX_ORIGINS || acked.contains_key(&chunk.origin) {
                let slot = acked.entry(chunk.origin).or_insert(0);
                *slot = (*slot).max(chunk.hi);
            }
        }
        if after > before && after - before <= MAX_RELAY_EVENTS {
            self.relay(peer, index, chunk.origin, before, after);
        }
        Ok(())
    }

    /// Passes a few fresh events on to every other peer at once, so a write crosses the mesh
    /// at network speed rather than one digest round per hop. Each node relays an event only
    /// when it first learns it, so a write costs about one chunk per link.
    fn relay(&mut self, from: NodeId, index: usize, origin: NodeId, lo: u64, hi: u64) {
        let peers: Vec<NodeId> = self
            .peers
            .keys()
            .copied()
            .filter(|peer| *peer != from && *peer != origin)
            .collect();
        for peer in peers {
            let mut budget = MAX_RELAY_DATAGRAMS;
            self.send_range(peer, index, origin, lo, hi, &mut budget);
        }
    }
}

impl Replica {
    /// Sends the whole version vector of a collection, in pages that tile the origin space.
    fn send_vector(&mut self, peer: NodeId, index: usize) {
        let store = self.collections[index].crdt.store();
        let summaries: Vec<OriginSummary> = store
            .context()
            .vector()
            .map(|(origin, max)| OriginSummary {
                origin,
                max,
                digest: store.origin_digest(origin),
            })
            .collect();
        let name = self.collections[index].name.as_bytes().to_vec();
        let pages: Vec<&[OriginSummary]> = if summaries.is_empty() {
            vec![&[]]
        } else {
            summaries.chunks(ORIGINS_PER_VECTOR).collect()
        };
        let mut from = NodeId([0x00; NodeId::LEN]);
        for (number, origins) in pages.iter().enumerate() {
            let last = number + 1 == pages.len();
            let to = match origins.last() {
                Some(summary) if !last => summary.origin,
                _ => NodeId([0xff; NodeId::LEN]),
            };
            let page = VectorPage {
                collection: name.clone(),
                from,
                to,
                origins: origins.to_vec(),
            };
            self.enqueue(peer, &Message::Vector(page));
            match successor(to) {
                Some(next) => from = next,
                None => break,
            }
        }
    }

    /// Sends `origin`'s events `(lo, hi]` in chunks, spending one unit of `budget` per
    /// datagram: a chunk of small entries fits one datagram, a chunk holding one large value
    /// costs its fragments. Returns where to resume if the budget ran out first.
    fn send_range(
        &mut self,
        peer: NodeId,
        index: usize,
        origin: NodeId,
        lo: u64,
        hi: u64,
        budget: &mut usize,
    ) -> Option<u64> {
        let name = self.collections[index].name.as_bytes().to_vec();
        let overhead = DELTA_OVERHEAD_BYTES - MAX_COLLECTION_NAME_BYTES + name.len();
        let mut chunks = Vec::new();
        let mut spent = 0;
        let mut start = lo;
        let mut entries: Vec<(u64, Entry)> = Vec::new();
        let mut size = overhead;
        let mut resume = None;
        for (dot, entry) in self.collections[index].crdt.store().range(origin, lo, hi) {
            let bytes = 8 + entry_bytes(entry);
            if size + bytes > MAX_MESSAGE_BYTES && !entries.is_empty() {
                let cost = Fragment::count_for(size);
                if spent + cost > *budget {
                    resume = Some(start);
                    break;
                }
                let end = entries.last().map_or(start, |(seq, _)| *seq);
                chunks.push(chunk(
                    &name,
                    origin,
                    start,
                    end,
                    std::mem::take(&mut entries),
                ));
                spent += cost;
                start = end;
                size = overhead;
            }
            size += bytes;
            entries.push((dot.seq, entry.clone()));
        }
        if resume.is_none() && start < hi {
            let cost = Fragment::count_for(size);
            if spent + cost <= *budget {
                chunks.push(chunk(&name, origin, start, hi, entries));
                spent += cost;
            } else {
                resume = Some(start);
            }
        }
        *budget -= spent.min(*budget);
        for message in chunks {
            self.enqueue(peer, &message);
        }
        resume
    }

    /// Encodes and queues one message, as fragments if it does not fit one datagram, unless
    /// the queue lacks room for all of it (then anti-entropy resends).
    fn enqueue(&mut self, to: NodeId, message: &Message) {
        let encoded = message.encode();
        let payloads = if encoded.len() <= MAX_MESSAGE_BYTES {
            vec![encoded]
        } else {
            let id = self.next_message_id;
            self.next_message_id = self.next_message_id.wrapping_add(1);
            match Fragment::split(&encoded, id) {
                Some(fragments) => fragments
                    .into_iter()
                    .map(|fragment| Message::Fragment(fragment).encode())
                    .collect(),
                // Chunks are built within MAX_ASSEMBLED_BYTES; count rather than send.
                None => {
                    self.stats.transmit_queue_full += 1;
                    return;
                }
            }
        };
        if self.transmits.len() + payloads.len() > MAX_QUEUED_TRANSMITS {
            self.stats.transmit_queue_full += 1;
            return;
        }
        for payload in payloads {
            self.stats.messages_tx += 1;
            self.stats.bytes_tx += payload.len() as u64;
            self.transmits.push_back(Transmit { to, payload });
        }
    }

    /// Records that `peer` was heard; false when it is new and the table is full.
    fn touch_peer(&mut self, peer: NodeId, now_ms: u64) -> bool {
        if peer == self.config.node {
            return false;
        }
        if let Some(known) = self.peers.get_mut(&peer) {
            known.last_heard_ms = known.last_heard_ms.max(now_ms);
            return true;
        }
        if self.peers.len() >= MAX_PEERS {
            return false;
        }
        self.peers.insert(
            peer,
            Peer {
                last_heard_ms: now_ms,
                in_sync: vec![false; self.collections.len()],
                acked: vec![BTreeMap::new(); self.collections.len()],
                digests_sent: Vec::new(),
                digest_interval_ms: self.config.sync_interval_ms,
                next_digest_ms: now_ms,
            },
        );
        true
    }

    /// Collects tombstones older than the horizon that every known peer has been seen to hold.
    /// With no peers nothing is collected: stability cannot be shown.
    fn collect_garbage(&mut self, now_ms: u64) {
        if self.peers.is_empty() {
            return;
        }
        let cutoff_ms = now_ms.saturating_sub(self.config.tombstone_horizon_ms);
        for (index, collection) in self.collections.iter_mut().enumerate() {
            let peers = &self.peers;
            let stable = |dot: Dot| {
                peers.values().all(|peer| {
                    peer.acked[index]
                        .get(&dot.origin)
                        .is_some_and(|max| *max >= dot.seq)
                })
            };
            let collected = collection
                .crdt
                .store_mut()
                .collect_garbage(cutoff_ms, stable);
            if collected > 0 {
                collection.digest.set(None);
            }
            self.stats.tombstones_collected += collected as u64;
        }
    }

    /// Peers and when each was last heard, for the snapshot.
    pub(crate) fn peer_records(&self) -> Vec<(NodeId, u64)> {
        self.peers
            .iter()
            .map(|(id, peer)| (*id, peer.last_heard_ms))
            .collect()
    }

    /// Every collection's name, kind and store, for the snapshot.
    pub(crate) fn collection_parts(&self) -> Vec<(&str, Kind, &DotStore)> {
        self.collections
            .iter()
            .map(|collection| {
                (
                    collection.name.as_str(),
                    collection.kind,
                    collection.crdt.store(),
                )
            })
            .collect()
    }

    /// Puts a restored store in place of the empty collection of the same name and kind.
    pub(crate) fn install(
        &mut self,
        name: &str,
        kind: Kind,
        store: DotStore,
    ) -> Result<(), CrdtError> {
        let index = self
            .find(name)
            .ok_or_else(|| CrdtError::UnknownCollection(name.to_owned()))?;
        let collection = &mut self.collections[index];
        if collection.kind != kind || collection.crdt.store().policy() != store.policy() {
            return Err(CrdtError::WrongKind(name.to_owned()));
        }
        *collection.crdt_mut().store_mut() = store;
        Ok(())
    }

    /// Restores the clock and the peer list (acknowledgements start empty).
    pub(crate) fn install_clock_and_peers(
        &mut self,
        clock: HlcClock,
        peers: BTreeMap<NodeId, u64>,
    ) {
        self.clock = clock;
        for (peer, last_heard_ms) in peers.into_iter().take(MAX_PEERS) {
            if peer != self.config.node {
                self.peers.insert(
                    peer,
                    Peer {
                        last_heard_ms,
                        in_sync: vec![false; self.collections.len()],
                        acked: vec![BTreeMap::new(); self.collections.len()],
                        digests_sent: Vec::new(),
                        digest_interval_ms: self.config.sync_interval_ms,
                        next_digest_ms: 0,
                    },
                );
            }
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.find_bytes(name.as_bytes())
    }

    fn find_bytes(&self, name: &[u8]) -> Option<usize> {
        self.collections
            .iter()
            .position(|collection| collection.name.as_bytes() == name)
    }

    /// Checks the replica's invariants; the simulator and the tests call this after every step.
    pub fn validate(&self) -> Result<(), String> {
        if self.peers.len() > MAX_PEERS || self.transmits.len() > MAX_QUEUED_TRANSMITS {
            return Err("peer table or transmit queue beyond its bound".to_owned());
        }
        if self.repairs.len() > MAX_REPAIR_CURSORS {
            return Err("repair cursors beyond their bound".to_owned());
        }
        self.reassembly.validate()?;
        let last = self.clock.last();
        for collection in &self.collections {
            let store = collection.crdt.store();
            if collection
                .digest
                .get()
                .is_some_and(|cached| cached != store.digest())
            {
                return Err(format!("{}: cached digest is stale", collection.name));
            }
            let mut keys: BTreeMap<&[u8], usize> = BTreeMap::new();
            for (dot, entry) in store.entries() {
                if !store.context().contains(dot) || entry.hlc.node != dot.origin {
                    return Err(format!(
                        "{}: entry {dot:?} outside its context or writer",
                        collection.name
                    ));
                }
                if (entry.hlc.physical_ms, entry.hlc.logical) > (last.physical_ms, last.logical) {
                    return Err(format!(
                        "{}: entry {dot:?} ahead of the clock",
                        collection.name
                    ));
                }
                *keys.entry(entry.key.as_slice()).or_default() += 1;
            }
            let lww = store.policy() == crate::store::Policy::Lww;
            if lww && keys.values().any(|count| *count > 1) {
                return Err(format!("{}: two live entries for one key", collection.name));
            }
        }
        Ok(())
    }
}

fn chunk(name: &[u8], origin: NodeId, lo: u64, hi: u64, entries: Vec<(u64, Entry)>) -> Message {
    Message::Delta(DeltaChunk {
        collection: name.to_vec(),
        origin,
        lo,
        hi,
        entries,
    })
}

/// The next node id in big-endian order, `None` after the last one.
fn successor(id: NodeId) -> Option<NodeId> {
    let value = u128::from_be_bytes(id.0).checked_add(1)?;
    Some(NodeId(value.to_be_bytes()))
}
