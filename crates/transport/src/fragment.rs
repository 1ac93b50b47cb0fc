//! Link-layer fragmentation of channel packets: a sealed channel packet larger than one UDP
//! datagram crosses its link as several fragments (sent together in one GSO call) and is put
//! back together at the other end, in bounded buffers with a timeout, before its one link
//! AEAD is checked. So an overlay packet of up to 64 KB costs one seal and one open per hop,
//! however many datagrams carry it.
//!
//! Fragment (`"xf"`, integers big-endian):
//! `"xf"` | receiver index (4) | counter (8) | fragment index (1) | fragment count (1) |
//! stride (2) | bytes. Fragment `i` carries bytes `i * stride ..` of the sealed channel packet;
//! every fragment but the last carries exactly `stride` bytes. The receiver index and counter
//! are copied from the sealed packet and name the reassembly. Fragment headers are not
//! authenticated on their own: the reassembled packet's tag covers every byte of it, so a
//! forged or altered fragment only makes the packet fail to open (counted), like a loss.

/// Magic of fragments.
pub const MAGIC: [u8; 2] = *b"xf";

/// Fragment header bytes.
pub const HEADER_BYTES: usize = 18;

/// Most fragments of one packet (the reassembly keeps a 64-bit map of what arrived).
pub const MAX_FRAGMENTS: usize = 64;

/// Smallest stride a receiver accepts, so that [`MAX_FRAGMENTS`] fragments cover the largest
/// sealed channel packet.
pub const MIN_STRIDE: usize = 1100;

/// A reassembly not completed within this long is dropped.
pub const TIMEOUT_MS: u64 = 1000;

/// Reassemblies in progress at once (all links together); when full, the oldest is dropped.
/// Fragments of one packet are sent back to back, so a link rarely has more than one open.
pub const MAX_REASSEMBLIES: usize = 32;

/// Largest sealed channel packet carried in fragments.
pub const MAX_SEALED_BYTES: usize = (MAX_FRAGMENTS - 4) * MIN_STRIDE;

/// Whether a datagram is a fragment (it may still be malformed).
pub fn is_fragment(datagram: &[u8]) -> bool {
    datagram.starts_with(&MAGIC)
}

/// The receiver index a fragment names; `None` if it is not one.
pub fn receiver_index(datagram: &[u8]) -> Option<u32> {
    if datagram.len() < HEADER_BYTES || !is_fragment(datagram) {
        return None;
    }
    Some(u32::from_be_bytes([
        datagram[2],
        datagram[3],
        datagram[4],
        datagram[5],
    ]))
}

/// How `sealed` splits for datagrams of at most `datagram_bytes`: (stride, count). `None` if it
/// needs no fragments, or more than [`MAX_FRAGMENTS`], or the datagrams are too small.
pub fn plan(sealed: usize, datagram_bytes: usize) -> Option<(usize, usize)> {
    let stride = datagram_bytes.checked_sub(HEADER_BYTES)?;
    if sealed <= datagram_bytes || stride < MIN_STRIDE || sealed > MAX_SEALED_BYTES {
        return None;
    }
    let count = sealed.div_ceil(stride);
    (count <= MAX_FRAGMENTS).then_some((stride, count))
}

/// Appends fragment `index` of `count` of the channel packet `head` followed by `tail` (the
/// head at least its 14-byte header long) to `out`.
pub fn write(
    out: &mut Vec<u8>,
    head: &[u8],
    tail: &[u8],
    index: usize,
    count: usize,
    stride: usize,
) {
    let total = head.len() + tail.len();
    let start = (index * stride).min(total);
    let end = (start + stride).min(total);
    out.extend_from_slice(&MAGIC);
    // Receiver index and counter, as the packet's header has them (bytes 2..14).
    out.extend_from_slice(head.get(2..14).unwrap_or(&[0; 12]));
    // `plan` bounds count by MAX_FRAGMENTS and stride by a datagram size, so both fit.
    out.push(index as u8);
    out.push(count as u8);
    out.extend_from_slice(&(stride as u16).to_be_bytes());
    if start < head.len() {
        out.extend_from_slice(&head[start..end.min(head.len())]);
    }
    if end > head.len() {
        out.extend_from_slice(&tail[start.max(head.len()) - head.len()..end - head.len()]);
    }
}

/// Reassembly counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyCounters {
    /// Packets put back together.
    pub completed: u64,
    /// Fragments refused as malformed or inconsistent with their reassembly.
    pub malformed: u64,
    /// Reassemblies dropped unfinished (timed out, or pushed out by newer ones).
    pub dropped: u64,
}

struct Slot {
    receiver_index: u32,
    counter: u64,
    count: usize,
    stride: usize,
    arrived: u64,
    last_bytes: usize,
    started_ms: u64,
    buffer: Vec<u8>,
}

/// Reassemblies in progress, bounded in number and age.
#[derive(Default)]
pub struct Reassembler {
    slots: Vec<Slot>,
    spare: Vec<Vec<u8>>,
    /// Counters.
    pub counters: ReassemblyCounters,
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("slots", &self.slots.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Reassembler {
    /// Adds a fragment received at `now_ms`; returns the sealed packet once complete (give the
    /// buffer back with [`Reassembler::recycle`] when done with it).
    pub fn push(&mut self, fragment: &[u8], now_ms: u64) -> Option<Vec<u8>> {
        let Some(receiver_index) = receiver_index(fragment) else {
            self.counters.malformed += 1;
            return None;
        };
        let mut counter_bytes = [0u8; 8];
        counter_bytes.copy_from_slice(&fragment[6..14]);
        let counter = u64::from_be_bytes(counter_bytes);
        let index = usize::from(fragment[14]);
        let count = usize::from(fragment[15]);
        let stride = usize::from(u16::from_be_bytes([fragment[16], fragment[17]]));
        let bytes = &fragment[HEADER_BYTES..];
        let last = index + 1 == count;
        if !(2..=MAX_FRAGMENTS).contains(&count)
            || index >= count
            || stride < MIN_STRIDE
            || (count - 1) * stride >= MAX_SEALED_BYTES
            || (!last && bytes.len() != stride)
            || (last && (bytes.is_empty() || bytes.len() > stride))
        {
            self.counters.malformed += 1;
            return None;
        }
        let position = match self
            .slots
            .iter()
            .position(|slot| slot.receiver_index == receiver_index && slot.counter == counter)
        {
            Some(position) => position,
            None => {
                if self.slots.len() >= MAX_REASSEMBLIES {
                    let oldest = self
                        .slots
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, slot)| slot.started_ms)
                        .map_or(0, |(position, _)| position);
                    let slot = self.slots.swap_remove(oldest);
                    self.counters.dropped += 1;
                    self.recycle(slot.buffer);
                }
                let mut buffer = self.spare.pop().unwrap_or_default();
                buffer.clear();
                buffer.resize(count * stride, 0);
                self.slots.push(Slot {
                    receiver_index,
                    counter,
                    count,
                    stride,
                    arrived: 0,
                    last_bytes: 0,
                    started_ms: now_ms,
                    buffer,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[position];
        if slot.count != count || slot.stride != stride {
            self.counters.malformed += 1;
            return None;
        }
        let bit = 1u64 << index;
        if slot.arrived & bit != 0 {
            return None;
        }
        slot.arrived |= bit;
        let start = index * stride;
        slot.buffer[start..start + bytes.len()].copy_from_slice(bytes);
        if last {
            slot.last_bytes = bytes.len();
        }
        let all = if count == 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        if slot.arrived != all {
            return None;
        }
        let slot = self.slots.swap_remove(position);
        let mut packet = slot.buffer;
        packet.truncate((slot.count - 1) * slot.stride + slot.last_bytes);
        self.counters.completed += 1;
        Some(packet)
    }

    /// Takes back a buffer [`Reassembler::push`] returned.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < MAX_REASSEMBLIES {
            self.spare.push(buffer);
        }
    }

    /// Drops reassemblies older than [`TIMEOUT_MS`] at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let before = self.slots.len();
        let mut expired = Vec::new();
        self.slots.retain_mut(|slot| {
            let keep = now_ms.saturating_sub(slot.started_ms) <= TIMEOUT_MS;
            if !keep {
                expired.push(std::mem::take(&mut slot.buffer));
            }
            keep
        });
        self.counters.dropped += (before - self.slots.len()) as u64;
        for buffer in expired {
            self.recycle(buffer);
        }
    }

    /// Reassemblies in progress.
    pub fn in_progress(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(length: usize) -> Vec<u8> {
        let mut packet = b"xl".to_vec();
        packet.extend_from_slice(&7u32.to_be_bytes());
        packet.extend_from_slice(&42u64.to_be_bytes());
        packet.extend((0..length - 14).map(|index| (index % 251) as u8));
        packet
    }

    fn fragments(packet: &[u8], datagram_bytes: usize) -> Vec<Vec<u8>> {
        let (stride, count) = plan(packet.len(), datagram_bytes).unwrap();
        (0..count)
            .map(|index| {
                let mut out = Vec::new();
                // Any split between head and tail gives the same bytes.
                let split = (index * 977) % packet.len();
                write(
                    &mut out,
                    &packet[..split.max(14)],
                    &packet[split.max(14)..],
                    index,
                    count,
                    stride,
                );
                assert!(out.len() <= datagram_bytes);
                out
            })
            .collect()
    }

    #[test]
    fn a_packet_comes_back_whole_in_any_order_and_only_once() {
        let packet = sealed(64_100);
        let mut pieces = fragments(&packet, 1452);
        assert_eq!(pieces.len(), 45);
        assert_eq!(receiver_index(&pieces[0]), Some(7));
        pieces.reverse();
        let duplicate = pieces[3].clone();
        pieces.insert(5, duplicate);
        let mut reassembler = Reassembler::default();
        let mut whole = None;
        for piece in &pieces {
            if let Some(done) = reassembler.push(piece, 10) {
                assert!(whole.is_none(), "completed once");
                whole = Some(done);
            }
        }
        assert_eq!(whole.as_deref(), Some(&packet[..]));
        assert_eq!(reassembler.counters.completed, 1);
        assert_eq!(reassembler.in_progress(), 0);
        // A fragment of the finished packet arriving late starts a reassembly that expires.
        assert!(reassembler.push(&pieces[0], 20).is_none());
        reassembler.expire(20 + TIMEOUT_MS + 1);
        assert_eq!(reassembler.in_progress(), 0);
        assert_eq!(reassembler.counters.dropped, 1);
    }

    #[test]
    fn small_packets_and_oversized_ones_are_not_fragmented() {
        assert_eq!(plan(1400, 1452), None);
        assert_eq!(plan(2000, 1452), Some((1434, 2)));
        assert_eq!(plan(MAX_SEALED_BYTES + 1, 1452), None);
        assert_eq!(plan(10_000, 500), None, "stride below the minimum");
        assert!(plan(MAX_SEALED_BYTES, 1200).is_some());
    }

    #[test]
    fn malformed_or_inconsistent_fragments_are_counted_and_the_table_stays_bounded() {
        let packet = sealed(5000);
        let pieces = fragments(&packet, 1452);
        let mut reassembler = Reassembler::default();
        assert!(reassembler.push(b"xf", 0).is_none());
        let mut bad_count = pieces[0].clone();
        bad_count[15] = 1;
        assert!(reassembler.push(&bad_count, 0).is_none());
        let mut short = pieces[0].clone();
        short.truncate(100);
        assert!(reassembler.push(&short, 0).is_none());
        let mut small_stride = pieces[0].clone();
        small_stride[16..18].copy_from_slice(&100u16.to_be_bytes());
        assert!(reassembler.push(&small_stride, 0).is_none());
        assert_eq!(reassembler.counters.malformed, 4);
        assert!(reassembler.push(&pieces[0], 0).is_none());
        let mut other_stride = pieces[1].clone();
        other_stride[16..18].copy_from_slice(&1500u16.to_be_bytes());
        assert!(reassembler.push(&other_stride, 0).is_none());
        assert_eq!(reassembler.counters.malformed, 5);
        for counter in 0..(MAX_REASSEMBLIES as u64 * 2) {
            let mut piece = pieces[0].clone();
            piece[6..14].copy_from_slice(&(1000 + counter).to_be_bytes());
            assert!(reassembler.push(&piece, counter + 1).is_none());
        }
        assert_eq!(reassembler.in_progress(), MAX_REASSEMBLIES);
        assert_eq!(
            reassembler.counters.dropped,
            MAX_REASSEMBLIES as u64 + 1,
            "the oldest (including the first packet's) made room"
        );
    }
}
