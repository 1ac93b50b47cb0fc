//! MAPE-K self-healing core: monitors, detectors, root-cause analysis, playbook planning and guarded execution, all driven by observations and `now`.
//!
//! The crate is *sans-IO*, like the routing core: [`Healer`] takes observations, action
//! results, approvals and time as arguments and hands back incidents, events and actions to
//! poll. It reads no clock, spawns nothing, touches no file or socket and draws no global
//! randomness, so the node and the simulator drive the same loop and a seed reproduces a run.
//!
//! # Design choices
//!
//! - **Monitor.** The node measures (sysinfo, the routing snapshot, health checks it runs) and
//!   feeds [`Observation`]s; checks are declared here ([`CheckDecl`]) so their validation and
//!   the passing/critical thresholds are pure and tested.
//! - **Analyze.** Every scalar metric has a static threshold where policy gives one and a
//!   one-sided EWMA z-score with warm-up; hysteresis turns `open_after` anomalous samples into a
//!   *symptom* and `close_after` normal ones back. Anomalous samples do not move the baseline,
//!   so a lasting fault never becomes normal. Symptoms sit on a dependency graph
//!   (node -> links -> routes -> services, [`cause`]); candidates are ranked by how many
//!   symptoms they explain without appearing after them, and each group of symptoms under its
//!   best cause is one incident. The neighbourhood detector adds a node as a candidate when its
//!   neighbours all see bad links to it, which then out-explains each link on its own.
//! - **Confidence** is a noisy-OR of per-symptom evidence scaled by the share of evidence the
//!   best rival explains ([`cause::confidence`]), so it rises with sustained evidence and falls
//!   with ambiguity; it is never a constant.
//! - **Plan.** Playbooks are YAML in the seeds' `recovery_plan` shape ([`playbook`]); defaults
//!   are compiled in from `playbooks/`. Among applicable playbooks for the incident type the
//!   loop draws from each one's Beta posterior of past success (Thompson sampling, seeded per
//!   incident) and writes the figures into the incident.
//! - **Execute.** One step at a time: condition, limits (circuit breaker per window, blast
//!   radius as a share of the mesh), action with a deadline, optional per-step verification,
//!   final verification (symptoms cleared), rollback of executed steps in reverse order on any
//!   failure. CRITICAL incidents whose plan is marked `needs_approval` wait for a decision and
//!   expire.
//! - **Bounds.** Every table and queue has a named limit with its reason (see [`healer`]).
//!
//! # Layout
//!
//! - `healer.rs`: [`Healer`], the loop, its calling contract, bounds and events;
//!   `healer/analyze.rs` turns observations into symptoms and incidents, `healer/run.rs`
//!   chooses plans and drives their steps;
//! - `observation.rs`: inputs and metric names;
//! - `check.rs`: health-check declarations and their state machine;
//! - `detect.rs`: EWMA, z-score, hysteresis;
//! - `cause.rs`: dependency graph, ranking, grouping, confidence;
//! - `incident.rs`: incidents, types, severities, records;
//! - `playbook.rs`: YAML playbooks, actions, defaults;
//! - `plan.rs`: per-plan statistics and Thompson sampling;
//! - `execute.rs`: actions, results, plan phases, circuit breaker, blast radius;
//! - `config.rs`: the `mapk` configuration section;
//! - `time.rs`: timestamps and durations.

pub mod cause;
pub mod check;
pub mod config;
pub mod detect;
pub mod execute;
pub mod healer;
pub mod incident;
pub mod observation;
pub mod plan;
pub mod playbook;
pub mod time;

pub use cause::{Entity, Symptom};
pub use check::{CheckDecl, CheckKind, CheckSpec, CheckStatus, validate_checks};
pub use config::{ConfigError, HealConfig, ThresholdName, Thresholds};
pub use execute::{ActionId, ActionRequest, ActionResult, MeshContext};
pub use healer::{Event, Healer, ReloadSummary, Stats};
pub use incident::{
    Incident, IncidentId, IncidentState, IncidentType, PlanOutcome, Severity, StepOutcome,
};
pub use observation::{LinkSample, MetricKey, Observation};
pub use plan::{Knowledge, PlanStats};
pub use playbook::{
    Action, Condition, PeerRef, Playbook, PlaybookError, PlaybookSet, parse_playbook,
};
pub use time::Timestamp;
