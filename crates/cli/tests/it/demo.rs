//! `x0tta6bl4 demo` end to end: the summary, the exit code, and that no node outlives it.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{ChildGuard, any_process_mentions, binary, run, stderr};

#[test]
fn demo_heals_a_ring_and_reports_one_json_object() {
    let output = run(&["demo", "--nodes", "4", "--json", "--measure-s", "1"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {}\n{}",
        stdout,
        stderr(&output)
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["healed"], true);
    assert_eq!(summary["nodes"], 4);
    assert_eq!(summary["topology"], "ring");
    assert_eq!(summary["destination"], 3, "the node opposite node 1");
    let relay = summary["relay"].as_u64().unwrap();
    assert!(
        relay == 2 || relay == 4,
        "relay is a neighbour of node 1: {relay}"
    );
    assert_eq!(summary["path_after"], serde_json::json!([1, 6 - relay, 3]));
    let reroute_ms = summary["reroute_ms"].as_u64().unwrap();
    assert!(
        reroute_ms <= summary["reroute_observed_ms"].as_u64().unwrap(),
        "the node's record is within the polling bound"
    );
    assert!(summary["converged_ms"].as_u64().is_some());
    assert!(summary["control_bytes_per_node_s"].as_f64().unwrap() > 0.0);
    assert!(
        summary["dir"].is_null(),
        "a healed run cleans up its directories"
    );
    let service = &summary["healing"][0];
    assert_eq!(service["act"], "service_crash", "{summary:#}");
    assert_eq!(service["incident_type"], "SERVICE_DOWN", "{summary:#}");
    assert_eq!(service["root_cause_is_target"], true, "{summary:#}");
    assert_eq!(service["plan_succeeded"], true, "{summary:#}");
    assert!(service["mttr_ms"].as_u64() >= service["mttd_ms"].as_u64());
    let relay_act = &summary["healing"][1];
    assert_eq!(relay_act["act"], "relay_failure", "{summary:#}");
    assert_eq!(relay_act["target"], relay);
    assert_eq!(relay_act["incident_type"], "NODE_FAILURE", "{summary:#}");
    assert_eq!(relay_act["root_cause_is_target"], true, "{summary:#}");
    assert!(relay_act["mttd_ms"].as_u64().is_some(), "{summary:#}");
}

#[test]
fn demo_on_a_line_reports_that_it_cannot_heal() {
    let output = run(&[
        "demo",
        "--nodes",
        "4",
        "--topology",
        "line",
        "--json",
        "--measure-s",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        stderr(&output)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["healed"], false);
    assert_eq!(summary["reroute_possible"], false);
    assert_eq!(summary["relay"], 2);
    assert!(
        summary["reason"]
            .as_str()
            .unwrap()
            .contains("runs through node 2"),
        "{summary}"
    );
    let dir = summary["dir"].as_str().expect("logs kept when not healed");
    assert!(
        !any_process_mentions(dir),
        "no node of the demo is left running"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ctrl_c_stops_the_demo_and_all_its_nodes() {
    let child = Command::new(binary())
        .args(["demo", "--nodes", "4", "--measure-s", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut demo = ChildGuard(child);
    // The first progress line names the mesh directory; wait for the traffic measurement,
    // when every node is up, then interrupt.
    let mut stderr = std::io::BufReader::new(demo.0.stderr.take().unwrap());
    let mut dir = None;
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0 {
        if let Some(rest) = line.split("configs and logs in ").nth(1) {
            dir = Some(rest.trim().to_string());
        }
        if line.contains("measuring idle control traffic") {
            break;
        }
        line.clear();
    }
    let dir = dir.expect("the demo names its directory");
    assert!(any_process_mentions(&dir), "nodes run before the interrupt");
    demo.signal(libc::SIGINT);
    let status = demo
        .wait_exit(Duration::from_secs(15))
        .expect("the demo exits after SIGINT");
    assert_eq!(status.code(), Some(130));
    assert!(!any_process_mentions(&dir), "every node was stopped");
    assert!(
        !std::path::Path::new(&dir).exists(),
        "the mesh directory was removed"
    );
}

/// Kills the processes a `--keep` demo left running, even if the test fails.
struct KeptNodes(Vec<i32>);

impl Drop for KeptNodes {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: kill(2) only sends a signal; the pids come from the demo's own report.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn keep_leaves_a_working_mesh_behind() {
    let output = run(&[
        "demo",
        "--nodes",
        "4",
        "--keep",
        "--json",
        "--measure-s",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("{error}: {stdout}\n{}", stderr(&output)));
    let pids: Vec<i32> = summary["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pid| pid.as_i64().unwrap() as i32)
        .collect();
    let _kept = KeptNodes(pids.clone());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(pids.len(), 4);
    let urls: Vec<String> = summary["api_urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|url| url.as_str().unwrap().to_string())
        .collect();
    for url in &urls {
        let client = cli::client::ApiClient::new(url, Duration::from_secs(2)).unwrap();
        assert_eq!(
            client.routes().unwrap().len(),
            3,
            "{url} still routes to the other three nodes"
        );
    }
    let dir = summary["dir"].as_str().unwrap().to_string();
    assert!(any_process_mentions(&dir));
    drop(_kept);
    crate::support::eventually("the kept nodes to be gone", Duration::from_secs(10), || {
        (!any_process_mentions(&dir)).then_some(())
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
