//! The demo's measurements: idle control traffic, the reroute after a relay is killed, and
//! the path a packet would take, walked hop by hop through the nodes' own tables.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use node::StatusView;

use super::topology::Topology;
use crate::localnet::{LocalNet, LocalNetError};

/// How often node 1's routes are polled after the kill. 5 ms keeps the polling estimate
/// within a few milliseconds of the node's own record without loading the CPU much.
const REROUTE_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Idle control traffic, averaged over the nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// UDP payload bytes sent per node per second.
    pub bytes_per_node_s: f64,
    /// The same, per neighbour of the node.
    pub bytes_per_neighbour_s: f64,
    /// Packets sent per node per second.
    pub packets_per_node_s: f64,
    /// UDP bytes on the wire per node per second: the same traffic as it leaves the node,
    /// on the link channel (its 30-byte seal) and on QUIC (headers, acknowledgements,
    /// keep-alives).
    pub wire_bytes_per_node_s: f64,
}

fn statuses(net: &LocalNet) -> Result<Vec<StatusView>, LocalNetError> {
    net.nodes()
        .iter()
        .map(|node| node.client.status().map_err(LocalNetError::from))
        .collect()
}

/// Measures what the nodes send over `window` while nothing changes. Each node's rate uses
/// its own uptime as the clock, so polling delays do not skew it.
pub fn control_traffic(
    net: &LocalNet,
    degrees: &[usize],
    window: Duration,
    interrupted: &dyn Fn() -> bool,
) -> Result<Traffic, LocalNetError> {
    let before = statuses(net)?;
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        if interrupted() {
            return Err(LocalNetError::Timeout {
                what: "the traffic measurement (interrupted)".to_string(),
                seconds: 0.0,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = statuses(net)?;
    let mut total = Traffic {
        bytes_per_node_s: 0.0,
        bytes_per_neighbour_s: 0.0,
        packets_per_node_s: 0.0,
        wire_bytes_per_node_s: 0.0,
    };
    for ((old, new), degree) in before.iter().zip(&after).zip(degrees) {
        let seconds = new.uptime_ms.saturating_sub(old.uptime_ms).max(1) as f64 / 1000.0;
        let delta = |name: &str| {
            new.router
                .get(name)
                .copied()
                .unwrap_or(0)
                .saturating_sub(old.router.get(name).copied().unwrap_or(0)) as f64
        };
        let bytes = delta("bytes_tx") / seconds;
        total.bytes_per_node_s += bytes;
        total.bytes_per_neighbour_s += bytes / (*degree).max(1) as f64;
        total.packets_per_node_s += delta("packets_tx") / seconds;
        let wire = |view: &StatusView| view.links.get("link_udp_tx_bytes").copied().unwrap_or(0);
        total.wire_bytes_per_node_s += wire(new).saturating_sub(wire(old)) as f64 / seconds;
    }
    let count = before.len().max(1) as f64;
    Ok(Traffic {
        bytes_per_node_s: total.bytes_per_node_s / count,
        bytes_per_neighbour_s: total.bytes_per_neighbour_s / count,
        packets_per_node_s: total.packets_per_node_s / count,
        wire_bytes_per_node_s: total.wire_bytes_per_node_s / count,
    })
}

/// What happened after the relay was killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reroute {
    /// Node 1's new next hop (position), if it switched before the deadline.
    pub new_next_hop: Option<usize>,
    /// Kill to next-hop change by node 1's own record, in ms.
    pub reroute_ms: Option<u64>,
    /// Kill to first observation by polling, in ms.
    pub observed_ms: Option<u64>,
}

/// Kills `relay` with SIGKILL and waits up to `timeout` for `source`'s route towards
/// `destination` to use another next hop.
pub fn kill_and_watch(
    net: &mut LocalNet,
    source: usize,
    destination: usize,
    relay: usize,
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
) -> Result<Reroute, LocalNetError> {
    let destination_id = net.node(destination).id;
    let relay_id = net.node(relay).id;
    // Taken right before the kill, so both measurements include the whole outage.
    let kill_unix_ms = unix_now_ms();
    let killed_at = Instant::now();
    net.kill(relay)?;
    let deadline = killed_at + timeout;
    while Instant::now() < deadline && !interrupted() {
        let routes = net.node(source).client.routes()?;
        let current = routes
            .iter()
            .find(|route| route.destination == destination_id);
        if let Some(route) = current.filter(|route| route.next_hop != relay_id) {
            let observed_ms = millis(killed_at.elapsed());
            // The node's record is the precise one; if it predates the kill (the route
            // changed just before it) fall back to the polling bound.
            let recorded = route
                .changed_at_unix_ms
                .checked_sub(kill_unix_ms)
                .filter(|ms| *ms <= observed_ms);
            return Ok(Reroute {
                new_next_hop: net.position_of(&route.next_hop),
                reroute_ms: Some(recorded.unwrap_or(observed_ms)),
                observed_ms: Some(observed_ms),
            });
        }
        std::thread::sleep(REROUTE_POLL_INTERVAL);
    }
    Ok(Reroute {
        new_next_hop: None,
        reroute_ms: None,
        observed_ms: None,
    })
}

/// Walks next hops from `source` to `destination` until a complete path appears, or
/// `timeout` passes (other nodes on the new path may still be switching).
pub fn settled_path(
    net: &LocalNet,
    source: usize,
    destination: usize,
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
) -> Result<Option<Vec<usize>>, LocalNetError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(path) = net.walk(source, destination)? {
            return Ok(Some(path));
        }
        if Instant::now() >= deadline || interrupted() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long the routing tables must go without any next-hop change to count as settled.
/// One second spans several probe intervals and a full OGM interval.
pub const QUIET_PERIOD: Duration = Duration::from_secs(1);

/// The mesh's routing tables at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TableState {
    /// Every node has a route to every other.
    pub complete: bool,
    /// Time since the most recent next-hop change anywhere.
    pub quiet: Duration,
    /// Share of routes whose hop count is the topology's shortest distance, in percent.
    pub shortest_path_pct: f64,
}

/// Reads every node's routing table.
pub fn table_state(net: &LocalNet, topology: &Topology) -> Result<TableState, LocalNetError> {
    let (mut routes_total, mut on_shortest, mut complete) = (0usize, 0usize, true);
    let mut quiet_ms = u64::MAX;
    for (position, node) in net.nodes().iter().enumerate() {
        let distances = topology.distances(position, None);
        let routes = node.client.routes()?;
        let mut reached = 0;
        for route in &routes {
            let Some(destination) = net.position_of(&route.destination) else {
                continue;
            };
            reached += 1;
            routes_total += 1;
            on_shortest += usize::from(distances[destination] == Some(usize::from(route.hops)));
            quiet_ms = quiet_ms.min(route.changed_ms_ago);
        }
        complete &= reached + 1 >= topology.count;
    }
    Ok(TableState {
        complete,
        quiet: Duration::from_millis(if routes_total == 0 { 0 } else { quiet_ms }),
        shortest_path_pct: 100.0 * on_shortest as f64 / routes_total.max(1) as f64,
    })
}

/// Waits until the tables are complete and no next hop changed for [`QUIET_PERIOD`]. Returns
/// when the last change happened and the state then, or `None` after `timeout`.
pub fn wait_settled(
    net: &LocalNet,
    topology: &Topology,
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
) -> Result<Option<(Instant, TableState)>, LocalNetError> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = table_state(net, topology)?;
        if state.complete && state.quiet >= QUIET_PERIOD {
            let last_change = Instant::now()
                .checked_sub(state.quiet)
                .unwrap_or_else(Instant::now);
            return Ok(Some((last_change, state)));
        }
        if Instant::now() >= deadline || interrupted() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Now, as Unix milliseconds.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// Whole milliseconds of `duration`.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
