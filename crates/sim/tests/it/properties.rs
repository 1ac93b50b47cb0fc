//! Property: on random connected graphs the real routing core converges, with no forwarding
//! loop once converged, and heals after a crash.

use proptest::prelude::*;
use sim::{SimConfig, Topology, TopologyKind};

/// A connected graph: node i > 0 links to `parents[i - 1] % i` (a random spanning tree),
/// plus extra edges between arbitrary distinct nodes.
fn connected_graph() -> impl Strategy<Value = (usize, Vec<(u32, u32)>)> {
    (4usize..=14).prop_flat_map(|nodes| {
        let parents = proptest::collection::vec(any::<u32>(), nodes - 1);
        let extra = proptest::collection::vec((0..nodes as u32, 0..nodes as u32), 0..nodes * 2);
        (Just(nodes), parents, extra).prop_map(|(nodes, parents, extra)| {
            let mut edges: Vec<(u32, u32)> = parents
                .iter()
                .enumerate()
                .map(|(k, parent)| ((k + 1) as u32, parent % (k as u32 + 1)))
                .collect();
            edges.extend(extra.into_iter().filter(|(a, b)| a != b));
            (nodes, edges)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn random_connected_graphs_converge_without_loops((nodes, edges) in connected_graph(), seed in any::<u64>()) {
        let topology = Topology::from_edges(nodes, &edges).expect("valid edges");
        prop_assert!(topology.is_connected());
        let config = SimConfig {
            nodes,
            topology: TopologyKind::Random,
            fail_fraction: 0.25,
            seed,
            duration_us: 8_000_000,
            ..SimConfig::default()
        };
        match sim::run_on(&config, topology) {
            Ok(report) => {
                prop_assert!(report.converged_s.is_some());
                prop_assert_eq!(report.invariant_violations, 0);
                prop_assert_eq!(report.unreachable_pairs_after, 0);
            }
            Err(error) => prop_assert!(false, "{} nodes, edges {:?}, seed {}: {}", nodes, edges, seed, error),
        }
    }
}
