//! `Observation`: what the node measured (node and mesh metrics, neighbours' views, check results,
//! counters), and `MetricKey`, the name under which each scalar is tracked.

use serde::{Deserialize, Serialize};
use wire::NodeId;

/// One measurement batch fed to [`crate::Healer::handle_observation`].
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// This node's resource use, percentages from 0 to 100.
    Node {
        /// CPU use over the last period.
        cpu_percent: f64,
        /// Memory in use.
        memory_percent: f64,
        /// Use of the fullest monitored disk.
        disk_percent: f64,
    },
    /// This node's view of the mesh (from the routing core's snapshot).
    Mesh {
        /// One entry per current neighbour. A neighbour seen before and missing now counts as a
        /// link with 100 % loss, because a vanished neighbour is the strongest loss signal.
        links: Vec<LinkSample>,
        /// Destinations with a route.
        route_count: u32,
        /// Route changes since the previous observation.
        route_churn: u32,
    },
    /// A neighbour's view of its own links, carried in its incident/health messages; feeds the
    /// neighbourhood detector only.
    NeighbourView {
        /// The node that measured.
        reporter: NodeId,
        /// Its links.
        links: Vec<LinkSample>,
    },
    /// One run of a declared health check.
    Check {
        /// The check's name.
        name: String,
        /// Whether the run passed.
        passed: bool,
    },
    /// Any counter or gauge the node exports (eBPF drops, queue depths); higher is worse.
    Counter {
        /// Counter name.
        name: String,
        /// Current value.
        value: f64,
    },
}

/// Measurements of one link, seen from one end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkSample {
    /// The node at the other end.
    pub peer: NodeId,
    /// Probe loss, percent.
    pub loss_percent: f64,
    /// Round-trip time, milliseconds.
    pub rtt_ms: f64,
    /// Transmit quality 0..=255 (B.A.T.M.A.N. TQ).
    pub tq: u8,
}

/// Longest counter name kept; longer names are cut, so one chatty exporter cannot grow the
/// metric table's memory.
pub const MAX_COUNTER_NAME: usize = 64;

/// The name under which a scalar metric is tracked by a detector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKey {
    /// This node's CPU use.
    Cpu,
    /// This node's memory use.
    Memory,
    /// This node's disk use.
    Disk,
    /// Loss on the link to a neighbour.
    LinkLoss(NodeId),
    /// Round-trip time to a neighbour.
    LinkRtt(NodeId),
    /// Transmit quality to a neighbour.
    LinkTq(NodeId),
    /// Number of neighbours.
    Neighbours,
    /// Number of routed destinations.
    RouteCount,
    /// Route changes per observation.
    RouteChurn,
    /// A named counter.
    Counter(String),
}

/// Which direction of change is harmful for a metric; detectors are one-sided so that
/// an improvement never opens an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Harmful {
    /// Larger values are worse (CPU, loss, RTT).
    High,
    /// Smaller values are worse (TQ, neighbours, routes).
    Low,
}

impl MetricKey {
    /// The harmful direction of this metric.
    pub fn harmful(&self) -> Harmful {
        match self {
            MetricKey::LinkTq(_) | MetricKey::Neighbours | MetricKey::RouteCount => Harmful::Low,
            _ => Harmful::High,
        }
    }

    /// The neighbour this metric is about, if it is a link metric.
    pub fn peer(&self) -> Option<NodeId> {
        match self {
            MetricKey::LinkLoss(p) | MetricKey::LinkRtt(p) | MetricKey::LinkTq(p) => Some(*p),
            _ => None,
        }
    }

    /// Whether this is one of the node's resource metrics (CPU, memory, disk).
    pub fn is_node_resource(&self) -> bool {
        matches!(self, MetricKey::Cpu | MetricKey::Memory | MetricKey::Disk)
    }
}
