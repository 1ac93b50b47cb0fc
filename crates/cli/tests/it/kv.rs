//! The key-value store over the mesh, with real daemon processes on loopback: a 4-node ring
//! with 3 voters, where the non-voter forwards to the leader and Raft traffic between the two
//! voters that are not neighbours is relayed; the leader is killed and writes resume with no
//! acknowledged write lost; bad input gets clear 4xx answers; a corrupted store is refused.

use std::time::Duration;

use cli::client::{ApiClient, ClientError};
use cli::localnet::{LocalNet, LocalNetOptions};

use crate::support::{binary, eventually, one_line_failure, run};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A client that outlives the node's own request timeout (5 s), so the node answers first.
fn client(net: &LocalNet, position: usize) -> ApiClient {
    ApiClient::new(&net.node(position).api_url(), Duration::from_secs(15)).unwrap()
}

fn status_of(error: &ClientError) -> u16 {
    match error {
        ClientError::Status { status, .. } => *status,
        other => panic!("expected an HTTP error status, got {other}"),
    }
}

/// Position of the current leader, as the non-voter learns it from a voter.
fn leader(net: &LocalNet, asking: usize) -> usize {
    eventually("a leader", TIMEOUT, || {
        let view = client(net, asking).raft_status().ok()?;
        net.position_of(&view.leader?)
    })
}

/// Puts until one is acknowledged (elections answer with retryable errors meanwhile).
fn put_until_ok(client: &ApiClient, key: &str, value: &str) -> u64 {
    eventually(&format!("put {key} to succeed"), TIMEOUT, || {
        match client.kv_put(key, value.as_bytes(), "") {
            Ok(view) => Some(view.revision),
            Err(error) => {
                let status = status_of(&error);
                assert!(
                    status == 503 || status == 504,
                    "only retryable errors while the group recovers: {error}"
                );
                std::thread::sleep(Duration::from_millis(50));
                None
            }
        }
    })
}

/// Whether an error says the write may or may not have been applied (a link to the leader
/// dropped while the request was in flight, which a loaded machine sometimes sees).
fn ambiguous(error: &ClientError) -> bool {
    error
        .to_string()
        .contains("may or may not have been applied")
}

/// Repeats `call` while its answer is ambiguous; for writes whose repetition the test allows
/// for (a fresh key, or a result it accepts either way).
fn settled<T>(mut call: impl FnMut() -> Result<T, ClientError>) -> Result<T, ClientError> {
    let mut attempts = 0;
    loop {
        match call() {
            Err(error) if ambiguous(&error) && attempts < 5 => {
                attempts += 1;
                eprintln!("ambiguous answer, repeating: {error}");
            }
            other => return other,
        }
    }
}

/// Runs `ctl` while it answers that its write may or may not have been applied.
fn run_settled(args: &[&str]) -> std::process::Output {
    let mut output = run(args);
    for _ in 0..5 {
        if !String::from_utf8_lossy(&output.stderr).contains("may or may not have been applied") {
            break;
        }
        output = run(args);
    }
    output
}

#[test]
fn ring_with_three_voters_forwards_survives_the_leader_and_refuses_bad_input() {
    // Ring 1-2-3-4-1 (positions 0..3); voters are nodes 1, 2, 3, so nodes 1 and 3 are two hops
    // apart and their Raft traffic is relayed through node 2 or node 4 (a non-voter).
    let edges = [(0, 1), (1, 2), (2, 3), (3, 0)];
    let mut net = LocalNet::create(&binary(), 4, &edges, &LocalNetOptions::default()).unwrap();
    net.enable_kv(&[0, 1, 2], "").unwrap();
    net.start_all().unwrap();
    net.wait_healthy(TIMEOUT, &|| false).unwrap();
    net.wait_converged(TIMEOUT, &|| false).unwrap();
    let non_voter = 3;
    let first_leader = leader(&net, non_voter);
    assert!(
        first_leader < 3,
        "a voter leads, not node {}",
        first_leader + 1
    );
    let view = client(&net, non_voter).raft_status().unwrap();
    assert_eq!(view.voters.len(), 3, "{view:?}");
    assert!(!view.voters.contains(&net.node(non_voter).id));

    // The non-voter's put is forwarded to the leader; another node reads it linearizably.
    put_until_ok(&client(&net, non_voter), "greeting", "hello mesh");
    let reader = (first_leader + 1) % 3;
    let (value, revision) = client(&net, reader)
        .kv_get("greeting", false)
        .unwrap()
        .expect("the key is there");
    assert_eq!(value, b"hello mesh");
    assert!(revision > 0);
    let read_on_non_voter = client(&net, non_voter).kv_get("greeting", false).unwrap();
    assert_eq!(
        read_on_non_voter.map(|(v, _)| v),
        Some(b"hello mesh".to_vec())
    );

    // Acknowledged writes through every node.
    let mut acknowledged = Vec::new();
    for index in 0..20 {
        let key = format!("acked/{index:02}");
        let value = format!("value {index}");
        settled(|| client(&net, index % 4).kv_put(&key, value.as_bytes(), "")).unwrap();
        acknowledged.push((key, value));
    }
    let listed = client(&net, non_voter)
        .kv_list("acked/", 100, false)
        .unwrap();
    assert_eq!(listed.items.len(), 20);

    // A watch on a voter sees a change made through another node.
    let (events, seen) = std::sync::mpsc::channel();
    let watcher = client(&net, reader);
    std::thread::spawn(move || {
        let _ = watcher.kv_watch("watched/", |line| {
            let _ = events.send(line);
            false
        });
    });
    // The watch is registered when the node takes the request, which the client cannot see:
    // keep writing until a change arrives.
    let line = eventually("the watch to deliver a change", TIMEOUT, || {
        if let Err(error) = client(&net, non_voter).kv_put("watched/one", b"seen", "") {
            assert!(ambiguous(&error), "{error}");
        }
        seen.recv_timeout(Duration::from_millis(200)).ok()
    });
    assert_eq!(line.kind, "put");
    assert_eq!(
        line.key.as_deref(),
        Some("d2F0Y2hlZC9vbmU="),
        "base64 of watched/one"
    );
    assert_eq!(line.value.as_deref(), Some("c2Vlbg=="), "base64 of seen");
    let watch_on_non_voter: Result<serde_json::Value, _> =
        client(&net, non_voter).get("/api/v1/kv?prefix=a&watch=true");
    assert_eq!(status_of(&watch_on_non_voter.unwrap_err()), 400);

    // The same through `ctl`: human output, --json, and one-line errors.
    let api = net.node(non_voter).api_url();
    let put = run_settled(&["ctl", "--api", &api, "kv", "put", "cli/key", "cli value"]);
    assert!(put.status.success(), "{put:?}");
    assert!(String::from_utf8_lossy(&put.stdout).starts_with("OK revision "));
    let get = run(&["ctl", "--api", &api, "kv", "get", "cli/key"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "cli value\n");
    let listed = run(&["ctl", "--api", &api, "kv", "ls", "cli/"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("cli value"));
    let raft = run(&["ctl", "--api", &api, "--json", "raft", "status"]);
    let raft: serde_json::Value = serde_json::from_slice(&raft.stdout).unwrap();
    assert_eq!(raft["voters"].as_array().map(Vec::len), Some(3));
    let human = run(&["ctl", "--api", &api, "raft", "status"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("commit index"));
    let missing = one_line_failure(&run(&["ctl", "--api", &api, "kv", "get", "no/such/key"]));
    assert!(missing.contains("not found"), "{missing}");
    let cas = one_line_failure(&run_settled(&[
        "ctl",
        "--api",
        &api,
        "kv",
        "cas",
        "no/such/key",
        "new",
        "--expected",
        "old",
    ]));
    assert!(cas.contains("does not exist"), "{cas}");

    // Bad input: clear 4xx answers.
    let big_key = "k".repeat(2000);
    let error = client(&net, 0).kv_put(&big_key, b"v", "").unwrap_err();
    assert_eq!(status_of(&error), 413, "{error}");
    assert!(error.to_string().contains("exceeds the limit"), "{error}");
    let error = client(&net, non_voter)
        .kv_put("big", &vec![7u8; 70_000], "")
        .unwrap_err();
    assert_eq!(status_of(&error), 413, "{error}");
    // A compare-and-swap on a missing key never writes, so repeating it is harmless.
    let cas =
        settled(|| client(&net, non_voter).kv_cas("missing-key", Some(b"old"), b"new")).unwrap();
    assert!(!cas.succeeded);
    assert_eq!(cas.current, None);
    assert!(
        cas.error
            .as_deref()
            .unwrap_or_default()
            .contains("does not exist"),
        "{cas:?}"
    );
    // Repeated after an ambiguous answer, it finds its own earlier swap.
    let swapped =
        settled(|| client(&net, 1).kv_cas("greeting", Some(b"hello mesh"), b"swapped")).unwrap();
    assert!(
        swapped.succeeded || swapped.current.as_deref() == Some("c3dhcHBlZA=="),
        "{swapped:?}"
    );
    let malformed: Result<serde_json::Value, _> =
        client(&net, 1).post("/api/v1/kv/greeting", b"{not json");
    assert_eq!(status_of(&malformed.unwrap_err()), 400);
    let unknown: Result<serde_json::Value, _> = client(&net, 1).get("/api/v1/kv?prefx=a");
    assert_eq!(status_of(&unknown.unwrap_err()), 400);
    let bad_voter: Result<serde_json::Value, _> =
        client(&net, 1).post("/api/v1/raft/voters/not-a-node", b"");
    assert_eq!(status_of(&bad_voter.unwrap_err()), 400);

    // Membership: the non-voter becomes a voter (it already runs the store), then leaves again.
    let fourth = net.node(non_voter).id;
    let added = client(&net, 0).raft_voter(&fourth, true).unwrap();
    assert_eq!(added.voters.len(), 4, "{added:?}");
    assert!(added.voters.contains(&fourth));
    let twice = client(&net, 0).raft_voter(&fourth, true).unwrap_err();
    assert_eq!(status_of(&twice), 409, "{twice}");
    let removed = client(&net, 1).raft_voter(&fourth, false).unwrap();
    assert_eq!(removed.voters.len(), 3, "{removed:?}");
    assert!(!removed.voters.contains(&fourth));

    // Kill the leader: writes resume through the survivors, nothing acknowledged is lost.
    let first_leader = leader(&net, non_voter);
    net.kill(first_leader).unwrap();
    let survivor = (first_leader + 1) % 3;
    put_until_ok(&client(&net, non_voter), "after-failover", "still here");
    let new_leader = leader(&net, non_voter);
    assert_ne!(new_leader, first_leader);
    for (key, value) in &acknowledged {
        let (stored, _) = client(&net, survivor)
            .kv_get(key, false)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(stored, value.as_bytes(), "{key}");
    }
    let (value, _) = client(&net, non_voter)
        .kv_get("greeting", false)
        .unwrap()
        .expect("swapped value survives");
    assert_eq!(value, b"swapped");

    // With a second voter gone there is no quorum: requests get a retryable error, not a hang.
    net.kill(new_leader).unwrap();
    let error = client(&net, non_voter)
        .kv_put("no-quorum", b"x", "")
        .unwrap_err();
    let status = status_of(&error);
    assert!(status == 503 || status == 504, "{error}");
    assert!(error.to_string().contains("retry"), "{error}");
}

#[test]
fn a_corrupted_store_is_refused_and_said_so() {
    let edges = [(0, 1), (1, 2)];
    let mut net = LocalNet::create(&binary(), 3, &edges, &LocalNetOptions::default()).unwrap();
    net.enable_kv(&[0, 1, 2], "").unwrap();
    let store = net.node(2).dir.join("data").join("kv");
    std::fs::create_dir_all(&store).unwrap();
    for file in ["log.redb", "state.redb"] {
        std::fs::write(store.join(file), vec![0x5a; 8192]).unwrap();
    }
    net.start_all().unwrap();
    net.wait_healthy(TIMEOUT, &|| false).unwrap();
    let error = eventually("the corrupted node to refuse", TIMEOUT, || {
        match client(&net, 2).kv_get("anything", true) {
            Err(error) if error.to_string().contains("refuses to serve") => Some(error),
            _ => None,
        }
    });
    assert_eq!(status_of(&error), 503);
    let log = std::fs::read_to_string(net.node(2).log_path()).unwrap();
    assert!(
        log.contains("key-value store refused"),
        "the log says why: {log}"
    );
    // The other two voters still form a majority and serve.
    net.wait_converged(TIMEOUT, &|| false).unwrap();
    put_until_ok(&client(&net, 0), "k", "v");
    let (value, _) = client(&net, 1).kv_get("k", false).unwrap().unwrap();
    assert_eq!(value, b"v");
}
