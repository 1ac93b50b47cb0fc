//! `NodeHandle`: the cheap, cloneable way for the API to ask the running node for snapshots.
//!
//! Requests go over a bounded channel to the node's loop, which answers between packets; the
//! loop owns the router, so no lock is shared with it and answers are always consistent.

use tokio::sync::{mpsc, oneshot};

use crate::view::{DatagramView, IdentityView, PeerView, RouteView, SendOutcome, StatusView};

/// Requests waiting for the node's loop. The API serves a handful of local operators and
/// scripts; a queue this long means the loop is stuck, and callers then get
/// [`HandleError::Busy`] at once instead of piling up.
pub const REQUEST_QUEUE_CAPACITY: usize = 32;

/// A question for the node's loop, with where to send the answer.
#[derive(Debug)]
pub(crate) enum Request {
    Status(oneshot::Sender<StatusView>),
    Peers(oneshot::Sender<Vec<PeerView>>),
    Routes(oneshot::Sender<Vec<RouteView>>),
    Identity(oneshot::Sender<IdentityView>),
    SendDatagram {
        to: wire::NodeId,
        port: u16,
        payload: Vec<u8>,
        reply: oneshot::Sender<SendOutcome>,
    },
    TakeDatagrams {
        port: Option<u16>,
        reply: oneshot::Sender<Vec<DatagramView>>,
    },
    Crdt(oneshot::Sender<crate::replication::CrdtView>),
    Incidents {
        filter: knowledge::IncidentFilter,
        reply: oneshot::Sender<Result<Vec<knowledge::IncidentRecord>, String>>,
    },
    Incident {
        record_id: i64,
        reply: oneshot::Sender<Result<Option<knowledge::IncidentRecord>, String>>,
    },
    Subscribe(oneshot::Sender<Option<tokio::sync::broadcast::Receiver<std::sync::Arc<str>>>>),
    Notices(oneshot::Sender<Vec<crate::healing::NoticeView>>),
    ReloadHealing(oneshot::Sender<Result<crate::healing::ReloadOutcome, ReloadError>>),
    MeshIncidents(oneshot::Sender<Vec<crate::healing::summary::MeshIncidentView>>),
}

/// Why the healing configuration was not reloaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The healing loop is disabled (`mapk.enabled: false`).
    #[error("the healing loop is disabled (mapk.enabled: false)")]
    Disabled,
    /// The new set was refused; the node keeps the one it had.
    #[error("{0}; the node keeps its previous checks and playbooks")]
    Refused(crate::healing::ReloadRefused),
}

/// Why a snapshot could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// [`REQUEST_QUEUE_CAPACITY`] requests are already waiting.
    #[error("the node is busy: {REQUEST_QUEUE_CAPACITY} requests are already waiting")]
    Busy,
    /// The node's loop has ended.
    #[error("the node has stopped")]
    Stopped,
}

/// Asks the running node for snapshots. Clone it freely.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    requests: mpsc::Sender<Request>,
    kv: Option<crate::kvhost::KvHost>,
}

impl NodeHandle {
    pub(crate) fn channel() -> (NodeHandle, mpsc::Receiver<Request>) {
        let (requests, receiver) = mpsc::channel(REQUEST_QUEUE_CAPACITY);
        (NodeHandle { requests, kv: None }, receiver)
    }

    pub(crate) fn with_kv(mut self, kv: Option<crate::kvhost::KvHost>) -> NodeHandle {
        self.kv = kv;
        self
    }

    /// The node's key-value store, `None` when `node.yaml` has no `kv` section. Its calls do
    /// not go through the node's loop.
    pub fn kv(&self) -> Option<&crate::kvhost::KvHost> {
        self.kv.as_ref()
    }

    /// Node identity, uptime, counts and counters.
    pub async fn status(&self) -> Result<StatusView, HandleError> {
        self.ask(Request::Status).await
    }

    /// The neighbour table.
    pub async fn peers(&self) -> Result<Vec<PeerView>, HandleError> {
        self.ask(Request::Peers).await
    }

    /// The routing table.
    pub async fn routes(&self) -> Result<Vec<RouteView>, HandleError> {
        self.ask(Request::Routes).await
    }

    /// The node's identity: SPIFFE ID, SVID validity, key fingerprints, trust domain.
    pub async fn identity(&self) -> Result<IdentityView, HandleError> {
        self.ask(Request::Identity).await
    }

    /// The replicated state: collections with digests, peers in sync, counters.
    pub async fn crdt(&self) -> Result<crate::replication::CrdtView, HandleError> {
        self.ask(Request::Crdt).await
    }

    /// Sends `payload` to node `to` at `port` through the mesh (works without a TUN).
    pub async fn send_datagram(
        &self,
        to: wire::NodeId,
        port: u16,
        payload: Vec<u8>,
    ) -> Result<SendOutcome, HandleError> {
        self.ask(|reply| Request::SendDatagram {
            to,
            port,
            payload,
            reply,
        })
        .await
    }

    /// Takes the datagrams received (for `port`, or all), oldest first.
    pub async fn take_datagrams(
        &self,
        port: Option<u16>,
    ) -> Result<Vec<DatagramView>, HandleError> {
        self.ask(|reply| Request::TakeDatagrams { port, reply })
            .await
    }

    /// Stored incidents, newest first. `Ok(Err(reason))` when the healing loop is disabled or
    /// its database is busy.
    pub async fn incidents(
        &self,
        filter: knowledge::IncidentFilter,
    ) -> Result<Result<Vec<knowledge::IncidentRecord>, String>, HandleError> {
        self.ask(|reply| Request::Incidents { filter, reply }).await
    }

    /// One stored incident by record id.
    pub async fn incident(
        &self,
        record_id: i64,
    ) -> Result<Result<Option<knowledge::IncidentRecord>, String>, HandleError> {
        self.ask(|reply| Request::Incident { record_id, reply })
            .await
    }

    /// A receiver of the healing loop's events (JSON objects); `None` when it is disabled.
    pub async fn subscribe(
        &self,
    ) -> Result<Option<tokio::sync::broadcast::Receiver<std::sync::Arc<str>>>, HandleError> {
        self.ask(Request::Subscribe).await
    }

    /// Incident notices received from other nodes.
    pub async fn notices(&self) -> Result<Vec<crate::healing::NoticeView>, HandleError> {
        self.ask(Request::Notices).await
    }

    /// Reads node.yaml again and replaces the healing loop's checks and playbooks with its
    /// own, or refuses them with the file, line and reason and keeps the previous set.
    pub async fn reload_healing(
        &self,
    ) -> Result<Result<crate::healing::ReloadOutcome, ReloadError>, HandleError> {
        self.ask(Request::ReloadHealing).await
    }

    /// Open and recently closed incidents of every node of the mesh, from the replicated
    /// incident summaries (open ones first, newest first).
    pub async fn mesh_incidents(
        &self,
    ) -> Result<Vec<crate::healing::summary::MeshIncidentView>, HandleError> {
        self.ask(Request::MeshIncidents).await
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, HandleError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .try_send(make(reply))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => HandleError::Busy,
                mpsc::error::TrySendError::Closed(_) => HandleError::Stopped,
            })?;
        answer.await.map_err(|_| HandleError::Stopped)
    }
}
