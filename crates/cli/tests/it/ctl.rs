//! `ctl` against live and dead nodes, and a node's clean shutdown on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use cli::localnet::{LocalNet, LocalNetOptions};
use node::{PeerView, RouteView};

use crate::support::{ChildGuard, binary, eventually, one_line_failure, run, stderr};

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn ctl_against_a_dead_node_is_one_line_and_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for query in ["status", "peers", "routes"] {
        let line = one_line_failure(&run(&["ctl", query, "--api", &url]));
        assert!(
            line.contains("cannot reach the node API") && line.contains(&url),
            "{line}"
        );
    }
    let line = one_line_failure(&run(&["ctl", "status", "--api", "127.0.0.1:7401"]));
    assert!(line.contains("invalid API URL"), "{line}");
}

#[test]
fn ctl_shows_tables_and_json_of_a_live_pair() {
    let mut net = LocalNet::create(&binary(), 2, &[(0, 1)], &LocalNetOptions::default()).unwrap();
    net.start_all().unwrap();
    net.wait_healthy(TIMEOUT, &|| false).unwrap();
    net.wait_converged(TIMEOUT, &|| false).unwrap();
    let url = net.node(0).api_url();
    let other = net.node(1).id;

    let output = run(&["ctl", "routes", "--json", "--api", &url]);
    assert!(output.status.success(), "{}", stderr(&output));
    let routes: Vec<RouteView> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].destination, routes[0].next_hop, routes[0].hops),
        (other, other, 1)
    );

    // --config reads the API address from node.yaml.
    let config = net.node(0).config_path.display().to_string();
    let output = run(&["ctl", "peers", "--json", "--config", &config]);
    let peers: Vec<PeerView> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        peers
            .iter()
            .map(|peer| (peer.id, peer.alive))
            .collect::<Vec<_>>(),
        vec![(other, true)]
    );

    let output = run(&["ctl", "peers", "--api", &url]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("neighbour") && table.contains(&other.short()),
        "{table}"
    );
    let output = run(&["ctl", "status", "--api", &url]);
    let table = String::from_utf8_lossy(&output.stdout);
    for row in [
        "node id",
        "router.dropped_malformed",
        "router.dropped_version",
        "router.dropped_oversized",
    ] {
        assert!(table.contains(row), "status table lacks {row}:\n{table}");
    }
}

#[test]
fn node_stops_cleanly_on_sigterm_and_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("node.yaml");
        std::fs::write(&config, "node_config:\n  network: { listen: '127.0.0.1:0', tun: 'off' }\n  api: { listen: '127.0.0.1:0' }\n").unwrap();
        let config = config.display().to_string();
        let made = run(&[
            "ca",
            "init",
            "--config",
            &config,
            "--trust-domain",
            "test.local",
        ]);
        assert!(made.status.success(), "{}", stderr(&made));
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let child = Command::new(binary())
            .args(["run", "--config", &config])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut node = ChildGuard(child);
        eventually("the node to start", TIMEOUT, || {
            std::fs::read_to_string(dir.path().join("node.log"))
                .unwrap()
                .contains("API listening")
                .then_some(())
        });
        node.signal(signal);
        let status = node
            .wait_exit(TIMEOUT)
            .expect("the node exits after the signal");
        assert!(
            status.success(),
            "clean exit after signal {signal}: {status:?}"
        );
        let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
        assert!(
            log.contains("shutting down") && log.contains("stopped"),
            "{log}"
        );
    }
}

#[test]
fn datagrams_cross_the_mesh_by_node_id_without_a_tun_interface() {
    let mut net =
        LocalNet::create(&binary(), 3, &[(0, 1), (1, 2)], &LocalNetOptions::default()).unwrap();
    net.start_all().unwrap();
    net.wait_healthy(TIMEOUT, &|| false).unwrap();
    net.wait_converged(TIMEOUT, &|| false).unwrap();
    let far = net.node(2).id.to_string();
    let (first, last) = (net.node(0).api_url(), net.node(2).api_url());
    let output = run(&[
        "ctl",
        "send",
        &far,
        "hello across two hops",
        "--port",
        "7",
        "--api",
        &first,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "sent");
    let received = eventually("the datagram to arrive", TIMEOUT, || {
        let output = run(&["ctl", "recv", "--port", "7", "--json", "--api", &last]);
        let datagrams: Vec<node::DatagramView> = serde_json::from_slice(&output.stdout).ok()?;
        (!datagrams.is_empty()).then_some(datagrams)
    });
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].from, net.node(0).id);
    assert_eq!(
        hex::decode(&received[0].payload_hex).unwrap(),
        b"hello across two hops"
    );
    let relayed = net.node(1).client.status().unwrap().links["data_forwarded"];
    assert!(relayed >= 1, "node 2 relayed it");

    let unknown = "00".repeat(16);
    let line = one_line_failure(&run(&["ctl", "send", &unknown, "x", "--api", &first]));
    assert!(line.contains("no route"), "{line}");
    let big = "x".repeat(1201);
    let line = one_line_failure(&run(&["ctl", "send", &far, &big, "--api", &first]));
    assert!(line.contains("too large"), "{line}");
}
