//! Jepsen-style test: concurrent clients against 3 voters on the in-memory transport (real redb
//! files) while a seeded nemesis partitions the leader, cuts links, crashes and restarts nodes;
//! the recorded history must be linearizable and no acknowledged write may be lost.
//!
//! Seeds 1–3 run by default, about 10 s each; `KV_JEPSEN_SEEDS=N` runs seeds 1..=N and
//! `KV_JEPSEN_SECS` changes the length of each run. The seed fixes the clients' choices and the
//! nemesis schedule; thread timing still varies between runs, so a failure prints its seed and
//! the offending key's history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv::cluster::Cluster;
use kv::lincheck::{self, History, Limits, Op, OpId, Outcome, Verdict};
use kv::{KvError, Read};

const NODES: [u64; 3] = [1, 2, 3];
const KEYS: usize = 3;
const CLIENTS: u32 = 5;
/// Per-call bound of the client; a write that hits it is recorded with an unknown outcome.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// splitmix64: a small seeded generator, so the schedule depends on the seed only.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

fn key(k: usize) -> Vec<u8> {
    format!("jepsen/{k}").into_bytes()
}

fn encode(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn decode(bytes: &[u8]) -> u64 {
    let array: [u8; 8] = bytes.try_into().expect("test values are 8 bytes");
    u64::from_le_bytes(array)
}

struct Shared {
    cluster: Cluster,
    history: Mutex<History>,
    stop: AtomicBool,
}

impl Shared {
    fn invoke(&self, client: u32, k: usize, op: Op) -> OpId {
        self.history
            .lock()
            .expect("history lock")
            .invoke(client, &key(k), op)
    }

    fn complete(&self, id: OpId, outcome: Outcome) {
        self.history
            .lock()
            .expect("history lock")
            .complete(id, outcome)
            .expect("outcome fits its operation");
    }
}

#[derive(Default)]
struct ClientStats {
    acked_writes: u64,
    unknown_writes: u64,
    reads: u64,
    failed_reads: u64,
}

async fn bounded<T>(f: impl Future<Output = Result<T, KvError>>) -> Result<T, KvError> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or(Err(KvError::Timeout(CALL_TIMEOUT)))
}

/// One client: random get/put/cas against the node it believes leads, following hints.
async fn client(shared: Arc<Shared>, id: u32, seed: u64) -> ClientStats {
    let mut rng = Rng(seed ^ (u64::from(id) << 40));
    let mut stats = ClientStats::default();
    let mut target = NODES[rng.below(NODES.len() as u64) as usize];
    let mut counter = 0u64;
    let mut last_seen: Vec<Option<u64>> = vec![None; KEYS];
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(node) = shared.cluster.node(target) else {
            target = NODES[rng.below(NODES.len() as u64) as usize];
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let k = rng.below(KEYS as u64) as usize;
        let roll = rng.below(100);
        let result: Result<(), KvError> = if roll < 40 {
            let op = shared.invoke(id, k, Op::Get);
            match bounded(node.get(&key(k), Read::Linearizable)).await {
                Ok(v) => {
                    let v = v.map(|v| decode(&v.value));
                    last_seen[k] = v;
                    shared.complete(op, Outcome::Get(v));
                    stats.reads += 1;
                    Ok(())
                }
                Err(e) => {
                    stats.failed_reads += 1;
                    Err(e)
                }
            }
        } else {
            counter += 1;
            let value = (u64::from(id) << 32) | counter;
            let (op, call) = if roll < 75 {
                (Op::Put(value), None)
            } else {
                let expected = last_seen[k];
                (
                    Op::Cas {
                        expected,
                        new: value,
                    },
                    Some(expected),
                )
            };
            let op_id = shared.invoke(id, k, op);
            let outcome = match call {
                None => bounded(node.put(&key(k), &encode(value), None))
                    .await
                    .map(|_| Outcome::Put),
                Some(expected) => {
                    let expected = expected.map(encode);
                    bounded(node.cas(&key(k), expected.as_deref(), &encode(value)))
                        .await
                        .map(|r| {
                            let current = r.current.as_deref().map(decode);
                            last_seen[k] = current;
                            Outcome::Cas {
                                succeeded: r.succeeded,
                                current,
                            }
                        })
                }
            };
            match outcome {
                Ok(outcome) => {
                    stats.acked_writes += 1;
                    shared.complete(op_id, outcome);
                    Ok(())
                }
                Err(e) => {
                    // Any failed write may still be applied later (a leader that lost its
                    // lease may have appended it): its outcome is unknown.
                    stats.unknown_writes += 1;
                    shared.complete(op_id, Outcome::Unknown);
                    Err(e)
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(KvError::NotLeader { leader, .. }) => target = leader,
            Err(_) => {
                target = NODES[rng.below(NODES.len() as u64) as usize];
                tokio::time::sleep(rng.millis(5, 50)).await;
            }
        }
    }
    stats
}

fn current_leader(cluster: &Cluster) -> Option<u64> {
    NODES
        .iter()
        .filter_map(|id| cluster.node(*id))
        .find_map(|n| n.leader().filter(|l| cluster.node(*l).is_some()))
}

/// The seeded fault schedule; returns a log of what it did.
async fn nemesis(shared: Arc<Shared>, seed: u64, run: Duration) -> Vec<String> {
    let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(7));
    let mut log = Vec::new();
    let start = tokio::time::Instant::now();
    let cluster = &shared.cluster;
    while start.elapsed() + Duration::from_secs(2) < run {
        tokio::time::sleep(rng.millis(300, 1200)).await;
        let hold = rng.millis(500, 2000);
        match rng.below(4) {
            0 => {
                if let Some(leader) = current_leader(cluster) {
                    cluster.network().isolate(leader, &NODES);
                    log.push(format!("isolate leader {leader} for {hold:?}"));
                    tokio::time::sleep(hold).await;
                    cluster.network().heal();
                }
            }
            1 => {
                let a = NODES[rng.below(3) as usize];
                let b = NODES[rng.below(3) as usize];
                if a != b {
                    cluster.network().cut(a, b);
                    log.push(format!("cut {a}-{b} for {hold:?}"));
                    tokio::time::sleep(hold).await;
                    cluster.network().heal();
                }
            }
            2 => {
                if let Some(leader) = current_leader(cluster) {
                    cluster.crash(leader).await;
                    log.push(format!("crash leader {leader} for {hold:?}"));
                    tokio::time::sleep(hold).await;
                    cluster
                        .restart(leader)
                        .await
                        .expect("leader restarts from its file");
                }
            }
            _ => {
                let victim = NODES[rng.below(3) as usize];
                cluster.crash(victim).await;
                log.push(format!("crash node {victim} for {hold:?}"));
                tokio::time::sleep(hold).await;
                cluster
                    .restart(victim)
                    .await
                    .expect("node restarts from its file");
            }
        }
    }
    log
}

/// Every client reads every key once more after the faults end, retrying until it succeeds.
async fn final_reads(shared: &Shared) -> Vec<(usize, OpId)> {
    let mut reads = Vec::new();
    for k in 0..KEYS {
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(
                attempts < 200,
                "cluster never served a final read of key {k}"
            );
            let leader = shared
                .cluster
                .wait_leader(Duration::from_secs(10))
                .await
                .expect("a leader after healing");
            let Some(node) = shared.cluster.node(leader) else {
                continue;
            };
            let op = shared.invoke(1000, k, Op::Get);
            match bounded(node.get(&key(k), Read::Linearizable)).await {
                Ok(v) => {
                    shared.complete(op, Outcome::Get(v.map(|v| decode(&v.value))));
                    reads.push((k, op));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    reads
}

/// Every acknowledged write must be the final value or be followed, in the witness order, by a
/// later write that the final read can see.
fn assert_no_acknowledged_write_lost(
    history: &History,
    order: &BTreeMap<Vec<u8>, Vec<OpId>>,
    finals: &[(usize, OpId)],
) {
    let ops = history.operations();
    for (k, final_read) in finals {
        let witness = &order[&key(*k)];
        let position: BTreeMap<OpId, usize> =
            witness.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let final_pos = position[final_read];
        let writes_before_final: Vec<OpId> = witness[..final_pos]
            .iter()
            .copied()
            .filter(|id| match (&ops[*id].op, &ops[*id].outcome) {
                (Op::Put(_), _) => true,
                (Op::Cas { .. }, Outcome::Cas { succeeded, .. }) => *succeeded,
                (Op::Cas { .. }, Outcome::Unknown) => true,
                _ => false,
            })
            .collect();
        let last_write = writes_before_final.last().map(|id| position[id]);
        for (id, op) in ops.iter().enumerate() {
            let acked = matches!(
                (&op.op, &op.outcome),
                (Op::Put(_), Outcome::Put)
                    | (
                        Op::Cas { .. },
                        Outcome::Cas {
                            succeeded: true,
                            ..
                        }
                    )
            );
            if acked && op.key == key(*k) {
                let pos = position
                    .get(&id)
                    .copied()
                    .expect("acknowledged ops are linearized");
                assert!(
                    pos < final_pos && last_write.is_some_and(|last| last >= pos),
                    "acknowledged write {op:?} lost: not visible to the final read"
                );
            }
        }
        let final_value = match &ops[*final_read].outcome {
            Outcome::Get(v) => *v,
            other => panic!("final read has outcome {other:?}"),
        };
        let expected = writes_before_final.last().map(|id| match &ops[*id].op {
            Op::Put(v) | Op::Cas { new: v, .. } => *v,
            _ => unreachable!("filtered to writes"),
        });
        assert_eq!(
            final_value, expected,
            "final read of key {k} is not the last linearized write"
        );
    }
}

async fn run_seed(seed: u64, run: Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = Cluster::start(dir.path(), &NODES, |c| {
        c.heartbeat = Duration::from_millis(50);
        c.election_timeout = (Duration::from_millis(300), Duration::from_millis(600));
        c.request_timeout = CALL_TIMEOUT;
        // Small snapshots so restarts also exercise snapshot install and log purge.
        c.snapshot_every = 500;
        c.logs_kept_after_snapshot = 100;
    })
    .await
    .expect("cluster starts");
    cluster
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("first leader");
    let shared = Arc::new(Shared {
        cluster,
        history: Mutex::new(History::new()),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(shared.clone(), id, seed)))
        .collect();
    let faults = tokio::spawn(nemesis(shared.clone(), seed, run));
    tokio::time::sleep(run).await;
    let faults = faults.await.expect("nemesis finishes");
    shared.cluster.network().heal();
    for id in NODES {
        shared
            .cluster
            .restart(id)
            .await
            .expect("restart after the run");
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut totals = ClientStats::default();
    for c in clients {
        let s = c.await.expect("client finishes");
        totals.acked_writes += s.acked_writes;
        totals.unknown_writes += s.unknown_writes;
        totals.reads += s.reads;
        totals.failed_reads += s.failed_reads;
    }
    let finals = final_reads(&shared).await;
    shared.cluster.shutdown().await;
    let history = shared.history.lock().expect("history lock").clone();
    let started = std::time::Instant::now();
    let verdict = lincheck::check(&history, Limits::default());
    println!(
        "seed {seed}: {} ops ({} acked writes, {} unknown writes, {} reads, {} failed reads), \
         {} faults, checked in {:?}",
        history.operations().len(),
        totals.acked_writes,
        totals.unknown_writes,
        totals.reads,
        totals.failed_reads,
        faults.len(),
        started.elapsed()
    );
    match verdict {
        Verdict::Linearizable { order } => {
            assert_no_acknowledged_write_lost(&history, &order, &finals)
        }
        Verdict::NotLinearizable { key, best_prefix } => {
            let ops: Vec<_> = history
                .operations()
                .iter()
                .enumerate()
                .filter(|(_, o)| o.key == key)
                .collect();
            panic!(
                "seed {seed}: history of {} not linearizable; faults {faults:#?}; \
                 longest linearizable prefix {best_prefix:?}; ops {ops:#?}",
                String::from_utf8_lossy(&key)
            );
        }
        Verdict::TooBig { key, explored } => panic!(
            "seed {seed}: checker gave up on {} after {explored} states",
            String::from_utf8_lossy(&key)
        ),
    }
    assert!(
        totals.acked_writes > 0,
        "seed {seed}: no write was acknowledged"
    );
}

#[test]
fn histories_under_partitions_and_crashes_are_linearizable() {
    let seeds: u64 = std::env::var("KV_JEPSEN_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let secs: u64 = std::env::var("KV_JEPSEN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for seed in 1..=seeds {
        runtime.block_on(run_seed(seed, Duration::from_secs(secs)));
    }
}

#[test]
fn a_history_with_a_lost_write_is_rejected_by_the_same_check() {
    // The check the campaign relies on must be able to fail: a history whose final read misses
    // an acknowledged write.
    let mut h = History::new();
    let w = h.invoke(0, &key(0), Op::Put(1));
    h.complete(w, Outcome::Put).expect("valid");
    let r = h.invoke(1000, &key(0), Op::Get);
    h.complete(r, Outcome::Get(None)).expect("valid");
    assert!(!lincheck::check(&h, Limits::default()).is_linearizable());
}
