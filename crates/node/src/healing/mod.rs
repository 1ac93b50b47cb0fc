//! The self-healing loop inside the node: drives the pure `heal::Healer` with real
//! measurements and carries out its actions.
//!
//! ```text
//!   mesh tick (200 ms) ── router neighbours, routes, churn ─┐
//!   node tick (1 s) ── sysinfo (blocking task), counters ───┤
//!   check schedule ── HTTP/TCP/exec tasks, process status ──┼─► Healer ─► actions ─► local: tokio tasks (bounded)
//!   neighbour reports (signed, flooded a few hops) ─────────┘        │           mesh: router penalty, reports
//!                                                                     └─► events ─► incidents.db thread (bounded queue)
//!                                                                                   WebSocket broadcast, logs, MTTD/MTTR
//! ```
//!
//! The runtime owns one [`Healing`] and calls it from its event loop: [`Healing::next`] is the
//! loop's wake-up source and [`Healing::handle`] runs one step with the router at hand
//! ([`MeshPort`]). Nothing here blocks the loop: node sampling, checks and local actions run
//! as tokio tasks whose results come back over one bounded channel, and the database has its
//! own thread. A failing executor yields a failed action result, never a panic.

pub mod config;
pub mod report;
pub mod store;
pub mod summary;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use heal::{
    ActionResult, Event, Healer, Incident, IncidentType, LinkSample, MeshContext, Observation,
};
use routing::{ISOLATED, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use wire::NodeId;

use self::config::HealingConfig;
use self::report::ReportBody;
use self::store::{Job, StoreWorker};
use crate::executor::{self, Executor, IncidentNotice, MeshControl, Report, Route};
use crate::monitor::{self, CheckRun, CheckSchedule, NodeSample, NodeSampler};
use crate::supervisor::{ServiceState, Supervisor, SupervisorHandle};

/// Results of tasks waiting for the loop: checks, node samples and local actions. One in
/// flight per check, one sample, and at most [`MAX_LOCAL_ACTIONS`] actions, so it never fills.
const COMPLETIONS: usize = heal::healer::MAX_CHECKS + MAX_LOCAL_ACTIONS + 8;
/// Local actions (restarts, commands, cache clearing) running at once; one per open incident
/// at most, and a node with more at once needs an operator more than a wider executor.
pub const MAX_LOCAL_ACTIONS: usize = 16;
/// Events kept for WebSocket subscribers that fall behind; a slower subscriber skips ahead
/// (and is told how many it missed).
pub const EVENT_BACKLOG: usize = 256;
/// Origins whose newest report time is remembered (replay and flood de-duplication).
const MAX_REPORT_ORIGINS: usize = heal::healer::MAX_VIEWS;
/// Notices from neighbours kept for the API.
const MAX_NOTICES: usize = 32;
/// A report is re-sent at least this often while it tells of something receivers act on (a bad
/// link, nodes under action), so neighbours' evidence keeps growing.
const REPORT_REFRESH: Duration = Duration::from_secs(1);
/// Hops a quiet report travels (see `send_report`).
const QUIET_REPORT_HOPS: u8 = 2;

/// A report that tells of nothing receivers act on (every link good, nothing under action) is
/// re-sent only often enough that the neighbours' views of it stay within `view_max_age`: every
/// `view_max_age × 3 / 4` (7.5 s by default). Reports travel on QUIC streams, which retransmit
/// what is lost, so a refresh arrives late by a few round trips at worst, not a whole period.
/// Any change to the bad links, an action or a notice still sends a report at once. At idle
/// these refreshes, flooded two hops, would otherwise be the largest share of a node's control
/// traffic after the probes.
fn quiet_report_refresh(view_max_age: Duration) -> Duration {
    (view_max_age * 3 / 4).max(REPORT_REFRESH)
}

/// Counters of the healing loop, in `/api/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealingCounters {
    /// Observations fed to the healer.
    pub observations: u64,
    /// Actions executed (all routes).
    pub actions: u64,
    /// Actions that reported failure (including refusals for lack of capacity).
    pub actions_failed: u64,
    /// Node samples that failed (sysinfo).
    pub node_samples_failed: u64,
    /// Reports sent (originated).
    pub reports_sent: u64,
    /// Reports accepted from other nodes.
    pub reports_accepted: u64,
    /// Reports forwarded for others.
    pub reports_forwarded: u64,
    /// Reports refused: malformed.
    pub reports_malformed: u64,
    /// Reports refused: origin unknown to the directory.
    pub reports_unknown_origin: u64,
    /// Reports refused: bad signature.
    pub reports_bad_signature: u64,
    /// Reports ignored as duplicates or replays (not newer than the last one).
    pub reports_stale: u64,
    /// Peers forgotten after their departure.
    pub peers_purged: u64,
    /// Events not stored because the database queue was full.
    pub store_dropped: u64,
    /// Events the database could not store.
    pub store_failed: u64,
}

/// MTTD and MTTR of one incident type in this run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepairFigures {
    /// Incidents detected.
    pub incidents: u64,
    /// Mean fault-to-incident time, ms (fault = first anomalous sample).
    pub mttd_ms_mean: f64,
    /// Longest, ms.
    pub mttd_ms_max: f64,
    /// Incidents recovered (symptoms cleared, verified).
    pub resolved: u64,
    /// Mean fault-to-recovery time, ms.
    pub mttr_ms_mean: Option<f64>,
    /// Longest, ms.
    pub mttr_ms_max: Option<f64>,
}

/// The healing loop in `/api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealingView {
    /// Open incidents.
    pub open_incidents: usize,
    /// Incidents opened in this run.
    pub incidents_total: u64,
    /// MTTD/MTTR per incident type (`SERVICE_DOWN`, ...), this run.
    pub repair: BTreeMap<String, RepairFigures>,
    /// Loop counters.
    pub counters: HealingCounters,
    /// The healer's own drop counters.
    pub healer: BTreeMap<String, u64>,
    /// Supervised services and their state.
    pub services: Vec<crate::supervisor::ServiceStatus>,
    /// Why incidents are kept in memory only, if they are.
    pub store_degraded: Option<String>,
    /// Peers the loop holds isolated or penalised.
    pub held_peers: Vec<NodeId>,
}

/// A notice received from another node's `notify_neighbours`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeView {
    /// Who sent it.
    pub from: NodeId,
    /// Its incident id.
    pub incident: u64,
    /// The text.
    pub message: String,
    /// When it arrived (Unix ms).
    pub received_unix_ms: u64,
}

/// What a WebSocket subscriber receives: healer events, action runs and notices, each one
/// JSON object with a `type` field.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamItem<'a> {
    /// A healer event (incident opened/updated/closed, plan chosen/finished, ...).
    Heal {
        /// Unix ms.
        at_unix_ms: u64,
        /// The event.
        event: &'a Event,
    },
    /// An action was handed to an executor.
    ActionStarted {
        /// Unix ms.
        at_unix_ms: u64,
        /// The request.
        request: &'a heal::ActionRequest,
    },
    /// An executor reported.
    ActionFinished {
        /// Unix ms.
        at_unix_ms: u64,
        /// Action id.
        id: u64,
        /// Incident id.
        incident: u64,
        /// Whether it succeeded.
        succeeded: bool,
        /// What happened.
        detail: &'a str,
    },
    /// A neighbour's notice.
    Notice(&'a NoticeView),
}

/// What woke the healing loop.
#[derive(Debug)]
pub enum Wake {
    /// A deadline of the loop's own (tick, check, healer timer).
    Timer,
    /// A task finished.
    Done(Completion),
}

/// A finished task.
#[derive(Debug)]
pub enum Completion {
    /// A check run.
    Check(CheckRun),
    /// A node sample, with the sampler handed back.
    NodeSample(Box<NodeSampler>, Result<NodeSample, String>),
    /// A local action of an incident.
    Action(heal::ActionId, heal::IncidentId, Report),
}

/// The router and links as the executor sees them, for one step of the loop.
pub struct MeshPort<'a> {
    /// The routing core.
    pub router: &'a mut Router,
    /// Its clock reading for this step.
    pub now: routing::Timestamp,
    /// Unix ms of `now`.
    pub unix_ms: u64,
    /// Nodes with a link now.
    pub linked: Vec<NodeId>,
    /// Ed25519 keys of nodes from the directory, for report signatures.
    pub key_of: &'a dyn Fn(&NodeId) -> Option<[u8; 32]>,
    /// Signs with this node's Ed25519 key.
    pub sign: &'a dyn Fn(&[u8]) -> [u8; 64],
    /// Streams to send: (peer, bytes). The runtime sends them after the step.
    pub outbox: Vec<(NodeId, Vec<u8>)>,
}

/// `MeshControl` over the router; notices become a report sent at once.
struct RouterControl<'p, 'a> {
    port: &'p mut MeshPort<'a>,
    notices: Vec<IncidentNotice>,
}

impl MeshControl for RouterControl<'_, '_> {
    fn local_id(&self) -> NodeId {
        self.port.router.local_id()
    }

    fn knows(&self, peer: NodeId) -> bool {
        self.port.router.neighbours().iter().any(|n| n.id == peer)
            || self.port.router.next_hop(&peer).is_some()
    }

    fn set_isolated(&mut self, peer: NodeId, isolated: bool) -> Result<(), String> {
        let penalty = if isolated { ISOLATED } else { 0 };
        if self
            .port
            .router
            .set_neighbour_penalty(self.port.now, &peer, penalty)
        {
            Ok(())
        } else {
            Err("the router holds penalties for as many peers as it has neighbour slots".into())
        }
    }

    fn is_isolated(&self, peer: NodeId) -> bool {
        self.port.router.neighbour_penalty(&peer) == ISOLATED
    }

    fn set_penalty(&mut self, peer: NodeId, penalty: u32) -> Result<(), String> {
        if penalty == ISOLATED {
            return Err("that penalty is reserved for isolation".into());
        }
        if self
            .port
            .router
            .set_neighbour_penalty(self.port.now, &peer, penalty)
        {
            Ok(())
        } else {
            Err("the router holds penalties for as many peers as it has neighbour slots".into())
        }
    }

    fn penalty(&self, peer: NodeId) -> u32 {
        self.port.router.neighbour_penalty(&peer)
    }

    fn notify_neighbours(&mut self, notice: &IncidentNotice) -> Result<usize, String> {
        self.notices.push(notice.clone());
        Ok(self.port.linked.len())
    }
}

/// Per-type sums for MTTD/MTTR.
#[derive(Debug, Clone, Default)]
struct RepairSums {
    incidents: u64,
    mttd_sum: f64,
    mttd_max: f64,
    resolved: u64,
    mttr_sum: f64,
    mttr_max: f64,
}

/// The healing loop of one node.
pub struct Healing {
    config: HealingConfig,
    healer: Healer,
    local: NodeId,
    supervisor: Option<Supervisor>,
    executor: Executor,
    checks: CheckSchedule,
    checks_running: BTreeSet<String>,
    sampler: Option<Box<NodeSampler>>,
    sampler_error_logged: bool,
    last_sample: Option<NodeSample>,
    completions_tx: mpsc::Sender<Completion>,
    completions: mpsc::Receiver<Completion>,
    local_actions: usize,
    store: Option<StoreWorker>,
    events: broadcast::Sender<std::sync::Arc<str>>,
    next_mesh: tokio::time::Instant,
    next_node: tokio::time::Instant,
    next_report: tokio::time::Instant,
    /// Neighbours seen in earlier mesh samples, with when they were last present.
    seen: BTreeMap<NodeId, routing::Timestamp>,
    /// Next hop per destination at the last mesh sample (route churn).
    next_hops: BTreeMap<NodeId, NodeId>,
    /// Bad links in the last report sent (a change triggers a report at once).
    reported_bad: BTreeSet<NodeId>,
    /// Nodes under action in the last report sent (a change triggers a report at once, since
    /// reports that tell of nothing are refreshed only every few seconds).
    reported_under_action: BTreeSet<NodeId>,
    last_links: Vec<LinkSample>,
    /// Newest report time per origin.
    report_clock: BTreeMap<NodeId, u64>,
    /// Nodes others act on, per reporting node, with the time of the report.
    remote_under_action: BTreeMap<NodeId, (Vec<NodeId>, routing::Timestamp)>,
    notices: VecDeque<NoticeView>,
    pending_notices: Vec<IncidentNotice>,
    counters: HealingCounters,
    last_counters: BTreeMap<String, u64>,
    repair: BTreeMap<IncidentType, RepairSums>,
    incidents_total: u64,
    mesh_size: usize,
    /// The loop's clock at its last step, on both scales, to turn the healer's deadlines
    /// (step timeouts, verification windows) into wake-ups at their exact time.
    anchor: Option<(tokio::time::Instant, heal::Timestamp)>,
    /// Something changed outside a step (a reload): run a step at once.
    step_now: bool,
    /// Detection time (Unix ms) of each open incident, for the mesh summary.
    opened_unix: BTreeMap<u64, u64>,
    /// Recently closed incidents for the mesh summary, oldest first.
    mesh_closed: VecDeque<summary::SummaryIncident>,
    /// The incident list last published to the mesh, and when.
    published: Option<(Vec<summary::SummaryIncident>, u64)>,
}

/// What a reload of the checks and playbooks did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// The configuration file read.
    pub file: String,
    /// Checks in force now.
    pub checks: usize,
    /// Checks new or changed (their state starts over).
    pub checks_changed: Vec<String>,
    /// Checks no longer declared.
    pub checks_removed: Vec<String>,
    /// Playbooks in force now (shipped ones included).
    pub playbooks: usize,
    /// Sections that changed in the file but apply only when the node restarts.
    pub restart_needed: Vec<String>,
}

/// A refused reload: the file, the line when known, and the reason. The node keeps the
/// checks and playbooks it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{file}:{}: {reason}", line.map_or_else(String::new, |l| l.to_string()))]
pub struct ReloadRefused {
    /// The file at fault (node.yaml or a playbook).
    pub file: String,
    /// The line at fault, when known.
    pub line: Option<u64>,
    /// Why.
    pub reason: String,
}

impl ReloadRefused {
    /// From a refused node.yaml.
    pub fn from_config(error: &crate::config::ConfigError) -> ReloadRefused {
        use crate::config::ConfigError;
        let (file, line, reason) = match error {
            ConfigError::Parse {
                path,
                field,
                message,
            } => {
                let reason = if field.is_empty() || field == "." {
                    message.clone()
                } else {
                    format!("{field}: {message}")
                };
                (path.display().to_string(), line_in(message), reason)
            }
            ConfigError::Invalid {
                path,
                field,
                line,
                reason,
            } => (
                path.display().to_string(),
                *line,
                format!("{field}: {reason}"),
            ),
            ConfigError::Read { path, source } => (
                path.display().to_string(),
                None,
                format!("cannot read: {source}"),
            ),
            ConfigError::TooLarge { path } => (
                path.display().to_string(),
                None,
                format!("larger than {} bytes", crate::config::MAX_CONFIG_BYTES),
            ),
        };
        ReloadRefused { file, line, reason }
    }

    /// From a refused playbook.
    pub fn from_playbook(error: &heal::PlaybookError) -> ReloadRefused {
        ReloadRefused {
            file: error.source_name.clone(),
            line: error.line,
            reason: if error.field.is_empty() {
                error.reason.clone()
            } else {
                format!("{}: {}", error.field, error.reason)
            },
        }
    }
}

/// The line in a parser message such as "... at line 7, column 3".
fn line_in(message: &str) -> Option<u64> {
    let rest = &message[message.find("line ")? + "line ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl std::fmt::Debug for Healing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Healing")
            .field("open_incidents", &self.healer.open_incidents().count())
            .finish_non_exhaustive()
    }
}

/// Why the healing loop cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HealingError {
    /// A user playbook is invalid (file, line, reason).
    #[error("playbook {0}")]
    Playbook(#[from] heal::PlaybookError),
    /// The loop's settings are refused.
    #[error("node_config.mapk: {0}")]
    Config(String),
    /// A supervised service cannot be started.
    #[error("services: {0}")]
    Supervisor(#[from] crate::supervisor::SupervisorError),
    /// The database thread cannot be started.
    #[error("incident database: {0}")]
    Store(String),
}

/// Peers an incident's plan left penalised or isolated: steps that took effect and were not
/// undone by a later step or rollback. Lifted when the incident is resolved, since the peer
/// then works again.
fn held_by(incident: &Incident) -> Vec<NodeId> {
    let mut held: Vec<NodeId> = Vec::new();
    for step in &incident.steps {
        if step.outcome != heal::StepOutcome::Succeeded {
            continue;
        }
        match &step.action {
            heal::Action::IsolatePeer {
                peer: heal::PeerRef::Id(p),
                release: false,
            }
            | heal::Action::DeprefPeer {
                peer: heal::PeerRef::Id(p),
                penalty: 1..,
            } if !held.contains(p) => held.push(*p),
            heal::Action::IsolatePeer {
                peer: heal::PeerRef::Id(p),
                release: true,
            }
            | heal::Action::DeprefPeer {
                peer: heal::PeerRef::Id(p),
                penalty: 0,
            } => held.retain(|h| h != p),
            _ => {}
        }
    }
    held
}

/// An incident as the mesh summary carries it.
fn summary_of(
    incident: &Incident,
    opened_unix_ms: u64,
    closed: Option<u64>,
) -> summary::SummaryIncident {
    summary::SummaryIncident {
        id: incident.id.0,
        kind: incident.kind.as_str().to_string(),
        severity: format!("{:?}", incident.severity).to_uppercase(),
        state: summary::state_name(&incident.state).to_string(),
        root_cause: summary::describe(&incident.root_cause),
        opened_unix_ms,
        closed_unix_ms: closed,
    }
}

/// A counter struct as a name -> value map.
fn counters_of(stats: &impl Serialize) -> BTreeMap<String, u64> {
    match serde_json::to_value(stats) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(name, value)| value.as_u64().map(|value| (name, value)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The healing loop's next wake-up, or never when it is disabled (a `select!` branch).
pub async fn next(healing: Option<&mut Healing>) -> Wake {
    match healing {
        Some(healing) => healing.next().await,
        None => std::future::pending().await,
    }
}

fn heal_time(now: routing::Timestamp) -> heal::Timestamp {
    heal::Timestamp(now.as_micros())
}

impl Healing {
    /// Loads playbooks, opens the incident database (in memory when the file is unusable),
    /// starts the supervised services and builds the healer. Must run inside tokio.
    pub fn start(
        config: &HealingConfig,
        local: NodeId,
        data_dir: &std::path::Path,
        unix_ms: u64,
    ) -> Result<Healing, HealingError> {
        let playbooks = config.load_playbooks()?;
        let mut healer = Healer::new(config.heal.clone(), local, config.checks.clone(), playbooks)
            .map_err(|e| HealingError::Config(e.to_string()))?;
        let wall = i64::try_from(unix_ms).unwrap_or(i64::MAX);
        let mut store = knowledge::Store::open(&config.incidents_db, config.db.clone(), wall)
            .map_err(|e| HealingError::Store(e.to_string()))?;
        if let Some(reason) = store.degraded() {
            tracing::error!(%reason, "incident database unusable; keeping incidents in memory");
        }
        match store.load_knowledge(healer.knowledge_mut(), wall) {
            Ok(plans) => tracing::debug!(plans, "plan statistics loaded"),
            Err(error) => tracing::warn!(%error, "plan statistics not loaded"),
        }
        let store = StoreWorker::start(store).map_err(|e| HealingError::Store(e.to_string()))?;
        let supervisor = if config.services.is_empty() {
            None
        } else {
            Some(Supervisor::start(config.services.clone())?)
        };
        let handle = supervisor.as_ref().map(Supervisor::handle);
        let sampler = match NodeSampler::new(data_dir) {
            Ok(sampler) => Some(Box::new(sampler)),
            Err(error) => {
                tracing::warn!(%error, "node metrics unavailable; CPU, memory and disk are not watched");
                None
            }
        };
        let (completions_tx, completions) = mpsc::channel(COMPLETIONS);
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let now = tokio::time::Instant::now();
        let mut healing = Healing {
            config: config.clone(),
            healer,
            local,
            supervisor,
            executor: Executor::new(handle, Some(config.cache_root.clone())),
            checks: CheckSchedule::new(config.checks.clone(), now.into_std()),
            checks_running: BTreeSet::new(),
            sampler,
            sampler_error_logged: false,
            last_sample: None,
            completions_tx,
            completions,
            local_actions: 0,
            store: Some(store),
            events,
            next_mesh: now + config.mesh_interval,
            next_node: now,
            next_report: now + REPORT_REFRESH,
            seen: BTreeMap::new(),
            next_hops: BTreeMap::new(),
            reported_bad: BTreeSet::new(),
            reported_under_action: BTreeSet::new(),
            last_links: Vec::new(),
            report_clock: BTreeMap::new(),
            remote_under_action: BTreeMap::new(),
            notices: VecDeque::new(),
            pending_notices: Vec::new(),
            counters: HealingCounters::default(),
            last_counters: BTreeMap::new(),
            repair: BTreeMap::new(),
            incidents_total: 0,
            mesh_size: 0,
            anchor: None,
            step_now: false,
            opened_unix: BTreeMap::new(),
            mesh_closed: VecDeque::new(),
            published: None,
        };
        healing.list_caches();
        Ok(healing)
    }

    /// Replaces the checks and playbooks with those of `new` (node.yaml read again), all or
    /// nothing: a playbook that does not load, or checks the healer refuses, leave the loop
    /// with the set it had. Supervised services are started with the node, so a file whose
    /// `services` changed is refused as a whole rather than watched half-applied; other
    /// `mapk` settings that changed are named in `restart_needed`.
    pub fn reload(
        &mut self,
        new: &HealingConfig,
        file: &std::path::Path,
        now: routing::Timestamp,
    ) -> Result<ReloadOutcome, ReloadRefused> {
        let refused = |reason: String| ReloadRefused {
            file: file.display().to_string(),
            line: None,
            reason,
        };
        if new.services != self.config.services {
            return Err(refused(
                "node_config.services: changed; supervised services start with the node, restart it to apply them (checks and playbooks unchanged)".to_string(),
            ));
        }
        let playbooks = new
            .load_playbooks()
            .map_err(|e| ReloadRefused::from_playbook(&e))?;
        let summary = self
            .healer
            .reload(new.checks.clone(), playbooks, heal_time(now))
            .map_err(|e| refused(format!("node_config.{e}")))?;
        let mut restart_needed = Vec::new();
        if new.heal != self.config.heal || new.mesh_interval != self.config.mesh_interval {
            restart_needed.push("node_config.mapk".to_string());
        }
        if new.incidents_db != self.config.incidents_db || new.db != self.config.db {
            restart_needed.push("node_config.mapk.incidents_db".to_string());
        }
        if new.enabled != self.config.enabled {
            restart_needed.push("node_config.mapk.enabled".to_string());
        }
        self.checks =
            CheckSchedule::new(new.checks.clone(), tokio::time::Instant::now().into_std());
        self.checks_running
            .retain(|name| new.checks.iter().any(|c| c.name == *name));
        self.config.checks = new.checks.clone();
        self.config.playbook_dirs = new.playbook_dirs.clone();
        self.step_now = true;
        Ok(ReloadOutcome {
            file: file.display().to_string(),
            checks: summary.checks,
            checks_changed: summary.checks_changed,
            checks_removed: summary.checks_removed,
            playbooks: summary.playbooks,
            restart_needed,
        })
    }

    /// This node's incident summary for the mesh when it changed since the last one
    /// published (and at least [`summary::MIN_PUBLISH_GAP_MS`] passed), or at the first call;
    /// the runtime signs it and writes it into the replicated `incidents` map.
    pub fn summary_due(&mut self, unix_ms: u64) -> Option<summary::MeshSummary> {
        let kept_ms = u64::try_from(summary::CLOSED_KEPT.as_millis()).unwrap_or(u64::MAX);
        self.mesh_closed.retain(|i| {
            i.closed_unix_ms
                .is_some_and(|c| unix_ms.saturating_sub(c) < kept_ms)
        });
        let open: Vec<summary::SummaryIncident> = self
            .healer
            .open_incidents()
            .map(|i| {
                let opened = self.opened_unix.get(&i.id.0).copied().unwrap_or(unix_ms);
                summary_of(i, opened, None)
            })
            .collect();
        let total = open.len() + self.mesh_closed.len();
        let mut incidents: Vec<summary::SummaryIncident> = open
            .into_iter()
            .take(summary::MAX_SUMMARY_INCIDENTS)
            .collect();
        let room = summary::MAX_SUMMARY_INCIDENTS - incidents.len();
        incidents.extend(self.mesh_closed.iter().rev().take(room).cloned());
        if let Some((last, at)) = &self.published
            && (*last == incidents || unix_ms.saturating_sub(*at) < summary::MIN_PUBLISH_GAP_MS)
        {
            return None;
        }
        let omitted = u32::try_from(total - incidents.len()).unwrap_or(u32::MAX);
        self.published = Some((incidents.clone(), unix_ms));
        Some(summary::MeshSummary {
            node: self.local,
            published_unix_ms: unix_ms,
            incidents,
            omitted,
        })
    }

    /// Tells the healer which caches exist under the cache root (subdirectories with valid
    /// names), so plans clearing another one are not chosen.
    fn list_caches(&mut self) {
        let names: Vec<String> = match std::fs::read_dir(&self.config.cache_root) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| executor::cache_dir(&self.config.cache_root, name).is_ok())
                .take(heal::healer::MAX_CACHES)
                .collect(),
            Err(_) => Vec::new(),
        };
        self.healer.set_caches(names);
    }

    /// The supervisor's handle, if services are declared.
    pub fn supervisor(&self) -> Option<SupervisorHandle> {
        self.supervisor.as_ref().map(Supervisor::handle)
    }

    /// Subscribes to the event stream (JSON objects, see [`StreamItem`]).
    pub fn subscribe(&self) -> broadcast::Receiver<std::sync::Arc<str>> {
        self.events.subscribe()
    }

    /// Queues a database job (API queries); false when the queue is full.
    pub fn query(&mut self, job: Job) -> bool {
        match self.store.as_mut() {
            Some(store) => store.submit(job),
            None => false,
        }
    }

    /// Open and recently closed incidents held by the healer (the database has all).
    pub fn live_incidents(&self) -> Vec<Incident> {
        self.healer
            .open_incidents()
            .chain(self.healer.recent_incidents())
            .cloned()
            .collect()
    }

    /// Notices received from other nodes, oldest first.
    pub fn notices(&self) -> Vec<NoticeView> {
        self.notices.iter().cloned().collect()
    }

    /// Status figures.
    pub fn view(&self) -> HealingView {
        let mut counters = self.counters.clone();
        if let Some(store) = &self.store {
            counters.store_dropped = store.dropped;
            counters.store_failed = store.failed.load(std::sync::atomic::Ordering::Relaxed);
        }
        HealingView {
            open_incidents: self.healer.open_incidents().count(),
            incidents_total: self.incidents_total,
            repair: self
                .repair
                .iter()
                .map(|(kind, sums)| {
                    let n = sums.incidents.max(1) as f64;
                    let r = sums.resolved.max(1) as f64;
                    (
                        kind.as_str().to_string(),
                        RepairFigures {
                            incidents: sums.incidents,
                            mttd_ms_mean: sums.mttd_sum / n,
                            mttd_ms_max: sums.mttd_max,
                            resolved: sums.resolved,
                            mttr_ms_mean: (sums.resolved > 0).then(|| sums.mttr_sum / r),
                            mttr_ms_max: (sums.resolved > 0).then_some(sums.mttr_max),
                        },
                    )
                })
                .collect(),
            counters,
            healer: counters_of(self.healer.stats()),
            services: self
                .supervisor
                .as_ref()
                .map(|s| s.handle().statuses())
                .unwrap_or_default(),
            store_degraded: self.store.as_ref().and_then(|s| s.degraded.clone()),
            held_peers: self
                .healer
                .nodes_under_action()
                .into_iter()
                .filter(|n| *n != self.local)
                .collect(),
        }
    }

    /// Waits for the next thing to do. Cancel-safe: a dropped call loses nothing.
    pub async fn next(&mut self) -> Wake {
        let deadline = self.deadline();
        tokio::select! {
            Some(done) = self.completions.recv() => Wake::Done(done),
            () = tokio::time::sleep_until(deadline) => Wake::Timer,
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        if self.step_now {
            return tokio::time::Instant::now();
        }
        let mut at = self.next_mesh.min(self.next_node).min(self.next_report);
        if let Some(due) = self.checks.next_due() {
            at = at.min(tokio::time::Instant::from_std(due));
        }
        if let (Some(due), Some((instant, timestamp))) = (self.healer.poll_timeout(), self.anchor) {
            at = at.min(instant + due.saturating_since(timestamp));
        }
        at
    }

    /// One step: feeds what woke the loop, runs timers that are due, executes the actions
    /// the healer asks for and routes its events.
    pub fn handle(&mut self, wake: Wake, port: &mut MeshPort<'_>) {
        let now = heal_time(port.now);
        self.step_now = false;
        self.anchor = Some((tokio::time::Instant::now(), now));
        match wake {
            Wake::Done(Completion::Check(run)) => {
                self.checks_running.remove(&run.name);
                if !run.passed {
                    tracing::debug!(check = %run.name, detail = %run.detail, "check failed");
                }
                self.observe(run.observation(), now);
            }
            Wake::Done(Completion::NodeSample(sampler, sample)) => {
                self.sampler = Some(sampler);
                match sample {
                    Ok(sample) => {
                        self.observe(sample.observation(), now);
                        self.last_sample = Some(sample);
                    }
                    Err(error) => {
                        self.counters.node_samples_failed += 1;
                        if !self.sampler_error_logged {
                            tracing::warn!(%error, "node metrics not sampled");
                            self.sampler_error_logged = true;
                        }
                    }
                }
            }
            Wake::Done(Completion::Action(id, incident, report)) => {
                self.local_actions = self.local_actions.saturating_sub(1);
                self.action_done(id, incident, report, now, port.unix_ms);
            }
            Wake::Timer => {}
        }
        let instant = tokio::time::Instant::now();
        if instant >= self.next_mesh {
            self.next_mesh = instant + self.config.mesh_interval;
            self.sample_mesh(port, now);
        }
        if instant >= self.next_node {
            self.next_node = instant + self.config.heal.cycle_interval;
            self.list_caches();
            self.sample_node();
        }
        for spec in self.checks.due(instant.into_std()) {
            self.run_check(spec, now);
        }
        if self.healer.poll_timeout().is_some_and(|t| t <= now) {
            self.healer.handle_timeout(now);
        }
        self.drain(port, now);
        let report_due = instant >= self.next_report;
        let report_changed = self.bad_links() != self.reported_bad
            || self.healer.nodes_under_action() != self.reported_under_action;
        if report_due || report_changed || !self.pending_notices.is_empty() {
            let quiet = self.send_report(port);
            self.next_report = instant
                + if quiet {
                    quiet_report_refresh(self.config.heal.neighbourhood.view_max_age)
                } else {
                    REPORT_REFRESH
                };
        }
    }

    /// Gives the healer's approval decision (reserved for the governance layer).
    pub fn approve(
        &mut self,
        incident: heal::IncidentId,
        approved: bool,
        now: routing::Timestamp,
    ) -> bool {
        self.healer
            .handle_approval(incident, approved, heal_time(now))
    }

    /// A neighbour report stream arrived from linked peer `from`.
    pub fn receive_report(&mut self, from: NodeId, bytes: &[u8], port: &mut MeshPort<'_>) {
        let report = match report::decode(bytes, |id| (port.key_of)(id)) {
            Ok(report) => report,
            Err(report::Refusal::Malformed) => {
                self.counters.reports_malformed += 1;
                return;
            }
            Err(report::Refusal::UnknownOrigin) => {
                self.counters.reports_unknown_origin += 1;
                return;
            }
            Err(report::Refusal::BadSignature) => {
                self.counters.reports_bad_signature += 1;
                return;
            }
        };
        if report.origin == self.local {
            self.counters.reports_stale += 1;
            return;
        }
        let newest = self.report_clock.get(&report.origin).copied();
        if newest.is_some_and(|t| report.body.sent_us <= t) {
            self.counters.reports_stale += 1;
            return;
        }
        if newest.is_none() && self.report_clock.len() >= MAX_REPORT_ORIGINS {
            self.counters.reports_stale += 1;
            return;
        }
        self.report_clock.insert(report.origin, report.body.sent_us);
        self.counters.reports_accepted += 1;
        let now = heal_time(port.now);
        if report.hops_left > 0 {
            let bytes = report::forwarded(&report);
            for peer in &port.linked {
                if *peer != from && *peer != report.origin {
                    port.outbox.push((*peer, bytes.clone()));
                    self.counters.reports_forwarded += 1;
                }
            }
        }
        if self.remote_under_action.len() < MAX_REPORT_ORIGINS
            || self.remote_under_action.contains_key(&report.origin)
        {
            self.remote_under_action
                .insert(report.origin, (report.body.under_action.clone(), port.now));
        }
        if let Some((incident, message)) = &report.body.notice {
            let notice = NoticeView {
                from: report.origin,
                incident: *incident,
                message: message.chars().take(executor::MAX_NOTICE_TEXT).collect(),
                received_unix_ms: port.unix_ms,
            };
            tracing::info!(from = %report.origin.short(), incident, message = %notice.message, "incident notice");
            self.publish(&StreamItem::Notice(&notice));
            if self.notices.len() >= MAX_NOTICES {
                self.notices.pop_front();
            }
            self.notices.push_back(notice);
        }
        self.observe(
            Observation::NeighbourView {
                reporter: report.origin,
                links: report.body.links,
            },
            now,
        );
        self.drain(port, now);
    }

    fn observe(&mut self, observation: Observation, now: heal::Timestamp) {
        self.counters.observations += 1;
        self.healer.handle_observation(observation, now);
    }

    /// Links as this node sees them: current neighbours, and vanished ones at 100 % loss until
    /// they are purged.
    fn sample_mesh(&mut self, port: &mut MeshPort<'_>, now: heal::Timestamp) {
        let neighbours = port.router.neighbours();
        let mut links = Vec::with_capacity(neighbours.len());
        for n in neighbours.iter().filter(|n| n.alive) {
            self.seen.insert(n.id, port.now);
            links.push(LinkSample {
                peer: n.id,
                loss_percent: f64::from(n.loss_pct),
                rtt_ms: f64::from(n.rtt_us) / 1000.0,
                tq: n.tq,
            });
        }
        let purge_after = self.config.peer_purge_after;
        let gone: Vec<NodeId> = self
            .seen
            .iter()
            .filter(|(_, last)| port.now.saturating_since(**last) >= purge_after)
            .map(|(id, _)| *id)
            .collect();
        for peer in gone {
            self.seen.remove(&peer);
            self.counters.peers_purged += 1;
            tracing::info!(peer = %peer.short(), "departed peer forgotten by the healing loop");
            self.healer.forget_peer(peer, now);
        }
        let routes = port.router.routes();
        let mut churn = 0u32;
        let mut next_hops = BTreeMap::new();
        for route in &routes {
            if self.next_hops.get(&route.destination) != Some(&route.next_hop) {
                churn = churn.saturating_add(1);
            }
            next_hops.insert(route.destination, route.next_hop);
        }
        churn = churn.saturating_add(
            self.next_hops
                .keys()
                .filter(|d| !next_hops.contains_key(*d))
                .count() as u32,
        );
        self.next_hops = next_hops;
        // Routed destinations, plus neighbours that vanished and are not forgotten yet: a node
        // that just died is still part of the mesh the blast radius is a share of.
        let mut members: BTreeSet<NodeId> = self.next_hops.keys().copied().collect();
        members.extend(self.seen.keys().copied());
        members.remove(&self.local);
        self.mesh_size = members.len() + 1;
        let fresh = self.config.heal.neighbourhood.view_max_age;
        self.remote_under_action
            .retain(|_, (_, at)| port.now.saturating_since(*at) <= fresh);
        let under_action: BTreeSet<NodeId> = self
            .remote_under_action
            .values()
            .flat_map(|(nodes, _)| nodes.iter().copied())
            .collect();
        self.healer.set_mesh_context(MeshContext {
            mesh_size: self.mesh_size,
            under_action,
        });
        let mut reported = links.clone();
        for peer in self.seen.keys() {
            if !reported.iter().any(|l| l.peer == *peer) {
                reported.push(LinkSample {
                    peer: *peer,
                    loss_percent: 100.0,
                    rtt_ms: 0.0,
                    tq: 0,
                });
            }
        }
        self.last_links = reported;
        self.observe(
            Observation::Mesh {
                links,
                route_count: u32::try_from(routes.len()).unwrap_or(u32::MAX),
                route_churn: churn,
            },
            now,
        );
    }

    /// Counter deltas the node exports (drops, refusals, errors): higher is worse.
    pub fn observe_counters(&mut self, counters: &BTreeMap<String, u64>, now: routing::Timestamp) {
        let now = heal_time(now);
        let watched = counters.iter().filter(|(name, _)| {
            ["dropped", "refused", "malformed", "errors", "spoofed"]
                .iter()
                .any(|w| name.contains(w))
        });
        let mut deltas = Vec::new();
        for (name, value) in watched {
            if let Some(before) = self.last_counters.get(name) {
                deltas.push((name.clone(), value.saturating_sub(*before)));
            }
            if self.last_counters.len() < heal::healer::MAX_METRICS
                || self.last_counters.contains_key(name)
            {
                self.last_counters.insert(name.clone(), *value);
            }
        }
        for (name, delta) in deltas {
            self.observe(
                Observation::Counter {
                    name,
                    value: delta as f64,
                },
                now,
            );
        }
    }

    /// Whether counters are due (the runtime gathers them only then).
    pub fn counters_due(&self) -> bool {
        tokio::time::Instant::now() >= self.next_node
    }

    fn sample_node(&mut self) {
        let Some(mut sampler) = self.sampler.take() else {
            return;
        };
        let done = self.completions_tx.clone();
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || {
                let sample = sampler.sample().map_err(|e| e.to_string());
                (sampler, sample)
            })
            .await;
            if let Ok((sampler, sample)) = result {
                let _ = done.send(Completion::NodeSample(sampler, sample)).await;
            }
        });
    }

    fn run_check(&mut self, spec: heal::CheckSpec, now: heal::Timestamp) {
        if let heal::CheckKind::Process(service) = &spec.kind {
            let state = self
                .supervisor
                .as_ref()
                .and_then(|s| s.handle().status(service))
                .map(|s| s.state);
            // A process being spawned is neither up nor down yet: no result, rather than a
            // failure that would open an incident at every start on a slow machine.
            if state == Some(ServiceState::Starting) {
                return;
            }
            let running = state == Some(ServiceState::Running);
            self.observe(
                Observation::Check {
                    name: spec.name.clone(),
                    passed: running,
                },
                now,
            );
            return;
        }
        if !self.checks_running.insert(spec.name.clone()) {
            // The previous run has not finished; its timeout ends it soon.
            return;
        }
        let done = self.completions_tx.clone();
        tokio::spawn(async move {
            let run = monitor::run_check(&spec).await;
            let _ = done.send(Completion::Check(run)).await;
        });
    }

    fn drain(&mut self, port: &mut MeshPort<'_>, now: heal::Timestamp) {
        // Mesh and healer actions answer at once and may make the healer emit more; the
        // number of rounds is bounded by the pending-action bound times the plan length.
        for _ in 0..(heal::healer::MAX_PENDING_ACTIONS * heal::playbook::MAX_STEPS) {
            let Some(request) = self.healer.poll_action() else {
                break;
            };
            self.counters.actions += 1;
            self.publish(&StreamItem::ActionStarted {
                at_unix_ms: port.unix_ms,
                request: &request,
            });
            tracing::info!(
                incident = request.incident.0,
                action = request.action.name(),
                rollback = request.rollback,
                "healing action"
            );
            match executor::route(&request.action) {
                Route::Local => {
                    if self.local_actions >= MAX_LOCAL_ACTIONS {
                        let report = Report {
                            result: ActionResult::Failed(format!(
                                "{} local actions already running",
                                MAX_LOCAL_ACTIONS
                            )),
                            detail: "executor busy".to_string(),
                            output: None,
                        };
                        self.action_done(request.id, request.incident, report, now, port.unix_ms);
                        continue;
                    }
                    self.local_actions += 1;
                    let executor = self.executor.clone();
                    let done = self.completions_tx.clone();
                    let budget = executor::budget(request.deadline, now);
                    tokio::spawn(async move {
                        // A panic inside the action is caught by its own task and reported as
                        // a failure, so a broken executor cannot take the loop down.
                        let action = request.action.clone();
                        let task =
                            tokio::spawn(async move { executor.run_local(&action, budget).await });
                        let report = match task.await {
                            Ok(report) => report,
                            Err(error) => Report {
                                result: ActionResult::Failed(format!("executor stopped: {error}")),
                                detail: format!("executor stopped: {error}"),
                                output: None,
                            },
                        };
                        let _ = done
                            .send(Completion::Action(request.id, request.incident, report))
                            .await;
                    });
                }
                Route::Mesh => {
                    let mut control = RouterControl {
                        port,
                        notices: Vec::new(),
                    };
                    let report =
                        executor::run_mesh(&mut control, request.incident, &request.action);
                    let notices = std::mem::take(&mut control.notices);
                    self.pending_notices.extend(notices);
                    self.action_done(request.id, request.incident, report, now, port.unix_ms);
                }
                Route::Healer => {
                    let report = executor::apply_threshold(&mut self.healer, &request.action);
                    self.action_done(request.id, request.incident, report, now, port.unix_ms);
                }
            }
        }
        while let Some(event) = self.healer.poll_event() {
            let release = match &event {
                Event::IncidentClosed(incident)
                    if incident.state == heal::IncidentState::Resolved =>
                {
                    held_by(incident)
                }
                _ => Vec::new(),
            };
            let snapshot = match &event {
                Event::PlanChosen { incident, .. }
                | Event::PlanFinished { incident, .. }
                | Event::ActionBlocked { incident, .. }
                | Event::ApprovalRequested { incident, .. } => Some(*incident),
                _ => None,
            };
            self.on_event(event, port.unix_ms);
            if let Some(incident) = snapshot.and_then(|id| self.healer.incident(id)).cloned()
                && let Some(store) = self.store.as_mut()
            {
                store.submit(Job::Snapshot {
                    incident: Box::new(incident),
                    wall_ms: i64::try_from(port.unix_ms).unwrap_or(i64::MAX),
                });
            }
            for peer in release {
                let still_suspect = self.healer.open_incidents().any(|i| match &i.root_cause {
                    heal::Entity::Node(n) => *n == peer,
                    heal::Entity::Link { to, .. } => *to == peer,
                    _ => false,
                });
                if !still_suspect && self.healer.release_peer(peer) {
                    port.router.set_neighbour_penalty(port.now, &peer, 0);
                    tracing::info!(peer = %peer.short(), "routing penalty lifted: the incident that set it is resolved");
                }
            }
        }
    }

    fn action_done(
        &mut self,
        id: heal::ActionId,
        incident: heal::IncidentId,
        report: Report,
        now: heal::Timestamp,
        unix_ms: u64,
    ) {
        let succeeded = report.result == ActionResult::Succeeded;
        if !succeeded {
            self.counters.actions_failed += 1;
            tracing::warn!(action = id.0, detail = %report.detail, "healing action failed");
        }
        self.publish(&StreamItem::ActionFinished {
            at_unix_ms: unix_ms,
            id: id.0,
            incident: incident.0,
            succeeded,
            detail: &report.detail,
        });
        self.healer.handle_action_result(id, report.result, now);
    }

    fn on_event(&mut self, event: Event, unix_ms: u64) {
        match &event {
            Event::IncidentOpened(incident) => {
                if self.opened_unix.len() < heal::healer::MAX_OPEN_INCIDENTS {
                    self.opened_unix.insert(incident.id.0, unix_ms);
                }
                self.incidents_total += 1;
                let sums = self.repair.entry(incident.kind).or_default();
                let mttd = incident
                    .detected_at
                    .saturating_since(incident.first_symptom_at)
                    .as_secs_f64()
                    * 1000.0;
                sums.incidents += 1;
                sums.mttd_sum += mttd;
                sums.mttd_max = sums.mttd_max.max(mttd);
                tracing::warn!(incident = incident.id.0, kind = incident.kind.as_str(), root_cause = ?incident.root_cause, confidence = incident.confidence, "incident opened");
            }
            Event::IncidentClosed(incident) => {
                let opened = self.opened_unix.remove(&incident.id.0).unwrap_or(unix_ms);
                if self.mesh_closed.len() >= summary::MAX_SUMMARY_INCIDENTS {
                    self.mesh_closed.pop_front();
                }
                self.mesh_closed
                    .push_back(summary_of(incident, opened, Some(unix_ms)));
                if let Some(resolved) = incident.resolved_at {
                    let sums = self.repair.entry(incident.kind).or_default();
                    let mttr = resolved
                        .saturating_since(incident.first_symptom_at)
                        .as_secs_f64()
                        * 1000.0;
                    sums.resolved += 1;
                    sums.mttr_sum += mttr;
                    sums.mttr_max = sums.mttr_max.max(mttr);
                }
                tracing::info!(incident = incident.id.0, kind = incident.kind.as_str(), state = ?incident.state, "incident closed");
            }
            Event::ActionBlocked { incident, reason } => {
                tracing::warn!(incident = incident.0, %reason, "healing action blocked");
            }
            _ => {}
        }
        self.publish(&StreamItem::Heal {
            at_unix_ms: unix_ms,
            event: &event,
        });
        let metrics = match &event {
            Event::IncidentOpened(_) => self.last_sample.as_ref().map(NodeSample::to_json),
            _ => None,
        };
        if let Some(store) = self.store.as_mut() {
            store.submit(Job::Event {
                event: Box::new(event),
                metrics,
                wall_ms: i64::try_from(unix_ms).unwrap_or(i64::MAX),
            });
        }
    }

    fn publish(&self, item: &StreamItem<'_>) {
        if self.events.receiver_count() == 0 {
            return;
        }
        if let Ok(text) = serde_json::to_string(item) {
            let _ = self.events.send(text.into());
        }
    }

    fn bad_links(&self) -> BTreeSet<NodeId> {
        let limit = self.healer.config().thresholds.network_loss;
        self.last_links
            .iter()
            .filter(|l| l.loss_percent > limit)
            .map(|l| l.peer)
            .collect()
    }

    /// Sends this node's report to every linked peer; returns whether it told of nothing the
    /// receivers act on (no bad link, nothing under action, no notice).
    fn send_report(&mut self, port: &mut MeshPort<'_>) -> bool {
        if port.linked.is_empty() {
            self.pending_notices.clear();
            return false;
        }
        self.reported_bad = self.bad_links();
        self.reported_under_action = self.healer.nodes_under_action();
        let notice = self
            .pending_notices
            .pop()
            .map(|n| (n.incident.0, n.message));
        let body = ReportBody {
            origin: self.local,
            sent_us: port.unix_ms.saturating_mul(1000).max(
                self.report_clock
                    .get(&self.local)
                    .map_or(0, |t| t.saturating_add(1)),
            ),
            links: self
                .last_links
                .iter()
                .take(report::MAX_REPORT_LINKS)
                .copied()
                .collect(),
            under_action: self
                .healer
                .nodes_under_action()
                .into_iter()
                .take(report::MAX_REPORT_UNDER_ACTION)
                .collect(),
            notice,
        };
        self.report_clock.insert(self.local, body.sent_us);
        // Bad links feed receivers' evidence and nodes under action their blast radius; open
        // incidents travel mesh-wide in the replicated incidents map instead.
        let quiet =
            self.reported_bad.is_empty() && body.under_action.is_empty() && body.notice.is_none();
        // A quiet report only keeps neighbours' views fresh for the neighbourhood detector, and
        // any two neighbours of a suspect are at most two hops apart: it goes no further.
        let hops = if quiet {
            self.config.report_hops.min(QUIET_REPORT_HOPS)
        } else {
            self.config.report_hops
        };
        let Some(bytes) = report::encode(&body, hops, |m| (port.sign)(m)) else {
            return false;
        };
        self.counters.reports_sent += 1;
        for peer in &port.linked {
            port.outbox.push((*peer, bytes.clone()));
        }
        quiet
    }
}
