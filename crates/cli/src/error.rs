//! `CliError`: every way a command can fail, each printed as one line.

use std::net::SocketAddr;

use crate::client::ClientError;

/// A command's failure. `main` prints it as `error: <message>` and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading the configuration, loading the key, binding the socket, ... failed.
    #[error(transparent)]
    Node(#[from] node::NodeError),
    /// `node.yaml` is invalid (for `ctl --config`, which needs only the API address).
    #[error(transparent)]
    Config(#[from] node::ConfigError),
    /// The node API could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The API's TCP port could not be bound.
    #[error("cannot listen for the API on {address}: {source}")]
    ApiBind {
        /// `node_config.api.listen`.
        address: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The API server failed while running.
    #[error("API server failed: {0}")]
    ApiServe(std::io::Error),
    /// The async runtime or signal handlers could not be set up.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// `ctl incidents --follow` lost or could not open the event stream.
    #[error("event stream: {0}")]
    Follow(String),
    /// The demo could not set up or run its mesh.
    #[error("demo: {0}")]
    Demo(String),
    /// The simulation's flags were invalid, or the run failed its checks.
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    /// A command-line value is invalid (a token, a file to sign).
    #[error("{0}")]
    Usage(String),
    /// A signature did not verify.
    #[error("BAD signature: {0}")]
    Verify(String),
    /// The demo was interrupted (SIGINT/SIGTERM); its nodes were stopped.
    #[error("interrupted; all demo nodes were stopped")]
    Interrupted,
}

impl CliError {
    /// The process exit code for this error: 130 (128 + SIGINT) after an interruption, as
    /// shells expect, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Interrupted => 130,
            _ => 1,
        }
    }
}
