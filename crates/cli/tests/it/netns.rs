//! Multicast discovery for real: two daemons in separate network namespaces joined by a veth
//! pair, with no static peers, must find each other through the IPv6 link-local group and link
//! over link-local addresses.
//!
//! Needs root (CAP_NET_ADMIN), iproute2's `ip` and /dev/net/tun, as CI has (`.ci/run` installs
//! iproute2); without them the test says it was skipped and passes. Traffic stays inside the
//! namespaces the harness creates; everything is deleted afterwards.

use cli::netns::{NetnsMesh, line, unavailable};
use node::PeerView;

use crate::support::binary;

#[test]
fn daemons_on_a_veth_link_discover_each_other_by_multicast() {
    if let Some(reason) = unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    // The harness gives the nodes no static peers: interfaces only, so links come from adverts.
    let mesh =
        NetnsMesh::start(&binary(), 2, &line(2), "").unwrap_or_else(|error| panic!("{error}"));
    for position in 0..2 {
        let other = mesh.nodes()[1 - position].id;
        let peers: Vec<PeerView> =
            serde_json::from_value(mesh.api(position, "peers").unwrap()).unwrap();
        let peer = peers
            .iter()
            .find(|peer| peer.id == other && peer.alive)
            .unwrap_or_else(|| {
                panic!(
                    "node {} does not see the other alive: {peers:?}",
                    position + 1
                )
            });
        let address = peer.address.expect("address of the link");
        assert!(
            matches!(address, std::net::SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() && v6.scope_id() != 0),
            "neighbour reached at its link-local address with a scope id: {address}; log: {}",
            mesh.log_tail(position)
        );
    }
}
