//! Trust-domain membership of a node: its SVID and trust bundle in the data directory, the CA
//! commands (`ca init`, `ca token`, `ca revoke`), joining with a token, and the CA node's
//! answers to join and renewal requests.
//!
//! ```text
//! <data_dir>/svid.pem       the node's X.509-SVID (replaced at every renewal)
//! <data_dir>/bundle.json    trust domain, CA certificate, CA ML-DSA-65 key, CA node address
//! <data_dir>/ca/            the CA itself, on the CA node only (see identity::ca)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use identity::ca::{self, CaError, CertificateAuthority};
use identity::files::{self, FileError};
use identity::verify::{TrustBundle, VerifierState};
use identity::{JoinToken, KeySet, Policy, SvidInfo, TrustDomain};
use serde::{Deserialize, Serialize};
use wire::NodeId;

use crate::NodeConfig;
use crate::identity::{IdentityError, NodeIdentity};

/// SVID file name in the data directory.
pub const SVID_NAME: &str = "svid.pem";
/// Trust bundle file name in the data directory.
pub const BUNDLE_NAME: &str = "bundle.json";
/// CA directory name in the CA node's data directory.
pub const CA_DIR_NAME: &str = "ca";

/// Largest join or renewal request or answer: keys and certificates, a few kilobytes.
pub const MAX_RPC_BYTES: usize = 64 * 1024;

const JOIN_PROOF_CONTEXT: &[u8] = b"x0tta6bl4/join/v1\0";

/// Why a membership operation failed. Every message is one line naming what to do or which
/// file is at fault.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// Key or data directory problem.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A membership file is missing, unreadable or corrupt.
    #[error(transparent)]
    File(#[from] FileError),
    /// A CA operation failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The node has no SVID yet.
    #[error(
        "{svid} is missing: this node is not a member of a trust domain yet; on the first node run `x0tta6bl4 ca init --config {config} --trust-domain <name>`, on the others `x0tta6bl4 init --config {config} --join-token <token from `x0tta6bl4 ca token`>`"
    )]
    NotMember {
        /// The expected SVID file.
        svid: PathBuf,
        /// The configuration file.
        config: PathBuf,
    },
    /// The node's own SVID is unusable (expired, not for its keys, not from the bundle's CA).
    #[error("{path}: {reason}")]
    BadSvid {
        /// The SVID file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The node keys are missing.
    #[error("no node keys at {key_path}; run `x0tta6bl4 init --config {config}` first")]
    NoKeys {
        /// Where the key was expected.
        key_path: PathBuf,
        /// The configuration file.
        config: PathBuf,
    },
    /// This node is not the CA node.
    #[error(
        "{0} holds no CA; run `x0tta6bl4 ca init` on the CA node, or point --config at its node.yaml"
    )]
    NotCa(PathBuf),
    /// Joining failed.
    #[error("join failed: {0}")]
    Join(String),
    /// The policy file is invalid.
    #[error("{path}: {reason}")]
    Policy {
        /// The policy file.
        path: PathBuf,
        /// The parser's explanation.
        reason: String,
    },
}

/// `bundle.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    trust_domain: TrustDomain,
    /// CA certificate, hex DER.
    ca_certificate: String,
    /// CA ML-DSA-65 public key, hex.
    ca_ml_dsa: String,
    /// Where the CA node accepts renewals.
    ca_node: Option<SocketAddr>,
}

/// A node's membership: its SVID and the trust bundle.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The trust bundle.
    pub bundle: TrustBundle,
    /// The SVID, DER.
    pub svid: Vec<u8>,
    /// What the SVID asserts.
    pub svid_info: SvidInfo,
    /// Where the CA node is (for renewals); `None` on the CA node itself.
    pub ca_node: Option<SocketAddr>,
}

impl Membership {
    /// Loads the SVID and bundle from `config`'s data directory and checks that the SVID is
    /// for `keys` and chains to the bundle's CA.
    pub fn load(
        config: &NodeConfig,
        keys: &KeySet,
        now: i64,
    ) -> Result<Membership, MembershipError> {
        let svid_path = config.data_dir.join(SVID_NAME);
        if !svid_path.exists() {
            return Err(MembershipError::NotMember {
                svid: svid_path,
                config: config.source.clone(),
            });
        }
        let svid = ca::read_certificate_pem(&svid_path)?;
        let (bundle, ca_node) = load_bundle(&config.data_dir.join(BUNDLE_NAME))?;
        let svid_info = check_own_svid(&svid_path, &svid, &bundle, keys, now)?;
        Ok(Membership {
            bundle,
            svid,
            svid_info,
            ca_node,
        })
    }

    /// Stores a renewed SVID.
    pub fn store_svid(data_dir: &Path, svid: &[u8]) -> Result<(), MembershipError> {
        Ok(ca::write_certificate_pem(&data_dir.join(SVID_NAME), svid)?)
    }
}

/// Checks a certificate the node is about to use as its own.
pub fn check_own_svid(
    path: &Path,
    svid: &[u8],
    bundle: &TrustBundle,
    keys: &KeySet,
    now: i64,
) -> Result<SvidInfo, MembershipError> {
    let bad = |reason: String| MembershipError::BadSvid {
        path: path.to_path_buf(),
        reason,
    };
    let state = VerifierState::new(bundle.clone(), Policy::default());
    let info = state
        .check(
            svid,
            &[],
            unix_time(now),
            webpki::KeyUsage::client_auth(),
            Some(keys.node_id()),
        )
        .map_err(|error| {
            bad(format!(
                "{error} (ask the CA for a new one: re-join with a fresh token)"
            ))
        })?;
    if info.ed25519 != keys.public().ed25519 {
        return Err(bad("certificate is not for this node's key".to_string()));
    }
    Ok(info)
}

fn load_bundle(path: &Path) -> Result<(TrustBundle, Option<SocketAddr>), MembershipError> {
    let bytes = files::read_public(path)?;
    let file: BundleFile =
        serde_json::from_slice(&bytes).map_err(|error| FileError::corrupt(path, error))?;
    let certificate =
        hex::decode(&file.ca_certificate).map_err(|error| FileError::corrupt(path, error))?;
    let ml_dsa = hex::decode(&file.ca_ml_dsa).map_err(|error| FileError::corrupt(path, error))?;
    let bundle = TrustBundle::new(file.trust_domain, certificate, ml_dsa)
        .map_err(|error| FileError::corrupt(path, error))?;
    Ok((bundle, file.ca_node))
}

fn store_bundle(
    data_dir: &Path,
    bundle: &TrustBundle,
    ca_node: Option<SocketAddr>,
) -> Result<(), MembershipError> {
    let path = data_dir.join(BUNDLE_NAME);
    let file = BundleFile {
        trust_domain: bundle.trust_domain.clone(),
        ca_certificate: hex::encode(&bundle.ca_certificate),
        ca_ml_dsa: hex::encode(&bundle.ca_keys.ml_dsa),
        ca_node,
    };
    let text =
        serde_json::to_vec_pretty(&file).map_err(|error| FileError::corrupt(&path, error))?;
    Ok(files::write_private(&path, &text)?)
}

/// Loads the link policy file, or the default (allow every member) when none is configured.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, MembershipError> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let bytes = files::read_public(path)?;
    let text = String::from_utf8(bytes).map_err(|_| FileError::corrupt(path, "not UTF-8"))?;
    Policy::from_yaml(&text).map_err(|error| MembershipError::Policy {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

fn node_keys(config: &NodeConfig) -> Result<KeySet, MembershipError> {
    if !NodeIdentity::exists(&config.key_path)? {
        return Err(MembershipError::NoKeys {
            key_path: config.key_path.clone(),
            config: config.source.clone(),
        });
    }
    Ok(NodeIdentity::load(&config.key_path)?.into_keys())
}

/// The CA directory of `config`'s node.
pub fn ca_dir(config: &NodeConfig) -> PathBuf {
    config.data_dir.join(CA_DIR_NAME)
}

fn load_ca(config: &NodeConfig) -> Result<CertificateAuthority, MembershipError> {
    let dir = ca_dir(config);
    if !dir.join("ca.crt").exists() {
        return Err(MembershipError::NotCa(dir));
    }
    Ok(CertificateAuthority::load(&dir)?)
}

/// What `ca init` did.
#[derive(Debug, Clone)]
pub struct CaInitReport {
    /// The CA node's SPIFFE ID.
    pub spiffe_id: String,
    /// SHA-256 of the CA certificate, hex (what tokens pin).
    pub bundle_hash: String,
    /// The CA directory.
    pub ca_dir: PathBuf,
}

/// `ca init`: creates the trust domain's CA on this node (whose keys must exist) and gives the
/// node its own SVID.
pub fn ca_init(
    config: &NodeConfig,
    trust_domain: &str,
    svid_ttl_seconds: i64,
    now: i64,
) -> Result<CaInitReport, MembershipError> {
    let trust_domain =
        TrustDomain::new(trust_domain).map_err(|error| MembershipError::Join(error.to_string()))?;
    let keys = node_keys(config)?;
    let dir = ca_dir(config);
    let ca = CertificateAuthority::init(&dir, trust_domain, now)?;
    let bundle = ca.bundle()?;
    let svid = ca.issue_own(&keys, now, svid_ttl_seconds)?;
    Membership::store_svid(&config.data_dir, &svid)?;
    store_bundle(&config.data_dir, &bundle, None)?;
    Ok(CaInitReport {
        spiffe_id: format!("spiffe://{}/node/{}", bundle.trust_domain, keys.node_id()),
        bundle_hash: hex::encode(bundle.hash()),
        ca_dir: dir,
    })
}

/// `ca token`: a one-time join token for the CA node at `address` (default: the node's listen
/// address, with an unspecified IP replaced by loopback).
pub fn ca_token(
    config: &NodeConfig,
    ttl_seconds: i64,
    address: Option<SocketAddr>,
    now: i64,
) -> Result<JoinToken, MembershipError> {
    let ca = load_ca(config)?;
    let address = address.unwrap_or_else(|| reachable(config.listen));
    Ok(ca.create_token(ttl_seconds, now, address)?)
}

/// `ca revoke`: records a hybrid-signed revocation of `node`; the running CA node spreads it.
pub fn ca_revoke(config: &NodeConfig, node: NodeId, now: i64) -> Result<(), MembershipError> {
    load_ca(config)?.revoke(node, now)?;
    Ok(())
}

fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        ip if !ip.is_unspecified() => listen,
        std::net::IpAddr::V4(_) => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        std::net::IpAddr::V6(_) => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), listen.port())
        }
    }
}

/// A joining node's request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    token_id: String,
    secret: String,
    ed25519: String,
    ml_dsa: String,
    /// Hybrid signature proving possession of both keys, over the token id and the keys.
    proof: String,
}

/// The CA node's answer to a join or renewal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum CaAnswer {
    /// The certificate and the bundle.
    Issued {
        /// New SVID, hex DER.
        certificate: String,
        /// Trust domain.
        trust_domain: TrustDomain,
        /// CA certificate, hex DER.
        ca_certificate: String,
        /// CA ML-DSA-65 key, hex.
        ca_ml_dsa: String,
    },
    /// Why not.
    Refused(String),
}

fn proof_message(token_id: &[u8], ed25519: &[u8], ml_dsa: &[u8]) -> Vec<u8> {
    [JOIN_PROOF_CONTEXT, token_id, ed25519, ml_dsa].concat()
}

/// What `init --join-token` did.
#[derive(Debug, Clone)]
pub struct JoinReport {
    /// The node's SPIFFE ID.
    pub spiffe_id: String,
    /// SVID expiry, Unix seconds.
    pub not_after: i64,
}

/// Joins the trust domain with `token`: asks the CA node named in it for an SVID, checks that
/// the CA is the one the token pins, and stores the SVID and bundle.
pub async fn join(
    config: &NodeConfig,
    token: &JoinToken,
    now: i64,
) -> Result<JoinReport, MembershipError> {
    let keys = node_keys(config)?;
    let public = keys.public();
    let proof = keys
        .sign(&proof_message(&token.id, &public.ed25519, &public.ml_dsa))
        .map_err(|error| MembershipError::Join(error.to_string()))?;
    let request = JoinRequest {
        token_id: hex::encode(token.id),
        secret: hex::encode(token.secret),
        ed25519: hex::encode(public.ed25519),
        ml_dsa: hex::encode(&public.ml_dsa),
        proof: hex::encode(proof),
    };
    let body =
        serde_json::to_vec(&request).map_err(|error| MembershipError::Join(error.to_string()))?;
    let answer = transport::links::join_request(token.ca_address, token.bundle_hash, &body)
        .await
        .map_err(|error| MembershipError::Join(error.to_string()))?;
    let answer: CaAnswer = serde_json::from_slice(&answer).map_err(|error| {
        MembershipError::Join(format!("unreadable answer from the CA node: {error}"))
    })?;
    let (certificate, trust_domain, ca_certificate, ca_ml_dsa) = match answer {
        CaAnswer::Issued {
            certificate,
            trust_domain,
            ca_certificate,
            ca_ml_dsa,
        } => (certificate, trust_domain, ca_certificate, ca_ml_dsa),
        CaAnswer::Refused(reason) => {
            return Err(MembershipError::Join(format!("the CA refused: {reason}")));
        }
    };
    let decode =
        |text: &str| hex::decode(text).map_err(|error| MembershipError::Join(error.to_string()));
    let bundle = TrustBundle::new(trust_domain, decode(&ca_certificate)?, decode(&ca_ml_dsa)?)
        .map_err(|error| MembershipError::Join(error.to_string()))?;
    if bundle.hash() != token.bundle_hash {
        return Err(MembershipError::Join(
            "the CA certificate in the answer is not the one the token pins".to_string(),
        ));
    }
    let svid = decode(&certificate)?;
    let svid_path = config.data_dir.join(SVID_NAME);
    let info = check_own_svid(&svid_path, &svid, &bundle, &keys, now)?;
    Membership::store_svid(&config.data_dir, &svid)?;
    store_bundle(&config.data_dir, &bundle, Some(token.ca_address))?;
    Ok(JoinReport {
        spiffe_id: info.spiffe_id.to_string(),
        not_after: info.not_after,
    })
}

/// The CA node's answer to a join request.
pub fn answer_join(
    ca: &CertificateAuthority,
    request: &[u8],
    now: i64,
    ttl_seconds: i64,
) -> CaAnswer {
    let refused = |reason: String| CaAnswer::Refused(reason);
    if request.len() > MAX_RPC_BYTES {
        return refused("request too large".to_string());
    }
    let Ok(request) = serde_json::from_slice::<JoinRequest>(request) else {
        return refused("malformed request".to_string());
    };
    let decode = |text: &str| hex::decode(text).ok();
    let (Some(token_id), Some(secret), Some(ed25519), Some(ml_dsa), Some(proof)) = (
        decode(&request.token_id),
        decode(&request.secret),
        decode(&request.ed25519),
        decode(&request.ml_dsa),
        decode(&request.proof),
    ) else {
        return refused("malformed request".to_string());
    };
    let (Ok(token_id), Ok(secret), Ok(ed25519)) = (
        <[u8; 8]>::try_from(token_id.as_slice()),
        <[u8; 16]>::try_from(secret.as_slice()),
        <[u8; 32]>::try_from(ed25519.as_slice()),
    ) else {
        return refused("malformed request".to_string());
    };
    let keys = identity::PublicKeys { ed25519, ml_dsa };
    if let Err(error) = keys.verify(
        &proof_message(&token_id, &keys.ed25519, &keys.ml_dsa),
        &proof,
    ) {
        return refused(format!("proof of key possession failed: {error}"));
    }
    match ca.redeem(
        &token_id,
        &secret,
        keys.ed25519,
        keys.ml_dsa_digest(),
        now,
        ttl_seconds,
    ) {
        Ok(certificate) => issued(ca, &certificate),
        Err(error) => refused(error.to_string()),
    }
}

/// The CA node's answer to a member renewing its SVID (its current certificate was verified
/// on the link the request came over).
pub fn answer_renew(
    ca: &CertificateAuthority,
    member: &SvidInfo,
    now: i64,
    ttl_seconds: i64,
) -> CaAnswer {
    match ca.renew(member.ed25519, member.ml_dsa_digest, now, ttl_seconds) {
        Ok(certificate) => issued(ca, &certificate),
        Err(error) => CaAnswer::Refused(error.to_string()),
    }
}

fn issued(ca: &CertificateAuthority, certificate: &[u8]) -> CaAnswer {
    match ca.bundle() {
        Ok(bundle) => CaAnswer::Issued {
            certificate: hex::encode(certificate),
            trust_domain: bundle.trust_domain.clone(),
            ca_certificate: hex::encode(&bundle.ca_certificate),
            ca_ml_dsa: hex::encode(&bundle.ca_keys.ml_dsa),
        },
        Err(error) => CaAnswer::Refused(error.to_string()),
    }
}

/// Reads a renewal answer.
pub fn read_renewal(answer: &[u8]) -> Result<Vec<u8>, MembershipError> {
    match serde_json::from_slice::<CaAnswer>(answer) {
        Ok(CaAnswer::Issued { certificate, .. }) => {
            hex::decode(certificate).map_err(|error| MembershipError::Join(error.to_string()))
        }
        Ok(CaAnswer::Refused(reason)) => {
            Err(MembershipError::Join(format!("the CA refused: {reason}")))
        }
        Err(error) => Err(MembershipError::Join(format!("unreadable answer: {error}"))),
    }
}

/// `rustls` time from Unix seconds.
pub fn unix_time(now: i64) -> rustls::pki_types::UnixTime {
    rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now).unwrap_or(0),
    ))
}
