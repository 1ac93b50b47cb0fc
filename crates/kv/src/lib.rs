//! Replicated key-value store: openraft over redb storage, leases, watches, and a
//! linearizability checker.
//!
//! - [`store`]: the redb files holding the Raft log and the state machine (layout and durability
//!   rule in its doc);
//! - [`command`]: what is replicated, the replies, and request validation;
//! - [`limits`]: every bound with its reason;
//! - [`node`]: [`KvNode`], the service API a node runtime hosts (its doc is the hosting
//!   contract);
//! - [`transport`]: the [`RaftTransport`] trait that carries Raft RPC bytes (over mesh link
//!   streams in the node) and its adapter to openraft;
//! - [`memnet`]: the in-memory transport for in-process clusters, with partitions and crashes;
//! - [`cluster`]: an in-process cluster harness on that transport with real redb files;
//! - [`lincheck`]: a pure Wing–Gong/Lowe linearizability checker used by the Jepsen-style test.
//!
//! Limits (enforced with [`command::LimitError`] before anything reaches the log): keys 1 to
//! 1,024 bytes, values up to 64 KiB, list pages 1 to 1,000 keys, lease TTL up to one day, 10,000
//! live leases and 10,000 keys per lease, 256 MiB of keys and values per store (further writes
//! are refused with [`command::Rejection::StoreFull`]), Raft RPC messages up to 16 MiB.

pub mod cluster;
pub mod command;
pub mod limits;
pub mod lincheck;
pub mod memnet;
pub mod node;
pub mod store;
pub mod transport;

pub use node::{CasResult, KvConfig, KvError, KvNode, ListPage, Read, Status, Watch, WatchError};
pub use store::{Versioned, WatchEvent};
pub use transport::{RaftTransport, RpcKind, TransportError};

use std::io::Cursor;

/// A node's identifier inside one Raft group.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the key-value store.
    pub TypeConfig:
        D = command::Command,
        R = command::Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
