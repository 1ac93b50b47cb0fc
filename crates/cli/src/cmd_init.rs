//! `x0tta6bl4 init`: creates the data directory and node keys, records bootstrap peers, and
//! with `--join-token` makes the node a member of a trust domain.

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
    /// A join token from `x0tta6bl4 ca token` on the CA node: obtains this node's SVID.
    #[arg(long, value_name = "TOKEN")]
    pub join_token: Option<String>,
}

/// Runs `init` and prints the node id on stdout (details on stderr).
pub fn run(args: &InitArgs) -> Result<(), CliError> {
    let config = NodeConfig::load(&args.config)?;
    // Parse the token before creating anything, so a typo leaves no half-made node.
    let token = args
        .join_token
        .as_deref()
        .map(|text| text.parse::<identity::JoinToken>())
        .transpose()
        .map_err(|error| CliError::Usage(error.to_string()))?;
    let report = node::init(&config, args.bootstrap.as_deref())?;
    let key_state = if report.created_key {
        "created"
    } else {
        "kept existing"
    };
    eprintln!("data dir   {}", report.data_dir.display());
    eprintln!("node keys  {} ({key_state})", report.key_path.display());
    if let Some((path, peers)) = &report.bootstrap {
        eprintln!("bootstrap  {} ({peers} peers)", path.display());
    }
    if let Some(token) = token {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CliError::Runtime)?;
        let joined = runtime
            .block_on(node::membership::join(&config, &token, crate::unix_now()))
            .map_err(node::NodeError::from)?;
        eprintln!(
            "joined     {} (SVID valid until Unix {})",
            joined.spiffe_id, joined.not_after
        );
    }
    println!("{}", report.node_id);
    Ok(())
}
