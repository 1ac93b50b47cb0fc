//! Signed OGMs in the routing core with real Ed25519 keys: a signed mesh converges and
//! reroutes; forged, replayed, revoked, expired and unknown-originator OGMs are dropped and
//! counted; an OGM held for its originator's key is accepted once the key arrives.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use routing::{OgmAuth, OgmSigner, OgmVerifier, Router, RouterConfig, Timestamp, Verdict};
use support::{Net, id};
use wire::{Message, NodeId, Ogm, OgmSignature, Packet, ogm_signed_part};

/// What the test's directory knows about a node.
#[derive(Clone)]
enum KeyState {
    Known(VerifyingKey),
    Revoked,
    Expired(VerifyingKey),
}

/// The keys every router verifies with, shared so a test can add or revoke keys mid-run.
type KeyBook = Arc<Mutex<HashMap<NodeId, KeyState>>>;

struct Signer25519(SigningKey);

impl OgmSigner for Signer25519 {
    fn sign(&self, signed_part: &[u8]) -> OgmSignature {
        OgmSignature(self.0.sign(signed_part).to_bytes())
    }
}

struct BookVerifier(KeyBook);

impl OgmVerifier for BookVerifier {
    fn verify(&self, originator: &NodeId, signed_part: &[u8], signature: &OgmSignature) -> Verdict {
        let state = self
            .0
            .lock()
            .expect("key book lock")
            .get(originator)
            .cloned();
        let key = match state {
            None => return Verdict::UnknownKey,
            Some(KeyState::Revoked) => return Verdict::Revoked,
            Some(KeyState::Expired(key)) => {
                let valid = key
                    .verify(
                        signed_part,
                        &ed25519_dalek::Signature::from_bytes(&signature.0),
                    )
                    .is_ok();
                return if valid {
                    Verdict::Expired
                } else {
                    Verdict::Bad
                };
            }
            Some(KeyState::Known(key)) => key,
        };
        match key.verify(
            signed_part,
            &ed25519_dalek::Signature::from_bytes(&signature.0),
        ) {
            Ok(()) => Verdict::Valid,
            Err(_) => Verdict::Bad,
        }
    }
}

fn signing_key(node: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(node as u64 + 1).to_be_bytes());
    seed[31] = 0x6b;
    SigningKey::from_bytes(&seed)
}

fn sign(node: usize, seq: u32) -> OgmSignature {
    OgmSignature(
        signing_key(node)
            .sign(&ogm_signed_part(&id(node), seq))
            .to_bytes(),
    )
}

/// A mesh of signed routers; the book knows the keys of `known` nodes.
fn signed_net(nodes: usize, edges: &[(usize, usize)], known: usize) -> (Net, KeyBook) {
    let book: KeyBook = Arc::new(Mutex::new(HashMap::new()));
    for node in 0..known {
        book.lock()
            .expect("key book lock")
            .insert(id(node), KeyState::Known(signing_key(node).verifying_key()));
    }
    let mut net = Net::new(nodes, edges, RouterConfig::default());
    for (node, router) in net.routers.iter_mut().enumerate() {
        router.enable_signed_ogms(OgmAuth {
            signer: Box::new(Signer25519(signing_key(node))),
            verifier: Box::new(BookVerifier(book.clone())),
        });
    }
    (net, book)
}

fn ogm_packet(sender: usize, ogm: Ogm) -> Vec<u8> {
    Packet {
        sender: id(sender),
        messages: vec![Message::Ogms(vec![ogm])],
        unknown_tlvs: 0,
    }
    .encode()
}

/// An OGM from `originator` with `seq`, as a neighbour would relay it.
fn relayed(originator: NodeId, seq: u32, signature: OgmSignature) -> Ogm {
    Ogm {
        originator,
        seq,
        cost: 200,
        hops: 1,
        ttl: 0,
        flags: 0,
        signature,
    }
}

fn feed(router: &mut Router, now: Timestamp, bytes: &[u8]) {
    router
        .handle_datagram(now, bytes)
        .expect("well-formed packet");
    while router.poll_transmit().is_some() {}
    while router.poll_event().is_some() {}
}

#[test]
fn a_signed_ring_converges_verifies_each_number_once_and_reroutes() {
    let edges: Vec<(usize, usize)> = (0..6).map(|i| (i, (i + 1) % 6)).collect();
    let (mut net, _book) = signed_net(6, &edges, 6);
    net.run_until(Timestamp::from_millis(3_000));
    assert!(net.all_pairs_routed(), "every pair routed with signed OGMs");
    let stats = net.routers[0].stats().clone();
    assert!(stats.ogm_signatures_verified > 0);
    assert!(
        stats.ogm_signature_cache_hits > 0,
        "relayed copies of a verified number are not verified again"
    );
    assert_eq!(
        (
            stats.dropped_ogm_forged,
            stats.dropped_ogm_replayed,
            stats.dropped_ogm_unknown_originator,
            stats.ogms_unsigned_skipped
        ),
        (0, 0, 0, 0)
    );
    net.cut(0, 1);
    net.run_until(Timestamp::from_millis(4_500));
    assert!(net.all_pairs_routed(), "rerouted around the cut link");
    assert_eq!(net.path(0, 1).map(|path| path.len()), Some(6));
    for router in &net.routers {
        assert_eq!(router.stats().ogms_unsigned_skipped, 0);
        assert_eq!(router.stats().dropped_ogm_forged, 0);
    }
}

#[test]
fn forged_replayed_revoked_and_expired_ogms_are_dropped_and_counted_and_a_good_one_accepted() {
    // A line 0 - 1 - 2: router 0 hears about 2 from 1.
    let (mut net, book) = signed_net(3, &[(0, 1), (1, 2)], 3);
    net.run_until(Timestamp::from_millis(2_000));
    let now = Timestamp::from_millis(2_000);
    let newest = net.routers[0].newest_seq(&id(2)).expect("2 is known");
    let router = &mut net.routers[0];

    // Forged: a far newer number for node 2 that node 2 never signed. Accepted, it would
    // make every honest OGM of node 2 look old.
    let forged_seq = newest.wrapping_add(1_000_000);
    feed(
        router,
        now,
        &ogm_packet(1, relayed(id(2), forged_seq, sign(1, forged_seq))),
    );
    assert_eq!(router.stats().dropped_ogm_forged, 1);
    assert_eq!(
        router.newest_seq(&id(2)),
        Some(newest),
        "forgery changed nothing"
    );
    let mut flipped = sign(2, forged_seq);
    flipped.0[5] ^= 1;
    feed(
        router,
        now,
        &ogm_packet(1, relayed(id(2), forged_seq, flipped)),
    );
    assert_eq!(
        router.stats().dropped_ogm_forged,
        2,
        "one flipped bit is a forgery"
    );
    assert_eq!(router.newest_seq(&id(2)), Some(newest));

    // Good: node 2's own signature of the next number.
    let verified_before = router.stats().ogm_signatures_verified;
    let good_seq = newest.wrapping_add(1);
    feed(
        router,
        now,
        &ogm_packet(1, relayed(id(2), good_seq, sign(2, good_seq))),
    );
    assert_eq!(router.newest_seq(&id(2)), Some(good_seq));
    assert_eq!(router.stats().ogm_signatures_verified, verified_before + 1);
    // The same number again (another relay's copy) is a cache hit, not a verification.
    let hits_before = router.stats().ogm_signature_cache_hits;
    feed(
        router,
        now,
        &ogm_packet(1, relayed(id(2), good_seq, sign(2, good_seq))),
    );
    assert_eq!(router.stats().ogm_signatures_verified, verified_before + 1);
    assert_eq!(router.stats().ogm_signature_cache_hits, hits_before + 1);

    // Replayed: a genuinely signed number far behind the newest.
    let old_seq = good_seq.wrapping_sub(1_000);
    feed(
        router,
        now,
        &ogm_packet(1, relayed(id(2), old_seq, sign(2, old_seq))),
    );
    assert_eq!(router.stats().dropped_ogm_replayed, 1);
    assert_eq!(router.newest_seq(&id(2)), Some(good_seq));

    // Expired binding, then revoked: new numbers are refused.
    let expired_seq = good_seq.wrapping_add(1);
    book.lock()
        .expect("key book lock")
        .insert(id(2), KeyState::Expired(signing_key(2).verifying_key()));
    feed(
        router,
        now,
        &ogm_packet(1, relayed(id(2), expired_seq, sign(2, expired_seq))),
    );
    assert_eq!(router.stats().dropped_ogm_stale, 1);
    book.lock()
        .expect("key book lock")
        .insert(id(2), KeyState::Revoked);
    feed(
        router,
        now,
        &ogm_packet(1, relayed(id(2), expired_seq, sign(2, expired_seq))),
    );
    assert_eq!(router.stats().dropped_ogm_revoked, 1);
    assert_eq!(router.newest_seq(&id(2)), Some(good_seq));
}

#[test]
fn an_unknown_originator_waits_for_its_key_and_is_dropped_if_it_never_comes() {
    let (mut net, book) = signed_net(2, &[(0, 1)], 2);
    net.run_until(Timestamp::from_millis(2_000));
    let mut now = Timestamp::from_millis(2_000);
    let router = &mut net.routers[0];
    // Node 7 exists (it has a key) but its record has not reached node 0 yet.
    feed(router, now, &ogm_packet(1, relayed(id(7), 40, sign(7, 40))));
    // Node 8 never gets a record.
    feed(router, now, &ogm_packet(1, relayed(id(8), 40, sign(8, 40))));
    assert_eq!(router.stats().ogms_held, 2);
    assert_eq!(
        router.newest_seq(&id(7)),
        None,
        "nothing is used before it verifies"
    );
    assert!(
        router
            .routes()
            .iter()
            .all(|route| route.destination != id(7))
    );

    book.lock()
        .expect("key book lock")
        .insert(id(7), KeyState::Known(signing_key(7).verifying_key()));
    now = now + Duration::from_millis(50);
    router.handle_keys_learned(now);
    assert_eq!(router.stats().ogms_held_accepted, 1);
    assert_eq!(router.newest_seq(&id(7)), Some(40));
    assert_eq!(
        router.next_hop(&id(7)),
        Some(id(1)),
        "the held route is used"
    );

    // Node 8's OGM expires unverified, 5 s after it arrived: being checked again when other
    // records arrive does not extend its stay.
    now = Timestamp::from_millis(6_500);
    router.handle_keys_learned(now);
    assert_eq!(router.stats().dropped_ogm_unknown_originator, 0);
    now = Timestamp::from_millis(7_100);
    router.handle_timeout(now);
    assert_eq!(router.stats().dropped_ogm_unknown_originator, 1);
    assert_eq!(router.newest_seq(&id(8)), None);
}

#[test]
fn an_unsigned_router_ogm_is_a_forgery_to_a_signed_one() {
    let (mut net, _book) = signed_net(2, &[(0, 1)], 2);
    net.run_until(Timestamp::from_millis(1_000));
    let newest = net.routers[0].newest_seq(&id(1)).expect("1 is known");
    let router = &mut net.routers[0];
    let unsigned = relayed(id(1), newest.wrapping_add(1), OgmSignature::ZERO);
    feed(
        router,
        Timestamp::from_millis(1_000),
        &ogm_packet(1, unsigned),
    );
    assert_eq!(router.stats().dropped_ogm_forged, 1);
    assert_eq!(router.newest_seq(&id(1)), Some(newest));
}

#[test]
fn a_revoked_originator_loses_its_routes_and_they_do_not_come_back() {
    let (mut net, book) = signed_net(3, &[(0, 1), (1, 2)], 3);
    net.run_until(Timestamp::from_millis(2_000));
    assert_eq!(net.next_hop(0, 2), Some(1));
    book.lock()
        .expect("key book lock")
        .insert(id(2), KeyState::Revoked);
    // Only node 0 has applied the revocation; node 1 still relays node 2's routes.
    let now = net.now;
    net.routers[0].handle_originator_revoked(now, &id(2));
    assert_eq!(net.next_hop(0, 2), None, "dropped at once");
    net.run_until(Timestamp::from_millis(6_000));
    assert_eq!(
        net.next_hop(0, 2),
        None,
        "relayed advertisements are refused"
    );
    assert!(net.routers[0].stats().dropped_ogm_revoked > 0);
    assert_eq!(net.next_hop(0, 1), Some(1), "other routes are untouched");
}
