//! Property test: any sequence of inputs leaves the loop panic-free and within its bounds.

use std::collections::BTreeSet;

use heal::{
    ActionResult, Healer, LinkSample, MeshContext, Observation, PlaybookSet, Timestamp,
    validate_checks,
};
use proptest::prelude::*;
use wire::NodeId;

#[derive(Debug, Clone)]
enum Input {
    Node(f64, f64, f64),
    Mesh(Vec<(u8, f64, f64, u8)>, u32, u32),
    View(u8, Vec<(u8, f64)>),
    Check(bool, bool),
    Counter(u8, f64),
    Result(bool),
    Approve(bool),
    Context(u8, Vec<u8>),
    Wait(u16),
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..100.0f64,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(1e12)
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (value(), value(), value()).prop_map(|(a, b, c)| Input::Node(a, b, c)),
        (
            proptest::collection::vec((0u8..12, value(), value(), any::<u8>()), 0..6),
            any::<u32>(),
            0u32..50
        )
            .prop_map(|(l, r, c)| Input::Mesh(l, r, c)),
        (0u8..12, proptest::collection::vec((0u8..12, value()), 0..6))
            .prop_map(|(r, l)| Input::View(r, l)),
        (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Input::Check(a, b)),
        (any::<u8>(), value()).prop_map(|(n, v)| Input::Counter(n, v)),
        any::<bool>().prop_map(Input::Result),
        any::<bool>().prop_map(Input::Approve),
        (0u8..20, proptest::collection::vec(0u8..20, 0..5)).prop_map(|(s, u)| Input::Context(s, u)),
        (0u16..120).prop_map(Input::Wait),
    ]
}

fn id(i: u8) -> NodeId {
    NodeId::from_index(u64::from(i))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_input_sequence_keeps_the_loop_sound(inputs in proptest::collection::vec(input(), 1..300)) {
        let checks = validate_checks(&[
            serde_saphyr::from_str("name: web\ntcp: 127.0.0.1:80\n").expect("parses"),
            serde_saphyr::from_str("name: db\nargs: [true]\ndepends_on_mesh: true\n").expect("parses"),
        ]).expect("valid");
        let mut config = heal::HealConfig::default();
        config.detector.warm_up_samples = 3;
        config.detector.open_after = 2;
        config.detector.close_after = 2;
        let playbooks = PlaybookSet::defaults().expect("defaults parse");
        let mut healer = Healer::new(config, id(0), checks, playbooks).expect("valid");
        let mut now = Timestamp::from_secs(1);
        let mut pending = Vec::new();
        for input in inputs {
            now = now.plus(std::time::Duration::from_millis(500));
            match input {
                Input::Node(c, m, d) => healer.handle_observation(Observation::Node { cpu_percent: c, memory_percent: m, disk_percent: d }, now),
                Input::Mesh(links, routes, churn) => {
                    let links = links.into_iter().map(|(p, loss, rtt, tq)| LinkSample { peer: id(p), loss_percent: loss, rtt_ms: rtt, tq }).collect();
                    healer.handle_observation(Observation::Mesh { links, route_count: routes, route_churn: churn }, now);
                }
                Input::View(r, links) => {
                    let links = links.into_iter().map(|(p, loss)| LinkSample { peer: id(p), loss_percent: loss, rtt_ms: 1.0, tq: 200 }).collect();
                    healer.handle_observation(Observation::NeighbourView { reporter: id(r), links }, now);
                }
                Input::Check(web, passed) => {
                    let name = if web { "web" } else { "db" };
                    healer.handle_observation(Observation::Check { name: name.into(), passed }, now);
                }
                Input::Counter(n, v) => healer.handle_observation(Observation::Counter { name: format!("c{n}"), value: v }, now),
                Input::Result(ok) => {
                    if let Some(a) = pending.pop() {
                        let result = if ok { ActionResult::Succeeded } else { ActionResult::Failed("no".into()) };
                        healer.handle_action_result(a, result, now);
                    }
                }
                Input::Approve(yes) => {
                    let ids: Vec<_> = healer.open_incidents().map(|i| i.id).collect();
                    for i in ids {
                        healer.handle_approval(i, yes, now);
                    }
                }
                Input::Context(size, under) => healer.set_mesh_context(MeshContext {
                    mesh_size: usize::from(size),
                    under_action: under.into_iter().map(id).collect::<BTreeSet<_>>(),
                }),
                Input::Wait(secs) => {
                    now = now.plus(std::time::Duration::from_secs(u64::from(secs)));
                    healer.handle_timeout(now);
                }
            }
            while let Some(a) = healer.poll_action() {
                pending.push(a.id);
            }
            while healer.poll_event().is_some() {}
            prop_assert!(healer.validate().is_ok(), "{:?}", healer.validate());
            for incident in healer.open_incidents() {
                prop_assert!((0.0..=1.0).contains(&incident.confidence), "confidence {}", incident.confidence);
                prop_assert!(incident.first_symptom_at <= incident.detected_at);
            }
            if let Some(t) = healer.poll_timeout() {
                prop_assert!(t >= now || healer.open_incidents().count() > 0);
            }
        }
    }
}
