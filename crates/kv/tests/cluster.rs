//! Cluster behaviour on the in-memory transport with real redb files: the API, errors, leases,
//! watches, snapshots and log purge, membership, crash and restart, corruption.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kv::cluster::Cluster;
use kv::command::{LimitError, Rejection};
use kv::limits::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use kv::{KvError, KvNode, Read, WatchEvent};

const WAIT: Duration = Duration::from_secs(10);

async fn cluster(dir: &tempfile::TempDir, ids: &[u64], snapshot_every: u64) -> Cluster {
    Cluster::start(dir.path(), ids, move |c| {
        c.heartbeat = Duration::from_millis(50);
        c.election_timeout = (Duration::from_millis(300), Duration::from_millis(500));
        c.request_timeout = Duration::from_secs(3);
        c.snapshot_every = snapshot_every;
        c.logs_kept_after_snapshot = snapshot_every.min(10);
    })
    .await
    .expect("cluster starts")
}

async fn leader(c: &Cluster) -> Arc<KvNode> {
    let id = c.wait_leader(WAIT).await.expect("leader elected");
    c.node(id).expect("leader runs")
}

/// Some node other than the leader.
fn follower_of(c: &Cluster, leader: &KvNode) -> u64 {
    c.ids()
        .into_iter()
        .find(|id| *id != leader.id())
        .expect("a follower exists")
}

/// Retries a write until it succeeds, following leader hints, for tests that cause elections.
async fn put_anywhere(c: &Cluster, key: &[u8], value: &[u8]) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let id = c.wait_leader(WAIT).await.expect("leader");
        if let Some(node) = c.node(id) {
            match node.put(key, value, None).await {
                Ok(rev) => return rev,
                Err(e) => assert!(e.is_retryable(), "unexpected error {e}"),
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "write never succeeded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_operations_replicate_and_follow_the_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1, 2, 3], 10_000).await;
    let l = leader(&c).await;
    let r1 = l.put(b"a/1", b"one", None).await.expect("put");
    let r2 = l.put(b"a/2", b"two", None).await.expect("put");
    assert!(r2 > r1, "revisions grow: {r1} {r2}");
    let got = l
        .get(b"a/1", Read::Linearizable)
        .await
        .expect("get")
        .expect("present");
    assert_eq!((got.value.as_slice(), got.revision), (&b"one"[..], r1));

    // CAS: expected absence on a present key fails and reports the current value.
    let cas = l.cas(b"a/1", None, b"x").await.expect("cas");
    assert!(!cas.succeeded);
    assert_eq!(cas.current.as_deref(), Some(&b"one"[..]));
    let cas = l.cas(b"a/1", Some(b"one"), b"uno").await.expect("cas");
    assert!(cas.succeeded);
    let cas = l
        .cas(b"missing", Some(b"v"), b"w")
        .await
        .expect("cas on a missing key");
    assert_eq!((cas.succeeded, cas.current), (false, None));
    let cas = l.cas(b"fresh", None, b"v").await.expect("cas create");
    assert!(cas.succeeded);

    let (existed, _) = l.delete(b"a/2").await.expect("delete");
    assert!(existed);
    let (existed, _) = l.delete(b"a/2").await.expect("delete again");
    assert!(!existed);

    // Followers catch up; a stale read there sees the value once applied.
    let follower = c.node(follower_of(&c, &l)).expect("follower runs");
    let mut seen = None;
    for _ in 0..200 {
        seen = follower.get(b"a/1", Read::Stale).await.expect("stale get");
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.map(|v| v.value), Some(b"uno".to_vec()));

    // A follower refuses writes and linearizable reads with a hint naming the leader.
    for err in [
        follower
            .put(b"k", b"v", None)
            .await
            .expect_err("follower write"),
        follower
            .get(b"k", Read::Linearizable)
            .await
            .expect_err("follower read")
            .clone(),
    ] {
        assert_eq!(
            err,
            KvError::NotLeader {
                leader: l.id(),
                address: kv::cluster::address(l.id())
            }
        );
        assert!(err.is_retryable());
    }

    // Limits.
    let long_key = vec![b'k'; MAX_KEY_BYTES + 1];
    assert_eq!(
        l.put(&long_key, b"v", None).await,
        Err(KvError::Limit(LimitError::KeyTooLong(MAX_KEY_BYTES + 1)))
    );
    let big = vec![0u8; MAX_VALUE_BYTES + 1];
    assert_eq!(
        l.put(b"k", &big, None).await,
        Err(KvError::Limit(LimitError::ValueTooLong(
            MAX_VALUE_BYTES + 1
        )))
    );
    let max = vec![7u8; MAX_VALUE_BYTES];
    l.put(&vec![b'k'; MAX_KEY_BYTES], &max, None)
        .await
        .expect("values at the limit are fine");
    assert!(matches!(
        l.list(b"", None, 0, Read::Stale).await,
        Err(KvError::Limit(_))
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_a_prefix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1], 10_000).await;
    let l = leader(&c).await;
    for i in 0..25u32 {
        l.put(format!("p/{i:02}").as_bytes(), b"v", None)
            .await
            .expect("put");
    }
    l.put(b"q/0", b"v", None).await.expect("put");
    l.put(b"o/9", b"v", None).await.expect("put");
    let mut keys = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = l
            .list(b"p/", after.as_deref(), 10, Read::Linearizable)
            .await
            .expect("list");
        assert!(page.items.len() <= 10);
        keys.extend(
            page.items
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).expect("utf8")),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("p/{i:02}")).collect();
    assert_eq!(keys, want);
    c.shutdown().await;
}

/// Waits until a stale read on `node` sees `key`.
async fn appears(node: &KvNode, key: &[u8]) -> bool {
    for _ in 0..500 {
        if node.get(key, Read::Stale).await.expect("get").is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn next(w: &mut kv::Watch) -> WatchEvent {
    tokio::time::timeout(WAIT, w.next())
        .await
        .expect("event in time")
        .expect("event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_changes_under_its_prefix_in_revision_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1, 2, 3], 10_000).await;
    let l = leader(&c).await;
    let follower = c.node(follower_of(&c, &l)).expect("follower runs");
    let mut watch = follower.watch(b"w/").expect("watch");
    let r1 = l.put(b"w/a", b"1", None).await.expect("put");
    l.put(b"other", b"x", None).await.expect("put");
    let (_, r2) = l.delete(b"w/a").await.expect("delete");
    assert_eq!(
        next(&mut watch).await,
        WatchEvent::Change {
            key: b"w/a".to_vec(),
            value: Some(b"1".to_vec()),
            revision: r1
        }
    );
    assert_eq!(
        next(&mut watch).await,
        WatchEvent::Change {
            key: b"w/a".to_vec(),
            value: None,
            revision: r2
        }
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_on_every_replica_through_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1, 2, 3], 10_000).await;
    let l = leader(&c).await;
    let lease = l
        .lease_grant(Duration::from_millis(300))
        .await
        .expect("grant");
    l.put(b"eph/1", b"v", Some(lease))
        .await
        .expect("put with lease");
    l.put(b"eph/2", b"v", Some(lease))
        .await
        .expect("put with lease");
    l.put(b"keep", b"v", None).await.expect("put");
    assert_eq!(
        l.put(b"eph/3", b"v", Some(9_999_999)).await,
        Err(KvError::Rejected(Rejection::LeaseNotFound(9_999_999)))
    );
    let mut gone = false;
    for _ in 0..300 {
        if l.get(b"eph/1", Read::Linearizable)
            .await
            .expect("get")
            .is_none()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "leased key never expired");
    // Same deletions at the same revision on every replica.
    l.put(b"barrier", b"v", None).await.expect("put");
    for id in c.ids() {
        let node = c.node(id).expect("running");
        assert!(appears(&node, b"barrier").await);
        assert!(
            node.get(b"eph/1", Read::Stale)
                .await
                .expect("get")
                .is_none()
        );
        assert!(
            node.get(b"eph/2", Read::Stale)
                .await
                .expect("get")
                .is_none()
        );
        assert!(node.get(b"keep", Read::Stale).await.expect("get").is_some());
    }
    // Revoking an unknown lease deletes nothing; a granted one takes its keys now.
    let lease = l.lease_grant(Duration::from_secs(60)).await.expect("grant");
    l.put(b"rv", b"v", Some(lease)).await.expect("put");
    assert_eq!(l.lease_revoke(lease).await, Ok(1));
    assert_eq!(l.lease_revoke(lease).await, Ok(0));
    assert!(
        l.get(b"rv", Read::Linearizable)
            .await
            .expect("get")
            .is_none()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_behind_a_purged_log_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1, 2, 3], 50).await;
    let l = leader(&c).await;
    let lagging = follower_of(&c, &l);
    c.crash(lagging).await;
    for i in 0..400u32 {
        l.put(format!("s/{i}").as_bytes(), &i.to_le_bytes(), None)
            .await
            .expect("put");
    }
    // The leader snapshotted and purged its log past what the lagging node has.
    let mut purged = None;
    for _ in 0..200 {
        purged = l.raft().metrics().borrow().purged;
        if purged.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(purged.is_some(), "leader never purged its log");
    c.restart(lagging).await.expect("restart");
    let node = c.node(lagging).expect("running");
    let ok = appears(&node, b"s/399").await;
    assert!(ok, "restarted node never caught up");
    assert!(
        node.raft().metrics().borrow().snapshot.is_some(),
        "caught up without a snapshot"
    );
    let v = node
        .get(b"s/123", Read::Stale)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(v.value, 123u32.to_le_bytes());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_elects_a_new_leader_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1, 2, 3], 10_000).await;
    let l = leader(&c).await;
    l.put(b"durable", b"v1", None).await.expect("put");
    let old = l.id();
    drop(l);
    c.crash(old).await;
    let rev = put_anywhere(&c, b"after", b"v2").await;
    let l = leader(&c).await;
    assert_ne!(l.id(), old);
    assert!(rev > 0);
    let v = l
        .get(b"durable", Read::Linearizable)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(v.value, b"v1");
    // The crashed node comes back from its file and converges.
    c.restart(old).await.expect("restart");
    let node = c.node(old).expect("running");
    let ok = appears(&node, b"after").await;
    assert!(ok, "restarted node did not converge");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_answers_with_errors_not_hangs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1, 2, 3], 10_000).await;
    let l = leader(&c).await;
    c.network().isolate(l.id(), &c.ids());
    // The old leader cannot reach a quorum: the write and the read end with an error in bounded
    // time instead of hanging.
    let started = tokio::time::Instant::now();
    let w = l.put(b"k", b"v", None).await;
    assert!(matches!(w, Err(ref e) if e.is_retryable()), "{w:?}");
    let r = l.get(b"k", Read::Linearizable).await;
    assert!(matches!(r, Err(ref e) if e.is_retryable()), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    c.network().heal();
    put_anywhere(&c, b"k2", b"v").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_adds_a_learner_then_promotes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1, 2, 3], 10_000).await;
    let l = leader(&c).await;
    l.put(b"before", b"v", None).await.expect("put");
    c.restart(4).await.expect("node 4 starts empty");
    l.add_learner(4, &kv::cluster::address(4))
        .await
        .expect("add learner");
    let status = l.status().await.expect("status");
    assert!(status.learners.contains(&4), "{status:?}");
    l.change_voters(BTreeSet::from([1, 2, 3, 4]))
        .await
        .expect("promote");
    let status = l.status().await.expect("status");
    assert_eq!(status.voters, BTreeSet::from([1, 2, 3, 4]));
    assert_eq!(status.leader, Some(l.id()));
    assert!(status.commit_index >= status.last_applied && status.last_applied.is_some());
    let node4 = c.node(4).expect("running");
    assert!(
        node4
            .get(b"before", Read::Stale)
            .await
            .expect("get")
            .is_some()
    );
    // Shrink back to three voters.
    let keep: BTreeSet<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != 4).collect();
    l.change_voters(keep.clone()).await.expect("remove voter");
    assert_eq!(l.status().await.expect("status").voters, keep);
    let empty = BTreeMap::from([(9, "x".to_string())]);
    // Initializing an already initialized group is a no-op, not an error.
    l.initialize(empty).await.expect("idempotent");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_store_refuses_to_serve() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1], 10_000).await;
    leader(&c).await.put(b"k", b"v", None).await.expect("put");
    c.crash(1).await;
    // The files must be closed before they are damaged, or a late close would rewrite them.
    let mut closed = false;
    for _ in 0..3000 {
        if !matches!(
            kv::store::Store::open(&c.path(1)),
            Err(kv::store::OpenError::Busy(_))
        ) {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "a crashed node's store stayed open");
    let path = c.path(1).join("log.redb");
    let mut bytes = std::fs::read(&path).expect("read file");
    for b in bytes.iter_mut().take(4096) {
        *b ^= 0xFF;
    }
    std::fs::write(&path, bytes).expect("write file");
    match c.restart(1).await {
        Err(KvError::Corrupted(msg)) => assert!(msg.contains("corrupted"), "{msg}"),
        other => panic!("corrupted store must be refused, got {other:?}"),
    }
    assert!(c.node(1).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_is_told_to_relist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = cluster(&dir, &[1], 10_000).await;
    let l = leader(&c).await;
    let mut watch = l.watch(b"lag/").expect("watch");
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let l = l.clone();
            tokio::spawn(async move {
                for i in 0..(kv::limits::WATCH_BUFFER / 32 + 8) {
                    l.put(format!("lag/{w}/{i}").as_bytes(), b"v", None)
                        .await
                        .expect("put");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    // More changes than the buffer holds were made while nobody read: the watcher learns it
    // lost events instead of silently missing them.
    match tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("answer in time")
    {
        Err(kv::WatchError::Lagged(n)) => assert!(n > 0),
        other => panic!("expected a lag report, got {other:?}"),
    }
    c.shutdown().await;
}
