//! Wire types of x0tta6bl4: node identifiers and the versioned binary TLV packet format.
//!
//! # Layout
//! - [`id`]: `NodeId`, the 128-bit identifier derived from a node's public key.
//! - [`message`]: the control messages (hello, probe, signed OGM, sequence-number request).
//! - [`codec`]: packet header, TLV framing, `encode`/`decode`, and the decode errors.
//!
//! The crate does no I/O, reads no clock and never panics on input: every decoder returns
//! a [`DecodeError`] for malformed, truncated, oversized or wrong-version bytes. The format
//! is specified field by field in `docs/PROTOCOL.md`.

pub mod codec;
pub mod id;
pub mod message;

pub use codec::{
    DecodeError, HEADER_BYTES, MAGIC, MAX_PACKET_BYTES, MessageView, OGM_ENTRY_BYTES, OgmBatch,
    Packet, PacketView, PacketWriter, TLV_HEADER_BYTES, VERSION, encoded_len,
};
pub use id::{NodeId, OVERLAY_PREFIX, OVERLAY_PREFIX_BITS, ParseNodeIdError};
pub use message::{
    COST_INFINITE, Hello, Message, OGM_FLAG_URGENT, OGM_SIGNATURE_BYTES, OGM_SIGNATURE_TAG,
    OGM_SIGNED_PART_BYTES, Ogm, OgmSignature, Probe, SeqnoRequest, TTL_UNLIMITED, ogm_signed_part,
};
