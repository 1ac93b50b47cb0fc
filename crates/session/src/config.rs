//! Timers and bounds of a session table, with defaults and validation.
//!
//! All times are microseconds of the caller's clock, like every `now` argument.

use crate::packet::REJECT_AFTER_MESSAGES;

/// Hard cap on `max_peers`: per-peer state is a few kilobytes plus its queue, and a node talks
/// end to end with at most the mesh's destinations it actually sends to.
pub const MAX_PEERS: usize = 65_536;

/// Hard cap on `queue_per_peer`: packets wait only for one handshake round trip; more than
/// this many full-size packets per peer is a flood, not a burst.
pub const MAX_QUEUE_PER_PEER: usize = 1024;

/// Plaintexts waiting for handshakes across all peers, whatever the per-peer bound (their
/// bytes are bounded by [`MAX_QUEUED_BYTES`]).
pub const MAX_QUEUED_TOTAL: usize = 4096;

/// Most payload bytes queued across all peers: with 64 KB overlay packets, the count alone
/// would allow a quarter of a gigabyte.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;

/// Undrained outgoing datagrams: a caller that stops calling `poll_transmit` cannot grow memory
/// without bound. One flush of every per-peer queue fits.
pub const MAX_TRANSMITS: usize = MAX_QUEUED_TOTAL + 1024;

/// Half-received initiations kept for reassembly. Each is about 1.3 KB and anyone can send
/// fragments before authentication, so the table is small and the oldest entry is evicted.
pub const MAX_REASSEMBLIES: usize = 64;

/// How long the first fragment of an initiation waits for the second; initiators retry well
/// within it.
pub const REASSEMBLY_TIMEOUT_US: u64 = 5_000_000;

/// Least time between two confirmation keepalives to one peer (see `Sessions`): a responder
/// that missed the first one learns of the new keys within this time.
pub const CONFIRM_KEEPALIVE_INTERVAL_US: u64 = 1_000_000;

/// Timers and bounds of a [`crate::Sessions`] table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Peers with state at once; the least recently used is forgotten for a new one.
    pub max_peers: usize,
    /// Plaintexts queued per peer while its handshake runs.
    pub queue_per_peer: usize,
    /// A sender starts a new handshake once its keys sent this many messages.
    pub rekey_after_messages: u64,
    /// A sender starts a new handshake once its keys are this old.
    pub rekey_after_us: u64,
    /// Keys older than this neither send nor receive; the session has expired.
    pub reject_after_us: u64,
    /// How long the previous keys still decrypt after new ones took over, for packets that
    /// were in flight during the rollover.
    pub grace_us: u64,
    /// An unanswered initiation is replaced by a fresh one after this long.
    pub handshake_retry_us: u64,
    /// Initiations sent before the handshake is given up and the queue dropped.
    pub handshake_attempts: u32,
}

impl Default for SessionConfig {
    /// WireGuard's timers (rekey at 120 s, reject at 180 s), rekey after 2^22 messages (2^22
    /// packets of up to 64 KB are 256 GiB, within AES-GCM's per-key limit as TLS 1.3 counts
    /// it, however fast the link), a 10 s
    /// grace period, retries every second for 10 s.
    fn default() -> Self {
        SessionConfig {
            max_peers: 4096,
            queue_per_peer: 64,
            rekey_after_messages: 1 << 22,
            rekey_after_us: 120_000_000,
            reject_after_us: 180_000_000,
            grace_us: 10_000_000,
            handshake_retry_us: 1_000_000,
            handshake_attempts: 10,
        }
    }
}

/// A configuration value out of its range; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session config: {0}")]
pub struct ConfigError(pub &'static str);

impl SessionConfig {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_peers == 0 || self.max_peers > MAX_PEERS {
            return Err(ConfigError("max_peers must be 1..=65536"));
        }
        if self.queue_per_peer == 0 || self.queue_per_peer > MAX_QUEUE_PER_PEER {
            return Err(ConfigError("queue_per_peer must be 1..=1024"));
        }
        if self.rekey_after_messages == 0 || self.rekey_after_messages >= REJECT_AFTER_MESSAGES {
            return Err(ConfigError(
                "rekey_after_messages must be positive and below the reject limit",
            ));
        }
        if self.rekey_after_us == 0 || self.rekey_after_us >= self.reject_after_us {
            return Err(ConfigError(
                "rekey_after_us must be positive and below reject_after_us",
            ));
        }
        if self.grace_us == 0 || self.grace_us > self.reject_after_us {
            return Err(ConfigError(
                "grace_us must be positive and at most reject_after_us",
            ));
        }
        if self.handshake_retry_us == 0 || self.handshake_attempts == 0 {
            return Err(ConfigError(
                "handshake_retry_us and handshake_attempts must be positive",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(SessionConfig::default().validate(), Ok(()));
        let bad = SessionConfig {
            rekey_after_us: 200_000_000,
            ..SessionConfig::default()
        };
        assert!(
            bad.validate()
                .is_err_and(|e| e.0.contains("rekey_after_us"))
        );
        let bad = SessionConfig {
            max_peers: 0,
            ..SessionConfig::default()
        };
        assert!(bad.validate().is_err_and(|e| e.0.contains("max_peers")));
    }
}
