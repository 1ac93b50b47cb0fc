//! Batched TUN reads and writes with the kernel's offloads (virtio-net header, TSO/GRO).
//!
//! With offloads on, a local TCP sender hands the TUN interface up to 64 KB at a time (one
//! read), which tun-rs splits into packets that each fit the overlay MTU; on the way in, the
//! packets one input delivered are coalesced back into large TCP segments and written with
//! one call each. The overlay MTU is unchanged (packets on links are never larger than it),
//! so Packet Too Big and the path MTU stay exactly as without offloads; only the number of
//! system calls and kernel TCP passes per byte falls. When the kernel refuses offloads the
//! interface is used packet by packet.

use std::io;

use tun_rs::{AsyncDevice, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// Room before each packet in the buffers, for the virtio-net header.
const HEADROOM: usize = 16;

/// Largest read from the TUN interface: a 64 KB TSO segment plus its virtio-net header.
const ORIGINAL_BYTES: usize = VIRTIO_NET_HDR_LEN + 65_535;

/// Most packets waiting to be written: what one input can deliver (a batch of channel
/// datagrams); beyond it packets are dropped and counted.
const MAX_PENDING_WRITES: usize = 512;

/// Write buffers kept for reuse (each up to one overlay packet, 64 KB).
const MAX_SPARE_WRITE_BUFFERS: usize = 64;

/// Packets read from the TUN interface in one call.
#[derive(Default)]
pub struct TunReader {
    original: Vec<u8>,
    buffers: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    offload: bool,
}

impl std::fmt::Debug for TunReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunReader")
            .field("offload", &self.offload)
            .finish_non_exhaustive()
    }
}

impl TunReader {
    /// Buffers for packets of at most `mtu` bytes.
    pub fn new(offload: bool, mtu: usize) -> TunReader {
        let count = if offload { IDEAL_BATCH_SIZE } else { 1 };
        TunReader {
            original: if offload {
                vec![0u8; ORIGINAL_BYTES]
            } else {
                Vec::new()
            },
            // Without offloads a read must still never truncate: room for any overlay MTU.
            buffers: vec![vec![0u8; HEADROOM + mtu.max(2048)]; count],
            sizes: vec![0; count],
            offload,
        }
    }

    /// Waits for the next read; returns how many packets it gave.
    pub async fn recv(&mut self, device: &AsyncDevice) -> io::Result<usize> {
        if self.offload {
            device
                .recv_multiple(
                    &mut self.original,
                    &mut self.buffers,
                    &mut self.sizes,
                    HEADROOM,
                )
                .await
        } else {
            let length = device.recv(&mut self.buffers[0][HEADROOM..]).await?;
            self.sizes[0] = length;
            Ok(1)
        }
    }

    /// The `index`th packet of the last read.
    pub fn packet(&self, index: usize) -> &[u8] {
        let size = self.sizes.get(index).copied().unwrap_or(0);
        self.buffers
            .get(index)
            .and_then(|buffer| buffer.get(HEADROOM..HEADROOM + size))
            .unwrap_or(&[])
    }
}

/// Packets waiting to be written to the TUN interface.
#[derive(Default)]
pub struct TunWriter {
    pending: Vec<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    gro: GROTable,
    offload: bool,
    /// Packets dropped because too many waited.
    pub dropped: u64,
}

impl std::fmt::Debug for TunWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunWriter")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl TunWriter {
    /// A writer for an interface with or without offloads.
    pub fn new(offload: bool) -> TunWriter {
        TunWriter {
            offload,
            gro: GROTable::new(),
            ..TunWriter::default()
        }
    }

    /// Queues `packet` for the next flush.
    pub fn queue(&mut self, packet: &[u8]) {
        if self.pending.len() >= MAX_PENDING_WRITES {
            self.dropped += 1;
            return;
        }
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer.resize(HEADROOM, 0);
        buffer.extend_from_slice(packet);
        self.pending.push(buffer);
    }

    /// Whether packets wait.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Writes every queued packet (coalesced where offloads allow); returns how many packets
    /// were handed over, or the first error (the rest of the batch is dropped).
    pub async fn flush(&mut self, device: &AsyncDevice) -> io::Result<usize> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let count = self.pending.len();
        let result = if self.offload {
            device
                .send_multiple(&mut self.gro, &mut self.pending, HEADROOM)
                .await
                .map(|_| count)
        } else {
            let mut result = Ok(count);
            for buffer in &self.pending {
                if let Err(error) = device.send(&buffer[HEADROOM..]).await {
                    result = Err(error);
                    break;
                }
            }
            result
        };
        for buffer in self.pending.drain(..) {
            if self.spare.len() < MAX_SPARE_WRITE_BUFFERS {
                self.spare.push(buffer);
            }
        }
        result
    }
}
