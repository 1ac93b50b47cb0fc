//! Supervision of local processes declared in `node.yaml` (`services:`): spawn, restart after
//! exit with bounded exponential back-off, restart on request (the healer's
//! `restart_service`), status, and no orphans when the node stops.
//!
//! Each service runs in its own process group, so stopping it reaches the children it forked
//! too (a shell script's `sleep`, a server's workers). One task per service owns the child and
//! takes requests over a bounded queue; status goes out through a `watch` channel, so readers
//! never wait for the task.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use heal::ConfigError;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Most supervised services: one task and one process group each; a node that runs more
/// local services than this is a host, not a mesh node.
pub const MAX_SERVICES: usize = 64;
/// Longest argument list; longer ones are configuration mistakes, and the list is copied into
/// every status report.
pub const MAX_ARGS: usize = 256;
/// Most environment variables per service, for the same reason.
pub const MAX_ENV: usize = 128;
/// Longest service name; it appears in incidents and metric labels.
pub const MAX_NAME: usize = 64;
/// Requests queued per service. The healer runs one step per incident at a time, so a few
/// slots cover concurrent incidents about the same service; more waiting would only repeat
/// the same restart.
pub const REQUEST_QUEUE: usize = 8;
/// Exits remembered for flap detection: a service is *flapping* once this many exits fall
/// within [`FLAP_WINDOW`]. Five crashes a minute is past what back-off alone should absorb.
pub const FLAP_THRESHOLD: usize = 5;
/// Window of the flap count.
pub const FLAP_WINDOW: Duration = Duration::from_secs(60);
/// Time a service gets between SIGTERM and SIGKILL when it is stopped or restarted on
/// request: enough to flush and close sockets, short enough to fit an action's deadline.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Who restarts a service whose process exited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// The supervisor, after its back-off (the default).
    #[default]
    Always,
    /// Only the healing loop (its `restart_service` action): every restart is then an
    /// incident with a record, and a flapping service meets the circuit breaker.
    Healer,
}

/// Restart back-off as written in `node.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartDecl {
    /// Who restarts the service after an exit. Default: `always` (the supervisor).
    #[serde(default)]
    pub policy: RestartPolicy,
    /// Wait before the first restart after a crash; doubles with each further crash.
    #[serde(with = "duration_text", default = "default_min_backoff")]
    pub min_backoff: Duration,
    /// Longest wait; a run that outlives it resets the back-off.
    #[serde(with = "duration_text", default = "default_max_backoff")]
    pub max_backoff: Duration,
}

fn default_min_backoff() -> Duration {
    Duration::from_millis(100)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}

impl Default for RestartDecl {
    fn default() -> RestartDecl {
        RestartDecl {
            policy: RestartPolicy::Always,
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// One supervised process as written in `node.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDecl {
    /// Unique name; health checks refer to it through their `service` field.
    pub name: String,
    /// Program and arguments, run without a shell.
    pub command: Vec<String>,
    /// Variables added to the node's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Absolute working directory; the node's own when absent.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// Back-off between restarts.
    #[serde(default)]
    pub restart: RestartDecl,
}

/// Serde adapter: durations written as `"100ms"`, `"10s"` (heal's syntax, so `node.yaml` has
/// one duration syntax).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        heal::time::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}ms", value.as_millis()))
    }
}

fn config_error(field: String, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

impl ServiceDecl {
    /// Checks the declaration; `index` is its place in the `services` list, used in field
    /// paths.
    pub fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let field = |name: &str| format!("services[{index}].{name}");
        if self.name.is_empty()
            || self.name.len() > MAX_NAME
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(config_error(
                field("name"),
                format!("must be 1 to {MAX_NAME} letters, digits, `-`, `_` or `.`"),
            ));
        }
        if self.command.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(config_error(field("command"), "must name a program first"));
        }
        if self.command.len() > MAX_ARGS {
            return Err(config_error(
                field("command"),
                format!("more than {MAX_ARGS} arguments"),
            ));
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err(config_error(field("command"), "contains a NUL byte"));
        }
        if self.env.len() > MAX_ENV {
            return Err(config_error(
                field("env"),
                format!("more than {MAX_ENV} variables"),
            ));
        }
        if let Some(bad) = self
            .env
            .iter()
            .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
        {
            return Err(config_error(
                field("env"),
                format!("`{}` is not a valid variable (empty, `=` or NUL)", bad.0),
            ));
        }
        if self.working_dir.as_ref().is_some_and(|d| !d.is_absolute()) {
            return Err(config_error(
                field("working_dir"),
                "must be absolute; a relative path would depend on where the node was started",
            ));
        }
        if self.restart.min_backoff > self.restart.max_backoff {
            return Err(config_error(
                field("restart.min_backoff"),
                "must not be longer than `max_backoff`",
            ));
        }
        Ok(())
    }
}

/// Validates a whole `services` list, refusing duplicate names and more than
/// [`MAX_SERVICES`].
pub fn validate_services(decls: &[ServiceDecl]) -> Result<(), ConfigError> {
    if decls.len() > MAX_SERVICES {
        return Err(config_error(
            "services".to_string(),
            format!("more than {MAX_SERVICES} services"),
        ));
    }
    for (index, decl) in decls.iter().enumerate() {
        decl.validate(index)?;
        if decls[..index].iter().any(|d| d.name == decl.name) {
            return Err(config_error(
                format!("services[{index}].name"),
                "duplicates an earlier service",
            ));
        }
    }
    Ok(())
}

/// Wait before restart number `consecutive` (1 for the first crash after a stable run):
/// `min × 2^(consecutive-1)`, capped at `max`.
pub fn backoff(policy: &RestartDecl, consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(31);
    policy
        .min_backoff
        .saturating_mul(1u32 << doublings)
        .min(policy.max_backoff)
}

/// Where a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Being spawned.
    Starting,
    /// Its process runs.
    Running,
    /// It exited (or could not be spawned) and waits for its back-off.
    BackingOff,
    /// It exited and waits for the healing loop to restart it (`restart.policy: healer`).
    Down,
    /// The supervisor stopped it.
    Stopped,
}

/// How the last process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal, if one killed it.
    pub signal: Option<i32>,
    /// How long it ran, ms.
    pub ran_ms: u64,
    /// Whether the supervisor asked it to stop (a requested restart), as opposed to a crash.
    pub requested: bool,
}

/// What the supervisor knows about one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service.
    pub name: String,
    /// Where it stands.
    pub state: ServiceState,
    /// Process id while running.
    pub pid: Option<u32>,
    /// Processes spawned so far.
    pub starts: u64,
    /// Restarts by the supervisor after an exit (crashes, or clean exits: services are meant
    /// to keep running).
    pub restarts: u64,
    /// Restarts on request.
    pub requested_restarts: u64,
    /// The last process's end.
    pub last_exit: Option<ExitRecord>,
    /// The last spawn error, if the last spawn failed.
    pub last_error: Option<String>,
    /// Exits within [`FLAP_WINDOW`] (at most [`FLAP_THRESHOLD`]).
    pub recent_exits: usize,
    /// Whether [`FLAP_THRESHOLD`] exits fell within [`FLAP_WINDOW`].
    pub flapping: bool,
    /// The back-off being waited, ms (0 unless backing off).
    pub backoff_ms: u64,
}

impl ServiceStatus {
    fn new(name: &str) -> ServiceStatus {
        ServiceStatus {
            name: name.to_string(),
            state: ServiceState::Starting,
            pid: None,
            starts: 0,
            restarts: 0,
            requested_restarts: 0,
            last_exit: None,
            last_error: None,
            recent_exits: 0,
            flapping: false,
            backoff_ms: 0,
        }
    }
}

/// Why a supervisor request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SupervisorError {
    /// No service has this name.
    #[error("no supervised service named `{0}`")]
    Unknown(String),
    /// The service's task has ended (the supervisor was shut down).
    #[error("supervision of `{0}` has stopped")]
    Stopped(String),
    /// The request queue of the service is full.
    #[error("`{0}` already has {REQUEST_QUEUE} requests waiting")]
    Busy(String),
    /// The new process could not be spawned.
    #[error("cannot start `{name}`: {reason}")]
    Spawn {
        /// The service.
        name: String,
        /// The operating system's reason.
        reason: String,
    },
    /// More services than [`MAX_SERVICES`], or a name twice.
    #[error("{0}")]
    Config(#[from] ConfigError),
}

enum Request {
    Restart(oneshot::Sender<Result<u32, String>>),
    Stop(oneshot::Sender<()>),
}

struct Channel {
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<ServiceStatus>,
}

/// Cheap, cloneable access to the supervised services (what the executor holds).
#[derive(Clone)]
pub struct SupervisorHandle {
    services: Arc<BTreeMap<String, Channel>>,
}

impl std::fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.services.keys()).finish()
    }
}

/// Owns the service tasks; dropping it kills every service's process group.
#[derive(Debug)]
pub struct Supervisor {
    handle: SupervisorHandle,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Validates the declarations and starts every service. Must be called inside a tokio
    /// runtime.
    pub fn start(decls: Vec<ServiceDecl>) -> Result<Supervisor, SupervisorError> {
        validate_services(&decls)?;
        let mut services = BTreeMap::new();
        let mut tasks = Vec::with_capacity(decls.len());
        for decl in decls {
            let (req_tx, req_rx) = mpsc::channel(REQUEST_QUEUE);
            let (status_tx, status_rx) = watch::channel(ServiceStatus::new(&decl.name));
            services.insert(
                decl.name.clone(),
                Channel {
                    requests: req_tx,
                    status: status_rx,
                },
            );
            tasks.push(tokio::spawn(keep(decl, req_rx, status_tx)));
        }
        Ok(Supervisor {
            handle: SupervisorHandle {
                services: Arc::new(services),
            },
            tasks,
        })
    }

    /// Access for the executor, the API and tests.
    pub fn handle(&self) -> SupervisorHandle {
        self.handle.clone()
    }

    /// Stops every service (SIGTERM to its group, SIGKILL after [`STOP_GRACE`]) and waits for
    /// the tasks to end.
    pub async fn shutdown(mut self) {
        let mut acks = Vec::new();
        for channel in self.handle.services.values() {
            let (tx, rx) = oneshot::channel();
            if channel.requests.send(Request::Stop(tx)).await.is_ok() {
                acks.push(rx);
            }
        }
        for ack in acks {
            let _ = ack.await;
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Aborting drops each task's `Running` guard, which kills its process group.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl SupervisorHandle {
    fn channel(&self, name: &str) -> Result<&Channel, SupervisorError> {
        self.services
            .get(name)
            .ok_or_else(|| SupervisorError::Unknown(name.to_string()))
    }

    /// Kills the service's process group (gracefully first) and starts it again at once,
    /// whatever its back-off; returns the new process id once it runs.
    pub async fn restart(&self, name: &str) -> Result<u32, SupervisorError> {
        let channel = self.channel(name)?;
        let (tx, rx) = oneshot::channel();
        channel
            .requests
            .try_send(Request::Restart(tx))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SupervisorError::Busy(name.to_string()),
                mpsc::error::TrySendError::Closed(_) => SupervisorError::Stopped(name.to_string()),
            })?;
        match rx.await {
            Ok(Ok(pid)) => Ok(pid),
            Ok(Err(reason)) => Err(SupervisorError::Spawn {
                name: name.to_string(),
                reason,
            }),
            Err(_) => Err(SupervisorError::Stopped(name.to_string())),
        }
    }

    /// The status of one service.
    pub fn status(&self, name: &str) -> Option<ServiceStatus> {
        self.services.get(name).map(|c| c.status.borrow().clone())
    }

    /// Every service's status, by name.
    pub fn statuses(&self) -> Vec<ServiceStatus> {
        self.services
            .values()
            .map(|c| c.status.borrow().clone())
            .collect()
    }

    /// A receiver that sees every status change of one service.
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<ServiceStatus>> {
        self.services.get(name).map(|c| c.status.clone())
    }

    /// Whether a service of this name is supervised.
    pub fn contains(&self, name: &str) -> bool {
        self.services.contains_key(name)
    }
}

/// Sends `signal` to the process group led by `pid`.
fn signal_group(pid: u32, signal: libc::c_int) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    // Never 0 (our own group) or 1 (`kill(-1)` would reach every process we may signal).
    if pgid <= 1 {
        return;
    }
    // SAFETY: `kill` takes plain integers and has no memory-safety preconditions. The child
    // was spawned with `process_group(0)`, so its pid is the id of the group it leads.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// A running child whose whole process group dies with this value (task aborted, node
/// stopped), unless it was already reaped.
pub(crate) struct GroupChild {
    pub(crate) child: Child,
    pid: u32,
    reaped: bool,
}

impl GroupChild {
    /// Spawns `command` as the leader of a new process group.
    pub(crate) fn spawn(command: &mut Command) -> std::io::Result<GroupChild> {
        command.process_group(0).kill_on_drop(true);
        let child = command.spawn()?;
        let pid = child.id().unwrap_or(0);
        Ok(GroupChild {
            child,
            pid,
            reaped: false,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the leader to exit, then kills what is left of its group (children it
    /// forked must not outlive it and hold its ports).
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await;
        signal_group(self.pid, libc::SIGKILL);
        self.reaped = true;
        status
    }

    /// SIGTERM to the group, SIGKILL after `grace`, then reaps the leader.
    pub(crate) async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        signal_group(self.pid, libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            signal_group(self.pid, libc::SIGKILL);
            self.reaped = true;
            return status;
        }
        signal_group(self.pid, libc::SIGKILL);
        self.wait().await
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        if !self.reaped {
            signal_group(self.pid, libc::SIGKILL);
        }
    }
}

fn exit_record(status: std::io::Result<ExitStatus>, ran: Duration, requested: bool) -> ExitRecord {
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = match status {
        Ok(s) => (s.code(), s.signal()),
        Err(_) => (None, None),
    };
    ExitRecord {
        code,
        signal,
        ran_ms: u64::try_from(ran.as_millis()).unwrap_or(u64::MAX),
        requested,
    }
}

/// Spawns the declared process (validation guarantees a program; an empty list is refused
/// here too rather than trusted).
fn spawn_service(decl: &ServiceDecl) -> std::io::Result<GroupChild> {
    let Some((program, args)) = decl.command.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let mut command = Command::new(program);
    command.args(args).envs(&decl.env).stdin(Stdio::null());
    if let Some(dir) = &decl.working_dir {
        command.current_dir(dir);
    }
    GroupChild::spawn(&mut command)
}

/// Per-service state the task keeps between processes.
struct Keeper {
    decl: ServiceDecl,
    status: watch::Sender<ServiceStatus>,
    /// Crashes since the last run that outlived the longest back-off.
    consecutive: u32,
    /// Exit times within [`FLAP_WINDOW`], oldest first; at most [`FLAP_THRESHOLD`].
    exits: VecDeque<Instant>,
    /// A restart request to answer once the next process runs.
    waiting: Option<oneshot::Sender<Result<u32, String>>>,
}

enum Next {
    Respawn,
    Finish,
}

impl Keeper {
    fn note_exit(&mut self, now: Instant) {
        while self
            .exits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FLAP_WINDOW)
        {
            self.exits.pop_front();
        }
        if self.exits.len() >= FLAP_THRESHOLD {
            self.exits.pop_front();
        }
        self.exits.push_back(now);
        let recent = self.exits.len();
        self.status.send_modify(|s| {
            s.recent_exits = recent;
            s.flapping = recent >= FLAP_THRESHOLD;
        });
    }

    /// Handles a request that arrived while no process runs; `Finish` ends the task.
    fn take_request(&mut self, request: Option<Request>) -> Next {
        match request {
            Some(Request::Restart(reply)) => {
                self.waiting = Some(reply);
                self.consecutive = 0;
                self.status.send_modify(|s| s.requested_restarts += 1);
                Next::Respawn
            }
            Some(Request::Stop(ack)) => {
                self.status.send_modify(|s| {
                    s.state = ServiceState::Stopped;
                    s.pid = None;
                });
                let _ = ack.send(());
                Next::Finish
            }
            None => Next::Finish,
        }
    }

    /// Waits out the back-off unless a request cuts it short.
    async fn back_off(&mut self, requests: &mut mpsc::Receiver<Request>) -> Next {
        self.consecutive = self.consecutive.saturating_add(1);
        let delay = backoff(&self.decl.restart, self.consecutive);
        self.status.send_modify(|s| {
            s.state = ServiceState::BackingOff;
            s.pid = None;
            s.backoff_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => Next::Respawn,
            request = requests.recv() => self.take_request(request),
        }
    }

    /// Runs one process until it exits or a request ends it.
    async fn run_once(
        &mut self,
        mut child: GroupChild,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Next {
        let started = Instant::now();
        enum Woke {
            Exited(std::io::Result<ExitStatus>),
            Asked(Option<Request>),
        }
        let woke = tokio::select! {
            status = child.wait() => Woke::Exited(status),
            request = requests.recv() => Woke::Asked(request),
        };
        match woke {
            Woke::Exited(status) => {
                let ran = started.elapsed();
                if ran >= self.decl.restart.max_backoff {
                    self.consecutive = 0;
                }
                let record = exit_record(status, ran, false);
                let supervisor_restarts = self.decl.restart.policy == RestartPolicy::Always;
                self.status.send_modify(|s| {
                    s.last_exit = Some(record);
                    s.restarts += u64::from(supervisor_restarts);
                });
                self.note_exit(Instant::now());
                if self.decl.restart.policy == RestartPolicy::Healer {
                    self.status.send_modify(|s| {
                        s.state = ServiceState::Down;
                        s.pid = None;
                    });
                    let request = requests.recv().await;
                    return self.take_request(request);
                }
                self.back_off(requests).await
            }
            Woke::Asked(request) => {
                let status = child.stop(STOP_GRACE).await;
                let record = exit_record(status, started.elapsed(), true);
                self.status.send_modify(|s| s.last_exit = Some(record));
                self.take_request(request)
            }
        }
    }
}

/// The task that keeps one service running until asked to stop.
async fn keep(
    decl: ServiceDecl,
    mut requests: mpsc::Receiver<Request>,
    status: watch::Sender<ServiceStatus>,
) {
    let mut keeper = Keeper {
        decl,
        status,
        consecutive: 0,
        exits: VecDeque::with_capacity(FLAP_THRESHOLD),
        waiting: None,
    };
    loop {
        keeper
            .status
            .send_modify(|s| s.state = ServiceState::Starting);
        let next = match spawn_service(&keeper.decl) {
            Ok(child) => {
                let pid = child.pid();
                keeper.status.send_modify(|s| {
                    s.state = ServiceState::Running;
                    s.pid = Some(pid);
                    s.starts += 1;
                    s.last_error = None;
                    s.backoff_ms = 0;
                });
                if let Some(reply) = keeper.waiting.take() {
                    let _ = reply.send(Ok(pid));
                }
                keeper.run_once(child, &mut requests).await
            }
            Err(e) => {
                let program = keeper.decl.command.first().map_or("", String::as_str);
                let reason = format!("{program}: {e}");
                keeper
                    .status
                    .send_modify(|s| s.last_error = Some(reason.clone()));
                if let Some(reply) = keeper.waiting.take() {
                    let _ = reply.send(Err(reason));
                }
                keeper.back_off(&mut requests).await
            }
        };
        if let Next::Finish = next {
            return;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Generous bound for anything a real process should do on a loaded two-core machine;
    /// reaching it fails the test with the last status, it never decides a pass.
    const PATIENCE: Duration = Duration::from_secs(30);

    fn service(name: &str, command: &[&str]) -> ServiceDecl {
        ServiceDecl {
            name: name.to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            working_dir: None,
            restart: RestartDecl::default(),
        }
    }

    async fn wait_until(
        handle: &SupervisorHandle,
        name: &str,
        what: &str,
        pred: impl FnMut(&ServiceStatus) -> bool,
    ) -> ServiceStatus {
        let mut rx = handle.watch(name).expect("service exists");
        match tokio::time::timeout(PATIENCE, rx.wait_for(pred)).await {
            Ok(Ok(status)) => status.clone(),
            _ => panic!("{name} never reached `{what}`: {:?}", handle.status(name)),
        }
    }

    /// Processes whose process group is `pgid`, zombies excluded (read from `/proc`).
    fn live_group_members(pgid: u32) -> Vec<u32> {
        let mut members = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state, ppid, pgrp.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
                members.push(pid);
            }
        }
        members
    }

    /// Waits until the process whose pid `pid_file` holds is gone or a zombie.
    pub(crate) async fn until_dead(pid_file: &std::path::Path) {
        let pid = std::fs::read_to_string(pid_file).expect("the process started");
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = Instant::now() + PATIENCE;
        while std::fs::read_to_string(&stat).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        }) {
            assert!(Instant::now() < deadline, "{} is still alive", pid.trim());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn until_group_gone(pgid: u32) {
        let deadline = Instant::now() + PATIENCE;
        while !live_group_members(pgid).is_empty() {
            assert!(
                Instant::now() < deadline,
                "group {pgid} still has {:?}",
                live_group_members(pgid)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn declarations_are_validated_with_field_paths() {
        let good = service("web", &["sleep", "1"]);
        assert_eq!(validate_services(std::slice::from_ref(&good)), Ok(()));
        let mut cases: Vec<(ServiceDecl, &str)> = vec![
            (service("", &["sleep"]), "services[0].name"),
            (service("a/b", &["sleep"]), "services[0].name"),
            (service("web", &[]), "services[0].command"),
            (service("web", &[" "]), "services[0].command"),
        ];
        let mut env = good.clone();
        env.env.insert("A=B".to_string(), "x".to_string());
        cases.push((env, "services[0].env"));
        let mut dir = good.clone();
        dir.working_dir = Some(PathBuf::from("relative"));
        cases.push((dir, "services[0].working_dir"));
        let mut backoff = good.clone();
        backoff.restart.min_backoff = Duration::from_secs(20);
        cases.push((backoff, "services[0].restart.min_backoff"));
        for (decl, field) in cases {
            let err = validate_services(std::slice::from_ref(&decl)).expect_err("refused");
            assert_eq!(err.field, field, "{decl:?}: {err}");
        }
        let err = validate_services(&[good.clone(), good]).expect_err("duplicate");
        assert_eq!(err.field, "services[1].name");
    }

    #[test]
    fn declarations_parse_from_yaml_with_durations() {
        let yaml = "name: web\ncommand: [sleep, '5']\nenv: {MODE: test}\nrestart: {min_backoff: 250ms, max_backoff: 30s}\n";
        let decl: ServiceDecl = serde_saphyr::from_str(yaml).expect("parses");
        assert_eq!(decl.restart.min_backoff, Duration::from_millis(250));
        assert_eq!(decl.restart.max_backoff, Duration::from_secs(30));
        assert_eq!(decl.env.get("MODE").map(String::as_str), Some("test"));
        let bad = "name: web\ncommand: [sleep]\nrestart: {min_backoff: 5}\n";
        assert!(serde_saphyr::from_str::<ServiceDecl>(bad).is_err());
        let unknown = "name: web\ncommand: [sleep]\nrestrat: {}\n";
        assert!(serde_saphyr::from_str::<ServiceDecl>(unknown).is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RestartDecl {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1_000),
            ..RestartDecl::default()
        };
        let waits: Vec<u128> = (1..=6).map(|n| backoff(&policy, n).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff(&policy, u32::MAX), Duration::from_millis(1_000));
    }

    #[tokio::test]
    async fn a_crashing_service_is_restarted_with_growing_backoff_and_counted_as_flapping() {
        let mut decl = service("crasher", &["sh", "-c", "exit 3"]);
        // A long maximum keeps every run far below it, so the back-off never resets and the
        // expected wait follows from the restart count alone.
        decl.restart = RestartDecl {
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(3600),
            ..RestartDecl::default()
        };
        let supervisor = Supervisor::start(vec![decl]).expect("start");
        let handle = supervisor.handle();
        let status = wait_until(&handle, "crasher", "five restarts", |s| {
            s.restarts >= FLAP_THRESHOLD as u64 && s.state == ServiceState::BackingOff
        })
        .await;
        assert_eq!(status.backoff_ms, 10 << (status.restarts - 1));
        assert_eq!(status.last_exit.as_ref().and_then(|e| e.code), Some(3));
        assert!(!status.last_exit.as_ref().is_some_and(|e| e.requested));
        assert!(status.starts >= status.restarts);
        assert_eq!(status.recent_exits, FLAP_THRESHOLD);
        assert!(status.flapping);
        supervisor.shutdown().await;
    }

    #[tokio::test]
    async fn a_run_longer_than_the_longest_backoff_resets_it() {
        let mut decl = service("slow-crasher", &["sh", "-c", "sleep 0.2; exit 1"]);
        // Every run sleeps at least 200 ms, past the 50 ms maximum, so each crash counts as
        // the first after a stable run.
        decl.restart = RestartDecl {
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..RestartDecl::default()
        };
        let supervisor = Supervisor::start(vec![decl]).expect("start");
        let handle = supervisor.handle();
        let status = wait_until(&handle, "slow-crasher", "three restarts", |s| {
            s.restarts >= 3 && s.state == ServiceState::BackingOff
        })
        .await;
        assert_eq!(status.backoff_ms, 10);
        assert!(
            status
                .last_exit
                .is_some_and(|e| e.ran_ms >= 200 && e.code == Some(1))
        );
        supervisor.shutdown().await;
    }

    #[tokio::test]
    async fn restart_kills_the_whole_group_and_starts_again() {
        let decl = service("sleeper", &["sh", "-c", "sleep 1000 & wait"]);
        let supervisor = Supervisor::start(vec![decl]).expect("start");
        let handle = supervisor.handle();
        let first = wait_until(&handle, "sleeper", "running", |s| s.pid.is_some()).await;
        let old = first.pid.expect("running");
        // The shell's `sleep` shares its group; wait until it exists so the test checks that
        // the restart reaches it.
        let deadline = Instant::now() + PATIENCE;
        while live_group_members(old).len() < 2 {
            assert!(Instant::now() < deadline, "sleep never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let new = handle.restart("sleeper").await.expect("restarted");
        assert_ne!(new, old);
        until_group_gone(old).await;
        let status = handle.status("sleeper").expect("status");
        assert_eq!(status.pid, Some(new));
        assert_eq!(status.state, ServiceState::Running);
        assert_eq!((status.requested_restarts, status.restarts), (1, 0));
        let exit = status.last_exit.expect("recorded");
        assert!(exit.requested);
        assert_eq!(exit.signal, Some(libc::SIGTERM));
        assert!(!status.flapping);
        supervisor.shutdown().await;
        until_group_gone(new).await;
        assert_eq!(
            handle.status("sleeper").map(|s| s.state),
            Some(ServiceState::Stopped)
        );
    }

    #[tokio::test]
    async fn dropping_the_supervisor_kills_its_services() {
        let supervisor =
            Supervisor::start(vec![service("sleeper", &["sleep", "1000"])]).expect("start");
        let handle = supervisor.handle();
        let pid = wait_until(&handle, "sleeper", "running", |s| s.pid.is_some())
            .await
            .pid
            .expect("running");
        assert_eq!(live_group_members(pid), vec![pid]);
        drop(supervisor);
        until_group_gone(pid).await;
        assert_eq!(
            handle.restart("sleeper").await,
            Err(SupervisorError::Stopped("sleeper".to_string()))
        );
    }

    #[tokio::test]
    async fn spawn_failures_and_unknown_names_are_errors() {
        let mut decl = service("ghost", &["/nonexistent/x0tta6bl4-service"]);
        decl.restart.min_backoff = Duration::from_secs(3600);
        decl.restart.max_backoff = Duration::from_secs(3600);
        let supervisor = Supervisor::start(vec![decl]).expect("start");
        let handle = supervisor.handle();
        let status = wait_until(&handle, "ghost", "spawn error", |s| s.last_error.is_some()).await;
        assert_eq!(status.state, ServiceState::BackingOff);
        assert_eq!(status.starts, 0);
        let err = handle.restart("ghost").await.expect_err("cannot spawn");
        assert!(
            matches!(&err, SupervisorError::Spawn { name, reason } if name == "ghost" && reason.contains("x0tta6bl4-service")),
            "{err}"
        );
        assert_eq!(
            handle.restart("nobody").await,
            Err(SupervisorError::Unknown("nobody".to_string()))
        );
        supervisor.shutdown().await;
    }

    #[tokio::test]
    async fn environment_and_working_directory_reach_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut decl = service(
            "writer",
            &["sh", "-c", "echo \"$GREETING\" > out; sleep 1000"],
        );
        decl.env
            .insert("GREETING".to_string(), "hello mesh".to_string());
        decl.working_dir = Some(dir.path().to_path_buf());
        let supervisor = Supervisor::start(vec![decl]).expect("start");
        let out = dir.path().join("out");
        let deadline = Instant::now() + PATIENCE;
        while std::fs::read_to_string(&out).map_or(true, |t| !t.ends_with('\n')) {
            assert!(Instant::now() < deadline, "nothing written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(std::fs::read_to_string(&out).expect("read"), "hello mesh\n");
        supervisor.shutdown().await;
    }
}
