//! Benchmark: detector quality of the healing loop on labelled faults. Starts a 6-node ring of
//! real node processes on loopback (each supervising a `sleep` service restarted only by its
//! healing loop), then injects faults in turn and keeps the injector's labels:
//!
//! - `service_crash` on node k: its service is SIGKILLed (the loop restarts it);
//! - `node_failure` on node k: the node is SIGKILLed, left dead for `--down` seconds, restarted.
//!
//! Afterwards it reads every node's incidents and scores them against the labels:
//! an incident is a true positive when its type and root cause name a fault active when it
//! was detected (`SERVICE_DOWN` of that service on that node; `NODE_FAILURE` blaming that
//! node); recall is the share of faults with at least one true positive; precision is true
//! positives over all incidents opened during the run. Incidents on a link to a dead node
//! (`LINK_DEGRADED`) are right about the symptom but not the root cause: they count against
//! precision and are listed as `link_to_faulty_node`. Run through `bench/heal-quality`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cli::demo::measure::unix_now_ms;
use cli::demo::topology::{Shape, Topology};
use cli::localnet::{LocalNet, LocalNetOptions};
use serde_json::{Value, json};

fn binary() -> PathBuf {
    let here = std::env::current_exe().expect("own path");
    let dir = here.parent().and_then(Path::parent).expect("target dir");
    dir.join("x0tta6bl4")
}

const SERVICE: &str = "  services:\n    - name: svc\n      command: [sleep, \"86400\"]\n      restart: { policy: healer }\n";

struct Fault {
    kind: &'static str,
    node: usize,
    start_ms: u64,
    end_ms: u64,
}

fn service_pid(net: &LocalNet, node: usize) -> Option<u32> {
    net.node(node)
        .client
        .status()
        .ok()?
        .healing?
        .services
        .into_iter()
        .find(|s| s.name == "svc")?
        .pid
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
    let rounds = value("--rounds", 6) as usize;
    let down = Duration::from_secs(value("--down", 5));
    let gap = Duration::from_secs(value("--gap", 10));
    let nodes = 6;
    let never = || false;
    let topology = Topology::build(Shape::Ring, nodes, 1);
    let options = LocalNetOptions {
        extra_yaml: SERVICE.to_string(),
        ..LocalNetOptions::default()
    };
    let mut net = LocalNet::create(&binary(), nodes, &topology.edges, &options).expect("mesh");
    net.start_all().expect("started");
    net.wait_healthy(Duration::from_secs(30), &never)
        .expect("APIs");
    net.wait_converged(Duration::from_secs(60), &never)
        .expect("converged");
    std::thread::sleep(gap);
    let run_start = unix_now_ms();
    let mut faults = Vec::new();
    for round in 0..rounds {
        // Node 1 (the CA) is spared so that restarted nodes can always renew.
        let node = 1 + round % (nodes - 1);
        if round % 2 == 0 {
            let Some(pid) = service_pid(&net, node) else {
                eprintln!(
                    "round {round}: node {} has no service pid; skipped",
                    node + 1
                );
                continue;
            };
            let start_ms = unix_now_ms();
            // SAFETY: plain syscall on the service's pid, read from its node a moment ago.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            std::thread::sleep(down);
            faults.push(Fault {
                kind: "service_crash",
                node,
                start_ms,
                end_ms: unix_now_ms(),
            });
        } else {
            let start_ms = unix_now_ms();
            net.kill(node).expect("kill");
            std::thread::sleep(down);
            net.start(node).expect("restart");
            let _ = net.wait_healthy(Duration::from_secs(30), &never);
            faults.push(Fault {
                kind: "node_failure",
                node,
                start_ms,
                end_ms: unix_now_ms(),
            });
        }
        eprintln!(
            "round {round}: {} on node {}",
            faults.last().map_or("-", |f| f.kind),
            node + 1
        );
        std::thread::sleep(gap);
    }
    let ids: Vec<String> = net.nodes().iter().map(|n| n.id.to_string()).collect();
    let grace_ms = 15_000;
    let mut incidents: Vec<(usize, Value)> = Vec::new();
    for (position, node) in net.nodes().iter().enumerate() {
        for record in node.client.incidents("limit=1000").unwrap_or_default() {
            if record["detected_unix_ms"]
                .as_u64()
                .is_some_and(|t| t >= run_start)
            {
                incidents.push((position, record));
            }
        }
    }
    let matches = |fault: &Fault, position: usize, record: &Value| -> bool {
        let at = record["detected_unix_ms"].as_u64().unwrap_or(0);
        if at < fault.start_ms || at > fault.end_ms + grace_ms {
            return false;
        }
        match fault.kind {
            "service_crash" => {
                position == fault.node
                    && record["kind"] == "SERVICE_DOWN"
                    && record["root_cause"]["service"]["check"] == "svc"
            }
            _ => {
                record["kind"] == "NODE_FAILURE" && record["root_cause"]["node"] == ids[fault.node]
            }
        }
    };
    let mut true_positives = 0;
    let mut link_to_faulty = 0;
    let mut false_positives = Vec::new();
    for (position, record) in &incidents {
        if faults.iter().any(|f| matches(f, *position, record)) {
            true_positives += 1;
        } else {
            let to = record["root_cause"]["link"]["to"].as_str().unwrap_or("");
            let at = record["detected_unix_ms"].as_u64().unwrap_or(0);
            if faults.iter().any(|f| {
                f.kind == "node_failure"
                    && ids[f.node] == to
                    && at >= f.start_ms
                    && at <= f.end_ms + grace_ms
            }) {
                link_to_faulty += 1;
            }
            false_positives.push(json!({
                "node": position + 1,
                "kind": record["kind"],
                "root_cause": record["root_cause"],
                "detail": record["incident"]["evidence"][0]["detail"],
            }));
        }
    }
    let detected: Vec<Value> = faults
        .iter()
        .map(|f| {
            let hits: Vec<&(usize, Value)> = incidents
                .iter()
                .filter(|(p, r)| matches(f, *p, r))
                .collect();
            let mttd = hits
                .iter()
                .filter_map(|(_, r)| r["detected_unix_ms"].as_u64())
                .min()
                .map(|t| t.saturating_sub(f.start_ms));
            json!({
                "fault": f.kind,
                "node": f.node + 1,
                "detected": !hits.is_empty(),
                "mttd_ms": mttd,
                "incidents": hits.len(),
            })
        })
        .collect();
    let recalled = detected.iter().filter(|d| d["detected"] == true).count();
    let summary = json!({
        "faults": faults.len(),
        "incidents": incidents.len(),
        "true_positives": true_positives,
        "precision": if incidents.is_empty() { Value::Null } else { json!(true_positives as f64 / incidents.len() as f64) },
        "recall": if faults.is_empty() { Value::Null } else { json!(recalled as f64 / faults.len() as f64) },
        "link_to_faulty_node": link_to_faulty,
        "per_fault": detected,
        "not_matching": false_positives,
    });
    println!("{summary}");
}
