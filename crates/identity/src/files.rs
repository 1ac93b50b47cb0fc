//! Secret and public files in a node's or CA's data directory: written 0600, refused when other
//! users can read them, and every failure names the file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Permission bits meaning "group or others may access".
const GROUP_OR_OTHER_BITS: u32 = 0o077;

/// Largest identity file read (keys, certificates, bundles, CA state). Real files are a few
/// kilobytes; a bigger one is not ours and reading it whole would waste memory.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why an identity file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file does not exist.
    #[error("{path}: missing (run `x0tta6bl4 init` or `x0tta6bl4 ca init` first)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A secret file other users can read.
    #[error("{path} has mode {mode:o}, so other users can read it; run `chmod 600 {path}`")]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than any identity file.
    #[error("{path}: {size} bytes is larger than any identity file ({max} bytes)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The file's content is not what it should be.
    #[error("{path}: corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl FileError {
    /// A `Corrupt` error for `path`.
    pub fn corrupt(path: &Path, reason: impl std::fmt::Display) -> FileError {
        FileError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Reads a secret file, refusing it when group or others have any access.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, FileError> {
    let metadata = metadata(path)?;
    let mode = metadata.mode() & 0o777;
    if mode & GROUP_OR_OTHER_BITS != 0 {
        return Err(FileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    read_checked(path, metadata.len())
}

/// Reads a public file (certificate, bundle, CA state).
pub fn read_public(path: &Path) -> Result<Vec<u8>, FileError> {
    let metadata = metadata(path)?;
    read_checked(path, metadata.len())
}

/// Writes `bytes` to `path` with mode 0600, atomically: a temporary file in the same
/// directory is written, synced and renamed over the target, so a crash leaves the old file
/// or the new one, never half of either.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let io = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io)?;
        // The mode given to open() applies only to newly created files.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    fs::rename(&temporary, path).map_err(io)
}

fn metadata(path: &Path) -> Result<fs::Metadata, FileError> {
    fs::metadata(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            FileError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            FileError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn read_checked(path: &Path, size: u64) -> Result<Vec<u8>, FileError> {
    if size > MAX_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size,
            max: MAX_FILE_BYTES,
        });
    }
    fs::read(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_written_private_and_refused_when_opened_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret.key");
        write_private(&path, b"key bytes").expect("write");
        assert_eq!(fs::metadata(&path).expect("meta").mode() & 0o777, 0o600);
        assert_eq!(read_secret(&path).expect("read"), b"key bytes");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = read_secret(&path).expect_err("too open");
        assert!(
            matches!(error, FileError::TooOpen { mode: 0o644, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("secret.key"));
        let missing = read_secret(&dir.path().join("absent.key")).expect_err("missing");
        assert!(matches!(missing, FileError::Missing { .. }));
        assert!(missing.to_string().contains("absent.key"));
    }
}
