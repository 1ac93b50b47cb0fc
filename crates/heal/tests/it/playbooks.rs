//! Playbook parser suite: the shipped defaults, good files, and bad files whose errors name the
//! field.

use std::time::Duration;

use heal::{Action, Condition, IncidentType, PeerRef, PlaybookSet, parse_playbook};

#[test]
fn the_shipped_playbooks_parse_and_cover_every_incident_type() {
    let set = PlaybookSet::defaults().expect("defaults parse");
    for kind in IncidentType::ALL {
        assert!(
            set.for_type(kind).next().is_some(),
            "no default playbook for {kind:?}"
        );
    }
    let isolate = set.get("node-failure-isolate").expect("shipped");
    assert!(isolate.needs_approval);
    assert_eq!(
        isolate.steps[0].rollback,
        Some(Action::IsolatePeer {
            peer: PeerRef::Suspect,
            release: true
        })
    );
}

#[test]
fn the_seeds_shape_parses() {
    let text = "recovery_plan:
  id: plan-memory-pressure-003
  incident_type: MEMORY_PRESSURE
  steps:
    - action: clear_cache
      params: {cache: app}
      timeout: 30s
      rollback: restart_service
    - action: adjust_threshold
      params: {threshold: memory, value: 92}
    - action: notify_neighbours
      condition: if_isolated
";
    let p = parse_playbook(text, "seed.yaml").expect("seed shape parses");
    assert_eq!(p.steps.len(), 3);
    assert_eq!(p.steps[0].timeout, Duration::from_secs(30));
    assert_eq!(
        p.steps[0].rollback,
        Some(Action::RestartService {
            service: "$service".into()
        })
    );
    assert_eq!(
        p.steps[1].action,
        Action::AdjustThreshold {
            threshold: heal::ThresholdName::Memory,
            value: 92.0
        }
    );
    assert_eq!(p.steps[2].condition, Condition::IfIsolated);
}

#[test]
fn user_playbooks_override_defaults_by_id() {
    let mut set = PlaybookSet::defaults().expect("defaults parse");
    let before = set.len();
    set.add_text(
        "recovery_plan:\n  id: service-down-restart\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: run_command\n      params: {command: systemctl, args: [restart, web]}\n",
        "user.yaml",
    )
    .expect("valid");
    assert_eq!(set.len(), before);
    let p = set.get("service-down-restart").expect("present");
    assert_eq!(
        p.steps[0].action,
        Action::RunCommand {
            command: "systemctl".into(),
            args: vec!["restart".into(), "web".into()]
        }
    );
}

/// (name, playbook text, field the error must name, text the reason must contain)
const BAD: &[(&str, &str, &str, &str)] = &[
    (
        "unknown action",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: reboot_planet\n",
        "recovery_plan.steps[0].action",
        "reboot_planet",
    ),
    (
        "missing action",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps:\n    - timeout: 5s\n",
        "recovery_plan.steps[0]",
        "action",
    ),
    (
        "missing id",
        "recovery_plan:\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: restart_service\n",
        "recovery_plan",
        "id",
    ),
    (
        "bad timeout",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: restart_service\n    - action: restart_service\n      timeout: soon\n",
        "recovery_plan.steps[1].timeout",
        "soon",
    ),
    (
        "timeout without unit",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: restart_service\n      timeout: \"30\"\n",
        "recovery_plan.steps[0].timeout",
        "unit",
    ),
    (
        "unknown incident type",
        "recovery_plan:\n  id: x\n  incident_type: SOLAR_FLARE\n  steps:\n    - action: restart_service\n",
        "recovery_plan.incident_type",
        "SOLAR_FLARE",
    ),
    (
        "unknown parameter",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: restart_service\n      params: {servce: web}\n",
        "recovery_plan.steps[0].params.servce",
        "not a parameter",
    ),
    (
        "missing parameter",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: run_command\n",
        "recovery_plan.steps[0].params.command",
        "missing",
    ),
    (
        "bad peer",
        "recovery_plan:\n  id: x\n  incident_type: NODE_FAILURE\n  steps:\n    - action: isolate_peer\n      params: {peer: bob}\n",
        "recovery_plan.steps[0].params.peer",
        "node id",
    ),
    (
        "bad rollback",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: restart_service\n      rollback: {action: undo_everything}\n",
        "recovery_plan.steps[0].rollback.action",
        "undo_everything",
    ),
    (
        "bad condition",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: restart_service\n      condition: if_raining\n",
        "recovery_plan.steps[0].condition",
        "if_raining",
    ),
    (
        "unknown field",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  retries: 3\n  steps:\n    - action: restart_service\n",
        "recovery_plan.retries",
        "unknown field",
    ),
    (
        "no steps",
        "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps: []\n",
        "recovery_plan.steps",
        "1 to 16",
    ),
    (
        "threshold out of range",
        "recovery_plan:\n  id: x\n  incident_type: CPU_OVERLOAD\n  steps:\n    - action: adjust_threshold\n      params: {threshold: cpu, value: 400}\n",
        "recovery_plan.steps[0].params.value",
        "percentage",
    ),
    ("empty", "", "recovery_plan", "missing"),
    (
        "not yaml",
        "recovery_plan: [unclosed\n",
        "recovery_plan",
        "line",
    ),
];

#[test]
fn bad_playbooks_are_refused_with_the_field_named() {
    for (name, text, field, reason) in BAD {
        match parse_playbook(text, "bad.yaml") {
            Ok(p) => panic!("{name}: accepted as {p:?}"),
            Err(e) => {
                assert_eq!(e.field, *field, "{name}: {e}");
                assert!(
                    e.reason.contains(reason),
                    "{name}: reason `{}` lacks `{reason}`",
                    e.reason
                );
                assert_eq!(e.source_name, "bad.yaml");
                assert!(e.to_string().starts_with("bad.yaml:"), "{e}");
            }
        }
    }
}

#[test]
fn a_failed_user_load_leaves_the_set_unchanged() {
    let mut set = PlaybookSet::defaults().expect("defaults parse");
    let before = set.clone();
    assert!(set.add_text(BAD[0].1, "bad.yaml").is_err());
    assert_eq!(set, before);
}

#[test]
fn errors_carry_the_line_of_the_offending_step() {
    let text = "recovery_plan:\n  id: x\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: restart_service\n    - action: restart_service\n      timeout: 1y\n";
    let e = parse_playbook(text, "lines.yaml").expect_err("bad timeout");
    assert_eq!(e.line, Some(6), "{e}");
    assert!(
        e.to_string()
            .starts_with("lines.yaml:6: recovery_plan.steps[1].timeout:"),
        "{e}"
    );
    let e = parse_playbook(
        "recovery_plan:\n  id: x\n  incident_type: NOPE\n  steps: []\n",
        "t.yaml",
    )
    .expect_err("bad type");
    assert_eq!(e.line, Some(3), "{e}");
    let e =
        parse_playbook("recovery_plan:\n  id: x\n  steps: [\n", "s.yaml").expect_err("bad yaml");
    assert!(e.line.is_some(), "{e}");
}
