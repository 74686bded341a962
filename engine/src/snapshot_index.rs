//! A read-only [`Index`] over the JSON snapshot that [`SledIndex`](crate::SledIndex) keeps beside its
//! database: what `yiflow status`, `plan` and `log` read while a run holds the workspace (sled admits
//! one process at a time). It is at most ~250 ms behind the run; writes return
//! [`StoreError::ReadOnly`].

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sled_index::{SNAPSHOT_FORMAT, stage_key};
use crate::{FileStamp, Index, Manifest, StageRecord, StoreError};

/// The index as of its last snapshot.
#[derive(Debug, Default)]
pub struct SnapshotIndex {
    path: PathBuf,
    manifests: HashMap<String, Manifest>,
    /// By `recipe\0stage`, ordered like the live index.
    stages: BTreeMap<String, StageRecord>,
    files: HashMap<String, FileStamp>,
}

#[derive(Deserialize)]
struct Snapshot {
    format: u32,
    #[serde(default)]
    manifests: HashMap<String, Manifest>,
    #[serde(default)]
    stages: BTreeMap<String, StageRecord>,
    #[serde(default)]
    files: HashMap<String, FileStamp>,
}

impl SnapshotIndex {
    /// Reads the snapshot at `path`; a missing file is an empty index (no run wrote one yet).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let text = match fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(SnapshotIndex {
                    path: path.to_path_buf(),
                    ..SnapshotIndex::default()
                });
            }
            Err(e) => return Err(StoreError::io("read", path, e)),
        };
        let snapshot: Snapshot = serde_json::from_slice(&text)
            .map_err(|e| StoreError::corrupt("the index snapshot", path, e))?;
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(StoreError::corrupt(
                format!(
                    "the index snapshot (format {}, this yiflow reads {SNAPSHOT_FORMAT})",
                    snapshot.format
                ),
                path,
                serde::de::Error::custom("unknown snapshot format"),
            ));
        }
        Ok(SnapshotIndex {
            path: path.to_path_buf(),
            manifests: snapshot.manifests,
            stages: snapshot.stages,
            files: snapshot.files,
        })
    }

    /// The snapshot file read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Index for SnapshotIndex {
    fn manifest(&self, fingerprint: &str) -> Result<Option<Manifest>, StoreError> {
        Ok(self.manifests.get(fingerprint).cloned())
    }

    fn put_manifest(&self, _: &Manifest) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly)
    }

    fn remove_manifest(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly)
    }

    fn manifests(&self) -> Result<Vec<Manifest>, StoreError> {
        let mut all: Vec<Manifest> = self.manifests.values().cloned().collect();
        all.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        Ok(all)
    }

    fn stage_record(&self, recipe: &str, stage: &str) -> Result<Option<StageRecord>, StoreError> {
        Ok(self.stages.get(&stage_key(recipe, stage)).cloned())
    }

    fn put_stage_record(&self, _: &StageRecord) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly)
    }

    fn stage_records(&self) -> Result<Vec<StageRecord>, StoreError> {
        Ok(self.stages.values().cloned().collect())
    }

    fn file_stamp(&self, path: &Path) -> Result<Option<FileStamp>, StoreError> {
        Ok(path.to_str().and_then(|path| self.files.get(path)).cloned())
    }

    fn put_file_stamp(&self, _: &Path, _: &FileStamp) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly)
    }

    /// Nothing to make durable: the view never changes.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_index::tests::{manifest, record};
    use crate::{FileHasher, RunState, SledIndex};

    #[test]
    fn a_missing_snapshot_is_an_empty_index() {
        let dir = tempfile::tempdir().unwrap();
        let view = SnapshotIndex::open(&dir.path().join("index.snapshot.json")).unwrap();
        assert!(view.manifests().unwrap().is_empty());
        assert!(view.stage_records().unwrap().is_empty());
        assert_eq!(view.stage_record("r", "s").unwrap(), None);
    }

    #[test]
    fn writes_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let view = SnapshotIndex::open(&dir.path().join("missing.json")).unwrap();
        assert!(matches!(
            view.put_manifest(&manifest("fp", "c")),
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(
            view.remove_manifest("fp"),
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(
            view.put_stage_record(&record("r", "s", RunState::Failed)),
            Err(StoreError::ReadOnly)
        ));
        let stamp = FileStamp {
            size: 0,
            mtime_ns: 0,
            ino: 0,
            hash: String::new(),
        };
        assert!(matches!(
            view.put_file_stamp(Path::new("/x"), &stamp),
            Err(StoreError::ReadOnly)
        ));
        assert!(
            StoreError::ReadOnly.to_string().contains("read-only view"),
            "the message says why"
        );
    }

    #[test]
    fn file_hashing_works_through_a_read_only_view() {
        let dir = tempfile::tempdir().unwrap();
        let view = SnapshotIndex::open(&dir.path().join("missing.json")).unwrap();
        let file = dir.path().join("input.txt");
        fs::write(&file, "hello").unwrap();
        assert_eq!(
            FileHasher::hash(&view, &file).unwrap(),
            blake3::hash(b"hello").to_hex().to_string()
        );
    }

    #[test]
    fn a_corrupt_snapshot_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.snapshot.json");
        fs::write(&path, "{\"format\":1,\"manifests\":").unwrap();
        let error = SnapshotIndex::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("index.snapshot.json"), "{error}");
    }

    #[test]
    fn records_keep_the_order_of_the_live_index() {
        let ws = tempfile::tempdir().unwrap();
        let dir = ws.path().join("index");
        let index = SledIndex::open(&dir).unwrap();
        for stage in ["b", "a", "c"] {
            index
                .put_stage_record(&record("r", stage, RunState::Succeeded))
                .unwrap();
        }
        index.flush().unwrap();
        let view = SnapshotIndex::open(&SledIndex::snapshot_path(&dir)).unwrap();
        assert_eq!(
            view.stage_records().unwrap(),
            index.stage_records().unwrap()
        );
    }
}
