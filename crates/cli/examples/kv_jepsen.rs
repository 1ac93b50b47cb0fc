//! Jepsen-style campaign against the key-value store over real daemons: `--seeds N` seeds in a
//! row (from `--first-seed`), each a fresh 3- or 5-voter cluster with concurrent HTTP clients
//! and a seeded nemesis (SIGKILL, restart, and partitions when run as root). Prints one line per
//! seed and exits non-zero if any seed's history is not linearizable or lost an acknowledged
//! write.
//!
//! `cargo build -p cli --release && cargo run --release -p cli --example kv_jepsen -- --seeds 20`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cli::kv_jepsen::{JepsenOptions, run_seed};

const USAGE: &str = "usage: kv_jepsen [--seeds N] [--first-seed S] [--nodes 3|5] [--clients C] [--secs T] [--no-partitions] [--binary PATH]";

fn main() {
    let mut seeds = 5u64;
    let mut first = 1u64;
    let mut options = JepsenOptions {
        duration: Duration::from_secs(20),
        ..JepsenOptions::default()
    };
    let mut binary: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        let number = |name: &str, text: String| -> u64 {
            text.parse().unwrap_or_else(|_| {
                eprintln!("{name}: {text:?} is not a number\n{USAGE}");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--seeds" => seeds = number("--seeds", value("--seeds")),
            "--first-seed" => first = number("--first-seed", value("--first-seed")),
            "--nodes" => options.nodes = number("--nodes", value("--nodes")) as usize,
            "--clients" => options.clients = number("--clients", value("--clients")) as u32,
            "--secs" => options.duration = Duration::from_secs(number("--secs", value("--secs"))),
            "--no-partitions" => options.partitions = false,
            "--binary" => binary = Some(PathBuf::from(value("--binary"))),
            "--help" | "-h" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                std::process::exit(2)
            }
        }
    }
    // The daemon binary next to this example's directory (target/<profile>/x0tta6bl4).
    let binary = binary.unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("the example knows its own path");
        exe.parent()
            .and_then(|examples| examples.parent())
            .map(|profile| profile.join("x0tta6bl4"))
            .expect("the example lives in target/<profile>/examples")
    });
    if !binary.exists() {
        eprintln!(
            "{} is missing: build it first (cargo build --release -p cli)",
            binary.display()
        );
        std::process::exit(2);
    }
    println!(
        "kv_jepsen: {seeds} seeds from {first}, {} voters, {} clients, {} s each",
        options.nodes,
        options.clients,
        options.duration.as_secs()
    );
    let (mut passed, mut failed, mut ops, mut faults) = (0, 0, 0, 0);
    for seed in first..first + seeds {
        let started = Instant::now();
        let options = JepsenOptions {
            seed,
            ..options.clone()
        };
        match run_seed(&binary, &options) {
            Ok(report) => {
                println!(
                    "{} ({:.0} s)",
                    report.summary(),
                    started.elapsed().as_secs_f64()
                );
                ops += report.ops;
                faults += report.faults.len();
                if report.passed() {
                    passed += 1;
                } else {
                    failed += 1;
                    for line in &report.evidence {
                        println!("    {line}");
                    }
                    if !report.lost.is_empty() {
                        println!("    lost: {:?}", report.lost);
                    }
                }
            }
            Err(error) => {
                failed += 1;
                println!("seed {seed}: could not run: {error}");
            }
        }
    }
    println!(
        "kv_jepsen: {passed} seeds passed, {failed} failed; {ops} operations, {faults} nemesis actions"
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
