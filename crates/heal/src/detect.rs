//! Detectors for one scalar metric: a static threshold, an EWMA mean/variance z-score with
//! warm-up, and the hysteresis that turns anomalous samples into a symptom and back.

use std::time::Duration;

use crate::config::{DetectorConfig, MAX_RUN_SAMPLES};
use crate::observation::Harmful;
use crate::time::Timestamp;

/// Exponentially weighted mean and variance (West/Finch incremental form), so a detector keeps
/// two numbers per metric instead of a history window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ewma {
    /// Weighted mean.
    pub mean: f64,
    /// Weighted variance.
    pub variance: f64,
    /// Samples absorbed, capped at [`MAX_RUN_SAMPLES`]-independent `u32::MAX`.
    pub samples: u32,
}

impl Ewma {
    /// Absorbs one sample with weight `alpha`.
    pub fn update(&mut self, value: f64, alpha: f64) {
        if self.samples == 0 {
            self.mean = value;
            self.variance = 0.0;
        } else {
            let diff = value - self.mean;
            let increment = alpha * diff;
            self.mean += increment;
            self.variance = (1.0 - alpha) * (self.variance + diff * increment);
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// One-sided z-score of `value` in the harmful direction, or `None` while warming up.
    ///
    /// The deviation is floored (see [`DetectorConfig::min_deviation`]) so that a metric that
    /// never moved does not turn its first small change into an incident.
    pub fn z_score(&self, value: f64, harmful: Harmful, cfg: &DetectorConfig) -> Option<f64> {
        if self.samples < cfg.warm_up_samples {
            return None;
        }
        let deviation = self
            .variance
            .max(0.0)
            .sqrt()
            .max(cfg.min_deviation)
            .max(cfg.relative_deviation * self.mean.abs())
            .max(f64::MIN_POSITIVE);
        let delta = match harmful {
            Harmful::High => value - self.mean,
            Harmful::Low => self.mean - value,
        };
        Some(delta / deviation)
    }
}

/// A change of a symptom's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `open_after` anomalous samples in a row; the symptom started at `first_at`, the first of
    /// them.
    Opened {
        /// Time of the first anomalous sample of the run.
        first_at: Timestamp,
    },
    /// `close_after` normal samples in a row.
    Closed,
}

/// Hysteresis: one spike never opens a symptom and one good sample never closes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hysteresis {
    /// Anomalous samples in a row.
    pub anomalous_run: u32,
    /// Normal samples in a row.
    pub normal_run: u32,
    /// Time of the first sample of the current anomalous run.
    pub run_started: Option<Timestamp>,
    /// When the symptom is active: when it started.
    pub active_since: Option<Timestamp>,
    /// Anomalous samples seen since the symptom opened (its evidence), capped.
    pub evidence: u32,
    /// Time of the first sample of the current normal run: when a symptom closes, the
    /// recovery happened here; the `close_after` samples since only verified it.
    pub normal_since: Option<Timestamp>,
}

/// Cap on a symptom's evidence count; confidence saturates long before.
pub const MAX_EVIDENCE: u32 = 10_000;

impl Hysteresis {
    /// Feeds one sample's verdict. A symptom opens after `open_after` anomalous samples in a
    /// row that also span at least `min_duration` from the first of them.
    pub fn feed(
        &mut self,
        anomalous: bool,
        now: Timestamp,
        cfg: &DetectorConfig,
        min_duration: Duration,
    ) -> Option<Transition> {
        if anomalous {
            self.normal_run = 0;
            self.normal_since = None;
            if self.anomalous_run == 0 {
                self.run_started = Some(now);
            }
            self.anomalous_run = (self.anomalous_run + 1).min(MAX_RUN_SAMPLES);
            if self.active_since.is_some() {
                self.evidence = (self.evidence + 1).min(MAX_EVIDENCE);
                return None;
            }
            let first_at = self.run_started.unwrap_or(now);
            if self.anomalous_run >= cfg.open_after
                && now.saturating_since(first_at) >= min_duration
            {
                self.active_since = Some(first_at);
                self.evidence = self.anomalous_run;
                return Some(Transition::Opened { first_at });
            }
            None
        } else {
            self.anomalous_run = 0;
            self.run_started = None;
            self.normal_since.get_or_insert(now);
            self.normal_run = (self.normal_run + 1).min(MAX_RUN_SAMPLES);
            if self.active_since.is_some() && self.normal_run >= cfg.close_after {
                self.active_since = None;
                self.evidence = 0;
                return Some(Transition::Closed);
            }
            None
        }
    }

    /// Whether the symptom is active.
    pub fn is_active(&self) -> bool {
        self.active_since.is_some()
    }
}

/// Why the last sample was anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Verdict {
    /// Within thresholds and the adaptive band.
    #[default]
    Normal,
    /// Beyond the static threshold.
    Threshold {
        /// The sample.
        value: f64,
        /// The threshold it crossed.
        limit: f64,
    },
    /// Beyond `z_threshold` standard deviations.
    ZScore {
        /// The sample.
        value: f64,
        /// Its z-score.
        z: f64,
    },
}

/// The rule of node resources (CPU, memory, disk): beyond the threshold for a while before it
/// is a symptom, and back below it by a margin before the symptom clears.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sustain {
    /// How long a run of samples beyond the threshold must last.
    pub duration: Duration,
    /// Distance below the threshold (in the metric's unit) a sample must reach to count as
    /// normal while the symptom is active.
    pub clear_margin: f64,
}

impl Sustain {
    /// The rule from the detector settings.
    pub fn from_config(cfg: &DetectorConfig) -> Sustain {
        Sustain {
            duration: cfg.resource_sustain,
            clear_margin: cfg.resource_clear_margin,
        }
    }
}

/// Everything tracked for one metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricDetector {
    /// Baseline of normal samples.
    pub baseline: Ewma,
    /// Symptom state.
    pub hysteresis: Hysteresis,
    /// Last sample.
    pub last_value: f64,
    /// Verdict on the last anomalous sample, which explains an active symptom.
    pub last_anomaly: Verdict,
}

impl Verdict {
    /// Short explanation for incident evidence, e.g. `97.0 > 90` or `4.2 at z 6.1`.
    pub fn explain(&self) -> String {
        match self {
            Verdict::Normal => "normal".to_string(),
            Verdict::Threshold { value, limit } => format!("{value:.1} beyond threshold {limit}"),
            Verdict::ZScore { value, z } => format!("{value:.1} at z-score {z:.1}"),
        }
    }
}

impl MetricDetector {
    /// Judges and absorbs one sample. `limit` is the static threshold (if the metric has one);
    /// `adaptive` says whether the z-score applies; `sustain` is the node resources' rule.
    ///
    /// Anomalous samples do not update the baseline: otherwise a sustained fault would become
    /// the new normal and its symptom would clear although nothing was repaired.
    #[allow(clippy::too_many_arguments)]
    pub fn feed(
        &mut self,
        value: f64,
        harmful: Harmful,
        limit: Option<f64>,
        adaptive: bool,
        sustain: Option<Sustain>,
        cfg: &DetectorConfig,
        now: Timestamp,
    ) -> (Verdict, Option<Transition>) {
        self.last_value = value;
        // While the symptom is active the threshold moves by the margin towards normal; the
        // verdict still names the threshold itself.
        let judged = match (limit, sustain) {
            (Some(limit), Some(rule)) if self.hysteresis.is_active() => Some(match harmful {
                Harmful::High => limit - rule.clear_margin,
                Harmful::Low => limit + rule.clear_margin,
            }),
            (limit, _) => limit,
        };
        let beyond = |limit: f64| match harmful {
            Harmful::High => value > limit,
            Harmful::Low => value < limit,
        };
        let verdict = match (judged, limit) {
            (Some(judged), Some(limit)) if beyond(judged) => Verdict::Threshold { value, limit },
            _ => match self
                .baseline
                .z_score(value, harmful, cfg)
                .filter(|_| adaptive)
            {
                Some(z) if z > cfg.z_threshold => Verdict::ZScore { value, z },
                _ => Verdict::Normal,
            },
        };
        let anomalous = verdict != Verdict::Normal;
        if anomalous {
            self.last_anomaly = verdict;
        } else {
            self.baseline.update(value, cfg.alpha);
        }
        let min_duration = sustain.map_or(Duration::ZERO, |rule| rule.duration);
        (
            verdict,
            self.hysteresis.feed(anomalous, now, cfg, min_duration),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    #[test]
    fn ewma_tracks_mean_and_variance() {
        let mut e = Ewma::default();
        for i in 0..200 {
            e.update(if i % 2 == 0 { 9.0 } else { 11.0 }, 0.1);
        }
        assert!((e.mean - 10.0).abs() < 0.2, "mean {}", e.mean);
        assert!((e.variance - 1.0).abs() < 0.3, "variance {}", e.variance);
        let cfg = DetectorConfig::default();
        let z = e.z_score(20.0, Harmful::High, &cfg).expect("warm");
        assert!(z > 8.0, "z {z}");
        let low = e.z_score(20.0, Harmful::Low, &cfg).expect("warm");
        assert!(low < 0.0, "improvement must not be anomalous: {low}");
    }

    #[test]
    fn warm_up_suppresses_z_scores() {
        let cfg = DetectorConfig::default();
        let verdict_after = |samples: u32| {
            let mut d = MetricDetector::default();
            for i in 0..samples {
                d.feed(
                    10.0,
                    Harmful::High,
                    None,
                    true,
                    None,
                    &cfg,
                    at(u64::from(i)),
                );
            }
            d.feed(1_000.0, Harmful::High, None, true, None, &cfg, at(100))
                .0
        };
        assert_eq!(
            verdict_after(cfg.warm_up_samples - 1),
            Verdict::Normal,
            "z-score counted during warm-up"
        );
        assert!(matches!(
            verdict_after(cfg.warm_up_samples),
            Verdict::ZScore { .. }
        ));
        let mut d = MetricDetector::default();
        let (verdict, _) = d.feed(95.0, Harmful::High, Some(90.0), true, None, &cfg, at(0));
        assert_eq!(
            verdict,
            Verdict::Threshold {
                value: 95.0,
                limit: 90.0
            },
            "thresholds need no warm-up"
        );
    }

    #[test]
    fn hysteresis_needs_runs_both_ways() {
        let cfg = DetectorConfig {
            open_after: 3,
            close_after: 2,
            ..DetectorConfig::default()
        };
        let mut h = Hysteresis::default();
        assert_eq!(h.feed(true, at(1), &cfg, Duration::ZERO), None);
        assert_eq!(h.feed(false, at(2), &cfg, Duration::ZERO), None);
        assert_eq!(h.feed(true, at(3), &cfg, Duration::ZERO), None);
        assert_eq!(h.feed(true, at(4), &cfg, Duration::ZERO), None);
        assert_eq!(
            h.feed(true, at(5), &cfg, Duration::ZERO),
            Some(Transition::Opened { first_at: at(3) })
        );
        assert_eq!(h.feed(false, at(6), &cfg, Duration::ZERO), None);
        assert_eq!(h.feed(true, at(7), &cfg, Duration::ZERO), None);
        assert_eq!(h.evidence, 4);
        assert_eq!(h.feed(false, at(8), &cfg, Duration::ZERO), None);
        assert_eq!(
            h.feed(false, at(9), &cfg, Duration::ZERO),
            Some(Transition::Closed)
        );
    }

    /// Feeds CPU samples one per second under the node-resource rule; returns the seconds at
    /// which the symptom opened and closed.
    fn resource_run(samples: &[f64], cfg: &DetectorConfig) -> Vec<(u64, &'static str)> {
        let mut d = MetricDetector::default();
        let rule = Some(Sustain::from_config(cfg));
        let mut changes = Vec::new();
        for (second, value) in samples.iter().enumerate() {
            let now = at(second as u64);
            match d
                .feed(*value, Harmful::High, Some(90.0), false, rule, cfg, now)
                .1
            {
                Some(Transition::Opened { .. }) => changes.push((second as u64, "opened")),
                Some(Transition::Closed) => changes.push((second as u64, "closed")),
                None => {}
            }
        }
        changes
    }

    #[test]
    fn a_burst_of_full_cpu_shorter_than_the_sustain_never_opens_a_symptom() {
        let cfg = DetectorConfig::default();
        let sustain = cfg.resource_sustain.as_secs() as usize;
        // Bursts just shorter than the sustain, separated by one quiet sample, for ten minutes.
        let mut samples = Vec::new();
        while samples.len() < 600 {
            samples.extend(std::iter::repeat_n(100.0, sustain - 1));
            samples.push(40.0);
        }
        assert_eq!(resource_run(&samples, &cfg), vec![]);
    }

    #[test]
    fn a_sustained_overload_opens_once_and_clears_only_below_the_margin() {
        let cfg = DetectorConfig::default();
        let sustain = cfg.resource_sustain.as_secs();
        let mut samples = vec![30.0; 10];
        // Overload from second 10 on, then hovering around the threshold: 91, 88, 91, 88...
        samples.extend(std::iter::repeat_n(99.0, sustain as usize + 5));
        for i in 0..60 {
            samples.push(if i % 2 == 0 { 91.0 } else { 88.0 });
        }
        let recovered_at = samples.len() as u64;
        samples.extend(std::iter::repeat_n(50.0, 20));
        let changes = resource_run(&samples, &cfg);
        assert_eq!(
            changes,
            vec![
                (10 + sustain, "opened"),
                (recovered_at + u64::from(cfg.close_after) - 1, "closed")
            ],
            "one symptom for the whole overload, hovering at the threshold included"
        );
    }

    #[test]
    fn without_the_resource_rule_hysteresis_counts_samples_only() {
        let cfg = DetectorConfig::default();
        let mut d = MetricDetector::default();
        let opened = (0..10u64)
            .find_map(|s| {
                match d
                    .feed(99.0, Harmful::High, Some(90.0), false, None, &cfg, at(s))
                    .1
                {
                    Some(Transition::Opened { first_at }) => Some((s, first_at)),
                    _ => None,
                }
            })
            .expect("opens");
        assert_eq!(opened, (u64::from(cfg.open_after) - 1, at(0)));
    }
}
