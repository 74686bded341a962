//! The workspace's [`Index`] in sled (0.34.7), which lets one process at a time open a database. So
//! that `yiflow status`, `plan` and `log` keep working while a run holds it, the index also keeps a
//! read-only JSON snapshot of everything, `index.snapshot.json` beside its folder, rewritten (temporary
//! file, then rename) by a background thread at most every 250 ms while there are new writes, and on
//! [`Index::flush`] and drop. [`SnapshotIndex`](crate::SnapshotIndex) reads it.
//!
//! sled keeps recent writes in its process until it flushes (every 500 ms, or an fsync on demand), so an
//! engine killed with `kill -9` would forget stages it had just completed. Manifests and stage records are
//! therefore also appended, one JSON line each, to a journal (`index.journal` beside the folder) with a
//! single `write` — in the kernel's hands at once, so a killed process loses nothing — and the journal is
//! replayed into sled when the index is next opened, and emptied whenever sled has flushed.

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{FileStamp, Index, Manifest, StageRecord, StoreError};

/// Bumped when the snapshot's layout changes.
pub(crate) const SNAPSHOT_FORMAT: u32 = 1;
/// The snapshot is rewritten at most this often while writes keep coming.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);
/// How long [`SledIndex::open`] waits for a reader that has the database open for a moment.
const OPEN_PATIENCE: Duration = Duration::from_secs(3);

/// The index in sled, with its snapshot kept up to date.
pub struct SledIndex {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    snapshot: PathBuf,
    db: sled::Db,
    manifests: sled::Tree,
    stages: sled::Tree,
    files: sled::Tree,
    state: Mutex<WriterState>,
    wake: Condvar,
    /// Serialises snapshot writes (the background thread and `flush`).
    writing: Mutex<()>,
    /// The journal of manifest and stage-record writes not yet flushed by sled.
    journal: Mutex<fs::File>,
}

/// One journal line.
#[derive(Serialize, serde::Deserialize)]
struct JournalEntry {
    tree: String,
    key: String,
    /// `None` removes the key.
    value: Option<serde_json::Value>,
}

#[derive(Default)]
struct WriterState {
    dirty: bool,
    stop: bool,
}

impl SledIndex {
    /// Opens (or creates) the index in the folder `dir`, waiting up to ~3 s for another process that
    /// has it open briefly (e.g. `yiflow status`).
    pub fn open(dir: &Path) -> Result<SledIndex, StoreError> {
        Self::open_within(dir, OPEN_PATIENCE)
    }

    /// [`SledIndex::open`] with a chosen patience; zero tries once.
    pub fn open_within(dir: &Path, patience: Duration) -> Result<SledIndex, StoreError> {
        let deadline = Instant::now() + patience;
        let db = loop {
            match sled::Config::new().path(dir).open() {
                Ok(db) => break db,
                Err(e) if is_lock_busy(&e) => {
                    if Instant::now() >= deadline {
                        return Err(StoreError::IndexBusy {
                            path: dir.to_path_buf(),
                            waited_s: patience.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => return Err(StoreError::sled(dir, e)),
            }
        };
        // Holding the database, this process is the only snapshot writer: any temporary snapshot
        // is a leftover of a killed one.
        remove_snapshot_leftovers(&snapshot_path(dir));
        let tree = |name: &str| db.open_tree(name).map_err(|e| StoreError::sled(dir, e));
        let journal_path = journal_path(dir);
        replay_journal(&journal_path, &db, dir)?;
        let journal = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(|e| StoreError::io("open", &journal_path, e))?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            snapshot: snapshot_path(dir),
            manifests: tree("manifests")?,
            stages: tree("stages")?,
            files: tree("files")?,
            db,
            // Snapshot soon after opening, in the background: there may be none yet, or the last
            // holder was killed before its latest writes reached it.
            state: Mutex::new(WriterState {
                dirty: true,
                stop: false,
            }),
            wake: Condvar::new(),
            writing: Mutex::new(()),
            journal: Mutex::new(journal),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("yiflow-index-snapshot".into())
                .spawn(move || shared.snapshot_loop())
                .map_err(|e| StoreError::io("start the snapshot thread for", dir, e))?
        };
        Ok(SledIndex {
            shared,
            writer: Some(writer),
        })
    }

    /// Where the snapshot of the index in `dir` lives: `<dir>/../index.snapshot.json`.
    pub fn snapshot_path(dir: &Path) -> PathBuf {
        snapshot_path(dir)
    }

    fn get<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        what: &str,
    ) -> Result<Option<T>, StoreError> {
        let Some(bytes) = tree.get(key).map_err(|e| self.sled(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::corrupt(describe(what, key), &self.shared.dir, e))
    }

    fn put<T: Serialize>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        value: &T,
        what: &str,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            what: describe(what, key),
            source,
        })?;
        if what == "file stamp" {
            // A cache: losing one only costs a re-read.
            tree.insert(key, bytes).map_err(|e| self.sled(e))?;
        } else {
            let value = serde_json::from_slice(&bytes).ok();
            self.journaled(tree, key, value, || tree.insert(key, bytes).map(drop))?;
        }
        self.shared.mark_dirty();
        Ok(())
    }

    /// Appends the change to the journal, then applies it, both under the journal's lock so that a
    /// flush never empties the journal between the two.
    fn journaled(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        value: Option<serde_json::Value>,
        apply: impl FnOnce() -> sled::Result<()>,
    ) -> Result<(), StoreError> {
        let entry = JournalEntry {
            tree: String::from_utf8_lossy(&tree.name()).into_owned(),
            key: String::from_utf8_lossy(key).into_owned(),
            value,
        };
        let mut line = serde_json::to_vec(&entry).map_err(|source| StoreError::Encode {
            what: describe("journal entry", key),
            source,
        })?;
        line.push(b'\n');
        let mut journal = self
            .shared
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        journal
            .write_all(&line)
            .map_err(|e| StoreError::io("write", journal_path(&self.shared.dir), e))?;
        apply().map_err(|e| self.sled(e))
    }

    fn all<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in tree {
            let (key, bytes) = item.map_err(|e| self.sled(e))?;
            let value = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::corrupt(describe(what, &key), &self.shared.dir, e))?;
            out.push(value);
        }
        Ok(out)
    }

    fn sled(&self, e: sled::Error) -> StoreError {
        StoreError::sled(&self.shared.dir, e)
    }
}

/// Key of a stage record: `recipe\0stage`.
pub(crate) fn stage_key(recipe: &str, stage: &str) -> String {
    format!("{recipe}\0{stage}")
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.with_extension("journal")
}

/// Applies the writes a killed process journaled but sled had not flushed. A torn last line (the
/// process died inside the write) is ignored: its change never counted as done.
fn replay_journal(path: &Path, db: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("read", path, e)),
    };
    if text.is_empty() {
        return Ok(());
    }
    let mut replayed = 0;
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(entry) = serde_json::from_slice::<JournalEntry>(line) else {
            continue;
        };
        let tree = db
            .open_tree(&entry.tree)
            .map_err(|e| StoreError::sled(dir, e))?;
        let result = match entry.value {
            Some(value) => tree
                .insert(
                    entry.key.as_bytes(),
                    serde_json::to_vec(&value).unwrap_or_default(),
                )
                .map(drop),
            None => tree.remove(entry.key.as_bytes()).map(drop),
        };
        result.map_err(|e| StoreError::sled(dir, e))?;
        replayed += 1;
    }
    db.flush().map_err(|e| StoreError::sled(dir, e))?;
    fs::write(path, b"").map_err(|e| StoreError::io("truncate", path, e))?;
    tracing::debug!(
        "replayed {replayed} journaled index writes from {}",
        path.display()
    );
    Ok(())
}

fn snapshot_path(dir: &Path) -> PathBuf {
    let parent = dir.parent().unwrap_or(Path::new("."));
    parent.join("index.snapshot.json")
}

/// The snapshot's temporary file for this process.
fn snapshot_tmp(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(name)
}

fn remove_snapshot_leftovers(snapshot: &Path) {
    let (Some(parent), Some(name)) = (snapshot.parent(), snapshot.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn describe(what: &str, key: &[u8]) -> String {
    format!(
        "{what} `{}`",
        String::from_utf8_lossy(key).replace('\0', "/")
    )
}

/// Whether opening failed because another process has the database open.
pub(crate) fn is_busy(error: &StoreError) -> bool {
    matches!(error, StoreError::IndexBusy { .. })
}

/// sled reports a database that another process has open as an `Other` I/O error.
fn is_lock_busy(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl Index for SledIndex {
    fn manifest(&self, fingerprint: &str) -> Result<Option<Manifest>, StoreError> {
        self.get(&self.shared.manifests, fingerprint.as_bytes(), "manifest")
    }

    fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        self.put(
            &self.shared.manifests,
            manifest.fingerprint.as_bytes(),
            manifest,
            "manifest",
        )
    }

    fn remove_manifest(&self, fingerprint: &str) -> Result<(), StoreError> {
        let tree = &self.shared.manifests;
        self.journaled(tree, fingerprint.as_bytes(), None, || {
            tree.remove(fingerprint.as_bytes()).map(drop)
        })?;
        self.shared.mark_dirty();
        Ok(())
    }

    fn manifests(&self) -> Result<Vec<Manifest>, StoreError> {
        self.all(&self.shared.manifests, "manifest")
    }

    fn stage_record(&self, recipe: &str, stage: &str) -> Result<Option<StageRecord>, StoreError> {
        let key = stage_key(recipe, stage);
        self.get(&self.shared.stages, key.as_bytes(), "stage record")
    }

    fn put_stage_record(&self, record: &StageRecord) -> Result<(), StoreError> {
        let key = stage_key(&record.recipe, &record.stage);
        self.put(&self.shared.stages, key.as_bytes(), record, "stage record")
    }

    fn stage_records(&self) -> Result<Vec<StageRecord>, StoreError> {
        self.all(&self.shared.stages, "stage record")
    }

    fn file_stamp(&self, path: &Path) -> Result<Option<FileStamp>, StoreError> {
        self.get(
            &self.shared.files,
            path.as_os_str().as_bytes(),
            "file stamp",
        )
    }

    fn put_file_stamp(&self, path: &Path, stamp: &FileStamp) -> Result<(), StoreError> {
        self.put(
            &self.shared.files,
            path.as_os_str().as_bytes(),
            stamp,
            "file stamp",
        )
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.shared.flush_db()?;
        self.shared.take_dirty();
        self.shared.write_snapshot()
    }
}

impl Drop for SledIndex {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock_state();
            state.stop = true;
            self.shared.wake.notify_all();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Err(e) = self.shared.flush_db() {
            tracing::warn!(
                "failed to flush the index {}: {e}",
                self.shared.dir.display()
            );
        }
        if self.shared.take_dirty()
            && let Err(e) = self.shared.write_snapshot()
        {
            tracing::warn!("{e}");
        }
    }
}

impl Shared {
    /// Flushes sled, then empties the journal it now covers.
    fn flush_db(&self) -> Result<(), StoreError> {
        let journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        self.db
            .flush()
            .map_err(|e| StoreError::sled(&self.dir, e))?;
        journal
            .set_len(0)
            .map_err(|e| StoreError::io("truncate", journal_path(&self.dir), e))
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_dirty(&self) {
        let mut state = self.lock_state();
        if !state.dirty {
            state.dirty = true;
            self.wake.notify_all();
        }
    }

    /// Clears the dirty flag, saying whether it was set.
    fn take_dirty(&self) -> bool {
        std::mem::take(&mut self.lock_state().dirty)
    }

    /// The background thread: waits for writes, snapshots, rests 250 ms, and again until stopped.
    fn snapshot_loop(&self) {
        loop {
            {
                let mut state = self.lock_state();
                while !state.dirty && !state.stop {
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if state.stop {
                    // Drop writes the last snapshot itself, after the final flush.
                    return;
                }
                state.dirty = false;
            }
            if let Err(e) = self.write_snapshot() {
                tracing::warn!("{e}");
            }
            let rest_until = Instant::now() + SNAPSHOT_EVERY;
            let mut state = self.lock_state();
            while !state.stop {
                let now = Instant::now();
                if now >= rest_until {
                    break;
                }
                state = self
                    .wake
                    .wait_timeout(state, rest_until - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }

    /// Writes every record to the snapshot file: a temporary file, then a rename over the old one,
    /// so a reader sees the old snapshot or the new one, never half of one.
    fn write_snapshot(&self) -> Result<(), StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(64 * 1024);
        write!(out, "{{\"format\":{SNAPSHOT_FORMAT}").expect("write to a Vec");
        for (name, tree) in [
            ("manifests", &self.manifests),
            ("stages", &self.stages),
            ("files", &self.files),
        ] {
            write!(out, ",\"{name}\":{{").expect("write to a Vec");
            let mut first = true;
            for item in tree {
                let (key, value) = item.map_err(|e| StoreError::sled(&self.dir, e))?;
                // Values are our own JSON (serde_json wrote them, sled checksums them): spliced in as
                // they are. A key that is not UTF-8 (a file path) is left out; a reader just hashes
                // that file again.
                let Ok(key) = std::str::from_utf8(&key) else {
                    continue;
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut out, key).expect("write to a Vec");
                out.push(b':');
                out.extend_from_slice(&value);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n");

        let tmp = snapshot_tmp(&self.snapshot);
        fs::write(&tmp, &out).map_err(|e| StoreError::io("write", &tmp, e))?;
        fs::rename(&tmp, &self.snapshot).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StoreError::io("write", &self.snapshot, e)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::workspace_lock::test_child;
    use crate::{RunState, SnapshotIndex};

    pub(crate) fn manifest(fingerprint: &str, content_hash: &str) -> Manifest {
        Manifest {
            content_hash: content_hash.into(),
            files: Vec::new(),
            stage: "train".into(),
            kind: "command".into(),
            fingerprint: fingerprint.into(),
            key: json!({"params": {"lr": 0.001}}),
            started_at: 1,
            duration_ms: 2,
            log: Some("logs/train.log".into()),
            metrics: Value::Null,
        }
    }

    pub(crate) fn record(recipe: &str, stage: &str, state: RunState) -> StageRecord {
        StageRecord {
            recipe: recipe.into(),
            stage: stage.into(),
            state,
            fingerprint: "fp".into(),
            key: Value::Null,
            content_hash: None,
            started_at: 0,
            duration_ms: 0,
            log: None,
            detail: None,
            job_id: None,
        }
    }

    fn stamp() -> FileStamp {
        FileStamp {
            size: 3,
            mtime_ns: -5,
            ino: 7,
            hash: "h".into(),
        }
    }

    #[test]
    fn records_roundtrip_and_survive_reopening() {
        let ws = tempfile::tempdir().unwrap();
        let dir = ws.path().join("index");
        {
            let index = SledIndex::open(&dir).unwrap();
            index.put_manifest(&manifest("fp1", "c1")).unwrap();
            index.put_manifest(&manifest("fp2", "c2")).unwrap();
            index.remove_manifest("fp2").unwrap();
            index
                .put_stage_record(&record("r", "a", RunState::Succeeded))
                .unwrap();
            index
                .put_stage_record(&record("r", "b", RunState::Failed))
                .unwrap();
            index
                .put_file_stamp(Path::new("/data/x"), &stamp())
                .unwrap();
        }
        let index = SledIndex::open(&dir).unwrap();
        assert_eq!(index.manifest("fp1").unwrap(), Some(manifest("fp1", "c1")));
        assert_eq!(index.manifest("fp2").unwrap(), None);
        assert_eq!(index.manifests().unwrap().len(), 1);
        let states: Vec<RunState> = index
            .stage_records()
            .unwrap()
            .iter()
            .map(|r| r.state)
            .collect();
        assert_eq!(states, [RunState::Succeeded, RunState::Failed]);
        assert_eq!(
            index.stage_record("r", "b").unwrap().map(|r| r.state),
            Some(RunState::Failed)
        );
        assert_eq!(index.stage_record("other", "b").unwrap(), None);
        assert_eq!(
            index.file_stamp(Path::new("/data/x")).unwrap(),
            Some(stamp())
        );
    }

    #[test]
    fn the_snapshot_mirrors_the_index_after_flush_and_drop() {
        let ws = tempfile::tempdir().unwrap();
        let dir = ws.path().join("index");
        // What a process killed while writing a snapshot leaves.
        fs::write(ws.path().join("index.snapshot.json.tmp-99999"), "{\"form").unwrap();
        let index = SledIndex::open(&dir).unwrap();
        let snapshot = ws.path().join("index.snapshot.json");
        assert_eq!(SledIndex::snapshot_path(&dir), snapshot);
        index.put_manifest(&manifest("fp1", "c1")).unwrap();
        index
            .put_stage_record(&record("r", "a", RunState::Running))
            .unwrap();
        index
            .put_file_stamp(Path::new("/data/x"), &stamp())
            .unwrap();
        index.flush().unwrap();
        let view = SnapshotIndex::open(&snapshot).unwrap();
        assert_eq!(view.manifest("fp1").unwrap(), Some(manifest("fp1", "c1")));
        assert_eq!(
            view.stage_record("r", "a").unwrap().map(|r| r.state),
            Some(RunState::Running)
        );
        assert_eq!(
            view.file_stamp(Path::new("/data/x")).unwrap(),
            Some(stamp())
        );

        index
            .put_stage_record(&record("r", "a", RunState::Succeeded))
            .unwrap();
        drop(index);
        let view = SnapshotIndex::open(&snapshot).unwrap();
        assert_eq!(
            view.stage_record("r", "a").unwrap().map(|r| r.state),
            Some(RunState::Succeeded)
        );
        let leftovers: Vec<_> = fs::read_dir(ws.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary snapshot files are left");
    }

    #[test]
    fn child_holds_index() {
        // The body of the child process of the test below; a no-op as an ordinary test.
        let Some(dir) = test_child::arg() else { return };
        let index = SledIndex::open(&dir).expect("child opens the index");
        index.put_manifest(&manifest("from-child", "c9")).unwrap();
        index
            .put_stage_record(&record("r", "train", RunState::Running))
            .unwrap();
        index.flush().unwrap();
        test_child::ready_and_wait();
    }

    #[test]
    fn the_snapshot_is_readable_while_another_process_holds_the_index() {
        let ws = tempfile::tempdir().unwrap();
        let dir = ws.path().join("index");
        let held = test_child::spawn("sled_index::tests::child_holds_index", &dir);

        let busy = SledIndex::open_within(&dir, Duration::ZERO).err();
        assert!(
            matches!(busy, Some(StoreError::IndexBusy { .. })),
            "sled admits one process at a time"
        );
        let view = SnapshotIndex::open(&SledIndex::snapshot_path(&dir)).unwrap();
        assert_eq!(
            view.manifest("from-child").unwrap(),
            Some(manifest("from-child", "c9"))
        );
        assert_eq!(
            view.stage_record("r", "train").unwrap().map(|r| r.state),
            Some(RunState::Running)
        );

        // Once the holder exits, the index opens (`open` would also wait for a short holder).
        held.release();
        let index = SledIndex::open(&dir).unwrap();
        assert!(index.manifest("from-child").unwrap().is_some());
    }

    #[test]
    fn a_corrupt_record_is_reported_with_its_key() {
        let ws = tempfile::tempdir().unwrap();
        let dir = ws.path().join("index");
        let index = SledIndex::open(&dir).unwrap();
        index
            .shared
            .manifests
            .insert("bad", &b"{not json"[..])
            .unwrap();
        let error = index.manifest("bad").unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("manifest `bad`"), "{error}");
        assert!(index.manifests().is_err(), "listing reports it too");
    }
}
