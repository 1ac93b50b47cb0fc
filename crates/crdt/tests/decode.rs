//! Decoders on hostile input: random and mutated bytes never panic, valid messages round-trip,
//! and a replica fed garbage keeps its invariants.

use crdt::codec::{
    CollectionDigest, DeltaChunk, Fragment, Message, ORIGINS_PER_VECTOR, OriginSummary, VectorPage,
};
use crdt::limits::MAX_MESSAGE_BYTES;
use crdt::{Entry, Hlc, Replica, ReplicaConfig};
use proptest::prelude::*;
use wire::NodeId;

fn node() -> impl Strategy<Value = NodeId> {
    any::<[u8; 16]>().prop_map(NodeId)
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"directory".to_vec()),
        Just(b"revocations".to_vec()),
        prop::collection::vec(any::<u8>(), 1..=32),
    ]
}

fn entry(origin: NodeId) -> impl Strategy<Value = Entry> {
    (
        any::<u64>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..=64),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
    )
        .prop_map(move |(physical_ms, logical, key, value)| Entry {
            key,
            hlc: Hlc {
                physical_ms,
                logical,
                node: origin,
            },
            value,
        })
}

fn delta() -> impl Strategy<Value = Message> {
    (
        name(),
        node(),
        0u64..1_000,
        prop::collection::btree_set(1u64..100, 0..4),
    )
        .prop_flat_map(|(collection, origin, lo, seqs)| {
            let seqs: Vec<u64> = seqs.into_iter().map(|s| lo + s).collect();
            let hi = seqs.last().copied().unwrap_or(lo) + 1;
            prop::collection::vec(entry(origin), seqs.len()).prop_map(move |entries| {
                Message::Delta(DeltaChunk {
                    collection: collection.clone(),
                    origin,
                    lo,
                    hi,
                    entries: seqs.iter().copied().zip(entries).collect(),
                })
            })
        })
}

fn vector() -> impl Strategy<Value = Message> {
    (
        name(),
        prop::collection::btree_map(
            any::<[u8; 16]>(),
            (any::<u64>(), any::<u64>()),
            0..=ORIGINS_PER_VECTOR,
        ),
    )
        .prop_map(|(collection, origins)| {
            Message::Vector(VectorPage {
                collection,
                from: NodeId([0; 16]),
                to: NodeId([0xff; 16]),
                origins: origins
                    .into_iter()
                    .map(|(origin, (max, digest))| OriginSummary {
                        origin: NodeId(origin),
                        max,
                        digest,
                    })
                    .collect(),
            })
        })
}

fn digest() -> impl Strategy<Value = Message> {
    prop::collection::vec((name(), any::<u64>()), 0..=16).prop_map(|items| {
        Message::Digest(
            items
                .into_iter()
                .map(|(name, digest)| CollectionDigest { name, digest })
                .collect(),
        )
    })
}

/// The fragments of a DELTA too large for one datagram (a value of 1 to 16 KB).
fn fragments() -> impl Strategy<Value = Vec<Message>> {
    (
        node(),
        1_200usize..=crdt::limits::MAX_VALUE_BYTES,
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(|(origin, len, fill, id)| {
            let whole = Message::Delta(DeltaChunk {
                collection: b"directory".to_vec(),
                origin,
                lo: 0,
                hi: 1,
                entries: vec![(
                    1,
                    Entry {
                        key: b"k".to_vec(),
                        hlc: Hlc {
                            physical_ms: 1,
                            logical: 0,
                            node: origin,
                        },
                        value: Some(vec![fill; len]),
                    },
                )],
            })
            .encode();
            Fragment::split(&whole, id)
                .expect("within bounds")
                .into_iter()
                .map(Message::Fragment)
                .collect()
        })
}

fn fragment() -> impl Strategy<Value = Message> {
    (fragments(), any::<prop::sample::Index>())
        .prop_map(|(all, pick)| all[pick.index(all.len())].clone())
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![delta(), vector(), digest(), fragment()]
}

fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    for (at, value, how) in edits {
        if bytes.is_empty() {
            bytes.push(*value);
            continue;
        }
        let i = at.index(bytes.len());
        match how % 4 {
            0 => bytes[i] = *value,
            1 => bytes.truncate(i),
            2 => bytes.insert(i, *value),
            _ => bytes[i] ^= 1 << (value % 8),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    prop::collection::vec(
        (any::<prop::sample::Index>(), any::<u8>(), any::<u8>()),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_messages_round_trip_within_the_bound(message in message()) {
        let bytes = message.encode();
        prop_assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{} bytes", bytes.len());
        prop_assert_eq!(Message::decode(&bytes), Ok(message));
    }

    #[test]
    fn random_bytes_never_panic_and_what_decodes_re_encodes(bytes in prop::collection::vec(any::<u8>(), 0..1_400)) {
        if let Ok(message) = Message::decode(&bytes) {
            prop_assert_eq!(message.encode(), bytes);
        }
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(kind in 0u8..5, body in prop::collection::vec(any::<u8>(), 0..1_300)) {
        let bytes = [&b"xc\x02"[..], &[kind], &body].concat();
        if let Ok(message) = Message::decode(&bytes) {
            prop_assert_eq!(message.encode(), bytes);
        }
    }

    #[test]
    fn mutated_messages_never_panic_and_what_decodes_re_encodes(message in message(), edits in edits()) {
        let bytes = mutate(message.encode(), &edits);
        if let Ok(decoded) = Message::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }

    #[test]
    fn a_replica_fed_mutated_messages_keeps_its_invariants(
        messages in prop::collection::vec((message(), edits(), any::<bool>()), 1..8),
    ) {
        let t0 = 1_700_000_000_000;
        let mut replica = Replica::new(ReplicaConfig::standard(NodeId::from_index(1)), t0).expect("valid");
        replica.map_insert("directory", b"k", b"v", t0).expect("fits");
        for (message, edits, keep) in messages {
            let bytes = if keep { message.encode() } else { mutate(message.encode(), &edits) };
            let _ = replica.handle_message(NodeId::from_index(2), &bytes, t0);
            prop_assert_eq!(replica.validate(), Ok(()));
            while let Some(transmit) = replica.poll_transmit() {
                prop_assert!(transmit.payload.len() <= MAX_MESSAGE_BYTES);
            }
        }
        let stats = replica.stats();
        prop_assert!(stats.messages_rx >= 1);
    }

    #[test]
    fn fragments_in_any_order_rebuild_the_value_and_mutated_ones_never_break_the_replica(
        all in fragments(),
        order in any::<u64>(),
        edits in edits(),
    ) {
        let t0 = 1_700_000_000_000;
        let mut replica = Replica::new(ReplicaConfig::standard(NodeId::from_index(1)), t0).expect("valid");
        let mut shuffled = all.clone();
        let len = shuffled.len();
        shuffled.rotate_left((order % len as u64) as usize);
        // A mutated copy of one fragment first: it may poison only its own partial message.
        let poisoned = mutate(shuffled[0].encode(), &edits);
        let _ = replica.handle_message(NodeId::from_index(2), &poisoned, t0);
        prop_assert_eq!(replica.validate(), Ok(()));
        for message in &shuffled {
            let _ = replica.handle_message(NodeId::from_index(3), &message.encode(), t0);
            prop_assert_eq!(replica.validate(), Ok(()));
        }
        prop_assert_eq!(replica.stats().messages_reassembled, 1);
        prop_assert_eq!(replica.map("directory").expect("map").len(), 1);
    }

    #[test]
    fn mutated_snapshots_never_panic_and_are_refused(edits in edits()) {
        let t0 = 1_700_000_000_000;
        let config = ReplicaConfig::standard(NodeId::from_index(1));
        let mut replica = Replica::new(config.clone(), t0).expect("valid");
        replica.map_insert("directory", b"k", b"v", t0).expect("fits");
        replica.map_insert("revocations", b"r", b"signed", t0).expect("fits");
        let bytes = replica.snapshot();
        let corrupt = mutate(bytes.clone(), &edits);
        if corrupt != bytes {
            prop_assert!(Replica::restore(config, &corrupt, t0).is_err());
        }
    }

    #[test]
    fn random_snapshots_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
        let config = ReplicaConfig::standard(NodeId::from_index(1));
        prop_assert!(Replica::restore(config, &bytes, 0).is_err());
    }
}
