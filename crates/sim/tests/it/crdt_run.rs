//! The CRDT run (`sim --crdt`): the same seed gives the same report, a policy change reaches
//! every node under loss and after a partition heals, and bad flags are named.

use sim::TopologyKind;
use sim::crdt_run::{CrdtArgs, CrdtConfig, CrdtReport, run};

fn config(nodes: usize, seed: u64, loss: f64, partition_s: f64) -> CrdtConfig {
    let args = CrdtArgs {
        crdt: true,
        partition_s,
        ..CrdtArgs::default()
    };
    CrdtConfig::from_flags(nodes, TopologyKind::Random, seed, loss, 5.0, 30.0, &args)
        .expect("valid flags")
}

fn passed(config: &CrdtConfig) -> CrdtReport {
    let report = run(config).expect("the run completes");
    assert_eq!(report.problems(), Vec::<String>::new(), "{report:?}");
    report
}

#[test]
fn the_same_seed_gives_the_same_report_and_another_seed_another() {
    let first = passed(&config(40, 3, 0.05, 0.0));
    assert_eq!(first, passed(&config(40, 3, 0.05, 0.0)));
    let other = passed(&config(40, 4, 0.05, 0.0));
    assert_ne!(first.bytes_per_node, other.bytes_per_node);
}

#[test]
fn a_change_reaches_every_node_under_loss_with_bytes_counted_per_node() {
    let report = passed(&config(60, 1, 0.05, 0.0));
    assert_eq!(report.nodes_reached, 60);
    assert_eq!(report.bytes_per_node.len(), 60);
    assert!(report.datagrams_lost > 0, "5 % loss drops something");
    // The writer sends the value itself, as fragments, to each neighbour.
    assert!(report.bytes_per_node[0] >= report.value_bytes as u64);
    let converged = report.converged_ms.expect("converged");
    assert!(report.reached_p50_ms.expect("half reached") <= converged);
    assert!(
        report.idle_bytes_per_node_per_s > 0.0,
        "digests flow while idle"
    );
}

#[test]
fn a_partitioned_half_gets_the_change_only_after_the_heal() {
    let report = passed(&config(40, 2, 0.0, 2.0));
    assert!(report.datagrams_cut > 0);
    let heal = report.partition_heal_ms.expect("partitioned");
    let converged = report.converged_ms.expect("converged after the heal");
    assert!(
        converged >= heal,
        "{converged} ms before the heal at {heal} ms"
    );
    assert!(
        report.reached_p50_ms.expect("the writer's half") < heal,
        "the writer's half has it before the heal"
    );
}

#[test]
fn bad_flags_are_named() {
    let mut args = CrdtArgs {
        crdt: true,
        value_bytes: crdt::limits::MAX_VALUE_BYTES + 1,
        ..CrdtArgs::default()
    };
    let error = CrdtConfig::from_flags(10, TopologyKind::Ring, 1, 0.0, 5.0, 10.0, &args)
        .expect_err("too large");
    assert!(error.to_string().contains("--crdt-value-bytes"), "{error}");
    args.value_bytes = 100;
    args.partition_s = -1.0;
    let error = CrdtConfig::from_flags(10, TopologyKind::Ring, 1, 0.0, 5.0, 10.0, &args)
        .expect_err("negative");
    assert!(error.to_string().contains("--partition-s"), "{error}");
}
