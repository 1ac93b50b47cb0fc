//! OR-Set (add-wins): an element is present while any add of it has not been removed.

use crate::error::CrdtError;
use crate::hlc::HlcClock;
use crate::store::{DotStore, Policy};

/// An observed-remove set. Each add is a dot; a remove claims the dots it observed, so an add
/// concurrent with a remove survives it. Removals leave no tombstones: the removed dots are
/// remembered only in the causal context, which is a version vector (one number per writer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrSet {
    store: DotStore,
}

impl Default for OrSet {
    fn default() -> Self {
        OrSet::new()
    }
}

impl OrSet {
    /// The empty set.
    pub fn new() -> OrSet {
        OrSet {
            store: DotStore::new(Policy::AddWins),
        }
    }

    /// Adds `element`; returns the delta to send to peers.
    pub fn add(
        &mut self,
        clock: &mut HlcClock,
        now_ms: u64,
        element: &[u8],
    ) -> Result<OrSet, CrdtError> {
        let store = self
            .store
            .write(clock, now_ms, element.to_vec(), Some(Vec::new()))?;
        Ok(OrSet { store })
    }

    /// Removes every add of `element` seen so far; returns the delta to send to peers.
    pub fn remove(&mut self, element: &[u8]) -> Result<OrSet, CrdtError> {
        let store = self.store.remove_key(element)?;
        Ok(OrSet { store })
    }

    /// Whether `element` is present.
    pub fn contains(&self, element: &[u8]) -> bool {
        self.store.key_entries(element).next().is_some()
    }

    /// Present elements, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.store.keys()
    }

    /// Number of present elements.
    pub fn len(&self) -> usize {
        self.store.keys().count()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Joins a delta or a whole state.
    pub fn merge(&mut self, delta: &OrSet) -> Result<(), CrdtError> {
        self.store.merge(&delta.store)
    }

    /// The underlying dot store.
    pub fn store(&self) -> &DotStore {
        &self.store
    }

    pub(crate) fn store_mut(&mut self) -> &mut DotStore {
        &mut self.store
    }
}
