//! `Clock`: the daemon's one reading of time, turned into the routing core's `Timestamp`s.
//!
//! The routing core takes time as an argument; this is where the daemon gets it. Timestamps
//! count microseconds of the monotonic clock since the runtime started. The wall-clock time of
//! that start is sampled once, so that timestamps can be shown as Unix time in the API.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use routing::Timestamp;

/// The monotonic origin of a node's timestamps and its wall-clock equivalent.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_us: u64,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn start() -> Clock {
        let origin = Instant::now();
        // A system clock set before 1970 is a broken host; timestamps then show as 1970.
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            origin,
            origin_unix_us: saturating_micros(since_epoch),
        }
    }

    /// The current timestamp.
    pub fn now(&self) -> Timestamp {
        Timestamp(saturating_micros(self.origin.elapsed()))
    }

    /// Time since the origin.
    pub fn uptime(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The monotonic instant of `timestamp`, for timers.
    pub fn instant_of(&self, timestamp: Timestamp) -> Instant {
        let offset = Duration::from_micros(timestamp.as_micros());
        // An offset past what Instant can hold means "never"; a far-future instant does.
        self.origin
            .checked_add(offset)
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365))
    }

    /// `timestamp` as milliseconds since the Unix epoch.
    pub fn unix_ms_of(&self, timestamp: Timestamp) -> u64 {
        self.origin_unix_us.saturating_add(timestamp.as_micros()) / 1000
    }
}

fn saturating_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_monotonic_and_convert_consistently() {
        let clock = Clock::start();
        let first = clock.now();
        let second = clock.now();
        assert!(second >= first);
        let later = Timestamp(first.as_micros() + 5_000);
        assert_eq!(
            clock.instant_of(later) - clock.instant_of(first),
            Duration::from_millis(5)
        );
        assert_eq!(
            clock.unix_ms_of(later) - clock.unix_ms_of(Timestamp::ZERO),
            first.as_micros() / 1000 + 5
        );
        let wall_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(wall_now.abs_diff(clock.unix_ms_of(clock.now())) < 1_000);
    }
}
