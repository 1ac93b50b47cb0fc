//! Peer certificate verification for mesh links: the trust bundle, the revocation set, and a
//! rustls verifier (both client and server side) that refuses every kind of bad certificate
//! with its own error and counts it.
//!
//! Order of checks: parse and node-id binding, trust domain, chain and validity (webpki),
//! revocation, policy, expected node. The trust domain is checked before the chain so that a
//! certificate of another domain is reported as such rather than as "unknown CA".

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use sha2::{Digest, Sha256};
use wire::NodeId;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::keys::PublicKeys;
use crate::policy::{Decision, Policy};
use crate::spiffe::TrustDomain;
use crate::svid::{self, CertError, SvidInfo};

/// Most revoked nodes remembered. Revocations are permanent and spread to every node, so the
/// set only grows; 1 M entries (16 MB) outlasts any realistic trust domain's churn.
pub const MAX_REVOCATIONS: usize = 1 << 20;

/// A trust domain's CA as every node knows it: the CA certificate (which carries the digest of
/// the CA's ML-DSA-65 key) and that key itself, for verifying hybrid-signed revocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// CA certificate, DER.
    pub ca_certificate: Vec<u8>,
    /// CA public keys (Ed25519 from the certificate, ML-DSA-65 alongside).
    pub ca_keys: PublicKeys,
}

/// Why bytes are not a trust bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The CA certificate does not parse.
    #[error("CA certificate: {0}")]
    Certificate(String),
    /// The ML-DSA-65 key does not match the digest in the CA certificate.
    #[error("the CA's ML-DSA-65 key does not match the digest in its certificate")]
    MlDsaMismatch,
    /// The CA certificate's subject key is not Ed25519.
    #[error("the CA certificate's key is not Ed25519")]
    KeyAlgorithm,
}

impl TrustBundle {
    /// Builds a bundle, checking that the ML-DSA key matches the CA certificate.
    pub fn new(
        trust_domain: TrustDomain,
        ca_certificate: Vec<u8>,
        ca_ml_dsa: Vec<u8>,
    ) -> Result<TrustBundle, BundleError> {
        let (_, parsed) = X509Certificate::from_der(&ca_certificate)
            .map_err(|error| BundleError::Certificate(error.to_string()))?;
        let digest = svid::ml_dsa_digest_of(&parsed)
            .ok_or_else(|| BundleError::Certificate("no ML-DSA-65 digest".to_string()))?;
        if <[u8; 32]>::from(Sha256::digest(&ca_ml_dsa)) != digest {
            return Err(BundleError::MlDsaMismatch);
        }
        let ed25519: [u8; 32] = parsed
            .public_key()
            .subject_public_key
            .data
            .as_ref()
            .try_into()
            .map_err(|_| BundleError::KeyAlgorithm)?;
        Ok(TrustBundle {
            trust_domain,
            ca_certificate,
            ca_keys: PublicKeys {
                ed25519,
                ml_dsa: ca_ml_dsa,
            },
        })
    }

    /// SHA-256 of the CA certificate: what a join token pins. The certificate carries the
    /// ML-DSA key's digest, so this pins both CA keys.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.ca_certificate).into()
    }
}

/// Why a peer's certificate was refused. Each kind is counted separately.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerCertError {
    /// Not a well-formed node certificate (DER, SAN, key type, digest attribute).
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// The URI SAN is not a node SPIFFE ID.
    #[error("malformed SPIFFE ID: {0}")]
    MalformedSpiffeId(String),
    /// The node id in the SPIFFE ID is not the one the certificate's keys derive.
    #[error("node id does not match the certificate's keys: {0}")]
    NodeIdMismatch(String),
    /// The certificate belongs to another trust domain.
    #[error("certificate is for trust domain {got}, this mesh is {expected}")]
    WrongTrustDomain {
        /// Ours.
        expected: String,
        /// Theirs.
        got: String,
    },
    /// Not signed by this trust domain's CA.
    #[error("certificate is not issued by this trust domain's CA")]
    UnknownCa,
    /// `notAfter` has passed.
    #[error("certificate expired")]
    Expired,
    /// `notBefore` is in the future.
    #[error("certificate not yet valid")]
    NotYetValid,
    /// Any other chain problem webpki found.
    #[error("certificate chain invalid: {0}")]
    Chain(String),
    /// The node has been revoked.
    #[error("node {0} is revoked")]
    Revoked(NodeId),
    /// The link policy denies this SPIFFE ID.
    #[error("link policy denies {0}")]
    PolicyDenied(String),
    /// The peer is a valid node, but not the one dialled.
    #[error("expected node {expected}, peer is {got}")]
    UnexpectedNode {
        /// Dialled.
        expected: NodeId,
        /// Answered.
        got: NodeId,
    },
}

impl PeerCertError {
    /// A stable counter name.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerCertError::Malformed(_) => "malformed",
            PeerCertError::MalformedSpiffeId(_) => "malformed_spiffe_id",
            PeerCertError::NodeIdMismatch(_) => "node_id_mismatch",
            PeerCertError::WrongTrustDomain { .. } => "wrong_trust_domain",
            PeerCertError::UnknownCa => "unknown_ca",
            PeerCertError::Expired => "expired",
            PeerCertError::NotYetValid => "not_yet_valid",
            PeerCertError::Chain(_) => "chain",
            PeerCertError::Revoked(_) => "revoked",
            PeerCertError::PolicyDenied(_) => "policy_denied",
            PeerCertError::UnexpectedNode { .. } => "unexpected_node",
        }
    }

    /// Recovers our error from the rustls error the verifier returned.
    pub fn from_rustls(error: &rustls::Error) -> Option<PeerCertError> {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                other.0.downcast_ref::<PeerCertError>().cloned()
            }
            _ => None,
        }
    }
}

const KINDS: [&str; 11] = [
    "malformed",
    "malformed_spiffe_id",
    "node_id_mismatch",
    "wrong_trust_domain",
    "unknown_ca",
    "expired",
    "not_yet_valid",
    "chain",
    "revoked",
    "policy_denied",
    "unexpected_node",
];

/// Counts of refused certificates by kind, shared by every verifier of a node.
#[derive(Debug, Default)]
pub struct RefusalCounts {
    counts: [AtomicU64; KINDS.len()],
}

impl RefusalCounts {
    fn note(&self, error: &PeerCertError) {
        if let Some(index) = KINDS.iter().position(|kind| *kind == error.kind()) {
            self.counts[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Kind -> count.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        KINDS
            .iter()
            .zip(&self.counts)
            .map(|(kind, count)| (format!("cert_{kind}"), count.load(Ordering::Relaxed)))
            .collect()
    }

    /// Count for one kind (as named by [`PeerCertError::kind`]).
    pub fn get(&self, kind: &str) -> u64 {
        KINDS
            .iter()
            .position(|known| *known == kind)
            .map_or(0, |index| self.counts[index].load(Ordering::Relaxed))
    }
}

/// Why a revocation could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("revocation set is full ({MAX_REVOCATIONS} nodes)")]
pub struct RevocationsFull;

/// Revoked node ids, shared between the node and its verifiers.
#[derive(Debug, Default)]
pub struct RevocationSet {
    revoked: RwLock<HashSet<NodeId>>,
}

impl RevocationSet {
    /// Marks `node` revoked. Returns whether it was new.
    pub fn insert(&self, node: NodeId) -> Result<bool, RevocationsFull> {
        let mut revoked = self
            .revoked
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if revoked.contains(&node) {
            return Ok(false);
        }
        if revoked.len() >= MAX_REVOCATIONS {
            return Err(RevocationsFull);
        }
        Ok(revoked.insert(node))
    }

    /// Whether `node` is revoked.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .contains(node)
    }

    /// Number of revoked nodes.
    pub fn len(&self) -> usize {
        self.revoked
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The state every link verifier of a node shares.
#[derive(Debug)]
pub struct VerifierState {
    /// The trust bundle.
    pub bundle: TrustBundle,
    /// Revoked nodes.
    pub revocations: RevocationSet,
    /// The link policy (replaceable at run time).
    pub policy: RwLock<Policy>,
    /// Refusals by kind.
    pub refusals: RefusalCounts,
}

impl VerifierState {
    /// State for `bundle` with `policy` and nothing revoked.
    pub fn new(bundle: TrustBundle, policy: Policy) -> Arc<VerifierState> {
        Arc::new(VerifierState {
            bundle,
            revocations: RevocationSet::default(),
            policy: RwLock::new(policy),
            refusals: RefusalCounts::default(),
        })
    }

    /// Runs every check on a peer's certificate chain at `now` and counts a refusal.
    pub fn check(
        &self,
        end_entity: &[u8],
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
        expected: Option<NodeId>,
    ) -> Result<SvidInfo, PeerCertError> {
        let result = self.check_uncounted(end_entity, intermediates, now, usage, expected);
        if let Err(error) = &result {
            self.refusals.note(error);
        }
        result
    }

    fn check_uncounted(
        &self,
        end_entity: &[u8],
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
        expected: Option<NodeId>,
    ) -> Result<SvidInfo, PeerCertError> {
        let info = svid::read_node_certificate(end_entity).map_err(|error| match error {
            CertError::SpiffeId(inner) => PeerCertError::MalformedSpiffeId(inner.to_string()),
            CertError::NodeIdMismatch { .. } => PeerCertError::NodeIdMismatch(error.to_string()),
            other => PeerCertError::Malformed(other.to_string()),
        })?;
        if info.spiffe_id.trust_domain != self.bundle.trust_domain {
            return Err(PeerCertError::WrongTrustDomain {
                expected: self.bundle.trust_domain.to_string(),
                got: info.spiffe_id.trust_domain.to_string(),
            });
        }
        let ca = CertificateDer::from(self.bundle.ca_certificate.as_slice());
        let anchor = webpki::anchor_from_trusted_cert(&ca)
            .map_err(|error| PeerCertError::Chain(format!("trust bundle: {error}")))?;
        let end_entity_der = CertificateDer::from(end_entity);
        let certificate = webpki::EndEntityCert::try_from(&end_entity_der)
            .map_err(|error| PeerCertError::Malformed(error.to_string()))?;
        certificate
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &[anchor],
                intermediates,
                now,
                usage,
                None,
                None,
            )
            .map_err(|error| match error {
                webpki::Error::CertExpired { .. } => PeerCertError::Expired,
                webpki::Error::CertNotValidYet { .. } => PeerCertError::NotYetValid,
                webpki::Error::UnknownIssuer => PeerCertError::UnknownCa,
                other => PeerCertError::Chain(format!("{other:?}")),
            })?;
        let node = info.spiffe_id.node_id;
        if self.revocations.contains(&node) {
            return Err(PeerCertError::Revoked(node));
        }
        let spiffe_text = info.spiffe_id.to_string();
        let decision = self
            .policy
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .decide(&spiffe_text);
        if decision == Decision::Deny {
            return Err(PeerCertError::PolicyDenied(spiffe_text));
        }
        if let Some(expected) = expected
            && expected != node
        {
            return Err(PeerCertError::UnexpectedNode {
                expected,
                got: node,
            });
        }
        Ok(info)
    }
}

/// The rustls verifier of one link endpoint: as a server it verifies client certificates, as
/// a client the server's, optionally insisting on a particular node.
#[derive(Debug)]
pub struct LinkVerifier {
    state: Arc<VerifierState>,
    expected: Option<NodeId>,
    /// Whether a client may connect without a certificate (the CA node accepts joining nodes,
    /// which have none yet; the node then refuses them anything but a join request).
    client_auth_optional: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl LinkVerifier {
    /// A verifier over `state`.
    pub fn new(
        state: Arc<VerifierState>,
        expected: Option<NodeId>,
        client_auth_optional: bool,
    ) -> LinkVerifier {
        LinkVerifier {
            state,
            expected,
            client_auth_optional,
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }
}

/// Links are QUIC, which is TLS 1.3 only; a TLS 1.2 signature is never valid.
pub(crate) fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

pub(crate) fn to_rustls(error: PeerCertError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

impl ServerCertVerifier for LinkVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.state
            .check(
                end_entity,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                self.expected,
            )
            .map(|_| ServerCertVerified::assertion())
            .map_err(to_rustls)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for LinkVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.client_auth_optional
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.state
            .check(
                end_entity,
                intermediates,
                now,
                webpki::KeyUsage::client_auth(),
                self.expected,
            )
            .map(|_| ClientCertVerified::assertion())
            .map_err(to_rustls)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
