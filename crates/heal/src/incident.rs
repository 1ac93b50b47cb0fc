//! `Incident`: what the loop detected, what it blames, how sure it is, what it did and when
//! (the timestamps MTTD and MTTR are computed from).

use serde::{Deserialize, Serialize};
use wire::NodeId;

use crate::cause::{Entity, Symptom};
use crate::playbook::Action;
use crate::time::Timestamp;

/// Identifier of an incident, unique within one `Healer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct IncidentId(pub u64);

/// Kind of incident; names as in the seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IncidentType {
    /// A node is down or cannot reach its neighbours.
    NodeFailure,
    /// One link loses packets or is slow.
    LinkDegraded,
    /// Routes were lost: the mesh split.
    NetworkPartition,
    /// A health-checked service fails.
    ServiceDown,
    /// Memory use beyond threshold.
    MemoryPressure,
    /// CPU use beyond threshold.
    CpuOverload,
    /// Disk use beyond threshold.
    DiskPressure,
}

impl IncidentType {
    /// Every type, in declaration order.
    pub const ALL: [IncidentType; 7] = [
        IncidentType::NodeFailure,
        IncidentType::LinkDegraded,
        IncidentType::NetworkPartition,
        IncidentType::ServiceDown,
        IncidentType::MemoryPressure,
        IncidentType::CpuOverload,
        IncidentType::DiskPressure,
    ];

    /// The seeds' upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentType::NodeFailure => "NODE_FAILURE",
            IncidentType::LinkDegraded => "LINK_DEGRADED",
            IncidentType::NetworkPartition => "NETWORK_PARTITION",
            IncidentType::ServiceDown => "SERVICE_DOWN",
            IncidentType::MemoryPressure => "MEMORY_PRESSURE",
            IncidentType::CpuOverload => "CPU_OVERLOAD",
            IncidentType::DiskPressure => "DISK_PRESSURE",
        }
    }

    /// Parses the upper-case name.
    pub fn parse(text: &str) -> Option<IncidentType> {
        IncidentType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Severity before any escalation: losing routes or a node hurts more traffic than one
    /// slow link or a busy CPU.
    pub fn base_severity(self) -> Severity {
        match self {
            IncidentType::NetworkPartition => Severity::Critical,
            IncidentType::NodeFailure | IncidentType::ServiceDown => Severity::High,
            IncidentType::LinkDegraded
            | IncidentType::MemoryPressure
            | IncidentType::CpuOverload
            | IncidentType::DiskPressure => Severity::Medium,
        }
    }
}

/// Severity levels of the seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// Informational.
    Low,
    /// Degraded, not down.
    Medium,
    /// Something is down.
    High,
    /// Much of the mesh is affected, or healing itself is failing.
    Critical,
}

impl Severity {
    /// One level up, saturating.
    pub fn raised(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }
}

/// Where an incident's handling stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// Detected; no plan running (none applicable, blocked, or attempts used up).
    Open,
    /// A plan waits for an approval decision.
    AwaitingApproval {
        /// When the wait ends with expiry.
        expires_at: Timestamp,
    },
    /// A plan is executing.
    Executing,
    /// The symptoms cleared.
    Resolved,
    /// Its symptoms now belong to another incident with a better-ranked root cause.
    Superseded {
        /// The incident that took them over.
        by: IncidentId,
    },
}

/// Why a plan was chosen (the issue asks that the incident says so).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanChoice {
    /// The chosen playbook's id.
    pub plan: String,
    /// Human-readable reason: the rule and the figures for every candidate.
    pub reason: String,
}

/// How one step went.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The action reported success.
    Succeeded,
    /// The action reported failure.
    Failed {
        /// The executor's message.
        message: String,
    },
    /// No result within the step's timeout.
    TimedOut,
    /// The step's condition was false.
    Skipped,
    /// The circuit breaker or blast radius stopped the step.
    Blocked {
        /// Which limit.
        reason: String,
    },
}

/// One executed (or rolled back) step, for the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// Playbook id.
    pub plan: String,
    /// Step index in the playbook.
    pub step: usize,
    /// What was asked.
    pub action: Action,
    /// Whether this was a rollback.
    pub rollback: bool,
    /// When it was emitted.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
    /// How it went.
    pub outcome: StepOutcome,
}

/// How a plan ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanOutcome {
    /// All steps ran and the symptoms cleared.
    Succeeded,
    /// A step failed or timed out; rollback ran.
    StepFailed,
    /// Steps ran but the symptoms stayed; rollback ran.
    VerificationFailed,
    /// The circuit breaker or blast radius stopped it; rollback ran for what had been done.
    Blocked,
    /// Approval was refused.
    Rejected,
    /// Approval did not come in time.
    Expired,
    /// The symptoms cleared while the plan awaited approval; it never ran.
    Withdrawn,
}

/// An incident: detection, diagnosis, handling and timing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// Identifier.
    pub id: IncidentId,
    /// The node that detected it.
    pub node: NodeId,
    /// Kind.
    pub kind: IncidentType,
    /// Severity, raised when healing itself is stopped (circuit breaker) or fails.
    pub severity: Severity,
    /// Best-ranked cause.
    pub root_cause: Entity,
    /// Other candidates that explain part of the evidence, best first.
    pub alternatives: Vec<Entity>,
    /// See [`crate::cause::confidence`].
    pub confidence: f64,
    /// The symptoms backing it (latest analysis).
    pub evidence: Vec<Symptom>,
    /// First anomalous sample of the earliest symptom (fault onset as far as we can see).
    pub first_symptom_at: Timestamp,
    /// When the incident was opened; `detected_at - first_symptom_at` is the detection delay.
    pub detected_at: Timestamp,
    /// When the symptoms cleared (MTTR ends here).
    pub resolved_at: Option<Timestamp>,
    /// Handling state.
    pub state: IncidentState,
    /// Plan choices made, in order.
    pub plans: Vec<PlanChoice>,
    /// Steps run, in order.
    pub steps: Vec<StepRecord>,
    /// How each plan ended, in order.
    pub outcomes: Vec<PlanOutcome>,
    /// Free-form notes (why nothing was done, limits hit), bounded.
    pub notes: Vec<String>,
}

/// Notes kept per incident; later notes replace the oldest, since the record must stay small
/// enough to store and gossip.
pub const MAX_NOTES: usize = 16;

/// Step records kept per incident: max plan attempts (10) × (steps + rollbacks) fits.
pub const MAX_STEP_RECORDS: usize = 10 * 2 * crate::playbook::MAX_STEPS;

impl Incident {
    /// Adds a note, dropping the oldest beyond [`MAX_NOTES`].
    pub fn note(&mut self, text: impl Into<String>) {
        if self.notes.len() >= MAX_NOTES {
            self.notes.remove(0);
        }
        self.notes.push(text.into());
    }

    /// Whether the incident is still open (not resolved or superseded).
    pub fn is_open(&self) -> bool {
        !matches!(
            self.state,
            IncidentState::Resolved | IncidentState::Superseded { .. }
        )
    }

    pub(crate) fn record_step(&mut self, record: StepRecord) {
        if self.steps.len() >= MAX_STEP_RECORDS {
            self.steps.remove(0);
        }
        self.steps.push(record);
    }
}
