//! Demo topologies (line, ring, grid, seeded random) as edge lists, and the graph questions
//! the demo asks of them: hop distances, and whether a path survives losing one node.

use std::collections::VecDeque;

/// The shape of the demo mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Nodes in a chain: there is no alternate path, so no reroute is possible.
    Line,
    /// Nodes in a cycle: every destination has two disjoint paths.
    Ring,
    /// Nodes on a square-ish grid, linked to their horizontal and vertical neighbours.
    Grid,
    /// A seeded random 2-connected graph: a random cycle through all nodes plus random chords.
    Random,
}

impl Shape {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Line => "line",
            Shape::Ring => "ring",
            Shape::Grid => "grid",
            Shape::Random => "random",
        }
    }
}

/// An undirected graph on nodes `0..count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Number of nodes.
    pub count: usize,
    /// Links as pairs of node positions, each listed once with the smaller first.
    pub edges: Vec<(usize, usize)>,
}

impl Topology {
    /// Builds `shape` on `count` nodes; `seed` matters only for `Random`.
    pub fn build(shape: Shape, count: usize, seed: u64) -> Topology {
        let mut edges = match shape {
            Shape::Line => (1..count).map(|i| (i - 1, i)).collect(),
            Shape::Ring => {
                let mut edges: Vec<(usize, usize)> = (1..count).map(|i| (i - 1, i)).collect();
                if count > 2 {
                    edges.push((0, count - 1));
                }
                edges
            }
            Shape::Grid => grid_edges(count),
            Shape::Random => random_edges(count, seed),
        };
        for edge in &mut edges {
            *edge = (edge.0.min(edge.1), edge.0.max(edge.1));
        }
        edges.sort_unstable();
        edges.dedup();
        Topology { count, edges }
    }

    /// Neighbours of `node`.
    pub fn neighbours(&self, node: usize) -> Vec<usize> {
        self.edges
            .iter()
            .filter_map(|&(a, b)| {
                if a == node {
                    Some(b)
                } else if b == node {
                    Some(a)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Hop distance from `from` to every node, avoiding `removed`; `None` if unreachable.
    pub fn distances(&self, from: usize, removed: Option<usize>) -> Vec<Option<usize>> {
        let mut distance = vec![None; self.count];
        if Some(from) == removed {
            return distance;
        }
        distance[from] = Some(0);
        let mut queue = VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            let next_distance = distance[node].map(|d| d + 1);
            for neighbour in self.neighbours(node) {
                if distance[neighbour].is_none() && Some(neighbour) != removed {
                    distance[neighbour] = next_distance;
                    queue.push_back(neighbour);
                }
            }
        }
        distance
    }

    /// The node farthest from `from` in hops (the lowest-numbered one among equals).
    pub fn farthest_from(&self, from: usize) -> usize {
        let distances = self.distances(from, None);
        let mut best = from;
        for (node, distance) in distances.iter().enumerate() {
            if distance.unwrap_or(0) > distances[best].unwrap_or(0) {
                best = node;
            }
        }
        best
    }

    /// Whether every node can reach every other.
    pub fn is_connected(&self) -> bool {
        self.count == 0 || self.distances(0, None).iter().all(Option::is_some)
    }
}

/// Columns of the grid: the smallest square that holds `count` nodes.
fn grid_columns(count: usize) -> usize {
    let mut columns = 1;
    while columns * columns < count {
        columns += 1;
    }
    columns
}

fn grid_edges(count: usize) -> Vec<(usize, usize)> {
    let columns = grid_columns(count);
    let mut edges = Vec::new();
    for node in 0..count {
        if (node + 1) % columns != 0 && node + 1 < count {
            edges.push((node, node + 1));
        }
        if node + columns < count {
            edges.push((node, node + columns));
        }
    }
    edges
}

/// A cycle through all nodes in a seeded random order, plus `count / 2` random chords. The
/// cycle makes the graph 2-connected: every node has two disjoint paths to every other, so
/// any single failed relay can be routed around, which is what the demo shows. The chords
/// make paths of different lengths and nodes of different degrees.
fn random_edges(count: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = crate::seeded::SplitMix64(seed);
    let mut order: Vec<usize> = (0..count).collect();
    // Fisher-Yates shuffle.
    for i in (1..count).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut edges: Vec<(usize, usize)> = (0..count)
        .map(|i| (order[i], order[(i + 1) % count]))
        .collect();
    let mut chords = 0;
    // Bounded: at most 100 draws per wanted chord, in case the graph is nearly complete.
    for _ in 0..(count / 2) * 100 {
        if chords == count / 2 {
            break;
        }
        let (a, b) = (rng.below(count), rng.below(count));
        let edge = (a.min(b), a.max(b));
        if a != b && !edges.iter().any(|&(x, y)| (x.min(y), x.max(y)) == edge) {
            edges.push(edge);
            chords += 1;
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_of_six_has_node_four_opposite_node_one() {
        let ring = Topology::build(Shape::Ring, 6, 0);
        assert_eq!(
            ring.edges,
            vec![(0, 1), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5)]
        );
        assert_eq!(ring.farthest_from(0), 3);
        assert_eq!(
            ring.distances(0, Some(1))[3],
            Some(3),
            "the other way round survives losing node 2"
        );
    }

    #[test]
    fn line_loses_the_far_end_when_a_relay_dies() {
        let line = Topology::build(Shape::Line, 5, 0);
        assert_eq!(line.farthest_from(0), 4);
        assert_eq!(line.distances(0, Some(1))[4], None);
    }

    #[test]
    fn grid_links_rows_and_columns() {
        let grid = Topology::build(Shape::Grid, 9, 0);
        assert_eq!(grid.edges.len(), 12);
        assert_eq!(grid.neighbours(4), vec![1, 3, 5, 7]);
        assert_eq!(grid.farthest_from(0), 8);
        // A partial last row still links up.
        let partial = Topology::build(Shape::Grid, 7, 0);
        assert!(partial.is_connected());
        assert_eq!(partial.neighbours(6), vec![3]);
    }

    #[test]
    fn random_graphs_survive_any_single_node_failure_and_are_reproducible() {
        for seed in 0..50 {
            let graph = Topology::build(Shape::Random, 12, seed);
            assert_eq!(graph, Topology::build(Shape::Random, 12, seed));
            assert_eq!(graph.edges.len(), 12 + 6, "cycle plus count/2 chords");
            for removed in 0..12 {
                let reached = graph.distances((removed + 1) % 12, Some(removed));
                let cut_off = (0..12)
                    .filter(|node| *node != removed && reached[*node].is_none())
                    .count();
                assert_eq!(
                    cut_off, 0,
                    "seed {seed}: losing node {removed} disconnects the graph"
                );
            }
        }
        assert_ne!(
            Topology::build(Shape::Random, 12, 1),
            Topology::build(Shape::Random, 12, 2)
        );
    }
}
