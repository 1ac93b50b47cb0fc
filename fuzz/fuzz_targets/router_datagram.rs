//! Fuzz target: a router fed arbitrary datagrams from arbitrary senders, interleaved with
//! timer ticks, must never panic and must keep its invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routing::{Router, RouterConfig, Timestamp};
use wire::NodeId;

fuzz_target!(|data: &[u8]| {
    let mut router = Router::new(NodeId::from_index(1), RouterConfig::default(), 0, 7, Timestamp::ZERO);
    let mut now = Timestamp::ZERO;
    // Datagrams are separated by the byte 0xFE; each one also advances the clock by 40 ms.
    for chunk in data.split(|&b| b == 0xFE) {
        now = Timestamp(now.0 + 40_000);
        let _ = router.handle_datagram(now, chunk);
        router.handle_timeout(now);
        while router.poll_transmit().is_some() {}
        while router.poll_event().is_some() {}
        router.validate().expect("router invariants hold after any input");
    }
});
