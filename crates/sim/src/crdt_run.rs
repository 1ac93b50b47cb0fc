//! `x0tta6bl4 sim --crdt`: the CRDT anti-entropy of N real `crdt::Replica`s on the simulated
//! network, and how long one policy change takes to reach every node.
//!
//! The network model is the routing run's: the topology's links ([`Topology`]), the virtual
//! clock and event queue ([`EventQueue`]), each datagram lost independently with probability
//! `loss` and otherwise delivered after the link latency plus up to 10 % jitter, 48 bytes of
//! IPv6 + UDP header counted per datagram. Every node synchronises with its topology
//! neighbours; the replicas exchange the exact bytes they encode.
//!
//! # The run
//! 1. Every node starts at 0 with an empty replica; its first digest round falls at a random
//!    instant of the first sync interval, later rounds add up to 20 % jitter (as the node
//!    does). The traffic of [`IDLE_FROM_US`, [`CHANGE_AT_US`]) gives the idle digest cost.
//! 2. At [`CHANGE_AT_US`] node 0 (the CA node) writes the link policy: one value of
//!    `value_bytes` (a CA-signed policy is about 3.5 KB, so it travels as 3 fragments).
//! 3. With `partition_s > 0`, the mesh is cut in two from the start until `partition_s` after
//!    the change: the first half of the nodes in breadth-first order from node 0 (connected,
//!    holding the writer) and the rest. Datagrams across the cut are lost.
//! 4. The run ends [`SETTLE_US`] after the last node holds the value, or at `duration`.
//!
//! # Invariants
//! After every step the stepped replica's `validate` must hold; a node that has applied the
//! change must still hold it (last-writer-wins with one writer never loses it). Violations are
//! counted and fail the run, as does a run that never converges.

use std::collections::{HashMap, VecDeque};

use crdt::{Replica, ReplicaConfig};
use wire::NodeId;

use crate::config::{IPV6_UDP_HEADER_BYTES, MAX_DURATION_S, MAX_LATENCY_MS, MAX_NODES};
use crate::queue::{Action, EventQueue, PayloadSlab};
use crate::rng::{SimRng, Stream};
use crate::{SimError, Topology, TopologyKind};

/// When node 0 writes the changed policy: after two seconds of idle rounds.
pub const CHANGE_AT_US: u64 = 2_000_000;
/// Start of the window whose traffic is reported as the idle digest cost.
pub const IDLE_FROM_US: u64 = 1_000_000;
/// How long the run goes on after convergence (to show the mesh falls quiet again).
pub const SETTLE_US: u64 = 1_000_000;
/// The wall clock the replicas see at virtual time 0 (hybrid clocks want Unix milliseconds).
const EPOCH_MS: u64 = 1_700_000_000_000;
/// The key the policy is written under, as the node does.
const POLICY_KEY: &[u8] = b"link";
/// Violations kept verbatim in the report.
const MAX_VIOLATIONS_KEPT: usize = 5;

/// Flags of `x0tta6bl4 sim` for the CRDT run (flattened into `SimArgs`).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct CrdtArgs {
    /// Run the CRDT anti-entropy of the nodes instead of routing: one policy change from node
    /// 0, reported as convergence time and bytes per node (uses --nodes, --topology, --loss,
    /// --latency-ms, --seed, --duration-s, --json; ignores --fail).
    #[arg(long)]
    pub crdt: bool,
    /// With --crdt: bytes of the changed policy value.
    #[arg(long = "crdt-value-bytes", default_value_t = 3_500)]
    pub value_bytes: usize,
    /// With --crdt: pause between digest rounds, milliseconds.
    #[arg(long = "crdt-sync-ms", default_value_t = crdt::replica::DEFAULT_SYNC_INTERVAL_MS)]
    pub sync_ms: u64,
    /// With --crdt: cut the mesh in two until this many seconds after the change, then heal
    /// (0: no partition).
    #[arg(long = "partition-s", default_value_t = 0.0)]
    pub partition_s: f64,
}

impl Default for CrdtArgs {
    fn default() -> Self {
        CrdtArgs {
            crdt: false,
            value_bytes: 3_500,
            sync_ms: crdt::replica::DEFAULT_SYNC_INTERVAL_MS,
            partition_s: 0.0,
        }
    }
}

/// One CRDT run's validated parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdtConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Link topology.
    pub topology: TopologyKind,
    /// Run seed.
    pub seed: u64,
    /// Per-datagram loss probability in [0, 1).
    pub loss: f64,
    /// One-way link latency.
    pub latency_us: u64,
    /// Virtual time after which the run stops even if not converged.
    pub duration_us: u64,
    /// Bytes of the changed value.
    pub value_bytes: usize,
    /// Pause between digest rounds.
    pub sync_ms: u64,
    /// How long after the change the partition heals; `None`: no partition.
    pub partition_us: Option<u64>,
}

impl CrdtConfig {
    /// Builds and checks the configuration; errors name the flag.
    #[allow(clippy::too_many_arguments)]
    pub fn from_flags(
        nodes: usize,
        topology: TopologyKind,
        seed: u64,
        loss: f64,
        latency_ms: f64,
        duration_s: f64,
        args: &CrdtArgs,
    ) -> Result<CrdtConfig, SimError> {
        if !(2..=MAX_NODES).contains(&nodes) {
            return Err(SimError::invalid(
                "--nodes",
                format!("must be between 2 and {MAX_NODES}"),
            ));
        }
        if !(loss.is_finite() && (0.0..1.0).contains(&loss)) {
            return Err(SimError::invalid("--loss", "must be in [0, 1)"));
        }
        if !(latency_ms.is_finite() && (0.0..=MAX_LATENCY_MS).contains(&latency_ms)) {
            return Err(SimError::invalid(
                "--latency-ms",
                format!("must be between 0 and {MAX_LATENCY_MS}"),
            ));
        }
        if !(duration_s.is_finite() && duration_s > 0.0 && duration_s <= MAX_DURATION_S) {
            return Err(SimError::invalid(
                "--duration-s",
                format!("must be above 0 and at most {MAX_DURATION_S}"),
            ));
        }
        if !(1..=crdt::limits::MAX_VALUE_BYTES).contains(&args.value_bytes) {
            return Err(SimError::invalid(
                "--crdt-value-bytes",
                format!("must be between 1 and {}", crdt::limits::MAX_VALUE_BYTES),
            ));
        }
        if !(1..=60_000).contains(&args.sync_ms) {
            return Err(SimError::invalid(
                "--crdt-sync-ms",
                "must be between 1 and 60000",
            ));
        }
        if !(args.partition_s.is_finite() && args.partition_s >= 0.0 && args.partition_s <= 3_600.0)
        {
            return Err(SimError::invalid(
                "--partition-s",
                "must be between 0 and 3600",
            ));
        }
        // All range-checked above, so the rounded products fit in u64.
        let partition_us = (args.partition_s * 1e6).round() as u64;
        Ok(CrdtConfig {
            nodes,
            topology,
            seed,
            loss,
            latency_us: (latency_ms * 1000.0).round() as u64,
            duration_us: (duration_s * 1e6).round() as u64,
            value_bytes: args.value_bytes,
            sync_ms: args.sync_ms,
            partition_us: (partition_us > 0).then_some(partition_us),
        })
    }
}

/// What a CRDT run measured. Times are virtual milliseconds from the change; bytes include
/// 48 bytes of IPv6 + UDP header per datagram.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CrdtReport {
    /// Always "crdt".
    pub mode: &'static str,
    /// Number of nodes.
    pub nodes: usize,
    /// Topology name.
    pub topology: &'static str,
    /// Undirected links.
    pub links: usize,
    /// Run seed.
    pub seed: u64,
    /// Per-datagram loss probability.
    pub loss: f64,
    /// One-way link latency, ms.
    pub latency_ms: f64,
    /// Pause between digest rounds, ms.
    pub sync_interval_ms: u64,
    /// Bytes of the changed value.
    pub value_bytes: usize,
    /// When the partition healed, ms after the change (absent: no partition).
    pub partition_heal_ms: Option<f64>,
    /// Nodes holding the change at the end.
    pub nodes_reached: usize,
    /// When the last node applied the change (absent: not every node did).
    pub converged_ms: Option<f64>,
    /// Median node's arrival time.
    pub reached_p50_ms: Option<f64>,
    /// 90th percentile node's arrival time.
    pub reached_p90_ms: Option<f64>,
    /// Bytes each node sent from the change until convergence (or the end), by node index.
    pub bytes_per_node: Vec<u64>,
    /// Mean of `bytes_per_node`.
    pub bytes_per_node_mean: f64,
    /// Median of `bytes_per_node`.
    pub bytes_per_node_p50: u64,
    /// Largest of `bytes_per_node`.
    pub bytes_per_node_max: u64,
    /// Idle digest traffic before the change, bytes per node per second.
    pub idle_bytes_per_node_per_s: f64,
    /// Datagrams put on links over the whole run.
    pub datagrams_sent: u64,
    /// Datagrams lost to `loss`.
    pub datagrams_lost: u64,
    /// Datagrams lost to the partition.
    pub datagrams_cut: u64,
    /// Bytes put on links over the whole run.
    pub bytes_sent: u64,
    /// Datagrams the replicas dropped (out of order, fragments given up, ...), summed.
    pub datagrams_dropped_by_replicas: u64,
    /// Virtual seconds simulated.
    pub simulated_s: f64,
    /// Invariant violations (must be 0).
    pub violations: u64,
    /// The first few violations.
    pub violation_examples: Vec<String>,
}

impl CrdtReport {
    /// Why the run counts as failed; empty if it passed.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.converged_ms.is_none() {
            problems.push(format!(
                "the change reached {} of {} nodes",
                self.nodes_reached, self.nodes
            ));
        }
        if self.violations > 0 {
            problems.push(format!("{} invariant violations", self.violations));
        }
        problems
    }

    /// The human summary.
    pub fn render_text(&self, wall_ms: u64) -> String {
        let ms = |value: Option<f64>| {
            value.map_or_else(|| "never".to_string(), |v| format!("{v:.1} ms"))
        };
        let partition = self.partition_heal_ms.map_or_else(
            || "none".to_string(),
            |heal| format!("healed {heal:.0} ms after the change"),
        );
        format!(
            "CRDT anti-entropy: {} nodes, {} topology ({} links), seed {}, loss {}, latency {} ms, sync {} ms\n\
             partition: {partition}\n\
             policy change of {} bytes reached {}/{} nodes: last {}, p50 {}, p90 {}\n\
             bytes per node until then: mean {:.0}, p50 {}, max {} (48-byte headers included)\n\
             idle digests: {:.0} bytes per node per second\n\
             datagrams: {} sent, {} lost, {} cut by the partition, {} dropped by replicas; {} bytes in all\n\
             invariant violations: {}\n\
             simulated {:.1} s in {} ms\n",
            self.nodes,
            self.topology,
            self.links,
            self.seed,
            self.loss,
            self.latency_ms,
            self.sync_interval_ms,
            self.value_bytes,
            self.nodes_reached,
            self.nodes,
            ms(self.converged_ms),
            ms(self.reached_p50_ms),
            ms(self.reached_p90_ms),
            self.bytes_per_node_mean,
            self.bytes_per_node_p50,
            self.bytes_per_node_max,
            self.idle_bytes_per_node_per_s,
            self.datagrams_sent,
            self.datagrams_lost,
            self.datagrams_cut,
            self.datagrams_dropped_by_replicas,
            self.bytes_sent,
            self.violations,
            self.simulated_s,
            wall_ms,
        )
    }
}

/// Runs one CRDT simulation and returns what it measured; whether it passed is
/// [`CrdtReport::problems`].
pub fn run(config: &CrdtConfig) -> Result<CrdtReport, SimError> {
    let topology = Topology::build(config.topology, config.nodes, config.seed)?;
    let mut run = CrdtRun::new(config, topology)?;
    run.run_to_end()?;
    Ok(run.report())
}

struct CrdtRun<'a> {
    config: &'a CrdtConfig,
    topology: Topology,
    replicas: Vec<Replica>,
    ids: Vec<NodeId>,
    index_of: HashMap<NodeId, u32>,
    queue: EventQueue,
    payloads: PayloadSlab,
    network_rng: SimRng,
    node_rng: SimRng,
    /// The instant each node's pending wake-up is for (obsolete wake-ups are skipped).
    wake_at_us: Vec<u64>,
    /// Side of the partition (true: the writer's half).
    writer_side: Vec<bool>,
    value: Vec<u8>,
    reached_us: Vec<Option<u64>>,
    reached: usize,
    converged_us: Option<u64>,
    bytes_sent_per_node: Vec<u64>,
    bytes_at_change: Vec<u64>,
    bytes_at_convergence: Option<Vec<u64>>,
    idle_bytes: u64,
    datagrams_sent: u64,
    datagrams_lost: u64,
    datagrams_cut: u64,
    bytes_sent: u64,
    dropped_by_replicas: u64,
    now_us: u64,
    changed: bool,
    violations: u64,
    violation_examples: Vec<String>,
    outbox: VecDeque<crdt::Transmit>,
}

impl<'a> CrdtRun<'a> {
    fn new(config: &'a CrdtConfig, topology: Topology) -> Result<CrdtRun<'a>, SimError> {
        let n = config.nodes;
        let ids: Vec<NodeId> = (0..n as u64).map(NodeId::from_index).collect();
        let index_of = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        let mut node_rng = SimRng::for_stream(config.seed, Stream::Nodes);
        let mut replicas = Vec::with_capacity(n);
        let mut queue = EventQueue::default();
        let mut wake_at_us = Vec::with_capacity(n);
        let sync_us = config.sync_ms * 1000;
        for (i, id) in ids.iter().enumerate() {
            let mut replica_config = ReplicaConfig::standard(*id);
            replica_config.sync_interval_ms = config.sync_ms;
            let first_ms = EPOCH_MS + node_rng.below(sync_us) / 1000;
            let mut replica = Replica::new(replica_config, first_ms)
                .map_err(|error| SimError::invalid("--crdt-sync-ms", error.to_string()))?;
            for &neighbour in topology.neighbours(i as u32) {
                replica
                    .add_peer(ids[neighbour as usize], EPOCH_MS)
                    .map_err(|error| SimError::Topology(error.to_string()))?;
            }
            let at_us = (first_ms - EPOCH_MS) * 1000;
            queue
                .push(at_us, Action::Wake { node: i as u32 })
                .map_err(|cap| SimError::QueueFull { cap, at_s: 0.0 })?;
            wake_at_us.push(at_us);
            replicas.push(replica);
        }
        let writer_side = breadth_first_half(&topology);
        let mut value_rng = SimRng::for_stream(config.seed, Stream::Sampling);
        let value = (0..config.value_bytes)
            .map(|_| value_rng.next_u64() as u8)
            .collect();
        Ok(CrdtRun {
            config,
            replicas,
            index_of,
            ids,
            queue,
            payloads: PayloadSlab::default(),
            network_rng: SimRng::for_stream(config.seed, Stream::Network),
            node_rng,
            wake_at_us,
            writer_side,
            value,
            reached_us: vec![None; n],
            reached: 0,
            converged_us: None,
            bytes_sent_per_node: vec![0; n],
            bytes_at_change: vec![0; n],
            bytes_at_convergence: None,
            idle_bytes: 0,
            datagrams_sent: 0,
            datagrams_lost: 0,
            datagrams_cut: 0,
            bytes_sent: 0,
            dropped_by_replicas: 0,
            now_us: 0,
            changed: false,
            violations: 0,
            violation_examples: Vec::new(),
            outbox: VecDeque::new(),
            topology,
        })
    }

    fn now_ms(&self) -> u64 {
        EPOCH_MS + self.now_us / 1000
    }

    fn end_us(&self) -> u64 {
        match self.converged_us {
            Some(at) => (at + SETTLE_US).min(self.config.duration_us),
            None => self.config.duration_us,
        }
    }

    fn run_to_end(&mut self) -> Result<(), SimError> {
        while let Some(at_us) = self.queue.peek_time() {
            if !self.changed && at_us >= CHANGE_AT_US && CHANGE_AT_US < self.end_us() {
                self.now_us = CHANGE_AT_US;
                self.write_change()?;
            }
            if at_us > self.end_us() {
                break;
            }
            let Some(event) = self.queue.pop() else {
                break;
            };
            self.now_us = event.at_us;
            match event.action() {
                Action::Wake { node } => {
                    if self.wake_at_us[node as usize] != event.at_us {
                        continue;
                    }
                    let now_ms = self.now_ms();
                    self.replicas[node as usize].handle_timeout(now_ms);
                    self.after_step(node)?;
                    self.rearm(node)?;
                }
                Action::Deliver { to, payload } => {
                    let (bytes, sender) = self.payloads.get(payload);
                    let bytes = bytes.to_vec();
                    self.payloads.release(payload);
                    let now_ms = self.now_ms();
                    let from = self.ids[sender as usize];
                    if self.replicas[to as usize]
                        .handle_message(from, &bytes, now_ms)
                        .is_err()
                    {
                        self.dropped_by_replicas += 1;
                    }
                    self.after_step(to)?;
                }
            }
        }
        self.now_us = self.end_us();
        Ok(())
    }

    fn write_change(&mut self) -> Result<(), SimError> {
        self.changed = true;
        self.bytes_at_change = self.bytes_sent_per_node.clone();
        let now_ms = self.now_ms();
        let value = self.value.clone();
        if let Err(error) = self.replicas[0].map_insert("policies", POLICY_KEY, &value, now_ms) {
            self.violation(format!("the writer refused the change: {error}"));
        }
        self.after_step(0)
    }

    /// Sends what the node produced, checks its invariants and whether it now holds the change.
    fn after_step(&mut self, node: u32) -> Result<(), SimError> {
        let replica = &mut self.replicas[node as usize];
        self.outbox
            .extend(std::iter::from_fn(|| replica.poll_transmit()));
        while let Some(transmit) = self.outbox.pop_front() {
            self.send(node, transmit)?;
        }
        if let Err(problem) = self.replicas[node as usize].validate() {
            self.violation(format!("node {node}: {problem}"));
        }
        let holds = self.replicas[node as usize]
            .map("policies")
            .and_then(|map| map.get(POLICY_KEY))
            .is_some_and(|held| held == self.value.as_slice());
        match (self.reached_us[node as usize], holds) {
            (None, true) => {
                self.reached_us[node as usize] = Some(self.now_us);
                self.reached += 1;
                if self.reached == self.config.nodes {
                    self.converged_us = Some(self.now_us);
                    self.bytes_at_convergence = Some(self.bytes_sent_per_node.clone());
                }
            }
            (Some(_), false) => self.violation(format!("node {node} lost the change")),
            _ => {}
        }
        Ok(())
    }

    fn rearm(&mut self, node: u32) -> Result<(), SimError> {
        let Some(deadline_ms) = self.replicas[node as usize].poll_timeout() else {
            return Ok(());
        };
        let jitter_us = self.node_rng.below(self.config.sync_ms * 1000 / 5 + 1);
        let at_us = (deadline_ms.saturating_sub(EPOCH_MS) * 1000).max(self.now_us) + jitter_us;
        self.wake_at_us[node as usize] = at_us;
        self.queue
            .push(at_us, Action::Wake { node })
            .map_err(|cap| SimError::QueueFull {
                cap,
                at_s: self.now_us as f64 / 1e6,
            })
    }

    /// One datagram on one link: counted, maybe lost or cut, else delivered after the latency
    /// plus up to 10 % jitter.
    fn send(&mut self, from: u32, transmit: crdt::Transmit) -> Result<(), SimError> {
        let Some(&to) = self.index_of.get(&transmit.to) else {
            self.violation(format!("node {from} sent to an unknown node"));
            return Ok(());
        };
        if self.topology.link_index(from, to).is_none() {
            self.violation(format!("node {from} sent to {to}, which it has no link to"));
            return Ok(());
        }
        let bytes = transmit.payload.len() as u64 + IPV6_UDP_HEADER_BYTES;
        self.datagrams_sent += 1;
        self.bytes_sent += bytes;
        self.bytes_sent_per_node[from as usize] += bytes;
        if (IDLE_FROM_US..CHANGE_AT_US).contains(&self.now_us) {
            self.idle_bytes += bytes;
        }
        let cut = self.config.partition_us.is_some_and(|heal| {
            self.now_us < CHANGE_AT_US + heal
                && self.writer_side[from as usize] != self.writer_side[to as usize]
        });
        if cut {
            self.datagrams_cut += 1;
            return Ok(());
        }
        if self.config.loss > 0.0 && self.network_rng.unit() < self.config.loss {
            self.datagrams_lost += 1;
            return Ok(());
        }
        let latency_us = self.config.latency_us;
        let at_us = self.now_us + latency_us + self.network_rng.below(latency_us / 10 + 1);
        let payload = self.payloads.insert(transmit.payload, from, 1);
        self.queue
            .push(at_us, Action::Deliver { to, payload })
            .map_err(|cap| SimError::QueueFull {
                cap,
                at_s: self.now_us as f64 / 1e6,
            })
    }

    fn violation(&mut self, text: String) {
        self.violations += 1;
        if self.violation_examples.len() < MAX_VIOLATIONS_KEPT {
            self.violation_examples
                .push(format!("at {:.3} s: {text}", self.now_us as f64 / 1e6));
        }
    }

    fn report(&self) -> CrdtReport {
        let after_change = |us: u64| us.saturating_sub(CHANGE_AT_US) as f64 / 1000.0;
        let mut arrivals: Vec<u64> = self.reached_us.iter().flatten().copied().collect();
        arrivals.sort_unstable();
        let n = self.config.nodes;
        // Over all nodes: a node never reached has no arrival time, so the rank may be missing.
        let percentile = |q: f64| -> Option<f64> {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            arrivals.get(rank - 1).map(|us| after_change(*us))
        };
        let end = self
            .bytes_at_convergence
            .as_ref()
            .unwrap_or(&self.bytes_sent_per_node);
        let bytes_per_node: Vec<u64> = end
            .iter()
            .zip(&self.bytes_at_change)
            .map(|(end, start)| end - start)
            .collect();
        let mut sorted = bytes_per_node.clone();
        sorted.sort_unstable();
        let idle_s = (CHANGE_AT_US - IDLE_FROM_US) as f64 / 1e6;
        CrdtReport {
            mode: "crdt",
            nodes: n,
            topology: self.config.topology.name(),
            links: self.topology.edge_count(),
            seed: self.config.seed,
            loss: self.config.loss,
            latency_ms: self.config.latency_us as f64 / 1000.0,
            sync_interval_ms: self.config.sync_ms,
            value_bytes: self.config.value_bytes,
            partition_heal_ms: self.config.partition_us.map(|us| us as f64 / 1000.0),
            nodes_reached: self.reached,
            converged_ms: self.converged_us.map(after_change),
            reached_p50_ms: percentile(0.5),
            reached_p90_ms: percentile(0.9),
            bytes_per_node_mean: sorted.iter().sum::<u64>() as f64 / n as f64,
            bytes_per_node_p50: sorted[(n - 1) / 2],
            bytes_per_node_max: sorted.last().copied().unwrap_or(0),
            bytes_per_node,
            idle_bytes_per_node_per_s: self.idle_bytes as f64 / n as f64 / idle_s,
            datagrams_sent: self.datagrams_sent,
            datagrams_lost: self.datagrams_lost,
            datagrams_cut: self.datagrams_cut,
            bytes_sent: self.bytes_sent,
            datagrams_dropped_by_replicas: self.dropped_by_replicas,
            simulated_s: self.now_us as f64 / 1e6,
            violations: self.violations,
            violation_examples: self.violation_examples.clone(),
        }
    }
}

/// The partition's sides: the first half of the nodes in breadth-first order from node 0 (a
/// connected set holding the writer) against the rest.
fn breadth_first_half(topology: &Topology) -> Vec<bool> {
    let n = topology.node_count();
    let mut side = vec![false; n];
    let mut seen = vec![false; n];
    let mut queue = VecDeque::from([0u32]);
    seen[0] = true;
    let mut taken = 0;
    while let Some(node) = queue.pop_front() {
        if taken >= n / 2 {
            break;
        }
        side[node as usize] = true;
        taken += 1;
        for &next in topology.neighbours(node) {
            if !seen[next as usize] {
                seen[next as usize] = true;
                queue.push_back(next);
            }
        }
    }
    side
}
