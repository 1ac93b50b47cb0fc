//! Benchmark: median time of a whole session handshake (both tables, all four datagrams,
//! initiation to established and confirmed), and encrypt + decrypt throughput of 1,280-byte
//! payloads. Run with `cargo bench -p session --bench session`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use identity::KeySet;
use session::{Incoming, Outgoing, PeerIdentity, SeededRng, SessionConfig, Sessions};
use wire::NodeId;

const HANDSHAKES: usize = 500;
const PACKETS: usize = 200_000;
const PAYLOAD_BYTES: usize = 1280;

struct Setup {
    a_keys: Arc<KeySet>,
    b_keys: Arc<KeySet>,
    dir: HashMap<NodeId, PeerIdentity>,
}

fn tables(setup: &Setup, seed: u64) -> (Sessions, Sessions) {
    let a = Sessions::new(
        SessionConfig::default(),
        Arc::clone(&setup.a_keys),
        SeededRng::new(seed),
    )
    .expect("default config is valid");
    let b = Sessions::new(
        SessionConfig::default(),
        Arc::clone(&setup.b_keys),
        SeededRng::new(!seed),
    )
    .expect("default config is valid");
    (a, b)
}

/// Runs one handshake to completion: a queues a payload, both sides exchange datagrams until
/// b has the payload.
fn handshake(setup: &Setup, a: &mut Sessions, b: &mut Sessions) {
    let (a_id, b_id) = (a.local(), b.local());
    assert_eq!(a.encrypt(b_id, b"x", 0), Ok(Outgoing::Queued));
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            if let Ok(Incoming::Data { .. }) = b.handle_incoming(&setup.dir, a_id, &t.bytes, 0) {
                return;
            }
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            let _ = a.handle_incoming(&setup.dir, b_id, &t.bytes, 0);
        }
        assert!(moved, "handshake stalled");
    }
}

fn main() {
    let a_keys = Arc::new(KeySet::generate().expect("keys"));
    let b_keys = Arc::new(KeySet::generate().expect("keys"));
    let dir = [&a_keys, &b_keys]
        .iter()
        .map(|k| (k.node_id(), PeerIdentity::from(k.public())))
        .collect();
    let setup = Setup {
        a_keys,
        b_keys,
        dir,
    };

    let mut samples: Vec<f64> = (0..HANDSHAKES as u64)
        .map(|seed| {
            let (mut a, mut b) = tables(&setup, seed);
            let start = Instant::now();
            handshake(&setup, &mut a, &mut b);
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "handshake (X25519 + ML-KEM-768, Ed25519-signed, both sides): median {:.0} µs, p90 {:.0} µs over {HANDSHAKES}",
        samples[samples.len() / 2],
        samples[samples.len() * 9 / 10]
    );

    let (mut a, mut b) = tables(&setup, 1);
    handshake(&setup, &mut a, &mut b);
    let (a_id, b_id) = (a.local(), b.local());
    let payload = vec![0x5au8; PAYLOAD_BYTES];
    let start = Instant::now();
    for _ in 0..PACKETS {
        let Ok(Outgoing::Sealed(bytes)) = a.encrypt(b_id, &payload, 1) else {
            panic!("session established");
        };
        let Ok(Incoming::Data { plaintext, .. }) = b.handle_incoming(&setup.dir, a_id, &bytes, 1)
        else {
            panic!("packet accepted");
        };
        assert_eq!(plaintext.len(), PAYLOAD_BYTES);
    }
    let seconds = start.elapsed().as_secs_f64();
    let megabytes = (PACKETS * PAYLOAD_BYTES) as f64 / 1e6;
    println!(
        "encrypt + decrypt, {PAYLOAD_BYTES}-byte payloads, one core: {:.0} MB/s ({:.2} µs per packet, {PACKETS} packets)",
        megabytes / seconds,
        seconds * 1e6 / PACKETS as f64
    );
}
