//! X.509 SVIDs: the CA certificate of a trust domain and the short-lived node certificates it
//! issues, and the reading of a node certificate back into the identity it asserts.
//!
//! A node certificate's subject key is the node's Ed25519 key (TLS handshakes sign with it);
//! its subject `serialNumber` attribute carries `ml-dsa-65-sha256:<64 hex>`, the digest of the
//! node's ML-DSA-65 key. With both, a verifier recomputes the node id and checks it against
//! the id in the SPIFFE ID, so a certificate cannot name a node whose keys it does not hold.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber, SignatureAlgorithm,
};
use time::OffsetDateTime;
use wire::NodeId;
use x509_parser::oid_registry::{OID_SIG_ED25519, OID_X509_SERIALNUMBER};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::spiffe::{NodeSpiffeId, SpiffeIdError, TrustDomain};

/// Prefix of the subject `serialNumber` attribute that carries the ML-DSA-65 key digest.
const ML_DSA_DIGEST_PREFIX: &str = "ml-dsa-65-sha256:";

/// Arcs of the X.520 `serialNumber` attribute type (2.5.4.5).
const SERIAL_NUMBER_ARCS: [u64; 4] = [2, 5, 4, 5];

/// How far back a new certificate's `notBefore` is set, so that a peer whose clock is a little
/// behind the CA's does not refuse a certificate issued a moment ago.
pub const BACKDATE_SECONDS: i64 = 60;

/// Validity of a trust domain's CA certificate: ten years.
pub const CA_VALIDITY_SECONDS: i64 = 10 * 365 * 24 * 3600;

/// Why a certificate could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not parseable DER X.509.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// No URI SAN, or more than one (an X.509-SVID has exactly one).
    #[error("certificate must carry exactly one URI SAN, found {0}")]
    UriSanCount(usize),
    /// The URI SAN is not a node SPIFFE ID.
    #[error(transparent)]
    SpiffeId(#[from] SpiffeIdError),
    /// The subject key is not Ed25519.
    #[error("certificate key is not Ed25519")]
    KeyAlgorithm,
    /// The ML-DSA-65 digest attribute is missing or malformed.
    #[error("certificate lacks a well-formed ML-DSA-65 key digest")]
    MlDsaDigest,
    /// The node id in the SPIFFE ID is not the one the certificate's keys derive.
    #[error("SPIFFE ID names node {claimed} but the certificate's keys derive {derived}")]
    NodeIdMismatch {
        /// The id in the SPIFFE ID.
        claimed: NodeId,
        /// The id the keys derive.
        derived: NodeId,
    },
    /// rcgen refused the parameters.
    #[error("cannot build certificate: {0}")]
    Build(String),
}

/// What a node certificate asserts, read from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidInfo {
    /// The SPIFFE ID in the URI SAN.
    pub spiffe_id: NodeSpiffeId,
    /// The subject's Ed25519 key.
    pub ed25519: [u8; 32],
    /// The digest of the subject's ML-DSA-65 key.
    pub ml_dsa_digest: [u8; 32],
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// Reads a node certificate and checks that its SPIFFE ID names the node its keys derive.
/// Chain, validity and trust domain are the verifier's business ([`crate::verify`]).
pub fn read_node_certificate(der: &[u8]) -> Result<SvidInfo, CertError> {
    let (rest, certificate) =
        X509Certificate::from_der(der).map_err(|error| CertError::Malformed(error.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::Malformed("trailing bytes".to_string()));
    }
    let uris: Vec<&str> = match certificate.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(error) => return Err(CertError::Malformed(error.to_string())),
    };
    let [uri] = uris.as_slice() else {
        return Err(CertError::UriSanCount(uris.len()));
    };
    let spiffe_id = NodeSpiffeId::parse(uri)?;
    let key = certificate.public_key();
    if key.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(CertError::KeyAlgorithm);
    }
    let ed25519: [u8; 32] = key
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CertError::KeyAlgorithm)?;
    let ml_dsa_digest = ml_dsa_digest_of(&certificate).ok_or(CertError::MlDsaDigest)?;
    let derived = NodeId::from_public_keys(&ed25519, &ml_dsa_digest);
    if derived != spiffe_id.node_id {
        return Err(CertError::NodeIdMismatch {
            claimed: spiffe_id.node_id,
            derived,
        });
    }
    let validity = certificate.validity();
    Ok(SvidInfo {
        spiffe_id,
        ed25519,
        ml_dsa_digest,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// An Ed25519 public key as rcgen wants it for a certificate's subject.
struct Ed25519Subject([u8; 32]);

impl PublicKeyData for Ed25519Subject {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// The fields of a node certificate the CA fills in.
#[derive(Debug, Clone)]
pub struct NodeCertificateRequest<'a> {
    /// Trust domain of the issuing CA.
    pub trust_domain: &'a TrustDomain,
    /// The node's Ed25519 key (the certificate's subject key).
    pub ed25519: [u8; 32],
    /// SHA-256 of the node's ML-DSA-65 key.
    pub ml_dsa_digest: [u8; 32],
    /// Issue time, Unix seconds.
    pub now: i64,
    /// Lifetime in seconds.
    pub ttl_seconds: i64,
    /// Serial number (random, from the CA).
    pub serial: [u8; 16],
}

/// The CA certificate of `trust_domain`, self-signed by `ca_key` (Ed25519 PKCS#8 DER).
///
/// Like a node certificate, it carries the digest of the CA's ML-DSA-65 key, so pinning the
/// certificate's hash (a join token does) pins both CA keys.
pub fn ca_certificate(
    trust_domain: &TrustDomain,
    ca_key_pkcs8: &[u8],
    ca_ml_dsa_digest: &[u8; 32],
    now: i64,
    serial: [u8; 16],
) -> Result<Vec<u8>, CertError> {
    let key = KeyPair::try_from(ca_key_pkcs8).map_err(build)?;
    let params = ca_params(trust_domain, ca_ml_dsa_digest, now, serial)?;
    let certificate = params.self_signed(&key).map_err(build)?;
    Ok(certificate.der().to_vec())
}

/// Issues a node certificate signed by the CA key.
pub fn node_certificate(
    request: &NodeCertificateRequest<'_>,
    ca_certificate_der: &[u8],
    ca_key_pkcs8: &[u8],
) -> Result<Vec<u8>, CertError> {
    let ca_key = KeyPair::try_from(ca_key_pkcs8).map_err(build)?;
    let issuer = Issuer::from_ca_cert_der(&ca_certificate_der.into(), ca_key).map_err(build)?;
    let spiffe_id = NodeSpiffeId {
        trust_domain: request.trust_domain.clone(),
        node_id: NodeId::from_public_keys(&request.ed25519, &request.ml_dsa_digest),
    };
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, spiffe_id.node_id.to_string());
    name.push(
        DnType::CustomDnType(SERIAL_NUMBER_ARCS.to_vec()),
        digest_value(&request.ml_dsa_digest)?,
    );
    params.distinguished_name = name;
    params.subject_alt_names = vec![SanType::URI(
        spiffe_id.to_string().try_into().map_err(build)?,
    )];
    params.not_before = timestamp(request.now - BACKDATE_SECONDS)?;
    params.not_after = timestamp(request.now + request.ttl_seconds)?;
    params.serial_number = Some(SerialNumber::from_slice(&positive(request.serial)));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let certificate = params
        .signed_by(&Ed25519Subject(request.ed25519), &issuer)
        .map_err(build)?;
    Ok(certificate.der().to_vec())
}

fn ca_params(
    trust_domain: &TrustDomain,
    ca_ml_dsa_digest: &[u8; 32],
    now: i64,
    serial: [u8; 16],
) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("x0tta6bl4 CA for {trust_domain}"),
    );
    name.push(
        DnType::CustomDnType(SERIAL_NUMBER_ARCS.to_vec()),
        digest_value(ca_ml_dsa_digest)?,
    );
    params.distinguished_name = name;
    params.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{trust_domain}")
            .try_into()
            .map_err(build)?,
    )];
    params.not_before = timestamp(now - BACKDATE_SECONDS)?;
    params.not_after = timestamp(now + CA_VALIDITY_SECONDS)?;
    params.serial_number = Some(SerialNumber::from_slice(&positive(serial)));
    // Path length 0: the CA signs node certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn digest_value(digest: &[u8; 32]) -> Result<DnValue, CertError> {
    Ok(DnValue::PrintableString(
        format!("{ML_DSA_DIGEST_PREFIX}{}", hex::encode(digest))
            .try_into()
            .map_err(build)?,
    ))
}

/// Reads the ML-DSA-65 digest attribute of any certificate (node or CA).
pub fn ml_dsa_digest_of(certificate: &X509Certificate<'_>) -> Option<[u8; 32]> {
    let text = certificate
        .subject()
        .iter_by_oid(&OID_X509_SERIALNUMBER)
        .next()
        .and_then(|attribute| attribute.as_str().ok())
        .and_then(|text| text.strip_prefix(ML_DSA_DIGEST_PREFIX))?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).ok()?;
    Some(digest)
}

/// Clears the top bit so the DER INTEGER is positive, as RFC 5280 requires of serials.
fn positive(mut serial: [u8; 16]) -> [u8; 16] {
    serial[0] &= 0x7f;
    serial
}

fn timestamp(unix_seconds: i64) -> Result<OffsetDateTime, CertError> {
    OffsetDateTime::from_unix_timestamp(unix_seconds).map_err(build)
}

fn build(error: impl std::fmt::Display) -> CertError {
    CertError::Build(error.to_string())
}
