//! Packet framing: a fixed header followed by type-length-value messages.
//!
//! ```text
//! packet  = magic "x6" (2) | version (1) | flags (1) | sender NodeId (16) | tlv*
//! tlv     = type (1) | length (2, big endian) | value (length bytes)
//! ```
//! Unknown TLV types are skipped (so a newer minor revision can add messages) and counted.
//! Everything else that does not parse is an error and the whole packet is dropped.

use crate::NodeId;
use crate::message::{Hello, Message, OGM_SIGNATURE_BYTES, Ogm, OgmSignature, Probe, SeqnoRequest};

/// First two bytes of every packet.
pub const MAGIC: [u8; 2] = *b"x6";
/// The only packet version this build speaks. Packets of other versions are dropped.
/// Version 2 added the originator's signature to every OGM entry.
pub const VERSION: u8 = 2;
/// Size of the fixed header.
pub const HEADER_BYTES: usize = 2 + 1 + 1 + NodeId::LEN;
/// Size of a TLV header.
pub const TLV_HEADER_BYTES: usize = 3;
/// Largest packet we send or accept. 1400 bytes fits a 1500-byte link MTU with IPv6, UDP and
/// a tunnel header to spare, so control packets are never fragmented.
pub const MAX_PACKET_BYTES: usize = 1400;
/// Size of one OGM entry inside an OGM batch.
pub const OGM_ENTRY_BYTES: usize = NodeId::LEN + 4 + 4 + 1 + 1 + 1 + OGM_SIGNATURE_BYTES;

const TYPE_HELLO: u8 = 1;
const TYPE_PROBE: u8 = 2;
const TYPE_OGMS: u8 = 3;
const TYPE_SEQNO_REQUEST: u8 = 4;

const HELLO_BYTES: usize = 2;
const PROBE_BYTES: usize = 4 + 4 + 4 + 4 + 1 + 1 + 2;
const SEQNO_REQUEST_BYTES: usize = NodeId::LEN * 2 + 4 + 1;

/// Why a packet was rejected. Every variant is counted by the receiver and the packet dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fixed header.
    #[error("packet shorter than its {HEADER_BYTES}-byte header ({0} bytes)")]
    TooShort(usize),
    /// Longer than [`MAX_PACKET_BYTES`].
    #[error("packet of {0} bytes exceeds the {MAX_PACKET_BYTES}-byte limit")]
    Oversized(usize),
    /// The first two bytes are not [`MAGIC`].
    #[error("bad magic bytes")]
    BadMagic,
    /// A version this build does not speak.
    #[error("unsupported packet version {0}")]
    UnsupportedVersion(u8),
    /// A TLV header or value runs past the end of the packet.
    #[error("TLV at offset {offset} is truncated")]
    Truncated {
        /// Byte offset of the TLV inside the packet.
        offset: usize,
    },
    /// A known TLV type with a length its layout does not allow.
    #[error("TLV type {tlv_type} has invalid length {length}")]
    BadLength {
        /// The TLV type.
        tlv_type: u8,
        /// The length found.
        length: usize,
    },
}

/// A decoded packet: who sent it and the messages inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The node that sent the packet (as claimed; links authenticate it from issue 3 on).
    pub sender: NodeId,
    /// Messages in the order they appeared.
    pub messages: Vec<Message>,
    /// How many TLVs of unknown type were skipped.
    pub unknown_tlvs: u16,
}

impl Packet {
    /// Decodes one packet. Never panics; every failure is a [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        let view = PacketView::parse(bytes)?;
        Ok(Packet {
            sender: view.sender,
            messages: view.messages().map(MessageView::to_message).collect(),
            unknown_tlvs: view.unknown_tlvs,
        })
    }

    /// Encodes the packet into a fresh buffer. Callers that must respect
    /// [`MAX_PACKET_BYTES`] use [`PacketWriter`], which splits batches across packets.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_PACKET_BYTES);
        write_header(&mut out, self.sender);
        for message in &self.messages {
            encode_message(&mut out, message);
        }
        out
    }
}

/// A validated packet borrowed from the receive buffer. Parsing checks every TLV exactly as
/// [`Packet::decode`] does but allocates nothing; OGM batches are read lazily.
#[derive(Debug, Clone, Copy)]
pub struct PacketView<'a> {
    /// The node that sent the packet.
    pub sender: NodeId,
    /// How many TLVs of unknown type were skipped.
    pub unknown_tlvs: u16,
    body: &'a [u8],
}

/// One message of a [`PacketView`].
#[derive(Debug, Clone, Copy)]
pub enum MessageView<'a> {
    /// See [`Message::Hello`].
    Hello(Hello),
    /// See [`Message::Probe`].
    Probe(Probe),
    /// See [`Message::Ogms`]; iterate it for the entries.
    Ogms(OgmBatch<'a>),
    /// See [`Message::SeqnoRequest`].
    SeqnoRequest(SeqnoRequest),
}

impl MessageView<'_> {
    /// The owned message.
    pub fn to_message(self) -> Message {
        match self {
            MessageView::Hello(hello) => Message::Hello(hello),
            MessageView::Probe(probe) => Message::Probe(probe),
            MessageView::Ogms(batch) => Message::Ogms(batch.collect()),
            MessageView::SeqnoRequest(request) => Message::SeqnoRequest(request),
        }
    }
}

/// The entries of an OGM batch, decoded one at a time. Its length is a validated multiple
/// of [`OGM_ENTRY_BYTES`].
#[derive(Debug, Clone, Copy)]
pub struct OgmBatch<'a>(&'a [u8]);

impl Iterator for OgmBatch<'_> {
    type Item = Ogm;

    fn next(&mut self) -> Option<Ogm> {
        let (entry, rest) = self.0.split_at_checked(OGM_ENTRY_BYTES)?;
        self.0 = rest;
        Some(Ogm {
            originator: read_node_id(entry),
            seq: be_u32(entry, 16),
            cost: be_u32(entry, 20),
            hops: entry[24],
            ttl: entry[25],
            flags: entry[26],
            signature: OgmSignature(read_signature(&entry[27..])),
        })
    }
}

impl<'a> PacketView<'a> {
    /// Validates the header and every TLV of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<PacketView<'a>, DecodeError> {
        if bytes.len() > MAX_PACKET_BYTES {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        if bytes.len() < HEADER_BYTES {
            return Err(DecodeError::TooShort(bytes.len()));
        }
        if bytes[0..2] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if bytes[2] != VERSION {
            return Err(DecodeError::UnsupportedVersion(bytes[2]));
        }
        let mut unknown_tlvs: u16 = 0;
        let mut offset = HEADER_BYTES;
        while let Some((tlv_type, value, next)) = next_tlv(bytes, offset)? {
            if view_value(tlv_type, value)?.is_none() {
                unknown_tlvs = unknown_tlvs.saturating_add(1);
            }
            offset = next;
        }
        Ok(PacketView {
            sender: read_node_id(&bytes[4..HEADER_BYTES]),
            unknown_tlvs,
            body: bytes,
        })
    }

    /// The known messages, in order (unknown TLVs skipped).
    pub fn messages(&self) -> impl Iterator<Item = MessageView<'a>> + use<'a> {
        let bytes = self.body;
        let mut offset = HEADER_BYTES;
        std::iter::from_fn(move || {
            loop {
                // `parse` validated every TLV, so neither call can fail here; stopping on an
                // error would only end the iteration early.
                let (tlv_type, value, next) = next_tlv(bytes, offset).ok()??;
                offset = next;
                if let Ok(Some(message)) = view_value(tlv_type, value) {
                    return Some(message);
                }
            }
        })
    }
}

/// One TLV: its type, its value and the offset of the next TLV.
type Tlv<'a> = (u8, &'a [u8], usize);

/// The TLV at `offset`; `None` at the end.
fn next_tlv(bytes: &[u8], offset: usize) -> Result<Option<Tlv<'_>>, DecodeError> {
    let Some(rest) = bytes.get(offset..).filter(|rest| !rest.is_empty()) else {
        return Ok(None);
    };
    if rest.len() < TLV_HEADER_BYTES {
        return Err(DecodeError::Truncated { offset });
    }
    let length = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
    let value = rest
        .get(TLV_HEADER_BYTES..TLV_HEADER_BYTES + length)
        .ok_or(DecodeError::Truncated { offset })?;
    Ok(Some((rest[0], value, offset + TLV_HEADER_BYTES + length)))
}

fn read_node_id(bytes: &[u8]) -> NodeId {
    let mut id = [0u8; NodeId::LEN];
    id.copy_from_slice(&bytes[..NodeId::LEN]);
    NodeId(id)
}

fn read_signature(bytes: &[u8]) -> [u8; OGM_SIGNATURE_BYTES] {
    let mut signature = [0u8; OGM_SIGNATURE_BYTES];
    signature.copy_from_slice(&bytes[..OGM_SIGNATURE_BYTES]);
    signature
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn be_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Views a TLV value of a known type; `Ok(None)` for an unknown type.
/// Nothing is known about `value`, so every read is checked against its length first.
fn view_value(tlv_type: u8, value: &[u8]) -> Result<Option<MessageView<'_>>, DecodeError> {
    let bad_length = || DecodeError::BadLength {
        tlv_type,
        length: value.len(),
    };
    let message = match tlv_type {
        TYPE_HELLO => {
            if value.len() != HELLO_BYTES {
                return Err(bad_length());
            }
            MessageView::Hello(Hello {
                probe_interval_ms: be_u16(value, 0),
            })
        }
        TYPE_PROBE => {
            if value.len() != PROBE_BYTES {
                return Err(bad_length());
            }
            MessageView::Probe(Probe {
                seq: be_u32(value, 0),
                tx_time_us: be_u32(value, 4),
                echo_time_us: be_u32(value, 8),
                echo_delay_us: be_u32(value, 12),
                rx_count: value[16],
                window: value[17],
                interval_ms: be_u16(value, 18),
            })
        }
        TYPE_OGMS => {
            if value.is_empty() || !value.len().is_multiple_of(OGM_ENTRY_BYTES) {
                return Err(bad_length());
            }
            MessageView::Ogms(OgmBatch(value))
        }
        TYPE_SEQNO_REQUEST => {
            if value.len() != SEQNO_REQUEST_BYTES {
                return Err(bad_length());
            }
            MessageView::SeqnoRequest(SeqnoRequest {
                target: read_node_id(value),
                requester: read_node_id(&value[16..]),
                seq: be_u32(value, 32),
                hop_limit: value[36],
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(message))
}

fn write_header(out: &mut Vec<u8>, sender: NodeId) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&sender.0);
}

fn write_tlv_header(out: &mut Vec<u8>, tlv_type: u8, length: usize) {
    out.push(tlv_type);
    // Every caller passes a length bounded by MAX_PACKET_BYTES, far below u16::MAX.
    out.extend_from_slice(&(length.min(usize::from(u16::MAX)) as u16).to_be_bytes());
}

fn write_ogm(out: &mut Vec<u8>, ogm: &Ogm) {
    out.extend_from_slice(&ogm.originator.0);
    out.extend_from_slice(&ogm.seq.to_be_bytes());
    out.extend_from_slice(&ogm.cost.to_be_bytes());
    out.push(ogm.hops);
    out.push(ogm.ttl);
    out.push(ogm.flags);
    out.extend_from_slice(&ogm.signature.0);
}

/// Encoded size of a message, TLV header included.
pub fn encoded_len(message: &Message) -> usize {
    TLV_HEADER_BYTES
        + match message {
            Message::Hello(_) => HELLO_BYTES,
            Message::Probe(_) => PROBE_BYTES,
            Message::Ogms(ogms) => ogms.len() * OGM_ENTRY_BYTES,
            Message::SeqnoRequest(_) => SEQNO_REQUEST_BYTES,
        }
}

fn encode_message(out: &mut Vec<u8>, message: &Message) {
    write_tlv_header(
        out,
        tlv_type_of(message),
        encoded_len(message) - TLV_HEADER_BYTES,
    );
    match message {
        Message::Hello(hello) => out.extend_from_slice(&hello.probe_interval_ms.to_be_bytes()),
        Message::Probe(probe) => {
            out.extend_from_slice(&probe.seq.to_be_bytes());
            out.extend_from_slice(&probe.tx_time_us.to_be_bytes());
            out.extend_from_slice(&probe.echo_time_us.to_be_bytes());
            out.extend_from_slice(&probe.echo_delay_us.to_be_bytes());
            out.push(probe.rx_count);
            out.push(probe.window);
            out.extend_from_slice(&probe.interval_ms.to_be_bytes());
        }
        Message::Ogms(ogms) => ogms.iter().for_each(|ogm| write_ogm(out, ogm)),
        Message::SeqnoRequest(request) => {
            out.extend_from_slice(&request.target.0);
            out.extend_from_slice(&request.requester.0);
            out.extend_from_slice(&request.seq.to_be_bytes());
            out.push(request.hop_limit);
        }
    }
}

fn tlv_type_of(message: &Message) -> u8 {
    match message {
        Message::Hello(_) => TYPE_HELLO,
        Message::Probe(_) => TYPE_PROBE,
        Message::Ogms(_) => TYPE_OGMS,
        Message::SeqnoRequest(_) => TYPE_SEQNO_REQUEST,
    }
}

/// Builds packets no larger than [`MAX_PACKET_BYTES`], starting a new packet whenever the
/// next message (or OGM entry) would not fit. OGMs are aggregated into one batch TLV per packet.
#[derive(Debug)]
pub struct PacketWriter {
    sender: NodeId,
    finished: Vec<Vec<u8>>,
    current: Vec<u8>,
    /// Offset of the open OGM batch's TLV header in `current`, if a batch is open.
    open_ogm_batch: Option<usize>,
}

impl PacketWriter {
    /// Starts writing packets from `sender`.
    pub fn new(sender: NodeId) -> PacketWriter {
        let mut writer = PacketWriter {
            sender,
            finished: Vec::new(),
            current: Vec::new(),
            open_ogm_batch: None,
        };
        writer.start_packet();
        writer
    }

    fn start_packet(&mut self) {
        // Most packets are a probe or a few OGMs; the buffer grows when a batch is larger.
        self.current = Vec::with_capacity(128);
        write_header(&mut self.current, self.sender);
        self.open_ogm_batch = None;
    }

    fn ensure_room(&mut self, bytes: usize) {
        if self.current.len() + bytes > MAX_PACKET_BYTES {
            self.close_ogm_batch();
            let full = std::mem::take(&mut self.current);
            self.finished.push(full);
            self.start_packet();
        }
    }

    fn close_ogm_batch(&mut self) {
        if let Some(at) = self.open_ogm_batch.take() {
            let length = self.current.len() - at - TLV_HEADER_BYTES;
            let length = (length.min(usize::from(u16::MAX)) as u16).to_be_bytes();
            self.current[at + 1] = length[0];
            self.current[at + 2] = length[1];
        }
    }

    /// Appends a non-OGM message.
    pub fn push(&mut self, message: &Message) {
        if let Message::Ogms(ogms) = message {
            ogms.iter().for_each(|ogm| self.push_ogm(ogm));
            return;
        }
        self.close_ogm_batch();
        self.ensure_room(encoded_len(message));
        encode_message(&mut self.current, message);
    }

    /// Appends one OGM to the open batch, opening one (or a new packet) when needed.
    pub fn push_ogm(&mut self, ogm: &Ogm) {
        if self.open_ogm_batch.is_none() {
            self.ensure_room(TLV_HEADER_BYTES + OGM_ENTRY_BYTES);
            self.open_ogm_batch = Some(self.current.len());
            write_tlv_header(&mut self.current, TYPE_OGMS, 0);
        } else if self.current.len() + OGM_ENTRY_BYTES > MAX_PACKET_BYTES {
            self.ensure_room(OGM_ENTRY_BYTES + TLV_HEADER_BYTES + 1);
            self.open_ogm_batch = Some(self.current.len());
            write_tlv_header(&mut self.current, TYPE_OGMS, 0);
        }
        write_ogm(&mut self.current, ogm);
    }

    /// True when nothing but headers has been written.
    pub fn is_empty(&self) -> bool {
        self.finished.is_empty() && self.current.len() == HEADER_BYTES
    }

    /// Finishes and returns the packets; an empty writer returns none.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.close_ogm_batch();
        if self.current.len() > HEADER_BYTES {
            let last = std::mem::take(&mut self.current);
            self.finished.push(last);
        }
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_ogm(i: u64) -> Ogm {
        Ogm {
            originator: NodeId::from_index(i),
            seq: 7,
            cost: 300,
            hops: 2,
            ttl: 5,
            flags: 0,
            signature: OgmSignature([i as u8; OGM_SIGNATURE_BYTES]),
        }
    }

    #[test]
    fn header_errors_are_reported() {
        let good = Packet {
            sender: NodeId::from_index(1),
            messages: vec![],
            unknown_tlvs: 0,
        };
        let bytes = good.encode();
        assert_eq!(Packet::decode(&bytes), Ok(good));
        assert_eq!(Packet::decode(&bytes[..5]), Err(DecodeError::TooShort(5)));
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'y';
        assert_eq!(Packet::decode(&bad_magic), Err(DecodeError::BadMagic));
        let mut bad_version = bytes.clone();
        bad_version[2] = 9;
        assert_eq!(
            Packet::decode(&bad_version),
            Err(DecodeError::UnsupportedVersion(9))
        );
        let oversized = vec![0u8; MAX_PACKET_BYTES + 1];
        assert_eq!(
            Packet::decode(&oversized),
            Err(DecodeError::Oversized(MAX_PACKET_BYTES + 1))
        );
    }

    #[test]
    fn truncated_and_bad_length_tlvs_are_rejected() {
        let packet = Packet {
            sender: NodeId::from_index(1),
            messages: vec![Message::Hello(Hello {
                probe_interval_ms: 100,
            })],
            unknown_tlvs: 0,
        };
        let bytes = packet.encode();
        let truncated = &bytes[..bytes.len() - 1];
        assert_eq!(
            Packet::decode(truncated),
            Err(DecodeError::Truncated {
                offset: HEADER_BYTES
            })
        );
        let mut bad_length = bytes.clone();
        bad_length.push(0);
        bad_length[HEADER_BYTES + 2] = 3;
        assert_eq!(
            Packet::decode(&bad_length),
            Err(DecodeError::BadLength {
                tlv_type: TYPE_HELLO,
                length: 3
            })
        );
    }

    #[test]
    fn unknown_tlvs_are_skipped_and_counted() {
        let mut bytes = Packet {
            sender: NodeId::from_index(3),
            messages: vec![],
            unknown_tlvs: 0,
        }
        .encode();
        bytes.extend_from_slice(&[200, 0, 2, 9, 9]);
        bytes.extend_from_slice(&[TYPE_HELLO, 0, 2, 0, 100]);
        let packet = Packet::decode(&bytes).expect("valid packet");
        assert_eq!(packet.unknown_tlvs, 1);
        assert_eq!(
            packet.messages,
            vec![Message::Hello(Hello {
                probe_interval_ms: 100
            })]
        );
    }

    #[test]
    fn writer_splits_large_batches_within_the_packet_limit() {
        let mut writer = PacketWriter::new(NodeId::from_index(9));
        writer.push(&Message::Hello(Hello {
            probe_interval_ms: 100,
        }));
        let ogms: Vec<Ogm> = (0..200).map(sample_ogm).collect();
        ogms.iter().for_each(|ogm| writer.push_ogm(ogm));
        let packets = writer.finish();
        assert!(
            packets.len() >= 4,
            "200 OGMs need several packets, got {}",
            packets.len()
        );
        let mut decoded = Vec::new();
        for bytes in &packets {
            assert!(bytes.len() <= MAX_PACKET_BYTES);
            let packet = Packet::decode(bytes).expect("writer output decodes");
            for message in packet.messages {
                if let Message::Ogms(batch) = message {
                    decoded.extend(batch);
                }
            }
        }
        assert_eq!(decoded, ogms);
    }

    #[test]
    fn signed_ogm_entries_round_trip_and_unsigned_layout_is_refused() {
        let ogm = sample_ogm(4);
        let packet = Packet {
            sender: NodeId::from_index(2),
            messages: vec![Message::Ogms(vec![ogm])],
            unknown_tlvs: 0,
        };
        let bytes = packet.encode();
        assert_eq!(
            bytes.len(),
            HEADER_BYTES + TLV_HEADER_BYTES + OGM_ENTRY_BYTES
        );
        assert_eq!(OGM_ENTRY_BYTES, 91);
        let decoded = Packet::decode(&bytes).expect("signed OGM decodes");
        assert_eq!(decoded.messages, vec![Message::Ogms(vec![ogm])]);
        // A version 1 entry (27 bytes, no signature) is not a valid version 2 batch.
        let mut unsigned = bytes[..HEADER_BYTES].to_vec();
        unsigned.extend_from_slice(&[TYPE_OGMS, 0, 27]);
        unsigned.extend_from_slice(&bytes[HEADER_BYTES + TLV_HEADER_BYTES..][..27]);
        assert_eq!(
            Packet::decode(&unsigned),
            Err(DecodeError::BadLength {
                tlv_type: TYPE_OGMS,
                length: 27
            })
        );
        let mut old_version = bytes.clone();
        old_version[2] = 1;
        assert_eq!(
            Packet::decode(&old_version),
            Err(DecodeError::UnsupportedVersion(1))
        );
    }

    #[test]
    fn signed_part_covers_originator_and_sequence_only() {
        let originator = NodeId::from_index(7);
        let part = crate::ogm_signed_part(&originator, 0x0102_0304);
        assert_eq!(&part[..17], b"x0tta6bl4/ogm/v1\0");
        assert_eq!(&part[17..33], &originator.0);
        assert_eq!(&part[33..], &[1, 2, 3, 4]);
        assert_ne!(part, crate::ogm_signed_part(&originator, 0x0102_0305));
        assert_ne!(
            part,
            crate::ogm_signed_part(&NodeId::from_index(8), 0x0102_0304)
        );
    }

    #[test]
    fn empty_writer_produces_no_packets() {
        let writer = PacketWriter::new(NodeId::from_index(1));
        assert!(writer.is_empty());
        assert!(writer.finish().is_empty());
    }
}
