//! Key-value benchmark on 3 voters over the in-memory transport with real redb files and
//! 256-byte values: sequential puts, 64-client puts, 64-client linearizable gets, and the time
//! until writes resume after the leader is killed. Prints the figures; never part of the tests.
//!
//! Run: `cargo bench -p kv --bench kv` (`KV_BENCH_SECS` sets each throughput phase, default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kv::cluster::Cluster;
use kv::{KvError, Read};

const NODES: [u64; 3] = [1, 2, 3];
const VALUE: [u8; 256] = [0x5A; 256];
const CLIENTS: usize = 64;
const KEYS: usize = 1000;
const SEQUENTIAL_PUTS: usize = 2000;
const KILLS: usize = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    println!(
        "{name:<34} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ops in {:.2} s)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.len(),
        elapsed.as_secs_f64()
    );
}

async fn leader(cluster: &Cluster) -> Arc<kv::KvNode> {
    let id = cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("leader elected");
    cluster.node(id).expect("leader runs")
}

async fn concurrent(cluster: &Cluster, secs: u64, reads: bool) -> (Vec<Duration>, Duration) {
    let node = leader(cluster).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let node = node.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = c;
                while Instant::now() < deadline {
                    let key = format!("bench/{:04}", i % KEYS);
                    let t = Instant::now();
                    let ok = if reads {
                        node.get(key.as_bytes(), Read::Linearizable).await.is_ok()
                    } else {
                        node.put(key.as_bytes(), &VALUE, None).await.is_ok()
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    }
                    i += CLIENTS;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    (all, started.elapsed())
}

/// Writes until one succeeds (following leader hints), returning when it did.
async fn first_write(cluster: &Cluster, key: &[u8]) -> Instant {
    let mut target = NODES[0];
    loop {
        if let Some(node) = cluster.node(target) {
            match node.put(key, &VALUE, None).await {
                Ok(_) => return Instant::now(),
                Err(KvError::NotLeader { leader, .. }) => {
                    target = leader;
                    continue;
                }
                Err(_) => {}
            }
        }
        target = NODES[(NODES.iter().position(|n| *n == target).unwrap_or(0) + 1) % NODES.len()];
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run() {
    let secs: u64 = std::env::var("KV_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("temp dir");
    // etcd's timing for the comparison: heartbeat 100 ms, a follower suspects the leader after
    // about 1 s. An openraft follower waits its leader lease (the election timeout's upper bound)
    // plus a random election timeout, so (450, 550) ms makes that 1.0–1.1 s.
    let cluster = Cluster::start(dir.path(), &NODES, |c| {
        c.heartbeat = Duration::from_millis(100);
        c.election_timeout = (Duration::from_millis(450), Duration::from_millis(550));
        c.request_timeout = Duration::from_secs(5);
    })
    .await
    .expect("cluster starts");
    println!(
        "3 voters, in-memory transport, redb files in {}",
        dir.path().display()
    );

    let node = leader(&cluster).await;
    let mut latencies = Vec::with_capacity(SEQUENTIAL_PUTS);
    let started = Instant::now();
    for i in 0..SEQUENTIAL_PUTS {
        let t = Instant::now();
        node.put(format!("seq/{:05}", i % KEYS).as_bytes(), &VALUE, None)
            .await
            .expect("sequential put");
        latencies.push(t.elapsed());
    }
    report("sequential puts (1 client)", latencies, started.elapsed());
    drop(node);

    let (latencies, elapsed) = concurrent(&cluster, secs, false).await;
    report("puts, 64 clients", latencies, elapsed);
    let (latencies, elapsed) = concurrent(&cluster, secs, true).await;
    report("linearizable gets, 64 clients", latencies, elapsed);

    let mut outages = Vec::new();
    for round in 0..KILLS {
        let id = cluster
            .wait_leader(Duration::from_secs(30))
            .await
            .expect("leader");
        first_write(&cluster, b"kill/warm").await;
        let killed = Instant::now();
        cluster.crash(id).await;
        let resumed = first_write(&cluster, format!("kill/{round}").as_bytes()).await;
        outages.push(resumed - killed);
        cluster.restart(id).await.expect("restart");
        // Let the restarted node catch up before the next kill.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    outages.sort();
    println!(
        "writes resume after leader kill     median {:.2} s  (runs: {})",
        percentile(&outages, 0.5).as_secs_f64(),
        outages
            .iter()
            .map(|d| format!("{:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    cluster.shutdown().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}
