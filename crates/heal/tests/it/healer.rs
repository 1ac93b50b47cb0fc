//! Scenario tests of the loop: given observation sequences, assert the incidents, events and
//! actions it emits.

use std::collections::BTreeSet;

use heal::{
    ActionResult, Entity, Event, IncidentState, IncidentType, Knowledge, LinkSample, MeshContext,
    Observation, PlanOutcome, PlanStats, PlaybookSet, Severity, StepOutcome,
};

use crate::harness::{Harness, link, node, test_config};

const WEB_CHECK: &str = "name: web\ntcp: 127.0.0.1:8080\nfailure_threshold: 2\n";

fn check(passed: bool) -> Observation {
    Observation::Check {
        name: "web".into(),
        passed,
    }
}

fn mesh(links: Vec<LinkSample>, route_count: u32) -> Observation {
    Observation::Mesh {
        links,
        route_count,
        route_churn: 0,
    }
}

#[test]
fn one_spike_does_not_open_an_incident() {
    let mut h = Harness::new(test_config(), &[], PlaybookSet::empty());
    for _ in 0..10 {
        h.memory(50.0);
    }
    h.memory(99.0);
    for _ in 0..10 {
        h.memory(50.0);
    }
    h.memory(99.0);
    h.memory(99.0);
    h.memory(50.0);
    h.memory(99.0);
    assert!(h.opened().is_empty(), "{:?}", h.opened());
}

#[test]
fn a_sustained_anomaly_opens_an_incident_whose_confidence_grows() {
    let mut h = Harness::new(test_config(), &[], PlaybookSet::empty());
    for _ in 0..5 {
        h.memory(50.0);
    }
    h.memory(97.0);
    let onset = h.now;
    h.memory(97.0);
    assert!(h.opened().is_empty());
    h.memory(97.0);
    let opened = h.opened();
    assert_eq!(opened.len(), 1);
    let incident = opened[0].clone();
    assert_eq!(incident.kind, IncidentType::MemoryPressure);
    assert_eq!(incident.root_cause, Entity::Node(node(0)));
    assert_eq!(incident.severity, Severity::Medium);
    assert_eq!(incident.first_symptom_at, onset);
    assert_eq!(incident.detected_at, h.now);
    assert!(
        (incident.confidence - 0.5).abs() < 1e-9,
        "{}",
        incident.confidence
    );
    assert_eq!(
        incident.evidence[0].detail,
        "memory %: 97.0 beyond threshold 90"
    );
    for _ in 0..6 {
        h.memory(97.0);
    }
    let later = h
        .healer
        .incident(incident.id)
        .expect("still open")
        .confidence;
    assert!(
        later > 0.85,
        "confidence {later} did not grow with evidence"
    );
    assert_eq!(
        h.opened().len(),
        1,
        "sustained anomaly must stay one incident"
    );
}

#[test]
fn hysteresis_closes_only_after_enough_normal_samples() {
    let mut h = Harness::new(test_config(), &[], PlaybookSet::empty());
    for v in [50.0, 50.0, 95.0, 95.0, 95.0] {
        h.memory(v);
    }
    let id = h.opened()[0].id;
    for v in [50.0, 95.0, 50.0, 50.0] {
        h.memory(v);
    }
    assert!(
        h.closed().is_empty(),
        "closed before close_after normal samples"
    );
    h.memory(50.0);
    let closed = h.closed();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].id, id);
    assert_eq!(closed[0].state, IncidentState::Resolved);
    // Recovery is dated at the first sample of the normal run that closed the symptom; the
    // close_after samples after it verified it.
    assert_eq!(
        closed[0].resolved_at,
        Some(heal::Timestamp(h.now.0 - 2_000_000))
    );
    assert_eq!(h.healer.open_incidents().count(), 0);
}

#[test]
fn a_departed_peer_stops_counting_as_lost_once_purged() {
    let (b, c) = (node(1), node(2));
    let mut h = Harness::new(test_config(), &[], PlaybookSet::empty());
    for _ in 0..6 {
        h.observe(mesh(vec![link(b, 0.0), link(c, 0.0)], 2));
    }
    // b vanishes from the routing core's neighbours: its link counts as 100 % loss.
    for _ in 0..4 {
        h.observe(mesh(vec![link(c, 0.0)], 1));
    }
    let opened = h.opened();
    assert_eq!(opened.len(), 1, "{opened:#?}");
    assert_eq!(
        opened[0].root_cause,
        Entity::Link {
            from: node(0),
            to: b
        }
    );
    for _ in 0..10 {
        h.observe(mesh(vec![link(c, 0.0)], 1));
    }
    assert!(h.closed().is_empty(), "still lost while remembered");
    h.now = h.now.plus(std::time::Duration::from_secs(1));
    h.healer.forget_peer(b, h.now);
    while h.healer.poll_event().map(|e| h.events.push(e)).is_some() {}
    let closed = h.closed();
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!(closed[0].state, IncidentState::Resolved);
    assert!(
        closed[0].notes.iter().any(|n| n.contains("purged")),
        "{:?}",
        closed[0].notes
    );
    h.observe(mesh(vec![link(c, 0.0)], 1));
    assert_eq!(h.healer.open_incidents().count(), 0, "b is not re-added");
}

fn neighbourhood_run(neighbours_see_loss: bool) -> Harness {
    let (b, c, d) = (node(1), node(2), node(3));
    let mut h = Harness::new(
        test_config(),
        &[],
        PlaybookSet::defaults().expect("defaults parse"),
    );
    h.healer.set_mesh_context(MeshContext {
        mesh_size: 10,
        under_action: BTreeSet::new(),
    });
    let local = |loss_b: f64| mesh(vec![link(b, loss_b), link(c, 0.0), link(d, 0.0)], 3);
    for _ in 0..6 {
        h.observe(local(0.0));
    }
    let remote = if neighbours_see_loss { 70.0 } else { 0.0 };
    for _ in 0..4 {
        h.observe_all(vec![
            local(60.0),
            Observation::NeighbourView {
                reporter: c,
                links: vec![link(b, remote), link(node(0), 0.0)],
            },
            Observation::NeighbourView {
                reporter: d,
                links: vec![link(b, remote)],
            },
        ]);
    }
    h
}

#[test]
fn the_neighbourhood_detector_blames_the_node_all_neighbours_lose() {
    let h = neighbourhood_run(true);
    let opened = h.opened();
    assert_eq!(opened.len(), 1, "{opened:#?}");
    let incident = h.healer.incident(opened[0].id).expect("open");
    assert_eq!(incident.kind, IncidentType::NodeFailure);
    assert_eq!(incident.root_cause, Entity::Node(node(1)));
    let blamed: BTreeSet<&Entity> = incident.evidence.iter().map(|s| &s.entity).collect();
    for from in [0, 2, 3] {
        assert!(
            blamed.contains(&Entity::Link {
                from: node(from),
                to: node(1)
            }),
            "{blamed:?}"
        );
    }
    assert!(
        h.actions
            .iter()
            .all(|a| a.action.target_peer() == Some(node(1))),
        "{:?}",
        h.actions
    );
    assert!(
        !h.actions.is_empty(),
        "a node-failure playbook should act on the suspect"
    );
}

#[test]
fn a_link_only_this_node_sees_bad_is_the_links_fault() {
    let h = neighbourhood_run(false);
    let opened = h.opened();
    assert_eq!(opened.len(), 1, "{opened:#?}");
    assert_eq!(opened[0].kind, IncidentType::LinkDegraded);
    assert_eq!(
        opened[0].root_cause,
        Entity::Link {
            from: node(0),
            to: node(1)
        }
    );
}

fn node_and_link(memory_first: bool) -> Harness {
    let b = node(1);
    let mut h = Harness::new(test_config(), &[], PlaybookSet::empty());
    let obs = |mem: f64, loss: f64| {
        vec![
            Observation::Node {
                cpu_percent: 10.0,
                memory_percent: mem,
                disk_percent: 20.0,
            },
            mesh(vec![link(b, loss), link(node(2), 0.0)], 2),
        ]
    };
    for _ in 0..6 {
        h.observe_all(obs(50.0, 0.0));
    }
    for i in 0..8 {
        let (mem, loss) = if memory_first {
            (95.0, if i >= 2 { 50.0 } else { 0.0 })
        } else {
            (if i >= 2 { 95.0 } else { 50.0 }, 50.0)
        };
        h.observe_all(obs(mem, loss));
    }
    h
}

#[test]
fn a_node_fault_that_precedes_its_links_degradation_is_the_root_cause() {
    let h = node_and_link(true);
    let opened = h.opened();
    assert_eq!(opened.len(), 1, "{opened:#?}");
    let incident = h.healer.incident(opened[0].id).expect("open");
    assert_eq!(incident.kind, IncidentType::MemoryPressure);
    assert!(incident.evidence.iter().any(|s| s.entity
        == Entity::Link {
            from: node(0),
            to: node(1)
        }));
}

#[test]
fn a_node_fault_after_the_links_degradation_does_not_explain_it() {
    let h = node_and_link(false);
    let kinds: Vec<IncidentType> = h.opened().iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds,
        vec![IncidentType::LinkDegraded, IncidentType::MemoryPressure]
    );
}

const RESTART: &str = "recovery_plan:\n  id: restart\n  incident_type: SERVICE_DOWN\n  verify_timeout: 10s\n  steps:\n    - action: restart_service\n      timeout: 5s\n";

#[test]
fn a_crashed_service_is_restarted_verified_and_resolved() {
    let mut h = Harness::new(
        test_config(),
        &[WEB_CHECK],
        Harness::with_playbooks(&[RESTART]),
    );
    h.observe(check(true));
    h.observe(check(false));
    let onset = h.now;
    assert!(h.actions.is_empty(), "one failed run must not act");
    h.observe(check(false));
    assert_eq!(h.opened()[0].kind, IncidentType::ServiceDown);
    assert_eq!(h.opened()[0].first_symptom_at, onset);
    assert_eq!(h.actions.len(), 1);
    assert_eq!(
        h.actions[0].action,
        heal::Action::RestartService {
            service: "web".into()
        }
    );
    h.reply(0, ActionResult::Succeeded);
    assert!(h.closed().is_empty(), "resolved before the check passed");
    h.observe(check(true));
    let closed = h.closed();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].resolved_at, Some(h.now));
    assert_eq!(closed[0].outcomes, vec![PlanOutcome::Succeeded]);
    assert_eq!(
        h.healer
            .knowledge()
            .get(IncidentType::ServiceDown, "restart"),
        PlanStats {
            successes: 1,
            failures: 0
        }
    );
}

fn service_playbook(id: &str) -> String {
    format!(
        "recovery_plan:\n  id: {id}\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: restart_service\n"
    )
}

#[test]
fn the_plan_with_the_better_history_is_chosen_and_the_incident_says_why() {
    let (good, bad) = (service_playbook("good"), service_playbook("bad"));
    let mut chosen = Vec::new();
    for seed in 0..20 {
        let mut config = test_config();
        config.seed = seed;
        let mut h = Harness::new(
            config,
            &[WEB_CHECK],
            Harness::with_playbooks(&[&good, &bad]),
        );
        let mut k = Knowledge::default();
        k.set(
            IncidentType::ServiceDown,
            "good",
            PlanStats {
                successes: 30,
                failures: 1,
            },
        );
        k.set(
            IncidentType::ServiceDown,
            "bad",
            PlanStats {
                successes: 1,
                failures: 30,
            },
        );
        *h.healer.knowledge_mut() = k;
        h.observe(check(false));
        h.observe(check(false));
        let incident = h.healer.open_incidents().next().expect("open").clone();
        assert!(
            incident.plans[0].reason.contains("Beta(31, 2)"),
            "{}",
            incident.plans[0].reason
        );
        chosen.push(incident.plans[0].plan.clone());
    }
    assert!(chosen.iter().all(|p| p == "good"), "{chosen:?}");
}

const PEER5: &str = "00000000000000000000000000000005";

fn three_steps() -> String {
    format!(
        "recovery_plan:
  id: three
  incident_type: SERVICE_DOWN
  verify_timeout: 5s
  steps:
    - action: depref_peer
      params: {{peer: \"{PEER5}\", penalty: 10}}
      timeout: 2s
      rollback: {{action: depref_peer, params: {{peer: \"{PEER5}\", penalty: 0}}}}
    - action: clear_cache
      params: {{cache: $service}}
      timeout: 2s
      rollback: {{action: notify_neighbours, params: {{message: undo}}}}
    - action: restart_service
      timeout: 2s
      rollback: {{action: run_command, params: {{command: /bin/true}}}}
"
    )
}

fn start_three_steps() -> Harness {
    let mut h = Harness::new(
        test_config(),
        &[WEB_CHECK],
        Harness::with_playbooks(&[&three_steps()]),
    );
    h.healer.set_mesh_context(MeshContext {
        mesh_size: 10,
        under_action: BTreeSet::new(),
    });
    h.observe(check(false));
    h.observe(check(false));
    h.reply(0, ActionResult::Succeeded);
    h.reply(1, ActionResult::Succeeded);
    assert_eq!(h.actions.len(), 3);
    h
}

fn finish_rollbacks(h: &mut Harness) {
    for i in 3..6 {
        assert_eq!(h.actions.len(), i + 1, "rollbacks come one at a time");
        h.reply(i, ActionResult::Succeeded);
    }
}

fn plan_outcomes(h: &Harness) -> Vec<PlanOutcome> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::PlanFinished { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_step_timeout_rolls_back_executed_steps_in_reverse_order() {
    let mut h = start_three_steps();
    h.wait(3);
    finish_rollbacks(&mut h);
    let names: Vec<(String, bool)> = h.action_names();
    let expected: Vec<(String, bool)> = [
        ("depref_peer", false),
        ("clear_cache", false),
        ("restart_service", false),
        ("run_command", true),
        ("notify_neighbours", true),
        ("depref_peer", true),
    ]
    .iter()
    .map(|(n, r)| (n.to_string(), *r))
    .collect();
    assert_eq!(names, expected);
    assert_eq!(plan_outcomes(&h), vec![PlanOutcome::StepFailed]);
    let incident = h
        .healer
        .open_incidents()
        .next()
        .expect("service still down");
    assert!(
        incident
            .steps
            .iter()
            .any(|s| s.step == 2 && s.outcome == StepOutcome::TimedOut)
    );
    assert_eq!(
        h.healer
            .knowledge()
            .get(IncidentType::ServiceDown, "three")
            .failures,
        1
    );
    assert!(
        h.healer.nodes_under_action().is_empty(),
        "the penalty was lifted by the rollback"
    );
}

#[test]
fn a_failed_verification_rolls_back() {
    let mut h = start_three_steps();
    h.reply(2, ActionResult::Succeeded);
    h.wait(4);
    assert_eq!(
        h.actions.len(),
        3,
        "rolled back before the verification window ended"
    );
    h.wait(2);
    finish_rollbacks(&mut h);
    assert!(h.actions[3..].iter().all(|a| a.rollback));
    assert_eq!(plan_outcomes(&h), vec![PlanOutcome::VerificationFailed]);
}

#[test]
fn a_failed_step_rolls_back_only_what_ran() {
    let mut h = start_three_steps();
    h.reply(2, ActionResult::Failed("no such service".into()));
    for i in 3..5 {
        h.reply(i, ActionResult::Succeeded);
    }
    assert_eq!(h.actions.len(), 5, "{:?}", h.action_names());
    assert_eq!(h.actions[3].action.name(), "notify_neighbours");
    assert_eq!(plan_outcomes(&h), vec![PlanOutcome::StepFailed]);
}

#[test]
fn the_circuit_breaker_stops_a_flapping_service_and_raises_severity() {
    let mut config = test_config();
    config.execution.max_actions_per_window = 2;
    let mut h = Harness::new(config, &[WEB_CHECK], Harness::with_playbooks(&[RESTART]));
    for round in 0..3 {
        h.observe(check(false));
        h.observe(check(false));
        if round < 2 {
            let last = h.actions.len() - 1;
            h.reply(last, ActionResult::Succeeded);
            h.observe(check(true));
        }
    }
    assert_eq!(h.actions.len(), 2, "{:?}", h.action_names());
    assert!(h.events.iter().any(
        |e| matches!(e, Event::ActionBlocked { reason, .. } if reason.contains("circuit breaker"))
    ));
    let incident = h
        .healer
        .open_incidents()
        .next()
        .expect("third incident open");
    assert_eq!(incident.severity, Severity::Critical);
    assert!(h.healer.stats().blocked_actions >= 1);
}

#[test]
fn the_blast_radius_blocks_while_too_much_of_the_mesh_is_under_action() {
    let mut h = Harness::new(
        test_config(),
        &[WEB_CHECK],
        Harness::with_playbooks(&[RESTART]),
    );
    h.healer.set_mesh_context(MeshContext {
        mesh_size: 4,
        under_action: [node(7)].into(),
    });
    h.observe(check(false));
    h.observe(check(false));
    assert!(h.actions.is_empty());
    assert!(h.events.iter().any(
        |e| matches!(e, Event::ActionBlocked { reason, .. } if reason.contains("blast radius"))
    ));
    h.healer.set_mesh_context(MeshContext {
        mesh_size: 4,
        under_action: BTreeSet::new(),
    });
    let retry = h.healer.poll_timeout().expect("a retry is scheduled");
    h.wait(retry.saturating_since(h.now).as_secs() + 1);
    assert_eq!(h.actions.len(), 1, "the retry after the window acts");
}

const PARTITION: &str = "recovery_plan:\n  id: partition-vote\n  incident_type: NETWORK_PARTITION\n  needs_approval: true\n  steps:\n    - action: notify_neighbours\n";

fn partition(approve: Option<bool>) -> Harness {
    let mut config = test_config();
    config.execution.approval_timeout = std::time::Duration::from_secs(60);
    let mut h = Harness::new(config, &[], Harness::with_playbooks(&[PARTITION]));
    for _ in 0..6 {
        h.observe(mesh(vec![link(node(1), 0.0)], 20));
    }
    for _ in 0..3 {
        h.observe(mesh(vec![link(node(1), 0.0)], 2));
    }
    let incident = h.opened()[0].clone();
    assert_eq!(incident.kind, IncidentType::NetworkPartition);
    assert_eq!(incident.severity, Severity::Critical);
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::ApprovalRequested { .. }))
    );
    assert!(h.actions.is_empty(), "acted before approval");
    if let Some(approved) = approve {
        assert!(h.healer.handle_approval(incident.id, approved, h.now));
        h.wait(1);
    }
    h
}

#[test]
fn a_plan_needing_approval_waits_and_expires() {
    let mut h = partition(None);
    h.wait(59);
    assert!(plan_outcomes(&h).is_empty(), "expired early");
    h.wait(1);
    assert_eq!(plan_outcomes(&h), vec![PlanOutcome::Expired]);
    assert!(h.actions.is_empty());
    assert_eq!(
        h.healer
            .knowledge()
            .get(IncidentType::NetworkPartition, "partition-vote"),
        PlanStats::default()
    );
}

#[test]
fn an_approved_plan_runs_and_a_refused_one_does_not() {
    let h = partition(Some(true));
    assert_eq!(
        h.action_names(),
        vec![("notify_neighbours".to_string(), false)]
    );
    let h = partition(Some(false));
    assert!(h.actions.is_empty());
    assert_eq!(plan_outcomes(&h), vec![PlanOutcome::Rejected]);
}

#[test]
fn results_for_unknown_actions_are_counted_not_applied() {
    let mut h = Harness::new(test_config(), &[], PlaybookSet::empty());
    h.healer
        .handle_action_result(heal::ActionId(99), ActionResult::Succeeded, h.now);
    h.observe(Observation::Check {
        name: "nope".into(),
        passed: false,
    });
    assert_eq!(h.healer.stats().stray_results, 1);
    assert_eq!(h.healer.stats().unknown_checks, 1);
    assert!(h.events.is_empty());
}

#[test]
fn a_link_incident_is_superseded_when_the_neighbourhood_blames_the_node() {
    let (b, c) = (node(1), node(2));
    let mut h = Harness::new(test_config(), &[], PlaybookSet::empty());
    let local = |loss: f64| mesh(vec![link(b, loss), link(c, 0.0)], 2);
    for _ in 0..6 {
        h.observe(local(0.0));
    }
    for _ in 0..3 {
        h.observe(local(60.0));
    }
    let kinds: Vec<IncidentType> = h.opened().iter().map(|i| i.kind).collect();
    assert_eq!(kinds, vec![IncidentType::LinkDegraded]);
    // In a line the relay's other neighbour is the only other view: two views, both bad.
    h.observe_all(vec![
        local(60.0),
        Observation::NeighbourView {
            reporter: c,
            links: vec![link(b, 90.0)],
        },
    ]);
    let opened: Vec<(IncidentType, heal::IncidentId)> =
        h.opened().iter().map(|i| (i.kind, i.id)).collect();
    assert_eq!(opened.len(), 2, "{opened:?}");
    assert_eq!(opened[1].0, IncidentType::NodeFailure);
    let closed = h.closed();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].id, opened[0].1);
    assert_eq!(
        closed[0].state,
        IncidentState::Superseded { by: opened[1].1 }
    );
    assert_eq!(
        closed[0].resolved_at, None,
        "a superseded incident was not repaired"
    );
}

#[test]
fn ten_minutes_of_healthy_noise_open_no_incident() {
    // Default settings, not the shortened test ones: this is the false-incident target.
    let mut h = Harness::new(
        heal::HealConfig::default(),
        &[WEB_CHECK],
        PlaybookSet::defaults().expect("defaults parse"),
    );
    let mut rng = heal::plan::SplitMix64::new(42);
    let peers = [node(1), node(2), node(3), node(4), node(5)];
    for second in 0..600 {
        let links = peers
            .iter()
            .map(|p| LinkSample {
                peer: *p,
                loss_percent: if rng.next_f64() < 0.1 { 1.6 } else { 0.0 },
                rtt_ms: 0.5 + rng.next_f64(),
                tq: 240 + (rng.next_u64() % 16) as u8,
            })
            .collect();
        h.observe_all(vec![
            Observation::Node {
                cpu_percent: 20.0 + 50.0 * rng.next_f64(),
                memory_percent: 40.0 + 4.0 * rng.next_f64(),
                disk_percent: 60.0,
            },
            Observation::Mesh {
                links,
                route_count: 5,
                route_churn: u32::from(second % 15 == 0),
            },
            Observation::Check {
                name: "web".into(),
                passed: rng.next_f64() > 0.01,
            },
            Observation::Counter {
                name: "xdp_drops".into(),
                value: 100.0 + 10.0 * rng.next_f64(),
            },
        ]);
    }
    assert!(h.opened().is_empty(), "{:#?}", h.opened());
    assert!(h.actions.is_empty());
}

#[test]
fn when_all_neighbours_lose_this_node_it_blames_itself() {
    let (b, c) = (node(1), node(2));
    let mut h = Harness::new(
        test_config(),
        &[],
        PlaybookSet::defaults().expect("defaults parse"),
    );
    let local = mesh(vec![link(b, 0.0), link(c, 0.0)], 2);
    for _ in 0..4 {
        h.observe_all(vec![
            local.clone(),
            Observation::NeighbourView {
                reporter: b,
                links: vec![link(node(0), 40.0)],
            },
            Observation::NeighbourView {
                reporter: c,
                links: vec![link(node(0), 55.0)],
            },
        ]);
    }
    let opened = h.opened();
    assert_eq!(opened.len(), 1, "{opened:#?}");
    let incident = h.healer.incident(opened[0].id).expect("open");
    assert_eq!(incident.kind, IncidentType::NodeFailure);
    assert_eq!(incident.root_cause, Entity::Node(node(0)));
    assert!(
        h.actions.is_empty(),
        "peer playbooks cannot act on this node itself: {:?}",
        h.actions
    );
    assert!(
        incident
            .notes
            .iter()
            .any(|n| n.contains("no applicable playbook")),
        "{:?}",
        incident.notes
    );
}

#[test]
fn rtt_jitter_of_a_busy_host_opens_nothing_but_a_slow_link_does() {
    let peer = node(1);
    let mut h = Harness::new(test_config(), &[], PlaybookSet::empty());
    let with_rtt = |rtt_ms: f64| {
        mesh(
            vec![LinkSample {
                peer,
                loss_percent: 0.0,
                rtt_ms,
                tq: 250,
            }],
            1,
        )
    };
    for _ in 0..10 {
        h.observe(with_rtt(0.3));
    }
    for _ in 0..10 {
        h.observe(with_rtt(8.0));
    }
    assert!(h.opened().is_empty(), "{:#?}", h.opened());
    for _ in 0..4 {
        h.observe(with_rtt(80.0));
    }
    let opened = h.opened();
    assert_eq!(opened.len(), 1, "{opened:#?}");
    assert_eq!(opened[0].kind, IncidentType::LinkDegraded);
}

fn cpu(percent: f64) -> Observation {
    Observation::Node {
        cpu_percent: percent,
        memory_percent: 40.0,
        disk_percent: 40.0,
    }
}

#[test]
fn with_default_detectors_build_bursts_of_full_cpu_open_no_incident() {
    let mut h = Harness::new(
        heal::HealConfig::default(),
        &[],
        PlaybookSet::defaults().expect("defaults"),
    );
    // Ten minutes of a busy host: 20 s at 100 % (a compile), 5 s idle, over and over.
    for second in 0..600 {
        h.observe(cpu(if second % 25 < 20 { 100.0 } else { 15.0 }));
    }
    assert!(h.opened().is_empty(), "{:#?}", h.opened());
}

#[test]
fn with_default_detectors_a_sustained_overload_opens_one_cpu_incident_that_closes_after() {
    let config = heal::HealConfig::default();
    let sustain = config.detector.resource_sustain.as_secs();
    let mut h = Harness::new(config, &[], PlaybookSet::empty());
    for _ in 0..10 {
        h.observe(cpu(20.0));
    }
    h.observe(cpu(99.0));
    let onset = h.now;
    for _ in 0..sustain - 1 {
        h.observe(cpu(99.0));
    }
    assert!(h.opened().is_empty(), "opened before the sustain elapsed");
    h.observe(cpu(99.0));
    let opened = h.opened();
    assert_eq!(opened.len(), 1, "{opened:#?}");
    assert_eq!(opened[0].kind, IncidentType::CpuOverload);
    assert_eq!(
        opened[0].first_symptom_at, onset,
        "MTTD counts from the onset"
    );
    // Hovering just under the threshold keeps it one incident; well below closes it.
    for i in 0..30 {
        h.observe(cpu(if i % 2 == 0 { 92.0 } else { 87.0 }));
    }
    assert!(
        h.closed().is_empty(),
        "closed while still near the threshold"
    );
    let detail = &h.healer.open_incidents().next().expect("open").evidence[0].detail;
    assert_eq!(
        detail, "cpu %: 87.0 beyond threshold 90",
        "names the threshold itself"
    );
    for _ in 0..10 {
        h.observe(cpu(30.0));
    }
    assert_eq!(h.opened().len(), 1);
    let closed = h.closed();
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!(closed[0].state, IncidentState::Resolved);
}

const SERVICE_CHECK_A: &str = "name: a\ntcp: 127.0.0.1:9001\nfailure_threshold: 1\n";

fn spec(yaml: &str) -> heal::CheckSpec {
    let decl: heal::CheckDecl = serde_saphyr::from_str(yaml).expect("check parses");
    heal::validate_checks(&[decl]).expect("valid").remove(0)
}

#[test]
fn a_reload_keeps_unchanged_checks_state_and_uses_the_new_playbooks_for_later_choices() {
    let restart = "recovery_plan:\n  id: restart\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: restart_service\n      params: {service: $service}\n";
    let command = "recovery_plan:\n  id: command\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: run_command\n      params: {command: \"true\"}\n";
    let mut h = Harness::new(
        test_config(),
        &[SERVICE_CHECK_A, WEB_CHECK],
        Harness::with_playbooks(&[restart]),
    );
    h.observe(Observation::Check {
        name: "a".into(),
        passed: false,
    });
    assert_eq!(h.opened().len(), 1);
    assert_eq!(
        h.action_names(),
        vec![("restart_service".to_string(), false)]
    );
    // New set: check `a` unchanged, `web` changed, `db` new; one playbook, another id.
    let summary = h
        .healer
        .reload(
            vec![
                spec(SERVICE_CHECK_A),
                spec("name: web\ntcp: 127.0.0.1:8081\n"),
                spec("name: db\ntcp: 127.0.0.1:5432\n"),
            ],
            Harness::with_playbooks(&[command]),
            h.now,
        )
        .expect("a valid set is taken");
    assert_eq!(summary.checks, 3);
    assert_eq!(
        summary.checks_changed,
        vec!["web".to_string(), "db".to_string()]
    );
    assert!(summary.checks_removed.is_empty());
    assert_eq!(summary.playbooks, 1);
    // Check `a` kept its failing state: the incident is still open, its running plan goes on.
    assert_eq!(h.healer.open_incidents().count(), 1);
    h.reply(0, ActionResult::Failed("still down".into()));
    h.wait(1);
    let names: Vec<String> = h.action_names().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec!["restart_service", "run_command"],
        "the next plan comes from the new set"
    );
    // A set with too many checks is refused and changes nothing.
    let too_many: Vec<heal::CheckSpec> = (0..=heal::healer::MAX_CHECKS)
        .map(|i| spec(&format!("name: c{i}\ntcp: 127.0.0.1:9\n")))
        .collect();
    assert!(
        h.healer
            .reload(too_many, PlaybookSet::empty(), h.now)
            .is_err()
    );
    assert_eq!(h.healer.checks().count(), 3);
    assert_eq!(h.healer.playbooks().len(), 1);
}

#[test]
fn a_removed_check_closes_its_incident_with_a_note() {
    let mut h = Harness::new(test_config(), &[SERVICE_CHECK_A], PlaybookSet::empty());
    h.observe(Observation::Check {
        name: "a".into(),
        passed: false,
    });
    assert_eq!(h.opened().len(), 1);
    let summary = h
        .healer
        .reload(vec![], PlaybookSet::empty(), h.now)
        .expect("valid");
    assert_eq!(summary.checks_removed, vec!["a".to_string()]);
    h.wait(0);
    let closed = h.closed();
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert!(
        closed[0]
            .notes
            .iter()
            .any(|n| n.contains("removed by a configuration reload")),
        "{:?}",
        closed[0].notes
    );
}

#[test]
fn a_clear_cache_plan_is_no_candidate_where_its_cache_does_not_exist() {
    let clear = "recovery_plan:\n  id: clear\n  incident_type: SERVICE_DOWN\n  steps:\n    - action: clear_cache\n      params: {cache: $service}\n";
    let run = |caches: &[&str]| {
        let mut h = Harness::new(
            test_config(),
            &[SERVICE_CHECK_A],
            Harness::with_playbooks(&[clear]),
        );
        h.healer.set_caches(caches.iter().map(|c| c.to_string()));
        h.observe(Observation::Check {
            name: "a".into(),
            passed: false,
        });
        let incident = h.healer.open_incidents().next().expect("open").clone();
        (h.action_names(), incident.notes)
    };
    let (actions, notes) = run(&["other"]);
    assert!(actions.is_empty(), "{actions:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("clear (no cache `a` on this node)")),
        "{notes:?}"
    );
    let (actions, _) = run(&["a"]);
    assert_eq!(actions, vec![("clear_cache".to_string(), false)]);
}

#[test]
fn a_plan_awaiting_approval_is_withdrawn_when_the_symptoms_clear_and_the_incident_resolves() {
    let mut h = partition(None);
    let id = h.opened()[0].id;
    // The routes come back before anyone approved the plan.
    for _ in 0..3 {
        h.observe(mesh(vec![link(node(1), 0.0)], 20));
    }
    assert_eq!(plan_outcomes(&h), vec![PlanOutcome::Withdrawn]);
    let closed = h.closed();
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!(closed[0].id, id);
    assert_eq!(closed[0].state, IncidentState::Resolved);
    assert!(closed[0].resolved_at.is_some());
    assert!(h.actions.is_empty(), "the plan never ran");
    assert!(
        !h.healer.handle_approval(id, true, h.now),
        "nothing left to approve"
    );
    assert!(
        h.healer.knowledge().is_empty(),
        "a plan that never ran says nothing about its success"
    );
}
