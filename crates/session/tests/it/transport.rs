//! Data packets: tampering, replay and reordering, rekeying with a grace period, expiry and
//! queue bounds.

use session::packet::DATA_HEADER_BYTES;
use session::{Dropped, Incoming, Outgoing, SessionConfig, SessionError};

use crate::support::{Pair, SECOND, T0};

#[test]
fn changing_any_byte_of_a_data_packet_is_detected() {
    let mut pair = Pair::new(SessionConfig::default());
    pair.establish(T0);
    let sealed = pair.a.seal(pair.b.id, b"integrity matters", T0);
    for position in 0..sealed.len() {
        for flip in [0x01, 0x80] {
            let mut tampered = sealed.clone();
            tampered[position] ^= flip;
            let result = pair
                .b
                .sessions
                .handle_incoming(&pair.dir, pair.a.id, &tampered, T0);
            assert!(
                result.is_err(),
                "byte {position} flipped by {flip:#x} was accepted"
            );
        }
    }
    // Truncations of every length are refused too.
    for length in 0..sealed.len() {
        assert!(
            pair.b
                .sessions
                .handle_incoming(&pair.dir, pair.a.id, &sealed[..length], T0)
                .is_err()
        );
    }
    let stats = pair.b.sessions.stats();
    assert!(stats.dropped_tampered > 0 && stats.dropped_malformed > 0);
    // Body and tag bytes all hit the AEAD check.
    assert!(stats.dropped_tampered >= 2 * (sealed.len() - DATA_HEADER_BYTES) as u64);
    // Nothing was consumed: the genuine packet still decrypts.
    assert_eq!(
        pair.b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &sealed, T0),
        Ok(Incoming::Data {
            peer: pair.a.id,
            plaintext: b"integrity matters".to_vec()
        })
    );
}

#[test]
fn replays_are_refused_and_reordering_within_the_window_is_accepted() {
    let mut pair = Pair::new(SessionConfig::default());
    pair.establish(T0);
    let packets: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| pair.a.seal(pair.b.id, &i.to_be_bytes(), T0))
        .collect();
    let deliver = |pair: &mut Pair, index: usize| {
        pair.b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &packets[index], T0)
    };
    // Deliver 2999 first, then walk backwards through the window.
    assert!(deliver(&mut pair, 2999).is_ok());
    assert!(deliver(&mut pair, 1500).is_ok());
    assert!(deliver(&mut pair, 2000).is_ok());
    assert_eq!(deliver(&mut pair, 2000), Err(Dropped::Replayed));
    assert_eq!(deliver(&mut pair, 2999), Err(Dropped::Replayed));
    // Counter 0 was the establishing packet's; these are 2048 or more behind the newest.
    assert_eq!(deliver(&mut pair, 100), Err(Dropped::TooOld));
    assert_eq!(deliver(&mut pair, 951), Err(Dropped::TooOld));
    assert!(deliver(&mut pair, 953).is_ok());
    let stats = pair.b.sessions.stats();
    assert_eq!((stats.dropped_replayed, stats.dropped_too_old), (2, 2));
}

#[test]
fn rekeying_keeps_in_flight_packets_decrypting_during_the_grace_period() {
    let config = SessionConfig {
        rekey_after_messages: 5,
        grace_us: 2 * SECOND,
        ..SessionConfig::default()
    };
    let mut pair = Pair::new(config);
    pair.establish(T0);
    let old = pair.a.sessions.session(&pair.b.id).expect("session");
    // Packets sealed under the old keys, in flight in both directions.
    let a_in_flight: Vec<Vec<u8>> = (0..3).map(|i| pair.a.seal(pair.b.id, &[i], T0)).collect();
    let b_in_flight: Vec<Vec<u8>> = (0..3).map(|i| pair.b.seal(pair.a.id, &[i], T0)).collect();
    // a's fifth packet passes the rekey threshold: it still goes out, and a handshake starts.
    let fifth = pair.a.seal(pair.b.id, b"fifth", T0);
    assert_eq!(pair.a.sessions.stats().handshakes_initiated, 2);
    let (_, at_b) = pair.pump(T0 + 1);
    assert!(at_b.iter().all(Result::is_ok), "{at_b:?}");
    let new = pair.a.sessions.session(&pair.b.id).expect("session");
    assert_ne!(new.local_index, old.local_index, "new keys took over");
    assert!(new.has_previous);
    assert_eq!(
        pair.b.sessions.session(&pair.a.id).expect("b").remote_index,
        new.local_index
    );

    // The in-flight old-key packets arrive after the switch: still accepted, each once.
    for (i, bytes) in a_in_flight.iter().chain([&fifth]).enumerate() {
        let result = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, bytes, T0 + SECOND);
        assert!(
            matches!(result, Ok(Incoming::Data { .. })),
            "a's old packet {i}: {result:?}"
        );
    }
    for bytes in &b_in_flight {
        let result = pair
            .a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, bytes, T0 + SECOND);
        assert!(matches!(result, Ok(Incoming::Data { .. })), "{result:?}");
    }
    assert_eq!(
        pair.b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &a_in_flight[0], T0 + SECOND),
        Err(Dropped::Replayed)
    );
    // New packets use the new keys both ways.
    let sealed = pair.b.seal(pair.a.id, b"new", T0 + SECOND);
    assert!(
        pair.a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &sealed, T0 + SECOND)
            .is_ok()
    );

    // After the grace period the previous keys are gone.
    let stale = b_in_flight[0].clone();
    pair.a.sessions.handle_timeout(T0 + 3 * SECOND);
    assert!(!pair.a.sessions.session(&pair.b.id).expect("a").has_previous);
    let result = pair
        .a
        .sessions
        .handle_incoming(&pair.dir, pair.b.id, &stale, T0 + 3 * SECOND);
    assert_eq!(result, Err(Dropped::UnknownSession));
    assert!(pair.a.sessions.stats().rekeys >= 1 && pair.b.sessions.stats().rekeys >= 1);
    pair.a.sessions.validate().expect("a valid");
    pair.b.sessions.validate().expect("b valid");
}

#[test]
fn time_based_rekey_and_expiry() {
    let config = SessionConfig::default();
    let mut pair = Pair::new(config.clone());
    pair.establish(T0);
    // Before the rekey time, no handshake.
    let _ = pair.a.seal(pair.b.id, b"x", T0 + 119 * SECOND);
    assert!(pair.a.drain().is_empty());
    // At the rekey time the packet is still sealed and a handshake goes out with it.
    let _ = pair.a.seal(pair.b.id, b"y", T0 + config.rekey_after_us);
    assert_eq!(pair.a.drain().len(), 2);

    // An idle pair: sessions expire at reject_after and the packets sealed before are refused.
    let mut idle = Pair::new(config.clone());
    idle.establish(T0);
    let sealed = idle.a.seal(idle.b.id, b"old", T0);
    let at = T0 + config.reject_after_us;
    assert_eq!(
        idle.b
            .sessions
            .handle_incoming(&idle.dir, idle.a.id, &sealed, at),
        Err(Dropped::Expired)
    );
    idle.a.sessions.handle_timeout(at);
    assert!(idle.a.sessions.session(&idle.b.id).is_none());
    assert_eq!(idle.a.sessions.stats().sessions_expired, 1);
    // Sending again starts a new handshake instead of using expired keys.
    assert_eq!(
        idle.a.sessions.encrypt(idle.b.id, b"again", at),
        Ok(Outgoing::Queued)
    );
    let (_, at_b) = idle.pump(at);
    assert!(at_b.contains(&Ok(Incoming::Data {
        peer: idle.a.id,
        plaintext: b"again".to_vec()
    })));
    // Forgotten entirely once idle for another period.
    let mut gone = Pair::new(config.clone());
    gone.establish(T0);
    gone.a.sessions.handle_timeout(T0 + config.reject_after_us);
    gone.a
        .sessions
        .handle_timeout(T0 + 2 * config.reject_after_us);
    assert_eq!(gone.a.sessions.peer_count(), 0);
    gone.a.sessions.validate().expect("valid");
}

#[test]
fn queues_and_tables_are_bounded() {
    let config = SessionConfig {
        queue_per_peer: 4,
        max_peers: 2,
        ..SessionConfig::default()
    };
    let mut pair = Pair::new(config.clone());
    for i in 0..4u8 {
        assert_eq!(
            pair.a.sessions.encrypt(pair.b.id, &[i], T0),
            Ok(Outgoing::Queued)
        );
    }
    assert_eq!(
        pair.a.sessions.encrypt(pair.b.id, b"x", T0),
        Err(SessionError::QueueFull)
    );
    assert_eq!(
        pair.a
            .sessions
            .encrypt(pair.b.id, &vec![0; session::MAX_PLAINTEXT_BYTES + 1], T0),
        Err(SessionError::TooLarge(session::MAX_PLAINTEXT_BYTES + 1))
    );
    assert_eq!(
        pair.a.sessions.encrypt(pair.a.id, b"x", T0),
        Err(SessionError::OwnNode)
    );
    // Two more peers: the least recently active one is forgotten with its queue.
    for n in 1..=2u64 {
        let _ = pair
            .a
            .sessions
            .encrypt(wire::NodeId::from_index(n), b"x", T0 + n);
    }
    assert_eq!(pair.a.sessions.peer_count(), 2);
    let stats = pair.a.sessions.stats();
    assert_eq!(stats.peers_evicted, 1);
    assert_eq!(stats.queue_dropped, 1 + 4);
    pair.a.sessions.validate().expect("valid");
}

#[test]
fn full_size_payloads_fit_the_packet_bound() {
    let mut pair = Pair::new(SessionConfig::default());
    pair.establish(T0);
    let payload = vec![0xAB; session::MAX_PLAINTEXT_BYTES];
    let sealed = pair.a.seal(pair.b.id, &payload, T0);
    assert_eq!(sealed.len(), session::MAX_PACKET_BYTES);
    assert_eq!(
        pair.b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &sealed, T0),
        Ok(Incoming::Data {
            peer: pair.a.id,
            plaintext: payload
        })
    );
}

#[test]
fn both_sides_rekeying_at_once_converge_on_one_new_session() {
    let config = SessionConfig::default();
    let mut pair = Pair::new(config.clone());
    pair.establish(T0);
    let old = pair.a.sessions.session(&pair.b.id).expect("a").local_index;
    let at = T0 + config.rekey_after_us;
    let from_a = pair.a.seal(pair.b.id, b"a", at);
    let from_b = pair.b.seal(pair.a.id, b"b", at);
    assert!(
        pair.b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &from_a, at)
            .is_ok()
    );
    assert!(
        pair.a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &from_b, at)
            .is_ok()
    );
    let (at_a, at_b) = pair.pump(at);
    assert!(
        at_a.iter().chain(&at_b).all(Result::is_ok),
        "{at_a:?} {at_b:?}"
    );
    let (a, b) = pair.agreed_session();
    assert_ne!(a.local_index, old);
    assert!(!a.has_next && !b.has_next);
    assert_eq!(
        a.initiated,
        pair.a.id < pair.b.id,
        "the smaller node's handshake won"
    );
    let later = at + config.grace_us + 1;
    pair.a.sessions.handle_timeout(later);
    pair.b.sessions.handle_timeout(later);
    let sealed = pair.b.seal(pair.a.id, b"after", later);
    assert!(matches!(
        pair.a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &sealed, later),
        Ok(Incoming::Data { .. })
    ));
    assert!(
        pair.a.drain().is_empty() && pair.b.drain().is_empty(),
        "no further handshakes"
    );
}
