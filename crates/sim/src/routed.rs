//! Which nodes have a next hop towards which destinations, kept from the routers' route-change
//! events: a necessary condition for "every pair works" that costs nothing to ask.
//!
//! A pair whose source has no next hop is broken, whatever the walk would find. While such a
//! pair exists among the pairs that matter (live source, destination in its component), the
//! converge and recover checks answer "no" without walking; once there is none, the walks
//! decide as before. At 10,000 nodes a walk over all destinations is 10^8 next-hop lookups,
//! and during convergence every check instant walked most of them before finding the one
//! destination that was still missing somewhere.

/// One bit per ordered pair (source, destination), row-major, and the count of pairs that
/// matter and lack a next hop.
#[derive(Debug, Clone)]
pub struct RoutedPairs {
    nodes: usize,
    bits: Vec<u64>,
    missing: u64,
}

impl RoutedPairs {
    /// No node has any route; every ordered pair of distinct nodes matters.
    pub fn new(nodes: usize) -> RoutedPairs {
        RoutedPairs {
            nodes,
            bits: vec![0; (nodes * nodes).div_ceil(64)],
            missing: (nodes as u64) * (nodes as u64).saturating_sub(1),
        }
    }

    /// Pairs that matter without a next hop at their source.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    fn is_set(&self, source: u32, destination: u32) -> bool {
        let bit = source as usize * self.nodes + destination as usize;
        self.bits[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// Records whether `source` has a next hop towards `destination`; `matters` says whether
    /// the pair counts (see [`RoutedPairs::recount`]).
    pub fn set(&mut self, source: u32, destination: u32, routed: bool, matters: bool) {
        if self.is_set(source, destination) == routed {
            return;
        }
        let bit = source as usize * self.nodes + destination as usize;
        self.bits[bit / 64] ^= 1 << (bit % 64);
        if matters {
            if routed {
                self.missing -= 1;
            } else {
                self.missing += 1;
            }
        }
    }

    /// Recounts the missing pairs after the set of pairs that matter changed: a pair matters
    /// when `matters(source, destination)` says so.
    pub fn recount(&mut self, matters: impl Fn(u32, u32) -> bool) {
        let mut missing = 0;
        for source in 0..self.nodes as u32 {
            for destination in 0..self.nodes as u32 {
                if matters(source, destination) && !self.is_set(source, destination) {
                    missing += 1;
                }
            }
        }
        self.missing = missing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_missing_pairs_that_matter() {
        let mut pairs = RoutedPairs::new(3);
        assert_eq!(pairs.missing(), 6);
        pairs.set(0, 1, true, true);
        pairs.set(0, 1, true, true);
        assert_eq!(pairs.missing(), 5, "setting twice counts once");
        pairs.set(0, 1, false, true);
        assert_eq!(pairs.missing(), 6);
        for (s, d) in [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0)] {
            pairs.set(s, d, true, true);
        }
        assert_eq!(pairs.missing(), 1);
        // Node 2 crashes: only pairs between 0 and 1 matter, and both are routed.
        pairs.recount(|s, d| s != d && s != 2 && d != 2);
        assert_eq!(pairs.missing(), 0);
        pairs.set(1, 0, false, true);
        assert_eq!(pairs.missing(), 1);
        pairs.set(2, 1, true, false);
        assert_eq!(
            pairs.missing(),
            1,
            "a pair that does not matter is not counted"
        );
    }
}
