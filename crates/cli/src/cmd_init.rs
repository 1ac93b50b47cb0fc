//! `x0tta6bl4 init`: creates the data directory and node key, and records bootstrap peers.

use std::path::PathBuf;

use clap::Args;
use node::NodeConfig;

use crate::CliError;

/// Arguments of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The node's configuration file.
    #[arg(long, value_name = "PATH", default_value = "node.yaml")]
    pub config: PathBuf,
    /// A nodes.json peer list to validate and copy into the data directory.
    #[arg(long, value_name = "PATH")]
    pub bootstrap: Option<PathBuf>,
}

/// Runs `init` and prints the node id on stdout (details on stderr).
pub fn run(args: &InitArgs) -> Result<(), CliError> {
    let config = NodeConfig::load(&args.config)?;
    let report = node::init(&config, args.bootstrap.as_deref())?;
    let key_state = if report.created_key {
        "created"
    } else {
        "kept existing"
    };
    eprintln!("data dir   {}", report.data_dir.display());
    eprintln!("node key   {} ({key_state})", report.key_path.display());
    if let Some((path, peers)) = &report.bootstrap {
        eprintln!("bootstrap  {} ({peers} peers)", path.display());
    }
    println!("{}", report.node_id);
    Ok(())
}
