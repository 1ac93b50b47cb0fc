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
