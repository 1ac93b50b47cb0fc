//! Mesh-wide replicated state: the CRDT replica that carries the node directory (signed node
//! records), revocations and link policies between neighbours, with signature checks on every
//! remote entry and a snapshot in the data directory.
//!
//! The replica (`crdt::Replica`) is sans-IO; this module gives it the wall clock, the
//! authenticated links' datagrams (CRDT datagrams start with "xc", routing "x6", data "xd") and
//! the file system, and turns what it accepts into [`Verified`] statements for the runtime to
//! apply (a directory entry, a revocation that closes links, a new link policy).
//!
//! # Collections and who may write what
//! - `directory`: key = node id (16 bytes), value = that node's hybrid-signed record. Only the
//!   node itself may write its key, so a replayed old record cannot win by a newer timestamp.
//! - `revocations`: key = revoked node id, value = the CA's signed revocation. Any member may
//!   carry one; only the CA can sign one. Deletions are refused.
//! - `policies`: key `link`, value = the link policy signed by the CA key (the same authority
//!   that admits and revokes members). The CA node publishes its `security.policy_file`; every
//!   other node applies the newest CA-signed policy it holds in place of its own file.
//! - `incidents`: key = node id, value = that node's incident summary signed with its Ed25519
//!   key (`healing::summary`). Only the node itself may write its key, and the signature is
//!   checked with the key of its record in `directory`; bounds and garbage collection are in
//!   `healing::summary`.
//!
//! A record stays in `directory` until its node overwrites or deletes it: records of revoked
//! or departed nodes remain there (the directory table drops revoked ones), bounded by the
//! collection's 16,384 entries.
//!
//! An entry that fails its check is skipped, counted per collection (`crdt_refused_*` in
//! `/api/v1/status`) and, since its dot counts as seen, removed from the sender by the next
//! exchange.
//!
//! # Timing
//! A digest round every 250 ms (`crdt::replica::DEFAULT_SYNC_INTERVAL_MS`) plus up to 20 %
//! jitter, so neighbours do not fall into lockstep; every local write and every fresh remote
//! event is pushed at once. The snapshot is written after every local write and at most once
//! per [`PERSIST_INTERVAL_MS`] after remote changes.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crdt::{EntryCheck, Replica, ReplicaConfig, Transmit};
use identity::verify::VerifierState;
use identity::{NodeRecord, Revocation, SignedPolicy};
use wire::NodeId;

/// The snapshot file in the data directory.
pub const SNAPSHOT_NAME: &str = "crdt.snapshot";

/// Largest snapshot read at start: every collection full of the largest values.
pub const MAX_SNAPSHOT_BYTES: u64 = 512 * 1024 * 1024;

/// Remote changes are written to disk at most this often; they can be fetched again from
/// peers, so a crash in between loses nothing that is not still held elsewhere.
pub const PERSIST_INTERVAL_MS: u64 = 1_000;

/// Statements verified by the entry checks and not yet taken by the runtime. The runtime
/// drains after every datagram, and one datagram carries at most a few entries; beyond this
/// the oldest are dropped and counted (they stay in the replica and are re-verified at start).
pub const MAX_PENDING_VERIFIED: usize = 1_024;

/// The key of the link policy in `policies`.
pub const LINK_POLICY_KEY: &[u8] = b"link";

/// A remote statement whose signature verified.
#[derive(Debug, Clone)]
pub enum Verified {
    /// A node record (decoded) and its signed bytes.
    Record(Box<NodeRecord>, Vec<u8>),
    /// A revocation: the revoked node and the signed bytes.
    Revocation(NodeId, Vec<u8>),
    /// A CA-signed link policy.
    Policy(Box<SignedPolicy>),
}

/// Why the replicated state could not be opened or saved.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The snapshot file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The snapshot file is damaged or belongs to another node; the node refuses to start
    /// rather than reuse event numbers its peers have already seen.
    #[error("{path} is unusable ({reason}); move it away to start with an empty replica")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing the snapshot failed.
    #[error(transparent)]
    Write(#[from] identity::FileError),
    /// The replica refused a local write (a bound).
    #[error("replicated write refused: {0}")]
    Refused(#[from] crdt::CrdtError),
}

/// Entries refused by the checks, per collection, shared with the check closures.
#[derive(Debug, Default)]
struct Refusals {
    records: AtomicU64,
    revocations: AtomicU64,
    policies: AtomicU64,
    incidents: AtomicU64,
    verified_overflow: AtomicU64,
}

type Pending = Arc<Mutex<VecDeque<Verified>>>;

/// Ed25519 keys of the nodes whose records verified, for the incident summaries' check. One
/// per directory entry, so bounded by the directory's entry limit.
type Signers = Arc<Mutex<BTreeMap<NodeId, [u8; 32]>>>;

fn add_signer(signers: &Signers, record: &NodeRecord) {
    let mut table = match signers.lock() {
        Ok(table) => table,
        Err(poisoned) => poisoned.into_inner(),
    };
    if table.len() < crdt::limits::MAX_ENTRIES || table.contains_key(&record.node_id) {
        table.insert(record.node_id, record.keys.ed25519);
    }
}

/// The node's replica and what surrounds it.
pub struct Replication {
    replica: Replica,
    path: PathBuf,
    pending: Pending,
    refusals: Arc<Refusals>,
    signers: Signers,
    /// Applied-delta count at the last snapshot; a difference means remote changes to save.
    persisted_changes: u64,
    last_persist_ms: u64,
    snapshot_writes: u64,
    snapshot_errors: u64,
    /// Next digest round, wall ms, jitter included.
    wake_ms: u64,
    jitter_state: u64,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("node", &self.replica.node())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The replica settings of a node: the standard collections (`directory`, `revocations`,
/// `policies`) plus `incidents`, with the default timings. Tools that read a node's snapshot
/// must restore it with these.
pub fn replica_config(node: NodeId) -> ReplicaConfig {
    let mut config = ReplicaConfig::standard(node);
    config.collections.push((
        crate::healing::summary::COLLECTION.to_owned(),
        crdt::Kind::Map,
    ));
    config
}

/// Whether a link datagram is a CRDT message.
pub fn is_crdt(bytes: &[u8]) -> bool {
    bytes.starts_with(&crdt::codec::MESSAGE_MAGIC)
}

impl Replication {
    /// Opens the replica of `node`: restored from the snapshot in `data_dir` if there is one,
    /// with the signature checks installed. Every restored entry is verified again and queued
    /// for [`Replication::take_verified`], so revocations and policies apply from the start.
    pub fn open(
        node: NodeId,
        data_dir: &Path,
        state: Arc<VerifierState>,
        now_ms: u64,
        seed: u64,
    ) -> Result<Replication, ReplicationError> {
        let path = data_dir.join(SNAPSHOT_NAME);
        let config = replica_config(node);
        let mut replica = match read_snapshot(&path)? {
            Some(bytes) => Replica::restore(config, &bytes, now_ms).map_err(|error| {
                ReplicationError::Corrupt {
                    path: path.clone(),
                    reason: error.to_string(),
                }
            })?,
            None => Replica::new(config, now_ms)?,
        };
        let pending: Pending = Arc::new(Mutex::new(VecDeque::new()));
        let refusals = Arc::new(Refusals::default());
        let signers: Signers = Arc::new(Mutex::new(BTreeMap::new()));
        install_checks(&mut replica, &state, &pending, &refusals, &signers)?;
        let mut replication = Replication {
            persisted_changes: replica.stats().deltas_applied,
            replica,
            path,
            pending,
            refusals,
            signers,
            last_persist_ms: now_ms,
            snapshot_writes: 0,
            snapshot_errors: 0,
            wake_ms: now_ms,
            jitter_state: seed | 1,
        };
        replication.verify_restored(&state);
        Ok(replication)
    }

    fn verify_restored(&mut self, state: &VerifierState) {
        let now = unix_seconds();
        let mut restored = Vec::new();
        if let Some(map) = self.replica.map("revocations") {
            for (_, value) in map.iter() {
                if let Ok(revocation) = Revocation::verify(value, state) {
                    restored.push(Verified::Revocation(revocation.node_id, value.to_vec()));
                }
            }
        }
        if let Some(map) = self.replica.map("directory") {
            for (_, value) in map.iter() {
                if let Ok(record) = NodeRecord::verify(value, state, now) {
                    add_signer(&self.signers, &record);
                    restored.push(Verified::Record(Box::new(record), value.to_vec()));
                }
            }
        }
        if let Some(value) = self
            .replica
            .map("policies")
            .and_then(|map| map.get(LINK_POLICY_KEY))
            && let Ok(policy) = SignedPolicy::verify(value, state)
        {
            restored.push(Verified::Policy(Box::new(policy)));
        }
        for verified in restored {
            push_bounded(&self.pending, &self.refusals, verified);
        }
    }

    /// The replica, for inspection.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// A neighbour's authenticated link came up: it becomes a peer and a digest exchange
    /// starts at once.
    pub fn add_peer(&mut self, peer: NodeId, now_ms: u64) {
        if self.replica.add_peer(peer, now_ms).is_err() {
            tracing::debug!(peer = %peer.short(), "CRDT peer table full");
            return;
        }
        self.replica.sync_now(peer);
    }

    /// A neighbour's link went down.
    pub fn remove_peer(&mut self, peer: NodeId) {
        self.replica.remove_peer(peer);
    }

    /// A CRDT datagram from the authenticated neighbour `from`.
    pub fn handle_datagram(&mut self, from: NodeId, bytes: &[u8], now_ms: u64) {
        if let Err(reason) = self.replica.handle_message(from, bytes, now_ms) {
            tracing::debug!(peer = %from.short(), ?reason, "CRDT datagram dropped");
        }
    }

    /// When the next digest round is due, wall ms.
    pub fn wake_ms(&self) -> u64 {
        self.wake_ms
    }

    /// Runs a digest round if due and re-arms the timer with jitter.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let interval = self.replica.config().sync_interval_ms;
        if self.wake_ms > now_ms.saturating_add(2 * interval) {
            // The wall clock went back: waiting for the old deadline could take hours.
            self.wake_ms = now_ms;
        }
        if now_ms < self.wake_ms {
            return;
        }
        self.replica.handle_timeout(now_ms);
        let deadline = self.replica.poll_timeout().unwrap_or(now_ms + interval);
        self.wake_ms = deadline.max(now_ms) + self.jitter(interval / 5 + 1);
    }

    fn jitter(&mut self, bound: u64) -> u64 {
        // xorshift64: jitter only needs to differ between nodes, not to be unpredictable.
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        x % bound
    }

    /// The next datagram to send to a neighbour.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.replica.poll_transmit()
    }

    /// Statements verified since the last call, oldest first.
    pub fn take_verified(&mut self) -> Vec<Verified> {
        match self.pending.lock() {
            Ok(mut pending) => pending.drain(..).collect(),
            Err(poisoned) => poisoned.into_inner().drain(..).collect(),
        }
    }

    /// Publishes this node's own signed record (key = its node id) and saves the snapshot.
    pub fn publish_record(&mut self, record: &[u8], now_ms: u64) -> Result<(), ReplicationError> {
        let key = self.replica.node().0;
        self.replica.map_insert("directory", &key, record, now_ms)?;
        self.persist(now_ms)
    }

    /// Publishes this node's signed incident summary (key = its node id) and saves the
    /// snapshot, since a written event number must never be reused after a restart.
    pub fn publish_incidents(
        &mut self,
        summary: &[u8],
        now_ms: u64,
    ) -> Result<(), ReplicationError> {
        let key = self.replica.node().0;
        self.replica
            .map_insert(crate::healing::summary::COLLECTION, &key, summary, now_ms)?;
        self.persist(now_ms)
    }

    /// Every node's incident summary as held (signed bytes, unverified), by node.
    pub fn incident_summaries(&self) -> Vec<(NodeId, Vec<u8>)> {
        let Some(map) = self.replica.map(crate::healing::summary::COLLECTION) else {
            return Vec::new();
        };
        map.iter()
            .filter_map(|(key, value)| {
                let id: [u8; NodeId::LEN] = key.try_into().ok()?;
                Some((NodeId(id), value.to_vec()))
            })
            .collect()
    }

    /// Publishes a revocation the CA signed, unless the same one is held; returns whether it
    /// was new.
    pub fn publish_revocation(
        &mut self,
        node: NodeId,
        signed: &[u8],
        now_ms: u64,
    ) -> Result<bool, ReplicationError> {
        let held = self
            .replica
            .map("revocations")
            .and_then(|map| map.get(&node.0))
            .is_some();
        if held {
            return Ok(false);
        }
        self.replica
            .map_insert("revocations", &node.0, signed, now_ms)?;
        self.persist(now_ms)?;
        Ok(true)
    }

    /// The text of the link policy held, if any (as signed by the CA).
    pub fn policy_text(&self, state: &VerifierState) -> Option<SignedPolicy> {
        let value = self.replica.map("policies")?.get(LINK_POLICY_KEY)?;
        SignedPolicy::verify(value, state).ok()
    }

    /// On the CA node: when the policy file at `path` changed since `modified` (its mtime is
    /// then updated) and its text differs from the policy held, signs it with the CA key and
    /// publishes it. Returns the policy to apply; read, parse and sign errors are logged.
    pub fn publish_policy_file(
        &mut self,
        ca: &identity::CertificateAuthority,
        path: &Path,
        state: &VerifierState,
        modified: &mut Option<std::time::SystemTime>,
        now_ms: u64,
    ) -> Option<SignedPolicy> {
        let changed = std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok();
        if changed.is_none() || changed == *modified {
            return None;
        }
        *modified = changed;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the policy file");
                return None;
            }
        };
        if self
            .policy_text(state)
            .is_some_and(|held| held.text == text)
        {
            return None;
        }
        let result = ca
            .sign_policy(&text, now_ms)
            .map_err(|error| error.to_string())
            .and_then(|signed| {
                self.publish_policy(&signed, now_ms)
                    .map_err(|error| error.to_string())?;
                SignedPolicy::verify(&signed, state).map_err(|error| error.to_string())
            });
        match result {
            Ok(policy) => {
                tracing::info!(path = %path.display(), "link policy signed and published");
                Some(policy)
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "link policy not published");
                None
            }
        }
    }

    /// Publishes a CA-signed link policy.
    pub fn publish_policy(&mut self, signed: &[u8], now_ms: u64) -> Result<(), ReplicationError> {
        self.replica
            .map_insert("policies", LINK_POLICY_KEY, signed, now_ms)?;
        self.persist(now_ms)
    }

    /// Saves the snapshot if remote changes arrived and the last save is old enough.
    pub fn persist_if_due(&mut self, now_ms: u64) {
        let changes = self.replica.stats().deltas_applied;
        if changes == self.persisted_changes
            || now_ms.saturating_sub(self.last_persist_ms) < PERSIST_INTERVAL_MS
        {
            return;
        }
        if let Err(error) = self.persist(now_ms) {
            tracing::warn!(%error, "cannot save the replicated state");
        }
    }

    /// Saves the snapshot now (atomically: a crash leaves the old file or the new one).
    pub fn persist(&mut self, now_ms: u64) -> Result<(), ReplicationError> {
        let bytes = self.replica.snapshot();
        self.last_persist_ms = now_ms;
        match identity::files::write_private(&self.path, &bytes) {
            Ok(()) => {
                self.snapshot_writes += 1;
                self.persisted_changes = self.replica.stats().deltas_applied;
                Ok(())
            }
            Err(error) => {
                self.snapshot_errors += 1;
                Err(error.into())
            }
        }
    }

    /// Counters for `/api/v1/status`, every name prefixed `crdt_`.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let stats = self.replica.stats();
        let refused = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        [
            ("crdt_messages_rx", stats.messages_rx),
            ("crdt_bytes_rx", stats.bytes_rx),
            ("crdt_messages_tx", stats.messages_tx),
            ("crdt_bytes_tx", stats.bytes_tx),
            ("crdt_deltas_applied", stats.deltas_applied),
            ("crdt_fragments_rx", stats.fragments_rx),
            ("crdt_messages_reassembled", stats.messages_reassembled),
            (
                "crdt_dropped_malformed",
                stats.dropped_malformed + stats.dropped_oversized + stats.dropped_version,
            ),
            ("crdt_dropped_clock_skew", stats.dropped_clock_skew),
            ("crdt_dropped_out_of_order", stats.dropped_out_of_order),
            ("crdt_dropped_rejected", stats.dropped_rejected),
            (
                "crdt_dropped_reassembly",
                stats.dropped_fragment_mismatch
                    + stats.dropped_reassembly_full
                    + stats.reassembly_expired,
            ),
            ("crdt_transmit_queue_full", stats.transmit_queue_full),
            (
                "crdt_dropped_invalid_entries",
                stats.dropped_invalid_entries,
            ),
            ("crdt_refused_records", refused(&self.refusals.records)),
            (
                "crdt_refused_revocations",
                refused(&self.refusals.revocations),
            ),
            ("crdt_refused_policies", refused(&self.refusals.policies)),
            ("crdt_refused_incidents", refused(&self.refusals.incidents)),
            (
                "crdt_verified_overflow",
                refused(&self.refusals.verified_overflow),
            ),
            ("crdt_snapshot_writes", self.snapshot_writes),
            ("crdt_snapshot_errors", self.snapshot_errors),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// What `ctl crdt status` and `/api/v1/crdt` show.
    pub fn view(&self) -> CrdtView {
        let replica = &self.replica;
        let collections = replica
            .config()
            .collections
            .iter()
            .map(|(name, _)| {
                let store = replica.store(name);
                CollectionView {
                    name: name.clone(),
                    digest: format!("{:016x}", replica.digest(name).unwrap_or(0)),
                    entries: store.map_or(0, |store| store.len()),
                    writers: store.map_or(0, |store| store.context().origins()),
                    events: store.map_or(0, |store| {
                        store.context().vector().map(|(_, max)| max).sum()
                    }),
                }
            })
            .collect();
        let peers = replica
            .peer_status()
            .into_iter()
            .map(|peer| CrdtPeerView {
                peer: peer.peer,
                last_heard_unix_ms: peer.last_heard_ms,
                in_sync: peer.in_sync.iter().all(|(_, in_sync)| *in_sync),
                collections_in_sync: peer
                    .in_sync
                    .into_iter()
                    .filter(|(_, in_sync)| *in_sync)
                    .map(|(name, _)| name)
                    .collect(),
            })
            .collect();
        CrdtView {
            node_id: replica.node(),
            collections,
            peers,
            counters: self.counters(),
        }
    }
}

/// One collection in [`CrdtView`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CollectionView {
    /// Its name.
    pub name: String,
    /// The 64-bit state digest, hex: equal on two nodes means equal state.
    pub digest: String,
    /// Live entries (tombstones included).
    pub entries: usize,
    /// Writers it has seen.
    pub writers: usize,
    /// Events seen, summed over writers.
    pub events: u64,
}

/// One peer in [`CrdtView`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrdtPeerView {
    /// The neighbour.
    pub peer: NodeId,
    /// When it was last heard, Unix ms.
    pub last_heard_unix_ms: u64,
    /// Whether its last digest matched ours for every collection.
    pub in_sync: bool,
    /// The collections whose digests matched.
    pub collections_in_sync: Vec<String>,
}

/// The replicated state of one node, for `ctl crdt status` and `/api/v1/crdt`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrdtView {
    /// This node.
    pub node_id: NodeId,
    /// Every collection.
    pub collections: Vec<CollectionView>,
    /// Every neighbour it synchronises with.
    pub peers: Vec<CrdtPeerView>,
    /// The `crdt_*` counters (also in `/api/v1/status`).
    pub counters: BTreeMap<String, u64>,
}

fn read_snapshot(path: &Path) -> Result<Option<Vec<u8>>, ReplicationError> {
    let read_error = |source| ReplicationError::Read {
        path: path.to_path_buf(),
        source,
    };
    let length = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    if length > MAX_SNAPSHOT_BYTES {
        return Err(ReplicationError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{length} bytes, more than {MAX_SNAPSHOT_BYTES}"),
        });
    }
    std::fs::read(path).map(Some).map_err(read_error)
}

fn push_bounded(pending: &Pending, refusals: &Refusals, verified: Verified) {
    let mut queue = match pending.lock() {
        Ok(queue) => queue,
        Err(poisoned) => poisoned.into_inner(),
    };
    if queue.len() >= MAX_PENDING_VERIFIED {
        queue.pop_front();
        refusals.verified_overflow.fetch_add(1, Ordering::Relaxed);
    }
    queue.push_back(verified);
}

/// Installs the signature check of each collection (the rules in the module doc).
fn install_checks(
    replica: &mut Replica,
    state: &Arc<VerifierState>,
    pending: &Pending,
    refusals: &Arc<Refusals>,
    signers: &Signers,
) -> Result<(), crdt::CrdtError> {
    let (verifier, queue, refused) = (state.clone(), pending.clone(), refusals.clone());
    let record_signers = signers.clone();
    replica.set_entry_check(
        "directory",
        EntryCheck::new(move |writer, entry| {
            let record = entry.value.as_ref().and_then(|value| {
                NodeRecord::verify(value, &verifier, unix_seconds())
                    .ok()
                    .map(|record| (record, value))
            });
            match record {
                Some((record, value))
                    if record.node_id == writer && entry.key == writer.0.as_slice() =>
                {
                    add_signer(&record_signers, &record);
                    push_bounded(
                        &queue,
                        &refused,
                        Verified::Record(Box::new(record), value.clone()),
                    );
                    true
                }
                // A node may delete only its own record.
                None if entry.value.is_none() && entry.key == writer.0.as_slice() => true,
                _ => {
                    refused.records.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        }),
    )?;
    let (verifier, queue, refused) = (state.clone(), pending.clone(), refusals.clone());
    replica.set_entry_check(
        "revocations",
        EntryCheck::new(move |_, entry| {
            let revocation = entry.value.as_ref().and_then(|value| {
                Revocation::verify(value, &verifier)
                    .ok()
                    .map(|r| (r, value))
            });
            match revocation {
                Some((revocation, value)) if entry.key == revocation.node_id.0.as_slice() => {
                    push_bounded(
                        &queue,
                        &refused,
                        Verified::Revocation(revocation.node_id, value.clone()),
                    );
                    true
                }
                _ => {
                    refused.revocations.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        }),
    )?;
    let (verifier, queue, refused) = (state.clone(), pending.clone(), refusals.clone());
    replica.set_entry_check(
        "policies",
        EntryCheck::new(move |_, entry| {
            let policy = entry
                .value
                .as_ref()
                .and_then(|value| SignedPolicy::verify(value, &verifier).ok());
            match policy {
                Some(policy) if entry.key == LINK_POLICY_KEY => {
                    push_bounded(&queue, &refused, Verified::Policy(Box::new(policy)));
                    true
                }
                _ => {
                    refused.policies.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        }),
    )?;
    let (signers, refused) = (signers.clone(), refusals.clone());
    replica.set_entry_check(
        crate::healing::summary::COLLECTION,
        EntryCheck::new(move |writer, entry| {
            if entry.key != writer.0.as_slice() {
                refused.incidents.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let Some(value) = entry.value.as_ref() else {
                // A node may delete its own summary.
                return true;
            };
            let key = match signers.lock() {
                Ok(table) => table.get(&writer).copied(),
                Err(poisoned) => poisoned.into_inner().get(&writer).copied(),
            };
            match crate::healing::summary::decode(value, |_| key) {
                Ok(summary) if summary.node == writer => true,
                _ => {
                    refused.incidents.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        }),
    )?;
    Ok(())
}

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use identity::{CertificateAuthority, KeySet, Policy, TrustDomain};

    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        ca: CertificateAuthority,
        state: Arc<VerifierState>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let domain = TrustDomain::new("example.org").unwrap();
        let ca =
            CertificateAuthority::init(&dir.path().join("ca"), domain, unix_seconds()).unwrap();
        let state = VerifierState::new(ca.bundle().unwrap(), Policy::default());
        Fixture { dir, ca, state }
    }

    fn now_ms() -> u64 {
        u64::try_from(unix_seconds()).unwrap() * 1000
    }

    /// A member's record, signed with its keys and bound to an SVID the CA issued.
    fn record(ca: &CertificateAuthority, keys: &KeySet) -> Vec<u8> {
        let now = unix_seconds();
        NodeRecord {
            node_id: keys.node_id(),
            version: now_ms(),
            not_before: now - 60,
            not_after: now + 3_600,
            keys: keys.public().clone(),
            endpoints: vec!["127.0.0.1:7400".parse().unwrap()],
            svid: ca.issue_own(keys, now, 3_600).unwrap(),
        }
        .sign(keys)
        .unwrap()
    }

    /// A peer's replica that has just written `value` under `key` of `collection`; returns
    /// the datagrams it pushed to `to`.
    fn pushed(
        writer: NodeId,
        to: NodeId,
        collection: &str,
        key: &[u8],
        value: &[u8],
    ) -> Vec<Vec<u8>> {
        let mut peer = Replica::new(ReplicaConfig::standard(writer), now_ms()).unwrap();
        peer.add_peer(to, now_ms()).unwrap();
        peer.map_insert(collection, key, value, now_ms()).unwrap();
        std::iter::from_fn(|| peer.poll_transmit())
            .map(|transmit| transmit.payload)
            .collect()
    }

    fn open(fixture: &Fixture, node: NodeId) -> Result<Replication, ReplicationError> {
        Replication::open(node, fixture.dir.path(), fixture.state.clone(), now_ms(), 7)
    }

    #[test]
    fn records_are_verified_and_forged_or_misattributed_ones_are_refused_and_counted() {
        let fixture = fixture();
        let (own, member, forger) = (
            KeySet::generate().unwrap(),
            KeySet::generate().unwrap(),
            KeySet::generate().unwrap(),
        );
        let mut replication = open(&fixture, own.node_id()).unwrap();
        let valid = record(&fixture.ca, &member);
        let mut forged = record(&fixture.ca, &forger);
        let last = forged.len() - 1;
        forged[last] ^= 0x01;
        let cases = [
            (member.node_id(), member.node_id(), valid.clone()),
            (forger.node_id(), forger.node_id(), forged),
            // A valid record written under someone else's name: a replay by another node.
            (forger.node_id(), member.node_id(), valid),
        ];
        for (writer, key, value) in cases {
            for datagram in pushed(writer, own.node_id(), "directory", &key.0, &value) {
                replication.handle_datagram(writer, &datagram, now_ms());
            }
        }
        let verified = replication.take_verified();
        assert_eq!(verified.len(), 1, "only the genuine record: {verified:?}");
        assert!(
            matches!(&verified[0], Verified::Record(record, _) if record.node_id == member.node_id())
        );
        let counters = replication.counters();
        assert_eq!(counters["crdt_refused_records"], 2);
        assert_eq!(counters["crdt_dropped_invalid_entries"], 2);
        let directory = replication.replica().map("directory").unwrap();
        assert_eq!(directory.len(), 1);
        assert!(directory.get(&member.node_id().0).is_some());
    }

    #[test]
    fn only_a_policy_signed_by_the_ca_key_is_accepted() {
        let fixture = fixture();
        let (own, member) = (KeySet::generate().unwrap(), KeySet::generate().unwrap());
        let mut replication = open(&fixture, own.node_id()).unwrap();
        let text = "default: deny\nrules:\n  - allow: \"spiffe://example.org/node/*\"\n";
        let by_member = SignedPolicy::sign(text, now_ms(), &member, "example.org").unwrap();
        for datagram in pushed(
            member.node_id(),
            own.node_id(),
            "policies",
            LINK_POLICY_KEY,
            &by_member,
        ) {
            replication.handle_datagram(member.node_id(), &datagram, now_ms());
        }
        assert!(replication.take_verified().is_empty());
        assert_eq!(replication.counters()["crdt_refused_policies"], 1);
        let by_ca = fixture.ca.sign_policy(text, now_ms()).unwrap();
        let ca_node = KeySet::generate().unwrap().node_id();
        for datagram in pushed(ca_node, own.node_id(), "policies", LINK_POLICY_KEY, &by_ca) {
            replication.handle_datagram(ca_node, &datagram, now_ms());
        }
        let verified = replication.take_verified();
        assert!(
            matches!(&verified[..], [Verified::Policy(policy)] if policy.text == text),
            "{verified:?}"
        );
        assert_eq!(replication.counters()["crdt_refused_policies"], 1);
        assert!(
            fixture.ca.sign_policy("rules: [42]", now_ms()).is_err(),
            "a bad policy is not signed"
        );
    }

    #[test]
    fn the_replica_survives_a_restart_and_a_damaged_snapshot_stops_the_node() {
        let fixture = fixture();
        let own = KeySet::generate().unwrap();
        let mut replication = open(&fixture, own.node_id()).unwrap();
        replication
            .publish_record(&record(&fixture.ca, &own), now_ms())
            .unwrap();
        let revocation = fixture
            .ca
            .revoke(KeySet::generate().unwrap().node_id(), unix_seconds())
            .unwrap();
        let revoked = Revocation::verify(&revocation, &fixture.state)
            .unwrap()
            .node_id;
        assert!(
            replication
                .publish_revocation(revoked, &revocation, now_ms())
                .unwrap()
        );
        assert!(
            !replication
                .publish_revocation(revoked, &revocation, now_ms())
                .unwrap(),
            "held already"
        );
        let digest = replication.replica().digest("directory");
        drop(replication);
        let mut restored = open(&fixture, own.node_id()).unwrap();
        assert_eq!(restored.replica().digest("directory"), digest);
        let verified = restored.take_verified();
        assert!(
            verified
                .iter()
                .any(|v| matches!(v, Verified::Revocation(node, _) if *node == revoked))
        );
        assert!(
            verified.iter().any(
                |v| matches!(v, Verified::Record(record, _) if record.node_id == own.node_id())
            )
        );
        drop(restored);
        let path = fixture.dir.path().join(SNAPSHOT_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let error = open(&fixture, own.node_id()).unwrap_err();
        assert!(matches!(error, ReplicationError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains(SNAPSHOT_NAME), "{error}");
        // Another node's snapshot is refused as well.
        std::fs::write(&path, {
            let other = Replica::new(
                ReplicaConfig::standard(KeySet::generate().unwrap().node_id()),
                now_ms(),
            )
            .unwrap();
            other.snapshot()
        })
        .unwrap();
        assert!(matches!(
            open(&fixture, own.node_id()),
            Err(ReplicationError::Corrupt { .. })
        ));
    }
}
