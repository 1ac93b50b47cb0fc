//! The demo's key-value act: three nodes become the store's voters, a key written through a
//! node that holds no replica is read through another, the Raft leader is killed with SIGKILL,
//! and writers measure how long writes were unavailable; then every acknowledged write is read
//! back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::ApiClient;
use crate::localnet::{LocalNet, LocalNetError};

/// Time for the restarted nodes' APIs and routes, and for the first leader.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for writes to resume after the leader is killed.
const RESUME_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent writers during the failover. Each waits for its put's answer, and a put sent to
/// a survivor during the election waits there for the new leader, so a few writers see the
/// first moment writes work again.
const WRITERS: usize = 4;
/// Writes before the kill, so the writers are known to work.
const WARMUP: Duration = Duration::from_millis(500);
/// One write's client timeout; the node answers within its own 5 s bound.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the act measured. Node numbers are 1-based.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KvSummary {
    /// The voters.
    pub voters: Vec<usize>,
    /// The node the key was written through (holds no replica).
    pub written_via: usize,
    /// The node it was read back through.
    pub read_via: usize,
    /// Whether the read returned what was written.
    pub read_matches: bool,
    /// The leader before the kill.
    pub leader_killed: Option<usize>,
    /// The leader elected after it.
    pub new_leader: Option<usize>,
    /// From the last write acknowledged before the SIGKILL to the first acknowledged write
    /// issued after it.
    pub write_unavailable_ms: Option<u64>,
    /// From the SIGKILL to that first acknowledged write.
    pub kill_to_first_write_ms: Option<u64>,
    /// Writes acknowledged during the act.
    pub writes_acknowledged: usize,
    /// Acknowledged writes missing or different when read back afterwards (must be 0).
    pub writes_lost: usize,
    /// Whether the first key was still there after the leader died.
    pub key_survived: bool,
    /// Everything above worked.
    pub ok: bool,
    /// Why not, if it did not.
    pub reason: Option<String>,
}

/// Voters of an `n`-node demo: three nodes spread around the mesh (nodes 1, 3, 5 of 6).
pub fn voter_positions(count: usize) -> Vec<usize> {
    vec![0, count / 3, (2 * count) / 3]
}

fn client(net: &LocalNet, position: usize) -> Result<ApiClient, LocalNetError> {
    Ok(ApiClient::new(
        &net.node(position).api_url(),
        WRITE_TIMEOUT,
    )?)
}

fn leader_of(net: &LocalNet, asking: usize) -> Option<usize> {
    let view = client(net, asking).ok()?.raft_status().ok()?;
    net.position_of(&view.leader?)
}

fn wait_for<T>(
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !interrupted() {
        if let Some(value) = check() {
            return Some(value);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// One acknowledged write: its key and value, when it was issued and answered.
#[derive(Clone)]
struct Ack {
    key: String,
    value: String,
    issued: Instant,
    done: Instant,
}

/// Runs the act on a running, converged mesh. `say` prints progress.
pub fn run(
    net: &mut LocalNet,
    interrupted: &dyn Fn() -> bool,
    say: &dyn Fn(String),
) -> Result<KvSummary, LocalNetError> {
    let count = net.nodes().len();
    let voters = voter_positions(count);
    let mut summary = KvSummary {
        voters: voters.iter().map(|v| v + 1).collect(),
        ..KvSummary::default()
    };
    let label = |positions: &[usize]| {
        positions
            .iter()
            .map(|p| (p + 1).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    say(format!(
        "key-value store: restarting every node with nodes {} as Raft voters",
        label(&voters)
    ));
    net.stop_all();
    net.enable_kv(&voters, "")?;
    net.start_all()?;
    net.wait_healthy(START_TIMEOUT, interrupted)?;
    net.wait_converged(START_TIMEOUT, interrupted)?;
    let outsider = (0..count)
        .find(|p| !voters.contains(p))
        .unwrap_or(count - 1);
    let Some(leader) = wait_for(START_TIMEOUT, interrupted, || leader_of(net, outsider)) else {
        summary.reason = Some("no Raft leader was elected".to_string());
        return Ok(summary);
    };
    say(format!("node {} leads the Raft group", leader + 1));

    let key = "demo/greeting";
    let value = format!("hello from node {}", outsider + 1);
    summary.written_via = outsider + 1;
    let written = wait_for(START_TIMEOUT, interrupted, || {
        client(net, outsider)
            .ok()?
            .kv_put(key, value.as_bytes(), "")
            .ok()
    });
    let Some(written) = written else {
        summary.reason = Some(format!("node {} could not write {key}", outsider + 1));
        return Ok(summary);
    };
    let reader = (0..count)
        .rev()
        .find(|p| *p != outsider && *p != leader)
        .unwrap_or(0);
    summary.read_via = reader + 1;
    let read = client(net, reader)?.kv_get(key, false)?;
    summary.read_matches = read.as_ref().map(|(v, _)| v.as_slice()) == Some(value.as_bytes());
    say(format!(
        "node {} (no replica) wrote {key} = {value:?} at revision {}; node {} read {:?}",
        outsider + 1,
        written.revision,
        reader + 1,
        read.map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
    ));

    let survivors: Vec<usize> = (0..count).filter(|p| *p != leader).collect();
    let urls: Vec<String> = survivors.iter().map(|p| net.node(*p).api_url()).collect();
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (urls, acks, stop) = (urls.clone(), acks.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let clients: Vec<ApiClient> = urls
                .iter()
                .filter_map(|url| ApiClient::new(url, WRITE_TIMEOUT).ok())
                .collect();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) && !clients.is_empty() {
                let key = format!("demo/failover/{writer}/{n:06}");
                let value = format!("w{writer}-{n}");
                let issued = Instant::now();
                let target = &clients[(n + writer) % clients.len()];
                if target.kv_put(&key, value.as_bytes(), "").is_ok() {
                    let done = Instant::now();
                    acks.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Ack {
                            key,
                            value,
                            issued,
                            done,
                        });
                } else {
                    std::thread::sleep(Duration::from_millis(5));
                }
                n += 1;
            }
        }));
    }
    std::thread::sleep(WARMUP);
    say(format!(
        "{WRITERS} writers put keys through the other nodes; killing the leader, node {} (SIGKILL)",
        leader + 1
    ));
    summary.leader_killed = Some(leader + 1);
    let killed_at = Instant::now();
    net.kill(leader)?;
    let resumed = wait_for(RESUME_TIMEOUT, interrupted, || {
        let acks = acks.lock().unwrap_or_else(PoisonError::into_inner);
        acks.iter()
            .filter(|ack| ack.issued >= killed_at)
            .map(|ack| ack.done)
            .min()
    });
    // A little longer, so writes after the failover are checked as well.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.join();
    }
    let acks = acks.lock().unwrap_or_else(PoisonError::into_inner).clone();
    summary.writes_acknowledged = acks.len();
    let last_before = acks
        .iter()
        .filter(|ack| ack.done <= killed_at)
        .map(|ack| ack.done)
        .max();
    match resumed {
        Some(first_after) => {
            summary.kill_to_first_write_ms = Some(millis(first_after - killed_at));
            summary.write_unavailable_ms =
                last_before.map(|before| millis(first_after.saturating_duration_since(before)));
        }
        None => {
            summary.reason = Some(format!(
                "writes did not resume within {} s of the leader's death",
                RESUME_TIMEOUT.as_secs()
            ));
        }
    }
    summary.new_leader = wait_for(Duration::from_secs(5), interrupted, || {
        leader_of(net, outsider)
    })
    .map(|p| p + 1);
    if let (Some(gap), Some(first)) = (summary.write_unavailable_ms, summary.kill_to_first_write_ms)
    {
        say(format!(
            "writes resumed {first} ms after the kill (unavailable for {gap} ms); node {} leads now",
            summary
                .new_leader
                .map_or("?".to_string(), |l| l.to_string())
        ));
    }

    let checker = client(net, outsider)?;
    summary.key_survived = checker
        .kv_get(key, false)?
        .is_some_and(|(v, _)| v == value.as_bytes());
    for ack in &acks {
        let stored = checker.kv_get(&ack.key, false)?;
        if stored.map(|(v, _)| v) != Some(ack.value.clone().into_bytes()) {
            summary.writes_lost += 1;
        }
    }
    say(format!(
        "{key} survived: {}; {} acknowledged writes read back, {} lost",
        if summary.key_survived { "yes" } else { "no" },
        summary.writes_acknowledged,
        summary.writes_lost
    ));
    say(format!("restarting node {}", leader + 1));
    net.start(leader)?;
    net.wait_healthy(START_TIMEOUT, interrupted)?;
    net.wait_converged(START_TIMEOUT, interrupted)?;
    if summary.reason.is_none() {
        summary.reason = if !summary.read_matches {
            Some(format!(
                "node {} did not read what node {} wrote",
                reader + 1,
                outsider + 1
            ))
        } else if !summary.key_survived {
            Some(format!("{key} was lost with the leader"))
        } else if summary.writes_lost > 0 {
            Some(format!(
                "{} acknowledged writes were lost",
                summary.writes_lost
            ))
        } else {
            None
        };
    }
    summary.ok = summary.reason.is_none();
    Ok(summary)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
