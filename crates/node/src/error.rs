//! `NodeError`: why `init` or `run` failed.

use std::path::PathBuf;

use crate::bootstrap::BootstrapError;
use crate::config::ConfigError;
use crate::identity::IdentityError;
use crate::seq_store::SeqStoreError;

/// A failure that stops `init` or `run`. Each message is one line that names the file or
/// field at fault.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// `node.yaml` is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `nodes.json` is unreadable or invalid.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The key or data directory is missing, unreadable or too open.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The sequence-number reservation cannot be read or written.
    #[error(transparent)]
    SeqStore(#[from] SeqStoreError),
    /// The UDP socket could not be set up.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// `run` found no node key: `init` has not been run for this configuration.
    #[error("no node key at {key_path}; run `x0tta6bl4 init --config {config}` first")]
    NotInitialised {
        /// Where the key was expected.
        key_path: PathBuf,
        /// The configuration file.
        config: PathBuf,
    },
    /// `init --bootstrap` was given while `node.yaml` names its own bootstrap file, which
    /// would silently win at `run`.
    #[error(
        "--bootstrap {given} conflicts with node_config.network.bootstrap ({configured}) in {config}; use one of them"
    )]
    BootstrapConflict {
        /// The file passed to `init --bootstrap`.
        given: PathBuf,
        /// The file named in `node.yaml`.
        configured: PathBuf,
        /// The configuration file.
        config: PathBuf,
    },
    /// Copying the bootstrap file into the data directory failed.
    #[error("cannot copy {from} to {to}: {source}")]
    CopyBootstrap {
        /// The source file.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Trust-domain membership (SVID, bundle, CA, policy) is missing or invalid.
    #[error(transparent)]
    Membership(#[from] crate::membership::MembershipError),
    /// The overlay TUN interface could not be created (with `network.tun: on`).
    #[error(
        "cannot create the overlay interface {name}: {source} (it needs root and /dev/net/tun; set node_config.network.tun: auto or off to run without it)"
    )]
    Tun {
        /// The configured interface name.
        name: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The replicated state (CRDT snapshot) cannot be opened or saved.
    #[error(transparent)]
    Replication(#[from] crate::replication::ReplicationError),
    /// The operating system's random generator failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
    /// The self-healing loop cannot start (a bad playbook, a service that cannot start).
    #[error(transparent)]
    Healing(#[from] crate::healing::HealingError),
}
