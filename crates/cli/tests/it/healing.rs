//! The healing loop's configuration and mesh view with real daemons on loopback: checks and
//! playbooks reloaded by `ctl heal reload` and by SIGHUP, an invalid set refused with its
//! file, line and reason while the node keeps the previous one; an incident opened on one
//! node listed by another from the replicated incident summaries, and its closing too.

use std::time::Duration;

use cli::localnet::{LocalNet, LocalNetOptions};

use crate::support::{binary, eventually, one_line_failure, run, stderr, write};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Node resources at 100 %: the machine running the tests may be busy, and true host
/// incidents are not what these tests are about.
const QUIET_HOST: &str = "  mapk:\n    thresholds: { cpu: 100, memory: 100, disk: 100 }\n    playbook_dirs: [playbooks]\n";
/// A check that passes.
const ALIVE: &str = "  checks:\n    - name: alive\n      args: [\"true\"]\n      interval: 500ms\n";
/// ALIVE plus one that always fails (a SERVICE_DOWN incident for `broken`).
const ALIVE_AND_BROKEN: &str = "  checks:\n    - name: alive\n      args: [\"true\"]\n      interval: 500ms\n    - name: broken\n      args: [\"false\"]\n      interval: 500ms\n      failure_threshold: 1\n";
/// An invalid check on the line after `checks:`'s first entry.
const BAD_CHECK: &str = "  checks:\n    - name: alive\n      args: [\"true\"]\n    - name: wrong\n      tcp: nonsense\n";
const GOOD_PLAYBOOK: &str = "recovery_plan:\n  id: note-it\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: run_command\n      params: {command: \"false\"}\n";
const BAD_PLAYBOOK: &str = "recovery_plan:\n  id: broken-plan\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: reboot_the_world\n";

fn ring(count: usize) -> Vec<(usize, usize)> {
    (0..count).map(|i| (i, (i + 1) % count)).collect()
}

/// A mesh whose node `position` has `checks`; every node has a `playbooks` directory.
fn mesh(count: usize, position: usize, checks: &str) -> LocalNet {
    let mut node_yaml = vec![String::new(); count];
    node_yaml[position] = checks.to_string();
    let options = LocalNetOptions {
        extra_yaml: QUIET_HOST.to_string(),
        node_yaml,
        ..LocalNetOptions::default()
    };
    let edges = if count > 2 { ring(count) } else { vec![(0, 1)] };
    let mut net = LocalNet::create(&binary(), count, &edges, &options).expect("mesh created");
    for node in net.nodes() {
        std::fs::create_dir_all(node.dir.join("playbooks")).expect("playbook dir");
    }
    net.start_all().expect("nodes start");
    net.wait_healthy(TIMEOUT, &|| false).expect("APIs answer");
    net
}

/// Replaces `from` by `to` in node `position`'s node.yaml.
fn edit_config(net: &LocalNet, position: usize, from: &str, to: &str) {
    let path = &net.node(position).config_path;
    let text = std::fs::read_to_string(path).expect("node.yaml read");
    assert!(text.contains(from), "node.yaml lacks {from:?}:\n{text}");
    std::fs::write(path, text.replacen(from, to, 1)).expect("node.yaml written");
}

fn ctl(net: &LocalNet, position: usize, args: &[&str]) -> std::process::Output {
    let url = net.node(position).api_url();
    let mut all = vec!["ctl"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--api", &url]);
    run(&all)
}

/// Incidents of node `position`'s database about check `check`.
fn incidents_about(net: &LocalNet, position: usize, check: &str) -> Vec<serde_json::Value> {
    net.node(position)
        .client
        .incidents("limit=100")
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["root_cause"]["service"]["check"] == check)
        .collect()
}

#[test]
fn checks_and_playbooks_reload_and_an_invalid_set_is_refused_with_file_line_and_reason() {
    let mut net = mesh(2, 0, ALIVE);
    let node = net.node(0);
    write(&node.dir.join("playbooks"), "note.yaml", GOOD_PLAYBOOK);

    // A valid new set: one more check, which fails, and one more playbook.
    edit_config(&net, 0, ALIVE, ALIVE_AND_BROKEN);
    let output = ctl(&net, 0, &["heal", "reload", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(outcome["checks"], 2, "{outcome}");
    assert_eq!(outcome["checks_changed"], serde_json::json!(["broken"]));
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks"))
        .expect("shipped playbooks")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    assert_eq!(outcome["playbooks"], shipped + 1, "{outcome}");
    let opened = eventually("an incident about the new check", TIMEOUT, || {
        incidents_about(&net, 0, "broken").into_iter().next()
    });
    assert_eq!(opened["kind"], "SERVICE_DOWN", "{opened:#}");
    // The new playbook is one of the plans tried for it.
    eventually("the reloaded playbook to be tried", TIMEOUT, || {
        incidents_about(&net, 0, "broken")
            .into_iter()
            .find(|r| r["incident"]["plans"].to_string().contains("note-it"))
    });

    // An invalid check: refused with node.yaml, its line and the reason.
    edit_config(&net, 0, ALIVE_AND_BROKEN, BAD_CHECK);
    let line = one_line_failure(&ctl(&net, 0, &["heal", "reload"]));
    let config_path = node.config_path.display().to_string();
    assert!(line.contains(&config_path), "{line}");
    assert!(line.contains("node_config.checks[1].tcp"), "{line}");
    assert!(
        line.contains("keeps its previous checks and playbooks"),
        "{line}"
    );
    let text = std::fs::read_to_string(&node.config_path).expect("read");
    let bad_line = text
        .lines()
        .position(|l| l.contains("- name: wrong"))
        .expect("bad entry")
        + 1;
    assert!(
        line.contains(&format!(":{bad_line}: ")),
        "line {bad_line}: {line}"
    );
    // An invalid playbook: refused with its file and line, through the API as 422.
    edit_config(&net, 0, BAD_CHECK, ALIVE_AND_BROKEN);
    write(&node.dir.join("playbooks"), "zz-bad.yaml", BAD_PLAYBOOK);
    let refused = node.client.reload_healing().expect_err("refused");
    let message = refused.to_string();
    assert!(message.contains("422"), "{message}");
    assert!(message.contains("zz-bad.yaml:5:"), "{message}");
    // The node kept the previous set: still two checks, `broken` still failing, still healthy.
    assert!(node.client.status().is_ok(), "the node still answers");
    let open = incidents_about(&net, 0, "broken");
    assert!(
        open.iter().any(|r| r["state"] != "resolved"),
        "the incident of the kept check is still open: {open:#?}"
    );

    // SIGHUP with a fixed playbook directory and without the failing check.
    std::fs::remove_file(node.dir.join("playbooks").join("zz-bad.yaml")).expect("removed");
    edit_config(&net, 0, ALIVE_AND_BROKEN, ALIVE);
    let pid = i32::try_from(node.pid().expect("running")).expect("pid");
    // SAFETY: kill(2) sends SIGHUP to the node process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let closed = eventually("the removed check's incident to close", TIMEOUT, || {
        incidents_about(&net, 0, "broken")
            .into_iter()
            .find(|r| r["state"] == "resolved")
    });
    assert!(
        closed["incident"]["notes"]
            .to_string()
            .contains("removed by a configuration reload"),
        "{closed:#}"
    );
    let log = std::fs::read_to_string(node.log_path()).expect("log");
    assert!(log.contains("healing reload refused"), "{log}");
    assert!(
        log.contains("healing checks and playbooks reloaded"),
        "{log}"
    );
    net.check_running().expect("the node never stopped");
    net.stop_all();
}

#[test]
fn an_incident_on_one_node_is_listed_by_another_from_the_replicated_summaries() {
    let mut net = mesh(3, 2, ALIVE_AND_BROKEN);
    net.wait_converged(TIMEOUT, &|| false).expect("converged");
    let far = net.node(2).id;
    let mesh_view = |position: usize| {
        net.node(position)
            .client
            .incidents("scope=mesh&limit=100")
            .unwrap_or_default()
    };
    let seen = eventually("node 0 to list node 2's incident", TIMEOUT, || {
        mesh_view(0)
            .into_iter()
            .find(|i| i["node"] == far.to_string() && i["root_cause"] == "service broken")
    });
    assert_eq!(seen["kind"], "SERVICE_DOWN", "{seen:#}");
    assert_eq!(seen["node_reachable"], true, "{seen:#}");
    assert!(seen["closed_unix_ms"].is_null(), "{seen:#}");
    let listed = ctl(&net, 0, &["incidents", "--mesh"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(table.contains(&far.short()), "{table}");
    assert!(table.contains("service broken"), "{table}");
    // A filter that matches nothing, and a bad scope.
    assert!(
        net.node(1)
            .client
            .incidents("scope=mesh&type=NODE_FAILURE")
            .expect("answers")
            .iter()
            .all(|i| i["kind"] == "NODE_FAILURE")
    );
    assert!(net.node(1).client.incidents("scope=galaxy").is_err());

    // The check goes away on node 2; node 1 sees the incident closed.
    edit_config(&net, 2, ALIVE_AND_BROKEN, ALIVE);
    net.node(2).client.reload_healing().expect("reloaded");
    let closed = eventually("node 1 to see the incident closed", TIMEOUT, || {
        mesh_view(1).into_iter().find(|i| {
            i["node"] == far.to_string()
                && i["root_cause"] == "service broken"
                && i["closed_unix_ms"].is_u64()
        })
    });
    assert_eq!(closed["state"], "resolved", "{closed:#}");
    assert_eq!(closed["id"], seen["id"], "the same incident");
    net.stop_all();
}
