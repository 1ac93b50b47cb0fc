//! `Summary`: what the demo measured, as one JSON object (`--json`) or as a short text.

use serde::Serialize;

use super::topology::Shape;
use crate::render::format_duration_ms;

/// The demo's results. Node numbers are 1-based, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Number of nodes.
    pub nodes: usize,
    /// The topology.
    pub topology: Shape,
    /// Seed of the random topology (absent for the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Number of links.
    pub links: usize,
    /// From starting the processes until every node forwarded to every other along a working
    /// path, checked by walking next hops through the tables (polled every ~20 ms, and
    /// narrowed to the last route change when the tables then stayed unchanged).
    pub converged_ms: u64,
    /// From starting the processes until the last next-hop change before the tables stayed
    /// unchanged for a second (absent if they kept changing until the settling timeout).
    pub settled_ms: Option<u64>,
    /// When settled: the share of routes whose hop count is the shortest possible, in percent
    /// (the metric weighs link quality, so 100 is not required).
    pub shortest_path_pct: Option<f64>,
    /// The node whose route is watched (node 1).
    pub source: usize,
    /// The destination watched: the node farthest from node 1.
    pub destination: usize,
    /// The node killed: node 1's next hop towards `destination` (absent if they are neighbours).
    pub relay: Option<usize>,
    /// Path from source to destination before the kill, by walking next hops.
    pub path_before: Vec<usize>,
    /// Whether the topology has a path from source to destination without the relay.
    pub reroute_possible: bool,
    /// Whether node 1 switched to a next hop other than the dead relay.
    pub rerouted: bool,
    /// From just before SIGKILL to the moment node 1 changed its next hop, by node 1's own
    /// record of the change (`changed_at_unix_ms` in its API).
    pub reroute_ms: Option<u64>,
    /// From just before SIGKILL until polling node 1's API (every ~5 ms) first showed the new
    /// next hop: an upper bound that cross-checks `reroute_ms`.
    pub reroute_observed_ms: Option<u64>,
    /// Node 1's next hop towards the destination after the reroute.
    pub new_next_hop: Option<usize>,
    /// Path after the reroute, by walking next hops through the live nodes.
    pub path_after: Option<Vec<usize>>,
    /// Whether the restarted relay came back with the same node id.
    pub relay_same_identity: Option<bool>,
    /// From restarting the relay until every node again forwarded to every other.
    pub reconverged_ms: Option<u64>,
    /// Idle control traffic sent per node per second (UDP payload bytes), averaged over nodes.
    pub control_bytes_per_node_s: f64,
    /// The same divided by each node's number of neighbours, averaged.
    pub control_bytes_per_neighbour_s: f64,
    /// Idle control packets sent per node per second.
    pub control_packets_per_node_s: f64,
    /// Idle UDP bytes on the wire per node per second (QUIC overhead included).
    pub control_wire_bytes_per_node_s: f64,
    /// Length of the idle window the traffic was measured over.
    pub measure_window_s: f64,
    /// The mesh routed around the dead relay and reconverged after its restart.
    pub healed: bool,
    /// Why the mesh did not heal, if it did not.
    pub reason: Option<String>,
    /// Each node's API URL, when the mesh is left running (`--keep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_urls: Option<Vec<String>>,
    /// Each node's process id, when the mesh is left running (`--keep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Vec<u32>>,
    /// Where the nodes' configurations, data and logs are, when kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The key-value act (absent when the mesh did not heal).
    pub kv: Option<super::kvact::KvSummary>,
    /// The healing acts: the supervised service's crash and the relay's failure, each with
    /// its incident, root cause, MTTD and MTTR.
    pub healing: Vec<super::healing::HealingAct>,
}

fn path_text(path: &[usize]) -> String {
    path.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" → ")
}

impl Summary {
    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let mut lines = vec!["summary".to_string()];
        let mut row = |name: &str, value: String| lines.push(format!("  {name:<13} {value}"));
        let seed = self
            .seed
            .map(|seed| format!(", seed {seed}"))
            .unwrap_or_default();
        row(
            "topology",
            format!(
                "{} of {} nodes, {} links{seed}",
                self.topology.name(),
                self.nodes,
                self.links
            ),
        );
        row(
            "converged",
            format!(
                "{} after start (every node forwards to every other)",
                format_duration_ms(self.converged_ms)
            ),
        );
        if let (Some(ms), Some(pct)) = (self.settled_ms, self.shortest_path_pct) {
            row(
                "settled",
                format!(
                    "{} after start (no route change since); {pct:.0}% of routes on shortest paths",
                    format_duration_ms(ms)
                ),
            );
        }
        match self.relay {
            Some(relay) => row(
                "relay killed",
                format!(
                    "node {relay} (on node {}'s path {} to node {}), with SIGKILL",
                    self.source,
                    path_text(&self.path_before),
                    self.destination
                ),
            ),
            None => row("relay killed", "none".to_string()),
        }
        match (self.reroute_ms, self.new_next_hop) {
            (Some(ms), Some(hop)) => {
                let observed = self
                    .reroute_observed_ms
                    .map(|ms| format!("; polling saw it after {ms} ms"))
                    .unwrap_or_default();
                row(
                    "rerouted",
                    format!(
                        "in {ms} ms: node {} now forwards via node {hop}{observed}",
                        self.source
                    ),
                );
            }
            _ => row("rerouted", "no".to_string()),
        }
        if let Some(path) = &self.path_after {
            row("path after", path_text(path));
        }
        if let Some(ms) = self.reconverged_ms {
            let identity = match self.relay_same_identity {
                Some(true) => " (same node id)",
                Some(false) => " (with a different node id!)",
                None => "",
            };
            let relay = self
                .relay
                .map(|relay| format!("node {relay}"))
                .unwrap_or_default();
            row(
                "reconverged",
                format!(
                    "{} after {relay} restarted{identity}",
                    format_duration_ms(ms)
                ),
            );
        }
        for act in &self.healing {
            row("healing", super::healing::text(act));
        }
        row(
            "control",
            format!(
                "{:.0} B/s per node, {:.0} B/s per neighbour, {:.1} packets/s per node (routing payload, idle, {:.1} s window); {:.0} B/s per node on the wire (link channel and QUIC, all headers)",
                self.control_bytes_per_node_s,
                self.control_bytes_per_neighbour_s,
                self.control_packets_per_node_s,
                self.measure_window_s,
                self.control_wire_bytes_per_node_s
            ),
        );
        if let Some(kv) = &self.kv {
            let voters = kv
                .voters
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            row(
                "kv",
                format!(
                    "voters nodes {voters}; written via node {}, read via node {}: {}",
                    kv.written_via,
                    kv.read_via,
                    if kv.read_matches {
                        "same value"
                    } else {
                        "MISMATCH"
                    }
                ),
            );
            if let (Some(killed), Some(gap), Some(first)) = (
                kv.leader_killed,
                kv.write_unavailable_ms,
                kv.kill_to_first_write_ms,
            ) {
                row(
                    "kv failover",
                    format!(
                        "leader node {killed} killed; writes unavailable for {gap} ms (first write {first} ms after the kill); new leader node {}",
                        kv.new_leader.map_or("?".to_string(), |l| l.to_string())
                    ),
                );
            }
            row(
                "kv durable",
                format!(
                    "key survived: {}; {} acknowledged writes, {} lost{}",
                    if kv.key_survived { "yes" } else { "no" },
                    kv.writes_acknowledged,
                    kv.writes_lost,
                    kv.reason
                        .as_ref()
                        .map(|r| format!("; FAILED: {r}"))
                        .unwrap_or_default()
                ),
            );
        }
        row(
            "healed",
            if self.healed {
                "yes".to_string()
            } else {
                format!("no: {}", self.reason.as_deref().unwrap_or("unknown"))
            },
        );
        lines.join("\n")
    }
}
