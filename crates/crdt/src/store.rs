//! The dot store every CRDT of the crate is built on: live entries tagged with the dot that
//! wrote them, plus the causal context of everything seen.
//!
//! The join rule is the one of delta-state CRDTs (Almeida, Shoker, Baquero, 2018): an entry
//! survives a merge if both sides hold it, or if one side holds it and the other has never
//! seen its dot. An entry whose dot the other side has seen but no longer holds was removed
//! there, so it goes. This is how removals travel without tombstones. On top of that, the
//! last-writer-wins policy keeps only the entry with the largest hybrid timestamp per key.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use wire::NodeId;

use crate::codec::Writer;
use crate::dot::{CausalContext, Dot};
use crate::error::CrdtError;
use crate::hlc::{Hlc, HlcClock};
use crate::limits::{MAX_ENTRIES, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// How entries of one key combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// One entry per key: the largest (timestamp, dot) wins. Registers, maps, counters.
    Lww,
    /// Every concurrent entry stays; a key is present while any entry is. OR-Set.
    AddWins,
}

/// One live entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Map key, set element, or counter origin.
    pub key: Vec<u8>,
    /// When it was written.
    pub hlc: Hlc,
    /// The value; `None` is a deletion (tombstone) under [`Policy::Lww`].
    pub value: Option<Vec<u8>>,
}

impl Entry {
    /// Checks the key and value against their bounds.
    pub fn validate(&self) -> Result<(), CrdtError> {
        if self.key.len() > MAX_KEY_BYTES {
            return Err(CrdtError::KeyTooLarge {
                len: self.key.len(),
                max: MAX_KEY_BYTES,
            });
        }
        match &self.value {
            Some(value) if value.len() > MAX_VALUE_BYTES => Err(CrdtError::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_BYTES,
            }),
            _ => Ok(()),
        }
    }

    fn rank(&self, dot: Dot) -> (Hlc, Dot) {
        (self.hlc, dot)
    }
}

/// Which dots a delta claims to have seen.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cover<'a> {
    /// A whole causal context (local deltas, full states).
    Context(&'a CausalContext),
    /// Every event of `origin` in `(lo, hi]` (anti-entropy chunks).
    Range { origin: NodeId, lo: u64, hi: u64 },
}

impl Cover<'_> {
    fn contains(&self, dot: Dot) -> bool {
        match self {
            Cover::Context(ctx) => ctx.contains(dot),
            Cover::Range { origin, lo, hi } => {
                dot.origin == *origin && dot.seq > *lo && dot.seq <= *hi
            }
        }
    }
}

/// Live entries by dot, an index by key, and the causal context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotStore {
    policy: Policy,
    entries: BTreeMap<Dot, Entry>,
    keys: BTreeMap<Vec<u8>, BTreeSet<Dot>>,
    ctx: CausalContext,
}

impl DotStore {
    /// An empty store.
    pub fn new(policy: Policy) -> DotStore {
        DotStore {
            policy,
            entries: BTreeMap::new(),
            keys: BTreeMap::new(),
            ctx: CausalContext::new(),
        }
    }

    /// The merge policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The causal context.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// Live entries (tombstones included) in dot order.
    pub fn entries(&self) -> impl Iterator<Item = (Dot, &Entry)> + '_ {
        self.entries.iter().map(|(dot, entry)| (*dot, entry))
    }

    /// Number of live entries (tombstones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries of `origin` with sequence numbers in `(lo, hi]`, in order.
    pub fn range(
        &self,
        origin: NodeId,
        lo: u64,
        hi: u64,
    ) -> impl Iterator<Item = (Dot, &Entry)> + '_ {
        let start = Dot {
            origin,
            seq: lo.saturating_add(1),
        };
        let end = Dot { origin, seq: hi };
        let empty = lo >= hi;
        self.entries
            .range(start..=end.max(start))
            .filter(move |_| !empty)
            .map(|(dot, entry)| (*dot, entry))
    }

    /// The entries of one key, in dot order.
    pub fn key_entries<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = (Dot, &'a Entry)> + 'a {
        self.keys
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|dot| self.entries.get(dot).map(|entry| (*dot, entry)))
    }

    /// The winning entry of a key under [`Policy::Lww`] (the only one kept).
    pub fn winner(&self, key: &[u8]) -> Option<&Entry> {
        self.key_entries(key)
            .max_by_key(|(dot, entry)| entry.rank(*dot))
            .map(|(_, entry)| entry)
    }

    /// Keys with at least one entry, in order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.keys.keys().map(Vec::as_slice)
    }

    /// Writes `value` (or a tombstone for `None`) under `key` with a fresh dot and timestamp,
    /// applies it, and returns the delta to send. Under [`Policy::Lww`] the delta also claims
    /// the key's previous dots (they are overwritten); under [`Policy::AddWins`] the adder's
    /// view of the element is replaced the same way.
    pub fn write(
        &mut self,
        clock: &mut HlcClock,
        now_ms: u64,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    ) -> Result<DotStore, CrdtError> {
        let origin = clock.node();
        let mut hlc = clock.now(now_ms);
        if let Some(previous) = self.winner(&key)
            && previous.hlc >= hlc
        {
            // A stored entry can only be ahead of our clock if it was merged without the
            // clock seeing it; catch up so the write still wins.
            clock.witness(previous.hlc);
            hlc = clock.now(now_ms);
        }
        let entry = Entry { key, hlc, value };
        entry.validate()?;
        let dot = Dot {
            origin,
            seq: self.ctx.highest(origin).saturating_add(1),
        };
        let mut delta = DotStore::new(self.policy);
        for (old, _) in self.key_entries(&entry.key) {
            delta.ctx.insert(old)?;
        }
        delta.ctx.insert(dot)?;
        delta.insert_entry(dot, entry);
        self.merge(&delta)?;
        Ok(delta)
    }

    /// Removes every entry of `key` without writing anything (OR-Set removal) and returns the
    /// delta: no entries, a context naming the removed dots.
    pub fn remove_key(&mut self, key: &[u8]) -> Result<DotStore, CrdtError> {
        let mut delta = DotStore::new(self.policy);
        for (old, _) in self.key_entries(key) {
            delta.ctx.insert(old)?;
        }
        self.merge(&delta)?;
        Ok(delta)
    }

    /// Joins another state or delta into this one. Commutative, associative and idempotent;
    /// fails, unchanged, only when a bound would be exceeded.
    pub fn merge(&mut self, other: &DotStore) -> Result<(), CrdtError> {
        let incoming: Vec<(Dot, &Entry)> = other.entries().collect();
        self.join(&incoming, Cover::Context(&other.ctx))
    }

    /// The join of the module doc, for a delta given as entries plus what it covers. Entries
    /// must lie inside `cover` (decoders and `write` guarantee it).
    pub(crate) fn join(
        &mut self,
        incoming: &[(Dot, &Entry)],
        cover: Cover<'_>,
    ) -> Result<(), CrdtError> {
        for (dot, entry) in incoming {
            entry.validate()?;
            if entry.hlc.node != dot.origin || !cover.contains(*dot) {
                return Err(CrdtError::InvalidDelta);
            }
        }
        let mut ctx = self.ctx.clone();
        match cover {
            Cover::Context(other) => ctx.merge(other)?,
            Cover::Range { origin, lo, hi } => {
                if lo > ctx.max(origin) || lo >= hi {
                    return Err(CrdtError::InvalidDelta);
                }
                ctx.insert_prefix(origin, hi)?;
            }
        }
        let incoming_dots: BTreeSet<Dot> = incoming.iter().map(|(dot, _)| *dot).collect();
        let mut removed: BTreeSet<Dot> = match cover {
            Cover::Context(_) => self
                .entries
                .keys()
                .filter(|dot| cover.contains(**dot) && !incoming_dots.contains(dot))
                .copied()
                .collect(),
            Cover::Range { origin, lo, hi } => self
                .range(origin, lo, hi)
                .map(|(dot, _)| dot)
                .filter(|dot| !incoming_dots.contains(dot))
                .collect(),
        };
        let mut added: BTreeMap<Dot, &Entry> = incoming
            .iter()
            .filter(|(dot, _)| !self.ctx.contains(*dot) && !self.entries.contains_key(dot))
            .map(|(dot, entry)| (*dot, *entry))
            .collect();
        if self.policy == Policy::Lww {
            self.keep_winners(&mut removed, &mut added);
        }
        let len = self.entries.len() - removed.len() + added.len();
        if len > MAX_ENTRIES {
            return Err(CrdtError::TooManyEntries { max: MAX_ENTRIES });
        }
        for dot in removed {
            self.remove_entry(dot);
        }
        for (dot, entry) in added {
            self.insert_entry(dot, entry.clone());
        }
        self.ctx = ctx;
        Ok(())
    }

    /// Under last-writer-wins, every key touched by `added` keeps only its largest entry.
    fn keep_winners(&self, removed: &mut BTreeSet<Dot>, added: &mut BTreeMap<Dot, &Entry>) {
        let mut best: BTreeMap<&[u8], (Hlc, Dot)> = BTreeMap::new();
        let touched: BTreeSet<&[u8]> = added.values().map(|entry| entry.key.as_slice()).collect();
        for key in touched {
            let existing = self
                .key_entries(key)
                .filter(|(dot, _)| !removed.contains(dot))
                .map(|(dot, entry)| entry.rank(dot));
            let fresh = added
                .iter()
                .filter(|(_, entry)| entry.key == key)
                .map(|(dot, entry)| entry.rank(*dot));
            if let Some(top) = existing.chain(fresh).max() {
                best.insert(key, top);
            }
        }
        added.retain(|dot, entry| {
            best.get(entry.key.as_slice())
                .is_some_and(|top| top.1 == *dot)
        });
        for (key, top) in &best {
            for (dot, _) in self.key_entries(key) {
                if dot != top.1 {
                    removed.insert(dot);
                }
            }
        }
    }

    /// Drops tombstones that every peer has seen (`stable`) and that were written before
    /// `cutoff_ms`; their dots stay in the context, so a peer still holding one (or an older
    /// value of the key) loses it on the next merge. Returns how many were dropped.
    pub fn collect_garbage(&mut self, cutoff_ms: u64, stable: impl Fn(Dot) -> bool) -> usize {
        let doomed: Vec<Dot> = self
            .entries
            .iter()
            .filter(|(dot, entry)| {
                entry.value.is_none() && entry.hlc.physical_ms < cutoff_ms && stable(**dot)
            })
            .map(|(dot, _)| *dot)
            .collect();
        for dot in &doomed {
            self.remove_entry(*dot);
        }
        doomed.len()
    }

    /// A 64-bit digest of `origin`'s live entries: equal digests and equal version-vector
    /// slots mean both sides hold the same history of that origin.
    pub fn origin_digest(&self, origin: NodeId) -> u64 {
        let mut hasher = Sha256::new();
        for (dot, entry) in self.range(origin, 0, u64::MAX) {
            let mut writer = Writer::new();
            writer.u64(dot.seq);
            writer.entry_body(entry);
            hasher.update(writer.as_bytes());
        }
        truncate(&hasher.finalize())
    }

    /// A 64-bit digest of the whole state (context and entries); equal digests mean equal
    /// states, so peers compare this first and exchange nothing else when it matches.
    pub fn digest(&self) -> u64 {
        let mut writer = Writer::new();
        writer.store(self);
        truncate(&Sha256::digest(writer.as_bytes()))
    }

    /// Rebuilds a store from decoded parts, checking every bound and that each entry's dot is
    /// in the context and its writer is the dot's origin.
    pub(crate) fn from_parts(
        policy: Policy,
        ctx: CausalContext,
        entries: Vec<(Dot, Entry)>,
    ) -> Result<DotStore, CrdtError> {
        if entries.len() > MAX_ENTRIES {
            return Err(CrdtError::TooManyEntries { max: MAX_ENTRIES });
        }
        let mut store = DotStore::new(policy);
        for (dot, entry) in entries {
            entry.validate()?;
            if !ctx.contains(dot)
                || entry.hlc.node != dot.origin
                || store.entries.contains_key(&dot)
            {
                return Err(CrdtError::Snapshot(crate::error::DecodeError::Invalid(
                    "entry dot",
                )));
            }
            store.insert_entry(dot, entry);
        }
        if policy == Policy::Lww && store.keys.values().any(|dots| dots.len() > 1) {
            return Err(CrdtError::Snapshot(crate::error::DecodeError::Invalid(
                "duplicate key",
            )));
        }
        store.ctx = ctx;
        Ok(store)
    }

    fn insert_entry(&mut self, dot: Dot, entry: Entry) {
        self.keys.entry(entry.key.clone()).or_default().insert(dot);
        self.entries.insert(dot, entry);
    }

    fn remove_entry(&mut self, dot: Dot) {
        if let Some(entry) = self.entries.remove(&dot)
            && let Some(dots) = self.keys.get_mut(&entry.key)
        {
            dots.remove(&dot);
            if dots.is_empty() {
                self.keys.remove(&entry.key);
            }
        }
    }
}

/// [`DotStore::origin_digest`] of an origin without live entries: SHA-256 of nothing.
pub(crate) const EMPTY_ORIGIN_DIGEST: u64 = 0xe3b0_c442_98fc_1c14;

fn truncate(hash: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(bytes)
}
