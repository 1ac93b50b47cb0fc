//! Signed OGMs end to end: a real trust-domain member, linked to a running daemon over an
//! authenticated QUIC link, sends crafted OGMs (forged for another node, a genuinely signed
//! but replayed old number, an unknown originator). The daemon drops and counts each, and its
//! route to the impersonated node is untouched.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cli::localnet::{LocalNet, LocalNetOptions};
use identity::tls::{CertStore, KxPolicy};
use identity::{CertificateAuthority, KeySet, Policy, VerifierState};
use node::identity::NodeIdentity;
use node::{NodeConfig, RouteView};
use transport::{LinkEndpoint, LinkEvent, LinkSettings};
use wire::{Message, NodeId, Ogm, OgmSignature, Packet, ogm_signed_part};

use crate::support::{binary, eventually};

const TIMEOUT: Duration = Duration::from_secs(30);

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

fn route_to(net: &LocalNet, from: usize, to: usize) -> Option<RouteView> {
    route_to_id(net, from, net.node(to).id)
}

fn router_counter(net: &LocalNet, position: usize, name: &str) -> u64 {
    let status = net.node(position).client.status().expect("status");
    *status
        .router
        .get(name)
        .unwrap_or_else(|| panic!("/api/v1/status has no router counter {name}"))
}

/// One OGM as a relay would send it.
fn ogm(originator: NodeId, seq: u32, signature: OgmSignature) -> Ogm {
    Ogm {
        originator,
        seq,
        cost: 0,
        hops: 0,
        ttl: 255,
        flags: 0,
        signature,
    }
}

#[test]
fn ogms_forged_replayed_or_of_unknown_originators_from_a_member_are_dropped_and_counted() {
    let mut net = LocalNet::create(&binary(), 2, &[(0, 1)], &LocalNetOptions::default()).unwrap();
    net.start_all().unwrap();
    net.wait_healthy(TIMEOUT, &|| false).unwrap();
    net.wait_converged(TIMEOUT, &|| false).unwrap();
    // Both daemons verify each other's OGMs: the routes exist only because they did.
    assert!(router_counter(&net, 1, "ogm_signatures_verified") > 0);
    assert_eq!(router_counter(&net, 1, "dropped_ogm_forged"), 0);

    // A legitimate member of the trust domain: its keys, an SVID from the domain's CA.
    let ca_config = NodeConfig::load(&net.node(0).config_path).unwrap();
    let ca = CertificateAuthority::load(&node::membership::ca_dir(&ca_config)).unwrap();
    let member = KeySet::generate().unwrap();
    let now = unix_seconds();
    let token = ca.create_token(600, now, net.node(0).udp).unwrap();
    let svid = ca
        .redeem(
            &token.id,
            &token.secret,
            member.public().ed25519,
            member.public().ml_dsa_digest(),
            now,
            3600,
        )
        .unwrap();
    let bundle = ca.bundle().unwrap();
    let certificate = CertStore::new(&member, &svid, &bundle.ca_certificate).unwrap();
    let state = VerifierState::new(bundle, Policy::default());
    // The impersonated node's real key, as if an old signed OGM of it had been recorded.
    let victim_keys = NodeIdentity::load(&ca_config.key_path).unwrap().into_keys();
    let victim = net.node(0).id;
    let target = net.node(1).udp;
    let target_id = net.node(1).id;

    let seq_before = route_to(&net, 1, 0).expect("node 2 routes to node 1").seq;
    let forged_seq = seq_before.wrapping_add(100_000);
    let forged = ogm(
        victim,
        forged_seq,
        OgmSignature(member.sign_ed25519(&ogm_signed_part(&victim, forged_seq))),
    );
    let replayed_seq = seq_before.wrapping_sub(10_000);
    let replayed = ogm(
        victim,
        replayed_seq,
        OgmSignature(victim_keys.sign_ed25519(&ogm_signed_part(&victim, replayed_seq))),
    );
    let stranger = NodeId::from_index(0xdead_beef);
    let unknown = ogm(
        stranger,
        7,
        OgmSignature(member.sign_ed25519(&ogm_signed_part(&stranger, 7))),
    );
    let packet = Packet {
        sender: member.node_id(),
        messages: vec![Message::Ogms(vec![forged, replayed, unknown])],
        unknown_tlvs: 0,
    }
    .encode();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (links, mut events) = LinkEndpoint::bind(
            LinkSettings {
                listen: "127.0.0.1:0".parse().unwrap(),
                kx: KxPolicy::default(),
                accepts_joins: false,
            },
            state,
            certificate,
        )
        .unwrap();
        links.dial(target, Some(target_id));
        let deadline = Instant::now() + TIMEOUT;
        let connection = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Some(LinkEvent::Up { link, connection })) if link.node_id() == target_id => {
                    break connection;
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => panic!("no link to node 2 within {TIMEOUT:?}"),
            }
        };
        // Datagrams may be lost; resend until the daemon has counted all three kinds.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(links.send_datagram(&connection, &packet), "datagram sent");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let counted = ["dropped_ogm_forged", "dropped_ogm_replayed", "ogms_held"]
                .iter()
                .all(|name| router_counter(&net, 1, name) > 0);
            if counted {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the crafted OGMs were not all counted"
            );
        }
        links.close();
    });

    let route = route_to(&net, 1, 0).expect("the route to node 1 survives");
    assert_eq!(route.next_hop, victim, "still the direct link");
    assert!(
        route.seq.wrapping_sub(seq_before) < 1_000,
        "the forged sequence number {forged_seq} was not taken (route has {})",
        route.seq
    );
    assert!(
        route_to_id(&net, 1, stranger).is_none(),
        "no route to an originator nobody vouches for"
    );
    // The unknown originator's OGM is dropped once its hold time passes unverified.
    eventually("the held OGM to be dropped as unknown", TIMEOUT, || {
        (router_counter(&net, 1, "dropped_ogm_unknown_originator") > 0).then_some(())
    });
    net.stop_all();
}

fn route_to_id(net: &LocalNet, from: usize, destination: NodeId) -> Option<RouteView> {
    let routes = net.node(from).client.routes().ok()?;
    routes
        .into_iter()
        .find(|route| route.destination == destination)
}
