//! LWW-Map: keys to last-writer-wins values, with deletions as timestamped tombstones.

use crate::error::CrdtError;
use crate::hlc::HlcClock;
use crate::store::{DotStore, Policy};

/// A map whose every key is an LWW-Register. A deletion writes a tombstone with its own
/// timestamp, so a delete and a concurrent older write resolve the same way everywhere; the
/// tombstone is dropped later by [`DotStore::collect_garbage`] (rule in the crate doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LwwMap {
    store: DotStore,
}

impl Default for LwwMap {
    fn default() -> Self {
        LwwMap::new()
    }
}

impl LwwMap {
    /// The empty map.
    pub fn new() -> LwwMap {
        LwwMap {
            store: DotStore::new(Policy::Lww),
        }
    }

    /// Sets `key` to `value`; returns the delta to send to peers.
    pub fn insert(
        &mut self,
        clock: &mut HlcClock,
        now_ms: u64,
        key: &[u8],
        value: &[u8],
    ) -> Result<LwwMap, CrdtError> {
        let store = self
            .store
            .write(clock, now_ms, key.to_vec(), Some(value.to_vec()))?;
        Ok(LwwMap { store })
    }

    /// Deletes `key` with a tombstone; returns the delta to send to peers.
    pub fn remove(
        &mut self,
        clock: &mut HlcClock,
        now_ms: u64,
        key: &[u8],
    ) -> Result<LwwMap, CrdtError> {
        let store = self.store.write(clock, now_ms, key.to_vec(), None)?;
        Ok(LwwMap { store })
    }

    /// The value of `key`, if present and not deleted.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.store
            .winner(key)
            .and_then(|entry| entry.value.as_deref())
    }

    /// Present keys and their values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.store
            .keys()
            .filter_map(|key| self.get(key).map(|value| (key, value)))
    }

    /// Number of present (not deleted) keys.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Joins a delta or a whole state.
    pub fn merge(&mut self, delta: &LwwMap) -> Result<(), CrdtError> {
        self.store.merge(&delta.store)
    }

    /// The underlying dot store (context, entries, tombstones).
    pub fn store(&self) -> &DotStore {
        &self.store
    }

    /// Mutable access for garbage collection ([`DotStore::collect_garbage`]).
    pub fn store_mut(&mut self) -> &mut DotStore {
        &mut self.store
    }
}
