//! Join tokens: one-time secrets that let a new node obtain its SVID from the CA node, and that
//! pin the CA certificate's hash so the new node can authenticate the CA before it has any
//! identity of its own (as `kubeadm join --discovery-token-ca-cert-hash` does).
//!
//! Text form: `x6j1-<token id: 16 hex>-<secret: 32 hex>-<CA cert SHA-256: 64 hex>@<CA node address>`.

use std::fmt;
use std::net::SocketAddr;

/// Prefix and version of the token text form.
const PREFIX: &str = "x6j1";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Public identifier the CA records the token under.
    pub id: [u8; 8],
    /// The secret; the CA stores only its SHA-256.
    pub secret: [u8; 16],
    /// SHA-256 of the CA certificate the joining node must find.
    pub bundle_hash: [u8; 32],
    /// Where the CA node accepts join requests.
    pub ca_address: SocketAddr,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is never printed.
        write!(
            f,
            "JoinToken(id {}, CA {})",
            hex::encode(self.id),
            self.ca_address
        )
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}-{}-{}-{}@{}",
            hex::encode(self.id),
            hex::encode(self.secret),
            hex::encode(self.bundle_hash),
            self.ca_address
        )
    }
}

/// Why a string is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed join token: expected x6j1-<16 hex>-<32 hex>-<64 hex>@<address:port> ({0})")]
pub struct TokenFormatError(&'static str);

impl std::str::FromStr for JoinToken {
    type Err = TokenFormatError;

    fn from_str(text: &str) -> Result<JoinToken, TokenFormatError> {
        let (token, address) = text
            .trim()
            .split_once('@')
            .ok_or(TokenFormatError("no '@'"))?;
        let mut parts = token.split('-');
        if parts.next() != Some(PREFIX) {
            return Err(TokenFormatError("unknown prefix or version"));
        }
        let mut id = [0u8; 8];
        let mut secret = [0u8; 16];
        let mut bundle_hash = [0u8; 32];
        for (field, name) in [
            (&mut id[..], "token id"),
            (&mut secret[..], "secret"),
            (&mut bundle_hash[..], "CA hash"),
        ] {
            let part = parts.next().ok_or(TokenFormatError(name))?;
            hex::decode_to_slice(part, field).map_err(|_| TokenFormatError(name))?;
        }
        if parts.next().is_some() {
            return Err(TokenFormatError("trailing fields"));
        }
        let ca_address = address
            .parse()
            .map_err(|_| TokenFormatError("CA address"))?;
        Ok(JoinToken {
            id,
            secret,
            bundle_hash,
            ca_address,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let token = JoinToken {
            id: [1; 8],
            secret: [2; 16],
            bundle_hash: [3; 32],
            ca_address: "[::1]:7400".parse().expect("address"),
        };
        let text = token.to_string();
        assert_eq!(text.parse::<JoinToken>(), Ok(token.clone()));
        assert!(!format!("{token:?}").contains(&hex::encode([2u8; 16])));
        for bad in [
            text.replace("x6j1", "x6j2"),
            text.replace('@', "#"),
            text.replacen("01", "zz", 1),
            format!("{}-00@[::1]:7400", text.split('@').next().unwrap_or("")),
            text.replace("[::1]:7400", "nowhere"),
        ] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad}");
        }
    }
}
