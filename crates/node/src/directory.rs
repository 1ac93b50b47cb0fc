//! The node directory: the verified node records and revocations this node holds, for the
//! session layer's key lookups, the router's OGM verifier and the revocation count. It is
//! filled from the CRDT replica ([`crate::replication`]), whose signature checks verified every
//! entry; the replica, not this table, carries them between nodes.

use std::collections::HashMap;

use identity::NodeRecord;
use wire::NodeId;

use crate::ogm_auth::{OgmKey, OgmKeys};

/// Most records held. One per member; 65,536 matches the routing core's destination limit.
pub const MAX_RECORDS: usize = 65_536;

/// Directory counters.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DirectoryStats {
    /// New records taken in.
    pub records_accepted: u64,
    /// Records no newer than the one held (re-verified repairs, replays).
    pub records_stale: u64,
    /// Records dropped because the directory is full.
    pub records_full: u64,
    /// New revocations taken in.
    pub revocations_accepted: u64,
}

/// Records and revocations held by this node.
#[derive(Debug, Default)]
pub struct Directory {
    records: HashMap<NodeId, (NodeRecord, Vec<u8>)>,
    revocations: HashMap<NodeId, Vec<u8>>,
    /// The Ed25519 key and expiry of every record held, for the router's OGM verifier.
    ogm_keys: OgmKeys,
    stats: DirectoryStats,
}

impl Directory {
    /// Counters.
    pub fn stats(&self) -> &DirectoryStats {
        &self.stats
    }

    /// Number of records held.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// The record of `node`, if held.
    pub fn record(&self, node: &NodeId) -> Option<&NodeRecord> {
        self.records.get(node).map(|(record, _)| record)
    }

    /// The OGM keys of the records held, kept in step with them (shared with the verifier).
    pub fn ogm_keys(&self) -> OgmKeys {
        self.ogm_keys.clone()
    }

    /// Installs this node's own record (already signed).
    pub fn set_own(&mut self, record: NodeRecord, bytes: Vec<u8>) {
        self.insert_record(record, bytes);
    }

    fn insert_record(&mut self, record: NodeRecord, bytes: Vec<u8>) {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&record.keys.ed25519)
            .ok()
            .map(|ed25519| OgmKey {
                ed25519,
                not_after: record.not_after,
            });
        let mut keys = self
            .ogm_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match key {
            Some(key) => keys.insert(record.node_id, key),
            None => keys.remove(&record.node_id),
        };
        drop(keys);
        self.records.insert(record.node_id, (record, bytes));
    }

    /// Takes in a verified record if it is newer than the one held and the node is not
    /// revoked; returns whether it was taken.
    pub fn insert_newer(&mut self, record: NodeRecord, bytes: Vec<u8>) -> bool {
        if self.revocations.contains_key(&record.node_id) {
            return false;
        }
        let newer = self
            .records
            .get(&record.node_id)
            .is_none_or(|(held, _)| record.version > held.version);
        if !newer {
            self.stats.records_stale += 1;
            return false;
        }
        if !self.records.contains_key(&record.node_id) && self.records.len() >= MAX_RECORDS {
            self.stats.records_full += 1;
            return false;
        }
        self.stats.records_accepted += 1;
        self.insert_record(record, bytes);
        true
    }

    /// Records a (verified) revocation and forgets the revoked node's record and OGM key.
    /// Returns whether it was new.
    pub fn add_revocation(&mut self, node: NodeId, bytes: Vec<u8>) -> bool {
        self.records.remove(&node);
        self.ogm_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&node);
        let new = self.revocations.insert(node, bytes).is_none();
        if new {
            self.stats.revocations_accepted += 1;
        }
        new
    }
}
