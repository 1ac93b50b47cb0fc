//! The Execute part of the healing loop: carries out `heal`'s actions and reports an
//! `ActionResult` for each, within its deadline.
//!
//! Actions fall in three groups ([`route`]):
//!
//! - **local** (`restart_service`, `run_command`, `clear_cache`): processes and files, async;
//!   the runtime spawns [`Executor::run_local`] and feeds the result back;
//! - **mesh** (`isolate_peer`, `depref_peer`, `notify_neighbours`): changes to the router,
//!   done at once by [`run_mesh`] through the [`MeshControl`] trait the runtime implements
//!   over its router and links;
//! - **healer** (`adjust_threshold`): a change to the healer itself, applied by
//!   [`apply_threshold`].
//!
//! No action reports success without its effect being there: a mesh change is read back
//! through the trait after it is made, a cache directory is listed again after it is emptied,
//! a command's exit status decides, and a restart succeeds only once the new process runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use heal::{Action, ActionResult, Healer, IncidentId, PeerRef, ThresholdName};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use wire::NodeId;

use crate::supervisor::{GroupChild, SupervisorHandle};

/// Bytes of a command's stdout and of its stderr kept; the rest is read and dropped so the
/// command never blocks on a full pipe. Enough for a diagnostic, small enough to log.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024;
/// Longest failure message handed to the healer; it is stored in the incident's step record,
/// which `heal` keeps small enough to persist and gossip.
pub const MAX_FAILURE_MESSAGE: usize = 512;
/// Longest incident notice text sent to neighbours; it rides in a control message.
pub const MAX_NOTICE_TEXT: usize = 256;
/// Longest cache name.
pub const MAX_CACHE_NAME: usize = 64;

/// Where an action is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Processes or files: [`Executor::run_local`].
    Local,
    /// The router and links: [`run_mesh`].
    Mesh,
    /// The healer's own settings: [`apply_threshold`].
    Healer,
}

/// Which group `action` belongs to.
pub fn route(action: &Action) -> Route {
    match action {
        Action::RestartService { .. } | Action::RunCommand { .. } | Action::ClearCache { .. } => {
            Route::Local
        }
        Action::IsolatePeer { .. }
        | Action::DeprefPeer { .. }
        | Action::NotifyNeighbours { .. } => Route::Mesh,
        Action::AdjustThreshold { .. } => Route::Healer,
    }
}

/// Time left until `deadline` on `heal`'s clock: the budget of an action emitted with that
/// deadline.
pub fn budget(deadline: heal::Timestamp, now: heal::Timestamp) -> Duration {
    deadline.saturating_since(now)
}

/// A command's captured output, each stream cut at [`MAX_OUTPUT_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommandOutput {
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Whether either stream was cut.
    pub truncated: bool,
}

/// What the executor did: the result for the healer and the detail for logs and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Hand this to `Healer::handle_action_result`.
    pub result: ActionResult,
    /// What happened, in a line.
    pub detail: String,
    /// Output of `run_command`.
    pub output: Option<CommandOutput>,
}

impl Report {
    fn ok(detail: impl Into<String>) -> Report {
        Report {
            result: ActionResult::Succeeded,
            detail: detail.into(),
            output: None,
        }
    }

    fn failed(message: impl Into<String>) -> Report {
        let message = cut(message.into(), MAX_FAILURE_MESSAGE);
        Report {
            result: ActionResult::Failed(message.clone()),
            detail: message,
            output: None,
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The last `max` bytes of `text` or fewer, starting at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Runs the local actions. Cheap to clone into spawned tasks.
#[derive(Debug, Clone)]
pub struct Executor {
    /// The supervisor's handle; `None` when `node.yaml` declares no services.
    supervisor: Option<SupervisorHandle>,
    /// The directory cache names resolve under; `None` disables `clear_cache`.
    cache_root: Option<PathBuf>,
}

impl Executor {
    /// An executor over the node's supervised services and cache root.
    pub fn new(supervisor: Option<SupervisorHandle>, cache_root: Option<PathBuf>) -> Executor {
        Executor {
            supervisor,
            cache_root,
        }
    }

    /// Runs a local action, giving up (with a failure) when `budget` runs out. A command that
    /// outlives the budget is killed with its process group; a restart or a deletion already
    /// under way finishes in the background, but is reported failed because it was late.
    pub async fn run_local(&self, action: &Action, budget: Duration) -> Report {
        if budget.is_zero() {
            return Report::failed(format!(
                "{}: the deadline passed before it started",
                action.name()
            ));
        }
        match tokio::time::timeout(budget, self.run_local_unbounded(action)).await {
            Ok(report) => report,
            Err(_) => Report::failed(format!(
                "{}: did not finish within {} ms",
                action.name(),
                budget.as_millis()
            )),
        }
    }

    async fn run_local_unbounded(&self, action: &Action) -> Report {
        match action {
            Action::RestartService { service } => self.restart_service(service).await,
            Action::RunCommand { command, args } => run_command(command, args).await,
            Action::ClearCache { cache } => self.clear_cache(cache).await,
            other => Report::failed(format!("{} is not a local action", other.name())),
        }
    }

    async fn restart_service(&self, service: &str) -> Report {
        let Some(supervisor) = &self.supervisor else {
            return Report::failed(format!(
                "cannot restart `{service}`: node.yaml declares no supervised services"
            ));
        };
        match supervisor.restart(service).await {
            Ok(pid) => Report::ok(format!("restarted `{service}` as pid {pid}")),
            Err(e) => Report::failed(e.to_string()),
        }
    }

    async fn clear_cache(&self, name: &str) -> Report {
        let Some(root) = &self.cache_root else {
            return Report::failed(format!(
                "cannot clear cache `{name}`: no cache root is configured"
            ));
        };
        let dir = match cache_dir(root, name) {
            Ok(dir) => dir,
            Err(reason) => return Report::failed(reason),
        };
        match tokio::task::spawn_blocking(move || empty_directory(&dir)).await {
            Ok(Ok(detail)) => Report::ok(detail),
            Ok(Err(reason)) => Report::failed(reason),
            Err(e) => Report::failed(format!("clearing cache `{name}` stopped: {e}")),
        }
    }
}

/// The directory of cache `name` under `root`. Names, not paths: a playbook cannot point the
/// node at other directories, so separators, `.` and `..` are refused, and the directory may
/// not be a symbolic link.
pub fn cache_dir(root: &Path, name: &str) -> Result<PathBuf, String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_CACHE_NAME
        && name != "."
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        return Err(format!(
            "cache name `{name}` refused: use 1 to {MAX_CACHE_NAME} letters, digits, `-`, `_` or `.`, without `/` or `..`"
        ));
    }
    let dir = root.join(name);
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.file_type().is_dir() => Ok(dir),
        Ok(_) => Err(format!(
            "{} is not a directory (links are not followed)",
            dir.display()
        )),
        Err(e) => Err(format!("cache `{name}` at {}: {e}", dir.display())),
    }
}

/// Deletes everything inside `dir` (not `dir` itself) without following links out of it,
/// then checks it is empty.
fn empty_directory(dir: &Path) -> Result<String, String> {
    let fail = |what: &Path, e: std::io::Error| format!("cannot clear {}: {e}", what.display());
    let mut removed = 0usize;
    for entry in std::fs::read_dir(dir).map_err(|e| fail(dir, e))? {
        let entry = entry.map_err(|e| fail(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| fail(&path, e))?;
        if kind.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| fail(&path, e))?;
        } else {
            std::fs::remove_file(&path).map_err(|e| fail(&path, e))?;
        }
        removed += 1;
    }
    let left = std::fs::read_dir(dir).map_err(|e| fail(dir, e))?.count();
    if left > 0 {
        return Err(format!(
            "{} still holds {left} entries after clearing",
            dir.display()
        ));
    }
    Ok(format!("removed {removed} entries from {}", dir.display()))
}

/// Reads a stream to its end, keeping the first [`MAX_OUTPUT_BYTES`].
async fn read_bounded(stream: Option<impl AsyncRead + Unpin>) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let Some(mut stream) = stream else {
        return (kept, truncated);
    };
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT_BYTES - kept.len();
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

/// Runs a program without a shell in its own process group; exit status 0 succeeds.
async fn run_command(program: &str, args: &[String]) -> Report {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match GroupChild::spawn(&mut command) {
        Ok(child) => child,
        Err(e) => return Report::failed(format!("cannot run {program}: {e}")),
    };
    let stdout = child.child.stdout.take();
    let stderr = child.child.stderr.take();
    let ((out, out_cut), (err, err_cut), status) =
        tokio::join!(read_bounded(stdout), read_bounded(stderr), child.wait());
    let output = CommandOutput {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        truncated: out_cut || err_cut,
    };
    let mut report = match status {
        Ok(status) if status.success() => Report::ok(format!("{program} exited with status 0")),
        Ok(status) => {
            let stderr = tail(output.stderr.trim_end(), MAX_FAILURE_MESSAGE / 2);
            Report::failed(format!("{program}: {status}; stderr: {stderr}"))
        }
        Err(e) => Report::failed(format!("{program}: {e}")),
    };
    report.output = Some(output);
    report
}

/// An incident message for the neighbours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentNotice {
    /// The sending node.
    pub from: NodeId,
    /// Its incident.
    pub incident: IncidentId,
    /// The playbook's text, cut at [`MAX_NOTICE_TEXT`].
    pub message: String,
}

/// What the executor needs from the router and the links; the runtime implements it over
/// its `Router` and link set. Every setter must take effect before it returns, because the
/// executor reads the state back to decide success.
pub trait MeshControl {
    /// This node.
    fn local_id(&self) -> NodeId;
    /// Whether the router knows `peer` (neighbour or destination).
    fn knows(&self, peer: NodeId) -> bool;
    /// Stops (or resumes) routing through `peer`.
    fn set_isolated(&mut self, peer: NodeId, isolated: bool) -> Result<(), String>;
    /// Whether routing avoids `peer`.
    fn is_isolated(&self, peer: NodeId) -> bool;
    /// Sets the extra cost of `peer`'s links (0 lifts it).
    fn set_penalty(&mut self, peer: NodeId, penalty: u32) -> Result<(), String>;
    /// The extra cost in force for `peer`.
    fn penalty(&self, peer: NodeId) -> u32;
    /// Queues the notice for every current neighbour; returns how many it was queued for.
    fn notify_neighbours(&mut self, notice: &IncidentNotice) -> Result<usize, String>;
}

/// The peer an action names, refusing an unresolved placeholder and this node itself.
fn resolved_peer(peer: &PeerRef, local: NodeId) -> Result<NodeId, String> {
    let PeerRef::Id(id) = peer else {
        return Err("the `$peer` placeholder was not resolved".to_string());
    };
    if *id == local {
        return Err(format!("refusing to act on this node ({id}) as a peer"));
    }
    Ok(*id)
}

/// Carries out a mesh action for `incident` and reads the effect back.
pub fn run_mesh<M: MeshControl>(mesh: &mut M, incident: IncidentId, action: &Action) -> Report {
    match action {
        Action::IsolatePeer { peer, release } => {
            let peer = match resolved_peer(peer, mesh.local_id()) {
                Ok(peer) => peer,
                Err(reason) => return Report::failed(reason),
            };
            if !release && !mesh.knows(peer) {
                return Report::failed(format!(
                    "cannot isolate {peer}: the router does not know it"
                ));
            }
            let isolate = !release;
            if let Err(e) = mesh.set_isolated(peer, isolate) {
                return Report::failed(format!("isolating {peer}: {e}"));
            }
            match (mesh.is_isolated(peer), isolate) {
                (true, true) => Report::ok(format!("routing avoids {peer}")),
                (false, false) => Report::ok(format!("routing may use {peer} again")),
                (_, true) => Report::failed(format!("the router did not keep {peer} isolated")),
                (_, false) => Report::failed(format!("the router still isolates {peer}")),
            }
        }
        Action::DeprefPeer { peer, penalty } => {
            let peer = match resolved_peer(peer, mesh.local_id()) {
                Ok(peer) => peer,
                Err(reason) => return Report::failed(reason),
            };
            if *penalty > 0 && !mesh.knows(peer) {
                return Report::failed(format!(
                    "cannot penalise {peer}: the router does not know it"
                ));
            }
            if let Err(e) = mesh.set_penalty(peer, *penalty) {
                return Report::failed(format!("penalising {peer}: {e}"));
            }
            let now = mesh.penalty(peer);
            if now == *penalty {
                Report::ok(format!("links to {peer} carry a penalty of {now}"))
            } else {
                Report::failed(format!(
                    "the router holds penalty {now} for {peer}, not {penalty}"
                ))
            }
        }
        Action::NotifyNeighbours { message } => {
            let notice = IncidentNotice {
                from: mesh.local_id(),
                incident,
                message: cut(message.clone(), MAX_NOTICE_TEXT),
            };
            match mesh.notify_neighbours(&notice) {
                Ok(0) => Report::failed("no neighbour to notify"),
                Ok(n) => Report::ok(format!("incident notice queued for {n} neighbours")),
                Err(e) => Report::failed(format!("notifying neighbours: {e}")),
            }
        }
        other => Report::failed(format!("{} is not a mesh action", other.name())),
    }
}

/// The threshold change an `adjust_threshold` action asks for.
pub fn threshold_instruction(action: &Action) -> Option<(ThresholdName, f64)> {
    match action {
        Action::AdjustThreshold { threshold, value } => Some((*threshold, *value)),
        _ => None,
    }
}

/// Applies an `adjust_threshold` action to the healer; an out-of-range value fails with the
/// healer's reason and leaves the threshold as it was.
pub fn apply_threshold(healer: &mut Healer, action: &Action) -> Report {
    let Some((threshold, value)) = threshold_instruction(action) else {
        return Report::failed(format!("{} is not a threshold change", action.name()));
    };
    match healer.set_threshold(threshold, value) {
        Ok(()) => Report::ok(format!("threshold {threshold:?} set to {value}")),
        Err(e) => Report::failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use heal::{HealConfig, PlaybookSet};

    use super::*;
    use crate::supervisor::{ServiceDecl, Supervisor};

    const PATIENCE: Duration = Duration::from_secs(30);

    fn id(n: u8) -> NodeId {
        NodeId([n; NodeId::LEN])
    }

    fn command(program: &str, args: &[&str]) -> Action {
        Action::RunCommand {
            command: program.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The state a router keeps for the executor's actions, held in memory: which peers
    /// are isolated or penalised and which notices went to which neighbour. Like the router's
    /// own tables it has a size limit, past which changes are refused.
    struct MeshState {
        local: NodeId,
        known: BTreeSet<NodeId>,
        neighbours: BTreeSet<NodeId>,
        isolated: BTreeSet<NodeId>,
        penalties: BTreeMap<NodeId, u32>,
        sent: Vec<(NodeId, IncidentNotice)>,
        max_held: usize,
    }

    impl MeshState {
        fn new(neighbours: &[u8], others: &[u8]) -> MeshState {
            let neighbours: BTreeSet<NodeId> = neighbours.iter().map(|n| id(*n)).collect();
            let mut known = neighbours.clone();
            known.extend(others.iter().map(|n| id(*n)));
            MeshState {
                local: id(1),
                known,
                neighbours,
                isolated: BTreeSet::new(),
                penalties: BTreeMap::new(),
                sent: Vec::new(),
                max_held: 2,
            }
        }
    }

    impl MeshControl for MeshState {
        fn local_id(&self) -> NodeId {
            self.local
        }
        fn knows(&self, peer: NodeId) -> bool {
            self.known.contains(&peer)
        }
        fn set_isolated(&mut self, peer: NodeId, isolated: bool) -> Result<(), String> {
            if !isolated {
                self.isolated.remove(&peer);
                return Ok(());
            }
            if !self.isolated.contains(&peer) && self.isolated.len() >= self.max_held {
                return Err(format!("already isolating {} peers", self.max_held));
            }
            self.isolated.insert(peer);
            Ok(())
        }
        fn is_isolated(&self, peer: NodeId) -> bool {
            self.isolated.contains(&peer)
        }
        fn set_penalty(&mut self, peer: NodeId, penalty: u32) -> Result<(), String> {
            if penalty == 0 {
                self.penalties.remove(&peer);
            } else {
                self.penalties.insert(peer, penalty);
            }
            Ok(())
        }
        fn penalty(&self, peer: NodeId) -> u32 {
            self.penalties.get(&peer).copied().unwrap_or(0)
        }
        fn notify_neighbours(&mut self, notice: &IncidentNotice) -> Result<usize, String> {
            for n in &self.neighbours {
                self.sent.push((*n, notice.clone()));
            }
            Ok(self.neighbours.len())
        }
    }

    fn failed(report: &Report) -> &str {
        match &report.result {
            ActionResult::Failed(message) => message,
            ActionResult::Succeeded => panic!("expected a failure: {report:?}"),
        }
    }

    #[test]
    fn every_action_has_one_route() {
        let peer = PeerRef::Id(id(2));
        let table = [
            (
                Action::RestartService {
                    service: "a".into(),
                },
                Route::Local,
            ),
            (command("true", &[]), Route::Local),
            (Action::ClearCache { cache: "a".into() }, Route::Local),
            (
                Action::IsolatePeer {
                    peer,
                    release: false,
                },
                Route::Mesh,
            ),
            (Action::DeprefPeer { peer, penalty: 5 }, Route::Mesh),
            (
                Action::NotifyNeighbours {
                    message: "m".into(),
                },
                Route::Mesh,
            ),
            (
                Action::AdjustThreshold {
                    threshold: ThresholdName::Cpu,
                    value: 90.0,
                },
                Route::Healer,
            ),
        ];
        for (action, expected) in table {
            assert_eq!(route(&action), expected, "{action:?}");
        }
    }

    #[tokio::test]
    async fn commands_report_exit_status_and_bounded_output() {
        let executor = Executor::new(None, None);
        let ok = executor
            .run_local(&command("echo", &["hello", "mesh"]), PATIENCE)
            .await;
        assert_eq!(ok.result, ActionResult::Succeeded);
        assert_eq!(
            ok.output.as_ref().map(|o| o.stdout.as_str()),
            Some("hello mesh\n")
        );

        let bad = executor
            .run_local(
                &command("sh", &["-c", "echo disk is gone >&2; exit 2"]),
                PATIENCE,
            )
            .await;
        let message = failed(&bad);
        assert!(
            message.contains("exit status: 2") && message.contains("disk is gone"),
            "{message}"
        );

        let loud = executor
            .run_local(&command("head", &["-c", "100000", "/dev/zero"]), PATIENCE)
            .await;
        assert_eq!(loud.result, ActionResult::Succeeded);
        let output = loud.output.expect("captured");
        assert_eq!(output.stdout.len(), MAX_OUTPUT_BYTES);
        assert!(output.truncated);

        let missing = executor
            .run_local(&command("/nonexistent/x0tta6bl4-fix", &[]), PATIENCE)
            .await;
        assert!(failed(&missing).contains("x0tta6bl4-fix"));
        let late = executor
            .run_local(&command("true", &[]), Duration::ZERO)
            .await;
        assert!(failed(&late).contains("deadline passed"));
    }

    #[tokio::test]
    async fn a_command_past_its_deadline_fails_and_its_group_dies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let script = format!(
            "sh -c 'echo $$ > {}; exec sleep 1000'; true",
            pid_file.display()
        );
        let report = Executor::new(None, None)
            .run_local(&command("sh", &["-c", &script]), Duration::from_secs(3))
            .await;
        assert_eq!(
            failed(&report),
            "run_command: did not finish within 3000 ms"
        );
        crate::supervisor::tests::until_dead(&pid_file).await;
    }

    #[tokio::test]
    async fn clearing_a_cache_empties_it_without_leaving_its_root() {
        let root = tempfile::tempdir().expect("root");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("precious"), b"keep").expect("outside file");
        let web = root.path().join("web");
        std::fs::create_dir_all(web.join("nested/deeper")).expect("dirs");
        std::fs::write(web.join("a"), b"1").expect("file");
        std::fs::write(web.join("nested/deeper/b"), b"2").expect("file");
        std::os::unix::fs::symlink(outside.path(), web.join("link")).expect("link");
        std::os::unix::fs::symlink(outside.path(), root.path().join("linked")).expect("link");

        let executor = Executor::new(None, Some(root.path().to_path_buf()));
        let clear = |name: &str| Action::ClearCache {
            cache: name.to_string(),
        };
        let report = executor.run_local(&clear("web"), PATIENCE).await;
        assert_eq!(report.result, ActionResult::Succeeded, "{report:?}");
        assert!(report.detail.contains("removed 3 entries"), "{report:?}");
        assert_eq!(std::fs::read_dir(&web).expect("still there").count(), 0);
        assert!(
            outside.path().join("precious").exists(),
            "a link was followed"
        );

        for bad in [
            "", ".", "..", "../x", "a/b", "/etc", "we b", "linked", "missing",
        ] {
            let report = executor.run_local(&clear(bad), PATIENCE).await;
            assert!(!failed(&report).is_empty(), "{bad}");
        }
        assert!(outside.path().join("precious").exists());
        assert!(root.path().join("linked").exists());
        let report = Executor::new(None, None)
            .run_local(&clear("web"), PATIENCE)
            .await;
        assert!(failed(&report).contains("no cache root"));
    }

    #[tokio::test]
    async fn restart_service_goes_through_the_supervisor() {
        let decl = ServiceDecl {
            name: "web".to_string(),
            command: vec!["sleep".to_string(), "1000".to_string()],
            env: BTreeMap::new(),
            working_dir: None,
            restart: Default::default(),
        };
        let supervisor = Supervisor::start(vec![decl]).expect("start");
        let handle = supervisor.handle();
        let mut rx = handle.watch("web").expect("web");
        let old = tokio::time::timeout(PATIENCE, rx.wait_for(|s| s.pid.is_some()))
            .await
            .expect("started in time")
            .expect("running")
            .pid;
        let executor = Executor::new(Some(handle.clone()), None);
        let restart = |name: &str| Action::RestartService {
            service: name.to_string(),
        };
        let report = executor.run_local(&restart("web"), PATIENCE).await;
        assert_eq!(report.result, ActionResult::Succeeded, "{report:?}");
        let status = handle.status("web").expect("status");
        assert_ne!(status.pid, old);
        assert_eq!(status.requested_restarts, 1);
        assert!(
            report
                .detail
                .contains(&format!("{}", status.pid.unwrap_or(0)))
        );

        let unknown = executor.run_local(&restart("db"), PATIENCE).await;
        assert!(failed(&unknown).contains("no supervised service named `db`"));
        let none = Executor::new(None, None)
            .run_local(&restart("web"), PATIENCE)
            .await;
        assert!(failed(&none).contains("no supervised services"));
        supervisor.shutdown().await;
    }

    #[test]
    fn peers_are_isolated_and_released_and_the_state_is_read_back() {
        let mut mesh = MeshState::new(&[2, 3], &[4, 5]);
        let isolate = |n: u8, release: bool| Action::IsolatePeer {
            peer: PeerRef::Id(id(n)),
            release,
        };
        let incident = IncidentId(7);
        assert_eq!(
            run_mesh(&mut mesh, incident, &isolate(2, false)).result,
            ActionResult::Succeeded
        );
        assert_eq!(
            run_mesh(&mut mesh, incident, &isolate(4, false)).result,
            ActionResult::Succeeded
        );
        assert_eq!(mesh.isolated, BTreeSet::from([id(2), id(4)]));
        // The router's limit: the refusal is a failure and nothing changes.
        let full = run_mesh(&mut mesh, incident, &isolate(3, false));
        assert!(failed(&full).contains("already isolating 2"));
        assert_eq!(mesh.isolated, BTreeSet::from([id(2), id(4)]));
        for (n, why) in [(9, "does not know"), (1, "this node")] {
            let report = run_mesh(&mut mesh, incident, &isolate(n, false));
            assert!(failed(&report).contains(why), "{report:?}");
        }
        let suspect = Action::IsolatePeer {
            peer: PeerRef::Suspect,
            release: false,
        };
        assert!(failed(&run_mesh(&mut mesh, incident, &suspect)).contains("placeholder"));
        assert_eq!(
            run_mesh(&mut mesh, incident, &isolate(2, true)).result,
            ActionResult::Succeeded
        );
        assert_eq!(mesh.isolated, BTreeSet::from([id(4)]));
    }

    #[test]
    fn penalties_are_set_lifted_and_read_back() {
        let mut mesh = MeshState::new(&[2], &[]);
        let depref = |n: u8, penalty: u32| Action::DeprefPeer {
            peer: PeerRef::Id(id(n)),
            penalty,
        };
        let report = run_mesh(&mut mesh, IncidentId(1), &depref(2, 512));
        assert_eq!(report.result, ActionResult::Succeeded);
        assert_eq!(mesh.penalty(id(2)), 512);
        assert!(
            failed(&run_mesh(&mut mesh, IncidentId(1), &depref(8, 512))).contains("does not know")
        );
        assert_eq!(
            run_mesh(&mut mesh, IncidentId(1), &depref(2, 0)).result,
            ActionResult::Succeeded
        );
        assert!(mesh.penalties.is_empty());
    }

    #[test]
    fn notices_reach_every_neighbour_and_none_is_a_failure() {
        let mut mesh = MeshState::new(&[2, 3], &[4]);
        let long = "x".repeat(MAX_NOTICE_TEXT * 2);
        let report = run_mesh(
            &mut mesh,
            IncidentId(3),
            &Action::NotifyNeighbours { message: long },
        );
        assert_eq!(report.result, ActionResult::Succeeded);
        let receivers: Vec<NodeId> = mesh.sent.iter().map(|(to, _)| *to).collect();
        assert_eq!(receivers, vec![id(2), id(3)]);
        let notice = &mesh.sent[0].1;
        assert_eq!((notice.from, notice.incident), (id(1), IncidentId(3)));
        assert_eq!(notice.message.len(), MAX_NOTICE_TEXT);

        let mut alone = MeshState::new(&[], &[4]);
        let report = run_mesh(
            &mut alone,
            IncidentId(3),
            &Action::NotifyNeighbours {
                message: "m".into(),
            },
        );
        assert_eq!(failed(&report), "no neighbour to notify");
        let local = run_mesh(&mut alone, IncidentId(3), &command("true", &[]));
        assert!(failed(&local).contains("not a mesh action"));
    }

    #[test]
    fn thresholds_change_in_the_healer_or_stay() {
        let mut healer = Healer::new(
            HealConfig::default(),
            id(1),
            Vec::new(),
            PlaybookSet::empty(),
        )
        .expect("healer");
        let set = |value: f64| Action::AdjustThreshold {
            threshold: ThresholdName::Cpu,
            value,
        };
        assert_eq!(
            threshold_instruction(&set(95.0)),
            Some((ThresholdName::Cpu, 95.0))
        );
        assert_eq!(
            apply_threshold(&mut healer, &set(95.0)).result,
            ActionResult::Succeeded
        );
        assert_eq!(healer.config().thresholds.cpu, 95.0);
        let report = apply_threshold(&mut healer, &set(150.0));
        assert!(
            failed(&report).contains("mapk.thresholds.cpu"),
            "{report:?}"
        );
        assert_eq!(healer.config().thresholds.cpu, 95.0);
        assert!(
            failed(&apply_threshold(&mut healer, &command("true", &[])))
                .contains("not a threshold")
        );
    }
}
