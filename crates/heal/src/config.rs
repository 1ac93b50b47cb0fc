//! `HealConfig`: the `mapk` section of `node.yaml` (thresholds, detector, neighbourhood and
//! execution limits) with defaults and validation whose errors name the field.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::duration_text;

/// A setting that is out of range; `field` is the dotted path under `mapk`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the offending setting, e.g. `mapk.detector.alpha`.
    pub field: String,
    /// Why the value is refused, in words an operator can act on.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Longest run of consecutive samples the hysteresis may demand. A larger value would delay
/// detection by more than a minute and a half at the default 1 s period.
pub const MAX_RUN_SAMPLES: u32 = 100;

/// Longest `detector.resource_sustain`: an overload that must last more than an hour before
/// it counts is not watched at all.
pub const MAX_RESOURCE_SUSTAIN: Duration = Duration::from_secs(3600);

/// Cap on `execution.max_actions_per_window`; the circuit breaker remembers one timestamp per
/// action in the window, so this is also the size of its history.
pub const MAX_ACTIONS_PER_WINDOW: u32 = 1024;

/// The whole `mapk` section. Every field has a default, so an empty section is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealConfig {
    /// Period at which the node samples metrics and feeds observations.
    #[serde(with = "duration_text")]
    pub cycle_interval: Duration,
    /// Static thresholds (policy, tunable by vote).
    pub thresholds: Thresholds,
    /// Adaptive detector and hysteresis settings.
    pub detector: DetectorConfig,
    /// Neighbourhood detector settings.
    pub neighbourhood: NeighbourhoodConfig,
    /// Limits on what the executor may do.
    pub execution: ExecutionConfig,
    /// Seed for plan choice (Thompson sampling); runs with the same seed choose the same plans.
    pub seed: u64,
}

impl Default for HealConfig {
    fn default() -> Self {
        HealConfig {
            cycle_interval: Duration::from_secs(1),
            thresholds: Thresholds::default(),
            detector: DetectorConfig::default(),
            neighbourhood: NeighbourhoodConfig::default(),
            execution: ExecutionConfig::default(),
            seed: 0,
        }
    }
}

/// Static thresholds, as in the seeds' `mapk.thresholds` (percentages).
///
/// Defaults are higher than the seeds' 70 % CPU and 5 % loss: a healthy node compiling or
/// serving a burst passes 70 % CPU routinely, and the issue asks for zero false incidents on a
/// healthy mesh; the adaptive detectors catch smaller changes on mesh metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// CPU use above which a sample is anomalous, percent.
    pub cpu: f64,
    /// Memory use above which a sample is anomalous, percent.
    pub memory: f64,
    /// Disk use above which a sample is anomalous, percent.
    pub disk: f64,
    /// Link loss above which a sample is anomalous, percent.
    pub network_loss: f64,
    /// Link round-trip time above which a sample is anomalous, milliseconds; none by default
    /// because sensible values range from 1 ms (LAN) to seconds (satellite).
    pub rtt_ms: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cpu: 90.0,
            memory: 90.0,
            disk: 95.0,
            network_loss: 10.0,
            rtt_ms: None,
        }
    }
}

/// Which threshold an `adjust_threshold` action or a vote changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdName {
    /// `thresholds.cpu`.
    Cpu,
    /// `thresholds.memory`.
    Memory,
    /// `thresholds.disk`.
    Disk,
    /// `thresholds.network_loss`.
    NetworkLoss,
    /// `thresholds.rtt_ms`.
    RttMs,
}

impl ThresholdName {
    /// Parses the snake_case name used in YAML.
    pub fn parse(text: &str) -> Option<ThresholdName> {
        Some(match text {
            "cpu" => ThresholdName::Cpu,
            "memory" => ThresholdName::Memory,
            "disk" => ThresholdName::Disk,
            "network_loss" => ThresholdName::NetworkLoss,
            "rtt_ms" => ThresholdName::RttMs,
            _ => return None,
        })
    }
}

impl Thresholds {
    /// Sets one threshold after checking its range; the error names the field.
    pub fn set(&mut self, name: ThresholdName, value: f64) -> Result<(), ConfigError> {
        let field = format!("mapk.thresholds.{}", threshold_field(name));
        match name {
            ThresholdName::RttMs => {
                if !(value.is_finite() && value > 0.0) {
                    return Err(ConfigError::new(field, "must be a positive number of ms"));
                }
                self.rtt_ms = Some(value);
            }
            other => {
                check_percent(&field, value)?;
                match other {
                    ThresholdName::Cpu => self.cpu = value,
                    ThresholdName::Memory => self.memory = value,
                    ThresholdName::Disk => self.disk = value,
                    _ => self.network_loss = value,
                }
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut copy = self.clone();
        copy.set(ThresholdName::Cpu, self.cpu)?;
        copy.set(ThresholdName::Memory, self.memory)?;
        copy.set(ThresholdName::Disk, self.disk)?;
        copy.set(ThresholdName::NetworkLoss, self.network_loss)?;
        if let Some(rtt) = self.rtt_ms {
            copy.set(ThresholdName::RttMs, rtt)?;
        }
        Ok(())
    }
}

fn threshold_field(name: ThresholdName) -> &'static str {
    match name {
        ThresholdName::Cpu => "cpu",
        ThresholdName::Memory => "memory",
        ThresholdName::Disk => "disk",
        ThresholdName::NetworkLoss => "network_loss",
        ThresholdName::RttMs => "rtt_ms",
    }
}

fn check_percent(field: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 100.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            "must be a percentage above 0 and at most 100",
        ))
    }
}

/// Adaptive detector (EWMA mean and variance, one-sided z-score) and hysteresis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// EWMA weight of a new sample, in (0, 1]. 0.1 remembers roughly the last 10 samples.
    pub alpha: f64,
    /// Standard deviations beyond the mean (in the harmful direction) that make a sample
    /// anomalous.
    pub z_threshold: f64,
    /// Samples a metric must have before its z-score counts; the mean and variance of the
    /// first few samples say nothing about normal behaviour.
    pub warm_up_samples: u32,
    /// Consecutive anomalous samples that make a symptom (and so an incident).
    pub open_after: u32,
    /// Consecutive normal samples that clear a symptom.
    pub close_after: u32,
    /// Smallest standard deviation assumed, in the metric's own unit, so that a metric that
    /// never moved (zero variance) does not turn its first small change into a huge z-score.
    pub min_deviation: f64,
    /// Smallest standard deviation assumed, as a share of the mean, for the same reason on
    /// metrics with large values (RTT in ms, counters).
    pub relative_deviation: f64,
    /// Smallest standard deviation assumed for link round-trip times, ms. Scheduling delays
    /// on a busy host move a loopback or LAN RTT by several milliseconds without anything
    /// wrong with the link; a degradation worth an incident moves it by tens.
    pub min_rtt_deviation_ms: f64,
    /// How long after a cause started its effects may still be blamed on it; a fault older
    /// than this did not cause a symptom that only appears now.
    #[serde(with = "duration_text")]
    pub cause_horizon: Duration,
    /// Whether CPU, memory and disk also get the adaptive detector. Off by default: a busy but
    /// healthy node is not overloaded, and static thresholds say what overload means.
    pub adaptive_node_metrics: bool,
    /// How long CPU, memory or disk must stay beyond its threshold (every sample of the run)
    /// before it is a symptom. A compile or a burst of requests takes a node to 100 % CPU for
    /// seconds without anything being wrong; overload is a state that lasts. The seeds sample
    /// these metrics once a minute, so their threshold never judged less than a minute either.
    #[serde(with = "duration_text")]
    pub resource_sustain: Duration,
    /// Once a CPU, memory or disk symptom is active, samples count as normal only this many
    /// percentage points below the threshold, so a metric hovering at the threshold does not
    /// open and close incidents in turn.
    pub resource_clear_margin: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            alpha: 0.1,
            z_threshold: 4.0,
            warm_up_samples: 30,
            open_after: 3,
            close_after: 5,
            min_deviation: 1.0,
            relative_deviation: 0.1,
            min_rtt_deviation_ms: 10.0,
            cause_horizon: Duration::from_secs(10),
            adaptive_node_metrics: false,
            resource_sustain: Duration::from_secs(30),
            resource_clear_margin: 5.0,
        }
    }
}

/// Neighbourhood detector: whether a node's neighbours all see it losing packets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeighbourhoodConfig {
    /// Fewest fresh views of a node (this node's own link to it included) before the node can
    /// be blamed; with one view a bad link and a bad node look the same.
    pub min_reporters: u32,
    /// Share of the reporters that must see the node as bad, in (0, 1].
    pub blame_share: f64,
    /// Reports older than this are ignored.
    #[serde(with = "duration_text")]
    pub view_max_age: Duration,
}

impl Default for NeighbourhoodConfig {
    fn default() -> Self {
        NeighbourhoodConfig {
            min_reporters: 2,
            blame_share: 1.0,
            view_max_age: Duration::from_secs(10),
        }
    }
}

/// Limits on the executor: circuit breaker, blast radius, approvals, verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Actions (not counting rollbacks) allowed per `window`; the circuit breaker opens beyond.
    pub max_actions_per_window: u32,
    /// Sliding window of the circuit breaker.
    #[serde(with = "duration_text")]
    pub window: Duration,
    /// Largest share of the mesh that may be under action at once, in (0, 1]; one node is
    /// always allowed, so a small mesh can still heal.
    pub max_blast_share: f64,
    /// How long a plan that needs approval waits before it expires (the seeds' emergency vote
    /// lasts 15 minutes).
    #[serde(with = "duration_text")]
    pub approval_timeout: Duration,
    /// How long after a plan's last step the symptoms may take to clear.
    #[serde(with = "duration_text")]
    pub verify_timeout: Duration,
    /// Plans tried per incident before the loop gives up and leaves it to an operator.
    pub max_plan_attempts: u32,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            max_actions_per_window: 6,
            window: Duration::from_secs(60),
            max_blast_share: 0.34,
            approval_timeout: Duration::from_secs(15 * 60),
            verify_timeout: Duration::from_secs(10),
            max_plan_attempts: 3,
        }
    }
}

impl HealConfig {
    /// Checks every range; the error names the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.thresholds.validate()?;
        let d = &self.detector;
        if !(d.alpha.is_finite() && d.alpha > 0.0 && d.alpha <= 1.0) {
            return Err(ConfigError::new(
                "mapk.detector.alpha",
                "must be above 0 and at most 1",
            ));
        }
        if !(d.z_threshold.is_finite() && d.z_threshold > 0.0) {
            return Err(ConfigError::new(
                "mapk.detector.z_threshold",
                "must be positive",
            ));
        }
        if d.warm_up_samples < 2 {
            return Err(ConfigError::new(
                "mapk.detector.warm_up_samples",
                "must be at least 2 (a variance needs two samples)",
            ));
        }
        for (field, value) in [
            ("mapk.detector.open_after", d.open_after),
            ("mapk.detector.close_after", d.close_after),
        ] {
            if value == 0 || value > MAX_RUN_SAMPLES {
                return Err(ConfigError::new(
                    field,
                    format!("must be from 1 to {MAX_RUN_SAMPLES} samples"),
                ));
            }
        }
        for (field, value) in [
            ("mapk.detector.min_deviation", d.min_deviation),
            ("mapk.detector.relative_deviation", d.relative_deviation),
            ("mapk.detector.min_rtt_deviation_ms", d.min_rtt_deviation_ms),
            (
                "mapk.detector.resource_clear_margin",
                d.resource_clear_margin,
            ),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ConfigError::new(field, "must be zero or positive"));
            }
        }
        if d.resource_clear_margin >= 100.0 {
            return Err(ConfigError::new(
                "mapk.detector.resource_clear_margin",
                "must be below 100 percentage points",
            ));
        }
        if d.resource_sustain > MAX_RESOURCE_SUSTAIN {
            return Err(ConfigError::new(
                "mapk.detector.resource_sustain",
                format!("must be at most {} s", MAX_RESOURCE_SUSTAIN.as_secs()),
            ));
        }
        if d.cause_horizon.is_zero() {
            return Err(ConfigError::new(
                "mapk.detector.cause_horizon",
                "must be longer than zero",
            ));
        }
        let n = &self.neighbourhood;
        if n.min_reporters == 0 {
            return Err(ConfigError::new(
                "mapk.neighbourhood.min_reporters",
                "must be at least 1",
            ));
        }
        if !(n.blame_share.is_finite() && n.blame_share > 0.0 && n.blame_share <= 1.0) {
            return Err(ConfigError::new(
                "mapk.neighbourhood.blame_share",
                "must be above 0 and at most 1",
            ));
        }
        let e = &self.execution;
        if e.max_actions_per_window == 0 || e.max_actions_per_window > MAX_ACTIONS_PER_WINDOW {
            return Err(ConfigError::new(
                "mapk.execution.max_actions_per_window",
                format!("must be from 1 to {MAX_ACTIONS_PER_WINDOW}"),
            ));
        }
        if !(e.max_blast_share.is_finite() && e.max_blast_share > 0.0 && e.max_blast_share <= 1.0) {
            return Err(ConfigError::new(
                "mapk.execution.max_blast_share",
                "must be above 0 and at most 1",
            ));
        }
        if e.max_plan_attempts == 0 || e.max_plan_attempts > 10 {
            return Err(ConfigError::new(
                "mapk.execution.max_plan_attempts",
                "must be from 1 to 10",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(HealConfig::default().validate(), Ok(()));
        let mut c = HealConfig::default();
        c.detector.alpha = 0.0;
        assert_eq!(
            c.validate().map_err(|e| e.field),
            Err("mapk.detector.alpha".into())
        );
        let mut c = HealConfig::default();
        c.thresholds.cpu = 120.0;
        assert_eq!(
            c.validate().map_err(|e| e.field),
            Err("mapk.thresholds.cpu".into())
        );
        let mut c = HealConfig::default();
        c.execution.max_blast_share = 0.0;
        assert_eq!(
            c.validate().map_err(|e| e.field),
            Err("mapk.execution.max_blast_share".into())
        );
    }

    #[test]
    fn yaml_section_parses_with_durations() {
        let yaml =
            "thresholds:\n  cpu: 70\n  memory: 85\n  network_loss: 5\nexecution:\n  window: 30s\n";
        let c: HealConfig = serde_saphyr::from_str(yaml).expect("valid section");
        assert_eq!(c.thresholds.cpu, 70.0);
        assert_eq!(c.thresholds.disk, 95.0);
        assert_eq!(c.execution.window, Duration::from_secs(30));
        assert!(serde_saphyr::from_str::<HealConfig>("thresholds:\n  gpu: 3\n").is_err());
    }
}
