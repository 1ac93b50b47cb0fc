//! Reassembly of messages that travelled as fragments, bounded in count, bytes and time.
//!
//! A partial message is keyed by (peer, message id). Its buffer is allocated at the declared
//! total length, which the decoder has already bounded by [`MAX_ASSEMBLED_BYTES`], and every
//! fragment's place in it is fixed by its index, so fragments can neither overlap nor grow a
//! message. Duplicates are ignored; a fragment that contradicts the first one of its message
//! (another count or length) drops the partial message.

use std::collections::BTreeMap;

use wire::NodeId;

use crate::codec::Fragment;
use crate::limits::{
    MAX_ASSEMBLED_BYTES, MAX_FRAGMENTS, MAX_REASSEMBLIES, MAX_REASSEMBLIES_PER_PEER,
    REASSEMBLY_TIMEOUT_MS,
};

// Which fragments arrived is one bit per index.
const _: () = assert!(MAX_FRAGMENTS <= 32);

/// What one fragment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Stored (or a duplicate); the message is not complete yet.
    Pending,
    /// The last missing fragment: the whole message.
    Complete(Vec<u8>),
    /// Contradicts the earlier fragments of its message, which are dropped with it.
    Mismatch,
    /// The reassembly table is full; the fragment is dropped.
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Partial {
    started_ms: u64,
    count: u8,
    total_len: u16,
    /// Bit `i` set: fragment `i` arrived.
    arrived: u32,
    buffer: Vec<u8>,
}

/// Partial messages of every peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reassembly {
    partials: BTreeMap<(NodeId, u32), Partial>,
}

impl Reassembly {
    /// Messages being reassembled.
    pub(crate) fn len(&self) -> usize {
        self.partials.len()
    }

    /// Takes in one (decoded, so self-consistent) fragment from `peer`. Returns the evicted
    /// count too: partial messages of `peer` dropped to make room (each lost a fragment).
    pub(crate) fn insert(
        &mut self,
        peer: NodeId,
        fragment: Fragment,
        now_ms: u64,
    ) -> (Progress, usize) {
        let key = (peer, fragment.message_id);
        let mut evicted = 0;
        if !self.partials.contains_key(&key) {
            let of_peer: Vec<(u64, u32)> = self
                .partials
                .range((peer, 0)..=(peer, u32::MAX))
                .map(|((_, id), partial)| (partial.started_ms, *id))
                .collect();
            if of_peer.len() >= MAX_REASSEMBLIES_PER_PEER
                && let Some((_, oldest)) = of_peer.iter().min()
            {
                self.partials.remove(&(peer, *oldest));
                evicted += 1;
            }
            if self.partials.len() >= MAX_REASSEMBLIES {
                return (Progress::Full, evicted);
            }
            self.partials.insert(
                key,
                Partial {
                    started_ms: now_ms,
                    count: fragment.count,
                    total_len: fragment.total_len,
                    arrived: 0,
                    buffer: vec![0; usize::from(fragment.total_len).min(MAX_ASSEMBLED_BYTES)],
                },
            );
        }
        let Some(partial) = self.partials.get_mut(&key) else {
            return (Progress::Pending, evicted);
        };
        let start = fragment.offset();
        let end = start + fragment.payload.len();
        if partial.count != fragment.count
            || partial.total_len != fragment.total_len
            || end > partial.buffer.len()
        {
            self.partials.remove(&key);
            return (Progress::Mismatch, evicted);
        }
        let bit = 1u32 << fragment.index;
        if partial.arrived & bit == 0 {
            partial.buffer[start..end].copy_from_slice(&fragment.payload);
            partial.arrived |= bit;
        }
        if partial.arrived.count_ones() < u32::from(partial.count) {
            return (Progress::Pending, evicted);
        }
        match self.partials.remove(&key) {
            Some(done) => (Progress::Complete(done.buffer), evicted),
            None => (Progress::Pending, evicted),
        }
    }

    /// Drops partial messages older than [`REASSEMBLY_TIMEOUT_MS`] (or from the future, after
    /// the clock went back); returns how many.
    pub(crate) fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.partials.len();
        self.partials.retain(|_, partial| {
            now_ms >= partial.started_ms && now_ms - partial.started_ms < REASSEMBLY_TIMEOUT_MS
        });
        before - self.partials.len()
    }

    /// Forgets everything from `peer`.
    pub(crate) fn remove_peer(&mut self, peer: NodeId) {
        self.partials.retain(|(from, _), _| *from != peer);
    }

    /// Checks the bounds; the replica's `validate` calls this.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.partials.len() > MAX_REASSEMBLIES {
            return Err("reassembly table beyond its bound".to_owned());
        }
        for ((peer, id), partial) in &self.partials {
            if partial.buffer.len() != usize::from(partial.total_len)
                || partial.buffer.len() > MAX_ASSEMBLED_BYTES
                || partial.arrived.count_ones() >= u32::from(partial.count)
                || partial.arrived >> partial.count != 0
            {
                return Err(format!("reassembly of {peer} #{id} is inconsistent"));
            }
        }
        let mut per_peer: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (peer, _) in self.partials.keys() {
            *per_peer.entry(*peer).or_default() += 1;
        }
        if per_peer
            .values()
            .any(|count| *count > MAX_REASSEMBLIES_PER_PEER)
        {
            return Err("one peer holds more reassemblies than its bound".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{FRAGMENT_PAYLOAD_BYTES, MAX_MESSAGE_BYTES};

    fn message(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn peer(n: u64) -> NodeId {
        NodeId::from_index(n)
    }

    #[test]
    fn fragments_in_any_order_with_duplicates_rebuild_the_message() {
        let bytes = message(3 * FRAGMENT_PAYLOAD_BYTES + 17);
        let mut fragments = Fragment::split(&bytes, 7).expect("within bounds");
        assert_eq!(fragments.len(), 4);
        fragments.reverse();
        let duplicate = fragments[1].clone();
        fragments.insert(2, duplicate);
        let mut table = Reassembly::default();
        let mut outcomes = Vec::new();
        for fragment in fragments {
            outcomes.push(table.insert(peer(1), fragment, 0).0);
        }
        assert_eq!(outcomes.last(), Some(&Progress::Complete(bytes)));
        assert!(outcomes[..4].iter().all(|o| *o == Progress::Pending));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn split_refuses_what_fits_one_datagram_or_exceeds_the_bound() {
        assert!(Fragment::split(&message(MAX_MESSAGE_BYTES), 1).is_none());
        assert!(Fragment::split(&message(MAX_ASSEMBLED_BYTES + 1), 1).is_none());
        let largest = Fragment::split(&message(MAX_ASSEMBLED_BYTES), 1).expect("largest fits");
        assert_eq!(largest.len(), MAX_FRAGMENTS);
        assert_eq!(Fragment::count_for(MAX_ASSEMBLED_BYTES), MAX_FRAGMENTS);
        assert_eq!(Fragment::count_for(MAX_MESSAGE_BYTES), 1);
    }

    #[test]
    fn a_contradicting_fragment_drops_the_partial_message() {
        let a = Fragment::split(&message(2_000), 9).expect("within bounds");
        let b = Fragment::split(&message(3_000), 9).expect("within bounds");
        let mut table = Reassembly::default();
        assert_eq!(table.insert(peer(1), a[0].clone(), 0).0, Progress::Pending);
        assert_eq!(table.insert(peer(1), b[1].clone(), 0).0, Progress::Mismatch);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn incomplete_messages_expire_and_each_peer_is_capped() {
        let mut table = Reassembly::default();
        for id in 0..(MAX_REASSEMBLIES_PER_PEER as u32 + 3) {
            let first = Fragment::split(&message(2_000), id).expect("within bounds")[0].clone();
            let (progress, _) = table.insert(peer(1), first, u64::from(id));
            assert_eq!(progress, Progress::Pending);
            table.validate().expect("bounds hold");
        }
        assert_eq!(table.len(), MAX_REASSEMBLIES_PER_PEER);
        let other = Fragment::split(&message(2_000), 0).expect("within bounds")[0].clone();
        table.insert(peer(2), other, 100);
        assert_eq!(
            table.expire(REASSEMBLY_TIMEOUT_MS + 50),
            MAX_REASSEMBLIES_PER_PEER
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.expire(REASSEMBLY_TIMEOUT_MS + 100), 1);
    }

    #[test]
    fn the_table_refuses_new_messages_when_full() {
        let mut table = Reassembly::default();
        for n in 0..MAX_REASSEMBLIES as u64 {
            let first = Fragment::split(&message(2_000), 1).expect("within bounds")[0].clone();
            assert_eq!(table.insert(peer(n), first, 0).0, Progress::Pending);
        }
        let first = Fragment::split(&message(2_000), 1).expect("within bounds")[0].clone();
        assert_eq!(table.insert(peer(10_000), first, 0).0, Progress::Full);
        assert_eq!(table.len(), MAX_REASSEMBLIES);
        table.validate().expect("bounds hold");
    }
}
