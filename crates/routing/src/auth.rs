//! Originator signatures on OGMs: the traits through which the caller signs and verifies,
//! the cache of verified signatures, and the hold queue for OGMs whose originator's key has
//! not arrived yet.
//!
//! The routing core holds no key and links no cryptography: the caller supplies an
//! [`OgmSigner`] (the node's Ed25519 key) and an [`OgmVerifier`] (the node directory's keys)
//! through [`crate::Router::enable_signed_ogms`]. A signature covers what only the originator
//! sets, [`wire::ogm_signed_part`] `(originator, seq)`; relays copy it unchanged. Each
//! `(originator, seq, signature)` is verified once: relayed duplicates and re-advertisements
//! hit [`SignatureSet`] and cost a comparison.

use std::collections::VecDeque;

use wire::{NodeId, Ogm, OgmSignature};

use crate::Timestamp;
use crate::table::seq_newer;

/// Signs this node's own OGMs. Called once per own sequence number.
pub trait OgmSigner: Send {
    /// The Ed25519 signature of `signed_part` with this node's key.
    fn sign(&self, signed_part: &[u8]) -> OgmSignature;
}

/// What an [`OgmVerifier`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The originator's key verifies the signature.
    Valid,
    /// No key is known for the originator (its node record has not arrived, or never will).
    UnknownKey,
    /// The originator was revoked.
    Revoked,
    /// The originator's key binding is no longer valid (its node record expired).
    Expired,
    /// The signature does not verify under the originator's key: a forgery.
    Bad,
}

/// Checks an originator's signature with the key the caller holds for it.
pub trait OgmVerifier: Send {
    /// Verifies `signature` over `signed_part` as `originator`'s.
    fn verify(&self, originator: &NodeId, signed_part: &[u8], signature: &OgmSignature) -> Verdict;
}

/// The signer and verifier of a router that signs its OGMs and accepts only signed ones.
pub struct OgmAuth {
    /// Signs own OGMs.
    pub signer: Box<dyn OgmSigner>,
    /// Verifies everyone else's.
    pub verifier: Box<dyn OgmVerifier>,
}

impl std::fmt::Debug for OgmAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OgmAuth").finish_non_exhaustive()
    }
}

/// Verified signatures kept per originator. A relay must be able to attach the signature of
/// every sequence number it may advertise: the ones its candidates carry, the one it last
/// advertised (retractions repeat it) and the newest. That is at most five; one more slot
/// takes the number being verified.
pub(crate) const SIGNATURES_PER_ORIGINATOR: usize = 6;

/// The verified `(seq, signature)` pairs of one originator.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignatureSet {
    entries: [(u32, OgmSignature); SIGNATURES_PER_ORIGINATOR],
    len: u8,
}

impl SignatureSet {
    /// The signature verified for `seq`, if kept.
    pub fn get(&self, seq: u32) -> Option<OgmSignature> {
        self.live()
            .iter()
            .find(|(kept, _)| *kept == seq)
            .map(|(_, signature)| *signature)
    }

    /// The newest kept number and its signature.
    pub fn newest(&self) -> Option<(u32, OgmSignature)> {
        self.live()
            .iter()
            .copied()
            .reduce(|a, b| if seq_newer(b.0, a.0) { b } else { a })
    }

    /// Whether exactly this signature was verified for `seq`.
    pub fn contains(&self, seq: u32, signature: &OgmSignature) -> bool {
        self.live()
            .iter()
            .any(|(kept, kept_signature)| *kept == seq && kept_signature == signature)
    }

    /// Keeps a verified signature. When full, the oldest sequence number that `in_use` does
    /// not claim is evicted (the oldest of all if every one is in use).
    pub fn insert(&mut self, seq: u32, signature: OgmSignature, in_use: impl Fn(u32) -> bool) {
        let len = usize::from(self.len);
        if let Some(kept) = self.entries[..len].iter_mut().find(|(s, _)| *s == seq) {
            kept.1 = signature;
            return;
        }
        if len < SIGNATURES_PER_ORIGINATOR {
            self.entries[len] = (seq, signature);
            self.len += 1;
            return;
        }
        let oldest = |candidates: &mut dyn Iterator<Item = usize>| {
            candidates.reduce(|a, b| {
                if seq_newer(self.entries[a].0, self.entries[b].0) {
                    b
                } else {
                    a
                }
            })
        };
        let victim = oldest(&mut (0..len).filter(|&i| !in_use(self.entries[i].0)))
            .or_else(|| oldest(&mut (0..len)))
            .unwrap_or(0);
        self.entries[victim] = (seq, signature);
    }

    fn live(&self) -> &[(u32, OgmSignature)] {
        &self.entries[..usize::from(self.len)]
    }
}

/// Held OGMs at most, over all originators.
pub(crate) const MAX_HELD_OGMS: usize = 1024;
/// Held OGMs per originator at most (about one per neighbour that relays it).
pub(crate) const MAX_HELD_PER_ORIGINATOR: usize = 8;

/// An OGM waiting for its originator's key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    /// The neighbour that sent it (its slot may be reused while the OGM waits).
    pub neighbour: NodeId,
    pub ogm: Ogm,
    /// Dropped as unknown after this.
    pub until: Timestamp,
}

/// OGMs of originators whose node record has not arrived yet: a node's first OGMs travel
/// as fast as its record, so dropping them would leave it unknown until the next refresh.
#[derive(Debug, Default)]
pub(crate) struct HoldQueue {
    /// In arrival order, hence in `until` order.
    held: VecDeque<Held>,
}

/// What [`HoldQueue::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldOutcome {
    /// Held (possibly replacing an older copy from the same neighbour).
    Held,
    /// Held, and the oldest held OGM was dropped to make room.
    HeldEvicting,
    /// Not held: the originator already has its share of the queue.
    Refused,
}

impl HoldQueue {
    /// Bytes held by the queue.
    pub fn allocated_bytes(&self) -> usize {
        self.held.capacity() * std::mem::size_of::<Held>()
    }

    /// Holds `item`, keeping one OGM per (neighbour, originator): the newest.
    pub fn hold(&mut self, item: Held) -> HoldOutcome {
        let mut same_originator = 0;
        for held in self.held.iter_mut() {
            if held.ogm.originator != item.ogm.originator {
                continue;
            }
            if held.neighbour == item.neighbour {
                if !seq_newer(held.ogm.seq, item.ogm.seq) {
                    held.ogm = item.ogm;
                }
                return HoldOutcome::Held;
            }
            same_originator += 1;
        }
        if same_originator >= MAX_HELD_PER_ORIGINATOR {
            return HoldOutcome::Refused;
        }
        let evicted = self.held.len() >= MAX_HELD_OGMS;
        if evicted {
            self.held.pop_front();
        }
        self.held.push_back(item);
        if evicted {
            HoldOutcome::HeldEvicting
        } else {
            HoldOutcome::Held
        }
    }

    /// Removes the OGMs held past their time; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let before = self.held.len();
        while self.held.front().is_some_and(|held| held.until <= now) {
            self.held.pop_front();
        }
        before - self.held.len()
    }

    /// Takes everything held, to be verified again.
    pub fn take(&mut self) -> VecDeque<Held> {
        std::mem::take(&mut self.held)
    }

    /// Forgets the OGMs of `originator`; returns how many.
    pub fn remove_originator(&mut self, originator: &NodeId) -> usize {
        let before = self.held.len();
        self.held.retain(|held| held.ogm.originator != *originator);
        before - self.held.len()
    }

    /// OGMs held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(byte: u8) -> OgmSignature {
        OgmSignature([byte; 64])
    }

    fn held(neighbour: u64, originator: u64, seq: u32, until_us: u64) -> Held {
        Held {
            neighbour: NodeId::from_index(neighbour),
            ogm: Ogm {
                originator: NodeId::from_index(originator),
                seq,
                cost: 100,
                hops: 1,
                ttl: 0,
                flags: 0,
                signature: signature(seq as u8),
            },
            until: Timestamp(until_us),
        }
    }

    #[test]
    fn signature_set_evicts_the_oldest_unused_number() {
        let mut set = SignatureSet::default();
        for seq in 10..16 {
            set.insert(seq, signature(seq as u8), |_| false);
        }
        assert!(set.contains(10, &signature(10)));
        assert!(
            !set.contains(10, &signature(11)),
            "another signature is not a hit"
        );
        // 10 is in use (a candidate still carries it), so 11 goes.
        set.insert(16, signature(16), |seq| seq == 10);
        assert_eq!(set.get(10), Some(signature(10)));
        assert_eq!(set.get(11), None);
        assert_eq!(set.get(16), Some(signature(16)));
        assert_eq!(set.newest(), Some((16, signature(16))));
        // Serial arithmetic: after wrap-around, u32::MAX is older than 0.
        let mut wrapped = SignatureSet::default();
        for seq in [u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2] {
            wrapped.insert(seq, signature(seq as u8), |_| false);
        }
        wrapped.insert(3, signature(3), |_| false);
        assert_eq!(wrapped.get(u32::MAX - 2), None);
        assert!(wrapped.get(0).is_some());
    }

    #[test]
    fn hold_queue_keeps_the_newest_copy_per_neighbour_and_stays_bounded() {
        let mut queue = HoldQueue::default();
        assert_eq!(queue.hold(held(1, 9, 5, 100)), HoldOutcome::Held);
        assert_eq!(queue.hold(held(1, 9, 4, 100)), HoldOutcome::Held);
        assert_eq!(queue.len(), 1);
        assert_eq!(
            queue.held[0].ogm.seq, 5,
            "an older copy does not replace a newer one"
        );
        for neighbour in 2..=MAX_HELD_PER_ORIGINATOR as u64 {
            assert_eq!(queue.hold(held(neighbour, 9, 5, 100)), HoldOutcome::Held);
        }
        assert_eq!(queue.hold(held(99, 9, 5, 100)), HoldOutcome::Refused);
        for originator in 0..MAX_HELD_OGMS as u64 {
            queue.hold(held(1, 1000 + originator, 1, 200));
        }
        assert_eq!(queue.len(), MAX_HELD_OGMS);
        assert_eq!(
            queue.expire(Timestamp(100)),
            0,
            "the originator 9 entries were evicted"
        );
        assert_eq!(queue.expire(Timestamp(200)), MAX_HELD_OGMS);
        assert_eq!(queue.len(), 0);
    }
}
