//! Plan choice: Thompson sampling over the Beta posterior of each candidate playbook's past
//! success for the incident type, with a seeded generator so runs are reproducible.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::incident::IncidentType;

/// Success statistics of one playbook for one incident type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanStats {
    /// Runs whose symptoms cleared.
    pub successes: u32,
    /// Runs that failed, were rolled back or were blocked mid-way.
    pub failures: u32,
}

/// Most (type, playbook) pairs remembered: every type times every loadable playbook.
pub const MAX_KNOWLEDGE_ENTRIES: usize = 7 * crate::playbook::MAX_PLAYBOOKS;

/// Counts above this are halved (both sides together), so old history fades and the
/// Gamma sampler's shape stays small; the ratio, which is what matters, is kept.
pub const MAX_STAT_COUNT: u32 = 10_000;

/// Per-plan statistics, filled by the node from its incident database at start and updated by
/// the healer as plans finish (each finish is also an event the node persists).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Knowledge {
    stats: BTreeMap<(IncidentType, String), PlanStats>,
}

impl Knowledge {
    /// Statistics of `plan` for `kind`; zeros when unknown.
    pub fn get(&self, kind: IncidentType, plan: &str) -> PlanStats {
        self.stats
            .get(&(kind, plan.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// Sets statistics (from the database). Returns false when the table is full.
    pub fn set(&mut self, kind: IncidentType, plan: &str, stats: PlanStats) -> bool {
        let key = (kind, plan.to_string());
        if !self.stats.contains_key(&key) && self.stats.len() >= MAX_KNOWLEDGE_ENTRIES {
            return false;
        }
        self.stats.insert(key, stats);
        true
    }

    /// Records one outcome.
    pub fn record(&mut self, kind: IncidentType, plan: &str, success: bool) {
        let mut s = self.get(kind, plan);
        if success {
            s.successes = s.successes.saturating_add(1);
        } else {
            s.failures = s.failures.saturating_add(1);
        }
        if s.successes.saturating_add(s.failures) > MAX_STAT_COUNT {
            s.successes /= 2;
            s.failures /= 2;
        }
        self.set(kind, plan, s);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }
}

/// SplitMix64: a tiny, well-mixed generator; seeded per decision so that a choice depends only
/// on the configured seed and the incident, never on the order of other decisions.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1).
    pub fn next_f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        // Box-Muller; both uniforms are in (0, 1), so the logarithm is finite.
        let (u, v) = (self.next_f64(), self.next_f64());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Gamma(shape, 1) for shape >= 1 (Marsaglia and Tsang, 2000). The rejection loop accepts
    /// with probability above 0.95 per round; the round cap only guards against a broken
    /// generator and falls back to the mean.
    fn gamma(&mut self, shape: f64) -> f64 {
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        for _ in 0..64 {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.next_f64();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
        shape
    }

    /// A draw from Beta(a, b), a and b >= 1.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a.max(1.0));
        let y = self.gamma(b.max(1.0));
        if x + y > 0.0 { x / (x + y) } else { 0.5 }
    }
}

/// The choice among candidate playbooks.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Index of the chosen candidate.
    pub index: usize,
    /// Why, with every candidate's figures.
    pub reason: String,
}

/// Thompson sampling: draw θ ~ Beta(1 + successes, 1 + failures) for every candidate and take
/// the largest draw. The uniform prior lets an untried playbook be chosen now and then, and
/// a playbook that keeps failing is chosen less and less: exploration falls as evidence grows,
/// with no tuning constant. Ties go to the earlier candidate.
pub fn choose(candidates: &[(String, PlanStats)], seed: u64) -> Option<Choice> {
    let mut rng = SplitMix64::new(seed);
    let mut best: Option<(usize, f64)> = None;
    let mut parts = Vec::with_capacity(candidates.len());
    for (index, (id, stats)) in candidates.iter().enumerate() {
        let a = 1.0 + f64::from(stats.successes);
        let b = 1.0 + f64::from(stats.failures);
        let draw = rng.beta(a, b);
        parts.push(format!(
            "{id}: Beta({a}, {b}) mean {:.2} draw {draw:.2}",
            a / (a + b)
        ));
        if best.is_none_or(|(_, d)| draw > d) {
            best = Some((index, draw));
        }
    }
    let (index, _) = best?;
    Some(Choice {
        index,
        reason: format!(
            "Thompson sampling over past success for this incident type chose {}; {}",
            candidates[index].0,
            parts.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_draws_have_the_right_mean() {
        let mut rng = SplitMix64::new(7);
        let n = 4000;
        let mean: f64 = (0..n).map(|_| rng.beta(9.0, 3.0)).sum::<f64>() / n as f64;
        assert!((mean - 0.75).abs() < 0.02, "mean {mean}");
        assert!(
            (0..100)
                .map(|_| rng.beta(1.0, 1.0))
                .all(|x| (0.0..=1.0).contains(&x))
        );
    }

    #[test]
    fn the_historically_successful_plan_is_preferred() {
        let good = PlanStats {
            successes: 18,
            failures: 2,
        };
        let bad = PlanStats {
            successes: 3,
            failures: 17,
        };
        let candidates = vec![("bad".to_string(), bad), ("good".to_string(), good)];
        let wins = (0..200u64)
            .filter(|seed| choose(&candidates, *seed).map(|c| c.index) == Some(1))
            .count();
        assert!(wins >= 195, "good plan chosen {wins} times of 200");
        let choice = choose(&candidates, 1).expect("two candidates");
        assert!(choice.reason.contains("Beta(19, 3)"), "{}", choice.reason);
    }

    #[test]
    fn untried_plans_still_get_explored() {
        let tried = PlanStats {
            successes: 2,
            failures: 1,
        };
        let candidates = vec![
            ("tried".to_string(), tried),
            ("new".to_string(), PlanStats::default()),
        ];
        let new_wins = (0..400u64)
            .filter(|seed| choose(&candidates, *seed).map(|c| c.index) == Some(1))
            .count();
        assert!(
            (40..300).contains(&new_wins),
            "untried plan chosen {new_wins} times of 400"
        );
        assert_eq!(choose(&[], 1), None);
    }

    #[test]
    fn knowledge_records_and_halves() {
        let mut k = Knowledge::default();
        k.record(IncidentType::ServiceDown, "p", true);
        k.record(IncidentType::ServiceDown, "p", false);
        assert_eq!(
            k.get(IncidentType::ServiceDown, "p"),
            PlanStats {
                successes: 1,
                failures: 1
            }
        );
        k.set(
            IncidentType::ServiceDown,
            "p",
            PlanStats {
                successes: MAX_STAT_COUNT,
                failures: 0,
            },
        );
        k.record(IncidentType::ServiceDown, "p", true);
        assert_eq!(k.get(IncidentType::ServiceDown, "p").successes, 5_000);
    }
}
