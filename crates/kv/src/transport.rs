//! How Raft RPCs leave a node: the [`RaftTransport`] trait carries opaque request bytes to a peer
//! and brings back response bytes; [`NetworkFactory`] adapts it to openraft's network traits.
//!
//! A transport knows nothing about Raft. The receiving side hands the bytes to
//! [`crate::KvNode::handle_rpc`] with the same [`RpcKind`] and returns what it answers. The mesh
//! implementation carries them on an authenticated link stream; [`crate::memnet`] carries them
//! over in-process channels for tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::limits::MAX_RPC_BYTES;
use crate::{NodeId, TypeConfig};

/// Which Raft RPC a message carries; the receiver needs it to decode the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RpcKind {
    /// AppendEntries (also heartbeats).
    AppendEntries,
    /// RequestVote.
    Vote,
    /// One chunk of InstallSnapshot.
    InstallSnapshot,
}

impl RpcKind {
    /// One-byte tag for framing on a stream.
    pub fn tag(self) -> u8 {
        match self {
            RpcKind::AppendEntries => 1,
            RpcKind::Vote => 2,
            RpcKind::InstallSnapshot => 3,
        }
    }

    /// The kind of a framing tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(RpcKind::AppendEntries),
            2 => Some(RpcKind::Vote),
            3 => Some(RpcKind::InstallSnapshot),
            _ => None,
        }
    }
}

/// Why an RPC got no answer.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    /// No path to the peer now (no link, partitioned, peer down); openraft backs off.
    #[error("node {0} unreachable: {1}")]
    Unreachable(NodeId, String),
    /// A message over [`MAX_RPC_BYTES`].
    #[error("RPC message of {0} bytes exceeds the limit of {MAX_RPC_BYTES}")]
    TooLarge(usize),
    /// The peer could not handle the request (undecodable, shutting down).
    #[error("peer failed the request: {0}")]
    Remote(String),
}

/// A boxed future, so the transport can be a trait object shared by every peer client.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries one Raft RPC to a node and returns its answer.
///
/// Contract: `call` returns the exact bytes `handle_rpc` produced on the target, or an error;
/// it must not retry by itself (openraft retries) and must give up within the caller's timeout
/// (the adapter cancels the future when openraft's deadline passes).
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends `request` of kind `kind` to `target`.
    fn call(
        &self,
        target: NodeId,
        kind: RpcKind,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>>;
}

/// openraft's network factory over a [`RaftTransport`].
#[derive(Clone)]
pub struct NetworkFactory {
    transport: Arc<dyn RaftTransport>,
}

impl NetworkFactory {
    /// Wraps a transport.
    pub fn new(transport: Arc<dyn RaftTransport>) -> Self {
        Self { transport }
    }
}

/// The client of one peer.
pub struct PeerClient {
    target: NodeId,
    transport: Arc<dyn RaftTransport>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            transport: self.transport.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl PeerClient {
    async fn send<Req, Resp, E>(
        &self,
        kind: RpcKind,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let network = |e: &dyn std::fmt::Display| {
            RPCError::Network(NetworkError::new(&Message(e.to_string())))
        };
        let bytes = serde_json::to_vec(request).map_err(|e| network(&e))?;
        if bytes.len() > MAX_RPC_BYTES {
            return Err(network(&TransportError::TooLarge(bytes.len())));
        }
        let call = self.transport.call(self.target, kind, bytes);
        let answer = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(_) => {
                return Err(network(&format!(
                    "no answer from node {} within {:?}",
                    self.target,
                    option.hard_ttl()
                )));
            }
            Ok(Err(TransportError::Unreachable(id, why))) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Message(format!(
                    "node {id}: {why}"
                )))));
            }
            Ok(Err(e)) => return Err(network(&e)),
            Ok(Ok(answer)) => answer,
        };
        if answer.len() > MAX_RPC_BYTES {
            return Err(network(&TransportError::TooLarge(answer.len())));
        }
        let decoded: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&answer).map_err(|e| network(&e))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(RpcKind::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(RpcKind::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(RpcKind::Vote, &rpc, &option).await
    }
}
