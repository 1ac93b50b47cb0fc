//! Neighbour reports: what one node's healing loop tells the others over mesh links, as a
//! unidirectional stream whose first byte is [`KIND_HEAL_REPORT`].
//!
//! ```text
//! offset size  field
//! 0      1     kind = 3 (directory batches start with 1 or 2)
//! 1      1     hops left; a relay decrements it and forwards while it is above 0
//! 2      64    Ed25519 signature by the origin over "x6-heal-report/2" | body
//! 66     ..    body, binary (all integers big-endian):
//!              origin (16) | sent_us (8) | link count (1)
//!              | per link: peer (16), loss in 1/100 % (2, at most 10,000), RTT µs (4), TQ (1)
//!              | under-action count (1) | node ids (16 each)
//!              | notice flag (1: 0 or 1) [| incident id (8) | text length (2) | UTF-8 text]
//! ```
//!
//! The body is binary because reports are refreshed for as long as a node runs: the former JSON
//! body (hex ids, float text) tripled an idle node's report bytes. Nothing may follow the body.
//!
use heal::LinkSample;
use wire::NodeId;

/// First byte of a heal report stream.
pub const KIND_HEAL_REPORT: u8 = 3;
/// Largest body: 254 links and 64 nodes under action, plus a notice.
pub const MAX_BODY_BYTES: usize = 25
    + MAX_REPORT_LINKS * LINK_BYTES
    + 1
    + MAX_REPORT_UNDER_ACTION * NodeId::LEN
    + 11
    + MAX_NOTICE_BYTES;
const LINK_BYTES: usize = NodeId::LEN + 2 + 4 + 1;
/// Links carried per report (the routing core's neighbour limit).
pub const MAX_REPORT_LINKS: usize = 254;
/// Nodes named as under action per report; a node holds at most this many peers.
pub const MAX_REPORT_UNDER_ACTION: usize = 64;
/// Longest notice text, bytes.
pub const MAX_NOTICE_BYTES: usize = 1024;
const SIGNING_CONTEXT: &[u8] = b"x6-heal-report/2";
const HEADER: usize = 2 + 64;

/// What a report says.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportBody {
    /// The node that measured.
    pub origin: NodeId,
    /// The origin's Unix time when it sent this, µs; newer replaces older.
    pub sent_us: u64,
    /// The origin's links (vanished neighbours at 100 % loss).
    pub links: Vec<LinkSample>,
    /// Nodes the origin's healing loop acts on, for the blast radius.
    pub under_action: Vec<NodeId>,
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
    /// Truncated, oversized, trailing bytes, or over a limit.
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
    let json = encode_body(body)?;
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
    let body = decode_body(json).ok_or(Refusal::Malformed)?;
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

/// The body's bytes; `None` when it is over a limit (the caller caps every list).
fn encode_body(body: &ReportBody) -> Option<Vec<u8>> {
    if body.links.len() > MAX_REPORT_LINKS || body.under_action.len() > MAX_REPORT_UNDER_ACTION {
        return None;
    }
    let mut out = Vec::with_capacity(64 + body.links.len() * LINK_BYTES);
    out.extend_from_slice(&body.origin.0);
    out.extend_from_slice(&body.sent_us.to_be_bytes());
    out.push(u8::try_from(body.links.len()).ok()?);
    for link in &body.links {
        out.extend_from_slice(&link.peer.0);
        // Saturating float casts: NaN becomes 0, out-of-range values the bound.
        let loss = (link.loss_percent.clamp(0.0, 100.0) * 100.0).round() as u16;
        out.extend_from_slice(&loss.to_be_bytes());
        let rtt_us = (link.rtt_ms * 1000.0).round() as u32;
        out.extend_from_slice(&rtt_us.to_be_bytes());
        out.push(link.tq);
    }
    out.push(u8::try_from(body.under_action.len()).ok()?);
    for id in &body.under_action {
        out.extend_from_slice(&id.0);
    }
    match &body.notice {
        None => out.push(0),
        Some((incident, text)) => {
            if text.len() > MAX_NOTICE_BYTES {
                return None;
            }
            out.push(1);
            out.extend_from_slice(&incident.to_be_bytes());
            out.extend_from_slice(&u16::try_from(text.len()).ok()?.to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }
    Some(out)
}

/// Reads a body; `None` when it is truncated, over a limit or followed by anything.
fn decode_body(bytes: &[u8]) -> Option<ReportBody> {
    let mut reader = Reader(bytes);
    let origin = reader.node()?;
    let sent_us = u64::from_be_bytes(reader.array()?);
    let link_count = usize::from(reader.byte()?);
    if link_count > MAX_REPORT_LINKS {
        return None;
    }
    let mut links = Vec::with_capacity(link_count);
    for _ in 0..link_count {
        let peer = reader.node()?;
        let loss = u16::from_be_bytes(reader.array()?);
        if loss > 10_000 {
            return None;
        }
        let rtt_us = u32::from_be_bytes(reader.array()?);
        let tq = reader.byte()?;
        links.push(LinkSample {
            peer,
            loss_percent: f64::from(loss) / 100.0,
            rtt_ms: f64::from(rtt_us) / 1000.0,
            tq,
        });
    }
    let acting = usize::from(reader.byte()?);
    if acting > MAX_REPORT_UNDER_ACTION {
        return None;
    }
    let mut under_action = Vec::with_capacity(acting);
    for _ in 0..acting {
        under_action.push(reader.node()?);
    }
    let notice = match reader.byte()? {
        0 => None,
        1 => {
            let incident = u64::from_be_bytes(reader.array()?);
            let length = usize::from(u16::from_be_bytes(reader.array()?));
            if length > MAX_NOTICE_BYTES {
                return None;
            }
            let text = std::str::from_utf8(reader.take(length)?).ok()?;
            Some((incident, text.to_string()))
        }
        _ => return None,
    };
    if !reader.0.is_empty() {
        return None;
    }
    Some(ReportBody {
        origin,
        sent_us,
        links,
        under_action,
        notice,
    })
}

/// Reads a body front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.0.len() < count {
            return None;
        }
        let (head, rest) = self.0.split_at(count);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn node(&mut self) -> Option<NodeId> {
        Some(NodeId(self.array()?))
    }
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
            under_action: vec![NodeId::from_index(3)],
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

    #[test]
    fn a_quiet_ring_report_is_small_and_bad_bodies_are_refused() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let public = key.verifying_key().to_bytes();
        let origin = NodeId::from_index(1);
        let link = |peer: u64| LinkSample {
            peer: NodeId::from_index(peer),
            loss_percent: 1.25,
            rtt_ms: 0.317,
            tq: 250,
        };
        let quiet = ReportBody {
            origin,
            sent_us: 1_700_000_000_000_000,
            links: vec![link(2), link(6)],
            under_action: vec![],
            notice: None,
        };
        let bytes = encode(&quiet, 2, |m| key.sign(m).to_bytes()).expect("encodes");
        assert_eq!(bytes.len(), 66 + 16 + 8 + 1 + 2 * 23 + 1 + 1);
        let report = decode(&bytes, |_| Some(public)).expect("verifies");
        assert_eq!(
            report.body, quiet,
            "loss in 1/100 % and RTT in µs round-trip"
        );

        let sign_body = |body: &[u8]| {
            let mut message = SIGNING_CONTEXT.to_vec();
            message.extend_from_slice(body);
            let mut bytes = vec![KIND_HEAL_REPORT, 1];
            bytes.extend_from_slice(&key.sign(&message).to_bytes());
            bytes.extend_from_slice(body);
            bytes
        };
        let good = bytes[HEADER..].to_vec();
        let mut trailing = good.clone();
        trailing.push(0);
        let mut bad_flag = good.clone();
        *bad_flag.last_mut().expect("non-empty") = 2;
        let mut lossy = good.clone();
        // The first link's loss field follows origin, time, count and the peer id.
        lossy[16 + 8 + 1 + 16..16 + 8 + 1 + 18].copy_from_slice(&10_001u16.to_be_bytes());
        let mut too_many = good.clone();
        too_many[24] = u8::MAX;
        for body in [
            trailing,
            bad_flag,
            lossy,
            too_many,
            good[..good.len() - 1].to_vec(),
        ] {
            assert_eq!(
                decode(&sign_body(&body), |_| Some(public)),
                Err(Refusal::Malformed)
            );
        }
        assert!(decode(&sign_body(&good), |_| Some(public)).is_ok());
    }
}
