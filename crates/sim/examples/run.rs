//! Runs one simulation from the command line, as `x0tta6bl4 sim` does:
//! `cargo run --release -p sim --example run -- --nodes 1000 --json`.

use clap::Parser;

/// mimalloc instead of the system allocator: a 10,000-node run allocates and frees billions of
/// small packet buffers between tens of millions of long-lived table chunks, which left glibc's
/// heap fragmented (resident memory far above what the simulation held, and about a sixth of
/// the CPU time in its free-list searches after the crash).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
