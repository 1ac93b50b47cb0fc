//! `SimReport`: what one run measured, the verdict, and the human summary.

use std::fmt::Write as _;

use crate::TopologyKind;

/// What the routers put on the links in one window of the run, by kind. Every count is per
/// link copy, as the bytes are: a packet of 20 OGM entries sent to 3 neighbours counts 3
/// packets and 60 entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrafficByKind {
    /// Packet copies.
    pub packets: u64,
    /// Their bytes, headers included.
    pub bytes: u64,
    /// HELLO messages.
    pub hellos: u64,
    /// PROBE messages.
    pub probes: u64,
    /// SEQNO_REQUEST messages: requests and one-hop queries, sent or forwarded.
    pub seqno_requests: u64,
    /// OGM entries with infinite cost: retractions and poisoned-reverse entries.
    pub ogm_retractions: u64,
    /// OGM entries with TTL 0: triggered updates, request answers, table sync and dumps.
    pub ogm_updates: u64,
    /// OGM entries with a TTL above 0: originations and flood relays.
    pub ogm_floods: u64,
}

impl TrafficByKind {
    /// Adds one packet put on `copies` links.
    pub(crate) fn count(&mut self, payload: &[u8], copy_bytes: u64, copies: u64) {
        self.packets += copies;
        self.bytes += copy_bytes * copies;
        let Ok(packet) = wire::PacketView::parse(payload) else {
            return;
        };
        for message in packet.messages() {
            match message {
                wire::MessageView::Hello(_) => self.hellos += copies,
                wire::MessageView::Probe(_) => self.probes += copies,
                wire::MessageView::SeqnoRequest(_) => self.seqno_requests += copies,
                wire::MessageView::Ogms(batch) => {
                    for ogm in batch {
                        let kind = if ogm.cost == wire::COST_INFINITE {
                            &mut self.ogm_retractions
                        } else if ogm.ttl == 0 {
                            &mut self.ogm_updates
                        } else {
                            &mut self.ogm_floods
                        };
                        *kind += copies;
                    }
                }
            }
        }
    }
}

/// Everything a run measured. All times are virtual seconds; `None` (JSON `null`) means the
/// phase never happened (no convergence, nothing crashed, no recovery in time).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimReport {
    /// Number of simulated nodes.
    pub nodes: usize,
    /// The run seed.
    pub seed: u64,
    /// Link topology.
    pub topology: TopologyKind,
    /// Undirected links in the topology.
    pub links: usize,
    /// Average number of links per node.
    pub average_degree: f64,
    /// Per-delivery loss probability.
    pub loss: f64,
    /// One-way link latency before jitter, in milliseconds.
    pub latency_ms: f64,
    /// Fraction of nodes asked to crash.
    pub fail: f64,
    /// Whether the routers ran with fisheye OGM scoping.
    pub fisheye: bool,
    /// Whether the routers signed and verified OGMs (`--sign-ogms`). The byte figures include
    /// every OGM's 64-byte signature field either way (all zeros when unsigned).
    pub sign_ogms: bool,
    /// Virtual length of the run.
    pub duration_s: f64,
    /// Resolution of `converged_s` and `recovered_s` (how often pairs are checked).
    pub check_interval_ms: f64,
    /// First check instant at which every ordered pair had a working path.
    pub converged_s: Option<f64>,
    /// The window in which nodes start (see `SimConfig::start_spread_us`).
    pub start_spread_s: f64,
    /// When the last node started; `converged_s` is at least this.
    pub last_start_s: f64,
    /// Nodes crashed at `fail_at_s`.
    pub failed_nodes: usize,
    /// When the nodes crashed: `converged_s` + settle + idle window (see the crate docs).
    pub fail_at_s: Option<f64>,
    /// Start of the fault-free heal phase (the last min(10 s, half the time after the crash)
    /// of the run): packet loss stops there.
    pub heal_from_s: Option<f64>,
    /// Time from the crash to the first check instant at which every pair of surviving nodes
    /// that is still connected through surviving nodes had a working path.
    pub recovered_s: Option<f64>,
    /// Nodes alive at the end.
    pub survivors: usize,
    /// Connected components among the survivors.
    pub survivor_components: u32,
    /// Ordered pairs of survivors in the same component.
    pub connected_pairs_after: u64,
    /// Those pairs without a working path at the end of the run.
    pub unreachable_pairs_after: u64,
    /// Where the walks of up to five of those pairs failed (source -> destination: reason).
    pub unreachable_examples: Vec<String>,
    /// Start of the idle window the control traffic is measured over.
    pub idle_window_start_s: Option<f64>,
    /// End of the idle window (the crash instant).
    pub idle_window_end_s: Option<f64>,
    /// Control bytes sent per node per second in the idle window, each packet counted once
    /// per link copy and including [`Self::header_bytes_per_packet`].
    pub control_bytes_per_node_s: Option<f64>,
    /// The same per directed link: bytes a node sends to each neighbour per second.
    pub control_bytes_per_node_neighbour_s: Option<f64>,
    /// Packets (link copies) sent per node per second in the idle window.
    pub control_packets_per_node_s: Option<f64>,
    /// Next-hop changes per node per second in the idle window: 0 in a settled lossless
    /// mesh; each change also costs a triggered update to every neighbour.
    pub idle_route_changes_per_node_s: Option<f64>,
    /// What B.A.T.M.A.N. IV would send per node per neighbour at the same OGM interval:
    /// one 24-byte OGM per originator per interval, payload only (no framing), a lower bound.
    pub batman_iv_ogm_bytes_per_node_neighbour_s: f64,
    /// IPv6 + UDP header bytes added to every packet in the byte accounting.
    pub header_bytes_per_packet: u64,
    /// Router steps: datagrams handed to `handle_datagram` plus timer wake-ups.
    pub events: u64,
    /// Next-hop lookups the path checker made (its share of the run's cost).
    pub checker_lookups: u64,
    /// Packet copies put on links over the whole run.
    pub packets_sent: u64,
    /// Bytes of those copies, headers included.
    pub bytes_sent: u64,
    /// Traffic by kind from the start until the crash (all of the run if nothing crashed).
    pub traffic_until_crash: TrafficByKind,
    /// Traffic by kind in the first simulated second after the crash: the storm of
    /// retractions, requests and reroutes that recovery costs.
    pub traffic_crash_second: TrafficByKind,
    /// Traffic by kind from one second after the crash to the end.
    pub traffic_after_crash_second: TrafficByKind,
    /// Copies handed to a live receiver.
    pub packets_delivered: u64,
    /// Copies dropped by the simulated loss.
    pub packets_lost: u64,
    /// Copies that arrived at a crashed or not yet started node.
    pub packets_to_dead_nodes: u64,
    /// Copies dropped because the engine's event queue held its most pending deliveries
    /// ([`crate::queue::MAX_QUEUED_DELIVERIES`]) or its most payload bytes in flight
    /// ([`crate::queue::MAX_PAYLOAD_BYTES_IN_FLIGHT`]); 0 unless a mass failure floods.
    pub packets_dropped_queue_full: u64,
    /// Copies a receiver refused because its neighbour table was full.
    pub dropped_neighbour_limit: u64,
    /// Sum over routers of their next-hop changes.
    pub route_changes: u64,
    /// Sum over routers of their switches to a precomputed alternate.
    pub fast_reroutes: u64,
    /// Sum over routers of OGM signatures verified cryptographically (0 when unsigned).
    pub ogm_signatures_verified: u64,
    /// Sum over routers of OGMs dropped as forged, replayed, stale, revoked or of an unknown
    /// originator (0 in a healthy signed run: every key is known).
    pub dropped_unauthenticated_ogms: u64,
    /// Sum over routers of events their bounded event queue dropped before the engine drained
    /// them (the engine then reloads that node's neighbour state from its table).
    pub router_dropped_events: u64,
    /// Sum over routers of packets their bounded transmit queue dropped.
    pub router_dropped_transmits: u64,
    /// Forwarding loops seen before the first convergence (allowed, reported for insight).
    pub loops_before_convergence: u64,
    /// Full audits of the converged mesh (idle and heal phases).
    pub audits: u64,
    /// Audits that found some connected pair without a working path (route flapping).
    pub unstable_audits: u64,
    /// Most events pending at once.
    pub peak_queued_events: usize,
    /// Invariant violations found (each occurrence counts).
    pub invariant_violations: u64,
    /// The first few violations, with their virtual time.
    pub violations: Vec<String>,
}

impl SimReport {
    /// Why the run counts as failed; empty when it converged, recovered, healed completely
    /// and broke no invariant.
    pub fn problems(&self, requested_failures: usize) -> Vec<String> {
        let mut problems = Vec::new();
        if self.invariant_violations > 0 {
            let first = self.violations.first().map_or("", String::as_str);
            problems.push(format!(
                "{} invariant violations (first: {first})",
                self.invariant_violations
            ));
        }
        if self.converged_s.is_none() {
            problems.push(format!("did not converge within {} s", self.duration_s));
        } else if requested_failures > 0 && self.fail_at_s.is_none() {
            problems
                .push("converged too late to crash nodes before the end of the run".to_string());
        } else if self.failed_nodes > 0 && self.recovered_s.is_none() {
            problems.push(format!(
                "did not recover from the crash within {} s",
                self.duration_s
            ));
        }
        if self.unreachable_pairs_after > 0 {
            problems.push(format!(
                "{} of {} connected pairs unreachable at the end",
                self.unreachable_pairs_after, self.connected_pairs_after
            ));
        }
        problems
    }

    /// A short human-readable summary; `wall_ms` is the real time the run took.
    pub fn render_text(&self, wall_ms: u64) -> String {
        let mut out = String::new();
        let seconds =
            |value: Option<f64>| value.map_or_else(|| "never".to_string(), |s| format!("{s:.3} s"));
        let rate =
            |value: Option<f64>| value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"));
        // Writing to a String cannot fail, so the fmt::Results below are safely ignored.
        let _ = writeln!(
            out,
            "x0tta6bl4 sim: {} nodes, {} topology ({} links, average degree {:.2}), loss {}, latency {} ms, seed {}, fisheye {}, signed OGMs {}",
            self.nodes,
            self.topology.name(),
            self.links,
            self.average_degree,
            self.loss,
            self.latency_ms,
            self.seed,
            if self.fisheye { "on" } else { "off" },
            if self.sign_ogms { "on" } else { "off" },
        );
        let _ = writeln!(
            out,
            "  converged      {} (checked every {} ms; nodes started within {:.3} s, the last at {:.3} s)",
            seconds(self.converged_s),
            self.check_interval_ms,
            self.start_spread_s,
            self.last_start_s
        );
        match self.fail_at_s {
            Some(at) => {
                let _ = writeln!(
                    out,
                    "  crashed        {} nodes at {at:.3} s, {} survivors in {} component(s)",
                    self.failed_nodes, self.survivors, self.survivor_components
                );
                let _ = match self.recovered_s {
                    Some(recovered) => {
                        writeln!(out, "  recovered      {recovered:.3} s after the crash")
                    }
                    None => writeln!(out, "  recovered      not within the run"),
                };
            }
            None => {
                let _ = writeln!(out, "  crashed        nothing");
            }
        }
        if let Some(heal) = self.heal_from_s {
            let _ = writeln!(
                out,
                "  heal phase     fault-free (no loss) from {heal:.3} s"
            );
        }
        let _ = writeln!(
            out,
            "  unreachable    {} of {} connected pairs at {:.3} s",
            self.unreachable_pairs_after, self.connected_pairs_after, self.duration_s
        );
        for example in &self.unreachable_examples {
            let _ = writeln!(out, "    {example}");
        }
        let _ = writeln!(
            out,
            "  control        {} B/s per node, {} B/s per node per neighbour (idle window {}..{}, {} B IPv6+UDP header per packet included); B.A.T.M.A.N. IV: >= {:.0} B/s per node per neighbour",
            rate(self.control_bytes_per_node_s),
            rate(self.control_bytes_per_node_neighbour_s),
            seconds(self.idle_window_start_s),
            seconds(self.idle_window_end_s),
            self.header_bytes_per_packet,
            self.batman_iv_ogm_bytes_per_node_neighbour_s,
        );
        if let Some(changes) = self.idle_route_changes_per_node_s {
            let _ = writeln!(
                out,
                "  idle churn     {changes:.3} next-hop changes per node per second in the idle window"
            );
        }
        let _ = writeln!(
            out,
            "  traffic        {} router steps, {} packets sent, {} lost, {} to dead nodes, {} dropped by the full event queue or byte bound; {} route changes, {} fast reroutes",
            self.events,
            self.packets_sent,
            self.packets_lost,
            self.packets_to_dead_nodes,
            self.packets_dropped_queue_full,
            self.route_changes,
            self.fast_reroutes
        );
        if self.fail_at_s.is_some() {
            let storm = &self.traffic_crash_second;
            let _ = writeln!(
                out,
                "  crash second   {} packets, {} bytes: {} seqno requests, {} OGM retractions, {} OGM updates, {} OGM flood entries (per link copy)",
                storm.packets,
                storm.bytes,
                storm.seqno_requests,
                storm.ogm_retractions,
                storm.ogm_updates,
                storm.ogm_floods
            );
        }
        if self.sign_ogms {
            let _ = writeln!(
                out,
                "  signatures     {} OGM signatures verified, {} OGMs dropped as unauthenticated",
                self.ogm_signatures_verified, self.dropped_unauthenticated_ogms
            );
        }
        if self.router_dropped_events + self.router_dropped_transmits > 0 {
            let _ = writeln!(
                out,
                "  router queues  {} events and {} transmits dropped by the routers' own bounded queues",
                self.router_dropped_events, self.router_dropped_transmits
            );
        }
        let _ = writeln!(
            out,
            "  invariants     {} violations; {} of {} audits found broken pairs; {} loops before convergence",
            self.invariant_violations,
            self.unstable_audits,
            self.audits,
            self.loops_before_convergence
        );
        for violation in &self.violations {
            let _ = writeln!(out, "    {violation}");
        }
        let _ = writeln!(out, "  wall time      {wall_ms} ms");
        out
    }
}
