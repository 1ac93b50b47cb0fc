//! A 4-node ring of real daemon processes: converge, kill a relay, see the source reroute
//! through the other side (checked through the API, by walking next hops), restart the relay.

use std::time::Duration;

use cli::localnet::{LocalNet, LocalNetOptions};

use crate::support::{binary, eventually};

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn ring_reroutes_around_a_killed_relay_and_takes_it_back() {
    // Ring 1-2-3-4-1 (positions 0..3): node 3 (position 2) is two hops from node 1 either way.
    let edges = [(0, 1), (1, 2), (2, 3), (3, 0)];
    let mut net = LocalNet::create(&binary(), 4, &edges, &LocalNetOptions::default()).unwrap();
    net.start_all().unwrap();
    net.wait_healthy(TIMEOUT, &|| false).unwrap();
    net.wait_converged(TIMEOUT, &|| false).unwrap();

    let (source, destination) = (0, 2);
    let path = eventually("a full path from node 1 to node 3", TIMEOUT, || {
        net.walk(source, destination).unwrap()
    });
    assert_eq!(path.len(), 3, "two hops: {path:?}");
    let relay = path[1];
    let other_side = if relay == 1 { 3 } else { 1 };
    let relay_id = net.node(relay).id;
    let relay_seq_before = net.node(relay).client.status().unwrap().own_seq.unwrap();

    net.kill(relay).unwrap();
    let destination_id = net.node(destination).id;
    let new_route = eventually("node 1 to forward around the dead relay", TIMEOUT, || {
        let routes = net.node(source).client.routes().unwrap();
        routes
            .into_iter()
            .find(|route| route.destination == destination_id && route.next_hop != relay_id)
    });
    assert_eq!(
        new_route.next_hop,
        net.node(other_side).id,
        "the only other way is the other side of the ring"
    );
    let path_after = eventually("a full path avoiding the relay", TIMEOUT, || {
        net.walk(source, destination).unwrap()
    });
    assert_eq!(path_after, vec![source, other_side, destination]);
    eventually("node 1 to see the relay as dead", TIMEOUT, || {
        let peers = net.node(source).client.peers().unwrap();
        peers
            .iter()
            .all(|peer| peer.id != relay_id || !peer.alive)
            .then_some(())
    });

    net.start(relay).unwrap();
    net.wait_healthy(TIMEOUT, &|| false).unwrap();
    let status = net.node(relay).client.status().unwrap();
    assert_eq!(status.node_id, relay_id, "same data dir, same identity");
    net.wait_converged(TIMEOUT, &|| false).unwrap();
    let seq_after = eventually("the restarted relay to announce itself", TIMEOUT, || {
        net.node(relay).client.status().unwrap().own_seq
    });
    assert!(
        seq_after > relay_seq_before,
        "restarted relay continues above its old sequence numbers ({seq_after} <= {relay_seq_before})"
    );
}
