//! Caller-supplied time (`Timestamp`) and the human duration syntax (`"500ms"`, `"10s"`, `"15m"`)
//! used by playbooks and configuration.

use std::fmt;
use std::time::Duration;

/// A point on the caller's monotonic clock, in microseconds from an arbitrary origin.
///
/// The same unit as the routing core's timestamp, so the node can pass one clock reading to
/// both; `heal` keeps its own type because it depends on `wire` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The origin of the clock.
    pub const ZERO: Timestamp = Timestamp(0);

    /// Builds a timestamp from milliseconds.
    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms.saturating_mul(1000))
    }

    /// Builds a timestamp from seconds.
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// This point plus `d`, saturating at the end of time.
    pub fn plus(self, d: Duration) -> Timestamp {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(micros))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// Longest duration any setting accepts: a day. Longer timeouts would keep an incident's plan
/// (and its slot in the bounded tables) alive for longer than any operator waits for it.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses `"<whole number><unit>"` with unit `ms`, `s`, `m` or `h`, between 1 ms and
/// [`MAX_DURATION`]. The unit is mandatory: a bare `30` is ambiguous (the seeds use seconds for
/// intervals but milliseconds elsewhere).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m or h, e.g. \"10s\")"))?;
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        other => return Err(format!("`{other}` is not a unit (use ms, s, m or h)")),
    };
    if duration.is_zero() {
        return Err("must be at least 1ms".to_string());
    }
    if duration > MAX_DURATION {
        return Err(format!("`{text}` is longer than the 24h limit"));
    }
    Ok(duration)
}

/// Serde adapter: a `Duration` field written as `"10s"` in YAML.
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}ms", value.as_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_stay_in_range() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["30", "", "s", "10x", "0s", "25h", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn timestamps_saturate() {
        let t = Timestamp::from_secs(1);
        assert_eq!(t.saturating_since(Timestamp::from_secs(2)), Duration::ZERO);
        assert_eq!(
            Timestamp(u64::MAX).plus(Duration::from_secs(1)),
            Timestamp(u64::MAX)
        );
        assert_eq!(t.plus(Duration::from_millis(5)), Timestamp(1_005_000));
    }
}
