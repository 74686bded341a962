//! What can go wrong in the workspace store: the disk (with the path at fault), the index database, a
//! record that no longer decodes, a write through a read-only view, or a workspace another process holds.

use std::io;
use std::path::{Path, PathBuf};

use crate::LockHolder;

/// Error of the workspace store (index, artifacts, lock, layout).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed; `action` is a verb such as "write", "read" or "rename".
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The disk (or the user's quota) is full. Every write is a temporary file renamed into place, so
    /// what was complete before stays complete.
    #[error(
        "the disk is full: could not {action} {} ({source}); nothing already computed was lost: free \
         some space (`yiflow gc` drops unreferenced artifacts) and run again",
        path.display()
    )]
    DiskFull {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The sled database under the workspace failed.
    #[error("failed to use the index database {}: {source}", path.display())]
    Sled {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// Another process kept the sled database open for longer than a reader should.
    #[error(
        "failed to open the index {}: another process has had it open for {waited_s} s (sled admits \
         one process at a time); run again when it has finished",
        path.display()
    )]
    IndexBusy { path: PathBuf, waited_s: u64 },

    /// A record of the index (or of the snapshot file) does not decode.
    #[error("failed to decode {what} in {}: {source} (the record is corrupt; `yiflow gc` or deleting the workspace folder clears it)", path.display())]
    Corrupt {
        what: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A record could not be encoded (never expected: the types are plain data).
    #[error("failed to encode {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// Something other than a regular file or folder inside an artifact.
    #[error(
        "failed to store {}: {what}; an artifact may hold only regular files and folders (copy the \
         target in instead of linking to it)",
        path.display()
    )]
    Unsupported { what: &'static str, path: PathBuf },

    /// A write through a read-only view of the index (another process holds the workspace).
    #[error(
        "cannot write to the index: this is a read-only view of a workspace that another yiflow process \
         holds"
    )]
    ReadOnly,

    /// Another live process holds the workspace lock.
    #[error("workspace {} is in use by {}", .0.workspace.display(), .0)]
    Locked(LockHolder),
}

impl StoreError {
    /// Wraps an I/O error with the operation and path, recognising a full disk.
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        if is_disk_full(&source) {
            StoreError::DiskFull {
                action,
                path,
                source,
            }
        } else {
            StoreError::Io {
                action,
                path,
                source,
            }
        }
    }

    /// Wraps a sled error for the database at `path`, recognising a full disk.
    pub fn sled(path: impl AsRef<Path>, source: sled::Error) -> Self {
        match source {
            sled::Error::Io(io) if is_disk_full(&io) => StoreError::DiskFull {
                action: "write the index",
                path: path.as_ref().to_path_buf(),
                source: io,
            },
            source => StoreError::Sled {
                path: path.as_ref().to_path_buf(),
                source,
            },
        }
    }

    /// A record (`what`, e.g. "manifest abc…") in `path` that does not decode.
    pub fn corrupt(
        what: impl Into<String>,
        path: impl AsRef<Path>,
        source: serde_json::Error,
    ) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Whether this is a full disk (the caller may want to say so prominently).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }
}

/// ENOSPC or EDQUOT: no space left for this user.
fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_reported_as_a_full_disk_with_the_path() {
        let error = StoreError::io(
            "write",
            "/ws/artifacts/x",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(error.is_disk_full());
        let text = error.to_string();
        assert!(text.starts_with("the disk is full"), "{text}");
        assert!(text.contains("/ws/artifacts/x"), "{text}");
        assert!(text.contains("nothing already computed was lost"), "{text}");
    }

    #[test]
    fn other_io_errors_name_the_action_and_path() {
        let error = StoreError::io(
            "write",
            "/ws/lock",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(!error.is_disk_full());
        assert!(
            error.to_string().starts_with("failed to write /ws/lock: "),
            "{error}"
        );
    }
}
