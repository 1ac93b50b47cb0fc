//! `KnowledgeError`: why the incident database refused an operation. Every variant names the
//! file, because the operator's fix (free space, restore, delete the file) is about the file.

use std::path::PathBuf;

/// A failure of the incident database.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// SQLite failed: the file is corrupt, not a database, unreadable, read-only or full.
    /// [`crate::Store`] answers these by moving to memory.
    #[error("incident database {path}: {source}")]
    Storage {
        /// The database file (`:memory:` for the fallback).
        path: PathBuf,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    /// SQLite opened the file but its integrity check failed.
    #[error("incident database {path} is corrupt: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The first problem `PRAGMA quick_check` reported.
        detail: String,
    },
    /// The file was written by a newer version of the schema; migrating it backwards would
    /// lose data, so it is left alone.
    #[error(
        "incident database {path}: schema version {found} is newer than the {supported} this build knows; use a newer build or move the file away"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version this build can migrate to.
        supported: i64,
    },
    /// A stored row does not parse (unknown type or state, unreadable JSON): it was written
    /// by something other than this build.
    #[error("incident database {path}: record {record} is unreadable: {reason}")]
    BadRow {
        /// The database file.
        path: PathBuf,
        /// The record id.
        record: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// An incident could not be turned into JSON (a value JSON cannot carry).
    #[error("incident database {path}: cannot encode incident {incident}: {source}")]
    Encode {
        /// The database file.
        path: PathBuf,
        /// `heal`'s incident id.
        incident: u64,
        /// The encoder's reason.
        source: serde_json::Error,
    },
    /// A setting is out of range.
    #[error("incident database: {field}: {reason}")]
    Config {
        /// The offending setting.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

impl KnowledgeError {
    /// Whether the failure is about the file itself (so moving to memory helps), as opposed to
    /// a refused setting or a row this build cannot read.
    pub fn is_storage(&self) -> bool {
        matches!(
            self,
            KnowledgeError::Storage { .. }
                | KnowledgeError::Corrupt { .. }
                | KnowledgeError::NewerSchema { .. }
        )
    }
}
