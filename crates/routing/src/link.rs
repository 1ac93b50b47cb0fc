//! Per-neighbour link state: liveness, probe loss window, RTT and TQ.

use wire::NodeId;

use crate::Timestamp;

/// A neighbour as shown to operators.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NeighbourInfo {
    /// The neighbour.
    pub id: NodeId,
    /// False once it was silent for the detection time.
    pub alive: bool,
    /// Link TQ on the 0..255 scale (transmit quality with asymmetry penalty).
    pub tq: u8,
    /// Share of the neighbour's probes we received in the window, 0..255.
    pub rx_quality: u8,
    /// Share of our probes the neighbour received in the window, 0..255.
    pub tx_quality: u8,
    /// Probe loss in percent, both directions combined.
    pub loss_pct: f32,
    /// Smoothed round-trip time in microseconds (0 until measured).
    pub rtt_us: u32,
    /// When we last heard anything from it.
    pub last_heard: Timestamp,
}
