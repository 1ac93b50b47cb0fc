//! Per-destination routing state: candidate routes via neighbours, Babel's feasibility
//! distance, and route selection.
//!
//! A candidate is what one neighbour last advertised for the destination: the originator's
//! sequence number, the neighbour's cost, its hop count. A candidate is *feasible* when it
//! is based on a newer sequence number than our feasibility distance, or on the same one
//! with a strictly smaller cost (RFC 8966 §3.5.1). Selecting only feasible candidates keeps
//! the forwarding graph loop-free at every instant, including while several nodes switch to
//! alternates at once; the currently selected candidate may be kept when its cost rises,
//! because the feasibility distances along the path still decrease strictly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use wire::{COST_INFINITE, NodeId};

use crate::Timestamp;
use crate::metric::add_costs;

/// How many neighbours' advertisements are kept per destination: the best route plus two
/// loop-free alternates. Every candidate costs 16 bytes per destination on every node (a
/// 10,000-node mesh holds 10^8 destination entries in simulation), and a third alternate is
/// rarely usable: alternates must be strictly closer to the destination than we are.
pub(crate) const MAX_CANDIDATES: usize = 3;

/// Index of a neighbour in the router's link table. One byte keeps candidates small; the
/// neighbour limit (`max_neighbours` at most 254) keeps every slot below `NO_SLOT`.
pub(crate) type Slot = u8;

/// Marks an empty candidate or "no selection".
pub(crate) const NO_SLOT: Slot = Slot::MAX;

/// `a` is newer than `b` in RFC 1982 serial-number arithmetic over u32.
pub(crate) fn seq_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// One neighbour's advertisement for a destination (12 bytes: every node holds up to three
/// per destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub seq: u32,
    /// The neighbour's own cost to the destination (without our link).
    pub cost: u32,
    /// When it was last advertised, in wrapping quarter seconds (ages are short).
    pub updated_qs: u16,
    pub slot: Slot,
    /// Our hop count through this neighbour.
    pub hops: u8,
}

impl Candidate {
    const EMPTY: Candidate = Candidate {
        slot: NO_SLOT,
        hops: 0,
        seq: 0,
        cost: COST_INFINITE,
        updated_qs: 0,
    };

    pub fn is_empty(&self) -> bool {
        self.slot == NO_SLOT
    }
}

/// Where a destination's next advertisement waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Nothing to send.
    No,
    /// In the router's pending list: sent at the next flush.
    Pending,
    /// A flood relay in the router's waiting queue: sent when the selected neighbour's copy
    /// of the new sequence number arrives or the fallback deadline passes.
    Waiting,
}

/// A route choice: which candidate and its total cost (neighbour cost plus our link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub index: usize,
    pub total: u32,
}

/// Everything a node knows about one destination.
#[derive(Debug, Clone)]
pub(crate) struct RouteEntry {
    pub candidates: [Candidate; MAX_CANDIDATES],
    /// Neighbour slot of the selected candidate, or `NO_SLOT`.
    pub selected: Slot,
    /// Total cost of the selected route when it was last (re)selected.
    pub selected_total: u32,
    /// Feasibility distance: the best (seq, cost) we advertised; `fd_cost` infinite = none.
    pub fd_seq: u32,
    pub fd_cost: u32,
    /// Newest originator sequence number heard for this destination.
    pub newest_seq: u32,
    /// Last advertisement sent: cost (infinite for none or a retraction) and sequence number.
    pub adv_seq: u32,
    pub adv_cost: u32,
    /// Flood TTL to relay at the next flush (0: no relay pending).
    pub relay_ttl: u8,
    /// The pending relay answers a request and must not wait for the probe tick.
    pub relay_urgent: bool,
    /// Whether an advertisement for this destination is queued, and where.
    pub queued: Queued,
    /// When the next hop last changed, in coarse milliseconds (wrapping every 49 days).
    pub changed_ms: u32,
}

impl RouteEntry {
    pub fn new(now: Timestamp) -> RouteEntry {
        RouteEntry {
            candidates: [Candidate::EMPTY; MAX_CANDIDATES],
            selected: NO_SLOT,
            selected_total: COST_INFINITE,
            fd_seq: 0,
            fd_cost: COST_INFINITE,
            newest_seq: 0,
            adv_seq: 0,
            adv_cost: COST_INFINITE,
            relay_ttl: 0,
            relay_urgent: false,
            queued: Queued::No,
            changed_ms: (now.as_micros() / 1000) as u32,
        }
    }

    /// The sequence numbers this node may still advertise for the destination: its live
    /// candidates', its last advertisement's (retractions repeat it) and the newest. A signed
    /// router keeps their signatures.
    pub fn seqs_in_use(&self) -> [Option<u32>; MAX_CANDIDATES + 2] {
        let mut seqs = [None; MAX_CANDIDATES + 2];
        for (kept, candidate) in seqs.iter_mut().zip(&self.candidates) {
            *kept = (!candidate.is_empty()).then_some(candidate.seq);
        }
        seqs[MAX_CANDIDATES] = Some(self.adv_seq);
        seqs[MAX_CANDIDATES + 1] = Some(self.newest_seq);
        seqs
    }

    /// Whether an advertisement `(seq, cost)` satisfies the feasibility condition.
    pub fn is_feasible(&self, seq: u32, cost: u32) -> bool {
        cost != COST_INFINITE
            && (self.fd_cost == COST_INFINITE
                || seq_newer(seq, self.fd_seq)
                || (seq == self.fd_seq && cost < self.fd_cost))
    }

    /// Records that we advertised `(seq, cost)` to all neighbours.
    pub fn note_advertised(&mut self, seq: u32, cost: u32) {
        self.adv_seq = seq;
        self.adv_cost = cost;
        self.note_feasibility(seq, cost);
    }

    /// Moves the feasibility distance for an advertisement to any neighbour; only finite
    /// advertisements count, and for one sequence number the distance only ever decreases.
    pub fn note_feasibility(&mut self, seq: u32, cost: u32) {
        if cost == COST_INFINITE {
            return;
        }
        if self.fd_cost == COST_INFINITE || seq_newer(seq, self.fd_seq) {
            self.fd_seq = seq;
            self.fd_cost = cost;
        } else if seq == self.fd_seq {
            self.fd_cost = self.fd_cost.min(cost);
        }
    }

    /// Where `slot`'s advertisement is kept. Never an empty place: those carry `NO_SLOT`,
    /// and an entry without a route selects `NO_SLOT`, which must not find them (it made
    /// the empty place look like a selected route with sequence number 0 and infinite cost,
    /// so a node without a route re-sent retractions, answered requests with them and
    /// thought it could forward requests).
    pub fn candidate_index(&self, slot: Slot) -> Option<usize> {
        if slot == NO_SLOT {
            return None;
        }
        self.candidates.iter().position(|c| c.slot == slot)
    }

    pub fn selected_candidate(&self) -> Option<&Candidate> {
        self.candidate_index(self.selected)
            .map(|i| &self.candidates[i])
    }

    /// Stores or replaces `slot`'s advertisement. When the table is full, the new one evicts
    /// the worst non-selected candidate if it is better; returns false if it was not kept.
    pub fn upsert(&mut self, candidate: Candidate, total_of: impl Fn(&Candidate) -> u32) -> bool {
        if let Some(i) = self.candidate_index(candidate.slot) {
            self.candidates[i] = candidate;
            return true;
        }
        if let Some(free) = self.candidates.iter().position(Candidate::is_empty) {
            self.candidates[free] = candidate;
            return true;
        }
        let rank = |c: &Candidate| {
            (
                self.is_feasible(c.seq, c.cost),
                std::cmp::Reverse(total_of(c)),
            )
        };
        let worst = (0..MAX_CANDIDATES)
            .filter(|&i| self.candidates[i].slot != self.selected)
            .min_by_key(|&i| rank(&self.candidates[i]));
        match worst {
            Some(i) if rank(&candidate) > rank(&self.candidates[i]) => {
                self.candidates[i] = candidate;
                true
            }
            _ => false,
        }
    }

    pub fn remove_slot(&mut self, slot: Slot) -> bool {
        match self.candidate_index(slot) {
            Some(i) => {
                self.candidates[i] = Candidate::EMPTY;
                true
            }
            None => false,
        }
    }

    /// The best route among feasible candidates and the currently selected one.
    /// `link_cost(slot)` is `None` when the neighbour is not usable.
    pub fn select(&self, link_cost: impl Fn(Slot) -> Option<u32>) -> Option<Choice> {
        let mut best: Option<(Choice, bool, Slot)> = None;
        for (index, c) in self.candidates.iter().enumerate() {
            if c.is_empty() || c.cost == COST_INFINITE {
                continue;
            }
            let is_current = c.slot == self.selected;
            if !is_current && !self.is_feasible(c.seq, c.cost) {
                continue;
            }
            let Some(link) = link_cost(c.slot) else {
                continue;
            };
            let total = add_costs(c.cost, link);
            if total == COST_INFINITE {
                continue;
            }
            let better = match best {
                None => true,
                Some((b, b_current, b_slot)) => {
                    (total, !is_current, c.slot) < (b.total, !b_current, b_slot)
                }
            };
            if better {
                best = Some((Choice { index, total }, is_current, c.slot));
            }
        }
        best.map(|(choice, _, _)| choice)
    }

    /// The best usable feasible candidate carrying the newest sequence number (for flood
    /// relays). Feasibility still applies: we may have advertised this number already.
    pub fn select_newest(&self, link_cost: impl Fn(Slot) -> Option<u32>) -> Option<Choice> {
        self.candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty() && c.seq == self.newest_seq)
            .filter(|(_, c)| self.is_feasible(c.seq, c.cost))
            .filter_map(|(index, c)| {
                let total = add_costs(c.cost, link_cost(c.slot)?);
                (total != COST_INFINITE).then_some((Choice { index, total }, c.slot))
            })
            .min_by_key(|(choice, slot)| (choice.total, *slot))
            .map(|(choice, _)| choice)
    }

    /// Loop-free alternates: feasible usable candidates other than the selected one, best first.
    pub fn alternates(&self, link_cost: impl Fn(Slot) -> Option<u32>) -> Vec<(Slot, u32)> {
        let mut alternates: Vec<(Slot, u32)> = self
            .candidates
            .iter()
            .filter(|c| !c.is_empty() && c.slot != self.selected && self.is_feasible(c.seq, c.cost))
            .filter_map(|c| Some((c.slot, add_costs(c.cost, link_cost(c.slot)?))))
            .filter(|(_, total)| *total != COST_INFINITE)
            .collect();
        alternates.sort_by_key(|&(slot, total)| (total, slot));
        alternates
    }
}

/// A fast hasher for `NodeId` keys. Real identifiers are SHA-256 output and simulated ones
/// are small integers in the last bytes; folding the words and finalising spreads both.
#[derive(Default, Clone, Copy)]
pub(crate) struct NodeIdHasher(u64);

impl Hasher for NodeIdHasher {
    fn finish(&self) -> u64 {
        // The multiplications in `write` move entropy to the high bits, but hash tables index
        // buckets with the low bits: fold them down (SplitMix64's finaliser).
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

/// Map keyed by node identifier with the fast hasher. Iteration order depends only on the
/// insertion history, which keeps simulations reproducible.
pub(crate) type NodeMap<V> = HashMap<NodeId, V, BuildHasherDefault<NodeIdHasher>>;

/// Index slots of the routing table are at most this full (3/4): linear probing stays short.
const INDEX_LOAD_NUMERATOR: usize = 3;
const INDEX_LOAD_DENOMINATOR: usize = 4;

/// Entries are stored in chunks of this many, each allocated at its exact size: a node keeps
/// one entry per destination, so growing one array by doubling would leave up to half of the
/// largest structure of the process unused (at 10,000 simulated nodes, gigabytes), and
/// growing it in small steps would copy it over and over. At most one chunk per table is
/// partly empty (about 10 KB).
const CHUNK: usize = 128;
/// Smallest index: a table of a few destinations needs no more.
const INDEX_MIN: usize = 16;

/// A growable array stored in exact-size chunks of `CHUNK` elements: growing never copies,
/// and capacity exceeds length by less than one chunk.
#[derive(Debug)]
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    fn push(&mut self, value: T) {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        // The branch above guarantees a last chunk with room.
        if let Some(last) = self.chunks.last_mut() {
            last.push(value);
            self.len += 1;
        }
    }

    fn get(&self, at: usize) -> &T {
        &self.chunks[at / CHUNK][at % CHUNK]
    }

    fn get_mut(&mut self, at: usize) -> &mut T {
        &mut self.chunks[at / CHUNK][at % CHUNK]
    }

    fn swap(&mut self, a: usize, b: usize) {
        let (chunk_a, chunk_b) = (a / CHUNK, b / CHUNK);
        if chunk_a == chunk_b {
            self.chunks[chunk_a].swap(a % CHUNK, b % CHUNK);
            return;
        }
        let (low, high) = (chunk_a.min(chunk_b), chunk_a.max(chunk_b));
        let (head, tail) = self.chunks.split_at_mut(high);
        let (x, y) = (&mut head[low], &mut tail[0]);
        if chunk_a < chunk_b {
            std::mem::swap(&mut x[a % CHUNK], &mut y[b % CHUNK]);
        } else {
            std::mem::swap(&mut x[b % CHUNK], &mut y[a % CHUNK]);
        }
    }

    fn truncate(&mut self, len: usize) {
        let chunks = len.div_ceil(CHUNK);
        self.chunks.truncate(chunks);
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(len - (chunks - 1) * CHUNK);
        }
        self.len = len.min(self.len);
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }

    fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

/// Marks a free index slot.
const FREE: u32 = u32::MAX;

/// An index slot holds a position in its low `POSITION_BITS` bits and the top bits of the
/// id's hash above them, so a probe that lands on another id is rejected without reading the
/// id (a cache miss per probe: at start-up, when most lookups are for unknown ids, probing
/// dominated the simulation). Positions stay below 2^20 because `max_destinations` is at
/// most 1,000,000; the tag never makes a slot equal `FREE`, since position 2^20 - 1 is never
/// used.
const POSITION_BITS: u32 = 20;
const POSITION_MASK: u32 = (1 << POSITION_BITS) - 1;

/// The routing table: one entry per destination, stored densely in insertion order, with an
/// open-addressing index of 4-byte positions. A general hash map stores key and value in
/// buckets rounded up to a power of two and left a fifth to a half of them empty; here only
/// the small index is rounded, and the entries grow by exact-size chunks. Iteration order
/// depends only on the insertion and removal history, which keeps simulations reproducible.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    ids: Chunked<NodeId>,
    entries: Chunked<RouteEntry>,
    /// Positions into `ids`/`entries` by hash, linear probing; `FREE` when empty. Its length
    /// is zero or a power of two.
    index: Vec<u32>,
}

impl RouteTable {
    pub fn len(&self) -> usize {
        self.ids.len
    }

    /// The id's first index slot and its tag (the hash bits above the position bits).
    fn home(&self, id: &NodeId) -> (usize, u32) {
        use std::hash::BuildHasher;
        let hash = BuildHasherDefault::<NodeIdHasher>::default().hash_one(id);
        let tag = ((hash >> (64 - (32 - POSITION_BITS))) as u32) << POSITION_BITS;
        ((hash as usize) & (self.index.len() - 1), tag)
    }

    fn position(&self, id: &NodeId) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let (mut at, tag) = self.home(id);
        loop {
            let slot = self.index[at];
            if slot == FREE {
                return None;
            }
            let position = (slot & POSITION_MASK) as usize;
            if slot & !POSITION_MASK == tag && self.ids.get(position) == id {
                return Some(position);
            }
            at = (at + 1) & mask;
        }
    }

    /// Reads the home index slot of each of the first 64 ids (one packet's OGM batch holds
    /// fewer), then the entry it points at, as independent loads the processor overlaps, so
    /// that the lookups of the batch that follow find them in cache instead of waiting for
    /// one cache miss after another (with thousands of tables, nearly every first lookup of
    /// a destination misses). Changes nothing; the return value only keeps the loads from
    /// being optimised away.
    pub fn warm(&self, ids: impl Iterator<Item = NodeId>) -> u32 {
        const BATCH: usize = 64;
        if self.index.is_empty() {
            return 0;
        }
        let mut homes = [(0usize, 0u32); BATCH];
        let mut count = 0;
        let mut touched = 0u32;
        for id in ids.take(BATCH) {
            let (at, tag) = self.home(&id);
            touched ^= self.index[at];
            homes[count] = (at, tag);
            count += 1;
        }
        for &(at, tag) in &homes[..count] {
            let slot = self.index[at];
            if slot != FREE && slot & !POSITION_MASK == tag {
                let position = (slot & POSITION_MASK) as usize;
                touched ^= u32::from(self.ids.get(position).0[0]);
                touched ^= self.entries.get(position).fd_cost;
            }
        }
        std::hint::black_box(touched)
    }

    pub fn contains_key(&self, id: &NodeId) -> bool {
        self.position(id).is_some()
    }

    pub fn get(&self, id: &NodeId) -> Option<&RouteEntry> {
        self.position(id).map(|position| self.entries.get(position))
    }

    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut RouteEntry> {
        self.position(id)
            .map(|position| self.entries.get_mut(position))
    }

    /// Adds an entry for a destination not in the table yet (callers check first; a second
    /// entry for a known id would only shadow the first).
    pub fn insert_new(&mut self, id: NodeId, entry: RouteEntry) {
        debug_assert!(!self.contains_key(&id), "{id} is already in the table");
        debug_assert!(
            self.ids.len < POSITION_MASK as usize,
            "the router keeps the table below max_destinations"
        );
        self.ids.push(id);
        self.entries.push(entry);
        if self.ids.len * INDEX_LOAD_DENOMINATOR > self.index.len() * INDEX_LOAD_NUMERATOR {
            self.rebuild_index();
        } else {
            self.place(self.ids.len - 1);
        }
    }

    /// Puts `position` into the index at the first free slot from its id's home.
    fn place(&mut self, position: usize) {
        let mask = self.index.len() - 1;
        let (mut at, tag) = self.home(self.ids.get(position));
        while self.index[at] != FREE {
            at = (at + 1) & mask;
        }
        // Positions are below max_destinations, at most 1,000,000 by validation, so they fit
        // in POSITION_BITS.
        self.index[at] = tag | position as u32;
    }

    /// Sizes the index for the current entries (load at most 3/4) and refills it.
    fn rebuild_index(&mut self) {
        let wanted = (self.ids.len * INDEX_LOAD_DENOMINATOR).div_ceil(INDEX_LOAD_NUMERATOR);
        let size = wanted.next_power_of_two().max(INDEX_MIN);
        self.index.clear();
        self.index.resize(size, FREE);
        for position in 0..self.ids.len {
            self.place(position);
        }
    }

    /// Keeps the entries for which `keep` returns true (in their order) and rebuilds the
    /// index if any went.
    pub fn retain(&mut self, mut keep: impl FnMut(&NodeId, &RouteEntry) -> bool) {
        let before = self.ids.len;
        let mut kept = 0;
        for position in 0..before {
            if keep(self.ids.get(position), self.entries.get(position)) {
                self.ids.swap(kept, position);
                self.entries.swap(kept, position);
                kept += 1;
            }
        }
        if kept == before {
            return;
        }
        self.ids.truncate(kept);
        self.entries.truncate(kept);
        self.rebuild_index();
    }

    pub fn keys(&self) -> impl Iterator<Item = &NodeId> {
        self.ids.iter()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &RouteEntry)> {
        self.ids.iter().zip(self.entries.iter())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&NodeId, &mut RouteEntry)> {
        self.ids.iter().zip(self.entries.iter_mut())
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut RouteEntry> {
        self.entries.iter_mut()
    }

    /// Bytes held by the table.
    pub fn allocated_bytes(&self) -> usize {
        self.ids.capacity() * std::mem::size_of::<NodeId>()
            + self.entries.capacity() * std::mem::size_of::<RouteEntry>()
            + self.index.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(slot: Slot, seq: u32, cost: u32) -> Candidate {
        Candidate {
            slot,
            hops: 1,
            seq,
            cost,
            updated_qs: 0,
        }
    }

    fn link(_slot: Slot) -> Option<u32> {
        Some(100)
    }

    #[test]
    fn hasher_spreads_small_integer_ids_over_low_bits() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let build = BuildHasherDefault::<NodeIdHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..1024u64)
            .map(|i| build.hash_one(NodeId::from_index(i)) & 1023)
            .collect();
        assert!(
            buckets.len() > 500,
            "only {} of 1024 buckets used",
            buckets.len()
        );
    }

    #[test]
    fn entries_stay_small() {
        // Every node holds one entry per destination: 10,000 nodes simulate 10^8 of them.
        assert_eq!(std::mem::size_of::<Candidate>(), 12);
        assert!(
            std::mem::size_of::<RouteEntry>() <= 68,
            "{}",
            std::mem::size_of::<RouteEntry>()
        );
    }

    #[test]
    fn route_table_finds_what_it_holds_after_growth_and_removal() {
        let mut table = RouteTable::default();
        for i in 0..5000u64 {
            assert!(!table.contains_key(&NodeId::from_index(i)));
            let mut entry = RouteEntry::new(Timestamp::ZERO);
            entry.newest_seq = i as u32;
            table.insert_new(NodeId::from_index(i), entry);
        }
        assert_eq!(table.len(), 5000);
        table.retain(|id, _| !id.0[15].is_multiple_of(3));
        let kept = (0..5000u64)
            .filter(|i| !NodeId::from_index(*i).0[15].is_multiple_of(3))
            .count();
        assert_eq!(table.len(), kept);
        for i in 0..5000u64 {
            let id = NodeId::from_index(i);
            match table.get(&id) {
                Some(entry) => assert_eq!(entry.newest_seq, i as u32),
                None => assert_eq!(id.0[15] % 3, 0, "node {i} lost"),
            }
        }
        assert!(table.get(&NodeId::from_index(5000)).is_none());
        assert_eq!(table.keys().count(), kept);
        // Warming the cache reads within bounds for present and absent ids, beyond one batch
        // (a read out of bounds panics), and an empty table has nothing to read.
        table.warm((4900..5100u64).map(NodeId::from_index));
        assert_eq!(
            RouteTable::default().warm((0..3u64).map(NodeId::from_index)),
            0
        );
    }

    #[test]
    fn route_table_grows_in_chunks_not_by_doubling() {
        let mut table = RouteTable::default();
        for i in 0..10_000u64 {
            table.insert_new(NodeId::from_index(i), RouteEntry::new(Timestamp::ZERO));
        }
        let per_entry = std::mem::size_of::<NodeId>() + std::mem::size_of::<RouteEntry>();
        // Entries in at most one partly empty chunk, plus a 4-byte index at most 3/4 full
        // (16,384 slots).
        let limit = 10_000usize.next_multiple_of(CHUNK) * per_entry + 16_384 * 4;
        assert!(
            table.allocated_bytes() <= limit,
            "{} > {limit}",
            table.allocated_bytes()
        );
    }

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(seq_newer(1, 0));
        assert!(seq_newer(0, u32::MAX));
        assert!(!seq_newer(5, 5));
        assert!(!seq_newer(4, 5));
    }

    #[test]
    fn feasibility_follows_rfc8966() {
        let mut entry = RouteEntry::new(Timestamp::ZERO);
        assert!(entry.is_feasible(1, 500), "no feasibility distance yet");
        entry.note_advertised(10, 500);
        assert!(entry.is_feasible(10, 499));
        assert!(
            !entry.is_feasible(10, 500),
            "equal cost is not strictly better"
        );
        assert!(!entry.is_feasible(9, 1));
        assert!(
            entry.is_feasible(11, 9000),
            "a newer sequence number resets the distance"
        );
        entry.note_advertised(10, COST_INFINITE);
        assert_eq!(
            (entry.fd_seq, entry.fd_cost),
            (10, 500),
            "retractions keep the distance"
        );
    }

    #[test]
    fn selection_prefers_cheapest_feasible_and_keeps_current() {
        let mut entry = RouteEntry::new(Timestamp::ZERO);
        entry.upsert(cand(0, 10, 300), |_| 0);
        entry.upsert(cand(1, 10, 200), |_| 0);
        let choice = entry.select(link).expect("a route");
        assert_eq!(entry.candidates[choice.index].slot, 1);
        assert_eq!(choice.total, 300);
        entry.selected = 1;
        entry.note_advertised(10, 300);
        // The selected neighbour's cost rises above the feasibility distance: it is kept,
        // because no other candidate is feasible (300 is not below 300).
        entry.upsert(cand(1, 10, 900), |_| 0);
        let choice = entry.select(link).expect("current route kept");
        assert_eq!(entry.candidates[choice.index].slot, 1);
        // A feasible alternate appears and wins.
        entry.upsert(cand(2, 10, 150), |_| 0);
        let choice = entry.select(link).expect("a route");
        assert_eq!(entry.candidates[choice.index].slot, 2);
        entry.selected = 2;
        assert_eq!(
            entry.alternates(link),
            vec![],
            "neither 300 nor 900 is below the distance 300"
        );
        entry.upsert(cand(0, 10, 299), |_| 0);
        assert_eq!(entry.alternates(link), vec![(0, 399)]);
    }

    #[test]
    fn signed_numbers_in_use_are_the_live_candidates_last_advertised_and_newest() {
        let mut entry = RouteEntry::new(Timestamp::ZERO);
        entry.upsert(cand(0, 7, 100), |_| 0);
        entry.newest_seq = 9;
        entry.note_advertised(6, 50);
        assert_eq!(entry.seqs_in_use(), [Some(7), None, None, Some(6), Some(9)]);
    }

    #[test]
    fn an_entry_without_a_route_has_no_selected_candidate() {
        let mut entry = RouteEntry::new(Timestamp::ZERO);
        assert!(entry.selected_candidate().is_none());
        entry.upsert(cand(0, 7, 100), |_| 0);
        entry.selected = 0;
        assert_eq!(entry.selected_candidate().map(|c| c.seq), Some(7));
        entry.selected = NO_SLOT;
        assert!(
            entry.selected_candidate().is_none(),
            "an empty place is no route"
        );
        assert!(!entry.remove_slot(NO_SLOT));
        assert_eq!(entry.candidate_index(0), Some(0));
    }

    #[test]
    fn unusable_neighbours_are_skipped() {
        let mut entry = RouteEntry::new(Timestamp::ZERO);
        entry.upsert(cand(0, 1, 100), |_| 0);
        assert_eq!(entry.select(|_| None), None);
    }

    #[test]
    fn full_table_evicts_the_worst_candidate_only_for_a_better_one() {
        let mut entry = RouteEntry::new(Timestamp::ZERO);
        for slot in 0..MAX_CANDIDATES as Slot {
            assert!(entry.upsert(cand(slot, 1, 1000 + u32::from(slot)), |c| c.cost));
        }
        assert!(!entry.upsert(cand(9, 1, 5000), |c| c.cost));
        assert!(entry.upsert(cand(9, 1, 10), |c| c.cost));
        assert_eq!(
            entry.candidate_index(3),
            None,
            "the most expensive one went"
        );
    }
}
