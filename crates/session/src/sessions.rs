//! `Sessions`: the sans-IO table of end-to-end sessions, one entry per peer node.
//!
//! # Calling contract
//! - **Inputs.** [`Sessions::encrypt`] for every payload the node sends to a peer,
//!   [`Sessions::handle_incoming`] for every session packet that arrives for this node (with
//!   the source node named by the overlay header, and the node directory to look peers up in),
//!   [`Sessions::handle_timeout`] whenever [`Sessions::poll_timeout`]'s deadline passes.
//! - **Outputs.** The return values, plus [`Sessions::poll_transmit`], which must be drained
//!   after every input: handshake messages, payloads flushed from a queue and keepalives go
//!   there. A caller that stops draining loses datagrams (counted), never memory.
//! - **Time.** `now` is microseconds and must not go backwards. The node passes its wall clock
//!   (Unix time): initiation timestamps must keep growing across restarts, as WireGuard's
//!   TAI64N timestamps do, or peers refuse them until they forget the old ones.
//!
//! # Roles and key rollover
//! Each side of a peer pair may hold up to three key sets: `current` (sends and receives),
//! `previous` (receives only, for [`SessionConfig::grace_us`] after it was replaced) and `next`
//! (a responder's new keys, not used to send until the initiator proves it holds them by
//! sending a packet under them). An initiator uses its new keys at once and sends a keepalive
//! when it has nothing queued, so the responder switches within one trip; while it still
//! receives under its previous keys it repeats that keepalive at most once a second.
//!
//! A sender starts a new handshake once its keys sent `rekey_after_messages` packets or are
//! `rekey_after_us` old, and keeps sending under the old keys until the handshake completes;
//! keys older than `reject_after_us` neither send nor receive.
//!
//! # Simultaneous handshakes
//! When both nodes initiate at once, the initiation of the node with the **smaller node id**
//! wins on both sides: that node ignores the other's initiation (its own is in flight), and
//! the larger node abandons its own and answers. Both end with the one session the smaller
//! node started.

use std::collections::{HashMap, VecDeque};

use wire::NodeId;

use crate::config::{
    CONFIRM_KEEPALIVE_INTERVAL_US, ConfigError, MAX_QUEUED_BYTES, MAX_QUEUED_TOTAL,
    MAX_REASSEMBLIES, MAX_TRANSMITS, REASSEMBLY_TIMEOUT_US, SessionConfig,
};
use crate::crypto::{self, CryptoError, Ephemeral, KemSecret, NodeSigner, PacketKey, PeerIdentity};
use crate::packet::{
    self, Data, DecodeError, Init, InitFragment, MAX_PLAINTEXT_BYTES, REJECT_AFTER_MESSAGES,
    Response,
};
use crate::replay::{ReplayError, ReplayWindow};
use crate::rng::RngSource;

/// How many random indices are drawn before giving up on finding a free one. The table holds
/// at most a few hundred thousand of 2^32 indices, so eight misses in a row mean a broken
/// random source.
const INDEX_DRAWS: usize = 8;

/// Where the caller's node directory answers which keys a peer has.
///
/// The answer must come from the peer's verified node record (hybrid-signed, bound to its
/// SVID); the session trusts it to authenticate the peer's handshakes.
pub trait PeerDirectory {
    /// The peer's verified identity, or `None` for a node that is not (or no longer) a member.
    fn identity(&self, peer: &NodeId) -> Option<PeerIdentity>;
}

impl PeerDirectory for HashMap<NodeId, PeerIdentity> {
    fn identity(&self, peer: &NodeId) -> Option<PeerIdentity> {
        self.get(peer).copied()
    }
}

/// A datagram to send to a peer node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The destination node.
    pub to: NodeId,
    /// The session packet.
    pub bytes: Vec<u8>,
}

/// What [`Sessions::encrypt`] did with a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// The data packet to send to the peer now.
    Sealed(Vec<u8>),
    /// Queued until a handshake completes; its packets are in [`Sessions::poll_transmit`].
    Queued,
}

/// What an accepted incoming packet was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A payload from `peer`, authenticated and decrypted.
    Data {
        /// The sending node.
        peer: NodeId,
        /// The payload.
        plaintext: Vec<u8>,
    },
    /// An empty packet that only confirmed or refreshed keys.
    Keepalive {
        /// The sending node.
        peer: NodeId,
    },
    /// Half of an initiation, held until the other half arrives.
    Fragment,
    /// An initiation was answered; the response is in [`Sessions::poll_transmit`].
    Answered {
        /// The initiating node.
        peer: NodeId,
    },
    /// This node's handshake completed; queued payloads are in [`Sessions::poll_transmit`].
    Established {
        /// The responding node.
        peer: NodeId,
    },
    /// An initiation that crossed this node's own was ignored (this node's id is smaller).
    CollisionIgnored {
        /// The other initiating node.
        peer: NodeId,
    },
}

/// Why [`Sessions::encrypt`] refused a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The payload is larger than [`MAX_PLAINTEXT_BYTES`].
    #[error("payload of {0} bytes exceeds {MAX_PLAINTEXT_BYTES}")]
    TooLarge(usize),
    /// The destination is this node.
    #[error("no session with the local node")]
    OwnNode,
    /// The handshake queue is full; the payload was dropped (counted in `queue_dropped`).
    #[error("handshake queue full")]
    QueueFull,
    /// Key generation or the random source failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Why an incoming packet was dropped. Each kind has a counter in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// Longer than the session bound.
    #[error("oversized")]
    Oversized,
    /// Unknown wire version.
    #[error("unknown version")]
    Version,
    /// Truncated, wrong length, unknown type.
    #[error("malformed")]
    Malformed,
    /// No session or handshake of the sender has that index.
    #[error("unknown session")]
    UnknownSession,
    /// The counter was already received.
    #[error("replayed")]
    Replayed,
    /// The counter is behind the replay window.
    #[error("too old for the replay window")]
    TooOld,
    /// The AEAD tag does not verify: some byte was changed.
    #[error("authentication failed")]
    Tampered,
    /// The keys it was sealed with expired.
    #[error("keys expired")]
    Expired,
    /// The directory knows no such member.
    #[error("unknown peer")]
    UnknownPeer,
    /// A handshake signature does not verify.
    #[error("bad handshake signature")]
    BadSignature,
    /// An initiation for another node, or not from the node that relayed it as its source.
    #[error("misdirected handshake")]
    Misdirected,
    /// An initiation not newer than one already accepted from that peer (a replay).
    #[error("stale initiation")]
    StaleInit,
    /// A public key or ciphertext the key exchange refused.
    #[error("bad handshake key")]
    BadKey,
}

/// Counters of everything the table did and dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Data packets sealed (including flushed queues, excluding keepalives).
    pub sent: u64,
    /// Data packets accepted (including keepalives).
    pub received: u64,
    /// Empty packets sent to confirm new keys.
    pub keepalives_sent: u64,
    /// Handshakes this node started (first attempts).
    pub handshakes_initiated: u64,
    /// Fresh initiations sent because an earlier one went unanswered.
    pub handshake_retries: u64,
    /// Initiations answered.
    pub handshakes_answered: u64,
    /// Own handshakes completed (response verified).
    pub handshakes_completed: u64,
    /// Answered handshakes the initiator confirmed by using the keys.
    pub handshakes_confirmed: u64,
    /// Handshakes given up after the last attempt.
    pub handshake_timeouts: u64,
    /// Initiations that crossed one of ours (either side of the tie-break).
    pub handshake_collisions: u64,
    /// Key sets replaced by newer ones while in use.
    pub rekeys: u64,
    /// Sessions that reached `reject_after_us`.
    pub sessions_expired: u64,
    /// Peers forgotten to make room for a new one.
    pub peers_evicted: u64,
    /// Half-received initiations evicted for new ones.
    pub reassemblies_evicted: u64,
    /// Payloads dropped from or refused by handshake queues.
    pub queue_dropped: u64,
    /// Datagrams dropped because the caller did not drain `poll_transmit`.
    pub transmit_dropped: u64,
    /// Dropped: longer than the bound.
    pub dropped_oversized: u64,
    /// Dropped: unknown version.
    pub dropped_version: u64,
    /// Dropped: malformed.
    pub dropped_malformed: u64,
    /// Dropped: unknown session index or sender.
    pub dropped_unknown_session: u64,
    /// Dropped: replayed counter.
    pub dropped_replayed: u64,
    /// Dropped: counter behind the window.
    pub dropped_too_old: u64,
    /// Dropped: AEAD tag does not verify.
    pub dropped_tampered: u64,
    /// Dropped: keys expired.
    pub dropped_expired: u64,
    /// Dropped: handshake from a node the directory does not know.
    pub dropped_unknown_peer: u64,
    /// Dropped: handshake signature does not verify.
    pub dropped_bad_signature: u64,
    /// Dropped: initiation for another node or from another source.
    pub dropped_misdirected: u64,
    /// Dropped: initiation not newer than the last accepted one.
    pub dropped_stale_init: u64,
    /// Dropped: key exchange refused a public value.
    pub dropped_bad_key: u64,
}

impl Dropped {
    /// Every kind, for totals.
    pub const ALL: [Dropped; 13] = [
        Dropped::Oversized,
        Dropped::Version,
        Dropped::Malformed,
        Dropped::UnknownSession,
        Dropped::Replayed,
        Dropped::TooOld,
        Dropped::Tampered,
        Dropped::Expired,
        Dropped::UnknownPeer,
        Dropped::BadSignature,
        Dropped::Misdirected,
        Dropped::StaleInit,
        Dropped::BadKey,
    ];
}

impl Stats {
    /// The counter of one kind of drop; the single place that maps kinds to fields.
    fn counter_mut(&mut self, reason: Dropped) -> &mut u64 {
        match reason {
            Dropped::Oversized => &mut self.dropped_oversized,
            Dropped::Version => &mut self.dropped_version,
            Dropped::Malformed => &mut self.dropped_malformed,
            Dropped::UnknownSession => &mut self.dropped_unknown_session,
            Dropped::Replayed => &mut self.dropped_replayed,
            Dropped::TooOld => &mut self.dropped_too_old,
            Dropped::Tampered => &mut self.dropped_tampered,
            Dropped::Expired => &mut self.dropped_expired,
            Dropped::UnknownPeer => &mut self.dropped_unknown_peer,
            Dropped::BadSignature => &mut self.dropped_bad_signature,
            Dropped::Misdirected => &mut self.dropped_misdirected,
            Dropped::StaleInit => &mut self.dropped_stale_init,
            Dropped::BadKey => &mut self.dropped_bad_key,
        }
    }

    fn count(&mut self, reason: Dropped) {
        *self.counter_mut(reason) += 1;
    }

    /// How many packets were dropped for `reason`.
    pub fn dropped(&self, reason: Dropped) -> u64 {
        // A copy lets the one mapping above serve reads too; Stats is a few hundred bytes.
        *self.clone().counter_mut(reason)
    }

    /// All drops of incoming packets together.
    pub fn dropped_total(&self) -> u64 {
        Dropped::ALL
            .iter()
            .map(|reason| self.dropped(*reason))
            .sum()
    }
}

/// A view of one peer's session, for status pages and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// Index this node receives the current keys under.
    pub local_index: u32,
    /// Index the peer receives them under.
    pub remote_index: u32,
    /// When the current keys were made.
    pub created_us: u64,
    /// Packets sent under them.
    pub sent: u64,
    /// Whether this node initiated them.
    pub initiated: bool,
    /// Whether previous keys are still accepted.
    pub has_previous: bool,
    /// Whether answered keys await the initiator's confirmation.
    pub has_next: bool,
}

/// One direction pair of keys with its counters.
struct Keys {
    local_index: u32,
    remote_index: u32,
    send: PacketKey,
    recv: PacketKey,
    send_counter: u64,
    window: ReplayWindow,
    created_us: u64,
    initiated: bool,
}

impl Keys {
    fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let counter = self.send_counter;
        self.send_counter += 1;
        self.send.seal(self.remote_index, counter, plaintext)
    }

    fn can_send(&self, now: u64, config: &SessionConfig) -> bool {
        now.saturating_sub(self.created_us) < config.reject_after_us
            && self.send_counter < REJECT_AFTER_MESSAGES
    }

    fn wants_rekey(&self, now: u64, config: &SessionConfig) -> bool {
        now.saturating_sub(self.created_us) >= config.rekey_after_us
            || self.send_counter >= config.rekey_after_messages
    }

    fn expired(&self, now: u64, config: &SessionConfig) -> bool {
        now.saturating_sub(self.created_us) >= config.reject_after_us
    }
}

/// This node's handshake in progress with one peer.
struct Pending {
    local_index: u32,
    init_bytes: Vec<u8>,
    ephemeral: Ephemeral,
    kem: KemSecret,
    attempts: u32,
    sent_us: u64,
}

/// Everything kept about one peer.
#[derive(Default)]
struct Peer {
    current: Option<Keys>,
    previous: Option<Keys>,
    previous_until_us: u64,
    next: Option<Keys>,
    pending: Option<Pending>,
    queue: VecDeque<Vec<u8>>,
    /// Highest initiation timestamp accepted from the peer: older ones are replays.
    last_init_timestamp: Option<u64>,
    last_active_us: u64,
    last_confirm_keepalive_us: Option<u64>,
}

impl Peer {
    fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [
            self.current.as_ref().map(|k| k.local_index),
            self.previous.as_ref().map(|k| k.local_index),
            self.next.as_ref().map(|k| k.local_index),
            self.pending.as_ref().map(|p| p.local_index),
        ]
        .into_iter()
        .flatten()
    }

    fn is_idle(&self) -> bool {
        self.current.is_none()
            && self.previous.is_none()
            && self.next.is_none()
            && self.pending.is_none()
            && self.queue.is_empty()
    }

    /// Answered keys the initiator has had too little time to confirm: starting a competing
    /// handshake now would only collide with it.
    fn awaiting_confirmation(&self, now: u64, config: &SessionConfig) -> bool {
        self.next
            .as_ref()
            .is_some_and(|k| now.saturating_sub(k.created_us) < config.handshake_retry_us)
    }
}

/// Which key set of a peer an index names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Current,
    Previous,
    Next,
}

/// The first half of an initiation waiting for the second.
struct Partial {
    halves: [Option<Vec<u8>>; 2],
    started_us: u64,
}

/// The session table of one node. See the module documentation for the calling contract.
pub struct Sessions {
    config: SessionConfig,
    local: NodeId,
    signer: Box<dyn NodeSigner + Send + Sync>,
    rng: Box<dyn RngSource + Send>,
    peers: HashMap<NodeId, Peer>,
    /// Every local index in use, to the peer whose key set or handshake holds it.
    indices: HashMap<u32, NodeId>,
    reassembly: HashMap<(NodeId, u32), Partial>,
    transmits: VecDeque<Transmit>,
    queued_total: usize,
    queued_bytes: usize,
    last_init_timestamp_sent: u64,
    stats: Stats,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("local", &self.local)
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// A table for the node whose key `signer` holds, drawing ephemeral keys from `rng`.
    pub fn new(
        config: SessionConfig,
        signer: impl NodeSigner + Send + Sync + 'static,
        rng: impl RngSource + Send + 'static,
    ) -> Result<Sessions, ConfigError> {
        config.validate()?;
        Ok(Sessions {
            local: signer.node_id(),
            config,
            signer: Box::new(signer),
            rng: Box::new(rng),
            peers: HashMap::new(),
            indices: HashMap::new(),
            reassembly: HashMap::new(),
            transmits: VecDeque::new(),
            queued_total: 0,
            queued_bytes: 0,
            last_init_timestamp_sent: 0,
            stats: Stats::default(),
        })
    }

    /// The local node.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Peers with any state.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The current session with `peer`, if any.
    pub fn session(&self, peer: &NodeId) -> Option<SessionInfo> {
        let entry = self.peers.get(peer)?;
        let keys = entry.current.as_ref()?;
        Some(SessionInfo {
            local_index: keys.local_index,
            remote_index: keys.remote_index,
            created_us: keys.created_us,
            sent: keys.send_counter,
            initiated: keys.initiated,
            has_previous: entry.previous.is_some(),
            has_next: entry.next.is_some(),
        })
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Encrypts `plaintext` for `peer`: the data packet to send now, or the payload is queued
    /// while a handshake runs (whose messages wait in [`Sessions::poll_transmit`]).
    pub fn encrypt(
        &mut self,
        peer: NodeId,
        plaintext: &[u8],
        now: u64,
    ) -> Result<Outgoing, SessionError> {
        if plaintext.len() > MAX_PLAINTEXT_BYTES {
            return Err(SessionError::TooLarge(plaintext.len()));
        }
        if peer == self.local {
            return Err(SessionError::OwnNode);
        }
        self.ensure_peer(peer, now);
        let config = &self.config;
        let Some(entry) = self.peers.get_mut(&peer) else {
            return Err(SessionError::OwnNode);
        };
        entry.last_active_us = now;
        if let Some(keys) = entry.current.as_mut().filter(|k| k.can_send(now, config)) {
            let sealed = keys.seal(plaintext)?;
            self.stats.sent += 1;
            // Keys the peer just offered (`next`) are fresher than any this node could start:
            // confirming them is the rekey, and a second handshake would only cross it.
            let rekey =
                keys.wants_rekey(now, config) && entry.pending.is_none() && entry.next.is_none();
            if rekey {
                self.start_handshake(peer, now)?;
            }
            return Ok(Outgoing::Sealed(sealed));
        }
        if entry.queue.len() >= config.queue_per_peer
            || self.queued_total >= MAX_QUEUED_TOTAL
            || self.queued_bytes + plaintext.len() > MAX_QUEUED_BYTES
        {
            self.stats.queue_dropped += 1;
            return Err(SessionError::QueueFull);
        }
        entry.queue.push_back(plaintext.to_vec());
        self.queued_total += 1;
        self.queued_bytes += plaintext.len();
        if entry.pending.is_none() && !entry.awaiting_confirmation(now, config) {
            self.start_handshake(peer, now)?;
        }
        Ok(Outgoing::Queued)
    }

    /// Handles one session packet whose overlay header names `from` as its source node.
    /// `directory` supplies the verified keys of peers whose handshakes arrive.
    pub fn handle_incoming(
        &mut self,
        directory: &dyn PeerDirectory,
        from: NodeId,
        bytes: &[u8],
        now: u64,
    ) -> Result<Incoming, Dropped> {
        let result = match packet::decode(bytes) {
            Err(DecodeError::Oversized(_)) => Err(Dropped::Oversized),
            Err(DecodeError::Version(_)) => Err(Dropped::Version),
            Err(DecodeError::Malformed(_)) => Err(Dropped::Malformed),
            Ok(packet::Packet::InitFragment(fragment)) => {
                self.handle_fragment(directory, from, &fragment, now)
            }
            Ok(packet::Packet::Response(response)) => {
                self.handle_response(directory, from, &response, now)
            }
            Ok(packet::Packet::Data(data)) => self.handle_data(from, &data, now),
        };
        if let Err(reason) = result {
            self.stats.count(reason);
        }
        result
    }

    fn handle_fragment(
        &mut self,
        directory: &dyn PeerDirectory,
        from: NodeId,
        fragment: &InitFragment<'_>,
        now: u64,
    ) -> Result<Incoming, Dropped> {
        let key = (from, fragment.initiator_index);
        if !self.reassembly.contains_key(&key) && self.reassembly.len() >= MAX_REASSEMBLIES {
            let oldest = self
                .reassembly
                .iter()
                .min_by_key(|(_, partial)| partial.started_us)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                self.reassembly.remove(&oldest);
                self.stats.reassemblies_evicted += 1;
            }
        }
        let partial = self.reassembly.entry(key).or_insert(Partial {
            halves: [None, None],
            started_us: now,
        });
        partial.halves[usize::from(fragment.number & 1)] = Some(fragment.payload.to_vec());
        if partial.halves.iter().any(Option::is_none) {
            return Ok(Incoming::Fragment);
        }
        let Some(Partial {
            halves: [Some(first), Some(second)],
            ..
        }) = self.reassembly.remove(&key)
        else {
            return Ok(Incoming::Fragment);
        };
        let bytes = packet::reassemble(fragment.initiator_index, &first, &second);
        self.handle_init(directory, from, &bytes, now)
    }

    fn handle_init(
        &mut self,
        directory: &dyn PeerDirectory,
        from: NodeId,
        bytes: &[u8],
        now: u64,
    ) -> Result<Incoming, Dropped> {
        let init = Init::decode(bytes).map_err(|_| Dropped::Malformed)?;
        if init.responder != self.local || init.initiator != from || from == self.local {
            return Err(Dropped::Misdirected);
        }
        let identity = lookup(directory, &from)?;
        if !crypto::verify_init(&identity, &init) {
            return Err(Dropped::BadSignature);
        }
        if let Some(entry) = self.peers.get(&from) {
            if entry.last_init_timestamp >= Some(init.timestamp) {
                return Err(Dropped::StaleInit);
            }
            if entry.pending.is_some() && self.local < from {
                self.stats.handshake_collisions += 1;
                return Ok(Incoming::CollisionIgnored { peer: from });
            }
        }
        let ephemeral = Ephemeral::generate(&mut *self.rng).map_err(|_| Dropped::BadKey)?;
        let x25519_secret = ephemeral.agree(&init.x25519).map_err(|_| Dropped::BadKey)?;
        let (ml_kem_ct, ml_kem_secret) =
            crypto::encapsulate(&init.ml_kem_ek).map_err(|_| Dropped::BadKey)?;
        let index = self.new_index().map_err(|_| Dropped::BadKey)?;
        let mut response = Response {
            responder_index: index,
            initiator_index: init.initiator_index,
            x25519: ephemeral.x25519_public,
            ml_kem_ct,
            signature: [0; packet::SIGNATURE_BYTES],
        };
        response.signature = crypto::sign_response(&*self.signer, bytes, &response);
        let encoded = response.encode();
        let derived = crypto::derive_keys(&x25519_secret, &ml_kem_secret, bytes, &encoded)
            .map_err(|_| Dropped::BadKey)?;
        let keys = Keys {
            local_index: index,
            remote_index: init.initiator_index,
            send: PacketKey::new(&derived.responder_to_initiator).map_err(|_| Dropped::BadKey)?,
            recv: PacketKey::new(&derived.initiator_to_responder).map_err(|_| Dropped::BadKey)?,
            send_counter: 0,
            window: ReplayWindow::new(),
            created_us: now,
            initiated: false,
        };
        self.ensure_peer(from, now);
        let Some(entry) = self.peers.get_mut(&from) else {
            return Err(Dropped::UnknownPeer);
        };
        if let Some(abandoned) = entry.pending.take() {
            // The peer's id is smaller: its initiation wins and ours is dropped on both sides.
            self.indices.remove(&abandoned.local_index);
            self.stats.handshake_collisions += 1;
        }
        if let Some(replaced) = entry.next.replace(keys) {
            self.indices.remove(&replaced.local_index);
        }
        self.indices.insert(index, from);
        entry.last_init_timestamp = Some(init.timestamp);
        entry.last_active_us = now;
        self.stats.handshakes_answered += 1;
        self.push_transmit(from, encoded);
        Ok(Incoming::Answered { peer: from })
    }

    fn handle_response(
        &mut self,
        directory: &dyn PeerDirectory,
        from: NodeId,
        response: &Response,
        now: u64,
    ) -> Result<Incoming, Dropped> {
        if self.indices.get(&response.initiator_index) != Some(&from) {
            return Err(Dropped::UnknownSession);
        }
        let identity = lookup(directory, &from)?;
        let Some(entry) = self.peers.get_mut(&from) else {
            return Err(Dropped::UnknownSession);
        };
        let Some(pending) = entry
            .pending
            .as_ref()
            .filter(|p| p.local_index == response.initiator_index)
        else {
            return Err(Dropped::UnknownSession);
        };
        if !crypto::verify_response(&identity, &pending.init_bytes, response) {
            return Err(Dropped::BadSignature);
        }
        let x25519_secret = pending
            .ephemeral
            .agree(&response.x25519)
            .map_err(|_| Dropped::BadKey)?;
        let ml_kem_secret = pending
            .kem
            .decapsulate(&response.ml_kem_ct)
            .map_err(|_| Dropped::BadKey)?;
        let derived = crypto::derive_keys(
            &x25519_secret,
            &ml_kem_secret,
            &pending.init_bytes,
            &response.encode(),
        )
        .map_err(|_| Dropped::BadKey)?;
        let keys = Keys {
            local_index: pending.local_index,
            remote_index: response.responder_index,
            send: PacketKey::new(&derived.initiator_to_responder).map_err(|_| Dropped::BadKey)?,
            recv: PacketKey::new(&derived.responder_to_initiator).map_err(|_| Dropped::BadKey)?,
            send_counter: 0,
            window: ReplayWindow::new(),
            created_us: now,
            initiated: true,
        };
        entry.pending = None;
        if let Some(stale) = entry.next.take() {
            // Keys the peer offered earlier lose to the ones this node just agreed on.
            self.indices.remove(&stale.local_index);
        }
        self.install_current(from, keys, now);
        self.stats.handshakes_completed += 1;
        if self.flush_queue(from, now) == 0 {
            self.send_keepalive(from, now);
        }
        Ok(Incoming::Established { peer: from })
    }

    fn handle_data(
        &mut self,
        from: NodeId,
        data: &Data<'_>,
        now: u64,
    ) -> Result<Incoming, Dropped> {
        if self.indices.get(&data.receiver_index) != Some(&from) {
            return Err(Dropped::UnknownSession);
        }
        let config = &self.config;
        let Some(entry) = self.peers.get_mut(&from) else {
            return Err(Dropped::UnknownSession);
        };
        let index = data.receiver_index;
        let (slot, keys) =
            if let Some(k) = entry.current.as_mut().filter(|k| k.local_index == index) {
                (Slot::Current, k)
            } else if let Some(k) = entry.previous.as_mut().filter(|k| k.local_index == index) {
                if now >= entry.previous_until_us {
                    return Err(Dropped::Expired);
                }
                (Slot::Previous, k)
            } else if let Some(k) = entry.next.as_mut().filter(|k| k.local_index == index) {
                (Slot::Next, k)
            } else {
                return Err(Dropped::UnknownSession);
            };
        if keys.expired(now, config) {
            return Err(Dropped::Expired);
        }
        keys.window.check(data.counter).map_err(replay_reason)?;
        let plaintext = keys
            .recv
            .open(data.header, data.counter, data.sealed)
            .map_err(|_| Dropped::Tampered)?;
        keys.window.accept(data.counter).map_err(replay_reason)?;
        entry.last_active_us = now;
        self.stats.received += 1;
        match slot {
            Slot::Current => {}
            Slot::Next => {
                if let Some(confirmed) = entry.next.take() {
                    self.install_current(from, confirmed, now);
                    self.stats.handshakes_confirmed += 1;
                    self.flush_queue(from, now);
                }
            }
            Slot::Previous => {
                let due = entry
                    .last_confirm_keepalive_us
                    .is_none_or(|last| now.saturating_sub(last) >= CONFIRM_KEEPALIVE_INTERVAL_US);
                if due && entry.current.as_ref().is_some_and(|k| k.initiated) {
                    entry.last_confirm_keepalive_us = Some(now);
                    self.send_keepalive(from, now);
                }
            }
        }
        Ok(if plaintext.is_empty() {
            Incoming::Keepalive { peer: from }
        } else {
            Incoming::Data {
                peer: from,
                plaintext,
            }
        })
    }

    /// Retries and gives up handshakes, retires previous keys, expires sessions, forgets idle
    /// peers and stale fragments.
    pub fn handle_timeout(&mut self, now: u64) {
        let config = self.config.clone();
        let mut to_start = Vec::new();
        let mut to_forget = Vec::new();
        for (id, entry) in self.peers.iter_mut() {
            if let Some(pending) = &entry.pending
                && now.saturating_sub(pending.sent_us) >= config.handshake_retry_us
            {
                if pending.attempts >= config.handshake_attempts {
                    self.indices.remove(&pending.local_index);
                    entry.pending = None;
                    self.stats.handshake_timeouts += 1;
                    self.stats.queue_dropped += entry.queue.len() as u64;
                    self.queued_total -= entry.queue.len();
                    self.queued_bytes -= entry.queue.iter().map(Vec::len).sum::<usize>();
                    entry.queue.clear();
                } else {
                    to_start.push(*id);
                }
            }
            if entry.previous.is_some() && now >= entry.previous_until_us {
                retire(&mut entry.previous, &mut self.indices);
            }
            if entry.next.as_ref().is_some_and(|k| k.expired(now, &config)) {
                retire(&mut entry.next, &mut self.indices);
            }
            if entry
                .current
                .as_ref()
                .is_some_and(|k| k.expired(now, &config))
            {
                retire(&mut entry.current, &mut self.indices);
                self.stats.sessions_expired += 1;
            }
            let stuck = !entry.queue.is_empty()
                && entry.pending.is_none()
                && entry.current.is_none()
                && !entry.awaiting_confirmation(now, &config);
            if stuck {
                to_start.push(*id);
            }
            if entry.is_idle() && now.saturating_sub(entry.last_active_us) >= config.reject_after_us
            {
                to_forget.push(*id);
            }
        }
        for id in to_forget {
            self.peers.remove(&id);
        }
        for id in to_start {
            if self.start_handshake(id, now).is_err() {
                self.stats.handshake_timeouts += 1;
            }
        }
        self.reassembly
            .retain(|_, partial| now.saturating_sub(partial.started_us) < REASSEMBLY_TIMEOUT_US);
    }

    /// The earliest time [`Sessions::handle_timeout`] has something to do, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        let config = &self.config;
        let peers = self.peers.values().flat_map(|entry| {
            [
                entry
                    .pending
                    .as_ref()
                    .map(|p| p.sent_us.saturating_add(config.handshake_retry_us)),
                entry.previous.as_ref().map(|_| entry.previous_until_us),
                entry
                    .next
                    .as_ref()
                    .map(|k| k.created_us.saturating_add(config.reject_after_us)),
                entry
                    .current
                    .as_ref()
                    .map(|k| k.created_us.saturating_add(config.reject_after_us)),
                entry
                    .is_idle()
                    .then_some(entry.last_active_us.saturating_add(config.reject_after_us)),
            ]
        });
        let fragments = self
            .reassembly
            .values()
            .map(|partial| Some(partial.started_us.saturating_add(REASSEMBLY_TIMEOUT_US)));
        peers.chain(fragments).flatten().min()
    }

    /// Checks the table's invariants: every index names exactly one key set or handshake of
    /// its peer, queues and tables are within their bounds, the queue total is exact.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = 0;
        for (id, entry) in &self.peers {
            for index in entry.indices() {
                seen += 1;
                if self.indices.get(&index) != Some(id) {
                    return Err(format!("index {index} of {id} is not registered to it"));
                }
            }
            if entry.queue.len() > self.config.queue_per_peer {
                return Err(format!("queue of {id} exceeds its bound"));
            }
        }
        if seen != self.indices.len() {
            return Err(format!(
                "{} indices registered, {seen} in use",
                self.indices.len()
            ));
        }
        let queued: usize = self.peers.values().map(|e| e.queue.len()).sum();
        if queued != self.queued_total || queued > MAX_QUEUED_TOTAL {
            return Err(format!("queued {queued}, counted {}", self.queued_total));
        }
        let bytes: usize = self
            .peers
            .values()
            .flat_map(|e| e.queue.iter().map(Vec::len))
            .sum();
        if bytes != self.queued_bytes || bytes > MAX_QUEUED_BYTES {
            return Err(format!(
                "queued {bytes} bytes, counted {}",
                self.queued_bytes
            ));
        }
        if self.peers.len() > self.config.max_peers
            || self.reassembly.len() > MAX_REASSEMBLIES
            || self.transmits.len() > MAX_TRANSMITS
        {
            return Err("a table exceeds its bound".to_string());
        }
        Ok(())
    }

    /// Sends a fresh initiation to `peer`, replacing any unanswered one.
    fn start_handshake(&mut self, peer: NodeId, now: u64) -> Result<(), SessionError> {
        let index = self.new_index()?;
        let ephemeral = Ephemeral::generate(&mut *self.rng)?;
        let kem = KemSecret::generate()?;
        let timestamp = now.max(self.last_init_timestamp_sent.saturating_add(1));
        let mut init = Init {
            initiator_index: index,
            initiator: self.local,
            responder: peer,
            timestamp,
            x25519: ephemeral.x25519_public,
            ml_kem_ek: kem.encapsulation_key.clone(),
            signature: [0; packet::SIGNATURE_BYTES],
        };
        init.signature = crypto::sign_init(&*self.signer, &init);
        let Some(entry) = self.peers.get_mut(&peer) else {
            return Err(SessionError::OwnNode);
        };
        let attempts = match entry.pending.take() {
            Some(previous) => {
                self.indices.remove(&previous.local_index);
                self.stats.handshake_retries += 1;
                previous.attempts
            }
            None => {
                self.stats.handshakes_initiated += 1;
                0
            }
        };
        self.last_init_timestamp_sent = timestamp;
        entry.pending = Some(Pending {
            local_index: index,
            init_bytes: init.encode(),
            ephemeral,
            kem,
            attempts: attempts + 1,
            sent_us: now,
        });
        self.indices.insert(index, peer);
        for fragment in init.fragments() {
            self.push_transmit(peer, fragment);
        }
        Ok(())
    }

    /// Makes `keys` the peer's current keys; the replaced ones receive for the grace period.
    fn install_current(&mut self, peer: NodeId, keys: Keys, now: u64) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            self.indices.remove(&keys.local_index);
            return;
        };
        if let Some(old) = entry.current.take() {
            retire(&mut entry.previous, &mut self.indices);
            entry.previous = Some(old);
            entry.previous_until_us = now.saturating_add(self.config.grace_us);
            self.stats.rekeys += 1;
        }
        entry.last_confirm_keepalive_us = None;
        self.indices.insert(keys.local_index, peer);
        entry.current = Some(keys);
    }

    /// Seals every queued payload under the current keys; returns how many.
    fn flush_queue(&mut self, peer: NodeId, now: u64) -> usize {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return 0;
        };
        let Some(keys) = entry
            .current
            .as_mut()
            .filter(|k| k.can_send(now, &self.config))
        else {
            return 0;
        };
        let queue = std::mem::take(&mut entry.queue);
        self.queued_total -= queue.len();
        self.queued_bytes -= queue.iter().map(Vec::len).sum::<usize>();
        let mut sealed = Vec::with_capacity(queue.len());
        for plaintext in &queue {
            match keys.seal(plaintext) {
                Ok(bytes) => sealed.push(bytes),
                Err(_) => self.stats.queue_dropped += 1,
            }
        }
        let count = sealed.len();
        self.stats.sent += count as u64;
        for bytes in sealed {
            self.push_transmit(peer, bytes);
        }
        count
    }

    fn send_keepalive(&mut self, peer: NodeId, now: u64) {
        let config = &self.config;
        let sealed = self
            .peers
            .get_mut(&peer)
            .and_then(|entry| entry.current.as_mut())
            .filter(|k| k.can_send(now, config))
            .and_then(|keys| keys.seal(&[]).ok());
        if let Some(bytes) = sealed {
            self.stats.keepalives_sent += 1;
            self.push_transmit(peer, bytes);
        }
    }

    fn push_transmit(&mut self, to: NodeId, bytes: Vec<u8>) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.stats.transmit_dropped += 1;
        } else {
            self.transmits.push_back(Transmit { to, bytes });
        }
    }

    /// Makes room for and creates `peer`'s entry, forgetting the least recently active peer
    /// when the table is full.
    fn ensure_peer(&mut self, peer: NodeId, now: u64) {
        if self.peers.contains_key(&peer) {
            return;
        }
        if self.peers.len() >= self.config.max_peers {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, entry)| entry.last_active_us)
                .map(|(id, _)| *id);
            if let Some(evicted) = oldest.and_then(|id| self.peers.remove(&id)) {
                for index in evicted.indices() {
                    self.indices.remove(&index);
                }
                self.queued_total -= evicted.queue.len();
                self.queued_bytes -= evicted.queue.iter().map(Vec::len).sum::<usize>();
                self.stats.queue_dropped += evicted.queue.len() as u64;
                self.stats.peers_evicted += 1;
            }
        }
        self.peers.insert(
            peer,
            Peer {
                last_active_us: now,
                ..Peer::default()
            },
        );
    }

    /// A random index no key set or handshake of this node uses.
    fn new_index(&mut self) -> Result<u32, CryptoError> {
        for _ in 0..INDEX_DRAWS {
            let mut bytes = [0u8; 4];
            self.rng
                .fill(&mut bytes)
                .map_err(|_| CryptoError("random source failed"))?;
            let index = u32::from_be_bytes(bytes);
            if !self.indices.contains_key(&index) {
                return Ok(index);
            }
        }
        Err(CryptoError("no free session index"))
    }
}

fn retire(slot: &mut Option<Keys>, indices: &mut HashMap<u32, NodeId>) {
    if let Some(keys) = slot.take() {
        indices.remove(&keys.local_index);
    }
}

fn lookup(directory: &dyn PeerDirectory, peer: &NodeId) -> Result<PeerIdentity, Dropped> {
    directory
        .identity(peer)
        .filter(|identity| identity.derives(peer))
        .ok_or(Dropped::UnknownPeer)
}

fn replay_reason(error: ReplayError) -> Dropped {
    match error {
        ReplayError::Replayed => Dropped::Replayed,
        ReplayError::TooOld => Dropped::TooOld,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_kind_has_its_own_counter() {
        for reason in Dropped::ALL {
            let mut stats = Stats::default();
            stats.count(reason);
            assert_eq!(stats.dropped(reason), 1, "{reason:?}");
            assert_eq!(
                stats.dropped_total(),
                1,
                "{reason:?} also moved another counter"
            );
        }
    }
}
