//! `KvNode`: one member of a Raft group serving the key-value API.
//!
//! Hosting contract (what the node runtime does):
//! 1. [`KvNode::open`] with a [`KvConfig`] (its id, the address peers and clients are pointed
//!    to, the store directory) and a [`RaftTransport`] for outgoing RPCs. A corrupted file is refused
//!    here ([`KvError::Corrupted`]) and the node must not serve.
//! 2. Feed every incoming Raft RPC to [`KvNode::handle_rpc`] and send back its bytes.
//! 3. Once, on one node of a new group: [`KvNode::initialize`] with the voters.
//! 4. Serve clients with the `put/get/...` methods; on [`KvError::NotLeader`] forward the request
//!    to the hinted leader; on other retryable errors retry after a pause.
//! 5. [`KvNode::shutdown`] before dropping it.
//!
//! Every call is bounded by [`KvConfig::request_timeout`]. A write that times out may still be
//! applied later ([`KvError::Timeout`] says so); a read never has an effect.
//!
//! Leases: the leader counts every lease's TTL from when it first saw the lease as leader, and
//! proposes a [`Command::LeaseExpire`] entry when it runs out; every replica deletes the keys
//! when it applies that entry. A new leader restarts the count, so a lease can outlive its TTL
//! by up to one failover, never end early. The lease clock is tokio's, read only on the leader.
//!
//! Writes of concurrent clients are folded into one log entry ([`Command::Batch`], applied in
//! order at one revision): openraft 0.9 fsyncs each append before the next, so one entry per
//! write would cap throughput at one write per fsync.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::command::{Command, LeaseId, LimitError, Rejection, Reply, Revision, check_key};
use crate::limits::{
    MAX_BATCH_BYTES, MAX_BATCH_COMMANDS, MAX_EXPIRE_BATCH, MAX_INFLIGHT_BATCHES, MAX_LEASES,
    MAX_LIST_PAGE, MAX_PAYLOAD_ENTRIES, MAX_RPC_BYTES, PROPOSAL_QUEUE, SNAPSHOT_CHUNK_BYTES,
    WATCH_BUFFER,
};
use crate::store::{LogStore, OpenError, StateMachine, Store, Versioned, WatchEvent};
use crate::transport::{NetworkFactory, RaftTransport, RpcKind};
use crate::{NodeId, TypeConfig};

/// How often the leader looks for expired leases; also the granularity of lease expiry.
const LEASE_TICK: Duration = Duration::from_millis(100);

/// How long `open` waits for a previous instance in this process to release the file.
const OPEN_BUSY_WAIT: Duration = Duration::from_secs(5);

/// Settings of one node.
#[derive(Clone, Debug)]
pub struct KvConfig {
    /// This node's id in the group.
    pub id: NodeId,
    /// Where clients and peers reach this node (returned in leader hints).
    pub address: String,
    /// The store directory (`log.redb` and `state.redb`).
    pub path: PathBuf,
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// Election timeout range; the upper bound must exceed the lower.
    pub election_timeout: (Duration, Duration),
    /// Upper bound on every API call.
    pub request_timeout: Duration,
    /// Build a snapshot (and later purge the log) after this many applied entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot, so a briefly lagging follower catches up from the
    /// log instead of a whole snapshot.
    pub logs_kept_after_snapshot: u64,
}

impl KvConfig {
    /// Defaults matching etcd's usual timing: heartbeat 100 ms, a follower suspects the leader
    /// after about 1 s. An openraft follower waits its leader lease (the election timeout's upper
    /// bound) plus a random election timeout before campaigning, so (450, 550) ms gives 1.0–1.1 s.
    pub fn new(id: NodeId, address: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            id,
            address: address.into(),
            path: path.into(),
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(450), Duration::from_millis(550)),
            request_timeout: Duration::from_secs(5),
            snapshot_every: 10_000,
            logs_kept_after_snapshot: 1000,
        }
    }
}

/// Errors of the key-value API.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    /// This node is not the leader; send the request to `leader` at `address`.
    #[error("not the leader; leader is node {leader} at {address}")]
    NotLeader {
        /// The leader's id.
        leader: NodeId,
        /// The leader's address.
        address: String,
    },
    /// No leader is known (an election is running or the node is cut off). Retry later.
    #[error("no leader available ({0}); retry")]
    Unavailable(String),
    /// No answer within the request timeout. A write may still be applied.
    #[error("no answer within {0:?}; a write may or may not have been applied")]
    Timeout(Duration),
    /// The write was proposed but its fate is unknown (leadership changed while it was in
    /// flight): it may or may not be applied. Never repeated on the client's behalf.
    #[error("{0}; a write may or may not have been applied")]
    Indeterminate(String),
    /// The request breaks a size limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The state machine refused the command (same on every replica).
    #[error("refused: {0}")]
    Rejected(#[from] Rejection),
    /// The store file is corrupted; the node refuses to serve.
    #[error("{0}")]
    Corrupted(String),
    /// Storage failed (disk full, I/O error); nothing unacknowledged was applied.
    #[error("storage failure: {0}")]
    Storage(String),
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// An RPC could not be decoded or is too large.
    #[error("bad RPC: {0}")]
    BadRpc(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
}

impl KvError {
    /// Whether the same request may succeed if retried (here or at the hinted leader).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvError::NotLeader { .. }
                | KvError::Unavailable(_)
                | KvError::Timeout(_)
                | KvError::Indeterminate(_)
        )
    }
}

/// Read consistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// The leader confirms leadership with a quorum and waits until it applied that point.
    Linearizable,
    /// Local state machine, possibly behind the leader.
    Stale,
}

/// Result of a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasResult {
    /// Whether the write happened.
    pub succeeded: bool,
    /// The value after the operation.
    pub current: Option<Vec<u8>>,
    /// Log index of the operation.
    pub revision: Revision,
}

/// One page of a prefix listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// Keys and values in key order.
    pub items: Vec<(Vec<u8>, Versioned)>,
    /// Pass as `after` to get the next page; `None` when this was the last.
    pub next: Option<Vec<u8>>,
}

/// Raft status of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub state: String,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Highest log index known committed.
    pub commit_index: Option<u64>,
    /// Highest log index applied to the state machine.
    pub last_applied: Option<u64>,
    /// Last log index.
    pub last_log_index: Option<u64>,
    /// Voters of the current configuration.
    pub voters: BTreeSet<NodeId>,
    /// Learners.
    pub learners: BTreeSet<NodeId>,
}

/// A watch on a key prefix.
pub struct Watch {
    prefix: Vec<u8>,
    events: broadcast::Receiver<WatchEvent>,
}

/// Why a watch stopped delivering.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    /// The watcher fell more than the buffer behind; `n` events were lost. Re-list, then watch.
    #[error("watcher lagged by {0} events; re-list the prefix")]
    Lagged(u64),
    /// The node shut down.
    #[error("node shut down")]
    Closed,
}

impl Watch {
    /// The next change under the prefix (or a [`WatchEvent::Reset`]).
    pub async fn next(&mut self) -> Result<WatchEvent, WatchError> {
        loop {
            match self.events.recv().await {
                Ok(event) => {
                    let wanted = match &event {
                        WatchEvent::Change { key, .. } => key.starts_with(&self.prefix),
                        WatchEvent::Reset { .. } => true,
                    };
                    if wanted {
                        return Ok(event);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(WatchError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }
}

/// A running member of the key-value Raft group.
pub struct KvNode {
    config: KvConfig,
    raft: Raft<TypeConfig>,
    store: Store,
    events: broadcast::Sender<WatchEvent>,
    proposals: mpsc::Sender<Proposal>,
    lease_task: JoinHandle<()>,
    batch_task: JoinHandle<()>,
}

impl KvNode {
    /// Opens the store (refusing a corrupted one) and starts Raft.
    pub async fn open(
        config: KvConfig,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<Self, KvError> {
        let started = tokio::time::Instant::now();
        let store = loop {
            match Store::open(&config.path) {
                Ok(store) => break store,
                Err(OpenError::Busy(path)) if started.elapsed() < OPEN_BUSY_WAIT => {
                    tracing::debug!(%path, "store still held by a previous instance");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(OpenError::Busy(path)) => {
                    return Err(KvError::Storage(format!("{path} is held open elsewhere")));
                }
                Err(e @ OpenError::Corrupted { .. }) => {
                    return Err(KvError::Corrupted(e.to_string()));
                }
            }
        };
        let raft_config = Config {
            cluster_name: "x0tta6bl4-kv".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_timeout.0.as_millis() as u64,
            election_timeout_max: config.election_timeout.1.as_millis() as u64,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
            ..Config::default()
        }
        .validate()
        .map_err(|e| KvError::Storage(format!("invalid raft config: {e}")))?;
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            NetworkFactory::new(transport),
            LogStore::new(store.clone()),
            StateMachine::new(store.clone(), events.clone()),
        )
        .await
        .map_err(|e| KvError::Storage(e.to_string()))?;
        let lease_task = tokio::spawn(expire_leases(config.id, raft.clone(), store.clone()));
        let (proposals, queue) = mpsc::channel(PROPOSAL_QUEUE);
        let batch_task = tokio::spawn(batch_proposals(config.id, raft.clone(), queue));
        Ok(Self {
            config,
            raft,
            store,
            events,
            proposals,
            lease_task,
            batch_task,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Creates a new group with these voters (id → address). Only on one node, only once;
    /// calling it on an initialized node does nothing.
    pub async fn initialize(&self, voters: BTreeMap<NodeId, String>) -> Result<(), KvError> {
        let members: BTreeMap<NodeId, BasicNode> = voters
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(KvError::Membership(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// Handles one incoming Raft RPC and returns the answer bytes for the sender.
    pub async fn handle_rpc(&self, kind: RpcKind, request: &[u8]) -> Result<Vec<u8>, KvError> {
        if request.len() > MAX_RPC_BYTES {
            return Err(KvError::BadRpc(format!(
                "{} bytes exceed {MAX_RPC_BYTES}",
                request.len()
            )));
        }
        let bad = |e: serde_json::Error| KvError::BadRpc(e.to_string());
        let answer = match kind {
            RpcKind::AppendEntries => {
                let rpc: AppendEntriesRequest<TypeConfig> =
                    serde_json::from_slice(request).map_err(bad)?;
                serde_json::to_vec(&self.raft.append_entries(rpc).await)
            }
            RpcKind::Vote => {
                let rpc: VoteRequest<NodeId> = serde_json::from_slice(request).map_err(bad)?;
                serde_json::to_vec(&self.raft.vote(rpc).await)
            }
            RpcKind::InstallSnapshot => {
                let rpc: InstallSnapshotRequest<TypeConfig> =
                    serde_json::from_slice(request).map_err(bad)?;
                serde_json::to_vec(&self.raft.install_snapshot(rpc).await)
            }
        };
        answer.map_err(bad)
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, KvError>>,
    ) -> Result<T, KvError> {
        tokio::time::timeout(self.config.request_timeout, f)
            .await
            .unwrap_or(Err(KvError::Timeout(self.config.request_timeout)))
    }

    async fn write(&self, command: Command) -> Result<Reply, KvError> {
        command.validate()?;
        self.bounded(async {
            let (reply, answer) = oneshot::channel();
            self.proposals
                .send(Proposal { command, reply })
                .await
                .map_err(|_| KvError::ShuttingDown)?;
            match answer.await {
                Ok(Ok(Reply::Rejected { reason, .. })) => Err(KvError::Rejected(reason)),
                Ok(result) => result,
                // The batch task may have proposed the command before it stopped.
                Err(_) => Err(KvError::Indeterminate(
                    "the node stopped while the write was in flight".into(),
                )),
            }
        })
        .await
    }

    /// Writes `value` under `key`, attached to `lease` if given; returns the revision.
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<Revision, KvError> {
        match self
            .write(Command::Put {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
            })
            .await?
        {
            Reply::Put { revision } => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes `key`; returns whether it existed and the revision.
    pub async fn delete(&self, key: &[u8]) -> Result<(bool, Revision), KvError> {
        match self.write(Command::Delete { key: key.to_vec() }).await? {
            Reply::Delete { revision, existed } => Ok((existed, revision)),
            other => Err(unexpected(other)),
        }
    }

    /// Writes `new` if `key` holds `expected` (`None`: if absent).
    pub async fn cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<CasResult, KvError> {
        match self
            .write(Command::Cas {
                key: key.to_vec(),
                expected: expected.map(<[u8]>::to_vec),
                new: new.to_vec(),
            })
            .await?
        {
            Reply::Cas {
                revision,
                succeeded,
                current,
            } => Ok(CasResult {
                succeeded,
                current,
                revision,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Grants a lease of `ttl`; keys put with it are deleted when it ends.
    pub async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        match self
            .write(Command::LeaseGrant {
                ttl_ms: ttl.as_millis() as u64,
            })
            .await?
        {
            Reply::LeaseGranted { id, .. } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// Ends a lease now; returns how many keys were deleted (0 if it did not exist).
    pub async fn lease_revoke(&self, id: LeaseId) -> Result<u64, KvError> {
        match self.write(Command::LeaseRevoke { id }).await? {
            Reply::LeasesEnded { keys_deleted, .. } => Ok(keys_deleted),
            other => Err(unexpected(other)),
        }
    }

    async fn read_barrier(&self, read: Read) -> Result<(), KvError> {
        if read == Read::Stale {
            return Ok(());
        }
        self.bounded(async {
            match self.raft.ensure_linearizable().await {
                Ok(_) => Ok(()),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(leader_hint(self.config.id, f.leader_id, f.leader_node))
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                    Err(KvError::Unavailable(e.to_string()))
                }
                Err(RaftError::Fatal(e)) => Err(fatal(e)),
            }
        })
        .await
    }

    /// Reads `key`.
    pub async fn get(&self, key: &[u8], read: Read) -> Result<Option<Versioned>, KvError> {
        check_key(key)?;
        self.read_barrier(read).await?;
        self.store.get(key).map_err(storage)
    }

    /// Lists up to `limit` keys under `prefix` after `after` (exclusive).
    pub async fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        read: Read,
    ) -> Result<ListPage, KvError> {
        if limit == 0 || limit > MAX_LIST_PAGE {
            return Err(LimitError::BadPage(limit).into());
        }
        if prefix.len() > crate::limits::MAX_KEY_BYTES {
            return Err(LimitError::KeyTooLong(prefix.len()).into());
        }
        if let Some(after) = after {
            check_key(after)?;
        }
        self.read_barrier(read).await?;
        // One extra item tells whether another page follows.
        let mut items = self.store.list(prefix, after, limit + 1).map_err(storage)?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(ListPage { items, next })
    }

    /// Watches changes under `prefix` as this node applies them (from now on).
    pub fn watch(&self, prefix: &[u8]) -> Result<Watch, KvError> {
        if prefix.len() > crate::limits::MAX_KEY_BYTES {
            return Err(LimitError::KeyTooLong(prefix.len()).into());
        }
        Ok(Watch {
            prefix: prefix.to_vec(),
            events: self.events.subscribe(),
        })
    }

    /// Adds a learner (replicates, does not vote); waits until it caught up.
    pub async fn add_learner(&self, id: NodeId, address: &str) -> Result<(), KvError> {
        self.membership(self.raft.add_learner(id, BasicNode::new(address), true))
            .await
    }

    /// Makes exactly `voters` the voting members (each must already be a member or learner).
    pub async fn change_voters(&self, voters: BTreeSet<NodeId>) -> Result<(), KvError> {
        self.membership(self.raft.change_membership(voters, false))
            .await
    }

    async fn membership(
        &self,
        f: impl std::future::Future<
            Output = Result<
                openraft::raft::ClientWriteResponse<TypeConfig>,
                RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
            >,
        >,
    ) -> Result<(), KvError> {
        self.bounded(async {
            match f.await {
                Ok(_) => Ok(()),
                Err(e) => Err(write_error(self.config.id, e)),
            }
        })
        .await
    }

    /// Raft status of this node.
    pub async fn status(&self) -> Result<Status, KvError> {
        let metrics = self.raft.metrics().borrow().clone();
        let commit_index = self
            .bounded(async {
                self.raft
                    .with_raft_state(|s| s.committed.map(|l| l.index))
                    .await
                    .map_err(fatal)
            })
            .await?;
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        Ok(Status {
            id: self.config.id,
            state: format!("{:?}", metrics.state),
            leader: metrics.current_leader,
            term: metrics.current_term,
            commit_index,
            last_applied: metrics.last_applied.map(|l| l.index),
            last_log_index: metrics.last_log_index,
            voters,
            learners,
        })
    }

    /// The leader this node knows of, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The underlying openraft handle, for operations this API does not wrap (tests, metrics).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Why Raft stopped on its own (a storage error or a panic in its core), `None` while it
    /// runs or after [`KvNode::shutdown`]. openraft stops a replica at the first storage
    /// error; the host reopens the store to bring it back.
    pub fn stopped_by(&self) -> Option<String> {
        match &self.raft.metrics().borrow().running_state {
            Ok(()) | Err(openraft::error::Fatal::Stopped) => None,
            Err(other) => Some(other.to_string()),
        }
    }

    /// Stops Raft and the lease task; the file is released when the last handle drops.
    pub async fn shutdown(&self) {
        self.lease_task.abort();
        self.batch_task.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

impl Drop for KvNode {
    fn drop(&mut self) {
        self.lease_task.abort();
        self.batch_task.abort();
    }
}

fn leader_hint(me: NodeId, leader: Option<NodeId>, node: Option<BasicNode>) -> KvError {
    match (leader, node) {
        (Some(leader), Some(node)) if leader != me => KvError::NotLeader {
            leader,
            address: node.addr,
        },
        _ => KvError::Unavailable("election in progress".into()),
    }
}

fn write_error(me: NodeId, e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> KvError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            leader_hint(me, f.leader_id, f.leader_node)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            KvError::Membership(e.to_string())
        }
        RaftError::Fatal(e) => fatal(e),
    }
}

/// A client's command waiting to be batched.
struct Proposal {
    command: Command,
    reply: oneshot::Sender<Result<Reply, KvError>>,
}

/// Folds queued commands into batch entries and proposes up to [`MAX_INFLIGHT_BATCHES`] at
/// once; see [`Command::Batch`].
async fn batch_proposals(me: NodeId, raft: Raft<TypeConfig>, mut queue: mpsc::Receiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(MAX_INFLIGHT_BATCHES));
    let mut carried: Option<Proposal> = None;
    loop {
        // Taking a slot first lets commands pile up while every slot is busy.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match queue.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.command.payload_bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS {
            let Ok(next) = queue.try_recv() else { break };
            let size = next.command.payload_bytes();
            if bytes + size > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += size;
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            propose(me, &raft, batch).await;
        });
    }
}

/// Proposes `batch` as one log entry, or answers every command without proposing when this
/// node does not lead.
///
/// A proposal is only made while this node's metrics say it leads. That makes "not the
/// leader" a definite answer (nothing was proposed, so the caller may send the command to the
/// leader), while losing leadership after the proposal (openraft then answers
/// `ForwardToLeader` for an entry it truncated, which a later leader may still hold and
/// commit) is reported as [`KvError::Indeterminate`], never as a hint to repeat the write.
async fn propose(me: NodeId, raft: &Raft<TypeConfig>, batch: Vec<Proposal>) {
    let refusal = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader;
        (leader != Some(me)).then(|| {
            let node = leader.and_then(|leader| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .cloned()
            });
            leader_hint(me, leader, node)
        })
    };
    if let Some(refusal) = refusal {
        for proposal in batch {
            let _ = proposal.reply.send(Err(refusal.clone()));
        }
        return;
    }
    let in_flight = |e| match write_error(me, e) {
        KvError::NotLeader { .. } | KvError::Unavailable(_) => {
            KvError::Indeterminate("leadership changed while the write was in flight".into())
        }
        // The entry may have reached followers before this node's log write failed.
        KvError::Storage(why) => KvError::Indeterminate(format!("storage failure: {why}")),
        other => other,
    };
    let mut batch = batch;
    if batch.len() == 1 {
        if let Some(one) = batch.pop() {
            let result = raft
                .client_write(one.command)
                .await
                .map(|r| r.data)
                .map_err(in_flight);
            // The caller may have timed out; nobody waits then.
            let _ = one.reply.send(result);
        }
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    match raft.client_write(Command::Batch(commands)).await {
        Ok(response) => match response.data {
            Reply::Batch(results) if results.len() == replies.len() => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            other => {
                let e = unexpected(other);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        },
        Err(e) => {
            let e = in_flight(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn fatal(e: openraft::error::Fatal<NodeId>) -> KvError {
    match e {
        openraft::error::Fatal::Stopped => KvError::ShuttingDown,
        other => KvError::Storage(other.to_string()),
    }
}

fn storage(e: openraft::StorageError<NodeId>) -> KvError {
    KvError::Storage(e.to_string())
}

fn unexpected(reply: Reply) -> KvError {
    KvError::Storage(format!("unexpected reply {reply:?}"))
}

/// The leader's lease clock; see the module doc.
async fn expire_leases(id: NodeId, raft: Raft<TypeConfig>, store: Store) {
    // One deadline per live lease: at most MAX_LEASES (entries of ended leases are dropped).
    let mut seen: HashMap<LeaseId, tokio::time::Instant> = HashMap::new();
    let mut tick = tokio::time::interval(LEASE_TICK);
    loop {
        tick.tick().await;
        let leading = {
            let m = raft.metrics();
            let m = m.borrow();
            m.state == ServerState::Leader && m.current_leader == Some(id)
        };
        if !leading {
            seen.clear();
            continue;
        }
        let Ok(leases) = store.leases(MAX_LEASES) else {
            continue;
        };
        let now = tokio::time::Instant::now();
        let live: BTreeSet<LeaseId> = leases.iter().map(|(l, _)| *l).collect();
        seen.retain(|l, _| live.contains(l));
        let mut expired = Vec::new();
        for (lease, ttl_ms) in leases {
            let first = *seen.entry(lease).or_insert(now);
            if now.duration_since(first) >= Duration::from_millis(ttl_ms) {
                expired.push(lease);
            }
        }
        for ids in expired.chunks(MAX_EXPIRE_BATCH) {
            let command = Command::LeaseExpire { ids: ids.to_vec() };
            // Failure (lost leadership) is fine: the next leader counts again and expires them.
            if let Err(e) = raft.client_write(command).await {
                tracing::debug!(error = %e, "lease expiry not committed");
                break;
            }
        }
    }
}
