//! Hybrid logical clock: wall-clock milliseconds plus a logical counter plus the node id.
//!
//! Last-writer-wins needs an order that agrees with causality: a write made after seeing
//! another must carry a larger timestamp even if the writer's wall clock is seconds behind.
//! An HLC gives that (Kulkarni et al., 2014): every received timestamp pushes the local clock
//! forward, so the next local write is larger. It also stays close to wall time, so
//! independent writes are still ordered roughly by when they happened. A remote clock too far
//! in the future is refused, so one skewed node cannot drag every clock forward.

use wire::NodeId;

use crate::error::CrdtError;

/// Default tolerance for remote timestamps ahead of the local wall clock: one minute. Clocks
/// kept by NTP differ by milliseconds; a minute tolerates a badly set clock without letting a
/// node claim writes from tomorrow.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

/// A hybrid logical timestamp. Ordered by physical time, then logical counter, then node id,
/// so two distinct writers never produce equal timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Wall-clock milliseconds since the Unix epoch (the largest seen, not necessarily now).
    pub physical_ms: u64,
    /// Orders events within one millisecond.
    pub logical: u32,
    /// The writer; breaks ties between nodes.
    pub node: NodeId,
}

impl Hlc {
    /// The smallest timestamp of `node`.
    pub const fn zero(node: NodeId) -> Hlc {
        Hlc {
            physical_ms: 0,
            logical: 0,
            node,
        }
    }
}

/// The clock of one node. Time is an argument: callers pass wall-clock milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlcClock {
    node: NodeId,
    physical_ms: u64,
    logical: u32,
    max_drift_ms: u64,
    rejected: u64,
}

impl HlcClock {
    /// A clock for `node` that refuses remote timestamps more than `max_drift_ms` ahead.
    pub fn new(node: NodeId, max_drift_ms: u64) -> HlcClock {
        HlcClock {
            node,
            physical_ms: 0,
            logical: 0,
            max_drift_ms,
            rejected: 0,
        }
    }

    /// Resumes a clock from a persisted last timestamp, so a restart never reissues one.
    pub fn resume(node: NodeId, max_drift_ms: u64, last: Hlc) -> HlcClock {
        HlcClock {
            physical_ms: last.physical_ms,
            logical: last.logical,
            ..HlcClock::new(node, max_drift_ms)
        }
    }

    /// The node this clock stamps for.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The last timestamp issued or observed.
    pub fn last(&self) -> Hlc {
        Hlc {
            physical_ms: self.physical_ms,
            logical: self.logical,
            node: self.node,
        }
    }

    /// Remote timestamps refused so far for being too far ahead.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The tolerance for remote clocks.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// A fresh timestamp, strictly larger than every one issued or observed before.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        if wall_ms > self.physical_ms {
            self.physical_ms = wall_ms;
            self.logical = 0;
        } else {
            self.tick_logical();
        }
        self.last()
    }

    /// Checks a remote timestamp against the drift bound without changing the clock (except
    /// the rejection counter), so a whole message can be checked before any part is applied.
    pub fn check(&mut self, remote: Hlc, wall_ms: u64) -> Result<(), CrdtError> {
        let limit = wall_ms.saturating_add(self.max_drift_ms);
        if remote.physical_ms > limit {
            self.rejected += 1;
            return Err(CrdtError::ClockTooFarAhead {
                remote_ms: remote.physical_ms,
                local_ms: wall_ms,
            });
        }
        Ok(())
    }

    /// Takes a remote timestamp into account so later local timestamps exceed it. Refuses (and
    /// counts) one more than `max_drift_ms` ahead of `wall_ms`, leaving the clock unchanged.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64) -> Result<(), CrdtError> {
        self.check(remote, wall_ms)?;
        let before = (self.physical_ms, self.logical);
        if (remote.physical_ms, remote.logical) > before {
            self.physical_ms = remote.physical_ms;
            self.logical = remote.logical;
        }
        Ok(())
    }

    /// Moves the clock up to a timestamp already accepted into local state, without the drift
    /// check (it was checked, or written locally, when it entered).
    pub(crate) fn witness(&mut self, seen: Hlc) {
        if (seen.physical_ms, seen.logical) > (self.physical_ms, self.logical) {
            self.physical_ms = seen.physical_ms;
            self.logical = seen.logical;
        }
    }

    /// Advances the logical counter; at its ceiling the clock moves one millisecond ahead
    /// instead, which keeps timestamps strictly increasing without wrapping.
    fn tick_logical(&mut self) {
        match self.logical.checked_add(1) {
            Some(next) => self.logical = next,
            None => {
                self.physical_ms = self.physical_ms.saturating_add(1);
                self.logical = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u64) -> NodeId {
        NodeId::from_index(i)
    }

    #[test]
    fn timestamps_increase_even_when_the_wall_clock_goes_back() {
        let mut clock = HlcClock::new(node(1), DEFAULT_MAX_DRIFT_MS);
        let a = clock.now(10_000);
        let b = clock.now(9_000);
        let c = clock.now(10_000);
        assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
        assert_eq!(b.physical_ms, 10_000);
    }

    #[test]
    fn a_write_after_seeing_a_newer_one_wins_despite_a_slow_clock() {
        let mut fast = HlcClock::new(node(1), DEFAULT_MAX_DRIFT_MS);
        let mut slow = HlcClock::new(node(2), DEFAULT_MAX_DRIFT_MS);
        let first = fast.now(20_000);
        // The slow node's wall clock is 5 s behind.
        slow.observe(first, 15_000).expect("within drift");
        let second = slow.now(15_001);
        assert!(second > first);
    }

    #[test]
    fn remote_clocks_beyond_the_drift_bound_are_refused_and_counted() {
        let mut clock = HlcClock::new(node(1), 1_000);
        let before = clock.last();
        let far = Hlc {
            physical_ms: 12_001,
            logical: 0,
            node: node(2),
        };
        assert!(clock.observe(far, 11_000).is_err());
        assert_eq!(clock.rejected(), 1);
        assert_eq!(clock.last(), before);
        let near = Hlc {
            physical_ms: 12_000,
            ..far
        };
        clock.observe(near, 11_000).expect("exactly at the bound");
        assert_eq!(clock.rejected(), 1);
        assert!(clock.now(11_000) > near);
    }

    #[test]
    fn the_logical_counter_never_wraps() {
        let mut clock = HlcClock::resume(
            node(1),
            DEFAULT_MAX_DRIFT_MS,
            Hlc {
                physical_ms: 5,
                logical: u32::MAX,
                node: node(1),
            },
        );
        let next = clock.now(5);
        assert_eq!((next.physical_ms, next.logical), (6, 0));
    }
}
