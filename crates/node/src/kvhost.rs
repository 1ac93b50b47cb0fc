//! The key-value store a node hosts: [`KvHost`] runs a [`kv::KvNode`] whose Raft RPCs, and the
//! client requests other nodes forward to the leader, travel as request streams on the
//! authenticated mesh links, relayed hop by hop along the routing table when the target is not
//! a neighbour.
//!
//! One request stream carries one request and one answer (docs/PROTOCOL.md, "Request streams"):
//!
//! ```text
//! request: version (1) | hop limit (1) | destination (16) | origin (16) | op (1) | body
//! answer:  status (1) | body
//! ```
//!
//! `op` 1 to 3 are Raft's AppendEntries, Vote and InstallSnapshot (body: openraft's JSON),
//! 16 is a client request ([`ClientRequest`] as JSON, answered with a JSON
//! `Result<ClientReply, KvFailure>`). Status 0 is an answer from the destination, 1 a failure
//! there (body: the reason), 2 a request that could not be delivered (no route, hop limit,
//! relay busy). A node that is not the destination takes one from the hop limit and passes the
//! stream to the next hop of its routing table, at most [`MAX_RELAYS`] at once.
//!
//! Raft ids are the first 8 bytes of the mesh node id, big-endian ([`raft_id`]); voters that
//! would share one are refused by the configuration, and membership changes refuse a node
//! whose Raft id another member already has.
//!
//! Every client call is bounded by `kv.request_timeout_ms`: a node that is not the leader
//! forwards to the leader it knows, a node with no leader known (an election) retries every
//! [`RETRY_PAUSE`], and when the time is up the caller gets a retryable error. One forwarding
//! attempt of a read is given up after twice the election timeout, or as soon as this node's
//! replica sees another leader, and the read goes on at the new leader; a forwarded write waits
//! for its answer until the request's time is up. A write is repeated only when the
//! earlier attempt provably did not reach a leader (no link or route, a relay could not pass it
//! on, or an answer "not the leader" from a node that proposed nothing). Otherwise it answers
//! that it may or may not have been applied ([`KvFailure::Indeterminate`]): repeating a put
//! that took effect late would overwrite later writes, which is not linearizable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use kv::transport::BoxFuture;
use kv::{KvConfig, KvError, KvNode, RaftTransport, Read, RpcKind, TransportError};
use routing::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use transport::{IncomingRequest, LinkEndpoint};
use wire::NodeId;

use crate::NodeConfig;
use crate::config::KvSettings;

/// How often the host looks whether its replica's Raft stopped on its own.
const REPLICA_CHECK: Duration = Duration::from_millis(200);

/// Pause before the first reopening of a stopped replica; it doubles with every stop that
/// follows soon after, up to [`REPLICA_RESTART_MAX`], so a disk that stays full is tried a
/// few times a minute and never in a tight loop.
const REPLICA_RESTART_FIRST: Duration = Duration::from_millis(500);
const REPLICA_RESTART_MAX: Duration = Duration::from_secs(8);

/// A replica that served this long before stopping starts again after the first pause.
const REPLICA_HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Version byte of the request header.
const VERSION: u8 = 1;

/// Bytes of the request header.
pub const HEADER_BYTES: usize = 1 + 1 + NodeId::LEN + NodeId::LEN + 1;

/// Hops a request may take; a mesh path longer than this is a routing loop.
pub const HOP_LIMIT: u8 = 16;

/// Requests this node relays for others at once; more are refused (status 2), so relaying
/// cannot take all of a node's memory.
pub const MAX_RELAYS: usize = 64;

/// Incoming request streams handled at once (Raft RPC, forwarded client requests, relays);
/// further streams are refused and the sender retries.
pub const MAX_HANDLERS: usize = 1024;

/// Request streams waiting for a handler task.
const INCOMING_QUEUE: usize = 256;

/// How long an incoming request may take to arrive whole; a peer that stalls is dropped.
const INCOMING_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause before retrying while no leader is known (an election is running). A node with a
/// replica retries at once when its replica learns of a new leader.
pub const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Leader hints followed in a row before pausing, so two nodes with stale hints pointing at
/// each other cannot spin.
const MAX_HINT_HOPS: usize = 3;

/// Shortest bound on one forwarding attempt.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// Operation byte of a client request.
const OP_CLIENT: u8 = 16;

/// Answer status: the destination answered.
const STATUS_OK: u8 = 0;
/// Answer status: the destination failed the request.
const STATUS_FAILED: u8 = 1;
/// Answer status: the request did not reach its destination.
const STATUS_UNDELIVERABLE: u8 = 2;

/// A node's Raft id: the first 8 bytes of its mesh id, big-endian.
pub fn raft_id(node: &NodeId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&node.0[..8]);
    u64::from_be_bytes(first)
}

/// Bytes as hex inside the JSON that travels between nodes.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Optional bytes as optional hex.
mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| hex::decode(t.as_bytes()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A key-value request, as the API takes it and as it is forwarded to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Write a value, optionally attached to an existing lease or to a new lease of `ttl_ms`.
    Put {
        /// Key bytes.
        #[serde(with = "hex_bytes")]
        key: Vec<u8>,
        /// Value bytes.
        #[serde(with = "hex_bytes")]
        value: Vec<u8>,
        /// An existing lease.
        lease: Option<u64>,
        /// Grant a new lease of this many milliseconds first.
        ttl_ms: Option<u64>,
    },
    /// Read a key.
    Get {
        /// Key bytes.
        #[serde(with = "hex_bytes")]
        key: Vec<u8>,
        /// Serve from a local replica without asking the leader.
        stale: bool,
    },
    /// Delete a key.
    Delete {
        /// Key bytes.
        #[serde(with = "hex_bytes")]
        key: Vec<u8>,
    },
    /// Write `new` if the key holds `expected` (`None`: if absent).
    Cas {
        /// Key bytes.
        #[serde(with = "hex_bytes")]
        key: Vec<u8>,
        /// Required current value.
        #[serde(with = "hex_opt")]
        expected: Option<Vec<u8>>,
        /// New value.
        #[serde(with = "hex_bytes")]
        new: Vec<u8>,
    },
    /// List keys under a prefix.
    List {
        /// Prefix bytes (empty: every key).
        #[serde(with = "hex_bytes")]
        prefix: Vec<u8>,
        /// Start after this key.
        #[serde(with = "hex_opt")]
        after: Option<Vec<u8>>,
        /// Page size.
        limit: usize,
        /// Serve from a local replica.
        stale: bool,
    },
    /// Raft status of a member.
    Status,
    /// Make a node a voter (it must run the store).
    AddVoter {
        /// The node.
        node: NodeId,
    },
    /// Take a voter out.
    RemoveVoter {
        /// The node.
        node: NodeId,
    },
}

/// A stored entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// Key bytes.
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// Value bytes.
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
    /// Revision (log index) of the write that stored it.
    pub revision: u64,
    /// Lease it is attached to.
    pub lease: Option<u64>,
}

/// The Raft view of one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftView {
    /// The member that answered.
    pub node: NodeId,
    /// Its Raft id.
    pub raft_id: u64,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Highest log index known committed.
    pub commit_index: Option<u64>,
    /// Highest log index applied.
    pub last_applied: Option<u64>,
    /// Voters of the current configuration.
    pub voters: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Times its replica reopened its store after Raft stopped on a storage error.
    #[serde(default)]
    pub replica_restarts: u64,
}

/// The answer to a [`ClientRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// A put was applied.
    Put {
        /// Its revision.
        revision: u64,
        /// The lease the key is attached to.
        lease: Option<u64>,
    },
    /// A read.
    Get {
        /// The entry, `None` if the key does not exist.
        entry: Option<KvEntry>,
    },
    /// A delete.
    Delete {
        /// Whether the key existed.
        existed: bool,
        /// Its revision.
        revision: u64,
    },
    /// A compare-and-swap.
    Cas {
        /// Whether the new value was written.
        succeeded: bool,
        /// The value now stored.
        #[serde(with = "hex_opt")]
        current: Option<Vec<u8>>,
        /// Its revision.
        revision: u64,
    },
    /// A page of a listing.
    List {
        /// Entries in key order.
        items: Vec<KvEntry>,
        /// Pass as `after` for the next page.
        #[serde(with = "hex_opt")]
        next: Option<Vec<u8>>,
    },
    /// Raft status (also the answer to membership changes).
    Raft(RaftView),
}

/// Why a key-value request failed. Each message is one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvFailure {
    /// This node has no `kv` section.
    #[error("this node runs no key-value store (no kv section in its node.yaml)")]
    Disabled,
    /// Not the leader; the request goes to `leader` (used between nodes).
    #[error("not the leader; the leader is {}", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// This node holds no replica (used between nodes: the request goes to a voter).
    #[error("this node holds no replica of the store")]
    NotMember,
    /// No leader reachable now (election, partition, startup). Retry.
    #[error("no leader available: {0}; retry")]
    Unavailable(String),
    /// No answer in time; a write may or may not have been applied. Retry.
    #[error("no answer within {0} ms; a write may or may not have been applied; retry")]
    Timeout(u64),
    /// The write was proposed but its fate is unknown (leadership changed, or the leader
    /// stopped answering, while it was in flight). Retry only if repeating it is harmless.
    #[error("{0}; a write may or may not have been applied; retry")]
    Indeterminate(String),
    /// The request breaks a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The state machine refused the command.
    #[error("refused: {0}")]
    Rejected(String),
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// This node refuses to serve: its store file is corrupted.
    #[error("this node refuses to serve the key-value store: {0}")]
    Corrupted(String),
    /// Storage failed (disk full, I/O error).
    #[error("storage failure: {0}")]
    Storage(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl KvFailure {
    /// Whether the same request may succeed if retried.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvFailure::Unavailable(_)
                | KvFailure::Timeout(_)
                | KvFailure::Indeterminate(_)
                | KvFailure::NotLeader { .. }
                | KvFailure::NotMember
                | KvFailure::ShuttingDown
        )
    }
}

/// Where the store stands on this node.
enum StoreState {
    Opening,
    Serving(Arc<KvNode>),
    /// Raft stopped on a storage error; the store is being reopened (the reason).
    Restarting(String),
    Refused(String),
}

/// How requests reach other nodes: the links and the routing table's next hops, kept current
/// by the node's loop.
#[derive(Default)]
struct Paths {
    links: HashMap<NodeId, quinn::Connection>,
    next_hop: HashMap<NodeId, NodeId>,
}

struct Shared {
    local: NodeId,
    settings: KvSettings,
    paths: RwLock<Paths>,
    state: RwLock<StoreState>,
    leader: Mutex<Option<NodeId>>,
    relays: Arc<Semaphore>,
    handlers: Arc<Semaphore>,
    next_voter: AtomicUsize,
    /// Set by [`KvHost::shutdown`]: the replica is not reopened any more.
    stopping: AtomicBool,
    /// Times the replica was reopened after Raft stopped on its own.
    restarts: AtomicU64,
}

/// The key-value store of a node. Clone freely.
#[derive(Clone)]
pub struct KvHost {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KvHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvHost")
            .field("node", &self.shared.local)
            .finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Every writer replaces whole entries, so a poisoned lock still holds consistent data.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Why a request to another node got no answer.
#[derive(Debug)]
enum SendFailure {
    /// It never left this node whole (no link or route, a relay could not pass it on): the
    /// destination did not act on it.
    NotSent(String),
    /// It was sent but no answer came: the destination may have acted on it.
    Lost(String),
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::NotSent(why) | SendFailure::Lost(why) => f.write_str(why),
        }
    }
}

/// Whether `request` only reads, so repeating it after an attempt without an answer cannot
/// change anything. Writes are never repeated then: a put that took effect late would
/// overwrite writes made after it (or bring back a value deleted in between).
fn is_read(request: &ClientRequest) -> bool {
    matches!(
        request,
        ClientRequest::Get { .. } | ClientRequest::List { .. } | ClientRequest::Status
    )
}

/// What one attempt of a request came to.
enum Attempt {
    Done(Result<ClientReply, KvFailure>),
    /// The request must go to this node.
    Goto(NodeId),
    /// Wait, then try again from here.
    Retry(KvFailure),
    /// The node tried did not answer: as `Retry`, and hints naming it go elsewhere.
    Unreachable(KvFailure),
    /// No leader known here: ask this voter (its replica may know one this node cannot learn
    /// of, e.g. after this node was removed from the group), then wait as for `Retry`.
    Probe(NodeId, KvFailure),
}

impl KvHost {
    /// Starts the store of a node whose `node.yaml` has a `kv` section (`None` otherwise):
    /// registers for request streams on `links` and opens the store in the background (until
    /// it is open, requests get a retryable error; a corrupted store is refused and said so).
    pub fn start(config: &NodeConfig, local: NodeId, links: &LinkEndpoint) -> Option<KvHost> {
        let settings = config.kv.clone()?;
        let shared = Arc::new(Shared {
            local,
            settings: settings.clone(),
            paths: RwLock::new(Paths::default()),
            state: RwLock::new(StoreState::Opening),
            leader: Mutex::new(None),
            relays: Arc::new(Semaphore::new(MAX_RELAYS)),
            handlers: Arc::new(Semaphore::new(MAX_HANDLERS)),
            next_voter: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
        });
        let host = KvHost { shared };
        let (sender, receiver) = mpsc::channel(INCOMING_QUEUE);
        links.serve_requests(sender);
        tokio::spawn(host.clone().accept(receiver));
        let path = config.data_dir.join("kv");
        tokio::spawn(host.clone().run_replica(path));
        Some(host)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.local
    }

    /// Size limits of this node's API: (largest key, largest value).
    pub fn limits(&self) -> (usize, usize) {
        (
            self.shared.settings.max_key_bytes,
            self.shared.settings.max_value_bytes,
        )
    }

    /// Opens the replica and keeps it serving: openraft stops a replica at its first storage
    /// error (a full disk, a failed write), and this reopens the store after a pause, so the
    /// replica catches up from the leader once the disk takes writes again, without a restart
    /// of the node. A store found corrupted is refused and stays refused.
    async fn run_replica(self, path: std::path::PathBuf) {
        let settings = &self.shared.settings;
        let local = self.shared.local;
        let own = raft_id(&local);
        if let Some(other) = settings
            .voters
            .iter()
            .find(|voter| raft_id(voter) == own && **voter != local)
        {
            let reason = format!("this node's Raft id {own:016x} is that of voter {other}");
            tracing::error!(%reason, "key-value store not started");
            *write(&self.shared.state) = StoreState::Refused(reason);
            return;
        }
        let mut pause = REPLICA_RESTART_FIRST;
        let mut first_open = true;
        loop {
            let node = match self.open_replica(&path, own).await {
                Ok(node) => node,
                Err(error) => {
                    let reason = error.to_string();
                    if first_open || matches!(error, KvError::Corrupted(_)) {
                        tracing::error!(%reason, "key-value store refused; this node does not serve it");
                        *write(&self.shared.state) = StoreState::Refused(reason);
                        return;
                    }
                    tracing::warn!(%reason, ?pause, "key-value replica not reopened yet");
                    *write(&self.shared.state) = StoreState::Restarting(reason);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(REPLICA_RESTART_MAX);
                    continue;
                }
            };
            if self.shared.stopping.load(Ordering::Acquire) {
                node.shutdown().await;
                return;
            }
            *write(&self.shared.state) = StoreState::Serving(node.clone());
            tracing::info!(raft_id = %format!("{own:016x}"), voter = settings.voters.contains(&local), "key-value store open");
            // Every configured voter creates the group with the same voters, so none is needed
            // for the start (openraft: identical initial memberships are safe, the vote elects
            // one leader); on a store that already has a group this does nothing.
            if first_open && settings.voters.contains(&local) {
                let voters: BTreeMap<u64, String> = settings
                    .voters
                    .iter()
                    .map(|voter| (raft_id(voter), voter.to_string()))
                    .collect();
                if let Err(error) = node.initialize(voters).await {
                    tracing::error!(%error, "cannot initialize the key-value group");
                }
            }
            first_open = false;
            let served_from = Instant::now();
            let Some(reason) = self.wait_for_stop(&node).await else {
                return;
            };
            tracing::error!(%reason, ?pause, "key-value replica stopped; reopening its store");
            *write(&self.shared.state) = StoreState::Restarting(reason);
            self.shared.restarts.fetch_add(1, Ordering::Relaxed);
            node.shutdown().await;
            // Requests in flight hold the old replica a little longer; the reopening waits
            // for its file (`KvNode::open` retries a store held open).
            drop(node);
            if served_from.elapsed() >= REPLICA_HEALTHY_AFTER {
                pause = REPLICA_RESTART_FIRST;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REPLICA_RESTART_MAX);
            if self.shared.stopping.load(Ordering::Acquire) {
                return;
            }
        }
    }

    async fn open_replica(&self, path: &std::path::Path, own: u64) -> Result<Arc<KvNode>, KvError> {
        let settings = &self.shared.settings;
        let mut config = KvConfig::new(own, self.shared.local.to_string(), path);
        config.heartbeat = settings.heartbeat;
        config.election_timeout = settings.election_timeout;
        config.request_timeout = settings.request_timeout;
        let transport = Arc::new(MeshTransport {
            host: Arc::downgrade(&self.shared),
        });
        KvNode::open(config, transport).await.map(Arc::new)
    }

    /// Waits until the replica's Raft stops on its own (the reason) or the node shuts down
    /// (`None`).
    async fn wait_for_stop(&self, node: &KvNode) -> Option<String> {
        loop {
            if self.shared.stopping.load(Ordering::Acquire) {
                return None;
            }
            if let Some(reason) = node.stopped_by() {
                return Some(reason);
            }
            tokio::time::sleep(REPLICA_CHECK).await;
        }
    }

    /// Times this node's replica was reopened after Raft stopped on a storage error.
    pub fn replica_restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Hook for the node's loop: a link to `peer` is up (`Some`) or gone (`None`).
    pub fn set_link(&self, peer: NodeId, connection: Option<&quinn::Connection>) {
        let mut paths = write(&self.shared.paths);
        match connection {
            Some(connection) => {
                paths.links.insert(peer, connection.clone());
            }
            None => {
                paths.links.remove(&peer);
            }
        }
    }

    /// Hook for the node's loop: a routing event.
    pub fn on_route_event(&self, event: &Event) {
        if let Event::RouteChanged {
            destination,
            next_hop,
        } = event
        {
            let mut paths = write(&self.shared.paths);
            match next_hop {
                Some(hop) => {
                    paths.next_hop.insert(*destination, *hop);
                }
                None => {
                    paths.next_hop.remove(destination);
                }
            }
        }
    }

    /// Hook for the node's loop: the whole routing table, now and then, to repair routing
    /// events the router dropped under load.
    pub fn set_routes(&self, routes: impl Iterator<Item = (NodeId, NodeId)>) {
        write(&self.shared.paths).next_hop = routes.collect();
    }

    /// Stops Raft (on node shutdown).
    pub async fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        let node = match &*read(&self.shared.state) {
            StoreState::Serving(node) => Some(node.clone()),
            _ => None,
        };
        if let Some(node) = node {
            node.shutdown().await;
        }
    }

    /// The open store, for watches (served by a replica only).
    pub fn watch(&self, prefix: &[u8]) -> Result<kv::Watch, KvFailure> {
        let node = self.serving()?;
        if !is_member(&node) {
            return Err(KvFailure::BadRequest(
                "watches are served by nodes holding a replica (voters); this node holds none"
                    .to_string(),
            ));
        }
        node.watch(prefix).map_err(failure)
    }

    fn serving(&self) -> Result<Arc<KvNode>, KvFailure> {
        match &*read(&self.shared.state) {
            StoreState::Opening => Err(KvFailure::Unavailable(
                "the key-value store is still opening".to_string(),
            )),
            StoreState::Refused(reason) => Err(KvFailure::Corrupted(reason.clone())),
            StoreState::Restarting(reason) => Err(KvFailure::Unavailable(format!(
                "the key-value replica is reopening its store after: {reason}"
            ))),
            StoreState::Serving(node) => Ok(node.clone()),
        }
    }

    fn check(&self, request: &ClientRequest) -> Result<(), KvFailure> {
        let (max_key, max_value) = self.limits();
        let key_ok = |key: &[u8], what: &str| -> Result<(), KvFailure> {
            if key.len() > max_key {
                return Err(KvFailure::TooLarge(format!(
                    "{what} of {} bytes exceeds the limit of {max_key} bytes",
                    key.len()
                )));
            }
            Ok(())
        };
        let value_ok = |value: &[u8]| -> Result<(), KvFailure> {
            if value.len() > max_value {
                return Err(KvFailure::TooLarge(format!(
                    "value of {} bytes exceeds the limit of {max_value} bytes",
                    value.len()
                )));
            }
            Ok(())
        };
        let key_present = |key: &[u8]| -> Result<(), KvFailure> {
            if key.is_empty() {
                return Err(KvFailure::BadRequest("empty key".to_string()));
            }
            key_ok(key, "key")
        };
        match request {
            ClientRequest::Put {
                key,
                value,
                lease,
                ttl_ms,
            } => {
                key_present(key)?;
                value_ok(value)?;
                if lease.is_some() && ttl_ms.is_some() {
                    return Err(KvFailure::BadRequest(
                        "give a lease or a ttl, not both".to_string(),
                    ));
                }
                if let Some(ttl) = ttl_ms
                    && (*ttl == 0 || *ttl > kv::limits::MAX_LEASE_TTL_MS)
                {
                    return Err(KvFailure::BadRequest(format!(
                        "ttl of {ttl} ms outside 1..={} ms",
                        kv::limits::MAX_LEASE_TTL_MS
                    )));
                }
                Ok(())
            }
            ClientRequest::Get { key, .. } | ClientRequest::Delete { key } => key_present(key),
            ClientRequest::Cas { key, expected, new } => {
                key_present(key)?;
                if let Some(expected) = expected {
                    value_ok(expected)?;
                }
                value_ok(new)
            }
            ClientRequest::List {
                prefix,
                after,
                limit,
                ..
            } => {
                key_ok(prefix, "prefix")?;
                if let Some(after) = after {
                    key_present(after)?;
                }
                if *limit == 0 || *limit > kv::limits::MAX_LIST_PAGE {
                    return Err(KvFailure::BadRequest(format!(
                        "page size {limit} outside 1..={}",
                        kv::limits::MAX_LIST_PAGE
                    )));
                }
                Ok(())
            }
            ClientRequest::Status
            | ClientRequest::AddVoter { .. }
            | ClientRequest::RemoveVoter { .. } => Ok(()),
        }
    }

    /// Serves a client request: here if this node can, otherwise at the leader over the
    /// mesh; retries through elections until `kv.request_timeout_ms` is up.
    pub async fn request(&self, request: ClientRequest) -> Result<ClientReply, KvFailure> {
        self.check(&request)?;
        let timeout = self.shared.settings.request_timeout;
        let deadline = Instant::now() + timeout;
        let timed_out = || KvFailure::Timeout(u64::try_from(timeout.as_millis()).unwrap_or(0));
        let cached = *self
            .shared
            .leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut target = cached.filter(|leader| *leader != self.shared.local);
        let mut hops = 0;
        let mut last = None;
        // A node that gave no answer in this request: hints naming it (from a replica that has
        // not yet seen the election, or one no longer replicated to) go to another voter.
        let mut failed: Option<NodeId> = None;
        loop {
            let attempt = match target {
                None => self.attempt_here(&request).await,
                Some(node) => {
                    // An attempt is given up after two election timeouts without an answer,
                    // or at once when this node's replica sees another leader: a read is then
                    // repeated at the next leader; a write, which cannot be repeated, answers
                    // that it may or may not have been applied, so its client learns of the
                    // election within two election timeouts instead of at the request's deadline.
                    let attempt_deadline = deadline.min(Instant::now() + self.attempt_bound());
                    tokio::select! {
                        attempt = self.attempt_at(node, &request, attempt_deadline) => attempt,
                        () = self.leader_moved_from(node) => self.abandoned(node, &request, "the leader changed")?,
                        () = tokio::time::sleep_until(attempt_deadline) => {
                            if Instant::now() >= deadline {
                                // An earlier failure does not describe a write still in flight.
                                return Err(match last {
                                    Some(failure) if is_read(&request) => failure,
                                    _ => timed_out(),
                                });
                            }
                            self.abandoned(node, &request, "no answer")?
                        }
                    }
                }
            };
            match attempt {
                Attempt::Done(result) => {
                    if result.is_ok() {
                        self.remember_leader(target);
                    }
                    return result;
                }
                Attempt::Goto(node) => {
                    hops += 1;
                    let node = match failed {
                        Some(dead) if dead == node => self.pick_voter_except(dead).unwrap_or(node),
                        _ => node,
                    };
                    target = (node != self.shared.local).then_some(node);
                    if hops <= MAX_HINT_HOPS {
                        continue;
                    }
                    // After a pause a node that did not answer is tried again: it may have
                    // been a lost connection rather than a dead leader.
                    hops = 0;
                    failed = None;
                }
                Attempt::Retry(failure) => {
                    self.remember_leader(None);
                    target = None;
                    last = Some(failure);
                }
                Attempt::Unreachable(failure) => {
                    self.remember_leader(None);
                    failed = target;
                    target = None;
                    last = Some(failure);
                }
                Attempt::Probe(voter, failure) => {
                    last = Some(failure);
                    let voter = match failed {
                        Some(dead) if dead == voter => {
                            self.pick_voter_except(dead).unwrap_or(voter)
                        }
                        _ => voter,
                    };
                    target = Some(voter);
                    continue;
                }
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(last.unwrap_or_else(timed_out));
            }
            self.pause().await;
        }
    }

    /// Waits [`RETRY_PAUSE`], or less when this node's replica learns of a leader it did not
    /// know.
    async fn pause(&self) {
        let replica = self.serving().ok().filter(|replica| is_member(replica));
        let Some(replica) = replica else {
            tokio::time::sleep(RETRY_PAUSE).await;
            return;
        };
        let mut metrics = replica.raft().metrics();
        let known = metrics.borrow().current_leader;
        let news = async {
            let _ = metrics
                .wait_for(|m| m.current_leader.is_some() && m.current_leader != known)
                .await
                .is_ok();
        };
        tokio::select! {
            () = news => {}
            () = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }

    /// How long one attempt at another node may take: twice the longest election timeout,
    /// so a leader that died is given up on about when a new one is elected.
    fn attempt_bound(&self) -> Duration {
        (self.shared.settings.election_timeout.1 * 2).max(MIN_ATTEMPT)
    }

    /// Completes when this node's replica sees a later term led by another node than `node`;
    /// never for a node that holds no replica.
    async fn leader_moved_from(&self, node: NodeId) {
        let replica = self.serving().ok().filter(|replica| is_member(replica));
        let Some(replica) = replica else {
            return std::future::pending().await;
        };
        let old = raft_id(&node);
        let mut metrics = replica.raft().metrics();
        let term = metrics.borrow().current_term;
        let moved = metrics
            .wait_for(|m| {
                m.current_term > term && m.current_leader.is_some_and(|leader| leader != old)
            })
            .await
            .is_ok();
        if !moved {
            std::future::pending::<()>().await;
        }
    }

    /// An attempt at `node` given up without an answer: requests that are safe to repeat go
    /// on; others report that they may have been applied.
    fn abandoned(
        &self,
        node: NodeId,
        request: &ClientRequest,
        why: &str,
    ) -> Result<Attempt, KvFailure> {
        if is_read(request) {
            Ok(Attempt::Unreachable(KvFailure::Unavailable(format!(
                "leader {node}: {why}"
            ))))
        } else {
            Err(KvFailure::Indeterminate(format!(
                "leader {node}: {why} while the request was in flight"
            )))
        }
    }

    fn remember_leader(&self, leader: Option<NodeId>) {
        *self
            .shared
            .leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = leader;
    }

    /// One attempt on this node.
    async fn attempt_here(&self, request: &ClientRequest) -> Attempt {
        match self.serve_here(request).await {
            Err(KvFailure::NotLeader {
                leader: Some(leader),
            }) => Attempt::Goto(leader),
            Err(KvFailure::NotMember) => match self.pick_voter() {
                Some(voter) => Attempt::Goto(voter),
                None => Attempt::Retry(KvFailure::Unavailable(
                    "no voter other than this node is configured".to_string(),
                )),
            },
            Err(failure @ (KvFailure::Unavailable(_) | KvFailure::NotLeader { leader: None })) => {
                match self.pick_voter() {
                    Some(voter) => Attempt::Probe(voter, failure),
                    None => Attempt::Retry(failure),
                }
            }
            result => Attempt::Done(result),
        }
    }

    /// One attempt at `node` over the mesh.
    async fn attempt_at(
        &self,
        node: NodeId,
        request: &ClientRequest,
        deadline: Instant,
    ) -> Attempt {
        let body = match serde_json::to_vec(request) {
            Ok(body) => body,
            Err(error) => return Attempt::Done(Err(KvFailure::BadRequest(error.to_string()))),
        };
        let answer = self.shared.send(node, OP_CLIENT, &body, deadline).await;
        let decoded: Result<ClientReply, KvFailure> = match answer {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(result) => result,
                Err(error) => Err(KvFailure::Storage(format!(
                    "undecodable answer from {node}: {error}"
                ))),
            },
            Err(SendFailure::NotSent(error)) => {
                return Attempt::Unreachable(KvFailure::Unavailable(format!(
                    "leader {node} not reachable: {error}"
                )));
            }
            Err(SendFailure::Lost(error)) if is_read(request) => {
                return Attempt::Unreachable(KvFailure::Unavailable(format!(
                    "leader {node} did not answer: {error}"
                )));
            }
            Err(SendFailure::Lost(error)) => {
                return Attempt::Done(Err(KvFailure::Indeterminate(format!(
                    "leader {node} did not answer: {error}"
                ))));
            }
        };
        match decoded {
            Ok(reply) => Attempt::Done(Ok(reply)),
            Err(KvFailure::NotLeader {
                leader: Some(leader),
            }) if leader != node => Attempt::Goto(leader),
            Err(KvFailure::NotMember) => match self.pick_voter() {
                Some(voter) if voter != node => Attempt::Goto(voter),
                _ => Attempt::Retry(KvFailure::Unavailable(format!("{node} holds no replica"))),
            },
            Err(
                failure @ (KvFailure::Unavailable(_)
                | KvFailure::NotLeader { .. }
                | KvFailure::ShuttingDown
                | KvFailure::Corrupted(_)),
            ) => Attempt::Retry(failure),
            Err(failure) => Attempt::Done(Err(failure)),
        }
    }

    /// A configured voter other than this node, round robin.
    fn pick_voter(&self) -> Option<NodeId> {
        self.pick_voter_except(self.shared.local)
    }

    /// A configured voter other than this node and `excluded`, round robin.
    fn pick_voter_except(&self, excluded: NodeId) -> Option<NodeId> {
        let voters: Vec<NodeId> = self
            .shared
            .settings
            .voters
            .iter()
            .copied()
            .filter(|voter| *voter != self.shared.local && *voter != excluded)
            .collect();
        if voters.is_empty() {
            return None;
        }
        let next = self.shared.next_voter.fetch_add(1, Ordering::Relaxed);
        voters.get(next % voters.len()).copied()
    }

    /// Serves `request` with this node's replica only: a follower answers
    /// [`KvFailure::NotLeader`], a node without a replica [`KvFailure::NotMember`].
    async fn serve_here(&self, request: &ClientRequest) -> Result<ClientReply, KvFailure> {
        let node = self.serving()?;
        let member = is_member(&node);
        let hint = |error: KvError| -> KvFailure {
            match error {
                KvError::Unavailable(_) if !member => KvFailure::NotMember,
                other => failure(other),
            }
        };
        let read_mode = |stale: bool| {
            if stale {
                Read::Stale
            } else {
                Read::Linearizable
            }
        };
        match request {
            ClientRequest::Put {
                key,
                value,
                lease,
                ttl_ms,
            } => {
                let lease = match ttl_ms {
                    Some(ttl) => Some(
                        node.lease_grant(Duration::from_millis(*ttl))
                            .await
                            .map_err(hint)?,
                    ),
                    None => *lease,
                };
                let revision = node.put(key, value, lease).await.map_err(hint)?;
                Ok(ClientReply::Put { revision, lease })
            }
            ClientRequest::Get { key, stale } => {
                if *stale && !member {
                    return Err(KvFailure::NotMember);
                }
                let found = node.get(key, read_mode(*stale)).await.map_err(hint)?;
                Ok(ClientReply::Get {
                    entry: found.map(|v| KvEntry {
                        key: key.clone(),
                        value: v.value,
                        revision: v.revision,
                        lease: v.lease,
                    }),
                })
            }
            ClientRequest::Delete { key } => {
                let (existed, revision) = node.delete(key).await.map_err(hint)?;
                Ok(ClientReply::Delete { existed, revision })
            }
            ClientRequest::Cas { key, expected, new } => {
                let result = node
                    .cas(key, expected.as_deref(), new)
                    .await
                    .map_err(hint)?;
                Ok(ClientReply::Cas {
                    succeeded: result.succeeded,
                    current: result.current,
                    revision: result.revision,
                })
            }
            ClientRequest::List {
                prefix,
                after,
                limit,
                stale,
            } => {
                if *stale && !member {
                    return Err(KvFailure::NotMember);
                }
                let page = node
                    .list(prefix, after.as_deref(), *limit, read_mode(*stale))
                    .await
                    .map_err(hint)?;
                Ok(ClientReply::List {
                    items: page
                        .items
                        .into_iter()
                        .map(|(key, v)| KvEntry {
                            key,
                            value: v.value,
                            revision: v.revision,
                            lease: v.lease,
                        })
                        .collect(),
                    next: page.next,
                })
            }
            ClientRequest::Status => {
                if !member {
                    return Err(KvFailure::NotMember);
                }
                Ok(ClientReply::Raft(self.view(&node).await?))
            }
            ClientRequest::AddVoter { node: new } => {
                if !member {
                    return Err(KvFailure::NotMember);
                }
                self.add_voter(&node, *new).await.map_err(hint)?;
                Ok(ClientReply::Raft(self.view(&node).await?))
            }
            ClientRequest::RemoveVoter { node: old } => {
                if !member {
                    return Err(KvFailure::NotMember);
                }
                let status = node.status().await.map_err(failure)?;
                let id = raft_id(old);
                if !status.voters.contains(&id) {
                    return Err(KvFailure::Membership(format!("{old} is not a voter")));
                }
                let voters: BTreeSet<u64> =
                    status.voters.into_iter().filter(|v| *v != id).collect();
                if voters.is_empty() {
                    return Err(KvFailure::Membership(
                        "the last voter cannot be removed".to_string(),
                    ));
                }
                node.change_voters(voters).await.map_err(hint)?;
                Ok(ClientReply::Raft(self.view(&node).await?))
            }
        }
    }

    async fn add_voter(&self, node: &KvNode, new: NodeId) -> Result<(), KvError> {
        let id = raft_id(&new);
        let names = member_names(node);
        if let Some(existing) = names.get(&id)
            && *existing != new
        {
            return Err(KvError::Membership(format!(
                "{new} has the Raft id {id:016x} of member {existing}"
            )));
        }
        if node.status().await?.voters.contains(&id) {
            return Err(KvError::Membership(format!("{new} is already a voter")));
        }
        // A follower answers NotLeader here, before anything changed, and the request goes on
        // to the leader.
        node.add_learner(id, &new.to_string()).await?;
        let mut voters = node.status().await?.voters;
        voters.insert(id);
        node.change_voters(voters).await
    }

    async fn view(&self, node: &KvNode) -> Result<RaftView, KvFailure> {
        let status = node.status().await.map_err(failure)?;
        let names = member_names(node);
        let name = |id: u64| names.get(&id).copied().or_else(|| self.shared.node_of(id));
        Ok(RaftView {
            node: self.shared.local,
            raft_id: status.id,
            state: status.state,
            leader: status.leader.and_then(name),
            term: status.term,
            commit_index: status.commit_index,
            last_applied: status.last_applied,
            voters: status.voters.into_iter().filter_map(name).collect(),
            learners: status.learners.into_iter().filter_map(name).collect(),
            replica_restarts: self.replica_restarts(),
        })
    }

    async fn accept(self, mut incoming: mpsc::Receiver<IncomingRequest>) {
        while let Some(mut request) = incoming.recv().await {
            let Ok(permit) = self.shared.handlers.clone().try_acquire_owned() else {
                let _ = request.send.reset(transport::links::REFUSED_REQUEST.into());
                continue;
            };
            let host = self.clone();
            tokio::spawn(async move {
                host.handle(request).await;
                drop(permit);
            });
        }
    }

    async fn handle(&self, request: IncomingRequest) {
        let IncomingRequest {
            from,
            mut send,
            mut receive,
        } = request;
        let read = tokio::time::timeout(
            INCOMING_READ_TIMEOUT,
            receive.read_to_end(HEADER_BYTES + kv::limits::MAX_RPC_BYTES),
        )
        .await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => {
                tracing::debug!(peer = %from.short(), %error, "request stream dropped");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %from.short(), "request stream too slow; dropped");
                return;
            }
        };
        let answer = self.answer(from, bytes).await;
        if send.write_all(&answer).await.is_ok() {
            let _ = send.finish();
        }
    }

    async fn answer(&self, from: NodeId, mut bytes: Vec<u8>) -> Vec<u8> {
        let Some(header) = Header::parse(&bytes) else {
            return status_answer(STATUS_UNDELIVERABLE, b"malformed request header");
        };
        if header.destination != self.shared.local {
            return self.relay(from, header, &mut bytes).await;
        }
        let body = &bytes[HEADER_BYTES..];
        if header.op == OP_CLIENT {
            let result = match serde_json::from_slice::<ClientRequest>(body) {
                Ok(request) => match self.check(&request) {
                    Ok(()) => self.serve_here(&request).await,
                    Err(failure) => Err(failure),
                },
                Err(error) => Err(KvFailure::BadRequest(error.to_string())),
            };
            return match serde_json::to_vec(&result) {
                Ok(json) => status_answer(STATUS_OK, &json),
                Err(error) => status_answer(STATUS_FAILED, error.to_string().as_bytes()),
            };
        }
        let Some(kind) = RpcKind::from_tag(header.op) else {
            return status_answer(
                STATUS_FAILED,
                format!("unknown op {}", header.op).as_bytes(),
            );
        };
        let node = match self.serving() {
            Ok(node) => node,
            Err(failure) => return status_answer(STATUS_FAILED, failure.to_string().as_bytes()),
        };
        match node.handle_rpc(kind, body).await {
            Ok(answer) => status_answer(STATUS_OK, &answer),
            Err(error) => status_answer(STATUS_FAILED, error.to_string().as_bytes()),
        }
    }

    async fn relay(&self, from: NodeId, header: Header, bytes: &mut [u8]) -> Vec<u8> {
        if header.hop_limit == 0 {
            return status_answer(
                STATUS_UNDELIVERABLE,
                format!("hop limit reached at {}", self.shared.local).as_bytes(),
            );
        }
        let Ok(_permit) = self.shared.relays.clone().try_acquire_owned() else {
            return status_answer(
                STATUS_UNDELIVERABLE,
                format!("relay {} busy ({MAX_RELAYS} relays)", self.shared.local).as_bytes(),
            );
        };
        bytes[1] = header.hop_limit - 1;
        tracing::trace!(from = %from.short(), to = %header.destination.short(), "relaying request");
        let deadline = Instant::now() + INCOMING_READ_TIMEOUT;
        match self
            .shared
            .send_raw(header.destination, bytes, deadline)
            .await
        {
            Ok(answer) => answer,
            Err(SendFailure::NotSent(error)) => {
                status_answer(STATUS_UNDELIVERABLE, error.as_bytes())
            }
            // The destination may have taken it: the origin must not assume it did not.
            Err(SendFailure::Lost(error)) => status_answer(STATUS_FAILED, error.as_bytes()),
        }
    }
}

fn status_answer(status: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(status);
    out.extend_from_slice(body);
    out
}

/// Whether this node is a voter or learner of the group.
fn is_member(node: &KvNode) -> bool {
    let metrics = node.raft().metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    let id = node.id();
    membership.voter_ids().any(|v| v == id) || membership.learner_ids().any(|l| l == id)
}

/// Raft id → mesh id of every member, from the addresses stored in the membership.
fn member_names(node: &KvNode) -> HashMap<u64, NodeId> {
    let metrics = node.raft().metrics();
    let metrics = metrics.borrow();
    metrics
        .membership_config
        .membership()
        .nodes()
        .filter_map(|(id, basic)| basic.addr.parse().ok().map(|name| (*id, name)))
        .collect()
}

fn failure(error: KvError) -> KvFailure {
    match error {
        KvError::NotLeader { address, .. } => KvFailure::NotLeader {
            leader: address.parse().ok(),
        },
        KvError::Unavailable(why) => KvFailure::Unavailable(why),
        KvError::Timeout(after) => {
            KvFailure::Timeout(u64::try_from(after.as_millis()).unwrap_or(u64::MAX))
        }
        KvError::Limit(limit) => match limit {
            kv::command::LimitError::KeyTooLong(_) | kv::command::LimitError::ValueTooLong(_) => {
                KvFailure::TooLarge(limit.to_string())
            }
            other => KvFailure::BadRequest(other.to_string()),
        },
        KvError::Rejected(reason) => KvFailure::Rejected(reason.to_string()),
        KvError::Corrupted(why) => KvFailure::Corrupted(why),
        KvError::Storage(why) => KvFailure::Storage(why),
        KvError::Membership(why) => KvFailure::Membership(why),
        KvError::BadRpc(why) => KvFailure::BadRequest(why),
        KvError::ShuttingDown => KvFailure::ShuttingDown,
        KvError::Indeterminate(why) => KvFailure::Indeterminate(why),
    }
}

/// The fixed part of a request.
#[derive(Clone, Copy)]
struct Header {
    hop_limit: u8,
    destination: NodeId,
    op: u8,
}

impl Header {
    fn encode(destination: NodeId, origin: NodeId, op: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.push(VERSION);
        out.push(HOP_LIMIT);
        out.extend_from_slice(&destination.0);
        out.extend_from_slice(&origin.0);
        out.push(op);
        out
    }

    fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER_BYTES || bytes[0] != VERSION {
            return None;
        }
        let mut destination = [0u8; NodeId::LEN];
        destination.copy_from_slice(&bytes[2..2 + NodeId::LEN]);
        Some(Header {
            hop_limit: bytes[1],
            destination: NodeId(destination),
            op: bytes[HEADER_BYTES - 1],
        })
    }
}

impl Shared {
    /// The mesh id of Raft member `id`: a configured voter, or a member named in the stored
    /// membership.
    fn node_of(&self, id: u64) -> Option<NodeId> {
        if let Some(voter) = self.settings.voters.iter().find(|v| raft_id(v) == id) {
            return Some(*voter);
        }
        match &*read(&self.state) {
            StoreState::Serving(node) => member_names(node).get(&id).copied(),
            _ => None,
        }
    }

    /// The link a request for `destination` leaves on: the routing table's next hop.
    fn link_towards(&self, destination: &NodeId) -> Result<quinn::Connection, String> {
        let paths = read(&self.paths);
        let hop = paths
            .next_hop
            .get(destination)
            .copied()
            .ok_or_else(|| format!("no route to {destination}"))?;
        paths
            .links
            .get(&hop)
            .cloned()
            .ok_or_else(|| format!("no link to next hop {hop} towards {destination}"))
    }

    /// Sends a request and returns the destination's answer body (status 0), or why not.
    async fn send(
        &self,
        destination: NodeId,
        op: u8,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, SendFailure> {
        let mut request = Header::encode(destination, self.local, op);
        request.extend_from_slice(body);
        let answer = self.send_raw(destination, &request, deadline).await?;
        match answer.split_first() {
            Some((&STATUS_OK, body)) => Ok(body.to_vec()),
            Some((&STATUS_UNDELIVERABLE, reason)) => Err(SendFailure::NotSent(
                String::from_utf8_lossy(reason).into_owned(),
            )),
            Some((&STATUS_FAILED, reason)) => Err(SendFailure::Lost(
                String::from_utf8_lossy(reason).into_owned(),
            )),
            _ => Err(SendFailure::Lost(format!(
                "malformed answer from {destination}"
            ))),
        }
    }

    /// Sends whole request bytes towards `destination` and returns the whole answer.
    async fn send_raw(
        &self,
        destination: NodeId,
        request: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, SendFailure> {
        let connection = self
            .link_towards(&destination)
            .map_err(SendFailure::NotSent)?;
        // Until the stream is finished the receiver cannot have read the whole request (it
        // reads to the end), so failures up to then mean "not sent".
        let sent = std::sync::atomic::AtomicBool::new(false);
        let exchange = async {
            let (mut send, mut receive) = LinkEndpoint::open_request(&connection)
                .await
                .map_err(|error| error.to_string())?;
            send.write_all(request)
                .await
                .map_err(|error| error.to_string())?;
            send.finish().map_err(|error| error.to_string())?;
            sent.store(true, Ordering::Relaxed);
            receive
                .read_to_end(1 + kv::limits::MAX_RPC_BYTES)
                .await
                .map_err(|error| error.to_string())
        };
        let outcome = tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer from {destination} in time")));
        outcome.map_err(|why| {
            if sent.load(Ordering::Relaxed) {
                SendFailure::Lost(why)
            } else {
                SendFailure::NotSent(why)
            }
        })
    }
}

/// Raft's transport over the mesh.
struct MeshTransport {
    host: Weak<Shared>,
}

/// Longest a Raft RPC waits here; openraft's own deadline is shorter and cancels it first.
const RPC_BOUND: Duration = Duration::from_secs(30);

impl RaftTransport for MeshTransport {
    fn call(
        &self,
        target: u64,
        kind: RpcKind,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let host = self
                .host
                .upgrade()
                .ok_or_else(|| TransportError::Unreachable(target, "node stopped".to_string()))?;
            let destination = host.node_of(target).ok_or_else(|| {
                TransportError::Unreachable(target, "no mesh id known for this member".to_string())
            })?;
            let deadline = Instant::now() + RPC_BOUND;
            let mut framed = Header::encode(destination, host.local, kind.tag());
            framed.extend_from_slice(&request);
            let answer = host
                .send_raw(destination, &framed, deadline)
                .await
                .map_err(|why| TransportError::Unreachable(target, why.to_string()))?;
            match answer.split_first() {
                Some((&STATUS_OK, body)) => Ok(body.to_vec()),
                Some((&STATUS_UNDELIVERABLE, reason)) => Err(TransportError::Unreachable(
                    target,
                    String::from_utf8_lossy(reason).into_owned(),
                )),
                Some((_, reason)) => Err(TransportError::Remote(
                    String::from_utf8_lossy(reason).into_owned(),
                )),
                None => Err(TransportError::Remote("empty answer".to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_are_the_first_eight_bytes() {
        let mut bytes = [0u8; NodeId::LEN];
        bytes[0] = 0x12;
        bytes[7] = 0x34;
        bytes[15] = 0xff;
        assert_eq!(raft_id(&NodeId(bytes)), 0x1200_0000_0000_0034);
    }

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        let destination = NodeId([7; NodeId::LEN]);
        let origin = NodeId([9; NodeId::LEN]);
        let mut bytes = Header::encode(destination, origin, OP_CLIENT);
        assert_eq!(bytes.len(), HEADER_BYTES);
        bytes.extend_from_slice(b"{}");
        let header = Header::parse(&bytes).expect("parses");
        assert_eq!(header.destination, destination);
        assert_eq!(header.hop_limit, HOP_LIMIT);
        assert_eq!(header.op, OP_CLIENT);
        assert!(Header::parse(&bytes[..HEADER_BYTES - 1]).is_none());
        bytes[0] = 9;
        assert!(Header::parse(&bytes).is_none());
    }

    #[test]
    fn client_requests_round_trip_as_json_with_hex_bytes() {
        let request = ClientRequest::Cas {
            key: b"k".to_vec(),
            expected: None,
            new: vec![0, 255],
        };
        let text = serde_json::to_string(&request).expect("encodes");
        assert!(text.contains("\"00ff\""), "{text}");
        assert_eq!(
            serde_json::from_str::<ClientRequest>(&text).expect("decodes"),
            request
        );
        let failure: Result<ClientReply, KvFailure> = Err(KvFailure::NotLeader { leader: None });
        let text = serde_json::to_string(&failure).expect("encodes");
        let back: Result<ClientReply, KvFailure> = serde_json::from_str(&text).expect("decodes");
        assert_eq!(back, failure);
    }
}
