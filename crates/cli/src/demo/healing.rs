//! The demo's healing acts: a supervised service on node 1 is killed and the node's healing
//! loop restarts it; the relay the demo kills is named as the root cause of a NODE_FAILURE
//! incident. Both are timed from the fault (the demo's kill, on the wall clock) to the
//! incident (MTTD) and to its verified recovery (MTTR), read from the nodes' incident records.

use std::time::{Duration, Instant};

use serde::Serialize;
use wire::NodeId;

use super::measure::unix_now_ms;
use crate::localnet::{LocalNet, LocalNetError};

/// The service node 1 supervises: a process the demo can kill, restarted only by the healing
/// loop (`restart.policy: healer`), watched by its implicit process check.
pub const SERVICE_YAML: &str = "  services:\n    - name: demo-service\n      command: [sleep, \"86400\"]\n      restart:\n        policy: healer\n";
/// Its name.
pub const SERVICE: &str = "demo-service";
/// Time for an incident to open, or to close, before the demo calls the act failed.
pub const ACT_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// One healing act's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealingAct {
    /// `service_crash` or `relay_failure`.
    pub act: String,
    /// The node hit (1-based): the service's node, or the relay.
    pub target: usize,
    /// The node whose incident is reported (1-based).
    pub detected_by: Option<usize>,
    /// The incident's record id on that node (`ctl incident <id>`).
    pub incident: Option<i64>,
    /// Its type.
    pub incident_type: Option<String>,
    /// Whether its root cause names the target.
    pub root_cause_is_target: bool,
    /// Root-cause confidence.
    pub confidence: Option<f64>,
    /// The plan the loop ran and whether it succeeded.
    pub plan: Option<String>,
    /// Whether the last plan succeeded.
    pub plan_succeeded: Option<bool>,
    /// Fault (kill) to incident, ms.
    pub mttd_ms: Option<u64>,
    /// Fault to verified recovery, ms.
    pub mttr_ms: Option<u64>,
    /// What went wrong, if the act did not complete.
    pub problem: Option<String>,
}

fn since(fault_unix_ms: u64, at: &serde_json::Value) -> Option<u64> {
    at.as_u64().map(|ms| ms.saturating_sub(fault_unix_ms))
}

fn fill(act: &mut HealingAct, record: &serde_json::Value, fault_unix_ms: u64) {
    act.incident = record["record_id"].as_i64();
    act.incident_type = record["kind"].as_str().map(str::to_string);
    act.confidence = record["confidence"].as_f64();
    act.plan = record["plan"].as_str().map(str::to_string);
    act.plan_succeeded = record["success"].as_bool();
    act.mttd_ms = since(fault_unix_ms, &record["detected_unix_ms"]);
    act.mttr_ms = since(fault_unix_ms, &record["resolved_unix_ms"]);
}

/// Polls `position`'s incidents until `pick` finds one, or the timeout.
fn wait_for_incident(
    net: &LocalNet,
    position: usize,
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
    mut pick: impl FnMut(&serde_json::Value) -> bool,
) -> Result<Option<serde_json::Value>, LocalNetError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !interrupted() {
        // A node slow to answer (a loaded machine) is asked again until the act's timeout.
        if let Ok(records) = net.node(position).client.incidents("limit=50")
            && let Some(record) = records.into_iter().find(|r| pick(r))
        {
            return Ok(Some(record));
        }
        std::thread::sleep(POLL);
    }
    Ok(None)
}

/// Kills node 1's supervised service and waits for the loop to restart it and resolve the
/// SERVICE_DOWN incident.
pub fn service_act(
    net: &mut LocalNet,
    interrupted: &dyn Fn() -> bool,
) -> Result<HealingAct, LocalNetError> {
    let mut act = HealingAct {
        act: "service_crash".into(),
        target: 1,
        ..HealingAct::default()
    };
    let position = 0;
    let status = net.node(position).client.status()?;
    let pid = status
        .healing
        .as_ref()
        .and_then(|h| h.services.iter().find(|s| s.name == SERVICE))
        .and_then(|s| s.pid);
    let Some(pid) = pid else {
        act.problem = Some(format!("node 1 does not run `{SERVICE}`"));
        return Ok(act);
    };
    let before: Vec<i64> = net
        .node(position)
        .client
        .incidents("limit=50")?
        .iter()
        .filter_map(|r| r["record_id"].as_i64())
        .collect();
    let fault = unix_now_ms();
    // SAFETY: `kill` has no memory preconditions; the pid is the service's, read from its
    // supervisor a moment ago, and a positive pid never addresses a group.
    let killed = i32::try_from(pid)
        .is_ok_and(|pid| pid > 1 && unsafe { libc::kill(pid, libc::SIGKILL) } == 0);
    if !killed {
        act.problem = Some(format!("cannot kill pid {pid}"));
        return Ok(act);
    }
    let resolved = wait_for_incident(net, position, ACT_TIMEOUT, interrupted, |r| {
        r["kind"] == "SERVICE_DOWN"
            && !r["record_id"]
                .as_i64()
                .is_some_and(|id| before.contains(&id))
            && r["resolved_unix_ms"].is_u64()
            && r["success"].is_boolean()
    })?;
    match resolved {
        Some(record) => {
            act.detected_by = Some(1);
            act.root_cause_is_target = record["root_cause"]["service"]["check"] == SERVICE;
            fill(&mut act, &record, fault);
        }
        None => {
            act.problem = Some(format!(
                "no resolved SERVICE_DOWN incident within {} s",
                ACT_TIMEOUT.as_secs()
            ));
        }
    }
    let restarted = net
        .node(position)
        .client
        .status()?
        .healing
        .and_then(|h| h.services.into_iter().find(|s| s.name == SERVICE))
        .and_then(|s| s.pid);
    if act.problem.is_none() && restarted.is_none_or(|new| new == pid) {
        act.problem = Some(format!("`{SERVICE}` is not running again"));
    }
    Ok(act)
}

/// Whether a record blames node `relay`.
fn blames(record: &serde_json::Value, relay: &NodeId) -> bool {
    record["kind"] == "NODE_FAILURE" && record["root_cause"]["node"] == relay.to_string()
}

/// After the relay's kill at `fault_unix_ms`: waits until a live node has an incident naming
/// the relay as root cause.
pub fn relay_detected(
    net: &LocalNet,
    relay: usize,
    fault_unix_ms: u64,
    interrupted: &dyn Fn() -> bool,
) -> Result<HealingAct, LocalNetError> {
    let relay_id = net.node(relay).id;
    let mut act = HealingAct {
        act: "relay_failure".into(),
        target: relay + 1,
        ..HealingAct::default()
    };
    let deadline = Instant::now() + ACT_TIMEOUT;
    while Instant::now() < deadline && !interrupted() {
        for position in (0..net.nodes().len()).filter(|p| *p != relay) {
            let Ok(records) = net.node(position).client.incidents("limit=50") else {
                continue;
            };
            if let Some(record) = records.iter().find(|r| {
                blames(r, &relay_id)
                    && r["detected_unix_ms"]
                        .as_u64()
                        .is_some_and(|t| t >= fault_unix_ms)
            }) {
                act.detected_by = Some(position + 1);
                act.root_cause_is_target = true;
                fill(&mut act, record, fault_unix_ms);
                return Ok(act);
            }
        }
        std::thread::sleep(POLL);
    }
    act.problem = Some(format!(
        "no node named node {} as the root cause within {} s",
        relay + 1,
        ACT_TIMEOUT.as_secs()
    ));
    Ok(act)
}

/// After the relay's restart: waits until the incident that named it is resolved.
pub fn relay_recovered(
    net: &LocalNet,
    act: &mut HealingAct,
    fault_unix_ms: u64,
    interrupted: &dyn Fn() -> bool,
) -> Result<(), LocalNetError> {
    let (Some(by), Some(id)) = (act.detected_by, act.incident) else {
        return Ok(());
    };
    let record = wait_for_incident(net, by - 1, ACT_TIMEOUT, interrupted, |r| {
        r["record_id"].as_i64() == Some(id) && r["resolved_unix_ms"].is_u64()
    })?;
    match record {
        Some(record) => fill(act, &record, fault_unix_ms),
        None => {
            act.problem = Some(format!(
                "the incident on node {by} did not resolve within {} s of the restart",
                ACT_TIMEOUT.as_secs()
            ));
        }
    }
    Ok(())
}

/// One summary line for an act.
pub fn text(act: &HealingAct) -> String {
    let ms = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |ms| format!("{ms} ms"));
    let what = match act.act.as_str() {
        "service_crash" => format!("service on node {} killed", act.target),
        _ => format!("relay node {} killed", act.target),
    };
    let found = match (&act.incident_type, act.detected_by) {
        (Some(kind), Some(by)) => format!(
            "{kind} on node {by} (incident {}), root cause {}{}",
            act.incident.unwrap_or(0),
            if act.root_cause_is_target {
                "the target"
            } else {
                "another entity"
            },
            act.confidence
                .map(|c| format!(" at confidence {c:.2}"))
                .unwrap_or_default()
        ),
        _ => "no incident".to_string(),
    };
    let plan = match (&act.plan, act.plan_succeeded) {
        (Some(plan), Some(true)) => format!("; plan {plan} succeeded"),
        (Some(plan), Some(false)) => format!("; plan {plan} failed"),
        (Some(plan), None) => format!("; plan {plan}"),
        _ => String::new(),
    };
    let problem = act
        .problem
        .as_ref()
        .map(|p| format!(" — {p}"))
        .unwrap_or_default();
    format!(
        "{what}: {found}{plan}; MTTD {}, MTTR {}{problem}",
        ms(act.mttd_ms),
        ms(act.mttr_ms)
    )
}
