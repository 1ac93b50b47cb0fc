//! The node's side of the link channel (`transport::channel`): per linked peer, the channel
//! keys, the peer's announced port and receiver index, and the batches of sealed datagrams
//! waiting to be sent with one system call per next hop.
//!
//! A link starts on QUIC datagrams. Each end announces its channel (an `Offer`, over the
//! QUIC link) when the link comes up and again every housekeeping tick until the first
//! channel packet from the peer opens; from the moment the peer's offer arrives, everything
//! for that peer goes on the channel. A peer whose channel stays silent for
//! [`CHANNEL_SILENCE_LIMIT`] after both offers were exchanged (a firewall that passes QUIC but
//! not the channel port) is sent to over QUIC datagrams again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use transport::channel::{Batch, ChannelSocket, LinkCipher, Offer, OpenError};
use transport::fragment::{self, Reassembler};
use wire::NodeId;

/// After this long with the peer's offer in hand and nothing heard on the channel, the peer
/// is reached over QUIC datagrams again.
pub const CHANNEL_SILENCE_LIMIT: Duration = Duration::from_secs(3);

/// Marker of a compressed routing packet on the channel: `"xr"` | version | flags | TLVs, the
/// routing packet (`"x6"` | version | flags | sender | TLVs) without its 16-byte sender, which
/// on a link can only be the link's authenticated peer. The receiver puts the peer's id back,
/// so the router sees the packet byte for byte as sent.
const COMPRESSED_ROUTING: [u8; 2] = *b"xr";

/// Bytes of a routing packet's header up to and including the sender.
const ROUTING_HEADER_BYTES: usize = 20;

/// Most batches waiting for the next flush. The loop flushes after every input, and one input
/// (a GRO receive or a TUN read) yields at most a few hundred datagrams.
const MAX_READY_BATCHES: usize = 1024;

/// Channel counters.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ChannelCounters {
    /// Datagrams sealed for the channel.
    pub channel_tx: u64,
    /// UDP payload bytes sent on the channel.
    pub channel_tx_bytes: u64,
    /// Send system calls (each carries one GSO batch).
    pub channel_tx_batches: u64,
    /// Datagrams opened from the channel.
    pub channel_rx: u64,
    /// Receive system calls.
    pub channel_rx_batches: u64,
    /// Channel datagrams naming no current link.
    pub channel_unknown_index: u64,
    /// Channel datagrams refused as replays.
    pub channel_replayed: u64,
    /// Routing packets sent without their sender (saved 16 bytes each).
    pub channel_routing_compressed: u64,
    /// Channel datagrams that failed authentication or were malformed.
    pub channel_bad: u64,
    /// Send errors (the batch is lost).
    pub channel_send_errors: u64,
    /// Datagrams dropped because too many batches waited.
    pub channel_queue_full: u64,
    /// Peers sent to over QUIC again because their channel stayed silent.
    pub channel_fallbacks: u64,
    /// Offers received.
    pub channel_offers_rx: u64,
    /// Packets sent in fragments.
    pub channel_fragmented_tx: u64,
    /// Fragments sent.
    pub channel_fragments_tx: u64,
    /// Packets put back together from fragments.
    pub channel_reassembled: u64,
    /// Fragments refused as malformed.
    pub channel_fragments_bad: u64,
    /// Reassemblies dropped unfinished (a fragment lost, or pushed out by newer ones).
    pub channel_reassembly_dropped: u64,
}

struct PeerChannel {
    cipher: LinkCipher,
    own_index: u32,
    connection_id: usize,
    /// The peer's channel, once it offered it.
    remote: Option<(SocketAddr, u32)>,
    /// When the peer's offer arrived (milliseconds of the node clock).
    offered_at_ms: u64,
    /// Whether a channel packet from the peer has opened.
    heard: bool,
    /// The channel stayed silent; use QUIC.
    silent: bool,
    /// Largest datagram towards the peer (the link's path MTU as QUIC found it).
    datagram_bytes: usize,
    batch: Batch,
}

/// Channel state of every linked peer.
pub struct ChannelLinks {
    peers: HashMap<NodeId, PeerChannel>,
    by_index: HashMap<u32, NodeId>,
    ready: Vec<(SocketAddr, Batch)>,
    spare: Vec<Batch>,
    max_segments: usize,
    port: u16,
    local: NodeId,
    scratch: Vec<u8>,
    sealed: Vec<u8>,
    reassembler: Reassembler,
    enabled: bool,
    /// Counters, shown in the status.
    pub counters: ChannelCounters,
}

impl std::fmt::Debug for ChannelLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelLinks")
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl ChannelLinks {
    /// State for a node whose channel socket is `socket`; with `enabled` false, links carry
    /// everything in QUIC datagrams.
    pub fn new(socket: &ChannelSocket, local: NodeId, enabled: bool) -> ChannelLinks {
        ChannelLinks {
            peers: HashMap::new(),
            by_index: HashMap::new(),
            ready: Vec::new(),
            spare: Vec::new(),
            max_segments: socket.max_segments().max(1),
            port: socket.port(),
            local,
            scratch: Vec::new(),
            sealed: Vec::new(),
            reassembler: Reassembler::default(),
            enabled,
            counters: ChannelCounters::default(),
        }
    }

    /// Registers a new link to `peer` (replacing any earlier one) and returns the offer to send
    /// over it.
    pub fn link_up(
        &mut self,
        peer: NodeId,
        connection: &quinn::Connection,
        dialled: bool,
    ) -> Option<Offer> {
        self.link_down(&peer);
        if !self.enabled {
            return None;
        }
        let cipher = match LinkCipher::new(Box::new(connection.clone()), dialled) {
            Ok(cipher) => cipher,
            Err(error) => {
                tracing::warn!(%error, peer = %peer.short(), "no link channel; using QUIC datagrams");
                return None;
            }
        };
        let own_index = loop {
            let mut bytes = [0u8; 4];
            if getrandom::fill(&mut bytes).is_err() {
                return None;
            }
            let index = u32::from_be_bytes(bytes);
            if !self.by_index.contains_key(&index) {
                break index;
            }
        };
        self.by_index.insert(own_index, peer);
        self.peers.insert(
            peer,
            PeerChannel {
                cipher,
                own_index,
                connection_id: connection.stable_id(),
                remote: None,
                offered_at_ms: 0,
                heard: false,
                silent: false,
                datagram_bytes: usize::from(connection.stats().path.current_mtu)
                    .clamp(1200, transport::channel::MAX_DATAGRAM_BYTES),
                batch: Batch::default(),
            },
        );
        Some(Offer {
            port: self.port,
            receiver_index: own_index,
        })
    }

    /// Forgets the link to `peer`.
    pub fn link_down(&mut self, peer: &NodeId) {
        if let Some(old) = self.peers.remove(peer) {
            self.by_index.remove(&old.own_index);
        }
    }

    /// The peer offered its channel on the link `connection_id`, whose remote address is
    /// `remote`.
    pub fn offer_received(
        &mut self,
        peer: &NodeId,
        connection_id: usize,
        remote: SocketAddr,
        offer: Offer,
        now_ms: u64,
    ) {
        self.counters.channel_offers_rx += 1;
        let Some(channel) = self.peers.get_mut(peer) else {
            return;
        };
        if channel.connection_id != connection_id || channel.silent {
            return;
        }
        let mut address = remote;
        address.set_port(offer.port);
        if channel.remote != Some((address, offer.receiver_index)) {
            channel.remote = Some((address, offer.receiver_index));
            channel.offered_at_ms = now_ms;
        }
    }

    /// The offers to repeat: links whose peer has not yet been heard on the channel.
    pub fn offers_due(&mut self, now_ms: u64) -> Vec<(NodeId, Offer)> {
        let port = self.port;
        let mut due = Vec::new();
        for (peer, channel) in &mut self.peers {
            if channel.heard || channel.silent {
                continue;
            }
            if channel.remote.is_some()
                && now_ms.saturating_sub(channel.offered_at_ms)
                    > CHANNEL_SILENCE_LIMIT.as_millis() as u64
            {
                tracing::warn!(peer = %peer.short(), "link channel silent; back to QUIC datagrams");
                channel.silent = true;
                channel.remote = None;
                self.counters.channel_fallbacks += 1;
                continue;
            }
            due.push((
                *peer,
                Offer {
                    port,
                    receiver_index: channel.own_index,
                },
            ));
        }
        due
    }

    /// Seals `payload` for `peer` into its batch. False if the peer has no usable channel
    /// (the caller sends over QUIC instead).
    pub fn queue(&mut self, peer: &NodeId, payload: &[u8]) -> bool {
        let Some(channel) = self.peers.get_mut(peer) else {
            return false;
        };
        let Some((address, peer_index)) = channel.remote else {
            return false;
        };
        let compress = payload.len() >= ROUTING_HEADER_BYTES
            && payload.starts_with(b"x6")
            && payload[4..ROUTING_HEADER_BYTES] == self.local.0;
        let payload = if compress {
            self.scratch.clear();
            self.scratch.extend_from_slice(&COMPRESSED_ROUTING);
            self.scratch.extend_from_slice(&payload[2..4]);
            self.scratch
                .extend_from_slice(&payload[ROUTING_HEADER_BYTES..]);
            self.counters.channel_routing_compressed += 1;
            &self.scratch[..]
        } else {
            payload
        };
        // Overlay data is sealed end to end already: the link seals only its routing header
        // ("xh" packets), so relays never decrypt or re-encrypt the body.
        let prefix_only = crate::dataplane::is_data(payload)
            && payload.len() > transport::channel::SEALED_PREFIX_BYTES;
        let length = payload.len() + transport::channel::OVERHEAD_BYTES;
        if !prefix_only && length <= channel.datagram_bytes {
            if !channel.batch.accepts(length, self.max_segments) {
                if self.ready.len() >= MAX_READY_BATCHES {
                    self.counters.channel_queue_full += 1;
                    return true;
                }
                let full =
                    std::mem::replace(&mut channel.batch, self.spare.pop().unwrap_or_default());
                self.ready.push((address, full));
            }
            return match channel
                .cipher
                .seal_into(peer_index, payload, &mut channel.batch.bytes)
            {
                Ok(()) => {
                    channel.batch.appended(length);
                    self.counters.channel_tx += 1;
                    true
                }
                Err(error) => {
                    tracing::debug!(%error, "channel seal failed");
                    false
                }
            };
        }
        // The packet is `head` (sealed) followed by `tail` (sent as it is).
        self.sealed.clear();
        let (sealed, tail) = if prefix_only {
            let (prefix, rest) = payload.split_at(transport::channel::SEALED_PREFIX_BYTES);
            (
                channel
                    .cipher
                    .seal_prefix_into(peer_index, prefix, &mut self.sealed),
                rest,
            )
        } else {
            (
                channel
                    .cipher
                    .seal_into(peer_index, payload, &mut self.sealed),
                &[][..],
            )
        };
        if let Err(error) = sealed {
            tracing::debug!(%error, "channel seal failed");
            return false;
        }
        let head = &self.sealed[..];
        self.counters.channel_tx += 1;
        // One datagram, or fragments of equal size (the last may be shorter) that leave
        // together in one GSO send.
        let (stride, count) = if length <= channel.datagram_bytes {
            (length, 1)
        } else {
            match fragment::plan(length, channel.datagram_bytes) {
                Some(plan) => plan,
                None => return false,
            }
        };
        if count > 1 {
            self.counters.channel_fragmented_tx += 1;
        }
        for index in 0..count {
            let size = if count == 1 {
                length
            } else {
                fragment::HEADER_BYTES + (length - index * stride).min(stride)
            };
            if !channel.batch.accepts(size, self.max_segments) {
                if self.ready.len() >= MAX_READY_BATCHES {
                    self.counters.channel_queue_full += 1;
                    return true;
                }
                let full =
                    std::mem::replace(&mut channel.batch, self.spare.pop().unwrap_or_default());
                self.ready.push((address, full));
            }
            if count == 1 {
                channel.batch.bytes.extend_from_slice(head);
                channel.batch.bytes.extend_from_slice(tail);
            } else {
                fragment::write(&mut channel.batch.bytes, head, tail, index, count, stride);
                self.counters.channel_fragments_tx += 1;
            }
            channel.batch.appended(size);
        }
        true
    }

    /// Sends every waiting batch.
    pub async fn flush(&mut self, socket: &ChannelSocket) {
        for channel in self.peers.values_mut() {
            if channel.batch.count > 0
                && let Some((address, _)) = channel.remote
            {
                let full =
                    std::mem::replace(&mut channel.batch, self.spare.pop().unwrap_or_default());
                self.ready.push((address, full));
            }
        }
        for (address, mut batch) in self.ready.drain(..) {
            let segment = (batch.count > 1).then_some(batch.segment_size);
            match socket.send(address, &batch.bytes, segment).await {
                Ok(()) => {
                    self.counters.channel_tx_batches += 1;
                    self.counters.channel_tx_bytes += batch.bytes.len() as u64;
                }
                Err(error) => {
                    self.counters.channel_send_errors += 1;
                    tracing::debug!(%error, %address, "channel send failed");
                }
            }
            batch.clear();
            if self.spare.len() < 64 {
                self.spare.push(batch);
            }
        }
    }

    /// A compressed routing packet from `peer` restored to its sent form; `None` if `payload`
    /// is not one.
    pub fn restore_routing(peer: &NodeId, payload: &[u8]) -> Option<Vec<u8>> {
        if payload.len() < 4 || !payload.starts_with(&COMPRESSED_ROUTING) {
            return None;
        }
        let mut packet = Vec::with_capacity(payload.len() + 16);
        packet.extend_from_slice(b"x6");
        packet.extend_from_slice(&payload[2..4]);
        packet.extend_from_slice(&peer.0);
        packet.extend_from_slice(&payload[4..]);
        Some(packet)
    }

    /// The largest payload `peer`'s channel carries; `None` if the peer is reached over QUIC.
    pub fn room(&self, peer: &NodeId) -> Option<usize> {
        self.peers
            .get(peer)
            .filter(|channel| channel.remote.is_some())
            .map(|_| transport::channel::MAX_PAYLOAD_BYTES)
    }

    /// Adds a received fragment; returns the sealed packet it completed (open it with
    /// [`ChannelLinks::open`], then hand the buffer back with [`ChannelLinks::recycle`]).
    /// Fragments naming no current link are refused before they take a buffer.
    pub fn reassemble(&mut self, fragment: &[u8], now_ms: u64) -> Option<Vec<u8>> {
        if let Some(index) = fragment::receiver_index(fragment)
            && !self.by_index.contains_key(&index)
        {
            self.counters.channel_unknown_index += 1;
            return None;
        }
        let packet = self.reassembler.push(fragment, now_ms);
        self.sync_reassembly_counters();
        packet
    }

    /// Takes back a buffer [`ChannelLinks::reassemble`] returned.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        self.reassembler.recycle(buffer);
    }

    /// Drops reassemblies that waited too long for their last fragment.
    pub fn expire_reassemblies(&mut self, now_ms: u64) {
        self.reassembler.expire(now_ms);
        self.sync_reassembly_counters();
    }

    fn sync_reassembly_counters(&mut self) {
        let counters = self.reassembler.counters;
        self.counters.channel_reassembled = counters.completed;
        self.counters.channel_fragments_bad = counters.malformed;
        self.counters.channel_reassembly_dropped = counters.dropped;
    }

    /// Opens a received channel datagram in place: the authenticated peer and the payload's
    /// range. Refusals are counted.
    pub fn open(&mut self, datagram: &mut [u8]) -> Option<(NodeId, std::ops::Range<usize>)> {
        let Some(index) = transport::channel::receiver_index(datagram) else {
            self.counters.channel_bad += 1;
            return None;
        };
        let Some(peer) = self.by_index.get(&index).copied() else {
            self.counters.channel_unknown_index += 1;
            return None;
        };
        let channel = self.peers.get_mut(&peer)?;
        match channel.cipher.open_in_place(datagram) {
            Ok(range) => {
                channel.heard = true;
                self.counters.channel_rx += 1;
                Some((peer, range))
            }
            Err(OpenError::Replayed) => {
                self.counters.channel_replayed += 1;
                None
            }
            Err(_) => {
                self.counters.channel_bad += 1;
                None
            }
        }
    }
}
