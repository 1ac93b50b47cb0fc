//! The `x0tta6bl4` command: `init`, `ca`, `run`, `ctl`, `sign`, `verify`, `demo`, `sim`.
//!
//! # Layout
//! - [`Cli`], [`Command`]: the command line (clap); `main.rs` only parses and reports errors.
//! - [`cmd_init`], [`cmd_ca`], [`cmd_run`], [`cmd_ctl`], [`cmd_sign`]: one module per command; `run` wires the node
//!   runtime (`node`) and the HTTP API (`api`) together and waits for SIGINT/SIGTERM.
//! - [`demo`]: `x0tta6bl4 demo`, a local mesh of real node processes that is broken on purpose
//!   and measured while it heals.
//! - [`localnet`]: starting, killing and restarting node processes on loopback, shared by the
//!   demo and the integration tests.
//! - [`client`]: `ApiClient`, a blocking client for a node's API.
//! - [`render`]: the human tables `ctl` and the demo print.
//! - [`error`]: `CliError`, every failure as one line.
//!
//! `sim` is the `sim` crate's own command (`sim::cli`); this crate only prints its output.

pub mod client;
pub mod cmd_ca;
pub mod cmd_ctl;
pub mod cmd_init;
pub mod cmd_run;
pub mod cmd_sign;
pub mod demo;
pub mod error;
pub mod kv_jepsen;
pub mod localnet;
pub mod netns;
pub mod render;
pub mod seeded;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// x0tta6bl4: a self-healing mesh node.
#[derive(Debug, Parser)]
#[command(
    name = "x0tta6bl4",
    version,
    propagate_version = true,
    after_help = "New here? Run `x0tta6bl4 demo`: six nodes on this machine form a mesh, one is killed, and the mesh routes around it."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory and node keys (record a bootstrap peer list; join a trust
    /// domain with a token).
    Init(cmd_init::InitArgs),
    /// The trust domain's CA (on the CA node): init, token, revoke.
    Ca(cmd_ca::CaArgs),
    /// Sign a file (config, playbook) with the node's hybrid Ed25519 + ML-DSA-65 keys.
    Sign(cmd_sign::SignArgs),
    /// Verify a hybrid signature made by `sign`.
    Verify(cmd_sign::VerifyArgs),
    /// Run a node until SIGINT or SIGTERM.
    Run(cmd_run::RunArgs),
    /// Ask a running node for its status, peers or routes.
    Ctl(cmd_ctl::CtlArgs),
    /// Start a local mesh of node processes, kill a relay and measure how fast it heals.
    Demo(demo::DemoArgs),
    /// Simulate a large mesh of the real routing core on a virtual clock, crash nodes at
    /// once, and measure recovery.
    Sim(sim::cli::SimArgs),
}

impl Cli {
    /// Runs the chosen command; the exit code says whether it succeeded.
    pub fn run(self) -> Result<ExitCode, CliError> {
        match self.command {
            Command::Init(args) => cmd_init::run(&args).map(|()| ExitCode::SUCCESS),
            Command::Ca(args) => cmd_ca::run(&args).map(|()| ExitCode::SUCCESS),
            Command::Sign(args) => cmd_sign::sign(&args).map(|()| ExitCode::SUCCESS),
            Command::Verify(args) => cmd_sign::verify(&args).map(|()| ExitCode::SUCCESS),
            Command::Run(args) => cmd_run::run(&args).map(|()| ExitCode::SUCCESS),
            Command::Ctl(args) => cmd_ctl::run(&args).map(|()| ExitCode::SUCCESS),
            Command::Demo(args) => demo::run(&args),
            Command::Sim(args) => run_sim(&args),
        }
    }
}

/// The wall clock in Unix seconds (certificates and tokens are dated by it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Runs `sim` and prints its report on stdout. A run that completes but fails its checks
/// still prints the report, then fails with the checks that did not hold.
fn run_sim(args: &sim::cli::SimArgs) -> Result<ExitCode, CliError> {
    match sim::cli::run(args) {
        Ok(output) => {
            print!("{output}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if let Some(output) = error.report_output() {
                print!("{output}");
            }
            Err(CliError::Sim(error))
        }
    }
}
