//! SPIFFE IDs of mesh nodes: `spiffe://<trust-domain>/node/<node-id>`, parsed strictly.

use std::fmt;

use wire::NodeId;

/// Longest trust domain name the SPIFFE specification allows.
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

/// A validated trust domain name: lower-case letters, digits, `.`, `-` and `_`, as the SPIFFE
/// specification requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<TrustDomain, SpiffeIdError> {
        if name.is_empty() || name.len() > MAX_TRUST_DOMAIN_BYTES {
            return Err(SpiffeIdError::TrustDomain(name.to_string()));
        }
        let allowed = |c: char| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' || c == '_'
        };
        if !name.chars().all(allowed) {
            return Err(SpiffeIdError::TrustDomain(name.to_string()));
        }
        Ok(TrustDomain(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TrustDomain {
    type Error = SpiffeIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TrustDomain::new(&value)
    }
}

impl From<TrustDomain> for String {
    fn from(value: TrustDomain) -> String {
        value.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SPIFFE ID of a mesh node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeSpiffeId {
    /// Its trust domain.
    pub trust_domain: TrustDomain,
    /// The node it names.
    pub node_id: NodeId,
}

/// Why a string is not a node's SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// The trust domain is empty, too long or has characters SPIFFE forbids.
    #[error("invalid trust domain {0:?}: use lower-case letters, digits, '.', '-' and '_'")]
    TrustDomain(String),
    /// Not of the form `spiffe://<trust-domain>/node/<32 hex digits>`.
    #[error("malformed SPIFFE ID {0:?}: expected spiffe://<trust-domain>/node/<32 hex digits>")]
    Malformed(String),
}

impl NodeSpiffeId {
    /// Parses `spiffe://<trust-domain>/node/<node-id>`; anything else (other paths, query,
    /// fragment, port, user info, upper-case) is refused.
    pub fn parse(text: &str) -> Result<NodeSpiffeId, SpiffeIdError> {
        let malformed = || SpiffeIdError::Malformed(text.to_string());
        let rest = text.strip_prefix("spiffe://").ok_or_else(malformed)?;
        let (domain, path) = rest.split_once('/').ok_or_else(malformed)?;
        let trust_domain = TrustDomain::new(domain).map_err(|_| malformed())?;
        let hex = path.strip_prefix("node/").ok_or_else(malformed)?;
        if hex.len() != NodeId::LEN * 2
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(malformed());
        }
        let node_id = hex.parse().map_err(|_| malformed())?;
        Ok(NodeSpiffeId {
            trust_domain,
            node_id,
        })
    }
}

impl fmt::Display for NodeSpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/node/{}", self.trust_domain, self.node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip_and_malformed_ones_are_refused() {
        let id = NodeSpiffeId {
            trust_domain: TrustDomain::new("example.org").expect("domain"),
            node_id: NodeId::from_index(7),
        };
        let text = id.to_string();
        assert_eq!(NodeSpiffeId::parse(&text), Ok(id));
        for bad in [
            "spiffe://example.org/node/00000000000000000000000000000007/x",
            "spiffe://Example.org/node/00000000000000000000000000000007",
            "spiffe://example.org/workload/00000000000000000000000000000007",
            "spiffe://example.org/node/0000000000000000000000000000000G",
            "spiffe://example.org/node/00000000000000000000000000000007?q",
            "spiffe://example.org:8080/node/00000000000000000000000000000007",
            "https://example.org/node/00000000000000000000000000000007",
            "spiffe:///node/00000000000000000000000000000007",
            "spiffe://example.org/node/00000000000000000000000000000007A",
        ] {
            assert!(
                matches!(NodeSpiffeId::parse(bad), Err(SpiffeIdError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(TrustDomain::new("UPPER.org").is_err());
        assert!(TrustDomain::new(&"a".repeat(256)).is_err());
    }
}
