//! Seeded deterministic discrete-event simulator that runs the real x0tta6bl4 routing core.
//!
//! N `routing::Router`s exchange the exact bytes they encode over a simulated network with a
//! virtual clock: no tokio, no sleeps, no clock reads (the one exception is `wall_ms`, read in
//! `cli.rs` around the run and never fed into it). The same arguments give the same run, event
//! for event, so a seed reproduces any failure.
//!
//! # Layout
//! - [`config`]: `SimConfig`, one run's validated parameters, and the check cadence.
//! - [`topology`]: line, ring, grid and random topologies (CSR adjacency), components.
//! - [`engine`]: `Simulation`, the event loop, the network model, the per-step invariants,
//!   the run phases (converge, idle, crash, recover, heal).
//! - [`walk`]: the forwarding-path checker that walks next hops instead of trusting tables.
//! - [`routed`]: which sources have a next hop per destination, a free necessary condition
//!   that spares the walks while a route is still missing.
//! - [`queue`]: the bounded event queue and the slab of packets in flight.
//! - [`report`]: `SimReport`, the verdict and the human summary.
//! - [`rng`]: the simulator's own SplitMix64 and its independent streams.
//! - [`signing`]: per-node Ed25519 keys for `--sign-ogms`.
//! - [`cli`]: `SimArgs` (the `x0tta6bl4 sim` flags) and `cli::run`, which renders the report.
//! - [`crdt_run`]: `sim --crdt`, the CRDT anti-entropy of N `crdt::Replica`s on the same
//!   network model: one policy change, its convergence time and bytes per node.
//! - [`error`]: `SimError`, every way a run can fail.
//!
//! # The network model
//! - Links are the topology's edges; they do not fail, nodes do. A transmit to
//!   `Destination::Discovery` goes to every linked node (the role of link-local multicast
//!   plus static peers); `Destination::Neighbour(id)` only over an existing link.
//! - Until the heal phase, each copy is lost independently with probability `loss`; it
//!   otherwise arrives after the link latency plus a uniform jitter of up to 10 % (so packets
//!   may reorder if sent closer together than the jitter). Copies that reach a crashed or not yet started node are lost.
//! - Bytes are counted once per copy put on a link, including 48 bytes of IPv6 + UDP header
//!   ([`config::IPV6_UDP_HEADER_BYTES`]): the routers emit UDP payloads only.
//!
//! # The run
//! 1. Every node starts at a random instant in the first 100 ms (100 us per node above 1,000
//!    nodes: 1 s at 10,000, see `SimConfig::start_spread_us`).
//! 2. **Converge**: at every check instant (every 10 ms of virtual time up to 2,000 nodes,
//!    50 ms up to 5,000, 100 ms above) the walker asks whether every ordered pair has a
//!    working path; the first instant it does is `converged_s`.
//! 3. **Idle**: with r the time left, the mesh settles for min(2 s, r/4), then the control
//!    traffic of the idle window (the next min(10 s, r/4)) gives the `control_bytes_*` figures.
//! 4. **Crash**: at the end of the idle window, `floor(fail * N)` nodes chosen by the seed
//!    crash at once. `recovered_s` is the time until every pair of survivors that is still
//!    connected through survivors has a working path (at the same check resolution).
//! 5. **Heal**: the last min(10 s, half the time after the crash) is fault-free (no packet
//!    loss, as in a VOPR's liveness phase); `unreachable_pairs_after` counts the connected
//!    surviving pairs without a working path at the end.
//!
//! # Invariants
//! After every step (O(1) router queries): `Router::validate`; the node's own and two sampled
//! destinations' newest sequence numbers never go backwards (serial arithmetic); a changed route
//! points to a linked neighbour the node's table lists alive; received packets decode and name
//! their real sender; neighbour events name linked nodes. At every check instant, for the pairs
//! walked (all of them at full audits: each 1 s up to 1,000 nodes, 5 s up to 3,000, 10 s
//! above, and at the end): no forwarding loop once converged; every next hop is linked and
//! listed alive; no node forwards to a neighbour that crashed more than twice the detection
//! time ago; and at audits each router's neighbour table agrees with its events. Violations
//! are counted, the first few kept, and make [`run`] fail.

pub mod cli;
pub mod config;
pub mod crdt_run;
pub mod engine;
pub mod error;
pub mod queue;
pub mod report;
pub mod rng;
pub mod routed;
pub mod signing;
pub mod topology;
pub mod walk;

pub use config::SimConfig;
pub use engine::{Progress, Simulation};
pub use error::SimError;
pub use report::SimReport;
pub use topology::{Topology, TopologyKind};

/// Runs one simulation on the topology `config` describes. `Ok` only if the mesh converged,
/// recovered from the crash, ended with every connected surviving pair working, and no
/// invariant was violated; otherwise [`SimError::Unhealthy`] carries the report.
pub fn run(config: &SimConfig) -> Result<SimReport, SimError> {
    run_with_progress(config, |_| {})
}

/// Like [`run`], calling `tick` after every check instant and every
/// [`engine::TICK_EVENTS`] events (for progress lines).
pub fn run_with_progress(
    config: &SimConfig,
    tick: impl FnMut(&Simulation),
) -> Result<SimReport, SimError> {
    config.validate()?;
    let topology = Topology::build(config.topology, config.nodes, config.seed)?;
    run_on_with_progress(config, topology, tick)
}

/// Like [`run`], on an explicit topology (which must have `config.nodes` nodes and be
/// connected); `config.topology` only labels the report.
pub fn run_on(config: &SimConfig, topology: Topology) -> Result<SimReport, SimError> {
    run_on_with_progress(config, topology, |_| {})
}

/// Like [`run_on`], calling `tick` after every check instant and every
/// [`engine::TICK_EVENTS`] events.
pub fn run_on_with_progress(
    config: &SimConfig,
    topology: Topology,
    tick: impl FnMut(&Simulation),
) -> Result<SimReport, SimError> {
    let mut simulation = Simulation::new(config, topology)?;
    simulation.run_to_end_with_progress(tick)?;
    let report = simulation.report();
    let problems = report.problems(config.failed_node_count());
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(SimError::Unhealthy {
            problems,
            report: Box::new(report),
        })
    }
}
