//! Every bound of the crate, with the reason for its size.

/// Largest key: keys are indexed and compared on every list; 1 KiB covers hierarchical names.
pub const MAX_KEY_BYTES: usize = 1024;

/// Largest value: a value travels in one log entry and one RPC; bigger objects belong in a blob
/// store with their digest kept here.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Largest page of a prefix listing; a caller pages with the last key it saw.
pub const MAX_LIST_PAGE: usize = 1000;

/// Total bytes of keys and values the store holds. A snapshot is built in memory and sent
/// whole, so the store must stay well inside a node's memory.
pub const MAX_STORE_BYTES: u64 = 256 * 1024 * 1024;

/// Live leases at once; the leader tracks one deadline per lease in memory.
pub const MAX_LEASES: usize = 10_000;

/// Keys attached to one lease: its expiry deletes them in one log entry.
pub const MAX_KEYS_PER_LEASE: u64 = 10_000;

/// Longest lease: one day; longer-lived data should not be leased.
pub const MAX_LEASE_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Leases ended by one expiry entry, so one entry's apply stays short.
pub const MAX_EXPIRE_BATCH: usize = 256;

/// Commands of concurrent clients folded into one log entry. openraft 0.9 waits for each
/// append's fsync before the next, so batching is what lets many clients share one fsync.
pub const MAX_BATCH_COMMANDS: usize = 256;

/// Key and value bytes in one batched entry; a single command up to the value limit always
/// fits on its own.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Batches proposed at once per node: one being appended while the previous one replicates.
/// openraft appends one at a time, so more would only wait inside it as smaller batches (the
/// benchmark measured 7.0k puts/s at 8, 9.5k at 2 with 64 clients).
pub const MAX_INFLIGHT_BATCHES: usize = 2;

/// Write requests waiting to be batched; a full queue makes callers wait (back-pressure).
pub const PROPOSAL_QUEUE: usize = 4096;

/// Largest Raft RPC message in either direction. Entries per append are capped
/// ([`MAX_PAYLOAD_ENTRIES`]), an entry carries at most [`MAX_BATCH_BYTES`] of data (or one
/// command at the value limit) and bytes are hex in JSON (2 characters per byte), so an append
/// stays under about 16 × 2 × 256 KiB = 8 MiB plus framing; snapshots travel in chunks of
/// [`SNAPSHOT_CHUNK_BYTES`].
pub const MAX_RPC_BYTES: usize = 16 * 1024 * 1024;

/// Entries per AppendEntries RPC (openraft's `max_payload_entries`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 16;

/// Snapshot chunk per InstallSnapshot RPC. openraft's request carries the chunk as a JSON
/// array of numbers, up to 4 bytes per byte, so 2 MiB stays well inside [`MAX_RPC_BYTES`].
pub const SNAPSHOT_CHUNK_BYTES: u64 = 2 * 1024 * 1024;

/// Watch events buffered per node; a watcher that falls further behind is told it lagged and
/// must re-list, rather than the state machine waiting for it.
pub const WATCH_BUFFER: usize = 1024;

/// Requests queued to one in-memory peer before senders wait: about one round of heartbeats,
/// replication and votes from a handful of peers.
pub const MEMNET_QUEUE: usize = 256;
