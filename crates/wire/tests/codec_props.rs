//! Property tests of the codec: round trips, and no panic on arbitrary or mutated bytes.

use proptest::prelude::*;
use wire::{
    Hello, MAX_PACKET_BYTES, Message, NodeId, Ogm, OgmSignature, Packet, PacketWriter, Probe,
    SeqnoRequest,
};

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 16]>().prop_map(NodeId)
}

fn ogm() -> impl Strategy<Value = Ogm> {
    (
        node_id(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<[[u8; 32]; 2]>(),
    )
        .prop_map(|(originator, seq, cost, hops, ttl, flags, halves)| {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&halves[0]);
            signature[32..].copy_from_slice(&halves[1]);
            Ogm {
                originator,
                seq,
                cost,
                hops,
                ttl,
                flags,
                signature: OgmSignature(signature),
            }
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u16>().prop_map(|probe_interval_ms| Message::Hello(Hello { probe_interval_ms })),
        (any::<[u32; 4]>(), any::<u8>(), any::<u8>(), any::<u16>()).prop_map(
            |(t, rx_count, window, interval_ms)| Message::Probe(Probe {
                seq: t[0],
                tx_time_us: t[1],
                echo_time_us: t[2],
                echo_delay_us: t[3],
                rx_count,
                window,
                interval_ms,
            })
        ),
        prop::collection::vec(ogm(), 1..6).prop_map(Message::Ogms),
        (node_id(), node_id(), any::<u32>(), any::<u8>()).prop_map(
            |(target, requester, seq, hop_limit)| Message::SeqnoRequest(SeqnoRequest {
                target,
                requester,
                seq,
                hop_limit
            })
        ),
    ]
}

proptest! {
    #[test]
    fn packet_round_trips(sender in node_id(), messages in prop::collection::vec(message(), 0..4)) {
        let packet = Packet { sender, messages, unknown_tlvs: 0 };
        let bytes = packet.encode();
        prop_assume!(bytes.len() <= MAX_PACKET_BYTES);
        prop_assert_eq!(Packet::decode(&bytes), Ok(packet));
    }

    #[test]
    fn writer_output_round_trips(sender in node_id(), messages in prop::collection::vec(message(), 0..40)) {
        let mut writer = PacketWriter::new(sender);
        messages.iter().for_each(|m| writer.push(m));
        let mut flattened_in = Vec::new();
        for m in &messages {
            match m {
                Message::Ogms(batch) => flattened_in.extend(batch.iter().map(|o| Message::Ogms(vec![*o]))),
                other => flattened_in.push(other.clone()),
            }
        }
        let mut flattened_out = Vec::new();
        for bytes in writer.finish() {
            prop_assert!(bytes.len() <= MAX_PACKET_BYTES);
            let packet = Packet::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(packet.sender, sender);
            for m in packet.messages {
                match m {
                    Message::Ogms(batch) => flattened_out.extend(batch.into_iter().map(|o| Message::Ogms(vec![o]))),
                    other => flattened_out.push(other),
                }
            }
        }
        prop_assert_eq!(flattened_in, flattened_out);
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1600)) {
        let _ = Packet::decode(&bytes);
    }

    #[test]
    fn mutated_packets_never_panic(messages in prop::collection::vec(message(), 1..4), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = Packet { sender: NodeId::from_index(1), messages, unknown_tlvs: 0 }.encode();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        if let Ok(packet) = Packet::decode(&bytes) {
            // Whatever decodes must encode back to something that decodes the same way.
            let again = Packet::decode(&packet.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.messages, packet.messages);
        }
    }
}
