//! Values larger than one datagram: they travel as fragments of at most 1,200 bytes, are
//! rebuilt whole, survive lost fragments through anti-entropy, and hostile fragments are
//! dropped and counted without changing the state.

use crdt::codec::{DeltaChunk, Fragment, Message};
use crdt::limits::{
    FRAGMENT_PAYLOAD_BYTES, MAX_FRAGMENTS, MAX_MESSAGE_BYTES, MAX_VALUE_BYTES,
    REASSEMBLY_TIMEOUT_MS,
};
use crdt::{Dropped, Entry, EntryCheck, Hlc, Replica, ReplicaConfig, Transmit};
use wire::NodeId;

const T0: u64 = 1_700_000_000_000;

fn id(i: u64) -> NodeId {
    NodeId::from_index(i)
}

fn pair() -> (Replica, Replica) {
    let mut a = Replica::new(ReplicaConfig::standard(id(1)), T0).expect("valid");
    let mut b = Replica::new(ReplicaConfig::standard(id(2)), T0).expect("valid");
    a.add_peer(id(2), T0).expect("room");
    b.add_peer(id(1), T0).expect("room");
    (a, b)
}

fn drain(replica: &mut Replica) -> Vec<Transmit> {
    std::iter::from_fn(|| replica.poll_transmit()).collect()
}

fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Delivers everything both ways until quiet, dropping the datagrams `lose` picks (by order).
fn exchange(a: &mut Replica, b: &mut Replica, now: u64, lose: &mut dyn FnMut(usize) -> bool) {
    let mut sent = 0;
    for _ in 0..50 {
        let from_a = drain(a);
        let from_b = drain(b);
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        for transmit in from_a {
            assert!(transmit.payload.len() <= MAX_MESSAGE_BYTES);
            sent += 1;
            if !lose(sent) {
                let _ = b.handle_message(a.node(), &transmit.payload, now);
            }
        }
        for transmit in from_b {
            assert!(transmit.payload.len() <= MAX_MESSAGE_BYTES);
            sent += 1;
            if !lose(sent) {
                let _ = a.handle_message(b.node(), &transmit.payload, now);
            }
        }
        a.validate().expect("invariants");
        b.validate().expect("invariants");
    }
}

#[test]
fn a_node_record_sized_value_is_pushed_as_fragments_and_rebuilt_whole() {
    let (mut a, mut b) = pair();
    let record = value(6_200, 1);
    a.map_insert("directory", b"node-1", &record, T0)
        .expect("16 KB values fit");
    let transmits = drain(&mut a);
    let expected = (6_200 + 200usize).div_ceil(FRAGMENT_PAYLOAD_BYTES);
    assert_eq!(transmits.len(), expected, "one push, cut into fragments");
    for transmit in &transmits {
        assert!(transmit.payload.len() <= MAX_MESSAGE_BYTES);
        assert!(matches!(
            Message::decode(&transmit.payload),
            Ok(Message::Fragment(_))
        ));
    }
    // Out of order on purpose: fragments are placed by index.
    for transmit in transmits.iter().rev() {
        b.handle_message(id(1), &transmit.payload, T0)
            .expect("accepted");
    }
    assert_eq!(
        b.map("directory").expect("map").get(b"node-1"),
        Some(record.as_slice())
    );
    assert_eq!(b.stats().messages_reassembled, 1);
    assert_eq!(b.stats().fragments_rx, transmits.len() as u64);
    assert_eq!(b.digest("directory"), a.digest("directory"));
}

#[test]
fn the_largest_value_needs_the_most_fragments_and_a_larger_one_is_refused() {
    let (mut a, mut b) = pair();
    let largest = value(MAX_VALUE_BYTES, 2);
    a.map_insert("policies", b"link", &largest, T0)
        .expect("the bound itself fits");
    let transmits = drain(&mut a);
    assert!(transmits.len() <= MAX_FRAGMENTS);
    for transmit in &transmits {
        b.handle_message(id(1), &transmit.payload, T0)
            .expect("accepted");
    }
    assert_eq!(
        b.map("policies").expect("map").get(b"link"),
        Some(largest.as_slice())
    );
    let error = a
        .map_insert("policies", b"link", &value(MAX_VALUE_BYTES + 1, 3), T0)
        .expect_err("over the bound");
    assert!(matches!(error, crdt::CrdtError::ValueTooLarge { .. }));
}

#[test]
fn a_lost_fragment_delays_the_value_until_the_next_round_then_it_arrives() {
    let (mut a, mut b) = pair();
    let record = value(6_000, 4);
    a.map_insert("directory", b"k", &record, T0).expect("fits");
    let mut pushed = drain(&mut a);
    pushed.remove(2);
    for transmit in &pushed {
        b.handle_message(id(1), &transmit.payload, T0)
            .expect("a fragment is held, not refused");
    }
    assert_eq!(b.map("directory").expect("map").get(b"k"), None);
    // The incomplete message is dropped after the timeout and counted.
    let later = T0 + REASSEMBLY_TIMEOUT_MS + 1;
    b.handle_timeout(later);
    assert_eq!(b.stats().reassembly_expired, 1);
    a.handle_timeout(later);
    exchange(&mut a, &mut b, later, &mut |_| false);
    assert_eq!(
        b.map("directory").expect("map").get(b"k"),
        Some(record.as_slice())
    );
    assert_eq!(a.digest("directory"), b.digest("directory"));
}

#[test]
fn many_large_values_converge_over_a_lossy_exchange() {
    let (mut a, mut b) = pair();
    for i in 0..20u8 {
        a.map_insert(
            "directory",
            &[i],
            &value(3_000 + 500 * usize::from(i), i),
            T0,
        )
        .expect("fits");
        b.map_insert("revocations", &[i], &[i; 100], T0)
            .expect("fits");
    }
    let mut seed = 7u64;
    let mut lossy = |_: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33).is_multiple_of(10)
    };
    let mut now = T0;
    for _ in 0..40 {
        now += 250;
        a.handle_timeout(now);
        b.handle_timeout(now);
        exchange(&mut a, &mut b, now, &mut lossy);
    }
    now += 250;
    a.handle_timeout(now);
    b.handle_timeout(now);
    exchange(&mut a, &mut b, now, &mut |_| false);
    assert_eq!(b.map("directory").expect("map").len(), 20);
    assert_eq!(a.digest("directory"), b.digest("directory"));
    assert_eq!(a.digest("revocations"), b.digest("revocations"));
}

#[test]
fn contradicting_or_nested_fragments_are_dropped_counted_and_change_nothing() {
    let (_, mut b) = pair();
    let digest_before = b.digest("directory");
    let chunk = Message::Delta(DeltaChunk {
        collection: b"directory".to_vec(),
        origin: id(1),
        lo: 0,
        hi: 1,
        entries: vec![(
            1,
            Entry {
                key: b"k".to_vec(),
                hlc: Hlc {
                    physical_ms: T0,
                    logical: 0,
                    node: id(1),
                },
                value: Some(value(5_000, 5)),
            },
        )],
    })
    .encode();
    let good = Fragment::split(&chunk, 1).expect("within bounds");
    let other = Fragment::split(&chunk[..3_000], 1).expect("within bounds");
    b.handle_message(id(1), &Message::Fragment(good[0].clone()).encode(), T0)
        .expect("held");
    assert_eq!(
        b.handle_message(id(1), &Message::Fragment(other[1].clone()).encode(), T0),
        Err(Dropped::Reassembly)
    );
    assert_eq!(b.stats().dropped_fragment_mismatch, 1);
    // A message whose reassembled bytes are themselves a fragment is refused.
    let mut nested = Message::Fragment(good[0].clone()).encode();
    nested.resize(1_500, 0);
    let wrapped = Fragment::split(&nested, 2).expect("within bounds");
    let mut results = Vec::new();
    for fragment in wrapped {
        results.push(b.handle_message(id(1), &Message::Fragment(fragment).encode(), T0));
    }
    assert!(matches!(results.last(), Some(Err(Dropped::Malformed(_)))));
    // A fragment whose length disagrees with its header does not decode.
    let mut short = Message::Fragment(good[0].clone()).encode();
    short.pop();
    assert!(matches!(
        b.handle_message(id(1), &short, T0),
        Err(Dropped::Malformed(_))
    ));
    assert_eq!(b.digest("directory"), digest_before);
    b.validate().expect("invariants");
}

#[test]
fn a_large_entry_failing_the_node_check_is_skipped_and_counted() {
    let (mut a, mut b) = pair();
    b.set_entry_check(
        "directory",
        EntryCheck::new(|_, entry| entry.value.as_ref().is_none_or(|v| v[0] == 0xAA)),
    )
    .expect("collection exists");
    let mut forged = value(7_000, 6);
    forged[0] = 0x55;
    a.map_insert("directory", b"forged", &forged, T0)
        .expect("fits");
    for transmit in drain(&mut a) {
        let _ = b.handle_message(id(1), &transmit.payload, T0);
    }
    assert_eq!(b.stats().dropped_invalid_entries, 1);
    assert_eq!(b.map("directory").expect("map").get(b"forged"), None);
}
