//! A minimal in-memory network for the routing core's own tests: routers on a virtual clock
//! joined by links with a fixed latency. The full simulator lives in the `sim` crate.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use routing::{Destination, Router, RouterConfig, Timestamp};
use wire::NodeId;

/// A packet in flight: (delivery time in µs, tie-breaking counter, from, to, bytes).
type InFlight = Reverse<(u64, u64, usize, usize, Vec<u8>)>;

pub struct Net {
    pub routers: Vec<Router>,
    pub alive: Vec<bool>,
    links: HashSet<(usize, usize)>,
    latency_us: u64,
    queue: BinaryHeap<InFlight>,
    counter: u64,
    pub now: Timestamp,
    /// Every packet put on a link while `record` is set: (when, from, to, bytes).
    pub record: bool,
    pub sent: Vec<(Timestamp, usize, usize, Vec<u8>)>,
}

pub fn id(i: usize) -> NodeId {
    NodeId::from_index(i as u64)
}

pub fn index(id: NodeId) -> usize {
    u64::from_be_bytes(id.0[8..].try_into().expect("8 bytes")) as usize
}

impl Net {
    pub fn new(nodes: usize, edges: &[(usize, usize)], config: RouterConfig) -> Net {
        let routers = (0..nodes)
            .map(|i| {
                Router::new(
                    id(i),
                    config.clone(),
                    1000 * i as u32,
                    i as u64 + 7,
                    Timestamp::ZERO,
                )
            })
            .collect();
        let mut links = HashSet::new();
        for &(a, b) in edges {
            links.insert((a, b));
            links.insert((b, a));
        }
        Net {
            routers,
            alive: vec![true; nodes],
            links,
            latency_us: 2_000,
            queue: BinaryHeap::new(),
            counter: 0,
            now: Timestamp::ZERO,
            record: false,
            sent: Vec::new(),
        }
    }

    pub fn cut(&mut self, a: usize, b: usize) {
        self.links.remove(&(a, b));
        self.links.remove(&(b, a));
    }

    fn drain(&mut self, from: usize) {
        while let Some(transmit) = self.routers[from].poll_transmit() {
            let targets: Vec<usize> = match transmit.to {
                Destination::Neighbour(to) => vec![index(to)],
                Destination::Discovery => (0..self.routers.len())
                    .filter(|&to| self.links.contains(&(from, to)))
                    .collect(),
            };
            for to in targets {
                if self.links.contains(&(from, to)) {
                    if self.record {
                        self.sent
                            .push((self.now, from, to, transmit.payload.clone()));
                    }
                    self.counter += 1;
                    let at = self.now.as_micros() + self.latency_us;
                    self.queue.push(Reverse((
                        at,
                        self.counter,
                        from,
                        to,
                        transmit.payload.clone(),
                    )));
                }
            }
        }
        while self.routers[from].poll_event().is_some() {}
    }

    /// Runs the network until `until`, delivering packets and firing timers in time order.
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            let next_timer = (0..self.routers.len())
                .filter(|&i| self.alive[i])
                .filter_map(|i| self.routers[i].poll_timeout().map(|t| (t, i)))
                .min();
            let next_packet = self.queue.peek().map(|Reverse((at, ..))| Timestamp(*at));
            let next = match (next_timer, next_packet) {
                (Some((t, _)), Some(p)) => t.min(p),
                (Some((t, _)), None) => t,
                (None, Some(p)) => p,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = next;
            if next_packet == Some(next) {
                let Some(Reverse((_, _, from, to, payload))) = self.queue.pop() else {
                    break;
                };
                if self.alive[to] && self.alive[from] {
                    let _ = self.routers[to].handle_datagram(self.now, &payload);
                    self.drain(to);
                }
            } else if let Some((_, i)) = next_timer {
                self.routers[i].handle_timeout(self.now);
                self.drain(i);
            }
            for (i, router) in self.routers.iter().enumerate() {
                if self.alive[i] {
                    router.validate().expect("router invariants hold");
                }
            }
        }
        self.now = until;
    }

    /// Hands `bytes` to node `to` now, as if a neighbour had sent them, and puts its
    /// answers on the links.
    // Compiled into every test binary; the signed-OGM tests do not inject raw packets.
    #[allow(dead_code)]
    pub fn inject(&mut self, to: usize, bytes: &[u8]) {
        let _ = self.routers[to].handle_datagram(self.now, bytes);
        self.drain(to);
    }

    pub fn next_hop(&self, from: usize, to: usize) -> Option<usize> {
        self.routers[from].next_hop(&id(to)).map(index)
    }

    /// Follows next hops from `from` to `to`; the path, or `None` on a dead end or loop.
    pub fn path(&self, from: usize, to: usize) -> Option<Vec<usize>> {
        let mut path = vec![from];
        let mut at = from;
        while at != to {
            let next = self.next_hop(at, to)?;
            if !self.alive[next] || !self.links.contains(&(at, next)) || path.contains(&next) {
                return None;
            }
            path.push(next);
            at = next;
        }
        Some(path)
    }

    pub fn all_pairs_routed(&self) -> bool {
        let live: Vec<usize> = (0..self.routers.len()).filter(|&i| self.alive[i]).collect();
        live.iter()
            .all(|&a| live.iter().all(|&b| a == b || self.path(a, b).is_some()))
    }
}
