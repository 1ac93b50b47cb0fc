//! Persistence: a replica as bytes for the node to write to its data dir, and back.
//!
//! ```text
//! 0    2   magic "xs"
//! 2    1   version 1
//! 3    16  node id (must match the configuration on restore)
//! 19   8   clock physical ms
//! 27   4   clock logical
//! 31   2   peer count, then per peer: id (16), last heard ms (8)
//! ..   1   collection count, then per collection: name (1 + n), kind (1), store
//! ..   32  SHA-256 of every byte before it
//! ```
//!
//! A store is its policy (1), version vector (u32 count, then origin 16 + max 8), cloud (u32
//! count, then origin 16 + seq 8) and entries (u32 count, then origin 16, seq 8, physical 8,
//! logical 4, key length 1 + key, value tag 1 (0 tombstone, 1 value) + length 2 + value).
//! Peer acknowledgements are not stored: after a restart every peer must acknowledge again
//! before a tombstone is collected, which can only delay collection.
//!
//! The node must restore its latest snapshot before writing. A node that restarts empty (or
//! from an old copy) numbers its next write after the last event it knows of, which its peers
//! may already have seen under the same number; they would ignore the write. Such a node
//! should complete one digest round with a peer first, which brings its own history back.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::error::{CrdtError, DecodeError};
use crate::hlc::{Hlc, HlcClock};
use crate::limits::{MAX_COLLECTIONS, MAX_PEERS};
use crate::replica::{Kind, Replica, ReplicaConfig};

/// First two bytes of a snapshot: "xs".
pub const SNAPSHOT_MAGIC: [u8; 2] = *b"xs";
/// The snapshot format version this code writes and reads.
pub const SNAPSHOT_VERSION: u8 = 1;
/// Bytes of the trailing checksum.
pub const CHECKSUM_BYTES: usize = 32;

impl Replica {
    /// The replica's durable state: collections, clock and peer list.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&SNAPSHOT_MAGIC);
        w.u8(SNAPSHOT_VERSION);
        w.node(self.node());
        let last = self.clock().last();
        w.u64(last.physical_ms);
        w.u32(last.logical);
        let peers = self.peer_records();
        w.u16(peers.len() as u16);
        for (peer, last_heard_ms) in peers {
            w.node(peer);
            w.u64(last_heard_ms);
        }
        let collections = self.collection_parts();
        w.u8(collections.len() as u8);
        for (name, kind, store) in collections {
            w.short_bytes(name.as_bytes());
            w.u8(kind.code());
            w.store(store);
        }
        let checksum = Sha256::digest(w.as_bytes());
        w.raw(&checksum);
        w.into_bytes()
    }

    /// Rebuilds a replica from [`Replica::snapshot`] bytes. Refuses a wrong checksum, version
    /// or node id, any bound exceeded, and a persisted collection the configuration no longer
    /// names or names with another kind (rather than silently dropping its data). Collections
    /// new in the configuration start empty.
    pub fn restore(config: ReplicaConfig, bytes: &[u8], now_ms: u64) -> Result<Replica, CrdtError> {
        config.validate()?;
        if bytes.len() < 3 + CHECKSUM_BYTES {
            return Err(DecodeError::Truncated.into());
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        let mut r = Reader::new(body);
        if r.take(2)? != SNAPSHOT_MAGIC {
            return Err(DecodeError::BadMagic.into());
        }
        let version = r.u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(DecodeError::UnknownVersion(version).into());
        }
        if Sha256::digest(body).as_slice() != checksum {
            return Err(DecodeError::Checksum.into());
        }
        let node = r.node()?;
        if node != config.node {
            return Err(CrdtError::Config(format!(
                "node: snapshot belongs to {node}"
            )));
        }
        let last = Hlc {
            physical_ms: r.u64()?,
            logical: r.u32()?,
            node,
        };
        let peer_count = usize::from(r.u16()?);
        if peer_count > MAX_PEERS {
            return Err(DecodeError::Invalid("peer count").into());
        }
        let mut peers = BTreeMap::new();
        for _ in 0..peer_count {
            peers.insert(r.node()?, r.u64()?);
        }
        let count = usize::from(r.u8()?);
        if count > MAX_COLLECTIONS {
            return Err(DecodeError::Invalid("collection count").into());
        }
        let mut replica = Replica::new(config, now_ms)?;
        let mut clock = HlcClock::resume(node, replica.config().max_drift_ms, last);
        for _ in 0..count {
            let name = r.collection_name()?;
            let kind = Kind::from_code(r.u8()?).ok_or(DecodeError::Invalid("kind"))?;
            let store = r.store()?;
            for (_, entry) in store.entries() {
                clock.witness(entry.hlc);
            }
            let name =
                String::from_utf8(name).map_err(|_| DecodeError::Invalid("collection name"))?;
            replica.install(&name, kind, store)?;
        }
        r.finish()?;
        replica.install_clock_and_peers(clock, peers);
        Ok(replica)
    }
}
