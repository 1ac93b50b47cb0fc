//! The link channel: link datagrams (routing packets and overlay data) on a plain UDP socket,
//! sealed per link with AES-256-GCM under keys exported from the link's TLS 1.3 session.
//!
//! A QUIC datagram costs a congestion-controlled, acknowledged QUIC packet: at idle every
//! 100 ms probe draws an ACK back, and in bulk every datagram passes quinn's connection state
//! machine. The channel keeps what the link's QUIC connection proves (the peer's identity) and
//! drops the rest: both ends export 64 bytes from the TLS session (RFC 8446 §7.5, label
//! [`EXPORTER_LABEL`], context the key epoch), one 32-byte key per direction, so only the two
//! ends of that authenticated link can seal or open its packets. Receive-side replay windows
//! refuse repeats; nothing is acknowledged or retransmitted (the payloads are probes and IP
//! packets, which tolerate loss).
//!
//! Overlay data packets go as `"xh"` packets: the same header, but only
//! their first [`SEALED_PREFIX_BYTES`] (the overlay data header) are sealed, followed by the
//! tag and then the rest of the payload as it is: that rest is an end-to-end session packet,
//! already encrypted and authenticated between the end nodes, so a relay seals and opens 36
//! bytes per packet instead of all of it. A change to the rest on a link makes the destination
//! drop the packet (its session tag fails), like a loss.
//!
//! Packet (`"xl"`, all integers big-endian):
//! `"xl"` | receiver index (4) | counter (8) | ciphertext | tag (16). The first 14 bytes are the
//! associated data; the nonce is four zero bytes then the counter. The receiver index, chosen
//! by the receiver and announced over the QUIC link ([`Offer`]), names the link. A packet
//! advances the counter by one per started KiB of payload, and the key epoch is
//! `counter >> EPOCH_BITS`, so keys roll every 2^28 KiB at most (256 GiB, within AES-GCM's
//! per-key limit as TLS 1.3 counts it) with no extra field. Packets larger than a datagram
//! travel in fragments ([`crate::fragment`]).
//!
//! Sends and receives are batched with UDP GSO and GRO (quinn-udp): a relay in bulk receives
//! dozens of datagrams per system call and sends those for one next hop in one.

use std::io::IoSliceMut;
use std::net::SocketAddr;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use session::replay::ReplayWindow;

use crate::TransportError;

/// TLS exporter label of the channel keys.
pub const EXPORTER_LABEL: &[u8] = b"x0tta6bl4 link channel v1";

/// Magic of channel packets.
pub const MAGIC: [u8; 2] = *b"xl";

/// Magic of channel packets that seal only a prefix of their payload (overlay data, whose
/// body is already sealed end to end).
pub const PREFIX_MAGIC: [u8; 2] = *b"xh";

/// Bytes of payload an `"xh"` packet seals: the overlay data header (magic, version, hop
/// limit, source and destination node).
pub const SEALED_PREFIX_BYTES: usize = 36;

/// Bytes an `"xh"` packet puts before the unsealed rest of its payload.
pub const PREFIX_PACKET_HEAD_BYTES: usize = HEADER_BYTES + SEALED_PREFIX_BYTES + TAG_BYTES;

/// Header bytes (the associated data).
pub const HEADER_BYTES: usize = 14;

/// AEAD tag bytes.
pub const TAG_BYTES: usize = 16;

/// Bytes a payload grows by on the channel.
pub const OVERHEAD_BYTES: usize = HEADER_BYTES + TAG_BYTES;

/// Counter units (KiB of payload) per key epoch (2^28).
pub const EPOCH_BITS: u32 = 28;

/// Largest UDP payload the channel sends or receives in one datagram.
pub const MAX_DATAGRAM_BYTES: usize = 1500;

/// Largest payload the channel carries: a sealed packet longer than a datagram travels in
/// fragments ([`crate::fragment`]).
pub const MAX_PAYLOAD_BYTES: usize = crate::fragment::MAX_SEALED_BYTES - OVERHEAD_BYTES;

/// Receive buffers per system call.
const RECV_BUFFERS: usize = 4;

/// Socket buffer size asked for: bulk transfers arrive in bursts of whole TCP windows.
const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// The announcement a node sends over the QUIC link so its peer can reach its channel:
/// `"xo"` | version 1 | UDP port (2) | receiver index (4). It travels as a QUIC datagram, so it
/// is authenticated by the link; it is repeated until the peer's first channel packet arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The sender's channel port (at the address its QUIC link uses).
    pub port: u16,
    /// The index the sender wants to see in packets for it.
    pub receiver_index: u32,
}

const OFFER_MAGIC: [u8; 2] = *b"xo";
/// Version 2: the sender reassembles fragments.
const OFFER_VERSION: u8 = 2;
/// Encoded size of an [`Offer`].
pub const OFFER_BYTES: usize = 9;

impl Offer {
    /// Encodes the offer.
    pub fn encode(&self) -> [u8; OFFER_BYTES] {
        let mut out = [0u8; OFFER_BYTES];
        out[..2].copy_from_slice(&OFFER_MAGIC);
        out[2] = OFFER_VERSION;
        out[3..5].copy_from_slice(&self.port.to_be_bytes());
        out[5..9].copy_from_slice(&self.receiver_index.to_be_bytes());
        out
    }

    /// Whether a link datagram is an offer (it may still be malformed).
    pub fn is_offer(bytes: &[u8]) -> bool {
        bytes.starts_with(&OFFER_MAGIC)
    }

    /// Decodes an offer; `None` if malformed or another version.
    pub fn decode(bytes: &[u8]) -> Option<Offer> {
        if bytes.len() != OFFER_BYTES || bytes[..2] != OFFER_MAGIC || bytes[2] != OFFER_VERSION {
            return None;
        }
        Some(Offer {
            port: u16::from_be_bytes([bytes[3], bytes[4]]),
            receiver_index: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
        })
    }
}

/// The receiver index a channel packet names; `None` if it is not a channel packet.
pub fn receiver_index(packet: &[u8]) -> Option<u32> {
    if packet.len() < OVERHEAD_BYTES || (packet[..2] != MAGIC && packet[..2] != PREFIX_MAGIC) {
        return None;
    }
    Some(u32::from_be_bytes([
        packet[2], packet[3], packet[4], packet[5],
    ]))
}

/// Why a channel packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Too short or not a channel packet.
    Malformed,
    /// Its counter was seen before or is too old.
    Replayed,
    /// The tag did not verify (tampered, or sealed with another key).
    Tampered,
    /// Its key epoch is not the current one, the one before or the one after.
    StaleEpoch,
}

/// Where the keys come from: the link's TLS session.
pub trait KeyExporter {
    /// Fills `output` from the TLS exporter with `label` and `context`.
    fn export(&self, output: &mut [u8], label: &[u8], context: &[u8])
    -> Result<(), KeyExportError>;
}

/// The TLS session could not export keying material (why, as the TLS library said it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS key export failed: {0}")]
pub struct KeyExportError(pub String);

impl KeyExporter for quinn::Connection {
    fn export(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), KeyExportError> {
        self.export_keying_material(output, label, context)
            .map_err(|error| KeyExportError(format!("{error:?}")))
    }
}

/// The two keys of one epoch, seen from one end.
fn epoch_keys(
    exporter: &dyn KeyExporter,
    dialled: bool,
    epoch: u64,
) -> Result<(LessSafeKey, LessSafeKey), TransportError> {
    let mut material = [0u8; 64];
    exporter
        .export(&mut material, EXPORTER_LABEL, &epoch.to_be_bytes())
        .map_err(|error| TransportError::Link(error.to_string()))?;
    let key = |bytes: &[u8]| -> Result<LessSafeKey, TransportError> {
        UnboundKey::new(&AES_256_GCM, bytes)
            .map(LessSafeKey::new)
            .map_err(|_| TransportError::Link("channel key".to_string()))
    };
    // The dialling side (the TLS client) sends with the first half.
    let (first, second) = (key(&material[..32])?, key(&material[32..])?);
    material.fill(0);
    Ok(if dialled {
        (first, second)
    } else {
        (second, first)
    })
}

/// How far sealing a payload of `length` bytes advances the counter: one per started KiB.
fn counter_units(length: usize) -> u64 {
    length.div_ceil(1024).max(1) as u64
}

fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// One link's channel state at one end: send and receive keys, counters, replay window.
pub struct LinkCipher {
    exporter: Box<dyn KeyExporter + Send + Sync>,
    dialled: bool,
    send_epoch: u64,
    send_key: LessSafeKey,
    next_counter: u64,
    /// Receive keys by epoch: the newest epoch seen and the one before it.
    receive: Vec<(u64, LessSafeKey)>,
    window: ReplayWindow,
}

impl std::fmt::Debug for LinkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCipher")
            .field("dialled", &self.dialled)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

impl LinkCipher {
    /// Keys for the link whose TLS session `exporter` holds; `dialled` says whether this end
    /// was the TLS client.
    pub fn new(
        exporter: Box<dyn KeyExporter + Send + Sync>,
        dialled: bool,
    ) -> Result<LinkCipher, TransportError> {
        let (send_key, receive_key) = epoch_keys(exporter.as_ref(), dialled, 0)?;
        Ok(LinkCipher {
            exporter,
            dialled,
            send_epoch: 0,
            send_key,
            next_counter: 0,
            receive: vec![(0, receive_key)],
            window: ReplayWindow::new(),
        })
    }

    /// Appends the sealed packet for `payload` to `out`, addressed to the peer's
    /// `receiver_index`.
    pub fn seal_into(
        &mut self,
        receiver_index: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        self.seal_with(MAGIC, receiver_index, payload, out)
    }

    /// Appends the head of an `"xh"` packet to `out`: header, `prefix` (exactly
    /// [`SEALED_PREFIX_BYTES`], sealed) and tag. The packet is that head followed by the rest
    /// of the payload as it is: only the prefix is protected by the link; the rest must carry
    /// its own protection (an end-to-end session packet).
    pub fn seal_prefix_into(
        &mut self,
        receiver_index: u32,
        prefix: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        if prefix.len() != SEALED_PREFIX_BYTES {
            return Err(TransportError::Link(format!(
                "a sealed prefix is {SEALED_PREFIX_BYTES} bytes, not {}",
                prefix.len()
            )));
        }
        self.seal_with(PREFIX_MAGIC, receiver_index, prefix, out)
    }

    fn seal_with(
        &mut self,
        magic: [u8; 2],
        receiver_index: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        let counter = self.next_counter;
        let epoch = counter >> EPOCH_BITS;
        if epoch != self.send_epoch {
            self.send_key = epoch_keys(self.exporter.as_ref(), self.dialled, epoch)?.0;
            self.send_epoch = epoch;
        }
        // A packet advances the counter by one per started KiB, so that an epoch bounds the
        // bytes sealed under one key whatever the packet size (fragmented packets reach 64 KB).
        self.next_counter = counter
            .checked_add(counter_units(payload.len()))
            .ok_or_else(|| TransportError::Link("channel counter exhausted".to_string()))?;
        let start = out.len();
        out.extend_from_slice(&magic);
        out.extend_from_slice(&receiver_index.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(payload);
        let (header, body) = out[start..].split_at_mut(HEADER_BYTES);
        let tag = self
            .send_key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&*header), body)
            .map_err(|_| TransportError::Link("channel seal".to_string()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Authenticates and decrypts `packet` in place; returns the payload's range within it.
    /// For an `"xh"` packet the opened prefix is moved next to the unsealed rest, so the
    /// payload is contiguous as it was sent.
    pub fn open_in_place(
        &mut self,
        packet: &mut [u8],
    ) -> Result<std::ops::Range<usize>, OpenError> {
        if packet.len() < OVERHEAD_BYTES {
            return Err(OpenError::Malformed);
        }
        if packet[..2] == PREFIX_MAGIC {
            if packet.len() < PREFIX_PACKET_HEAD_BYTES {
                return Err(OpenError::Malformed);
            }
            let range = self.open_sealed(&mut packet[..PREFIX_PACKET_HEAD_BYTES])?;
            let start = PREFIX_PACKET_HEAD_BYTES - SEALED_PREFIX_BYTES;
            packet.copy_within(range, start);
            return Ok(start..packet.len());
        }
        if packet[..2] != MAGIC {
            return Err(OpenError::Malformed);
        }
        self.open_sealed(packet)
    }

    /// Opens `packet`, whose every byte after the header is ciphertext and tag.
    fn open_sealed(&mut self, packet: &mut [u8]) -> Result<std::ops::Range<usize>, OpenError> {
        let mut counter_bytes = [0u8; 8];
        counter_bytes.copy_from_slice(&packet[6..14]);
        let counter = u64::from_be_bytes(counter_bytes);
        self.window
            .check(counter)
            .map_err(|_| OpenError::Replayed)?;
        let epoch = counter >> EPOCH_BITS;
        let newest = self.receive.last().map_or(0, |(epoch, _)| *epoch);
        if epoch > newest.saturating_add(1) || epoch.saturating_add(1) < newest {
            return Err(OpenError::StaleEpoch);
        }
        let (header, body) = packet.split_at_mut(HEADER_BYTES);
        let plain = if epoch == newest + 1 {
            // The peer moved on: derive the next keys, and keep them (with the current ones,
            // for stragglers) only once a packet verified under them, so forged counters
            // cannot push the current keys out.
            let key = epoch_keys(self.exporter.as_ref(), self.dialled, epoch)
                .map_err(|_| OpenError::StaleEpoch)?
                .1;
            let plain = key
                .open_in_place(nonce(counter), Aad::from(&*header), body)
                .map_err(|_| OpenError::Tampered)?
                .len();
            self.receive.push((epoch, key));
            if self.receive.len() > 2 {
                self.receive.remove(0);
            }
            plain
        } else {
            let Some((_, key)) = self.receive.iter().find(|(known, _)| *known == epoch) else {
                return Err(OpenError::StaleEpoch);
            };
            key.open_in_place(nonce(counter), Aad::from(&*header), body)
                .map_err(|_| OpenError::Tampered)?
                .len()
        };
        // Checked above; only a verified packet moves the window.
        self.window
            .accept(counter)
            .map_err(|_| OpenError::Replayed)?;
        Ok(HEADER_BYTES..HEADER_BYTES + plain)
    }
}

/// The channel's UDP socket with batched sends (GSO) and receives (GRO).
#[derive(Debug)]
pub struct ChannelSocket {
    socket: tokio::net::UdpSocket,
    state: UdpSocketState,
    buffers: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
}

/// Datagrams from one receive call: each is `(source, bytes)` via [`ChannelSocket::datagram`].
#[derive(Debug, Default)]
pub struct Received {
    /// (buffer, start, length, source) per datagram.
    spans: Vec<(usize, usize, usize, SocketAddr)>,
}

impl Received {
    /// How many datagrams arrived.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether none did.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

impl ChannelSocket {
    /// Binds a UDP socket at `ip`, any port. Must be called inside a tokio runtime.
    pub fn bind(ip: std::net::IpAddr) -> Result<ChannelSocket, TransportError> {
        let address = SocketAddr::new(ip, 0);
        let bind_error = |source| TransportError::Bind { address, source };
        let std_socket = std::net::UdpSocket::bind(address).map_err(bind_error)?;
        std_socket.set_nonblocking(true).map_err(bind_error)?;
        let state = UdpSocketState::new(UdpSockRef::from(&std_socket)).map_err(bind_error)?;
        // Larger buffers are best effort: the kernel caps them at its limits.
        let _ = state.set_send_buffer_size(UdpSockRef::from(&std_socket), SOCKET_BUFFER_BYTES);
        let _ = state.set_recv_buffer_size(UdpSockRef::from(&std_socket), SOCKET_BUFFER_BYTES);
        let socket = tokio::net::UdpSocket::from_std(std_socket).map_err(bind_error)?;
        Ok(ChannelSocket {
            socket,
            // A GRO super-datagram holds up to `gro_segments` datagrams; a smaller buffer would
            // truncate it and lose the tail.
            buffers: vec![
                vec![0u8; state.gro_segments().max(1) * MAX_DATAGRAM_BYTES];
                RECV_BUFFERS
            ],
            metas: vec![RecvMeta::default(); RECV_BUFFERS],
            state,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.socket.local_addr().map_or(0, |address| address.port())
    }

    /// Most datagrams one send may carry (GSO segments).
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Waits for datagrams and receives as many as one call gives (at most `RECV_BUFFERS`
    /// super-datagrams of `gro_segments` each).
    pub async fn recv(&mut self, received: &mut Received) -> std::io::Result<()> {
        received.spans.clear();
        let count = loop {
            self.socket.readable().await?;
            let mut slices: Vec<IoSliceMut<'_>> = self
                .buffers
                .iter_mut()
                .map(|buffer| IoSliceMut::new(buffer))
                .collect();
            let socket = &self.socket;
            let state = &self.state;
            let metas = &mut self.metas;
            match socket.try_io(tokio::io::Interest::READABLE, || {
                state.recv(UdpSockRef::from(socket), &mut slices, metas)
            }) {
                Ok(count) => break count,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        };
        for (buffer, meta) in self.metas.iter().enumerate().take(count) {
            let stride = meta.stride.max(1);
            let mut start = 0;
            while start < meta.len {
                let length = stride.min(meta.len - start);
                received.spans.push((buffer, start, length, meta.addr));
                start += stride;
            }
        }
        Ok(())
    }

    /// The `index`th received datagram, mutable (to open it in place), with its source.
    pub fn datagram(
        &mut self,
        received: &Received,
        index: usize,
    ) -> Option<(&mut [u8], SocketAddr)> {
        let (buffer, start, length, source) = *received.spans.get(index)?;
        let bytes = self
            .buffers
            .get_mut(buffer)?
            .get_mut(start..start + length)?;
        Some((bytes, source))
    }

    /// Sends `contents` to `destination`: one datagram, or with `segment_size` several of that
    /// size (the last may be shorter) in one call. Waits while the socket buffer is full.
    pub async fn send(
        &self,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> std::io::Result<()> {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: segment_size.filter(|size| *size < contents.len()),
            src_ip: None,
        };
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(tokio::io::Interest::WRITABLE, || {
                self.state.send(UdpSockRef::from(&self.socket), &transmit)
            }) {
                Ok(()) => return Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

/// Most bytes of one GSO send: the kernel refuses a UDP payload over 65,507 bytes (IPv4; 65,527
/// for IPv6), and quinn-udp drops a refused batch silently.
pub const MAX_BATCH_BYTES: usize = 65_000;

/// Channel datagrams queued for one destination, sent as one GSO batch: segments of equal
/// size, the last possibly shorter.
#[derive(Debug, Default)]
pub struct Batch {
    /// Concatenated datagrams.
    pub bytes: Vec<u8>,
    /// Size of every datagram but possibly the last.
    pub segment_size: usize,
    /// Datagrams in the batch.
    pub count: usize,
}

impl Batch {
    /// Whether a datagram of `length` bytes can join: the batch is not full, and every
    /// datagram but the last has the batch's size.
    pub fn accepts(&self, length: usize, max_segments: usize) -> bool {
        self.count == 0
            || (self.count < max_segments
                && length <= self.segment_size
                && self.bytes.len() == self.count * self.segment_size
                && self.bytes.len() + length <= MAX_BATCH_BYTES)
    }

    /// Records that a datagram of `length` bytes was appended to `bytes`.
    pub fn appended(&mut self, length: usize) {
        if self.count == 0 {
            self.segment_size = length;
        }
        self.count += 1;
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.segment_size = 0;
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ends of a link export the same material; a fixed exporter stands in for the TLS
    /// session here (the QUIC round trip is covered in tests/links.rs).
    struct Fixed([u8; 8]);

    impl KeyExporter for Fixed {
        fn export(
            &self,
            output: &mut [u8],
            label: &[u8],
            context: &[u8],
        ) -> Result<(), KeyExportError> {
            for (index, byte) in output.iter_mut().enumerate() {
                *byte = self.0[index % 8]
                    ^ label[index % label.len()]
                    ^ context[index % context.len()]
                    ^ index as u8;
            }
            Ok(())
        }
    }

    fn pair() -> (LinkCipher, LinkCipher) {
        (
            LinkCipher::new(Box::new(Fixed(*b"session1")), true).unwrap(),
            LinkCipher::new(Box::new(Fixed(*b"session1")), false).unwrap(),
        )
    }

    #[test]
    fn packets_open_once_at_the_other_end_only() {
        let (mut client, mut server) = pair();
        let mut packet = Vec::new();
        client.seal_into(7, b"probe", &mut packet).unwrap();
        assert_eq!(receiver_index(&packet), Some(7));
        assert_eq!(packet.len(), 5 + OVERHEAD_BYTES);
        let mut copy = packet.clone();
        let range = server.open_in_place(&mut copy).unwrap();
        assert_eq!(&copy[range], b"probe");
        let mut replay = packet.clone();
        assert_eq!(server.open_in_place(&mut replay), Err(OpenError::Replayed));
        // The sender cannot open its own packets: each direction has its own key.
        let mut reflected = Vec::new();
        client.seal_into(7, b"probe", &mut reflected).unwrap();
        assert_eq!(
            client.open_in_place(&mut reflected.clone()),
            Err(OpenError::Tampered)
        );
        for position in [1, 5, 10, HEADER_BYTES, reflected.len() - 1] {
            let mut tampered = reflected.clone();
            tampered[position] ^= 1;
            assert!(server.open_in_place(&mut tampered).is_err(), "{position}");
        }
        // Another link's keys do not open it.
        let mut stranger = LinkCipher::new(Box::new(Fixed(*b"session2")), false).unwrap();
        assert_eq!(
            stranger.open_in_place(&mut reflected.clone()),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            server.open_in_place(&mut [0u8; 10]),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn prefix_packets_seal_the_header_only_and_open_to_the_payload_as_sent() {
        let (mut client, mut server) = pair();
        let payload: Vec<u8> = (0..500u16).map(|index| (index % 251) as u8).collect();
        let (prefix, rest) = payload.split_at(SEALED_PREFIX_BYTES);
        let mut packet = Vec::new();
        client.seal_prefix_into(9, prefix, &mut packet).unwrap();
        assert_eq!(packet.len(), PREFIX_PACKET_HEAD_BYTES);
        packet.extend_from_slice(rest);
        assert_eq!(receiver_index(&packet), Some(9));
        assert_ne!(
            &packet[HEADER_BYTES..HEADER_BYTES + 36],
            prefix,
            "the prefix is encrypted"
        );
        let mut copy = packet.clone();
        let range = server.open_in_place(&mut copy).unwrap();
        assert_eq!(&copy[range], &payload[..]);
        assert_eq!(
            server.open_in_place(&mut packet.clone()),
            Err(OpenError::Replayed)
        );
        // The header and the prefix are authenticated; the rest is the end-to-end layer's.
        for position in [3, 10, HEADER_BYTES + 5, PREFIX_PACKET_HEAD_BYTES - 1] {
            let mut again = Vec::new();
            client.seal_prefix_into(9, prefix, &mut again).unwrap();
            again.extend_from_slice(rest);
            again[position] ^= 1;
            assert!(server.open_in_place(&mut again).is_err(), "{position}");
        }
        assert!(
            client
                .seal_prefix_into(9, &payload[..10], &mut Vec::new())
                .is_err()
        );
        assert_eq!(
            server.open_in_place(&mut packet[..PREFIX_PACKET_HEAD_BYTES - 1].to_vec()),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn keys_roll_to_the_next_epoch_and_late_packets_of_the_last_one_still_open() {
        let (mut client, mut server) = pair();
        client.next_counter = (1 << EPOCH_BITS) - 1;
        let (mut last_old, mut first_new, mut second_new) = (Vec::new(), Vec::new(), Vec::new());
        client.seal_into(1, b"old", &mut last_old).unwrap();
        client.seal_into(1, b"new", &mut first_new).unwrap();
        client.seal_into(1, b"new2", &mut second_new).unwrap();
        let range = server.open_in_place(&mut first_new).unwrap();
        assert_eq!(&first_new[range], b"new");
        let range = server.open_in_place(&mut last_old).unwrap();
        assert_eq!(&last_old[range], b"old");
        assert!(server.open_in_place(&mut second_new).is_ok());
        client.next_counter = 5 << EPOCH_BITS;
        let mut far = Vec::new();
        client.seal_into(1, b"far", &mut far).unwrap();
        assert_eq!(server.open_in_place(&mut far), Err(OpenError::StaleEpoch));
    }

    #[test]
    fn offers_round_trip_and_batches_keep_equal_segments() {
        let offer = Offer {
            port: 40000,
            receiver_index: 0xdead_beef,
        };
        assert!(Offer::is_offer(&offer.encode()));
        assert_eq!(Offer::decode(&offer.encode()), Some(offer));
        assert_eq!(Offer::decode(&offer.encode()[..8]), None);
        let mut batch = Batch::default();
        assert!(batch.accepts(100, 4));
        batch.bytes.extend_from_slice(&[0; 100]);
        batch.appended(100);
        assert!(batch.accepts(100, 4));
        assert!(!batch.accepts(101, 4), "a larger datagram cannot follow");
        batch.bytes.extend_from_slice(&[0; 60]);
        batch.appended(60);
        assert!(!batch.accepts(60, 4), "nothing follows a short last one");
        batch.clear();
        assert!(batch.accepts(101, 4));
        let mut big = Batch::default();
        for _ in 0..46 {
            assert!(big.accepts(1400, 64));
            big.bytes.extend_from_slice(&[0; 1400]);
            big.appended(1400);
        }
        assert!(!big.accepts(1400, 64), "a GSO send stays under 64 KB");
    }

    #[tokio::test]
    async fn a_gso_batch_arrives_as_separate_datagrams() {
        let mut receiver = ChannelSocket::bind("127.0.0.1".parse().unwrap()).unwrap();
        let sender = ChannelSocket::bind("127.0.0.1".parse().unwrap()).unwrap();
        let destination = SocketAddr::new("127.0.0.1".parse().unwrap(), receiver.port());
        let mut contents = Vec::new();
        for index in 0..5u8 {
            contents.extend_from_slice(&[index; 300]);
        }
        contents.extend_from_slice(&[9; 50]);
        sender
            .send(destination, &contents, Some(300))
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut received = Received::default();
        while seen.len() < 6 {
            receiver.recv(&mut received).await.unwrap();
            for index in 0..received.len() {
                let (bytes, _) = receiver.datagram(&received, index).unwrap();
                seen.push((bytes[0], bytes.len()));
            }
        }
        assert_eq!(
            seen,
            vec![(0, 300), (1, 300), (2, 300), (3, 300), (4, 300), (9, 50)]
        );
    }
}
