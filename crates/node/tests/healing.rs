//! End-to-end tests of the self-healing loop in a real node with real supervised processes:
//! a killed service is restarted and its incident recorded; a broken plan step is rolled
//! back and the incident says so; a flapping service meets the circuit breaker. Tests wait
//! for states with a generous patience; no timing decides a pass.

use std::path::Path;
use std::time::Duration;

use node::{Node, NodeConfig, NodeHandle};
use tokio::sync::oneshot;

/// Generous bound for a loaded machine; reaching it fails the test with the last state seen.
const PATIENCE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(50);

struct Running {
    handle: NodeHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Node resource thresholds at 100 %: the machine running the tests may well be at full CPU
/// or have a nearly full disk, and those true incidents are not what these tests are about.
const NO_HOST_PRESSURE: &str = "    thresholds: { cpu: 100, memory: 100, disk: 100 }\n";

/// A node with `sections` under `node_config` (indented by two spaces) and files
/// (relative path, content) written next to node.yaml first.
async fn start(sections: &str, files: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, content).expect("file written");
    }
    let config_path = dir.path().join("node.yaml");
    std::fs::write(
        &config_path,
        format!(
            "node_config:\n  network: {{ listen: '127.0.0.1:0', tun: 'off' }}\n  api: {{ listen: '127.0.0.1:0' }}\n{sections}"
        ),
    )
    .expect("config written");
    let config = NodeConfig::load(&config_path).expect("valid config");
    node::init(&config, None).expect("init");
    node::membership::ca_init(&config, "heal.test", 3600, now_unix()).expect("ca init");
    let (node, handle) = Node::start(&config).expect("node starts");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        node.run(async move { drop(stopped.await) })
            .await
            .expect("node runs");
    });
    Running {
        handle,
        stop: Some(stop),
        task,
        dir,
    }
}

/// The service's status as the node reports it.
async fn service(handle: &NodeHandle, name: &str) -> Option<node::supervisor::ServiceStatus> {
    handle
        .status()
        .await
        .ok()?
        .healing?
        .services
        .into_iter()
        .find(|s| s.name == name)
}

/// Stored incidents as JSON.
async fn incidents(handle: &NodeHandle) -> Vec<serde_json::Value> {
    match handle.incidents(knowledge::IncidentFilter::default()).await {
        Ok(Ok(records)) => records
            .iter()
            .map(|r| serde_json::to_value(r).expect("records serialise"))
            .collect(),
        _ => Vec::new(),
    }
}

/// Waits until `found` picks something out of the node's incidents.
async fn wait_for<T>(
    handle: &NodeHandle,
    what: &str,
    mut found: impl FnMut(&[serde_json::Value]) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let records = incidents(handle).await;
        if let Some(value) = found(&records) {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("never saw {what}; incidents: {records:#?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_running(handle: &NodeHandle, name: &str) -> u32 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(pid) = service(handle, name).await.and_then(|s| s.pid) {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never ran: {:?}",
            service(handle, name).await
        );
        tokio::time::sleep(POLL).await;
    }
}

fn kill(pid: u32) {
    let pid = i32::try_from(pid).expect("pid fits");
    assert!(pid > 1);
    // SAFETY: plain syscall on the service's own pid, read from its supervisor.
    let result = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(result, 0, "kill {pid}");
}

const SLEEPER: &str = "  services:\n    - name: sleeper\n      command: [sleep, \"86400\"]\n      restart: { policy: healer }\n";

fn with_mapk(sections: &str, mapk: &str) -> String {
    format!("{sections}  mapk:\n{NO_HOST_PRESSURE}{mapk}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_is_restarted_and_its_incident_recorded_as_a_success() {
    let node = start(&with_mapk(SLEEPER, ""), &[]).await;
    let first = wait_running(&node.handle, "sleeper").await;
    kill(first);
    let record = wait_for(&node.handle, "a resolved SERVICE_DOWN", |records| {
        records
            .iter()
            .find(|r| r["kind"] == "SERVICE_DOWN" && r["state"] == "resolved")
            .cloned()
    })
    .await;
    assert_eq!(record["success"], true, "{record:#}");
    assert_eq!(record["plan"], "service-down-restart", "{record:#}");
    assert_eq!(record["root_cause"]["service"]["check"], "sleeper");
    let steps = record["incident"]["steps"].as_array().expect("steps");
    assert!(
        steps
            .iter()
            .any(|s| s["action"]["action"] == "restart_service" && s["outcome"] == "succeeded"),
        "{steps:#?}"
    );
    let second = wait_running(&node.handle, "sleeper").await;
    assert_ne!(first, second, "a new process runs");
    let status = service(&node.handle, "sleeper").await.expect("status");
    assert_eq!(status.requested_restarts, 1, "{status:?}");
    let view = node
        .handle
        .status()
        .await
        .expect("status")
        .healing
        .expect("healing on");
    let repair = &view.repair["SERVICE_DOWN"];
    assert_eq!((repair.incidents, repair.resolved), (1, 1), "{repair:?}");
    assert!(repair.mttr_ms_mean.is_some());
    node.stop().await;
}

/// A SERVICE_DOWN playbook (replacing both defaults by id) whose second step fails; the
/// first step's rollback writes a marker.
fn broken_playbook(id: &str, marker: &Path) -> String {
    format!(
        "recovery_plan:\n  id: {id}\n  incident_type: SERVICE_DOWN\n  description: test plan with a failing step\n  steps:\n    - action: run_command\n      params: {{command: \"true\"}}\n      timeout: 10s\n      rollback:\n        action: run_command\n        params: {{command: sh, args: [\"-c\", \"echo rolled back >> {}\"]}}\n    - action: run_command\n      params: {{command: \"false\"}}\n      timeout: 10s\n",
        marker.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_is_rolled_back_and_the_incident_says_so() {
    let marker_dir = tempfile::tempdir().expect("temp dir");
    let marker = marker_dir.path().join("rolled-back");
    let restart = broken_playbook("service-down-restart", &marker);
    let clear = broken_playbook("service-down-clear-cache", &marker);
    let sections = with_mapk(SLEEPER, "    playbook_dirs: [playbooks]\n");
    let node = start(
        &sections,
        &[("playbooks/a.yaml", &restart), ("playbooks/b.yaml", &clear)],
    )
    .await;
    let pid = wait_running(&node.handle, "sleeper").await;
    kill(pid);
    let record = wait_for(&node.handle, "a failed, rolled-back plan", |records| {
        records
            .iter()
            .find(|r| {
                r["kind"] == "SERVICE_DOWN"
                    && r["incident"]["outcomes"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|o| o == "step_failed"))
            })
            .cloned()
    })
    .await;
    let steps = record["incident"]["steps"].as_array().expect("steps");
    let failed = steps
        .iter()
        .position(|s| s["step"] == 1 && s["outcome"]["failed"].is_object())
        .unwrap_or_else(|| panic!("step 1 failed: {steps:#?}"));
    let rolled = steps
        .iter()
        .position(|s| s["step"] == 0 && s["rollback"] == true && s["outcome"] == "succeeded")
        .unwrap_or_else(|| panic!("step 0 rolled back: {steps:#?}"));
    assert!(rolled > failed, "rollback after the failure: {steps:#?}");
    let notes = record["incident"]["notes"].to_string();
    assert!(notes.contains("rolling back"), "{notes}");
    let written = std::fs::read_to_string(&marker).expect("the rollback ran");
    assert!(written.contains("rolled back"));
    assert_ne!(record["success"], true);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_service_trips_the_circuit_breaker_which_raises_the_severity() {
    let sections = with_mapk(
        "  services:\n    - name: flapper\n      command: [sh, -c, \"sleep 0.3; exit 1\"]\n      restart: { policy: healer }\n",
        "    execution: { max_actions_per_window: 3, window: 10m }\n",
    );
    let node = start(&sections, &[]).await;
    let record = wait_for(
        &node.handle,
        "an incident blocked by the breaker",
        |records| {
            records
                .iter()
                .find(|r| {
                    r["kind"] == "SERVICE_DOWN"
                        && r["incident"]["notes"]
                            .to_string()
                            .contains("circuit breaker open")
                })
                .cloned()
        },
    )
    .await;
    assert_eq!(
        record["severity"], "CRITICAL",
        "raised from HIGH: {record:#}"
    );
    let steps = record["incident"]["steps"].as_array().expect("steps");
    assert!(
        steps.iter().any(|s| s["outcome"]["blocked"].is_object()),
        "{steps:#?}"
    );
    // The loop stopped acting: the restarts it made stay at the breaker's limit while the
    // service keeps crashing.
    let status = service(&node.handle, "flapper").await.expect("status");
    assert!(status.requested_restarts <= 3, "{status:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = service(&node.handle, "flapper").await.expect("status");
    assert_eq!(
        later.requested_restarts, status.requested_restarts,
        "{later:?}"
    );
    let view = node
        .handle
        .status()
        .await
        .expect("status")
        .healing
        .expect("healing on");
    assert!(view.healer["blocked_actions"] >= 1, "{:?}", view.healer);
    let _ = &node.dir;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_user_playbook_stops_the_start_naming_file_line_and_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let playbook = "recovery_plan:\n  id: broken\n  incident_type: SERVICE_DOWN\n  description: bad step\n  steps:\n    - action: restart_service\n      params: {service: $service}\n      timeout: forever\n";
    std::fs::create_dir_all(dir.path().join("books")).expect("dir");
    std::fs::write(dir.path().join("books/broken.yaml"), playbook).expect("file");
    let config_path = dir.path().join("node.yaml");
    std::fs::write(
        &config_path,
        "node_config:\n  network: { listen: '127.0.0.1:0', tun: 'off' }\n  api: { listen: '127.0.0.1:0' }\n  mapk: { playbook_dirs: [books] }\n",
    )
    .expect("config");
    let config = NodeConfig::load(&config_path).expect("valid config");
    node::init(&config, None).expect("init");
    node::membership::ca_init(&config, "heal.test", 3600, now_unix()).expect("ca init");
    let message = match Node::start(&config) {
        Ok(_) => panic!("a node with a broken playbook started"),
        Err(error) => error.to_string(),
    };
    assert!(message.contains("broken.yaml:6:"), "{message}");
    assert!(message.contains("steps[0].timeout"), "{message}");
}
