//! Mesh-wide incident summaries: each node's open and recently closed incidents, signed by
//! the node and carried in the replicated `incidents` map (key = the node's id), so that any
//! node can list the incidents of the whole mesh (`/api/v1/incidents?scope=mesh`).
//!
//! ```text
//! value = Ed25519 signature (64 bytes) over "x6-incident-summary/1" | body
//!         body: JSON `MeshSummary`, at most MAX_SUMMARY_BYTES
//! ```
//!
//! # Bounds and garbage collection
//! - A summary holds at most [`MAX_SUMMARY_INCIDENTS`] incidents: the open ones first (oldest
//!   first), then the most recently closed; closed incidents leave it [`CLOSED_KEPT`] after
//!   they closed. The full record of every incident stays in the node's own `incidents.db`.
//! - Root-cause texts are cut at [`MAX_ROOT_CAUSE_TEXT`] characters, so a summary stays far
//!   below [`MAX_SUMMARY_BYTES`] (and the replica's 16 KB value limit).
//! - A node replaces its entry whenever the list changes (at most once per
//!   [`MIN_PUBLISH_GAP_MS`]) and once at start, so the entry of a restarted node never shows
//!   incidents of its previous run.
//! - An entry whose node is no longer in the directory (revoked) fails verification and is
//!   not listed. The map holds one entry per node, bounded by the replica's entry limit.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::NodeId;

/// Incidents in one node's summary.
pub const MAX_SUMMARY_INCIDENTS: usize = 16;
/// Largest summary body, bytes (16 incidents of about 200 bytes, with room to spare).
pub const MAX_SUMMARY_BYTES: usize = 8 * 1024;
/// How long a closed incident stays in its node's summary.
pub const CLOSED_KEPT: Duration = Duration::from_secs(10 * 60);
/// Longest root-cause text.
pub const MAX_ROOT_CAUSE_TEXT: usize = 120;
/// Shortest pause between two publications of a node's summary; changes in between are
/// published together.
pub const MIN_PUBLISH_GAP_MS: u64 = 1_000;
/// Name of the replicated collection.
pub const COLLECTION: &str = "incidents";
const SIGNING_CONTEXT: &[u8] = b"x6-incident-summary/1";
const SIGNATURE_BYTES: usize = 64;
/// Longest short text field (type, severity, state).
const MAX_NAME_TEXT: usize = 32;

/// One incident as the mesh sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryIncident {
    /// The node's incident id (its `incidents.db` has the full record).
    pub id: u64,
    /// `NODE_FAILURE`, `SERVICE_DOWN`, ...
    pub kind: String,
    /// `LOW` ... `CRITICAL`.
    pub severity: String,
    /// `open`, `executing`, `awaiting_approval`, `resolved`, `superseded`.
    pub state: String,
    /// The blamed entity, in words.
    pub root_cause: String,
    /// When the node detected it, Unix ms.
    pub opened_unix_ms: u64,
    /// When it closed, Unix ms.
    pub closed_unix_ms: Option<u64>,
}

/// What one node publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshSummary {
    /// The publishing node.
    pub node: NodeId,
    /// When it published this, Unix ms.
    pub published_unix_ms: u64,
    /// Open incidents first, then recently closed ones.
    pub incidents: Vec<SummaryIncident>,
    /// Incidents left out because the summary was full.
    pub omitted: u32,
}

/// Why a summary was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Truncated, oversized, not JSON of the right shape, or over a bound.
    Malformed,
    /// The node is not in the directory.
    UnknownNode,
    /// The signature does not verify.
    BadSignature,
}

/// Signs and encodes a summary; `None` if it is larger than [`MAX_SUMMARY_BYTES`].
pub fn encode(summary: &MeshSummary, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(summary).ok()?;
    if json.len() > MAX_SUMMARY_BYTES {
        return None;
    }
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + json.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(&json);
    let mut bytes = Vec::with_capacity(SIGNATURE_BYTES + json.len());
    bytes.extend_from_slice(&sign(&message));
    bytes.extend_from_slice(&json);
    Some(bytes)
}

/// Parses a summary and checks its bounds, without the signature.
pub fn parse(bytes: &[u8]) -> Result<MeshSummary, Refusal> {
    if bytes.len() <= SIGNATURE_BYTES || bytes.len() > SIGNATURE_BYTES + MAX_SUMMARY_BYTES {
        return Err(Refusal::Malformed);
    }
    let summary: MeshSummary =
        serde_json::from_slice(&bytes[SIGNATURE_BYTES..]).map_err(|_| Refusal::Malformed)?;
    let too_long = |i: &SummaryIncident| {
        i.root_cause.chars().count() > MAX_ROOT_CAUSE_TEXT
            || [&i.kind, &i.severity, &i.state]
                .iter()
                .any(|t| t.chars().count() > MAX_NAME_TEXT)
    };
    if summary.incidents.len() > MAX_SUMMARY_INCIDENTS || summary.incidents.iter().any(too_long) {
        return Err(Refusal::Malformed);
    }
    Ok(summary)
}

/// Parses a summary and verifies it was signed by its node; `key_of` gives a node's Ed25519
/// key from the directory.
pub fn decode(
    bytes: &[u8],
    key_of: impl FnOnce(&NodeId) -> Option<[u8; 32]>,
) -> Result<MeshSummary, Refusal> {
    let summary = parse(bytes)?;
    let key = key_of(&summary.node).ok_or(Refusal::UnknownNode)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| Refusal::UnknownNode)?;
    let mut signature = [0u8; SIGNATURE_BYTES];
    signature.copy_from_slice(&bytes[..SIGNATURE_BYTES]);
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + bytes.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(&bytes[SIGNATURE_BYTES..]);
    key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| Refusal::BadSignature)?;
    Ok(summary)
}

/// An entity in words: `node 1a2b3c4d`, `link 1a2b3c4d -> 5e6f7a8b`, `routes`,
/// `service web`.
pub fn describe(entity: &heal::Entity) -> String {
    let text = match entity {
        heal::Entity::Node(node) => format!("node {}", node.short()),
        heal::Entity::Link { from, to } => format!("link {} -> {}", from.short(), to.short()),
        heal::Entity::Routes => "routes".to_string(),
        heal::Entity::Service { check, .. } => format!("service {check}"),
    };
    text.chars().take(MAX_ROOT_CAUSE_TEXT).collect()
}

/// An incident state in words.
pub fn state_name(state: &heal::IncidentState) -> &'static str {
    match state {
        heal::IncidentState::Open => "open",
        heal::IncidentState::AwaitingApproval { .. } => "awaiting_approval",
        heal::IncidentState::Executing => "executing",
        heal::IncidentState::Resolved => "resolved",
        heal::IncidentState::Superseded { .. } => "superseded",
    }
}

/// One incident of the mesh, as `/api/v1/incidents?scope=mesh` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshIncidentView {
    /// The node that has the incident.
    pub node: NodeId,
    /// Whether this node has a route to it (or is it); an unreachable node's summary is as
    /// old as its last publication.
    pub node_reachable: bool,
    /// When that node published the summary, Unix ms.
    pub published_unix_ms: u64,
    /// The incident.
    #[serde(flatten)]
    pub incident: SummaryIncident,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn summary(node: NodeId, incidents: usize) -> MeshSummary {
        MeshSummary {
            node,
            published_unix_ms: 1_700_000_000_000,
            incidents: (0..incidents as u64)
                .map(|id| SummaryIncident {
                    id,
                    kind: "SERVICE_DOWN".into(),
                    severity: "HIGH".into(),
                    state: "open".into(),
                    root_cause: "service web".into(),
                    opened_unix_ms: 1_700_000_000_000,
                    closed_unix_ms: None,
                })
                .collect(),
            omitted: 0,
        }
    }

    #[test]
    fn a_signed_summary_verifies_and_a_forged_or_oversized_one_does_not() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let public = key.verifying_key().to_bytes();
        let node = NodeId::from_index(4);
        let full = summary(node, MAX_SUMMARY_INCIDENTS);
        let bytes = encode(&full, |m| key.sign(m).to_bytes()).expect("fits");
        assert!(bytes.len() < MAX_SUMMARY_BYTES, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes, |_| Some(public)), Ok(full.clone()));
        assert_eq!(decode(&bytes, |_| None), Err(Refusal::UnknownNode));
        let other = SigningKey::from_bytes(&[8u8; 32])
            .verifying_key()
            .to_bytes();
        assert_eq!(decode(&bytes, |_| Some(other)), Err(Refusal::BadSignature));
        let mut tampered = bytes.clone();
        let at = tampered.len() - 5;
        tampered[at] ^= 0x01;
        assert!(decode(&tampered, |_| Some(public)).is_err());
        let too_many = summary(node, MAX_SUMMARY_INCIDENTS + 1);
        let bytes = encode(&too_many, |m| key.sign(m).to_bytes()).expect("encodes");
        assert_eq!(parse(&bytes), Err(Refusal::Malformed));
        assert_eq!(parse(&[0u8; 10]), Err(Refusal::Malformed));
    }
}
