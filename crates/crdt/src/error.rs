//! Errors of local operations and of decoding; every variant says what the caller did wrong or
//! which bound was hit.

use thiserror::Error;

/// Why a local mutation, merge or restore was refused. A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CrdtError {
    /// A key (map key, set element) longer than [`crate::limits::MAX_KEY_BYTES`].
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// Length of the refused key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value longer than [`crate::limits::MAX_VALUE_BYTES`].
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// Length of the refused value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The collection would hold more than [`crate::limits::MAX_ENTRIES`] entries.
    #[error("collection is full ({max} entries)")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// The causal context would track more than [`crate::limits::MAX_ORIGINS`] writers or
    /// [`crate::limits::MAX_CLOUD_DOTS`] out-of-order events.
    #[error("causal context is full")]
    ContextFull,
    /// A remote timestamp lies further ahead of the local wall clock than the allowed drift.
    #[error("remote clock {remote_ms} ms is too far ahead of local clock {local_ms} ms")]
    ClockTooFarAhead {
        /// The remote physical time.
        remote_ms: u64,
        /// The local wall clock.
        local_ms: u64,
    },
    /// A delta whose entries lie outside what it claims to cover, whose writer differs from
    /// its dot's origin, or whose range does not continue the receiver's history.
    #[error("delta is inconsistent or does not continue the local history")]
    InvalidDelta,
    /// A counter increment would overflow 64 bits.
    #[error("counter overflow")]
    CounterOverflow,
    /// No collection of that name exists.
    #[error("unknown collection {0:?}")]
    UnknownCollection(String),
    /// The collection exists but holds another kind of CRDT.
    #[error("collection {0:?} holds another kind of CRDT")]
    WrongKind(String),
    /// Bad replica configuration (names, counts); the text names the field.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Persisted bytes that cannot be restored.
    #[error("snapshot rejected: {0}")]
    Snapshot(#[from] DecodeError),
}

/// Why bytes (a message or a snapshot) could not be decoded. Decoders return this for every
/// malformed input; they never panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Wrong magic bytes: not an anti-entropy message or snapshot.
    #[error("bad magic")]
    BadMagic,
    /// A version this code does not speak.
    #[error("unknown version {0}")]
    UnknownVersion(u8),
    /// A message type this code does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// Longer than the bound for its kind.
    #[error("oversized input")]
    Oversized,
    /// Ended before a field was complete.
    #[error("truncated input")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("trailing bytes")]
    TrailingBytes,
    /// A field outside its allowed range (lengths, order, kinds).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
    /// The checksum does not match the content.
    #[error("checksum mismatch")]
    Checksum,
}
