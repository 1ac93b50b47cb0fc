//! Fuzz target: `crdt::Message::decode` and `decode_assembled` never panic and re-encode what
//! they accept to the same bytes; a replica fed the datagrams (split at 0xFE, interleaved with
//! timer ticks, fragments included, so reassembly sees hostile slices) never panics, keeps its
//! invariants and never emits a datagram over the bound.
#![no_main]

use crdt::limits::MAX_MESSAGE_BYTES;
use crdt::{Message, Replica, ReplicaConfig};
use libfuzzer_sys::fuzz_target;
use wire::NodeId;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        assert_eq!(message.encode(), data, "accepted bytes re-encode identically");
    }
    if let Ok(message) = Message::decode_assembled(data) {
        assert_eq!(message.encode(), data, "reassembled bytes re-encode identically");
    }
    let t0 = 1_700_000_000_000;
    let mut replica =
        Replica::new(ReplicaConfig::standard(NodeId::from_index(1)), t0).expect("standard config is valid");
    replica
        .map_insert("directory", b"k", b"v", t0)
        .expect("a small entry fits");
    replica
        .map_insert("directory", b"record", &[0x5a; 6_000], t0)
        .expect("a record-sized entry fits");
    let mut now = t0;
    for (i, chunk) in data.split(|&b| b == 0xFE).enumerate() {
        now += 100;
        let sender = NodeId::from_index(2 + (i as u64 % 3));
        let _ = replica.handle_message(sender, chunk, now);
        replica.handle_timeout(now);
        while let Some(transmit) = replica.poll_transmit() {
            assert!(transmit.payload.len() <= MAX_MESSAGE_BYTES);
        }
        replica.validate().expect("replica invariants hold after any input");
    }
    let restored = Replica::restore(replica.config().clone(), &replica.snapshot(), now)
        .expect("a replica's own snapshot restores");
    assert_eq!(restored.digest("directory"), replica.digest("directory"));
});
