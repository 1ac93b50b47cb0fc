//! End-to-end sessions between two nodes of the overlay: payloads are encrypted at the source
//! node and decrypted at the destination node, so relays see only routing headers.
//!
//! # Layout
//! - [`sessions`]: the sans-IO [`Sessions`] table, one entry per peer node: handshakes,
//!   queueing, key rollover, expiry, counters. Its calling contract is in its doc.
//! - [`crypto`]: ephemeral X25519 and ML-KEM-768, Ed25519 handshake signatures, the HKDF key
//!   schedule, the AES-256-GCM packet seal.
//! - [`packet`]: the versioned wire format; the only place that knows byte offsets.
//! - [`replay`]: the 2,048-counter sliding replay window.
//! - [`config`]: rekey and expiry timers, table and queue bounds, with defaults and validation.
//! - [`rng`]: the randomness the caller supplies (seeded in tests).
//!
//! # Protocol in one paragraph
//! The initiator sends its ephemeral X25519 key, a fresh ML-KEM-768 encapsulation key and a
//! timestamp, signed with its node's Ed25519 key (two datagrams, 667 bytes each). The responder
//! answers with its own ephemeral X25519 key and an ML-KEM ciphertext, signed over a hash of
//! the whole initiation (one datagram, 1,194 bytes). Both derive one AES-256-GCM key per
//! direction with HKDF-SHA256 from both shared secrets, salted with the transcript hash. Data
//! packets carry a 64-bit counter nonce checked against a replay window. Sessions are re-keyed
//! after a number of messages or seconds; the previous keys keep decrypting for a grace
//! period. The wire format and the reasoning are in `docs/PROTOCOL.md`, "End-to-end sessions".

pub mod config;
pub mod crypto;
pub mod packet;
pub mod replay;
pub mod rng;
pub mod sessions;

pub use config::{ConfigError, SessionConfig};
pub use crypto::{CryptoError, NodeSigner, PeerIdentity};
pub use packet::{DecodeError, MAX_PACKET_BYTES, MAX_PLAINTEXT_BYTES};
pub use rng::{RandomError, RngSource, SeededRng, SystemRng};
pub use sessions::{
    Dropped, Incoming, Outgoing, PeerDirectory, SessionError, SessionInfo, Sessions, Stats,
    Transmit,
};
