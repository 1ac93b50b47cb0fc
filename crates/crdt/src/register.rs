//! LWW-Register: one value, the write with the largest hybrid timestamp wins.

use crate::error::CrdtError;
use crate::hlc::HlcClock;
use crate::store::{DotStore, Policy};

/// The single key a register stores its value under.
const REGISTER_KEY: &[u8] = b"";

/// A last-writer-wins register. Ties cannot happen: timestamps carry the writer's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LwwRegister {
    store: DotStore,
}

impl Default for LwwRegister {
    fn default() -> Self {
        LwwRegister::new()
    }
}

impl LwwRegister {
    /// An unset register.
    pub fn new() -> LwwRegister {
        LwwRegister {
            store: DotStore::new(Policy::Lww),
        }
    }

    /// Sets the value; returns the delta to send to peers.
    pub fn set(
        &mut self,
        clock: &mut HlcClock,
        now_ms: u64,
        value: &[u8],
    ) -> Result<LwwRegister, CrdtError> {
        let store = self
            .store
            .write(clock, now_ms, REGISTER_KEY.to_vec(), Some(value.to_vec()))?;
        Ok(LwwRegister { store })
    }

    /// The current value, if ever set.
    pub fn get(&self) -> Option<&[u8]> {
        self.store
            .winner(REGISTER_KEY)
            .and_then(|entry| entry.value.as_deref())
    }

    /// Joins a delta or a whole state.
    pub fn merge(&mut self, delta: &LwwRegister) -> Result<(), CrdtError> {
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
