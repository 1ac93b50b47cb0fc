//! Bad configuration, bad peer lists and bad flags: each is named in one line on stderr and
//! makes the command exit non-zero, without creating anything.

use crate::support::{one_line_failure, run, stderr, write};

fn config_dir(yaml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "node.yaml", yaml);
    (dir, path.display().to_string())
}

#[test]
fn unknown_field_in_node_yaml_is_named() {
    let (dir, config) =
        config_dir("node_config:\n  network:\n    listen: '127.0.0.1:0'\n    bogus_field: 1\n");
    for command in ["init", "run"] {
        let line = one_line_failure(&run(&[command, "--config", &config]));
        assert!(
            line.contains("node_config.network.bogus_field") && line.contains("unknown field"),
            "{command}: {line}"
        );
    }
    assert!(!dir.path().join("data").exists(), "nothing created");
}

#[test]
fn invalid_values_in_node_yaml_are_named() {
    let cases = [
        (
            "node_config:\n  network: { listen: 'nowhere' }\n",
            "node_config.network.listen",
        ),
        (
            "node_config:\n  routing: { probe_miss_limit: 0 }\n",
            "node_config.routing.probe_miss_limit",
        ),
        (
            "node_config:\n  routing: { hop_penalty: -1 }\n",
            "node_config.routing.hop_penalty",
        ),
        (
            "node_config:\n  api: { listen: '0.0.0.0:7401' }\n",
            "node_config.api.listen",
        ),
    ];
    for (yaml, field) in cases {
        let (dir, config) = config_dir(yaml);
        let line = one_line_failure(&run(&["init", "--config", &config]));
        assert!(line.contains(field), "for {yaml:?}: {line}");
        assert!(!dir.path().join("data").exists());
    }
}

#[test]
fn bad_nodes_json_is_named_by_entry_and_field() {
    let (dir, config) = config_dir("node_config:\n  network: { listen: '127.0.0.1:0' }\n");
    let peers = write(
        dir.path(),
        "nodes.json",
        r#"[{"address": "127.0.0.1:7402"}, {"address": "127.0.0.1"}]"#,
    );
    let line = one_line_failure(&run(&[
        "init",
        "--config",
        &config,
        "--bootstrap",
        &peers.display().to_string(),
    ]));
    assert!(
        line.contains("nodes.json") && line.contains("[1].address"),
        "{line}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a rejected peer list creates nothing"
    );

    // The same list named in node.yaml stops `run` as well.
    let (dir, config) = config_dir(
        "node_config:\n  network: { listen: '127.0.0.1:0', bootstrap: nodes.json }\n  api: { listen: '127.0.0.1:0' }\n",
    );
    write(
        dir.path(),
        "nodes.json",
        r#"[{"address": "127.0.0.1:7402", "nodeid": "x"}]"#,
    );
    assert!(run(&["init", "--config", &config]).status.success());
    let line = one_line_failure(&run(&["run", "--config", &config]));
    assert!(
        line.contains("[0].nodeid") && line.contains("unknown field"),
        "{line}"
    );
}

#[test]
fn run_before_init_says_what_to_do() {
    let (_dir, config) = config_dir("node_config:\n  network: { listen: '127.0.0.1:0' }\n");
    let line = one_line_failure(&run(&["run", "--config", &config]));
    assert!(
        line.contains("no node key") && line.contains("x0tta6bl4 init --config"),
        "{line}"
    );
}

#[test]
fn unknown_flags_print_usage_and_fail() {
    for args in [
        &["run", "--frobnicate"][..],
        &["--frobnicate"],
        &["ctl", "status", "--colour"],
        &["teleport"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let text = stderr(&output);
        assert!(
            text.contains("Usage:") && text.contains(args[args.len() - 1]),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn out_of_range_flag_values_are_refused() {
    for (args, expected) in [
        (&["demo", "--nodes", "2"][..], "2 is not in 4..=64"),
        (
            &["demo", "--topology", "star"],
            "possible values: line, ring, grid, random",
        ),
        (&["demo", "--measure-s", "0"], "0 is not in 1..=60"),
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let text = stderr(&output);
        assert!(
            text.contains("invalid value") && text.contains(expected),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn init_prints_the_node_id_and_keeps_it() {
    let (dir, config) = config_dir("node_config: {}\n");
    let first = run(&["init", "--config", &config]);
    assert!(first.status.success(), "{}", stderr(&first));
    let id = String::from_utf8_lossy(&first.stdout).trim().to_string();
    assert!(
        id.parse::<wire::NodeId>().is_ok(),
        "stdout is the node id: {id:?}"
    );
    let second = run(&["init", "--config", &config]);
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        id,
        "init again keeps the identity"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(mode(&dir.path().join("data/node.key")), 0o600);
}
