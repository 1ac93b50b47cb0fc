//! Simulated link topologies (line, ring, grid, random) and connected components.
//!
//! Links are undirected and never fail by themselves; nodes crash. The adjacency is kept in
//! compressed sparse row form (one offsets array, one sorted targets array) because the
//! simulator looks links up on every delivery and every walk step: a cache-friendly binary
//! search over a handful of neighbours beats a hash map at these degrees.

use std::collections::HashSet;

use crate::SimError;
use crate::rng::{SimRng, Stream};

/// Average degree the random topology aims for: a random spanning tree plus extra edges until
/// the graph has `RANDOM_AVERAGE_DEGREE * N / 2` edges. Six is a typical degree of a dense
/// wireless or campus mesh and stays well below the router's default `max_neighbours` (64).
pub const RANDOM_AVERAGE_DEGREE: usize = 6;

/// The shape of the simulated network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TopologyKind {
    /// Node i linked to node i+1: the longest possible paths.
    Line,
    /// A line closed into a cycle: exactly two disjoint paths between any two nodes.
    Ring,
    /// A near-square grid, row-major: `ceil(sqrt(N))` columns, the last row possibly partial.
    Grid,
    /// Connected random graph: a random spanning tree over shuffled labels (each node in turn
    /// links to a uniformly chosen earlier one), plus uniformly random extra edges until the
    /// average degree is [`RANDOM_AVERAGE_DEGREE`] (or the graph is complete, for tiny N).
    Random,
}

impl TopologyKind {
    /// The lower-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            TopologyKind::Line => "line",
            TopologyKind::Ring => "ring",
            TopologyKind::Grid => "grid",
            TopologyKind::Random => "random",
        }
    }
}

/// An undirected graph over nodes `0..node_count` in compressed sparse row form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// `offsets[i]..offsets[i + 1]` is node i's slice of `targets`.
    offsets: Vec<u32>,
    /// Neighbours of every node, each node's slice sorted ascending.
    targets: Vec<u32>,
}

impl Topology {
    /// Builds the topology `kind` over `node_count` nodes; only `Random` consumes the seed.
    pub fn build(kind: TopologyKind, node_count: usize, seed: u64) -> Result<Topology, SimError> {
        let n = u32::try_from(node_count)
            .map_err(|_| SimError::invalid("--nodes", "too many nodes"))?;
        let edges: Vec<(u32, u32)> = match kind {
            TopologyKind::Line => (1..n).map(|i| (i - 1, i)).collect(),
            TopologyKind::Ring => {
                let mut edges: Vec<(u32, u32)> = (1..n).map(|i| (i - 1, i)).collect();
                // With two nodes the closing edge would duplicate the only one.
                if n >= 3 {
                    edges.push((n - 1, 0));
                }
                edges
            }
            TopologyKind::Grid => grid_edges(n),
            TopologyKind::Random => {
                random_edges(n, &mut SimRng::for_stream(seed, Stream::Topology))
            }
        };
        Topology::from_edges(node_count, &edges)
    }

    /// A topology from an explicit edge list; duplicate edges are merged. Rejects self-links
    /// and endpoints outside `0..node_count`.
    pub fn from_edges(node_count: usize, edges: &[(u32, u32)]) -> Result<Topology, SimError> {
        let n = u32::try_from(node_count)
            .map_err(|_| SimError::invalid("--nodes", "too many nodes"))?;
        let mut degree = vec![0u32; node_count];
        let mut seen: HashSet<(u32, u32)> = HashSet::with_capacity(edges.len());
        let mut unique: Vec<(u32, u32)> = Vec::with_capacity(edges.len());
        for &(a, b) in edges {
            if a >= n || b >= n {
                return Err(SimError::Topology(format!(
                    "edge {a}-{b} names a node outside 0..{n}"
                )));
            }
            if a == b {
                return Err(SimError::Topology(format!("self-link on node {a}")));
            }
            if seen.insert((a.min(b), a.max(b))) {
                unique.push((a, b));
                degree[a as usize] += 1;
                degree[b as usize] += 1;
            }
        }
        let mut offsets = Vec::with_capacity(node_count + 1);
        let mut running = 0u32;
        offsets.push(0);
        for d in &degree {
            running += d;
            offsets.push(running);
        }
        let mut fill: Vec<u32> = offsets[..node_count].to_vec();
        let mut targets = vec![0u32; running as usize];
        for (a, b) in unique {
            targets[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
            targets[fill[b as usize] as usize] = a;
            fill[b as usize] += 1;
        }
        for i in 0..node_count {
            targets[offsets[i] as usize..offsets[i + 1] as usize].sort_unstable();
        }
        let topology = Topology { offsets, targets };
        debug_assert_eq!(
            topology.targets.len() % 2,
            0,
            "every undirected edge is stored twice"
        );
        Ok(topology)
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Number of undirected links.
    pub fn edge_count(&self) -> usize {
        self.targets.len() / 2
    }

    /// Number of directed link slots (twice the links); indexes per-direction link state.
    pub fn directed_link_count(&self) -> usize {
        self.targets.len()
    }

    /// The neighbours of `node`, sorted.
    pub fn neighbours(&self, node: u32) -> &[u32] {
        let i = node as usize;
        &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The indices of the directed links leaving `node`, in the order of [`Self::neighbours`].
    pub fn links_of(&self, node: u32) -> std::ops::Range<usize> {
        let i = node as usize;
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }

    /// The index of the directed link `from -> to`, if the two are linked.
    pub fn link_index(&self, from: u32, to: u32) -> Option<usize> {
        let start = self.offsets[from as usize] as usize;
        self.neighbours(from)
            .binary_search(&to)
            .ok()
            .map(|k| start + k)
    }

    /// Connected components of the nodes with `alive[i]` set: the component id of each node
    /// (ids are dense, in order of their smallest node), `u32::MAX` for dead nodes, and the
    /// number of components. Iterative breadth-first search, O(nodes + links).
    pub fn components(&self, alive: &[bool]) -> (Vec<u32>, u32) {
        debug_assert_eq!(alive.len(), self.node_count(), "one liveness flag per node");
        let is_alive = |node: usize| alive.get(node).copied().unwrap_or(false);
        let mut component = vec![u32::MAX; self.node_count()];
        let mut queue: Vec<u32> = Vec::new();
        let mut count = 0u32;
        for start in 0..self.node_count() {
            if !is_alive(start) || component[start] != u32::MAX {
                continue;
            }
            component[start] = count;
            queue.clear();
            queue.push(start as u32);
            let mut head = 0;
            while head < queue.len() {
                let node = queue[head];
                head += 1;
                for &next in self.neighbours(node) {
                    if is_alive(next as usize) && component[next as usize] == u32::MAX {
                        component[next as usize] = count;
                        queue.push(next);
                    }
                }
            }
            count += 1;
        }
        (component, count)
    }

    /// True when every node can reach every other.
    pub fn is_connected(&self) -> bool {
        let (_, count) = self.components(&vec![true; self.node_count()]);
        count <= 1
    }
}

/// Row-major near-square grid: right and down links. The last row may be partial, but each of
/// its nodes still has the node above it, so the grid stays connected.
fn grid_edges(n: u32) -> Vec<(u32, u32)> {
    let mut columns = 1u32;
    while columns * columns < n {
        columns += 1;
    }
    let mut edges = Vec::with_capacity(2 * n as usize);
    for i in 0..n {
        if (i + 1) % columns != 0 && i + 1 < n {
            edges.push((i, i + 1));
        }
        if i + columns < n {
            edges.push((i, i + columns));
        }
    }
    edges
}

/// Random spanning tree plus random extra edges; see [`TopologyKind::Random`].
fn random_edges(n: u32, rng: &mut SimRng) -> Vec<(u32, u32)> {
    let nodes = u64::from(n);
    let complete = nodes * nodes.saturating_sub(1) / 2;
    let target = (RANDOM_AVERAGE_DEGREE as u64 * nodes / 2).min(complete);
    let mut order: Vec<u32> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut present: HashSet<(u32, u32)> = HashSet::with_capacity(target as usize);
    let mut edges = Vec::with_capacity(target as usize);
    for k in 1..order.len() {
        let (a, b) = (order[k], order[rng.below(k as u64) as usize]);
        present.insert((a.min(b), a.max(b)));
        edges.push((a, b));
    }
    // Terminates: `target` never exceeds the number of distinct pairs, and each draw hits a
    // missing pair with probability at least 1 / complete.
    while (edges.len() as u64) < target {
        let a = rng.below(nodes) as u32;
        let b = rng.below(nodes) as u32;
        if a != b && present.insert((a.min(b), a.max(b))) {
            edges.push((a, b));
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(kind: TopologyKind, n: usize) -> Topology {
        Topology::build(kind, n, 1).unwrap()
    }

    #[test]
    fn shapes_have_the_expected_links() {
        let line = build(TopologyKind::Line, 5);
        assert_eq!(line.edge_count(), 4);
        assert_eq!(line.neighbours(0), &[1]);
        assert_eq!(line.neighbours(2), &[1, 3]);
        let ring = build(TopologyKind::Ring, 5);
        assert_eq!(ring.edge_count(), 5);
        assert_eq!(ring.neighbours(0), &[1, 4]);
        assert_eq!(build(TopologyKind::Ring, 2).edge_count(), 1);
        // 10 nodes: 4 columns, rows of 4, 4, 2.
        let grid = build(TopologyKind::Grid, 10);
        assert_eq!(grid.neighbours(0), &[1, 4]);
        assert_eq!(grid.neighbours(5), &[1, 4, 6, 9]);
        assert_eq!(grid.neighbours(9), &[5, 8]);
        assert_eq!(grid.neighbours(3), &[2, 7]);
    }

    #[test]
    fn every_shape_is_connected_with_symmetric_links() {
        for kind in [
            TopologyKind::Line,
            TopologyKind::Ring,
            TopologyKind::Grid,
            TopologyKind::Random,
        ] {
            for n in [2usize, 3, 7, 50, 333] {
                let topology = build(kind, n);
                assert!(
                    topology.is_connected(),
                    "{kind:?} with {n} nodes is not connected"
                );
                for a in 0..n as u32 {
                    for &b in topology.neighbours(a) {
                        assert_ne!(a, b);
                        assert!(
                            topology.link_index(b, a).is_some(),
                            "{kind:?}: {a}-{b} is one-way"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn random_topology_has_average_degree_six_and_depends_on_the_seed() {
        let topology = build(TopologyKind::Random, 1000);
        assert_eq!(topology.edge_count(), 3000);
        assert_ne!(
            topology,
            Topology::build(TopologyKind::Random, 1000, 2).unwrap()
        );
        assert_eq!(
            topology,
            Topology::build(TopologyKind::Random, 1000, 1).unwrap()
        );
        // Tiny meshes become complete graphs rather than looping forever.
        assert_eq!(build(TopologyKind::Random, 4).edge_count(), 6);
    }

    #[test]
    fn components_ignore_dead_nodes() {
        let line = build(TopologyKind::Line, 5);
        let (component, count) = line.components(&[true, true, false, true, true]);
        assert_eq!(count, 2);
        assert_eq!(component, vec![0, 0, u32::MAX, 1, 1]);
    }

    #[test]
    fn bad_edge_lists_are_rejected() {
        assert!(Topology::from_edges(3, &[(0, 3)]).is_err());
        assert!(Topology::from_edges(3, &[(1, 1)]).is_err());
        let merged = Topology::from_edges(3, &[(0, 1), (1, 0), (1, 2)]).unwrap();
        assert_eq!(merged.edge_count(), 2);
        assert_eq!(merged.link_index(0, 2), None);
    }
}
