//! `--sign-ogms`: real Ed25519 keys for the simulated routers, so a run can measure what
//! signed OGMs cost in CPU and whether they change convergence.
//!
//! Keys derive from the run seed and the node index (no random stream is drawn, so turning
//! signing on changes nothing else in the run), and Ed25519 signatures are deterministic, so a
//! signed run is as reproducible as an unsigned one. Unsigned runs still put the 64-byte
//! signature field of every OGM entry on the simulated wire (all zeros), so their byte
//! figures are those of a signed mesh.

use std::collections::HashMap;
use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use routing::{OgmAuth, OgmSigner, OgmVerifier, Verdict};
use wire::{NodeId, OgmSignature};

/// The signing key of node `index` in a run with `seed`.
fn signing_key(seed: u64, index: usize) -> SigningKey {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&seed.to_be_bytes());
    secret[8..16].copy_from_slice(&(index as u64).to_be_bytes());
    secret[16..].copy_from_slice(b"x0tta6bl4/sim/k1");
    SigningKey::from_bytes(&secret)
}

struct SimSigner(SigningKey);

impl OgmSigner for SimSigner {
    fn sign(&self, signed_part: &[u8]) -> OgmSignature {
        OgmSignature(self.0.sign(signed_part).to_bytes())
    }
}

/// Every simulated node's public key: the role the node directory plays in the daemon.
struct SimVerifier(Arc<HashMap<NodeId, VerifyingKey>>);

impl OgmVerifier for SimVerifier {
    fn verify(&self, originator: &NodeId, signed_part: &[u8], signature: &OgmSignature) -> Verdict {
        let Some(key) = self.0.get(originator) else {
            return Verdict::UnknownKey;
        };
        match key.verify_strict(signed_part, &Signature::from_bytes(&signature.0)) {
            Ok(()) => Verdict::Valid,
            Err(_) => Verdict::Bad,
        }
    }
}

/// One signer and verifier per node of `ids`, in order.
pub fn node_auths(seed: u64, ids: &[NodeId]) -> Vec<OgmAuth> {
    let keys: Vec<SigningKey> = (0..ids.len()).map(|i| signing_key(seed, i)).collect();
    let book: Arc<HashMap<NodeId, VerifyingKey>> = Arc::new(
        ids.iter()
            .zip(&keys)
            .map(|(id, key)| (*id, key.verifying_key()))
            .collect(),
    );
    keys.into_iter()
        .map(|key| OgmAuth {
            signer: Box::new(SimSigner(key)),
            verifier: Box::new(SimVerifier(book.clone())),
        })
        .collect()
}
