//! `SimConfig`: one run's parameters, validated once, and the check cadence derived from them.

use routing::RouterConfig;

use crate::{SimError, TopologyKind};

/// Largest mesh the simulator accepts. The walk checker keeps O(N) state per destination and
/// each router keeps O(N) routes, so 100,000 nodes would need on the order of 10^10 route
/// entries: far beyond this machine. 20,000 leaves headroom above the 10,000-node target.
pub const MAX_NODES: usize = 20_000;

/// Longest run accepted, in virtual seconds (one simulated day).
pub const MAX_DURATION_S: f64 = 86_400.0;

/// Nodes start within at least this window (see [`SimConfig::start_spread_us`]); it also
/// keeps their probe timers apart.
pub const START_SPREAD_MIN_US: u64 = 100_000;

/// Above 1,000 nodes the start window grows by this much per node.
pub const START_SPREAD_PER_NODE_US: u64 = 100;

/// Largest per-link latency accepted, in milliseconds.
pub const MAX_LATENCY_MS: f64 = 10_000.0;

/// Bytes of IPv6 (40) and UDP (8) header added to every packet in the byte accounting: the
/// routers emit only the UDP payload, but the link carries the headers too.
pub const IPV6_UDP_HEADER_BYTES: u64 = 48;

/// The parameters of one simulation run.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of nodes, at least 2.
    pub nodes: usize,
    /// Link topology.
    pub topology: TopologyKind,
    /// Probability in `[0, 1)` that any one delivery is lost.
    pub loss: f64,
    /// One-way latency of every link in microseconds; each packet adds up to 10 % jitter.
    pub latency_us: u64,
    /// Fraction in `[0, 1)` of nodes crashed at once after convergence (rounded down).
    pub fail_fraction: f64,
    /// The run seed; every random draw of the run derives from it.
    pub seed: u64,
    /// Virtual time the run lasts, in microseconds.
    pub duration_us: u64,
    /// The routing core's configuration, the same for every node.
    pub router: RouterConfig,
    /// Whether routers sign their OGMs and verify everyone's (real Ed25519). Off by default:
    /// at 10,000 nodes a run verifies millions of signatures (about 40 µs each here), which
    /// would dominate its time; the signature bytes are on the wire either way.
    pub sign_ogms: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 100,
            topology: TopologyKind::Random,
            loss: 0.0,
            latency_us: 5_000,
            fail_fraction: 0.4,
            seed: 1,
            duration_us: 60_000_000,
            router: RouterConfig::default(),
            sign_ogms: false,
        }
    }
}

impl SimConfig {
    /// Checks every parameter; errors name the command-line flag that sets it.
    pub fn validate(&self) -> Result<(), SimError> {
        if !(2..=MAX_NODES).contains(&self.nodes) {
            return Err(SimError::invalid(
                "--nodes",
                format!("must be between 2 and {MAX_NODES}, got {}", self.nodes),
            ));
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(SimError::invalid(
                "--loss",
                format!("must be in [0, 1), got {}", self.loss),
            ));
        }
        if !(0.0..1.0).contains(&self.fail_fraction) {
            return Err(SimError::invalid(
                "--fail",
                format!("must be in [0, 1), got {}", self.fail_fraction),
            ));
        }
        if self.latency_us as f64 > MAX_LATENCY_MS * 1000.0 {
            return Err(SimError::invalid(
                "--latency-ms",
                format!("must be at most {MAX_LATENCY_MS}"),
            ));
        }
        if self.duration_us == 0 || self.duration_us as f64 > MAX_DURATION_S * 1e6 {
            return Err(SimError::invalid(
                "--duration-s",
                format!("must be above 0 and at most {MAX_DURATION_S}"),
            ));
        }
        self.router
            .validate()
            .map_err(|e| SimError::invalid("router", e.to_string()))?;
        Ok(())
    }

    /// How many nodes crash: `floor(fail_fraction * nodes)`.
    pub fn failed_node_count(&self) -> usize {
        ((self.fail_fraction * self.nodes as f64).floor() as usize).min(self.nodes)
    }

    /// Resolution of `converged_s` and `recovered_s`: how often (virtual time) the checker
    /// asks "does every pair have a working path?". 10 ms up to 2,000 nodes; 50 ms up to
    /// 5,000; 100 ms above, where one full check walks up to 10^8 next hops.
    pub fn check_interval_us(&self) -> u64 {
        match self.nodes {
            0..=2_000 => 10_000,
            2_001..=5_000 => 50_000,
            _ => 100_000,
        }
    }

    /// The window in which the nodes start, each at a uniformly random instant: 100 ms, or
    /// 100 us per node above 1,000 nodes (1 s at 10,000). Real daemons never boot in
    /// lockstep, and a mesh of thousands is not switched on in one tenth of a second: started
    /// that way, 10,000 nodes exchanged their whole tables (10^8 routes) within 50 ms, with a
    /// million packets and gigabytes in flight at once. `converged_s` still counts from the
    /// first possible start, so a longer window only adds to it.
    pub fn start_spread_us(&self) -> u64 {
        (self.nodes as u64 * START_SPREAD_PER_NODE_US).max(START_SPREAD_MIN_US)
    }

    /// How often the converged mesh gets a full audit (every pair walked, no early exit) to
    /// catch loops, black holes and flapping in the steady phases. 1 s up to 1,000 nodes,
    /// 5 s up to 3,000, 10 s above; always a multiple of [`Self::check_interval_us`].
    pub fn audit_interval_us(&self) -> u64 {
        match self.nodes {
            0..=1_000 => 1_000_000,
            1_001..=3_000 => 5_000_000,
            _ => 10_000_000,
        }
    }

    /// How long after a crash a live node may still forward to the crashed neighbour: twice
    /// the router's BFD-style detection time (`probe_interval * probe_miss_limit`) plus two
    /// worst-case link latencies. Past it, such a next hop is an invariant violation.
    pub fn dead_next_hop_grace_us(&self) -> u64 {
        let detection_us = u64::try_from(self.router.dead_after().as_micros()).unwrap_or(u64::MAX);
        detection_us
            .saturating_mul(2)
            .saturating_add(self.latency_us.saturating_mul(22) / 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_window_grows_with_the_mesh_above_1000_nodes() {
        let window = |nodes| {
            SimConfig {
                nodes,
                ..SimConfig::default()
            }
            .start_spread_us()
        };
        assert_eq!(window(100), 100_000);
        assert_eq!(window(1_000), 100_000);
        assert_eq!(window(3_000), 300_000);
        assert_eq!(window(10_000), 1_000_000);
    }

    #[test]
    fn defaults_are_valid() {
        assert!(SimConfig::default().validate().is_ok());
        assert_eq!(SimConfig::default().failed_node_count(), 40);
    }

    #[test]
    fn errors_name_the_flag() {
        let cases: Vec<(SimConfig, &str)> = vec![
            (
                SimConfig {
                    nodes: 1,
                    ..Default::default()
                },
                "--nodes",
            ),
            (
                SimConfig {
                    nodes: MAX_NODES + 1,
                    ..Default::default()
                },
                "--nodes",
            ),
            (
                SimConfig {
                    loss: 1.0,
                    ..Default::default()
                },
                "--loss",
            ),
            (
                SimConfig {
                    loss: -0.1,
                    ..Default::default()
                },
                "--loss",
            ),
            (
                SimConfig {
                    loss: f64::NAN,
                    ..Default::default()
                },
                "--loss",
            ),
            (
                SimConfig {
                    fail_fraction: 1.0,
                    ..Default::default()
                },
                "--fail",
            ),
            (
                SimConfig {
                    duration_us: 0,
                    ..Default::default()
                },
                "--duration-s",
            ),
            (
                SimConfig {
                    latency_us: 20_000_000,
                    ..Default::default()
                },
                "--latency-ms",
            ),
        ];
        for (config, flag) in cases {
            match config.validate() {
                Err(SimError::InvalidArgument { flag: found, .. }) => assert_eq!(found, flag),
                other => panic!("{flag}: expected an invalid-argument error, got {other:?}"),
            }
        }
    }

    #[test]
    fn cadence_is_a_multiple_of_the_check_interval() {
        for nodes in [2, 1_000, 2_500, 10_000] {
            let config = SimConfig {
                nodes,
                ..Default::default()
            };
            assert_eq!(config.audit_interval_us() % config.check_interval_us(), 0);
        }
    }
}
