//! The event queue (a min-heap on virtual time) and the slab that holds packets in flight.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Most events that may be pending at once. In steady state the queue holds one timer per node
/// plus the packets in flight, which is the packets sent during one link latency: about
/// 10,000 nodes x 6 links x 10 probes/s x 5.5 ms = 3,300 probes plus OGM batches, far below
/// this cap. Only a router flooding without bound gets near it: packet copies are then dropped
/// (see [`MAX_QUEUED_DELIVERIES`]) instead of eating the machine's memory (2^24 events are
/// ~0.5 GiB); only wake-ups beyond the cap stop the run with `SimError::QueueFull`.
pub const MAX_QUEUED_EVENTS: usize = 1 << 24;

/// Most pending events once a packet copy is to be queued: beyond it the engine drops the copy
/// and counts it (`packets_dropped_queue_full`), as a congested link would. The rest of
/// [`MAX_QUEUED_EVENTS`] is left to wake-ups (a node queues a new one only when its deadline
/// moves earlier than the earliest it has queued, so they stay a few per node), whose loss
/// would stop a node for good.
pub const MAX_QUEUED_DELIVERIES: usize = MAX_QUEUED_EVENTS - (1 << 20);

/// Most bytes of packet payloads in flight at once (the slab's stored bytes). Beyond it a new
/// transmission is dropped and its copies counted (`packets_dropped_queue_full`), as a
/// congested link would drop them. The count bound above lets 15 million copies of up to
/// 1.4 KB each queue up, far more than fits in memory: the crash of 4,000 of 10,000 nodes put
/// 3.3 million copies (3.8 GB) in flight within 0.3 simulated seconds and ran the process out
/// of memory. 3 GiB is about 2.3 million full packets: 50 % above the peak of a 10,000-node
/// start-up (2.1 GB), so only a storm beyond anything a start-up produces is cut.
pub const MAX_PAYLOAD_BYTES_IN_FLIGHT: usize = 3 << 30;

/// What happens at a scheduled instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A node's timer may be due: the engine fires it only if the node still wants a wake-up
    /// at exactly this instant (a node's deadline moves; obsolete wake-ups are skipped).
    Wake {
        /// The node.
        node: u32,
    },
    /// A packet copy arrives at `to`; the bytes and their sender are slot `payload` of the slab.
    Deliver {
        /// The receiving node.
        to: u32,
        /// Slab index of the bytes.
        payload: u32,
    },
}

/// Tag bit of a packed [`Action::Wake`]; node indices stay far below 2^31 (see `MAX_NODES`).
const WAKE_TAG: u64 = 1 << 63;

impl Action {
    /// Packs the action into 64 bits so that a queued event is 24 bytes, not 32: the heap is
    /// the hottest data structure of the run and moves these entries on every push and pop.
    fn pack(self) -> u64 {
        match self {
            Action::Wake { node } => WAKE_TAG | u64::from(node),
            Action::Deliver { to, payload } => (u64::from(to) << 32) | u64::from(payload),
        }
    }

    fn unpack(packed: u64) -> Action {
        if packed & WAKE_TAG != 0 {
            Action::Wake {
                node: packed as u32,
            }
        } else {
            Action::Deliver {
                to: (packed >> 32) as u32,
                payload: packed as u32,
            }
        }
    }
}

/// An action with its instant and insertion number. Ties in time are broken by insertion
/// order, which makes the run a pure function of the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// Virtual time in microseconds.
    pub at_us: u64,
    /// Insertion counter: earlier insertions at the same instant run first.
    pub order: u64,
    /// The action, packed by [`Action::pack`].
    packed: u64,
}

impl Scheduled {
    /// What to do.
    pub fn action(&self) -> Action {
        Action::unpack(self.packed)
    }
}

impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.order).cmp(&(self.at_us, self.order))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Width of one calendar bucket: 2^8 = 256 microseconds, a twentieth of the default link
/// latency, so the packets in flight spread over a few dozen buckets.
const BUCKET_WIDTH_LOG2: u32 = 8;

/// Buckets in the calendar ring: 2^14 x 256 us = 4.2 s of virtual time, beyond the routers'
/// usual timers (probes 100 ms, OGMs 1 s); later events wait in the overflow heap.
const BUCKETS: u64 = 1 << 14;

/// A drained bucket that held more entries than this gives its memory back, so a burst (the
/// packet storm after a mass crash) does not leave thousands of large buckets allocated.
const RETAINED_BUCKET_CAPACITY: usize = 1024;

/// Deterministic, bounded event queue: a calendar queue. Events are filed by time into
/// fixed-width buckets on a ring; only the bucket under the cursor is kept as a heap, ordered
/// by (time, insertion order). Push and pop are O(1) amortised plus a heap operation on one
/// bucket, which keeps the hot loop in cache even with 10^5 packets in flight, where a single
/// binary heap spent 10 % of the run on cache misses.
#[derive(Debug)]
pub struct EventQueue {
    /// Entries of buckets up to the cursor, popped in (time, order) order.
    current: BinaryHeap<Scheduled>,
    /// Absolute bucket number (`at_us >> BUCKET_WIDTH_LOG2`) under the cursor.
    cursor: u64,
    /// Buckets `cursor + 1 .. cursor + BUCKETS`, unsorted, at index `bucket % BUCKETS`.
    ring: Vec<Vec<Scheduled>>,
    /// Entries in `ring`.
    ring_len: usize,
    /// Entries that were beyond the ring's horizon when pushed.
    overflow: BinaryHeap<Scheduled>,
    len: usize,
    next_order: u64,
}

impl Default for EventQueue {
    fn default() -> Self {
        EventQueue {
            current: BinaryHeap::new(),
            cursor: 0,
            ring: (0..BUCKETS).map(|_| Vec::new()).collect(),
            ring_len: 0,
            overflow: BinaryHeap::new(),
            len: 0,
            next_order: 0,
        }
    }
}

impl EventQueue {
    /// Schedules `action` at `at_us`. Fails (returning the cap) when [`MAX_QUEUED_EVENTS`]
    /// events are already pending.
    pub fn push(&mut self, at_us: u64, action: Action) -> Result<(), usize> {
        if self.len >= MAX_QUEUED_EVENTS {
            return Err(MAX_QUEUED_EVENTS);
        }
        debug_assert!(
            !matches!(action, Action::Wake { node } | Action::Deliver { to: node, .. } if node >= 1 << 31),
            "node index too large to pack"
        );
        let entry = Scheduled {
            at_us,
            order: self.next_order,
            packed: action.pack(),
        };
        self.next_order += 1;
        self.len += 1;
        let bucket = at_us >> BUCKET_WIDTH_LOG2;
        if bucket <= self.cursor {
            self.current.push(entry);
        } else if bucket < self.cursor + BUCKETS {
            self.ring[(bucket % BUCKETS) as usize].push(entry);
            self.ring_len += 1;
        } else {
            self.overflow.push(entry);
        }
        Ok(())
    }

    /// Moves the cursor to the next bucket holding entries, if `current` is empty. Returns
    /// false when nothing is pending at all.
    fn fill_current(&mut self) -> bool {
        while self.current.is_empty() {
            if self.len == 0 {
                return false;
            }
            let overflow_bucket = self.overflow.peek().map(|e| e.at_us >> BUCKET_WIDTH_LOG2);
            let next = if self.ring_len == 0 {
                // Nothing within the horizon: jump straight to the overflow's first bucket.
                let Some(bucket) = overflow_bucket else {
                    debug_assert!(false, "{} entries counted but none stored", self.len);
                    return false;
                };
                bucket
            } else {
                // A ring entry lies within BUCKETS buckets, so this scan is bounded.
                let mut bucket = self.cursor + 1;
                while self.ring[(bucket % BUCKETS) as usize].is_empty()
                    && Some(bucket) != overflow_bucket
                {
                    bucket += 1;
                }
                bucket
            };
            self.cursor = next;
            let slot = &mut self.ring[(next % BUCKETS) as usize];
            self.ring_len -= slot.len();
            self.current.extend(slot.drain(..));
            if slot.capacity() > RETAINED_BUCKET_CAPACITY {
                *slot = Vec::new();
            }
            while let Some(entry) = self.overflow.peek().copied() {
                if entry.at_us >> BUCKET_WIDTH_LOG2 > self.cursor {
                    break;
                }
                self.overflow.pop();
                self.current.push(entry);
            }
        }
        true
    }

    /// The instant of the earliest pending event.
    pub fn peek_time(&mut self) -> Option<u64> {
        if !self.fill_current() {
            return None;
        }
        self.current.peek().map(|event| event.at_us)
    }

    /// Removes and returns the earliest pending event.
    pub fn pop(&mut self) -> Option<Scheduled> {
        if !self.fill_current() {
            return None;
        }
        let entry = self.current.pop()?;
        self.len -= 1;
        Some(entry)
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the queue's buckets and heaps hold (capacity).
    pub fn allocated_bytes(&self) -> usize {
        let entries = self.current.capacity()
            + self.overflow.capacity()
            + self.ring.iter().map(Vec::capacity).sum::<usize>();
        entries * std::mem::size_of::<Scheduled>()
            + self.ring.capacity() * std::mem::size_of::<Vec<Scheduled>>()
    }
}

/// Packets in flight, shared by all the copies of one transmission (a discovery packet goes to
/// every linked node), so the bytes a router produced are stored once and never copied.
/// Slots are reused; the slab never holds more slots than there are pending deliveries.
#[derive(Debug, Default)]
pub struct PayloadSlab {
    slots: Vec<PayloadSlot>,
    free: Vec<u32>,
    /// Bytes of the payloads currently stored (their capacity).
    live_bytes: usize,
}

#[derive(Debug, Default)]
struct PayloadSlot {
    bytes: Vec<u8>,
    /// The node that sent them.
    sender: u32,
    /// Deliveries of these bytes still pending; the slot is free when it reaches 0.
    pending: u32,
}

impl PayloadSlab {
    /// Stores `bytes` sent by `sender` for `pending` deliveries (at least one) and returns the
    /// slot index.
    pub fn insert(&mut self, bytes: Vec<u8>, sender: u32, pending: u32) -> u32 {
        debug_assert!(
            pending > 0,
            "a payload nobody will receive must not be stored"
        );
        self.live_bytes += bytes.capacity();
        let slot = PayloadSlot {
            bytes,
            sender,
            pending,
        };
        match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                // The slab holds at most one slot per pending delivery, and the queue caps
                // those at MAX_QUEUED_EVENTS (2^24), so the index fits in u32.
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// The bytes in slot `index` and their sender.
    pub fn get(&self, index: u32) -> (&[u8], u32) {
        self.slots
            .get(index as usize)
            .map_or((&[], u32::MAX), |slot| (slot.bytes.as_slice(), slot.sender))
    }

    /// Marks one delivery of slot `index` done, freeing the slot after the last one.
    pub fn release(&mut self, index: u32) {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            debug_assert!(false, "released a slot that was never handed out");
            return;
        };
        debug_assert!(
            slot.pending > 0,
            "slot {index} released more often than inserted"
        );
        slot.pending = slot.pending.saturating_sub(1);
        if slot.pending == 0 {
            self.live_bytes -= slot.bytes.capacity();
            slot.bytes = Vec::new();
            self.free.push(index);
        }
    }

    /// Bytes of the payloads currently stored.
    pub fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Slots currently holding bytes.
    pub fn live_slots(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Bytes held: the stored payloads plus the slot and free lists.
    pub fn allocated_bytes(&self) -> usize {
        self.live_bytes
            + self.slots.capacity() * std::mem::size_of::<PayloadSlot>()
            + self.free.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_insertion_order() {
        let mut queue = EventQueue::default();
        let wake = |node| Action::Wake { node };
        for (at, node) in [(30, 0), (10, 1), (30, 2), (10, 3), (20, 4)] {
            queue.push(at, wake(node)).unwrap();
        }
        let order: Vec<(u64, Action)> = std::iter::from_fn(|| queue.pop())
            .map(|e| (e.at_us, e.action()))
            .collect();
        assert_eq!(
            order,
            vec![
                (10, wake(1)),
                (10, wake(3)),
                (20, wake(4)),
                (30, wake(0)),
                (30, wake(2))
            ]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn calendar_matches_a_sorted_reference_across_buckets_and_overflow() {
        // Times spread over the current bucket, the ring and far beyond its horizon, pushed in
        // random order and interleaved with pops, must come out sorted by (time, insertion).
        let mut rng = crate::rng::SimRng::for_stream(9, crate::rng::Stream::Network);
        let mut queue = EventQueue::default();
        let mut reference: Vec<(u64, u64)> = Vec::new();
        let mut popped: Vec<(u64, u64)> = Vec::new();
        let mut now = 0u64;
        for order in 0..4000u64 {
            let delay = match rng.below(4) {
                0 => rng.below(300),
                1 => rng.below(20_000),
                2 => rng.below(2_000_000),
                _ => rng.below(30_000_000),
            };
            queue
                .push(now + delay, Action::Wake { node: order as u32 })
                .unwrap();
            reference.push((now + delay, order));
            if order % 3 == 0 {
                let event = queue.pop().unwrap();
                assert!(event.at_us >= now, "time went backwards");
                now = event.at_us;
                popped.push((event.at_us, event.order));
            }
        }
        while let Some(event) = queue.pop() {
            popped.push((event.at_us, event.order));
        }
        assert!(queue.is_empty());
        // Popped in time order overall; equal times in insertion order.
        assert!(popped.windows(2).all(|w| w[0] <= w[1]), "out of order");
        reference.sort_unstable();
        popped.sort_unstable();
        assert_eq!(popped, reference, "every event popped exactly once");
    }

    #[test]
    fn actions_survive_packing() {
        for action in [
            Action::Wake { node: 0 },
            Action::Wake {
                node: (1 << 31) - 1,
            },
            Action::Deliver { to: 0, payload: 0 },
            Action::Deliver {
                to: (1 << 31) - 1,
                payload: u32::MAX,
            },
        ] {
            assert_eq!(Action::unpack(action.pack()), action);
        }
    }

    #[test]
    fn slab_shares_bytes_between_copies_and_reuses_slots() {
        let mut slab = PayloadSlab::default();
        let first = slab.insert(vec![1, 2, 3], 7, 2);
        assert_eq!(slab.get(first), (&[1u8, 2, 3][..], 7));
        slab.release(first);
        assert_eq!(
            slab.get(first),
            (&[1u8, 2, 3][..], 7),
            "one copy still in flight"
        );
        slab.release(first);
        assert_eq!(slab.live_slots(), 0);
        let second = slab.insert(vec![9], 4, 1);
        assert_eq!(second, first, "the freed slot is reused");
        assert_eq!(slab.get(second), (&[9u8][..], 4));
    }
}
