//! `SimError`: why a simulation could not run, or ran and failed its checks.

use crate::SimReport;

/// Everything that makes a simulation fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SimError {
    /// A parameter is out of range; `flag` is the command-line flag that sets it.
    #[error("{flag}: {reason}")]
    InvalidArgument {
        /// The offending flag, e.g. `--loss`.
        flag: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// An explicit topology is malformed (self-link, unknown node) or not connected.
    #[error("invalid topology: {0}")]
    Topology(String),
    /// More events were pending than [`crate::queue::MAX_QUEUED_EVENTS`]: the routers emit
    /// packets faster than the network drains them, which only a runaway core does.
    #[error(
        "event queue exceeded {cap} pending events at {at_s:.6} s (a router floods without bound)"
    )]
    QueueFull {
        /// The cap that was hit.
        cap: usize,
        /// Virtual time when it was hit, in seconds.
        at_s: f64,
    },
    /// A router kept asking to be woken at the same instant: the run cannot make progress.
    #[error(
        "node {node} asked for {count} timeouts at {at_s:.6} s without time advancing (livelock)"
    )]
    Livelock {
        /// The node index.
        node: u32,
        /// How many consecutive wake-ups at one instant were seen.
        count: u32,
        /// The instant, in virtual seconds.
        at_s: f64,
    },
    /// The run completed but failed its checks: invariant violations, no convergence, no
    /// recovery, or connected pairs left without a working path. The report is attached.
    #[error("simulation failed: {}", problems.join("; "))]
    Unhealthy {
        /// One line per failed check.
        problems: Vec<String>,
        /// Everything measured, for printing.
        report: Box<SimReport>,
    },
    /// The report could not be serialised as JSON (it holds only numbers and strings, so
    /// this does not happen in practice; it is an error rather than a panic all the same).
    #[error("could not render the report as JSON: {0}")]
    Render(String),
    /// [`crate::cli::run`]'s form of `Unhealthy`: the rendered report (human text or the JSON
    /// object) is in `output`, to be printed on stdout before exiting non-zero.
    #[error("simulation failed: {}", problems.join("; "))]
    RunFailed {
        /// One line per failed check.
        problems: Vec<String>,
        /// The report, rendered as the run's flags asked.
        output: String,
    },
}

impl SimError {
    /// Shorthand for [`SimError::InvalidArgument`].
    pub fn invalid(flag: &'static str, reason: impl Into<String>) -> SimError {
        SimError::InvalidArgument {
            flag,
            reason: reason.into(),
        }
    }

    /// The rendered report of a run that completed but failed, if this is one; callers print
    /// it on stdout (it is the run's normal output) and the error itself on stderr.
    pub fn report_output(&self) -> Option<&str> {
        match self {
            SimError::RunFailed { output, .. } => Some(output),
            _ => None,
        }
    }
}
