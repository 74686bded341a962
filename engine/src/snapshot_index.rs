//! A read-only [`Index`] over the JSON snapshot that [`SledIndex`] keeps beside its database: what
//! `yiflow status`, `plan` and `log` read (sled admits one process at a time). While a run holds the
//! workspace it is at most ~250 ms behind the run, and writes return [`StoreError::ReadOnly`].
//!
//! When no run holds the workspace, readers use a *detached* view: the snapshot refreshed from sled,
//! which is closed again at once, so that a reader that takes its time (a `plan` hashing a large
//! corpus) never keeps a run from opening the index. The file stamps such a reader learns are written
//! back when it is done, if the index is still free, so the hashing is not repeated.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;

use crate::sled_index::{SNAPSHOT_FORMAT, stage_key};
use crate::{FileStamp, Index, Manifest, SledIndex, StageRecord, StoreError, WorkspaceLock};

/// The index as of its last snapshot.
#[derive(Debug)]
pub struct SnapshotIndex {
    path: PathBuf,
    manifests: HashMap<String, Manifest>,
    /// By `recipe\0stage`, ordered like the live index.
    stages: BTreeMap<String, StageRecord>,
    files: HashMap<String, FileStamp>,
    /// For a detached view: the sled folder that learned file stamps go back to.
    write_back: Option<PathBuf>,
    learned: Mutex<HashMap<PathBuf, FileStamp>>,
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
                return Ok(SnapshotIndex::empty(path));
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
        let mut view = SnapshotIndex::empty(path);
        view.manifests = snapshot.manifests;
        view.stages = snapshot.stages;
        view.files = snapshot.files;
        Ok(view)
    }

    fn empty(path: &Path) -> Self {
        SnapshotIndex {
            path: path.to_path_buf(),
            manifests: HashMap::new(),
            stages: BTreeMap::new(),
            files: HashMap::new(),
            write_back: None,
            learned: Mutex::new(HashMap::new()),
        }
    }

    /// A view of the index in the sled folder `dir` while no run holds it: its snapshot is
    /// refreshed from sled (waiting up to `patience` for another reader doing the same), then read.
    /// File stamps put into the view are written back to `dir` on [`Index::flush`] and drop.
    pub fn detached(dir: &Path, patience: Duration) -> Result<Self, StoreError> {
        match SledIndex::open_within(dir, patience) {
            // Dropping it writes the snapshot it would otherwise write in the background.
            Ok(index) => drop(index),
            // A run took the index meanwhile, or another reader is refreshing the snapshot:
            // the snapshot on disk is as fresh as a reader can have.
            Err(e) if crate::sled_index::is_busy(&e) => {}
            Err(e) => return Err(e),
        }
        let mut view = Self::open(&SledIndex::snapshot_path(dir))?;
        view.write_back = Some(dir.to_path_buf());
        Ok(view)
    }

    /// Writes learned file stamps to the index, unless a run holds it now (the run then hashes
    /// those files itself, once).
    fn write_back(&self) -> Result<(), StoreError> {
        let Some(dir) = &self.write_back else {
            return Ok(());
        };
        let learned = std::mem::take(&mut *self.lock_learned());
        if learned.is_empty() {
            return Ok(());
        }
        let root = dir.parent().unwrap_or(Path::new("."));
        if WorkspaceLock::holder(root).is_some() {
            return Ok(());
        }
        let index = match SledIndex::open_within(dir, Duration::ZERO) {
            Ok(index) => index,
            Err(e) if crate::sled_index::is_busy(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        for (path, stamp) in &learned {
            index.put_file_stamp(path, stamp)?;
        }
        index.flush()
    }

    fn lock_learned(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, FileStamp>> {
        self.learned.lock().unwrap_or_else(PoisonError::into_inner)
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
        if let Some(stamp) = self.lock_learned().get(path) {
            return Ok(Some(stamp.clone()));
        }
        Ok(path.to_str().and_then(|path| self.files.get(path)).cloned())
    }

    /// Rejected, except in a detached view: a stamp is a fact about a file that stays true whoever
    /// writes it down, so it is safe to write back later.
    fn put_file_stamp(&self, path: &Path, stamp: &FileStamp) -> Result<(), StoreError> {
        if self.write_back.is_none() {
            return Err(StoreError::ReadOnly);
        }
        self.lock_learned()
            .insert(path.to_path_buf(), stamp.clone());
        Ok(())
    }

    /// A detached view writes back the file stamps it learned; otherwise nothing to do.
    fn flush(&self) -> Result<(), StoreError> {
        self.write_back()
    }
}

impl Drop for SnapshotIndex {
    fn drop(&mut self) {
        if let Err(e) = self.write_back() {
            tracing::debug!("file stamps learned while reading were not kept: {e}");
        }
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
