//! rustls configurations for mesh links: TLS 1.3 only, aws-lc-rs, X25519MLKEM768 key exchange
//! (optionally the only group allowed), SVIDs both ways, and per-connection recording of the
//! key-exchange group the handshake completed with.
//!
//! rustls wants key-exchange groups as `&'static` references, so a per-connection recorder
//! cannot be allocated per handshake. Instead a fixed pool of recorders is created once and
//! leased to a handshake for its duration; when the pool is exhausted the handshake proceeds
//! unrecorded (the group then shows as unknown).

use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ActiveKeyExchange, CryptoProvider, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, NamedGroup, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::keys::KeySet;
use crate::svid;
use crate::verify::{LinkVerifier, PeerCertError, VerifierState};

/// ALPN of mesh links (routing and data datagrams, record streams).
pub const ALPN_LINK: &[u8] = b"x6-link/1";
/// ALPN of a joining node asking the CA node for its first SVID (no client certificate).
pub const ALPN_JOIN: &[u8] = b"x6-join/1";
/// ALPN of a member renewing its SVID with the CA node.
pub const ALPN_RENEW: &[u8] = b"x6-renew/1";

/// Handshakes whose key-exchange group can be recorded at the same time. Links are set up a
/// few at a time; 256 concurrent handshakes is far beyond a node's neighbour count.
pub const KX_RECORDERS: usize = 256;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The node key could not be encoded.
    #[error(transparent)]
    Key(#[from] crate::KeyError),
}

/// The node's current certificate chain and key; swapped atomically when the SVID is renewed,
/// so new handshakes use the new certificate while existing links carry on.
#[derive(Debug, Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertStore {
    /// A store holding `svid` (DER) with the CA certificate as its chain, signed by `keys`.
    pub fn new(
        keys: &KeySet,
        svid: &[u8],
        ca_certificate: &[u8],
    ) -> Result<Arc<CertStore>, TlsError> {
        let store = Arc::new(CertStore::default());
        store.replace(keys, svid, ca_certificate)?;
        Ok(store)
    }

    /// An empty store: a joining node, which has no certificate yet.
    pub fn empty() -> Arc<CertStore> {
        Arc::new(CertStore::default())
    }

    /// Installs a new certificate.
    pub fn replace(
        &self,
        keys: &KeySet,
        svid: &[u8],
        ca_certificate: &[u8],
    ) -> Result<(), TlsError> {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(keys.ed25519_pkcs8_der()?));
        let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)?;
        let chain = vec![
            CertificateDer::from(svid.to_vec()),
            CertificateDer::from(ca_certificate.to_vec()),
        ];
        let certified = Arc::new(CertifiedKey::new(chain, signing));
        *self
            .current
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(certified);
        Ok(())
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

impl ResolvesClientCert for CertStore {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
    fn has_certs(&self) -> bool {
        self.get().is_some()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

/// Key-exchange settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KxPolicy {
    /// Allow only X25519MLKEM768 (no classical fallback).
    pub pq_only: bool,
}

/// One recorder: the slot a handshake writes its group into, and the two wrapped groups.
struct Recorder {
    slot: &'static Mutex<Option<NamedGroup>>,
    hybrid: &'static RecordingGroup,
    classic: &'static RecordingGroup,
}

#[derive(Debug)]
struct RecordingGroup {
    inner: &'static dyn SupportedKxGroup,
    slot: &'static Mutex<Option<NamedGroup>>,
}

struct RecordingExchange {
    inner: Box<dyn ActiveKeyExchange>,
    slot: &'static Mutex<Option<NamedGroup>>,
}

impl SupportedKxGroup for RecordingGroup {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        Ok(Box::new(RecordingExchange {
            inner: self.inner.start()?,
            slot: self.slot,
        }))
    }
    /// The server side of a KEM group encapsulates rather than doing a Diffie-Hellman, so this
    /// must go to the inner group's own implementation.
    fn start_and_complete(
        &self,
        peer_pub_key: &[u8],
    ) -> Result<rustls::crypto::CompletedKeyExchange, rustls::Error> {
        let completed = self.inner.start_and_complete(peer_pub_key)?;
        *self
            .slot
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(completed.group);
        Ok(completed)
    }
    fn name(&self) -> NamedGroup {
        self.inner.name()
    }
    fn fips(&self) -> bool {
        self.inner.fips()
    }
    fn usable_for_version(&self, version: rustls::ProtocolVersion) -> bool {
        self.inner.usable_for_version(version)
    }
}

impl ActiveKeyExchange for RecordingExchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let group = self.inner.group();
        let secret = self.inner.complete(peer_pub_key)?;
        *self
            .slot
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(group);
        Ok(secret)
    }
    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        self.inner.hybrid_component()
    }
    fn complete_hybrid_component(
        self: Box<Self>,
        peer_pub_key: &[u8],
    ) -> Result<SharedSecret, rustls::Error> {
        let component = self.inner.hybrid_component().map(|(group, _)| group);
        let secret = self.inner.complete_hybrid_component(peer_pub_key)?;
        *self
            .slot
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = component;
        Ok(secret)
    }
    fn pub_key(&self) -> &[u8] {
        self.inner.pub_key()
    }
    fn group(&self) -> NamedGroup {
        self.inner.group()
    }
}

struct RecorderPool {
    recorders: Vec<Recorder>,
    free: Mutex<Vec<usize>>,
}

fn pool() -> &'static RecorderPool {
    static POOL: OnceLock<RecorderPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let recorders = (0..KX_RECORDERS)
            .map(|_| {
                // Leaked once per process (KX_RECORDERS of each): rustls requires 'static groups.
                let slot: &'static Mutex<Option<NamedGroup>> =
                    Box::leak(Box::new(Mutex::new(None)));
                let wrap = |inner| -> &'static RecordingGroup {
                    Box::leak(Box::new(RecordingGroup { inner, slot }))
                };
                Recorder {
                    slot,
                    hybrid: wrap(rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768),
                    classic: wrap(rustls::crypto::aws_lc_rs::kx_group::X25519),
                }
            })
            .collect();
        RecorderPool {
            recorders,
            free: Mutex::new((0..KX_RECORDERS).collect()),
        }
    })
}

/// A recorder leased to one handshake; returned to the pool on drop.
pub struct KxLease {
    index: Option<usize>,
}

impl std::fmt::Debug for KxLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KxLease({:?})", self.index)
    }
}

impl KxLease {
    /// Leases a recorder (or none when all are in use).
    pub fn acquire() -> KxLease {
        let pool = pool();
        let index = pool
            .free
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .pop();
        if let Some(index) = index
            && let Some(recorder) = pool.recorders.get(index)
        {
            *recorder
                .slot
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()) = None;
        }
        KxLease { index }
    }

    /// The group the handshake completed with, if it was recorded.
    pub fn group(&self) -> Option<NamedGroup> {
        let recorder = pool().recorders.get(self.index?)?;
        *recorder
            .slot
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn groups(&self, policy: KxPolicy) -> Vec<&'static dyn SupportedKxGroup> {
        use rustls::crypto::aws_lc_rs::kx_group;
        match self.index.and_then(|index| pool().recorders.get(index)) {
            Some(recorder) if policy.pq_only => vec![recorder.hybrid],
            Some(recorder) => vec![recorder.hybrid, recorder.classic],
            None if policy.pq_only => vec![kx_group::X25519MLKEM768],
            None => vec![kx_group::X25519MLKEM768, kx_group::X25519],
        }
    }
}

impl Drop for KxLease {
    fn drop(&mut self) {
        if let Some(index) = self.index {
            pool()
                .free
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .push(index);
        }
    }
}

/// A human name for a key-exchange group.
pub fn group_name(group: Option<NamedGroup>) -> String {
    match group {
        Some(NamedGroup::X25519MLKEM768) => "X25519MLKEM768".to_string(),
        Some(NamedGroup::X25519) => "X25519".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    }
}

fn provider(lease: &KxLease, policy: KxPolicy) -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = lease.groups(policy);
    Arc::new(provider)
}

/// Client configuration for dialling a member (`alpn` = [`ALPN_LINK`] or [`ALPN_RENEW`]);
/// `expected` pins the node the dialler means to reach.
pub fn client_config(
    state: &Arc<VerifierState>,
    certificate: &Arc<CertStore>,
    lease: &KxLease,
    policy: KxPolicy,
    expected: Option<wire::NodeId>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let verifier = Arc::new(LinkVerifier::new(state.clone(), expected, false));
    let mut config = rustls::ClientConfig::builder_with_provider(provider(lease, policy))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Server configuration of a node. Client certificates are mandatory unless the node is the
/// CA node, which must let joining nodes (without certificates) ask for one; the node then
/// refuses certificate-less connections anything but [`ALPN_JOIN`].
pub fn server_config(
    state: &Arc<VerifierState>,
    certificate: &Arc<CertStore>,
    lease: &KxLease,
    policy: KxPolicy,
    accepts_joins: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let verifier = Arc::new(LinkVerifier::new(state.clone(), None, accepts_joins));
    let mut config = rustls::ServerConfig::builder_with_provider(provider(lease, policy))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate.clone());
    config.alpn_protocols = if accepts_joins {
        vec![ALPN_LINK.to_vec(), ALPN_RENEW.to_vec(), ALPN_JOIN.to_vec()]
    } else {
        vec![ALPN_LINK.to_vec()]
    };
    Ok(config)
}

/// Client configuration of a joining node: no client certificate; the server must present a
/// node certificate chained to a CA certificate whose SHA-256 is `pinned_ca_hash`.
pub fn join_client_config(pinned_ca_hash: [u8; 32]) -> Result<rustls::ClientConfig, TlsError> {
    let lease = KxLease { index: None };
    let mut config =
        rustls::ClientConfig::builder_with_provider(provider(&lease, KxPolicy::default()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier {
                pinned_ca_hash,
                algorithms: rustls::crypto::aws_lc_rs::default_provider()
                    .signature_verification_algorithms,
            }))
            .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_JOIN.to_vec()];
    Ok(config)
}

/// Verifies the CA node for a joining node, which knows only the CA certificate's hash.
#[derive(Debug)]
struct PinnedCaVerifier {
    pinned_ca_hash: [u8; 32],
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refuse = crate::verify::to_rustls;
        let ca = intermediates
            .iter()
            .find(|certificate| {
                <[u8; 32]>::from(Sha256::digest(certificate.as_ref())) == self.pinned_ca_hash
            })
            .ok_or_else(|| refuse(PeerCertError::UnknownCa))?;
        let anchor = webpki::anchor_from_trusted_cert(ca)
            .map_err(|error| refuse(PeerCertError::Chain(error.to_string())))?;
        let certificate = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|error| refuse(PeerCertError::Malformed(error.to_string())))?;
        certificate
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &[anchor],
                &[],
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(|error| refuse(PeerCertError::Chain(format!("{error:?}"))))?;
        svid::read_node_certificate(end_entity)
            .map_err(|error| refuse(PeerCertError::Malformed(error.to_string())))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(crate::verify::tls12_refused())
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
