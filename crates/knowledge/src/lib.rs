//! The knowledge base of the self-healing loop: every incident, its plans and step results,
//! per-plan success statistics and MTTD/MTTR aggregates, in a local SQLite file
//! (`incidents.db`).
//!
//! `heal` is pure and keeps only a few recent incidents; this crate remembers them across
//! restarts and gives `heal` its plan statistics back at start. The node owns one [`Store`]
//! and feeds it every [`heal::Event`] it drains from the healer.
//!
//! # Design choices
//!
//! - **Incidents are keyed by run.** `heal` numbers incidents from 1 in every process and its
//!   timestamps come from a monotonic clock with an arbitrary origin, so a row is keyed by
//!   (run, incident id) and gets its own record id for queries. MTTD and MTTR are differences
//!   of timestamps of one run, which is why they are computed when a row is written.
//! - **Snapshots plus scalars.** The whole `heal::Incident` is stored as JSON (the record the
//!   operator reads); the fields queries filter and aggregate on are copied into indexed
//!   columns.
//! - **Forward-only migrations** keyed on `PRAGMA user_version` ([`schema`]); a file written by
//!   a newer version is refused rather than guessed at.
//! - **Bounded.** Retention keeps at most a configured number of incidents, deleting the
//!   oldest closed ones first; an optional size cap turns a runaway file into a clean
//!   "database or disk is full" error.
//! - **Degraded mode.** A corrupt, unreadable or full file must not stop the healing loop:
//!   [`Store`] switches to an in-memory database, says why through [`Store::degraded`], and
//!   keeps answering.
//!
//! # Layout
//!
//! - `error.rs`: [`KnowledgeError`], every message naming the file;
//! - `schema.rs`: migrations and pragmas;
//! - `db.rs`: [`IncidentDb`], one SQLite connection with the writes and queries;
//! - `record.rs`: rows as read back ([`IncidentRecord`], [`RepairTimes`], filters);
//! - `store.rs`: [`Store`], the fallback wrapper the node uses.

pub mod db;
pub mod error;
pub mod record;
pub mod schema;
pub mod store;

pub use db::{DbConfig, IncidentDb};
pub use error::KnowledgeError;
pub use record::{IncidentFilter, IncidentRecord, RecordState, RepairTimes};
pub use store::Store;
