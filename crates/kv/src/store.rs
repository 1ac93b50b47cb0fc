//! redb-backed Raft storage: the log (with vote, committed id and purge point) and the key-value
//! state machine (with leases, snapshots and watch events).
//!
//! Layout: a directory with two redb files, so state-machine commits never wait behind a log
//! fsync (redb has one writer per file).
//! - `log.redb`: `raft_log` (log index → JSON entry) and `raft_meta` (`vote`, `committed`,
//!   `purged` → JSON);
//! - `state.redb`: `kv` (key → 8-byte LE revision, 8-byte LE lease id or 0, value bytes),
//!   `leases` (lease id → ttl ms, attached key count), `lease_keys` ((lease id, key) → (), to
//!   delete a lease's keys without a scan), `sm_meta` (`applied`, `membership`, `bytes` (keys + values stored), `snapshot` (the last
//!   built or installed snapshot: meta and data)).
//!
//! Durability: log appends, votes and snapshot installs commit with fsync (`Durability::Immediate`)
//! before openraft is told they are done; log writes are group-committed by one writer thread
//! (see [`LogStore`]). A commit that only records the committed log id has no fsync of its own
//! (losing the latest committed id is harmless); the next fsync'd commit makes it durable. State-machine applies commit without fsync: after a crash `state.redb`
//! is back at its last fsync'd commit, a consistent state whose `applied` id says where it is,
//! and openraft re-applies the rest from the log. The log is purged only behind a snapshot, and
//! storing a snapshot is an fsync'd commit of `state.redb` (which makes every earlier apply
//! durable too), so the entries to re-apply are always still in the log.
//!
//! Every redb call runs on tokio's blocking pool: an fsync must not stall the async workers that
//! carry heartbeats.

// openraft's storage traits fix the error type (`StorageError`, about 224 bytes); the helpers
// here return it unchanged rather than boxing and unboxing at every trait boundary.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::command::{Command, LeaseId, Rejection, Reply, Revision};
use crate::limits::{MAX_KEYS_PER_LEASE, MAX_LEASES, MAX_STORE_BYTES};
use crate::{NodeId, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const LEASES: TableDefinition<u64, (u64, u64)> = TableDefinition::new("leases");
const LEASE_KEYS: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("lease_keys");
const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

/// Why the store file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// redb refused the file (checksum or structure failure, bad header, wrong format).
    #[error("store file {path} is corrupted or unreadable: {reason}")]
    Corrupted {
        /// The file.
        path: String,
        /// redb's or the consistency check's reason.
        reason: String,
    },
    /// Another handle still has the file open.
    #[error("store file {0} is already open")]
    Busy(String),
}

/// One change the state machine made, sent to watchers after the change is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was written or deleted.
    Change {
        /// The key.
        key: Vec<u8>,
        /// The new value, `None` when deleted.
        value: Option<Vec<u8>>,
        /// The log index of the change.
        revision: Revision,
    },
    /// The whole state was replaced by a snapshot from the leader; watchers must re-list.
    Reset {
        /// Revision the snapshot reflects.
        revision: Revision,
    },
}

/// A stored value with its revision and lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The value bytes.
    pub value: Vec<u8>,
    /// Log index of the write that stored it.
    pub revision: Revision,
    /// Lease the key is attached to.
    pub lease: Option<LeaseId>,
}

fn encode_record(revision: Revision, lease: Option<LeaseId>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&lease.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn decode_record(bytes: &[u8]) -> Option<Versioned> {
    let revision = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let lease = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some(Versioned {
        value: bytes.get(16..)?.to_vec(),
        revision,
        lease: (lease != 0).then_some(lease),
    })
}

type SErr = StorageError<NodeId>;

fn read_err(e: impl std::error::Error + 'static) -> SErr {
    StorageIOError::read(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> SErr {
    StorageIOError::write(&e).into()
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Corrupt(String);

fn corrupt(what: &str) -> SErr {
    StorageIOError::read(&Corrupt(format!("corrupted record: {what}"))).into()
}

/// Runs blocking redb work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SErr> + Send + 'static,
) -> Result<T, SErr> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageIOError::write(&e).into())
        .and_then(|r| r)
}

/// The open store: two redb files in one directory, shared by the log, the state machine and
/// local reads.
#[derive(Clone, Debug)]
pub struct Store {
    /// `log.redb`: `raft_log`, `raft_meta`.
    log: Arc<Database>,
    /// `state.redb`: `kv`, `leases`, `lease_keys`, `sm_meta`.
    sm: Arc<Database>,
}

fn open_file(path: &Path) -> Result<Database, OpenError> {
    let name = path.display().to_string();
    match Database::create(path) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(OpenError::Busy(name)),
        Err(e) => Err(OpenError::Corrupted {
            path: name,
            reason: e.to_string(),
        }),
    }
}

/// Opens every table and parses every metadata record of one file.
fn verify(
    db: &Database,
    tables: &[&str],
    meta: TableDefinition<&str, &[u8]>,
    keys: &[&str],
) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        for name in tables {
            match *name {
                "raft_log" => drop(txn.open_table(LOG).map_err(|e| e.to_string())?),
                "kv" => drop(txn.open_table(KV).map_err(|e| e.to_string())?),
                "leases" => drop(txn.open_table(LEASES).map_err(|e| e.to_string())?),
                _ => drop(txn.open_table(LEASE_KEYS).map_err(|e| e.to_string())?),
            }
        }
        let meta = txn.open_table(meta).map_err(|e| e.to_string())?;
        for key in keys {
            if let Some(v) = meta.get(*key).map_err(|e| e.to_string())? {
                serde_json::from_slice::<serde_json::Value>(v.value())
                    .map_err(|e| format!("metadata {key}: {e}"))?;
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

impl Store {
    /// Opens (or creates) the store in directory `dir` and checks it: redb verifies its
    /// checksums and structure on open; then every table must open and every metadata record
    /// must parse. Any failure is [`OpenError::Corrupted`]: the node must refuse to serve from it.
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        std::fs::create_dir_all(dir).map_err(|e| OpenError::Corrupted {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let log_path = dir.join("log.redb");
        let sm_path = dir.join("state.redb");
        let log = open_file(&log_path)?;
        let sm = open_file(&sm_path)?;
        let corrupted = |path: &Path, reason: String| OpenError::Corrupted {
            path: path.display().to_string(),
            reason,
        };
        verify(
            &log,
            &["raft_log"],
            RAFT_META,
            &["vote", "committed", "purged"],
        )
        .map_err(|e| corrupted(&log_path, e))?;
        verify(
            &sm,
            &["kv", "leases", "lease_keys"],
            SM_META,
            &["applied", "membership", "snapshot", "bytes"],
        )
        .map_err(|e| corrupted(&sm_path, e))?;
        Ok(Self {
            log: Arc::new(log),
            sm: Arc::new(sm),
        })
    }

    /// Reads one key from the local state machine (no consensus round; see `KvNode::get`).
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, SErr> {
        let txn = self.sm.begin_read().map_err(read_err)?;
        let table = txn.open_table(KV).map_err(read_err)?;
        match table.get(key).map_err(read_err)? {
            Some(v) => decode_record(v.value())
                .map(Some)
                .ok_or_else(|| corrupt("kv")),
            None => Ok(None),
        }
    }

    /// Up to `limit` keys starting with `prefix` and strictly after `after`, in key order.
    pub fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, SErr> {
        let txn = self.sm.begin_read().map_err(read_err)?;
        let table = txn.open_table(KV).map_err(read_err)?;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        for item in table
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(read_err)?
        {
            let (k, v) = item.map_err(read_err)?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            let record = decode_record(v.value()).ok_or_else(|| corrupt("kv"))?;
            out.push((k.value().to_vec(), record));
        }
        Ok(out)
    }

    /// Live leases and their TTLs, at most `limit` of them.
    pub fn leases(&self, limit: usize) -> Result<Vec<(LeaseId, u64)>, SErr> {
        let txn = self.sm.begin_read().map_err(read_err)?;
        let table = txn.open_table(LEASES).map_err(read_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(read_err)?.take(limit) {
            let (id, v) = item.map_err(read_err)?;
            out.push((id.value(), v.value().0));
        }
        Ok(out)
    }

    fn meta<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, SErr> {
        let db = if table.name() == RAFT_META.name() {
            &self.log
        } else {
            &self.sm
        };
        let txn = db.begin_read().map_err(read_err)?;
        let t = txn.open_table(table).map_err(read_err)?;
        match t.get(key).map_err(read_err)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|_| corrupt(key)),
            None => Ok(None),
        }
    }

    async fn put_meta<T: Serialize>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: &'static str,
        value: &T,
    ) -> Result<(), SErr> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        let db = self.sm.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(write_err)?;
            txn.open_table(table)
                .map_err(write_err)?
                .insert(key, bytes.as_slice())
                .map_err(write_err)?;
            txn.commit().map_err(write_err)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Log storage

/// Log writes waiting for the writer thread; a full queue makes `append` wait, which is
/// openraft's back-pressure. 1024 appends are far more than one fsync's worth of work.
const LOG_QUEUE: usize = 1024;

/// Queued log writes folded into one redb transaction (one fsync).
const MAX_GROUP_COMMIT: usize = 1024;

/// Non-append log writes; the caller waits for them.
enum SyncWrite {
    Meta(&'static str, Vec<u8>),
    Truncate(u64),
    Purge(u64, Vec<u8>),
}

enum LogWrite {
    Append {
        entries: Vec<(LogId<NodeId>, Vec<u8>)>,
        callback: LogFlushed<TypeConfig>,
    },
    Sync {
        write: SyncWrite,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// Entries handed to the writer but not yet committed, so readers see every appended entry.
/// Bounded by the queue: at most [`LOG_QUEUE`] appends of at most one RPC's entries each.
type Pending = Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Entry<TypeConfig>>>>;

fn lock_pending(
    pending: &Pending,
) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, Entry<TypeConfig>>> {
    // Every update is a single insert or remove, so a poisoned map is still consistent.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The Raft log on the store (openraft's `RaftLogStorage`).
///
/// Writes go, in call order, to one writer thread that folds everything queued into one redb
/// transaction and one fsync (group commit): `append` returns once queued and openraft learns
/// of durability through the flush callback; votes, committed ids, truncation and purge wait for
/// their commit. Until an appended entry is committed it is served from an in-memory overlay.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    queue: tokio::sync::mpsc::Sender<LogWrite>,
    pending: Pending,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// The log of `store`; starts its writer thread, which ends when the last clone is dropped.
    pub fn new(store: Store) -> Self {
        let (queue, rx) = tokio::sync::mpsc::channel(LOG_QUEUE);
        let pending = Pending::default();
        let db = store.log.clone();
        let overlay = pending.clone();
        std::thread::Builder::new()
            .name("kv-log-writer".into())
            .spawn(move || log_writer(db, rx, overlay))
            .map(drop)
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the log writer"));
        Self {
            store,
            queue,
            pending,
        }
    }

    async fn sync(&self, write: SyncWrite) -> Result<(), SErr> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let gone = || write_err(Corrupt("log writer stopped".into()));
        self.queue
            .send(LogWrite::Sync { write, done })
            .await
            .map_err(|_| gone())?;
        wait.await
            .map_err(|_| gone())?
            .map_err(|e| write_err(Corrupt(e)))
    }
}

fn log_writer(db: Arc<Database>, mut rx: tokio::sync::mpsc::Receiver<LogWrite>, pending: Pending) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP_COMMIT {
            match rx.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let result = write_batch(&db, &batch).map_err(|e| e.to_string());
        for write in batch {
            match write {
                LogWrite::Append { entries, callback } => {
                    if result.is_ok() {
                        let mut overlay = lock_pending(&pending);
                        for (log_id, _) in &entries {
                            // A truncation may have replaced the entry at this index since.
                            if overlay.get(&log_id.index).map(|e| e.log_id) == Some(*log_id) {
                                overlay.remove(&log_id.index);
                            }
                        }
                    }
                    callback.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                LogWrite::Sync { done, .. } => {
                    // The caller may have been cancelled; nobody waits then.
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

fn write_batch(db: &Database, batch: &[LogWrite]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    // A batch holding only committed-id updates is not worth an fsync (losing the latest one
    // is harmless, see `save_committed`): it becomes durable with the next fsync'd commit. An
    // fsync for it would sit on the write path, delaying the next append behind it.
    let only_committed = batch.iter().all(|write| {
        matches!(
            write,
            LogWrite::Sync {
                write: SyncWrite::Meta("committed", _),
                ..
            }
        )
    });
    if only_committed {
        txn.set_durability(Durability::None)?;
    }
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(RAFT_META)?;
        for write in batch {
            match write {
                LogWrite::Append { entries, .. } => {
                    for (log_id, bytes) in entries {
                        log.insert(log_id.index, bytes.as_slice())?;
                    }
                }
                LogWrite::Sync { write, .. } => match write {
                    SyncWrite::Meta(key, bytes) => {
                        meta.insert(*key, bytes.as_slice())?;
                    }
                    SyncWrite::Truncate(index) => log.retain_in(*index.., |_, _| false)?,
                    SyncWrite::Purge(index, bytes) => {
                        meta.insert("purged", bytes.as_slice())?;
                        log.retain_in(..=*index, |_, _| false)?;
                    }
                },
            }
        }
    }
    txn.commit()?;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        // The overlay is copied before the file is read: an entry committed in between is then
        // in the copy, and one committed before is in the file.
        let overlay: Vec<Entry<TypeConfig>> = lock_pending(&self.pending)
            .range(range.clone())
            .map(|(_, e)| e.clone())
            .collect();
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        let db = self.store.log.clone();
        let stored: Vec<Entry<TypeConfig>> = blocking(move || {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOG).map_err(read_err)?;
            let mut out = Vec::new();
            for item in table.range((start, end)).map_err(read_err)? {
                let (_, v) = item.map_err(read_err)?;
                out.push(serde_json::from_slice(v.value()).map_err(|_| corrupt("raft_log"))?);
            }
            Ok(out)
        })
        .await?;
        let mut merged: std::collections::BTreeMap<u64, Entry<TypeConfig>> =
            stored.into_iter().map(|e| (e.log_id.index, e)).collect();
        for entry in overlay {
            merged.insert(entry.log_id.index, entry);
        }
        Ok(merged.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let queued = lock_pending(&self.pending)
            .last_key_value()
            .map(|(_, e)| e.log_id);
        let purged: Option<LogId<NodeId>> = self.store.meta(RAFT_META, "purged")?;
        let db = self.store.log.clone();
        let last = blocking(move || {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOG).map_err(read_err)?;
            match table.last().map_err(read_err)? {
                Some((_, v)) => serde_json::from_slice::<Entry<TypeConfig>>(v.value())
                    .map(|e| Some(e.log_id))
                    .map_err(|_| corrupt("raft_log")),
                None => Ok(None),
            }
        })
        .await?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: queued.max(last).or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        let bytes = serde_json::to_vec(vote).map_err(write_err)?;
        self.sync(SyncWrite::Meta("vote", bytes)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        self.store.meta(RAFT_META, "vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        // Queued, not awaited: openraft calls this on every commit advance and waits for it, and
        // an fsync each time would serialize all writes. Losing the latest value in a crash is
        // harmless: an older committed id is still a committed id, and openraft re-learns the
        // rest from the leader.
        let bytes = serde_json::to_vec(&committed).map_err(write_err)?;
        let (done, _) = tokio::sync::oneshot::channel();
        self.queue
            .send(LogWrite::Sync {
                write: SyncWrite::Meta("committed", bytes),
                done,
            })
            .await
            .map_err(|_| write_err(Corrupt("log writer stopped".into())))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        Ok(self
            .store
            .meta::<Option<LogId<NodeId>>>(RAFT_META, "committed")?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        let mut overlay = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(write_err)?;
            encoded.push((entry.log_id, bytes));
            overlay.push(entry);
        }
        {
            let mut pending = lock_pending(&self.pending);
            for entry in overlay {
                pending.insert(entry.log_id.index, entry);
            }
        }
        self.queue
            .send(LogWrite::Append {
                entries: encoded,
                callback,
            })
            .await
            .map_err(|_| write_err(Corrupt("log writer stopped".into())))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        lock_pending(&self.pending).retain(|index, _| *index < log_id.index);
        self.sync(SyncWrite::Truncate(log_id.index)).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let bytes = serde_json::to_vec(&log_id).map_err(write_err)?;
        self.sync(SyncWrite::Purge(log_id.index, bytes)).await
    }
}

// ---------------------------------------------------------------------------------------------
// State machine

/// The whole state machine as shipped in a snapshot.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SnapshotData {
    /// (key, record) pairs; records in the `kv` table's encoding, hex in JSON.
    kv: Vec<(String, String)>,
    /// (lease id, ttl ms).
    leases: Vec<(LeaseId, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    #[serde(with = "crate::command::hex_bytes")]
    data: Vec<u8>,
}

/// The key-value state machine on the store (openraft's `RaftStateMachine`).
#[derive(Clone, Debug)]
pub struct StateMachine {
    store: Store,
    events: broadcast::Sender<WatchEvent>,
}

impl StateMachine {
    /// The state machine of `store`; committed changes are sent on `events`.
    pub fn new(store: Store, events: broadcast::Sender<WatchEvent>) -> Self {
        Self { store, events }
    }
}

/// Applies one command inside a write transaction. Deterministic: reads only the store.
fn apply_command(
    txn: &redb::WriteTransaction,
    revision: Revision,
    command: &Command,
    bytes_used: &mut u64,
    events: &mut Vec<WatchEvent>,
) -> Result<Reply, redb::Error> {
    if let Err(e) = command.validate() {
        return Ok(Reply::Rejected {
            revision,
            reason: Rejection::Invalid(e.to_string()),
        });
    }
    let mut kv = txn.open_table(KV)?;
    let mut leases = txn.open_table(LEASES)?;
    let mut lease_keys = txn.open_table(LEASE_KEYS)?;
    // Detaches `key` from its old lease and removes it, returning the old record.
    let remove_key = |kv: &mut redb::Table<&[u8], &[u8]>,
                      leases: &mut redb::Table<u64, (u64, u64)>,
                      lease_keys: &mut redb::Table<(u64, &[u8]), ()>,
                      bytes_used: &mut u64,
                      key: &[u8]|
     -> Result<Option<Versioned>, redb::Error> {
        let old = kv.remove(key)?.and_then(|v| decode_record(v.value()));
        if let Some(old) = &old {
            *bytes_used = bytes_used.saturating_sub((key.len() + old.value.len()) as u64);
            if let Some(lease) = old.lease {
                lease_keys.remove((lease, key))?;
                let entry = leases.get(lease)?.map(|v| v.value());
                if let Some((ttl, count)) = entry {
                    leases.insert(lease, (ttl, count.saturating_sub(1)))?;
                }
            }
        }
        Ok(old)
    };
    let end_leases = |kv: &mut redb::Table<&[u8], &[u8]>,
                      leases: &mut redb::Table<u64, (u64, u64)>,
                      lease_keys: &mut redb::Table<(u64, &[u8]), ()>,
                      bytes_used: &mut u64,
                      events: &mut Vec<WatchEvent>,
                      ids: &[LeaseId]|
     -> Result<Reply, redb::Error> {
        let mut ended = Vec::new();
        let mut keys_deleted = 0;
        for &id in ids {
            if leases.remove(id)?.is_none() {
                continue;
            }
            ended.push(id);
            let keys: Vec<Vec<u8>> = lease_keys
                .range::<(u64, &[u8])>((id, &[][..])..)?
                .map_while(|item| match item {
                    Ok((k, _)) if k.value().0 == id => Some(Ok(k.value().1.to_vec())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()?;
            for key in keys {
                lease_keys.remove((id, key.as_slice()))?;
                if let Some(old) = kv
                    .remove(key.as_slice())?
                    .and_then(|v| decode_record(v.value()))
                {
                    *bytes_used = bytes_used.saturating_sub((key.len() + old.value.len()) as u64);
                }
                keys_deleted += 1;
                events.push(WatchEvent::Change {
                    key,
                    value: None,
                    revision,
                });
            }
        }
        Ok(Reply::LeasesEnded {
            revision,
            ended,
            keys_deleted,
        })
    };
    let write = |kv: &mut redb::Table<&[u8], &[u8]>,
                 leases: &mut redb::Table<u64, (u64, u64)>,
                 lease_keys: &mut redb::Table<(u64, &[u8]), ()>,
                 bytes_used: &mut u64,
                 events: &mut Vec<WatchEvent>,
                 key: &[u8],
                 value: &[u8],
                 lease: Option<LeaseId>|
     -> Result<Option<Rejection>, redb::Error> {
        let old_len = kv
            .get(key)?
            .and_then(|v| decode_record(v.value()))
            .map_or(0, |r| (key.len() + r.value.len()) as u64);
        let new_used = bytes_used.saturating_sub(old_len) + (key.len() + value.len()) as u64;
        if new_used > MAX_STORE_BYTES && new_used > *bytes_used {
            return Ok(Some(Rejection::StoreFull {
                used: *bytes_used,
                limit: MAX_STORE_BYTES,
            }));
        }
        if let Some(id) = lease {
            match leases.get(id)?.map(|v| v.value()) {
                None => return Ok(Some(Rejection::LeaseNotFound(id))),
                Some((_, count)) if count >= MAX_KEYS_PER_LEASE => {
                    return Ok(Some(Rejection::LeaseFull(id)));
                }
                Some(_) => {}
            }
        }
        remove_key(kv, leases, lease_keys, bytes_used, key)?;
        if let Some(id) = lease {
            let entry = leases.get(id)?.map(|v| v.value());
            if let Some((ttl, count)) = entry {
                leases.insert(id, (ttl, count + 1))?;
            }
            lease_keys.insert((id, key), ())?;
        }
        kv.insert(key, encode_record(revision, lease, value).as_slice())?;
        *bytes_used += (key.len() + value.len()) as u64;
        events.push(WatchEvent::Change {
            key: key.to_vec(),
            value: Some(value.to_vec()),
            revision,
        });
        Ok(None)
    };
    let reply = match command {
        Command::Put { key, value, lease } => {
            match write(
                &mut kv,
                &mut leases,
                &mut lease_keys,
                bytes_used,
                events,
                key,
                value,
                *lease,
            )? {
                Some(reason) => Reply::Rejected { revision, reason },
                None => Reply::Put { revision },
            }
        }
        Command::Delete { key } => {
            let old = remove_key(&mut kv, &mut leases, &mut lease_keys, bytes_used, key)?;
            if old.is_some() {
                events.push(WatchEvent::Change {
                    key: key.clone(),
                    value: None,
                    revision,
                });
            }
            Reply::Delete {
                revision,
                existed: old.is_some(),
            }
        }
        Command::Cas { key, expected, new } => {
            let current = kv
                .get(key.as_slice())?
                .and_then(|v| decode_record(v.value()))
                .map(|r| r.value);
            if current == *expected {
                match write(
                    &mut kv,
                    &mut leases,
                    &mut lease_keys,
                    bytes_used,
                    events,
                    key,
                    new,
                    None,
                )? {
                    Some(reason) => Reply::Rejected { revision, reason },
                    None => Reply::Cas {
                        revision,
                        succeeded: true,
                        current: Some(new.clone()),
                    },
                }
            } else {
                Reply::Cas {
                    revision,
                    succeeded: false,
                    current,
                }
            }
        }
        Command::LeaseGrant { ttl_ms } => {
            if leases.len()? >= MAX_LEASES as u64 {
                Reply::Rejected {
                    revision,
                    reason: Rejection::TooManyLeases(MAX_LEASES),
                }
            } else {
                leases.insert(revision, (*ttl_ms, 0))?;
                Reply::LeaseGranted {
                    revision,
                    id: revision,
                }
            }
        }
        Command::LeaseRevoke { id } => end_leases(
            &mut kv,
            &mut leases,
            &mut lease_keys,
            bytes_used,
            events,
            &[*id],
        )?,
        Command::LeaseExpire { ids } => end_leases(
            &mut kv,
            &mut leases,
            &mut lease_keys,
            bytes_used,
            events,
            ids,
        )?,

        Command::Batch(commands) => {
            // Each command opens the tables itself; redb refuses a table opened twice.
            drop((kv, leases, lease_keys));
            let mut replies = Vec::with_capacity(commands.len());
            for command in commands {
                replies.push(apply_command(txn, revision, command, bytes_used, events)?);
            }
            return Ok(Reply::Batch(replies));
        }
    };
    Ok(reply)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        SErr,
    > {
        let applied = self.store.meta(SM_META, "applied")?;
        let membership = self.store.meta(SM_META, "membership")?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.store.sm.clone();
        let (replies, events) = blocking(move || {
            let mut txn = db.begin_write().map_err(write_err)?;
            // Made durable by the next fsync'd log commit; see the module doc.
            txn.set_durability(Durability::None).map_err(write_err)?;
            let mut replies = Vec::with_capacity(entries.len());
            let mut events = Vec::new();
            {
                let mut meta = txn.open_table(SM_META).map_err(write_err)?;
                let mut bytes_used: u64 = match meta.get("bytes").map_err(write_err)? {
                    Some(v) => serde_json::from_slice(v.value()).map_err(|_| corrupt("bytes"))?,
                    None => 0,
                };
                let mut last = None;
                let mut membership = None;
                for entry in &entries {
                    let revision = entry.log_id.index;
                    last = Some(entry.log_id);
                    let reply = match &entry.payload {
                        EntryPayload::Blank => Reply::Internal { revision },
                        EntryPayload::Membership(m) => {
                            membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                            Reply::Internal { revision }
                        }
                        EntryPayload::Normal(command) => {
                            apply_command(&txn, revision, command, &mut bytes_used, &mut events)
                                .map_err(|e| StorageIOError::apply(entry.log_id, &e))?
                        }
                    };
                    replies.push(reply);
                }
                let encode = |v: &dyn erased::Json| v.to_json().map_err(write_err);
                meta.insert("applied", encode(&last)?.as_slice())
                    .map_err(write_err)?;
                meta.insert("bytes", encode(&bytes_used)?.as_slice())
                    .map_err(write_err)?;
                if let Some(m) = membership {
                    meta.insert("membership", encode(&m)?.as_slice())
                        .map_err(write_err)?;
                }
            }
            txn.commit().map_err(write_err)?;
            Ok((replies, events))
        })
        .await?;
        for event in events {
            // No watcher is fine: the send only fails when nobody listens.
            let _ = self.events.send(event);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let data = snapshot.into_inner();
        let parsed: SnapshotData = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .map_err(write_err)?;
        let applied = serde_json::to_vec(&meta.last_log_id).map_err(write_err)?;
        let membership = serde_json::to_vec(&meta.last_membership).map_err(write_err)?;
        let signature = meta.signature();
        let db = self.store.sm.clone();
        blocking(move || {
            let fail = |e: &dyn std::error::Error| -> SErr {
                StorageIOError::write_snapshot(Some(signature.clone()), &Corrupt(e.to_string()))
                    .into()
            };
            let txn = db.begin_write().map_err(|e| fail(&e))?;
            {
                txn.delete_table(KV).map_err(|e| fail(&e))?;
                txn.delete_table(LEASES).map_err(|e| fail(&e))?;
                txn.delete_table(LEASE_KEYS).map_err(|e| fail(&e))?;
                let mut kv = txn.open_table(KV).map_err(|e| fail(&e))?;
                let mut leases = txn.open_table(LEASES).map_err(|e| fail(&e))?;
                let mut lease_keys = txn.open_table(LEASE_KEYS).map_err(|e| fail(&e))?;
                let mut bytes_used = 0u64;
                let mut counts = std::collections::BTreeMap::<LeaseId, u64>::new();
                for (key, record) in &parsed.kv {
                    let key = hex::decode(key).map_err(|e| fail(&e))?;
                    let record = hex::decode(record).map_err(|e| fail(&e))?;
                    let decoded =
                        decode_record(&record).ok_or_else(|| fail(&Corrupt("record".into())))?;
                    bytes_used += (key.len() + decoded.value.len()) as u64;
                    if let Some(lease) = decoded.lease {
                        lease_keys
                            .insert((lease, key.as_slice()), ())
                            .map_err(|e| fail(&e))?;
                        *counts.entry(lease).or_default() += 1;
                    }
                    kv.insert(key.as_slice(), record.as_slice())
                        .map_err(|e| fail(&e))?;
                }
                for (id, ttl) in &parsed.leases {
                    let count = counts.get(id).copied().unwrap_or(0);
                    leases.insert(*id, (*ttl, count)).map_err(|e| fail(&e))?;
                }
                let mut meta = txn.open_table(SM_META).map_err(|e| fail(&e))?;
                meta.insert("applied", applied.as_slice())
                    .map_err(|e| fail(&e))?;
                meta.insert("membership", membership.as_slice())
                    .map_err(|e| fail(&e))?;
                let bytes = bytes_used.to_string();
                meta.insert("bytes", bytes.as_bytes())
                    .map_err(|e| fail(&e))?;
                meta.insert("snapshot", stored.as_slice())
                    .map_err(|e| fail(&e))?;
            }
            txn.commit().map_err(|e| fail(&e))
        })
        .await?;
        let revision = meta.last_log_id.map_or(0, |l| l.index);
        // No watcher is fine: the send only fails when nobody listens.
        let _ = self.events.send(WatchEvent::Reset { revision });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let stored: Option<StoredSnapshot> = self.store.meta(SM_META, "snapshot")?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let db = self.store.sm.clone();
        let (data, applied, membership) = blocking(move || {
            // One read transaction: the data and the applied id are one consistent state.
            let txn = db.begin_read().map_err(read_err)?;
            let kv = txn.open_table(KV).map_err(read_err)?;
            let leases = txn.open_table(LEASES).map_err(read_err)?;
            let meta = txn.open_table(SM_META).map_err(read_err)?;
            let mut data = SnapshotData::default();
            for item in kv.iter().map_err(read_err)? {
                let (k, v) = item.map_err(read_err)?;
                data.kv
                    .push((hex::encode(k.value()), hex::encode(v.value())));
            }
            for item in leases.iter().map_err(read_err)? {
                let (id, v) = item.map_err(read_err)?;
                data.leases.push((id.value(), v.value().0));
            }
            let read = |key: &str| -> Result<Option<Vec<u8>>, SErr> {
                Ok(meta.get(key).map_err(read_err)?.map(|v| v.value().to_vec()))
            };
            let applied: Option<LogId<NodeId>> = match read("applied")? {
                Some(b) => serde_json::from_slice(&b).map_err(|_| corrupt("applied"))?,
                None => None,
            };
            let membership: StoredMembership<NodeId, openraft::BasicNode> =
                match read("membership")? {
                    Some(b) => serde_json::from_slice(&b).map_err(|_| corrupt("membership"))?,
                    None => StoredMembership::default(),
                };
            Ok((data, applied, membership))
        })
        .await?;
        let bytes = serde_json::to_vec(&data).map_err(write_err)?;
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes.clone(),
        };
        self.store.put_meta(SM_META, "snapshot", &stored).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

/// Object-safe JSON encoding, so one closure can encode metadata of different types.
mod erased {
    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec(self)
        }
    }
}
