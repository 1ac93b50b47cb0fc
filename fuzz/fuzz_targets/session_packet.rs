//! Fuzz target: `session::packet::decode` never panics; a session table with one established
//! session and one handshake in flight, fed arbitrary datagrams (split at 0xFE, from either
//! peer, interleaved with timer ticks), never panics, keeps its invariants, never emits a
//! datagram over the bound and never delivers a payload nobody sealed.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use identity::KeySet;
use libfuzzer_sys::fuzz_target;
use session::{Incoming, MAX_PACKET_BYTES, PeerIdentity, SeededRng, SessionConfig, Sessions};
use wire::NodeId;

struct Setup {
    local: Arc<KeySet>,
    established: Arc<KeySet>,
    pending: NodeId,
    dir: HashMap<NodeId, PeerIdentity>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let local = Arc::new(KeySet::generate().expect("keys"));
        let established = Arc::new(KeySet::generate().expect("keys"));
        let pending = Arc::new(KeySet::generate().expect("keys"));
        let dir = [&local, &established, &pending]
            .iter()
            .map(|k| (k.node_id(), PeerIdentity::from(k.public())))
            .collect();
        Setup {
            local,
            established,
            pending: pending.node_id(),
            dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = session::packet::decode(data);
    let setup = setup();
    let t0 = 1_790_000_000_000_000;
    let config = SessionConfig::default();
    let mut local = Sessions::new(config.clone(), Arc::clone(&setup.local), SeededRng::new(1))
        .expect("default config is valid");
    let mut peer = Sessions::new(config, Arc::clone(&setup.established), SeededRng::new(2))
        .expect("default config is valid");
    let (local_id, peer_id) = (local.local(), peer.local());
    // A real session between `local` and `peer`, so fuzzed data packets can reach the replay
    // window and the AEAD with a valid index.
    let _ = local.encrypt(peer_id, b"x", t0);
    for _ in 0..4 {
        while let Some(t) = local.poll_transmit() {
            let _ = peer.handle_incoming(&setup.dir, local_id, &t.bytes, t0);
        }
        while let Some(t) = peer.poll_transmit() {
            let _ = local.handle_incoming(&setup.dir, peer_id, &t.bytes, t0);
        }
    }
    assert!(
        local.session(&peer_id).is_some(),
        "setup establishes a session"
    );
    let _ = local.encrypt(setup.pending, b"y", t0);
    let mut now = t0;
    for (i, chunk) in data.split(|&b| b == 0xFE).enumerate() {
        now += 50_000;
        let from = if i % 2 == 0 { peer_id } else { setup.pending };
        if let Ok(Incoming::Data { .. }) = local.handle_incoming(&setup.dir, from, chunk, now) {
            panic!("accepted a payload nobody sealed");
        }
        local.handle_timeout(now);
        while let Some(t) = local.poll_transmit() {
            assert!(t.bytes.len() <= MAX_PACKET_BYTES);
        }
        local
            .validate()
            .expect("session table invariants hold after any input");
    }
});
