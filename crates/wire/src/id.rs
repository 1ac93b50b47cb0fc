//! `NodeId`: the 128-bit node identifier, derived from the node's public key.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A node identifier: the first 16 bytes of SHA-256 over a domain tag and the node's public keys
/// (see [`NodeId::from_public_keys`]).
///
/// Deriving the identifier from the keys means a node cannot pick another node's identifier
/// without its keys. Displayed and parsed as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; NodeId::LEN]);

/// Domain separation tag so that a NodeId hash can never collide with another use of SHA-256
/// over the same key bytes.
const NODE_ID_DOMAIN: &[u8] = b"x0tta6bl4/node-id/v1";

/// Domain tag of the hybrid derivation (Ed25519 key plus the digest of the ML-DSA-65 key).
const HYBRID_NODE_ID_DOMAIN: &[u8] = b"x0tta6bl4/node-id/v2";

/// The overlay's IPv6 prefix, `fd6b:6c34::/32`: a unique-local prefix (RFC 4193, `fd00::/8`)
/// whose 40-bit global id is fixed so that every x0tta6bl4 mesh uses the same addresses for
/// the same keys.
pub const OVERLAY_PREFIX: [u8; 4] = [0xfd, 0x6b, 0x6c, 0x34];

/// Length of [`OVERLAY_PREFIX`] in bits.
pub const OVERLAY_PREFIX_BITS: u8 = 32;

impl NodeId {
    /// Size of a node identifier on the wire, in bytes.
    pub const LEN: usize = 16;

    /// Derives the identifier of the node owning `public_key`.
    pub fn from_public_key(public_key: &[u8]) -> NodeId {
        let mut hasher = Sha256::new();
        hasher.update(NODE_ID_DOMAIN);
        hasher.update(public_key);
        let digest = hasher.finalize();
        let mut id = [0u8; NodeId::LEN];
        id.copy_from_slice(&digest[..NodeId::LEN]);
        NodeId(id)
    }

    /// Derives the identifier of a node from its two public keys: SHA-256 over
    /// `"x0tta6bl4/node-id/v2" || ed25519 public key (32 B) || SHA-256(ML-DSA-65 public key)`,
    /// first 16 bytes.
    ///
    /// The ML-DSA key enters as its digest so that an X.509 certificate can carry the binding in
    /// 32 bytes instead of the 1,952-byte key.
    pub fn from_public_keys(ed25519: &[u8; 32], ml_dsa_digest: &[u8; 32]) -> NodeId {
        let mut hasher = Sha256::new();
        hasher.update(HYBRID_NODE_ID_DOMAIN);
        hasher.update(ed25519);
        hasher.update(ml_dsa_digest);
        let digest = hasher.finalize();
        let mut id = [0u8; NodeId::LEN];
        id.copy_from_slice(&digest[..NodeId::LEN]);
        NodeId(id)
    }

    /// The node's overlay IPv6 address: [`OVERLAY_PREFIX`] followed by the first 12 bytes of
    /// the identifier. 96 key-derived bits make a deliberate collision cost about 2^48 key
    /// generations, and any address maps back to at most one known node.
    pub fn overlay_addr(&self) -> core::net::Ipv6Addr {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&OVERLAY_PREFIX);
        bytes[4..].copy_from_slice(&self.0[..12]);
        core::net::Ipv6Addr::from(bytes)
    }

    /// Builds an identifier from a small integer; used by the simulator and tests, where nodes
    /// have no keys. Distinct integers give distinct identifiers.
    pub fn from_index(index: u64) -> NodeId {
        let mut id = [0u8; NodeId::LEN];
        id[NodeId::LEN - 8..].copy_from_slice(&index.to_be_bytes());
        NodeId(id)
    }

    /// The first eight hex digits, enough to tell nodes apart in human output.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a string is not a node identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNodeIdError {
    /// The string does not have exactly 32 characters.
    #[error("node id must be 32 hex digits, got {0} characters")]
    WrongLength(usize),
    /// The string has a character that is not a hex digit.
    #[error("node id must be hex digits only")]
    NotHex,
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != NodeId::LEN * 2 {
            return Err(ParseNodeIdError::WrongLength(s.len()));
        }
        let mut id = [0u8; NodeId::LEN];
        hex::decode_to_slice(s, &mut id).map_err(|_| ParseNodeIdError::NotHex)?;
        Ok(NodeId(id))
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = NodeId::from_public_key(b"some key");
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<NodeId>(), Ok(id));
    }

    #[test]
    fn parse_rejects_bad_strings() {
        assert_eq!(
            "abc".parse::<NodeId>(),
            Err(ParseNodeIdError::WrongLength(3))
        );
        let not_hex = "zz".repeat(16);
        assert_eq!(not_hex.parse::<NodeId>(), Err(ParseNodeIdError::NotHex));
    }

    #[test]
    fn hybrid_derivation_depends_on_both_keys_and_gives_an_overlay_address() {
        let a = NodeId::from_public_keys(&[1; 32], &[2; 32]);
        assert_ne!(a, NodeId::from_public_keys(&[1; 32], &[3; 32]));
        assert_ne!(a, NodeId::from_public_keys(&[4; 32], &[2; 32]));
        let address = a.overlay_addr().octets();
        assert_eq!(address[..4], OVERLAY_PREFIX);
        assert_eq!(address[4..], a.0[..12]);
    }

    #[test]
    fn derivation_depends_on_key() {
        assert_ne!(NodeId::from_public_key(b"a"), NodeId::from_public_key(b"b"));
        assert_ne!(NodeId::from_index(1), NodeId::from_index(2));
    }
}
