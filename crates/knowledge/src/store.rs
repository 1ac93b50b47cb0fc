//! `Store`: the incident database the node holds, which moves to memory instead of failing.
//!
//! A corrupt, non-SQLite, unreadable, read-only or full `incidents.db` must not stop the
//! healing loop (issue: "reported and the loop keeps running in memory"). On the first
//! storage error the store opens an empty in-memory database with the same schema, retries the
//! operation there, and from then on [`Store::degraded`] says why. The file is left as it
//! was for the operator to inspect; the next start tries it again.
//!
//! Every call is synchronous SQLite work, and writes wait for `fsync`: the async runtime
//! should own the store on a blocking task (or `spawn_blocking` per batch of events), not call
//! it on the event loop.

use std::path::{Path, PathBuf};

use heal::{Event, Incident, IncidentId, IncidentType, Knowledge, PlanStats};

use crate::db::{DbConfig, IncidentDb};
use crate::error::KnowledgeError;
use crate::record::{IncidentFilter, IncidentRecord, RepairTimes};

/// The incident database with its in-memory fallback.
#[derive(Debug)]
pub struct Store {
    db: IncidentDb,
    /// The file asked for, kept so reports name it even after the fallback.
    path: PathBuf,
    /// Why the store runs in memory, if it does.
    degraded: Option<String>,
}

impl Store {
    /// Opens `path`, or falls back to memory when the file cannot be used. Fails only on a
    /// refused setting (or if even an in-memory database cannot be made).
    pub fn open(path: &Path, config: DbConfig, wall_ms: i64) -> Result<Store, KnowledgeError> {
        config.validate()?;
        match IncidentDb::open(path, config.clone(), wall_ms) {
            Ok(db) => Ok(Store {
                db,
                path: path.to_path_buf(),
                degraded: None,
            }),
            Err(e) if e.is_storage() => Ok(Store {
                db: IncidentDb::open_in_memory(config, wall_ms)?,
                path: path.to_path_buf(),
                degraded: Some(degraded_reason(&e)),
            }),
            Err(e) => Err(e),
        }
    }

    /// Why incidents are kept in memory only (naming the file and SQLite's reason), or `None`
    /// while the file works. The node shows this in its status and logs it once.
    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }

    /// The file this store was opened for.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `op`; on a storage error of the file, moves to memory and runs it again there.
    fn with_db<T>(
        &mut self,
        wall_ms: i64,
        mut op: impl FnMut(&mut IncidentDb) -> Result<T, KnowledgeError>,
    ) -> Result<T, KnowledgeError> {
        match op(&mut self.db) {
            Err(e) if e.is_storage() && self.degraded.is_none() => {
                self.db = IncidentDb::open_in_memory(self.db.config().clone(), wall_ms)?;
                self.degraded = Some(degraded_reason(&e));
                op(&mut self.db)
            }
            other => other,
        }
    }

    /// See [`IncidentDb::record_event`].
    pub fn record_event(
        &mut self,
        event: &Event,
        metrics: Option<&serde_json::Value>,
        wall_ms: i64,
    ) -> Result<(), KnowledgeError> {
        self.with_db(wall_ms, |db| db.record_event(event, metrics, wall_ms))
    }

    /// See [`IncidentDb::upsert_incident`].
    pub fn upsert_incident(
        &mut self,
        incident: &Incident,
        metrics: Option<&serde_json::Value>,
        wall_ms: i64,
    ) -> Result<i64, KnowledgeError> {
        self.with_db(wall_ms, |db| db.upsert_incident(incident, metrics, wall_ms))
    }

    /// See [`IncidentDb::record_plan_result`].
    pub fn record_plan_result(
        &mut self,
        kind: IncidentType,
        plan: &str,
        success: bool,
        wall_ms: i64,
    ) -> Result<PlanStats, KnowledgeError> {
        self.with_db(wall_ms, |db| {
            db.record_plan_result(kind, plan, success, wall_ms)
        })
    }

    /// See [`IncidentDb::load_knowledge`].
    pub fn load_knowledge(
        &mut self,
        knowledge: &mut Knowledge,
        wall_ms: i64,
    ) -> Result<usize, KnowledgeError> {
        self.with_db(wall_ms, |db| db.load_knowledge(knowledge))
    }

    /// See [`IncidentDb::plan_stats`].
    pub fn plan_stats(
        &mut self,
        wall_ms: i64,
    ) -> Result<Vec<(IncidentType, String, PlanStats)>, KnowledgeError> {
        self.with_db(wall_ms, |db| db.plan_stats())
    }

    /// See [`IncidentDb::recent`].
    pub fn recent(
        &mut self,
        filter: &IncidentFilter,
        wall_ms: i64,
    ) -> Result<Vec<IncidentRecord>, KnowledgeError> {
        self.with_db(wall_ms, |db| db.recent(filter))
    }

    /// See [`IncidentDb::get`].
    pub fn get(
        &mut self,
        record_id: i64,
        wall_ms: i64,
    ) -> Result<Option<IncidentRecord>, KnowledgeError> {
        self.with_db(wall_ms, |db| db.get(record_id))
    }

    /// See [`IncidentDb::find`].
    pub fn find(
        &mut self,
        id: IncidentId,
        wall_ms: i64,
    ) -> Result<Option<IncidentRecord>, KnowledgeError> {
        self.with_db(wall_ms, |db| db.find(id))
    }

    /// See [`IncidentDb::repair_times`].
    pub fn repair_times(&mut self, wall_ms: i64) -> Result<Vec<RepairTimes>, KnowledgeError> {
        self.with_db(wall_ms, |db| db.repair_times())
    }

    /// See [`IncidentDb::count`].
    pub fn count(&mut self, wall_ms: i64) -> Result<usize, KnowledgeError> {
        self.with_db(wall_ms, |db| db.count())
    }
}

fn degraded_reason(error: &KnowledgeError) -> String {
    format!("{error}; incidents are kept in memory until the next start")
}
