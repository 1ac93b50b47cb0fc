//! The session wire format: byte offsets of every packet live here and nowhere else.
//!
//! Every packet starts with `version (1) | type (1)`. Handshake messages have fixed sizes, so a
//! length that is not exactly right is malformed; data packets carry a 14-byte header (the
//! AEAD's associated data) and the ciphertext. Decoders return an error for any input and never
//! panic. The layout is specified in `docs/PROTOCOL.md`, "End-to-end sessions".

use wire::NodeId;

/// Version of the session wire format: 2 since data packets use AES-256-GCM and carry up to
/// 64 KB (version 1 sealed with ChaCha20-Poly1305, at most 1,400 bytes).
pub const VERSION: u8 = 2;
/// Packet type: one of the two fragments of a handshake initiation.
pub const TYPE_INIT_FRAGMENT: u8 = 1;
/// Packet type: a handshake response.
pub const TYPE_RESPONSE: u8 = 2;
/// Packet type: an encrypted payload (or an empty keepalive).
pub const TYPE_DATA: u8 = 3;

/// X25519 public key size.
pub const X25519_PUBLIC_BYTES: usize = 32;
/// ML-KEM-768 encapsulation key size (FIPS 203).
pub const ML_KEM_EK_BYTES: usize = 1184;
/// ML-KEM-768 ciphertext size (FIPS 203).
pub const ML_KEM_CT_BYTES: usize = 1088;
/// Ed25519 signature size.
pub const SIGNATURE_BYTES: usize = 64;

/// Reassembled initiation: index, two node ids, timestamp, both public keys, signature.
pub const INIT_BYTES: usize =
    4 + 16 + 16 + 8 + X25519_PUBLIC_BYTES + ML_KEM_EK_BYTES + SIGNATURE_BYTES;
/// The part of an initiation its signature covers (everything before the signature).
pub const INIT_SIGNED_BYTES: usize = INIT_BYTES - SIGNATURE_BYTES;
/// Bytes of the initiation (after its index) that each of the two fragments carries.
pub const INIT_FRAGMENT_PAYLOAD_BYTES: usize = (INIT_BYTES - 4) / 2;
/// Size of one initiation fragment: header, index, fragment number, half the message.
pub const INIT_FRAGMENT_BYTES: usize = 2 + 4 + 1 + INIT_FRAGMENT_PAYLOAD_BYTES;
/// Size of a response: header, both indices, both public values, signature.
pub const RESPONSE_BYTES: usize =
    2 + 4 + 4 + X25519_PUBLIC_BYTES + ML_KEM_CT_BYTES + SIGNATURE_BYTES;
/// The part of a response its signature covers (after the transcript hash of the initiation).
pub const RESPONSE_SIGNED_BYTES: usize = RESPONSE_BYTES - SIGNATURE_BYTES;
/// Header of a data packet: version, type, receiver index, counter. It is the AEAD's
/// associated data.
pub const DATA_HEADER_BYTES: usize = 2 + 4 + 8;
/// AES-256-GCM tag size.
pub const TAG_BYTES: usize = 16;
/// Largest session packet: one overlay packet of up to 65,535 bytes with its payload kind,
/// the data header and the tag, rounded up. Anything longer is dropped before it is parsed.
pub const MAX_PACKET_BYTES: usize = 65_600;
/// Largest payload one data packet carries.
pub const MAX_PLAINTEXT_BYTES: usize = MAX_PACKET_BYTES - DATA_HEADER_BYTES - TAG_BYTES;
/// Counters at or above this are never sent nor accepted: WireGuard's REJECT_AFTER_MESSAGES,
/// so that a nonce can never repeat and the replay window never wraps.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

// The handshake messages are each meant to fit one datagram of the mesh (1,200 bytes leaves
// room for the overlay's own headers under the 1,400-byte link packet).
const _: () = assert!(INIT_FRAGMENT_BYTES <= 1200 && RESPONSE_BYTES <= 1200);
const _: () = assert!((INIT_BYTES - 4).is_multiple_of(2));

/// Why bytes are not a session packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_PACKET_BYTES`].
    #[error("packet of {0} bytes exceeds the session bound")]
    Oversized(usize),
    /// A version other than [`VERSION`].
    #[error("unknown session version {0}")]
    Version(u8),
    /// Truncated, wrong length, unknown type or out-of-range field.
    #[error("malformed session packet: {0}")]
    Malformed(&'static str),
}

/// A decoded session packet, borrowing from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Half of a handshake initiation.
    InitFragment(InitFragment<'a>),
    /// A handshake response.
    Response(Response),
    /// An encrypted payload.
    Data(Data<'a>),
}

/// Half of a handshake initiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFragment<'a> {
    /// The initiator's index of the session being set up.
    pub initiator_index: u32,
    /// 0 or 1.
    pub number: u8,
    /// [`INIT_FRAGMENT_PAYLOAD_BYTES`] bytes of the initiation after its index.
    pub payload: &'a [u8],
}

/// A handshake initiation, reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    /// The index the initiator will recognise the session by.
    pub initiator_index: u32,
    /// Who starts the session.
    pub initiator: NodeId,
    /// Whom the session is with.
    pub responder: NodeId,
    /// Strictly increasing per initiator (microseconds); refuses replays of old initiations.
    pub timestamp: u64,
    /// The initiator's ephemeral X25519 public key.
    pub x25519: [u8; X25519_PUBLIC_BYTES],
    /// The initiator's ephemeral ML-KEM-768 encapsulation key.
    pub ml_kem_ek: Vec<u8>,
    /// Ed25519 signature of the initiator's node key.
    pub signature: [u8; SIGNATURE_BYTES],
}

/// A handshake response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The index the responder will recognise the session by.
    pub responder_index: u32,
    /// The initiation's index, echoed.
    pub initiator_index: u32,
    /// The responder's ephemeral X25519 public key.
    pub x25519: [u8; X25519_PUBLIC_BYTES],
    /// ML-KEM-768 ciphertext to the initiator's encapsulation key.
    pub ml_kem_ct: Vec<u8>,
    /// Ed25519 signature of the responder's node key.
    pub signature: [u8; SIGNATURE_BYTES],
}

/// An encrypted payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data<'a> {
    /// The receiver's index of the session.
    pub receiver_index: u32,
    /// The sender's message counter: the nonce.
    pub counter: u64,
    /// The header bytes, authenticated as associated data.
    pub header: &'a [u8],
    /// Ciphertext followed by the tag (at least [`TAG_BYTES`]).
    pub sealed: &'a [u8],
}

/// Decodes one session packet.
pub fn decode(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    if bytes.len() > MAX_PACKET_BYTES {
        return Err(DecodeError::Oversized(bytes.len()));
    }
    let [version, kind, ..] = bytes else {
        return Err(DecodeError::Malformed("shorter than the header"));
    };
    if *version != VERSION {
        return Err(DecodeError::Version(*version));
    }
    match *kind {
        TYPE_INIT_FRAGMENT => decode_fragment(bytes).map(Packet::InitFragment),
        TYPE_RESPONSE => decode_response(bytes).map(Packet::Response),
        TYPE_DATA => decode_data(bytes).map(Packet::Data),
        _ => Err(DecodeError::Malformed("unknown type")),
    }
}

fn decode_fragment(bytes: &[u8]) -> Result<InitFragment<'_>, DecodeError> {
    if bytes.len() != INIT_FRAGMENT_BYTES {
        return Err(DecodeError::Malformed("initiation fragment length"));
    }
    let mut reader = Reader::new(&bytes[2..]);
    let initiator_index = reader.u32()?;
    let number = reader.u8()?;
    if number > 1 {
        return Err(DecodeError::Malformed("initiation fragment number"));
    }
    Ok(InitFragment {
        initiator_index,
        number,
        payload: reader.rest(),
    })
}

fn decode_response(bytes: &[u8]) -> Result<Response, DecodeError> {
    if bytes.len() != RESPONSE_BYTES {
        return Err(DecodeError::Malformed("response length"));
    }
    let mut reader = Reader::new(&bytes[2..]);
    Ok(Response {
        responder_index: reader.u32()?,
        initiator_index: reader.u32()?,
        x25519: reader.array()?,
        ml_kem_ct: reader.take(ML_KEM_CT_BYTES)?.to_vec(),
        signature: reader.array()?,
    })
}

fn decode_data(bytes: &[u8]) -> Result<Data<'_>, DecodeError> {
    if bytes.len() < DATA_HEADER_BYTES + TAG_BYTES {
        return Err(DecodeError::Malformed(
            "data packet shorter than header and tag",
        ));
    }
    let (header, sealed) = bytes.split_at(DATA_HEADER_BYTES);
    let mut reader = Reader::new(&header[2..]);
    let receiver_index = reader.u32()?;
    let counter = reader.u64()?;
    if counter >= REJECT_AFTER_MESSAGES {
        return Err(DecodeError::Malformed("counter beyond the reject limit"));
    }
    Ok(Data {
        receiver_index,
        counter,
        header,
        sealed,
    })
}

impl Init {
    /// The full [`INIT_BYTES`] encoding (index first), as signed and hashed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.extend_from_slice(&self.signature);
        out
    }

    /// The bytes the signature covers: everything but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INIT_BYTES);
        out.extend_from_slice(&self.initiator_index.to_be_bytes());
        out.extend_from_slice(&self.initiator.0);
        out.extend_from_slice(&self.responder.0);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.x25519);
        out.extend_from_slice(&self.ml_kem_ek);
        out
    }

    /// Decodes a reassembled initiation of exactly [`INIT_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Init, DecodeError> {
        if bytes.len() != INIT_BYTES {
            return Err(DecodeError::Malformed("initiation length"));
        }
        let mut reader = Reader::new(bytes);
        Ok(Init {
            initiator_index: reader.u32()?,
            initiator: NodeId(reader.array()?),
            responder: NodeId(reader.array()?),
            timestamp: reader.u64()?,
            x25519: reader.array()?,
            ml_kem_ek: reader.take(ML_KEM_EK_BYTES)?.to_vec(),
            signature: reader.array()?,
        })
    }

    /// The two datagrams that carry this initiation.
    pub fn fragments(&self) -> [Vec<u8>; 2] {
        let encoded = self.encode();
        let body = &encoded[4..];
        let fragment = |number: u8| {
            let start = usize::from(number) * INIT_FRAGMENT_PAYLOAD_BYTES;
            let mut out = Vec::with_capacity(INIT_FRAGMENT_BYTES);
            out.extend_from_slice(&[VERSION, TYPE_INIT_FRAGMENT]);
            out.extend_from_slice(&self.initiator_index.to_be_bytes());
            out.push(number);
            out.extend_from_slice(&body[start..start + INIT_FRAGMENT_PAYLOAD_BYTES]);
            out
        };
        [fragment(0), fragment(1)]
    }
}

/// Joins the two fragment payloads of an initiation back into its [`INIT_BYTES`] encoding.
pub fn reassemble(initiator_index: u32, first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INIT_BYTES);
    out.extend_from_slice(&initiator_index.to_be_bytes());
    out.extend_from_slice(first);
    out.extend_from_slice(second);
    out
}

impl Response {
    /// The bytes the signature covers: the packet up to the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RESPONSE_BYTES);
        out.extend_from_slice(&[VERSION, TYPE_RESPONSE]);
        out.extend_from_slice(&self.responder_index.to_be_bytes());
        out.extend_from_slice(&self.initiator_index.to_be_bytes());
        out.extend_from_slice(&self.x25519);
        out.extend_from_slice(&self.ml_kem_ct);
        out
    }

    /// The [`RESPONSE_BYTES`] datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.extend_from_slice(&self.signature);
        out
    }
}

/// Writes the header of a data packet; the caller appends ciphertext and tag.
pub fn data_header(receiver_index: u32, counter: u64) -> [u8; DATA_HEADER_BYTES] {
    let mut out = [0u8; DATA_HEADER_BYTES];
    out[0] = VERSION;
    out[1] = TYPE_DATA;
    out[2..6].copy_from_slice(&receiver_index.to_be_bytes());
    out[6..14].copy_from_slice(&counter.to_be_bytes());
    out
}

/// A cursor that reports running past the end as malformed instead of panicking.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < count {
            return Err(DecodeError::Malformed("truncated"));
        }
        let (head, tail) = self.rest.split_at(count);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_init() -> Init {
        Init {
            initiator_index: 7,
            initiator: NodeId::from_index(1),
            responder: NodeId::from_index(2),
            timestamp: 42,
            x25519: [3; X25519_PUBLIC_BYTES],
            ml_kem_ek: (0..ML_KEM_EK_BYTES).map(|i| i as u8).collect(),
            signature: [9; SIGNATURE_BYTES],
        }
    }

    #[test]
    fn sizes_are_the_documented_ones() {
        assert_eq!(INIT_BYTES, 1324);
        assert_eq!(INIT_FRAGMENT_BYTES, 667);
        assert_eq!(RESPONSE_BYTES, 1194);
        assert_eq!(MAX_PLAINTEXT_BYTES, 65_570);
    }

    #[test]
    fn initiation_survives_fragmentation() {
        let init = sample_init();
        let [first, second] = init.fragments();
        let (Ok(Packet::InitFragment(a)), Ok(Packet::InitFragment(b))) =
            (decode(&first), decode(&second))
        else {
            panic!("fragments must decode");
        };
        assert_eq!((a.number, b.number), (0, 1));
        let joined = reassemble(a.initiator_index, a.payload, b.payload);
        assert_eq!(Init::decode(&joined), Ok(init));
    }

    #[test]
    fn response_round_trips() {
        let response = Response {
            responder_index: 1,
            initiator_index: 2,
            x25519: [5; 32],
            ml_kem_ct: vec![6; ML_KEM_CT_BYTES],
            signature: [7; 64],
        };
        assert_eq!(decode(&response.encode()), Ok(Packet::Response(response)));
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(
            decode(&[]),
            Err(DecodeError::Malformed("shorter than the header"))
        );
        // Version 1 (ChaCha20-Poly1305, 1,400 bytes) is no longer understood.
        assert_eq!(decode(&[1, TYPE_DATA]), Err(DecodeError::Version(1)));
        assert_eq!(decode(&[3, TYPE_DATA]), Err(DecodeError::Version(3)));
        assert_eq!(
            decode(&[VERSION, 9]),
            Err(DecodeError::Malformed("unknown type"))
        );
        assert_eq!(
            decode(&[0; MAX_PACKET_BYTES + 1]),
            Err(DecodeError::Oversized(MAX_PACKET_BYTES + 1))
        );
        let mut data = data_header(1, REJECT_AFTER_MESSAGES).to_vec();
        data.extend_from_slice(&[0; TAG_BYTES]);
        assert!(matches!(decode(&data), Err(DecodeError::Malformed(_))));
    }
}
