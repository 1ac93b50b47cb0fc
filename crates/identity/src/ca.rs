//! The certificate authority of a trust domain, kept in a `ca/` directory of the CA node's
//! data directory: its keys, its certificate, its join tokens, the log of every certificate it
//! issued, and its revocations.
//!
//! ```text
//! ca/ca.key         Ed25519 private key (signs certificates), 0600
//! ca/ca-mldsa.key   ML-DSA-65 private key (co-signs revocations), 0600
//! ca/ca.crt         CA certificate, PEM
//! ca/state.json     outstanding tokens (secret hashes only) and revocations, 0600
//! ca/issued.jsonl   one line per certificate issued, append-only, 0600
//! ca/lock           advisory lock: the CLI and the running node both change state.json
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::{self, LineEnding};
use sha2::{Digest, Sha256};
use wire::NodeId;

use crate::files::{self, FileError};
use crate::keys::{KeyError, KeySet};
use crate::record::Revocation;
use crate::spiffe::TrustDomain;
use crate::svid::{self, CertError, NodeCertificateRequest};
use crate::token::JoinToken;
use crate::verify::{BundleError, TrustBundle};

/// Default SVID lifetime: one hour, as SPIRE's default.
pub const DEFAULT_SVID_TTL_SECONDS: i64 = 3600;

/// Shortest SVID lifetime the CA issues; renewal at half-life must have time to happen.
pub const MIN_SVID_TTL_SECONDS: i64 = 5;

/// Longest join-token lifetime: a day. Tokens are bearer secrets; long-lived ones are a risk.
pub const MAX_TOKEN_TTL_SECONDS: i64 = 24 * 3600;

/// Most tokens kept (outstanding, plus expired ones within their retention); the cap
/// bounds state.json against a script that mints tokens in a loop.
pub const MAX_OUTSTANDING_TOKENS: usize = 10_000;

/// How long an expired token stays in state.json before it is pruned.
pub const EXPIRED_TOKEN_RETENTION_SECONDS: i64 = 7 * 24 * 3600;

/// PEM label of certificates.
const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file problem.
    #[error(transparent)]
    File(#[from] FileError),
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Certificate building failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The bundle is inconsistent.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// `ca init` on a directory that already has a CA.
    #[error("{0} already holds a CA; refusing to overwrite it")]
    Exists(PathBuf),
    /// No such token (never issued here, or pruned after expiry).
    #[error("join token unknown to this CA")]
    UnknownToken,
    /// The token's secret is wrong.
    #[error("join token secret does not match")]
    BadSecret,
    /// The token expired.
    #[error("join token expired")]
    TokenExpired,
    /// The token was already used.
    #[error("join token already used")]
    TokenUsed,
    /// Too many outstanding tokens.
    #[error("too many outstanding join tokens ({MAX_OUTSTANDING_TOKENS})")]
    TooManyTokens,
    /// The node is revoked.
    #[error("node {0} is revoked")]
    Revoked(NodeId),
    /// A lifetime outside the allowed range.
    #[error("{what} must be between {min} and {max} seconds, got {got}")]
    Ttl {
        /// Which lifetime.
        what: &'static str,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
        /// Given.
        got: i64,
    },
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CaState {
    tokens: Vec<TokenRecord>,
    revocations: Vec<RevocationRecord>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRecord {
    id: String,
    secret_sha256: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    used_by: Option<NodeId>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationRecord {
    node_id: NodeId,
    revoked_at: i64,
    /// The hybrid-signed revocation, hex.
    signed: String,
}

#[derive(Debug, serde::Serialize)]
struct IssuedLine<'a> {
    at: i64,
    serial: String,
    spiffe_id: String,
    not_before: i64,
    not_after: i64,
    reason: &'a str,
}

/// A trust domain's CA, loaded from its directory.
#[derive(Debug)]
pub struct CertificateAuthority {
    dir: PathBuf,
    trust_domain: TrustDomain,
    keys: KeySet,
    certificate: Vec<u8>,
}

impl CertificateAuthority {
    /// Creates a new CA for `trust_domain` in `dir` (created 0700 if missing).
    pub fn init(dir: &Path, trust_domain: TrustDomain, now: i64) -> Result<Self, CaError> {
        if dir.join("ca.crt").exists() || dir.join("ca.key").exists() {
            return Err(CaError::Exists(dir.to_path_buf()));
        }
        create_private_dir(dir)?;
        let keys = KeySet::generate()?;
        let certificate = svid::ca_certificate(
            &trust_domain,
            &keys.ed25519_pkcs8_der()?,
            &keys.public().ml_dsa_digest(),
            now,
            random_bytes()?,
        )?;
        keys.save(&dir.join("ca.key"), &dir.join("ca-mldsa.key"))?;
        let pem = pem::encode_string(CERTIFICATE_LABEL, LineEnding::LF, &certificate)
            .map_err(|error| KeyError::Encode(error.to_string()))?;
        files::write_private(&dir.join("ca.crt"), pem.as_bytes())?;
        let ca = CertificateAuthority {
            dir: dir.to_path_buf(),
            trust_domain,
            keys,
            certificate,
        };
        ca.store(&CaState::default())?;
        Ok(ca)
    }

    /// Loads the CA in `dir`.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let keys = KeySet::load(&dir.join("ca.key"), &dir.join("ca-mldsa.key"))?;
        let certificate = read_certificate_pem(&dir.join("ca.crt"))?;
        let path = dir.join("ca.crt");
        let (_, parsed) = x509_parser::parse_x509_certificate(&certificate)
            .map_err(|error| FileError::corrupt(&path, error))?;
        let uri = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                san.value.general_names.iter().find_map(|name| match name {
                    x509_parser::prelude::GeneralName::URI(uri) => Some(uri.to_string()),
                    _ => None,
                })
            })
            .ok_or_else(|| FileError::corrupt(&path, "no trust domain URI"))?;
        let domain = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| FileError::corrupt(&path, "trust domain URI is not spiffe://"))?;
        let trust_domain =
            TrustDomain::new(domain).map_err(|error| FileError::corrupt(&path, error))?;
        if parsed.public_key().subject_public_key.data.as_ref() != keys.public().ed25519 {
            return Err(FileError::corrupt(&path, "certificate is not for ca.key").into());
        }
        Ok(CertificateAuthority {
            dir: dir.to_path_buf(),
            trust_domain,
            keys,
            certificate,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The bundle every node of the domain trusts.
    pub fn bundle(&self) -> Result<TrustBundle, CaError> {
        Ok(TrustBundle::new(
            self.trust_domain.clone(),
            self.certificate.clone(),
            self.keys.public().ml_dsa.clone(),
        )?)
    }

    /// Mints a one-time join token valid for `ttl_seconds`, for a CA node reachable at
    /// `ca_address`.
    pub fn create_token(
        &self,
        ttl_seconds: i64,
        now: i64,
        ca_address: SocketAddr,
    ) -> Result<JoinToken, CaError> {
        check_ttl("token TTL", 1, MAX_TOKEN_TTL_SECONDS, ttl_seconds)?;
        let id: [u8; 8] = random_bytes()?;
        let secret: [u8; 16] = random_bytes()?;
        self.update(now, |state| {
            if state.tokens.len() >= MAX_OUTSTANDING_TOKENS {
                return Err(CaError::TooManyTokens);
            }
            state.tokens.push(TokenRecord {
                id: hex::encode(id),
                secret_sha256: hex::encode(Sha256::digest(secret)),
                created_at: now,
                expires_at: now + ttl_seconds,
                used_at: None,
                used_by: None,
            });
            Ok(())
        })?;
        Ok(JoinToken {
            id,
            secret,
            bundle_hash: self.bundle()?.hash(),
            ca_address,
        })
    }

    /// Redeems a token for a node certificate of `ed25519` + `ml_dsa_digest`. The token is
    /// marked used on disk before the certificate is returned, so it can never be used twice,
    /// even across a crash.
    pub fn redeem(
        &self,
        token_id: &[u8; 8],
        secret: &[u8; 16],
        ed25519: [u8; 32],
        ml_dsa_digest: [u8; 32],
        now: i64,
        ttl_seconds: i64,
    ) -> Result<Vec<u8>, CaError> {
        let node = NodeId::from_public_keys(&ed25519, &ml_dsa_digest);
        let id = hex::encode(token_id);
        let secret_hash = hex::encode(Sha256::digest(secret));
        self.update(now, |state| {
            if state
                .revocations
                .iter()
                .any(|revoked| revoked.node_id == node)
            {
                return Err(CaError::Revoked(node));
            }
            let token = state
                .tokens
                .iter_mut()
                .find(|token| token.id == id)
                .ok_or(CaError::UnknownToken)?;
            if !constant_time_eq(token.secret_sha256.as_bytes(), secret_hash.as_bytes()) {
                return Err(CaError::BadSecret);
            }
            if token.used_at.is_some() {
                return Err(CaError::TokenUsed);
            }
            if now >= token.expires_at {
                return Err(CaError::TokenExpired);
            }
            token.used_at = Some(now);
            token.used_by = Some(node);
            Ok(())
        })?;
        self.issue(ed25519, ml_dsa_digest, now, ttl_seconds, "join")
    }

    /// Issues a fresh certificate for a member renewing its SVID; the caller has verified the
    /// member's current certificate on the link the request came over.
    pub fn renew(
        &self,
        ed25519: [u8; 32],
        ml_dsa_digest: [u8; 32],
        now: i64,
        ttl_seconds: i64,
    ) -> Result<Vec<u8>, CaError> {
        let node = NodeId::from_public_keys(&ed25519, &ml_dsa_digest);
        if self
            .load_state()?
            .revocations
            .iter()
            .any(|revoked| revoked.node_id == node)
        {
            return Err(CaError::Revoked(node));
        }
        self.issue(ed25519, ml_dsa_digest, now, ttl_seconds, "renewal")
    }

    /// Issues a certificate without a token: for the CA node's own SVID (`ca init`).
    pub fn issue_own(&self, keys: &KeySet, now: i64, ttl_seconds: i64) -> Result<Vec<u8>, CaError> {
        self.issue(
            keys.public().ed25519,
            keys.public().ml_dsa_digest(),
            now,
            ttl_seconds,
            "ca-node",
        )
    }

    fn issue(
        &self,
        ed25519: [u8; 32],
        ml_dsa_digest: [u8; 32],
        now: i64,
        ttl_seconds: i64,
        reason: &str,
    ) -> Result<Vec<u8>, CaError> {
        check_ttl(
            "SVID TTL",
            MIN_SVID_TTL_SECONDS,
            30 * 24 * 3600,
            ttl_seconds,
        )?;
        let serial: [u8; 16] = random_bytes()?;
        let certificate = svid::node_certificate(
            &NodeCertificateRequest {
                trust_domain: &self.trust_domain,
                ed25519,
                ml_dsa_digest,
                now,
                ttl_seconds,
                serial,
            },
            &self.certificate,
            &self.keys.ed25519_pkcs8_der()?,
        )?;
        let spiffe_id = format!(
            "spiffe://{}/node/{}",
            self.trust_domain,
            NodeId::from_public_keys(&ed25519, &ml_dsa_digest)
        );
        let line = IssuedLine {
            at: now,
            serial: hex::encode(serial),
            spiffe_id,
            not_before: now - svid::BACKDATE_SECONDS,
            not_after: now + ttl_seconds,
            reason,
        };
        self.append_issued(&line)?;
        Ok(certificate)
    }

    /// Revokes `node`: records and returns the hybrid-signed revocation (the same bytes if it
    /// was already revoked).
    pub fn revoke(&self, node: NodeId, now: i64) -> Result<Vec<u8>, CaError> {
        let signed = Revocation {
            node_id: node,
            revoked_at: now,
        }
        .sign(&self.keys, self.trust_domain.as_str())?;
        let mut result = signed.clone();
        self.update(now, |state| {
            if let Some(existing) = state.revocations.iter().find(|r| r.node_id == node) {
                result = hex::decode(&existing.signed).map_err(|_| {
                    FileError::corrupt(&self.dir.join("state.json"), "revocation hex")
                })?;
                return Ok(());
            }
            state.revocations.push(RevocationRecord {
                node_id: node,
                revoked_at: now,
                signed: hex::encode(&signed),
            });
            Ok(())
        })?;
        Ok(result)
    }

    /// Signs a link policy for the whole mesh (see [`crate::SignedPolicy`]); refuses a text
    /// that does not parse as a policy.
    pub fn sign_policy(&self, text: &str, now_ms: u64) -> Result<Vec<u8>, CaError> {
        Ok(crate::SignedPolicy::sign(
            text,
            now_ms,
            &self.keys,
            self.trust_domain.as_str(),
        )?)
    }

    /// Every signed revocation this CA issued.
    pub fn revocations(&self) -> Result<Vec<Vec<u8>>, CaError> {
        let path = self.dir.join("state.json");
        self.load_state()?
            .revocations
            .iter()
            .map(|record| {
                hex::decode(&record.signed)
                    .map_err(|_| CaError::File(FileError::corrupt(&path, "revocation hex")))
            })
            .collect()
    }

    fn update(
        &self,
        now: i64,
        change: impl FnOnce(&mut CaState) -> Result<(), CaError>,
    ) -> Result<(), CaError> {
        let _lock = StateLock::acquire(&self.dir.join("lock"))?;
        let mut state = self.load_state()?;
        // Expired tokens can no longer be redeemed; they are kept a while so that a late
        // attempt hears "expired" rather than "unknown", then dropped (the issuance log keeps
        // the history).
        state.tokens.retain(|token| {
            token
                .expires_at
                .saturating_add(EXPIRED_TOKEN_RETENTION_SECONDS)
                > now
        });
        change(&mut state)?;
        self.store(&state)
    }

    fn load_state(&self) -> Result<CaState, CaError> {
        let path = self.dir.join("state.json");
        let bytes = files::read_secret(&path)?;
        serde_json::from_slice(&bytes).map_err(|error| FileError::corrupt(&path, error).into())
    }

    fn store(&self, state: &CaState) -> Result<(), CaError> {
        let path = self.dir.join("state.json");
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|error| FileError::corrupt(&path, error))?;
        Ok(files::write_private(&path, &bytes)?)
    }

    fn append_issued(&self, line: &IssuedLine<'_>) -> Result<(), CaError> {
        let path = self.dir.join("issued.jsonl");
        let io = |source| FileError::Io {
            path: path.clone(),
            source,
        };
        let mut text =
            serde_json::to_string(line).map_err(|error| FileError::corrupt(&path, error))?;
        text.push('\n');
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(())
    }

    /// Number of certificates issued so far (lines of the issuance log).
    pub fn issued_count(&self) -> Result<usize, CaError> {
        let path = self.dir.join("issued.jsonl");
        match files::read_secret(&path) {
            Ok(bytes) => Ok(bytes.iter().filter(|&&b| b == b'\n').count()),
            Err(FileError::Missing { .. }) => Ok(0),
            Err(error) => Err(error.into()),
        }
    }
}

/// Reads a PEM certificate file into DER.
pub fn read_certificate_pem(path: &Path) -> Result<Vec<u8>, FileError> {
    let bytes = files::read_public(path)?;
    let (label, der) = pem::decode_vec(&bytes)
        .map_err(|error| FileError::corrupt(path, format!("not PEM: {error}")))?;
    if label != CERTIFICATE_LABEL {
        return Err(FileError::corrupt(
            path,
            format!("PEM label is {label:?}, expected CERTIFICATE"),
        ));
    }
    Ok(der)
}

/// Writes DER as a PEM certificate file (0600: certificates are public, but the directory's
/// files are kept uniformly private).
pub fn write_certificate_pem(path: &Path, der: &[u8]) -> Result<(), FileError> {
    let pem = pem::encode_string(CERTIFICATE_LABEL, LineEnding::LF, der)
        .map_err(|error| FileError::corrupt(path, error))?;
    files::write_private(path, pem.as_bytes())
}

fn check_ttl(what: &'static str, min: i64, max: i64, got: i64) -> Result<(), CaError> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(CaError::Ttl {
            what,
            min,
            max,
            got,
        })
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| KeyError::Random(error.to_string()))?;
    Ok(bytes)
}

/// Constant-time comparison so the secret check leaks no timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| FileError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// An exclusive `flock` on the CA's lock file, released on drop (closing the file).
struct StateLock {
    _file: fs::File,
}

impl StateLock {
    fn acquire(path: &Path) -> Result<StateLock, FileError> {
        let io = |source| FileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a file descriptor we own; it blocks until the lock is free.
        let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if result != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        Ok(StateLock { _file: file })
    }
}
