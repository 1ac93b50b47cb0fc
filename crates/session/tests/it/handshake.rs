//! Handshakes: establishment both ways, simultaneous initiations, men in the middle, replays of
//! initiations, retries and timeouts.

use session::packet::{self, Init, Packet, Response};
use session::{Dropped, Incoming, Outgoing, SessionConfig};

use crate::support::{Node, Pair, SECOND, T0, directory, payloads};

#[test]
fn handshake_then_data_both_ways() {
    let mut pair = Pair::new(SessionConfig::default());
    assert_eq!(
        pair.a.sessions.encrypt(pair.b.id, b"first", T0),
        Ok(Outgoing::Queued)
    );
    assert_eq!(
        pair.a.sessions.encrypt(pair.b.id, b"second", T0),
        Ok(Outgoing::Queued)
    );
    let handshake = pair.a.drain();
    assert_eq!(handshake.len(), 2, "an initiation is two fragments");
    assert!(
        handshake
            .iter()
            .all(|t| t.bytes.len() == packet::INIT_FRAGMENT_BYTES)
    );
    for t in &handshake {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &t.bytes, T0);
    }
    let response = pair.b.drain();
    assert_eq!(response.len(), 1);
    assert_eq!(response[0].bytes.len(), packet::RESPONSE_BYTES);
    // The responder holds its keys back until the initiator uses them.
    assert_eq!(
        pair.b.sessions.encrypt(pair.a.id, b"early", T0),
        Ok(Outgoing::Queued)
    );
    assert_eq!(
        pair.a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &response[0].bytes, T0),
        Ok(Incoming::Established { peer: pair.b.id })
    );
    let (at_a, at_b) = pair.pump(T0);
    assert_eq!(payloads(&at_b), vec![b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(payloads(&at_a), vec![b"early".to_vec()]);

    let sealed = pair.b.seal(pair.a.id, b"reply", T0 + 1);
    assert_eq!(
        pair.a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &sealed, T0 + 1),
        Ok(Incoming::Data {
            peer: pair.b.id,
            plaintext: b"reply".to_vec()
        })
    );
    let (a, b) = pair.agreed_session();
    assert!(a.initiated && !b.initiated);
    assert_eq!(pair.a.sessions.stats().handshakes_completed, 1);
    assert_eq!(pair.b.sessions.stats().handshakes_confirmed, 1);
    assert_eq!(
        pair.a.sessions.stats().dropped_total() + pair.b.sessions.stats().dropped_total(),
        0
    );
    pair.a.sessions.validate().expect("a valid");
    pair.b.sessions.validate().expect("b valid");
}

#[test]
fn simultaneous_handshakes_converge_on_the_smaller_nodes_session() {
    // Fresh keys each round, so both orders of the two node ids occur.
    for _ in 0..4 {
        let mut pair = Pair::new(SessionConfig::default());
        assert_eq!(
            pair.a.sessions.encrypt(pair.b.id, b"from a", T0),
            Ok(Outgoing::Queued)
        );
        assert_eq!(
            pair.b.sessions.encrypt(pair.a.id, b"from b", T0),
            Ok(Outgoing::Queued)
        );
        let (at_a, at_b) = pair.pump(T0);
        assert_eq!(payloads(&at_b), vec![b"from a".to_vec()]);
        assert_eq!(payloads(&at_a), vec![b"from b".to_vec()]);
        let (a, b) = pair.agreed_session();
        let a_is_smaller = pair.a.id < pair.b.id;
        assert_eq!(
            a.initiated, a_is_smaller,
            "the smaller node's initiation wins"
        );
        assert_eq!(b.initiated, !a_is_smaller);
        assert!(!a.has_next && !b.has_next, "no second session left pending");
        let collisions = pair.a.sessions.stats().handshake_collisions
            + pair.b.sessions.stats().handshake_collisions;
        assert_eq!(collisions, 2, "each side saw the crossing once");
        // Later traffic flows on that one session both ways.
        let sealed = pair.a.seal(pair.b.id, b"after", T0 + 1);
        assert!(
            pair.b
                .sessions
                .handle_incoming(&pair.dir, pair.a.id, &sealed, T0 + 1)
                .is_ok()
        );
        let sealed = pair.b.seal(pair.a.id, b"after", T0 + 1);
        assert!(
            pair.a
                .sessions
                .handle_incoming(&pair.dir, pair.b.id, &sealed, T0 + 1)
                .is_ok()
        );
        pair.a.sessions.validate().expect("a valid");
        pair.b.sessions.validate().expect("b valid");
    }
}

/// A man in the middle relays the handshake but substitutes its own ephemeral keys, so it
/// could read the traffic; it cannot sign for either node.
#[test]
fn substituted_ephemeral_keys_are_refused() {
    let mut pair = Pair::new(SessionConfig::default());
    let mallory = Node::new(9, SessionConfig::default());
    let _ = pair.a.sessions.encrypt(pair.b.id, b"secret", T0);
    let fragments = pair.a.drain();
    let init_bytes = reassembled(&fragments[0].bytes, &fragments[1].bytes);
    let mut init = Init::decode(&init_bytes).expect("a's initiation decodes");

    // Mallory's own X25519 key: b refuses the initiation.
    init.x25519 = [0x42; 32];
    for fragment in init.fragments() {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &fragment, T0);
    }
    assert_eq!(pair.b.sessions.stats().dropped_bad_signature, 1);
    // Mallory's own ML-KEM key, and re-signed with Mallory's node key: still refused.
    let mut init = Init::decode(&init_bytes).expect("decodes");
    init.ml_kem_ek = session::crypto::KemSecret::generate()
        .expect("keygen")
        .encapsulation_key;
    init.signature = session::crypto::sign_init(&*mallory.keys, &init);
    for fragment in init.fragments() {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &fragment, T0);
    }
    assert_eq!(pair.b.sessions.stats().dropped_bad_signature, 2);
    assert!(pair.b.drain().is_empty(), "nothing answered");
    assert_eq!(
        pair.b.sessions.peer_count(),
        0,
        "no state for forged initiations"
    );

    // The genuine initiation goes through; Mallory swaps the responder's X25519 key.
    for t in &fragments {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &t.bytes, T0);
    }
    let response = pair.b.drain().remove(0);
    let Ok(Packet::Response(mut forged)) = packet::decode(&response.bytes) else {
        panic!("a response");
    };
    forged.x25519 = [0x42; 32];
    assert_eq!(
        pair.a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &forged.encode(), T0),
        Err(Dropped::BadSignature)
    );
    // And its ciphertext.
    let Ok(Packet::Response(mut forged)) = packet::decode(&response.bytes) else {
        panic!("a response");
    };
    forged.ml_kem_ct[0] ^= 1;
    assert_eq!(
        pair.a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &forged.encode(), T0),
        Err(Dropped::BadSignature)
    );
    assert!(pair.a.sessions.session(&pair.b.id).is_none());
    // The genuine response still completes the handshake afterwards.
    assert_eq!(
        pair.a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &response.bytes, T0),
        Ok(Incoming::Established { peer: pair.b.id })
    );
}

#[test]
fn initiations_from_unknown_or_impersonated_nodes_are_refused() {
    let mut pair = Pair::new(SessionConfig::default());
    let mut stranger = Node::new(7, SessionConfig::default());
    let _ = stranger.sessions.encrypt(pair.b.id, b"hi", T0);
    for t in stranger.drain() {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, stranger.id, &t.bytes, T0);
    }
    assert_eq!(pair.b.sessions.stats().dropped_unknown_peer, 1);

    // The stranger claims to be a: it cannot sign as a.
    let _ = pair.a.sessions.encrypt(pair.b.id, b"x", T0);
    let fragments = pair.a.drain();
    let mut init =
        Init::decode(&reassembled(&fragments[0].bytes, &fragments[1].bytes)).expect("ok");
    init.signature = session::crypto::sign_init(&*stranger.keys, &init);
    for fragment in init.fragments() {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &fragment, T0);
    }
    assert_eq!(pair.b.sessions.stats().dropped_bad_signature, 1);

    // A directory entry with keys that do not derive the node id counts as unknown.
    let mut lying = pair.dir.clone();
    lying.insert(pair.a.id, stranger.identity());
    for t in &fragments {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&lying, pair.a.id, &t.bytes, T0);
    }
    assert_eq!(pair.b.sessions.stats().dropped_unknown_peer, 2);

    // An initiation relayed under another source, or addressed to another node.
    let third = Node::new(8, SessionConfig::default());
    for t in &fragments {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, third.id, &t.bytes, T0);
    }
    assert_eq!(pair.b.sessions.stats().dropped_misdirected, 1);
    assert!(pair.b.drain().is_empty());
    assert_eq!(pair.b.sessions.peer_count(), 0);
}

#[test]
fn a_replayed_initiation_is_refused() {
    let mut pair = Pair::new(SessionConfig::default());
    let _ = pair.a.sessions.encrypt(pair.b.id, b"x", T0);
    let fragments = pair.a.drain();
    for t in &fragments {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &t.bytes, T0);
    }
    assert_eq!(pair.b.drain().len(), 1);
    for t in &fragments {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &t.bytes, T0 + SECOND);
    }
    assert_eq!(pair.b.sessions.stats().dropped_stale_init, 1);
    assert!(pair.b.drain().is_empty(), "a replay gets no response");
}

#[test]
fn unanswered_handshakes_are_retried_then_given_up() {
    let config = SessionConfig {
        handshake_attempts: 3,
        ..SessionConfig::default()
    };
    let mut pair = Pair::new(config);
    let _ = pair.a.sessions.encrypt(pair.b.id, b"lost", T0);
    assert_eq!(pair.a.drain().len(), 2);
    assert_eq!(pair.a.sessions.poll_timeout(), Some(T0 + SECOND));
    pair.a.sessions.handle_timeout(T0 + SECOND);
    let retry = pair.a.drain();
    assert_eq!(retry.len(), 2, "a fresh initiation");
    pair.a.sessions.handle_timeout(T0 + 2 * SECOND);
    assert_eq!(pair.a.drain().len(), 2);
    pair.a.sessions.handle_timeout(T0 + 3 * SECOND);
    assert!(pair.a.drain().is_empty());
    let stats = pair.a.sessions.stats();
    assert_eq!(
        (
            stats.handshake_retries,
            stats.handshake_timeouts,
            stats.queue_dropped
        ),
        (2, 1, 1)
    );
    pair.a.sessions.validate().expect("valid");

    // The second attempt's answer arriving late is for a handshake already replaced.
    for t in &retry {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &t.bytes, T0);
    }
    let late = pair.b.drain();
    assert_eq!(
        pair.a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &late[0].bytes, T0 + 3 * SECOND),
        Err(Dropped::UnknownSession)
    );
}

#[test]
fn a_three_node_mesh_keeps_sessions_apart() {
    let mut a = Node::new(1, SessionConfig::default());
    let mut b = Node::new(2, SessionConfig::default());
    let mut c = Node::new(3, SessionConfig::default());
    let dir = directory(&[&a, &b, &c]);
    let _ = a.sessions.encrypt(b.id, b"to b", T0);
    let _ = a.sessions.encrypt(c.id, b"to c", T0);
    let mut delivered = Vec::new();
    for _ in 0..10 {
        let mut moved = false;
        for t in a.drain() {
            moved = true;
            let target = if t.to == b.id { &mut b } else { &mut c };
            delivered.push((
                t.to,
                target.sessions.handle_incoming(&dir, a.id, &t.bytes, T0),
            ));
        }
        for (node, peer_id) in [(&mut b, a.id), (&mut c, a.id)] {
            for t in node.drain() {
                moved = true;
                assert_eq!(t.to, peer_id);
                let _ = a.sessions.handle_incoming(&dir, node.id, &t.bytes, T0);
            }
        }
        if !moved {
            break;
        }
    }
    assert!(delivered.contains(&(
        b.id,
        Ok(Incoming::Data {
            peer: a.id,
            plaintext: b"to b".to_vec()
        })
    )));
    assert!(delivered.contains(&(
        c.id,
        Ok(Incoming::Data {
            peer: a.id,
            plaintext: b"to c".to_vec()
        })
    )));
    // A packet sealed for b and handed to c under a's name is refused by c.
    let sealed = a.seal(b.id, b"only b", T0);
    assert_eq!(
        c.sessions.handle_incoming(&dir, a.id, &sealed, T0),
        Err(Dropped::UnknownSession)
    );
}

fn reassembled(first: &[u8], second: &[u8]) -> Vec<u8> {
    let (Ok(Packet::InitFragment(x)), Ok(Packet::InitFragment(y))) =
        (packet::decode(first), packet::decode(second))
    else {
        panic!("two fragments");
    };
    packet::reassemble(x.initiator_index, x.payload, y.payload)
}

#[test]
fn responses_are_the_documented_size() {
    assert_eq!(packet::RESPONSE_BYTES, 1194);
    let response = Response {
        responder_index: 0,
        initiator_index: 0,
        x25519: [0; 32],
        ml_kem_ct: vec![0; packet::ML_KEM_CT_BYTES],
        signature: [0; 64],
    };
    assert_eq!(response.encode().len(), packet::RESPONSE_BYTES);
}
