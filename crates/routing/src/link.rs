//! Per-neighbour link state: liveness (BFD-style), probe loss window, RTT and TQ.
//!
//! Each side probes the other every probe interval. A probe carries the sender's sequence
//! number (gaps are losses), its send time, the echo of the last probe it received (so the
//! receiver gets an RTT without a separate reply packet) and how many of the receiver's
//! last `window` probes arrived (so each side learns its transmit quality). TQ follows
//! B.A.T.M.A.N. IV: transmit quality times an asymmetry penalty from receive quality.

use std::time::Duration;

use wire::{NodeId, Probe};

use crate::Timestamp;

/// A neighbour as shown to operators.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NeighbourInfo {
    /// The neighbour.
    pub id: NodeId,
    /// True while it is heard within the detection time and hears us.
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

/// State of the link to one neighbour.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub id: NodeId,
    /// Heard recently and bidirectional: routes may use it.
    pub alive: bool,
    pub last_heard: Timestamp,
    /// The neighbour's own probe interval, from its hello or probes.
    pub peer_interval: Duration,
    /// Bit i set: the neighbour's probe `rx_top_seq - i` arrived.
    rx_bits: u64,
    rx_top_seq: Option<u32>,
    /// How many of the neighbour's probe sequence numbers the window has covered so far.
    rx_span: u32,
    /// The neighbour's report of how many of our probes it received, over its window.
    tx_report: Option<(u8, u8)>,
    /// Sequence number of our next probe to this neighbour.
    pub next_probe_seq: u32,
    /// The neighbour's last probe: its send time and when we received it, for the echo.
    echo: Option<(u32, Timestamp)>,
    rtt_us: Option<u32>,
    pub tq: u8,
    /// Extra cost added to every route through this neighbour (see
    /// `Router::set_neighbour_penalty`); [`crate::router::ISOLATED`] makes it unusable.
    pub penalty: u32,
}

impl Link {
    pub fn new(id: NodeId, now: Timestamp, peer_interval: Duration) -> Link {
        Link {
            id,
            alive: false,
            last_heard: now,
            peer_interval,
            rx_bits: 0,
            rx_top_seq: None,
            rx_span: 0,
            tx_report: None,
            next_probe_seq: 0,
            echo: None,
            rtt_us: None,
            tq: 0,
            penalty: 0,
        }
    }

    /// When this neighbour must be declared dead if nothing more is heard. BFD negotiates the
    /// detection time from the slower side's interval; we do the same.
    pub fn deadline(&self, own_interval: Duration, miss_limit: u32) -> Timestamp {
        self.last_heard + own_interval.max(self.peer_interval) * miss_limit
    }

    /// Records a probe from the neighbour.
    pub fn on_probe(&mut self, now: Timestamp, probe: &Probe, window: u8) {
        self.peer_interval = Duration::from_millis(u64::from(probe.interval_ms.max(1)));
        self.record_rx_seq(probe.seq, window);
        if probe.window > 0 {
            self.tx_report = Some((probe.rx_count.min(probe.window), probe.window));
        }
        self.echo = Some((probe.tx_time_us, now));
        if probe.echo_time_us != 0 {
            let now_us = now.as_micros() as u32;
            let rtt = now_us
                .wrapping_sub(probe.echo_time_us)
                .saturating_sub(probe.echo_delay_us);
            // A wrapped or absurd value (more than 10 s) means a stale or forged echo.
            if rtt < 10_000_000 {
                self.rtt_us = Some(match self.rtt_us {
                    None => rtt,
                    Some(srtt) => ((u64::from(srtt) * 7 + u64::from(rtt)) / 8) as u32,
                });
            }
        }
    }

    fn record_rx_seq(&mut self, seq: u32, window: u8) {
        let window = u32::from(window);
        match self.rx_top_seq {
            None => {
                self.rx_top_seq = Some(seq);
                self.rx_bits = 1;
                self.rx_span = 1;
            }
            Some(top) => {
                let ahead = seq.wrapping_sub(top);
                let behind = top.wrapping_sub(seq);
                if ahead != 0 && ahead < 1 << 31 {
                    // A jump of more than the window (a restarted neighbour) resets the window.
                    if ahead >= window {
                        self.rx_bits = 1;
                        self.rx_span = 1;
                    } else {
                        self.rx_bits = (self.rx_bits << ahead) | 1;
                        self.rx_span = (self.rx_span + ahead).min(window);
                    }
                    self.rx_top_seq = Some(seq);
                } else if behind < window {
                    self.rx_bits |= 1 << behind;
                }
            }
        }
    }

    fn window_mask(window: u8) -> u64 {
        if window >= 64 {
            u64::MAX
        } else {
            (1u64 << window) - 1
        }
    }

    /// Share of the neighbour's probes received, 0..255.
    pub fn rx_quality(&self, window: u8) -> u8 {
        if self.rx_span == 0 {
            return 0;
        }
        let received = (self.rx_bits & Link::window_mask(window)).count_ones();
        (received * 255 / self.rx_span.max(received)).min(255) as u8
    }

    /// Share of our probes the neighbour received, 0..255; `None` until it reported.
    pub fn tx_quality(&self) -> Option<u8> {
        self.tx_report
            .map(|(count, window)| (u32::from(count) * 255 / u32::from(window.max(1))) as u8)
    }

    /// Recomputes TQ: transmit quality with B.A.T.M.A.N. IV's asymmetry penalty
    /// `255 - (255 - rq)^3 / 255^2`, which punishes links we hear badly.
    pub fn update_tq(&mut self, window: u8) -> u8 {
        let rq = u64::from(self.rx_quality(window));
        let tx = u64::from(self.tx_quality().unwrap_or(0));
        let penalty = 255 - (255 - rq).pow(3) / (255 * 255);
        self.tq = (tx * penalty / 255) as u8;
        self.tq
    }

    /// Fields of the probe we send to this neighbour now.
    pub fn make_probe(&mut self, now: Timestamp, window: u8, interval: Duration) -> Probe {
        let seq = self.next_probe_seq;
        self.next_probe_seq = self.next_probe_seq.wrapping_add(1);
        let received = (self.rx_bits & Link::window_mask(window)).count_ones();
        let expected = self.rx_span.max(received).min(u32::from(window));
        let (echo_time_us, echo_delay_us) = match self.echo {
            Some((their_time, received_at)) => {
                let delay = now.saturating_since(received_at).as_micros();
                (their_time, u32::try_from(delay).unwrap_or(u32::MAX))
            }
            None => (0, 0),
        };
        Probe {
            seq,
            // Truncation is intended: only differences of these times are used.
            tx_time_us: (now.as_micros() as u32).max(1),
            echo_time_us,
            echo_delay_us,
            rx_count: received.min(255) as u8,
            window: expected as u8,
            interval_ms: u16::try_from(interval.as_millis()).unwrap_or(u16::MAX),
        }
    }

    /// True once the neighbour reported receiving at least one of our probes.
    pub fn hears_us(&self) -> bool {
        matches!(self.tx_report, Some((count, _)) if count > 0)
    }

    pub fn info(&self, window: u8) -> NeighbourInfo {
        let rx = f32::from(self.rx_quality(window)) / 255.0;
        let tx = f32::from(self.tx_quality().unwrap_or(0)) / 255.0;
        NeighbourInfo {
            id: self.id,
            alive: self.alive,
            tq: self.tq,
            rx_quality: self.rx_quality(window),
            tx_quality: self.tx_quality().unwrap_or(0),
            loss_pct: (1.0 - rx * tx) * 100.0,
            rtt_us: self.rtt_us.unwrap_or(0),
            last_heard: self.last_heard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(seq: u32, rx_count: u8, window: u8) -> Probe {
        Probe {
            seq,
            tx_time_us: 1000 + seq,
            echo_time_us: 0,
            echo_delay_us: 0,
            rx_count,
            window,
            interval_ms: 100,
        }
    }

    #[test]
    fn window_counts_losses() {
        let mut link = Link::new(
            NodeId::from_index(1),
            Timestamp::ZERO,
            Duration::from_millis(100),
        );
        for seq in 0..64u32 {
            if seq % 4 != 0 {
                link.on_probe(
                    Timestamp::from_millis(u64::from(seq) * 100),
                    &probe(seq, 64, 64),
                    64,
                );
            }
        }
        // 48 of 63 covered sequence numbers arrived (seq 0 was lost before the window began).
        let rq = link.rx_quality(64);
        assert!((190..=200).contains(&rq), "rx quality {rq}");
        assert_eq!(link.tx_quality(), Some(255));
        let tq = link.update_tq(64);
        assert!(
            tq > 200 && tq < 255,
            "asymmetry penalty applies mildly: {tq}"
        );
    }

    #[test]
    fn one_way_link_has_zero_tq() {
        let mut link = Link::new(
            NodeId::from_index(1),
            Timestamp::ZERO,
            Duration::from_millis(100),
        );
        for seq in 0..10 {
            link.on_probe(
                Timestamp::from_millis(seq * 100),
                &probe(seq as u32, 0, 10),
                64,
            );
        }
        assert!(!link.hears_us());
        assert_eq!(link.update_tq(64), 0);
    }

    #[test]
    fn echo_gives_rtt() {
        let mut a = Link::new(
            NodeId::from_index(2),
            Timestamp::ZERO,
            Duration::from_millis(100),
        );
        let mut b = Link::new(
            NodeId::from_index(1),
            Timestamp::ZERO,
            Duration::from_millis(100),
        );
        let from_a = a.make_probe(Timestamp::from_millis(10), 64, Duration::from_millis(100));
        b.on_probe(Timestamp::from_millis(15), &from_a, 64);
        let from_b = b.make_probe(Timestamp::from_millis(17), 64, Duration::from_millis(100));
        assert_eq!(from_b.echo_delay_us, 2000);
        a.on_probe(Timestamp::from_millis(22), &from_b, 64);
        assert_eq!(a.info(64).rtt_us, 10_000);
    }

    #[test]
    fn restart_resets_the_window() {
        let mut link = Link::new(
            NodeId::from_index(1),
            Timestamp::ZERO,
            Duration::from_millis(100),
        );
        link.on_probe(Timestamp::ZERO, &probe(5, 1, 1), 64);
        link.on_probe(Timestamp::ZERO, &probe(5000, 1, 1), 64);
        assert_eq!(link.rx_quality(64), 255);
    }
}
