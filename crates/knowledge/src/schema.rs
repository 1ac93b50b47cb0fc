//! Schema migrations, forward only, keyed on `PRAGMA user_version`, and the connection
//! pragmas every open applies.
//!
//! Migration `n` (1-based) moves a file from version `n - 1` to `n` in one transaction, so a
//! crash mid-migration leaves the previous version intact. Released migrations are never
//! edited: a change is a new entry at the end.

use std::path::Path;

use rusqlite::Connection;

use crate::error::KnowledgeError;

/// Version 1: the tables. Timestamps ending in `_us` are `heal` timestamps (monotonic
/// microseconds of one run); those ending in `_wall_ms` are Unix milliseconds for people.
const V1_TABLES: &str = "
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_wall_ms INTEGER NOT NULL
);
CREATE TABLE incidents (
    record_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    incident_id INTEGER NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    confidence REAL NOT NULL,
    root_cause TEXT NOT NULL,
    plan TEXT,
    success INTEGER,
    first_symptom_us INTEGER NOT NULL,
    detected_us INTEGER NOT NULL,
    resolved_us INTEGER,
    mttd_us INTEGER NOT NULL,
    mttr_us INTEGER,
    opened_wall_ms INTEGER NOT NULL,
    updated_wall_ms INTEGER NOT NULL,
    closed_wall_ms INTEGER,
    incident_json TEXT NOT NULL,
    metrics_json TEXT,
    UNIQUE (run_id, incident_id)
);
CREATE TABLE plan_stats (
    kind TEXT NOT NULL,
    plan TEXT NOT NULL,
    successes INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    updated_wall_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, plan)
) WITHOUT ROWID;
";

/// Version 2: indexes for the list filters, the retention scan (closed rows, oldest first)
/// and the per-type aggregates.
const V2_INDEXES: &str = "
CREATE INDEX incidents_by_kind ON incidents (kind, record_id);
CREATE INDEX incidents_by_state ON incidents (state, record_id);
CREATE INDEX incidents_by_closed ON incidents (closed, record_id);
";

/// Every migration in order; entry `i` produces version `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1_TABLES, V2_INDEXES];

/// The version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a writer waits for another connection's lock before the operation fails; the
/// node is the only writer, so a longer wait only hides a stuck process.
const BUSY_TIMEOUT_MS: u64 = 1_000;

fn storage(path: &Path) -> impl Fn(rusqlite::Error) -> KnowledgeError + '_ {
    move |source| KnowledgeError::Storage {
        path: path.to_path_buf(),
        source,
    }
}

/// The version stored in the file (0 for a new file).
pub fn version(conn: &Connection, path: &Path) -> Result<i64, KnowledgeError> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(storage(path))
}

/// Sets the pragmas of a working connection and checks the file is an intact database.
/// WAL lets queries run while a write is pending and survives a crash mid-write;
/// `synchronous = FULL` because incidents are rare and each one should survive power loss.
pub fn configure(
    conn: &Connection,
    path: &Path,
    max_size_bytes: Option<u64>,
) -> Result<(), KnowledgeError> {
    let err = storage(path);
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(&err)?;
    // Reading the header first turns "not a database" into an error here, not at the first
    // write.
    let check: String = conn
        .pragma_query_value(None, "quick_check", |row| row.get(0))
        .map_err(&err)?;
    if check != "ok" {
        return Err(KnowledgeError::Corrupt {
            path: path.to_path_buf(),
            detail: check,
        });
    }
    let _mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(&err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&err)?;
    if let Some(bytes) = max_size_bytes {
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |row| row.get(0))
            .map_err(&err)?;
        let pages = i64::try_from(bytes).unwrap_or(i64::MAX) / page_size.max(1);
        let _set: i64 = conn
            .pragma_update_and_check(None, "max_page_count", pages.max(1), |row| row.get(0))
            .map_err(&err)?;
    }
    Ok(())
}

/// Migrates to [`VERSION`]; returns the version found before.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<i64, KnowledgeError> {
    migrate_to(conn, path, VERSION)
}

/// Migrates to `target` (at most [`VERSION`]); returns the version found before. A file newer
/// than this build is refused, never downgraded.
pub fn migrate_to(conn: &mut Connection, path: &Path, target: i64) -> Result<i64, KnowledgeError> {
    let found = version(conn, path)?;
    if found > VERSION {
        return Err(KnowledgeError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    }
    let err = storage(path);
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let produces = index as i64 + 1;
        if produces <= found || produces > target {
            continue;
        }
        let tx = conn.transaction().map_err(&err)?;
        tx.execute_batch(sql).map_err(&err)?;
        tx.pragma_update(None, "user_version", produces)
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
    }
    Ok(found)
}
