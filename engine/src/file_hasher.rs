//! Content hashes of input files, read at most once: the index remembers each file's size, mtime and
//! inode with its hash, and a file whose three are unchanged is not read again. Big inputs (a corpus
//! of many GB) cost one read, then a `stat` per plan.

use std::fs::{self, File, Metadata};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{FileStamp, Index, StoreError};

/// Hashes files with blake3, remembering stamps in an [`Index`].
pub struct FileHasher;

/// A file modified this recently could change again within one tick of the file system's clock and
/// keep the same stamp (git's "racily clean" entries): its hash is used but not remembered.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Largest read buffer; blake3 hashes big slices with all its SIMD lanes.
const MAX_BUFFER: usize = 1 << 20;

impl FileHasher {
    /// blake3 hex of the file at `path` (made absolute), from the index when its stamp is unchanged.
    /// A read-only index (another process holds the workspace) is used but not written.
    pub fn hash(index: &dyn Index, path: &Path) -> Result<String, StoreError> {
        let path = std::path::absolute(path).map_err(|e| StoreError::io("resolve", path, e))?;
        let mut before = Self::stamp(&path)?;
        // An undecodable stamp is as good as none: the file is hashed again and the stamp replaced.
        let known = match index.file_stamp(&path) {
            Ok(known) => known,
            Err(StoreError::Corrupt { .. }) => None,
            Err(e) => return Err(e),
        };
        if let Some(known) = known
            && (known.size, known.mtime_ns, known.ino) == before
        {
            return Ok(known.hash);
        }
        // A file written to while it is read gives a hash of neither version: read again until the
        // stamp holds still, and remember only a hash whose stamp did.
        for _ in 0..3 {
            let hash = Self::hash_file(&path)?;
            let after = Self::stamp(&path)?;
            if after != before {
                before = after;
                continue;
            }
            if !is_racy(before.1) {
                let stamp = FileStamp {
                    size: before.0,
                    mtime_ns: before.1,
                    ino: before.2,
                    hash: hash.clone(),
                };
                match index.put_file_stamp(&path, &stamp) {
                    Ok(()) | Err(StoreError::ReadOnly) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(hash);
        }
        Self::hash_file(&path)
    }

    /// Size, modification time (ns since the epoch) and inode of `path`, following symlinks.
    pub fn stamp(path: &Path) -> Result<(u64, i128, u64), StoreError> {
        let meta = fs::metadata(path).map_err(|e| StoreError::io("read", path, e))?;
        Ok(stamp_of(&meta))
    }

    /// blake3 hex of the content of `path`, read in full.
    pub fn hash_file(path: &Path) -> Result<String, StoreError> {
        let mut file = File::open(path).map_err(|e| StoreError::io("read", path, e))?;
        let size = file.metadata().map_or(0, |m| m.len());
        hash_reader(&mut file, size, path)
    }
}

/// The stamp of a file's metadata.
pub(crate) fn stamp_of(meta: &Metadata) -> (u64, i128, u64) {
    (meta.len(), mtime_ns(meta), meta.ino())
}

pub(crate) fn mtime_ns(meta: &Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// blake3 hex of everything `reader` yields; `size_hint` sizes the buffer.
pub(crate) fn hash_reader(
    reader: &mut impl Read,
    size_hint: u64,
    path: &Path,
) -> Result<String, StoreError> {
    let len = usize::try_from(size_hint.saturating_add(1))
        .unwrap_or(MAX_BUFFER)
        .clamp(64, MAX_BUFFER);
    let mut buffer = vec![0u8; len];
    let mut hasher = blake3::Hasher::new();
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(StoreError::io("read", path, e)),
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn is_racy(mtime_ns: i128) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    now - mtime_ns < RACY_WINDOW.as_nanos() as i128
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::sync::Mutex;

    use super::*;
    use crate::{Manifest, StageRecord};

    /// An index that keeps only file stamps, in memory.
    #[derive(Default)]
    struct Stamps(Mutex<Vec<(std::path::PathBuf, FileStamp)>>);

    impl Index for Stamps {
        fn manifest(&self, _: &str) -> Result<Option<Manifest>, StoreError> {
            Ok(None)
        }
        fn put_manifest(&self, _: &Manifest) -> Result<(), StoreError> {
            Ok(())
        }
        fn remove_manifest(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn manifests(&self) -> Result<Vec<Manifest>, StoreError> {
            Ok(Vec::new())
        }
        fn stage_record(&self, _: &str, _: &str) -> Result<Option<StageRecord>, StoreError> {
            Ok(None)
        }
        fn put_stage_record(&self, _: &StageRecord) -> Result<(), StoreError> {
            Ok(())
        }
        fn stage_records(&self) -> Result<Vec<StageRecord>, StoreError> {
            Ok(Vec::new())
        }
        fn file_stamp(&self, path: &Path) -> Result<Option<FileStamp>, StoreError> {
            let stamps = self.0.lock().unwrap();
            Ok(stamps
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, s)| s.clone()))
        }
        fn put_file_stamp(&self, path: &Path, stamp: &FileStamp) -> Result<(), StoreError> {
            let mut stamps = self.0.lock().unwrap();
            stamps.retain(|(p, _)| p != path);
            stamps.push((path.to_path_buf(), stamp.clone()));
            Ok(())
        }
        fn flush(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn blake3_hex(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    /// Rewrites `path` in place (same inode) and puts its mtime back to `mtime`.
    fn rewrite_in_place(path: &Path, content: &[u8], mtime: SystemTime) {
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.write_all(content).unwrap();
        file.set_modified(mtime).unwrap();
    }

    #[test]
    fn an_unchanged_file_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corpus.txt");
        fs::write(&path, b"first version").unwrap();
        let old = SystemTime::now() - Duration::from_hours(1);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let index = Stamps::default();

        let first = FileHasher::hash(&index, &path).unwrap();
        assert_eq!(first, blake3_hex(b"first version"));

        // Same size, same inode, mtime put back: the stamp cannot tell, so the remembered hash comes
        // back, which proves the file was not read.
        rewrite_in_place(&path, b"other version", old);
        assert_eq!(FileHasher::hash(&index, &path).unwrap(), first);

        // A new mtime is noticed.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old + Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            FileHasher::hash(&index, &path).unwrap(),
            blake3_hex(b"other version")
        );
    }

    #[test]
    fn a_size_change_is_noticed_even_with_the_same_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        let old = SystemTime::now() - Duration::from_hours(1);
        fs::write(&path, b"abc").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let index = Stamps::default();
        FileHasher::hash(&index, &path).unwrap();
        rewrite_in_place(&path, b"abcd", old);
        assert_eq!(
            FileHasher::hash(&index, &path).unwrap(),
            blake3_hex(b"abcd")
        );
    }

    #[test]
    fn a_freshly_written_file_is_hashed_but_not_trusted_by_its_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recent.txt");
        fs::write(&path, b"one").unwrap();
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        let index = Stamps::default();
        assert_eq!(FileHasher::hash(&index, &path).unwrap(), blake3_hex(b"one"));
        assert_eq!(index.file_stamp(&path).unwrap(), None);
        // An edit within the same clock tick keeps the stamp; it is still seen.
        rewrite_in_place(&path, b"two", mtime);
        assert_eq!(FileHasher::hash(&index, &path).unwrap(), blake3_hex(b"two"));
    }

    #[test]
    fn large_files_hash_like_blake3_of_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let content: Vec<u8> = (0..3 * MAX_BUFFER + 17).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &content).unwrap();
        assert_eq!(FileHasher::hash_file(&path).unwrap(), blake3_hex(&content));
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let index = Stamps::default();
        let error =
            FileHasher::hash(&index, Path::new("/nonexistent/yiflow/input.txt")).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/yiflow/input.txt"),
            "{error}"
        );
    }
}
