//! The simulator's own seeded generator (SplitMix64) and the derivation of independent streams.
//!
//! The simulator owns its generator rather than borrowing the routing core's, so that a change
//! inside `routing` can never shift the topology, the loss pattern or the crash choice of a
//! seed. Every consumer gets its own stream derived from the run seed and a fixed stream tag:
//! changing `--loss` therefore changes the loss draws but not which nodes are linked or crash.

/// Stream tags: one per consumer of randomness, so the streams are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Building the random topology.
    Topology = 1,
    /// Per-packet loss and latency jitter.
    Network = 2,
    /// Start jitter, router seeds and initial sequence numbers.
    Nodes = 3,
    /// Which nodes crash.
    Crash = 4,
    /// Which destinations each node's sequence-number check samples.
    Sampling = 5,
}

/// SplitMix64: tiny, fast, and statistically good enough for simulation draws.
#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator for one stream of the run seeded by `seed`.
    pub fn for_stream(seed: u64, stream: Stream) -> SimRng {
        // Mixing the tag through one SplitMix64 step keeps streams of neighbouring seeds apart.
        let mut mixer = SimRng {
            state: seed ^ (stream as u64).wrapping_mul(0xA076_1D64_78BD_642F),
        };
        SimRng {
            state: mixer.next_u64(),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (0 when `bound` is 0), by multiply-shift, which has no modulo
    /// bias worth speaking of for the bounds used here (node counts, microsecond jitter).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A float in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |seed, stream| {
            let mut rng = SimRng::for_stream(seed, stream);
            (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, Stream::Topology), draw(1, Stream::Topology));
        assert_ne!(draw(1, Stream::Topology), draw(1, Stream::Network));
        assert_ne!(draw(1, Stream::Topology), draw(2, Stream::Topology));
    }

    #[test]
    fn bounded_draws_stay_in_range() {
        let mut rng = SimRng::for_stream(7, Stream::Network);
        assert!((0..1000).all(|_| rng.below(13) < 13));
        assert_eq!(rng.below(0), 0);
        assert!((0..1000).all(|_| (0.0..1.0).contains(&rng.unit())));
        let mut items: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(
            items, sorted,
            "a 50-element shuffle left everything in place"
        );
    }
}
