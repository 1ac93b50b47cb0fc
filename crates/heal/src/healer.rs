//! `Healer`: the sans-IO MAPE-K loop. Observations and time in; incidents, events and actions
//! out. The calling contract is on the type.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;
use wire::NodeId;

use crate::check::{CheckSpec, CheckState};
use crate::config::{ConfigError, HealConfig, ThresholdName};
use crate::detect::MetricDetector;
use crate::execute::{
    ActionId, ActionRequest, ActionResult, CircuitBreaker, Execution, MAX_UNDER_ACTION,
    MeshContext, Phase,
};
use crate::incident::{
    Incident, IncidentId, IncidentState, IncidentType, PlanChoice, PlanOutcome, Severity,
};
use crate::observation::{LinkSample, MAX_COUNTER_NAME, MetricKey, Observation};
use crate::plan::{self, Knowledge};
use crate::playbook::PlaybookSet;
use crate::time::Timestamp;

mod analyze;
mod run;

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
/// Symptoms stored in one incident (earliest first); confidence uses all of them, but the
/// record must stay small enough to store and gossip.
pub const MAX_EVIDENCE_PER_INCIDENT: usize = 64;
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
/// Cache names the node may tell the loop about; more are ignored (and `clear_cache` plans
/// naming them are not candidates).
pub const MAX_CACHES: usize = 256;

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
    /// Caches present on the node, when it said; `clear_cache` of another is no candidate.
    caches: Option<BTreeSet<String>>,
}

/// What a [`Healer::reload`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    /// Checks declared now.
    pub checks: usize,
    /// Checks new or changed (their state starts over).
    pub checks_changed: Vec<String>,
    /// Checks no longer declared.
    pub checks_removed: Vec<String>,
    /// Playbooks loaded now.
    pub playbooks: usize,
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
            caches: None,
        })
    }

    /// Replaces the checks and playbooks with a validated new set, all or nothing: when the
    /// checks are refused, nothing changes. A check whose declaration is unchanged keeps its
    /// state (a failing service stays failing); a changed or new one starts over. Plans
    /// already running keep the steps they were chosen with; later choices use the new set.
    /// Incidents about a removed check close, since nothing watches their symptom any more,
    /// and say why.
    pub fn reload(
        &mut self,
        checks: Vec<CheckSpec>,
        playbooks: PlaybookSet,
        now: Timestamp,
    ) -> Result<ReloadSummary, ConfigError> {
        if checks.len() > MAX_CHECKS {
            return Err(ConfigError::new(
                "checks",
                format!("more than {MAX_CHECKS} checks"),
            ));
        }
        let mut summary = ReloadSummary {
            checks: checks.len(),
            playbooks: playbooks.len(),
            ..ReloadSummary::default()
        };
        let mut old = std::mem::take(&mut self.checks);
        for spec in checks {
            let state = match old.remove(&spec.name) {
                Some((previous, state)) if previous == spec => state,
                _ => {
                    summary.checks_changed.push(spec.name.clone());
                    CheckState::default()
                }
            };
            self.checks.insert(spec.name.clone(), (spec, state));
        }
        summary.checks_removed = old.into_keys().collect();
        for t in self.incidents.values_mut() {
            if let crate::cause::Entity::Service { check, .. } = &t.incident.root_cause
                && summary.checks_removed.contains(check)
            {
                t.incident
                    .note(format!("check {check} removed by a configuration reload"));
            }
        }
        self.playbooks = playbooks;
        self.analyze(now);
        self.drive_all(now);
        Ok(summary)
    }

    /// The playbooks in force.
    pub fn playbooks(&self) -> &PlaybookSet {
        &self.playbooks
    }

    /// The checks in force.
    pub fn checks(&self) -> impl Iterator<Item = &CheckSpec> {
        self.checks.values().map(|(spec, _)| spec)
    }

    /// The caches present on the node (names under its cache root). Once told, a plan with a
    /// `clear_cache` step (or rollback) for another cache is no candidate: there is nothing
    /// to clear, and the incident says so rather than failing a step. At most [`MAX_CACHES`]
    /// names are kept.
    pub fn set_caches(&mut self, caches: impl IntoIterator<Item = String>) {
        self.caches = Some(caches.into_iter().take(MAX_CACHES).collect());
    }

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

    /// The node lifted its penalty or isolation of `peer` (the incident that set it was
    /// resolved); returns whether the loop held it. Keeps the blast-radius count true.
    pub fn release_peer(&mut self, peer: NodeId) -> bool {
        self.held_peers.remove(&peer)
    }

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

    /// The node forgot `peer`: it left the mesh, or stayed away longer than the node keeps
    /// departed neighbours. Its link metrics and every neighbour report about it or from it
    /// are dropped, so incidents that only its absence explained close. Without this input a
    /// departed neighbour would count as a link at 100 % loss for ever.
    pub fn forget_peer(&mut self, peer: NodeId, now: Timestamp) {
        let before = self.metrics.len() + self.views.len();
        self.metrics.retain(|key, _| key.peer() != Some(peer));
        self.views
            .retain(|(reporter, target), _| *reporter != peer && *target != peer);
        if before == self.metrics.len() + self.views.len() {
            return;
        }
        for t in self.incidents.values_mut() {
            let about_peer = match &t.incident.root_cause {
                crate::cause::Entity::Node(n) => *n == peer,
                crate::cause::Entity::Link { to, .. } => *to == peer,
                _ => false,
            };
            if about_peer {
                t.incident
                    .note(format!("peer {} purged: it left the mesh", peer.short()));
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
}
