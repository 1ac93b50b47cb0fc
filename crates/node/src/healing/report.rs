//! Neighbour reports: what one node's healing loop tells the others over mesh links, as a
//! unidirectional stream whose first byte is [`KIND_HEAL_REPORT`].
//!
//! ```text
//! offset size  field
//! 0      1     kind = 3 (directory batches start with 1 or 2)
//! 1      1     hops left; a relay decrements it and forwards while it is above 0
//! 2      64    Ed25519 signature by the origin over "x6-heal-report/1" | body
//! 66     ..    body: JSON `ReportBody`, at most MAX_BODY_BYTES
//! ```
//!
//! The origin signs, so a relay can forward a report but not forge or alter one; the receiver
//! checks the signature with the origin's key from the node directory. `sent_us` (the origin's
//! Unix time in µs) orders reports: only a newer one from an origin is accepted, which drops
//! duplicates of a flood and replays alike.

use heal::LinkSample;
use serde::{Deserialize, Serialize};
use wire::NodeId;

/// First byte of a heal report stream.
pub const KIND_HEAL_REPORT: u8 = 3;
/// Largest body: 254 links of about 100 bytes each, plus room for the rest.
pub const MAX_BODY_BYTES: usize = 32 * 1024;
/// Links carried per report (the routing core's neighbour limit).
pub const MAX_REPORT_LINKS: usize = 254;
/// Nodes named as under action per report; a node holds at most this many peers.
pub const MAX_REPORT_UNDER_ACTION: usize = 64;
/// Incident summaries per report.
pub const MAX_REPORT_INCIDENTS: usize = 8;
const SIGNING_CONTEXT: &[u8] = b"x6-heal-report/1";
const HEADER: usize = 2 + 64;

/// One open incident as told to the neighbours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentSummary {
    /// The origin's incident id.
    pub id: u64,
    /// `NODE_FAILURE`, ...
    pub kind: String,
    /// Severity name.
    pub severity: String,
    /// The blamed entity, in words.
    pub root_cause: String,
}

/// What a report says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBody {
    /// The node that measured.
    pub origin: NodeId,
    /// The origin's Unix time when it sent this, µs; newer replaces older.
    pub sent_us: u64,
    /// The origin's links (vanished neighbours at 100 % loss).
    pub links: Vec<LinkSample>,
    /// Nodes the origin's healing loop acts on, for the blast radius.
    pub under_action: Vec<NodeId>,
    /// Its open incidents.
    pub incidents: Vec<IncidentSummary>,
    /// A `notify_neighbours` message, with its incident id.
    pub notice: Option<(u64, String)>,
}

/// A report that passed its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Its origin.
    pub origin: NodeId,
    /// Hops it may still travel after this node.
    pub hops_left: u8,
    /// Content.
    pub body: ReportBody,
    /// The wire bytes (to forward with the hop count lowered).
    pub bytes: Vec<u8>,
}

/// Why a report was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Truncated, oversized, not JSON of the right shape, or over a limit.
    Malformed,
    /// The origin is unknown to the directory.
    UnknownOrigin,
    /// The signature does not verify.
    BadSignature,
}

/// Encodes and signs a report.
pub fn encode(
    body: &ReportBody,
    hops: u8,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(body).ok()?;
    if json.len() > MAX_BODY_BYTES {
        return None;
    }
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + json.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(&json);
    let signature = sign(&message);
    let mut bytes = Vec::with_capacity(HEADER + json.len());
    bytes.push(KIND_HEAL_REPORT);
    bytes.push(hops);
    bytes.extend_from_slice(&signature);
    bytes.extend_from_slice(&json);
    Some(bytes)
}

/// Whether a stream is a heal report (rather than a directory batch).
pub fn is_report(bytes: &[u8]) -> bool {
    bytes.first() == Some(&KIND_HEAL_REPORT)
}

/// Parses and verifies a report; `key_of` gives the Ed25519 key of a node from the directory.
pub fn decode(
    bytes: &[u8],
    key_of: impl FnOnce(&NodeId) -> Option<[u8; 32]>,
) -> Result<Report, Refusal> {
    if bytes.len() < 1 + HEADER || !is_report(bytes) || bytes.len() > 1 + HEADER + MAX_BODY_BYTES {
        return Err(Refusal::Malformed);
    }
    let hops = bytes[1];
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&bytes[2..HEADER]);
    let json = &bytes[HEADER..];
    let body: ReportBody = serde_json::from_slice(json).map_err(|_| Refusal::Malformed)?;
    if body.links.len() > MAX_REPORT_LINKS
        || body.under_action.len() > MAX_REPORT_UNDER_ACTION
        || body.incidents.len() > MAX_REPORT_INCIDENTS
        || body
            .links
            .iter()
            .any(|l| !l.loss_percent.is_finite() || !l.rtt_ms.is_finite())
    {
        return Err(Refusal::Malformed);
    }
    let origin = body.origin;
    let key = key_of(&origin).ok_or(Refusal::UnknownOrigin)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| Refusal::UnknownOrigin)?;
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + json.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(json);
    key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| Refusal::BadSignature)?;
    Ok(Report {
        origin,
        hops_left: hops.saturating_sub(1),
        body,
        bytes: bytes.to_vec(),
    })
}

/// The bytes to forward: the same report with one hop fewer.
pub fn forwarded(report: &Report) -> Vec<u8> {
    let mut bytes = report.bytes.clone();
    if let Some(hops) = bytes.get_mut(1) {
        *hops = report.hops_left;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn body(origin: NodeId) -> ReportBody {
        ReportBody {
            origin,
            sent_us: 7,
            links: vec![LinkSample {
                peer: NodeId::from_index(2),
                loss_percent: 100.0,
                rtt_ms: 0.0,
                tq: 0,
            }],
            under_action: vec![],
            incidents: vec![],
            notice: Some((1, "relay down".into())),
        }
    }

    #[test]
    fn a_signed_report_verifies_and_a_tampered_one_does_not() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = key.verifying_key().to_bytes();
        let origin = NodeId::from_index(1);
        let bytes = encode(&body(origin), 3, |m| key.sign(m).to_bytes()).expect("encodes");
        let report = decode(&bytes, |_| Some(public)).expect("verifies");
        assert_eq!(report.origin, origin);
        assert_eq!(report.hops_left, 2);
        assert_eq!(report.body, body(origin));
        let relayed = forwarded(&report);
        let again = decode(&relayed, |_| Some(public)).expect("a relayed copy verifies");
        assert_eq!(again.hops_left, 1);

        let mut tampered = bytes.clone();
        let last = tampered.len() - 3;
        tampered[last] ^= 1;
        assert!(matches!(
            decode(&tampered, |_| Some(public)),
            Err(Refusal::BadSignature | Refusal::Malformed)
        ));
        assert_eq!(decode(&bytes, |_| None), Err(Refusal::UnknownOrigin));
        assert_eq!(
            decode(&bytes[..40], |_| Some(public)),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            decode(&[1, 2, 3], |_| Some(public)),
            Err(Refusal::Malformed)
        );
    }
}
