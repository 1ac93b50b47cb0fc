//! Discovery adverts: the plain-UDP multicast announcement `I am <node id>, my links listen on
//! port P`. An advert proves nothing; it only tells neighbours on the link where to start a
//! QUIC handshake, which then authenticates both sides.
//!
//! Format (22 bytes): magic `x6` | version 1 | type 0xA1 | node id (16) | link port (u16 BE).

use wire::NodeId;

/// Encoded size.
pub const ADVERT_BYTES: usize = 22;

const MAGIC: [u8; 2] = *b"x6";
const VERSION: u8 = 1;
const TYPE_ADVERT: u8 = 0xA1;

/// A parsed advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    /// Who claims to be there.
    pub node_id: NodeId,
    /// The UDP port of its QUIC links.
    pub link_port: u16,
}

impl Advert {
    /// Encodes the advert.
    pub fn encode(&self) -> [u8; ADVERT_BYTES] {
        let mut out = [0u8; ADVERT_BYTES];
        out[..2].copy_from_slice(&MAGIC);
        out[2] = VERSION;
        out[3] = TYPE_ADVERT;
        out[4..20].copy_from_slice(&self.node_id.0);
        out[20..].copy_from_slice(&self.link_port.to_be_bytes());
        out
    }

    /// Decodes an advert; anything else (wrong size, magic, version or type, port 0) is `None`.
    pub fn decode(bytes: &[u8]) -> Option<Advert> {
        let bytes: &[u8; ADVERT_BYTES] = bytes.try_into().ok()?;
        if bytes[..2] != MAGIC || bytes[2] != VERSION || bytes[3] != TYPE_ADVERT {
            return None;
        }
        let node_id = NodeId(bytes[4..20].try_into().ok()?);
        let link_port = u16::from_be_bytes([bytes[20], bytes[21]]);
        (link_port != 0).then_some(Advert { node_id, link_port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adverts_round_trip_and_anything_else_is_refused() {
        let advert = Advert {
            node_id: NodeId::from_index(5),
            link_port: 7400,
        };
        let bytes = advert.encode();
        assert_eq!(Advert::decode(&bytes), Some(advert));
        assert_eq!(Advert::decode(&bytes[..21]), None);
        for index in [0, 2, 3] {
            let mut bad = bytes;
            bad[index] ^= 0xff;
            assert_eq!(Advert::decode(&bad), None, "byte {index}");
        }
        let mut zero_port = bytes;
        zero_port[20..].copy_from_slice(&[0, 0]);
        assert_eq!(Advert::decode(&zero_port), None);
    }
}
