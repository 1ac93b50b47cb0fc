//! Rows as read back: [`IncidentRecord`] (the seeds' record shape), the list filter and the
//! per-type MTTD/MTTR aggregates.

use heal::{IncidentState, IncidentType};
use serde::Serialize;

/// Most rows one query returns: a page for the API and `ctl incidents`; callers page with
/// filters rather than pulling the whole table into memory.
pub const MAX_QUERY_LIMIT: usize = 1_000;

/// Where a stored incident stands. `Interrupted` marks incidents a previous run left open:
/// nobody will close them, so retention may delete them like closed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Detected; no plan running.
    Open,
    /// A plan waits for approval.
    AwaitingApproval,
    /// A plan is executing.
    Executing,
    /// The symptoms cleared.
    Resolved,
    /// Its evidence moved to another incident.
    Superseded,
    /// Left open by a run that ended.
    Interrupted,
}

impl RecordState {
    /// Every state.
    pub const ALL: [RecordState; 6] = [
        RecordState::Open,
        RecordState::AwaitingApproval,
        RecordState::Executing,
        RecordState::Resolved,
        RecordState::Superseded,
        RecordState::Interrupted,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Open => "open",
            RecordState::AwaitingApproval => "awaiting_approval",
            RecordState::Executing => "executing",
            RecordState::Resolved => "resolved",
            RecordState::Superseded => "superseded",
            RecordState::Interrupted => "interrupted",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<RecordState> {
        RecordState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state of a live incident.
    pub fn of(state: &IncidentState) -> RecordState {
        match state {
            IncidentState::Open => RecordState::Open,
            IncidentState::AwaitingApproval { .. } => RecordState::AwaitingApproval,
            IncidentState::Executing => RecordState::Executing,
            IncidentState::Resolved => RecordState::Resolved,
            IncidentState::Superseded { .. } => RecordState::Superseded,
        }
    }

    /// Whether nothing will change the incident any more.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            RecordState::Resolved | RecordState::Superseded | RecordState::Interrupted
        )
    }
}

/// Which incidents a list query returns, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentFilter {
    /// Only this type.
    pub kind: Option<IncidentType>,
    /// Only this state.
    pub state: Option<RecordState>,
    /// At most this many (capped at [`MAX_QUERY_LIMIT`]).
    pub limit: usize,
}

impl Default for IncidentFilter {
    fn default() -> IncidentFilter {
        IncidentFilter {
            kind: None,
            state: None,
            limit: 50,
        }
    }
}

/// One stored incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRecord {
    /// Stable id across runs (what `ctl incident <id>` takes).
    pub record_id: i64,
    /// The process run that detected it.
    pub run_id: i64,
    /// `heal`'s id within that run.
    pub incident_id: u64,
    /// The detecting node, hex.
    pub node: String,
    /// Type.
    pub kind: IncidentType,
    /// Severity as `heal` names it (`LOW` .. `CRITICAL`).
    pub severity: String,
    /// Where it stands.
    pub state: RecordState,
    /// Root-cause confidence.
    pub confidence: f64,
    /// The blamed entity, as `heal` serialises it.
    pub root_cause: serde_json::Value,
    /// The last plan chosen, if any.
    pub plan: Option<String>,
    /// Whether the last finished plan succeeded; `None` until a plan finished.
    pub success: Option<bool>,
    /// First anomalous sample (run clock, µs).
    pub first_symptom_us: u64,
    /// Detection (run clock, µs).
    pub detected_us: u64,
    /// Symptoms cleared (run clock, µs).
    pub resolved_us: Option<u64>,
    /// Time to detect: detection minus first symptom, µs.
    pub mttd_us: u64,
    /// Time to repair: resolution minus first symptom, µs.
    pub mttr_us: Option<u64>,
    /// When it was stored (Unix ms).
    pub opened_wall_ms: i64,
    /// Last write (Unix ms).
    pub updated_wall_ms: i64,
    /// When it was closed (Unix ms).
    pub closed_wall_ms: Option<i64>,
    /// Open to close, wall clock, ms.
    pub duration_ms: Option<i64>,
    /// The full `heal::Incident` snapshot: evidence, plans with reasons, each step's result.
    pub incident: serde_json::Value,
    /// Metrics the node sampled when the incident opened.
    pub metrics: Option<serde_json::Value>,
}

/// MTTD and MTTR of one incident type over the stored incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepairTimes {
    /// Type.
    pub kind: IncidentType,
    /// Incidents stored.
    pub incidents: u64,
    /// Mean time to detect, ms.
    pub mttd_ms_mean: f64,
    /// Longest time to detect, ms.
    pub mttd_ms_max: f64,
    /// Incidents whose symptoms cleared (the MTTR sample).
    pub resolved: u64,
    /// Mean time to repair, ms; `None` when nothing resolved.
    pub mttr_ms_mean: Option<f64>,
    /// Longest time to repair, ms.
    pub mttr_ms_max: Option<f64>,
}
