//! The overlay data plane for real: daemons with TUN interfaces in network namespaces, and an
//! ordinary `ping` across three hops of the mesh. Needs root, iproute2 and /dev/net/tun; without
//! them the test says it was skipped and passes. Namespaces are deleted afterwards, also on
//! failure.

use cli::netns::{NetnsMesh, line, unavailable};
use std::time::{Duration, Instant};

use crate::support::binary;

#[test]
fn ping_crosses_a_three_hop_line_and_unknown_destinations_are_unreachable() {
    if let Some(reason) = unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mesh =
        NetnsMesh::start(&binary(), 4, &line(4), "").unwrap_or_else(|error| panic!("{error}"));
    let target = mesh.nodes()[3].id.overlay_addr().to_string();
    // Routes can converge before every node holds every other's node record, and an end-to-end
    // handshake initiation from a node whose record is missing is dropped (and retried a
    // second later). On a loaded machine that can outlast ping's 2 s wait for the first
    // replies, so one ping with a long wait sets up the session before the loss is measured.
    let _ = mesh
        .command(0, "ping")
        .args(["-c", "1", "-W", "15", &target])
        .output();
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

    // Packets far larger than a link datagram cross whole (-M do: no IPv6 fragmentation), in
    // link fragments put back together at every hop.
    let output = mesh
        .command(0, "ping")
        .args([
            "-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", "30000", &target,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains(" 0% packet loss"),
        "30,000-byte pings over 3 hops:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = mesh.api(3, "status").unwrap();
    assert!(
        status["links"]["channel_reassembled"].as_u64().unwrap_or(0) >= 3,
        "{}",
        status["links"]
    );
    // The packets travelled inside an end-to-end session (relays saw only sealed bytes).
    assert!(
        status["links"]["session_received"].as_u64().unwrap_or(0) >= 5,
        "{}",
        status["links"]
    );
    let sender = mesh.api(0, "status").unwrap();
    assert!(
        sender["links"]["session_handshakes_completed"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{}",
        sender["links"]
    );

    // An overlay address no node owns: the sender's own node answers "no route".
    let output = mesh
        .command(0, "ping")
        .args(["-c", "1", "-W", "2", "fd6b:6c34::dead"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("Destination unreachable") || text.contains("No route"),
        "{text}"
    );
}

#[test]
fn a_ring_heals_around_a_killed_relay_and_around_a_relay_whose_links_went_down() {
    if let Some(reason) = unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mut mesh = NetnsMesh::start(&binary(), 6, &cli::netns::ring(6), "")
        .unwrap_or_else(|error| panic!("{error}"));
    let target = mesh.nodes()[3].id.overlay_addr().to_string();
    for case in ["relay killed (links stay up)", "relay's links down"] {
        mesh.wait_converged(std::time::Duration::from_secs(30))
            .unwrap();
        let relay = mesh.next_hop(0, 3).expect("node 1 routes to node 4");
        // 10 ms pings for 4 s; the fault comes 1 s in.
        let ping = mesh
            .command(0, "ping")
            .args([
                "-i", "0.01", "-c", "400", "-W", "1", "-S", "400000", &target,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_secs(1));
        if case.starts_with("relay killed") {
            mesh.kill(relay);
        } else {
            mesh.set_links(relay, false).unwrap();
        }
        let output = ping.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let replies = cli::netns::ping_replies(&text);
        let received = replies.len();
        let outage = cli::netns::ping_outage_ms(&replies, 10).unwrap_or(u64::MAX);
        eprintln!(
            "{case}: relay node {}, outage {outage} ms, {received}/400 replies",
            relay + 1
        );
        assert!(
            received > 200,
            "{case}: replies resumed after the fault ({received}/400)"
        );
        // Fewer than 300 pings lost in a row.
        assert!(
            outage <= 3000,
            "{case}: the outage is finite and short ({outage} ms)"
        );
        if !case.starts_with("relay killed") {
            let links = mesh.api(0, "status").unwrap()["links"].clone();
            assert!(
                links["links_lost_carrier"].as_u64().unwrap_or(0) >= 1,
                "node 1 saw the carrier go and acted on it: {links}"
            );
        }
        // Restore the relay for the next case.
        if case.starts_with("relay killed") {
            mesh.launch(relay).unwrap();
        } else {
            mesh.set_links(relay, true).unwrap();
        }
    }
}

#[test]
fn tcp_crosses_three_hops_intact() {
    if let Some(reason) = unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    use std::io::{Read, Write};
    let mesh =
        NetnsMesh::start(&binary(), 4, &line(4), "").unwrap_or_else(|error| panic!("{error}"));
    let address = std::net::SocketAddr::new(mesh.nodes()[3].id.overlay_addr().into(), 5001);
    const BYTES: usize = 8 << 20;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = mesh.in_namespace(3, move || {
        let listener = std::net::TcpListener::bind(address).expect("bind on the overlay address");
        ready_tx.send(()).expect("signal");
        let (mut stream, _) = listener.accept().expect("accept");
        let mut received = Vec::new();
        stream.read_to_end(&mut received).expect("read");
        let digest = received.iter().fold(0u64, |acc, byte| {
            acc.wrapping_mul(31).wrapping_add(u64::from(*byte))
        });
        stream.write_all(&digest.to_be_bytes()).expect("answer");
        received.len()
    });
    ready_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("server ready");
    let client = mesh.in_namespace(0, move || {
        let payload: Vec<u8> = (0..BYTES).map(|index| (index * 7 % 251) as u8).collect();
        let expected = payload.iter().fold(0u64, |acc, byte| {
            acc.wrapping_mul(31).wrapping_add(u64::from(*byte))
        });
        let mut stream =
            std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(10))
                .expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .expect("timeout");
        let start = std::time::Instant::now();
        stream.write_all(&payload).expect("send");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut answer = [0u8; 8];
        stream.read_exact(&mut answer).expect("answer");
        (u64::from_be_bytes(answer) == expected, start.elapsed())
    });
    let (intact, elapsed) = client
        .join()
        .expect("client thread")
        .expect("client namespace");
    let received = server
        .join()
        .expect("server thread")
        .expect("server namespace");
    eprintln!(
        "TCP over 3 hops: {BYTES} bytes in {elapsed:?} ({:.0} Mbit/s, debug build)",
        BYTES as f64 * 8.0 / elapsed.as_secs_f64() / 1e6
    );
    assert_eq!(received, BYTES);
    assert!(intact, "the bytes arrived unchanged");
    // With the default 64,000-byte overlay MTU the stream crossed in large packets, each
    // carried over every link in fragments and put back together by the next node.
    for relay in [1, 2, 3] {
        let links = &mesh.api(relay, "status").unwrap()["links"];
        assert!(
            links["channel_reassembled"].as_u64().unwrap_or(0) >= 10,
            "node {} reassembled large packets: {links}",
            relay + 1
        );
    }
}

#[test]
fn packets_too_big_for_a_link_get_packet_too_big_with_an_mtu_that_then_fits() {
    if let Some(reason) = unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    // Links on QUIC datagrams only (no link channel, so no fragments) and a TUN MTU above what
    // one datagram carries: the sender's node must answer with ICMPv6 Packet Too Big.
    let mesh = NetnsMesh::start(
        &binary(),
        4,
        &line(4),
        "    tun_mtu: 1400\n    link_channel: false\n",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let target = mesh.nodes()[3].id.overlay_addr().to_string();
    // 1,352 bytes of ICMP payload make a 1,400-byte IPv6 packet.
    let text = ping_unfragmented(&mesh, &target, 1352, "2");
    let mtu = reported_mtu(&text).unwrap_or_else(|| panic!("ping reports a path MTU:\n{text}"));
    assert!(
        (1280..1400).contains(&mtu),
        "advertised MTU {mtu} is below the packet and not below IPv6's minimum:\n{text}"
    );
    let status = mesh.api(0, "status").unwrap();
    assert!(
        status["links"]["data_too_big"].as_u64().unwrap_or(0) >= 1,
        "{}",
        status["links"]
    );
    // A packet of exactly the advertised size crosses all three hops: no black hole below it.
    assert_packets_of_mtu_cross(&mesh, &target, mtu);
}

/// Three pings from node 1 with `payload` bytes of ICMP payload that the sender must not
/// fragment (`-M do`), waiting `wait_s` seconds for each reply: ping's stdout and stderr.
fn ping_unfragmented(mesh: &NetnsMesh, target: &str, payload: usize, wait_s: &str) -> String {
    let output = mesh
        .command(0, "ping")
        .args(["-c", "3", "-i", "0.3", "-W", wait_s, "-M", "do", "-s"])
        .arg(payload.to_string())
        .arg(target)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The MTU a `ping -M do` output reports after a Packet Too Big, if any.
fn reported_mtu(text: &str) -> Option<usize> {
    text.split("mtu").nth(1).and_then(|rest| {
        let digits: String = rest
            .trim_start_matches([' ', '=', ':'])
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

#[test]
fn a_relay_whose_next_link_is_too_small_makes_the_source_answer_packet_too_big() {
    if let Some(reason) = unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    // Node 1's link to node 2 carries 64 KB packets (the link channel); node 3 runs on QUIC
    // datagrams only, so the relay 2 cannot pass a large packet on to it. Only the relay
    // knows, and only node 1 can answer the program with Packet Too Big.
    let mesh = NetnsMesh::start_each(&binary(), 4, &line(4), &|position| {
        if position == 2 {
            "    link_channel: false\n".to_string()
        } else {
            String::new()
        }
    })
    .unwrap_or_else(|error| panic!("{error}"));
    let target = mesh.nodes()[3].id.overlay_addr().to_string();
    let counter = |position: usize, name: &str| {
        mesh.api(position, "status").unwrap()["links"][name]
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mtu, text) = loop {
        // 3,000-byte packets.
        let text = ping_unfragmented(&mesh, &target, 2952, "1");
        if let Some(mtu) = reported_mtu(&text)
            && counter(0, "too_big_notices_applied") >= 1
        {
            break (mtu, text);
        }
        assert!(
            Instant::now() < deadline,
            "no Packet Too Big from a relay's notice:\n{text}\nnode 2 links: {}\nnode 1 links: {}",
            mesh.api(1, "status").unwrap()["links"],
            mesh.api(0, "status").unwrap()["links"]
        );
    };
    assert!(
        (1280..3000).contains(&mtu),
        "advertised MTU {mtu} is below the packet and not below IPv6's minimum:\n{text}"
    );
    assert!(
        counter(1, "too_big_notices_sent") >= 1,
        "the relay sent the notice"
    );
    assert!(
        counter(1, "data_too_big") >= 1,
        "the relay dropped and counted"
    );
    // A packet of exactly the advertised size crosses all three hops: no black hole below it.
    assert_packets_of_mtu_cross(&mesh, &target, mtu);
}

/// Pings of exactly `mtu` bytes (IPv6 packet) from node 1 reach `target`, none lost.
fn assert_packets_of_mtu_cross(mesh: &NetnsMesh, target: &str, mtu: usize) {
    let size = (mtu - 48).to_string();
    let output = mesh
        .command(0, "ping")
        .args([
            "-c", "3", "-i", "0.3", "-W", "2", "-M", "do", "-s", &size, target,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains(" 0% packet loss"),
        "a {mtu}-byte packet (the advertised MTU) crosses:\n{text}"
    );
}
