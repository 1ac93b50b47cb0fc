//! Same arguments, same output: byte for byte, except the wall-clock time.

use sim::cli::SimArgs;

/// Renders a run's JSON with `wall_ms` blanked; failed runs are compared just the same.
fn json_without_wall_time(args: &SimArgs) -> String {
    let output = match sim::cli::run(args) {
        Ok(output) => output,
        Err(error) => error
            .report_output()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{error}")),
    };
    let mut value: serde_json::Value =
        serde_json::from_str(&output).expect("--json prints one JSON object");
    assert!(value["wall_ms"].is_u64(), "wall_ms is reported");
    value["wall_ms"] = serde_json::Value::Null;
    value.to_string()
}

#[test]
fn same_arguments_give_byte_identical_json() {
    let args = SimArgs {
        nodes: 30,
        loss: 0.02,
        duration_s: 8.0,
        json: true,
        ..SimArgs::default()
    };
    let first = json_without_wall_time(&args);
    let second = json_without_wall_time(&args);
    assert_eq!(first, second);
    let other_seed = json_without_wall_time(&SimArgs {
        seed: 2,
        ..args.clone()
    });
    assert_ne!(first, other_seed, "the seed changes the run");
}

#[test]
fn json_has_the_documented_fields() {
    let args = SimArgs {
        nodes: 12,
        duration_s: 6.0,
        json: true,
        ..SimArgs::default()
    };
    let output = sim::cli::run(&args)
        .unwrap_or_else(|e| e.report_output().map(str::to_string).unwrap_or_default());
    assert_eq!(output.lines().count(), 1, "one object on one line");
    let value: serde_json::Value = serde_json::from_str(&output).expect("valid JSON");
    for field in [
        "nodes",
        "seed",
        "topology",
        "converged_s",
        "failed_nodes",
        "recovered_s",
        "unreachable_pairs_after",
        "control_bytes_per_node_s",
        "control_bytes_per_node_neighbour_s",
        "events",
        "invariant_violations",
        "wall_ms",
    ] {
        assert!(value.get(field).is_some(), "missing {field}");
    }
    assert_eq!(value["nodes"], 12);
    assert_eq!(value["topology"], "random");
    assert_eq!(value["header_bytes_per_packet"], 48);
}

#[test]
fn bad_arguments_name_their_flag() {
    let cases: Vec<(SimArgs, &str)> = vec![
        (
            SimArgs {
                nodes: 1,
                ..SimArgs::default()
            },
            "--nodes",
        ),
        (
            SimArgs {
                loss: 1.0,
                ..SimArgs::default()
            },
            "--loss",
        ),
        (
            SimArgs {
                fail: -0.5,
                ..SimArgs::default()
            },
            "--fail",
        ),
        (
            SimArgs {
                latency_ms: f64::NAN,
                ..SimArgs::default()
            },
            "--latency-ms",
        ),
        (
            SimArgs {
                duration_s: 0.0,
                ..SimArgs::default()
            },
            "--duration-s",
        ),
    ];
    for (args, flag) in cases {
        let error = sim::cli::run(&args).expect_err(flag);
        assert!(error.to_string().starts_with(flag), "{flag}: {error}");
        assert!(
            error.report_output().is_none(),
            "{flag}: nothing ran, nothing to print"
        );
    }
}

#[test]
fn clap_defaults_match_sim_args_default() {
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: SimArgs,
    }
    let parsed = Command::try_parse_from(["sim"])
        .expect("no flags parse")
        .args;
    assert_eq!(parsed, SimArgs::default());
    let parsed = Command::try_parse_from([
        "sim",
        "--nodes",
        "7",
        "--topology",
        "grid",
        "--no-fisheye",
        "--json",
    ])
    .expect("flags parse")
    .args;
    assert_eq!(
        (
            parsed.nodes,
            parsed.topology,
            parsed.no_fisheye,
            parsed.json
        ),
        (7, sim::TopologyKind::Grid, true, true)
    );
    assert!(Command::try_parse_from(["sim", "--topology", "star"]).is_err());
}

#[test]
fn signed_runs_are_reproducible_refuse_nothing_and_send_the_same_packets() {
    let unsigned_args = SimArgs {
        nodes: 30,
        loss: 0.02,
        duration_s: 8.0,
        json: true,
        ..SimArgs::default()
    };
    let signed_args = SimArgs {
        sign_ogms: true,
        ..unsigned_args.clone()
    };
    let signed = json_without_wall_time(&signed_args);
    assert_eq!(signed, json_without_wall_time(&signed_args));
    let signed: serde_json::Value = serde_json::from_str(&signed).expect("JSON");
    let unsigned: serde_json::Value =
        serde_json::from_str(&json_without_wall_time(&unsigned_args)).expect("JSON");
    assert_eq!(signed["sign_ogms"], true);
    assert_eq!(unsigned["sign_ogms"], false);
    assert!(signed["ogm_signatures_verified"].as_u64() > Some(0));
    assert_eq!(unsigned["ogm_signatures_verified"], 0);
    assert_eq!(
        signed["dropped_unauthenticated_ogms"], 0,
        "every node's key is known, so nothing is refused"
    );
    assert_eq!(signed["unreachable_pairs_after"], 0);
    assert!(signed["recovered_s"].is_f64(), "the signed mesh recovers");
    // The signature field is on the wire either way, signing draws no randomness, and a
    // retraction's number (the only one a signed router may change) moves nothing at the
    // receiver: the routers behave identically, packet for packet.
    for field in ["bytes_sent", "packets_sent", "converged_s", "recovered_s"] {
        assert_eq!(signed[field], unsigned[field], "{field}");
    }
}
