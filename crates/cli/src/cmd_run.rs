//! `x0tta6bl4 run`: runs a node and its local API until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use node::{Node, NodeConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use crate::CliError;

/// How long open API requests may take to finish after shutdown began.
const API_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Worker threads of a node that hosts the key-value store.
const KV_WORKER_THREADS: usize = 2;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The node's configuration file.
    #[arg(long, value_name = "PATH", default_value = "node.yaml")]
    pub config: PathBuf,
}

/// Runs the node until a signal arrives. Logs go to stderr; `RUST_LOG` sets the level
/// (default `info`).
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let config = NodeConfig::load(&args.config)?;
    init_logging();
    // One thread is plenty for the mesh: the node loop and the API both do little work per
    // event, and a single thread keeps the daemon light on small machines. A node hosting the
    // key-value store gets two workers, so Raft, client requests and the loop share two cores.
    let runtime = if config.kv.is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(KV_WORKER_THREADS)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .map_err(CliError::Runtime)?;
    runtime.block_on(serve(config))
}

async fn serve(config: NodeConfig) -> Result<(), CliError> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Runtime)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Runtime)?;
    let (node, handle) = Node::start(&config)?;
    let handle_for_reload = handle.clone();
    let listener = TcpListener::bind(config.api_listen)
        .await
        .map_err(|source| CliError::ApiBind {
            address: config.api_listen,
            source,
        })?;
    let (stop_api, api_stopped) = oneshot::channel::<()>();
    let api = tokio::spawn(api::run(listener, handle, async move {
        // Either a send or the sender being dropped means "stop".
        let _ = api_stopped.await;
    }));
    let shutdown = async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down");
    };
    // SIGHUP reloads the healing loop's checks and playbooks from node.yaml; the node logs
    // what it took or why it refused (file, line, reason) and keeps the last good set.
    let mut hangup = signal(SignalKind::hangup()).map_err(CliError::Runtime)?;
    let reload_handle = handle_for_reload;
    let reloader = tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading checks and playbooks");
            if let Err(error) = reload_handle.reload_healing().await {
                tracing::warn!(%error, "reload not run");
            }
        }
    });
    let outcome = node.run(shutdown).await;
    reloader.abort();
    drop(stop_api);
    match tokio::time::timeout(API_DRAIN_TIMEOUT, api).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => return Err(CliError::ApiServe(error)),
        Ok(Err(join_error)) => tracing::error!(%join_error, "API task failed"),
        Err(_) => tracing::warn!("API requests still open at shutdown were abandoned"),
    }
    Ok(outcome?)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (only possible in tests) is harmless; ignore it.
    // Colour codes only on a terminal: logs redirected to files stay plain text.
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
