//! `IncidentDb`: one SQLite connection holding incidents, runs and per-plan statistics, with
//! the upserts the node's event loop calls and the queries the API serves.
//!
//! # Calling contract
//!
//! - [`IncidentDb::open`] (or [`IncidentDb::open_in_memory`]) once per process: it migrates,
//!   starts a new *run* and marks incidents an earlier run left open as `interrupted`.
//! - [`IncidentDb::load_knowledge`] once, into the new healer's `knowledge_mut()`.
//! - [`IncidentDb::record_event`] for every event drained from the healer, in order. The
//!   open and close events carry whole snapshots; the others patch scalar columns.
//!   [`IncidentDb::upsert_incident`] stores a fresher snapshot at any time (e.g. after each
//!   step, so step results survive a crash).
//! - Queries at any time. Wall-clock times are arguments (Unix ms), so the crate reads no
//!   clock and tests choose their times.

use std::path::{Path, PathBuf};

use heal::{
    Event, Incident, IncidentId, IncidentType, Knowledge, PlanOutcome, PlanStats, Severity,
};
use rusqlite::{Connection, OptionalExtension, Row, named_params};

use crate::error::KnowledgeError;
use crate::record::{IncidentFilter, IncidentRecord, MAX_QUERY_LIMIT, RecordState, RepairTimes};
use crate::schema;

/// Incidents kept when the configuration says nothing (the seeds' figure).
pub const DEFAULT_RETENTION: usize = 1_000;

/// Largest retention accepted. A snapshot is bounded by `heal`'s per-incident limits (tens of
/// kilobytes at most), so this keeps the file in the low gigabytes and every list query and
/// retention scan fast on a small node.
pub const MAX_RETENTION: usize = 100_000;

/// Smallest size cap accepted: below a few pages SQLite cannot even hold the schema.
pub const MIN_SIZE_BYTES: u64 = 64 * 1024;

/// Settings of the incident database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConfig {
    /// Incidents kept; beyond it the oldest closed ones are deleted first.
    pub retention: usize,
    /// Largest file size; writes beyond it fail as "database or disk is full". `None` leaves
    /// the size to retention alone.
    pub max_size_bytes: Option<u64>,
}

impl Default for DbConfig {
    fn default() -> DbConfig {
        DbConfig {
            retention: DEFAULT_RETENTION,
            max_size_bytes: None,
        }
    }
}

impl DbConfig {
    /// Refuses out-of-range settings, naming the field.
    pub fn validate(&self) -> Result<(), KnowledgeError> {
        if self.retention == 0 || self.retention > MAX_RETENTION {
            return Err(KnowledgeError::Config {
                field: "retention",
                reason: format!("must be from 1 to {MAX_RETENTION} incidents"),
            });
        }
        if self.max_size_bytes.is_some_and(|b| b < MIN_SIZE_BYTES) {
            return Err(KnowledgeError::Config {
                field: "max_size_bytes",
                reason: format!("must be at least {MIN_SIZE_BYTES} bytes"),
            });
        }
        Ok(())
    }
}

/// The path errors name for an in-memory database.
pub const MEMORY_PATH: &str = ":memory:";

/// One connection to an incident database, in one run.
#[derive(Debug)]
pub struct IncidentDb {
    conn: Connection,
    path: PathBuf,
    run_id: i64,
    config: DbConfig,
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn as_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `heal`'s upper-case severity name (its serde name, so the JSON snapshot and the column
/// agree).
fn severity_name(severity: Severity) -> String {
    match serde_json::to_value(severity) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{severity:?}").to_uppercase(),
    }
}

/// Whether a plan outcome counts towards the plan's statistics: the same rule `heal` applies
/// to its own copy (refused, expired and blocked plans never ran to completion).
fn counts_for_stats(outcome: &PlanOutcome) -> bool {
    matches!(
        outcome,
        PlanOutcome::Succeeded | PlanOutcome::StepFailed | PlanOutcome::VerificationFailed
    )
}

const RECORD_COLUMNS: &str = "record_id, run_id, incident_id, node, kind, severity, state, \
     confidence, root_cause, plan, success, first_symptom_us, detected_us, resolved_us, mttd_us, \
     mttr_us, opened_wall_ms, updated_wall_ms, closed_wall_ms, incident_json, metrics_json";

/// A row before its text columns are parsed.
struct RawRow {
    record_id: i64,
    run_id: i64,
    incident_id: i64,
    node: String,
    kind: String,
    severity: String,
    state: String,
    confidence: f64,
    root_cause: String,
    plan: Option<String>,
    success: Option<bool>,
    first_symptom_us: i64,
    detected_us: i64,
    resolved_us: Option<i64>,
    mttd_us: i64,
    mttr_us: Option<i64>,
    opened_wall_ms: i64,
    updated_wall_ms: i64,
    closed_wall_ms: Option<i64>,
    incident_json: String,
    metrics_json: Option<String>,
}

fn raw_row(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        record_id: row.get(0)?,
        run_id: row.get(1)?,
        incident_id: row.get(2)?,
        node: row.get(3)?,
        kind: row.get(4)?,
        severity: row.get(5)?,
        state: row.get(6)?,
        confidence: row.get(7)?,
        root_cause: row.get(8)?,
        plan: row.get(9)?,
        success: row.get(10)?,
        first_symptom_us: row.get(11)?,
        detected_us: row.get(12)?,
        resolved_us: row.get(13)?,
        mttd_us: row.get(14)?,
        mttr_us: row.get(15)?,
        opened_wall_ms: row.get(16)?,
        updated_wall_ms: row.get(17)?,
        closed_wall_ms: row.get(18)?,
        incident_json: row.get(19)?,
        metrics_json: row.get(20)?,
    })
}

impl IncidentDb {
    /// Opens (creating if missing) the database at `path`, migrates it and starts a run.
    /// `wall_ms` is the current Unix time in milliseconds.
    pub fn open(path: &Path, config: DbConfig, wall_ms: i64) -> Result<IncidentDb, KnowledgeError> {
        config.validate()?;
        let conn = Connection::open(path).map_err(|source| KnowledgeError::Storage {
            path: path.to_path_buf(),
            source,
        })?;
        IncidentDb::start(conn, path.to_path_buf(), config, wall_ms)
    }

    /// An empty database in memory (the fallback, and for tests), with the same schema.
    pub fn open_in_memory(config: DbConfig, wall_ms: i64) -> Result<IncidentDb, KnowledgeError> {
        config.validate()?;
        let path = PathBuf::from(MEMORY_PATH);
        let conn = Connection::open_in_memory().map_err(|source| KnowledgeError::Storage {
            path: path.clone(),
            source,
        })?;
        IncidentDb::start(conn, path, config, wall_ms)
    }

    fn start(
        mut conn: Connection,
        path: PathBuf,
        config: DbConfig,
        wall_ms: i64,
    ) -> Result<IncidentDb, KnowledgeError> {
        schema::configure(&conn, &path, config.max_size_bytes)?;
        schema::migrate(&mut conn, &path)?;
        let mut db = IncidentDb {
            conn,
            path,
            run_id: 0,
            config,
        };
        db.run_id = db.begin_run(wall_ms)?;
        Ok(db)
    }

    /// Maps SQLite errors to ones naming this file; owns a copy of the path so the caller can
    /// still borrow the connection mutably.
    fn storage(&self) -> impl Fn(rusqlite::Error) -> KnowledgeError + use<> {
        let path = self.path.clone();
        move |source| KnowledgeError::Storage {
            path: path.clone(),
            source,
        }
    }

    /// Closes out earlier runs and registers this one. Runs without incidents are deleted,
    /// so the `runs` table never holds more rows than incidents plus one.
    fn begin_run(&mut self, wall_ms: i64) -> Result<i64, KnowledgeError> {
        let err = self.storage();
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "UPDATE incidents SET state = 'interrupted', closed = 1,
                 closed_wall_ms = :now, updated_wall_ms = :now WHERE closed = 0",
            named_params! {":now": wall_ms},
        )
        .map_err(&err)?;
        tx.execute(
            "DELETE FROM runs WHERE id NOT IN (SELECT DISTINCT run_id FROM incidents)",
            [],
        )
        .map_err(&err)?;
        tx.execute("INSERT INTO runs (started_wall_ms) VALUES (?1)", [wall_ms])
            .map_err(&err)?;
        let run = tx.last_insert_rowid();
        tx.commit().map_err(&err)?;
        Ok(run)
    }

    /// The file (or `:memory:`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This process's run id.
    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    /// The settings in force.
    pub fn config(&self) -> &DbConfig {
        &self.config
    }

    /// Stores what one healer event says. `metrics` is the node's latest sample, kept with an
    /// opened incident (the seeds' metrics snapshot); it is ignored for other events.
    pub fn record_event(
        &mut self,
        event: &Event,
        metrics: Option<&serde_json::Value>,
        wall_ms: i64,
    ) -> Result<(), KnowledgeError> {
        match event {
            Event::IncidentOpened(incident) => {
                self.upsert_incident(incident, metrics, wall_ms)?;
            }
            Event::IncidentClosed(incident) => {
                self.upsert_incident(incident, None, wall_ms)?;
            }
            Event::IncidentUpdated {
                id,
                severity,
                confidence,
            } => self.update_severity(*id, *severity, *confidence, wall_ms)?,
            Event::PlanChosen { incident, choice } => {
                self.set_plan(*incident, &choice.plan, None, wall_ms)?;
            }
            Event::PlanFinished {
                incident,
                kind,
                plan,
                outcome,
            } => {
                let success = *outcome == PlanOutcome::Succeeded;
                self.set_plan(*incident, plan, Some(success), wall_ms)?;
                if counts_for_stats(outcome) {
                    self.record_plan_result(*kind, plan, success, wall_ms)?;
                }
            }
            // Their content reaches the record through the next snapshot (notes, state).
            Event::ApprovalRequested { .. } | Event::ActionBlocked { .. } => {}
        }
        Ok(())
    }

    /// Inserts or replaces the snapshot of one incident of this run, then applies retention.
    /// Returns the record id.
    pub fn upsert_incident(
        &mut self,
        incident: &Incident,
        metrics: Option<&serde_json::Value>,
        wall_ms: i64,
    ) -> Result<i64, KnowledgeError> {
        let encode = |source| KnowledgeError::Encode {
            path: self.path.clone(),
            incident: incident.id.0,
            source,
        };
        let json = serde_json::to_string(incident).map_err(encode)?;
        let root_cause = serde_json::to_string(&incident.root_cause).map_err(encode)?;
        let metrics_json = metrics
            .map(serde_json::to_string)
            .transpose()
            .map_err(encode)?;
        let state = RecordState::of(&incident.state);
        let success = incident
            .outcomes
            .last()
            .map(|o| *o == PlanOutcome::Succeeded);
        let mttd = incident
            .detected_at
            .saturating_since(incident.first_symptom_at);
        let mttr = incident
            .resolved_at
            .map(|r| r.saturating_since(incident.first_symptom_at));
        let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let err = self.storage();
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "INSERT INTO incidents (run_id, incident_id, node, kind, severity, state, closed,
                 confidence, root_cause, plan, success, first_symptom_us, detected_us,
                 resolved_us, mttd_us, mttr_us, opened_wall_ms, updated_wall_ms, closed_wall_ms,
                 incident_json, metrics_json)
             VALUES (:run, :incident, :node, :kind, :severity, :state, :closed, :confidence,
                 :root_cause, :plan, :success, :first, :detected, :resolved, :mttd, :mttr,
                 :now, :now, CASE WHEN :closed THEN :now END, :json, :metrics)
             ON CONFLICT (run_id, incident_id) DO UPDATE SET
                 severity = excluded.severity, state = excluded.state, closed = excluded.closed,
                 confidence = excluded.confidence, root_cause = excluded.root_cause,
                 plan = COALESCE(excluded.plan, plan), success = excluded.success,
                 first_symptom_us = excluded.first_symptom_us,
                 detected_us = excluded.detected_us, resolved_us = excluded.resolved_us,
                 mttd_us = excluded.mttd_us, mttr_us = excluded.mttr_us,
                 updated_wall_ms = excluded.updated_wall_ms,
                 closed_wall_ms = CASE WHEN excluded.closed
                     THEN COALESCE(closed_wall_ms, excluded.closed_wall_ms) END,
                 incident_json = excluded.incident_json,
                 metrics_json = COALESCE(excluded.metrics_json, metrics_json)",
            named_params! {
                ":run": self.run_id,
                ":incident": as_i64(incident.id.0),
                ":node": incident.node.to_string(),
                ":kind": incident.kind.as_str(),
                ":severity": severity_name(incident.severity),
                ":state": state.as_str(),
                ":closed": state.is_closed(),
                ":confidence": incident.confidence,
                ":root_cause": root_cause,
                ":plan": incident.plans.last().map(|p| p.plan.as_str()),
                ":success": success,
                ":first": as_i64(incident.first_symptom_at.0),
                ":detected": as_i64(incident.detected_at.0),
                ":resolved": incident.resolved_at.map(|t| as_i64(t.0)),
                ":mttd": micros(mttd),
                ":mttr": mttr.map(micros),
                ":now": wall_ms,
                ":json": json,
                ":metrics": metrics_json,
            },
        )
        .map_err(&err)?;
        let record: i64 = tx
            .query_row(
                "SELECT record_id FROM incidents WHERE run_id = ?1 AND incident_id = ?2",
                [self.run_id, as_i64(incident.id.0)],
                |row| row.get(0),
            )
            .map_err(&err)?;
        apply_retention(&tx, self.config.retention).map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(record)
    }

    /// Patches severity and confidence of one incident of this run (column and snapshot).
    /// An incident this database never saw (opened before a fallback) is left to its close
    /// event, which carries the whole snapshot.
    pub fn update_severity(
        &mut self,
        id: IncidentId,
        severity: Severity,
        confidence: f64,
        wall_ms: i64,
    ) -> Result<(), KnowledgeError> {
        let name = severity_name(severity);
        self.conn
            .execute(
                "UPDATE incidents SET severity = :severity, confidence = :confidence,
                     updated_wall_ms = :now,
                     incident_json = json_set(incident_json, '$.severity', :severity,
                         '$.confidence', :confidence)
                 WHERE run_id = :run AND incident_id = :incident",
                named_params! {
                    ":severity": name,
                    ":confidence": confidence,
                    ":now": wall_ms,
                    ":run": self.run_id,
                    ":incident": as_i64(id.0),
                },
            )
            .map_err(self.storage())?;
        Ok(())
    }

    fn set_plan(
        &mut self,
        id: IncidentId,
        plan: &str,
        success: Option<bool>,
        wall_ms: i64,
    ) -> Result<(), KnowledgeError> {
        self.conn
            .execute(
                "UPDATE incidents SET plan = :plan, success = COALESCE(:success, success),
                     updated_wall_ms = :now
                 WHERE run_id = :run AND incident_id = :incident",
                named_params! {
                    ":plan": plan,
                    ":success": success,
                    ":now": wall_ms,
                    ":run": self.run_id,
                    ":incident": as_i64(id.0),
                },
            )
            .map_err(self.storage())?;
        Ok(())
    }

    /// Counts one finished plan run, with `heal`'s own update rule (so the stored figures and
    /// the healer's in-memory copy stay equal). Returns the new figures.
    pub fn record_plan_result(
        &mut self,
        kind: IncidentType,
        plan: &str,
        success: bool,
        wall_ms: i64,
    ) -> Result<PlanStats, KnowledgeError> {
        let err = self.storage();
        let tx = self.conn.transaction().map_err(&err)?;
        let current = tx
            .query_row(
                "SELECT successes, failures FROM plan_stats WHERE kind = ?1 AND plan = ?2",
                [kind.as_str(), plan],
                |row| {
                    Ok(PlanStats {
                        successes: row.get(0)?,
                        failures: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(&err)?;
        if current.is_none() {
            // A new pair beyond heal's table size could never be loaded back; the least
            // recently updated pair makes room.
            let rows: i64 = tx
                .query_row("SELECT count(*) FROM plan_stats", [], |row| row.get(0))
                .map_err(&err)?;
            if as_u64(rows) >= heal::plan::MAX_KNOWLEDGE_ENTRIES as u64 {
                tx.execute(
                    "DELETE FROM plan_stats WHERE (kind, plan) IN (SELECT kind, plan
                         FROM plan_stats ORDER BY updated_wall_ms LIMIT 1)",
                    [],
                )
                .map_err(&err)?;
            }
        }
        let mut knowledge = Knowledge::default();
        knowledge.set(kind, plan, current.unwrap_or_default());
        knowledge.record(kind, plan, success);
        let updated = knowledge.get(kind, plan);
        tx.execute(
            "INSERT INTO plan_stats (kind, plan, successes, failures, updated_wall_ms)
             VALUES (:kind, :plan, :successes, :failures, :now)
             ON CONFLICT (kind, plan) DO UPDATE SET successes = excluded.successes,
                 failures = excluded.failures, updated_wall_ms = excluded.updated_wall_ms",
            named_params! {
                ":kind": kind.as_str(),
                ":plan": plan,
                ":successes": updated.successes,
                ":failures": updated.failures,
                ":now": wall_ms,
            },
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(updated)
    }

    /// Every stored (type, plan, statistics) triple; rows of unknown types are skipped.
    pub fn plan_stats(&self) -> Result<Vec<(IncidentType, String, PlanStats)>, KnowledgeError> {
        let err = self.storage();
        let mut stmt = self
            .conn
            .prepare("SELECT kind, plan, successes, failures FROM plan_stats ORDER BY kind, plan")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    PlanStats {
                        successes: row.get(2)?,
                        failures: row.get(3)?,
                    },
                ))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, plan, stats) = row.map_err(&err)?;
            if let Some(kind) = IncidentType::parse(&kind) {
                out.push((kind, plan, stats));
            }
        }
        Ok(out)
    }

    /// Copies the stored statistics into a healer's knowledge; returns how many were taken
    /// (fewer than stored only if the knowledge table is full).
    pub fn load_knowledge(&self, knowledge: &mut Knowledge) -> Result<usize, KnowledgeError> {
        let mut loaded = 0;
        for (kind, plan, stats) in self.plan_stats()? {
            if knowledge.set(kind, &plan, stats) {
                loaded += 1;
            }
        }
        Ok(loaded)
    }

    /// Stored incidents, newest first, filtered.
    pub fn recent(&self, filter: &IncidentFilter) -> Result<Vec<IncidentRecord>, KnowledgeError> {
        let err = self.storage();
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM incidents
             WHERE (:kind IS NULL OR kind = :kind) AND (:state IS NULL OR state = :state)
             ORDER BY record_id DESC LIMIT :limit"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(&err)?;
        let limit = filter.limit.min(MAX_QUERY_LIMIT);
        let rows = stmt
            .query_map(
                named_params! {
                    ":kind": filter.kind.map(IncidentType::as_str),
                    ":state": filter.state.map(RecordState::as_str),
                    ":limit": as_i64(limit as u64),
                },
                raw_row,
            )
            .map_err(&err)?;
        let mut out = Vec::with_capacity(limit);
        for row in rows {
            out.push(self.parse(row.map_err(&err)?)?);
        }
        Ok(out)
    }

    /// One stored incident by record id.
    pub fn get(&self, record_id: i64) -> Result<Option<IncidentRecord>, KnowledgeError> {
        let raw = self
            .conn
            .query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM incidents WHERE record_id = ?1"),
                [record_id],
                raw_row,
            )
            .optional()
            .map_err(self.storage())?;
        raw.map(|raw| self.parse(raw)).transpose()
    }

    /// The record of one incident of this run, by `heal`'s id.
    pub fn find(&self, id: IncidentId) -> Result<Option<IncidentRecord>, KnowledgeError> {
        let raw = self
            .conn
            .query_row(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM incidents WHERE run_id = ?1 AND incident_id = ?2"
                ),
                [self.run_id, as_i64(id.0)],
                raw_row,
            )
            .optional()
            .map_err(self.storage())?;
        raw.map(|raw| self.parse(raw)).transpose()
    }

    /// Number of stored incidents.
    pub fn count(&self) -> Result<usize, KnowledgeError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM incidents", [], |row| row.get(0))
            .map_err(self.storage())?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// MTTD and MTTR per incident type, over every stored incident (types never seen are
    /// left out). MTTR counts resolved incidents only: a superseded or interrupted one never
    /// recovered under its own name.
    pub fn repair_times(&self) -> Result<Vec<RepairTimes>, KnowledgeError> {
        let err = self.storage();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT kind, count(*), avg(mttd_us), max(mttd_us),
                     sum(state = 'resolved' AND mttr_us IS NOT NULL),
                     avg(CASE WHEN state = 'resolved' THEN mttr_us END),
                     max(CASE WHEN state = 'resolved' THEN mttr_us END)
                 FROM incidents GROUP BY kind ORDER BY kind",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, f64>(2)?,
                    row.get::<_, f64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<f64>>(5)?,
                    row.get::<_, Option<f64>>(6)?,
                ))
            })
            .map_err(&err)?;
        let ms = |us: f64| us / 1_000.0;
        let mut out = Vec::new();
        for row in rows {
            let (kind, count, mttd_mean, mttd_max, resolved, mttr_mean, mttr_max) =
                row.map_err(&err)?;
            let Some(kind) = IncidentType::parse(&kind) else {
                continue;
            };
            out.push(RepairTimes {
                kind,
                incidents: as_u64(count),
                mttd_ms_mean: ms(mttd_mean),
                mttd_ms_max: ms(mttd_max),
                resolved: as_u64(resolved),
                mttr_ms_mean: mttr_mean.map(ms),
                mttr_ms_max: mttr_max.map(ms),
            });
        }
        Ok(out)
    }

    fn parse(&self, raw: RawRow) -> Result<IncidentRecord, KnowledgeError> {
        let bad = |reason: String| KnowledgeError::BadRow {
            path: self.path.clone(),
            record: raw.record_id,
            reason,
        };
        let kind = IncidentType::parse(&raw.kind)
            .ok_or_else(|| bad(format!("unknown incident type `{}`", raw.kind)))?;
        let state = RecordState::parse(&raw.state)
            .ok_or_else(|| bad(format!("unknown state `{}`", raw.state)))?;
        let json = |text: &str, what: &str| {
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| bad(format!("{what}: {e}")))
        };
        let incident = json(&raw.incident_json, "snapshot")?;
        let root_cause = json(&raw.root_cause, "root cause")?;
        let metrics = raw
            .metrics_json
            .as_deref()
            .map(|m| json(m, "metrics"))
            .transpose()?;
        Ok(IncidentRecord {
            record_id: raw.record_id,
            run_id: raw.run_id,
            incident_id: as_u64(raw.incident_id),
            node: raw.node,
            kind,
            severity: raw.severity,
            state,
            confidence: raw.confidence,
            root_cause,
            plan: raw.plan,
            success: raw.success,
            first_symptom_us: as_u64(raw.first_symptom_us),
            detected_us: as_u64(raw.detected_us),
            resolved_us: raw.resolved_us.map(as_u64),
            mttd_us: as_u64(raw.mttd_us),
            mttr_us: raw.mttr_us.map(as_u64),
            opened_wall_ms: raw.opened_wall_ms,
            updated_wall_ms: raw.updated_wall_ms,
            closed_wall_ms: raw.closed_wall_ms,
            duration_ms: raw
                .closed_wall_ms
                .map(|c| c.saturating_sub(raw.opened_wall_ms)),
            incident,
            metrics,
        })
    }
}

/// Deletes the oldest closed incidents until at most `retention` remain. Open incidents are
/// never deleted (at most `heal::healer::MAX_OPEN_INCIDENTS` exist), so a retention below that
/// can be exceeded while they stay open.
fn apply_retention(tx: &rusqlite::Transaction<'_>, retention: usize) -> rusqlite::Result<usize> {
    let count: i64 = tx.query_row("SELECT count(*) FROM incidents", [], |row| row.get(0))?;
    let excess = count.saturating_sub(as_i64(retention as u64));
    if excess <= 0 {
        return Ok(0);
    }
    tx.execute(
        "DELETE FROM incidents WHERE record_id IN (SELECT record_id FROM incidents
             WHERE closed = 1 ORDER BY record_id LIMIT ?1)",
        [excess],
    )
}
