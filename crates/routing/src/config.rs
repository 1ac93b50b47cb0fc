//! `RouterConfig`: the routing core's tunables, their defaults and why they are what they are.

use std::time::Duration;

/// Tunables of the routing core. `RouterConfig::default()` is what a node runs with unless
/// `node.yaml` says otherwise; [`RouterConfig::validate`] rejects values that would break it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouterConfig {
    /// How often each neighbour is probed. 100 ms with `probe_miss_limit` 3 declares a silent
    /// neighbour dead within ~300 ms, BFD-style, whatever the link layer says.
    pub probe_interval: Duration,
    /// Consecutive probe intervals without any packet from a neighbour before it is dead.
    pub probe_miss_limit: u32,
    /// How often a node originates an OGM (B.A.T.M.A.N. IV's default, 1 s).
    pub ogm_interval: Duration,
    /// How often discovery hellos go out to the multicast group and static peers.
    pub hello_interval: Duration,
    /// B.A.T.M.A.N.'s hop penalty on the 0..255 TQ scale (30 in batman-adv today).
    pub hop_penalty: u8,
    /// Probe window for loss and TQ, in probes (B.A.T.M.A.N. IV's local window is 64).
    pub window: u8,
    /// Fisheye scoping: OGMs with a larger TTL are sent less often (see `router.rs`).
    /// Without it every OGM floods the whole mesh, as in B.A.T.M.A.N. IV.
    pub fisheye: bool,
    /// How long route changes wait to be batched into one packet per neighbour.
    pub flush_delay: Duration,
    /// Upper bound on neighbours; further ones are ignored and counted. Keeps per-neighbour
    /// state bounded and limits how many links an attacker can make us hold.
    pub max_neighbours: usize,
    /// Upper bound on destinations in the routing table; further ones are dropped and counted.
    pub max_destinations: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            probe_interval: Duration::from_millis(100),
            probe_miss_limit: 3,
            ogm_interval: Duration::from_secs(1),
            hello_interval: Duration::from_secs(1),
            hop_penalty: 30,
            window: 64,
            fisheye: true,
            flush_delay: Duration::from_millis(5),
            max_neighbours: 64,
            max_destinations: 65_536,
        }
    }
}

/// A configuration value the router cannot run with; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The offending field, as named in `node.yaml` under `routing`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl RouterConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        let ms = |d: Duration| d.as_millis();
        if !(10..=10_000).contains(&ms(self.probe_interval)) {
            return err("probe_interval_ms", "must be between 10 and 10000");
        }
        if !(1..=100).contains(&self.probe_miss_limit) {
            return err("probe_miss_limit", "must be between 1 and 100");
        }
        if !(100..=60_000).contains(&ms(self.ogm_interval)) {
            return err("ogm_interval_ms", "must be between 100 and 60000");
        }
        if !(100..=60_000).contains(&ms(self.hello_interval)) {
            return err("hello_interval_ms", "must be between 100 and 60000");
        }
        if self.hop_penalty == u8::MAX {
            return err(
                "hop_penalty",
                "must be below 255 (255 would make every route unusable)",
            );
        }
        if !(8..=64).contains(&self.window) {
            return err("window", "must be between 8 and 64");
        }
        if ms(self.flush_delay) > 1000 {
            return err("flush_delay_ms", "must be at most 1000");
        }
        if !(1..=254).contains(&self.max_neighbours) {
            return err("max_neighbours", "must be between 1 and 254");
        }
        if !(1..=1_000_000).contains(&self.max_destinations) {
            return err("max_destinations", "must be between 1 and 1000000");
        }
        Ok(())
    }

    /// Silence after which a neighbour is declared dead.
    pub fn dead_after(&self) -> Duration {
        self.probe_interval * self.probe_miss_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_detects_within_300_ms() {
        let config = RouterConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.dead_after(), Duration::from_millis(300));
    }

    #[test]
    fn invalid_values_name_their_field() {
        let cases: Vec<(RouterConfig, &str)> = vec![
            (
                RouterConfig {
                    probe_interval: Duration::from_millis(1),
                    ..Default::default()
                },
                "probe_interval_ms",
            ),
            (
                RouterConfig {
                    probe_miss_limit: 0,
                    ..Default::default()
                },
                "probe_miss_limit",
            ),
            (
                RouterConfig {
                    hop_penalty: 255,
                    ..Default::default()
                },
                "hop_penalty",
            ),
            (
                RouterConfig {
                    window: 65,
                    ..Default::default()
                },
                "window",
            ),
            (
                RouterConfig {
                    max_neighbours: 0,
                    ..Default::default()
                },
                "max_neighbours",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().map_err(|e| e.field), Err(field));
        }
    }
}
