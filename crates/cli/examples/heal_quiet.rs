//! Benchmark: false incidents of the healing loop on a healthy mesh. Starts a 6-node ring of
//! real node processes on loopback, sends steady datagram traffic between every pair of
//! nodes through the mesh for the given minutes, and counts the incidents every node opened.
//! On a healthy mesh every incident is a false one. Run through `bench/heal-quiet`.
//!
//! Prints one JSON object: minutes, datagrams sent, incidents per type, each incident's
//! node, type and root cause, and the host's load during the run (from /proc: load
//! averages, CPU busy share per second, and the longest run of seconds at or above 90 %
//! busy), so a CPU_OVERLOAD incident can be told from a false one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli::demo::topology::{Shape, Topology};
use cli::localnet::{LocalNet, LocalNetOptions};

fn binary() -> PathBuf {
    let here = std::env::current_exe().expect("own path");
    // target/<profile>/examples/heal_quiet -> target/<profile>/x0tta6bl4
    let dir = here.parent().and_then(Path::parent).expect("target dir");
    dir.join("x0tta6bl4")
}

/// Busy and total jiffies of all CPUs, from the first line of /proc/stat.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Per-second host CPU busy shares.
#[derive(Default)]
struct HostLoad {
    last: Option<(u64, u64)>,
    seconds: Vec<f64>,
}

impl HostLoad {
    fn sample(&mut self) {
        let Some(now) = cpu_jiffies() else {
            return;
        };
        if let Some((busy, total)) = self.last
            && now.1 > total
        {
            self.seconds
                .push(100.0 * (now.0 - busy) as f64 / (now.1 - total) as f64);
        }
        self.last = Some(now);
    }

    fn summary(&self, start_load: &str) -> serde_json::Value {
        let n = self.seconds.len().max(1) as f64;
        let mean = self.seconds.iter().sum::<f64>() / n;
        let at_90 = self.seconds.iter().filter(|s| **s >= 90.0).count();
        let mut longest = 0usize;
        let mut run = 0usize;
        for busy in &self.seconds {
            run = if *busy >= 90.0 { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        serde_json::json!({
            "load_average_start": start_load,
            "load_average_end": load_average(),
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "cpu_busy_mean_percent": (mean * 10.0).round() / 10.0,
            "seconds_at_or_above_90_percent": at_90,
            "longest_run_at_or_above_90_percent_s": longest,
            "seconds_sampled": self.seconds.len(),
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: u64| -> u64 {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|index| args.get(index + 1))
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let minutes = value("--minutes", 10);
    let nodes = value("--nodes", 6) as usize;
    let per_second = value("--rate", 20);
    let never = || false;
    let topology = Topology::build(Shape::Ring, nodes, 1);
    let mut net = LocalNet::create(
        &binary(),
        nodes,
        &topology.edges,
        &LocalNetOptions::default(),
    )
    .expect("mesh created");
    net.start_all().expect("nodes started");
    net.wait_healthy(Duration::from_secs(30), &never)
        .expect("APIs answer");
    net.wait_converged(Duration::from_secs(60), &never)
        .expect("mesh converged");
    eprintln!(
        "{nodes}-node ring converged; {per_second} datagrams/s for {minutes} min (logs in {})",
        net.root().display()
    );
    let ids: Vec<wire::NodeId> = net.nodes().iter().map(|n| n.id).collect();
    let start_load = load_average();
    let mut host = HostLoad::default();
    host.sample();
    let mut next_host_sample = Instant::now() + Duration::from_secs(1);
    let started = Instant::now();
    let run_for = Duration::from_secs(minutes * 60);
    let mut sent = 0u64;
    let mut failed = 0u64;
    let gap = Duration::from_micros(1_000_000 / per_second.max(1));
    let mut next = Instant::now();
    let mut pair = 0usize;
    while started.elapsed() < run_for {
        let from = pair % nodes;
        let to = (pair / nodes + 1 + from) % nodes;
        pair = (pair + 1) % (nodes * nodes);
        if from != to {
            match net
                .node(from)
                .client
                .send_datagram(&ids[to], 9, b"steady traffic")
            {
                Ok(_) => sent += 1,
                Err(_) => failed += 1,
            }
        }
        if Instant::now() >= next_host_sample {
            host.sample();
            next_host_sample += Duration::from_secs(1);
        }
        next += gap;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if started.elapsed().as_secs().is_multiple_of(60) && pair == 0 {
            eprintln!("{} s: {sent} datagrams sent", started.elapsed().as_secs());
        }
    }
    let mut incidents = Vec::new();
    let mut by_type = std::collections::BTreeMap::<String, u64>::new();
    for node in net.nodes() {
        let records = node.client.incidents("limit=1000").unwrap_or_default();
        for record in records {
            let kind = record["kind"].as_str().unwrap_or("?").to_string();
            *by_type.entry(kind.clone()).or_default() += 1;
            incidents.push(serde_json::json!({
                "node": node.index,
                "kind": kind,
                "root_cause": record["root_cause"],
                "detail": record["incident"]["evidence"][0]["detail"],
                "state": record["state"],
            }));
        }
    }
    let summary = serde_json::json!({
        "nodes": nodes,
        "minutes": minutes,
        "datagrams_sent": sent,
        "datagrams_refused": failed,
        "false_incidents": incidents.len(),
        "by_type": by_type,
        "host": host.summary(&start_load),
        "incidents": incidents,
    });
    println!("{summary}");
}
