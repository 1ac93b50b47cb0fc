//! The overlay data plane's pure parts: the data packet that carries an IPv6 packet from node
//! to node over links, the overlay address -> node map, and the ICMPv6 errors the node answers
//! with (destination unreachable, packet too big).
//!
//! Data packet (on a link: one link-channel packet, in fragments if it is larger than a
//! datagram, or one QUIC datagram):
//! `"xd"` | version 1 | hop limit (1) | source NodeId (16) | destination NodeId (16) | IPv6 packet.
//! Relays read only this header; the inner packet is handed to the destination's TUN only if its
//! IPv6 source address is the overlay address of the source NodeId.
//!
//! The body after the header is an end-to-end session packet (crates/session): relays cannot
//! read or alter it. The one exception is a relay's too-big notice ([`too_big_notice`]): a
//! relay whose next link cannot carry a packet tells the packet's source node so, in a data
//! packet of its own whose body starts with [`NOTICE_MARKER`] instead of a session version,
//! and the source answers later packets of that size with ICMPv6 Packet Too Big
//! ([`PathMtus`]), so path MTU discovery works across relays that cannot read the packet. Its plaintext starts with a payload kind: [`PAYLOAD_IPV6`] (an IPv6
//! packet for the TUN interface) or [`PAYLOAD_APP`] (the datagram API over node ids, which
//! works without a TUN: port (u16) then payload, delivered into the node's bounded inbox).

use std::collections::HashMap;
use std::net::Ipv6Addr;

use wire::NodeId;

/// Data packet header size.
pub const DATA_HEADER_BYTES: usize = 36;

/// Hop limit of a new data packet; a relay drops a packet whose limit reaches zero, so a
/// transient loop cannot circulate a packet for ever.
pub const DATA_HOP_LIMIT: u8 = 64;

const MAGIC: [u8; 2] = *b"xd";

/// Payload kind: an IPv6 packet.
pub const PAYLOAD_IPV6: u8 = 1;
/// Payload kind: an application datagram (port, payload).
pub const PAYLOAD_APP: u8 = 2;

/// Largest application datagram payload: what fits one link datagram after the headers on a
/// 1,500-byte link, with the end-to-end session overhead reserved.
pub const MAX_APP_PAYLOAD: usize = 1200;
const VERSION: u8 = 1;

/// The overlay MTU the TUN interface gets by default. Per-packet work (system calls, lookups,
/// one AEAD per hop) is what limits throughput, so the overlay packet is large and the link
/// channel carries it in fragments: 64,000 bytes sealed end to end (+31), with the data header
/// (+36) and the link seal (+30), split into 45 fragments for a 1,500-byte link (18-byte
/// fragment header each), is 64,907 bytes: the largest round MTU whose fragments leave in one
/// UDP GSO send (at most 65,000 bytes). So a local TCP stream moves ~64 KB per packet as over
/// Yggdrasil's 65,535-byte MTU, far from IPv6's 1,280 where throughput falls off a cliff
/// (Yggdrasil's 74 Mbit/s here). A link without the channel (QUIC datagrams only) carries
/// about 1,340; Packet Too Big then tells senders so.
pub const DEFAULT_OVERLAY_MTU: u16 = 64_000;

/// What the end-to-end session adds to an IPv6 packet: the payload kind, the session's data
/// header and its tag.
pub const SESSION_OVERHEAD_BYTES: usize =
    1 + session::packet::DATA_HEADER_BYTES + session::packet::TAG_BYTES;

/// The largest IPv6 packet that fits a link datagram of `room` bytes once sealed end to end
/// and given a data header: the MTU to advertise in Packet Too Big, never below IPv6's 1,280.
pub fn overlay_mtu(room: usize) -> usize {
    room.saturating_sub(DATA_HEADER_BYTES + SESSION_OVERHEAD_BYTES)
        .max(IPV6_MIN_MTU)
}

/// Smallest MTU IPv6 allows (RFC 8200): packet-too-big messages never advertise less.
pub const IPV6_MIN_MTU: usize = 1280;

/// A parsed data packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// Hops the packet may still take.
    pub hop_limit: u8,
    /// Originating node.
    pub source: NodeId,
    /// Destination node.
    pub destination: NodeId,
}

/// Whether a link datagram is a data packet (as opposed to a routing packet, which starts
/// with `"x6"`).
pub fn is_data(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// The port and payload of an application datagram's body (after the payload kind).
pub fn app_body(body: &[u8]) -> Option<(u16, &[u8])> {
    let (port, payload) = body.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*port), payload))
}

/// Encodes a data packet.
pub fn encode(header: &DataHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATA_HEADER_BYTES + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(header.hop_limit);
    out.extend_from_slice(&header.source.0);
    out.extend_from_slice(&header.destination.0);
    out.extend_from_slice(payload);
    out
}

/// Splits a data packet into header and payload; `None` if malformed or another version.
pub fn decode(bytes: &[u8]) -> Option<(DataHeader, &[u8])> {
    if bytes.len() < DATA_HEADER_BYTES || bytes[..2] != MAGIC || bytes[2] != VERSION {
        return None;
    }
    let source = NodeId(bytes[4..20].try_into().ok()?);
    let destination = NodeId(bytes[20..36].try_into().ok()?);
    Some((
        DataHeader {
            hop_limit: bytes[3],
            source,
            destination,
        },
        &bytes[DATA_HEADER_BYTES..],
    ))
}

/// Decrements the hop limit in place; false if it was already exhausted.
pub fn take_hop(packet: &mut [u8]) -> bool {
    match packet.get_mut(3) {
        Some(limit) if *limit > 1 => {
            *limit -= 1;
            true
        }
        _ => false,
    }
}

/// Source and destination of an IPv6 packet; `None` if it is not one.
pub fn ipv6_addresses(packet: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr)> {
    if packet.len() < 40 || packet[0] >> 4 != 6 {
        return None;
    }
    let source: [u8; 16] = packet[8..24].try_into().ok()?;
    let destination: [u8; 16] = packet[24..40].try_into().ok()?;
    Some((Ipv6Addr::from(source), Ipv6Addr::from(destination)))
}

/// Overlay address -> node, for every node the router knows. Bounded by the router's
/// destination limit, since it is rebuilt from the routing table.
#[derive(Debug, Default)]
pub struct OverlayMap {
    nodes: HashMap<Ipv6Addr, NodeId>,
}

impl OverlayMap {
    /// Rebuilds the map from the known destinations.
    pub fn rebuild(&mut self, nodes: impl Iterator<Item = NodeId>) {
        self.nodes.clear();
        for node in nodes {
            self.nodes.insert(node.overlay_addr(), node);
        }
    }

    /// The node owning `address`.
    pub fn node(&self, address: &Ipv6Addr) -> Option<NodeId> {
        self.nodes.get(address).copied()
    }
}

/// First body byte of a too-big notice: session packets start with their version (2).
pub const NOTICE_MARKER: u8 = 0x80;

/// Notice kind: the packet was too big for a relay's next link.
const NOTICE_TOO_BIG: u8 = 1;

/// Bytes of a too-big notice body: marker, kind, the data packet's destination, the MTU.
pub const TOO_BIG_NOTICE_BYTES: usize = 1 + 1 + NodeId::LEN + 2;

/// Whether a data packet's body is a relay's notice rather than a session packet.
pub fn is_notice(body: &[u8]) -> bool {
    body.first() == Some(&NOTICE_MARKER)
}

/// The body of a notice that packets for `destination` larger than `mtu` bytes (IPv6 packet
/// size) do not pass a relay.
pub fn too_big_notice(destination: &NodeId, mtu: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(TOO_BIG_NOTICE_BYTES);
    body.extend_from_slice(&[NOTICE_MARKER, NOTICE_TOO_BIG]);
    body.extend_from_slice(&destination.0);
    body.extend_from_slice(&mtu.to_be_bytes());
    body
}

/// The destination and MTU of a too-big notice body; `None` if malformed or of another kind.
pub fn decode_too_big_notice(body: &[u8]) -> Option<(NodeId, u16)> {
    if body.len() != TOO_BIG_NOTICE_BYTES || body[0] != NOTICE_MARKER || body[1] != NOTICE_TOO_BIG {
        return None;
    }
    let destination = NodeId(body[2..2 + NodeId::LEN].try_into().ok()?);
    let mtu = u16::from_be_bytes(body[2 + NodeId::LEN..].try_into().ok()?);
    Some((destination, mtu))
}

/// How long a path MTU learned from a notice holds before larger packets are tried again
/// (RFC 8201 §5.3: ten minutes).
pub const PATH_MTU_AGE_MS: u64 = 600_000;

/// Destinations whose path MTU is remembered; when full, the oldest entry goes.
pub const MAX_PATH_MTUS: usize = 4096;

/// Too-big notices a relay sends per second at most, in bursts of up to [`NOTICE_BURST`]:
/// a sender keeps sending large packets until the notice arrives, and every one of them
/// would otherwise cost the relay a notice.
pub const NOTICES_PER_SECOND: u64 = 50;
pub const NOTICE_BURST: u64 = 20;

/// Path MTUs this node learned from relays' notices, per destination node, and the budget
/// of notices this node sends as a relay. Time is an argument (milliseconds of any clock).
#[derive(Debug)]
pub struct PathMtus {
    known: HashMap<NodeId, (usize, u64)>,
    tokens: u64,
    refilled_ms: u64,
}

impl Default for PathMtus {
    fn default() -> Self {
        PathMtus {
            known: HashMap::new(),
            tokens: NOTICE_BURST,
            refilled_ms: 0,
        }
    }
}

impl PathMtus {
    /// A relay said packets for `destination` above `mtu` bytes do not pass. Never below
    /// IPv6's minimum (a notice cannot shrink packets further, RFC 8201 §4); a larger value
    /// than the one held is ignored until that one ages out. Returns whether it applied.
    pub fn learn(&mut self, destination: NodeId, mtu: u16, now_ms: u64) -> bool {
        let mtu = usize::from(mtu).max(IPV6_MIN_MTU);
        if let Some(&(held, _)) = self.known.get(&destination)
            && held <= mtu
        {
            return false;
        }
        if self.known.len() >= MAX_PATH_MTUS
            && !self.known.contains_key(&destination)
            && let Some(oldest) = self
                .known
                .iter()
                .min_by_key(|(_, (_, learned))| *learned)
                .map(|(id, _)| *id)
        {
            self.known.remove(&oldest);
        }
        self.known.insert(destination, (mtu, now_ms));
        true
    }

    /// The largest IPv6 packet known to reach `destination`, if a notice said so within
    /// [`PATH_MTU_AGE_MS`].
    pub fn limit(&mut self, destination: &NodeId, now_ms: u64) -> Option<usize> {
        let &(mtu, learned) = self.known.get(destination)?;
        if now_ms.saturating_sub(learned) >= PATH_MTU_AGE_MS {
            self.known.remove(destination);
            return None;
        }
        Some(mtu)
    }

    /// Takes one notice from the relay's budget; false when it is spent.
    pub fn may_notify(&mut self, now_ms: u64) -> bool {
        let earned = now_ms.saturating_sub(self.refilled_ms) * NOTICES_PER_SECOND / 1000;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(NOTICE_BURST);
            self.refilled_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Destinations with a learned path MTU.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// ICMPv6 type of destination unreachable.
pub const ICMP6_UNREACHABLE: u8 = 1;
/// ICMPv6 type of packet too big.
pub const ICMP6_PACKET_TOO_BIG: u8 = 2;
/// Destination unreachable code: no route to destination.
pub const UNREACHABLE_NO_ROUTE: u8 = 0;

/// Builds an ICMPv6 error from `from` about `offending` (an IPv6 packet), to its source: type,
/// code and the 4-byte field (the MTU for packet too big), quoting as much of the offending
/// packet as keeps the error within the IPv6 minimum MTU (RFC 4443). `None` if `offending` is
/// not IPv6 or is itself an ICMPv6 error (errors never answer errors).
pub fn icmp6_error(
    from: Ipv6Addr,
    offending: &[u8],
    kind: u8,
    code: u8,
    field: u32,
) -> Option<Vec<u8>> {
    let (source, _) = ipv6_addresses(offending)?;
    if offending[6] == 58 && offending.get(40).is_some_and(|icmp_type| *icmp_type < 128) {
        return None;
    }
    let quote = offending.len().min(IPV6_MIN_MTU - 40 - 8);
    let payload_len = 8 + quote;
    let mut packet = Vec::with_capacity(40 + payload_len);
    packet.extend_from_slice(&[0x60, 0, 0, 0]);
    // Bounded by IPV6_MIN_MTU above, so it fits 16 bits.
    packet.extend_from_slice(&(payload_len as u16).to_be_bytes());
    packet.push(58); // next header: ICMPv6
    packet.push(64); // hop limit
    packet.extend_from_slice(&from.octets());
    packet.extend_from_slice(&source.octets());
    packet.push(kind);
    packet.push(code);
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(&field.to_be_bytes());
    packet.extend_from_slice(&offending[..quote]);
    let checksum = icmp6_checksum(&from, &source, &packet[40..]);
    packet[42..44].copy_from_slice(&checksum.to_be_bytes());
    Some(packet)
}

/// The ICMPv6 checksum over the pseudo-header and `message` (whose checksum field is zero).
pub fn icmp6_checksum(source: &Ipv6Addr, destination: &Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for chunk in bytes.chunks(2) {
            let word = u16::from_be_bytes([chunk[0], chunk.get(1).copied().unwrap_or(0)]);
            sum = sum.wrapping_add(u32::from(word));
        }
    };
    add(&source.octets());
    add(&destination.octets());
    // Messages are bounded by the IPv6 minimum MTU, so the length fits 32 bits.
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv6_packet(source: Ipv6Addr, destination: Ipv6Addr, next: u8, body: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x60, 0, 0, 0];
        packet.extend_from_slice(&(body.len() as u16).to_be_bytes());
        packet.push(next);
        packet.push(64);
        packet.extend_from_slice(&source.octets());
        packet.extend_from_slice(&destination.octets());
        packet.extend_from_slice(body);
        packet
    }

    #[test]
    fn data_packets_round_trip_and_hop_limits_run_out() {
        let header = DataHeader {
            hop_limit: 2,
            source: NodeId::from_index(1),
            destination: NodeId::from_index(2),
        };
        let mut packet = encode(&header, b"payload");
        assert!(is_data(&packet));
        assert_eq!(decode(&packet), Some((header, &b"payload"[..])));
        assert!(take_hop(&mut packet));
        assert!(
            !take_hop(&mut packet),
            "a packet arriving with limit 1 goes no further"
        );
        assert_eq!(decode(&packet[..35]), None);
        let mut other_version = packet.clone();
        other_version[2] = 2;
        assert_eq!(decode(&other_version), None);
        assert_eq!(app_body(&[0, 9, b'h', b'i']), Some((9, &b"hi"[..])));
        assert_eq!(app_body(&[0]), None);
        // A packet of exactly the advertised MTU fits the room once sealed.
        assert_eq!(
            overlay_mtu(1420) + SESSION_OVERHEAD_BYTES + DATA_HEADER_BYTES,
            1420
        );
        assert_eq!(overlay_mtu(1000), IPV6_MIN_MTU);
    }

    #[test]
    fn too_big_notices_round_trip_and_are_told_from_session_packets() {
        let destination = NodeId::from_index(7);
        let body = too_big_notice(&destination, 1340);
        assert_eq!(body.len(), TOO_BIG_NOTICE_BYTES);
        assert!(is_notice(&body));
        assert_eq!(decode_too_big_notice(&body), Some((destination, 1340)));
        assert_eq!(decode_too_big_notice(&body[..body.len() - 1]), None);
        let mut other_kind = body.clone();
        other_kind[1] = 9;
        assert_eq!(decode_too_big_notice(&other_kind), None);
        assert!(!is_notice(&[
            session::packet::VERSION,
            session::packet::TYPE_DATA
        ]));
        assert!(!is_notice(&[]));
    }

    #[test]
    fn path_mtus_only_shrink_never_below_the_minimum_age_out_and_stay_bounded() {
        let mut mtus = PathMtus::default();
        let far = NodeId::from_index(3);
        assert_eq!(mtus.limit(&far, 0), None);
        assert!(mtus.learn(far, 1400, 0));
        assert!(
            !mtus.learn(far, 9000, 10),
            "a larger MTU waits for the old one to age"
        );
        assert!(
            mtus.learn(far, 600, 20),
            "a smaller one applies, floored at 1,280"
        );
        assert_eq!(mtus.limit(&far, 30), Some(IPV6_MIN_MTU));
        assert_eq!(mtus.limit(&far, 20 + PATH_MTU_AGE_MS), None, "aged out");
        assert!(mtus.is_empty());
        for index in 0..MAX_PATH_MTUS as u64 + 10 {
            mtus.learn(NodeId::from_index(index + 100), 1300, index);
        }
        assert_eq!(mtus.len(), MAX_PATH_MTUS);
        assert_eq!(
            mtus.limit(&NodeId::from_index(100), 1),
            None,
            "the oldest went"
        );
        assert_eq!(
            mtus.limit(&NodeId::from_index(MAX_PATH_MTUS as u64 + 109), 1),
            Some(1300)
        );
    }

    #[test]
    fn notices_are_rate_limited_with_a_burst() {
        let mut mtus = PathMtus::default();
        let sent = (0..100).filter(|_| mtus.may_notify(1_000)).count();
        assert_eq!(sent as u64, NOTICE_BURST);
        // One more every 1000 / NOTICES_PER_SECOND ms.
        assert!(mtus.may_notify(1_000 + 1000 / NOTICES_PER_SECOND));
        assert!(!mtus.may_notify(1_000 + 1000 / NOTICES_PER_SECOND));
    }

    #[test]
    fn the_default_mtu_leaves_in_one_gso_send_and_the_largest_ipv6_packet_fits_a_link() {
        let sealed = usize::from(DEFAULT_OVERLAY_MTU)
            + SESSION_OVERHEAD_BYTES
            + DATA_HEADER_BYTES
            + transport::channel::OVERHEAD_BYTES;
        let (_, count) = transport::fragment::plan(sealed, 1452).unwrap();
        let on_the_wire = sealed + count * transport::fragment::HEADER_BYTES;
        assert_eq!(on_the_wire, 64_907);
        assert!(on_the_wire <= transport::channel::MAX_BATCH_BYTES);
        let largest = usize::from(u16::MAX) + SESSION_OVERHEAD_BYTES;
        assert!(largest <= session::MAX_PACKET_BYTES);
        assert!(largest + DATA_HEADER_BYTES <= transport::channel::MAX_PAYLOAD_BYTES);
        // The smallest datagram QUIC allows still carries it in at most 64 fragments.
        assert!(transport::fragment::plan(largest + DATA_HEADER_BYTES + 30, 1200).is_some());
    }

    #[test]
    fn icmp_errors_carry_a_valid_checksum_quote_the_packet_and_never_answer_errors() {
        let me: Ipv6Addr = "fd6b:6c34::1".parse().unwrap();
        let sender: Ipv6Addr = "fd6b:6c34::2".parse().unwrap();
        let far: Ipv6Addr = "fd6b:6c34::3".parse().unwrap();
        let offending = ipv6_packet(sender, far, 17, &[0u8; 2000]);
        let error = icmp6_error(me, &offending, ICMP6_PACKET_TOO_BIG, 0, 1340).unwrap();
        assert_eq!(error.len(), IPV6_MIN_MTU);
        assert_eq!(ipv6_addresses(&error), Some((me, sender)));
        // A correct checksum makes the sum over pseudo-header and message come out as zero.
        assert_eq!(icmp6_checksum(&me, &sender, &error[40..]), 0);
        assert_eq!(u32::from_be_bytes(error[44..48].try_into().unwrap()), 1340);
        assert_eq!(&error[48..88], &offending[..40]);
        assert_eq!(icmp6_error(me, &error, ICMP6_UNREACHABLE, 0, 0), None);
        let echo = ipv6_packet(sender, far, 58, &[128, 0, 0, 0, 0, 1, 0, 1]);
        assert!(icmp6_error(me, &echo, ICMP6_UNREACHABLE, UNREACHABLE_NO_ROUTE, 0).is_some());
        assert_eq!(icmp6_error(me, b"not ipv6", ICMP6_UNREACHABLE, 0, 0), None);
    }
}
