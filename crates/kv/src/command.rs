//! Commands replicated through the Raft log, their replies, and the limits every request obeys.

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// A lease identifier: the log index of the entry that granted it, so unique in the cluster.
pub type LeaseId = u64;

/// A revision: the log index of the entry that made a change.
pub type Revision = u64;

/// A state-machine command. Every replica applies the same commands at the same log indices, so
/// nothing here may depend on the local clock or on local state other than the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Write `value` under `key`, optionally attached to a lease (deleted when it ends).
    Put {
        /// Key bytes.
        #[serde(with = "hex_bytes")]
        key: Vec<u8>,
        /// Value bytes.
        #[serde(with = "hex_bytes")]
        value: Vec<u8>,
        /// Lease to attach the key to.
        lease: Option<LeaseId>,
    },
    /// Remove `key`.
    Delete {
        /// Key bytes.
        #[serde(with = "hex_bytes")]
        key: Vec<u8>,
    },
    /// Write `new` only if the key holds `expected` (`None`: only if absent).
    Cas {
        /// Key bytes.
        #[serde(with = "hex_bytes")]
        key: Vec<u8>,
        /// Required current value, `None` for "absent".
        #[serde(with = "hex_opt")]
        expected: Option<Vec<u8>>,
        /// Value written on success.
        #[serde(with = "hex_bytes")]
        new: Vec<u8>,
    },
    /// Create a lease of `ttl_ms`; its id is the entry's log index.
    LeaseGrant {
        /// Time to live in milliseconds, counted by the leader.
        ttl_ms: u64,
    },
    /// End a lease now and delete its keys.
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
    /// Commands from concurrent clients proposed as one log entry (one fsync and one round of
    /// replication for all); applied in order, all at the entry's revision.
    Batch(Vec<Command>),
    /// Proposed by the leader when leases ran out: deletes them and their keys on every replica
    /// at this entry's index.
    LeaseExpire {
        /// Expired leases.
        ids: Vec<LeaseId>,
    },
}

/// The state machine's answer to one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A put was applied.
    Put {
        /// Its revision.
        revision: Revision,
    },
    /// A delete was applied.
    Delete {
        /// Its revision.
        revision: Revision,
        /// Whether the key existed.
        existed: bool,
    },
    /// A compare-and-swap ran.
    Cas {
        /// Its revision.
        revision: Revision,
        /// Whether the write happened.
        succeeded: bool,
        /// The value after the operation (the new one on success).
        #[serde(with = "hex_opt")]
        current: Option<Vec<u8>>,
    },
    /// A lease was granted.
    LeaseGranted {
        /// Its revision, which is also the lease id.
        revision: Revision,
        /// The lease id.
        id: LeaseId,
    },
    /// Leases were revoked or expired.
    LeasesEnded {
        /// Its revision.
        revision: Revision,
        /// Leases that existed and ended.
        ended: Vec<LeaseId>,
        /// Keys deleted with them.
        keys_deleted: u64,
    },
    /// The command was refused deterministically (same answer on every replica).
    Rejected {
        /// Its revision.
        revision: Revision,
        /// Why.
        reason: Rejection,
    },
    /// The replies of a [`Command::Batch`], in order.
    Batch(Vec<Reply>),
    /// A blank or membership entry.
    Internal {
        /// Its revision.
        revision: Revision,
    },
}

/// Why the state machine refused a command; identical on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// The put named a lease that does not exist (never granted, revoked or expired).
    #[error("lease {0} does not exist")]
    LeaseNotFound(LeaseId),
    /// The store holds the most leases it may.
    #[error("too many leases (limit {0})")]
    TooManyLeases(usize),
    /// The lease has the most keys it may.
    #[error("lease {0} has too many keys")]
    LeaseFull(LeaseId),
    /// Applying would take the store over its size bound.
    #[error("store full: {used} of {limit} bytes used")]
    StoreFull {
        /// Bytes of keys and values stored.
        used: u64,
        /// The bound.
        limit: u64,
    },
    /// A command that passed no request validation (a replica never proposes one).
    #[error("invalid command: {0}")]
    Invalid(String),
}

/// Why a request was refused before it reached the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Empty keys are refused: they would make prefix listing ambiguous.
    #[error("empty key")]
    EmptyKey,
    /// A key over [`MAX_KEY_BYTES`].
    #[error("key of {0} bytes exceeds the limit of {MAX_KEY_BYTES} bytes")]
    KeyTooLong(usize),
    /// A value over [`MAX_VALUE_BYTES`].
    #[error("value of {0} bytes exceeds the limit of {MAX_VALUE_BYTES} bytes")]
    ValueTooLong(usize),
    /// A lease TTL outside the allowed range.
    #[error("lease ttl {0} ms outside 1..={max} ms", max = crate::limits::MAX_LEASE_TTL_MS)]
    BadTtl(u64),
    /// A list page size of zero or over the bound.
    #[error("page size {0} outside 1..={max}", max = crate::limits::MAX_LIST_PAGE)]
    BadPage(usize),
    /// Too many lease ids or batched commands in one command.
    #[error("{0} items in one command exceed the limit")]
    TooManyIds(usize),
    /// A batch inside a batch.
    #[error("nested batch")]
    NestedBatch,
}

/// Checks a key against the limits.
pub fn check_key(key: &[u8]) -> Result<(), LimitError> {
    if key.is_empty() {
        return Err(LimitError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(LimitError::KeyTooLong(key.len()));
    }
    Ok(())
}

/// Checks a value against the limits.
pub fn check_value(value: &[u8]) -> Result<(), LimitError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(LimitError::ValueTooLong(value.len()));
    }
    Ok(())
}

impl Command {
    /// Validates the command's sizes; the node runs this before proposing and the state machine
    /// again before applying (a log written by another build must not bypass the limits).
    pub fn validate(&self) -> Result<(), LimitError> {
        match self {
            Command::Put { key, value, .. } => {
                check_key(key)?;
                check_value(value)
            }
            Command::Delete { key } => check_key(key),
            Command::Cas { key, expected, new } => {
                check_key(key)?;
                if let Some(expected) = expected {
                    check_value(expected)?;
                }
                check_value(new)
            }
            Command::LeaseGrant { ttl_ms } => {
                if *ttl_ms == 0 || *ttl_ms > crate::limits::MAX_LEASE_TTL_MS {
                    return Err(LimitError::BadTtl(*ttl_ms));
                }
                Ok(())
            }
            Command::LeaseRevoke { .. } => Ok(()),
            Command::LeaseExpire { ids } => {
                if ids.len() > crate::limits::MAX_EXPIRE_BATCH {
                    return Err(LimitError::TooManyIds(ids.len()));
                }
                Ok(())
            }
            Command::Batch(commands) => {
                if commands.len() > crate::limits::MAX_BATCH_COMMANDS {
                    return Err(LimitError::TooManyIds(commands.len()));
                }
                for command in commands {
                    if matches!(command, Command::Batch(_)) {
                        return Err(LimitError::NestedBatch);
                    }
                    command.validate()?;
                }
                Ok(())
            }
        }
    }

    /// Bytes of keys and values the command carries, for batch sizing.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Command::Put { key, value, .. } => key.len() + value.len(),
            Command::Delete { key } => key.len(),
            Command::Cas { key, expected, new } => {
                key.len() + expected.as_ref().map_or(0, Vec::len) + new.len()
            }
            Command::LeaseGrant { .. } | Command::LeaseRevoke { .. } => 16,
            Command::LeaseExpire { ids } => 8 * ids.len(),
            Command::Batch(commands) => commands.iter().map(Command::payload_bytes).sum(),
        }
    }
}

/// Bytes as a hex string: JSON arrays of numbers would cost up to four bytes per byte.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Optional bytes as an optional hex string.
pub(crate) mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| hex::decode(t.as_bytes()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_with_clear_errors() {
        let big_key = vec![b'k'; MAX_KEY_BYTES + 1];
        let put = Command::Put {
            key: big_key,
            value: vec![],
            lease: None,
        };
        assert_eq!(
            put.validate(),
            Err(LimitError::KeyTooLong(MAX_KEY_BYTES + 1))
        );
        let put = Command::Put {
            key: b"k".to_vec(),
            value: vec![0; MAX_VALUE_BYTES + 1],
            lease: None,
        };
        let err = put.validate().expect_err("oversized value");
        assert!(err.to_string().contains("65536"), "{err}");
        let edge = Command::Put {
            key: vec![b'k'; MAX_KEY_BYTES],
            value: vec![0; MAX_VALUE_BYTES],
            lease: None,
        };
        assert_eq!(edge.validate(), Ok(()));
        assert_eq!(
            Command::Delete { key: vec![] }.validate(),
            Err(LimitError::EmptyKey)
        );
        assert_eq!(
            Command::LeaseGrant { ttl_ms: 0 }.validate(),
            Err(LimitError::BadTtl(0))
        );
    }

    #[test]
    fn batches_are_bounded_flat_and_checked_member_by_member() {
        let put = |n: usize| Command::Put {
            key: b"k".to_vec(),
            value: vec![0; n],
            lease: None,
        };
        assert_eq!(Command::Batch(vec![put(1), put(2)]).validate(), Ok(()));
        assert_eq!(Command::Batch(vec![put(1), put(2)]).payload_bytes(), 5);
        assert_eq!(
            Command::Batch(vec![Command::Batch(vec![])]).validate(),
            Err(LimitError::NestedBatch)
        );
        assert_eq!(
            Command::Batch(vec![put(MAX_VALUE_BYTES + 1)]).validate(),
            Err(LimitError::ValueTooLong(MAX_VALUE_BYTES + 1))
        );
        let many = crate::limits::MAX_BATCH_COMMANDS + 1;
        assert_eq!(
            Command::Batch(vec![put(0); many]).validate(),
            Err(LimitError::TooManyIds(many))
        );
    }

    #[test]
    fn commands_round_trip_with_hex_bytes() {
        let cmd = Command::Cas {
            key: vec![0, 255, 7],
            expected: None,
            new: vec![1, 2],
        };
        let text = serde_json::to_string(&cmd).expect("serializable");
        assert!(text.contains("\"00ff07\""), "{text}");
        let back: Command = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, cmd);
        let bad = text.replace("00ff07", "zz");
        assert!(serde_json::from_str::<Command>(&bad).is_err());
    }
}
