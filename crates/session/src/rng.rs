//! Where a session table's randomness comes from: X25519 ephemeral keys and session indices.
//!
//! The state machine never reads global randomness itself, so a test can hand it a seeded
//! source and replay a run. (ML-KEM-768 key generation and encapsulation still draw from the
//! operating system inside aws-lc-rs, whose stable API takes no seed; nothing in the state
//! machine's decisions depends on those bytes.)

/// The random generator failed; a node cannot make keys without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("random source failed")]
pub struct RandomError;

/// A source of random bytes.
pub trait RngSource {
    /// Fills `out` with random bytes.
    fn fill(&mut self, out: &mut [u8]) -> Result<(), RandomError>;
}

/// The operating system's generator, through aws-lc-rs: what a node uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRng;

impl RngSource for SystemRng {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), RandomError> {
        aws_lc_rs::rand::fill(out).map_err(|_| RandomError)
    }
}

/// A deterministic generator (SplitMix64) for tests, benchmarks and the simulator. Its output
/// is predictable from the seed: never use it for a node's real keys.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator whose whole output follows from `seed`.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl RngSource for SeededRng {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), RandomError> {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_be_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}
