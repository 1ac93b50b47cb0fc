//! Integration tests of the HTTP API against a real node on loopback.

use std::net::SocketAddr;

use node::{Node, NodeConfig, StatusView};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A real node (initialised in a temp dir, UDP on 127.0.0.1:0) with its API on 127.0.0.1:0.
struct Served {
    api: SocketAddr,
    stop_node: Option<oneshot::Sender<()>>,
    node_task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn serve_node() -> Served {
    serve_node_with("").await
}

/// A node with extra sections under `node_config`.
async fn serve_node_with(sections: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("node.yaml");
    std::fs::write(
        &config_path,
        format!("node_config:\n  network: {{ listen: '127.0.0.1:0', tun: 'off' }}\n  api: {{ listen: '127.0.0.1:0' }}\n{sections}"),
    )
    .unwrap();
    let config = NodeConfig::load(&config_path).unwrap();
    node::init(&config, None).unwrap();
    node::membership::ca_init(&config, "api.test", 3600, now_unix()).unwrap();
    let (node, handle) = Node::start(&config).unwrap();
    let (stop_node, stopped) = oneshot::channel::<()>();
    let node_task = tokio::spawn(async move {
        node.run(async move { drop(stopped.await) }).await.unwrap();
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(api::run(listener, handle, std::future::pending()));
    Served {
        api,
        stop_node: Some(stop_node),
        node_task,
        _dir: dir,
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// GETs `path` with a blocking client on a blocking thread; returns status and body.
async fn get(api: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let url = format!("http://{api}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call().unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_json().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn health_status_peers_routes_answer_with_json() {
    let served = serve_node().await;
    let (code, health) = get(served.api, "/health").await;
    assert_eq!(code, 200);
    assert_eq!(health["status"], "ok");

    let (code, status) = get(served.api, "/api/v1/status").await;
    assert_eq!(code, 200);
    let status: StatusView = serde_json::from_value(status).unwrap();
    assert_eq!(health["node_id"], status.node_id.to_string());
    assert!(status.listen.ip().is_loopback() && status.listen.port() != 0);
    for counter in [
        "dropped_malformed",
        "dropped_version",
        "dropped_oversized",
        "bytes_tx",
        "packets_rx",
    ] {
        assert!(
            status.router.contains_key(counter),
            "status lacks router counter {counter}"
        );
    }

    let (code, peers) = get(served.api, "/api/v1/peers").await;
    assert_eq!(
        (code, peers),
        (200, serde_json::json!([])),
        "a node without peers has none"
    );
    let (code, routes) = get(served.api, "/api/v1/routes").await;
    assert_eq!((code, routes), (200, serde_json::json!([])));
}

#[tokio::test]
async fn garbage_from_the_network_and_from_a_member_is_counted_in_status() {
    let served = serve_node().await;
    let (_, before) = get(served.api, "/api/v1/status").await;
    let before: StatusView = serde_json::from_value(before).unwrap();
    // Plain UDP garbage at the link port: QUIC discards it and the node carries on.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"certainly not a packet", before.listen)
        .unwrap();

    // A member with a valid SVID links and sends malformed and oversized routing packets.
    let ca = identity::CertificateAuthority::load(&served._dir.path().join("data/ca")).unwrap();
    let keys = identity::KeySet::generate().unwrap();
    let svid = ca.issue_own(&keys, now_unix(), 3600).unwrap();
    let bundle = ca.bundle().unwrap();
    let store = identity::tls::CertStore::new(&keys, &svid, &bundle.ca_certificate).unwrap();
    let (member, mut events) = transport::LinkEndpoint::bind(
        transport::LinkSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            kx: identity::tls::KxPolicy::default(),
            accepts_joins: false,
        },
        identity::VerifierState::new(bundle, identity::Policy::default()),
        store,
    )
    .unwrap();
    member.dial(before.listen, Some(before.node_id));
    let connection = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), events.recv()).await {
            Ok(Some(transport::LinkEvent::Up { connection, .. })) => break connection,
            Ok(Some(_)) => continue,
            other => panic!("no link: {other:?}"),
        }
    };
    let mut wrong_version = vec![b'x', b'6', 9, 0];
    wrong_version.extend_from_slice(&keys.node_id().0);
    assert!(member.send_datagram(&connection, b"x6 certainly not a packet"));
    assert!(member.send_datagram(&connection, &wrong_version));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, after) = get(served.api, "/api/v1/status").await;
        let after: StatusView = serde_json::from_value(after).unwrap();
        let dropped: u64 = ["dropped_malformed", "dropped_version", "dropped_oversized"]
            .iter()
            .map(|name| after.router[*name])
            .sum();
        if dropped >= 2 {
            assert!(after.router["dropped_version"] >= 1, "{:?}", after.router);
            assert_eq!(after.links["links_active"], 1, "{:?}", after.links);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drops never counted: {:?}",
            after.router
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn unknown_path_is_a_json_404_and_a_stopped_node_a_503() {
    let mut served = serve_node().await;
    let (code, body) = get(served.api, "/api/v2/nothing").await;
    assert_eq!(code, 404);
    assert_eq!(body["error"], "not found: /api/v2/nothing");

    served.stop_node.take().unwrap().send(()).unwrap();
    (&mut served.node_task).await.unwrap();
    let (code, body) = get(served.api, "/api/v1/status").await;
    assert_eq!(code, 503);
    assert_eq!(body["error"], "the node has stopped");
    let (code, _) = get(served.api, "/health").await;
    assert_eq!(code, 503);
}

/// Generous bound for a loaded machine; a test fails at it, it never passes by it.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_and_their_events_are_served_over_http_and_a_websocket() {
    let served = serve_node_with(
        // Resource thresholds at 100 %: the test machine's own load is not this test's subject.
        "  services:\n    - name: sleeper\n      command: [sleep, \"86400\"]\n      restart: { policy: healer }\n  mapk:\n    thresholds: { cpu: 100, memory: 100, disk: 100 }\n",
    )
    .await;
    let api = served.api;
    let (code, body) = get(api, "/api/v1/incidents?type=NOPE").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = get(api, "/api/v1/incidents/12345").await;
    assert_eq!(code, 404, "{body}");
    // Subscribe first, so the stream carries the whole incident.
    let (connected_tx, connected_rx) = std::sync::mpsc::channel::<()>();
    let events = tokio::task::spawn_blocking(move || {
        let (mut socket, _) =
            tungstenite::connect(format!("ws://{api}/api/v1/events")).expect("websocket");
        connected_tx.send(()).expect("test waits");
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_mut() {
            stream
                .set_read_timeout(Some(std::time::Duration::from_millis(200)))
                .expect("read timeout");
        }
        let deadline = std::time::Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            let text = match socket.read() {
                Ok(tungstenite::Message::Text(text)) => text,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => panic!("event stream ended: {e}; seen {seen:#?}"),
            };
            let event: serde_json::Value = serde_json::from_str(text.as_str()).expect("JSON");
            seen.push(event);
            let has_open = seen.iter().any(|e| {
                e["event"]["event"] == "incident_opened" && e["event"]["kind"] == "SERVICE_DOWN"
            });
            let has_restart = seen.iter().any(|e| {
                e["type"] == "action_started"
                    && e["request"]["action"]["action"] == "restart_service"
            });
            if has_open && has_restart {
                return seen;
            }
        }
        panic!("no SERVICE_DOWN incident and restart on the stream: {seen:#?}");
    });
    tokio::task::spawn_blocking(move || connected_rx.recv())
        .await
        .expect("join")
        .expect("the stream connected");
    // The service's pid, then its crash.
    let deadline = std::time::Instant::now() + PATIENCE;
    let pid = loop {
        let (_, status) = get(api, "/api/v1/status").await;
        if let Some(pid) = status["healing"]["services"][0]["pid"].as_i64() {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // SAFETY: plain syscall on the supervised service's own pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let seen = events.await.expect("stream task");
    assert!(!seen.is_empty());
    let record = loop {
        let (code, list) = get(api, "/api/v1/incidents?type=SERVICE_DOWN&state=resolved").await;
        assert_eq!(code, 200, "{list}");
        if let Some(record) = list.as_array().and_then(|l| l.first()).cloned() {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "{list:#}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        record["detected_unix_ms"].as_i64().unwrap() >= killed_ms - 1000,
        "{record:#}"
    );
    assert!(record["resolved_unix_ms"].as_i64() >= record["detected_unix_ms"].as_i64());
    let id = record["record_id"].as_i64().unwrap();
    let (code, one) = get(api, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(code, 200);
    assert_eq!(one["record_id"], id);
    assert_eq!(one["kind"], "SERVICE_DOWN");
    let (_, status) = get(api, "/api/v1/status").await;
    assert!(
        status["healing"]["repair"]["SERVICE_DOWN"]["mttd_ms_mean"].is_number(),
        "{status:#}"
    );
}
