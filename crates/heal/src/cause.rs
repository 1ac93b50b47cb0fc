//! Root-cause analysis: symptoms sit on entities of a dependency graph
//! (node -> links -> routes -> services); candidates are ranked by how many symptoms they
//! explain *without coming after them* (temporal precedence), and active symptoms are grouped
//! under their best-ranked cause. Also the confidence formula.

use std::cmp::Reverse;
use std::time::Duration;

use serde::Serialize;
use wire::NodeId;

use crate::observation::MetricKey;
use crate::time::Timestamp;

/// A thing that can be faulty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A node (this one or another).
    Node(NodeId),
    /// A link as measured by `from` towards `to`.
    Link {
        /// The measuring end.
        from: NodeId,
        /// The far end.
        to: NodeId,
    },
    /// This node's routing table as a whole.
    Routes,
    /// A local service with a health check.
    Service {
        /// The check's name.
        check: String,
        /// Whether the service needs the mesh, i.e. whether routes can explain its failure.
        needs_mesh: bool,
        /// Whether the symptom is the service's process having exited (a process check):
        /// nothing else explains that, and its remedy is always the service's own.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        process: bool,
    },
}

/// An active symptom: a metric or check that the hysteresis declared anomalous.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Symptom {
    /// Where it shows.
    pub entity: Entity,
    /// What shows it, e.g. `memory 93.0 > 90`.
    pub detail: String,
    /// First anomalous sample of the run that opened it.
    pub first_at: Timestamp,
    /// Anomalous samples (or failed check runs, or bad reports) backing it.
    pub evidence: u32,
    /// Measured by this node (as opposed to reported by a neighbour).
    pub local: bool,
    /// The metric behind it, when it comes from a metric detector.
    pub metric: Option<MetricKey>,
}

/// Whether a fault at `cause` can produce a symptom at `effect` along the dependency graph.
/// `local` is this node: its services depend on it, not on other nodes directly.
pub fn explains(cause: &Entity, effect: &Entity, local: NodeId) -> bool {
    if cause == effect {
        return true;
    }
    match (cause, effect) {
        (_, Entity::Service { process: true, .. }) => false,
        (Entity::Node(n), Entity::Link { from, to }) => n == from || n == to,
        (Entity::Node(_) | Entity::Link { .. }, Entity::Routes) => true,
        (Entity::Node(n), Entity::Service { needs_mesh, .. }) => *n == local || *needs_mesh,
        (Entity::Link { .. } | Entity::Routes, Entity::Service { needs_mesh, .. }) => *needs_mesh,
        _ => false,
    }
}

/// A candidate cause and the symptoms it explains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The suspected entity.
    pub entity: Entity,
    /// Earliest symptom on the entity itself, or (for a node blamed by its neighbourhood) on
    /// anything it explains.
    pub since: Timestamp,
    /// Indexes of the symptoms it explains.
    pub explained: Vec<usize>,
}

/// How far apart in time a cause and its effects may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// An effect may show this much before its cause (the order of observations within one
    /// period).
    pub slack: Duration,
    /// An effect must show within this long after its cause started: a fault that has lasted
    /// for minutes without this effect did not cause it now (a CPU overload does not explain
    /// a neighbour that vanished much later).
    pub horizon: Duration,
}

/// Ranks candidate causes of `symptoms`, best first.
///
/// Candidates are every entity with a symptom plus the `suspects` (nodes the neighbourhood
/// detector blames). A candidate explains a symptom when the graph allows it and the candidate
/// showed no later than the symptom and no earlier than the window's horizon before it.
/// Order: more symptoms on other entities explained, then more in all, then earlier, then the
/// graph order of entities
/// (nodes before links before routes before services) so ties resolve the same way each time.
pub fn rank_causes(
    symptoms: &[Symptom],
    suspects: &[NodeId],
    local: NodeId,
    window: Window,
) -> Vec<Candidate> {
    let mut entities: Vec<(Entity, Option<Timestamp>)> = Vec::new();
    for s in symptoms {
        match entities.iter_mut().find(|(e, _)| *e == s.entity) {
            Some((_, since)) => *since = Some(since.map_or(s.first_at, |t| t.min(s.first_at))),
            None => entities.push((s.entity.clone(), Some(s.first_at))),
        }
    }
    for node in suspects {
        let entity = Entity::Node(*node);
        if !entities.iter().any(|(e, _)| *e == entity) {
            entities.push((entity, None));
        }
    }
    let mut candidates: Vec<Candidate> = entities
        .into_iter()
        .map(|(entity, own_since)| {
            // A suspect without own symptoms started no later than the first symptom it explains.
            let since = own_since.unwrap_or_else(|| {
                symptoms
                    .iter()
                    .filter(|s| explains(&entity, &s.entity, local))
                    .map(|s| s.first_at)
                    .min()
                    .unwrap_or(Timestamp::ZERO)
            });
            let explained = symptoms
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    explains(&entity, &s.entity, local)
                        && since <= s.first_at.plus(window.slack)
                        && (entity == s.entity || s.first_at <= since.plus(window.horizon))
                })
                .map(|(i, _)| i)
                .collect();
            Candidate {
                entity,
                since,
                explained,
            }
        })
        .filter(|c: &Candidate| !c.explained.is_empty())
        .collect();
    let others = |c: &Candidate| {
        c.explained
            .iter()
            .filter(|i| symptoms.get(**i).is_some_and(|s| s.entity != c.entity))
            .count()
    };
    candidates.sort_by(|a, b| {
        (
            Reverse(others(a)),
            Reverse(a.explained.len()),
            a.since,
            &a.entity,
        )
            .cmp(&(
                Reverse(others(b)),
                Reverse(b.explained.len()),
                b.since,
                &b.entity,
            ))
    });
    candidates
}

/// Symptoms grouped under one root cause: one incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The root cause.
    pub root: Candidate,
    /// Indexes of the symptoms in this group.
    pub members: Vec<usize>,
    /// Most members any other candidate explains: the strength of the runner-up hypothesis.
    pub runner_up: usize,
    /// Other candidates that explain some member, best first (for the incident's record).
    pub alternatives: Vec<Entity>,
}

/// Greedy grouping: the best candidate takes every symptom it explains, then the ranking is
/// repeated over what is left. Each round removes at least one symptom (a candidate always
/// explains its own), so the loop ends after at most `symptoms.len()` rounds.
pub fn group_symptoms(
    symptoms: &[Symptom],
    suspects: &[NodeId],
    local: NodeId,
    window: Window,
) -> Vec<Group> {
    let all = rank_causes(symptoms, suspects, local, window);
    let mut taken = vec![false; symptoms.len()];
    let mut groups = Vec::new();
    for _ in 0..symptoms.len() {
        // Explanatory power first: symptoms on other entities a candidate accounts for. A
        // disk filling up on this node explains its own symptom; a dead neighbour explains the
        // links every one of its neighbours lost.
        let best = all
            .iter()
            .map(|c| {
                let open: Vec<usize> = c.explained.iter().copied().filter(|i| !taken[*i]).collect();
                let others = open
                    .iter()
                    .filter(|i| symptoms.get(**i).is_some_and(|s| s.entity != c.entity))
                    .count();
                (c, (others, open.len()))
            })
            .filter(|(_, (_, n))| *n > 0)
            .max_by(|(a, na), (b, nb)| {
                na.cmp(nb)
                    .then_with(|| b.since.cmp(&a.since))
                    .then_with(|| b.entity.cmp(&a.entity))
            });
        let Some((root, _)) = best else { break };
        let members: Vec<usize> = root
            .explained
            .iter()
            .copied()
            .filter(|i| !taken[*i])
            .collect();
        for i in &members {
            taken[*i] = true;
        }
        let mut rivals: Vec<(usize, &Candidate)> = all
            .iter()
            .filter(|c| c.entity != root.entity)
            .map(|c| {
                (
                    c.explained.iter().filter(|i| members.contains(i)).count(),
                    c,
                )
            })
            .filter(|(n, _)| *n > 0)
            .collect();
        rivals.sort_by_key(|(n, _)| Reverse(*n));
        groups.push(Group {
            root: root.clone(),
            runner_up: rivals.first().map_or(0, |(n, _)| *n),
            alternatives: rivals
                .iter()
                .take(3)
                .map(|(_, c)| c.entity.clone())
                .collect(),
            members,
        });
    }
    groups
}

/// Confidence that `group`'s root is the cause, in [0, 1):
///
/// `confidence = (1 - Π_i (1 - s_i)) × m / (m + r)` with `s_i = 1 - 2^(-e_i / k)`
///
/// - `e_i` is the evidence count of member symptom `i` (anomalous samples, failed runs or bad
///   reports) and `k` is `open_after`, so a symptom that just opened weighs 0.5, one sustained
///   for twice as long 0.75: more evidence, more confidence;
/// - the product is a noisy-OR: independent symptoms pointing at one cause reinforce it;
/// - `m` is the number of members and `r` the members the best rival explains: with no rival
///   the factor is 1, a rival explaining as much halves the confidence.
pub fn confidence(
    evidence: impl IntoIterator<Item = u32>,
    members: usize,
    runner_up: usize,
    open_after: u32,
) -> f64 {
    let k = f64::from(open_after.max(1));
    let miss: f64 = evidence
        .into_iter()
        .map(|e| 0.5f64.powf(f64::from(e) / k))
        .product();
    let support = 1.0 - miss;
    let total = members + runner_up;
    if total == 0 {
        return 0.0;
    }
    let share = members as f64 / total as f64;
    (support * share).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u64) -> NodeId {
        NodeId::from_index(i)
    }

    fn symptom(entity: Entity, at: u64, local: bool) -> Symptom {
        Symptom {
            entity,
            detail: String::new(),
            first_at: Timestamp::from_secs(at),
            evidence: 3,
            local,
            metric: None,
        }
    }

    fn link(a: u64, b: u64) -> Entity {
        Entity::Link {
            from: node(a),
            to: node(b),
        }
    }

    const SLACK: Window = Window {
        slack: Duration::from_millis(500),
        horizon: Duration::from_secs(10),
    };

    #[test]
    fn a_node_fault_that_precedes_its_links_ranks_first() {
        let me = node(0);
        let symptoms = vec![
            symptom(link(0, 1), 12, true),
            symptom(Entity::Node(me), 10, true),
            symptom(link(0, 2), 13, true),
        ];
        let ranked = rank_causes(&symptoms, &[], me, SLACK);
        assert_eq!(ranked[0].entity, Entity::Node(me));
        assert_eq!(ranked[0].explained, vec![0, 1, 2]);
        let groups = group_symptoms(&symptoms, &[], me, SLACK);
        assert_eq!(groups.len(), 1);
    }

    #[test]
    fn a_node_fault_after_its_links_explains_only_itself() {
        let me = node(0);
        let symptoms = vec![
            symptom(link(0, 1), 10, true),
            symptom(Entity::Node(me), 14, true),
        ];
        let ranked = rank_causes(&symptoms, &[], me, SLACK);
        assert_eq!(ranked[0].entity, link(0, 1), "{ranked:?}");
        assert_eq!(ranked[1].explained, vec![1]);
        let groups = group_symptoms(&symptoms, &[], me, SLACK);
        assert_eq!(groups.len(), 2);
    }

    #[test]
    fn a_dead_neighbour_outranks_an_older_pressure_on_this_node() {
        let me = node(0);
        let dead = node(1);
        let symptoms = vec![
            symptom(Entity::Node(me), 10, true),
            symptom(link(0, 1), 12, true),
            symptom(link(2, 1), 12, false),
        ];
        let groups = group_symptoms(&symptoms, &[dead], me, SLACK);
        assert_eq!(groups[0].root.entity, Entity::Node(dead), "{groups:?}");
        assert_eq!(groups[0].members, vec![1, 2]);
        assert_eq!(groups[1].root.entity, Entity::Node(me));
        assert_eq!(groups[1].members, vec![0]);
    }

    #[test]
    fn a_cause_far_older_than_its_effect_does_not_explain_it() {
        let me = node(0);
        let symptoms = vec![
            symptom(Entity::Node(me), 10, true),
            symptom(link(0, 1), 100, true),
        ];
        let groups = group_symptoms(&symptoms, &[], me, SLACK);
        assert_eq!(groups.len(), 2, "{groups:?}");
        let near = vec![
            symptom(Entity::Node(me), 10, true),
            symptom(link(0, 1), 15, true),
        ];
        assert_eq!(group_symptoms(&near, &[], me, SLACK).len(), 1);
    }

    #[test]
    fn confidence_rises_with_evidence_and_falls_with_rivals() {
        let one = confidence([3], 1, 0, 3);
        let more = confidence([9], 1, 0, 3);
        let two = confidence([3, 3], 2, 0, 3);
        let rival = confidence([3, 3], 2, 2, 3);
        assert!((one - 0.5).abs() < 1e-9, "{one}");
        assert!(more > one && two > one, "{one} {more} {two}");
        assert!((rival - two / 2.0).abs() < 1e-9);
        assert_eq!(confidence([], 0, 0, 3), 0.0);
    }
}
