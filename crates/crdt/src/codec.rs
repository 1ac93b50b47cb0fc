//! The versioned binary encoding of anti-entropy messages and snapshots, and the only place
//! that knows byte offsets. All integers are unsigned big-endian. Specified field by field in
//! `docs/PROTOCOL.md`, section "CRDT anti-entropy".

use std::collections::{BTreeMap, BTreeSet};

use wire::NodeId;

use crate::dot::Dot;
use crate::error::DecodeError;
use crate::hlc::Hlc;
use crate::limits::{
    FRAGMENT_HEADER_BYTES, FRAGMENT_PAYLOAD_BYTES, MAX_ASSEMBLED_BYTES, MAX_COLLECTION_NAME_BYTES,
    MAX_COLLECTIONS, MAX_FRAGMENTS, MAX_KEY_BYTES, MAX_MESSAGE_BYTES, MAX_VALUE_BYTES,
};
use crate::store::{DotStore, Entry};

/// First two bytes of every anti-entropy message: "xc".
pub const MESSAGE_MAGIC: [u8; 2] = *b"xc";
/// The message format version this code speaks. Version 2 added FRAGMENT and values up to
/// 16 KB; version 1 (values up to 1 KB, no fragments) is refused and counted.
pub const MESSAGE_VERSION: u8 = 2;
/// Bytes before the body: magic, version, type.
pub const MESSAGE_HEADER_BYTES: usize = 4;

const TYPE_DIGEST: u8 = 1;
const TYPE_VECTOR: u8 = 2;
const TYPE_DELTA: u8 = 3;
const TYPE_FRAGMENT: u8 = 4;

/// Bytes of one origin summary in a VECTOR: origin, max, digest.
pub const ORIGIN_SUMMARY_BYTES: usize = NodeId::LEN + 8 + 8;
/// Bytes of a VECTOR before its summaries, with the longest collection name.
pub const VECTOR_OVERHEAD_BYTES: usize =
    MESSAGE_HEADER_BYTES + 1 + MAX_COLLECTION_NAME_BYTES + 2 * NodeId::LEN + 2;
/// Origin summaries that fit in one VECTOR datagram.
pub const ORIGINS_PER_VECTOR: usize =
    (MAX_MESSAGE_BYTES - VECTOR_OVERHEAD_BYTES) / ORIGIN_SUMMARY_BYTES;
/// Bytes of a DELTA before its entries, with the longest collection name.
pub const DELTA_OVERHEAD_BYTES: usize =
    MESSAGE_HEADER_BYTES + 1 + MAX_COLLECTION_NAME_BYTES + NodeId::LEN + 8 + 8 + 2;
/// Fixed bytes of one DELTA entry: seq, physical time, logical counter, key length, value tag.
pub const ENTRY_FIXED_BYTES: usize = 8 + 8 + 4 + 1 + 1;

// A DELTA holding the largest entry on its own must fit a reassembled message.
const _: () = assert!(
    DELTA_OVERHEAD_BYTES + 8 + ENTRY_FIXED_BYTES + MAX_KEY_BYTES + 2 + MAX_VALUE_BYTES
        <= MAX_ASSEMBLED_BYTES
);
const _: () = assert!(FRAGMENT_HEADER_BYTES == MESSAGE_HEADER_BYTES + 4 + 1 + 1 + 2);
const _: () = assert!(MAX_COLLECTIONS <= u8::MAX as usize);
const _: () = assert!(MAX_COLLECTION_NAME_BYTES <= u8::MAX as usize);
const _: () = assert!(MAX_KEY_BYTES <= u8::MAX as usize && MAX_VALUE_BYTES < u16::MAX as usize);

/// One collection's state digest, as carried in a DIGEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionDigest {
    /// The collection name.
    pub name: Vec<u8>,
    /// [`DotStore::digest`] of the sender's state.
    pub digest: u64,
}

/// What the sender holds of one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginSummary {
    /// The writer.
    pub origin: NodeId,
    /// Contiguous events of it the sender has seen.
    pub max: u64,
    /// [`DotStore::origin_digest`] of its live entries at the sender.
    pub digest: u64,
}

/// One page of the sender's version vector for a collection: every origin of the sender in
/// `from..=to` is listed, so an origin of the receiver in that span but missing here is one
/// the sender has never heard of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorPage {
    /// The collection name.
    pub collection: Vec<u8>,
    /// First origin the page speaks for.
    pub from: NodeId,
    /// Last origin the page speaks for.
    pub to: NodeId,
    /// Origins in ascending order, all within `from..=to`.
    pub origins: Vec<OriginSummary>,
}

/// A chunk of one origin's history: every event in `(lo, hi]` the sender has seen, with the
/// entries still live at the sender. Events in the range without an entry were overwritten
/// or removed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaChunk {
    /// The collection name.
    pub collection: Vec<u8>,
    /// Whose events.
    pub origin: NodeId,
    /// Exclusive lower end of the range.
    pub lo: u64,
    /// Inclusive upper end of the range.
    pub hi: u64,
    /// Live entries in the range, ascending by sequence number.
    pub entries: Vec<(u64, Entry)>,
}

/// One slice of a message too large for one datagram. Every fragment but the last carries
/// exactly [`FRAGMENT_PAYLOAD_BYTES`], so the slices of a message are determined by its total
/// length and a fragment's place in it by its index; decoders refuse anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The sender's number for the message (per sender, wrapping).
    pub message_id: u32,
    /// Position of this slice, below `count`.
    pub index: u8,
    /// Fragments of the message, 2 to [`MAX_FRAGMENTS`].
    pub count: u8,
    /// Length of the whole message: above [`MAX_MESSAGE_BYTES`] (a message that fits one
    /// datagram is never fragmented), at most [`MAX_ASSEMBLED_BYTES`].
    pub total_len: u16,
    /// The slice.
    pub payload: Vec<u8>,
}

impl Fragment {
    /// Fragments needed for a message of `len` bytes (1 when it fits one datagram).
    pub fn count_for(len: usize) -> usize {
        if len <= MAX_MESSAGE_BYTES {
            1
        } else {
            len.div_ceil(FRAGMENT_PAYLOAD_BYTES)
        }
    }

    /// Cuts an encoded message of more than [`MAX_MESSAGE_BYTES`] and at most
    /// [`MAX_ASSEMBLED_BYTES`] into fragments; `None` outside those bounds.
    pub fn split(encoded: &[u8], message_id: u32) -> Option<Vec<Fragment>> {
        if encoded.len() <= MAX_MESSAGE_BYTES || encoded.len() > MAX_ASSEMBLED_BYTES {
            return None;
        }
        let slices: Vec<&[u8]> = encoded.chunks(FRAGMENT_PAYLOAD_BYTES).collect();
        let count = u8::try_from(slices.len()).ok()?;
        let total_len = u16::try_from(encoded.len()).ok()?;
        Some(
            slices
                .into_iter()
                .enumerate()
                .map(|(index, slice)| Fragment {
                    message_id,
                    // Below `count`, which fits a u8.
                    index: index as u8,
                    count,
                    total_len,
                    payload: slice.to_vec(),
                })
                .collect(),
        )
    }

    /// Where this slice starts in the message.
    pub fn offset(&self) -> usize {
        usize::from(self.index) * FRAGMENT_PAYLOAD_BYTES
    }
}

/// An anti-entropy message. Each is one datagram of at most [`MAX_MESSAGE_BYTES`]; a larger
/// one (a chunk with a large value) travels as [`Message::Fragment`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "Here is what my collections hash to."
    Digest(Vec<CollectionDigest>),
    /// "Our digests differ; here is what I hold, send me what I lack."
    Vector(VectorPage),
    /// "Here is a range of history you lack."
    Delta(DeltaChunk),
    /// "Here is one slice of a larger message."
    Fragment(Fragment),
}

impl Message {
    /// Encodes the message. A DELTA may come out longer than [`MAX_MESSAGE_BYTES`] (at most
    /// [`MAX_ASSEMBLED_BYTES`] by construction); the sender then sends it as fragments.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&MESSAGE_MAGIC);
        w.u8(MESSAGE_VERSION);
        match self {
            Message::Digest(digests) => {
                w.u8(TYPE_DIGEST);
                w.u8(digests.len() as u8);
                for digest in digests {
                    w.short_bytes(&digest.name);
                    w.u64(digest.digest);
                }
            }
            Message::Vector(page) => {
                w.u8(TYPE_VECTOR);
                w.short_bytes(&page.collection);
                w.node(page.from);
                w.node(page.to);
                w.u16(page.origins.len() as u16);
                for summary in &page.origins {
                    w.node(summary.origin);
                    w.u64(summary.max);
                    w.u64(summary.digest);
                }
            }
            Message::Delta(chunk) => {
                w.u8(TYPE_DELTA);
                w.short_bytes(&chunk.collection);
                w.node(chunk.origin);
                w.u64(chunk.lo);
                w.u64(chunk.hi);
                w.u16(chunk.entries.len() as u16);
                for (seq, entry) in &chunk.entries {
                    w.u64(*seq);
                    w.entry_body(entry);
                }
            }
            Message::Fragment(fragment) => {
                w.u8(TYPE_FRAGMENT);
                w.u32(fragment.message_id);
                w.u8(fragment.index);
                w.u8(fragment.count);
                w.u16(fragment.total_len);
                w.raw(&fragment.payload);
            }
        }
        w.into_bytes()
    }

    /// Decodes one datagram. Every malformed, oversized, truncated or unknown-version input
    /// gives an error; nothing panics.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::Oversized);
        }
        Message::decode_unchecked(bytes, true)
    }

    /// Decodes a message reassembled from fragments: longer than one datagram, at most
    /// [`MAX_ASSEMBLED_BYTES`], and never itself a fragment.
    pub fn decode_assembled(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_ASSEMBLED_BYTES {
            return Err(DecodeError::Oversized);
        }
        if bytes.len() <= MAX_MESSAGE_BYTES {
            return Err(DecodeError::Invalid(
                "reassembled message fits one datagram",
            ));
        }
        Message::decode_unchecked(bytes, false)
    }

    fn decode_unchecked(bytes: &[u8], fragments_allowed: bool) -> Result<Message, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.take(2)? != MESSAGE_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.u8()?;
        if version != MESSAGE_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let message = match r.u8()? {
            TYPE_DIGEST => Message::Digest(decode_digest(&mut r)?),
            TYPE_VECTOR => Message::Vector(decode_vector(&mut r)?),
            TYPE_DELTA => Message::Delta(decode_delta(&mut r)?),
            TYPE_FRAGMENT if fragments_allowed => Message::Fragment(decode_fragment(&mut r)?),
            TYPE_FRAGMENT => return Err(DecodeError::Invalid("fragment inside a fragment")),
            other => return Err(DecodeError::UnknownType(other)),
        };
        r.finish()?;
        Ok(message)
    }
}

fn decode_digest(r: &mut Reader<'_>) -> Result<Vec<CollectionDigest>, DecodeError> {
    let count = usize::from(r.u8()?);
    if count > MAX_COLLECTIONS {
        return Err(DecodeError::Invalid("collection count"));
    }
    let mut digests = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.collection_name()?;
        let digest = r.u64()?;
        digests.push(CollectionDigest { name, digest });
    }
    Ok(digests)
}

fn decode_vector(r: &mut Reader<'_>) -> Result<VectorPage, DecodeError> {
    let collection = r.collection_name()?;
    let from = r.node()?;
    let to = r.node()?;
    if from > to {
        return Err(DecodeError::Invalid("vector page span"));
    }
    let count = usize::from(r.u16()?);
    if count > ORIGINS_PER_VECTOR {
        return Err(DecodeError::Invalid("vector page length"));
    }
    let mut origins: Vec<OriginSummary> = Vec::with_capacity(count);
    for _ in 0..count {
        let summary = OriginSummary {
            origin: r.node()?,
            max: r.u64()?,
            digest: r.u64()?,
        };
        let ascending = origins
            .last()
            .is_none_or(|last| last.origin < summary.origin);
        if !ascending || summary.origin < from || summary.origin > to {
            return Err(DecodeError::Invalid("vector page order"));
        }
        origins.push(summary);
    }
    Ok(VectorPage {
        collection,
        from,
        to,
        origins,
    })
}

fn decode_delta(r: &mut Reader<'_>) -> Result<DeltaChunk, DecodeError> {
    let collection = r.collection_name()?;
    let origin = r.node()?;
    let lo = r.u64()?;
    let hi = r.u64()?;
    if lo >= hi {
        return Err(DecodeError::Invalid("delta range"));
    }
    let count = usize::from(r.u16()?);
    // Every entry takes at least its fixed bytes, so a count the datagram cannot hold is a lie.
    if count.saturating_mul(ENTRY_FIXED_BYTES) > r.remaining() {
        return Err(DecodeError::Truncated);
    }
    let mut entries: Vec<(u64, Entry)> = Vec::with_capacity(count);
    for _ in 0..count {
        let seq = r.u64()?;
        if seq <= lo || seq > hi || entries.last().is_some_and(|(last, _)| *last >= seq) {
            return Err(DecodeError::Invalid("delta entry order"));
        }
        let entry = r.entry_body(origin)?;
        entries.push((seq, entry));
    }
    Ok(DeltaChunk {
        collection,
        origin,
        lo,
        hi,
        entries,
    })
}

fn decode_fragment(r: &mut Reader<'_>) -> Result<Fragment, DecodeError> {
    let message_id = r.u32()?;
    let index = r.u8()?;
    let count = r.u8()?;
    let total_len = r.u16()?;
    let total = usize::from(total_len);
    if total <= MAX_MESSAGE_BYTES || total > MAX_ASSEMBLED_BYTES {
        return Err(DecodeError::Invalid("fragment total length"));
    }
    let expected_count = total.div_ceil(FRAGMENT_PAYLOAD_BYTES);
    if usize::from(count) != expected_count || expected_count > MAX_FRAGMENTS || index >= count {
        return Err(DecodeError::Invalid("fragment count or index"));
    }
    let offset = usize::from(index) * FRAGMENT_PAYLOAD_BYTES;
    let expected_len = (total - offset).min(FRAGMENT_PAYLOAD_BYTES);
    if r.remaining() != expected_len {
        return Err(DecodeError::Invalid("fragment length"));
    }
    let payload = r.take(expected_len)?.to_vec();
    Ok(Fragment {
        message_id,
        index,
        count,
        total_len,
        payload,
    })
}

/// Appends big-endian fields to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer::default()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.raw(&value.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.raw(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.raw(&value.to_be_bytes());
    }

    pub(crate) fn node(&mut self, node: NodeId) {
        self.raw(&node.0);
    }

    /// A byte string of at most 255 bytes behind a one-byte length; callers bound the length.
    pub(crate) fn short_bytes(&mut self, bytes: &[u8]) {
        self.u8(bytes.len().min(usize::from(u8::MAX)) as u8);
        self.raw(&bytes[..bytes.len().min(usize::from(u8::MAX))]);
    }

    /// Physical time, logical counter, key, value (the writer is implied by the dot).
    pub(crate) fn entry_body(&mut self, entry: &Entry) {
        self.u64(entry.hlc.physical_ms);
        self.u32(entry.hlc.logical);
        self.short_bytes(&entry.key);
        match &entry.value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.u16(value.len().min(usize::from(u16::MAX)) as u16);
                self.raw(&value[..value.len().min(usize::from(u16::MAX))]);
            }
        }
    }

    /// A whole store: policy, version vector, cloud, entries.
    pub(crate) fn store(&mut self, store: &DotStore) {
        self.u8(match store.policy() {
            crate::store::Policy::Lww => 0,
            crate::store::Policy::AddWins => 1,
        });
        let ctx = store.context();
        self.u32(ctx.origins() as u32);
        for (origin, max) in ctx.vector() {
            self.node(origin);
            self.u64(max);
        }
        self.u32(ctx.cloud().count() as u32);
        for dot in ctx.cloud() {
            self.node(dot.origin);
            self.u64(dot.seq);
        }
        self.u32(store.len() as u32);
        for (dot, entry) in store.entries() {
            self.node(dot.origin);
            self.u64(dot.seq);
            self.entry_body(entry);
        }
    }
}

/// Reads big-endian fields, failing on truncation instead of panicking.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.bytes.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn node(&mut self) -> Result<NodeId, DecodeError> {
        Ok(NodeId(self.array()?))
    }

    pub(crate) fn collection_name(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = usize::from(self.u8()?);
        if len == 0 || len > MAX_COLLECTION_NAME_BYTES {
            return Err(DecodeError::Invalid("collection name length"));
        }
        Ok(self.take(len)?.to_vec())
    }

    pub(crate) fn dot(&mut self) -> Result<Dot, DecodeError> {
        Ok(Dot {
            origin: self.node()?,
            seq: self.u64()?,
        })
    }

    /// Reads what [`Writer::entry_body`] wrote; the writer comes from the dot.
    pub(crate) fn entry_body(&mut self, origin: NodeId) -> Result<Entry, DecodeError> {
        let physical_ms = self.u64()?;
        let logical = self.u32()?;
        let key_len = usize::from(self.u8()?);
        if key_len > MAX_KEY_BYTES {
            return Err(DecodeError::Invalid("key length"));
        }
        let key = self.take(key_len)?.to_vec();
        let value = match self.u8()? {
            0 => None,
            1 => {
                let len = usize::from(self.u16()?);
                if len > MAX_VALUE_BYTES {
                    return Err(DecodeError::Invalid("value length"));
                }
                Some(self.take(len)?.to_vec())
            }
            _ => return Err(DecodeError::Invalid("value tag")),
        };
        Ok(Entry {
            key,
            hlc: Hlc {
                physical_ms,
                logical,
                node: origin,
            },
            value,
        })
    }

    /// Reads what [`Writer::store`] wrote.
    pub(crate) fn store(&mut self) -> Result<DotStore, crate::error::CrdtError> {
        let policy = match self.u8()? {
            0 => crate::store::Policy::Lww,
            1 => crate::store::Policy::AddWins,
            _ => return Err(DecodeError::Invalid("policy").into()),
        };
        let origins = self.count(NodeId::LEN + 8)?;
        let mut vv = BTreeMap::new();
        for _ in 0..origins {
            let dot = self.dot()?;
            if vv.insert(dot.origin, dot.seq).is_some() {
                return Err(DecodeError::Invalid("duplicate origin").into());
            }
        }
        let clouds = self.count(NodeId::LEN + 8)?;
        let mut cloud = BTreeSet::new();
        for _ in 0..clouds {
            cloud.insert(self.dot()?);
        }
        let ctx = crate::dot::CausalContext::from_parts(vv, cloud)?;
        let count = self.count(NodeId::LEN + ENTRY_FIXED_BYTES)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let dot = self.dot()?;
            let entry = self.entry_body(dot.origin)?;
            entries.push((dot, entry));
        }
        DotStore::from_parts(policy, ctx, entries)
    }

    /// A u32 element count, refused when the remaining bytes cannot hold that many elements
    /// of at least `min_bytes` each (so a lying count never allocates).
    fn count(&mut self, min_bytes: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_bytes) > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        Ok(count)
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// Encoded size of one DELTA entry.
pub(crate) fn entry_bytes(entry: &Entry) -> usize {
    ENTRY_FIXED_BYTES + entry.key.len() + entry.value.as_ref().map_or(0, |value| 2 + value.len())
}
