//! The node directory: every member's latest hybrid-signed node record and every revocation,
//! exchanged with neighbours as batches on link streams and flooded onwards when new.
//!
//! A batch is a sequence of items `kind (1 byte) | length (4 bytes, big-endian) | bytes`,
//! kind 1 = node record, 2 = revocation. A record is new when its version is higher than the
//! one held; a revocation is new when the node was not yet revoked. Only new, verified items
//! are flooded, so a flood stops where everyone already has the item.

use std::collections::HashMap;

use identity::verify::VerifierState;
use identity::{NodeRecord, RecordError, Revocation};
use wire::NodeId;

use crate::ogm_auth::{OgmKey, OgmKeys};

/// Most records held. One per member; 65,536 matches the routing core's destination limit.
pub const MAX_RECORDS: usize = 65_536;

/// Largest batch sent on one stream (the link's stream limit).
pub const MAX_BATCH_BYTES: usize = transport::links::MAX_STREAM_BYTES;

const KIND_RECORD: u8 = 1;
const KIND_REVOCATION: u8 = 2;
const ITEM_HEADER_BYTES: usize = 5;

/// Directory counters.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DirectoryStats {
    /// New records accepted.
    pub records_accepted: u64,
    /// Records no newer than the one held (replays and echoes of the flood).
    pub records_stale: u64,
    /// Records refused: forged, malformed, expired or revoked SVID, wrong keys.
    pub records_refused: u64,
    /// New revocations accepted.
    pub revocations_accepted: u64,
    /// Revocations already known.
    pub revocations_known: u64,
    /// Revocations refused (bad signature, malformed).
    pub revocations_refused: u64,
    /// Batches with a malformed framing (the rest of the batch is dropped).
    pub batches_malformed: u64,
    /// Records dropped because the directory is full.
    pub records_full: u64,
}

/// What a batch brought that is new, to apply and flood onwards.
#[derive(Debug, Default)]
pub struct Accepted {
    /// New records (encoded, as received).
    pub records: Vec<Vec<u8>>,
    /// New revocations: the revoked node and the encoded revocation.
    pub revocations: Vec<(NodeId, Vec<u8>)>,
}

impl Accepted {
    /// Whether nothing new arrived.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.revocations.is_empty()
    }
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

    /// Verifies and takes in every item of `batch`; returns what was new.
    pub fn receive(&mut self, batch: &[u8], state: &VerifierState, now_unix: i64) -> Accepted {
        let mut accepted = Accepted::default();
        let mut rest = batch;
        while !rest.is_empty() {
            let Some((kind, item, tail)) = split_item(rest) else {
                self.stats.batches_malformed += 1;
                break;
            };
            rest = tail;
            match kind {
                KIND_RECORD => self.receive_record(item, state, now_unix, &mut accepted),
                KIND_REVOCATION => self.receive_revocation(item, state, &mut accepted),
                _ => {
                    self.stats.batches_malformed += 1;
                    break;
                }
            }
        }
        accepted
    }

    fn receive_record(
        &mut self,
        item: &[u8],
        state: &VerifierState,
        now: i64,
        accepted: &mut Accepted,
    ) {
        match NodeRecord::verify(item, state, now) {
            Ok(record) => {
                let newer = self
                    .records
                    .get(&record.node_id)
                    .is_none_or(|(held, _)| record.version > held.version);
                if !newer {
                    self.stats.records_stale += 1;
                } else if !self.records.contains_key(&record.node_id)
                    && self.records.len() >= MAX_RECORDS
                {
                    self.stats.records_full += 1;
                } else {
                    self.stats.records_accepted += 1;
                    self.insert_record(record, item.to_vec());
                    accepted.records.push(item.to_vec());
                }
            }
            Err(RecordError::Stale) => self.stats.records_stale += 1,
            Err(error) => {
                self.stats.records_refused += 1;
                tracing::debug!(%error, "node record refused");
            }
        }
    }

    fn receive_revocation(&mut self, item: &[u8], state: &VerifierState, accepted: &mut Accepted) {
        match Revocation::verify(item, state) {
            Ok(revocation) if self.revocations.contains_key(&revocation.node_id) => {
                self.stats.revocations_known += 1;
            }
            Ok(revocation) => {
                self.stats.revocations_accepted += 1;
                self.add_revocation(revocation.node_id, item.to_vec());
                accepted
                    .revocations
                    .push((revocation.node_id, item.to_vec()));
            }
            Err(error) => {
                self.stats.revocations_refused += 1;
                tracing::debug!(%error, "revocation refused");
            }
        }
    }

    /// Records a (verified) revocation and forgets the revoked node's record. Returns whether
    /// it was new.
    pub fn add_revocation(&mut self, node: NodeId, bytes: Vec<u8>) -> bool {
        self.records.remove(&node);
        self.ogm_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&node);
        self.revocations.insert(node, bytes).is_none()
    }

    /// Everything held, as batches of at most [`MAX_BATCH_BYTES`]: revocations first, so a
    /// new neighbour learns whom not to trust before anything else.
    pub fn full_batches(&self) -> Vec<Vec<u8>> {
        let items = self
            .revocations
            .values()
            .map(|bytes| (KIND_REVOCATION, bytes.as_slice()))
            .chain(
                self.records
                    .values()
                    .map(|(_, bytes)| (KIND_RECORD, bytes.as_slice())),
            );
        batches(items)
    }
}

/// Encodes new items (as returned by [`Directory::receive`]) for flooding.
pub fn flood_batches(accepted: &Accepted) -> Vec<Vec<u8>> {
    let items = accepted
        .revocations
        .iter()
        .map(|(_, bytes)| (KIND_REVOCATION, bytes.as_slice()))
        .chain(
            accepted
                .records
                .iter()
                .map(|bytes| (KIND_RECORD, bytes.as_slice())),
        );
    batches(items)
}

fn batches<'a>(items: impl Iterator<Item = (u8, &'a [u8])>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for (kind, bytes) in items {
        let Ok(length) = u32::try_from(bytes.len()) else {
            continue;
        };
        if current.len() + ITEM_HEADER_BYTES + bytes.len() > MAX_BATCH_BYTES && !current.is_empty()
        {
            out.push(std::mem::take(&mut current));
        }
        current.push(kind);
        current.extend_from_slice(&length.to_be_bytes());
        current.extend_from_slice(bytes);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn split_item(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&kind, rest) = bytes.split_first()?;
    let (length, rest) = rest.split_first_chunk::<4>()?;
    let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
    if rest.len() < length {
        return None;
    }
    let (item, tail) = rest.split_at(length);
    Some((kind, item, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_at_the_limit_and_framing_errors_are_counted() {
        let big = vec![0u8; MAX_BATCH_BYTES / 3];
        let accepted = Accepted {
            records: vec![big.clone(), big.clone(), big.clone()],
            revocations: Vec::new(),
        };
        let batches = flood_batches(&accepted);
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().all(|batch| batch.len() <= MAX_BATCH_BYTES));
        let mut cut = batches[0].clone();
        cut.truncate(10);
        assert!(split_item(&cut).is_none());
        let items: Vec<_> =
            std::iter::successors(split_item(&batches[0]), |(_, _, tail)| split_item(tail))
                .collect();
        assert_eq!(items.len(), 2);
        assert!(
            items
                .iter()
                .all(|(kind, item, _)| *kind == KIND_RECORD && item.len() == big.len())
        );
    }
}
