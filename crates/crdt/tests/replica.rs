//! The anti-entropy state machine, one handler at a time: what it sends, what it drops and
//! counts (with the state unchanged), garbage collection, persistence and clock skew.

use crdt::codec::{DeltaChunk, Message};
use crdt::{CrdtError, DecodeError, Dropped, Entry, Hlc, Replica, ReplicaConfig};
use wire::NodeId;

const T0: u64 = 1_700_000_000_000;

fn id(i: u64) -> NodeId {
    NodeId::from_index(i)
}

fn replica(i: u64, now: u64) -> Replica {
    let mut config = ReplicaConfig::standard(id(i));
    config.tombstone_horizon_ms = 10_000;
    Replica::new(config, now).expect("valid config")
}

/// Runs digest rounds between the replicas (all peered with each other) until no datagram is
/// left, delivering everything; each replica's wall clock is `now + skew[i]`.
fn sync(replicas: &mut [Replica], skew: &[i64], now: &mut u64, rounds: usize) {
    for _ in 0..rounds {
        *now += 250;
        for (i, replica) in replicas.iter_mut().enumerate() {
            replica.handle_timeout(now.saturating_add_signed(skew[i]));
        }
        for _ in 0..100 {
            let mut moved = false;
            for from in 0..replicas.len() {
                while let Some(transmit) = replicas[from].poll_transmit() {
                    moved = true;
                    let sender = replicas[from].node();
                    // Datagrams to peers outside the slice go nowhere (a silent peer).
                    let Some(to) = replicas.iter().position(|r| r.node() == transmit.to) else {
                        continue;
                    };
                    let wall = now.saturating_add_signed(skew[to]);
                    let _ = replicas[to].handle_message(sender, &transmit.payload, wall);
                }
            }
            for replica in replicas.iter() {
                assert_eq!(replica.validate(), Ok(()));
            }
            if !moved {
                break;
            }
        }
    }
}

fn peer_all(replicas: &mut [Replica], now: u64) {
    let ids: Vec<NodeId> = replicas.iter().map(Replica::node).collect();
    for replica in replicas.iter_mut() {
        for other in &ids {
            if *other != replica.node() {
                replica.add_peer(*other, now).expect("room");
            }
        }
    }
}

fn delta(
    collection: &str,
    origin: NodeId,
    lo: u64,
    hi: u64,
    entries: Vec<(u64, Entry)>,
) -> Vec<u8> {
    Message::Delta(DeltaChunk {
        collection: collection.as_bytes().to_vec(),
        origin,
        lo,
        hi,
        entries,
    })
    .encode()
}

fn entry(origin: NodeId, physical_ms: u64, key: &[u8], value: &[u8]) -> Entry {
    Entry {
        key: key.to_vec(),
        hlc: Hlc {
            physical_ms,
            logical: 0,
            node: origin,
        },
        value: Some(value.to_vec()),
    }
}

#[test]
fn a_local_write_is_pushed_to_every_peer_at_once() {
    let mut a = replica(1, T0);
    a.add_peer(id(2), T0).expect("room");
    a.add_peer(id(3), T0).expect("room");
    a.map_insert("directory", b"k", b"v", T0).expect("fits");
    let mut to: Vec<NodeId> = Vec::new();
    while let Some(transmit) = a.poll_transmit() {
        match Message::decode(&transmit.payload).expect("valid") {
            Message::Delta(chunk) => {
                assert_eq!((chunk.origin, chunk.lo, chunk.hi), (id(1), 0, 1));
                assert_eq!(chunk.entries.len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        to.push(transmit.to);
    }
    assert_eq!(to, vec![id(2), id(3)]);
}

#[test]
fn a_digest_round_sends_one_digest_per_peer_and_equal_digests_send_nothing_more() {
    let mut replicas = vec![replica(1, T0), replica(2, T0)];
    peer_all(&mut replicas, T0);
    replicas[0].handle_timeout(T0);
    let transmit = replicas[0].poll_transmit().expect("a digest");
    assert!(matches!(Message::decode(&transmit.payload), Ok(Message::Digest(d)) if d.len() == 3));
    assert!(replicas[0].poll_transmit().is_none());
    replicas[1]
        .handle_message(id(1), &transmit.payload, T0)
        .expect("accepted");
    assert!(
        replicas[1].poll_transmit().is_none(),
        "equal states: nothing to say"
    );
}

/// Digests a replica sends during `rounds` rounds of 250 ms, everything delivered.
fn digests_during(replicas: &mut [Replica], now: &mut u64, rounds: usize) -> usize {
    let mut digests = 0;
    for _ in 0..rounds {
        *now += 250;
        for replica in replicas.iter_mut() {
            replica.handle_timeout(*now);
        }
        loop {
            let mut moved = false;
            for from in 0..replicas.len() {
                while let Some(transmit) = replicas[from].poll_transmit() {
                    moved = true;
                    if from == 0
                        && matches!(Message::decode(&transmit.payload), Ok(Message::Digest(_)))
                    {
                        digests += 1;
                    }
                    let sender = replicas[from].node();
                    let to = replicas
                        .iter()
                        .position(|r| r.node() == transmit.to)
                        .expect("a peer in the slice");
                    let _ = replicas[to].handle_message(sender, &transmit.payload, *now);
                }
            }
            if !moved {
                break;
            }
        }
    }
    digests
}

#[test]
fn digests_to_a_peer_in_sync_back_off_and_any_change_brings_them_back() {
    let mut replicas = vec![replica(1, T0), replica(2, T0)];
    peer_all(&mut replicas, T0);
    let mut now = T0;
    replicas[0]
        .map_insert("directory", b"k", b"v", now)
        .expect("fits");
    sync(&mut replicas, &[0, 0], &mut now, 4);
    // 20 s in sync: the pause doubles from 250 ms to 4 s, so about 7 digests instead of 80.
    let idle = digests_during(&mut replicas, &mut now, 80);
    assert!(idle <= 9, "{idle} digests in 20 s of equal state");
    assert!(idle >= 4, "{idle} digests: the peer must still be checked");
    // A write whose push is lost: the changed digest goes out in the next round, and the
    // peer pulls the write at once.
    replicas[0]
        .map_insert("directory", b"lost", b"push", now)
        .expect("fits");
    while replicas[0].poll_transmit().is_some() {}
    assert_eq!(digests_during(&mut replicas, &mut now, 1), 1);
    assert_eq!(
        replicas[1].map("directory").expect("map").get(b"lost"),
        Some(&b"push"[..])
    );
    // The peer changing without telling us: its digest differs, so ours go fast again.
    replicas[1]
        .map_insert("directory", b"theirs", b"quiet", now)
        .expect("fits");
    while replicas[1].poll_transmit().is_some() {}
    digests_during(&mut replicas, &mut now, 2);
    assert_eq!(
        replicas[0].map("directory").expect("map").get(b"theirs"),
        Some(&b"quiet"[..])
    );
}

#[test]
fn a_change_the_peer_cannot_hear_keeps_digests_fast_until_it_can() {
    let mut replicas = vec![replica(1, T0), replica(2, T0)];
    peer_all(&mut replicas, T0);
    let mut now = T0;
    sync(&mut replicas, &[0, 0], &mut now, 40);
    // A change while the link is cut: nothing replica 0 sends arrives for 5 s.
    replicas[0]
        .map_insert("directory", b"during", b"partition", now)
        .expect("fits");
    let mut cut_digests = 0;
    for _ in 0..20 {
        now += 250;
        replicas[0].handle_timeout(now);
        replicas[1].handle_timeout(now);
        while let Some(transmit) = replicas[0].poll_transmit() {
            cut_digests += usize::from(matches!(
                Message::decode(&transmit.payload),
                Ok(Message::Digest(_))
            ));
        }
        while replicas[1].poll_transmit().is_some() {}
    }
    // The peer never confirmed the new state, so no back-off: a digest every round.
    assert_eq!(cut_digests, 20);
    // Healed: the next round repairs it.
    digests_during(&mut replicas, &mut now, 1);
    assert_eq!(
        replicas[1].map("directory").expect("map").get(b"during"),
        Some(&b"partition"[..])
    );
}

#[test]
fn writes_reach_a_peer_through_digest_vector_and_delta() {
    let mut a = replica(1, T0);
    for i in 0..50u8 {
        a.map_insert("directory", &[i], &[i; 100], T0)
            .expect("fits");
    }
    let mut replicas = vec![a, replica(2, T0)];
    peer_all(&mut replicas, T0);
    let mut now = T0;
    sync(&mut replicas, &[0, 0], &mut now, 3);
    assert_eq!(replicas[1].map("directory").expect("map").len(), 50);
    assert_eq!(
        replicas[0].digest("directory"),
        replicas[1].digest("directory")
    );
}

#[test]
fn malformed_oversized_and_unknown_version_messages_are_dropped_counted_and_change_nothing() {
    let mut a = replica(1, T0);
    a.map_insert("directory", b"k", b"v", T0).expect("fits");
    let before = a.snapshot();
    let valid = delta(
        "directory",
        id(2),
        0,
        1,
        vec![(1, entry(id(2), T0, b"x", b"y"))],
    );
    let mut wrong_version = valid.clone();
    wrong_version[2] = 1;
    let cases: Vec<(Vec<u8>, Dropped)> = vec![
        (vec![0x78], Dropped::Malformed(DecodeError::Truncated)),
        (
            b"zz\x01\x01".to_vec(),
            Dropped::Malformed(DecodeError::BadMagic),
        ),
        (
            b"xc\x02\x09".to_vec(),
            Dropped::Malformed(DecodeError::UnknownType(9)),
        ),
        (
            wrong_version,
            Dropped::Malformed(DecodeError::UnknownVersion(1)),
        ),
        (vec![0; 1201], Dropped::Malformed(DecodeError::Oversized)),
        (
            [valid.clone(), vec![0]].concat(),
            Dropped::Malformed(DecodeError::TrailingBytes),
        ),
        (
            delta("nope", id(2), 0, 1, vec![]),
            Dropped::UnknownCollection,
        ),
        (delta("directory", id(2), 5, 6, vec![]), Dropped::OutOfOrder),
    ];
    for (bytes, expected) in &cases {
        assert_eq!(a.handle_message(id(2), bytes, T0), Err(*expected));
    }
    let stats = a.stats();
    assert_eq!(stats.dropped_malformed, 4);
    assert_eq!((stats.dropped_version, stats.dropped_oversized), (1, 1));
    assert_eq!(stats.dropped_unknown_collection, 1);
    assert_eq!(stats.dropped_out_of_order, 1);
    assert_eq!(stats.deltas_applied, 0);
    // Peers may be added by the valid-looking drops, but no data changed.
    let after = Replica::restore(a.config().clone(), &a.snapshot(), T0).expect("restores");
    let restored_before = Replica::restore(a.config().clone(), &before, T0).expect("restores");
    assert_eq!(
        after.digest("directory"),
        restored_before.digest("directory")
    );
    assert_eq!(a.handle_message(id(2), &valid, T0), Ok(()));
    assert_eq!(a.map("directory").expect("map").get(b"x"), Some(&b"y"[..]));
}

#[test]
fn a_remote_clock_beyond_the_drift_bound_is_dropped_and_counted() {
    let mut a = replica(1, T0);
    let drift = a.config().max_drift_ms;
    let far = delta(
        "directory",
        id(2),
        0,
        1,
        vec![(1, entry(id(2), T0 + drift + 1, b"x", b"y"))],
    );
    assert_eq!(a.handle_message(id(2), &far, T0), Err(Dropped::ClockSkew));
    assert_eq!(a.stats().dropped_clock_skew, 1);
    assert_eq!(a.clock().rejected(), 1);
    assert!(a.map("directory").expect("map").is_empty());
    assert!(a.clock().last().physical_ms <= T0);
    let near = delta(
        "directory",
        id(2),
        0,
        1,
        vec![(1, entry(id(2), T0 + drift, b"x", b"y"))],
    );
    assert_eq!(a.handle_message(id(2), &near, T0), Ok(()));
}

#[test]
fn seconds_of_clock_skew_do_not_let_an_old_write_win() {
    // Node 1's clock runs 5 s ahead of node 2's. Node 1 writes first; node 2 writes after
    // receiving it. Node 2's write must win everywhere although its wall clock is earlier.
    let mut replicas = vec![replica(1, T0), replica(2, T0)];
    peer_all(&mut replicas, T0);
    let skew = [5_000, 0];
    let mut now = T0;
    replicas[0]
        .map_insert("policies", b"p", b"old", now + 5_000)
        .expect("fits");
    sync(&mut replicas, &skew, &mut now, 2);
    assert_eq!(
        replicas[1].map("policies").expect("map").get(b"p"),
        Some(&b"old"[..])
    );
    replicas[1]
        .map_insert("policies", b"p", b"new", now)
        .expect("fits");
    sync(&mut replicas, &skew, &mut now, 2);
    for replica in &replicas {
        assert_eq!(
            replica.map("policies").expect("map").get(b"p"),
            Some(&b"new"[..])
        );
    }
}

#[test]
fn a_tombstone_is_collected_only_after_the_horizon_and_every_peer_has_it() {
    let mut replicas = vec![replica(1, T0), replica(2, T0)];
    peer_all(&mut replicas, T0);
    let mut now = T0;
    replicas[0]
        .map_insert("directory", b"k", b"v", now)
        .expect("fits");
    replicas[0]
        .map_remove("directory", b"k", now)
        .expect("fits");
    // A third peer of both that never answers holds collection back.
    for replica in replicas.iter_mut() {
        replica.add_peer(id(3), now).expect("room");
    }
    sync(&mut replicas, &[0, 0], &mut now, 4);
    let tombstones = |r: &Replica| r.store("directory").expect("store").len();
    assert_eq!((tombstones(&replicas[0]), tombstones(&replicas[1])), (1, 1));
    now += 20_000;
    sync(&mut replicas, &[0, 0], &mut now, 2);
    assert_eq!(
        (tombstones(&replicas[0]), tombstones(&replicas[1])),
        (1, 1),
        "peer 3 has not acknowledged"
    );
    for replica in replicas.iter_mut() {
        replica.remove_peer(id(3));
    }
    sync(&mut replicas, &[0, 0], &mut now, 2);
    assert_eq!((tombstones(&replicas[0]), tombstones(&replicas[1])), (0, 0));
    assert_eq!(replicas[0].stats().tombstones_collected, 1);
    assert_eq!(
        replicas[0].digest("directory"),
        replicas[1].digest("directory")
    );
    assert_eq!(replicas[0].map("directory").expect("map").get(b"k"), None);
}

#[test]
fn a_collected_tombstone_disappears_from_peers_like_a_removal() {
    // Node 2 may collect (its only peer has the tombstone); node 1 may not (a silent peer).
    // The absence travels like any removal, so node 1 loses the tombstone too.
    let mut replicas = vec![replica(1, T0), replica(2, T0)];
    peer_all(&mut replicas, T0);
    let mut now = T0;
    replicas[0]
        .map_insert("directory", b"k", b"v", now)
        .expect("fits");
    replicas[0]
        .map_remove("directory", b"k", now)
        .expect("fits");
    replicas[0].add_peer(id(3), now).expect("room");
    sync(&mut replicas, &[0, 0], &mut now, 4);
    now += 20_000;
    sync(&mut replicas, &[0, 0], &mut now, 3);
    assert_eq!(replicas[0].stats().tombstones_collected, 0);
    assert_eq!(replicas[1].stats().tombstones_collected, 1);
    assert!(replicas[0].store("directory").expect("store").is_empty());
    assert_eq!(
        replicas[0].digest("directory"),
        replicas[1].digest("directory")
    );
}

#[test]
fn a_young_tombstone_is_kept_even_when_every_peer_has_it() {
    let mut replicas = vec![replica(1, T0), replica(2, T0)];
    peer_all(&mut replicas, T0);
    let mut now = T0;
    replicas[0]
        .map_remove("directory", b"k", now)
        .expect("fits");
    sync(&mut replicas, &[0, 0], &mut now, 8);
    assert_eq!(replicas[0].store("directory").expect("store").len(), 1);
    assert_eq!(replicas[0].stats().tombstones_collected, 0);
}

#[test]
fn a_snapshot_restores_the_same_state_and_any_corruption_is_refused() {
    let mut a = replica(1, T0);
    a.add_peer(id(2), T0).expect("room");
    a.map_insert("directory", b"k", b"v", T0).expect("fits");
    a.map_remove("policies", b"gone", T0).expect("fits");
    a.map_insert("revocations", b"r", b"signed", T0)
        .expect("fits");
    let bytes = a.snapshot();
    let b = Replica::restore(a.config().clone(), &bytes, T0).expect("restores");
    for name in ["directory", "revocations", "policies"] {
        assert_eq!(a.store(name), b.store(name), "{name}");
    }
    assert_eq!(a.clock().last(), b.clock().last());
    assert_eq!(b.peers().collect::<Vec<_>>(), vec![id(2)]);
    assert_eq!(b.snapshot(), bytes);
    for position in [0, 2, 5, bytes.len() / 2, bytes.len() - 1] {
        let mut corrupt = bytes.clone();
        corrupt[position] ^= 0x01;
        assert!(
            Replica::restore(a.config().clone(), &corrupt, T0).is_err(),
            "byte {position}"
        );
    }
    assert!(Replica::restore(a.config().clone(), &bytes[..bytes.len() - 1], T0).is_err());
    let other = ReplicaConfig::standard(id(9));
    assert!(matches!(
        Replica::restore(other, &bytes, T0),
        Err(CrdtError::Config(_))
    ));
    let mut fewer = a.config().clone();
    fewer.collections.pop();
    assert!(matches!(
        Replica::restore(fewer, &bytes, T0),
        Err(CrdtError::UnknownCollection(name)) if name == "policies"
    ));
}

#[test]
fn a_restored_replica_never_reissues_a_timestamp() {
    let mut a = replica(1, T0);
    a.map_insert("directory", b"k", b"v1", T0 + 1_000)
        .expect("fits");
    let last = a.clock().last();
    let mut b = Replica::restore(a.config().clone(), &a.snapshot(), T0).expect("restores");
    // The wall clock went back a second across the restart; the new write still wins.
    b.map_insert("directory", b"k", b"v2", T0).expect("fits");
    assert!(b.clock().last() > last);
    assert_eq!(b.map("directory").expect("map").get(b"k"), Some(&b"v2"[..]));
}

#[test]
fn bad_configurations_name_the_field() {
    let mut config = ReplicaConfig::standard(id(1));
    config
        .collections
        .push(("directory".to_owned(), crdt::Kind::Set));
    let error = Replica::new(config, T0).expect_err("duplicate");
    assert!(error.to_string().contains("collections[3]"), "{error}");
    let mut config = ReplicaConfig::standard(id(1));
    config.sync_interval_ms = 0;
    let error = Replica::new(config, T0).expect_err("zero interval");
    assert!(error.to_string().contains("sync_interval_ms"), "{error}");
}

#[test]
fn mutations_of_the_wrong_kind_or_an_unknown_collection_are_refused() {
    let mut a = replica(1, T0);
    assert_eq!(
        a.set_add("directory", b"x", T0),
        Err(CrdtError::WrongKind("directory".to_owned()))
    );
    assert_eq!(
        a.map_insert("nope", b"x", b"y", T0),
        Err(CrdtError::UnknownCollection("nope".to_owned()))
    );
    let big = vec![0u8; crdt::limits::MAX_VALUE_BYTES + 1];
    assert!(matches!(
        a.map_insert("directory", b"x", &big, T0),
        Err(CrdtError::ValueTooLarge { .. })
    ));
    assert!(a.map("directory").expect("map").is_empty());
    assert!(a.poll_transmit().is_none());
}

#[test]
fn a_fresh_event_is_relayed_to_other_peers_but_a_backlog_is_not() {
    let mut b = replica(2, T0);
    b.add_peer(id(1), T0).expect("room");
    b.add_peer(id(3), T0).expect("room");
    let fresh = delta(
        "directory",
        id(1),
        0,
        1,
        vec![(1, entry(id(1), T0, b"k", b"v"))],
    );
    b.handle_message(id(1), &fresh, T0).expect("applies");
    let transmit = b.poll_transmit().expect("a relay");
    assert_eq!(transmit.to, id(3), "not back to the sender");
    assert_eq!(Message::decode(&transmit.payload), Message::decode(&fresh));
    assert!(b.poll_transmit().is_none());
    // The same chunk again is nothing new: no relay.
    b.handle_message(id(1), &fresh, T0).expect("idempotent");
    assert!(b.poll_transmit().is_none());
    let over = crdt::limits::MAX_RELAY_EVENTS + 1;
    let backlog = delta("directory", id(4), 0, over, vec![]);
    b.handle_message(id(4), &backlog, T0).expect("applies");
    assert!(
        b.poll_transmit().is_none(),
        "a backlog waits for anti-entropy"
    );
    assert_eq!(
        b.store("directory").expect("store").context().max(id(4)),
        over
    );
}

#[test]
fn entries_failing_the_node_check_are_skipped_counted_and_the_rest_applies() {
    let mut a = replica(1, T0);
    a.set_entry_check(
        "directory",
        crdt::EntryCheck::new(|_, entry| entry.value.as_deref() != Some(&b"forged"[..])),
    )
    .expect("configured");
    a.add_peer(id(2), T0).expect("room");
    let chunk = delta(
        "directory",
        id(2),
        0,
        3,
        vec![
            (1, entry(id(2), T0, b"good", b"signed")),
            (2, entry(id(2), T0, b"bad", b"forged")),
        ],
    );
    a.handle_message(id(2), &chunk, T0).expect("applies");
    let map = a.map("directory").expect("map");
    assert_eq!(map.get(b"good"), Some(&b"signed"[..]));
    assert_eq!(map.get(b"bad"), None);
    assert_eq!(a.stats().dropped_invalid_entries, 1);
    // The history continues past the bad entry.
    assert_eq!(a.store("directory").expect("store").context().max(id(2)), 3);
    assert_eq!(a.validate(), Ok(()));
}

#[test]
fn peer_status_shows_which_collections_are_in_sync() {
    let mut replicas = vec![replica(1, T0), replica(2, T0)];
    peer_all(&mut replicas, T0);
    let mut now = T0;
    replicas[0]
        .map_insert("policies", b"p", b"v", now)
        .expect("fits");
    // Lose the push, so node 2 first sees a differing digest.
    while replicas[0].poll_transmit().is_some() {}
    replicas[0].handle_timeout(now + 1_000);
    let digest = replicas[0].poll_transmit().expect("digest");
    replicas[1]
        .handle_message(id(1), &digest.payload, now)
        .expect("accepted");
    let status = replicas[1].peer_status();
    assert_eq!(status.len(), 1);
    assert_eq!(
        status[0].in_sync,
        vec![
            ("directory".to_owned(), true),
            ("revocations".to_owned(), true),
            ("policies".to_owned(), false)
        ]
    );
    sync(&mut replicas, &[0, 0], &mut now, 3);
    assert!(
        replicas[1].peer_status()[0]
            .in_sync
            .iter()
            .all(|(_, in_sync)| *in_sync)
    );
}

#[test]
fn sync_now_sends_one_digest_to_a_known_peer_only() {
    let mut a = replica(1, T0);
    a.sync_now(id(2));
    assert!(a.poll_transmit().is_none(), "not a peer: nothing sent");
    a.add_peer(id(2), T0).expect("room");
    a.sync_now(id(2));
    let transmit = a.poll_transmit().expect("a digest");
    assert_eq!(transmit.to, id(2));
    assert!(matches!(Message::decode(&transmit.payload), Ok(Message::Digest(d)) if d.len() == 3));
    assert!(a.poll_transmit().is_none());
}
