//! An in-process cluster with real redb files: the harness of the
//! cluster tests, the Jepsen-style test and the benchmark.
//!
//! The harness runs on any [`Fabric`]: the in-memory network by default ([`Cluster::start`]);
//! a mesh-backed fabric passed to [`Cluster::start_on`] runs the same cluster and Jepsen-style
//! tests over real links.
//!
//! Crash and restart are of the process kind a test can do in-process: the node's Raft stops,
//! it leaves the network, every handle is dropped so the file is closed, and a restart opens the
//! same file again. Writes that were fsync'd survive; nothing is torn mid-write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::NodeId;
use crate::memnet::MemNetwork;
use crate::node::{KvConfig, KvError, KvNode};
use crate::store::{OpenError, Store};
use crate::transport::{RaftTransport, TransportError};

/// What the harness needs from a network: a transport per node, a way to deliver a node's
/// incoming RPCs to it, and faults.
pub trait Fabric: Send + Sync + 'static {
    /// The transport node `id` sends with.
    fn endpoint(&self, id: NodeId) -> Arc<dyn RaftTransport>;
    /// Delivers RPCs for `node.id()` to `node` from now on.
    fn serve(&self, node: Arc<KvNode>) -> Result<(), TransportError>;
    /// Stops delivering to node `id` (it crashed).
    fn unregister(&self, id: NodeId);
    /// Cuts the link between `a` and `b`, both directions.
    fn cut(&self, a: NodeId, b: NodeId);
    /// Cuts every link between `id` and `others`.
    fn isolate(&self, id: NodeId, others: &[NodeId]);
    /// Restores every cut link.
    fn heal(&self);
}

impl Fabric for MemNetwork {
    fn endpoint(&self, id: NodeId) -> Arc<dyn RaftTransport> {
        MemNetwork::endpoint(self, id)
    }

    fn serve(&self, node: Arc<KvNode>) -> Result<(), TransportError> {
        MemNetwork::serve(self, node)
    }

    fn unregister(&self, id: NodeId) {
        MemNetwork::unregister(self, id);
    }

    fn cut(&self, a: NodeId, b: NodeId) {
        MemNetwork::cut(self, a, b);
    }

    fn isolate(&self, id: NodeId, others: &[NodeId]) {
        MemNetwork::isolate(self, id, others.iter().copied());
    }

    fn heal(&self) {
        MemNetwork::heal(self);
    }
}

/// Largest cluster the harness builds; Raft groups are 3 or 5 voters.
const MAX_CLUSTER: usize = 9;

/// Polls (10 ms apart) for a crashed node's files to close: 1 s. They close when the last
/// handle to the node drops; a caller that still holds one (a test keeping the old leader in a
/// variable) keeps them open, and the harness goes on after this bound.
const CLOSE_POLLS: usize = 100;

/// A set of nodes sharing one [`Fabric`].
pub struct Cluster {
    network: Arc<dyn Fabric>,
    dir: PathBuf,
    tune: Box<dyn Fn(&mut KvConfig) + Send + Sync>,
    nodes: Mutex<BTreeMap<NodeId, Option<Arc<KvNode>>>>,
}

impl Cluster {
    /// Starts voters `ids` on a new in-memory network; see [`Cluster::start_on`].
    pub async fn start(
        dir: &Path,
        ids: &[NodeId],
        tune: impl Fn(&mut KvConfig) + Send + Sync + 'static,
    ) -> Result<Self, KvError> {
        Self::start_on(Arc::new(MemNetwork::new()), dir, ids, tune).await
    }

    /// Starts voters `ids` on `fabric` with stores under `dir`, `tune` adjusting each node's
    /// config, and initializes the group on the first one.
    pub async fn start_on(
        fabric: Arc<dyn Fabric>,
        dir: &Path,
        ids: &[NodeId],
        tune: impl Fn(&mut KvConfig) + Send + Sync + 'static,
    ) -> Result<Self, KvError> {
        if ids.is_empty() || ids.len() > MAX_CLUSTER {
            return Err(KvError::Membership(format!(
                "cluster of {} nodes",
                ids.len()
            )));
        }
        let cluster = Self {
            network: fabric,
            dir: dir.to_path_buf(),
            tune: Box::new(tune),
            nodes: Mutex::new(BTreeMap::new()),
        };
        for &id in ids {
            cluster.restart(id).await?;
        }
        let voters = ids.iter().map(|&id| (id, address(id))).collect();
        if let Some(first) = cluster.node(ids[0]) {
            first.initialize(voters).await?;
        }
        Ok(cluster)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Option<Arc<KvNode>>>> {
        // The map stays consistent even if a holder panicked: every update is one insert.
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The config node `id` runs with.
    pub fn config(&self, id: NodeId) -> KvConfig {
        let mut config = KvConfig::new(id, address(id), self.path(id));
        (self.tune)(&mut config);
        config
    }

    /// The store directory of node `id`.
    pub fn path(&self, id: NodeId) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// The network, for partitions.
    pub fn network(&self) -> &dyn Fabric {
        self.network.as_ref()
    }

    /// Every node id ever started, running or not.
    pub fn ids(&self) -> Vec<NodeId> {
        self.lock().keys().copied().collect()
    }

    /// The running node `id`.
    pub fn node(&self, id: NodeId) -> Option<Arc<KvNode>> {
        self.lock().get(&id).cloned().flatten()
    }

    /// Stops node `id` as a crash would: off the network, Raft stopped, handles dropped. Waits
    /// (boundedly) for its files to close, so a test that then changes them is not undone by a
    /// late close.
    pub async fn crash(&self, id: NodeId) {
        self.stop(id, true).await;
    }

    async fn stop(&self, id: NodeId, wait_for_close: bool) {
        self.network.unregister(id);
        let node = self.lock().get_mut(&id).and_then(Option::take);
        let Some(node) = node else {
            return;
        };
        node.shutdown().await;
        drop(node);
        if !wait_for_close {
            return;
        }
        for _ in 0..CLOSE_POLLS {
            match Store::open(&self.path(id)) {
                Err(OpenError::Busy(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                _ => return,
            }
        }
    }

    /// Starts (or restarts) node `id` from its file and puts it on the network.
    pub async fn restart(&self, id: NodeId) -> Result<(), KvError> {
        if self.node(id).is_some() {
            return Ok(());
        }
        let node = Arc::new(KvNode::open(self.config(id), self.network.endpoint(id)).await?);
        self.network
            .serve(node.clone())
            .map_err(|e| KvError::Storage(e.to_string()))?;
        self.lock().insert(id, Some(node));
        Ok(())
    }

    /// Waits until a running node is leader and a majority of running nodes agree on it.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<NodeId, KvError> {
        let wait = async {
            loop {
                let nodes: Vec<Arc<KvNode>> = self.lock().values().flatten().cloned().collect();
                let mut votes: BTreeMap<NodeId, usize> = BTreeMap::new();
                for node in &nodes {
                    if let Some(leader) = node.leader() {
                        *votes.entry(leader).or_default() += 1;
                    }
                }
                let running = |id: &NodeId| nodes.iter().any(|n| n.id() == *id);
                if let Some((&leader, _)) = votes
                    .iter()
                    .find(|(id, n)| running(id) && **n * 2 > nodes.len())
                {
                    return leader;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| KvError::Unavailable(format!("no leader within {timeout:?}")))
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        for id in self.ids() {
            self.stop(id, false).await;
        }
    }
}

/// The address a node of the harness advertises.
pub fn address(id: NodeId) -> String {
    format!("mem://{id}")
}
