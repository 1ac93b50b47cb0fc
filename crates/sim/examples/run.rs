//! Runs one simulation from the command line, as `x0tta6bl4 sim` does:
//! `cargo run --release -p sim --example run -- --nodes 1000 --json`.

use clap::Parser;

/// The `sim` flags as a standalone command.
#[derive(Debug, Parser)]
#[command(
    name = "sim",
    about = "Deterministic simulation of the x0tta6bl4 routing core"
)]
struct Command {
    #[command(flatten)]
    args: sim::cli::SimArgs,
}

fn main() -> std::process::ExitCode {
    let command = Command::parse();
    match sim::cli::run(&command.args) {
        Ok(output) => {
            print!("{output}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            if let Some(output) = error.report_output() {
                print!("{output}");
            }
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
