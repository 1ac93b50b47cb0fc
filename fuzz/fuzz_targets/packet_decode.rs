//! Fuzz target: `wire::Packet::decode` on arbitrary bytes must never panic, and whatever it
//! accepts must re-encode to bytes that decode to the same messages.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = wire::Packet::decode(data) {
        let again = wire::Packet::decode(&packet.encode()).expect("re-encoded packet decodes");
        assert_eq!(again.messages, packet.messages);
        assert_eq!(again.sender, packet.sender);
    }
});
