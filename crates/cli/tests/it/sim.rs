//! `x0tta6bl4 sim` through the binary: the report is printed, flags are checked, and the same
//! arguments give the same report.

use crate::support::{one_line_failure, run, stderr};

fn report(args: &[&str]) -> serde_json::Value {
    let output = run(args);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let mut report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    report
        .as_object_mut()
        .unwrap()
        .remove("wall_ms")
        .expect("wall_ms is reported");
    report
}

#[test]
fn sim_prints_a_reproducible_json_report() {
    let args = [
        "sim",
        "--nodes",
        "30",
        "--topology",
        "ring",
        "--fail",
        "0.1",
        "--seed",
        "7",
        "--json",
    ];
    let first = report(&args);
    assert_eq!(first["nodes"], 30);
    assert_eq!(first["seed"], 7);
    assert_eq!(first["unreachable_pairs_after"], 0);
    assert_eq!(first, report(&args), "same arguments, same report");
}

#[test]
fn sim_rejects_bad_flags_in_one_line() {
    let line = one_line_failure(&run(&["sim", "--nodes", "1"]));
    assert!(line.contains("--nodes"), "{line}");
}

#[test]
fn sim_crdt_prints_a_reproducible_json_report_and_fails_when_the_change_cannot_spread() {
    let args = [
        "sim", "--crdt", "--nodes", "30", "--loss", "0.05", "--seed", "3", "--json",
    ];
    let first = report(&args);
    assert_eq!(first["mode"], "crdt");
    assert_eq!(first["nodes_reached"], 30);
    assert_eq!(first["bytes_per_node"].as_array().unwrap().len(), 30);
    assert!(first["converged_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(first, report(&args), "same arguments, same report");
    // The run ends before the partition heals: half the mesh never gets the change.
    let output = run(&[
        "sim",
        "--crdt",
        "--nodes",
        "30",
        "--partition-s",
        "5",
        "--duration-s",
        "4",
        "--json",
    ]);
    assert!(!output.status.success(), "an unconverged run fails");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(report["nodes_reached"].as_u64().unwrap() < 30);
    assert!(report["converged_ms"].is_null());
}
