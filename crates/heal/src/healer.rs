//! `Healer`: the sans-IO MAPE-K loop. Observations and time in; incidents, events and actions
//! out. The calling contract is on the type.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;
use wire::NodeId;

use crate::cause::{self, Entity, Symptom};
use crate::check::{CheckSpec, CheckState, CheckStatus};
use crate::config::{ConfigError, HealConfig, ThresholdName};
use crate::detect::{MetricDetector, Transition, Verdict};
use crate::execute::{
    ActionId, ActionRequest, ActionResult, CircuitBreaker, Execution, MAX_UNDER_ACTION,
    MeshContext, Phase, ResolvedStep, blast_radius_allows,
};
use crate::incident::{
    Incident, IncidentId, IncidentState, IncidentType, PlanChoice, PlanOutcome, Severity,
    StepOutcome, StepRecord,
};
use crate::observation::{LinkSample, MAX_COUNTER_NAME, MetricKey, Observation};
use crate::plan::{self, Knowledge};
use crate::playbook::{Action, Condition, PlaybookSet};
use crate::time::Timestamp;

/// Most metrics tracked: CPU, memory, disk, three per neighbour for the routing core's 254
/// neighbours, the route metrics and room for counters. New metrics beyond it are dropped and
/// counted, so a flood of counter names cannot grow memory.
pub const MAX_METRICS: usize = 1024;
/// Most neighbour reports (reporter, target) kept; 254 neighbours reporting 16 links each.
pub const MAX_VIEWS: usize = 4096;
/// Most links read from one observation; the routing core has at most 254 neighbours.
pub const MAX_LINKS_PER_OBSERVATION: usize = 256;
/// Most declared checks; a node supervising more services than this is misconfigured.
pub const MAX_CHECKS: usize = 256;
/// Most open incidents. Local incidents are about this node, its links and its services; past
/// 64 simultaneous root causes new ones are dropped and counted, and the node needs an operator.
pub const MAX_OPEN_INCIDENTS: usize = 64;
/// Closed incidents kept for queries; the node persists each one from its close event.
pub const MAX_RECENT_INCIDENTS: usize = 64;
/// Undrained events; when full, new events are dropped and counted (incidents stay queryable).
pub const MAX_EVENTS: usize = 1024;
/// Undrained actions: one step is in flight per open incident, so a node that drains after
/// every input never fills it.
pub const MAX_PENDING_ACTIONS: usize = MAX_OPEN_INCIDENTS;
/// Plan choices per incident, counting blocked attempts that were retried.
pub const MAX_PLAN_CHOICES: usize = 16;
/// Peers this node holds isolated or penalised; the routing core's neighbour limit.
pub const MAX_HELD_PEERS: usize = 254;
/// Rounds of the execution driver per call; each round moves a plan forward by at least one
/// phase, and a plan has at most 16 steps plus their rollbacks.
const MAX_DRIVE_ROUNDS: usize = 4 * crate::playbook::MAX_STEPS + 8;

/// Something the node may want to persist, show or gossip.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// A new incident.
    IncidentOpened(Incident),
    /// An incident's evidence set or severity changed.
    IncidentUpdated {
        /// Which.
        id: IncidentId,
        /// New severity.
        severity: Severity,
        /// New confidence.
        confidence: f64,
    },
    /// An incident's symptoms cleared (or its evidence moved to a better-explained incident).
    IncidentClosed(Incident),
    /// A plan was chosen.
    PlanChosen {
        /// For which incident.
        incident: IncidentId,
        /// Choice and reason.
        choice: PlanChoice,
    },
    /// A plan waits for approval until `expires_at`.
    ApprovalRequested {
        /// For which incident.
        incident: IncidentId,
        /// Which plan.
        plan: String,
        /// Deadline.
        expires_at: Timestamp,
    },
    /// The circuit breaker or blast radius stopped an action.
    ActionBlocked {
        /// For which incident.
        incident: IncidentId,
        /// Which limit and its figures.
        reason: String,
    },
    /// A plan ended; the node updates its per-plan statistics from this.
    PlanFinished {
        /// For which incident.
        incident: IncidentId,
        /// Incident type.
        kind: IncidentType,
        /// Plan id.
        plan: String,
        /// How it ended.
        outcome: PlanOutcome,
    },
}

/// Counters of inputs the loop refused or dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Samples that were not finite numbers.
    pub rejected_samples: u64,
    /// New metrics dropped because [`MAX_METRICS`] were tracked.
    pub dropped_metrics: u64,
    /// Neighbour reports dropped because [`MAX_VIEWS`] were kept.
    pub dropped_views: u64,
    /// Results for checks that were never declared.
    pub unknown_checks: u64,
    /// Incidents not opened because [`MAX_OPEN_INCIDENTS`] were open.
    pub dropped_incidents: u64,
    /// Events dropped because the queue was full.
    pub dropped_events: u64,
    /// Action results that matched no waiting step (late, duplicate or unknown).
    pub stray_results: u64,
    /// Actions stopped by the circuit breaker or the blast radius.
    pub blocked_actions: u64,
    /// Actions dropped because the node left [`MAX_PENDING_ACTIONS`] undrained.
    pub dropped_actions: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct View {
    sample: LinkSample,
    at: Timestamp,
    bad_since: Option<Timestamp>,
    bad_reports: u32,
}

#[derive(Debug, Clone, PartialEq)]
struct Tracked {
    incident: Incident,
    execution: Option<Execution>,
    /// Symptoms inactive since this time (verification reads it).
    cleared_at: Option<Timestamp>,
    /// When a blocked incident may try again.
    retry_at: Option<Timestamp>,
}

/// The MAPE-K loop of one node.
///
/// # Calling contract
///
/// - **Inputs:** [`handle_observation`](Self::handle_observation) for every measurement,
///   [`handle_action_result`](Self::handle_action_result) for every executed action,
///   [`handle_approval`](Self::handle_approval) for approval decisions,
///   [`set_mesh_context`](Self::set_mesh_context) whenever the mesh size or the set of nodes
///   under action changes, and [`handle_timeout`](Self::handle_timeout) when
///   [`poll_timeout`](Self::poll_timeout) is reached.
/// - **Outputs:** after any input, drain [`poll_action`](Self::poll_action) (execute each
///   action and report its result by its id, before its deadline) and
///   [`poll_event`](Self::poll_event), then re-read `poll_timeout`.
/// - **Time** is the caller's monotonic clock and must not go backwards; the loop reads no
///   clock itself. Given the same inputs and seed it emits the same outputs.
/// - **Threshold changes** (an executed `adjust_threshold`, or a vote) go through
///   [`set_threshold`](Self::set_threshold).
#[derive(Debug, Clone)]
pub struct Healer {
    config: HealConfig,
    local: NodeId,
    checks: BTreeMap<String, (CheckSpec, CheckState)>,
    playbooks: PlaybookSet,
    knowledge: Knowledge,
    metrics: BTreeMap<MetricKey, MetricDetector>,
    views: BTreeMap<(NodeId, NodeId), View>,
    neighbours: usize,
    incidents: BTreeMap<IncidentId, Tracked>,
    recent: VecDeque<Incident>,
    breaker: CircuitBreaker,
    mesh: MeshContext,
    held_peers: BTreeSet<NodeId>,
    actions: VecDeque<ActionRequest>,
    events: VecDeque<Event>,
    next_incident: u64,
    next_action: u64,
    stats: Stats,
}

impl Healer {
    /// A loop for node `local` with validated config, checks and playbooks.
    pub fn new(
        config: HealConfig,
        local: NodeId,
        checks: Vec<CheckSpec>,
        playbooks: PlaybookSet,
    ) -> Result<Healer, ConfigError> {
        config.validate()?;
        if checks.len() > MAX_CHECKS {
            return Err(ConfigError::new(
                "checks",
                format!("more than {MAX_CHECKS} checks"),
            ));
        }
        let checks = checks
            .into_iter()
            .map(|c| (c.name.clone(), (c, CheckState::default())))
            .collect();
        Ok(Healer {
            config,
            local,
            checks,
            playbooks,
            knowledge: Knowledge::default(),
            metrics: BTreeMap::new(),
            views: BTreeMap::new(),
            neighbours: 0,
            incidents: BTreeMap::new(),
            recent: VecDeque::new(),
            breaker: CircuitBreaker::default(),
            mesh: MeshContext::default(),
            held_peers: BTreeSet::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_incident: 1,
            next_action: 1,
            stats: Stats::default(),
        })
    }

    // ---- getters ----

    /// The configuration in force (thresholds may have been adjusted).
    pub fn config(&self) -> &HealConfig {
        &self.config
    }

    /// Open incidents, oldest first.
    pub fn open_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values().map(|t| &t.incident)
    }

    /// Recently closed incidents, oldest first.
    pub fn recent_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.recent.iter()
    }

    /// An open or recently closed incident.
    pub fn incident(&self, id: IncidentId) -> Option<&Incident> {
        self.incidents
            .get(&id)
            .map(|t| &t.incident)
            .or_else(|| self.recent.iter().find(|i| i.id == id))
    }

    /// Per-plan statistics (fill from the database at start).
    pub fn knowledge(&self) -> &Knowledge {
        &self.knowledge
    }

    /// Mutable per-plan statistics.
    pub fn knowledge_mut(&mut self) -> &mut Knowledge {
        &mut self.knowledge
    }

    /// Drop counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Nodes this loop is acting on now (itself while a plan runs, plus peers it holds
    /// isolated or penalised); the node gossips this for its peers' blast radius.
    pub fn nodes_under_action(&self) -> BTreeSet<NodeId> {
        let mut nodes = self.held_peers.clone();
        if self.incidents.values().any(|t| {
            t.execution
                .as_ref()
                .is_some_and(|e| !matches!(e.phase, Phase::AwaitingApproval { .. }))
        }) {
            nodes.insert(self.local);
        }
        nodes
    }

    // ---- inputs ----

    /// Feeds one observation.
    pub fn handle_observation(&mut self, observation: Observation, now: Timestamp) {
        match observation {
            Observation::Node {
                cpu_percent,
                memory_percent,
                disk_percent,
            } => {
                self.sample(MetricKey::Cpu, cpu_percent, now);
                self.sample(MetricKey::Memory, memory_percent, now);
                self.sample(MetricKey::Disk, disk_percent, now);
            }
            Observation::Mesh {
                links,
                route_count,
                route_churn,
            } => self.observe_mesh(links, route_count, route_churn, now),
            Observation::NeighbourView { reporter, links } => {
                self.observe_view(reporter, links, now)
            }
            Observation::Check { name, passed } => match self.checks.get_mut(&name) {
                Some((spec, state)) => {
                    state.record(spec, passed, now);
                }
                None => self.stats.unknown_checks += 1,
            },
            Observation::Counter { name, value } => {
                let name: String = name.chars().take(MAX_COUNTER_NAME).collect();
                self.sample(MetricKey::Counter(name), value, now);
            }
        }
        self.analyze(now);
        self.drive_all(now);
    }

    /// Reports the result of an emitted action. Results after the deadline are stray.
    pub fn handle_action_result(&mut self, id: ActionId, result: ActionResult, now: Timestamp) {
        let Some(incident) = self
            .incidents
            .iter()
            .find(|(_, t)| t.execution.as_ref().and_then(Execution::waiting_for) == Some(id))
            .map(|(id, _)| *id)
        else {
            self.stats.stray_results += 1;
            return;
        };
        self.finish_action(incident, result, now);
        self.drive(incident, now);
    }

    /// An approval decision for an incident whose plan awaits one. Returns false when no plan
    /// was waiting (late or unknown decision).
    pub fn handle_approval(
        &mut self,
        incident: IncidentId,
        approved: bool,
        now: Timestamp,
    ) -> bool {
        let Some(tracked) = self.incidents.get_mut(&incident) else {
            return false;
        };
        let Some(execution) = tracked.execution.as_mut() else {
            return false;
        };
        if !matches!(execution.phase, Phase::AwaitingApproval { .. }) {
            return false;
        }
        if approved {
            execution.phase = Phase::Ready { step: 0 };
            tracked.incident.state = IncidentState::Executing;
            tracked.incident.note("plan approved");
            self.drive(incident, now);
        } else {
            self.finish_plan(incident, PlanOutcome::Rejected, now);
        }
        true
    }

    /// Mesh size and nodes under action elsewhere, for the blast radius.
    pub fn set_mesh_context(&mut self, mut context: MeshContext) {
        while context.under_action.len() > MAX_UNDER_ACTION {
            context.under_action.pop_last();
        }
        self.mesh = context;
    }

    /// Changes a static threshold (executor of `adjust_threshold`, or a vote).
    pub fn set_threshold(&mut self, name: ThresholdName, value: f64) -> Result<(), ConfigError> {
        self.config.thresholds.set(name, value)
    }

    /// Advances deadlines: step timeouts, verification windows, approval expiry, retries.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let ids: Vec<IncidentId> = self.incidents.keys().copied().collect();
        for id in ids {
            let Some(tracked) = self.incidents.get_mut(&id) else {
                continue;
            };
            if tracked.retry_at.is_some_and(|t| t <= now) {
                tracked.retry_at = None;
            }
            let expired = tracked
                .execution
                .as_ref()
                .and_then(|e| e.deadline())
                .is_some_and(|d| d <= now);
            if expired {
                self.expire(id, now);
            }
        }
        self.analyze(now);
        self.drive_all(now);
    }

    // ---- outputs ----

    /// Next action to execute.
    pub fn poll_action(&mut self) -> Option<ActionRequest> {
        self.actions.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.incidents
            .values()
            .flat_map(|t| {
                [
                    t.execution.as_ref().and_then(Execution::deadline),
                    t.retry_at,
                ]
            })
            .flatten()
            .min()
    }

    /// Checks the loop's invariants: every table within its bound, one action in flight per
    /// executing incident, closed incidents not tracked as open.
    pub fn validate(&self) -> Result<(), String> {
        let bounds = [
            ("metrics", self.metrics.len(), MAX_METRICS),
            ("views", self.views.len(), MAX_VIEWS),
            ("open incidents", self.incidents.len(), MAX_OPEN_INCIDENTS),
            ("recent incidents", self.recent.len(), MAX_RECENT_INCIDENTS),
            ("events", self.events.len(), MAX_EVENTS),
            ("actions", self.actions.len(), MAX_PENDING_ACTIONS),
            ("held peers", self.held_peers.len(), MAX_HELD_PEERS),
            (
                "breaker",
                self.breaker.recent.len(),
                self.config.execution.max_actions_per_window as usize,
            ),
            (
                "knowledge",
                self.knowledge.len(),
                plan::MAX_KNOWLEDGE_ENTRIES,
            ),
        ];
        for (name, len, max) in bounds {
            if len > max {
                return Err(format!("{name}: {len} entries, bound {max}"));
            }
        }
        for (id, t) in &self.incidents {
            if !t.incident.is_open() {
                return Err(format!("incident {} is closed but tracked as open", id.0));
            }
            if t.incident.plans.len() > MAX_PLAN_CHOICES {
                return Err(format!(
                    "incident {} has {} plan choices",
                    id.0,
                    t.incident.plans.len()
                ));
            }
            if t.execution.is_some()
                != matches!(
                    t.incident.state,
                    IncidentState::Executing | IncidentState::AwaitingApproval { .. }
                )
            {
                return Err(format!(
                    "incident {} state {:?} disagrees with its execution",
                    id.0, t.incident.state
                ));
            }
        }
        Ok(())
    }

    // ---- monitor ----

    fn sample(&mut self, key: MetricKey, value: f64, now: Timestamp) {
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
        let detector = self.metrics.entry(key).or_default();
        let _: (Verdict, Option<Transition>) =
            detector.feed(value, harmful, limit, adaptive, &self.config.detector, now);
    }

    fn observe_mesh(
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

    fn observe_view(&mut self, reporter: NodeId, links: Vec<LinkSample>, now: Timestamp) {
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

    // ---- analyze ----

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
                detail: format!("{} = {:.1}", metric_name(key), detector.last_value),
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

    fn analyze(&mut self, now: Timestamp) {
        let symptoms = self.symptoms(now);
        if symptoms.is_empty() && self.incidents.is_empty() {
            return;
        }
        let suspects = self.suspects(now);
        let groups =
            cause::group_symptoms(&symptoms, &suspects, self.local, self.config.cycle_interval);
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
            let evidence: Vec<Symptom> = members.iter().map(|s| (*s).clone()).collect();
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
                t.cleared_at.get_or_insert(now);
                if t.execution.is_none() {
                    t.incident.state = IncidentState::Resolved;
                    t.incident.resolved_at = Some(now);
                    self.close(id);
                }
            }
        }
    }

    fn close(&mut self, id: IncidentId) {
        let Some(t) = self.incidents.remove(&id) else {
            return;
        };
        if self.recent.len() >= MAX_RECENT_INCIDENTS {
            self.recent.pop_front();
        }
        self.push_event(Event::IncidentClosed(t.incident.clone()));
        self.recent.push_back(t.incident);
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.stats.dropped_events += 1;
        } else {
            self.events.push_back(event);
        }
    }

    // ---- plan ----

    fn subject(&self, incident: &Incident) -> (Option<String>, Option<NodeId>) {
        match &incident.root_cause {
            Entity::Service { check, .. } => {
                (self.checks.get(check).map(|(s, _)| s.service.clone()), None)
            }
            Entity::Node(n) if *n != self.local => (None, Some(*n)),
            Entity::Link { to, .. } => (None, Some(*to)),
            _ => (None, None),
        }
    }

    fn try_plan(&mut self, id: IncidentId, now: Timestamp) {
        let Some(t) = self.incidents.get(&id) else {
            return;
        };
        if t.execution.is_some()
            || t.cleared_at.is_some()
            || t.retry_at.is_some()
            || t.incident.plans.len() >= MAX_PLAN_CHOICES
        {
            return;
        }
        let incident = &t.incident;
        let finished: Vec<&str> = incident
            .plans
            .iter()
            .zip(&incident.outcomes)
            .filter(|(_, o)| **o != PlanOutcome::Blocked)
            .map(|(p, _)| p.plan.as_str())
            .collect();
        if finished.len() >= self.config.execution.max_plan_attempts as usize {
            return;
        }
        let (service, peer) = self.subject(incident);
        let mut candidates = Vec::new();
        let mut skipped = Vec::new();
        for playbook in self.playbooks.for_type(incident.kind) {
            if finished.contains(&playbook.id.as_str()) {
                continue;
            }
            let steps: Result<Vec<ResolvedStep>, &str> = playbook
                .steps
                .iter()
                .map(|s| {
                    Ok(ResolvedStep {
                        action: s.action.resolve(service.as_deref(), peer)?,
                        timeout: s.timeout,
                        verify: s.verify,
                        rollback: s
                            .rollback
                            .as_ref()
                            .map(|r| r.resolve(service.as_deref(), peer))
                            .transpose()?,
                        condition: s.condition,
                    })
                })
                .collect();
            match steps {
                Ok(steps) => candidates.push((playbook, steps)),
                Err(missing) => {
                    skipped.push(format!("{} (no {missing} for this incident)", playbook.id))
                }
            }
        }
        let kind = incident.kind;
        let critical = incident.severity == Severity::Critical;
        let attempt = incident.plans.len() as u64;
        let stats: Vec<(String, plan::PlanStats)> = candidates
            .iter()
            .map(|(p, _)| (p.id.clone(), self.knowledge.get(kind, &p.id)))
            .collect();
        let seed =
            self.config.seed ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ attempt.rotate_left(32);
        let Some(choice) = plan::choose(&stats, seed) else {
            if incident.plans.is_empty() && incident.notes.is_empty() {
                let note = if skipped.is_empty() {
                    "no playbook for this incident type".to_string()
                } else {
                    format!("no applicable playbook: {}", skipped.join(", "))
                };
                if let Some(t) = self.incidents.get_mut(&id) {
                    t.incident.note(note);
                }
            }
            return;
        };
        let Some((playbook, steps)) = candidates.into_iter().nth(choice.index) else {
            return;
        };
        let needs_approval = playbook.needs_approval && critical;
        let execution = Execution {
            plan: playbook.id.clone(),
            steps,
            verify_timeout: playbook
                .verify_timeout
                .unwrap_or(self.config.execution.verify_timeout),
            phase: if needs_approval {
                Phase::AwaitingApproval {
                    expires_at: now.plus(self.config.execution.approval_timeout),
                }
            } else {
                Phase::Ready { step: 0 }
            },
            executed: Vec::new(),
        };
        let plan_choice = PlanChoice {
            plan: playbook.id.clone(),
            reason: choice.reason,
        };
        let expires_at = execution.deadline();
        let plan_id = playbook.id.clone();
        let Some(t) = self.incidents.get_mut(&id) else {
            return;
        };
        t.incident.plans.push(plan_choice.clone());
        t.incident.state = match expires_at {
            Some(expires_at) if needs_approval => IncidentState::AwaitingApproval { expires_at },
            _ => IncidentState::Executing,
        };
        t.execution = Some(execution);
        self.push_event(Event::PlanChosen {
            incident: id,
            choice: plan_choice,
        });
        if let (true, Some(expires_at)) = (needs_approval, expires_at) {
            self.push_event(Event::ApprovalRequested {
                incident: id,
                plan: plan_id,
                expires_at,
            });
        }
    }

    // ---- execute ----

    fn drive_all(&mut self, now: Timestamp) {
        let ids: Vec<IncidentId> = self.incidents.keys().copied().collect();
        for id in ids {
            self.try_plan(id, now);
            self.drive(id, now);
        }
    }

    /// Moves one incident's plan forward until it must wait for a result, a deadline or an
    /// approval.
    fn drive(&mut self, id: IncidentId, now: Timestamp) {
        for _ in 0..MAX_DRIVE_ROUNDS {
            let Some(t) = self.incidents.get(&id) else {
                return;
            };
            let Some(execution) = t.execution.as_ref() else {
                return;
            };
            let cleared = t.cleared_at.is_some();
            match execution.phase.clone() {
                Phase::AwaitingApproval { .. }
                | Phase::Running { .. }
                | Phase::RollingBack {
                    running: Some(_), ..
                } => return,
                Phase::Ready { step } if step >= execution.steps.len() => {
                    let deadline = now.plus(execution.verify_timeout);
                    self.set_phase(id, Phase::Verifying { step, deadline });
                }
                Phase::Ready { step } => self.start_step(id, step, now),
                Phase::Verifying { step, deadline } => {
                    if cleared {
                        self.finish_plan(id, PlanOutcome::Succeeded, now);
                    } else if deadline > now {
                        return;
                    } else if step + 1 >= execution.steps.len() {
                        self.start_rollback(id, PlanOutcome::VerificationFailed, now);
                    } else {
                        self.set_phase(id, Phase::Ready { step: step + 1 });
                    }
                }
                Phase::RollingBack {
                    outcome,
                    mut remaining,
                    running: None,
                } => match remaining.pop() {
                    None => self.finish_plan(id, outcome, now),
                    Some((step, action)) => {
                        let timeout = execution
                            .steps
                            .get(step)
                            .map_or(crate::playbook::DEFAULT_STEP_TIMEOUT, |s| s.timeout);
                        let deadline = now.plus(timeout);
                        let action_id = self.emit(id, action, true, deadline);
                        self.set_phase(
                            id,
                            Phase::RollingBack {
                                outcome,
                                remaining,
                                running: Some((step, action_id, now, deadline)),
                            },
                        );
                    }
                },
            }
        }
    }

    fn set_phase(&mut self, id: IncidentId, phase: Phase) {
        if let Some(e) = self
            .incidents
            .get_mut(&id)
            .and_then(|t| t.execution.as_mut())
        {
            e.phase = phase;
        }
    }

    fn start_step(&mut self, id: IncidentId, step: usize, now: Timestamp) {
        let Some(t) = self.incidents.get(&id) else {
            return;
        };
        let Some(execution) = t.execution.as_ref() else {
            return;
        };
        let Some(s) = execution.steps.get(step).cloned() else {
            return;
        };
        let run = match s.condition {
            Condition::Always => true,
            Condition::IfIsolated => self.neighbours == 0,
            Condition::IfNotIsolated => self.neighbours > 0,
            Condition::IfSymptomPersists => t.cleared_at.is_none(),
        };
        if !run {
            self.record(id, step, false, now, now, StepOutcome::Skipped);
            self.set_phase(id, Phase::Ready { step: step + 1 });
            return;
        }
        if let Err((reason, retry_at)) = self.limits_allow(&s.action, now) {
            self.stats.blocked_actions += 1;
            self.record(
                id,
                step,
                false,
                now,
                now,
                StepOutcome::Blocked {
                    reason: reason.clone(),
                },
            );
            if let Some(t) = self.incidents.get_mut(&id) {
                // Healing that cannot act is worse than the fault alone: say so in the severity.
                t.incident.severity = t.incident.severity.raised();
                t.retry_at = Some(retry_at);
                t.incident.note(format!("action blocked: {reason}"));
            }
            self.push_event(Event::ActionBlocked {
                incident: id,
                reason,
            });
            self.start_rollback(id, PlanOutcome::Blocked, now);
            return;
        }
        self.breaker.record(now, &self.config.execution);
        let deadline = now.plus(s.timeout);
        let action_id = self.emit(id, s.action, false, deadline);
        self.set_phase(
            id,
            Phase::Running {
                step,
                action: action_id,
                started_at: now,
                deadline,
            },
        );
    }

    /// Circuit breaker, then blast radius. `Err` carries the reason and when to try again.
    fn limits_allow(&mut self, action: &Action, now: Timestamp) -> Result<(), (String, Timestamp)> {
        let cfg = self.config.execution.clone();
        if let Err(reopens) = self.breaker.check(now, &cfg) {
            let reason = format!(
                "circuit breaker open: {} actions in the last {:?} (limit {})",
                self.breaker.recent.len(),
                cfg.window,
                cfg.max_actions_per_window
            );
            return Err((reason, reopens));
        }
        let mut affected: BTreeSet<NodeId> = self.mesh.under_action.clone();
        affected.extend(self.held_peers.iter().copied());
        affected.insert(self.local);
        affected.extend(action.target_peer());
        let mesh_size = if self.mesh.mesh_size == 0 {
            self.neighbours + 1
        } else {
            self.mesh.mesh_size
        };
        if !blast_radius_allows(affected.len(), mesh_size, cfg.max_blast_share) {
            let reason = format!(
                "blast radius: {} of {} nodes would be under action (share limit {})",
                affected.len(),
                mesh_size,
                cfg.max_blast_share
            );
            // Other nodes finish their plans within a window or so.
            return Err((reason, now.plus(cfg.window)));
        }
        Ok(())
    }

    fn emit(
        &mut self,
        incident: IncidentId,
        action: Action,
        rollback: bool,
        deadline: Timestamp,
    ) -> ActionId {
        let id = ActionId(self.next_action);
        self.next_action += 1;
        // One step per open incident is in flight, so the queue stays within its bound; the
        // check keeps the bound even if the node stops draining.
        if self.actions.len() >= MAX_PENDING_ACTIONS {
            // The step then times out and rolls back like any unanswered action.
            self.stats.dropped_actions += 1;
        } else {
            self.actions.push_back(ActionRequest {
                id,
                incident,
                action,
                rollback,
                deadline,
            });
        }
        id
    }

    /// Records how step `step` (or its rollback) went, taking the plan and action from the
    /// execution so that the record always names what was actually emitted.
    fn record(
        &mut self,
        id: IncidentId,
        step: usize,
        rollback: bool,
        started_at: Timestamp,
        now: Timestamp,
        outcome: StepOutcome,
    ) {
        let Some(t) = self.incidents.get_mut(&id) else {
            return;
        };
        let Some(e) = t.execution.as_ref() else {
            return;
        };
        let Some(s) = e.steps.get(step) else { return };
        let action = if rollback {
            s.rollback.clone()
        } else {
            Some(s.action.clone())
        };
        if let Some(action) = action {
            let plan = e.plan.clone();
            t.incident.record_step(StepRecord {
                plan,
                step,
                action,
                rollback,
                started_at,
                finished_at: now,
                outcome,
            });
        }
    }

    fn finish_action(&mut self, id: IncidentId, result: ActionResult, now: Timestamp) {
        let Some(execution) = self.incidents.get(&id).and_then(|t| t.execution.clone()) else {
            return;
        };
        let outcome = match &result {
            ActionResult::Succeeded => StepOutcome::Succeeded,
            ActionResult::Failed(message) => StepOutcome::Failed {
                message: message.clone(),
            },
        };
        match execution.phase {
            Phase::Running {
                step, started_at, ..
            } => {
                let Some(s) = execution.steps.get(step) else {
                    return;
                };
                self.record(id, step, false, started_at, now, outcome);
                match result {
                    ActionResult::Succeeded => {
                        self.note_held(&s.action);
                        if let Some(e) = self
                            .incidents
                            .get_mut(&id)
                            .and_then(|t| t.execution.as_mut())
                        {
                            e.executed.push(step);
                        }
                        let next = match s.verify {
                            Some(d) => Phase::Verifying {
                                step,
                                deadline: now.plus(d),
                            },
                            None => Phase::Ready { step: step + 1 },
                        };
                        self.set_phase(id, next);
                    }
                    ActionResult::Failed(_) => {
                        self.start_rollback(id, PlanOutcome::StepFailed, now)
                    }
                }
            }
            Phase::RollingBack {
                outcome: plan_outcome,
                remaining,
                running: Some((step, _, started_at, _)),
            } => {
                if let Some(action) = execution.steps.get(step).and_then(|s| s.rollback.clone()) {
                    if result == ActionResult::Succeeded {
                        self.note_held(&action);
                    }
                    self.record(id, step, true, started_at, now, outcome);
                }
                self.set_phase(
                    id,
                    Phase::RollingBack {
                        outcome: plan_outcome,
                        remaining,
                        running: None,
                    },
                );
            }
            _ => {}
        }
    }

    /// Keeps the set of peers this node holds isolated or penalised, for the blast radius.
    fn note_held(&mut self, action: &Action) {
        match action {
            Action::IsolatePeer { release: false, .. }
            | Action::DeprefPeer { penalty: 1.., .. } => {
                if let Some(peer) = action
                    .target_peer()
                    .filter(|_| self.held_peers.len() < MAX_HELD_PEERS)
                {
                    self.held_peers.insert(peer);
                }
            }
            Action::IsolatePeer { release: true, .. } | Action::DeprefPeer { penalty: 0, .. } => {
                if let Some(peer) = action.target_peer() {
                    self.held_peers.remove(&peer);
                }
            }
            _ => {}
        }
    }

    /// A deadline passed: a step or rollback timed out, a verification window or an approval
    /// expired.
    fn expire(&mut self, id: IncidentId, now: Timestamp) {
        let Some(execution) = self.incidents.get(&id).and_then(|t| t.execution.clone()) else {
            return;
        };
        match execution.phase {
            Phase::AwaitingApproval { .. } => self.finish_plan(id, PlanOutcome::Expired, now),
            Phase::Running {
                step, started_at, ..
            } => {
                self.record(id, step, false, started_at, now, StepOutcome::TimedOut);
                // A step that timed out may have taken effect, so it is rolled back too.
                if let Some(e) = self
                    .incidents
                    .get_mut(&id)
                    .and_then(|t| t.execution.as_mut())
                {
                    e.executed.push(step);
                }
                self.start_rollback(id, PlanOutcome::StepFailed, now);
            }
            Phase::RollingBack {
                outcome,
                remaining,
                running: Some((step, _, started_at, _)),
            } => {
                self.record(id, step, true, started_at, now, StepOutcome::TimedOut);
                self.set_phase(
                    id,
                    Phase::RollingBack {
                        outcome,
                        remaining,
                        running: None,
                    },
                );
            }
            Phase::Verifying { .. }
            | Phase::Ready { .. }
            | Phase::RollingBack { running: None, .. } => {}
        }
        self.drive(id, now);
    }

    fn start_rollback(&mut self, id: IncidentId, outcome: PlanOutcome, now: Timestamp) {
        let Some(e) = self
            .incidents
            .get_mut(&id)
            .and_then(|t| t.execution.as_mut())
        else {
            return;
        };
        let remaining = e.rollback_plan();
        e.phase = Phase::RollingBack {
            outcome,
            remaining,
            running: None,
        };
        if let Some(t) = self.incidents.get_mut(&id) {
            t.incident.note(format!("rolling back after {}", now));
        }
    }

    fn finish_plan(&mut self, id: IncidentId, outcome: PlanOutcome, now: Timestamp) {
        let Some(t) = self.incidents.get_mut(&id) else {
            return;
        };
        let Some(execution) = t.execution.take() else {
            return;
        };
        let kind = t.incident.kind;
        t.incident.outcomes.push(outcome.clone());
        t.incident.state = IncidentState::Open;
        let cleared_at = t.cleared_at;
        // Only outcomes that say something about the plan itself count: a blocked, refused or
        // expired plan never ran to completion.
        if matches!(
            outcome,
            PlanOutcome::Succeeded | PlanOutcome::StepFailed | PlanOutcome::VerificationFailed
        ) {
            self.knowledge
                .record(kind, &execution.plan, outcome == PlanOutcome::Succeeded);
        }
        self.push_event(Event::PlanFinished {
            incident: id,
            kind,
            plan: execution.plan,
            outcome,
        });
        if let Some(cleared) = cleared_at {
            if let Some(t) = self.incidents.get_mut(&id) {
                t.incident.state = IncidentState::Resolved;
                t.incident.resolved_at = Some(cleared.max(t.incident.detected_at).min(now));
            }
            self.close(id);
        }
    }
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
