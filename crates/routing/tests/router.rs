//! Behaviour of the routing core on small in-memory meshes: neighbour sensing, route
//! propagation, fast reroute, sequence-number requests and rejection of bad packets.

mod support;

use std::time::Duration;

use routing::{Destination, Event, Router, RouterConfig, Timestamp};
use support::{Net, id};
use wire::{Hello, Message, Packet};

fn ring(n: usize) -> Vec<(usize, usize)> {
    (0..n).map(|i| (i, (i + 1) % n)).collect()
}

#[test]
fn first_timeout_sends_a_discovery_hello() {
    let mut router = Router::new(id(1), RouterConfig::default(), 0, 1, Timestamp::ZERO);
    let at = router.poll_timeout().expect("a timer is always armed");
    router.handle_timeout(at);
    let transmit = router.poll_transmit().expect("a hello");
    assert_eq!(transmit.to, Destination::Discovery);
    let packet = Packet::decode(&transmit.payload).expect("valid packet");
    assert_eq!(packet.sender, id(1));
    assert_eq!(
        packet.messages,
        vec![Message::Hello(Hello {
            probe_interval_ms: 100
        })]
    );
}

#[test]
fn two_nodes_become_neighbours_and_route_to_each_other() {
    let mut net = Net::new(2, &[(0, 1)], RouterConfig::default());
    net.run_until(Timestamp::from_millis(1_500));
    for (a, b) in [(0, 1), (1, 0)] {
        let neighbours = net.routers[a].neighbours();
        assert_eq!(neighbours.len(), 1);
        assert!(neighbours[0].alive);
        assert_eq!(neighbours[0].tq, 255, "lossless link");
        assert!(
            neighbours[0].rtt_us >= 4_000,
            "two 2 ms hops: {}",
            neighbours[0].rtt_us
        );
        assert_eq!(net.next_hop(a, b), Some(b));
    }
    let route = &net.routers[0].routes()[0];
    assert_eq!(
        (route.hops, route.tq, route.cost),
        (1, 225, 128),
        "one hop costs the hop penalty"
    );
}

#[test]
fn line_routes_through_the_middle_with_batman_tq() {
    let mut net = Net::new(4, &[(0, 1), (1, 2), (2, 3)], RouterConfig::default());
    net.run_until(Timestamp::from_millis(2_000));
    assert!(net.all_pairs_routed());
    assert_eq!(net.path(0, 3), Some(vec![0, 1, 2, 3]));
    let route = net.routers[0]
        .routes()
        .into_iter()
        .find(|r| r.destination == id(3))
        .expect("route");
    assert_eq!(route.hops, 3);
    assert_eq!(route.tq, 175, "255 * (225/255)^3, as batman-adv computes");
    assert!(route.alternates.is_empty(), "a line has no alternates");
}

#[test]
fn ring_keeps_an_alternate_and_reroutes_within_detection_time() {
    let mut net = Net::new(6, &ring(6), RouterConfig::default());
    net.run_until(Timestamp::from_millis(3_000));
    assert!(net.all_pairs_routed());
    // Node 0 reaches node 2 through node 1; node 5's side is farther, so it is no alternate
    // (not strictly closer), but node 0 reaches node 1 with node 5 as no alternate either.
    assert_eq!(net.path(0, 2), Some(vec![0, 1, 2]));
    // Kill node 1 silently: node 0 must route to node 2 via 5-4-3 soon after detection.
    let killed_at = net.now;
    net.alive[1] = false;
    let mut rerouted_at = None;
    for step in 1..=200 {
        net.run_until(killed_at + Duration::from_millis(5 * step));
        if net.path(0, 2).is_some() {
            rerouted_at = Some(net.now);
            break;
        }
    }
    let rerouted_at = rerouted_at.expect("node 0 reroutes to node 2");
    let outage = rerouted_at.saturating_since(killed_at);
    assert!(
        outage <= Duration::from_millis(450),
        "outage {outage:?} exceeds detection plus repair"
    );
    assert_eq!(net.path(0, 2), Some(vec![0, 5, 4, 3, 2]));
    net.run_until(net.now + Duration::from_secs(3));
    assert!(
        net.all_pairs_routed(),
        "every surviving pair routed after the heal phase"
    );
}

#[test]
fn grid_uses_precomputed_alternates_for_fast_reroute() {
    // 3x3 grid: node 0 reaches node 8 by two equal-cost sides; an alternate must exist.
    let edges = [
        (0, 1),
        (1, 2),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (0, 3),
        (3, 6),
        (1, 4),
        (4, 7),
        (2, 5),
        (5, 8),
    ];
    let mut net = Net::new(9, &edges, RouterConfig::default());
    net.run_until(Timestamp::from_millis(3_000));
    assert!(net.all_pairs_routed());
    let route = net.routers[0]
        .routes()
        .into_iter()
        .find(|r| r.destination == id(4))
        .expect("route");
    assert_eq!(route.hops, 2);
    assert_eq!(
        route.alternates.len(),
        1,
        "the other side of the square is loop-free"
    );
    let first_hop = support::index(route.next_hop);
    net.alive[first_hop] = false;
    let killed_at = net.now;
    net.run_until(killed_at + Duration::from_millis(350));
    assert!(
        net.path(0, 4).is_some(),
        "alternate used right after detection"
    );
    assert!(net.routers[0].stats().fast_reroutes > 0);
}

#[test]
fn dead_neighbour_is_reported_within_three_probe_intervals() {
    let mut net = Net::new(2, &[(0, 1)], RouterConfig::default());
    net.run_until(Timestamp::from_millis(1_000));
    while net.routers[0].poll_event().is_some() {}
    net.alive[1] = false;
    let killed_at = net.now;
    let mut down_at = None;
    for step in 1..=100 {
        net.run_until(killed_at + Duration::from_millis(10 * step));
        if net.routers[0].neighbours()[0].alive {
            continue;
        }
        down_at = Some(net.now);
        break;
    }
    let detected = down_at
        .expect("neighbour declared dead")
        .saturating_since(killed_at);
    assert!(
        detected <= Duration::from_millis(340),
        "detected after {detected:?}"
    );
    assert_eq!(net.next_hop(0, 1), None);
}

#[test]
fn malformed_and_reflected_packets_are_dropped_and_counted() {
    let mut router = Router::new(id(1), RouterConfig::default(), 0, 1, Timestamp::ZERO);
    let now = Timestamp::from_millis(1);
    assert!(router.handle_datagram(now, b"x6").is_err());
    assert!(router.handle_datagram(now, &[0u8; 2000]).is_err());
    let mut wrong_version = Packet {
        sender: id(2),
        messages: vec![],
        unknown_tlvs: 0,
    }
    .encode();
    wrong_version[2] = 7;
    assert!(router.handle_datagram(now, &wrong_version).is_err());
    let own = Packet {
        sender: id(1),
        messages: vec![],
        unknown_tlvs: 0,
    }
    .encode();
    assert!(router.handle_datagram(now, &own).is_err());
    let stats = router.stats();
    assert_eq!(
        (
            stats.dropped_malformed,
            stats.dropped_oversized,
            stats.dropped_version,
            stats.dropped_own
        ),
        (1, 1, 1, 1)
    );
    assert!(
        router.neighbours().is_empty(),
        "no neighbour created by rejected packets"
    );
}

#[test]
fn neighbour_limit_is_enforced() {
    let config = RouterConfig {
        max_neighbours: 2,
        ..RouterConfig::default()
    };
    let mut router = Router::new(id(0), config, 0, 1, Timestamp::ZERO);
    for i in 1..=3 {
        let hello = Packet {
            sender: id(i),
            messages: vec![Message::Hello(Hello {
                probe_interval_ms: 100,
            })],
            unknown_tlvs: 0,
        };
        let result = router.handle_datagram(Timestamp::from_millis(1), &hello.encode());
        assert_eq!(result.is_ok(), i <= 2);
    }
    assert_eq!(router.neighbours().len(), 2);
    assert_eq!(router.stats().dropped_neighbour_limit, 1);
}

#[test]
fn cut_link_is_routed_around_in_both_directions() {
    let mut net = Net::new(4, &ring(4), RouterConfig::default());
    net.run_until(Timestamp::from_millis(2_000));
    assert_eq!(net.path(0, 1), Some(vec![0, 1]));
    net.cut(0, 1);
    net.run_until(net.now + Duration::from_millis(400));
    assert_eq!(net.path(0, 1), Some(vec![0, 3, 2, 1]));
    assert_eq!(net.path(1, 0), Some(vec![1, 2, 3, 0]));
}

#[test]
fn a_one_way_neighbour_is_not_up() {
    let mut router = Router::new(id(9), RouterConfig::default(), 0, 3, Timestamp::ZERO);
    let hello = Packet {
        sender: id(8),
        messages: vec![Message::Hello(Hello {
            probe_interval_ms: 100,
        })],
        unknown_tlvs: 0,
    };
    router
        .handle_datagram(Timestamp::from_millis(1), &hello.encode())
        .expect("accepted");
    assert_eq!(
        router.poll_event(),
        None::<Event>,
        "not up before the link is bidirectional"
    );
    assert!(!router.neighbours()[0].alive);
    assert_eq!(router.next_hop(&id(8)), None);
}

#[test]
fn a_forgotten_neighbour_leaves_no_advertisements_behind() {
    let mut router = Router::new(id(9), RouterConfig::default(), 0, 3, Timestamp::ZERO);
    let ogm = wire::Ogm {
        originator: id(7),
        seq: 5,
        cost: 0,
        hops: 10,
        ttl: 1,
        flags: 0,
        signature: wire::OgmSignature::ZERO,
    };
    let packet = Packet {
        sender: id(8),
        messages: vec![Message::Ogms(vec![ogm])],
        unknown_tlvs: 0,
    };
    router
        .handle_datagram(Timestamp::from_millis(1), &packet.encode())
        .expect("well-formed packet");
    assert!(
        router.routes().is_empty(),
        "a one-way neighbour gives no route"
    );
    // Silent for longer than the purge time: the neighbour is forgotten, its slot freed.
    let mut now = Timestamp::from_millis(1);
    while now < Timestamp::from_millis(62_000) {
        now = router
            .poll_timeout()
            .expect("timer armed")
            .max(now + Duration::from_millis(1));
        router.handle_timeout(now);
        while router.poll_transmit().is_some() {}
    }
    assert!(router.neighbours().is_empty());
    router
        .validate()
        .expect("no advertisement refers to the freed slot");
}

#[test]
fn a_lost_link_is_acted_on_at_once_without_waiting_for_probes() {
    let mut net = Net::new(6, &ring(6), RouterConfig::default());
    net.run_until(Timestamp::from_millis(3_000));
    assert_eq!(net.path(0, 3).map(|path| path.len()), Some(4));
    let relay = net.path(0, 3).expect("routed")[1];
    // The transport reports carrier loss on the link to the relay; no probe has been missed.
    let now = net.now;
    net.routers[0].handle_link_lost(now, &id(relay));
    let mut events = Vec::new();
    while let Some(event) = net.routers[0].poll_event() {
        events.push(event);
    }
    assert!(
        events.contains(&Event::NeighbourDown(id(relay))),
        "{events:?}"
    );
    assert_ne!(
        net.routers[0].next_hop(&id(3)),
        Some(id(relay)),
        "node 0 no longer sends to node 3 through the lost neighbour"
    );
    // A second report changes nothing, and an unknown neighbour is ignored.
    net.routers[0].handle_link_lost(now, &id(relay));
    net.routers[0].handle_link_lost(now, &id(99));
    assert!(net.routers[0].poll_event().is_none());
}

#[test]
fn hello_now_sends_a_hello_before_the_interval_is_up() {
    let mut router = Router::new(id(1), RouterConfig::default(), 0, 1, Timestamp::ZERO);
    let first = router.poll_timeout().expect("a timer is always armed");
    router.handle_timeout(first);
    while router.poll_transmit().is_some() {}
    let soon = first + Duration::from_millis(10);
    router.handle_timeout(soon);
    let hellos = |router: &mut Router| {
        let mut count = 0;
        while let Some(transmit) = router.poll_transmit() {
            let packet = Packet::decode(&transmit.payload).expect("valid packet");
            count += packet
                .messages
                .iter()
                .filter(|message| matches!(message, Message::Hello(_)))
                .count();
        }
        count
    };
    assert_eq!(hellos(&mut router), 0, "no hello before the interval");
    router.hello_now(soon);
    router.handle_timeout(soon);
    assert_eq!(hellos(&mut router), 1, "a hello at once after hello_now");
}

#[test]
fn a_retraction_never_moves_the_newest_sequence_number() {
    let mut router = Router::new(id(9), RouterConfig::default(), 0, 3, Timestamp::ZERO);
    let send = |router: &mut Router, at_ms: u64, seq: u32, cost: u32| {
        let packet = Packet {
            sender: id(8),
            messages: vec![Message::Ogms(vec![wire::Ogm {
                originator: id(7),
                seq,
                cost,
                hops: 2,
                ttl: 1,
                flags: 0,
                signature: wire::OgmSignature::ZERO,
            }])],
            unknown_tlvs: 0,
        };
        router
            .handle_datagram(Timestamp::from_millis(at_ms), &packet.encode())
            .expect("well-formed packet");
    };
    let high = 3_000_000_000;
    send(&mut router, 1, high, 256);
    assert_eq!(router.newest_seq(&id(7)), Some(high));
    // A neighbour that never had a route retracts with number 0, which in serial order is
    // newer than `high`; taking it would make every later number look old.
    send(&mut router, 2, 0, wire::COST_INFINITE);
    assert_eq!(router.newest_seq(&id(7)), Some(high));
    send(&mut router, 3, high + 1, 256);
    assert_eq!(router.newest_seq(&id(7)), Some(high + 1));
}

#[test]
fn a_penalised_neighbour_is_routed_around_and_an_isolated_one_is_not_used() {
    let mut net = Net::new(6, &ring(6), RouterConfig::default());
    net.run_until(Timestamp::from_millis(3_000));
    let relay = net.path(0, 3).expect("routed")[1];
    let now = net.now;
    assert!(net.routers[0].set_neighbour_penalty(now, &id(relay), 4096));
    assert_eq!(net.routers[0].neighbour_penalty(&id(relay)), 4096);
    assert_ne!(
        net.next_hop(0, 3),
        Some(relay),
        "the equal-length path without the penalised relay wins"
    );
    assert_eq!(
        net.next_hop(0, relay),
        Some(relay),
        "a penalty de-prefers; the direct link still beats going around the ring"
    );
    assert!(net.routers[0].set_neighbour_penalty(now, &id(relay), routing::ISOLATED));
    assert_ne!(
        net.next_hop(0, relay),
        Some(relay),
        "isolated: never a next hop"
    );
    net.run_until(Timestamp::from_millis(5_000));
    assert_ne!(
        net.next_hop(0, relay),
        Some(relay),
        "isolation outlives probes"
    );
    assert!(net.routers[0].set_neighbour_penalty(net.now, &id(relay), 0));
    assert_eq!(net.routers[0].neighbour_penalty(&id(relay)), 0);
    net.run_until(Timestamp::from_millis(7_000));
    assert_eq!(net.next_hop(0, relay), Some(relay), "lifted: direct again");
    net.routers[0].validate().expect("router invariants hold");
}

/// The line 0 - 1 - 2, converged, after node 1 heard of `count` new destinations behind
/// node 0 in one burst of packets (recording what is sent from then on).
fn line_learning_many_routes(count: usize) -> Net {
    let mut net = Net::new(3, &[(0, 1), (1, 2)], RouterConfig::default());
    net.run_until(Timestamp::from_millis(1_500));
    net.record = true;
    let mut writer = wire::PacketWriter::new(id(0));
    for destination in 0..count {
        writer.push_ogm(&wire::Ogm {
            originator: id(1_000 + destination),
            seq: 1,
            cost: 200,
            hops: 1,
            ttl: 0,
            flags: 0,
            signature: wire::OgmSignature::ZERO,
        });
    }
    for packet in writer.finish() {
        net.inject(1, &packet);
    }
    net
}

/// Per instant, the OGM entries and sequence-number requests about the burst's destinations
/// that node 1 sent to node 2.
fn middle_to_right(net: &Net) -> Vec<(Timestamp, usize, usize)> {
    let mut sent: Vec<(Timestamp, usize, usize)> = Vec::new();
    for (at, from, to, bytes) in &net.sent {
        if (*from, *to) != (1, 2) {
            continue;
        }
        let packet = Packet::decode(bytes).expect("valid packet");
        let mut ogms = 0;
        let mut requests = 0;
        for message in packet.messages {
            match message {
                Message::Ogms(entries) => {
                    ogms += entries
                        .iter()
                        .filter(|o| support::index(o.originator) >= 1_000)
                        .count()
                }
                Message::SeqnoRequest(request) if support::index(request.target) >= 1_000 => {
                    requests += 1
                }
                _ => {}
            }
        }
        match sent.last_mut() {
            Some(last) if last.0 == *at => {
                last.1 += ogms;
                last.2 += requests;
            }
            _ if ogms + requests > 0 => sent.push((*at, ogms, requests)),
            _ => {}
        }
    }
    sent
}

#[test]
fn a_burst_of_route_changes_is_advertised_in_paced_batches() {
    let mut net = line_learning_many_routes(2_000);
    let until = net.now + Duration::from_millis(150);
    net.run_until(until);
    let sent = middle_to_right(&net);
    let total: usize = sent.iter().map(|(_, ogms, _)| ogms).sum();
    assert!(total >= 2_000, "every new route reaches node 2: {sent:?}");
    assert!(
        sent.iter().all(|(_, ogms, _)| *ogms <= 512 + 64),
        "at most one batch per flush: {sent:?}"
    );
    let big: Vec<Timestamp> = sent
        .iter()
        .filter(|(_, ogms, _)| *ogms > 100)
        .map(|(at, _, _)| *at)
        .collect();
    assert!(big.len() >= 4, "2,000 routes take four batches: {sent:?}");
    for pair in big.windows(2) {
        assert!(
            pair[1].saturating_since(pair[0]) >= Duration::from_millis(10),
            "batches are 10 ms apart: {sent:?}"
        );
    }
    assert!(net.routers[2].next_hop(&id(2_999)).is_some());
}

#[test]
fn thousands_of_lost_routes_are_asked_for_in_paced_bursts() {
    let mut net = line_learning_many_routes(2_000);
    let settled = net.now + Duration::from_millis(200);
    net.run_until(settled);
    net.sent.clear();
    // Node 0 falls silent: node 1 loses all 2,000 routes at once, with no other advertiser,
    // so it queries node 2 about each, in bursts of at most 512.
    net.alive[0] = false;
    let until = net.now + Duration::from_millis(1_000);
    net.run_until(until);
    let queries: Vec<(Timestamp, usize)> = middle_to_right(&net)
        .into_iter()
        .filter(|(_, _, requests)| *requests > 0)
        .map(|(at, _, requests)| (at, requests))
        .collect();
    let total: usize = queries.iter().map(|(_, requests)| requests).sum();
    assert!(
        queries.first().is_some_and(|(_, first)| *first <= 512),
        "the first burst is at most 512 queries: {queries:?}"
    );
    assert!(
        total >= 1_500,
        "the rest follow within the next second: {queries:?}"
    );
}

/// One OGM entry about `destination` as neighbour `from` would advertise it, as a packet.
fn advert_packet(from: usize, destination: usize, seq: u32, cost: u32) -> Vec<u8> {
    let mut writer = wire::PacketWriter::new(id(from));
    writer.push_ogm(&wire::Ogm {
        originator: id(destination),
        seq,
        cost,
        hops: 2,
        ttl: 0,
        flags: 0,
        signature: wire::OgmSignature::ZERO,
    });
    writer.finish().remove(0)
}

/// When node 1 sent `to` one-hop queries about `destination` since the recording started.
fn query_times(net: &Net, to: usize, destination: usize) -> Vec<Timestamp> {
    net.sent
        .iter()
        .filter(|(_, from, dest, _)| (*from, *dest) == (1, to))
        .flat_map(|(at, _, _, bytes)| {
            let queries = Packet::decode(bytes)
                .expect("valid packet")
                .messages
                .into_iter()
                .filter(|m| {
                    matches!(m, Message::SeqnoRequest(r)
                        if r.target == id(destination) && r.hop_limit == 1)
                })
                .count();
            std::iter::repeat_n(*at, queries)
        })
        .collect()
}

fn queries_to(net: &Net, to: usize, destination: usize) -> usize {
    query_times(net, to, destination).len()
}

fn step(net: &mut Net, ms: u64) {
    let until = net.now + Duration::from_millis(ms);
    net.run_until(until);
}

/// A converged `Net` in which node 1 routes towards destination 900 via node 0, which
/// advertised it (cost 100, sequence number 10).
fn node_1_routing_900_via_0(nodes: usize, edges: &[(usize, usize)]) -> Net {
    let mut net = Net::new(nodes, edges, RouterConfig::default());
    net.run_until(Timestamp::from_millis(1_500));
    net.inject(1, &advert_packet(0, 900, 10, 100));
    step(&mut net, 20);
    assert_eq!(net.next_hop(1, 900), Some(0));
    net
}

#[test]
fn neighbours_are_queried_again_when_the_last_advertisers_of_a_lost_route_withdraw() {
    // Node 1 in the middle of a star: 0 is its next hop towards 900; 2, 3 and 4 will
    // advertise routes it cannot use yet; 5 has a route too, but a worse one, which does not
    // fit among the three kept advertisements.
    let mut net = node_1_routing_900_via_0(6, &[(1, 0), (1, 2), (1, 3), (1, 4), (1, 5)]);
    net.record = true;
    // The route is lost and nobody else advertises it: every neighbour is queried once.
    net.inject(1, &advert_packet(0, 900, 10, wire::COST_INFINITE));
    step(&mut net, 5);
    assert_eq!(net.next_hop(1, 900), None);
    assert_eq!(queries_to(&net, 5, 900), 1);
    // Three neighbours answer with routes too expensive to be feasible, then a fourth with
    // an even worse one that is not kept; then the three withdraw theirs.
    for from in [2, 3, 4] {
        net.inject(1, &advert_packet(from, 900, 10, 400));
    }
    net.inject(1, &advert_packet(5, 900, 10, 600));
    step(&mut net, 5);
    for from in [2, 3, 4] {
        net.inject(1, &advert_packet(from, 900, 10, wire::COST_INFINITE));
    }
    step(&mut net, 900);
    assert!(
        queries_to(&net, 5, 900) >= 2,
        "node 5, whose advertisement was not kept, is asked again"
    );
}

#[test]
fn a_lost_route_is_asked_for_again_after_its_requests_ran_out() {
    // Node 1 between 0 and 2: 0 advertises a destination, then withdraws it. Node 2 has no
    // other route, so the one-hop queries and the retries find nothing and run out; a
    // neighbour that gets a route later does not advertise it unless it changes, so node 1
    // must ask again, at growing intervals, instead of waiting for a full-scope flood.
    let mut net = node_1_routing_900_via_0(3, &[(0, 1), (1, 2)]);
    net.inject(1, &advert_packet(0, 900, 10, wire::COST_INFINITE));
    let lost = net.now;
    step(&mut net, 1_500);
    assert_eq!(net.next_hop(1, 900), None);
    net.record = true;
    step(&mut net, 17_000);
    let asked: Vec<Duration> = query_times(&net, 2, 900)
        .into_iter()
        .map(|at| at.saturating_since(lost))
        .collect();
    assert!(
        asked.len() >= 3,
        "asked again after the first round ran out: {asked:?}"
    );
    assert!(
        asked.len() <= 6,
        "at growing intervals, not at every sweep: {asked:?}"
    );
    let gaps: Vec<Duration> = asked.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "each interval longer than the one before: {asked:?}"
    );
}

#[test]
fn more_lost_routes_than_pending_requests_are_all_asked_for_within_a_few_sweeps() {
    // Node 1 loses 6,000 routes at once, more than three times what its pending requests
    // hold; the destinations left over from one sweep's round go at the next sweep.
    let mut net = line_learning_many_routes(6_000);
    step(&mut net, 300);
    net.alive[0] = false;
    let lost = net.now;
    step(&mut net, 1_900);
    net.sent.clear();
    step(&mut net, 12_600);
    let mut asked = std::collections::HashSet::new();
    for (at, from, to, bytes) in &net.sent {
        if (*from, *to) != (1, 2) || at.saturating_since(lost) > Duration::from_millis(14_500) {
            continue;
        }
        for message in Packet::decode(bytes).expect("valid packet").messages {
            if let Message::SeqnoRequest(request) = message
                && request.hop_limit == 1
                && support::index(request.target) >= 1_000
            {
                asked.insert(request.target);
            }
        }
    }
    assert_eq!(
        asked.len(),
        6_000,
        "every lost route asked for again within 14.5 s of the loss (a round per sweep; \
         with a round only at each power of two, 16 s would pass)"
    );
}
