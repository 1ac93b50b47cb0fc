//! The cryptography of a session, all on aws-lc-rs: ephemeral X25519 and ML-KEM-768 keys,
//! Ed25519 handshake signatures, the transcript hash, the HKDF key schedule and the
//! AES-256-GCM packet seal.
//!
//! Both key exchanges feed one HKDF, so the session keys stay secret unless *both* X25519 and
//! ML-KEM-768 are broken; the transcript hash is the HKDF salt, so both sides derive the same
//! keys only if they saw the same messages.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, PrivateKey, X25519};
use aws_lc_rs::digest;
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, EncapsulationKey, ML_KEM_768};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use wire::NodeId;

use crate::packet::{self, Init, Response, TAG_BYTES, X25519_PUBLIC_BYTES};
use crate::rng::RngSource;

/// Prefix of the signed initiation, so the signature cannot be taken for any other message
/// signed with the node key (TLS, OGMs, responses).
const INIT_CONTEXT: &[u8] = b"x0tta6bl4/session-init/v1\0";
/// Prefix of the signed response.
const RESPONSE_CONTEXT: &[u8] = b"x0tta6bl4/session-response/v1\0";
/// Prefix of the transcript hash.
const TRANSCRIPT_CONTEXT: &[u8] = b"x0tta6bl4/session-transcript/v1\0";
/// HKDF info of the initiator-to-responder key.
const INFO_I2R: &[u8] = b"x0tta6bl4/session/v1 initiator to responder";
/// HKDF info of the responder-to-initiator key.
const INFO_R2I: &[u8] = b"x0tta6bl4/session/v1 responder to initiator";

/// A cryptographic operation failed: a peer's public value was rejected, or the library failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cryptographic operation failed: {0}")]
pub struct CryptoError(pub &'static str);

/// Signs handshakes with the local node key.
///
/// Implemented for the node's [`identity::KeySet`]; anything else implementing it must sign
/// with the Ed25519 key that the node's record publishes.
pub trait NodeSigner {
    /// The local node.
    fn node_id(&self) -> NodeId;
    /// Ed25519 signature of `message` by the node key.
    fn sign_ed25519(&self, message: &[u8]) -> [u8; 64];
}

impl NodeSigner for identity::KeySet {
    fn node_id(&self) -> NodeId {
        identity::KeySet::node_id(self)
    }

    fn sign_ed25519(&self, message: &[u8]) -> [u8; 64] {
        identity::KeySet::sign_ed25519(self, message)
    }
}

impl<T: NodeSigner + ?Sized> NodeSigner for std::sync::Arc<T> {
    fn node_id(&self) -> NodeId {
        (**self).node_id()
    }

    fn sign_ed25519(&self, message: &[u8]) -> [u8; 64] {
        (**self).sign_ed25519(message)
    }
}

/// A peer's long-term public identity as the node directory verified it from the peer's node
/// record: the Ed25519 key that signs handshakes and the ML-DSA-65 key digest that, with it,
/// derives the peer's node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Ed25519 public key.
    pub ed25519: [u8; 32],
    /// SHA-256 of the ML-DSA-65 public key.
    pub ml_dsa_digest: [u8; 32],
}

impl From<&identity::PublicKeys> for PeerIdentity {
    fn from(keys: &identity::PublicKeys) -> PeerIdentity {
        PeerIdentity {
            ed25519: keys.ed25519,
            ml_dsa_digest: keys.ml_dsa_digest(),
        }
    }
}

impl PeerIdentity {
    /// Whether these keys derive `node`: a directory answering with another node's keys is
    /// caught here instead of authenticating the wrong peer.
    pub fn derives(&self, node: &NodeId) -> bool {
        NodeId::from_public_keys(&self.ed25519, &self.ml_dsa_digest) == *node
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.ed25519)
            .verify(message, signature)
            .is_ok()
    }
}

/// The secret half of a handshake in progress on one side.
pub struct Ephemeral {
    x25519: PrivateKey,
    /// The X25519 public key sent to the peer.
    pub x25519_public: [u8; X25519_PUBLIC_BYTES],
}

impl Ephemeral {
    /// An X25519 key from 32 bytes of `rng`, so tests decide it.
    pub fn generate(rng: &mut dyn RngSource) -> Result<Ephemeral, CryptoError> {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed)
            .map_err(|_| CryptoError("random source failed"))?;
        let x25519 = PrivateKey::from_private_key(&X25519, &seed)
            .map_err(|_| CryptoError("x25519 private key"))?;
        let public = x25519
            .compute_public_key()
            .map_err(|_| CryptoError("x25519 public key"))?;
        let mut x25519_public = [0u8; X25519_PUBLIC_BYTES];
        if public.as_ref().len() != X25519_PUBLIC_BYTES {
            return Err(CryptoError("x25519 public key size"));
        }
        x25519_public.copy_from_slice(public.as_ref());
        Ok(Ephemeral {
            x25519,
            x25519_public,
        })
    }

    /// X25519 with the peer's public key. aws-lc refuses low-order points (an all-zero
    /// secret), which would otherwise let a man in the middle fix this half of the secret.
    pub fn agree(&self, peer_public: &[u8; X25519_PUBLIC_BYTES]) -> Result<[u8; 32], CryptoError> {
        agreement::agree(
            &self.x25519,
            agreement::UnparsedPublicKey::new(&X25519, peer_public),
            CryptoError("x25519 agreement"),
            |secret| {
                let mut out = [0u8; 32];
                if secret.len() != out.len() {
                    return Err(CryptoError("x25519 secret size"));
                }
                out.copy_from_slice(secret);
                Ok(out)
            },
        )
    }
}

/// An initiator's ML-KEM-768 decapsulation key. aws-lc-rs draws it from the OS generator: its
/// stable API has no seeded generation.
pub struct KemSecret {
    key: DecapsulationKey,
    /// The encapsulation key sent to the responder.
    pub encapsulation_key: Vec<u8>,
}

impl KemSecret {
    /// A fresh ML-KEM-768 key pair.
    pub fn generate() -> Result<KemSecret, CryptoError> {
        let key = DecapsulationKey::generate(&ML_KEM_768)
            .map_err(|_| CryptoError("ml-kem key generation"))?;
        let encapsulation_key = key
            .encapsulation_key()
            .and_then(|ek| ek.key_bytes())
            .map_err(|_| CryptoError("ml-kem encapsulation key"))?
            .as_ref()
            .to_vec();
        Ok(KemSecret {
            key,
            encapsulation_key,
        })
    }

    /// The shared secret in `ciphertext`. ML-KEM decapsulation of a tampered ciphertext
    /// yields an unrelated secret (implicit rejection), which then fails the signature or AEAD.
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<[u8; 32], CryptoError> {
        let secret = self
            .key
            .decapsulate(Ciphertext::from(ciphertext))
            .map_err(|_| CryptoError("ml-kem decapsulation"))?;
        to_array(secret.as_ref(), "ml-kem secret size")
    }
}

/// Encapsulates a fresh secret to `encapsulation_key`: (ciphertext, secret).
pub fn encapsulate(encapsulation_key: &[u8]) -> Result<(Vec<u8>, [u8; 32]), CryptoError> {
    let key = EncapsulationKey::new(&ML_KEM_768, encapsulation_key)
        .map_err(|_| CryptoError("ml-kem encapsulation key rejected"))?;
    let (ciphertext, secret) = key
        .encapsulate()
        .map_err(|_| CryptoError("ml-kem encapsulation"))?;
    Ok((
        ciphertext.as_ref().to_vec(),
        to_array(secret.as_ref(), "ml-kem secret size")?,
    ))
}

fn to_array(bytes: &[u8], what: &'static str) -> Result<[u8; 32], CryptoError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| CryptoError(what))
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Signs an initiation (everything but its signature field).
pub fn sign_init(signer: &dyn NodeSigner, init: &Init) -> [u8; 64] {
    signer.sign_ed25519(&[INIT_CONTEXT, &init.signed_bytes()].concat())
}

/// Whether `init` carries a valid signature of `peer`.
pub fn verify_init(peer: &PeerIdentity, init: &Init) -> bool {
    peer.verify(
        &[INIT_CONTEXT, &init.signed_bytes()].concat(),
        &init.signature,
    )
}

/// Signs a response: it covers the whole initiation (by hash), so it binds both ephemeral
/// key sets, both node ids and the timestamp, not just the responder's own values.
pub fn sign_response(signer: &dyn NodeSigner, init_bytes: &[u8], response: &Response) -> [u8; 64] {
    signer.sign_ed25519(&response_message(init_bytes, response))
}

/// Whether `response` carries a valid signature of `peer` for the initiation `init_bytes`.
pub fn verify_response(peer: &PeerIdentity, init_bytes: &[u8], response: &Response) -> bool {
    peer.verify(&response_message(init_bytes, response), &response.signature)
}

fn response_message(init_bytes: &[u8], response: &Response) -> Vec<u8> {
    [
        RESPONSE_CONTEXT,
        &sha256(&[init_bytes]),
        &response.signed_bytes(),
    ]
    .concat()
}

/// The two directional keys of a session.
pub struct SessionKeys {
    /// Initiator to responder.
    pub initiator_to_responder: [u8; 32],
    /// Responder to initiator.
    pub responder_to_initiator: [u8; 32],
}

/// HKDF-SHA256 with the transcript hash as salt over both shared secrets.
pub fn derive_keys(
    x25519_secret: &[u8; 32],
    ml_kem_secret: &[u8; 32],
    init_bytes: &[u8],
    response_bytes: &[u8],
) -> Result<SessionKeys, CryptoError> {
    let transcript = sha256(&[TRANSCRIPT_CONTEXT, init_bytes, response_bytes]);
    let prk = Salt::new(HKDF_SHA256, &transcript)
        .extract(&[x25519_secret.as_slice(), ml_kem_secret.as_slice()].concat());
    let expand = |info: &[u8]| {
        let mut key = [0u8; 32];
        prk.expand(&[info], HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| CryptoError("hkdf expand"))?;
        Ok::<_, CryptoError>(key)
    };
    Ok(SessionKeys {
        initiator_to_responder: expand(INFO_I2R)?,
        responder_to_initiator: expand(INFO_R2I)?,
    })
}

/// An AES-256-GCM key of one direction. AES-GCM rather than ChaCha20-Poly1305: with the AES
/// and carry-less multiply instructions of current x86 and ARM cores it seals about three times
/// as many bytes per cycle, and every byte of overlay data passes it at both ends.
pub struct PacketKey {
    key: LessSafeKey,
}

impl PacketKey {
    /// Wraps a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Result<PacketKey, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError("aead key"))?;
        Ok(PacketKey {
            key: LessSafeKey::new(unbound),
        })
    }

    /// A data packet: header (the associated data), ciphertext, tag.
    pub fn seal(
        &self,
        receiver_index: u32,
        counter: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let header = packet::data_header(receiver_index, counter);
        let mut out = Vec::with_capacity(header.len() + plaintext.len() + TAG_BYTES);
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce(counter),
                Aad::from(&header),
                &mut out[header.len()..],
            )
            .map_err(|_| CryptoError("aead seal"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The plaintext of a data packet, or an error if any byte of it was changed.
    pub fn open(&self, header: &[u8], counter: u64, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buffer = sealed.to_vec();
        let length = self
            .key
            .open_in_place(nonce(counter), Aad::from(header), &mut buffer)
            .map_err(|_| CryptoError("aead open"))?
            .len();
        buffer.truncate(length);
        Ok(buffer)
    }
}

/// 96-bit nonce: four zero bytes, then the counter big-endian. Each key sends each counter
/// once, so a nonce never repeats under one key.
fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}
