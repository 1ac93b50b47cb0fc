//! The node's side of signed OGMs: its Ed25519 key signs its own OGMs, and the keys of the
//! node directory's verified records verify everyone else's.
//!
//! The routing core sees only the [`routing::OgmSigner`] and [`routing::OgmVerifier`] traits.
//! The verifier reads [`OgmKeys`], which the directory keeps in step with the records it
//! holds (a record's Ed25519 key is bound to the node by the record's hybrid signature and
//! SVID), and the revocation set the link verifier uses.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ed25519_dalek::{Signature, VerifyingKey};
use identity::KeySet;
use identity::verify::VerifierState;
use routing::{OgmSigner, OgmVerifier, Verdict};
use wire::{NodeId, OgmSignature};

/// What verifying a node's OGMs needs from its record.
#[derive(Debug, Clone, Copy)]
pub struct OgmKey {
    /// The record's Ed25519 key, parsed once.
    pub ed25519: VerifyingKey,
    /// The record's expiry (Unix seconds).
    pub not_after: i64,
}

/// The OGM keys of every node whose record is held, shared between the directory (writer)
/// and the router's verifier (reader). Bounded by the directory's record limit.
pub type OgmKeys = Arc<RwLock<HashMap<NodeId, OgmKey>>>;

/// Signs own OGMs with the node's Ed25519 key.
pub struct NodeOgmSigner(pub Arc<KeySet>);

impl OgmSigner for NodeOgmSigner {
    fn sign(&self, signed_part: &[u8]) -> OgmSignature {
        OgmSignature(self.0.sign_ed25519(signed_part))
    }
}

/// Verifies OGMs with the directory's keys; revoked and expired originators are refused.
pub struct DirectoryOgmVerifier {
    keys: OgmKeys,
    state: Arc<VerifierState>,
    now_unix: fn() -> i64,
}

impl DirectoryOgmVerifier {
    /// A verifier reading `keys` and `state.revocations`, with `now_unix` as the wall clock
    /// that record expiry is judged by.
    pub fn new(keys: OgmKeys, state: Arc<VerifierState>, now_unix: fn() -> i64) -> Self {
        DirectoryOgmVerifier {
            keys,
            state,
            now_unix,
        }
    }
}

impl OgmVerifier for DirectoryOgmVerifier {
    fn verify(&self, originator: &NodeId, signed_part: &[u8], signature: &OgmSignature) -> Verdict {
        if self.state.revocations.contains(originator) {
            return Verdict::Revoked;
        }
        // A writer that panicked left a consistent map (single inserts and removes).
        let key = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(originator)
            .copied();
        let Some(key) = key else {
            return Verdict::UnknownKey;
        };
        if key
            .ed25519
            .verify_strict(signed_part, &Signature::from_bytes(&signature.0))
            .is_err()
        {
            return Verdict::Bad;
        }
        if (self.now_unix)() > key.not_after {
            return Verdict::Expired;
        }
        Verdict::Valid
    }
}
