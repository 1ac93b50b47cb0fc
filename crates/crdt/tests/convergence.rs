//! Deterministic multi-node anti-entropy: seeded loss, duplication, reordering, clock skew and
//! a partition that heals; every replica must end in the identical state, and no datagram may
//! exceed the bound.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crdt::limits::MAX_MESSAGE_BYTES;
use crdt::{Kind, Replica, ReplicaConfig};
use wire::NodeId;

/// xorshift64*: a tiny seeded generator, so runs reproduce from the seed alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A datagram on the way: (deliver at, tie-break, from, to, payload).
type InFlight = (u64, u64, usize, usize, Vec<u8>);

/// The mesh: replicas, who peers with whom, and datagrams in flight.
struct Mesh {
    nodes: Vec<Replica>,
    ids: Vec<NodeId>,
    /// Each node's wall clock minus the simulation clock, ms (clock skew).
    skew: Vec<i64>,
    links: Vec<Vec<usize>>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    sent: u64,
    largest: usize,
    bytes: u64,
}

/// Fault settings of one phase.
#[derive(Clone, Copy)]
struct Faults {
    loss_percent: u64,
    dup_percent: u64,
    max_delay_ms: u64,
    /// Nodes below this index cannot reach nodes at or above it (0: no partition).
    partition_at: usize,
}

const CALM: Faults = Faults {
    loss_percent: 0,
    dup_percent: 0,
    max_delay_ms: 5,
    partition_at: 0,
};

fn config(id: NodeId) -> ReplicaConfig {
    let mut config = ReplicaConfig::standard(id);
    config
        .collections
        .push(("counters".to_owned(), Kind::Counter));
    config
        .collections
        .push(("leader".to_owned(), Kind::Register));
    config.collections.push(("members".to_owned(), Kind::Set));
    config
}

impl Mesh {
    /// `n` nodes on a ring, plus a chord every `chord` nodes, clocks skewed by up to 3 s.
    fn new(n: usize, chord: usize, rng: &mut Rng) -> Mesh {
        let ids: Vec<NodeId> = (0..n)
            .map(|i| NodeId::from_index(1 + i as u64 * 7919))
            .collect();
        let skew: Vec<i64> = (0..n).map(|_| rng.below(6_001) as i64 - 3_000).collect();
        let mut links = vec![Vec::new(); n];
        for i in 0..n {
            let mut add = |a: usize, b: usize| {
                if a != b && !links[a].contains(&b) {
                    links[a].push(b);
                    links[b].push(a);
                }
            };
            add(i, (i + 1) % n);
            if chord > 0 && i % chord == 0 {
                add(i, (i + n / 2) % n);
            }
        }
        let mut nodes: Vec<Replica> = Vec::new();
        for i in 0..n {
            let now = wall(0, skew[i]);
            let mut replica = Replica::new(config(ids[i]), now).expect("valid config");
            for peer in &links[i] {
                replica.add_peer(ids[*peer], now).expect("room");
            }
            nodes.push(replica);
        }
        Mesh {
            nodes,
            ids,
            skew,
            links,
            in_flight: BinaryHeap::new(),
            sent: 0,
            largest: 0,
            bytes: 0,
        }
    }

    fn index(&self, id: NodeId) -> usize {
        self.ids
            .iter()
            .position(|other| *other == id)
            .expect("known node")
    }

    fn now(&self, node: usize, t: u64) -> u64 {
        wall(t, self.skew[node])
    }

    /// Everything due at simulated time `t`; validates every replica that had input.
    fn step(&mut self, t: u64, faults: Faults, rng: &mut Rng) {
        let mut touched = vec![false; self.nodes.len()];
        let nows: Vec<u64> = (0..self.nodes.len()).map(|i| self.now(i, t)).collect();
        for ((node, now), touched) in self.nodes.iter_mut().zip(nows).zip(touched.iter_mut()) {
            if node.poll_timeout().is_some_and(|deadline| deadline <= now) {
                node.handle_timeout(now);
                *touched = true;
            }
        }
        while let Some(Reverse((at, _, _, _, _))) = self.in_flight.peek() {
            if *at > t {
                break;
            }
            let Some(Reverse((_, _, from, to, payload))) = self.in_flight.pop() else {
                break;
            };
            let now = self.now(to, t);
            // Drops are counted by the replica; the mesh only delivers.
            let _ = self.nodes[to].handle_message(self.ids[from], &payload, now);
            touched[to] = true;
        }
        self.flush(t, faults, rng);
        for (node, touched) in self.nodes.iter().zip(touched) {
            if touched {
                node.validate()
                    .expect("replica invariants hold after every input");
            }
        }
    }

    /// Moves every queued transmit onto the network, applying the phase's faults.
    fn flush(&mut self, t: u64, faults: Faults, rng: &mut Rng) {
        for from in 0..self.nodes.len() {
            while let Some(transmit) = self.nodes[from].poll_transmit() {
                let len = transmit.payload.len();
                assert!(len <= MAX_MESSAGE_BYTES, "datagram of {len} bytes");
                self.largest = self.largest.max(len);
                self.sent += 1;
                self.bytes += len as u64;
                let to = self.index(transmit.to);
                assert!(self.links[from].contains(&to), "sent only to peers");
                let cut = faults.partition_at > 0
                    && ((from < faults.partition_at) != (to < faults.partition_at));
                if cut || rng.chance(faults.loss_percent) {
                    continue;
                }
                let copies = if rng.chance(faults.dup_percent) { 2 } else { 1 };
                for _ in 0..copies {
                    let at = t + 1 + rng.below(faults.max_delay_ms);
                    self.in_flight.push(Reverse((
                        at,
                        rng.next(),
                        from,
                        to,
                        transmit.payload.clone(),
                    )));
                }
            }
        }
    }

    /// The next moment anything happens: a node's deadline or a delivery (never before `t + 1`).
    fn next_time(&self, t: u64) -> u64 {
        let deliveries = self.in_flight.peek().map(|Reverse((at, ..))| *at);
        let deadlines = self.nodes.iter().enumerate().filter_map(|(i, node)| {
            let deadline = node.poll_timeout()? as i64;
            Some((deadline - wall(0, self.skew[i]) as i64).max(0) as u64)
        });
        deadlines
            .chain(deliveries)
            .min()
            .unwrap_or(t + 1)
            .max(t + 1)
    }

    fn converged(&self) -> bool {
        let names = [
            "directory",
            "revocations",
            "policies",
            "counters",
            "leader",
            "members",
        ];
        names.iter().all(|name| {
            let first = self.nodes[0].store(name);
            self.nodes.iter().all(|node| node.store(name) == first)
        })
    }
}

fn wall(t: u64, skew: i64) -> u64 {
    (1_700_000_000_000_i64 + t as i64 + skew) as u64
}

/// One random local write at a random node; returns nothing, records per-node keys.
fn random_write(
    mesh: &mut Mesh,
    t: u64,
    rng: &mut Rng,
    last: &mut BTreeMap<(usize, u64), Option<Vec<u8>>>,
) {
    let node = rng.below(mesh.nodes.len() as u64) as usize;
    let now = mesh.now(node, t);
    let replica = &mut mesh.nodes[node];
    match rng.below(7) {
        0 | 1 => {
            // Keys owned by one node: the final value must be that node's last write.
            let key_no = rng.below(4);
            // Some values need fragments (a signed node record is about 6 KB).
            let len = if rng.chance(10) {
                crdt::limits::MAX_VALUE_BYTES
            } else if rng.chance(20) {
                6_000
            } else {
                rng.below(300) as usize
            };
            let value: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let key = format!("n{node}/k{key_no}");
            replica
                .map_insert("directory", key.as_bytes(), &value, now)
                .expect("fits");
            last.insert((node, key_no), Some(value));
        }
        2 => {
            let key_no = rng.below(4);
            let key = format!("n{node}/k{key_no}");
            replica
                .map_remove("directory", key.as_bytes(), now)
                .expect("fits");
            last.insert((node, key_no), None);
        }
        3 => {
            let element = [rng.below(16) as u8];
            replica.set_add("members", &element, now).expect("fits");
        }
        4 => {
            let element = [rng.below(16) as u8];
            replica.set_remove("members", &element).expect("fits");
        }
        5 => {
            let by = rng.below(21) as i64 - 10;
            replica.counter_add("counters", by, now).expect("fits");
        }
        _ => {
            let value = [rng.below(256) as u8];
            replica
                .map_insert("policies", b"shared", &value, now)
                .expect("fits");
            replica.register_set("leader", &value, now).expect("fits");
        }
    }
}

/// Runs a faulty phase with writes, then a calm heal phase; returns the mesh, the heal time in
/// ms, and whether the replicas differed when healing began.
fn run(seed: u64, n: usize, chord: usize, faults: Faults, writes: u64) -> (Mesh, u64, bool) {
    let mut rng = Rng(seed.max(1));
    let mut mesh = Mesh::new(n, chord, &mut rng);
    let mut last = BTreeMap::new();
    // Every node writes once at the start, so every node is an origin.
    for node in 0..n {
        let now = mesh.now(node, 0);
        let key = format!("n{node}/k0");
        mesh.nodes[node]
            .map_insert("directory", key.as_bytes(), b"hello", now)
            .expect("fits");
        last.insert((node, 0), Some(b"hello".to_vec()));
    }
    let fault_ms = 4_000;
    let write_every = fault_ms / writes.max(1);
    let mut t = 0;
    while t < fault_ms {
        if t % write_every == 0 && t < fault_ms - 500 {
            random_write(&mut mesh, t, &mut rng, &mut last);
            for node in &mesh.nodes {
                node.validate()
                    .expect("replica invariants hold after a write");
            }
        }
        let phase = if (500..fault_ms).contains(&t) {
            faults
        } else {
            Faults {
                partition_at: 0,
                ..faults
            }
        };
        mesh.step(t, phase, &mut rng);
        // Jump to the next delivery, deadline or write; nothing happens in between.
        let next_write = (t / write_every + 1) * write_every;
        t = mesh.next_time(t).min(next_write).min(fault_ms);
    }
    let heal_limit = 30_000;
    let diverged = !mesh.converged();
    let mut t = fault_ms;
    while !(mesh.converged() && mesh.in_flight.is_empty()) {
        assert!(
            t < fault_ms + heal_limit,
            "seed {seed}: no convergence within {heal_limit} ms of healing"
        );
        mesh.step(t, CALM, &mut rng);
        t = mesh.next_time(t);
    }
    for ((node, key_no), value) in &last {
        let key = format!("n{node}/k{key_no}");
        for replica in &mesh.nodes {
            let map = replica.map("directory").expect("configured");
            assert_eq!(
                map.get(key.as_bytes()),
                value.as_deref(),
                "seed {seed}: {key}"
            );
        }
    }
    (mesh, t - fault_ms, diverged)
}

const FAULTY: Faults = Faults {
    loss_percent: 20,
    dup_percent: 10,
    max_delay_ms: 60,
    partition_at: 3,
};

#[test]
fn replicas_converge_after_loss_duplication_reordering_and_a_healed_partition() {
    for seed in [1, 2, 3, 0xdead_beef] {
        let (mesh, heal_ms, diverged) = run(seed, 7, 3, FAULTY, 120);
        assert!(diverged, "seed {seed}: the partition left nothing to heal");
        assert!(mesh.largest <= MAX_MESSAGE_BYTES);
        assert!(
            mesh.largest > 1_000,
            "large values were sent ({} bytes)",
            mesh.largest
        );
        let first = mesh.nodes[0].digest("directory");
        assert!(
            mesh.nodes
                .iter()
                .all(|node| node.digest("directory") == first)
        );
        let dropped: u64 = mesh
            .nodes
            .iter()
            .map(|node| node.stats().dropped_out_of_order)
            .sum();
        eprintln!(
            "seed {seed}: healed in {heal_ms} ms, {} datagrams, {} bytes, largest {}, out-of-order drops {dropped}",
            mesh.sent, mesh.bytes, mesh.largest
        );
    }
}

#[test]
fn forty_nodes_converge_with_multi_page_vectors() {
    // 40 writers exceed one VECTOR page (35 origins), so paging must tile the origin space.
    let faults = Faults {
        loss_percent: 10,
        dup_percent: 5,
        max_delay_ms: 30,
        partition_at: 20,
    };
    let (mesh, heal_ms, _) = run(7, 40, 5, faults, 200);
    let origins = mesh.nodes[0]
        .store("directory")
        .expect("configured")
        .context()
        .origins();
    assert!(
        origins > crdt::codec::ORIGINS_PER_VECTOR,
        "only {origins} origins"
    );
    eprintln!(
        "40 nodes healed in {heal_ms} ms, {} datagrams, {} bytes",
        mesh.sent, mesh.bytes
    );
}

#[test]
fn a_removal_deep_in_a_long_history_reaches_the_peer_across_rounds() {
    let mut rng = Rng(99);
    let mut mesh = Mesh::new(2, 0, &mut rng);
    // Enough additions that one origin's history needs more chunks than one reply may send.
    for element in 0..3_000u32 {
        let now = mesh.now(0, 0);
        mesh.nodes[0]
            .set_add("members", &element.to_be_bytes(), now)
            .expect("fits");
        mesh.flush(0, CALM, &mut rng);
    }
    let mut t = 1;
    while !mesh.converged() {
        mesh.step(t, CALM, &mut rng);
        t = mesh.next_time(t);
        assert!(t < 20_000, "no initial convergence");
    }
    mesh.nodes[1]
        .set_remove("members", &2_999u32.to_be_bytes())
        .expect("fits");
    mesh.nodes[1]
        .set_remove("members", &0u32.to_be_bytes())
        .expect("fits");
    let start = t;
    while !mesh.converged() {
        mesh.step(t, CALM, &mut rng);
        t = mesh.next_time(t);
        assert!(t < start + 20_000, "removal did not reach the peer");
    }
    let set = mesh.nodes[0].set("members").expect("configured");
    assert!(!set.contains(&2_999u32.to_be_bytes()) && !set.contains(&0u32.to_be_bytes()));
    assert_eq!(set.len(), 2_998);
}

#[test]
fn one_policy_change_reaches_a_hundred_nodes_within_a_second() {
    let mut rng = Rng(2026);
    let mut mesh = Mesh::new(100, 10, &mut rng);
    let faults = Faults {
        loss_percent: 2,
        dup_percent: 0,
        max_delay_ms: 5,
        partition_at: 0,
    };
    // Let the mesh settle (empty digests agree), then write once at node 0.
    let mut t = 0;
    while t < 1_000 {
        mesh.step(t, faults, &mut rng);
        t = mesh.next_time(t);
    }
    let (sent_before, bytes_before) = (mesh.sent, mesh.bytes);
    let start = t;
    let now = mesh.now(0, t);
    mesh.nodes[0]
        .map_insert("policies", b"allow", b"v2", now)
        .expect("fits");
    let reached = |mesh: &Mesh| {
        mesh.nodes.iter().all(|node| {
            node.map("policies")
                .is_some_and(|map| map.get(b"allow") == Some(&b"v2"[..]))
        })
    };
    while !reached(&mesh) {
        mesh.step(t, faults, &mut rng);
        t = mesh.next_time(t);
        assert!(t - start <= 1_000, "not everywhere within 1 s");
    }
    let per_node = (mesh.bytes - bytes_before) / 100;
    eprintln!(
        "100 nodes: reached all in {} ms, {} datagrams, {per_node} bytes per node (digest rounds included)",
        t - start,
        mesh.sent - sent_before
    );
}
