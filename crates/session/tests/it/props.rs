//! Property tests: random and mutated bytes never panic a session table, never break its
//! invariants, and never decrypt.

use proptest::prelude::*;
use session::{SessionConfig, packet};

use crate::support::{Pair, T0};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = packet::decode(&bytes);
        let _ = packet::Init::decode(&bytes);
        let mut pair = Pair::new(SessionConfig::default());
        let result = pair.b.sessions.handle_incoming(&pair.dir, pair.a.id, &bytes, T0);
        prop_assert!(!matches!(result, Ok(session::Incoming::Data { .. })), "decrypted: {:?}", result);
        pair.b.sessions.validate().map_err(TestCaseError::fail)?;
    }
}

/// One established pair shared by the mutation cases (key generation dominates otherwise).
fn mutated_cases(mutations: Vec<(usize, u8, bool)>) -> Result<(), TestCaseError> {
    let mut pair = Pair::new(SessionConfig::default());
    let _ = pair.a.sessions.encrypt(pair.b.id, b"x", T0);
    let handshake = pair.a.drain();
    for t in &handshake {
        let _ = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &t.bytes, T0);
    }
    let response = pair.b.drain();
    let mut samples: Vec<Vec<u8>> = handshake
        .into_iter()
        .chain(response)
        .map(|t| t.bytes)
        .collect();
    let _ = pair
        .a
        .sessions
        .handle_incoming(&pair.dir, pair.b.id, &samples[2], T0);
    samples.extend(pair.a.drain().into_iter().map(|t| t.bytes));
    for (i, (position, xor, truncate)) in mutations.into_iter().enumerate() {
        let mut bytes = samples[i % samples.len()].clone();
        let position = position % bytes.len();
        if truncate {
            bytes.truncate(position);
        } else {
            bytes[position] ^= xor.max(1);
        }
        let at_b = pair
            .b
            .sessions
            .handle_incoming(&pair.dir, pair.a.id, &bytes, T0);
        let at_a = pair
            .a
            .sessions
            .handle_incoming(&pair.dir, pair.b.id, &bytes, T0);
        prop_assert!(
            !matches!(at_b, Ok(session::Incoming::Data { .. })),
            "{at_b:?}"
        );
        prop_assert!(
            !matches!(at_a, Ok(session::Incoming::Data { .. })),
            "{at_a:?}"
        );
        pair.a.sessions.validate().map_err(TestCaseError::fail)?;
        pair.b.sessions.validate().map_err(TestCaseError::fail)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn mutated_packets_never_panic_nor_decrypt(
        mutations in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 1..64)
    ) {
        mutated_cases(mutations)?;
    }
}
