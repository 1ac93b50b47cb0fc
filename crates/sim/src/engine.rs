//! `Simulation`: the discrete-event engine that drives N real routers over the simulated network.
//!
//! One step is one router call: a timer wake-up (`handle_timeout`) or one delivered datagram
//! (`handle_datagram`). After each step the engine drains the router's transmits (scheduling a
//! delivery per link copy that survives loss) and events, checks the cheap per-step invariants
//! and re-arms the node's single timer from `poll_timeout`. Between steps, at every check
//! instant, the walker answers "does every pair have a working path?" (see `walk.rs`).

use std::cell::Cell;

use routing::{Destination, DropReason, Event, MemoryUse, Router, Timestamp, Transmit};
use wire::NodeId;

use crate::config::IPV6_UDP_HEADER_BYTES;
use crate::queue::{
    Action, EventQueue, MAX_PAYLOAD_BYTES_IN_FLIGHT, MAX_QUEUED_DELIVERIES, PayloadSlab,
};
use crate::report::TrafficByKind;
use crate::rng::{SimRng, Stream};
use crate::routed::RoutedPairs;
use crate::walk::{Finding, MeshView, NextHop, Walker};
use crate::{SimConfig, SimError, SimReport, Topology};

/// Consecutive wake-ups of one node at one instant after which the run is declared livelocked
/// (a router whose `poll_timeout` never moves past `now`). Legitimate cores need a handful.
pub const MAX_SAME_INSTANT_WAKEUPS: u32 = 10_000;

/// Most transmits or events one router step may produce. A full OGM table of 20,000
/// destinations is about 500 packets per neighbour; a router producing a million outputs from
/// one input is broken, and the cap turns an endless `poll_*` loop into an error.
pub const MAX_OUTPUTS_PER_STEP: usize = 1 << 20;

/// Destinations per node whose newest sequence number is checked after every step of that
/// node (its own sequence number is always checked). Two keep the check O(1) per step while
/// covering 2N (node, destination) pairs over the run.
const SAMPLED_DESTINATIONS_PER_NODE: usize = 2;

/// Meshes up to this size get `Router::validate` and the sampled sequence-number checks after
/// every step of every node. The core's `validate` walks the node's whole routing table (O(N)),
/// so above this size it would dominate the run (70 % of the time at 300 nodes): larger meshes
/// validate every live router at every full audit (see [`SimConfig::audit_interval_us`]) and
/// check the sampled sequence numbers of every live node at every check instant.
pub const FULL_STEP_CHECKS_MAX_NODES: usize = 100;

/// Broken pairs described in the report after each full audit (the last audit's are kept).
const MAX_BROKEN_PAIR_EXAMPLES: usize = 5;

/// Violation messages kept for the report; further ones are only counted.
const MAX_RECORDED_VIOLATIONS: usize = 8;

/// After convergence the mesh settles for up to this long before the idle window starts.
const SETTLE_MAX_US: u64 = 2_000_000;

/// Longest idle window over which steady-state control traffic is measured.
const IDLE_WINDOW_MAX_US: u64 = 10_000_000;

/// Longest fault-free heal phase at the end of the run.
const HEAL_MAX_US: u64 = 10_000_000;

/// Next-hop snapshot entry: no route.
const SNAPSHOT_NO_ROUTE: u16 = u16::MAX;

/// Next-hop snapshot entry: a next hop that is no simulated node.
const SNAPSHOT_FOREIGN: u16 = u16::MAX - 1;

/// Meshes up to this size take a next-hop snapshot for full audits; node indices must fit
/// below the two sentinels, and [`crate::config::MAX_NODES`] is far below this.
const SNAPSHOT_MAX_NODES: usize = SNAPSHOT_FOREIGN as usize;

/// Dispatched events between two calls of the progress callback between check instants.
pub const TICK_EVENTS: u64 = 1 << 18;

/// Where the run is and what it holds, for progress lines (the run's figures are in
/// [`SimReport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Virtual time in microseconds.
    pub now_us: u64,
    /// `converge`, `idle` (settling and the idle window), `recover`, `recovered` (waiting for
    /// the heal phase) or `heal`.
    pub phase: &'static str,
    /// Router steps so far.
    pub events: u64,
    /// Pending events (wake-ups and packet copies).
    pub queued_events: usize,
    /// Packet copies on the links.
    pub packets_in_flight: u64,
    /// Bytes sent so far, headers included.
    pub bytes_sent: u64,
    /// Bytes of all routers' collections, summed by part.
    pub routers: MemoryUse,
    /// Bytes of the event queue and the packets in flight.
    pub engine_bytes: usize,
}

/// `timer_armed_at_us` value of a node with no pending wake-up.
const NOT_ARMED: u64 = u64::MAX;

/// `component` value of a crashed node.
const CRASHED: u32 = u32::MAX;

/// Where the run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Started; waiting for every pair to have a working path.
    Converging,
    /// Converged; the idle window runs from `window_start_us` to `fail_at_us`, the crash.
    Idle {
        window_start_us: u64,
        fail_at_us: u64,
    },
    /// Crashed; waiting for every connected surviving pair to have a working path.
    Recovering,
    /// Nothing left to happen but the fault-free heal phase, audited until the end.
    Healed,
}

/// Invariant violations: all counted, the first few kept with their virtual time.
#[derive(Debug, Default)]
struct Violations {
    count: u64,
    first: Vec<String>,
}

impl Violations {
    /// Counts one violation; formats its message only if it will be kept.
    fn record(&mut self, now_us: u64, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.len() < MAX_RECORDED_VIOLATIONS {
            self.first
                .push(format!("{:.6} s: {}", seconds(now_us), what()));
        }
    }
}

/// Run-wide counters.
#[derive(Debug, Default)]
struct Counters {
    events: u64,
    packets_sent: u64,
    bytes_sent: u64,
    packets_delivered: u64,
    packets_lost: u64,
    packets_to_dead_nodes: u64,
    packets_dropped_queue_full: u64,
    dropped_neighbour_limit: u64,
    loops_before_convergence: u64,
    audits: u64,
    unstable_audits: u64,
    peak_queued_events: usize,
    /// Packet copies scheduled for delivery and not delivered yet.
    packets_in_flight: u64,
    /// Until the crash, the first second after it, and the rest.
    traffic: [TrafficByKind; 3],
}

/// The simulation of one run. Build it with [`Simulation::new`], drive it with
/// [`Simulation::run_to_end`], read the result with [`Simulation::report`].
pub struct Simulation {
    config: SimConfig,
    topology: Topology,
    /// `ids[i]` is node i's identifier, `NodeId::from_index(i)`.
    ids: Vec<NodeId>,
    routers: Vec<Router>,
    /// Whether node i's start instant has passed; earlier deliveries to it are lost.
    started: Vec<bool>,
    /// Connected component of node i among the nodes that have not crashed ([`CRASHED`] if it
    /// has). Nodes not yet started count as members: they are expected to become reachable.
    component: Vec<u32>,
    /// Per directed link `a -> b`: does a's router list b as alive? Kept from the
    /// `NeighbourUp`/`NeighbourDown` events and compared with `Router::neighbours` at audits.
    listed_alive: Vec<bool>,
    /// The instant node i's router wants `handle_timeout` ([`NOT_ARMED`]: none).
    timer_armed_at_us: Vec<u64>,
    /// The earliest wake-up queued for node i that has not fired ([`NOT_ARMED`]: none known).
    /// Invariant: whenever node i is armed, `next_wake_us[i] <= timer_armed_at_us[i]`, so a
    /// wake-up comes no later than the deadline; if it comes early, it re-queues one for the
    /// deadline. Later wake-ups left in the queue by a deadline that moved earlier are skipped.
    next_wake_us: Vec<u64>,
    /// Livelock detection: the instant of node i's last wake-up and how many in a row at it.
    last_wake_us: Vec<u64>,
    wake_streak: Vec<u32>,
    queue: EventQueue,
    /// Pending events past which packet copies are dropped: [`MAX_QUEUED_DELIVERIES`] (tests
    /// lower it).
    delivery_cap: usize,
    /// Payload bytes in flight past which transmissions are dropped:
    /// [`MAX_PAYLOAD_BYTES_IN_FLIGHT`] (tests lower it).
    payload_bytes_cap: usize,
    payloads: PayloadSlab,
    network_rng: SimRng,
    /// Scratch: the receivers of the transmit being routed.
    fanout: Vec<u32>,
    /// Scratch: destinations of the `RouteChanged` events of the current step.
    route_changes: Vec<NodeId>,
    /// Per destination: its pairs all worked at the last check and no router has reported a
    /// next-hop change towards it since. Lets fine-grained checks skip it (a full
    /// confirmation walk still runs before any "converged" or "recovered" verdict).
    clean: Vec<bool>,
    /// The destination that failed the last check, tried first next time.
    failing_hint: u32,
    /// Which sources have a next hop towards which destinations (from the route-change
    /// events), so checks skip the walks while some pair that matters has none.
    routed: RoutedPairs,
    walker: Walker,
    /// Per node: the router's `dropped_events` counter as last seen.
    dropped_events_seen: Vec<u64>,
    /// Own newest sequence number last seen per node.
    own_seq: Vec<Option<u32>>,
    /// Per node: sampled destinations and the newest sequence number last seen for each.
    sampled_seq: Vec<[(u32, Option<u32>); SAMPLED_DESTINATIONS_PER_NODE]>,
    violations: Violations,
    counters: Counters,
    /// Next-hop lookups made by the walks (a `Cell` so the shared walk view can count).
    checker_lookups: Cell<u64>,
    /// Scratch for full audits: `next_hop_snapshot[node * N + destination]`, a node index or
    /// one of the `SNAPSHOT_*` sentinels; 2 bytes per pair (200 MB at 10,000 nodes).
    next_hop_snapshot: Vec<u16>,
    phase: Phase,
    now_us: u64,
    converged_at_us: Option<u64>,
    /// When the last node started.
    last_start_us: u64,
    crash_at_us: Option<u64>,
    recovered_at_us: Option<u64>,
    failed_nodes: usize,
    survivor_components: u32,
    connected_pairs: u64,
    /// Bytes and packets sent before the idle window opened.
    window_opening_traffic: (u64, u64),
    /// Next-hop changes of all routers before the idle window opened, and within it.
    window_opening_route_changes: u64,
    window_route_changes: Option<u64>,
    /// The idle window and the bytes and packets sent within it.
    window: Option<(u64, u64, u64, u64)>,
    /// Start of the fault-free heal phase, from which no packet is lost (set at the crash).
    heal_from_us: Option<u64>,
    unreachable_pairs_after: u64,
    /// Where the walks of some broken pairs failed, from the last full audit.
    broken_pair_examples: Vec<String>,
}

/// Fails the step once one router produced more than `MAX_OUTPUTS_PER_STEP` outputs: an
/// endless `poll_*` loop would otherwise hang the run.
fn check_outputs(node: u32, outputs: usize, now_us: u64) -> Result<(), SimError> {
    if outputs > MAX_OUTPUTS_PER_STEP {
        return Err(SimError::Livelock {
            node,
            count: outputs as u32,
            at_s: seconds(now_us),
        });
    }
    Ok(())
}

/// Virtual microseconds as seconds.
fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The simulator node behind `id`, if it is one: ids are `NodeId::from_index(i)`, so the
/// index is the last eight bytes, the first eight are zero, and it is below `node_count`.
fn node_index(id: &NodeId, node_count: usize) -> Option<u32> {
    let (high, low) = id.0.split_at(NodeId::LEN - 8);
    if high.iter().any(|&byte| byte != 0) {
        return None;
    }
    let index = u64::from_be_bytes(low.try_into().ok()?);
    if index < node_count as u64 {
        u32::try_from(index).ok()
    } else {
        None
    }
}

/// Whether the pair (source, destination) is one that must work: distinct nodes, the source
/// live, the destination in its component (nodes not started yet count as live).
fn pair_matters(component: &[u32], source: u32, destination: u32) -> bool {
    let c = component[source as usize];
    source != destination && c != CRASHED && component[destination as usize] == c
}

/// Sequence-number order in serial arithmetic (RFC 1982): true when `a` is older than `b`.
fn serial_older(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The walker's view of the live mesh, borrowed from the simulation's fields.
struct View<'a> {
    routers: &'a [Router],
    ids: &'a [NodeId],
    component: &'a [u32],
    topology: &'a Topology,
    listed_alive: &'a [bool],
    /// Next-hop lookups the walks made, for the report's cost figures.
    lookups: &'a Cell<u64>,
    /// During full audits: every live node's next hop towards every destination, read from
    /// the routers node by node just before the walks (see [`Simulation::snapshot_next_hops`]).
    snapshot: Option<&'a [u16]>,
}

impl MeshView for View<'_> {
    fn node_count(&self) -> usize {
        self.ids.len()
    }

    fn component(&self, node: u32) -> Option<u32> {
        let component = self.component[node as usize];
        (component != CRASHED).then_some(component)
    }

    fn next_hop(&self, node: u32, destination: u32) -> NextHop {
        if let Some(snapshot) = self.snapshot {
            match snapshot[node as usize * self.ids.len() + destination as usize] {
                SNAPSHOT_NO_ROUTE => return NextHop::None,
                // Rare (a router bug): ask the router again for the identifier to report.
                SNAPSHOT_FOREIGN => {}
                hop => return NextHop::Node(u32::from(hop)),
            }
        }
        self.lookups.set(self.lookups.get() + 1);
        match self.routers[node as usize].next_hop(&self.ids[destination as usize]) {
            None => NextHop::None,
            Some(id) => node_index(&id, self.ids.len()).map_or(NextHop::Foreign(id), NextHop::Node),
        }
    }

    fn link(&self, from: u32, to: u32) -> Option<usize> {
        self.topology.link_index(from, to)
    }

    fn listed_alive(&self, link: usize) -> bool {
        self.listed_alive[link]
    }
}

/// Turns walker findings into violations according to the phase of the run.
struct Judge<'a> {
    /// The routers, to describe the routes of a loop's nodes in its violation message.
    routers: &'a [Router],
    ids: &'a [NodeId],
    now_us: u64,
    converged: bool,
    crash_at_us: Option<u64>,
    grace_us: u64,
    violations: &'a mut Violations,
    loops_before_convergence: &'a mut u64,
}

impl Judge<'_> {
    fn judge(&mut self, finding: Finding<'_>) {
        let now_us = self.now_us;
        match finding {
            Finding::Loop { destination, cycle } if self.converged => {
                let (routers, ids) = (self.routers, self.ids);
                self.violations.record(now_us, || {
                    let shown: Vec<String> = cycle
                        .iter()
                        .take(16)
                        .map(|&node| describe_route(&routers[node as usize], node, &ids[destination as usize], ids.len()))
                        .collect();
                    format!("forwarding loop towards node {destination}: {} -> {}", shown.join(" -> "), cycle[0])
                });
            }
            Finding::Loop { .. } => *self.loops_before_convergence += 1,
            Finding::DeadEnd { .. } => {}
            Finding::ForeignNextHop { node, destination, next_hop } => self.violations.record(now_us, || {
                format!("node {node} forwards to node {destination} via {next_hop}, which is no simulated node")
            }),
            Finding::NotLinked { node, destination, next_hop } => self.violations.record(now_us, || {
                format!("node {node} forwards to node {destination} via node {next_hop}, which it has no link to")
            }),
            Finding::NotListedAlive { node, destination, next_hop } => self.violations.record(now_us, || {
                format!(
                    "node {node} forwards to node {destination} via node {next_hop}, which its own neighbour table does not list as alive"
                )
            }),
            Finding::DeadNextHop { node, destination, next_hop } => {
                let since_crash_us = self.crash_at_us.map_or(0, |at| now_us.saturating_sub(at));
                if since_crash_us > self.grace_us {
                    self.violations.record(now_us, || {
                        format!(
                            "node {node} still forwards to node {destination} via crashed node {next_hop} {} ms after the crash",
                            since_crash_us / 1000
                        )
                    });
                }
            }
        }
    }
}

/// Appends a one-line description of where a broken pair's walk failed; loops and next-hop
/// violations are described by the violations themselves.
fn describe_breakage(finding: &Finding<'_>, examples: &mut Vec<String>) {
    match *finding {
        Finding::DeadEnd {
            source,
            node,
            destination,
        } if source == node => {
            examples.push(format!("{source} -> {destination}: no route at the source"));
        }
        Finding::DeadEnd {
            source,
            node,
            destination,
        } => {
            examples.push(format!(
                "{source} -> {destination}: no route at node {node}"
            ));
        }
        Finding::DeadNextHop {
            node,
            destination,
            next_hop,
        } => {
            examples.push(format!(
                "-> {destination}: node {node} forwards to crashed node {next_hop}"
            ));
        }
        Finding::Loop { destination, cycle } => {
            examples.push(format!(
                "-> {destination}: loop through {} nodes from node {}",
                cycle.len(),
                cycle[0]
            ));
        }
        _ => {}
    }
}

/// What `router`'s own neighbour table says about `neighbour`, for violation messages.
fn describe_neighbour(router: &Router, neighbour: &NodeId) -> String {
    match router
        .neighbours()
        .into_iter()
        .find(|info| info.id == *neighbour)
    {
        Some(info) => format!(
            "its table: alive {}, tq {}, rx {}, tx {}, last heard {} us",
            info.alive,
            info.tq,
            info.rx_quality,
            info.tx_quality,
            info.last_heard.as_micros()
        ),
        None => "not in its neighbour table".to_string(),
    }
}

/// `node` and its route towards `destination` as "node[seq S cost C hops H alt A B]", so a
/// loop's report shows on which advertisements each hop based its choice.
fn describe_route(router: &Router, node: u32, destination: &NodeId, node_count: usize) -> String {
    let routes = router.routes();
    let Some(route) = routes
        .iter()
        .find(|route| route.destination == *destination)
    else {
        return format!("{node}[no route]");
    };
    let alternates: Vec<String> = route
        .alternates
        .iter()
        .map(|id| node_index(id, node_count).map_or_else(|| id.to_string(), |i| i.to_string()))
        .collect();
    format!(
        "{node}[seq {} cost {} hops {} alt {}]",
        route.seq,
        route.cost,
        route.hops,
        if alternates.is_empty() {
            "-".to_string()
        } else {
            alternates.join(" ")
        }
    )
}

impl Simulation {
    /// Builds the routers and schedules every node's start. `topology` must have
    /// `config.nodes` nodes and be connected.
    pub fn new(config: &SimConfig, topology: Topology) -> Result<Simulation, SimError> {
        config.validate()?;
        if topology.node_count() != config.nodes {
            return Err(SimError::Topology(format!(
                "topology has {} nodes, the run {}",
                topology.node_count(),
                config.nodes
            )));
        }
        if !topology.is_connected() {
            return Err(SimError::Topology(
                "the topology is not connected".to_string(),
            ));
        }
        let n = config.nodes;
        let ids: Vec<NodeId> = (0..n as u64).map(NodeId::from_index).collect();
        let mut nodes_rng = SimRng::for_stream(config.seed, Stream::Nodes);
        let mut queue = EventQueue::default();
        let mut routers = Vec::with_capacity(n);
        let mut timer_armed_at_us = Vec::with_capacity(n);
        let mut last_start_us = 0;
        for (index, id) in ids.iter().enumerate() {
            let start_us = nodes_rng.below(config.start_spread_us());
            last_start_us = last_start_us.max(start_us);
            let rng_seed = nodes_rng.next_u64();
            // Random initial sequence numbers exercise serial-arithmetic wrap-around.
            let initial_seq = nodes_rng.next_u64() as u32;
            routers.push(Router::new(
                *id,
                config.router.clone(),
                initial_seq,
                rng_seed,
                Timestamp(start_us),
            ));
            let node = index as u32;
            queue
                .push(start_us, Action::Wake { node })
                .map_err(|cap| SimError::QueueFull { cap, at_s: 0.0 })?;
            timer_armed_at_us.push(start_us);
        }
        if config.sign_ogms {
            for (router, auth) in routers
                .iter_mut()
                .zip(crate::signing::node_auths(config.seed, &ids))
            {
                router.enable_signed_ogms(auth);
            }
        }
        let sampled_seq = sample_destinations(n, config.seed);
        Ok(Simulation {
            config: config.clone(),
            listed_alive: vec![false; topology.directed_link_count()],
            topology,
            routers,
            started: vec![false; n],
            component: vec![0; n],
            next_wake_us: timer_armed_at_us.clone(),
            timer_armed_at_us,
            last_wake_us: vec![NOT_ARMED; n],
            wake_streak: vec![0; n],
            queue,
            delivery_cap: MAX_QUEUED_DELIVERIES,
            payload_bytes_cap: MAX_PAYLOAD_BYTES_IN_FLIGHT,
            payloads: PayloadSlab::default(),
            network_rng: SimRng::for_stream(config.seed, Stream::Network),
            fanout: Vec::new(),
            route_changes: Vec::new(),
            clean: vec![false; n],
            failing_hint: 0,
            routed: RoutedPairs::new(n),
            walker: Walker::new(n),
            own_seq: vec![None; n],
            dropped_events_seen: vec![0; n],
            sampled_seq,
            violations: Violations::default(),
            counters: Counters::default(),
            checker_lookups: Cell::new(0),
            next_hop_snapshot: Vec::new(),
            phase: Phase::Converging,
            now_us: 0,
            converged_at_us: None,
            last_start_us,
            crash_at_us: None,
            recovered_at_us: None,
            failed_nodes: 0,
            survivor_components: 1,
            connected_pairs: (n as u64) * (n as u64 - 1),
            window_opening_traffic: (0, 0),
            window_opening_route_changes: 0,
            window_route_changes: None,
            window: None,
            unreachable_pairs_after: 0,
            broken_pair_examples: Vec::new(),
            heal_from_us: None,
            ids,
        })
    }

    /// Runs until `config.duration_us`: events in time order, and at every check instant
    /// (multiples of the check interval, plus the end) the phase's check. Events due at a
    /// check instant run before the check.
    pub fn run_to_end(&mut self) -> Result<(), SimError> {
        self.run_to_end_with_progress(|_| {})
    }

    /// [`Simulation::run_to_end`], calling `tick` after every check instant and every
    /// [`TICK_EVENTS`] dispatched events (a check instant of a large start-up can be minutes
    /// away); it may take a [`Simulation::progress`] snapshot (a pass over the routers, not
    /// their tables).
    pub fn run_to_end_with_progress(
        &mut self,
        mut tick: impl FnMut(&Simulation),
    ) -> Result<(), SimError> {
        let end_us = self.config.duration_us;
        let interval_us = self.config.check_interval_us();
        let mut next_check_us = interval_us.min(end_us);
        let mut dispatched: u64 = 0;
        loop {
            match self.queue.peek_time() {
                Some(at_us) if at_us <= next_check_us => {
                    self.dispatch_next()?;
                    dispatched += 1;
                    if dispatched.is_multiple_of(TICK_EVENTS) {
                        tick(self);
                    }
                }
                _ => {
                    self.now_us = next_check_us;
                    self.check_instant()?;
                    tick(self);
                    if next_check_us >= end_us {
                        self.unreachable_pairs_after = self.audit();
                        return Ok(());
                    }
                    next_check_us = (next_check_us + interval_us).min(end_us);
                }
            }
        }
    }

    /// Virtual time now, in microseconds.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// The progress snapshot of now.
    pub fn progress(&self) -> Progress {
        let phase = match self.phase {
            Phase::Converging => "converge",
            Phase::Idle { .. } => "idle",
            Phase::Recovering => "recover",
            Phase::Healed if self.heal_from_us.is_some_and(|heal| self.now_us < heal) => {
                "recovered"
            }
            Phase::Healed => "heal",
        };
        let mut routers = MemoryUse::default();
        for router in &self.routers {
            let used = router.memory_use();
            routers.table += used.table;
            routers.queues += used.queues;
            routers.requests += used.requests;
            routers.signatures += used.signatures;
            routers.links += used.links;
        }
        Progress {
            now_us: self.now_us,
            phase,
            events: self.counters.events,
            queued_events: self.queue.len(),
            packets_in_flight: self.counters.packets_in_flight,
            bytes_sent: self.counters.bytes_sent,
            routers,
            engine_bytes: self.queue.allocated_bytes() + self.payloads.allocated_bytes(),
        }
    }

    /// Pops and runs the earliest event.
    fn dispatch_next(&mut self) -> Result<(), SimError> {
        let Some(event) = self.queue.pop() else {
            return Ok(());
        };
        debug_assert!(event.at_us >= self.now_us, "virtual time went backwards");
        self.now_us = event.at_us;
        match event.action() {
            Action::Wake { node } => self.wake(node)?,
            Action::Deliver { to, payload } => self.deliver(to, payload)?,
        }
        self.counters.peak_queued_events = self.counters.peak_queued_events.max(self.queue.len());
        Ok(())
    }

    /// A queued wake-up of `node` is due: the node's timer fires if its deadline is now (on
    /// the first wake-up, the node starts); if the deadline moved later, a wake-up is queued
    /// for it instead.
    fn wake(&mut self, node: u32) -> Result<(), SimError> {
        let i = node as usize;
        if self.next_wake_us[i] == self.now_us {
            self.next_wake_us[i] = NOT_ARMED;
        }
        if self.component[i] == CRASHED {
            return Ok(());
        }
        let armed_us = self.timer_armed_at_us[i];
        if armed_us != self.now_us {
            debug_assert!(armed_us > self.now_us, "node {node} missed its deadline");
            return self.queue_wake(node, armed_us);
        }
        self.timer_armed_at_us[i] = NOT_ARMED;
        if self.last_wake_us[i] == self.now_us {
            self.wake_streak[i] += 1;
            if self.wake_streak[i] >= MAX_SAME_INSTANT_WAKEUPS {
                let (count, at_s) = (self.wake_streak[i], seconds(self.now_us));
                return Err(SimError::Livelock { node, count, at_s });
            }
        } else {
            self.last_wake_us[i] = self.now_us;
            self.wake_streak[i] = 0;
        }
        self.started[i] = true;
        self.routers[i].handle_timeout(Timestamp(self.now_us));
        self.counters.events += 1;
        self.after_step(node)
    }

    /// A packet copy arrives at `to`.
    fn deliver(&mut self, to: u32, payload: u32) -> Result<(), SimError> {
        let i = to as usize;
        self.counters.packets_in_flight -= 1;
        if self.component[i] == CRASHED || !self.started[i] {
            self.counters.packets_to_dead_nodes += 1;
            self.payloads.release(payload);
            return Ok(());
        }
        let (bytes, from) = self.payloads.get(payload);
        let result = self.routers[i].handle_datagram(Timestamp(self.now_us), bytes);
        self.payloads.release(payload);
        self.counters.events += 1;
        self.counters.packets_delivered += 1;
        match result {
            Ok(sender) if node_index(&sender, self.ids.len()) == Some(from) => {}
            Ok(sender) => self.violations.record(self.now_us, || {
                format!("node {to} got a packet from node {from} but reported sender {sender}")
            }),
            Err(DropReason::NeighbourLimit) => self.counters.dropped_neighbour_limit += 1,
            Err(reason) => self.violations.record(self.now_us, || {
                format!("node {to} rejected a packet node {from}'s router produced: {reason}")
            }),
        }
        self.after_step(to)
    }

    /// Next-hop changes counted by all routers so far (read at the idle window's ends only:
    /// it visits every router).
    fn total_route_changes(&self) -> u64 {
        self.routers.iter().map(|r| r.stats().route_changes).sum()
    }

    /// The calling contract after every `handle_*`: drain transmits, drain events, then re-arm
    /// the timer from `poll_timeout`. Per-step invariants are checked in between.
    fn after_step(&mut self, node: u32) -> Result<(), SimError> {
        let i = node as usize;
        let mut outputs = 0usize;
        while let Some(transmit) = self.routers[i].poll_transmit() {
            self.send(node, transmit)?;
            outputs += 1;
            check_outputs(node, outputs, self.now_us)?;
        }
        self.route_changes.clear();
        while let Some(event) = self.routers[i].poll_event() {
            self.note_event(node, event);
            outputs += 1;
            check_outputs(node, outputs, self.now_us)?;
        }
        let dropped_events = self.routers[i].stats().dropped_events;
        if dropped_events != self.dropped_events_seen[i] {
            self.dropped_events_seen[i] = dropped_events;
            self.resync_after_lost_events(node);
        }
        self.check_step_invariants(node);
        self.rearm(node)
    }

    /// Puts one transmit on the links: one copy per receiver, each counted with its headers,
    /// each independently lost with probability `loss`, the survivors delivered after the
    /// link latency plus up to 10 % jitter.
    fn send(&mut self, from: u32, transmit: Transmit) -> Result<(), SimError> {
        self.fanout.clear();
        match transmit.to {
            Destination::Discovery => self
                .fanout
                .extend_from_slice(self.topology.neighbours(from)),
            Destination::Neighbour(id) => {
                match node_index(&id, self.ids.len())
                    .filter(|&to| self.topology.link_index(from, to).is_some())
                {
                    Some(to) => self.fanout.push(to),
                    None => self.violations.record(self.now_us, || {
                        format!("node {from} sent a packet to {id}, which it has no link to")
                    }),
                }
            }
        }
        let copy_bytes = transmit.payload.len() as u64 + IPV6_UDP_HEADER_BYTES;
        let window = match self.crash_at_us {
            None => 0,
            Some(crash_us) if self.now_us < crash_us + 1_000_000 => 1,
            Some(_) => 2,
        };
        self.counters.traffic[window].count(
            &transmit.payload,
            copy_bytes,
            self.fanout.len() as u64,
        );
        self.counters.packets_sent += self.fanout.len() as u64;
        self.counters.bytes_sent += copy_bytes * self.fanout.len() as u64;
        // Loss is a fault: it stops when the fault-free heal phase starts.
        let loss = if self.heal_from_us.is_some_and(|heal| self.now_us >= heal) {
            0.0
        } else {
            self.config.loss
        };
        if loss > 0.0 {
            let rng = &mut self.network_rng;
            let before = self.fanout.len();
            self.fanout.retain(|_| rng.unit() >= loss);
            self.counters.packets_lost += (before - self.fanout.len()) as u64;
        }
        // The event queue is bounded: past its share for deliveries, copies are dropped and
        // counted like a congested link's, so wake-ups always find room.
        let mut room = self.delivery_cap.saturating_sub(self.queue.len());
        if self.payloads.live_bytes() + transmit.payload.capacity() > self.payload_bytes_cap {
            room = 0;
        }
        if self.fanout.len() > room {
            self.counters.packets_dropped_queue_full += (self.fanout.len() - room) as u64;
            self.fanout.truncate(room);
        }
        if self.fanout.is_empty() {
            return Ok(());
        }
        let payload = self
            .payloads
            .insert(transmit.payload, from, self.fanout.len() as u32);
        let latency_us = self.config.latency_us;
        for &to in &self.fanout {
            let at_us = self.now_us + latency_us + self.network_rng.below(latency_us / 10 + 1);
            self.queue
                .push(at_us, Action::Deliver { to, payload })
                .map_err(|cap| SimError::QueueFull {
                    cap,
                    at_s: seconds(self.now_us),
                })?;
            self.counters.packets_in_flight += 1;
        }
        Ok(())
    }

    /// Records one router event: neighbour liveness into `listed_alive`, route changes into
    /// the scratch list checked after the step.
    fn note_event(&mut self, node: u32, event: Event) {
        let (neighbour, alive) = match event {
            Event::RouteChanged { destination, .. } => {
                self.route_changes.push(destination);
                return;
            }
            Event::NeighbourUp(id) => (id, true),
            Event::NeighbourDown(id) => (id, false),
        };
        let link = node_index(&neighbour, self.ids.len())
            .and_then(|to| self.topology.link_index(node, to));
        match link {
            Some(link) => self.listed_alive[link] = alive,
            None => self.violations.record(self.now_us, || {
                format!("node {node} reported neighbour {neighbour} (alive: {alive}), which it has no link to")
            }),
        }
    }

    /// The router's bounded event queue overflowed and dropped events (its `dropped_events`
    /// grew), so the event-derived state can be stale: reload the node's neighbour liveness
    /// from `Router::neighbours` and treat every destination as changed.
    fn resync_after_lost_events(&mut self, node: u32) {
        let n = self.ids.len();
        let links = self.topology.links_of(node);
        self.listed_alive[links].fill(false);
        for info in self.routers[node as usize]
            .neighbours()
            .iter()
            .filter(|info| info.alive)
        {
            if let Some(link) =
                node_index(&info.id, n).and_then(|to| self.topology.link_index(node, to))
            {
                self.listed_alive[link] = true;
            }
        }
        self.clean.fill(false);
        let router = &self.routers[node as usize];
        for destination in 0..n as u32 {
            let routed = router.next_hop(&self.ids[destination as usize]).is_some();
            let matters = pair_matters(&self.component, node, destination);
            self.routed.set(node, destination, routed, matters);
        }
    }

    /// The per-step invariants, O(1) router queries each: `Router::validate` (in meshes of at
    /// most [`FULL_STEP_CHECKS_MAX_NODES`]; it is O(N)); the node's own
    /// sequence number and those of its sampled destinations never go backwards; every
    /// destination whose route changed in this step now has no next hop, or a linked one that
    /// the node's own neighbour table lists alive.
    fn check_step_invariants(&mut self, node: u32) {
        let i = node as usize;
        let now_us = self.now_us;
        let router = &self.routers[i];
        if self.ids.len() <= FULL_STEP_CHECKS_MAX_NODES
            && let Err(violation) = router.validate()
        {
            self.violations
                .record(now_us, || format!("node {node}: {violation}"));
        }
        let own = router.newest_seq(&self.ids[i]);
        check_seq_monotonic(
            &mut self.violations,
            now_us,
            node,
            node,
            &mut self.own_seq[i],
            own,
        );
        if self.ids.len() <= FULL_STEP_CHECKS_MAX_NODES {
            check_sampled_seqs(
                router,
                &self.ids,
                &mut self.sampled_seq[i],
                &mut self.violations,
                now_us,
                node,
            );
        }
        for changed in &self.route_changes {
            let Some(destination) = node_index(changed, self.ids.len()) else {
                self.violations.record(now_us, || {
                    format!("node {node} has a route to {changed}, which is no simulated node")
                });
                continue;
            };
            self.clean[destination as usize] = false;
            let next_hop = router.next_hop(changed);
            let matters = pair_matters(&self.component, node, destination);
            self.routed
                .set(node, destination, next_hop.is_some(), matters);
            let Some(next_hop) = next_hop else {
                continue;
            };
            let link = node_index(&next_hop, self.ids.len())
                .and_then(|hop| self.topology.link_index(node, hop));
            if !link.is_some_and(|link| self.listed_alive[link]) {
                let n = self.ids.len();
                self.violations.record(now_us, || {
                    let hop = node_index(&next_hop, n).map_or_else(|| next_hop.to_string(), |i| format!("node {i}"));
                    let why = match link {
                        None => "which it has no link to".to_string(),
                        Some(_) => format!("which its events never reported up ({})", describe_neighbour(router, &next_hop)),
                    };
                    format!("node {node} switched its route to node {destination} to next hop {hop}, {why}")
                });
            }
        }
    }

    /// Re-arms the node's timer from `poll_timeout`: the new deadline supersedes the old one.
    fn rearm(&mut self, node: u32) -> Result<(), SimError> {
        let i = node as usize;
        let wanted_us = match self.routers[i].poll_timeout() {
            // A deadline in the past means "as soon as possible": now.
            Some(at) => at.as_micros().max(self.now_us),
            None => NOT_ARMED,
        };
        self.timer_armed_at_us[i] = wanted_us;
        self.queue_wake(node, wanted_us)
    }

    /// Makes sure a wake-up of `node` is queued no later than `at_us`. A deadline that moves
    /// later (a neighbour's liveness timer is pushed back by every packet it sends) costs no
    /// queue entry until the earlier wake-up fires; one entry per step instead kept 300,000
    /// obsolete entries in the heap at 1,000 nodes.
    fn queue_wake(&mut self, node: u32, at_us: u64) -> Result<(), SimError> {
        let i = node as usize;
        if at_us == NOT_ARMED || at_us >= self.next_wake_us[i] {
            return Ok(());
        }
        self.next_wake_us[i] = at_us;
        self.queue
            .push(at_us, Action::Wake { node })
            .map_err(|cap| SimError::QueueFull {
                cap,
                at_s: seconds(self.now_us),
            })
    }

    /// What happens at a check instant, by phase.
    fn check_instant(&mut self) -> Result<(), SimError> {
        let now_us = self.now_us;
        if self.ids.len() > FULL_STEP_CHECKS_MAX_NODES {
            for (i, router) in self.routers.iter().enumerate() {
                if self.component[i] != CRASHED {
                    let sampled = &mut self.sampled_seq[i];
                    check_sampled_seqs(
                        router,
                        &self.ids,
                        sampled,
                        &mut self.violations,
                        now_us,
                        i as u32,
                    );
                }
            }
        }
        match self.phase {
            Phase::Converging => {
                if self.all_pairs_work() {
                    self.converged_at_us = Some(now_us);
                    self.phase = self.idle_phase(now_us);
                }
            }
            Phase::Idle {
                window_start_us,
                fail_at_us,
            } => {
                if now_us == window_start_us {
                    self.window_opening_route_changes = self.total_route_changes();
                    self.window_opening_traffic =
                        (self.counters.bytes_sent, self.counters.packets_sent);
                }
                if now_us == fail_at_us {
                    let (opening_bytes, opening_packets) = self.window_opening_traffic;
                    let bytes = self.counters.bytes_sent - opening_bytes;
                    let packets = self.counters.packets_sent - opening_packets;
                    self.window = Some((window_start_us, fail_at_us, bytes, packets));
                    self.window_route_changes =
                        Some(self.total_route_changes() - self.window_opening_route_changes);
                    self.heal_from_us = Some(self.heal_start(now_us));
                    self.crash();
                    self.phase = if self.failed_nodes > 0 {
                        Phase::Recovering
                    } else {
                        Phase::Healed
                    };
                } else {
                    self.audit_if_due(true);
                }
            }
            Phase::Recovering => {
                if self.all_pairs_work() {
                    self.recovered_at_us = Some(now_us);
                    self.phase = Phase::Healed;
                }
                // Audit while recovering too: the early-exit check above stops at the first
                // broken pair and could step over a loop elsewhere.
                self.audit_if_due(false);
            }
            Phase::Healed => self.audit_if_due(true),
        }
        Ok(())
    }

    /// The idle phase that follows convergence at `converged_us`: settle, then the idle window,
    /// then the crash. With r the time left, settle = min(2 s, r/4) and window = min(10 s,
    /// r/4), both rounded down to the check grid (at least one check interval), so at least
    /// half of what is left remains for recovery and healing.
    fn idle_phase(&self, converged_us: u64) -> Phase {
        let grid_us = self.config.check_interval_us();
        let left_us = self.config.duration_us.saturating_sub(converged_us);
        let on_grid = |us: u64| (us / grid_us * grid_us).max(grid_us);
        let window_start_us = converged_us + on_grid(SETTLE_MAX_US.min(left_us / 4));
        let fail_at_us = window_start_us + on_grid(IDLE_WINDOW_MAX_US.min(left_us / 4));
        if fail_at_us <= self.config.duration_us {
            Phase::Idle {
                window_start_us,
                fail_at_us,
            }
        } else {
            Phase::Healed
        }
    }

    /// Start of the fault-free heal phase for a crash at `crash_us`: the last min(10 s, half
    /// of what is left) of the run, on the check grid. Loss stops then, as faults stop in a
    /// VOPR's liveness phase, so the end of the run asks whether the mesh heals once nothing
    /// fails any more; flapping under loss before it shows in `unstable_audits`.
    fn heal_start(&self, crash_us: u64) -> u64 {
        let grid_us = self.config.check_interval_us();
        let end_us = self.config.duration_us;
        let heal_us = HEAL_MAX_US.min(end_us.saturating_sub(crash_us) / 2) / grid_us * grid_us;
        end_us - heal_us.min(end_us)
    }

    /// Crashes `floor(fail * N)` nodes chosen by the crash stream, all at once: they stop
    /// receiving, sending and waking. Recomputes the survivors' components.
    fn crash(&mut self) {
        let n = self.ids.len();
        let count = self.config.failed_node_count().min(n);
        let mut order: Vec<u32> = (0..n as u32).collect();
        SimRng::for_stream(self.config.seed, Stream::Crash).shuffle(&mut order);
        let mut alive = vec![true; n];
        for &node in &order[..count] {
            let i = node as usize;
            alive[i] = false;
            self.timer_armed_at_us[i] = NOT_ARMED;
        }
        let (component, components) = self.topology.components(&alive);
        let mut sizes = vec![0u64; components as usize];
        for &c in component.iter().filter(|&&c| c != CRASHED) {
            sizes[c as usize] += 1;
        }
        self.connected_pairs = sizes.iter().map(|size| size * size.saturating_sub(1)).sum();
        self.component = component;
        self.survivor_components = components;
        self.failed_nodes = count;
        // With nothing crashed there is no crash instant: `fail_at_s` stays null.
        self.crash_at_us = (count > 0).then_some(self.now_us);
        self.clean.fill(false);
        let component = &self.component;
        self.routed
            .recount(|source, destination| pair_matters(component, source, destination));
    }

    /// Splits the borrows a walk needs: the read-only view, the walker, and a judge.
    fn walk_parts(
        &mut self,
        use_snapshot: bool,
    ) -> (View<'_>, &mut Walker, &mut Vec<bool>, &mut u32, Judge<'_>) {
        let now_us = self.now_us;
        let converged = self.converged_at_us.is_some();
        let crash_at_us = self.crash_at_us;
        let grace_us = self.config.dead_next_hop_grace_us();
        let Simulation {
            routers,
            ids,
            component,
            topology,
            listed_alive,
            walker,
            clean,
            failing_hint,
            violations,
            counters,
            checker_lookups,
            next_hop_snapshot,
            ..
        } = self;
        let judge = Judge {
            routers,
            ids,
            now_us,
            converged,
            crash_at_us,
            grace_us,
            violations,
            loops_before_convergence: &mut counters.loops_before_convergence,
        };
        (
            View {
                routers,
                ids,
                component,
                topology,
                listed_alive,
                lookups: checker_lookups,
                snapshot: (use_snapshot && !next_hop_snapshot.is_empty())
                    .then_some(next_hop_snapshot.as_slice()),
            },
            walker,
            clean,
            failing_hint,
            judge,
        )
    }

    /// "Does every pair that should work, work?", stopping at the first broken pair. While
    /// some pair that matters has no next hop at its source (`routed`, read from the routers
    /// after each of their route-change events), the answer is no without a walk. Otherwise
    /// first the destinations touched by route changes since they last passed, starting with
    /// the one that failed last time; if all pass, a confirmation walk over every
    /// destination, so a "yes" never rests on the routers' change events. (A missed event
    /// could only delay a "yes", which a run reports as a failure, never fake one.)
    fn all_pairs_work(&mut self) -> bool {
        if self.routed.missing() > 0 {
            return false;
        }
        let (view, walker, clean, failing_hint, mut judge) = self.walk_parts(false);
        let n = view.ids.len() as u32;
        for k in 0..n {
            let destination = (*failing_hint + k) % n;
            if clean[destination as usize] {
                continue;
            }
            if walker.walk(&view, destination, true, &mut |f| judge.judge(f)) > 0 {
                *failing_hint = destination;
                return false;
            }
            clean[destination as usize] = true;
        }
        for destination in 0..n {
            if walker.walk(&view, destination, true, &mut |f| judge.judge(f)) > 0 {
                clean[destination as usize] = false;
                *failing_hint = destination;
                return false;
            }
        }
        true
    }

    /// Runs [`Self::audit`] at multiples of the audit interval. In the steady phases (`steady`:
    /// idle and heal) any broken pair means routes flapped, counted as an unstable audit.
    fn audit_if_due(&mut self, steady: bool) {
        // The end of the run gets its own final audit (`unreachable_pairs_after`); auditing
        // here too would count the same findings twice.
        if self.now_us < self.config.duration_us
            && self.now_us.is_multiple_of(self.config.audit_interval_us())
        {
            let broken = self.audit();
            self.counters.audits += 1;
            if steady && broken > 0 {
                self.counters.unstable_audits += 1;
            }
        }
    }

    /// Full audit: walks every pair (no early exit) and returns how many connected pairs are
    /// broken; also checks that the neighbour events agree with every live router's table and,
    /// in meshes too large to validate after every step, validates every live router.
    fn audit(&mut self) -> u64 {
        self.check_neighbour_tables();
        if self.ids.len() > FULL_STEP_CHECKS_MAX_NODES {
            self.validate_live_routers();
        }
        self.snapshot_next_hops();
        let mut examples = Vec::new();
        let (view, walker, _, _, mut judge) = self.walk_parts(true);
        let n = view.ids.len() as u32;
        let broken = (0..n)
            .map(|destination| {
                u64::from(walker.walk(&view, destination, false, &mut |f| {
                    if examples.len() < MAX_BROKEN_PAIR_EXAMPLES {
                        describe_breakage(&f, &mut examples);
                    }
                    judge.judge(f)
                }))
            })
            .sum();
        self.broken_pair_examples = examples;
        broken
    }

    /// Reads every live node's next hop towards every destination into `next_hop_snapshot`,
    /// router by router. The same N^2 lookups as walking destination by destination, but each
    /// router's table stays in cache while it is read, instead of every lookup landing in a
    /// different router's table: this made full audits several times cheaper at 1,000 nodes.
    fn snapshot_next_hops(&mut self) {
        let n = self.ids.len();
        if n > SNAPSHOT_MAX_NODES {
            self.next_hop_snapshot = Vec::new();
            return;
        }
        self.next_hop_snapshot.clear();
        self.next_hop_snapshot.resize(n * n, SNAPSHOT_NO_ROUTE);
        for (node, router) in self.routers.iter().enumerate() {
            if self.component[node] == CRASHED {
                continue;
            }
            let row = &mut self.next_hop_snapshot[node * n..(node + 1) * n];
            for (entry, destination) in row.iter_mut().zip(&self.ids) {
                *entry = match router.next_hop(destination) {
                    None => SNAPSHOT_NO_ROUTE,
                    // node_index is below n <= SNAPSHOT_MAX_NODES, so it fits below the sentinels.
                    Some(hop) => node_index(&hop, n).map_or(SNAPSHOT_FOREIGN, |hop| hop as u16),
                };
            }
        }
        self.checker_lookups
            .set(self.checker_lookups.get() + (n * n) as u64);
    }

    /// `Router::validate` on every router that has not crashed.
    fn validate_live_routers(&mut self) {
        for (node, router) in self.routers.iter().enumerate() {
            if self.component[node] == CRASHED {
                continue;
            }
            if let Err(violation) = router.validate() {
                self.violations
                    .record(self.now_us, || format!("node {node}: {violation}"));
            }
        }
    }

    /// Every live router's `neighbours()` must list alive exactly the neighbours its
    /// `NeighbourUp`/`NeighbourDown` events said, and only linked nodes.
    fn check_neighbour_tables(&mut self) {
        let n = self.ids.len();
        for node in 0..n as u32 {
            if self.component[node as usize] == CRASHED {
                continue;
            }
            let mut alive_in_table = 0usize;
            for info in self.routers[node as usize]
                .neighbours()
                .iter()
                .filter(|info| info.alive)
            {
                alive_in_table += 1;
                let link =
                    node_index(&info.id, n).and_then(|to| self.topology.link_index(node, to));
                if !link.is_some_and(|link| self.listed_alive[link]) {
                    self.violations.record(self.now_us, || {
                        format!(
                            "node {node} lists {} alive without a NeighbourUp event or a link",
                            info.id
                        )
                    });
                }
            }
            let alive_by_events = self.listed_alive[self.topology.links_of(node)]
                .iter()
                .filter(|&&alive| alive)
                .count();
            if alive_by_events != alive_in_table {
                self.violations.record(self.now_us, || {
                    format!("node {node}: events say {alive_by_events} neighbours alive, its table {alive_in_table}")
                });
            }
        }
    }

    /// Everything measured so far.
    pub fn report(&self) -> SimReport {
        let config = &self.config;
        let n = self.ids.len();
        let links = self.topology.edge_count();
        let directed_links = self.topology.directed_link_count() as f64;
        let window = self.window.map(|(start_us, end_us, bytes, packets)| {
            let span_s = seconds(end_us - start_us);
            (
                start_us,
                end_us,
                bytes as f64 / span_s,
                packets as f64 / span_s,
            )
        });
        let ogm_interval_s = config.router.ogm_interval.as_secs_f64();
        let (router_dropped_events, router_dropped_transmits) =
            self.routers.iter().fold((0, 0), |(events, transmits), r| {
                (
                    events + r.stats().dropped_events,
                    transmits + r.stats().dropped_transmits,
                )
            });
        let (route_changes, fast_reroutes) =
            self.routers.iter().fold((0, 0), |(changes, reroutes), r| {
                (
                    changes + r.stats().route_changes,
                    reroutes + r.stats().fast_reroutes,
                )
            });
        let (ogm_signatures_verified, dropped_unauthenticated_ogms) =
            self.routers.iter().fold((0, 0), |(verified, dropped), r| {
                let s = r.stats();
                (
                    verified + s.ogm_signatures_verified,
                    dropped
                        + s.dropped_ogm_forged
                        + s.dropped_ogm_replayed
                        + s.dropped_ogm_stale
                        + s.dropped_ogm_revoked
                        + s.dropped_ogm_unknown_originator,
                )
            });
        SimReport {
            nodes: n,
            seed: config.seed,
            topology: config.topology,
            links,
            average_degree: directed_links / n as f64,
            loss: config.loss,
            latency_ms: config.latency_us as f64 / 1000.0,
            fail: config.fail_fraction,
            fisheye: config.router.fisheye,
            sign_ogms: config.sign_ogms,
            duration_s: seconds(config.duration_us),
            check_interval_ms: config.check_interval_us() as f64 / 1000.0,
            converged_s: self.converged_at_us.map(seconds),
            start_spread_s: seconds(config.start_spread_us()),
            last_start_s: seconds(self.last_start_us),
            failed_nodes: self.failed_nodes,
            fail_at_s: self.crash_at_us.map(seconds),
            heal_from_s: self.heal_from_us.map(seconds),
            recovered_s: self
                .recovered_at_us
                .zip(self.crash_at_us)
                .map(|(r, c)| seconds(r - c)),
            survivors: n - self.failed_nodes,
            survivor_components: self.survivor_components,
            connected_pairs_after: self.connected_pairs,
            unreachable_pairs_after: self.unreachable_pairs_after,
            unreachable_examples: self.broken_pair_examples.clone(),
            idle_window_start_s: window.map(|w| seconds(w.0)),
            idle_window_end_s: window.map(|w| seconds(w.1)),
            control_bytes_per_node_s: window.map(|w| w.2 / n as f64),
            control_bytes_per_node_neighbour_s: window.map(|w| w.2 / directed_links),
            control_packets_per_node_s: window.map(|w| w.3 / n as f64),
            idle_route_changes_per_node_s: window.zip(self.window_route_changes).map(
                |((start_us, end_us, _, _), changes)| {
                    changes as f64 / n as f64 / seconds(end_us - start_us)
                },
            ),
            batman_iv_ogm_bytes_per_node_neighbour_s: 24.0 * n as f64 / ogm_interval_s,
            header_bytes_per_packet: IPV6_UDP_HEADER_BYTES,
            events: self.counters.events,
            checker_lookups: self.checker_lookups.get(),
            packets_sent: self.counters.packets_sent,
            bytes_sent: self.counters.bytes_sent,
            traffic_until_crash: self.counters.traffic[0],
            traffic_crash_second: self.counters.traffic[1],
            traffic_after_crash_second: self.counters.traffic[2],
            packets_delivered: self.counters.packets_delivered,
            packets_lost: self.counters.packets_lost,
            packets_to_dead_nodes: self.counters.packets_to_dead_nodes,
            packets_dropped_queue_full: self.counters.packets_dropped_queue_full,
            dropped_neighbour_limit: self.counters.dropped_neighbour_limit,
            route_changes,
            fast_reroutes,
            ogm_signatures_verified,
            dropped_unauthenticated_ogms,
            router_dropped_events,
            router_dropped_transmits,
            loops_before_convergence: self.counters.loops_before_convergence,
            audits: self.counters.audits,
            unstable_audits: self.counters.unstable_audits,
            peak_queued_events: self.counters.peak_queued_events,
            invariant_violations: self.violations.count,
            violations: self.violations.first.clone(),
        }
    }
}

/// Records a violation if `newest` is older than the last value seen, then remembers it. A
/// router that forgets a destination (None) is not going backwards.
fn check_seq_monotonic(
    violations: &mut Violations,
    now_us: u64,
    node: u32,
    destination: u32,
    last: &mut Option<u32>,
    newest: Option<u32>,
) {
    let Some(newest) = newest else { return };
    if let Some(previous) = *last
        && serial_older(newest, previous)
    {
        violations.record(now_us, || {
            format!("node {node}: newest sequence number of node {destination} went back from {previous} to {newest}")
        });
    }
    *last = Some(newest);
}

/// Checks that the newest sequence numbers `node`'s router knows for its sampled destinations
/// did not go backwards since last seen.
fn check_sampled_seqs(
    router: &Router,
    ids: &[NodeId],
    sampled: &mut [(u32, Option<u32>); SAMPLED_DESTINATIONS_PER_NODE],
    violations: &mut Violations,
    now_us: u64,
    node: u32,
) {
    for (destination, last) in sampled.iter_mut() {
        let newest = router.newest_seq(&ids[*destination as usize]);
        check_seq_monotonic(violations, now_us, node, *destination, last, newest);
    }
}

/// Picks each node's sampled destinations: distinct from the node, drawn from the sampling
/// stream (repeats allowed; with two samples they are rare and harmless).
fn sample_destinations(
    n: usize,
    seed: u64,
) -> Vec<[(u32, Option<u32>); SAMPLED_DESTINATIONS_PER_NODE]> {
    let mut rng = SimRng::for_stream(seed, Stream::Sampling);
    (0..n as u64)
        .map(|node| {
            std::array::from_fn(|_| {
                let other = rng.below(n as u64 - 1);
                let destination = if other >= node { other + 1 } else { other };
                (destination as u32, None)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_index_recovers_sim_ids_only() {
        assert_eq!(node_index(&NodeId::from_index(7), 10), Some(7));
        assert_eq!(node_index(&NodeId::from_index(10), 10), None);
        assert_eq!(node_index(&NodeId::from_public_key(b"k"), 10), None);
    }

    #[test]
    fn a_full_event_queue_drops_and_counts_packet_copies() {
        let (config, mut simulation) = small_simulation(30, 3_000_000);
        let cap = 200;
        simulation.delivery_cap = cap;
        simulation.run_to_end().unwrap();
        let report = simulation.report();
        assert!(report.packets_dropped_queue_full > 0, "{report:?}");
        // Past the cap only wake-ups (at most one per node that is not stale) get in.
        assert!(
            report.peak_queued_events <= cap + 2 * config.nodes,
            "{} events queued",
            report.peak_queued_events
        );
        assert_every_copy_accounted_for(&simulation, &report);
    }

    /// A seed-1 run of the default topology with `nodes` nodes for `duration_us`.
    fn small_simulation(nodes: usize, duration_us: u64) -> (SimConfig, Simulation) {
        let config = SimConfig {
            nodes,
            duration_us,
            ..SimConfig::default()
        };
        let topology = Topology::build(config.topology, config.nodes, config.seed).unwrap();
        let simulation = Simulation::new(&config, topology).unwrap();
        (config, simulation)
    }

    fn assert_every_copy_accounted_for(simulation: &Simulation, report: &SimReport) {
        assert_eq!(
            report.packets_sent,
            report.packets_delivered
                + report.packets_lost
                + report.packets_to_dead_nodes
                + report.packets_dropped_queue_full
                + simulation.counters.packets_in_flight,
            "every copy is accounted for"
        );
    }

    #[test]
    fn too_many_bytes_in_flight_drop_and_count_packet_copies() {
        let (config, mut simulation) = small_simulation(30, 3_000_000);
        let cap = 20_000;
        simulation.payload_bytes_cap = cap;
        let mut peak = 0;
        while simulation.now_us() < config.duration_us {
            if simulation.dispatch_next().is_err() {
                break;
            }
            peak = peak.max(simulation.payloads.live_bytes());
        }
        let report = simulation.report();
        assert!(report.packets_dropped_queue_full > 0, "{report:?}");
        assert!(peak <= cap, "{peak} payload bytes in flight");
        assert_every_copy_accounted_for(&simulation, &report);
    }

    #[test]
    fn traffic_by_kind_adds_up_and_shows_the_crash_storm() {
        let (_, mut simulation) = small_simulation(40, 8_000_000);
        simulation.run_to_end().unwrap();
        let report = simulation.report();
        let windows = [
            report.traffic_until_crash,
            report.traffic_crash_second,
            report.traffic_after_crash_second,
        ];
        assert_eq!(
            windows.iter().map(|w| w.packets).sum::<u64>(),
            report.packets_sent
        );
        assert_eq!(
            windows.iter().map(|w| w.bytes).sum::<u64>(),
            report.bytes_sent
        );
        let storm = report.traffic_crash_second;
        assert!(storm.ogm_retractions > 0, "{storm:?}");
        assert!(storm.seqno_requests > 0, "{storm:?}");
        assert!(report.traffic_until_crash.ogm_floods > 0);
        assert!(report.traffic_until_crash.probes > 0);
    }

    #[test]
    fn serial_order_wraps() {
        assert!(serial_older(1, 2));
        assert!(!serial_older(2, 1));
        assert!(!serial_older(5, 5));
        assert!(serial_older(u32::MAX, 0), "0 follows u32::MAX");
        assert!(!serial_older(0, u32::MAX));
    }
}
