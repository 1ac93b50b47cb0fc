//! The in-memory transport: real Raft messages (the same bytes the mesh carries) between nodes
//! of one process over bounded tokio channels, with partitions and node crashes.
//!
//! It is a transport, not a mock: requests are serialized by the sender, queued, decoded and
//! handled by the target's [`KvNode::handle_rpc`], and the answer bytes travel back. Tests and
//! benchmarks run clusters on it; the mesh transport must pass the same tests.
//!
//! Faults: [`MemNetwork::cut`] drops both directions of one link (requests and answers in
//! flight on it are lost too), [`MemNetwork::isolate`] cuts every link of a node, and
//! [`MemNetwork::unregister`] takes a node off the network (crash); a restarted node registers
//! again with [`MemNetwork::serve`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::limits::MEMNET_QUEUE;
use crate::transport::{BoxFuture, RaftTransport, RpcKind, TransportError};
use crate::{KvNode, NodeId};

/// Requests one node handles at once: enough for pipelined replication from a few peers plus
/// votes, so a slow snapshot chunk does not hold back heartbeats.
const MAX_CONCURRENT_HANDLERS: usize = 64;

/// Nodes on one in-memory network; test clusters are 3 to 5 nodes.
const MAX_NODES: usize = 64;

struct Envelope {
    kind: RpcKind,
    request: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

#[derive(Default)]
struct Inner {
    inboxes: HashMap<NodeId, (mpsc::Sender<Envelope>, JoinHandle<()>)>,
    /// Cut links, as (smaller id, larger id).
    cut: BTreeSet<(NodeId, NodeId)>,
}

fn link(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

/// A network of in-process nodes.
#[derive(Clone, Default)]
pub struct MemNetwork {
    inner: Arc<Mutex<Inner>>,
}

impl MemNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only sets and maps behind, still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport node `id` sends with.
    pub fn endpoint(&self, id: NodeId) -> Arc<dyn RaftTransport> {
        Arc::new(MemTransport {
            from: id,
            network: self.clone(),
        })
    }

    /// Puts `node` on the network under its id (replacing an earlier registration).
    pub fn serve(&self, node: Arc<KvNode>) -> Result<(), TransportError> {
        let id = node.id();
        let (tx, mut rx) = mpsc::channel::<Envelope>(MEMNET_QUEUE);
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDLERS));
        let task = tokio::spawn(async move {
            while let Some(envelope) = rx.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let node = node.clone();
                tokio::spawn(async move {
                    let answer = node
                        .handle_rpc(envelope.kind, &envelope.request)
                        .await
                        .map_err(|e| e.to_string());
                    // The caller may have given up; then nobody needs the answer.
                    let _ = envelope.reply.send(answer);
                    drop(permit);
                });
            }
        });
        let mut inner = self.lock();
        if inner.inboxes.len() >= MAX_NODES && !inner.inboxes.contains_key(&id) {
            task.abort();
            return Err(TransportError::Remote(format!(
                "network full ({MAX_NODES} nodes)"
            )));
        }
        if let Some((_, old)) = inner.inboxes.insert(id, (tx, task)) {
            old.abort();
        }
        Ok(())
    }

    /// Takes node `id` off the network: its inbox closes and requests to it fail.
    pub fn unregister(&self, id: NodeId) {
        if let Some((_, task)) = self.lock().inboxes.remove(&id) {
            task.abort();
        }
    }

    /// Cuts the link between `a` and `b` in both directions.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        self.lock().cut.insert(link(a, b));
    }

    /// Cuts every link of `id` to the nodes in `others`.
    pub fn isolate(&self, id: NodeId, others: impl IntoIterator<Item = NodeId>) {
        let mut inner = self.lock();
        for other in others {
            if other != id {
                inner.cut.insert(link(id, other));
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        !self.lock().cut.contains(&link(a, b))
    }
}

struct MemTransport {
    from: NodeId,
    network: MemNetwork,
}

impl RaftTransport for MemTransport {
    fn call(
        &self,
        target: NodeId,
        kind: RpcKind,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let unreachable = |why: &str| TransportError::Unreachable(target, why.to_string());
            if !self.network.reachable(self.from, target) {
                return Err(unreachable("link cut"));
            }
            let inbox = self
                .network
                .lock()
                .inboxes
                .get(&target)
                .map(|(tx, _)| tx.clone())
                .ok_or_else(|| unreachable("node down"))?;
            let (reply, answer) = oneshot::channel();
            inbox
                .send(Envelope {
                    kind,
                    request,
                    reply,
                })
                .await
                .map_err(|_| unreachable("node down"))?;
            let answer = answer.await.map_err(|_| unreachable("node went down"))?;
            // A link cut while the request was in flight loses the answer too.
            if !self.network.reachable(self.from, target) {
                return Err(unreachable("link cut"));
            }
            answer.map_err(TransportError::Remote)
        })
    }
}
