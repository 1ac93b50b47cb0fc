//! Replicated key-value store: openraft over redb storage, leases, watches, and a
//! linearizability checker.
//!
//! - [`store`]: the redb file holding the Raft log and the state machine (layout in its doc);
//! - [`command`]: what is replicated, the replies, and request validation;
//! - [`limits`]: every bound with its reason;
//! - [`lincheck`]: a pure Wing–Gong/Lowe linearizability checker used by the Jepsen-style test.

pub mod command;
pub mod limits;
pub mod lincheck;
pub mod store;

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
