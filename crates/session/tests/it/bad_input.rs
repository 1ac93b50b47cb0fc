//! Malformed packets of every kind are dropped, counted by kind, and change no state.

use session::packet::{self, TYPE_DATA, VERSION};
use session::{Dropped, SessionConfig};

use crate::support::{Pair, T0};

#[test]
fn each_kind_of_bad_packet_is_dropped_and_counted() {
    let mut pair = Pair::new(SessionConfig::default());
    pair.establish(T0);
    let sealed = pair.a.seal(pair.b.id, b"payload", T0);
    let from = pair.a.id;
    let cases: Vec<(&str, Vec<u8>, Dropped)> = vec![
        ("empty", vec![], Dropped::Malformed),
        ("one byte", vec![VERSION], Dropped::Malformed),
        (
            "oversized",
            vec![0; packet::MAX_PACKET_BYTES + 1],
            Dropped::Oversized,
        ),
        (
            "wrong version",
            [&[VERSION - 1][..], &sealed[1..]].concat(),
            Dropped::Version,
        ),
        (
            "unknown type",
            [&[VERSION, 0x7f][..], &sealed[2..]].concat(),
            Dropped::Malformed,
        ),
        (
            "short data",
            sealed[..packet::DATA_HEADER_BYTES + 15].to_vec(),
            Dropped::Malformed,
        ),
        (
            "short fragment",
            vec![VERSION, packet::TYPE_INIT_FRAGMENT, 0, 0, 0, 1, 0],
            Dropped::Malformed,
        ),
        (
            "short response",
            vec![VERSION, packet::TYPE_RESPONSE, 1, 2, 3],
            Dropped::Malformed,
        ),
        (
            "unknown index",
            {
                let mut p = sealed.clone();
                p[2] ^= 0xff;
                p
            },
            Dropped::UnknownSession,
        ),
        (
            "tampered body",
            {
                let mut p = sealed.clone();
                p[packet::DATA_HEADER_BYTES] ^= 1;
                p
            },
            Dropped::Tampered,
        ),
        (
            "response to no handshake",
            {
                let mut p = vec![VERSION, packet::TYPE_RESPONSE];
                p.resize(packet::RESPONSE_BYTES, 0);
                p
            },
            Dropped::UnknownSession,
        ),
    ];
    for (name, bytes, expected) in &cases {
        assert_eq!(
            pair.b.sessions.handle_incoming(&pair.dir, from, bytes, T0),
            Err(*expected),
            "{name}"
        );
    }
    let stats = pair.b.sessions.stats().clone();
    assert_eq!(stats.dropped_total(), cases.len() as u64);
    assert_eq!(stats.dropped_malformed, 6);
    assert_eq!((stats.dropped_oversized, stats.dropped_version), (1, 1));
    assert_eq!(
        (stats.dropped_unknown_session, stats.dropped_tampered),
        (2, 1)
    );
    // The genuine packet was never consumed by the bad ones.
    assert!(
        pair.b
            .sessions
            .handle_incoming(&pair.dir, from, &sealed, T0)
            .is_ok()
    );
    // A data packet from the right session but relayed under another source is refused.
    let other = pair.a.seal(pair.b.id, b"x", T0);
    assert_eq!(
        pair.b
            .sessions
            .handle_incoming(&pair.dir, wire::NodeId::from_index(5), &other, T0),
        Err(Dropped::UnknownSession)
    );
    assert_eq!([VERSION, TYPE_DATA], [sealed[0], sealed[1]]);
    pair.b.sessions.validate().expect("valid");
}

#[test]
fn fragment_floods_stay_within_the_reassembly_bound() {
    let mut pair = Pair::new(SessionConfig::default());
    for index in 0..1000u32 {
        let mut fragment = vec![VERSION, packet::TYPE_INIT_FRAGMENT];
        fragment.extend_from_slice(&index.to_be_bytes());
        fragment.push(0);
        fragment.resize(packet::INIT_FRAGMENT_BYTES, 0xEE);
        let _ =
            pair.b
                .sessions
                .handle_incoming(&pair.dir, pair.a.id, &fragment, T0 + u64::from(index));
    }
    assert!(pair.b.sessions.stats().reassemblies_evicted >= 1000 - 64);
    pair.b.sessions.validate().expect("valid");
    // Garbage completed by a second half is a forged initiation, not a crash.
    let mut second = vec![VERSION, packet::TYPE_INIT_FRAGMENT];
    second.extend_from_slice(&999u32.to_be_bytes());
    second.push(1);
    second.resize(packet::INIT_FRAGMENT_BYTES, 0xEE);
    assert!(
        pair.b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &second, T0 + 1000)
            .is_err()
    );
    assert_eq!(pair.b.sessions.peer_count(), 0);
}
