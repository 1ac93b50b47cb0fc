//! Benchmark: x0tta6bl4 side by side with Yggdrasil and babeld on the same namespace
//! topologies, in one run. Run through `bench/overlay-vs-peers` (which installs the peers from
//! Debian and builds this in release mode); needs root.
//!
//! Measures, for each system: TCP throughput over 3 hops (iperf3, line of 4 nodes; raw kernel
//! routing as the ceiling), CPU the daemons used during it, the outage of a 10 ms ping across a
//! 6-node ring when (a) the relay's daemon is SIGKILLed with its links up and (b) all the
//! relay's links go down, and idle control bytes per node per second (veth counters). Prints a
//! table with ratios ours/theirs. `--idle-only` measures only idle traffic on the ring (ours with
//! its breakdown by kind, with and without the healing loop, and babeld at our probe rate).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli::netns::{NetnsMesh, line, ring};

const YGG_PORT: u16 = 12345;

/// Idle traffic is counted from this long after every system routes end to end, so start-up
/// exchanges (handshakes, first full tables) are not counted as idle.
const IDLE_SETTLE: Duration = Duration::from_secs(3);

/// How long a peer system may take to route end to end after start. Yggdrasil retries a
/// refused peering only after a back-off, so both ends of every link dial each other.
const PEER_CONVERGE: Duration = Duration::from_secs(120);

fn sh(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|error| panic!("{args:?}: {error}"));
    if !output.status.success() {
        panic!("{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn ns_sh(namespace: &str, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", namespace];
    full.extend_from_slice(args);
    sh(&full)
}

/// Namespaces and veth links for the peer systems (ours builds its own with `NetnsMesh`).
struct Topo {
    names: Vec<String>,
    /// Per node: (interface, neighbour, own ULA on that link, neighbour's ULA).
    links: Vec<Vec<(String, usize, String, String)>>,
}

impl Topo {
    fn new(tag: &str, count: usize, edges: &[(usize, usize)]) -> Topo {
        let names: Vec<String> = (0..count).map(|index| format!("x6b{tag}{index}")).collect();
        for name in &names {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stderr(Stdio::null())
                .status();
            sh(&["ip", "netns", "add", name]);
            ns_sh(name, &["ip", "link", "set", "lo", "up"]);
            for setting in [
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.forwarding=1",
            ] {
                ns_sh(name, &["sysctl", "-q", "-w", setting]);
            }
        }
        let mut links = vec![Vec::new(); count];
        for (edge, &(a, b)) in edges.iter().enumerate() {
            let (if_a, if_b) = (format!("l{b}"), format!("l{a}"));
            sh(&[
                "ip", "link", "add", "x6bt", "netns", &names[a], "type", "veth", "peer", "name",
                "x6bu", "netns", &names[b],
            ]);
            sh(&["ip", "-n", &names[a], "link", "set", "x6bt", "name", &if_a]);
            sh(&["ip", "-n", &names[b], "link", "set", "x6bu", "name", &if_b]);
            let (ula_a, ula_b) = (
                format!("fd99:0:0:{edge:x}::1"),
                format!("fd99:0:0:{edge:x}::2"),
            );
            for (ns, iface, ula) in [(&names[a], &if_a, &ula_a), (&names[b], &if_b, &ula_b)] {
                sh(&[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{ula}/64"),
                    "dev",
                    iface,
                    "nodad",
                ]);
                sh(&["ip", "-n", ns, "link", "set", iface, "up"]);
            }
            links[a].push((if_a, b, ula_a.clone(), ula_b.clone()));
            links[b].push((if_b, a, ula_b, ula_a));
        }
        Topo { names, links }
    }

    /// Node `index`'s stable address (on its loopback), for raw routing and babeld.
    fn node_address(index: usize) -> String {
        format!("fd98::{:x}", index + 1)
    }

    fn set_links(&self, node: usize, up: bool) {
        for (iface, _, _, _) in &self.links[node] {
            sh(&[
                "ip",
                "-n",
                &self.names[node],
                "link",
                "set",
                iface,
                if up { "up" } else { "down" },
            ]);
        }
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip")
                .args(["netns", "pids", name])
                .output()
                .map(|output| {
                    for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                });
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// The interfaces of `namespace` with their counters (`ip -j -s link show`), loopback left out.
fn link_stats(namespace: &str) -> Vec<serde_json::Value> {
    let json = ns_sh(namespace, &["ip", "-j", "-s", "link", "show"]);
    match serde_json::from_str(&json) {
        Ok(serde_json::Value::Array(links)) => links
            .into_iter()
            .filter(|link| link["ifname"] != "lo")
            .collect(),
        _ => Vec::new(),
    }
}

/// Sums of tx bytes and packets over the namespace's link interfaces (not loopback, not overlay
/// tunnels).
fn tx_counters(namespace: &str) -> (u64, u64) {
    link_stats(namespace)
        .iter()
        .filter(|link| {
            !link["ifname"].as_str().unwrap_or("").starts_with("x6tun") && link["ifname"] != "ygg0"
        })
        .map(|link| {
            let tx = &link["stats64"]["tx"];
            (
                tx["bytes"].as_u64().unwrap_or(0),
                tx["packets"].as_u64().unwrap_or(0),
            )
        })
        .fold((0, 0), |(bytes, packets), (b, p)| (bytes + b, packets + p))
}

/// Idle control bytes per node per second of a settled mesh: the rise of the interfaces' tx
/// counters over `window`, averaged over `namespaces`.
fn idle_bytes(namespaces: &[String], window: Duration) -> f64 {
    let before: Vec<u64> = namespaces.iter().map(|ns| tx_counters(ns).0).collect();
    std::thread::sleep(window);
    let after: Vec<u64> = namespaces.iter().map(|ns| tx_counters(ns).0).collect();
    before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b) as f64)
        .sum::<f64>()
        / namespaces.len() as f64
        / window.as_secs_f64()
}

/// Bytes an Ethernet frame adds to a UDP payload on a veth: Ethernet (14), IPv6 (40), UDP (8).
const FRAME_OVERHEAD: f64 = 62.0;
/// Bytes the link channel adds to what it carries: magic, receiver index, counter, tag.
const CHANNEL_OVERHEAD: f64 = 30.0;

/// Our idle traffic over `window` on a settled mesh: bytes per node per second on the wire,
/// and its breakdown by kind from the nodes' own counters (`/api/v1/status`), each on the wire
/// with the channel's and the frame's headers.
fn our_idle_traffic(mesh: &NetnsMesh, window: Duration) -> (f64, String) {
    let nodes = mesh.nodes().len();
    let status = |mesh: &NetnsMesh| -> Vec<serde_json::Value> {
        (0..nodes)
            .map(|node| mesh.api(node, "status").unwrap_or_default())
            .collect()
    };
    let wire = |mesh: &NetnsMesh| -> Vec<(u64, u64)> {
        mesh.nodes()
            .iter()
            .map(|node| tx_counters(&node.namespace))
            .collect()
    };
    let status_before = status(mesh);
    let wire_before = wire(mesh);
    std::thread::sleep(window);
    let wire_after = wire(mesh);
    let status_after = status(mesh);
    let per_node_s = |total: f64| total / nodes as f64 / window.as_secs_f64();
    let rise = |section: &str, name: &str| -> f64 {
        per_node_s(
            status_before
                .iter()
                .zip(&status_after)
                .map(|(b, a)| {
                    let value = |status: &serde_json::Value| {
                        status[section][name]
                            .as_u64()
                            .or_else(|| status[section]["counters"][name].as_u64())
                            .unwrap_or(0)
                    };
                    value(a).saturating_sub(value(b)) as f64
                })
                .sum::<f64>(),
        )
    };
    let total_bytes = per_node_s(
        wire_before
            .iter()
            .zip(&wire_after)
            .map(|(b, a)| a.0.saturating_sub(b.0) as f64)
            .sum(),
    );
    let total_packets = per_node_s(
        wire_before
            .iter()
            .zip(&wire_after)
            .map(|(b, a)| a.1.saturating_sub(b.1) as f64)
            .sum(),
    );
    // Routing packets and CRDT messages share the channel; at idle nothing else uses it.
    let channel_packets = rise("links", "channel_tx");
    let channel_bytes = rise("links", "channel_tx_bytes") + channel_packets * FRAME_OVERHEAD;
    let ogm_entries = rise("router", "ogms_tx");
    let crdt_packets = rise("links", "crdt_messages_tx");
    let crdt_bytes =
        rise("links", "crdt_bytes_tx") + crdt_packets * (CHANNEL_OVERHEAD + FRAME_OVERHEAD);
    let routing_packets = channel_packets - crdt_packets;
    let routing_bytes = channel_bytes - crdt_bytes;
    let quic_packets = rise("links", "link_quic_udp_tx_datagrams");
    let quic_bytes = rise("links", "link_quic_udp_tx_bytes") + quic_packets * FRAME_OVERHEAD;
    let reports = rise("healing", "reports_sent") + rise("healing", "reports_forwarded");
    let adverts = rise("transport", "datagrams_tx");
    // The healing loop refreshes its reports every second while it acts on something (on a
    // loaded host, a CPU_OVERLOAD incident), every 7.5 s otherwise: say which it was.
    let open_incidents: Vec<String> = status_after
        .iter()
        .map(|status| {
            let healing = &status["healing"];
            let kinds: Vec<&str> = healing["repair"]
                .as_object()
                .map(|repair| {
                    repair
                        .iter()
                        .filter(|(_, figures)| {
                            figures["incidents"].as_u64() > figures["resolved"].as_u64()
                        })
                        .map(|(kind, _)| kind.as_str())
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{}{}",
                healing["open_incidents"].as_u64().unwrap_or(0),
                if kinds.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", kinds.join(", "))
                }
            )
        })
        .collect();
    let other_packets = total_packets - channel_packets - quic_packets;
    let other_bytes = total_bytes - channel_bytes - quic_bytes;
    let breakdown = format!(
        "x0tta6bl4 idle by kind, per node per second on the wire (frame, IPv6, UDP and channel headers included):\n\
         \x20 routing packets (probes, OGMs riding on them, table sync)  {routing_packets:5.1} pkt/s {routing_bytes:6.0} B/s  ({ogm_entries:.1} OGM entries/s)\n\
         \x20 CRDT anti-entropy (digests, vectors, deltas)               {crdt_packets:5.1} pkt/s {crdt_bytes:6.0} B/s\n\
         \x20 QUIC (keep-alives, ACKs, heal reports, offers)             {quic_packets:5.1} pkt/s {quic_bytes:6.0} B/s  ({reports:.1} heal reports/s)\n\
         \x20 other (adverts, multicast hellos, neighbour discovery)      {other_packets:5.1} pkt/s {other_bytes:6.0} B/s  ({adverts:.2} adverts/s)\n\
         \x20 total                                                      {total_packets:5.1} pkt/s {total_bytes:6.0} B/s\n\
         \x20 open incidents per node at the end: {}",
        open_incidents.join(", ")
    );
    (total_bytes, breakdown)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// iperf3 from `client_ns` to `address` for `seconds`: Gbit/s, and CPU seconds the given
/// daemons used meanwhile.
fn iperf(
    server_ns: &str,
    client_ns: &str,
    address: &str,
    source: Option<&str>,
    seconds: u64,
    daemons: &[u32],
) -> (f64, f64) {
    let mut server = Command::new("ip")
        .args([
            "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", address,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(500));
    let before: u64 = daemons.iter().map(|pid| cpu_ticks(*pid)).sum();
    let mut client = Command::new("ip");
    client.args([
        "netns",
        "exec",
        client_ns,
        "iperf3",
        "-c",
        address,
        "-t",
        &seconds.to_string(),
        "-J",
    ]);
    if let Some(source) = source {
        client.args(["-B", source]);
    }
    let output = client.output().expect("iperf3 client");
    let after: u64 = daemons.iter().map(|pid| cpu_ticks(*pid)).sum();
    let _ = server.kill();
    let _ = server.wait();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    (
        bits / 1e9,
        after.saturating_sub(before) as f64 / ticks_per_second(),
    )
}

/// Largest gap in a `ping -i 0.01` run, in ms, with the fault injected by `fault` 1 s in.
fn outage(namespace: &str, address: &str, fault: impl FnOnce()) -> f64 {
    let ping = Command::new("ip")
        .args([
            "netns", "exec", namespace, "ping", "-i", "0.01", "-c", "600", "-W", "1", "-S",
            "400000", address,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_secs(1));
    fault();
    let output = ping.wait_with_output().expect("ping output");
    let replies = cli::netns::ping_replies(&String::from_utf8_lossy(&output.stdout));
    cli::netns::ping_outage_ms(&replies, 10).map_or(f64::INFINITY, |ms| ms as f64)
}

fn wait_ping(namespace: &str, address: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let ok = Command::new("ip")
            .args([
                "netns", "exec", namespace, "ping", "-c", "1", "-W", "1", address,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if ok {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Packets received and sent on every interface of `namespace` but loopback.
fn packet_counters(namespace: &str) -> u64 {
    link_stats(namespace)
        .iter()
        .map(|link| {
            link["stats64"]["rx"]["packets"].as_u64().unwrap_or(0)
                + link["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
        })
        .sum()
}

/// Whether `relay` carries node 0's pings to `address`: during 50 pings, the relay's own veth
/// counters must rise by at least 50 packets (each request in and out, replies may return by
/// the other side of the ring). Returns the rise too, for the report.
fn relay_on_path(client_ns: &str, relay_ns: &str, address: &str) -> (bool, u64) {
    let before = packet_counters(relay_ns);
    let _ = Command::new("ip")
        .args([
            "netns", "exec", client_ns, "ping", "-c", "50", "-i", "0.01", "-W", "1", address,
        ])
        .stdout(Stdio::null())
        .status();
    let rise = packet_counters(relay_ns).saturating_sub(before);
    (rise >= 50, rise)
}

/// The neighbour of node 0 that carries its pings to `address`: each neighbour's own veth
/// counters are read during 50 pings, and the one whose counters rise most is the relay. Also
/// returns whether it is on the path (see [`relay_on_path`]) and its rise.
fn relay_by_counters(topo: &Topo, address: &str) -> (usize, bool, u64) {
    topo.links[0]
        .iter()
        .map(|(_, neighbour, _, _)| {
            let (on_path, rise) = relay_on_path(&topo.names[0], &topo.names[*neighbour], address);
            (*neighbour, on_path, rise)
        })
        .max_by_key(|(_, _, rise)| *rise)
        .unwrap_or((1, false, 0))
}

// ---------- the systems ----------

struct Peers {
    topo: Topo,
    daemons: Vec<Option<Child>>,
    addresses: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Peers {
    fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.daemons[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.daemons.iter().flatten().map(Child::id).collect()
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for node in 0..self.daemons.len() {
            self.kill(node);
        }
    }
}

fn start_yggdrasil(tag: &str, count: usize, edges: &[(usize, usize)]) -> Peers {
    let topo = Topo::new(tag, count, edges);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut daemons = Vec::new();
    let mut addresses = Vec::new();
    for node in 0..count {
        let config = sh(&["yggdrasil", "-genconf", "-json"]);
        let mut config: serde_json::Value = serde_json::from_str(&config).expect("ygg config");
        let peers: Vec<String> = topo.links[node]
            .iter()
            .map(|(_, _, _, theirs)| format!("tcp://[{theirs}]:{YGG_PORT}"))
            .collect();
        config["Peers"] = serde_json::json!(peers);
        config["Listen"] = serde_json::json!([format!("tcp://[::]:{YGG_PORT}")]);
        config["MulticastInterfaces"] = serde_json::json!([]);
        config["AdminListen"] = serde_json::json!("none");
        config["IfName"] = serde_json::json!("ygg0");
        let path = dir.path().join(format!("ygg{node}.json"));
        std::fs::write(&path, config.to_string()).expect("write ygg config");
        let path_text = path.display().to_string();
        addresses.push(
            sh(&["yggdrasil", "-useconffile", &path_text, "-address"])
                .trim()
                .to_string(),
        );
        let log = std::fs::File::create(dir.path().join(format!("ygg{node}.log"))).expect("log");
        daemons.push(Some(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &topo.names[node],
                    "yggdrasil",
                    "-useconffile",
                    &path_text,
                ])
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("yggdrasil"),
        ));
    }
    Peers {
        topo,
        daemons,
        addresses,
        _dir: dir,
    }
}

fn add_node_addresses(topo: &Topo) {
    for (node, name) in topo.names.iter().enumerate() {
        sh(&[
            "ip",
            "-n",
            name,
            "addr",
            "add",
            &format!("{}/128", Topo::node_address(node)),
            "dev",
            "lo",
        ]);
    }
}

fn start_babeld(tag: &str, count: usize, edges: &[(usize, usize)], hello: &str) -> Peers {
    let topo = Topo::new(tag, count, edges);
    add_node_addresses(&topo);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut daemons = Vec::new();
    let mut addresses = Vec::new();
    for node in 0..count {
        let base = dir.path().join(format!("babel{node}"));
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            topo.names[node].clone(),
            "babeld".into(),
            "-I".into(),
            format!("{}.pid", base.display()),
            "-S".into(),
            format!("{}.state", base.display()),
            "-h".into(),
            hello.into(),
            "-H".into(),
            hello.into(),
            "-C".into(),
            "redistribute local ip fd98::/64 le 128 allow".into(),
            // The link prefixes too: a ping's source is the outgoing link's address, and the
            // replies need a route back to it.
            "-C".into(),
            "redistribute local ip fd99::/16 le 128 allow".into(),
            "-C".into(),
            "redistribute local deny".into(),
            "-C".into(),
            "default type wired".into(),
        ];
        args.extend(
            topo.links[node]
                .iter()
                .map(|(iface, _, _, _)| iface.clone()),
        );
        let log = std::fs::File::create(format!("{}.log", base.display())).expect("log");
        daemons.push(Some(
            Command::new("ip")
                .args(&args)
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("babeld"),
        ));
        addresses.push(Topo::node_address(node));
    }
    Peers {
        topo,
        daemons,
        addresses,
        _dir: dir,
    }
}

/// Raw kernel routing on a line: static routes to every node's loopback address.
fn raw_line(count: usize) -> Topo {
    let topo = Topo::new("r", count, &line(count));
    add_node_addresses(&topo);
    for node in 0..count {
        for target in 0..count {
            if target == node {
                continue;
            }
            let towards = if target > node { node + 1 } else { node - 1 };
            let (_, _, _, via) = topo.links[node]
                .iter()
                .find(|(_, neighbour, _, _)| *neighbour == towards)
                .expect("link");
            sh(&[
                "ip",
                "-n",
                &topo.names[node],
                "-6",
                "route",
                "add",
                &format!("{}/128", Topo::node_address(target)),
                "via",
                via,
            ]);
        }
    }
    topo
}

/// babeld's idle traffic on the 6-node ring with 100 ms hellos, the interval of our probes.
fn babeld_idle_at_our_rate(window: Duration) -> f64 {
    eprintln!("idle: babeld (0.1 s hellos)");
    let peers = start_babeld("b", 6, &ring(6), "0.1");
    wait_ping(&peers.topo.names[0], &peers.addresses[3], PEER_CONVERGE);
    std::thread::sleep(IDLE_SETTLE);
    idle_bytes(&peers.topo.names, window)
}

/// Our idle traffic on the 6-node ring once it routes end to end, with its breakdown;
/// `extra_yaml` goes into every node's configuration.
fn our_ring_idle(binary: &Path, window: Duration, extra_yaml: &str) -> (f64, String) {
    eprintln!("idle: x0tta6bl4 {extra_yaml}");
    let mesh = NetnsMesh::start(binary, 6, &ring(6), extra_yaml).expect("our ring");
    let _ = mesh.wait_converged(Duration::from_secs(30));
    std::thread::sleep(IDLE_SETTLE);
    our_idle_traffic(&mesh, window)
}

fn binary() -> PathBuf {
    let here = std::env::current_exe().expect("own path");
    // target/release/examples/overlay_vs_peers -> target/release/x0tta6bl4
    let dir = here.parent().and_then(Path::parent).expect("target dir");
    dir.join("x0tta6bl4")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    if let Some(reason) = cli::netns::unavailable() {
        eprintln!("needs root, iproute2 and /dev/net/tun: {reason}");
        std::process::exit(2);
    }
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: u64| -> u64 {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|index| args.get(index + 1))
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let seconds = value("--seconds", 10);
    let reps = value("--reps", 3) as usize;
    let idle_window = Duration::from_secs(value("--idle-seconds", 20));
    let binary = binary();
    let mut rows: Vec<(String, String, String, String)> = Vec::new();

    if args.iter().any(|arg| arg == "--idle-only") {
        let (ours, kinds) = our_ring_idle(&binary, idle_window, "");
        // On a loaded host every node opens a CPU_OVERLOAD incident and its healing loop
        // reports every second; with the CPU threshold at 100 % the loop runs as on a host
        // with room to spare.
        let (unloaded, kinds_unloaded) = our_ring_idle(
            &binary,
            idle_window,
            "  mapk:\n    thresholds:\n      cpu: 100\n",
        );
        // babeld has no healing loop: the same ring without ours gives the routing planes'
        // comparison (links, routing, CRDT replica).
        let (without_healing, kinds_without) =
            our_ring_idle(&binary, idle_window, "  mapk:\n    enabled: false\n");
        let babeld = babeld_idle_at_our_rate(idle_window);
        println!(
            "idle control tx per node on a 6-node ring over {} s: x0tta6bl4 (100 ms probes) {ours:.0} B/s, babeld (100 ms hellos) {babeld:.0} B/s, {:.2}x babeld at equal rate",
            idle_window.as_secs(),
            ours / babeld
        );
        println!(
            "x0tta6bl4 with no CPU_OVERLOAD incident (mapk.thresholds.cpu: 100) {unloaded:.0} B/s, {:.2}x babeld at equal rate",
            unloaded / babeld
        );
        println!(
            "x0tta6bl4 without the healing loop (mapk.enabled: false) {without_healing:.0} B/s, {:.2}x babeld at equal rate",
            without_healing / babeld
        );
        println!("{kinds}");
        println!("with no CPU_OVERLOAD incident: {kinds_unloaded}");
        println!("without the healing loop: {kinds_without}");
        return;
    }

    // ---- throughput over 3 hops ----
    eprintln!("throughput: raw kernel routing");
    let raw = raw_line(4);
    let (raw_gbit, _) = iperf(
        &raw.names[3],
        &raw.names[0],
        &Topo::node_address(3),
        Some(&Topo::node_address(0)),
        seconds,
        &[],
    );
    drop(raw);
    eprintln!("throughput: x0tta6bl4");
    let ours_line = NetnsMesh::start(&binary, 4, &line(4), "").expect("our mesh");
    let ours_pids: Vec<u32> = (0..4).filter_map(|node| ours_line.pid(node)).collect();
    let target = ours_line.nodes()[3].id.overlay_addr().to_string();
    let (ours_gbit, ours_cpu) = iperf(
        &ours_line.nodes()[3].namespace,
        &ours_line.nodes()[0].namespace,
        &target,
        None,
        seconds,
        &ours_pids,
    );
    drop(ours_line);
    eprintln!("throughput: Yggdrasil");
    let ygg_line = start_yggdrasil("y", 4, &line(4));
    let reachable = wait_ping(
        &ygg_line.topo.names[0],
        &ygg_line.addresses[3],
        PEER_CONVERGE,
    );
    let (ygg_gbit, ygg_cpu) = if reachable {
        iperf(
            &ygg_line.topo.names[3],
            &ygg_line.topo.names[0],
            &ygg_line.addresses[3],
            None,
            seconds,
            &ygg_line.pids(),
        )
    } else {
        eprintln!("Yggdrasil line never became reachable");
        (0.0, 0.0)
    };
    drop(ygg_line);
    let per_gbit = |cpu: f64, gbit: f64| {
        if gbit > 0.0 {
            cpu / (gbit * seconds as f64)
        } else {
            f64::NAN
        }
    };
    rows.push((
        "TCP over 3 hops (iperf3)".into(),
        format!("{ours_gbit:.2} Gbit/s"),
        format!("Yggdrasil {ygg_gbit:.2} Gbit/s; kernel {raw_gbit:.2}"),
        format!("{:.2}x Yggdrasil", ours_gbit / ygg_gbit),
    ));
    rows.push((
        "CPU per Gbit (all daemons)".into(),
        format!("{:.2} core-s/Gbit", per_gbit(ours_cpu, ours_gbit)),
        format!("Yggdrasil {:.2}", per_gbit(ygg_cpu, ygg_gbit)),
        format!(
            "{:.2}x",
            per_gbit(ours_cpu, ours_gbit) / per_gbit(ygg_cpu, ygg_gbit)
        ),
    ));

    if args.iter().any(|arg| arg == "--throughput-only") {
        for (label, ours, theirs, ratio) in rows {
            println!("{label:<48} {ours:<16} {theirs:<44} {ratio}");
        }
        return;
    }

    // ---- failover on a 6-node ring ----
    let mut path_checks: Vec<String> = Vec::new();
    let idle_kinds;
    let mut ours_kill = Vec::new();
    let mut ours_down = Vec::new();
    let ours_idle;
    {
        eprintln!("failover and idle: x0tta6bl4");
        let mut mesh = NetnsMesh::start(&binary, 6, &ring(6), "").expect("our ring");
        let _ = mesh.wait_converged(Duration::from_secs(30));
        std::thread::sleep(IDLE_SETTLE);
        (ours_idle, idle_kinds) = our_idle_traffic(&mesh, idle_window);
        let target = mesh.nodes()[3].id.overlay_addr().to_string();
        let namespace = mesh.nodes()[0].namespace.clone();
        for _ in 0..reps {
            let _ = mesh.wait_converged(Duration::from_secs(30));
            let relay = mesh.next_hop(0, 3).unwrap_or(1);
            let (on_path, rise) =
                relay_on_path(&namespace, &mesh.nodes()[relay].namespace, &target);
            path_checks.push(format!(
                "x0tta6bl4 kill: relay node {} {} ({rise} packets on its veths during 50 pings)",
                relay + 1,
                if on_path {
                    "on the path"
                } else {
                    "NOT on the path"
                }
            ));
            ours_kill.push(outage(&namespace, &target, || mesh.kill(relay)));
            let _ = mesh.launch(relay);
            let _ = mesh.wait_converged(Duration::from_secs(30));
            let relay = mesh.next_hop(0, 3).unwrap_or(1);
            let (on_path, rise) =
                relay_on_path(&namespace, &mesh.nodes()[relay].namespace, &target);
            path_checks.push(format!(
                "x0tta6bl4 links down: relay node {} {} ({rise} packets on its veths during 50 pings)",
                relay + 1,
                if on_path { "on the path" } else { "NOT on the path" }
            ));
            ours_down.push(outage(&namespace, &target, || {
                let _ = mesh.set_links(relay, false);
            }));
            let _ = mesh.set_links(relay, true);
        }
    }
    let mut peer_runs =
        |name: &str, start: &dyn Fn() -> Peers| -> (Vec<f64>, Vec<f64>, f64) {
            eprintln!("failover and idle: {name}");
            let (mut kill, mut down) = (Vec::new(), Vec::new());
            let peers = start();
            if !wait_ping(&peers.topo.names[0], &peers.addresses[3], PEER_CONVERGE) {
                eprintln!(
                    "{name}: never reachable; routes of node 1: {}",
                    ns_sh(&peers.topo.names[0], &["ip", "-6", "route"])
                );
            }
            std::thread::sleep(IDLE_SETTLE);
            let idle = idle_bytes(&peers.topo.names, idle_window);
            drop(peers);
            for _ in 0..reps {
                let mut peers = start();
                wait_ping(&peers.topo.names[0], &peers.addresses[3], PEER_CONVERGE);
                let address = peers.addresses[3].clone();
                let (relay, on_path, rise) = relay_by_counters(&peers.topo, &address);
                path_checks.push(format!(
                    "{name} kill: relay node {} {} ({rise} packets on its veths during 50 pings)",
                    relay + 1,
                    if on_path {
                        "on the path"
                    } else {
                        "NOT on the path"
                    }
                ));
                let namespace = peers.topo.names[0].clone();
                kill.push(outage(&namespace, &address, || peers.kill(relay)));
                drop(peers);
                let peers = start();
                wait_ping(&peers.topo.names[0], &peers.addresses[3], PEER_CONVERGE);
                let (relay, on_path, rise) = relay_by_counters(&peers.topo, &address);
                path_checks.push(format!(
                "{name} links down: relay node {} {} ({rise} packets on its veths during 50 pings)",
                relay + 1,
                if on_path { "on the path" } else { "NOT on the path" }
            ));
                down.push(outage(&namespace, &address, || {
                    peers.topo.set_links(relay, false)
                }));
                drop(peers);
            }
            (kill, down, idle)
        };
    let (ygg_kill, ygg_down, ygg_idle) =
        peer_runs("Yggdrasil", &|| start_yggdrasil("y", 6, &ring(6)));
    let (babel_kill, babel_down, babel_idle) = peer_runs("babeld (0.5 s hellos)", &|| {
        start_babeld("b", 6, &ring(6), "0.5")
    });
    // Idle traffic at an equal hello rate: babeld with 100 ms hellos, the interval of our probes.
    let babel_idle_equal = babeld_idle_at_our_rate(idle_window);
    let best_peer = |a: f64, b: f64| a.min(b);
    for (label, ours, ygg, babel) in [
        (
            "outage, relay SIGKILLed, links up (median ms)",
            median(ours_kill.clone()),
            median(ygg_kill),
            median(babel_kill),
        ),
        (
            "outage, relay's links down (median ms)",
            median(ours_down.clone()),
            median(ygg_down),
            median(babel_down),
        ),
    ] {
        rows.push((
            label.into(),
            format!("{ours:.0} ms"),
            format!("Yggdrasil {ygg:.0} ms; babeld {babel:.0} ms"),
            format!("{:.2}x the best peer", ours / best_peer(ygg, babel)),
        ));
    }
    rows.push((
        "idle control tx per node (ours: 100 ms probes)".into(),
        format!("{ours_idle:.0} B/s"),
        format!("babeld 100 ms hellos {babel_idle_equal:.0} B/s"),
        format!("{:.2}x babeld at equal rate", ours_idle / babel_idle_equal),
    ));
    rows.push((
        "idle control tx per node, other rates".into(),
        String::new(),
        format!("babeld 500 ms hellos {babel_idle:.0} B/s; Yggdrasil {ygg_idle:.0} B/s"),
        format!(
            "{:.2}x babeld 500 ms, {:.2}x Yggdrasil",
            ours_idle / babel_idle,
            ours_idle / ygg_idle
        ),
    ));

    println!(
        "x0tta6bl4 vs Yggdrasil and babeld, network namespaces on this machine ({seconds} s iperf3, {reps} failover repetitions)"
    );
    println!(
        "{:<48} {:<16} {:<44} ratio ours/theirs",
        "measure", "x0tta6bl4", "peers"
    );
    for (label, ours, theirs, ratio) in rows {
        println!("{label:<48} {ours:<16} {theirs:<44} {ratio}");
    }
    println!("outage samples (ms): ours kill {ours_kill:?}, ours links down {ours_down:?}");
    println!(
        "hello rates: x0tta6bl4 probes every 100 ms per link; babeld rows as labelled; Yggdrasil defaults"
    );
    println!("{idle_kinds}");
    println!(
        "note: a SIGKILLed babeld leaves its routes in the relay's kernel, which keeps forwarding; its 'relay killed' outage measures that, not a reroute"
    );
    for check in &path_checks {
        println!("{check}");
    }
}
