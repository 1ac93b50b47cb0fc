//! The forwarding-path checker: walks next hops hop by hop, trusting no routing table.
//!
//! A pair (source, destination) "works" when starting at the source and repeatedly asking the
//! current node's router for its next hop towards the destination reaches the destination,
//! through live nodes only, over links that exist in the simulated topology, each next hop
//! being listed alive in the forwarding node's own neighbour table. That is what a data packet
//! would experience, so a route that a table lists but that dead-ends, black-holes into a
//! crashed node or loops counts as broken.
//!
//! Per destination the walker memoises over the next-hop functional graph: every node visited
//! is marked as reaching the destination or broken, so each node is resolved once and one
//! destination costs O(N) next-hop lookups; all pairs cost O(N^2). No recursion: the current
//! path is an explicit stack, and finding a node already on it is a forwarding loop.

use wire::NodeId;

/// A router's answer to "next hop towards this destination?", mapped onto simulator nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// No route.
    None,
    /// A simulator node.
    Node(u32),
    /// An identifier that belongs to no simulated node.
    Foreign(NodeId),
}

/// What the walker needs to see of the mesh.
pub trait MeshView {
    /// Number of nodes, live or not.
    fn node_count(&self) -> usize;
    /// The connected component of a live node among the live nodes; `None` if not live.
    fn component(&self, node: u32) -> Option<u32>;
    /// The router of live node `node`'s next hop towards `destination`.
    fn next_hop(&self, node: u32, destination: u32) -> NextHop;
    /// The directed link `from -> to` in the simulated topology, if any.
    fn link(&self, from: u32, to: u32) -> Option<usize>;
    /// Whether the router at the link's origin lists the link's far end as alive.
    fn listed_alive(&self, link: usize) -> bool;
}

/// Something the walker saw on the way. Dead ends are normal while a mesh converges; the
/// others are wrong at least once the mesh has converged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding<'a> {
    /// The walk from `source` reached `node`, which has no route to `destination`.
    DeadEnd {
        /// Where the walk started.
        source: u32,
        /// The node without a route.
        node: u32,
        /// The destination.
        destination: u32,
    },
    /// Following next hops towards `destination` came back to a node: `cycle` lists the loop's
    /// nodes in forwarding order, starting at the first node walked into twice.
    Loop {
        /// The destination the loop is for.
        destination: u32,
        /// The nodes of the loop.
        cycle: &'a [u32],
    },
    /// `node` forwards to an identifier that is no simulated node.
    ForeignNextHop {
        /// The forwarding node.
        node: u32,
        /// The destination.
        destination: u32,
        /// The unknown identifier.
        next_hop: NodeId,
    },
    /// `node` forwards to a node it has no link to.
    NotLinked {
        /// The forwarding node.
        node: u32,
        /// The destination.
        destination: u32,
        /// The unlinked next hop.
        next_hop: u32,
    },
    /// `node` forwards to a neighbour its own neighbour table does not list as alive.
    NotListedAlive {
        /// The forwarding node.
        node: u32,
        /// The destination.
        destination: u32,
        /// The neighbour.
        next_hop: u32,
    },
    /// `node` forwards to a linked neighbour that is not live (crashed or not started).
    DeadNextHop {
        /// The forwarding node.
        node: u32,
        /// The destination.
        destination: u32,
        /// The dead neighbour.
        next_hop: u32,
    },
}

/// Per-node walk state for the destination being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Unvisited,
    OnPath,
    Reaches,
    Broken,
}

/// Reusable scratch space for walks, so checking allocates nothing per destination.
#[derive(Debug, Clone)]
pub struct Walker {
    marks: Vec<Mark>,
    path: Vec<u32>,
}

impl Walker {
    /// Scratch space for meshes of `node_count` nodes.
    pub fn new(node_count: usize) -> Walker {
        Walker {
            marks: vec![Mark::Unvisited; node_count],
            path: Vec::with_capacity(64),
        }
    }

    /// Walks from every live node in `destination`'s component towards it and returns how many
    /// of those sources have no working path. With `stop_at_first_broken` it returns 1 as soon
    /// as one broken source is found (the cheap "is everything fine?" question). Findings go to
    /// `on_finding`; a dead destination has no pairs and returns 0.
    pub fn walk(
        &mut self,
        view: &impl MeshView,
        destination: u32,
        stop_at_first_broken: bool,
        on_finding: &mut impl FnMut(Finding<'_>),
    ) -> u32 {
        let Some(destination_component) = view.component(destination) else {
            return 0;
        };
        debug_assert_eq!(
            self.marks.len(),
            view.node_count(),
            "walker sized for another mesh"
        );
        self.marks.fill(Mark::Unvisited);
        self.marks[destination as usize] = Mark::Reaches;
        let mut broken = 0u32;
        for source in 0..view.node_count() as u32 {
            if self.marks[source as usize] != Mark::Unvisited
                || view.component(source) != Some(destination_component)
            {
                continue;
            }
            let verdict = self.follow(view, source, destination, on_finding);
            for &node in &self.path {
                self.marks[node as usize] = verdict;
            }
            if verdict == Mark::Broken {
                // Every node on the path is live and linked to the source through live nodes,
                // so each is a source in the destination's component whose path is broken.
                broken += self.path.len() as u32;
                if stop_at_first_broken {
                    return 1;
                }
            }
        }
        debug_assert!(self.marks[destination as usize] == Mark::Reaches);
        broken
    }

    /// Follows next hops from `source` until a resolved node, a loop or a dead end. Leaves the
    /// nodes it walked through (all unresolved before) in `self.path`.
    fn follow(
        &mut self,
        view: &impl MeshView,
        source: u32,
        destination: u32,
        on_finding: &mut impl FnMut(Finding<'_>),
    ) -> Mark {
        self.path.clear();
        let mut node = source;
        loop {
            match self.marks[node as usize] {
                Mark::Reaches => return Mark::Reaches,
                Mark::Broken => return Mark::Broken,
                Mark::OnPath => {
                    let start = self.path.iter().position(|&n| n == node).unwrap_or(0);
                    on_finding(Finding::Loop {
                        destination,
                        cycle: &self.path[start..],
                    });
                    return Mark::Broken;
                }
                Mark::Unvisited => {}
            }
            self.marks[node as usize] = Mark::OnPath;
            self.path.push(node);
            let next_hop = match view.next_hop(node, destination) {
                NextHop::None => {
                    on_finding(Finding::DeadEnd {
                        source,
                        node,
                        destination,
                    });
                    return Mark::Broken;
                }
                NextHop::Foreign(next_hop) => {
                    on_finding(Finding::ForeignNextHop {
                        node,
                        destination,
                        next_hop,
                    });
                    return Mark::Broken;
                }
                NextHop::Node(next_hop) => next_hop,
            };
            let Some(link) = view.link(node, next_hop) else {
                on_finding(Finding::NotLinked {
                    node,
                    destination,
                    next_hop,
                });
                return Mark::Broken;
            };
            if !view.listed_alive(link) {
                on_finding(Finding::NotListedAlive {
                    node,
                    destination,
                    next_hop,
                });
                return Mark::Broken;
            }
            if view.component(next_hop).is_none() {
                on_finding(Finding::DeadNextHop {
                    node,
                    destination,
                    next_hop,
                });
                return Mark::Broken;
            }
            node = next_hop;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topology;

    /// A hand-written mesh: a topology, a next-hop table `table[node][destination]`, which
    /// nodes are live, and which links the routers list alive (all, unless cleared).
    struct Table {
        topology: Topology,
        table: Vec<Vec<Option<u32>>>,
        live: Vec<bool>,
        listed_alive: Vec<bool>,
    }

    impl Table {
        fn new(edges: &[(u32, u32)], table: Vec<Vec<Option<u32>>>) -> Table {
            let topology = Topology::from_edges(table.len(), edges).unwrap();
            let links = topology.directed_link_count();
            Table {
                live: vec![true; table.len()],
                listed_alive: vec![true; links],
                topology,
                table,
            }
        }
    }

    impl MeshView for Table {
        fn node_count(&self) -> usize {
            self.table.len()
        }
        fn component(&self, node: u32) -> Option<u32> {
            let (component, _) = self.topology.components(&self.live);
            self.live[node as usize].then_some(component[node as usize])
        }
        fn next_hop(&self, node: u32, destination: u32) -> NextHop {
            match self.table[node as usize][destination as usize] {
                Some(hop) if hop >= 100 => NextHop::Foreign(NodeId::from_index(u64::from(hop))),
                Some(hop) => NextHop::Node(hop),
                None => NextHop::None,
            }
        }
        fn link(&self, from: u32, to: u32) -> Option<usize> {
            self.topology.link_index(from, to)
        }
        fn listed_alive(&self, link: usize) -> bool {
            self.listed_alive[link]
        }
    }

    /// Walks towards `destination` and returns (broken sources, findings as text).
    fn check(mesh: &Table, destination: u32) -> (u32, Vec<String>) {
        let mut findings = Vec::new();
        let broken = Walker::new(mesh.node_count()).walk(mesh, destination, false, &mut |f| {
            findings.push(format!("{f:?}"));
        });
        (broken, findings)
    }

    const LINE4: [(u32, u32); 3] = [(0, 1), (1, 2), (2, 3)];

    /// A correct line 0-1-2-3 routing table towards every destination.
    fn line_table() -> Vec<Vec<Option<u32>>> {
        (0..4u32)
            .map(|node| {
                (0..4u32)
                    .map(|dest| match dest.cmp(&node) {
                        std::cmp::Ordering::Equal => None,
                        std::cmp::Ordering::Greater => Some(node + 1),
                        std::cmp::Ordering::Less => Some(node - 1),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn correct_tables_have_no_broken_pairs() {
        let mesh = Table::new(&LINE4, line_table());
        for destination in 0..4 {
            assert_eq!(check(&mesh, destination), (0, vec![]));
        }
    }

    #[test]
    fn a_loop_breaks_every_source_that_enters_it() {
        let mut table = line_table();
        table[2][3] = Some(1); // 1 -> 2 -> 1 towards 3.
        let mesh = Table::new(&LINE4, table);
        let (broken, findings) = check(&mesh, 3);
        assert_eq!(broken, 3, "0, 1 and 2 all end in the loop");
        assert_eq!(
            findings,
            vec!["Loop { destination: 3, cycle: [1, 2] }".to_string()]
        );
    }

    /// A change to a correct mesh, the broken sources it causes towards node 3, and the
    /// start of the first finding's text ("" for none).
    type Breakage = (fn(&mut Table), u32, &'static str);

    #[test]
    fn dead_ends_and_bad_next_hops_are_broken() {
        let cases: Vec<Breakage> = vec![
            (
                |m| m.table[1][3] = None,
                2,
                "DeadEnd { source: 0, node: 1, destination: 3 }",
            ),
            (
                |m| m.table[1][3] = Some(3),
                2,
                "NotLinked { node: 1, destination: 3, next_hop: 3 }",
            ),
            (|m| m.table[1][3] = Some(100), 2, "ForeignNextHop"),
            (
                |m| m.listed_alive[m.topology.link_index(1, 2).unwrap()] = false,
                2,
                "NotListedAlive { node: 1, destination: 3, next_hop: 2 }",
            ),
        ];
        for (breakage, expected_broken, expected_finding) in cases {
            let mut mesh = Table::new(&LINE4, line_table());
            breakage(&mut mesh);
            let (broken, findings) = check(&mesh, 3);
            assert_eq!(broken, expected_broken, "{expected_finding}");
            if expected_finding.is_empty() {
                assert!(findings.is_empty());
            } else {
                assert!(findings[0].starts_with(expected_finding), "{findings:?}");
            }
        }
    }

    #[test]
    fn crashed_relays_black_hole_and_disconnected_pairs_do_not_count() {
        // Ring 0-1-2-3-0; node 1 crashed, 0 still routes to 2 through it.
        let ring = [(0, 1), (1, 2), (2, 3), (3, 0)];
        let table = vec![
            vec![None, Some(1), Some(1), Some(3)],
            vec![Some(0), None, Some(2), Some(2)],
            vec![Some(3), Some(1), None, Some(3)],
            vec![Some(0), Some(0), Some(2), None],
        ];
        let mut mesh = Table::new(&ring, table);
        mesh.live[1] = false;
        let (broken, findings) = check(&mesh, 2);
        assert_eq!(broken, 1);
        assert_eq!(
            findings,
            vec!["DeadNextHop { node: 0, destination: 2, next_hop: 1 }".to_string()]
        );
        assert_eq!(
            check(&mesh, 1),
            (0, vec![]),
            "a dead destination has no pairs"
        );
        // Crash 3 too: 0 and 2 are in different components, so nothing is broken.
        mesh.live[3] = false;
        assert_eq!(check(&mesh, 2), (0, vec![]));
    }

    #[test]
    fn stopping_at_the_first_broken_source_reports_one() {
        let mut table = line_table();
        table[2][3] = None;
        let mesh = Table::new(&LINE4, table);
        let broken = Walker::new(4).walk(&mesh, 3, true, &mut |_| {});
        assert_eq!(broken, 1);
    }
}
