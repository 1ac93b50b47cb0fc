//! Jepsen-style test of the key-value store over real daemons: concurrent HTTP clients against
//! a 3- or 5-voter store while a seeded nemesis SIGKILLs, restarts and partitions nodes; the
//! recorded history is checked for linearizability (`kv::lincheck`, one register per key) and
//! every acknowledged write of a grow-only key set must be readable after the faults heal.
//!
//! As root, every node runs in its own network namespace ([`crate::netns`]), joined to every
//! other by a veth pair, and a partition sets the veth links between the two sides down, so
//! no packet crosses it. Without root the nodes run on loopback ([`crate::localnet`]) and the
//! nemesis only kills and restarts; the report says partitions were skipped.
//!
//! The seed fixes the clients' choices and the nemesis schedule; thread and network timing
//! still vary, so a failure prints its seed and the offending key's history. Timings are
//! reported, never judged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kv::lincheck::{self, History, Limits, Op, OpId, Outcome, Verdict};

use crate::client::{ApiClient, ClientError, encode_key};
use crate::localnet::{LocalNet, LocalNetOptions};
use crate::netns::{NetnsMesh, NetnsNode};
use crate::seeded::SplitMix64;

/// Registers the clients contend on: few, so operations on one key overlap often.
const KEYS: u64 = 4;

/// Most operations one seed records; the clients stop early past it, so memory is bounded.
const MAX_OPS: usize = 100_000;

/// A client's bound on one HTTP request; longer than the node's own request timeout
/// ([`NODE_REQUEST_TIMEOUT_MS`]) so the node usually answers first.
const CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// The node's bound on one key-value request (election waits and forwarding included).
const NODE_REQUEST_TIMEOUT_MS: u64 = 2_500;

/// How long the store gets to recover after the faults heal before the final reads fail.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of the offending key's history printed when a check fails.
const MAX_REPORTED_EVENTS: usize = 120;

/// Why a seed could not be run (as opposed to a failed check, which is in the report).
#[derive(Debug, thiserror::Error)]
pub enum JepsenError {
    /// Building or driving the namespace mesh failed.
    #[error("namespace mesh: {0}")]
    Netns(#[from] crate::netns::NetnsError),
    /// Building or driving the loopback mesh failed.
    #[error("loopback mesh: {0}")]
    Local(#[from] crate::localnet::LocalNetError),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The store did not recover after the faults healed.
    #[error("the store did not recover within {0:?} after the faults healed: {1}")]
    NoRecovery(Duration, String),
    /// Bad options.
    #[error("{0}")]
    Options(String),
}

/// What one seed runs.
#[derive(Debug, Clone)]
pub struct JepsenOptions {
    /// Fixes the clients' choices and the nemesis schedule.
    pub seed: u64,
    /// Voters (every node is one): 3 or 5.
    pub nodes: usize,
    /// Concurrent clients, spread over the nodes.
    pub clients: u32,
    /// How long the clients and the nemesis run.
    pub duration: Duration,
    /// Partition with namespaces when possible (root); `false` forces loopback and kills only.
    pub partitions: bool,
}

impl Default for JepsenOptions {
    fn default() -> Self {
        JepsenOptions {
            seed: 1,
            nodes: 3,
            clients: 6,
            duration: Duration::from_secs(10),
            partitions: true,
        }
    }
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Operations recorded (register operations and grow-only set writes).
    pub ops: usize,
    /// Acknowledged writes (puts, CAS answers, set writes).
    pub acknowledged_writes: usize,
    /// Writes without a definite answer ("info": may or may not have taken effect).
    pub unknown_writes: usize,
    /// Requests that definitely failed (refused connection, error answer before any effect).
    pub failed: usize,
    /// Reads that returned a value.
    pub reads: usize,
    /// The nemesis's actions, with times since the start.
    pub faults: Vec<String>,
    /// Why partitions did not run, if they did not.
    pub partitions_skipped: Option<String>,
    /// The checker's verdict in words.
    pub verdict: String,
    /// Whether the history is linearizable.
    pub linearizable: bool,
    /// Acknowledged set writes missing from the final reads.
    pub lost: Vec<String>,
    /// The offending key's history when the check failed.
    pub evidence: Vec<String>,
}

impl SeedReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.linearizable && self.lost.is_empty()
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} ops ({} acknowledged writes, {} unknown, {} failed, {} reads), {} faults{}; {}; {} acknowledged writes lost",
            self.seed,
            self.ops,
            self.acknowledged_writes,
            self.unknown_writes,
            self.failed,
            self.reads,
            self.faults.len(),
            match &self.partitions_skipped {
                Some(reason) => format!(" (partitions skipped: {reason})"),
                None => String::new(),
            },
            self.verdict,
            self.lost.len()
        )
    }
}

/// The nodes under test: namespaces (partitions possible) or loopback (kills only).
enum Cluster {
    Netns(NetnsMesh),
    Local(LocalNet),
}

impl Cluster {
    fn start(
        binary: &Path,
        options: &JepsenOptions,
    ) -> Result<(Cluster, Option<String>), JepsenError> {
        let complete: Vec<(usize, usize)> = (0..options.nodes)
            .flat_map(|a| ((a + 1)..options.nodes).map(move |b| (a, b)))
            .collect();
        let kv_section = |ids: Vec<String>| {
            format!(
                "  kv:\n    voters: [{}]\n    request_timeout_ms: {NODE_REQUEST_TIMEOUT_MS}\n",
                ids.join(", ")
            )
        };
        let reason = if options.partitions {
            crate::netns::unavailable()
        } else {
            Some("disabled by the caller")
        };
        match reason {
            None => {
                let mut mesh = NetnsMesh::start(binary, options.nodes, &complete, "")?;
                // Voter ids exist only once every node has enrolled: restart with the store.
                let ids: Vec<String> = mesh
                    .nodes()
                    .iter()
                    .map(|node| format!("'{}'", node.id))
                    .collect();
                let section = kv_section(ids);
                for position in 0..options.nodes {
                    mesh.kill(position);
                    let path = mesh.nodes()[position].dir.join("node.yaml");
                    let mut yaml =
                        std::fs::read_to_string(&path).map_err(|source| JepsenError::Io {
                            what: format!("reading {}", path.display()),
                            source,
                        })?;
                    yaml.push_str(&section);
                    std::fs::write(&path, yaml).map_err(|source| JepsenError::Io {
                        what: format!("writing {}", path.display()),
                        source,
                    })?;
                }
                for position in 0..options.nodes {
                    mesh.launch(position)?;
                }
                Ok((Cluster::Netns(mesh), None))
            }
            Some(reason) => {
                let mut net = LocalNet::create(
                    binary,
                    options.nodes,
                    &complete,
                    &LocalNetOptions::default(),
                )?;
                let voters: Vec<usize> = (0..options.nodes).collect();
                net.enable_kv(
                    &voters,
                    &format!("    request_timeout_ms: {NODE_REQUEST_TIMEOUT_MS}\n"),
                )?;
                net.start_all()?;
                Ok((Cluster::Local(net), Some(reason.to_string())))
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Cluster::Netns(mesh) => mesh.nodes().len(),
            Cluster::Local(net) => net.nodes().len(),
        }
    }

    fn api_url(&self, position: usize) -> String {
        match self {
            Cluster::Netns(_) => format!("http://127.0.0.1:{}", crate::netns::API_PORT),
            Cluster::Local(net) => net.node(position).api_url(),
        }
    }

    fn node_id(&self, position: usize) -> wire::NodeId {
        match self {
            Cluster::Netns(mesh) => mesh.nodes()[position].id,
            Cluster::Local(net) => net.node(position).id,
        }
    }

    fn position_of(&self, id: &wire::NodeId) -> Option<usize> {
        (0..self.len()).find(|position| self.node_id(*position) == *id)
    }

    /// Runs `work` with a client for node `position`, on a thread that can reach its API.
    fn spawn<T: Send + 'static>(
        &self,
        position: usize,
        work: impl FnOnce(ApiClient) -> T + Send + 'static,
    ) -> ClientThread<T> {
        let url = self.api_url(position);
        let run = move || ApiClient::new(&url, CALL_TIMEOUT).ok().map(work);
        match self {
            Cluster::Netns(mesh) => ClientThread::InNamespace(mesh.in_namespace(position, run)),
            Cluster::Local(_) => ClientThread::Loopback(std::thread::spawn(run)),
        }
    }

    /// One request to node `position`, waited for.
    fn ask<T: Send + 'static>(
        &self,
        position: usize,
        work: impl FnOnce(ApiClient) -> T + Send + 'static,
    ) -> Option<T> {
        self.spawn(position, work).join()
    }

    fn kill(&mut self, position: usize) -> Result<(), JepsenError> {
        match self {
            Cluster::Netns(mesh) => mesh.kill(position),
            Cluster::Local(net) => net.kill(position)?,
        }
        Ok(())
    }

    fn restart(&mut self, position: usize) -> Result<(), JepsenError> {
        match self {
            Cluster::Netns(mesh) => {
                if mesh.pid(position).is_none() {
                    mesh.launch(position)?;
                }
            }
            Cluster::Local(net) => {
                if !net.node(position).is_running() {
                    net.start(position)?;
                }
            }
        }
        Ok(())
    }

    fn is_running(&self, position: usize) -> bool {
        match self {
            Cluster::Netns(mesh) => mesh.pid(position).is_some(),
            Cluster::Local(net) => net.node(position).is_running(),
        }
    }

    /// Sets the link between `a` and `b` down or up (namespaces only).
    fn set_link(&self, a: usize, b: usize, up: bool) -> Result<(), JepsenError> {
        let Cluster::Netns(mesh) = self else {
            return Ok(());
        };
        for (from, to) in [(a, b), (b, a)] {
            let node: &NetnsNode = &mesh.nodes()[from];
            for (name, neighbour) in &node.interfaces {
                if *neighbour == to {
                    let state = if up { "up" } else { "down" };
                    let output = std::process::Command::new("ip")
                        .args(["-n", &node.namespace, "link", "set", name, state])
                        .output()
                        .map_err(|source| JepsenError::Io {
                            what: "running ip".to_string(),
                            source,
                        })?;
                    if !output.status.success() {
                        return Err(JepsenError::Netns(crate::netns::NetnsError::Command {
                            command: format!("ip -n {} link set {name} {state}", node.namespace),
                            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                        }));
                    }
                }
            }
        }
        Ok(())
    }

    fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Cluster::Netns(mesh) => mesh.nodes().iter().map(|node| node.dir.clone()).collect(),
            Cluster::Local(net) => net.nodes().iter().map(|node| node.dir.clone()).collect(),
        }
    }
}

/// A thread running requests against one node; `None` from [`ClientThread::join`] when the
/// thread could not enter the node's namespace, build its client, or panicked.
enum ClientThread<T> {
    InNamespace(std::thread::JoinHandle<Result<Option<T>, crate::netns::NetnsError>>),
    Loopback(std::thread::JoinHandle<Option<T>>),
}

impl<T> ClientThread<T> {
    fn join(self) -> Option<T> {
        match self {
            ClientThread::InNamespace(handle) => handle.join().ok().and_then(Result::ok).flatten(),
            ClientThread::Loopback(handle) => handle.join().ok().flatten(),
        }
    }
}

/// Heals partitions and restarts killed nodes however the seed ends (a failed assertion or
/// error included), before the cluster itself is torn down.
struct Nemesis {
    cluster: Cluster,
    cut: BTreeSet<(usize, usize)>,
}

impl Nemesis {
    fn heal(&mut self) -> Result<(), JepsenError> {
        let cut: Vec<(usize, usize)> = std::mem::take(&mut self.cut).into_iter().collect();
        for (a, b) in cut {
            self.cluster.set_link(a, b, true)?;
        }
        for position in 0..self.cluster.len() {
            self.cluster.restart(position)?;
        }
        Ok(())
    }

    fn partition(&mut self, side: &[usize]) -> Result<(), JepsenError> {
        for a in side.iter().copied() {
            for b in (0..self.cluster.len()).filter(|b| !side.contains(b)) {
                let edge = (a.min(b), a.max(b));
                if self.cut.insert(edge) {
                    self.cluster.set_link(edge.0, edge.1, false)?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Nemesis {
    fn drop(&mut self) {
        // Links come back up so the namespaces are deleted in a clean state; errors here
        // cannot be reported any more and the namespaces are deleted regardless.
        for (a, b) in std::mem::take(&mut self.cut) {
            let _ = self.cluster.set_link(a, b, true);
        }
    }
}

/// An event of the recorded history, with its time since the start (for people).
#[derive(Debug, Clone)]
struct Timed {
    client: u32,
    key: u64,
    op: Op,
    invoked_ms: u128,
    returned: Option<(u128, String)>,
}

struct Recorder {
    start: Instant,
    history: Mutex<(History, Vec<Timed>)>,
    stop: AtomicBool,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, (History, Vec<Timed>)> {
        // A panicking client cannot leave the history half-written: every update is one push.
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn invoke(&self, client: u32, key: u64, op: Op) -> Option<OpId> {
        let mut guard = self.lock();
        if guard.1.len() >= MAX_OPS {
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        let id = guard.0.invoke(client, &register(key), op.clone());
        guard.1.push(Timed {
            client,
            key,
            op,
            invoked_ms: self.start.elapsed().as_millis(),
            returned: None,
        });
        Some(id)
    }

    fn complete(&self, id: OpId, outcome: Outcome, how: String) {
        let mut guard = self.lock();
        // The outcome always fits its operation (the client builds both), so this cannot fail.
        let _ = guard.0.complete(id, outcome);
        let elapsed = self.start.elapsed().as_millis();
        if let Some(timed) = guard.1.get_mut(id) {
            timed.returned = Some((elapsed, how));
        }
    }
}

fn register(key: u64) -> Vec<u8> {
    format!("jepsen/register/{key}").into_bytes()
}

fn register_name(key: u64) -> String {
    format!("jepsen/register/{key}")
}

fn decode_value(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[derive(Debug, Default, Clone)]
struct ClientTally {
    acknowledged: usize,
    unknown: usize,
    failed: usize,
    reads: usize,
    /// Grow-only set keys whose put was acknowledged.
    acked_set_keys: Vec<String>,
}

/// How a failed request is recorded: refused before any effect, or unknown ("info").
fn failure_kind(error: &ClientError) -> (&'static str, bool) {
    match error {
        ClientError::Unreachable { reason, .. }
            if reason.contains("refused") || reason.contains("connection failed") =>
        {
            ("fail", true)
        }
        // A 4xx is a refusal of the request itself; nothing was proposed.
        ClientError::Status { status, .. } if (400..500).contains(status) && *status != 409 => {
            ("fail", true)
        }
        _ => ("info", false),
    }
}

fn client_loop(recorder: &Recorder, api: &ApiClient, id: u32, seed: u64) -> ClientTally {
    let mut rng = SplitMix64(seed ^ (u64::from(id) << 40) ^ 0x00C1_1E47);
    let mut tally = ClientTally::default();
    let mut counter = 0u64;
    let mut last_seen: Vec<Option<u64>> = vec![None; KEYS as usize];
    while !recorder.stop.load(Ordering::Relaxed) {
        let failed_before = tally.failed;
        let key = rng.below(KEYS as usize) as u64;
        let roll = rng.below(100);
        counter += 1;
        // Unique per write, so the checker can tell every write apart.
        let value = (u64::from(id) + 1) * 1_000_000_000 + counter;
        if roll < 35 {
            let Some(op) = recorder.invoke(id, key, Op::Get) else {
                break;
            };
            match api.kv_get(&register_name(key), false) {
                Ok(found) => {
                    let seen = found.and_then(|(bytes, _)| decode_value(&bytes));
                    last_seen[key as usize] = seen;
                    tally.reads += 1;
                    recorder.complete(op, Outcome::Get(seen), format!("ok {seen:?}"));
                }
                Err(error) => {
                    tally.failed += 1;
                    recorder.complete(op, Outcome::Unknown, format!("fail {error}"));
                }
            }
        } else if roll < 65 {
            let Some(op) = recorder.invoke(id, key, Op::Put(value)) else {
                break;
            };
            match api.kv_put(&register_name(key), value.to_string().as_bytes(), "") {
                Ok(_) => {
                    tally.acknowledged += 1;
                    recorder.complete(op, Outcome::Put, "ok".to_string());
                }
                Err(error) => {
                    let (kind, definite) = failure_kind(&error);
                    if definite {
                        tally.failed += 1;
                    } else {
                        tally.unknown += 1;
                    }
                    // A definite failure is recorded as unknown too: sound, if less strict.
                    recorder.complete(op, Outcome::Unknown, format!("{kind} {error}"));
                }
            }
        } else if roll < 85 {
            let expected = last_seen[key as usize];
            let Some(op) = recorder.invoke(
                id,
                key,
                Op::Cas {
                    expected,
                    new: value,
                },
            ) else {
                break;
            };
            let expected_bytes = expected.map(|v| v.to_string().into_bytes());
            match api.kv_cas(
                &register_name(key),
                expected_bytes.as_deref(),
                value.to_string().as_bytes(),
            ) {
                Ok(view) => {
                    use base64::Engine;
                    let current = view.current.as_deref().and_then(|text| {
                        base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .ok()
                            .and_then(|bytes| decode_value(&bytes))
                    });
                    last_seen[key as usize] = current;
                    tally.acknowledged += 1;
                    recorder.complete(
                        op,
                        Outcome::Cas {
                            succeeded: view.succeeded,
                            current,
                        },
                        format!("ok succeeded={} current={current:?}", view.succeeded),
                    );
                }
                Err(error) => {
                    let (kind, definite) = failure_kind(&error);
                    if definite {
                        tally.failed += 1;
                    } else {
                        tally.unknown += 1;
                    }
                    recorder.complete(op, Outcome::Unknown, format!("{kind} {error}"));
                }
            }
        } else {
            // Grow-only set: a fresh key per write; every acknowledged one must survive.
            let set_key = format!("jepsen/set/{id}/{counter}");
            match api.kv_put(&set_key, b"1", "") {
                Ok(_) => {
                    tally.acknowledged += 1;
                    tally.acked_set_keys.push(set_key);
                }
                Err(error) => {
                    if failure_kind(&error).1 {
                        tally.failed += 1;
                    } else {
                        tally.unknown += 1;
                    }
                }
            }
        }
        let pause = if tally.failed > failed_before {
            // The node is down or refused: do not spin on it.
            Duration::from_millis(100)
        } else {
            rng.millis(0, 8)
        };
        std::thread::sleep(pause);
    }
    tally
}

/// The position of the leader as some running node sees it.
fn leader(cluster: &Cluster) -> Option<usize> {
    (0..cluster.len())
        .filter(|position| cluster.is_running(*position))
        .find_map(|position| {
            let view = cluster
                .ask(position, |api| api.raft_status().ok())
                .flatten()?;
            cluster.position_of(&view.leader?)
        })
}

/// Lists every key under `prefix` on node `position`, linearizably, page by page.
fn list_all(api: &ApiClient, prefix: &str) -> Result<BTreeSet<String>, ClientError> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut keys = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!(
            "/api/v1/kv?prefix={}&limit={}",
            encode_key(prefix),
            kv::limits::MAX_LIST_PAGE
        );
        if let Some(after) = &after {
            path.push_str(&format!("&after={}", encode_key(after)));
        }
        let page: api::kv::ListView = api.get(&path)?;
        for item in &page.items {
            if let Ok(bytes) = engine.decode(&item.key) {
                keys.insert(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        match page.next {
            Some(next) if !page.items.is_empty() => after = Some(next),
            _ => return Ok(keys),
        }
    }
}

/// Runs one seed against a fresh cluster of `binary` processes.
pub fn run_seed(binary: &Path, options: &JepsenOptions) -> Result<SeedReport, JepsenError> {
    if options.nodes != 3 && options.nodes != 5 {
        return Err(JepsenError::Options(format!(
            "a store has 3 or 5 voters, not {}",
            options.nodes
        )));
    }
    let (cluster, partitions_skipped) = Cluster::start(binary, options)?;
    let mut nemesis = Nemesis {
        cluster,
        cut: BTreeSet::new(),
    };
    let result = run_with(&mut nemesis, options, partitions_skipped);
    if result.as_ref().map_or(true, |report| !report.passed()) {
        for dir in nemesis.cluster.dirs() {
            let log = dir.join("node.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            eprintln!("--- last lines of {}:", log.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
    result
}

fn wait_for_leader(cluster: &Cluster, timeout: Duration) -> Result<usize, JepsenError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(position) = leader(cluster) {
            return Ok(position);
        }
        if Instant::now() >= deadline {
            return Err(JepsenError::NoRecovery(timeout, "no leader".to_string()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_with(
    nemesis: &mut Nemesis,
    options: &JepsenOptions,
    partitions_skipped: Option<String>,
) -> Result<SeedReport, JepsenError> {
    wait_for_leader(&nemesis.cluster, RECOVERY_TIMEOUT)?;
    let recorder = Arc::new(Recorder {
        start: Instant::now(),
        history: Mutex::new((History::new(), Vec::new())),
        stop: AtomicBool::new(false),
    });
    let nodes = nemesis.cluster.len();
    let clients: Vec<_> = (0..options.clients)
        .map(|id| {
            let recorder = Arc::clone(&recorder);
            let seed = options.seed;
            nemesis.cluster.spawn(id as usize % nodes, move |api| {
                client_loop(&recorder, &api, id, seed)
            })
        })
        .collect();

    let mut rng = SplitMix64(options.seed);
    let mut faults = Vec::new();
    let started = recorder.start;
    let stamp = |what: String| format!("{:>6} ms {what}", started.elapsed().as_millis());
    let schedule = (|| -> Result<(), JepsenError> {
        while started.elapsed() < options.duration {
            std::thread::sleep(rng.millis(300, 1200));
            let hold = rng.millis(800, 2500);
            let can_partition = partitions_skipped.is_none();
            match rng.below(if can_partition { 4 } else { 2 }) {
                0 => {
                    let victim = rng.below(nodes);
                    nemesis.cluster.kill(victim)?;
                    faults.push(stamp(format!("SIGKILL node {}", victim + 1)));
                    std::thread::sleep(hold);
                    nemesis.cluster.restart(victim)?;
                    faults.push(stamp(format!("restart node {}", victim + 1)));
                }
                1 => {
                    // The node leading now, as the seeded choice "the leader" resolves at run time.
                    let victim = leader(&nemesis.cluster).unwrap_or_else(|| rng.below(nodes));
                    nemesis.cluster.kill(victim)?;
                    faults.push(stamp(format!("SIGKILL leader node {}", victim + 1)));
                    std::thread::sleep(hold);
                    nemesis.cluster.restart(victim)?;
                    faults.push(stamp(format!("restart node {}", victim + 1)));
                }
                2 => {
                    let victim = rng.below(nodes);
                    nemesis.partition(&[victim])?;
                    faults.push(stamp(format!("partition: node {} isolated", victim + 1)));
                    std::thread::sleep(hold);
                    nemesis.heal()?;
                    faults.push(stamp("heal".to_string()));
                }
                _ => {
                    // A minority side of one or two nodes; with the leader in it or not.
                    let mut order: Vec<usize> = (0..nodes).collect();
                    for i in (1..order.len()).rev() {
                        order.swap(i, rng.below(i + 1));
                    }
                    let minority = &order[..(nodes - 1) / 2];
                    nemesis.partition(minority)?;
                    let names: Vec<String> =
                        minority.iter().map(|p| format!("node {}", p + 1)).collect();
                    faults.push(stamp(format!("partition: {{{}}} | rest", names.join(", "))));
                    std::thread::sleep(hold);
                    nemesis.heal()?;
                    faults.push(stamp("heal".to_string()));
                }
            }
        }
        Ok(())
    })();
    recorder.stop.store(true, Ordering::Relaxed);
    let tallies: Vec<ClientTally> = clients
        .into_iter()
        .map(|handle| handle.join().unwrap_or_default())
        .collect();
    nemesis.heal()?;
    faults.push(stamp("final heal".to_string()));
    schedule?;

    // Final reads once the store works again: every register from every node (part of the
    // history), then the grow-only set.
    let final_client = options.clients;
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    for position in 0..nodes {
        for key in 0..KEYS {
            loop {
                let Some(op) = recorder.invoke(final_client, key, Op::Get) else {
                    return Err(JepsenError::Options("history full".to_string()));
                };
                let name = register_name(key);
                let answer = nemesis
                    .cluster
                    .ask(position, move |api| api.kv_get(&name, false))
                    .unwrap_or_else(|| {
                        Err(ClientError::BadResponse {
                            url: String::new(),
                            reason: "client thread failed".to_string(),
                        })
                    });
                match answer {
                    Ok(found) => {
                        let seen = found.and_then(|(bytes, _)| decode_value(&bytes));
                        recorder.complete(op, Outcome::Get(seen), format!("final ok {seen:?}"));
                        break;
                    }
                    Err(error) => {
                        recorder.complete(op, Outcome::Unknown, format!("final fail {error}"));
                        if Instant::now() >= deadline {
                            return Err(JepsenError::NoRecovery(
                                RECOVERY_TIMEOUT,
                                format!("final read on node {}: {error}", position + 1),
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        }
    }
    let acked: BTreeSet<String> = tallies
        .iter()
        .flat_map(|tally| tally.acked_set_keys.iter().cloned())
        .collect();
    let mut lost = BTreeSet::new();
    for position in 0..nodes {
        let present = loop {
            let answer = nemesis
                .cluster
                .ask(position, |api| list_all(&api, "jepsen/set/"));
            match answer {
                Some(Ok(keys)) => break keys,
                other => {
                    if Instant::now() >= deadline {
                        return Err(JepsenError::NoRecovery(
                            RECOVERY_TIMEOUT,
                            format!("final listing on node {}: {other:?}", position + 1),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        lost.extend(acked.difference(&present).cloned());
    }

    let guard = recorder.lock();
    let (history, timed) = &*guard;
    let verdict = lincheck::check(history, Limits::default());
    let (verdict_text, evidence) = match &verdict {
        Verdict::Linearizable { .. } => ("linearizable".to_string(), Vec::new()),
        Verdict::NotLinearizable { key, best_prefix } => {
            let name = String::from_utf8_lossy(key).into_owned();
            (
                format!(
                    "NOT linearizable on {name} (longest linearizable prefix: {} ops)",
                    best_prefix.len()
                ),
                describe_key(timed, &name),
            )
        }
        Verdict::TooBig { key, explored } => {
            let name = String::from_utf8_lossy(key).into_owned();
            (
                format!("undecided on {name}: search bound hit after {explored} states"),
                describe_key(timed, &name),
            )
        }
    };
    Ok(SeedReport {
        seed: options.seed,
        ops: timed.len()
            + tallies
                .iter()
                .map(|t| t.acked_set_keys.len())
                .sum::<usize>(),
        acknowledged_writes: tallies.iter().map(|t| t.acknowledged).sum(),
        unknown_writes: tallies.iter().map(|t| t.unknown).sum(),
        failed: tallies.iter().map(|t| t.failed).sum(),
        reads: tallies.iter().map(|t| t.reads).sum(),
        faults,
        partitions_skipped,
        linearizable: verdict.is_linearizable(),
        verdict: verdict_text,
        lost: lost.into_iter().collect(),
        evidence,
    })
}

/// The recorded events of one key, one line each, for a failure report.
fn describe_key(timed: &[Timed], name: &str) -> Vec<String> {
    let mut lines: Vec<String> = timed
        .iter()
        .filter(|event| register_name(event.key) == name)
        .map(|event| {
            let returned = match &event.returned {
                Some((ms, how)) => format!("returned {ms} ms: {how}"),
                None => "no answer".to_string(),
            };
            format!(
                "client {} {:?} invoked {} ms, {returned}",
                event.client, event.op, event.invoked_ms
            )
        })
        .collect();
    if lines.len() > MAX_REPORTED_EVENTS {
        let skip = lines.len() - MAX_REPORTED_EVENTS;
        lines.drain(..skip);
        lines.insert(0, format!("({skip} earlier events left out)"));
    }
    lines
}
