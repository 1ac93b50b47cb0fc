//! Dots (one event of one writer) and causal contexts (the set of events a state has seen).
//!
//! A context is a version vector (every writer's contiguous prefix of events) plus a small
//! "cloud" of events seen out of order. Merging deltas fills the gaps and the cloud shrinks
//! back into the vector; anti-entropy only ever delivers contiguous ranges, so in a running
//! node the cloud stays empty.

use std::collections::{BTreeMap, BTreeSet};

use wire::NodeId;

use crate::error::CrdtError;
use crate::limits::{MAX_CLOUD_DOTS, MAX_ORIGINS};

/// One event: the `seq`-th write of `origin` into one collection (counting from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    /// The writer.
    pub origin: NodeId,
    /// Its event counter in this collection.
    pub seq: u64,
}

/// The events a state has seen: a version vector plus out-of-order dots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CausalContext {
    vv: BTreeMap<NodeId, u64>,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// The empty context.
    pub fn new() -> CausalContext {
        CausalContext::default()
    }

    /// Whether `dot` has been seen.
    pub fn contains(&self, dot: Dot) -> bool {
        self.max(dot.origin) >= dot.seq || self.cloud.contains(&dot)
    }

    /// The contiguous prefix of `origin`'s events seen (0: none).
    pub fn max(&self, origin: NodeId) -> u64 {
        self.vv.get(&origin).copied().unwrap_or(0)
    }

    /// The largest event of `origin` seen, contiguous or not; the next local dot goes after it.
    pub fn highest(&self, origin: NodeId) -> u64 {
        let cloud = self
            .cloud
            .range(
                Dot { origin, seq: 0 }..=Dot {
                    origin,
                    seq: u64::MAX,
                },
            )
            .next_back()
            .map_or(0, |dot| dot.seq);
        self.max(origin).max(cloud)
    }

    /// The version vector: every origin with its contiguous prefix.
    pub fn vector(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.vv.iter().map(|(origin, max)| (*origin, *max))
    }

    /// The out-of-order dots.
    pub fn cloud(&self) -> impl Iterator<Item = Dot> + '_ {
        self.cloud.iter().copied()
    }

    /// Number of origins tracked.
    pub fn origins(&self) -> usize {
        self.vv.len()
    }

    /// Whether the context has seen nothing.
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.cloud.is_empty()
    }

    /// Adds one dot. Fails, unchanged, when a bound would be exceeded.
    pub fn insert(&mut self, dot: Dot) -> Result<(), CrdtError> {
        let mut next = self.clone();
        next.insert_unchecked(dot);
        next.compact();
        next.check_bounds()?;
        *self = next;
        Ok(())
    }

    /// Marks every event of `origin` up to `hi` as seen.
    pub fn insert_prefix(&mut self, origin: NodeId, hi: u64) -> Result<(), CrdtError> {
        if hi <= self.max(origin) {
            return Ok(());
        }
        if !self.vv.contains_key(&origin) && self.vv.len() >= MAX_ORIGINS {
            return Err(CrdtError::ContextFull);
        }
        self.vv.insert(origin, hi);
        self.compact();
        Ok(())
    }

    /// The union of two contexts. Fails, unchanged, when a bound would be exceeded.
    pub fn merge(&mut self, other: &CausalContext) -> Result<(), CrdtError> {
        let mut next = self.clone();
        for (origin, max) in &other.vv {
            let slot = next.vv.entry(*origin).or_insert(0);
            *slot = (*slot).max(*max);
        }
        next.cloud.extend(other.cloud.iter().copied());
        next.compact();
        next.check_bounds()?;
        *self = next;
        Ok(())
    }

    /// Rebuilds a context from decoded parts, checking the bounds and the shape (cloud dots
    /// must lie beyond the vector, which `compact` guarantees for every context we build).
    pub(crate) fn from_parts(
        vv: BTreeMap<NodeId, u64>,
        cloud: BTreeSet<Dot>,
    ) -> Result<CausalContext, CrdtError> {
        let mut ctx = CausalContext { vv, cloud };
        ctx.vv.retain(|_, max| *max > 0);
        ctx.compact();
        ctx.check_bounds()?;
        Ok(ctx)
    }

    fn insert_unchecked(&mut self, dot: Dot) {
        if dot.seq > self.max(dot.origin) {
            self.cloud.insert(dot);
        }
    }

    /// Moves cloud dots that continue a prefix into the vector and drops those already covered.
    fn compact(&mut self) {
        let dots: Vec<Dot> = self.cloud.iter().copied().collect();
        for dot in dots {
            let max = self.max(dot.origin);
            if dot.seq <= max {
                self.cloud.remove(&dot);
            } else if dot.seq == max + 1 {
                self.vv.insert(dot.origin, dot.seq);
                self.cloud.remove(&dot);
            }
        }
    }

    fn check_bounds(&self) -> Result<(), CrdtError> {
        let origins: BTreeSet<NodeId> = self
            .vv
            .keys()
            .copied()
            .chain(self.cloud.iter().map(|dot| dot.origin))
            .collect();
        if origins.len() > MAX_ORIGINS || self.cloud.len() > MAX_CLOUD_DOTS {
            return Err(CrdtError::ContextFull);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(origin: u64, seq: u64) -> Dot {
        Dot {
            origin: NodeId::from_index(origin),
            seq,
        }
    }

    #[test]
    fn out_of_order_dots_compact_into_the_vector_once_the_gap_fills() {
        let mut ctx = CausalContext::new();
        ctx.insert(dot(1, 2)).expect("room");
        ctx.insert(dot(1, 3)).expect("room");
        assert_eq!(ctx.max(NodeId::from_index(1)), 0);
        assert_eq!(ctx.highest(NodeId::from_index(1)), 3);
        assert!(ctx.contains(dot(1, 3)) && !ctx.contains(dot(1, 1)));
        ctx.insert(dot(1, 1)).expect("room");
        assert_eq!(ctx.max(NodeId::from_index(1)), 3);
        assert_eq!(ctx.cloud().count(), 0);
    }

    #[test]
    fn a_full_cloud_refuses_more_and_stays_unchanged() {
        let mut ctx = CausalContext::new();
        for seq in 0..MAX_CLOUD_DOTS as u64 {
            ctx.insert(dot(1, 2 + 2 * seq)).expect("room");
        }
        let before = ctx.clone();
        assert_eq!(ctx.insert(dot(1, u64::MAX)), Err(CrdtError::ContextFull));
        assert_eq!(ctx, before);
    }
}
