//! A seeded generator for reproducible demo graphs and test schedules.

use std::time::Duration;

/// SplitMix64: tiny and well distributed; the same seed always gives the same draws, which is
/// all a demo topology or a nemesis schedule needs (no cryptographic use).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next_u64() % bound.max(1) as u64).unwrap_or(0)
    }

    /// A duration of `low..high` milliseconds (`low` when the range is empty).
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        let span = usize::try_from(high.saturating_sub(low)).unwrap_or(usize::MAX);
        Duration::from_millis(low + self.below(span) as u64)
    }
}
