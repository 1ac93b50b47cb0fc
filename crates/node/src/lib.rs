//! The x0tta6bl4 daemon: configuration, identity, and the runtime that drives the routing
//! core over authenticated QUIC links.
//!
//! # Layout
//! - [`config`]: `node.yaml`, its documented defaults, and `NodeConfig`, the validated form.
//! - [`bootstrap`]: `nodes.json`, the static peer list.
//! - [`identity`]: the node's key set (Ed25519 + ML-DSA-65) and the private data directory.
//! - [`membership`]: SVID and trust bundle, the CA commands, joining, the CA node's answers.
//! - [`directory`]: the verified node records and revocations this node holds.
//! - [`replication`]: the CRDT replica that carries records, revocations and link policies
//!   mesh-wide, its signature checks and its snapshot file.
//! - [`ogm_auth`]: the node's OGM signer and the verifier over the directory's keys.
//! - [`advert`]: the multicast discovery advert.
//! - [`dataplane`]: data packets between nodes, the overlay address map, ICMPv6 errors.
//! - [`channel_links`]: per-link state of the link channel (keys, the peer's offer, batches).
//! - [`tun_io`]: batched TUN reads and writes with the kernel's offloads.
//! - [`seq_store`]: persisted reservation of own OGM sequence numbers across restarts.
//! - [`init`]: the `init` command: data directory, key, bootstrap copy.
//! - [`clock`]: the one place the daemon reads time, as routing `Timestamp`s.
//! - [`runtime`]: `Node`, the event loop over links, discovery, timers and snapshot requests.
//! - [`handle`]: `NodeHandle`, bounded request/response access to the running node.
//! - [`kvhost`]: `KvHost`, the Raft key-value store hosted by the node, its RPC and forwarded
//!   requests on mesh link streams.
//! - [`view`]: the status, peer and route snapshots the API serves.
//! - [`error`]: `NodeError`, why `init` or `run` failed.
//! - [`supervisor`]: local processes declared in `node.yaml`, restarted with back-off.
//! - [`monitor`]: node metrics (sysinfo) and health-check runs, as `heal` observations.
//! - [`executor`]: `heal` actions carried out: services, commands, caches, peers, thresholds.
//!
//! This crate is where the pure cores meet the operating system: it owns the socket (through
//! `transport`), reads the clock, and touches the file system. The HTTP API lives in `api`
//! and reaches the node only through a [`NodeHandle`].

pub mod advert;
pub mod bootstrap;
pub mod channel_links;
pub mod clock;
pub mod config;
pub mod dataplane;
pub mod directory;
pub mod error;
pub mod executor;
pub mod handle;
pub mod healing;
pub mod identity;
pub mod init;
pub mod kvhost;
pub mod membership;
pub mod monitor;
pub mod ogm_auth;
pub mod replication;
pub mod runtime;
pub mod seq_store;
pub mod supervisor;
pub mod tun_io;
pub mod view;

pub use config::{ConfigError, KvSettings, NodeConfig, TunMode};
pub use error::NodeError;
pub use handle::{HandleError, NodeHandle, ReloadError};
pub use init::{InitReport, init};
pub use replication::CrdtView;
pub use runtime::Node;
pub use view::{DatagramView, IdentityView, PeerView, RouteView, SendOutcome, StatusView};
