//! `Router`: the sans-IO routing state machine of one node.
//!
//! # Calling contract
//! - **Inputs**: `handle_datagram(now, bytes)` for every packet received on any link,
//!   `handle_timeout(now)` whenever `poll_timeout()` is reached.
//! - **Outputs**: after every input, drain `poll_transmit()` (packets to send) and
//!   `poll_event()` (for logs), then re-arm the timer from `poll_timeout()`.
//! - **Getters**: `routes`, `neighbours`, `next_hop`, `newest_seq`, `stats`, `validate`.
//! - `now` must never go backwards. The router never reads a clock or global randomness.
//!
//! # Protocol in brief
//! - *Neighbour sensing*: hellos to the discovery targets every `hello_interval`; probes to
//!   every known neighbour every `probe_interval`. A neighbour is usable once both sides hear
//!   each other, and dead after `probe_miss_limit` silent intervals (BFD-style).
//! - *Route propagation*: every `ogm_interval` a node originates an OGM with a new sequence
//!   number. Receivers add their link cost and relay the first copy of each sequence number
//!   (B.A.T.M.A.N. flooding) within its TTL. With fisheye scoping the TTL of sequence number
//!   `k` is `1 + trailing_zeros(k)`, so an OGM reaching distance `h` goes out every `2^(h-1)`
//!   intervals and full-mesh floods every 64: per-node traffic grows sub-linearly with mesh size.
//! - *Changes* do not wait for floods: a lost, gained or much changed route is advertised to
//!   the neighbours within `flush_delay` (triggered update, TTL 0).
//! - *Fast reroute*: every destination keeps up to two loop-free alternates (feasible
//!   candidates via other neighbours). When a neighbour dies, traffic moves to an alternate
//!   at once. With no feasible alternate the node retracts the route and sends a
//!   sequence-number request towards the destination, which answers with a fresh full flood.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use wire::{
    COST_INFINITE, Hello, Message, MessageView, NodeId, OGM_FLAG_URGENT, Ogm, OgmSignature,
    PacketView, PacketWriter, SeqnoRequest, TTL_UNLIMITED, ogm_signed_part,
};

use crate::auth::{Held, HoldOutcome, HoldQueue, OgmAuth, SignatureSet, Verdict};
use crate::link::Link;
use crate::metric::{LinkCosts, add_costs, cost_to_tq};
use crate::rng::Rng;
use std::hash::BuildHasher;

use crate::table::{
    Candidate, NO_SLOT, NodeIdHasher, NodeMap, Queued, RouteEntry, RouteTable, Slot, seq_newer,
};
use crate::{NeighbourInfo, RouterConfig, Timestamp};

/// Undrained events kept at most; older ones are dropped and counted.
const MAX_EVENTS: usize = 4096;
/// Undrained packets kept at most; a caller that drains after every input never gets near.
const MAX_TRANSMITS: usize = 65_536;
/// Sequence-number requests of our own awaiting an answer, at most. 7/8 of 2,048, so the map
/// fits in 2,048 buckets: one more entry would double it (a hash map keeps its buckets at
/// most 7/8 full). After a crash of 4,000 of 10,000 simulated nodes every survivor reaches
/// the cap, and with 3,584 the request maps of the 6,000 survivors grew past 2.5 GB within
/// 0.4 simulated seconds; a node that loses more routes than this at once mostly lost dead
/// destinations, and the live ones come back through the requests of other nodes (whose
/// answers flood the whole mesh) or the next triggered update.
const MAX_PENDING_REQUESTS: usize = 1792;
/// Recently forwarded requests remembered for duplicate suppression, at most (7/8 of 2,048
/// for the same reason).
const MAX_RECENT_REQUESTS: usize = 1792;
/// How often an unanswered request of ours is repeated, and how many times.
/// Doubles after every attempt (100, 200, 400, 800 ms): early attempts often die at nodes
/// that lost the route in the same failure, later ones find the mesh repaired. After the
/// last one (1.5 s after the loss) the destination is most likely gone; if it is not,
/// triggered updates and floods bring it back without more requests, which after a mass
/// failure would mostly chase dead nodes.
const REQUEST_RETRY: Duration = Duration::from_millis(100);
const REQUEST_ATTEMPTS: u8 = 5;
/// A *starved* destination (neighbours advertise routes, but none is feasible: only a newer
/// sequence number from the destination can unlock them) keeps being asked for at this
/// slower pace, for as long as someone advertises it. Without this, a lossy path could leave
/// it starved until the destination's next mesh-wide flood, up to 64 s away.
const STARVED_REQUEST_INTERVAL: Duration = Duration::from_secs(2);
/// Requests queued within one input before they are written out early: a packet batch per
/// neighbour holds about 35, so this only bounds the scratch list.
const MAX_QUEUED_REQUESTS: usize = 4096;
/// Retry-schedule items at most (live ones are at most `MAX_PENDING_REQUESTS`); beyond it the
/// schedule is rebuilt without the stale ones.
const MAX_REQUEST_SCHEDULE: usize = 2 * MAX_PENDING_REQUESTS;
/// A full set of forwarded-request records is swept at most this often.
const RECENT_REQUESTS_SWEEP_GAP: Duration = Duration::from_millis(100);
/// Neighbours remembered per forwarded request, to pass the answer back to each of them.
const MAX_ASKERS: usize = 8;
/// Hop limit of a new sequence-number request; larger than any sane mesh diameter.
const REQUEST_HOP_LIMIT: u8 = 64;
/// A request for the same (target, seq) is not forwarded again within this time: about a
/// round trip, so retries after a dead end are forwarded while storms are not.
const REQUEST_DEDUP: Duration = Duration::from_millis(50);
/// Who asked is remembered this long, to pass late answers back.
const ASKER_MEMORY: Duration = Duration::from_secs(2);
/// How long a flood relay waits for the selected neighbour's copy before taking another's.
const RELAY_FALLBACK: Duration = Duration::from_millis(500);
/// Minimum gap between two request-driven full floods of our own OGM.
const FORCED_ORIGINATION_GAP: Duration = Duration::from_millis(100);
/// Link TQ changes smaller than this do not re-rank routes (hysteresis against flapping).
const TQ_HYSTERESIS: u8 = 16;
/// A route's cost change is advertised at once only beyond this fraction (1/4) of its cost.
const COST_CHANGE_DIVISOR: u32 = 4;
/// An improvement beyond this fraction (1/16) is advertised at once too. Improvements below
/// a quarter used to wait for the next flood or table sync, so at a few hundred nodes and
/// more, routes were still getting shorter (one next-hop change and triggered update each)
/// for tens of seconds after every pair was reachable.
const IMPROVEMENT_DIVISOR: u32 = 16;
/// Fisheye: sequence numbers divisible by 2^FULL_SCOPE_SHIFT flood the whole mesh.
const FULL_SCOPE_SHIFT: u32 = 6;
/// Dead neighbours are forgotten after this long (their slot is reused).
const NEIGHBOUR_PURGE: Duration = Duration::from_secs(60);
/// How often expired candidates are swept out (and a slice of the table re-advertised).
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// The whole table is re-advertised at least this often, and more slowly for large tables
/// (by the square root of destinations / `SYNC_REFERENCE_DESTINATIONS`).
const SYNC_PERIOD_MIN: Duration = Duration::from_secs(15);
const SYNC_REFERENCE_DESTINATIONS: f64 = 100.0;
/// A retraction is sent this many extra times, because a lost retraction would leave
/// neighbours forwarding into a dead end until their candidate expires.
const RETRACTION_REPEATS: u8 = 2;
/// Other triggered updates are sent once more: on a link losing a few percent of packets, a
/// cascade of triggered updates crossing many hops would otherwise often break somewhere
/// and wait for the table sync. Repeats only go over links that lost probes recently
/// (TQ below 255): on clean links they would only double the traffic of a mass failure.
const UPDATE_REPEATS: u8 = 1;
const REPEAT_GAP: Duration = Duration::from_millis(50);
/// Route advertisements one flush sends at most (about 45 KB per neighbour). The rest wait
/// in the pending list for the next flush, `PACED_FLUSH_GAP` later, where a destination that
/// changed again meanwhile goes out once, in its newest state. After a mass failure a node
/// loses or reroutes thousands of destinations at once, and its neighbours do the same a few
/// milliseconds later: unpaced, 6,000 survivors of 10,000 each put megabytes on every link
/// within one link latency, and most of it described states that changed again before it
/// arrived (the simulated run ran out of memory with 4 million packets in flight).
const MAX_ADVERTS_PER_FLUSH: usize = 512;
/// Pause between paced flushes: 512 entries per 10 ms is about 37 Mbit/s per link.
const PACED_FLUSH_GAP: Duration = Duration::from_millis(10);
/// Destinations asked for (a request or one-hop query to their neighbours) in a burst at
/// most, and per second on average: beyond, new requests wait in the retry schedule without
/// spending an attempt. A node that loses a few hundred routes asks at once; one that loses
/// thousands (4,000 of 10,000 simulated nodes crashing) asks over a second or so instead of
/// putting several megabytes of requests on its links within a millisecond, and its
/// neighbours, which lost the same destinations, meanwhile answer or retract them.
const REQUEST_BURST: u32 = 512;
const REQUESTS_PER_SECOND: u64 = 5_000;
/// Pending repeats at most; beyond it (a mass failure) updates go out once.
const MAX_REPEATS: usize = 65_536;
/// A signed OGM whose sequence number is this far or further behind the newest one verified
/// for its originator is a replay: a relay's route is at most one candidate lifetime old
/// (194 intervals for the farthest fisheye scope), so no honest relay lags this much.
const REPLAY_WINDOW: u32 = 256;
/// How long an OGM whose originator's key is unknown waits for the node record. Records
/// flood over link streams about as fast as OGMs over datagrams, so this is generous.
const HOLD_TIME: Duration = Duration::from_secs(5);
/// Flood relays waiting for the selected neighbour's copy, at most: one per destination of a
/// full default table. Past it a relay goes out at once with the best route that has the new
/// sequence number, as it would at its deadline.
const MAX_WAITING_RELAYS: usize = 65_536;

/// Where a packet produced by the router must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// To one neighbour, at the address the caller last saw it send from (or its static address).
    Neighbour(NodeId),
    /// To every discovery target: the link-local multicast group on each configured interface
    /// and every static bootstrap peer.
    Discovery,
}

/// A packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Destination,
    /// The encoded packet (at most `wire::MAX_PACKET_BYTES`).
    pub payload: Vec<u8>,
}

/// Something the caller may want to log or show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A neighbour was heard for the first time, or again after being dead.
    NeighbourUp(NodeId),
    /// A neighbour fell silent for `probe_interval * probe_miss_limit`.
    NeighbourDown(NodeId),
    /// The next hop towards `destination` changed (`None`: unreachable).
    RouteChanged {
        /// The destination.
        destination: NodeId,
        /// The new next hop.
        next_hop: Option<NodeId>,
    },
}

/// One routing-table entry as shown to operators.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteInfo {
    /// Destination node.
    pub destination: NodeId,
    /// Neighbour packets for `destination` are forwarded to.
    pub next_hop: NodeId,
    /// Path cost (log-domain TQ, lower is better).
    pub cost: u32,
    /// Path TQ on B.A.T.M.A.N.'s 0..255 scale, derived from `cost`.
    pub tq: u8,
    /// Hops to the destination.
    pub hops: u8,
    /// Originator sequence number the route is based on.
    pub seq: u32,
    /// Loop-free alternate next hops, best first.
    pub alternates: Vec<NodeId>,
    /// When the next hop last changed.
    pub changed_at: Timestamp,
}

/// Counters, all monotonically increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Packets handed to `handle_datagram`.
    pub packets_rx: u64,
    /// Bytes handed to `handle_datagram`.
    pub bytes_rx: u64,
    /// Packets produced by `poll_transmit`.
    pub packets_tx: u64,
    /// Bytes produced by `poll_transmit`.
    pub bytes_tx: u64,
    /// Packets dropped because they did not decode (truncated, bad length, bad magic).
    pub dropped_malformed: u64,
    /// Packets dropped for an unsupported version.
    pub dropped_version: u64,
    /// Packets dropped for exceeding the size limit.
    pub dropped_oversized: u64,
    /// Packets dropped because they claim to come from this node.
    pub dropped_own: u64,
    /// Packets dropped because the neighbour table is full.
    pub dropped_neighbour_limit: u64,
    /// OGMs dropped because the routing table is full.
    pub dropped_destination_limit: u64,
    /// Unknown TLVs skipped inside otherwise valid packets.
    pub unknown_tlvs: u64,
    /// OGM entries received.
    pub ogms_rx: u64,
    /// OGM entries sent.
    pub ogms_tx: u64,
    /// Next-hop changes.
    pub route_changes: u64,
    /// Switches to a precomputed alternate because a neighbour died.
    pub fast_reroutes: u64,
    /// Sequence-number requests sent or forwarded.
    pub seqno_requests_tx: u64,
    /// Sequence-number requests dropped because too many were in flight.
    pub dropped_request_limit: u64,
    /// Events dropped because the caller did not drain `poll_event`.
    pub dropped_events: u64,
    /// Packets dropped because the caller did not drain `poll_transmit`.
    pub dropped_transmits: u64,
    /// OGM signatures checked cryptographically (each `(originator, seq)` once).
    pub ogm_signatures_verified: u64,
    /// Signed OGMs accepted from the verified-signature cache, without cryptography.
    pub ogm_signature_cache_hits: u64,
    /// OGMs dropped because the signature does not verify under the originator's key.
    pub dropped_ogm_forged: u64,
    /// OGMs dropped because their sequence number lies `REPLAY_WINDOW` or more behind the
    /// newest one verified for the originator.
    pub dropped_ogm_replayed: u64,
    /// OGMs dropped because the originator's node record has expired.
    pub dropped_ogm_stale: u64,
    /// OGMs dropped because the originator was revoked.
    pub dropped_ogm_revoked: u64,
    /// OGMs dropped because no key for the originator arrived in time (or too many waited).
    pub dropped_ogm_unknown_originator: u64,
    /// OGMs held to wait for their originator's key.
    pub ogms_held: u64,
    /// Held OGMs accepted once the key arrived.
    pub ogms_held_accepted: u64,
    /// Advertisements not sent because the signature of their sequence number was not kept
    /// (never expected; counted to prove it).
    pub ogms_unsigned_skipped: u64,
}

/// Bytes held by one router's collections ([`Router::memory_use`]), by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// The routing table: one entry per destination.
    pub table: usize,
    /// Advertisements waiting for a flush or a relay deadline, repeats, dumps, answers, and
    /// transmits and events not yet polled.
    pub queues: usize,
    /// Sequence-number requests: our own pending ones and those we forwarded.
    pub requests: usize,
    /// Verified signatures and OGMs held for an unknown key (signed routers only).
    pub signatures: usize,
    /// The neighbour table and per-neighbour penalties.
    pub links: usize,
}

impl MemoryUse {
    /// All parts together.
    pub fn total(&self) -> usize {
        self.table + self.queues + self.requests + self.signatures + self.links
    }
}

/// Why `handle_datagram` dropped a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// It did not decode.
    #[error("undecodable packet: {0}")]
    Decode(#[from] wire::DecodeError),
    /// It claims to come from this node (a reflection or a spoof).
    #[error("packet claims to come from this node")]
    Own,
    /// The sender would be a new neighbour but the table is full.
    #[error("neighbour table full")]
    NeighbourLimit,
}

/// A broken internal invariant, found by [`Router::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated at {node}: {what}")]
pub struct InvariantViolation {
    /// The node whose state is inconsistent.
    pub node: NodeId,
    /// What is wrong.
    pub what: String,
}

/// A pending sequence-number request of ours.
#[derive(Debug, Clone, Copy)]
struct PendingRequest {
    attempts_left: u8,
    /// Whether every neighbour got the one-hop query (see `send_request`).
    neighbours_queried: bool,
    /// Whether the request went to advertisers since the last one-hop query.
    advertisers_asked: bool,
    next_at: Timestamp,
}

/// Requests for one target that we received and could not answer yet (80 bytes: after a
/// mass failure every survivor holds up to `MAX_RECENT_REQUESTS` of them).
#[derive(Debug, Clone, Copy)]
struct ForwardedRequest {
    /// Last time a request for the target came in (the record is forgotten `ASKER_MEMORY` later).
    at: Timestamp,
    /// When and with which sequence number we last forwarded one.
    forwarded: Option<(Timestamp, u32)>,
    /// Neighbours waiting for an answer and the sequence number each needs, in two arrays
    /// (pairs of a 1-byte slot and a 4-byte number would be padded to 8 bytes each).
    asker_slots: [Slot; MAX_ASKERS],
    asker_seqs: [u32; MAX_ASKERS],
    asker_count: u8,
}

impl ForwardedRequest {
    fn new(now: Timestamp) -> ForwardedRequest {
        ForwardedRequest {
            at: now,
            forwarded: None,
            asker_slots: [NO_SLOT; MAX_ASKERS],
            asker_seqs: [0; MAX_ASKERS],
            asker_count: 0,
        }
    }

    fn add_asker(&mut self, slot: Slot, seq: u32) {
        let count = usize::from(self.asker_count);
        match self.asker_slots[..count].iter().position(|&s| s == slot) {
            Some(i) if seq_newer(seq, self.asker_seqs[i]) => self.asker_seqs[i] = seq,
            Some(_) => {}
            None if count < MAX_ASKERS => {
                self.asker_slots[count] = slot;
                self.asker_seqs[count] = seq;
                self.asker_count += 1;
            }
            None => {}
        }
    }

    /// Removes and returns the askers that a route based on `seq` satisfies.
    fn take_satisfied(&mut self, seq: u32) -> Vec<Slot> {
        let mut satisfied = Vec::new();
        let mut kept = 0;
        for i in 0..usize::from(self.asker_count) {
            let (slot, wanted) = (self.asker_slots[i], self.asker_seqs[i]);
            if seq_newer(wanted, seq) {
                self.asker_slots[kept] = slot;
                self.asker_seqs[kept] = wanted;
                kept += 1;
            } else {
                satisfied.push(slot);
            }
        }
        // kept <= asker_count, a u8.
        self.asker_count = kept as u8;
        satisfied
    }
}

/// What [`Router::authenticate`] decided about an OGM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authenticated {
    /// Use it.
    Yes,
    /// Dropped (and counted).
    No,
    /// No key for its originator yet: hold it.
    KeyUnknown,
}

/// One advertisement prepared at flush time.
#[derive(Debug, Clone, Copy)]
struct Advert {
    ogm: Ogm,
    /// The neighbour our route goes through: it gets a retraction (poisoned reverse) for a
    /// triggered update, and nothing for a flood relay (it already has the newer sequence).
    via_slot: Slot,
    is_relay: bool,
    /// A repeat of a triggered update: only links that lost packets recently get it.
    is_repeat: bool,
}

/// Penalty that makes a neighbour unusable for routing (isolation).
pub const ISOLATED: u32 = u32::MAX;

/// The routing state machine of one node.
#[derive(Debug)]
pub struct Router {
    local: NodeId,
    config: RouterConfig,
    link_costs: LinkCosts,
    rng: Rng,
    /// Neighbour slots; a slot index is stable while the neighbour is known, so candidates
    /// refer to neighbours by slot (2 bytes) instead of by id (16 bytes).
    links: Vec<Option<Link>>,
    slot_of: NodeMap<Slot>,
    /// TQ each link's routes were last ranked with (see `TQ_HYSTERESIS`).
    tq_used: Vec<u8>,
    table: RouteTable,
    own_seq: u32,
    /// Destinations with an advertisement to send at the next flush.
    pending: Vec<NodeId>,
    /// Flood relays waiting for the selected neighbour's copy: (destination, deadline), in
    /// deadline order. Kept apart from `pending` so that a flush costs what it sends, not
    /// what waits (in a start-up of thousands of nodes most relays wait at every flush).
    waiting: VecDeque<(NodeId, Timestamp)>,
    /// Requests produced by the current input, written out before it returns.
    queued_requests: Vec<(Slot, SeqnoRequest)>,
    /// Relays waiting for the best neighbour's copy of a new sequence number, until the deadline.
    relay_deadline: NodeMap<Timestamp>,
    /// Penalties set by the caller per neighbour id (kept while the neighbour comes and goes);
    /// at most `max_neighbours` entries.
    penalties: NodeMap<u32>,
    /// Neighbours that get our whole table at the next flush (they just came up).
    dumps: Vec<Slot>,
    /// Answers to sequence-number requests: (neighbour, destination).
    answers: Vec<(Slot, NodeId)>,
    /// Triggered updates to send again: (destination, when, times left).
    /// In time order: entries are queued at `now + REPEAT_GAP` with a constant gap.
    repeats: VecDeque<(NodeId, Timestamp, u8)>,
    requests: NodeMap<PendingRequest>,
    /// Earliest `next_at` among `requests` (may be early after a removal; never late).
    next_request_at: Option<Timestamp>,
    /// When each request is due, earliest first; an item is stale when its request is gone
    /// or was rescheduled. Scanning all requests whenever one was due made a mass failure
    /// quadratic in the number of lost destinations.
    request_schedule: BinaryHeap<Reverse<(Timestamp, NodeId)>>,
    /// When the forwarded-request records were last swept because they were full.
    recent_requests_swept: Option<Timestamp>,
    /// Requests we forwarded: target -> (seq, when, neighbour that asked), so the answer can
    /// be passed back to that neighbour (RFC 8966 §3.8.1.2) and duplicates suppressed.
    recent_requests: NodeMap<ForwardedRequest>,
    forced_origination_at: Option<Timestamp>,
    last_forced_origination: Option<Timestamp>,
    /// Our periodic OGM, waiting to ride on the next probes (forced ones go at once).
    own_ogm: Option<Ogm>,
    next_probe: Timestamp,
    next_ogm: Timestamp,
    next_hello: Timestamp,
    next_sweep: Timestamp,
    /// The latest `now` passed in, to turn coarse stored times back into timestamps.
    last_now: Timestamp,
    /// After a flush that left advertisements pending, urgent flushes wait until then.
    paced_until: Option<Timestamp>,
    /// Request token bucket (see `REQUEST_BURST`): tokens left, and up to when they were
    /// refilled.
    request_tokens: u32,
    request_tokens_at: Timestamp,
    /// Set when the last sweep asked again for as many lost routes as the pending map holds
    /// and left some due: the table position the next round starts at, so a backlog larger
    /// than one round is served in turn; that round asks for every route-less destination,
    /// not only those whose loss crossed a power of two since.
    lost_routes_backlog: Option<usize>,
    /// Sweeps so far; picks the slice of the table that the next sweep re-advertises.
    sweeps: u64,
    flush_at: Option<Timestamp>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Signing and verification state; `None` runs unsigned (all-zero signatures, nothing
    /// verified), as the large simulations do.
    signed: Option<SignedOgms>,
}

/// The state of a router that signs its OGMs and accepts only verified ones.
#[derive(Debug)]
struct SignedOgms {
    auth: OgmAuth,
    /// The signature of our own latest sequence number.
    own: Option<(u32, OgmSignature)>,
    /// Verified signatures per originator (only originators in the table, bounded by it).
    verified: NodeMap<SignatureSet>,
    /// OGMs waiting for their originator's key.
    held: HoldQueue,
}

impl Router {
    /// A router for `local`, whose own OGMs start after `initial_seq` (persist it across
    /// restarts, or neighbours will take the new OGMs for old ones). `rng_seed` drives jitter.
    pub fn new(
        local: NodeId,
        config: RouterConfig,
        initial_seq: u32,
        rng_seed: u64,
        now: Timestamp,
    ) -> Router {
        let mut rng = Rng::new(rng_seed);
        let first_ogm = now + config.ogm_interval.mul_f64(rng.unit() * 0.1);
        let first_probe = now + config.probe_interval.mul_f64(rng.unit());
        Router {
            local,
            link_costs: LinkCosts::new(config.hop_penalty),
            rng,
            links: Vec::new(),
            slot_of: NodeMap::default(),
            tq_used: Vec::new(),
            table: RouteTable::default(),
            own_seq: initial_seq,
            pending: Vec::new(),
            waiting: VecDeque::new(),
            queued_requests: Vec::new(),
            relay_deadline: NodeMap::default(),
            penalties: NodeMap::default(),
            dumps: Vec::new(),
            answers: Vec::new(),
            repeats: VecDeque::new(),
            requests: NodeMap::default(),
            next_request_at: None,
            request_schedule: BinaryHeap::new(),
            recent_requests_swept: None,
            recent_requests: NodeMap::default(),
            forced_origination_at: None,
            last_forced_origination: None,
            own_ogm: None,
            next_probe: first_probe,
            next_ogm: first_ogm,
            next_hello: now,
            next_sweep: now + SWEEP_INTERVAL,
            last_now: now,
            paced_until: None,
            request_tokens: REQUEST_BURST,
            request_tokens_at: now,
            lost_routes_backlog: None,
            sweeps: 0,
            flush_at: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            signed: None,
            config,
        }
    }

    /// From now on, signs own OGMs with `auth.signer` and accepts OGMs only if
    /// `auth.verifier` finds the originator's signature valid. Call it before the first input.
    pub fn enable_signed_ogms(&mut self, auth: OgmAuth) {
        self.signed = Some(SignedOgms {
            auth,
            own: None,
            verified: NodeMap::default(),
            held: HoldQueue::default(),
        });
    }

    /// Whether OGMs are signed and verified.
    pub fn signs_ogms(&self) -> bool {
        self.signed.is_some()
    }

    /// This node's identifier.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// The configuration in force.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    // ----- inputs ------------------------------------------------------------------------

    /// Feeds one received datagram. Returns the sender's id (so the caller can remember its
    /// address) or why the packet was dropped; drops are also counted in [`Stats`].
    pub fn handle_datagram(&mut self, now: Timestamp, bytes: &[u8]) -> Result<NodeId, DropReason> {
        self.last_now = self.last_now.max(now);
        self.stats.packets_rx += 1;
        self.stats.bytes_rx += bytes.len() as u64;
        let packet = match PacketView::parse(bytes) {
            Ok(packet) => packet,
            Err(error) => {
                match error {
                    wire::DecodeError::UnsupportedVersion(_) => self.stats.dropped_version += 1,
                    wire::DecodeError::Oversized(_) => self.stats.dropped_oversized += 1,
                    _ => self.stats.dropped_malformed += 1,
                }
                return Err(DropReason::Decode(error));
            }
        };
        if packet.sender == self.local {
            self.stats.dropped_own += 1;
            return Err(DropReason::Own);
        }
        self.stats.unknown_tlvs += u64::from(packet.unknown_tlvs);
        let Some(slot) = self.touch_link(now, packet.sender) else {
            self.stats.dropped_neighbour_limit += 1;
            return Err(DropReason::NeighbourLimit);
        };
        for message in packet.messages() {
            // Advertisements from a neighbour that is not usable yet are kept (its dump may
            // arrive just before its probe proves the link): selection skips unusable
            // neighbours, and a purged neighbour's advertisements are removed with it.
            match message {
                MessageView::Hello(hello) => self.on_hello(slot, &hello),
                MessageView::Probe(probe) => self.on_probe(now, slot, &probe),
                MessageView::Ogms(ogms) => {
                    self.table.warm(ogms.map(|ogm| ogm.originator));
                    for ogm in ogms {
                        self.on_ogm(now, slot, &ogm);
                    }
                }
                MessageView::SeqnoRequest(request) => self.on_seqno_request(now, slot, &request),
            }
        }
        self.send_queued_requests();
        Ok(packet.sender)
    }

    /// The caller knows the link to `neighbour` is gone (its interface lost carrier): declare
    /// the neighbour dead now, moving its routes to alternates, instead of waiting for missed
    /// probes. A neighbour that is heard again comes back as after a probe timeout.
    pub fn handle_link_lost(&mut self, now: Timestamp, neighbour: &NodeId) {
        let Some(&slot) = self.slot_of.get(neighbour) else {
            return;
        };
        if self.links[usize::from(slot)]
            .as_ref()
            .is_some_and(|link| link.alive)
        {
            self.declare_dead(now, slot);
        }
    }

    /// Adds `penalty` to the cost of every route through neighbour `id` (0 lifts it;
    /// [`ISOLATED`] stops routing through it). The self-healing loop uses it to de-prefer or
    /// isolate a suspect peer; routes are re-selected at once. Returns false (and changes
    /// nothing) when penalties are already held for `max_neighbours` other nodes.
    pub fn set_neighbour_penalty(&mut self, now: Timestamp, id: &NodeId, penalty: u32) -> bool {
        if penalty == 0 {
            self.penalties.remove(id);
        } else if self.penalties.contains_key(id)
            || self.penalties.len() < self.config.max_neighbours
        {
            self.penalties.insert(*id, penalty);
        } else {
            return false;
        }
        if let Some(&slot) = self.slot_of.get(id)
            && let Some(link) = self.links[usize::from(slot)].as_mut()
        {
            link.penalty = penalty;
        }
        self.last_now = self.last_now.max(now);
        self.reselect_all(now);
        true
    }

    /// The penalty in force for neighbour `id` (0 when none).
    pub fn neighbour_penalty(&self, id: &NodeId) -> u32 {
        self.penalties.get(id).copied().unwrap_or(0)
    }

    /// A new link came up (the caller has a fresh authenticated connection): send the next
    /// discovery hello at `now` rather than up to one hello interval later, so the neighbour
    /// is sensed at once. Call `handle_timeout(now)` afterwards, as for any timer.
    pub fn hello_now(&mut self, now: Timestamp) {
        self.next_hello = self.next_hello.min(now);
    }

    /// The verifier may know keys it did not know before (node records arrived): OGMs held
    /// for their originator's key are verified again. Drain the outputs afterwards.
    pub fn handle_keys_learned(&mut self, now: Timestamp) {
        self.last_now = self.last_now.max(now);
        let Some(signed) = self.signed.as_mut() else {
            return;
        };
        let held = signed.held.take();
        for item in held {
            if item.until <= now {
                self.stats.dropped_ogm_unknown_originator += 1;
                continue;
            }
            let Some(&slot) = self.slot_of.get(&item.neighbour) else {
                // The neighbour is gone, and with it the route the OGM offered.
                self.stats.dropped_ogm_unknown_originator += 1;
                continue;
            };
            match self.authenticate(&item.ogm) {
                Authenticated::Yes => {
                    self.stats.ogms_held_accepted += 1;
                    self.apply_ogm(now, slot, &item.ogm);
                }
                Authenticated::No => {}
                // Still unknown: it keeps its original deadline, so records arriving
                // now and then cannot keep an OGM of a made-up originator alive.
                Authenticated::KeyUnknown => {
                    self.hold(item);
                }
            }
        }
        self.send_queued_requests();
    }

    /// `originator` was revoked: its verified signatures and held OGMs are forgotten and every
    /// route to it is dropped now. Its OGMs, new or relayed, then fail verification (the
    /// verifier answers [`Verdict::Revoked`]), so the routes do not come back.
    pub fn handle_originator_revoked(&mut self, now: Timestamp, originator: &NodeId) {
        self.last_now = self.last_now.max(now);
        let Some(signed) = self.signed.as_mut() else {
            return;
        };
        signed.verified.remove(originator);
        self.stats.dropped_ogm_revoked += signed.held.remove_originator(originator) as u64;
        let Some(entry) = self.table.get_mut(originator) else {
            return;
        };
        let slots: Vec<Slot> = entry
            .candidates
            .iter()
            .filter(|candidate| !candidate.is_empty())
            .map(|candidate| candidate.slot)
            .collect();
        for slot in slots {
            entry.remove_slot(slot);
        }
        self.reselect(now, *originator);
        // Nobody will answer for a revoked node: no requests for it.
        self.requests.remove(originator);
        self.send_queued_requests();
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.last_now = self.last_now.max(now);
        if let Some(signed) = self.signed.as_mut() {
            self.stats.dropped_ogm_unknown_originator += signed.held.expire(now) as u64;
        }
        self.check_liveness(now);
        if now >= self.next_hello {
            self.send_hello();
            self.next_hello = now + self.jittered(self.config.hello_interval, 0.1);
        }
        if now >= self.next_ogm {
            self.originate(now, false);
            self.next_ogm = now + self.jittered(self.config.ogm_interval, 0.05);
        }
        if now >= self.next_probe {
            // Our own periodic OGM and lazy OGM relays ride on the probes (B.A.T.M.A.N.
            // aggregates OGMs the same way), so they cost no packets of their own.
            self.flush(now, true);
            self.next_probe = now + self.jittered(self.config.probe_interval, 0.1);
        }
        if self.forced_origination_at.is_some_and(|at| now >= at) {
            self.forced_origination_at = None;
            self.originate(now, true);
        }
        self.retry_requests(now);
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + SWEEP_INTERVAL;
        }
        if self.flush_at.is_some_and(|at| now >= at) {
            self.flush(now, false);
        }
        self.send_queued_requests();
    }

    // ----- outputs -----------------------------------------------------------------------

    /// The next packet to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next = self
            .next_probe
            .min(self.next_ogm)
            .min(self.next_hello)
            .min(self.next_sweep);
        let dead_after =
            |link: &Link| link.deadline(self.config.probe_interval, self.config.probe_miss_limit);
        for link in self.links.iter().flatten() {
            if link.alive {
                next = next.min(dead_after(link));
            }
        }
        for at in [self.flush_at, self.forced_origination_at]
            .into_iter()
            .flatten()
        {
            next = next.min(at);
        }
        if let Some(at) = self.next_request_at {
            next = next.min(at);
        }
        Some(next)
    }

    // ----- getters -----------------------------------------------------------------------

    /// The neighbour to forward a packet for `destination` to, if any.
    pub fn next_hop(&self, destination: &NodeId) -> Option<NodeId> {
        let entry = self.table.get(destination)?;
        self.link(entry.selected).map(|link| link.id)
    }

    /// The routing table, sorted by destination.
    pub fn routes(&self) -> Vec<RouteInfo> {
        let mut routes: Vec<RouteInfo> = self
            .table
            .iter()
            .filter_map(|(destination, entry)| {
                let candidate = entry.selected_candidate()?;
                let next_hop = self.link(entry.selected)?.id;
                let alternates = entry
                    .alternates(|slot| self.usable_link_cost(slot))
                    .into_iter()
                    .filter_map(|(slot, _)| self.link(slot).map(|link| link.id))
                    .collect();
                Some(RouteInfo {
                    destination: *destination,
                    next_hop,
                    cost: entry.selected_total,
                    tq: cost_to_tq(entry.selected_total),
                    hops: candidate.hops,
                    seq: candidate.seq,
                    alternates,
                    changed_at: self.timestamp_of(entry.changed_ms),
                })
            })
            .collect();
        routes.sort_by_key(|route| route.destination);
        routes
    }

    /// The neighbour table, sorted by id.
    pub fn neighbours(&self) -> Vec<NeighbourInfo> {
        let mut neighbours: Vec<NeighbourInfo> = self
            .links
            .iter()
            .flatten()
            .map(|link| link.info(self.config.window))
            .collect();
        neighbours.sort_by_key(|n| n.id);
        neighbours
    }

    /// The newest sequence number known for `destination` (own sequence for `local_id`).
    pub fn newest_seq(&self, destination: &NodeId) -> Option<u32> {
        if *destination == self.local {
            return Some(self.own_seq);
        }
        self.table.get(destination).map(|entry| entry.newest_seq)
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Bytes the router's collections hold, by part (capacity, not length: what the
    /// allocator gave them). Approximate for hash maps (one control byte per bucket).
    pub fn memory_use(&self) -> MemoryUse {
        fn vec_bytes<T>(capacity: usize) -> usize {
            capacity * std::mem::size_of::<T>()
        }
        fn map_bytes<K, V>(capacity: usize) -> usize {
            capacity * (std::mem::size_of::<(K, V)>() + 1)
        }
        let transmit_payloads: usize = self.transmits.iter().map(|t| t.payload.capacity()).sum();
        MemoryUse {
            table: self.table.allocated_bytes(),
            queues: vec_bytes::<NodeId>(self.pending.capacity())
                + vec_bytes::<(NodeId, Timestamp)>(self.waiting.capacity())
                + map_bytes::<NodeId, Timestamp>(self.relay_deadline.capacity())
                + vec_bytes::<(Slot, SeqnoRequest)>(self.queued_requests.capacity())
                + vec_bytes::<Slot>(self.dumps.capacity())
                + vec_bytes::<(Slot, NodeId)>(self.answers.capacity())
                + vec_bytes::<(NodeId, Timestamp, u8)>(self.repeats.capacity())
                + vec_bytes::<Transmit>(self.transmits.capacity())
                + transmit_payloads
                + vec_bytes::<Event>(self.events.capacity()),
            requests: map_bytes::<NodeId, PendingRequest>(self.requests.capacity())
                + vec_bytes::<Reverse<(Timestamp, NodeId)>>(self.request_schedule.capacity())
                + map_bytes::<NodeId, ForwardedRequest>(self.recent_requests.capacity()),
            signatures: self.signed.as_ref().map_or(0, |signed| {
                map_bytes::<NodeId, SignatureSet>(signed.verified.capacity())
                    + signed.held.allocated_bytes()
            }),
            links: vec_bytes::<Option<Link>>(self.links.capacity())
                + map_bytes::<NodeId, Slot>(self.slot_of.capacity())
                + map_bytes::<NodeId, u32>(self.penalties.capacity()),
        }
    }

    /// Checks internal invariants; the simulator calls it after every step.
    pub fn validate(&self) -> Result<(), InvariantViolation> {
        let fail = |what: String| {
            Err(InvariantViolation {
                node: self.local,
                what,
            })
        };
        if self.slot_of.len() > self.config.max_neighbours {
            return fail(format!(
                "{} neighbours exceed the limit",
                self.slot_of.len()
            ));
        }
        if self.table.len() > self.config.max_destinations {
            return fail(format!(
                "{} destinations exceed the limit",
                self.table.len()
            ));
        }
        for (slot, link) in self.links.iter().enumerate() {
            if let Some(link) = link
                && self.slot_of.get(&link.id) != Some(&(slot as Slot))
            {
                return fail(format!("slot {slot} of {} is not indexed", link.id.short()));
            }
        }
        for (destination, entry) in self.table.iter() {
            if *destination == self.local {
                return fail("own id in the routing table".into());
            }
            for candidate in entry.candidates.iter().filter(|c| !c.is_empty()) {
                if seq_newer(candidate.seq, entry.newest_seq) {
                    return fail(format!(
                        "candidate seq {} newer than newest {}",
                        candidate.seq, entry.newest_seq
                    ));
                }
                if self.link(candidate.slot).is_none() {
                    return fail(format!(
                        "candidate for {} via a forgotten slot",
                        destination.short()
                    ));
                }
            }
            if entry.selected != NO_SLOT {
                let Some(candidate) = entry.selected_candidate() else {
                    return fail(format!(
                        "route to {} selects a missing candidate",
                        destination.short()
                    ));
                };
                if self.usable_link_cost(entry.selected).is_none() {
                    return fail(format!(
                        "next hop to {} is not a live neighbour",
                        destination.short()
                    ));
                }
                if candidate.cost == COST_INFINITE {
                    return fail(format!(
                        "route to {} uses a retraction",
                        destination.short()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The timestamp of a coarse millisecond time within the last 49 days.
    fn timestamp_of(&self, coarse: u32) -> Timestamp {
        let age_ms = coarse_ms(self.last_now).wrapping_sub(coarse);
        self.last_now - Duration::from_millis(u64::from(age_ms))
    }

    // ----- neighbours --------------------------------------------------------------------

    fn link(&self, slot: Slot) -> Option<&Link> {
        self.links.get(usize::from(slot)).and_then(Option::as_ref)
    }

    /// Cost of the hop to `slot` if routes may use that neighbour now.
    fn usable_link_cost(&self, slot: Slot) -> Option<u32> {
        usable_cost(&self.links, &self.tq_used, &self.link_costs, slot)
    }

    /// Finds or creates the link to `id`, refreshing its liveness. `None` if the table is full.
    fn touch_link(&mut self, now: Timestamp, id: NodeId) -> Option<Slot> {
        let slot = match self.slot_of.get(&id) {
            Some(&slot) => slot,
            None => {
                if self.slot_of.len() >= self.config.max_neighbours {
                    return None;
                }
                let mut link = Link::new(id, now, self.config.probe_interval);
                link.penalty = self.penalties.get(&id).copied().unwrap_or(0);
                let slot = match self.links.iter().position(Option::is_none) {
                    Some(free) => {
                        self.links[free] = Some(link);
                        self.tq_used[free] = 0;
                        free
                    }
                    None => {
                        self.links.push(Some(link));
                        self.tq_used.push(0);
                        self.links.len() - 1
                    }
                };
                // max_neighbours is validated to be at most 254, so slots fit in a Slot below NO_SLOT.
                let slot = slot as Slot;
                self.slot_of.insert(id, slot);
                slot
            }
        };
        if let Some(link) = self.links[usize::from(slot)].as_mut() {
            link.last_heard = now;
        }
        Some(slot)
    }

    fn on_hello(&mut self, slot: Slot, hello: &Hello) {
        if let Some(link) = self.links[usize::from(slot)].as_mut() {
            link.peer_interval = Duration::from_millis(u64::from(hello.probe_interval_ms.max(1)));
        }
    }

    fn on_probe(&mut self, now: Timestamp, slot: Slot, probe: &wire::Probe) {
        let window = self.config.window;
        let Some(link) = self.links[usize::from(slot)].as_mut() else {
            return;
        };
        link.on_probe(now, probe, window);
        let tq = link.update_tq(window);
        let usable = link.hears_us() && tq > 0;
        let was_alive = link.alive;
        if usable && !was_alive {
            link.alive = true;
            let id = link.id;
            self.tq_used[usize::from(slot)] = tq;
            self.push_event(Event::NeighbourUp(id));
            self.dumps.push(slot);
            self.schedule_flush(now);
            self.reselect_all(now);
        } else if was_alive && tq.abs_diff(self.tq_used[usize::from(slot)]) >= TQ_HYSTERESIS {
            self.tq_used[usize::from(slot)] = tq;
            if tq == 0 {
                self.declare_dead(now, slot);
            } else {
                self.reselect_all(now);
            }
        }
    }

    fn check_liveness(&mut self, now: Timestamp) {
        for slot in 0..self.links.len() {
            let Some(link) = self.links[slot].as_ref() else {
                continue;
            };
            let deadline = link.deadline(self.config.probe_interval, self.config.probe_miss_limit);
            if link.alive && now >= deadline {
                self.declare_dead(now, slot as Slot);
            } else if !link.alive && now >= link.last_heard + NEIGHBOUR_PURGE {
                self.slot_of.remove(&link.id);
                self.links[slot] = None;
                // A neighbour that never became usable may still have left advertisements;
                // its slot will be reused, so they must not outlive it.
                for entry in self.table.values_mut() {
                    entry.remove_slot(slot as Slot);
                }
            }
        }
    }

    /// The neighbour is gone: drop its advertisements and move its routes to alternates.
    fn declare_dead(&mut self, now: Timestamp, slot: Slot) {
        let Some(link) = self.links[usize::from(slot)].as_mut() else {
            return;
        };
        link.alive = false;
        let id = link.id;
        self.tq_used[usize::from(slot)] = 0;
        self.push_event(Event::NeighbourDown(id));
        let affected: Vec<NodeId> = self
            .table
            .iter_mut()
            .filter_map(|(destination, entry)| entry.remove_slot(slot).then_some(*destination))
            .collect();
        for destination in affected {
            let had_route = self
                .table
                .get(&destination)
                .is_some_and(|e| e.selected == slot);
            self.reselect(now, destination);
            if had_route
                && self
                    .table
                    .get(&destination)
                    .is_some_and(|e| e.selected != NO_SLOT)
            {
                self.stats.fast_reroutes += 1;
            }
        }
    }

    // ----- routes ------------------------------------------------------------------------

    fn on_ogm(&mut self, now: Timestamp, slot: Slot, ogm: &Ogm) {
        self.stats.ogms_rx += 1;
        if ogm.originator == self.local {
            return;
        }
        if ogm.cost == COST_INFINITE && !self.table.contains_key(&ogm.originator) {
            // A retraction of a route we never had changes nothing; no need to verify it.
            return;
        }
        if self.signed.is_some() {
            match self.authenticate(ogm) {
                Authenticated::Yes => {}
                Authenticated::No => return,
                Authenticated::KeyUnknown => {
                    if let Some(neighbour) = self.link(slot).map(|link| link.id) {
                        let item = Held {
                            neighbour,
                            ogm: *ogm,
                            until: now + HOLD_TIME,
                        };
                        if self.hold(item) {
                            self.stats.ogms_held += 1;
                        }
                    }
                    return;
                }
            }
        }
        self.apply_ogm(now, slot, ogm);
    }

    /// Holds an OGM until its originator's key arrives (see [`Router::handle_keys_learned`]);
    /// whether it was held. An OGM evicted or refused for room is counted as dropped.
    fn hold(&mut self, item: Held) -> bool {
        let Some(signed) = self.signed.as_mut() else {
            return false;
        };
        match signed.held.hold(item) {
            HoldOutcome::Held => true,
            HoldOutcome::HeldEvicting => {
                self.stats.dropped_ogm_unknown_originator += 1;
                true
            }
            HoldOutcome::Refused => {
                self.stats.dropped_ogm_unknown_originator += 1;
                false
            }
        }
    }

    /// Whether a signed router may use `ogm`: its signature is the originator's and its
    /// sequence number is not a replay. Drops are counted; the caller holds an OGM whose
    /// originator's key is unknown.
    fn authenticate(&mut self, ogm: &Ogm) -> Authenticated {
        let newest = self.table.get(&ogm.originator).map(|e| e.newest_seq);
        let max_destinations = self.config.max_destinations;
        let Some(signed) = self.signed.as_mut() else {
            return Authenticated::Yes;
        };
        if newest.is_some_and(|newest| !seq_newer(ogm.seq, newest.wrapping_sub(REPLAY_WINDOW))) {
            self.stats.dropped_ogm_replayed += 1;
            return Authenticated::No;
        }
        if signed
            .verified
            .get(&ogm.originator)
            .is_some_and(|set| set.contains(ogm.seq, &ogm.signature))
        {
            self.stats.ogm_signature_cache_hits += 1;
            return Authenticated::Yes;
        }
        let part = ogm_signed_part(&ogm.originator, ogm.seq);
        match signed
            .auth
            .verifier
            .verify(&ogm.originator, &part, &ogm.signature)
        {
            Verdict::Valid => {
                self.stats.ogm_signatures_verified += 1;
                let known = signed.verified.contains_key(&ogm.originator);
                if known || signed.verified.len() < max_destinations {
                    let in_use = self
                        .table
                        .get(&ogm.originator)
                        .map(RouteEntry::seqs_in_use)
                        .unwrap_or_default();
                    signed.verified.entry(ogm.originator).or_default().insert(
                        ogm.seq,
                        ogm.signature,
                        |seq| in_use.contains(&Some(seq)),
                    );
                }
                Authenticated::Yes
            }
            Verdict::Bad => {
                self.stats.ogm_signatures_verified += 1;
                self.stats.dropped_ogm_forged += 1;
                Authenticated::No
            }
            Verdict::Revoked => {
                self.stats.dropped_ogm_revoked += 1;
                Authenticated::No
            }
            Verdict::Expired => {
                self.stats.dropped_ogm_stale += 1;
                Authenticated::No
            }
            Verdict::UnknownKey => Authenticated::KeyUnknown,
        }
    }

    /// The signature to send with an advertisement of `originator`'s `seq`: all zeros when
    /// unsigned, `None` if a signed router no longer keeps it.
    fn signature_of(&mut self, originator: &NodeId, seq: u32) -> Option<OgmSignature> {
        let Some(signed) = self.signed.as_mut() else {
            return Some(OgmSignature::ZERO);
        };
        if *originator == self.local {
            if let Some((own_seq, signature)) = signed.own
                && own_seq == seq
            {
                return Some(signature);
            }
            let signature = signed.auth.signer.sign(&ogm_signed_part(originator, seq));
            if seq == self.own_seq {
                signed.own = Some((seq, signature));
            }
            return Some(signature);
        }
        let signature = signed.verified.get(originator).and_then(|set| set.get(seq));
        if signature.is_none() {
            self.stats.ogms_unsigned_skipped += 1;
        }
        signature
    }

    /// Puts the signature on `ogm`; `false` if a signed router cannot.
    fn sign_advert(&mut self, ogm: &mut Ogm) -> bool {
        if let Some(signed) = self.signed.as_ref()
            && let Some((seq, signature)) = retraction_signature(signed, ogm)
        {
            ogm.seq = seq;
            ogm.signature = signature;
            return true;
        }
        match self.signature_of(&ogm.originator, ogm.seq) {
            Some(signature) => {
                ogm.signature = signature;
                true
            }
            None => false,
        }
    }

    /// Uses an authenticated OGM: updates the neighbour's candidate, relays floods, reselects.
    fn apply_ogm(&mut self, now: Timestamp, slot: Slot, ogm: &Ogm) {
        let mut fresh = false;
        if !self.table.contains_key(&ogm.originator) {
            if ogm.cost == COST_INFINITE {
                return;
            }
            if self.table.len() >= self.config.max_destinations {
                self.stats.dropped_destination_limit += 1;
                return;
            }
            let mut entry = RouteEntry::new(now);
            entry.newest_seq = ogm.seq;
            self.table.insert_new(ogm.originator, entry);
            fresh = true;
        }
        let Router {
            table,
            links,
            tq_used,
            link_costs,
            config: _,
            ..
        } = self;
        let Some(entry) = table.get_mut(&ogm.originator) else {
            return;
        };
        let is_new_seq = fresh || seq_newer(ogm.seq, entry.newest_seq);
        // Only a route can bring a newer number. A retraction carries whatever number its
        // sender last advertised, which for a sender that never had a route is 0: taken as
        // newest, it stalled the entry (every real number then compares older in serial
        // order, so floods were no longer relayed and neighbours waited out their fallback).
        if is_new_seq && ogm.cost != COST_INFINITE {
            entry.newest_seq = ogm.seq;
        }
        let mut lost_last_advertiser = false;
        if ogm.cost == COST_INFINITE {
            lost_last_advertiser = entry.remove_slot(slot)
                && entry.selected == NO_SLOT
                && entry.candidates.iter().all(Candidate::is_empty);
        } else {
            let candidate = Candidate {
                slot,
                hops: ogm.hops.saturating_add(1),
                seq: ogm.seq,
                cost: ogm.cost,
                updated_qs: coarse_quarter_seconds(now),
            };
            entry.upsert(candidate, |c| {
                add_costs(
                    c.cost,
                    ranking_link_cost(links, tq_used, link_costs, c.slot),
                )
            });
        }
        let relay_ttl = match ogm.ttl {
            _ if ogm.cost == COST_INFINITE => 0,
            TTL_UNLIMITED => TTL_UNLIMITED,
            ttl => ttl.saturating_sub(1),
        };
        // Relay the first flood copy of a sequence number we have not advertised yet. A TTL-0
        // copy (a triggered update or an answer) may have brought the number first; the flood
        // must still go on, or the nodes behind us never see it.
        let not_yet_advertised =
            entry.adv_cost == COST_INFINITE || seq_newer(ogm.seq, entry.adv_seq);
        if relay_ttl > 0 && ogm.seq == entry.newest_seq && not_yet_advertised {
            let first = entry.relay_ttl == 0;
            entry.relay_ttl = entry.relay_ttl.max(relay_ttl);
            if first {
                // Relay the copy from the neighbour we forward through (as B.A.T.M.A.N. does),
                // not whichever copy came first: switching to the first one and back would
                // change the next hop on every flood. Only if that neighbour stays silent do
                // we fall back to the best neighbour that brought the number.
                self.relay_deadline
                    .insert(ogm.originator, now + RELAY_FALLBACK);
                // Floods that answer a request are awaited and go out within flush_delay;
                // periodic refreshes wait for the next probe tick.
                let urgent = ogm.flags & OGM_FLAG_URGENT != 0;
                entry.relay_urgent = urgent;
                self.queue_advert(now, ogm.originator, urgent);
            }
        }
        // The last neighbour that advertised a lost route withdrew it: neighbours whose
        // advertisements did not fit in the entry may still have one, so the next attempt of
        // the pending request queries every neighbour again.
        if lost_last_advertiser && let Some(pending) = self.requests.get_mut(&ogm.originator) {
            pending.neighbours_queried = false;
        }
        self.reselect(now, ogm.originator);
        self.pass_back_answer(now, ogm.originator);
    }

    /// If a request we forwarded for `destination` is now satisfied, send our fresh route to
    /// the neighbour that asked, so the answer travels back along the request's path.
    fn pass_back_answer(&mut self, now: Timestamp, destination: NodeId) {
        let Some(entry) = self.table.get(&destination) else {
            return;
        };
        let Some(route_seq) = entry.selected_candidate().map(|c| c.seq) else {
            return;
        };
        let via = entry.selected;
        let Some(forwarded) = self.recent_requests.get_mut(&destination) else {
            return;
        };
        let satisfied = forwarded.take_satisfied(route_seq);
        if forwarded.asker_count == 0 {
            self.recent_requests.remove(&destination);
        }
        if satisfied.is_empty() {
            return;
        }
        for asker in satisfied {
            if asker != via {
                self.answers.push((asker, destination));
            }
        }
        self.schedule_flush(now);
    }

    /// Re-runs route selection for `destination` and reacts to the outcome: events, triggered
    /// updates for big changes, a sequence-number request when the route is lost.
    fn reselect(&mut self, now: Timestamp, destination: NodeId) {
        let Router {
            table,
            links,
            tq_used,
            link_costs,
            ..
        } = self;
        let Some(entry) = table.get_mut(&destination) else {
            return;
        };
        let choice = entry.select(|slot| usable_cost(links, tq_used, link_costs, slot));
        let (new_slot, new_total) = match choice {
            Some(choice) => (entry.candidates[choice.index].slot, choice.total),
            None => (NO_SLOT, COST_INFINITE),
        };
        let old_slot = entry.selected;
        entry.selected = new_slot;
        entry.selected_total = new_total;
        if new_slot != old_slot {
            entry.changed_ms = coarse_ms(now);
        }
        let advertised = entry.adv_cost;
        // A new next hop is advertised too: the old one was poisoned and must learn our route,
        // the new one must be poisoned.
        let trigger = match (advertised == COST_INFINITE, new_total == COST_INFINITE) {
            (true, true) => false,
            (true, false) | (false, true) => true,
            (false, false) => {
                new_slot != old_slot
                    || new_total.abs_diff(advertised) > advertised / COST_CHANGE_DIVISOR
                    || advertised - new_total.min(advertised) > advertised / IMPROVEMENT_DIVISOR
            }
        };
        // A relay parked for the selected neighbour's copy goes out once the route carries
        // the newest sequence number.
        let relay_ready = entry.queued == Queued::Waiting
            && entry.relay_ttl != 0
            && entry
                .selected_candidate()
                .is_some_and(|c| c.seq == entry.newest_seq);
        if relay_ready {
            entry.queued = Queued::Pending;
            let urgent = entry.relay_urgent;
            self.relay_deadline.remove(&destination);
            self.pending.push(destination);
            if urgent {
                self.schedule_flush(now);
            }
        }
        if new_slot != old_slot {
            self.note_route_change(destination, new_slot);
        }
        if trigger {
            self.mark_pending(now, destination);
            let repeats = if new_total == COST_INFINITE {
                RETRACTION_REPEATS
            } else {
                UPDATE_REPEATS
            };
            // Repeats go only over lossy links (see `emit`); with none, queueing them would
            // only hold memory: at start-up every gained route queued one, about 2 MB per
            // node at 10,000 simulated nodes.
            if repeats > 0 && self.repeats.len() < MAX_REPEATS && self.has_lossy_link() {
                self.repeats
                    .push_back((destination, now + REPEAT_GAP, repeats));
            }
        }
        if new_slot == NO_SLOT {
            let starved = self
                .table
                .get(&destination)
                .is_some_and(|e| self.is_starved(e));
            if old_slot != NO_SLOT || starved {
                self.start_request(now, destination);
            }
        } else {
            self.requests.remove(&destination);
        }
    }

    /// Whether some usable neighbour lost probes recently (TQ below 255).
    fn has_lossy_link(&self) -> bool {
        (0..self.links.len()).any(|slot| {
            self.tq_used[slot] != u8::MAX && self.usable_link_cost(slot as Slot).is_some()
        })
    }

    /// A destination is starved when a usable neighbour advertises it but no advertisement
    /// is feasible, so only a newer sequence number can restore the route. Advertisements
    /// from neighbours whose link is not proven yet do not count: at start-up every dump
    /// arrives before the probes, and asking for thousands of destinations that the next
    /// probe makes routable made each of them flood the whole mesh.
    fn is_starved(&self, entry: &RouteEntry) -> bool {
        entry
            .candidates
            .iter()
            .any(|c| !c.is_empty() && self.usable_link_cost(c.slot).is_some())
    }

    fn reselect_all(&mut self, now: Timestamp) {
        let destinations: Vec<NodeId> = self.table.keys().copied().collect();
        for destination in destinations {
            self.reselect(now, destination);
        }
    }

    fn note_route_change(&mut self, destination: NodeId, slot: Slot) {
        self.stats.route_changes += 1;
        let next_hop = self.link(slot).map(|link| link.id);
        self.push_event(Event::RouteChanged {
            destination,
            next_hop,
        });
    }

    /// Queues an advertisement for `destination`. Urgent ones go out within `flush_delay`;
    /// others (periodic flood relays) wait for the next probe tick and share its packets.
    fn mark_pending(&mut self, now: Timestamp, destination: NodeId) {
        self.queue_advert(now, destination, true);
    }

    fn queue_advert(&mut self, now: Timestamp, destination: NodeId, urgent: bool) {
        if let Some(entry) = self.table.get_mut(&destination)
            && entry.queued == Queued::No
        {
            entry.queued = Queued::Pending;
            self.pending.push(destination);
        }
        if urgent {
            self.schedule_flush(now);
        }
    }

    fn schedule_flush(&mut self, now: Timestamp) {
        let mut at = now + self.config.flush_delay;
        if let Some(paced) = self.paced_until.filter(|paced| *paced > at) {
            at = paced;
        }
        self.flush_at = Some(self.flush_at.map_or(at, |current| current.min(at)));
    }

    /// Sends every pending advertisement, answer and table dump, one packet batch per neighbour.
    fn flush(&mut self, now: Timestamp, with_probes: bool) {
        self.flush_at = None;
        let paced = self.pending.len().min(MAX_ADVERTS_PER_FLUSH);
        let mut adverts = Vec::with_capacity(paced);
        let mut batch = std::mem::take(&mut self.pending);
        // The rest keep their order and their `Queued::Pending` mark, so a destination that
        // changes again before its turn is not queued twice.
        self.pending = batch.split_off(paced);
        for destination in batch {
            match self.prepare_advert(now, destination) {
                PreparedAdvert::Send(advert) => adverts.push(advert),
                PreparedAdvert::Wait(deadline) => self.wait_for_relay(destination, deadline),
                PreparedAdvert::Nothing => {}
            }
        }
        // Relays whose fallback deadline passed. An item is stale when its destination left
        // the waiting state (it became ready) or waits again with a later deadline.
        while let Some(&(destination, at)) = self.waiting.front() {
            if now < at {
                break;
            }
            self.waiting.pop_front();
            let current = self
                .table
                .get(&destination)
                .is_some_and(|e| e.queued == Queued::Waiting)
                && self.relay_deadline.get(&destination) == Some(&at);
            if !current {
                continue;
            }
            match self.prepare_advert(now, destination) {
                PreparedAdvert::Send(advert) => adverts.push(advert),
                PreparedAdvert::Wait(deadline) => self.wait_for_relay(destination, deadline),
                PreparedAdvert::Nothing => {}
            }
        }
        let first_repeat = adverts.len();
        while let Some(&(destination, at, left)) = self.repeats.front() {
            if now < at {
                break;
            }
            self.repeats.pop_front();
            let Some(entry) = self.table.get(&destination) else {
                continue;
            };
            // Repeat the current state, whatever it is by now.
            let mut ogm = match entry.selected_candidate() {
                Some(candidate) => Ogm {
                    originator: destination,
                    seq: candidate.seq,
                    cost: entry.selected_total,
                    hops: candidate.hops,
                    ttl: 0,
                    flags: 0,
                    signature: OgmSignature::ZERO,
                },
                None => Ogm {
                    originator: destination,
                    seq: entry.adv_seq,
                    cost: COST_INFINITE,
                    hops: 0,
                    ttl: 0,
                    flags: 0,
                    signature: OgmSignature::ZERO,
                },
            };
            let via_slot = entry.selected;
            if left > 1 {
                self.repeats
                    .push_back((destination, now + REPEAT_GAP, left - 1));
            }
            if self.sign_advert(&mut ogm) {
                adverts.push(Advert {
                    ogm,
                    via_slot,
                    is_relay: false,
                    is_repeat: true,
                });
            }
        }
        for advert in &adverts[first_repeat..] {
            if let Some(entry) = self.table.get_mut(&advert.ogm.originator) {
                entry.note_feasibility(advert.ogm.seq, advert.ogm.cost);
            }
        }
        self.emit(now, &adverts, with_probes);
        // The front item may be stale (then the wake-up is early, never late).
        let next_wait = self.waiting.front().map(|(_, at)| *at);
        let next_repeat = self.repeats.front().map(|(_, at, _)| *at);
        for at in [next_wait, next_repeat].into_iter().flatten() {
            self.flush_at = Some(self.flush_at.map_or(at, |current| current.min(at)));
        }
        if paced == MAX_ADVERTS_PER_FLUSH {
            // Paced: the neighbours get time to take in this batch before the next one.
            let at = now + PACED_FLUSH_GAP.max(self.config.flush_delay);
            self.paced_until = Some(at);
            if !self.pending.is_empty() {
                self.flush_at = Some(self.flush_at.map_or(at, |current| current.min(at)));
            }
        } else {
            self.paced_until = None;
            if !self.pending.is_empty() && self.flush_at.is_none() {
                self.schedule_flush(now);
            }
        }
    }

    /// Parks a flood relay until its selected neighbour's copy arrives (see `reselect`) or
    /// `deadline` passes. Deadlines are `RELAY_FALLBACK` after the first copy, so the queue
    /// stays in time order.
    fn wait_for_relay(&mut self, destination: NodeId, deadline: Timestamp) {
        if let Some(entry) = self.table.get_mut(&destination) {
            entry.queued = Queued::Waiting;
            if self.waiting.len() >= MAX_WAITING_RELAYS {
                // Bounded: past the limit the relay goes out at the next flush with the best
                // route that has the new number, as it would at its deadline.
                self.relay_deadline.remove(&destination);
                entry.queued = Queued::Pending;
                self.pending.push(destination);
                return;
            }
            self.waiting.push_back((destination, deadline));
        }
    }

    /// Decides what to advertise for a pending destination and records it as advertised.
    fn prepare_advert(&mut self, now: Timestamp, destination: NodeId) -> PreparedAdvert {
        let deadline = self.relay_deadline.get(&destination).copied();
        let Router {
            table,
            links,
            tq_used,
            link_costs,
            ..
        } = self;
        let Some(entry) = table.get_mut(&destination) else {
            return PreparedAdvert::Nothing;
        };
        let mut switched_to = None;
        if entry.relay_ttl != 0
            && entry
                .selected_candidate()
                .is_none_or(|c| c.seq != entry.newest_seq)
        {
            if let Some(deadline) = deadline.filter(|deadline| now < *deadline) {
                return PreparedAdvert::Wait(deadline);
            }
            // The best neighbour did not bring the new sequence number in time: the relay
            // must carry the route we forward on, so switch to the best route that has it.
            if let Some(choice) =
                entry.select_newest(|slot| usable_cost(links, tq_used, link_costs, slot))
            {
                let slot = entry.candidates[choice.index].slot;
                if slot != entry.selected {
                    entry.changed_ms = coarse_ms(now);
                    switched_to = Some(slot);
                }
                entry.selected = slot;
                entry.selected_total = choice.total;
            }
        }
        entry.queued = Queued::No;
        let relay_ttl = std::mem::take(&mut entry.relay_ttl);
        let relay_urgent = std::mem::take(&mut entry.relay_urgent);
        let mut ogm = match entry.selected_candidate() {
            Some(candidate) => {
                let relays = candidate.seq == entry.newest_seq && relay_ttl != 0;
                Ogm {
                    originator: destination,
                    seq: candidate.seq,
                    cost: entry.selected_total,
                    hops: candidate.hops,
                    ttl: if relays { relay_ttl } else { 0 },
                    flags: if relays && relay_urgent {
                        OGM_FLAG_URGENT
                    } else {
                        0
                    },
                    signature: OgmSignature::ZERO,
                }
            }
            None if entry.adv_cost == COST_INFINITE => {
                self.relay_deadline.remove(&destination);
                return PreparedAdvert::Nothing;
            }
            None => Ogm {
                originator: destination,
                seq: entry.adv_seq,
                cost: COST_INFINITE,
                hops: 0,
                ttl: 0,
                flags: 0,
                signature: OgmSignature::ZERO,
            },
        };
        entry.note_advertised(ogm.seq, ogm.cost);
        let via_slot = entry.selected;
        self.relay_deadline.remove(&destination);
        if let Some(slot) = switched_to {
            self.note_route_change(destination, slot);
        }
        if !self.sign_advert(&mut ogm) {
            return PreparedAdvert::Nothing;
        }
        PreparedAdvert::Send(Advert {
            ogm,
            via_slot,
            is_relay: ogm.ttl != 0,
            is_repeat: false,
        })
    }

    /// Writes adverts, request answers, table dumps and (at the probe tick) probes into one
    /// packet batch per neighbour, so a probe and the OGMs that wait for it share a datagram.
    fn emit(&mut self, now: Timestamp, adverts: &[Advert], with_probes: bool) {
        let dumps = std::mem::take(&mut self.dumps);
        let answers = std::mem::take(&mut self.answers);
        let dead_after = self.config.dead_after();
        let mut extra_adverts: Vec<Ogm> = Vec::new();
        for slot in 0..self.links.len() as Slot {
            let usable = self.usable_link_cost(slot).is_some();
            let mut writer = PacketWriter::new(self.local);
            if with_probes
                && let Some(link) = self.links[usize::from(slot)].as_mut()
                && (link.alive || now.saturating_since(link.last_heard) <= dead_after)
            {
                let probe = link.make_probe(now, self.config.window, self.config.probe_interval);
                writer.push(&Message::Probe(probe));
            }
            if !usable {
                self.send_packets(slot, writer);
                continue;
            }
            let mut count = 0u64;
            if with_probes && let Some(own) = &self.own_ogm {
                writer.push_ogm(own);
                count += 1;
            }
            let lossless = self.tq_used[usize::from(slot)] == u8::MAX;
            for advert in adverts {
                if advert.is_repeat && lossless {
                    continue;
                }
                if advert.via_slot == slot {
                    // Poisoned reverse: the neighbour we route through must not count on us.
                    if !advert.is_relay && advert.ogm.cost != COST_INFINITE {
                        writer.push_ogm(&Ogm {
                            cost: COST_INFINITE,
                            ttl: 0,
                            ..advert.ogm
                        });
                        count += 1;
                    }
                    continue;
                }
                writer.push_ogm(&advert.ogm);
                count += 1;
            }
            let dump = dumps.contains(&slot);
            if dump {
                let own_seq = self.own_seq;
                let local = self.local;
                if let Some(signature) = self.signature_of(&local, own_seq) {
                    writer.push_ogm(&Ogm {
                        originator: local,
                        seq: own_seq,
                        cost: 0,
                        hops: 0,
                        ttl: 0,
                        flags: 0,
                        signature,
                    });
                    count += 1;
                }
            }
            let answered = answers.iter().filter(|(to, _)| *to == slot).map(|(_, d)| d);
            let dumped = dump.then(|| self.table.keys()).into_iter().flatten();
            for destination in answered.chain(dumped) {
                if let Some(ogm) = self.current_advert(destination, slot) {
                    writer.push_ogm(&ogm);
                    extra_adverts.push(ogm);
                    count += 1;
                }
            }
            self.stats.ogms_tx += count;
            self.send_packets(slot, writer);
        }
        if with_probes {
            self.own_ogm = None;
        }
        // Answers and dumps advertise routes too, so they bind our feasibility distance.
        for ogm in extra_adverts {
            if let Some(entry) = self.table.get_mut(&ogm.originator) {
                entry.note_feasibility(ogm.seq, ogm.cost);
            }
        }
    }

    /// Our current route to `destination` as an OGM for neighbour `to`, unless it goes via `to`
    /// (or a signed router no longer keeps the signature of its sequence number).
    fn current_advert(&self, destination: &NodeId, to: Slot) -> Option<Ogm> {
        let entry = self.table.get(destination)?;
        let candidate = entry.selected_candidate()?;
        let mut ogm = Ogm {
            originator: *destination,
            seq: candidate.seq,
            cost: entry.selected_total,
            hops: candidate.hops,
            ttl: 0,
            flags: 0,
            signature: OgmSignature::ZERO,
        };
        if let Some(signed) = &self.signed {
            (ogm.seq, ogm.signature) = match retraction_signature(signed, &ogm) {
                Some(numbered) => numbered,
                None => (ogm.seq, signed.verified.get(destination)?.get(ogm.seq)?),
            };
        }
        (entry.selected != to).then_some(ogm)
    }

    fn send_packets(&mut self, slot: Slot, writer: PacketWriter) {
        let Some(id) = self.link(slot).map(|link| link.id) else {
            return;
        };
        for payload in writer.finish() {
            self.push_transmit(Transmit {
                to: Destination::Neighbour(id),
                payload,
            });
        }
    }

    /// Originates our own OGM. Fisheye scoping picks the TTL from the sequence number; the
    /// first OGM and request-driven ones flood the whole mesh.
    fn originate(&mut self, now: Timestamp, forced: bool) {
        self.own_seq = self.own_seq.wrapping_add(1);
        // The first OGM is scoped like any other: the neighbours that learn a new node pass
        // it on as a gained route (a triggered update), which already reaches the whole mesh.
        let ttl = if forced || !self.config.fisheye {
            TTL_UNLIMITED
        } else {
            fisheye_ttl(self.own_seq)
        };
        if forced {
            self.last_forced_origination = Some(now);
        }
        let local = self.local;
        // Own signatures are never missing: the signer makes them.
        let signature = self
            .signature_of(&local, self.own_seq)
            .unwrap_or(OgmSignature::ZERO);
        let ogm = Ogm {
            originator: self.local,
            seq: self.own_seq,
            cost: 0,
            hops: 0,
            ttl,
            flags: if forced { OGM_FLAG_URGENT } else { 0 },
            signature,
        };
        if !forced {
            // Periodic: rides on the next probes, at most a probe interval later. A newer one
            // replaces one still waiting.
            self.own_ogm = Some(ogm);
            return;
        }
        // A periodic one still waiting is older than this one.
        self.own_ogm = None;
        for slot in 0..self.links.len() as Slot {
            if self.usable_link_cost(slot).is_some() {
                let mut writer = PacketWriter::new(self.local);
                writer.push_ogm(&ogm);
                self.stats.ogms_tx += 1;
                self.send_packets(slot, writer);
            }
        }
    }

    // ----- sequence-number requests ------------------------------------------------------

    fn start_request(&mut self, now: Timestamp, destination: NodeId) {
        if let Some(pending) = self.requests.get(&destination) {
            // A neighbour answered the one-hop query with a route we cannot use yet: ask it
            // for a fresh one now rather than at the next retry.
            if pending.neighbours_queried && !pending.advertisers_asked {
                self.send_request(now, destination);
            }
            return;
        }
        if self.requests.len() >= MAX_PENDING_REQUESTS {
            self.stats.dropped_request_limit += 1;
            return;
        }
        let next_at = now + REQUEST_RETRY;
        let request = PendingRequest {
            attempts_left: REQUEST_ATTEMPTS - 1,
            neighbours_queried: false,
            advertisers_asked: false,
            next_at,
        };
        self.requests.insert(destination, request);
        self.schedule_request(destination, next_at);
        self.next_request_at = Some(self.next_request_at.map_or(next_at, |at| at.min(next_at)));
        if !self.send_request(now, destination)
            && let Some(request) = self.requests.get_mut(&destination)
        {
            // It waits for a token: the first attempt is not spent.
            request.attempts_left = REQUEST_ATTEMPTS;
        }
    }

    /// Takes a token from the request bucket, refilling it for the time passed.
    fn take_request_token(&mut self, now: Timestamp) -> bool {
        let refill_every = Duration::from_micros(1_000_000 / REQUESTS_PER_SECOND);
        let elapsed = now.saturating_since(self.request_tokens_at);
        let refills = elapsed.as_micros() / refill_every.as_micros();
        if refills > 0 {
            let refills = u32::try_from(refills).unwrap_or(u32::MAX);
            self.request_tokens = self
                .request_tokens
                .saturating_add(refills)
                .min(REQUEST_BURST);
            self.request_tokens_at = if self.request_tokens == REQUEST_BURST {
                now
            } else {
                self.request_tokens_at + refill_every * refills
            };
        }
        if self.request_tokens == 0 {
            return false;
        }
        self.request_tokens -= 1;
        true
    }

    /// Asks the neighbours that still advertise some route to `destination` (they can
    /// forward the request towards it). Retries ask them again: a neighbour whose route is
    /// intact does not advertise it again unprompted, and the first request it forwarded may
    /// have died at a node that lost the route in the same failure.
    ///
    /// When no neighbour advertises a route, a forwarded request has nowhere useful to go;
    /// what may still exist are routes we did not keep (an entry holds a few candidates, so
    /// a node with many neighbours forgets most of their advertisements). So every neighbour
    /// gets a one-hop query instead (hop limit 1: answered with the neighbour's current
    /// route, never forwarded), once per lost route, or on every attempt while some link
    /// loses packets. After a mass failure most lost destinations are dead: a
    /// forwarded request to every neighbour, five times, was two thirds of the packets
    /// of a 1,000-node crash and the storm a 10,000-node one ran out of memory in.
    ///
    /// Returns false when the request bucket is empty (nothing was sent; ask again later),
    /// true when the attempt is made (or there was nothing to send).
    fn send_request(&mut self, now: Timestamp, destination: NodeId) -> bool {
        let Some(entry) = self.table.get(&destination) else {
            return true;
        };
        let base = if entry.fd_cost == COST_INFINITE {
            entry.newest_seq
        } else {
            entry.fd_seq
        };
        let mut request = SeqnoRequest {
            target: destination,
            requester: self.local,
            seq: base.wrapping_add(1),
            hop_limit: REQUEST_HOP_LIMIT,
        };
        let advertisers: Vec<Slot> = entry
            .candidates
            .iter()
            .filter(|c| !c.is_empty() && self.usable_link_cost(c.slot).is_some())
            .map(|c| c.slot)
            .collect();
        let targets: Vec<Slot> = if advertisers.is_empty() {
            let lossy = self.has_lossy_link();
            if self
                .requests
                .get(&destination)
                .is_none_or(|pending| pending.neighbours_queried && !lossy)
            {
                return true;
            }
            if !self.take_request_token(now) {
                return false;
            }
            let Some(pending) = self.requests.get_mut(&destination) else {
                return true;
            };
            pending.neighbours_queried = true;
            pending.advertisers_asked = false;
            request.hop_limit = 1;
            (0..self.links.len() as Slot)
                .filter(|&slot| self.usable_link_cost(slot).is_some())
                .collect()
        } else {
            if !self.take_request_token(now) {
                return false;
            }
            if let Some(pending) = self.requests.get_mut(&destination) {
                pending.advertisers_asked = true;
            }
            advertisers
        };
        for slot in targets {
            self.queue_request(slot, request);
        }
        true
    }

    /// Queues a request for `slot`; the requests of one input share packets per neighbour
    /// (see `send_queued_requests`), as adverts do. After a mass failure a node asks for
    /// hundreds of destinations at once, and one packet each was most of the packets.
    fn queue_request(&mut self, slot: Slot, request: SeqnoRequest) {
        self.stats.seqno_requests_tx += 1;
        self.queued_requests.push((slot, request));
        if self.queued_requests.len() >= MAX_QUEUED_REQUESTS {
            self.send_queued_requests();
        }
    }

    /// Writes the queued requests, one packet batch per neighbour. Called before every
    /// input returns, so requests are never delayed.
    fn send_queued_requests(&mut self) {
        if self.queued_requests.is_empty() {
            return;
        }
        let mut queued = std::mem::take(&mut self.queued_requests);
        // Stable: each neighbour's requests keep their order.
        queued.sort_by_key(|(slot, _)| *slot);
        for batch in queued.chunk_by(|a, b| a.0 == b.0) {
            let mut writer = PacketWriter::new(self.local);
            for (_, request) in batch {
                writer.push(&Message::SeqnoRequest(*request));
            }
            self.send_packets(batch[0].0, writer);
        }
        queued.clear();
        self.queued_requests = queued;
    }

    /// Queues the retry of `destination`'s request at `at`. Stale items are dropped when
    /// they come due; should they pile up (requests answered long before their retry), the
    /// schedule is rebuilt from the live requests.
    fn schedule_request(&mut self, destination: NodeId, at: Timestamp) {
        self.request_schedule.push(Reverse((at, destination)));
        if self.request_schedule.len() > MAX_REQUEST_SCHEDULE {
            self.request_schedule = self
                .requests
                .iter()
                .map(|(d, r)| Reverse((r.next_at, *d)))
                .collect();
        }
    }

    fn retry_requests(&mut self, now: Timestamp) {
        if self.next_request_at.is_none_or(|at| at > now) {
            return;
        }
        while let Some(&Reverse((at, destination))) = self.request_schedule.peek() {
            if at > now {
                break;
            }
            self.request_schedule.pop();
            if self
                .requests
                .get(&destination)
                .is_none_or(|r| r.next_at != at)
            {
                continue;
            }
            let entry = self.table.get(&destination);
            let routed = entry.is_some_and(|e| e.selected != NO_SLOT);
            let starved = entry.is_some_and(|e| self.is_starved(e));
            let Some(request) = self.requests.get_mut(&destination) else {
                continue;
            };
            if routed || (request.attempts_left == 0 && !starved) {
                self.requests.remove(&destination);
                continue;
            }
            let asked = self.send_request(now, destination);
            let Some(request) = self.requests.get_mut(&destination) else {
                continue;
            };
            if !asked {
                // Out of tokens: try again a little later, without spending an attempt.
                request.next_at = now + REQUEST_RETRY;
                let next_at = request.next_at;
                self.request_schedule.push(Reverse((next_at, destination)));
                continue;
            }
            if request.attempts_left == 0 {
                request.next_at = now + STARVED_REQUEST_INTERVAL;
            } else {
                request.attempts_left -= 1;
                let attempts_made = u32::from(REQUEST_ATTEMPTS - request.attempts_left);
                request.next_at = now + REQUEST_RETRY * (1 << (attempts_made - 1).min(7));
            }
            let next_at = request.next_at;
            self.request_schedule.push(Reverse((next_at, destination)));
        }
        self.next_request_at = self.request_schedule.peek().map(|Reverse((at, _))| *at);
    }

    fn on_seqno_request(&mut self, now: Timestamp, slot: Slot, request: &SeqnoRequest) {
        if request.target == self.local {
            self.answer_own_request(now, request.seq);
            return;
        }
        // Only a node without a route asks, so whatever the requester advertised before is
        // gone: drop it now rather than wait for its retraction, which may still be in flight.
        if let Some(entry) = self.table.get_mut(&request.target)
            && entry.remove_slot(slot)
        {
            self.reselect(now, request.target);
        }
        let Some(entry) = self.table.get(&request.target) else {
            return;
        };
        let selected = entry.selected_candidate().copied();
        if selected.is_some_and(|c| !seq_newer(request.seq, c.seq)) {
            // Our route is already as fresh as asked: answer directly (RFC 8966 §3.8.1.2).
            self.answers.push((slot, request.target));
            self.schedule_flush(now);
            return;
        }
        let next = entry.selected;
        // Remember who asked even when we cannot forward (we lost the route too and asked
        // ourselves): whoever answers us, we pass the answer on.
        if !self.recent_requests.contains_key(&request.target) {
            // Full: sweep out expired records, but not on every request (a sweep that frees
            // nothing would otherwise run for each of thousands of requests after a mass
            // failure).
            let sweep_due = self
                .recent_requests_swept
                .is_none_or(|at| now >= at + RECENT_REQUESTS_SWEEP_GAP);
            if self.recent_requests.len() >= MAX_RECENT_REQUESTS && sweep_due {
                self.recent_requests_swept = Some(now);
                self.recent_requests
                    .retain(|_, forwarded| now < forwarded.at + ASKER_MEMORY);
            }
            if self.recent_requests.len() >= MAX_RECENT_REQUESTS {
                self.stats.dropped_request_limit += 1;
                return;
            }
            self.recent_requests
                .insert(request.target, ForwardedRequest::new(now));
        }
        let Some(record) = self.recent_requests.get_mut(&request.target) else {
            return;
        };
        record.at = now;
        record.add_asker(slot, request.seq);
        if selected.is_none() {
            return;
        }
        if request.hop_limit <= 1 {
            // A one-hop query (or a request at the end of its hops): answer with what we
            // have; the asker holds no route at all, so even a stale one helps it. A route
            // through the asker is never offered back to it.
            if slot != next {
                self.answers.push((slot, request.target));
                self.schedule_flush(now);
            }
            return;
        }
        // Forward unless the same or a stricter request went the same way moments ago.
        let duplicate = record
            .forwarded
            .is_some_and(|(at, seq)| now < at + REQUEST_DEDUP && !seq_newer(request.seq, seq));
        if !duplicate {
            record.forwarded = Some((now, request.seq));
        }
        // Tell the requester what we have, though it is not fresh enough: it gains an
        // advertiser to direct its retries to (and a route, if ours is feasible for it), so
        // that a request that dies further on, at a node that lost the route in the same
        // failure, is retried along a path that can forward it.
        self.answers.push((slot, request.target));
        self.schedule_flush(now);
        if duplicate {
            return;
        }
        let onward = SeqnoRequest {
            hop_limit: request.hop_limit - 1,
            ..*request
        };
        self.queue_request(next, onward);
    }

    fn answer_own_request(&mut self, now: Timestamp, requested: u32) {
        let recently_flooded = self
            .last_forced_origination
            .is_some_and(|at| now < at + FORCED_ORIGINATION_GAP);
        if recently_flooded && !seq_newer(requested, self.own_seq) {
            return;
        }
        if seq_newer(requested, self.own_seq.wrapping_add(1)) {
            // Our sequence number fell behind what others remember (a restart without the
            // persisted counter): jump ahead so our OGMs are believed again.
            self.own_seq = requested.wrapping_sub(1);
        }
        match self.last_forced_origination {
            Some(at) if now < at + FORCED_ORIGINATION_GAP => {
                self.forced_origination_at
                    .get_or_insert(at + FORCED_ORIGINATION_GAP);
            }
            _ => self.originate(now, true),
        }
    }

    // ----- housekeeping ------------------------------------------------------------------

    /// Removes candidates nobody refreshed in time and forgets long-unreachable destinations.
    fn sweep(&mut self, now: Timestamp) {
        let now_qs = coarse_quarter_seconds(now);
        let ogm_ms = u32::try_from(self.config.ogm_interval.as_millis()).unwrap_or(u32::MAX);
        let fisheye = self.config.fisheye;
        let mut affected = Vec::new();
        for (destination, entry) in self.table.iter_mut() {
            let mut removed = false;
            for candidate in entry.candidates.iter_mut().filter(|c| !c.is_empty()) {
                let age_qs = now_qs.wrapping_sub(candidate.updated_qs);
                if u32::from(age_qs) > candidate_timeout_ms(candidate.hops, ogm_ms, fisheye) / 250 {
                    *candidate = Candidate {
                        slot: NO_SLOT,
                        ..*candidate
                    };
                    removed = true;
                }
            }
            if removed {
                affected.push(*destination);
            }
        }
        for destination in affected {
            self.reselect(now, destination);
        }
        self.ask_again_for_lost_routes(now);
        let requests = &self.requests;
        self.table.retain(|destination, entry| {
            let forgotten = entry.candidates.iter().all(Candidate::is_empty)
                && entry.selected == NO_SLOT
                && entry.queued == Queued::No
                && !requests.contains_key(destination)
                && coarse_ms(now).wrapping_sub(entry.changed_ms) > DESTINATION_GC_MS;
            !forgotten
        });
        self.recent_requests
            .retain(|_, forwarded| now < forwarded.at + ASKER_MEMORY);
        if let Some(signed) = self.signed.as_mut() {
            let table = &self.table;
            signed
                .verified
                .retain(|originator, _| table.contains_key(originator));
        }
        self.shrink_idle_buffers();
        self.queue_table_slice(now);
    }

    /// Asks again for destinations that have no route and no pending request, when the time
    /// since the loss crosses 2^k milliseconds (2.0, 4.1, 8.2 ... s; checked at each sweep):
    /// their requests ran out while no neighbour had a route to give, or never started
    /// because the pending map was full when more routes went at once than it holds. Routes
    /// are only re-advertised when they change, so without asking, such a node waited for
    /// a full-scope flood or a table sync (tens of seconds) although a neighbour had a route
    /// long before; in a 3,000-node simulation 643 pairs were still unreachable 12 s after a
    /// crash of 40 %. A destination that is gone costs a handful of queries before its entry
    /// is forgotten.
    fn ask_again_for_lost_routes(&mut self, now: Timestamp) {
        const FIRST_MS: u32 = 1 << 11;
        let now_ms = coarse_ms(now);
        let previous_sweep_ms = coarse_ms(self.next_sweep - SWEEP_INTERVAL);
        let crossed = |changed_ms: u32| {
            let age = now_ms.wrapping_sub(changed_ms);
            let before = previous_sweep_ms.wrapping_sub(changed_ms);
            // Changed since the previous sweep (`before` wrapped): nothing crossed yet.
            let before = if before > age { 0 } else { before };
            age >= FIRST_MS && (before < FIRST_MS || age.ilog2() > before.ilog2())
        };
        let backlog = self.lost_routes_backlog.take();
        let due_now = |changed_ms: u32| {
            crossed(changed_ms)
                || (backlog.is_some() && now_ms.wrapping_sub(changed_ms) >= FIRST_MS)
        };
        let due: Vec<(usize, NodeId)> = self
            .table
            .iter()
            .enumerate()
            .filter(|(_, (destination, entry))| {
                entry.selected == NO_SLOT
                    && entry.adv_cost == COST_INFINITE
                    && !self.requests.contains_key(destination)
                    && due_now(entry.changed_ms)
            })
            .map(|(position, (destination, _))| (position, *destination))
            .collect();
        let cursor = backlog.unwrap_or(0);
        let (after, before): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|(position, _)| *position >= cursor);
        for (position, destination) in after.into_iter().chain(before) {
            if self.requests.len() >= MAX_PENDING_REQUESTS {
                // The rest go at the next sweep, not at their next power of two: a node
                // that lost 9,000 routes would otherwise wait 32 s for the last of them.
                self.stats.dropped_request_limit += 1;
                self.lost_routes_backlog = Some(position);
                break;
            }
            self.start_request(now, destination);
            // One round of queries once sent (a request waiting for a token keeps its
            // attempts): should an answer make the destination starved, its requests go on
            // from there; otherwise the pending place is free for the next round.
            if let Some(request) = self.requests.get_mut(&destination)
                && request.attempts_left < REQUEST_ATTEMPTS
            {
                request.attempts_left = 0;
            }
        }
    }

    /// Gives back the memory of queues and maps that a burst (a start-up, a mass failure)
    /// grew far beyond what they hold now. Their capacity otherwise stays at the peak: after
    /// a crash of 4,000 of 10,000 simulated nodes, the request records alone kept about 1 MB
    /// per survivor.
    fn shrink_idle_buffers(&mut self) {
        fn oversized(len: usize, capacity: usize) -> Option<usize> {
            (capacity > SHRINK_SLACK && capacity > 4 * len).then_some(2 * len)
        }
        if let Some(to) = oversized(self.recent_requests.len(), self.recent_requests.capacity()) {
            self.recent_requests.shrink_to(to);
        }
        if let Some(to) = oversized(self.requests.len(), self.requests.capacity()) {
            self.requests.shrink_to(to);
        }
        if let Some(to) = oversized(self.relay_deadline.len(), self.relay_deadline.capacity()) {
            self.relay_deadline.shrink_to(to);
        }
        if let Some(to) = oversized(self.repeats.len(), self.repeats.capacity()) {
            self.repeats.shrink_to(to);
        }
        if let Some(to) = oversized(self.waiting.len(), self.waiting.capacity()) {
            self.waiting.shrink_to(to);
        }
        if let Some(to) = oversized(self.events.len(), self.events.capacity()) {
            self.events.shrink_to(to);
        }
        if let Some(to) = oversized(self.transmits.len(), self.transmits.capacity()) {
            self.transmits.shrink_to(to);
        }
        if let Some(to) = oversized(self.pending.len(), self.pending.capacity()) {
            self.pending.shrink_to(to);
        }
        if let Some(to) = oversized(self.answers.len(), self.answers.capacity()) {
            self.answers.shrink_to(to);
        }
        if let Some(to) = oversized(
            self.request_schedule.len(),
            self.request_schedule.capacity(),
        ) {
            self.request_schedule.shrink_to(to);
        }
    }

    /// Re-advertises one slice of the routing table, so that the whole table reaches every
    /// neighbour once per sync period even when triggered updates and floods were lost
    /// (a lossy link must not leave a route unknown until the next mesh-wide flood). The
    /// entries ride on the next probe packets. The period grows with the square root of the
    /// table, so this traffic stays sub-linear in the mesh size: about 7 entries per second
    /// and neighbour at 100 destinations, 21 at 1,000, 67 at 10,000.
    fn queue_table_slice(&mut self, now: Timestamp) {
        let size_factor = (self.table.len() as f64 / SYNC_REFERENCE_DESTINATIONS)
            .sqrt()
            .max(1.0);
        let slices = (SYNC_PERIOD_MIN.as_secs_f64() * size_factor / SWEEP_INTERVAL.as_secs_f64())
            .round()
            .max(1.0) as u64;
        let turn = self.sweeps % slices;
        self.sweeps = self.sweeps.wrapping_add(1);
        let hasher = std::hash::BuildHasherDefault::<NodeIdHasher>::default();
        let due: Vec<NodeId> = self
            .table
            .iter()
            .filter(|(_, entry)| entry.selected != NO_SLOT && entry.queued == Queued::No)
            .filter(|(destination, _)| hasher.hash_one(destination) % slices == turn)
            .map(|(destination, _)| *destination)
            .collect();
        for destination in due {
            self.queue_advert(now, destination, false);
        }
    }

    fn send_hello(&mut self) {
        let interval_ms = u16::try_from(self.config.probe_interval.as_millis()).unwrap_or(u16::MAX);
        let mut writer = PacketWriter::new(self.local);
        writer.push(&Message::Hello(Hello {
            probe_interval_ms: interval_ms,
        }));
        for payload in writer.finish() {
            self.push_transmit(Transmit {
                to: Destination::Discovery,
                payload,
            });
        }
    }

    fn jittered(&mut self, interval: Duration, fraction: f64) -> Duration {
        interval.mul_f64(1.0 - fraction + 2.0 * fraction * self.rng.unit())
    }

    /// Queues an event. When the queue is full, route changes are what gives way: a
    /// neighbour event is never dropped for one (the routes can be read from the table at any
    /// time, a missed neighbour transition cannot).
    fn push_event(&mut self, event: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.stats.dropped_events += 1;
            if matches!(event, Event::RouteChanged { .. }) {
                return;
            }
            match self
                .events
                .iter()
                .position(|e| matches!(e, Event::RouteChanged { .. }))
            {
                Some(index) => {
                    self.events.remove(index);
                }
                None => {
                    self.events.pop_front();
                }
            }
        }
        self.events.push_back(event);
    }

    fn push_transmit(&mut self, transmit: Transmit) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.stats.dropped_transmits += 1;
            return;
        }
        self.stats.packets_tx += 1;
        self.stats.bytes_tx += transmit.payload.len() as u64;
        self.transmits.push_back(transmit);
    }
}

/// Queues and maps up to this capacity are never shrunk: reallocating small buffers again
/// after every burst would cost more than the memory it saves.
const SHRINK_SLACK: usize = 64;

/// Unreachable destinations with no candidates are forgotten after this long. Until then
/// their feasibility distance protects against stale advertisements (Babel keeps sources
/// for a few minutes for the same reason).
const DESTINATION_GC_MS: u32 = 180_000;

enum PreparedAdvert {
    Send(Advert),
    /// A relay waiting for the selected neighbour's copy until the deadline.
    Wait(Timestamp),
    Nothing,
}

fn usable_cost(
    links: &[Option<Link>],
    tq_used: &[u8],
    link_costs: &LinkCosts,
    slot: Slot,
) -> Option<u32> {
    let link = links.get(usize::from(slot))?.as_ref()?;
    if !link.alive || link.penalty == ISOLATED {
        return None;
    }
    let cost = link_costs.hop(*tq_used.get(usize::from(slot))?);
    (cost != COST_INFINITE).then(|| add_costs(cost, link.penalty))
}

/// The link cost by which a neighbour's advertisement competes for a candidate slot: its
/// usable cost, or for a neighbour heard but not yet proven usable, the cost of a perfect
/// link. The two ends of a link see it come up at different instants, so a neighbour's table
/// dump often arrives before its probes prove the link here; ranked as unreachable, those
/// advertisements lost every contest for a full candidate set and were not offered again
/// until the destination's next flood reaching this far (up to 64 OGM intervals), leaving
/// routes longer than needed that then changed next hop one by one as the floods came.
fn ranking_link_cost(
    links: &[Option<Link>],
    tq_used: &[u8],
    link_costs: &LinkCosts,
    slot: Slot,
) -> u32 {
    match usable_cost(links, tq_used, link_costs, slot) {
        Some(cost) => cost,
        None if links.get(usize::from(slot)).is_some_and(Option::is_some) => {
            link_costs.hop(u8::MAX)
        }
        None => COST_INFINITE,
    }
}

/// Milliseconds on the caller's clock, wrapping every 49 days; only short ages are taken.
/// For a retraction whose number has no kept signature, the newest number that has one.
/// A retraction only withdraws the sender's own advertisement and never moves the
/// receiver's newest number, so any number the originator signed will do. Without a route,
/// the table advertises the number of an empty or expired candidate (0, or one too old to be
/// kept): a signed router sends its newest verified number instead.
fn retraction_signature(signed: &SignedOgms, ogm: &Ogm) -> Option<(u32, OgmSignature)> {
    if ogm.cost != COST_INFINITE {
        return None;
    }
    let set = signed.verified.get(&ogm.originator)?;
    if set.get(ogm.seq).is_some() {
        return None;
    }
    set.newest()
}

fn coarse_ms(now: Timestamp) -> u32 {
    (now.as_micros() / 1000) as u32
}

/// Quarter seconds on the caller's clock, wrapping every 4.5 hours: candidate ages, which
/// never exceed `CANDIDATE_TIMEOUT_MAX_MS` before the sweep removes them.
fn coarse_quarter_seconds(now: Timestamp) -> u16 {
    (now.as_micros() / 250_000) as u16
}

/// Fisheye TTL of our sequence number `seq`: 1 + its trailing zero bits, so TTL h goes out
/// every 2^(h-1) OGM intervals, and every 2^FULL_SCOPE_SHIFT-th OGM floods everywhere.
fn fisheye_ttl(seq: u32) -> u8 {
    let zeros = seq.trailing_zeros();
    if zeros >= FULL_SCOPE_SHIFT {
        TTL_UNLIMITED
    } else {
        (zeros + 1) as u8
    }
}

/// How long a candidate `hops` away survives without refresh: three refresh periods of the
/// fisheye scope that reaches it, plus two OGM intervals of slack.
fn candidate_timeout_ms(hops: u8, ogm_ms: u32, fisheye: bool) -> u32 {
    candidate_timeout_uncapped_ms(hops, ogm_ms, fisheye).min(CANDIDATE_TIMEOUT_MAX_MS)
}

/// Candidate ages are kept in wrapping quarter seconds (16 bits), so timeouts stay well
/// below the wrap: two hours, far above the default 194 s (reached only with very long OGM
/// intervals).
const CANDIDATE_TIMEOUT_MAX_MS: u32 = 2 * 3600 * 1000;

fn candidate_timeout_uncapped_ms(hops: u8, ogm_ms: u32, fisheye: bool) -> u32 {
    let period_ogms = if fisheye {
        1u32 << u32::from(hops.max(1) - 1).min(FULL_SCOPE_SHIFT)
    } else {
        1
    };
    ogm_ms.saturating_mul(period_ogms * 3 + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_request_records_stay_small_and_keep_askers() {
        // After a mass failure every survivor holds up to MAX_RECENT_REQUESTS of these.
        assert!(std::mem::size_of::<ForwardedRequest>() <= 80);
        let mut record = ForwardedRequest::new(Timestamp::ZERO);
        for slot in 0..MAX_ASKERS as Slot + 2 {
            record.add_asker(slot, 10 + u32::from(slot));
        }
        record.add_asker(0, 20);
        assert_eq!(usize::from(record.asker_count), MAX_ASKERS);
        // A route based on number 14 satisfies the askers needing 14 or older.
        let mut satisfied = record.take_satisfied(14);
        satisfied.sort_unstable();
        assert_eq!(satisfied, vec![1, 2, 3, 4]);
        assert_eq!(&record.asker_slots[..4], &[0, 5, 6, 7]);
        assert_eq!(&record.asker_seqs[..4], &[20, 15, 16, 17]);
    }

    #[test]
    fn full_event_queue_drops_route_changes_before_neighbour_events() {
        let mut router = Router::new(
            NodeId::from_index(1),
            RouterConfig::default(),
            0,
            1,
            Timestamp::ZERO,
        );
        let change = |i: u64| Event::RouteChanged {
            destination: NodeId::from_index(i),
            next_hop: None,
        };
        router.push_event(Event::NeighbourUp(NodeId::from_index(2)));
        for i in 0..MAX_EVENTS as u64 {
            router.push_event(change(i));
        }
        router.push_event(Event::NeighbourDown(NodeId::from_index(3)));
        let events: Vec<Event> = std::iter::from_fn(|| router.poll_event()).collect();
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events[0], Event::NeighbourUp(NodeId::from_index(2)));
        assert_eq!(
            events[MAX_EVENTS - 1],
            Event::NeighbourDown(NodeId::from_index(3))
        );
        assert_eq!(
            router.stats().dropped_events,
            2,
            "one change evicted, one change refused"
        );
    }
}
