//! Zero-trust identity: hybrid node keys, trust-domain CA, SPIFFE SVIDs, join tokens, revocation and link policy.
//!
//! # Layout
//! - [`keys`]: the Ed25519 + ML-DSA-65 key set, hybrid signatures, derived node id.
//! - [`spiffe`]: `spiffe://<trust-domain>/node/<node-id>` and trust domain names.
//! - [`svid`]: CA and node certificates (X.509-SVIDs), issuing and reading.
//! - [`verify`]: trust bundle, revocation set, and the rustls verifier of mesh links.
//! - [`policy`]: allow/deny rules on SPIFFE IDs for who may link.
//! - [`ca`]: the trust domain's CA: keys, join tokens, issuance log, revocations.
//! - [`token`]: join tokens that pin the CA certificate.
//! - [`record`]: hybrid-signed node records, revocations and CA-signed link policies.
//! - [`tls`]: rustls configurations of links, with key-exchange group recording.
//! - [`files`]: 0600 secret files whose errors name the file.
//!
//! Nothing here is trusted by default: a peer is a member only when its certificate chains to
//! the trust bundle, is valid now, names a node its keys derive, is not revoked, and the
//! policy allows it.

pub mod ca;
pub mod files;
pub mod keys;
pub mod policy;
pub mod record;
pub mod spiffe;
pub mod svid;
pub mod tls;
pub mod token;
pub mod verify;

pub use ca::{CaError, CertificateAuthority};
pub use files::FileError;
pub use keys::{KeyError, KeySet, PublicKeys, SignatureError};
pub use policy::{Decision, Policy, PolicyError};
pub use record::{NodeRecord, RecordError, Revocation, SignedPolicy};
pub use spiffe::{NodeSpiffeId, SpiffeIdError, TrustDomain};
pub use svid::{CertError, SvidInfo};
pub use token::JoinToken;
pub use verify::{LinkVerifier, PeerCertError, RevocationSet, TrustBundle, VerifierState};
