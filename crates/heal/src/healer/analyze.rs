//! Monitor and analyze: observations into detector state, symptoms, neighbourhood suspects,
//! grouped root causes and the open/update/close life of incidents.

use std::collections::{BTreeMap, BTreeSet};

use wire::NodeId;

use super::{
    Event, Healer, MAX_EVIDENCE_PER_INCIDENT, MAX_LINKS_PER_OBSERVATION, MAX_METRICS,
    MAX_OPEN_INCIDENTS, MAX_VIEWS, Tracked, View,
};
use crate::cause::{self, Entity, Symptom};
use crate::check::CheckStatus;
use crate::detect::{Transition, Verdict};
use crate::incident::{Incident, IncidentId, IncidentState, IncidentType, PlanOutcome};
use crate::observation::{LinkSample, MetricKey};
use crate::time::Timestamp;

impl Healer {
    pub(super) fn sample(&mut self, key: MetricKey, value: f64, now: Timestamp) {
        if !value.is_finite() {
            self.stats.rejected_samples += 1;
            return;
        }
        if !self.metrics.contains_key(&key) && self.metrics.len() >= MAX_METRICS {
            self.stats.dropped_metrics += 1;
            return;
        }
        let t = &self.config.thresholds;
        let limit = match key {
            MetricKey::Cpu => Some(t.cpu),
            MetricKey::Memory => Some(t.memory),
            MetricKey::Disk => Some(t.disk),
            MetricKey::LinkLoss(_) => Some(t.network_loss),
            MetricKey::LinkRtt(_) => t.rtt_ms,
            _ => None,
        };
        let adaptive = !key.is_node_resource() || self.config.detector.adaptive_node_metrics;
        let harmful = key.harmful();
        let mut detector_config = self.config.detector.clone();
        if matches!(key, MetricKey::LinkRtt(_)) {
            detector_config.min_deviation = detector_config
                .min_deviation
                .max(detector_config.min_rtt_deviation_ms);
        }
        let sustain = key
            .is_node_resource()
            .then(|| crate::detect::Sustain::from_config(&detector_config));
        let detector = self.metrics.entry(key).or_default();
        let _: (Verdict, Option<Transition>) = detector.feed(
            value,
            harmful,
            limit,
            adaptive,
            sustain,
            &detector_config,
            now,
        );
    }

    pub(super) fn observe_mesh(
        &mut self,
        links: Vec<LinkSample>,
        route_count: u32,
        route_churn: u32,
        now: Timestamp,
    ) {
        let links: Vec<LinkSample> = links.into_iter().take(MAX_LINKS_PER_OBSERVATION).collect();
        let present: BTreeSet<NodeId> = links.iter().map(|l| l.peer).collect();
        self.neighbours = present.len();
        for link in &links {
            self.sample(MetricKey::LinkLoss(link.peer), link.loss_percent, now);
            self.sample(MetricKey::LinkRtt(link.peer), link.rtt_ms, now);
            self.sample(MetricKey::LinkTq(link.peer), f64::from(link.tq), now);
        }
        // A neighbour that vanished is the strongest loss signal there is.
        let vanished: Vec<NodeId> = self
            .metrics
            .keys()
            .filter_map(|k| match k {
                MetricKey::LinkLoss(p) if !present.contains(p) => Some(*p),
                _ => None,
            })
            .collect();
        for peer in vanished {
            self.sample(MetricKey::LinkLoss(peer), 100.0, now);
        }
        self.sample(MetricKey::Neighbours, present.len() as f64, now);
        self.sample(MetricKey::RouteCount, f64::from(route_count), now);
        self.sample(MetricKey::RouteChurn, f64::from(route_churn), now);
    }

    pub(super) fn observe_view(
        &mut self,
        reporter: NodeId,
        links: Vec<LinkSample>,
        now: Timestamp,
    ) {
        if reporter == self.local {
            return;
        }
        for link in links.into_iter().take(MAX_LINKS_PER_OBSERVATION) {
            if !link.loss_percent.is_finite() || !link.rtt_ms.is_finite() {
                self.stats.rejected_samples += 1;
                continue;
            }
            let key = (reporter, link.peer);
            if !self.views.contains_key(&key) && self.views.len() >= MAX_VIEWS {
                self.prune_views(now);
                if self.views.len() >= MAX_VIEWS {
                    self.stats.dropped_views += 1;
                    continue;
                }
            }
            let bad = self.link_is_bad(&link);
            let view = self.views.entry(key).or_insert(View {
                sample: link,
                at: now,
                bad_since: None,
                bad_reports: 0,
            });
            view.sample = link;
            view.at = now;
            if bad {
                view.bad_since.get_or_insert(now);
                view.bad_reports = view
                    .bad_reports
                    .saturating_add(1)
                    .min(crate::detect::MAX_EVIDENCE);
            } else {
                view.bad_since = None;
                view.bad_reports = 0;
            }
        }
    }

    fn link_is_bad(&self, link: &LinkSample) -> bool {
        let t = &self.config.thresholds;
        link.loss_percent > t.network_loss || t.rtt_ms.is_some_and(|limit| link.rtt_ms > limit)
    }

    fn prune_views(&mut self, now: Timestamp) {
        let max_age = self.config.neighbourhood.view_max_age;
        self.views
            .retain(|_, v| now.saturating_since(v.at) <= max_age);
    }

    fn symptoms(&self, now: Timestamp) -> Vec<Symptom> {
        let mut out = Vec::new();
        for (key, detector) in &self.metrics {
            let Some(first_at) = detector.hysteresis.active_since else {
                continue;
            };
            let entity = match key {
                MetricKey::Cpu | MetricKey::Memory | MetricKey::Disk | MetricKey::Counter(_) => {
                    Entity::Node(self.local)
                }
                MetricKey::LinkLoss(p) | MetricKey::LinkRtt(p) | MetricKey::LinkTq(p) => {
                    Entity::Link {
                        from: self.local,
                        to: *p,
                    }
                }
                MetricKey::Neighbours | MetricKey::RouteCount | MetricKey::RouteChurn => {
                    Entity::Routes
                }
            };
            out.push(Symptom {
                entity,
                detail: format!("{}: {}", metric_name(key), detector.last_anomaly.explain()),
                first_at,
                evidence: detector.hysteresis.evidence,
                local: true,
                metric: Some(key.clone()),
            });
        }
        for (name, (spec, state)) in &self.checks {
            if state.status == CheckStatus::Critical {
                out.push(Symptom {
                    entity: Entity::Service {
                        check: name.clone(),
                        needs_mesh: spec.depends_on_mesh,
                        process: matches!(spec.kind, crate::check::CheckKind::Process(_)),
                    },
                    detail: format!("check {name} critical after {} failures", state.failures),
                    first_at: state.failing_since.unwrap_or(now),
                    evidence: state.failures,
                    local: true,
                    metric: None,
                });
            }
        }
        let max_age = self.config.neighbourhood.view_max_age;
        for ((reporter, target), view) in &self.views {
            let Some(bad_since) = view.bad_since else {
                continue;
            };
            if now.saturating_since(view.at) > max_age {
                continue;
            }
            out.push(Symptom {
                entity: Entity::Link {
                    from: *reporter,
                    to: *target,
                },
                detail: format!(
                    "{} reports loss {:.1}% to {}",
                    reporter.short(),
                    view.sample.loss_percent,
                    target.short()
                ),
                first_at: bad_since,
                evidence: view.bad_reports,
                local: false,
                metric: None,
            });
        }
        out
    }

    /// Neighbourhood detector: nodes to which every (or `blame_share` of) fresh view sees bad
    /// links, with at least `min_reporters` views. This node's own view counts as one when it
    /// has a link to the node; for this node itself only the neighbours' reports count.
    fn suspects(&self, now: Timestamp) -> Vec<NodeId> {
        let cfg = &self.config.neighbourhood;
        let mut tally: BTreeMap<NodeId, (u32, u32)> = BTreeMap::new();
        for ((_, target), view) in &self.views {
            if now.saturating_since(view.at) > cfg.view_max_age {
                continue;
            }
            let entry = tally.entry(*target).or_default();
            entry.0 += 1;
            entry.1 += u32::from(view.bad_since.is_some());
        }
        tally
            .into_iter()
            .filter_map(|(target, (mut reporters, mut bad))| {
                if target != self.local {
                    let own = [
                        MetricKey::LinkLoss(target),
                        MetricKey::LinkRtt(target),
                        MetricKey::LinkTq(target),
                    ];
                    if self.metrics.contains_key(&own[0]) {
                        reporters += 1;
                        bad += u32::from(own.iter().any(|k| {
                            self.metrics
                                .get(k)
                                .is_some_and(|d| d.hysteresis.is_active())
                        }));
                    }
                }
                let enough = reporters >= cfg.min_reporters;
                (enough && f64::from(bad) >= cfg.blame_share * f64::from(reporters))
                    .then_some(target)
            })
            .collect()
    }

    pub(super) fn analyze(&mut self, now: Timestamp) {
        let symptoms = self.symptoms(now);
        if symptoms.is_empty() && self.incidents.is_empty() {
            return;
        }
        let mut suspects = self.suspects(now);
        // A node an open incident blames stays a candidate while its symptoms last: as it
        // recovers, its neighbours' reports turn good before this node's own hysteresis
        // closes, and the incident must then clear rather than pass to one of its links.
        for t in self.incidents.values() {
            if let Entity::Node(n) = t.incident.root_cause
                && n != self.local
                && !suspects.contains(&n)
            {
                suspects.push(n);
            }
        }
        let groups = cause::group_symptoms(
            &symptoms,
            &suspects,
            self.local,
            cause::Window {
                slack: self.config.cycle_interval,
                horizon: self.config.detector.cause_horizon,
            },
        );
        let mut live: BTreeSet<IncidentId> = BTreeSet::new();
        let mut owner_of: BTreeMap<Entity, IncidentId> = BTreeMap::new();
        for group in groups {
            let members: Vec<&Symptom> = group
                .members
                .iter()
                .filter_map(|i| symptoms.get(*i))
                .collect();
            let openable =
                members.iter().any(|s| s.local) || group.root.entity == Entity::Node(self.local);
            if !openable {
                continue;
            }
            let confidence = cause::confidence(
                members.iter().map(|s| s.evidence),
                members.len(),
                group.runner_up,
                self.config.detector.open_after,
            );
            let mut evidence: Vec<Symptom> = members.iter().map(|s| (*s).clone()).collect();
            evidence.sort_by_key(|s| s.first_at);
            evidence.truncate(MAX_EVIDENCE_PER_INCIDENT);
            let existing = self
                .incidents
                .iter()
                .find(|(_, t)| t.incident.root_cause == group.root.entity)
                .map(|(id, _)| *id);
            let id = match existing {
                Some(id) => {
                    self.update_incident(id, evidence, confidence, group.alternatives);
                    id
                }
                None => match self.open_incident(
                    &group.root.entity,
                    evidence,
                    confidence,
                    group.alternatives,
                    now,
                ) {
                    Some(id) => id,
                    None => continue,
                },
            };
            for s in &members {
                owner_of.insert(s.entity.clone(), id);
            }
            live.insert(id);
        }
        let gone: Vec<IncidentId> = self
            .incidents
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.symptoms_cleared(id, &owner_of, now);
        }
        for id in &live {
            if let Some(t) = self.incidents.get_mut(id) {
                t.cleared_at = None;
            }
        }
    }

    fn open_incident(
        &mut self,
        root: &Entity,
        evidence: Vec<Symptom>,
        confidence: f64,
        alternatives: Vec<Entity>,
        now: Timestamp,
    ) -> Option<IncidentId> {
        if self.incidents.len() >= MAX_OPEN_INCIDENTS {
            self.stats.dropped_incidents += 1;
            return None;
        }
        let kind = classify(root, &evidence, self.local);
        let id = IncidentId(self.next_incident);
        self.next_incident += 1;
        let first_symptom_at = evidence.iter().map(|s| s.first_at).min().unwrap_or(now);
        let incident = Incident {
            id,
            node: self.local,
            kind,
            severity: kind.base_severity(),
            root_cause: root.clone(),
            alternatives,
            confidence,
            evidence,
            first_symptom_at,
            detected_at: now,
            resolved_at: None,
            state: IncidentState::Open,
            plans: Vec::new(),
            steps: Vec::new(),
            outcomes: Vec::new(),
            notes: Vec::new(),
        };
        self.push_event(Event::IncidentOpened(incident.clone()));
        self.incidents.insert(
            id,
            Tracked {
                incident,
                execution: None,
                cleared_at: None,
                retry_at: None,
            },
        );
        Some(id)
    }

    fn update_incident(
        &mut self,
        id: IncidentId,
        evidence: Vec<Symptom>,
        confidence: f64,
        alternatives: Vec<Entity>,
    ) {
        let Some(t) = self.incidents.get_mut(&id) else {
            return;
        };
        let changed = t
            .incident
            .evidence
            .iter()
            .map(|s| &s.entity)
            .ne(evidence.iter().map(|s| &s.entity));
        t.incident.evidence = evidence;
        t.incident.confidence = confidence;
        t.incident.alternatives = alternatives;
        if changed {
            let event = Event::IncidentUpdated {
                id,
                severity: t.incident.severity,
                confidence,
            };
            self.push_event(event);
        }
    }

    fn symptoms_cleared(
        &mut self,
        id: IncidentId,
        owner_of: &BTreeMap<Entity, IncidentId>,
        now: Timestamp,
    ) {
        let Some(t) = self.incidents.get_mut(&id) else {
            return;
        };
        let successor = t
            .incident
            .evidence
            .iter()
            .find_map(|s| owner_of.get(&s.entity))
            .copied();
        match successor {
            Some(by) => {
                // Moved, not cleared: a running plan cannot verify and ends by its own
                // deadlines; the incident is superseded once no plan holds it.
                if t.execution.is_none() {
                    t.incident.state = IncidentState::Superseded { by };
                    t.incident
                        .note(format!("evidence now explained by incident {}", by.0));
                    self.close(id);
                }
            }
            None => {
                let recovered = recovery_time(&self.metrics, &t.incident.evidence, now);
                let t = match self.incidents.get_mut(&id) {
                    Some(t) => t,
                    None => return,
                };
                t.cleared_at.get_or_insert(recovered);
                let awaiting_approval = t.execution.as_ref().is_some_and(|e| {
                    matches!(e.phase, crate::execute::Phase::AwaitingApproval { .. })
                });
                if t.execution.is_none() {
                    t.incident.state = IncidentState::Resolved;
                    t.incident.resolved_at = Some(recovered.max(t.incident.detected_at));
                    self.close(id);
                } else if awaiting_approval {
                    // A plan nobody approved yet is moot once the fault is gone; holding the
                    // incident open for the approval timeout would also hold its peer's
                    // routing penalty and report a recovery minutes late.
                    t.incident
                        .note("symptoms cleared while the plan awaited approval; plan withdrawn");
                    self.finish_plan(id, PlanOutcome::Withdrawn, now);
                }
            }
        }
    }
}

/// When an incident's symptoms really ended: the latest start of the normal runs that closed
/// its metric symptoms. Hysteresis waits `close_after` normal samples before it believes a
/// recovery; that wait verifies the repair, it is not part of it, so MTTR ends where the
/// normal run began. Symptoms without a detector (checks, neighbours' reports) ended `now`.
fn recovery_time(
    metrics: &BTreeMap<MetricKey, crate::detect::MetricDetector>,
    evidence: &[Symptom],
    now: Timestamp,
) -> Timestamp {
    evidence
        .iter()
        .filter(|s| s.local)
        .map(|s| {
            s.metric
                .as_ref()
                .and_then(|k| metrics.get(k))
                .and_then(|d| d.hysteresis.normal_since)
                .unwrap_or(now)
        })
        .max()
        .unwrap_or(now)
        .min(now)
}

fn metric_name(key: &MetricKey) -> String {
    match key {
        MetricKey::Cpu => "cpu %".into(),
        MetricKey::Memory => "memory %".into(),
        MetricKey::Disk => "disk %".into(),
        MetricKey::LinkLoss(p) => format!("loss % to {}", p.short()),
        MetricKey::LinkRtt(p) => format!("rtt ms to {}", p.short()),
        MetricKey::LinkTq(p) => format!("tq to {}", p.short()),
        MetricKey::Neighbours => "neighbours".into(),
        MetricKey::RouteCount => "routes".into(),
        MetricKey::RouteChurn => "route churn".into(),
        MetricKey::Counter(name) => format!("counter {name}"),
    }
}

/// Incident type from the root cause: this node's earliest resource symptom names the
/// pressure; any other node is a node failure; links, routes and services map directly.
fn classify(root: &Entity, evidence: &[Symptom], local: NodeId) -> IncidentType {
    match root {
        Entity::Node(n) if *n == local => evidence
            .iter()
            .filter(|s| s.entity == *root)
            .min_by_key(|s| s.first_at)
            .and_then(|s| match s.metric {
                Some(MetricKey::Cpu) => Some(IncidentType::CpuOverload),
                Some(MetricKey::Memory) => Some(IncidentType::MemoryPressure),
                Some(MetricKey::Disk) => Some(IncidentType::DiskPressure),
                _ => None,
            })
            .unwrap_or(IncidentType::NodeFailure),
        Entity::Node(_) => IncidentType::NodeFailure,
        Entity::Link { .. } => IncidentType::LinkDegraded,
        Entity::Routes => IncidentType::NetworkPartition,
        Entity::Service { .. } => IncidentType::ServiceDown,
    }
}
