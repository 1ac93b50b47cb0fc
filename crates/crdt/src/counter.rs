//! PN-Counter: per-writer increments and decrements, summed.

use wire::NodeId;

use crate::error::CrdtError;
use crate::hlc::HlcClock;
use crate::store::{DotStore, Entry, Policy};

/// A counter that goes up and down. Each writer owns one entry (its key is the writer's id)
/// holding its total increments and decrements; a writer's later entry always carries
/// larger totals and a larger timestamp, so last-writer-wins per writer is the max join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PnCounter {
    store: DotStore,
}

impl Default for PnCounter {
    fn default() -> Self {
        PnCounter::new()
    }
}

impl PnCounter {
    /// A counter at zero.
    pub fn new() -> PnCounter {
        PnCounter {
            store: DotStore::new(Policy::Lww),
        }
    }

    /// Adds `by`; returns the delta to send to peers.
    pub fn increment(
        &mut self,
        clock: &mut HlcClock,
        now_ms: u64,
        by: u64,
    ) -> Result<PnCounter, CrdtError> {
        self.adjust(clock, now_ms, by, 0)
    }

    /// Subtracts `by`; returns the delta to send to peers.
    pub fn decrement(
        &mut self,
        clock: &mut HlcClock,
        now_ms: u64,
        by: u64,
    ) -> Result<PnCounter, CrdtError> {
        self.adjust(clock, now_ms, 0, by)
    }

    /// The current value: all increments minus all decrements.
    pub fn value(&self) -> i128 {
        self.store
            .keys()
            .filter_map(|key| self.store.winner(key))
            .filter_map(decode_totals)
            .map(|(up, down)| i128::from(up) - i128::from(down))
            .sum()
    }

    /// Joins a delta or a whole state.
    pub fn merge(&mut self, delta: &PnCounter) -> Result<(), CrdtError> {
        self.store.merge(&delta.store)
    }

    /// The underlying dot store.
    pub fn store(&self) -> &DotStore {
        &self.store
    }

    pub(crate) fn store_mut(&mut self) -> &mut DotStore {
        &mut self.store
    }

    fn totals(&self, node: NodeId) -> (u64, u64) {
        self.store
            .winner(&node.0)
            .and_then(decode_totals)
            .unwrap_or((0, 0))
    }

    /// Writes this writer's new totals: increments and decrements only ever grow, which is
    /// what makes the latest entry of a writer also its largest.
    fn adjust(
        &mut self,
        clock: &mut HlcClock,
        now_ms: u64,
        up_by: u64,
        down_by: u64,
    ) -> Result<PnCounter, CrdtError> {
        let (up, down) = self.totals(clock.node());
        let up = up.checked_add(up_by).ok_or(CrdtError::CounterOverflow)?;
        let down = down
            .checked_add(down_by)
            .ok_or(CrdtError::CounterOverflow)?;
        let mut value = Vec::with_capacity(16);
        value.extend_from_slice(&up.to_be_bytes());
        value.extend_from_slice(&down.to_be_bytes());
        let store = self
            .store
            .write(clock, now_ms, clock.node().0.to_vec(), Some(value))?;
        Ok(PnCounter { store })
    }
}

/// Reads a writer's totals; entries of another shape (only a faulty peer writes them) count
/// as zero rather than failing the whole sum.
fn decode_totals(entry: &Entry) -> Option<(u64, u64)> {
    let value = entry.value.as_deref()?;
    let up: [u8; 8] = value.get(..8)?.try_into().ok()?;
    let down: [u8; 8] = value.get(8..16)?.try_into().ok()?;
    Some((u64::from_be_bytes(up), u64::from_be_bytes(down)))
}
