//! Integration tests of the incident database on real SQLite files in temporary directories:
//! migrations, the incident lifecycle, retention, statistics, queries and the fallback.

mod db;
mod store;

use heal::incident::{PlanChoice, StepRecord};
use heal::{
    Action, Entity, Incident, IncidentId, IncidentState, IncidentType, PlanOutcome, StepOutcome,
    Timestamp,
};
use wire::NodeId;

/// The node every test incident comes from.
pub fn local() -> NodeId {
    NodeId([7; NodeId::LEN])
}

/// An open incident with its fault at `first_ms` and detection at `detected_ms` (run clock).
pub fn incident(id: u64, kind: IncidentType, first_ms: u64, detected_ms: u64) -> Incident {
    Incident {
        id: IncidentId(id),
        node: local(),
        kind,
        severity: kind.base_severity(),
        root_cause: Entity::Service {
            check: "web".to_string(),
            needs_mesh: false,
            process: false,
        },
        alternatives: Vec::new(),
        confidence: 0.75,
        evidence: Vec::new(),
        first_symptom_at: Timestamp::from_millis(first_ms),
        detected_at: Timestamp::from_millis(detected_ms),
        resolved_at: None,
        state: IncidentState::Open,
        plans: Vec::new(),
        steps: Vec::new(),
        outcomes: Vec::new(),
        notes: Vec::new(),
    }
}

/// `incident` after a successful restart plan and recovery at `resolved_ms`.
pub fn resolved(mut incident: Incident, resolved_ms: u64) -> Incident {
    incident.plans.push(PlanChoice {
        plan: "restart".to_string(),
        reason: "only candidate".to_string(),
    });
    incident.steps.push(StepRecord {
        plan: "restart".to_string(),
        step: 0,
        action: Action::RestartService {
            service: "web".to_string(),
        },
        rollback: false,
        started_at: incident.detected_at,
        finished_at: Timestamp::from_millis(resolved_ms),
        outcome: StepOutcome::Succeeded,
    });
    incident.outcomes.push(PlanOutcome::Succeeded);
    incident.resolved_at = Some(Timestamp::from_millis(resolved_ms));
    incident.state = IncidentState::Resolved;
    incident
}
