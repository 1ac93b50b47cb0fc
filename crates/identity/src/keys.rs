//! A node's key set — Ed25519 plus ML-DSA-65 — its hybrid signatures, and the identifiers
//! derived from its public keys.
//!
//! A hybrid signature is both signatures over the same tagged message; verification requires
//! both, so forging one means breaking Ed25519 *and* ML-DSA-65.

use std::path::Path;

use aws_lc_rs::signature::{
    KeyPair as _, ML_DSA_65, ML_DSA_65_SIGNING, PqdsaKeyPair, UnparsedPublicKey,
};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};
use wire::NodeId;

use crate::files::{self, FileError};

/// Ed25519 public key size.
pub const ED25519_PUBLIC_BYTES: usize = 32;
/// Ed25519 signature size.
pub const ED25519_SIGNATURE_BYTES: usize = 64;
/// ML-DSA-65 public key size (FIPS 204).
pub const ML_DSA_PUBLIC_BYTES: usize = 1952;
/// ML-DSA-65 signature size (FIPS 204).
pub const ML_DSA_SIGNATURE_BYTES: usize = 3309;
/// Size of an encoded hybrid signature: Ed25519 then ML-DSA-65.
pub const HYBRID_SIGNATURE_BYTES: usize = ED25519_SIGNATURE_BYTES + ML_DSA_SIGNATURE_BYTES;

/// Prefix of every hybrid-signed message, so a hybrid signature can never be replayed as a
/// signature of another protocol that uses the same keys (TLS, OGMs).
const HYBRID_CONTEXT: &[u8] = b"x0tta6bl4/hybrid-signature/v1\0";

/// PEM label of both private key files (PKCS#8).
const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";

/// Why keys or a signature were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The encoded signature has the wrong length.
    #[error("hybrid signature must be {HYBRID_SIGNATURE_BYTES} bytes, got {0}")]
    Length(usize),
    /// The Ed25519 half does not verify.
    #[error("the Ed25519 half of the hybrid signature does not verify")]
    Ed25519,
    /// The ML-DSA-65 half does not verify.
    #[error("the ML-DSA-65 half of the hybrid signature does not verify")]
    MlDsa,
    /// A public key is malformed.
    #[error("malformed {0} public key")]
    PublicKey(&'static str),
}

/// The public half of a node's (or the CA's) key set.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKeys {
    /// Ed25519 public key: signs OGMs and TLS handshakes.
    pub ed25519: [u8; ED25519_PUBLIC_BYTES],
    /// ML-DSA-65 public key, raw (1,952 bytes).
    pub ml_dsa: Vec<u8>,
}

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKeys({})", self.fingerprint())
    }
}

impl PublicKeys {
    /// SHA-256 of the ML-DSA-65 public key, the form in which it enters the node id and the
    /// SVID.
    pub fn ml_dsa_digest(&self) -> [u8; 32] {
        Sha256::digest(&self.ml_dsa).into()
    }

    /// The node id these keys derive.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_public_keys(&self.ed25519, &self.ml_dsa_digest())
    }

    /// A short human fingerprint: `ed25519:<16 hex> ml-dsa-65:<16 hex>` (first 8 bytes of
    /// SHA-256 of each key).
    pub fn fingerprint(&self) -> String {
        format!(
            "ed25519:{} ml-dsa-65:{}",
            hex::encode(&Sha256::digest(self.ed25519)[..8]),
            hex::encode(&self.ml_dsa_digest()[..8])
        )
    }

    /// Verifies a hybrid signature of `message`: both halves must verify.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        if signature.len() != HYBRID_SIGNATURE_BYTES {
            return Err(SignatureError::Length(signature.len()));
        }
        let (ed_half, ml_half) = signature.split_at(ED25519_SIGNATURE_BYTES);
        let tagged = tagged(message);
        let verifying = VerifyingKey::from_bytes(&self.ed25519)
            .map_err(|_| SignatureError::PublicKey("Ed25519"))?;
        let ed_signature =
            ed25519_dalek::Signature::from_slice(ed_half).map_err(|_| SignatureError::Ed25519)?;
        verifying
            .verify_strict(&tagged, &ed_signature)
            .map_err(|_| SignatureError::Ed25519)?;
        if self.ml_dsa.len() != ML_DSA_PUBLIC_BYTES {
            return Err(SignatureError::PublicKey("ML-DSA-65"));
        }
        UnparsedPublicKey::new(&ML_DSA_65, &self.ml_dsa)
            .verify(&tagged, ml_half)
            .map_err(|_| SignatureError::MlDsa)
    }

    /// Verifies a plain Ed25519 signature (used for OGMs, where 3.3 KB ML-DSA signatures per
    /// message would swamp the links).
    pub fn verify_ed25519(
        &self,
        message: &[u8],
        signature: &[u8; ED25519_SIGNATURE_BYTES],
    ) -> Result<(), SignatureError> {
        let verifying = VerifyingKey::from_bytes(&self.ed25519)
            .map_err(|_| SignatureError::PublicKey("Ed25519"))?;
        verifying
            .verify(message, &ed25519_dalek::Signature::from_bytes(signature))
            .map_err(|_| SignatureError::Ed25519)
    }
}

/// A key set with its secrets. Never printed: `Debug` shows the public fingerprint only.
pub struct KeySet {
    ed25519: SigningKey,
    ml_dsa: PqdsaKeyPair,
    public: PublicKeys,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySet({})", self.public.fingerprint())
    }
}

impl KeySet {
    /// Generates a fresh key set from the operating system's random number generator.
    pub fn generate() -> Result<KeySet, KeyError> {
        let mut ed_secret = [0u8; 32];
        getrandom::fill(&mut ed_secret).map_err(|error| KeyError::Random(error.to_string()))?;
        let ml_dsa = PqdsaKeyPair::generate(&ML_DSA_65_SIGNING).map_err(|_| KeyError::Generate)?;
        Ok(KeySet::from_parts(
            SigningKey::from_bytes(&ed_secret),
            ml_dsa,
        ))
    }

    fn from_parts(ed25519: SigningKey, ml_dsa: PqdsaKeyPair) -> KeySet {
        let public = PublicKeys {
            ed25519: ed25519.verifying_key().to_bytes(),
            ml_dsa: ml_dsa.public_key().as_ref().to_vec(),
        };
        KeySet {
            ed25519,
            ml_dsa,
            public,
        }
    }

    /// The public keys.
    pub fn public(&self) -> &PublicKeys {
        &self.public
    }

    /// The node id derived from the public keys.
    pub fn node_id(&self) -> NodeId {
        self.public.node_id()
    }

    /// The Ed25519 half, for TLS and OGM signatures.
    pub fn ed25519(&self) -> &SigningKey {
        &self.ed25519
    }

    /// The Ed25519 secret as PKCS#8 DER, the form rustls and rcgen load.
    pub fn ed25519_pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        self.ed25519
            .to_pkcs8_der()
            .map(|document| document.as_bytes().to_vec())
            .map_err(|error| KeyError::Encode(error.to_string()))
    }

    /// Hybrid signature of `message`: Ed25519 (64 B) then ML-DSA-65 (3,309 B).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let tagged = tagged(message);
        let mut signature = vec![0u8; HYBRID_SIGNATURE_BYTES];
        signature[..ED25519_SIGNATURE_BYTES]
            .copy_from_slice(&self.ed25519.sign(&tagged).to_bytes());
        let written = self
            .ml_dsa
            .sign(&tagged, &mut signature[ED25519_SIGNATURE_BYTES..])
            .map_err(|_| KeyError::Sign)?;
        if written != ML_DSA_SIGNATURE_BYTES {
            return Err(KeyError::Sign);
        }
        Ok(signature)
    }

    /// Plain Ed25519 signature of `message` (OGMs).
    pub fn sign_ed25519(&self, message: &[u8]) -> [u8; ED25519_SIGNATURE_BYTES] {
        self.ed25519.sign(message).to_bytes()
    }

    /// Writes the two private keys as PKCS#8 PEM files, mode 0600.
    pub fn save(&self, ed25519_path: &Path, ml_dsa_path: &Path) -> Result<(), KeyError> {
        let ed_pem = self
            .ed25519
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| KeyError::Encode(error.to_string()))?;
        files::write_private(ed25519_path, ed_pem.as_bytes())?;
        let ml_der = self
            .ml_dsa
            .to_pkcs8v1()
            .map_err(|_| KeyError::Encode("ML-DSA-65 PKCS#8".to_string()))?;
        let ml_pem = ed25519_dalek::pkcs8::spki::der::pem::encode_string(
            PRIVATE_KEY_LABEL,
            LineEnding::LF,
            ml_der.as_ref(),
        )
        .map_err(|error| KeyError::Encode(error.to_string()))?;
        files::write_private(ml_dsa_path, ml_pem.as_bytes())?;
        Ok(())
    }

    /// Loads the two private key files written by [`KeySet::save`].
    pub fn load(ed25519_path: &Path, ml_dsa_path: &Path) -> Result<KeySet, KeyError> {
        let ed_bytes = files::read_secret(ed25519_path)?;
        let ed_text = std::str::from_utf8(&ed_bytes)
            .map_err(|_| FileError::corrupt(ed25519_path, "not a PEM text file"))?;
        let ed25519 = SigningKey::from_pkcs8_pem(ed_text).map_err(|error| {
            FileError::corrupt(
                ed25519_path,
                format!("not an Ed25519 PKCS#8 PEM private key: {error}"),
            )
        })?;
        let ml_bytes = files::read_secret(ml_dsa_path)?;
        let (label, ml_der) = ed25519_dalek::pkcs8::spki::der::pem::decode_vec(&ml_bytes)
            .map_err(|error| FileError::corrupt(ml_dsa_path, format!("not PEM: {error}")))?;
        if label != PRIVATE_KEY_LABEL {
            return Err(FileError::corrupt(
                ml_dsa_path,
                format!("PEM label is {label:?}, expected {PRIVATE_KEY_LABEL:?}"),
            )
            .into());
        }
        let ml_dsa = PqdsaKeyPair::from_pkcs8(&ML_DSA_65_SIGNING, &ml_der).map_err(|error| {
            FileError::corrupt(
                ml_dsa_path,
                format!("not an ML-DSA-65 PKCS#8 private key: {error}"),
            )
        })?;
        Ok(KeySet::from_parts(ed25519, ml_dsa))
    }
}

/// Why keys could not be made, stored, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file problem (missing, unreadable, too open, corrupt).
    #[error(transparent)]
    File(#[from] FileError),
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes for a key: {0}")]
    Random(String),
    /// Key generation failed inside the crypto library.
    #[error("ML-DSA-65 key generation failed")]
    Generate,
    /// Encoding a key failed.
    #[error("cannot encode a key: {0}")]
    Encode(String),
    /// Signing failed inside the crypto library.
    #[error("ML-DSA-65 signing failed")]
    Sign,
}

fn tagged(message: &[u8]) -> Vec<u8> {
    let mut tagged = Vec::with_capacity(HYBRID_CONTEXT.len() + message.len());
    tagged.extend_from_slice(HYBRID_CONTEXT);
    tagged.extend_from_slice(message);
    tagged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_signatures_verify_and_any_flipped_bit_in_either_half_fails() {
        let keys = KeySet::generate().expect("keys");
        let signature = keys.sign(b"config file").expect("sign");
        assert_eq!(signature.len(), HYBRID_SIGNATURE_BYTES);
        keys.public()
            .verify(b"config file", &signature)
            .expect("verifies");
        assert_eq!(
            keys.public().verify(b"config filE", &signature),
            Err(SignatureError::Ed25519)
        );
        // Every bit of the Ed25519 half, and a spread of bits across the ML-DSA half.
        for bit in (0..ED25519_SIGNATURE_BYTES * 8)
            .chain((ED25519_SIGNATURE_BYTES * 8..HYBRID_SIGNATURE_BYTES * 8).step_by(97))
        {
            let mut forged = signature.clone();
            forged[bit / 8] ^= 1 << (bit % 8);
            let expected = if bit < ED25519_SIGNATURE_BYTES * 8 {
                SignatureError::Ed25519
            } else {
                SignatureError::MlDsa
            };
            assert_eq!(
                keys.public().verify(b"config file", &forged),
                Err(expected),
                "bit {bit}"
            );
        }
        assert_eq!(
            keys.public().verify(b"config file", &signature[1..]),
            Err(SignatureError::Length(HYBRID_SIGNATURE_BYTES - 1))
        );
    }

    #[test]
    fn another_key_sets_signature_fails_both_halves() {
        let alice = KeySet::generate().expect("keys");
        let mallory = KeySet::generate().expect("keys");
        let signature = mallory.sign(b"m").expect("sign");
        assert!(alice.public().verify(b"m", &signature).is_err());
        // Ed25519 half of the right signer with Mallory's ML-DSA half: still refused.
        let mut spliced = alice.sign(b"m").expect("sign");
        spliced[ED25519_SIGNATURE_BYTES..].copy_from_slice(&signature[ED25519_SIGNATURE_BYTES..]);
        assert_eq!(
            alice.public().verify(b"m", &spliced),
            Err(SignatureError::MlDsa)
        );
    }

    #[test]
    fn keys_round_trip_through_files_and_bad_files_name_themselves() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ed = dir.path().join("node.key");
        let ml = dir.path().join("node-mldsa.key");
        let keys = KeySet::generate().expect("keys");
        keys.save(&ed, &ml).expect("save");
        let loaded = KeySet::load(&ed, &ml).expect("load");
        assert_eq!(loaded.public(), keys.public());
        assert_eq!(loaded.node_id(), keys.node_id());
        let signature = loaded.sign(b"x").expect("sign");
        keys.public().verify(b"x", &signature).expect("same keys");

        std::fs::write(
            &ml,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("corrupt");
        let error = KeySet::load(&ed, &ml).expect_err("corrupt");
        assert!(error.to_string().contains("node-mldsa.key"), "{error}");
        assert!(error.to_string().contains("corrupt"), "{error}");
        std::fs::remove_file(&ed).expect("remove");
        let error = KeySet::load(&ed, &ml).expect_err("missing");
        assert!(error.to_string().contains("node.key"), "{error}");
    }
}
