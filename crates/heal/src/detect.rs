//! Detectors for one scalar metric: a static threshold, an EWMA mean/variance z-score with
//! warm-up, and the hysteresis that turns anomalous samples into a symptom and back.

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
    /// Feeds one sample's verdict.
    pub fn feed(
        &mut self,
        anomalous: bool,
        now: Timestamp,
        cfg: &DetectorConfig,
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
            if self.anomalous_run >= cfg.open_after {
                let first_at = self.run_started.unwrap_or(now);
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
    /// `adaptive` says whether the z-score applies.
    ///
    /// Anomalous samples do not update the baseline: otherwise a sustained fault would become
    /// the new normal and its symptom would clear although nothing was repaired.
    pub fn feed(
        &mut self,
        value: f64,
        harmful: Harmful,
        limit: Option<f64>,
        adaptive: bool,
        cfg: &DetectorConfig,
        now: Timestamp,
    ) -> (Verdict, Option<Transition>) {
        self.last_value = value;
        let beyond = |limit: f64| match harmful {
            Harmful::High => value > limit,
            Harmful::Low => value < limit,
        };
        let verdict = match limit {
            Some(limit) if beyond(limit) => Verdict::Threshold { value, limit },
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
        (verdict, self.hysteresis.feed(anomalous, now, cfg))
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
                d.feed(10.0, Harmful::High, None, true, &cfg, at(u64::from(i)));
            }
            d.feed(1_000.0, Harmful::High, None, true, &cfg, at(100)).0
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
        let (verdict, _) = d.feed(95.0, Harmful::High, Some(90.0), true, &cfg, at(0));
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
        assert_eq!(h.feed(true, at(1), &cfg), None);
        assert_eq!(h.feed(false, at(2), &cfg), None);
        assert_eq!(h.feed(true, at(3), &cfg), None);
        assert_eq!(h.feed(true, at(4), &cfg), None);
        assert_eq!(
            h.feed(true, at(5), &cfg),
            Some(Transition::Opened { first_at: at(3) })
        );
        assert_eq!(h.feed(false, at(6), &cfg), None);
        assert_eq!(h.feed(true, at(7), &cfg), None);
        assert_eq!(h.evidence, 4);
        assert_eq!(h.feed(false, at(8), &cfg), None);
        assert_eq!(h.feed(false, at(9), &cfg), Some(Transition::Closed));
    }
}
