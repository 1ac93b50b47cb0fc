//! `SeqStore`: persists how far this node's own OGM sequence numbers may have gone, so that a
//! restarted node continues above every number it used before.
//!
//! Other nodes suppress OGMs whose sequence number is not newer than what they already saw
//! from the originator. A node that restarted from 0 would be ignored until its numbers
//! caught up; so the store reserves numbers in blocks: on start it reads the stored bound `B`,
//! starts at `B` and writes `B + SEQ_RESERVATION_BLOCK` before the first OGM goes out. While
//! running, it extends the reservation before the numbers in use reach the bound. A crash
//! therefore skips at most one block, and only one write per block is needed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Sequence numbers reserved per write: 65,536 OGMs last about 18 hours at the default 1 s
/// interval, and 2^32 / 65,536 = 65,536 restarts fit before the 32-bit space wraps (which the
/// routing core's serial-number arithmetic tolerates anyway).
pub const SEQ_RESERVATION_BLOCK: u32 = 65_536;

/// File in the data directory holding the reserved bound, as decimal text.
pub const SEQ_FILE_NAME: &str = "own_seq";

/// Why the sequence-number reservation could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SeqStoreError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file does not hold a decimal number.
    #[error("{path}: expected a decimal sequence number, found {content:?}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it holds (at most the first 32 characters).
        content: String,
    },
}

/// The persisted reservation of own sequence numbers.
#[derive(Debug)]
pub struct SeqStore {
    path: PathBuf,
    reserved_until: u32,
}

impl SeqStore {
    /// Reads the stored bound in `data_dir` (0 if there is none), reserves the next block and
    /// returns the store with the sequence number the router must start from.
    pub fn open(data_dir: &Path) -> Result<(SeqStore, u32), SeqStoreError> {
        let path = data_dir.join(SEQ_FILE_NAME);
        let start = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u32>()
                .map_err(|_| SeqStoreError::Corrupt {
                    path: path.clone(),
                    content: text.chars().take(32).collect(),
                })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(SeqStoreError::Io { path, source }),
        };
        let mut store = SeqStore {
            path,
            reserved_until: start,
        };
        store.reserve_from(start)?;
        Ok((store, start))
    }

    /// The bound persisted on disk: no sequence number beyond it has been used.
    pub fn reserved_until(&self) -> u32 {
        self.reserved_until
    }

    /// Whether `current` (the newest own sequence number) is within half a block of the bound,
    /// or past it, so that a new block must be reserved.
    pub fn needs_extension(&self, current: u32) -> bool {
        let remaining = self.reserved_until.wrapping_sub(current);
        !(SEQ_RESERVATION_BLOCK / 2..=SEQ_RESERVATION_BLOCK).contains(&remaining)
    }

    /// Reserves a block past `current` if needed. Returns whether it wrote.
    pub fn ensure_covers(&mut self, current: u32) -> Result<bool, SeqStoreError> {
        if !self.needs_extension(current) {
            return Ok(false);
        }
        self.reserve_from(current)?;
        Ok(true)
    }

    fn reserve_from(&mut self, current: u32) -> Result<(), SeqStoreError> {
        let bound = current.wrapping_add(SEQ_RESERVATION_BLOCK);
        write_atomically(&self.path, format!("{bound}\n").as_bytes())?;
        self.reserved_until = bound;
        Ok(())
    }
}

/// Writes `contents` to a temporary file, syncs it and renames it over `path`, so that a crash
/// leaves either the old or the new bound, never a torn file.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), SeqStoreError> {
    let io_error = |source| SeqStoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let temporary = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_begins_above_everything_reserved_before() {
        let dir = tempfile::tempdir().unwrap();
        let (first, start) = SeqStore::open(dir.path()).unwrap();
        assert_eq!(start, 0);
        assert_eq!(first.reserved_until(), SEQ_RESERVATION_BLOCK);
        drop(first);
        let (second, start) = SeqStore::open(dir.path()).unwrap();
        assert_eq!(
            start, SEQ_RESERVATION_BLOCK,
            "restart begins at the old bound"
        );
        assert_eq!(second.reserved_until(), 2 * SEQ_RESERVATION_BLOCK);
    }

    #[test]
    fn reservation_is_extended_before_it_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, start) = SeqStore::open(dir.path()).unwrap();
        assert!(!store.ensure_covers(start + 10).unwrap());
        let near_end = store.reserved_until() - SEQ_RESERVATION_BLOCK / 4;
        assert!(store.ensure_covers(near_end).unwrap());
        assert_eq!(store.reserved_until(), near_end + SEQ_RESERVATION_BLOCK);
        let (_, restarted) = SeqStore::open(dir.path()).unwrap();
        assert!(
            restarted > near_end,
            "a crash now still restarts above {near_end}"
        );
    }

    #[test]
    fn bound_wraps_around_the_sequence_space() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SEQ_FILE_NAME),
            format!("{}\n", u32::MAX - 5),
        )
        .unwrap();
        let (store, start) = SeqStore::open(dir.path()).unwrap();
        assert_eq!(start, u32::MAX - 5);
        assert_eq!(store.reserved_until(), SEQ_RESERVATION_BLOCK - 6);
        assert!(!store.needs_extension(u32::MAX));
        assert!(!store.needs_extension(3));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SEQ_FILE_NAME), "garbage").unwrap();
        let error = SeqStore::open(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("own_seq") && error.contains("garbage"),
            "{error}"
        );
    }
}
