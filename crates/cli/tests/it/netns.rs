//! Multicast discovery for real: two daemons in separate network namespaces joined by a veth
//! pair, with no static peers, must find each other through the IPv6 link-local group.
//!
//! Needs root (CAP_NET_ADMIN) and iproute2's `ip`, as CI has (`.ci/run` installs iproute2);
//! without them the test says it was skipped and passes.
//! Traffic stays inside the namespaces this test creates; everything is deleted afterwards.

use std::process::{Command, Stdio};
use std::time::Duration;

use node::PeerView;

use crate::support::{ChildGuard, binary, eventually, run, stderr, write};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `ip` with `args`, failing the test with its stderr if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2's `ip` is installed");
    assert!(
        output.status.success(),
        "ip {}: {} (this test needs root)",
        args.join(" "),
        stderr(&output)
    );
}

/// A network namespace, deleted (with its interfaces) when dropped.
struct Namespace(String);

impl Namespace {
    fn create(name: String) -> Namespace {
        // A namespace left over from a killed earlier run would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        Namespace(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Why this machine cannot run namespace tests, if it cannot.
fn namespaces_unavailable() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root");
    }
    let has_ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!has_ip).then_some("iproute2's `ip` is not installed")
}

#[test]
fn daemons_on_a_veth_link_discover_each_other_by_multicast() {
    if let Some(reason) = namespaces_unavailable() {
        eprintln!("skipped: network-namespace test needs root and iproute2 ({reason})");
        return;
    }
    let suffix = std::process::id();
    let namespaces = [
        Namespace::create(format!("x6t-{suffix}-a")),
        Namespace::create(format!("x6t-{suffix}-b")),
    ];
    let interfaces = [format!("x6a{suffix}"), format!("x6b{suffix}")];
    let interfaces: Vec<String> = interfaces
        .iter()
        .map(|name| name.chars().take(15).collect())
        .collect();
    ip(&[
        "link",
        "add",
        "name",
        &interfaces[0],
        "netns",
        &namespaces[0].0,
        "type",
        "veth",
        "peer",
        "name",
        &interfaces[1],
        "netns",
        &namespaces[1].0,
    ]);

    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    // Unique-local addresses inside the namespaces, only so that the joining node can reach the
    // CA node for its join request; the mesh itself finds its link by multicast and links over
    // link-local addresses.
    let ula = ["fd6b:6c00:7e57::1", "fd6b:6c00:7e57::2"];
    for (position, (namespace, interface)) in namespaces.iter().zip(&interfaces).enumerate() {
        // Duplicate address detection would hold the link-local address back for a second or two.
        ip(&[
            "netns",
            "exec",
            &namespace.0,
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv6.conf.{interface}.accept_dad=0"),
        ]);
        ip(&["-n", &namespace.0, "link", "set", "lo", "up"]);
        ip(&["-n", &namespace.0, "link", "set", interface, "up"]);
        ip(&["-n", &namespace.0, "addr", "add", &format!("{}/64", ula[position]), "dev", interface, "nodad"]);
        let node_dir = dir.path().join(&namespace.0);
        std::fs::create_dir(&node_dir).unwrap();
        let yaml = format!(
            "node_config:\n  network:\n    listen: '[::]:7400'\n    interfaces: [{interface}]\n  api:\n    listen: '127.0.0.1:7401'\n"
        );
        let config = write(&node_dir, "node.yaml", &yaml).display().to_string();
        // The first node is the CA node; the second joins with a token, from inside its
        // namespace, over the veth link.
        let made = if position == 0 {
            run(&["ca", "init", "--config", &config, "--trust-domain", "netns.test"])
        } else {
            let ca_config = nodes
                .first()
                .map(|(_, _, _, dir): &(ChildGuard, wire::NodeId, String, std::path::PathBuf)| dir.join("node.yaml"))
                .unwrap();
            let token = run(&[
                "ca",
                "token",
                "--config",
                &ca_config.display().to_string(),
                "--address",
                &format!("[{}]:7400", ula[0]),
            ]);
            assert!(token.status.success(), "{}", stderr(&token));
            let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
            Command::new("ip")
                .args(["netns", "exec", &namespace.0])
                .arg(binary())
                .args(["init", "--config", &config, "--join-token", &token])
                .output()
                .unwrap()
        };
        assert!(made.status.success(), "{}", stderr(&made));
        let id: wire::NodeId = String::from_utf8_lossy(&made.stdout)
            .trim()
            .parse()
            .unwrap();
        let log = std::fs::File::create(node_dir.join("node.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace.0])
            .arg(binary())
            .args(["run", "--config", &config])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        nodes.push((ChildGuard(child), id, namespace.0.clone(), node_dir));
        if position == 0 {
            eventually("the CA node to listen", TIMEOUT, || {
                std::fs::read_to_string(nodes[0].3.join("node.log"))
                    .unwrap_or_default()
                    .contains("API listening")
                    .then_some(())
            });
        }
    }

    for (index, (_, _, namespace, node_dir)) in nodes.iter().enumerate() {
        let other = nodes[1 - index].1;
        let peers = eventually("the other node to be an alive neighbour", TIMEOUT, || {
            let output = Command::new("ip")
                .args(["netns", "exec", namespace])
                .arg(binary())
                .args(["ctl", "peers", "--json", "--api", "http://127.0.0.1:7401"])
                .output()
                .unwrap();
            let peers: Vec<PeerView> = serde_json::from_slice(&output.stdout).ok()?;
            peers
                .iter()
                .any(|peer| peer.id == other && peer.alive)
                .then_some(peers)
        });
        let address = peers[0].address.expect("address learned from its packets");
        assert!(
            matches!(address, std::net::SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() && v6.scope_id() != 0),
            "neighbour reached at its link-local address with a scope id: {address}; log: {}",
            std::fs::read_to_string(node_dir.join("node.log")).unwrap_or_default()
        );
    }
}
