//! The sliding replay window of one receiving key: which 64-bit counters were already accepted.
//!
//! Same idea as WireGuard's (RFC 6479): a ring of [`WINDOW_BITS`] bits behind the highest
//! counter seen. A counter above the highest moves the window forward; one inside the window is
//! accepted once; one behind it is too old to tell and is refused. Packets may arrive out of
//! order by up to `WINDOW_BITS - 1` positions and still be accepted exactly once.
//!
//! [`ReplayWindow::check`] only reads; [`ReplayWindow::accept`] writes. The caller checks
//! before decrypting and accepts after the AEAD tag verified, so a forged packet (which fails
//! the tag) can never move the window.

/// Size of the window in counters. 2,048 like WireGuard's: a link reordering more than that
/// many packets is broken anyway, and the ring costs 256 bytes per key.
pub const WINDOW_BITS: u64 = 2048;

const WORDS: usize = (WINDOW_BITS / 64) as usize;

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The counter was already accepted.
    Replayed,
    /// The counter is `WINDOW_BITS` or more behind the highest accepted one.
    TooOld,
}

/// Accepted counters of one receiving key.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest accepted counter plus one; 0 while nothing was accepted.
    next: u64,
    ring: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

impl ReplayWindow {
    /// An empty window: every counter is acceptable once.
    pub fn new() -> ReplayWindow {
        ReplayWindow {
            next: 0,
            ring: [0; WORDS],
        }
    }

    /// Whether `counter` would be accepted, without recording it.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= self.next {
            return Ok(());
        }
        if self.next - counter > WINDOW_BITS {
            return Err(ReplayError::TooOld);
        }
        let (word, bit) = position(counter);
        if self.ring[word] & bit != 0 {
            Err(ReplayError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Records `counter` as accepted. Refuses exactly what [`ReplayWindow::check`] refuses.
    pub fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        if counter >= self.next {
            self.advance(counter);
        }
        let (word, bit) = position(counter);
        self.ring[word] |= bit;
        debug_assert!(self.check(counter).is_err());
        Ok(())
    }

    /// Highest accepted counter, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    /// Clears the ring positions of counters `self.next ..= counter`, which now enter the
    /// window, since they still hold bits of counters `WINDOW_BITS` lower.
    fn advance(&mut self, counter: u64) {
        let entering = counter - self.next + 1;
        if entering >= WINDOW_BITS {
            self.ring = [0; WORDS];
        } else {
            for value in self.next..=counter {
                let (word, bit) = position(value);
                self.ring[word] &= !bit;
            }
        }
        // `counter` is below u64::MAX: the sender refuses to use counters that high
        // (`REJECT_AFTER_MESSAGES`), and the decoder drops them before they get here.
        self.next = counter.saturating_add(1);
    }
}

fn position(counter: u64) -> (usize, u64) {
    let slot = counter % WINDOW_BITS;
    ((slot / 64) as usize, 1u64 << (slot % 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_counters_are_accepted_once() {
        let mut window = ReplayWindow::new();
        for counter in 0..5000 {
            assert_eq!(window.accept(counter), Ok(()));
            assert_eq!(window.accept(counter), Err(ReplayError::Replayed));
        }
        assert_eq!(window.highest(), Some(4999));
    }

    #[test]
    fn reordering_inside_the_window_is_accepted_and_older_is_refused() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.accept(3000), Ok(()));
        assert_eq!(window.accept(3000 - (WINDOW_BITS - 1)), Ok(()));
        assert_eq!(window.accept(2999), Ok(()));
        assert_eq!(window.accept(2999), Err(ReplayError::Replayed));
        assert_eq!(
            window.check(3000 - WINDOW_BITS - 1),
            Err(ReplayError::TooOld)
        );
        assert_eq!(window.accept(0), Err(ReplayError::TooOld));
    }

    #[test]
    fn a_jump_clears_bits_of_counters_that_left_the_window() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.accept(5), Ok(()));
        assert_eq!(window.accept(5 + WINDOW_BITS), Ok(()));
        // Each slot held an older counter; moving the window must free it, not read it as seen.
        assert_eq!(window.accept(6 + WINDOW_BITS), Ok(()));
        assert_eq!(window.accept(5 + 3 * WINDOW_BITS), Ok(()));
        assert_eq!(window.accept(6 + 2 * WINDOW_BITS), Ok(()));
        assert_eq!(
            window.accept(6 + 2 * WINDOW_BITS),
            Err(ReplayError::Replayed)
        );
    }
}

#[cfg(test)]
mod model {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The ring agrees with a plain set of every accepted counter on every decision.
        #[test]
        fn the_window_matches_a_set_of_seen_counters(
            steps in proptest::collection::vec((0u64..6000, any::<bool>()), 1..400)
        ) {
            let mut window = ReplayWindow::new();
            let mut seen = HashSet::new();
            let mut highest: Option<u64> = None;
            for (counter, jump) in steps {
                // Mix near-in-order traffic with occasional far jumps.
                let counter = if jump { counter * 7 } else { highest.unwrap_or(0).saturating_sub(counter % 2100) };
                let expected = if highest.is_some_and(|h| counter + WINDOW_BITS <= h) {
                    Err(ReplayError::TooOld)
                } else if seen.contains(&counter) {
                    Err(ReplayError::Replayed)
                } else {
                    Ok(())
                };
                prop_assert_eq!(window.accept(counter), expected, "counter {}", counter);
                if expected.is_ok() {
                    seen.insert(counter);
                    highest = Some(highest.map_or(counter, |h| h.max(counter)));
                }
                prop_assert_eq!(window.highest(), highest);
            }
        }
    }
}
