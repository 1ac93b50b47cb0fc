//! The overlay data plane for real: daemons with TUN interfaces in network namespaces, and an
//! ordinary `ping` across three hops of the mesh. Needs root, iproute2 and /dev/net/tun; without
//! them the test says it was skipped and passes. Namespaces are deleted afterwards, also on
//! failure.

use cli::netns::{NetnsMesh, line, unavailable};

use crate::support::binary;

#[test]
fn ping_crosses_a_three_hop_line_and_unknown_destinations_are_unreachable() {
    if let Some(reason) = unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mesh = NetnsMesh::start(&binary(), 4, &line(4), "").unwrap_or_else(|error| panic!("{error}"));
    let target = mesh.nodes()[3].id.overlay_addr().to_string();
    let output = mesh
        .command(0, "ping")
        .args(["-c", "5", "-i", "0.2", "-W", "2", &target])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains(" 0% packet loss"),
        "ping over 3 hops failed:\n{text}\n{}\nnode 1 log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        mesh.log_tail(0)
    );
    for relay in [1, 2] {
        let status = mesh.api(relay, "status").unwrap();
        assert!(
            status["links"]["data_forwarded"].as_u64().unwrap_or(0) >= 5,
            "node {} relayed the packets: {}",
            relay + 1,
            status["links"]
        );
    }
    let status = mesh.api(3, "status").unwrap();
    assert!(status["links"]["data_to_tun"].as_u64().unwrap_or(0) >= 5);

    // An overlay address no node owns: the sender's own node answers "no route".
    let output = mesh
        .command(0, "ping")
        .args(["-c", "1", "-W", "2", "fd6b:6c34::dead"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("Destination unreachable") || text.contains("No route"), "{text}");
}
