//! `x0tta6bl4 demo`: starts a mesh of real node processes on loopback, waits for it to
//! converge, kills node 1's supervised service and watches the healing loop restart it, kills
//! the relay on node 1's path to the farthest node, measures how fast node 1 routes around it,
//! waits until a node's healing loop names the relay as the root cause, restarts the relay,
//! waits for reconvergence and the incident's recovery (MTTD and MTTR of both faults); then
//! gives three nodes the key-value store's voter role, writes and reads a key across nodes,
//! kills the Raft leader and measures how long writes were unavailable ([`kvact`]), and reports.
//!
//! Progress goes to stderr as it happens; the route table and the summary go to stdout (with
//! `--json`, only the summary as one JSON object). The exit code is 0 only if the mesh healed.

pub mod healing;
pub mod kvact;
pub mod measure;
pub mod report;
pub mod signals;
pub mod topology;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use self::report::Summary;
use self::topology::{Shape, Topology};
use crate::CliError;
use crate::localnet::{LocalNet, LocalNetError, LocalNetOptions, MAX_LOCAL_NODES};
use crate::render;

/// Time for every node's API to come up after start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Time for the mesh to converge (after start or after the relay's restart). Generous:
/// convergence takes a few OGM intervals, more on a loaded machine or a large mesh.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for the routing tables to stop changing after convergence. Missing it is only noted:
/// the measurements still mean something, just from a less quiet starting point.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Time for node 1 to route around the killed relay before the demo calls it a failure.
const REROUTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the rest of the new path to settle after node 1 switched.
const PATH_TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Number of nodes (4 to 64).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(4..=MAX_LOCAL_NODES as i64))]
    pub nodes: u16,
    /// How the nodes are linked; each node's peer list names only its neighbours.
    #[arg(long, value_enum, default_value_t = Shape::Ring)]
    pub topology: Shape,
    /// Seed for `--topology random`.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Leave the mesh running afterwards and print each node's API URL.
    #[arg(long)]
    pub keep: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Seconds of idle operation over which control traffic is measured (1 to 60).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub measure_s: u64,
}

/// Prints timestamped progress lines on stderr.
struct Progress {
    started: Instant,
}

impl Progress {
    fn say(&self, message: impl AsRef<str>) {
        eprintln!(
            "[{:>5.1} s] {}",
            self.started.elapsed().as_secs_f64(),
            message.as_ref()
        );
    }
}

/// Runs the demo. `Ok(SUCCESS)` only if the mesh healed.
pub fn run(args: &DemoArgs) -> Result<ExitCode, CliError> {
    signals::install();
    let binary = std::env::current_exe()
        .map_err(|error| CliError::Demo(format!("cannot find my own executable: {error}")))?;
    let count = usize::from(args.nodes);
    let topology = Topology::build(args.topology, count, args.seed);
    let progress = Progress {
        started: Instant::now(),
    };
    let options = LocalNetOptions {
        detached: args.keep,
        node_yaml: vec![healing::SERVICE_YAML.to_string()],
        ..LocalNetOptions::default()
    };
    let mut net =
        LocalNet::create(&binary, count, &topology.edges, &options).map_err(local_error)?;
    progress.say(format!(
        "{count} nodes, {} topology ({} links) on 127.0.0.1; configs and logs in {}",
        args.topology.name(),
        topology.edges.len(),
        net.root().display()
    ));
    match scenario(&mut net, &topology, args, &progress) {
        Ok(mut summary) => {
            if !summary.healed || summary.kv.as_ref().is_some_and(|kv| !kv.ok) {
                summary.dir = Some(net.keep_files().display().to_string());
            }
            finish(net, summary, args, &progress)
        }
        Err(_) if signals::interrupted() => {
            // Dropping the mesh stops every node and removes its directory.
            drop(net);
            Err(CliError::Interrupted)
        }
        Err(error) => {
            let kept = net.keep_files();
            drop(net);
            Err(CliError::Demo(format!(
                "{error}; node configs and logs kept in {}",
                kept.display()
            )))
        }
    }
}

fn local_error(error: LocalNetError) -> CliError {
    CliError::Demo(error.to_string())
}

fn scenario(
    net: &mut LocalNet,
    topology: &Topology,
    args: &DemoArgs,
    progress: &Progress,
) -> Result<Summary, LocalNetError> {
    let interrupted = signals::interrupted;
    let started = Instant::now();
    net.start_all()?;
    net.wait_healthy(STARTUP_TIMEOUT, &interrupted)?;
    progress.say(format!(
        "all {} node APIs answer; waiting for every node to reach every other",
        net.nodes().len()
    ));
    let converged_ms =
        measure::millis(net.wait_converged(CONVERGENCE_TIMEOUT, &interrupted)? - started);
    progress.say(format!(
        "converged in {}: every node forwards to every other (next hops walked end to end)",
        render::format_duration_ms(converged_ms)
    ));
    let settled = measure::wait_settled(net, topology, SETTLE_TIMEOUT, &interrupted)?;
    let settled_ms = settled.map(|(at, _)| measure::millis(at.saturating_duration_since(started)));
    let shortest_path_pct = settled.map(|(_, state)| state.shortest_path_pct);
    // Polling sees convergence up to one poll late. If no next hop changed after time T and
    // the mesh was converged when polled, it was already converged at T.
    let converged_ms = settled_ms.map_or(converged_ms, |settled| converged_ms.min(settled));
    match (settled_ms, shortest_path_pct) {
        (Some(ms), Some(pct)) => progress.say(format!(
            "settled: last route change {} after start, then none for {} s; {pct:.0}% of routes on shortest paths",
            render::format_duration_ms(ms),
            measure::QUIET_PERIOD.as_secs()
        )),
        _ => progress.say(format!("routes still changing after {} s; going on", SETTLE_TIMEOUT.as_secs())),
    }

    let source = 0;
    let destination = topology.farthest_from(source);
    if !args.json {
        let mut routes = net.node(source).client.routes()?;
        routes.sort_by_key(|route| net.position_of(&route.destination));
        let label = |id: &wire::NodeId| net.label(id);
        println!("routes of node 1:\n{}", render::routes(&routes, &label));
    }

    let degrees: Vec<usize> = (0..topology.count)
        .map(|node| topology.neighbours(node).len())
        .collect();
    progress.say(format!(
        "measuring idle control traffic for {} s",
        args.measure_s
    ));
    let traffic = measure::control_traffic(
        net,
        &degrees,
        Duration::from_secs(args.measure_s),
        &interrupted,
    )?;
    progress.say(format!(
        "idle control traffic: {:.0} B/s per node, {:.0} B/s per neighbour",
        traffic.bytes_per_node_s, traffic.bytes_per_neighbour_s
    ));

    let mut summary = Summary {
        nodes: topology.count,
        topology: args.topology,
        seed: (args.topology == Shape::Random).then_some(args.seed),
        links: topology.edges.len(),
        converged_ms,
        settled_ms,
        shortest_path_pct: shortest_path_pct.map(tenths),
        source: source + 1,
        destination: destination + 1,
        relay: None,
        path_before: Vec::new(),
        reroute_possible: false,
        rerouted: false,
        reroute_ms: None,
        reroute_observed_ms: None,
        new_next_hop: None,
        path_after: None,
        relay_same_identity: None,
        reconverged_ms: None,
        control_bytes_per_node_s: tenths(traffic.bytes_per_node_s),
        control_bytes_per_neighbour_s: tenths(traffic.bytes_per_neighbour_s),
        control_packets_per_node_s: tenths(traffic.packets_per_node_s),
        control_wire_bytes_per_node_s: tenths(traffic.wire_bytes_per_node_s),
        measure_window_s: args.measure_s as f64,
        healed: false,
        reason: None,
        api_urls: None,
        pids: None,
        dir: None,
        kv: None,
        healing: Vec::new(),
    };
    progress.say(format!(
        "killing node 1's supervised service `{}` (SIGKILL); its healing loop must restart it",
        healing::SERVICE
    ));
    let act = healing::service_act(net, &interrupted)?;
    progress.say(healing::text(&act));
    summary.healing.push(act);
    break_and_heal(net, topology, &mut summary, progress)?;
    if summary.healed && !interrupted() {
        let say = |message: String| progress.say(message);
        summary.kv = Some(kvact::run(net, &interrupted, &say)?);
    }
    Ok(summary)
}

/// Kills the relay, watches the reroute, restarts the relay and waits for reconvergence.
fn break_and_heal(
    net: &mut LocalNet,
    topology: &Topology,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<(), LocalNetError> {
    let interrupted = signals::interrupted;
    let (source, destination) = (summary.source - 1, summary.destination - 1);
    let Some(path_before) =
        measure::settled_path(net, source, destination, PATH_TIMEOUT, &interrupted)?
    else {
        summary.reason = Some(format!(
            "node 1 has no working path to node {} before the failure",
            destination + 1
        ));
        return Ok(());
    };
    summary.path_before = path_before.iter().map(|node| node + 1).collect();
    if path_before.len() < 3 {
        summary.reason = Some(format!(
            "node {} is node 1's direct neighbour: there is no relay to kill",
            destination + 1
        ));
        return Ok(());
    }
    let relay = path_before[1];
    summary.relay = Some(relay + 1);
    summary.reroute_possible = topology.distances(source, Some(relay))[destination].is_some();
    let relay_id = net.node(relay).id;
    progress.say(format!(
        "node 1 reaches node {} via node {}; killing node {} (SIGKILL)",
        destination + 1,
        relay + 1,
        relay + 1
    ));
    let timeout = if summary.reroute_possible {
        REROUTE_TIMEOUT
    } else {
        Duration::from_secs(2)
    };
    let fault_unix_ms = measure::unix_now_ms();
    let reroute = measure::kill_and_watch(net, source, destination, relay, timeout, &interrupted)?;
    summary.new_next_hop = reroute.new_next_hop.map(|node| node + 1);
    summary.reroute_ms = reroute.reroute_ms;
    summary.reroute_observed_ms = reroute.observed_ms;
    summary.rerouted = reroute.new_next_hop.is_some();
    match (reroute.reroute_ms, reroute.new_next_hop) {
        (Some(ms), Some(hop)) => {
            progress.say(format!(
                "node 1 rerouted to node {} via node {} in {ms} ms",
                destination + 1,
                hop + 1
            ));
            summary.path_after =
                measure::settled_path(net, source, destination, PATH_TIMEOUT, &interrupted)?
                    .map(|path| path.iter().map(|node| node + 1).collect());
        }
        _ if !summary.reroute_possible => progress.say(format!(
            "no other path from node 1 to node {} exists without node {} in a {} topology",
            destination + 1,
            relay + 1,
            summary.topology.name()
        )),
        _ => progress.say(format!(
            "node 1 did not reroute within {} s",
            REROUTE_TIMEOUT.as_secs()
        )),
    }

    let mut relay_act = healing::relay_detected(net, relay, fault_unix_ms, &interrupted)?;
    progress.say(healing::text(&relay_act));
    progress.say(format!("restarting node {} with its data dir", relay + 1));
    let restarted_at = Instant::now();
    net.start(relay)?;
    net.wait_healthy(STARTUP_TIMEOUT, &interrupted)?;
    summary.relay_same_identity = Some(net.node(relay).client.status()?.node_id == relay_id);
    let reconverged = net.wait_converged(CONVERGENCE_TIMEOUT, &interrupted)?;
    summary.reconverged_ms = Some(measure::millis(reconverged - restarted_at));
    progress.say(format!(
        "reconverged {} after the restart",
        render::format_duration_ms(summary.reconverged_ms.unwrap_or(0))
    ));

    healing::relay_recovered(net, &mut relay_act, fault_unix_ms, &interrupted)?;
    progress.say(healing::text(&relay_act));
    summary.healing.push(relay_act);

    summary.reason = healing_failure(summary);
    summary.healed = summary.reason.is_none();
    Ok(())
}

/// Why the run does not count as healed, or `None` if it does.
fn healing_failure(summary: &Summary) -> Option<String> {
    let relay = summary.relay.unwrap_or(0);
    if !summary.reroute_possible {
        return Some(format!(
            "in this {} topology every path from node 1 to node {} runs through node {relay}, so nothing can route around it",
            summary.topology.name(),
            summary.destination
        ));
    }
    if !summary.rerouted {
        return Some(format!(
            "node 1 kept forwarding to the dead node {relay} for {} s",
            REROUTE_TIMEOUT.as_secs()
        ));
    }
    match &summary.path_after {
        None => Some(format!(
            "node 1 switched its next hop, but no complete path to node {} formed",
            summary.destination
        )),
        Some(path) if path.contains(&relay) => Some(format!(
            "the new path {path:?} still runs through the dead node {relay}"
        )),
        Some(_) if summary.relay_same_identity == Some(false) => {
            Some("the restarted relay came back with another node id".to_string())
        }
        Some(_) => None,
    }
}

/// Prints the summary (and, with `--keep`, how to reach the running mesh) and picks the exit
/// code.
fn finish(
    net: LocalNet,
    mut summary: Summary,
    args: &DemoArgs,
    progress: &Progress,
) -> Result<ExitCode, CliError> {
    if args.keep {
        summary.api_urls = Some(net.nodes().iter().map(|node| node.api_url()).collect());
        summary.pids = Some(net.nodes().iter().filter_map(|node| node.pid()).collect());
        summary.dir = Some(net.detach().display().to_string());
    } else {
        drop(net);
        progress.say("stopped all nodes");
    }
    if args.json {
        let json = serde_json::to_string(&summary)
            .map_err(|error| CliError::Demo(format!("cannot encode the summary: {error}")))?;
        println!("{json}");
    } else {
        println!("{}", summary.to_text());
        if let (Some(urls), Some(pids)) = (&summary.api_urls, &summary.pids) {
            println!("\nthe mesh keeps running:");
            for (index, url) in urls.iter().enumerate() {
                println!(
                    "  node {:<3} {url}   (x0tta6bl4 ctl routes --api {url})",
                    index + 1
                );
            }
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            println!("stop it with: kill {}", pids.join(" "));
        } else if let Some(dir) = &summary.dir {
            println!("node configs and logs kept in {dir}");
        }
    }
    let kv_ok = summary.kv.as_ref().is_some_and(|kv| kv.ok);
    Ok(if summary.healed && kv_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Rounds to one decimal: the measurements are not more precise than that, and the JSON
/// stays readable.
fn tenths(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}
