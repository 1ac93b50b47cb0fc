//! The versioned binary encoding of anti-entropy messages and snapshots, and the only place
//! that knows byte offsets. All integers are unsigned big-endian. Specified field by field in
//! `docs/PROTOCOL.md`, section "CRDT anti-entropy".

use std::collections::{BTreeMap, BTreeSet};

use wire::NodeId;

use crate::dot::Dot;
use crate::error::DecodeError;
use crate::hlc::Hlc;
use crate::limits::{
    MAX_COLLECTION_NAME_BYTES, MAX_COLLECTIONS, MAX_KEY_BYTES, MAX_MESSAGE_BYTES, MAX_VALUE_BYTES,
};
use crate::store::{DotStore, Entry};

/// First two bytes of every anti-entropy message: "xc".
pub const MESSAGE_MAGIC: [u8; 2] = *b"xc";
/// The message format version this code speaks.
pub const MESSAGE_VERSION: u8 = 1;
/// Bytes before the body: magic, version, type.
pub const MESSAGE_HEADER_BYTES: usize = 4;

const TYPE_DIGEST: u8 = 1;
const TYPE_VECTOR: u8 = 2;
const TYPE_DELTA: u8 = 3;

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

// The largest entry must fit one datagram on its own, so no value ever needs fragmenting.
const _: () = assert!(
    DELTA_OVERHEAD_BYTES + ENTRY_FIXED_BYTES + MAX_KEY_BYTES + 2 + MAX_VALUE_BYTES
        <= MAX_MESSAGE_BYTES
);
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

/// An anti-entropy message. One message is one datagram of at most [`MAX_MESSAGE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "Here is what my collections hash to."
    Digest(Vec<CollectionDigest>),
    /// "Our digests differ; here is what I hold, send me what I lack."
    Vector(VectorPage),
    /// "Here is a range of history you lack."
    Delta(DeltaChunk),
}

impl Message {
    /// Encodes the message. The sender keeps messages within [`MAX_MESSAGE_BYTES`] by
    /// construction; [`Message::decode`] refuses anything longer.
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
        }
        w.into_bytes()
    }

    /// Decodes one datagram. Every malformed, oversized, truncated or unknown-version input
    /// gives an error; nothing panics.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::Oversized);
        }
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
