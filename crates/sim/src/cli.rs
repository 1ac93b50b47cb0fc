//! `x0tta6bl4 sim`: the command-line flags and the rendered output.
//!
//! The `cli` crate flattens [`SimArgs`] into its `sim` subcommand and prints what [`run`]
//! returns. This is the only file of the crate that reads a clock, to report `wall_ms`.

use std::time::Instant;

use crate::config::{MAX_DURATION_S, MAX_LATENCY_MS};
use crate::{Progress, SimConfig, SimError, SimReport, TopologyKind};

/// Runs of more nodes than this print progress lines without `--progress`: they take minutes.
pub const PROGRESS_DEFAULT_ABOVE_NODES: usize = 1_000;

/// A progress line is printed at every simulated second, and at the first callback after this
/// many wall seconds without one (the start-up of a large mesh takes minutes per
/// simulated second).
const PROGRESS_EVERY_SIMULATED_US: u64 = 1_000_000;
const PROGRESS_EVERY_WALL_S: f64 = 10.0;

/// Flags of `x0tta6bl4 sim`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SimArgs {
    /// Number of simulated nodes (2 to 20000).
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Link topology.
    #[arg(long, value_enum, default_value_t = TopologyKind::Random)]
    pub topology: TopologyKind,
    /// Probability that any one packet copy is lost, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// One-way latency of every link in milliseconds (each packet adds up to 10 % jitter).
    #[arg(long = "latency-ms", default_value_t = 5.0)]
    pub latency_ms: f64,
    /// Fraction of nodes crashed at once after convergence, in [0, 1).
    #[arg(long, default_value_t = 0.4)]
    pub fail: f64,
    /// Run seed: same seed and flags, same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Virtual seconds to simulate.
    #[arg(long = "duration-s", default_value_t = 60.0)]
    pub duration_s: f64,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Run the routers without fisheye OGM scoping (plain B.A.T.M.A.N.-style flooding).
    #[arg(long = "no-fisheye")]
    pub no_fisheye: bool,
    /// Sign and verify every OGM with real Ed25519 keys (costs CPU; the 64 signature bytes
    /// per OGM are sent and counted either way).
    #[arg(long = "sign-ogms")]
    pub sign_ogms: bool,
    /// Print a progress line on stderr per simulated second and at least every 10 wall
    /// seconds (on by default above 1,000 nodes): virtual time, phase, queued events, packets
    /// in flight, memory by part, resident set size and wall time.
    #[arg(long)]
    pub progress: bool,
    /// The CRDT run (`--crdt` and its flags).
    #[command(flatten)]
    pub crdt: crate::crdt_run::CrdtArgs,
}

impl Default for SimArgs {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        SimArgs {
            nodes: 100,
            topology: TopologyKind::Random,
            loss: 0.0,
            latency_ms: 5.0,
            fail: 0.4,
            seed: 1,
            duration_s: 60.0,
            json: false,
            no_fisheye: false,
            sign_ogms: false,
            progress: false,
            crdt: crate::crdt_run::CrdtArgs::default(),
        }
    }
}

impl SimArgs {
    /// The validated run configuration; errors name the flag.
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        if !(self.latency_ms.is_finite() && (0.0..=MAX_LATENCY_MS).contains(&self.latency_ms)) {
            return Err(SimError::invalid(
                "--latency-ms",
                format!("must be between 0 and {MAX_LATENCY_MS}"),
            ));
        }
        if !(self.duration_s.is_finite()
            && self.duration_s > 0.0
            && self.duration_s <= MAX_DURATION_S)
        {
            return Err(SimError::invalid(
                "--duration-s",
                format!("must be above 0 and at most {MAX_DURATION_S}"),
            ));
        }
        let mut config = SimConfig {
            nodes: self.nodes,
            topology: self.topology,
            loss: self.loss,
            // Both were range-checked above, so the rounded products fit in u64.
            latency_us: (self.latency_ms * 1000.0).round() as u64,
            fail_fraction: self.fail,
            seed: self.seed,
            duration_us: (self.duration_s * 1e6).round() as u64,
            sign_ogms: self.sign_ogms,
            ..SimConfig::default()
        };
        config.router.fisheye = !self.no_fisheye;
        config.validate()?;
        Ok(config)
    }
}

/// The JSON object `--json` prints: the report plus the wall-clock time.
#[derive(serde::Serialize)]
struct JsonSummary<'a> {
    #[serde(flatten)]
    report: &'a SimReport,
    /// Real milliseconds the run took; the only field that differs between identical runs.
    wall_ms: u64,
}

/// Runs the simulation `args` describe and returns the text to print (ending in a newline,
/// so print it with `print!`). A run that completes but fails its checks returns
/// [`SimError::RunFailed`] carrying the same rendered text: print it, then exit non-zero.
pub fn run(args: &SimArgs) -> Result<String, SimError> {
    if args.crdt.crdt {
        return run_crdt(args);
    }
    let config = args.to_config()?;
    // The crate's only clock read. wall_ms is measured around the run and only reported, so
    // the simulation itself stays a pure function of its arguments.
    let started = Instant::now(); // tidy: wall-clock measurement only
    let outcome = if args.progress || config.nodes > PROGRESS_DEFAULT_ABOVE_NODES {
        let mut next_line_us = PROGRESS_EVERY_SIMULATED_US;
        let mut next_line_wall_s = PROGRESS_EVERY_WALL_S;
        crate::run_with_progress(&config, |simulation| {
            let wall_s = started.elapsed().as_secs_f64();
            if simulation.now_us() >= next_line_us || wall_s >= next_line_wall_s {
                eprintln!("{}", progress_line(&simulation.progress(), wall_s));
                while next_line_us <= simulation.now_us() {
                    next_line_us += PROGRESS_EVERY_SIMULATED_US;
                }
                next_line_wall_s = wall_s + PROGRESS_EVERY_WALL_S;
            }
        })
    } else {
        crate::run(&config)
    };
    let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(report) => render(&report, args.json, wall_ms),
        Err(SimError::Unhealthy { problems, report }) => Err(SimError::RunFailed {
            problems,
            output: render(&report, args.json, wall_ms)?,
        }),
        Err(other) => Err(other),
    }
}

/// `sim --crdt`: the CRDT anti-entropy run, rendered like the routing run.
fn run_crdt(args: &SimArgs) -> Result<String, SimError> {
    let config = crate::crdt_run::CrdtConfig::from_flags(
        args.nodes,
        args.topology,
        args.seed,
        args.loss,
        args.latency_ms,
        args.duration_s,
        &args.crdt,
    )?;
    // Measured around the run and only reported, like the routing run's wall_ms.
    let started = Instant::now(); // tidy: wall-clock measurement only
    let report = crate::crdt_run::run(&config)?;
    let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let output = if args.json {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            report: &'a crate::crdt_run::CrdtReport,
            wall_ms: u64,
        }
        let mut line = serde_json::to_string(&Json {
            report: &report,
            wall_ms,
        })
        .map_err(|e| SimError::Render(e.to_string()))?;
        line.push('\n');
        line
    } else {
        report.render_text(wall_ms)
    };
    let problems = report.problems();
    if problems.is_empty() {
        Ok(output)
    } else {
        Err(SimError::RunFailed { problems, output })
    }
}

/// The report as one JSON object on one line, or the human summary.
fn render(report: &SimReport, json: bool, wall_ms: u64) -> Result<String, SimError> {
    if !json {
        return Ok(report.render_text(wall_ms));
    }
    let mut line = serde_json::to_string(&JsonSummary { report, wall_ms })
        .map_err(|e| SimError::Render(e.to_string()))?;
    line.push('\n');
    Ok(line)
}

/// One progress line: where the run is, what it holds, and the process's resident set.
fn progress_line(progress: &Progress, wall_s: f64) -> String {
    const MB: f64 = 1_048_576.0;
    let routers = &progress.routers;
    let rss =
        resident_set_bytes().map_or_else(|| "?".to_string(), |b| format!("{:.0}", b as f64 / MB));
    format!(
        "sim t={:.1}s phase={} events={} queued={} in_flight={} sent_mb={:.0} \
         mem_mb: tables={:.0} queues={:.0} requests={:.0} signatures={:.0} links={:.0} \
         engine={:.0} rss={rss} wall={wall_s:.1}s",
        progress.now_us as f64 / 1e6,
        progress.phase,
        progress.events,
        progress.queued_events,
        progress.packets_in_flight,
        progress.bytes_sent as f64 / MB,
        routers.table as f64 / MB,
        routers.queues as f64 / MB,
        routers.requests as f64 / MB,
        routers.signatures as f64 / MB,
        routers.links as f64 / MB,
        progress.engine_bytes as f64 / MB,
    )
}

/// The process's resident set in bytes, from `/proc/self/statm` (Linux; `None` elsewhere).
fn resident_set_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The kernel's page size on every Linux target this runs on (x86_64, aarch64 with 4 KiB
    // pages); a 64 KiB-page kernel would make the figure 16 times too small.
    Some(resident_pages * 4096)
}
