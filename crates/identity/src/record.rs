//! Hybrid-signed statements every node keeps: node records (what a node asserts about itself,
//! bound to its SVID), revocations and link policies (both signed by the trust domain's CA).
//!
//! Both have a versioned binary encoding; decoders return errors for any malformed input and
//! never panic. A record or revocation is accepted only when its hybrid signature verifies
//! (both halves).

use std::net::{IpAddr, SocketAddr};

use rustls::pki_types::UnixTime;
use wire::NodeId;

use crate::keys::{HYBRID_SIGNATURE_BYTES, KeySet, ML_DSA_PUBLIC_BYTES, PublicKeys};
use crate::verify::{PeerCertError, VerifierState};

/// Encoding version of records and revocations.
pub const RECORD_VERSION: u8 = 1;

/// Most endpoints a record lists; a node has a handful of addresses.
pub const MAX_ENDPOINTS: usize = 8;

/// Largest SVID a record may embed. Our node certificates are about 600 bytes.
pub const MAX_SVID_BYTES: usize = 4096;

/// Largest encoded record: header, keys, endpoints, SVID and signature.
pub const MAX_RECORD_BYTES: usize = 1
    + 16
    + 8
    + 8
    + 8
    + 32
    + 2
    + ML_DSA_PUBLIC_BYTES
    + 1
    + MAX_ENDPOINTS * 19
    + 2
    + MAX_SVID_BYTES
    + HYBRID_SIGNATURE_BYTES;

/// Size of an encoded revocation.
pub const REVOCATION_BYTES: usize = 1 + 16 + 8 + HYBRID_SIGNATURE_BYTES;

const RECORD_CONTEXT: &[u8] = b"x0tta6bl4/node-record/v1\0";
const REVOCATION_CONTEXT: &[u8] = b"x0tta6bl4/revocation/v1\0";
const POLICY_CONTEXT: &[u8] = b"x0tta6bl4/policy/v1\0";

/// Longest policy text a signed policy carries: what fits the replicated value bound (16 KB)
/// next to the header and the hybrid signature (3,373 bytes).
pub const MAX_POLICY_TEXT_BYTES: usize = 12 * 1024;

/// Why a record or revocation was refused. Each kind is counted by the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Truncated, oversized, wrong version, or inconsistent fields.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The hybrid signature does not verify.
    #[error("forged: {0}")]
    Forged(String),
    /// The embedded SVID was refused.
    #[error("SVID refused: {0}")]
    Svid(#[from] PeerCertError),
    /// The keys in the record are not the SVID's.
    #[error("record keys do not match its SVID")]
    KeyMismatch,
    /// Outside its validity window.
    #[error("record not valid at this time")]
    Stale,
}

/// What a node asserts about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node (derived from `keys`; checked on decode).
    pub node_id: NodeId,
    /// Grows with every new record of the node (its signing time in Unix milliseconds), so
    /// replays of older records are recognised as stale.
    pub version: u64,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds (the SVID's expiry).
    pub not_after: i64,
    /// The node's public keys.
    pub keys: PublicKeys,
    /// Where the node accepts links.
    pub endpoints: Vec<SocketAddr>,
    /// The node's SVID (DER), the CA's binding of its keys to its SPIFFE ID.
    pub svid: Vec<u8>,
}

impl NodeRecord {
    /// Encodes and hybrid-signs the record with `keys`, which must be the record's keys.
    pub fn sign(&self, keys: &KeySet) -> Result<Vec<u8>, crate::KeyError> {
        let mut bytes = self.body()?;
        let signature = keys.sign(&tagged(RECORD_CONTEXT, b"", &bytes))?;
        bytes.extend_from_slice(&signature);
        Ok(bytes)
    }

    fn body(&self) -> Result<Vec<u8>, crate::KeyError> {
        let too_big = |what: &str| crate::KeyError::Encode(format!("record {what} too large"));
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(too_big("endpoint list"));
        }
        if self.svid.len() > MAX_SVID_BYTES {
            return Err(too_big("SVID"));
        }
        let ml_len = u16::try_from(self.keys.ml_dsa.len()).map_err(|_| too_big("ML-DSA key"))?;
        let mut out = Vec::with_capacity(MAX_RECORD_BYTES);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.node_id.0);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        out.extend_from_slice(&self.keys.ed25519);
        out.extend_from_slice(&ml_len.to_be_bytes());
        out.extend_from_slice(&self.keys.ml_dsa);
        // Bounded by MAX_ENDPOINTS (checked above), so the count fits a byte.
        out.push(self.endpoints.len() as u8);
        for endpoint in &self.endpoints {
            match endpoint.ip() {
                IpAddr::V4(address) => {
                    out.push(4);
                    out.extend_from_slice(&address.octets());
                }
                IpAddr::V6(address) => {
                    out.push(6);
                    out.extend_from_slice(&address.octets());
                }
            }
            out.extend_from_slice(&endpoint.port().to_be_bytes());
        }
        // Bounded by MAX_SVID_BYTES (checked above), so the length fits 16 bits.
        out.extend_from_slice(&(self.svid.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.svid);
        Ok(out)
    }

    /// Decodes a record and checks everything that needs no outside state but the verifier:
    /// encoding, node id derivation, SVID (chain, trust domain, revocation, policy) and key
    /// binding, validity at `now_unix`, and the hybrid signature.
    pub fn verify(
        bytes: &[u8],
        state: &VerifierState,
        now_unix: i64,
    ) -> Result<NodeRecord, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::Malformed("oversized"));
        }
        if bytes.len() < HYBRID_SIGNATURE_BYTES {
            return Err(RecordError::Malformed("truncated"));
        }
        let (body, signature) = bytes.split_at(bytes.len() - HYBRID_SIGNATURE_BYTES);
        let mut reader = Reader(body);
        if reader.u8()? != RECORD_VERSION {
            return Err(RecordError::Malformed("unknown version"));
        }
        let node_id = NodeId(reader.array()?);
        let version = u64::from_be_bytes(reader.array()?);
        let not_before = i64::from_be_bytes(reader.array()?);
        let not_after = i64::from_be_bytes(reader.array()?);
        let ed25519 = reader.array()?;
        let ml_len = usize::from(u16::from_be_bytes(reader.array()?));
        if ml_len != ML_DSA_PUBLIC_BYTES {
            return Err(RecordError::Malformed("ML-DSA key length"));
        }
        let ml_dsa = reader.take(ml_len)?.to_vec();
        let count = usize::from(reader.u8()?);
        if count > MAX_ENDPOINTS {
            return Err(RecordError::Malformed("too many endpoints"));
        }
        let mut endpoints = Vec::with_capacity(count);
        for _ in 0..count {
            let ip = match reader.u8()? {
                4 => IpAddr::from(reader.array::<4>()?),
                6 => IpAddr::from(reader.array::<16>()?),
                _ => return Err(RecordError::Malformed("address family")),
            };
            endpoints.push(SocketAddr::new(ip, u16::from_be_bytes(reader.array()?)));
        }
        let svid_len = usize::from(u16::from_be_bytes(reader.array()?));
        if svid_len > MAX_SVID_BYTES {
            return Err(RecordError::Malformed("SVID too large"));
        }
        let svid = reader.take(svid_len)?.to_vec();
        if !reader.0.is_empty() {
            return Err(RecordError::Malformed("trailing bytes"));
        }
        let keys = PublicKeys { ed25519, ml_dsa };
        if keys.node_id() != node_id {
            return Err(RecordError::Malformed(
                "node id does not derive from the keys",
            ));
        }
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now_unix).unwrap_or(0),
        ));
        let info = state.check(
            &svid,
            &[],
            now,
            webpki::KeyUsage::client_auth(),
            Some(node_id),
        )?;
        if info.ed25519 != keys.ed25519 || info.ml_dsa_digest != keys.ml_dsa_digest() {
            return Err(RecordError::KeyMismatch);
        }
        if now_unix < not_before || now_unix > not_after {
            return Err(RecordError::Stale);
        }
        keys.verify(&tagged(RECORD_CONTEXT, b"", body), signature)
            .map_err(|error| RecordError::Forged(error.to_string()))?;
        Ok(NodeRecord {
            node_id,
            version,
            not_before,
            not_after,
            keys,
            endpoints,
            svid,
        })
    }
}

/// A CA's statement that a node is no longer a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revocation {
    /// The revoked node.
    pub node_id: NodeId,
    /// When the CA revoked it, Unix seconds.
    pub revoked_at: i64,
}

impl Revocation {
    /// Encodes and hybrid-signs with the CA's keys of `trust_domain`.
    pub fn sign(&self, ca_keys: &KeySet, trust_domain: &str) -> Result<Vec<u8>, crate::KeyError> {
        let body = self.body();
        let signature =
            ca_keys.sign(&tagged(REVOCATION_CONTEXT, trust_domain.as_bytes(), &body))?;
        let mut bytes = body;
        bytes.extend_from_slice(&signature);
        Ok(bytes)
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REVOCATION_BYTES);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.node_id.0);
        out.extend_from_slice(&self.revoked_at.to_be_bytes());
        out
    }

    /// Decodes and verifies a revocation against the CA keys of the bundle in `state`.
    pub fn verify(bytes: &[u8], state: &VerifierState) -> Result<Revocation, RecordError> {
        if bytes.len() != REVOCATION_BYTES {
            return Err(RecordError::Malformed("revocation length"));
        }
        let (body, signature) = bytes.split_at(REVOCATION_BYTES - HYBRID_SIGNATURE_BYTES);
        let mut reader = Reader(body);
        if reader.u8()? != RECORD_VERSION {
            return Err(RecordError::Malformed("unknown version"));
        }
        let node_id = NodeId(reader.array()?);
        let revoked_at = i64::from_be_bytes(reader.array()?);
        let domain = state.bundle.trust_domain.as_str().as_bytes();
        state
            .bundle
            .ca_keys
            .verify(&tagged(REVOCATION_CONTEXT, domain, body), signature)
            .map_err(|error| RecordError::Forged(error.to_string()))?;
        Ok(Revocation {
            node_id,
            revoked_at,
        })
    }
}

/// A link policy as the trust domain's CA published it mesh-wide. Only the CA key may sign
/// one: the policy decides who may link, the same authority as membership and revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    /// When the CA signed it, Unix milliseconds; a node applies only a newer one than it holds.
    pub issued_at_ms: u64,
    /// The policy's YAML text, as written by the operator.
    pub text: String,
    /// The parsed policy.
    pub policy: crate::Policy,
}

impl SignedPolicy {
    /// Validates `text` as a policy, then encodes and hybrid-signs it with the CA's keys of
    /// `trust_domain`.
    pub fn sign(
        text: &str,
        issued_at_ms: u64,
        ca_keys: &KeySet,
        trust_domain: &str,
    ) -> Result<Vec<u8>, crate::KeyError> {
        crate::Policy::from_yaml(text)
            .map_err(|error| crate::KeyError::Encode(error.to_string()))?;
        if text.len() > MAX_POLICY_TEXT_BYTES {
            return Err(crate::KeyError::Encode(format!(
                "policy text of {} bytes exceeds {MAX_POLICY_TEXT_BYTES}",
                text.len()
            )));
        }
        let mut body = Vec::with_capacity(1 + 8 + text.len());
        body.push(RECORD_VERSION);
        body.extend_from_slice(&issued_at_ms.to_be_bytes());
        body.extend_from_slice(text.as_bytes());
        let signature = ca_keys.sign(&tagged(POLICY_CONTEXT, trust_domain.as_bytes(), &body))?;
        body.extend_from_slice(&signature);
        Ok(body)
    }

    /// Decodes and verifies a signed policy against the CA keys of the bundle in `state`, and
    /// parses its text.
    pub fn verify(bytes: &[u8], state: &VerifierState) -> Result<SignedPolicy, RecordError> {
        if bytes.len() > 1 + 8 + MAX_POLICY_TEXT_BYTES + HYBRID_SIGNATURE_BYTES {
            return Err(RecordError::Malformed("oversized policy"));
        }
        if bytes.len() < 1 + 8 + HYBRID_SIGNATURE_BYTES {
            return Err(RecordError::Malformed("truncated policy"));
        }
        let (body, signature) = bytes.split_at(bytes.len() - HYBRID_SIGNATURE_BYTES);
        let domain = state.bundle.trust_domain.as_str().as_bytes();
        state
            .bundle
            .ca_keys
            .verify(&tagged(POLICY_CONTEXT, domain, body), signature)
            .map_err(|error| RecordError::Forged(error.to_string()))?;
        let mut reader = Reader(body);
        if reader.u8()? != RECORD_VERSION {
            return Err(RecordError::Malformed("unknown version"));
        }
        let issued_at_ms = u64::from_be_bytes(reader.array()?);
        let text = std::str::from_utf8(reader.0)
            .map_err(|_| RecordError::Malformed("policy text is not UTF-8"))?
            .to_owned();
        let policy = crate::Policy::from_yaml(&text)
            .map_err(|_| RecordError::Malformed("policy text does not parse"))?;
        Ok(SignedPolicy {
            issued_at_ms,
            text,
            policy,
        })
    }
}

fn tagged(context: &[u8], domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(context.len() + 1 + domain.len() + body.len());
    out.extend_from_slice(context);
    // Bounded: trust domains are at most 255 bytes (TrustDomain::new checks).
    out.push(domain.len().min(255) as u8);
    out.extend_from_slice(domain);
    out.extend_from_slice(body);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < count {
            return Err(RecordError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}
