//! The workspace folder (`.yiflow` by default) and how to open it. Its layout:
//!
//! ```text
//! lock                  who holds the workspace (WorkspaceLock)
//! index/                the sled index (SledIndex)
//! index.snapshot.json   its read-only snapshot, for readers while a run holds the index
//! artifacts/<hash>/     complete, read-only artifacts (ArtifactStore)
//! tmp/<stage>-<pid>-<n>/out/   where running stages write; moved to artifacts/ when complete
//! logs/                 one log per stage run
//! checkpoints/<fp>/     checkpoints of a training run, by fingerprint, until it completes
//! slurm/<stage>-<fp>/   a stage submitted to Slurm: job.json (its job id), job.sh, out/; kept
//!                       across engine restarts so a rerun re-attaches to the job
//! ```
//!
//! A run opens it for writing (taking the lock, clearing what killed runs left in `tmp/`); `status`,
//! `plan` and `log` open it for reading, which works whether or not a run holds it.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::artifact_store::remove_tree;
use crate::{
    ArtifactStore, Index, LockHolder, SledIndex, SnapshotIndex, StoreError, WorkspaceLock,
};

/// How a workspace is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Exclusive: takes the workspace lock (a run, `gc`).
    Write,
    /// Shared: never waits for or disturbs a run that holds the workspace, and never keeps the
    /// index open (a run starting meanwhile opens it at once). Reads come from the index snapshot.
    Read,
}

/// An open workspace.
pub struct Workspace {
    // Fields drop in order: the index writes its last snapshot before the lock is released.
    pub(crate) index: Box<dyn Index>,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) root: PathBuf,
    pub(crate) lock: Option<WorkspaceLock>,
    took_over: Option<LockHolder>,
    live_holder: Option<LockHolder>,
    /// Folders under `tmp/` this process made: `gc` leaves them to their stages.
    pub(crate) run_dirs: Mutex<HashSet<String>>,
    next_run: AtomicU64,
}

/// A read-only opener waits this long for another reader that has the index open, then reads the
/// snapshot instead.
const READ_PATIENCE: Duration = Duration::from_millis(500);

impl Workspace {
    /// Opens the workspace at `dir`; `command` (e.g. `yiflow run a.kdl`) is what a second run is told
    /// holds it.
    pub fn open(dir: &Path, access: Access, command: &str) -> Result<Workspace, StoreError> {
        let root = std::path::absolute(dir).map_err(|e| StoreError::io("resolve", dir, e))?;
        match access {
            Access::Write => Self::open_write(root, command),
            Access::Read => Self::open_read(root),
        }
    }

    fn open_write(root: PathBuf, command: &str) -> Result<Workspace, StoreError> {
        fs::create_dir_all(&root).map_err(|e| StoreError::io("create", &root, e))?;
        let (lock, took_over) = WorkspaceLock::acquire(&root, command)?;
        for sub in [ARTIFACTS, TMP, LOGS, CHECKPOINTS] {
            let path = root.join(sub);
            fs::create_dir_all(&path).map_err(|e| StoreError::io("create", &path, e))?;
        }
        clear_dir(&root.join(TMP), &HashSet::new())?;
        let index = SledIndex::open(&root.join(INDEX))?;
        Ok(Workspace {
            index: Box::new(index),
            artifacts: ArtifactStore::new(root.join(ARTIFACTS)),
            lock: Some(lock),
            took_over,
            live_holder: None,
            run_dirs: Mutex::new(HashSet::new()),
            next_run: AtomicU64::new(0),
            root,
        })
    }

    fn open_read(root: PathBuf) -> Result<Workspace, StoreError> {
        let index_dir = root.join(INDEX);
        let snapshot = SledIndex::snapshot_path(&index_dir);
        let mut live_holder = WorkspaceLock::holder(&root);
        let index = if live_holder.is_some() || !index_dir.exists() {
            // Held by a run, or never written: nothing to open (and nothing is created).
            SnapshotIndex::open(&snapshot)?
        } else {
            // Free: a fresh snapshot, without keeping sled open (a run may want it any moment).
            let index = SnapshotIndex::detached(&index_dir, READ_PATIENCE)?;
            // A run that started meanwhile is worth knowing about (a `running` record is then live).
            live_holder = WorkspaceLock::holder(&root);
            index
        };
        Ok(Workspace {
            index: Box::new(index),
            artifacts: ArtifactStore::new(root.join(ARTIFACTS)),
            lock: None,
            took_over: None,
            live_holder,
            run_dirs: Mutex::new(HashSet::new()),
            next_run: AtomicU64::new(0),
            root,
        })
    }

    /// The index. Opened for reading, it is a [`SnapshotIndex`]: reads work, writes are refused,
    /// except file stamps while no run holds the workspace (written back when the workspace is
    /// dropped).
    pub fn index(&self) -> &dyn Index {
        self.index.as_ref()
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// The workspace folder (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this process holds the workspace lock.
    pub fn is_writable(&self) -> bool {
        self.lock.is_some()
    }

    /// The holder of a lock left by a killed process, taken over when opening for writing.
    pub fn took_over(&self) -> Option<&LockHolder> {
        self.took_over.as_ref()
    }

    /// The run holding the workspace when it was opened for reading (the index is then its snapshot).
    pub fn live_holder(&self) -> Option<&LockHolder> {
        self.live_holder.as_ref()
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP)
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join(LOGS)
    }

    /// Where a training run with this fingerprint keeps its checkpoints.
    pub fn checkpoints_dir(&self, fingerprint: &str) -> PathBuf {
        self.root.join(CHECKPOINTS).join(fingerprint)
    }

    /// The folder of `stage` (with this fingerprint) run as a Slurm job: `slurm/<stage>-<fp>/`. Unlike
    /// `tmp/`, it survives the engine, so that a rerun finds the job's journal and output.
    pub fn slurm_job_dir(&self, stage: &str, fingerprint: &str) -> PathBuf {
        let fp = &fingerprint[..fingerprint.len().min(16)];
        self.root
            .join(SLURM)
            .join(format!("{}-{fp}", safe_name(stage)))
    }

    /// A fresh folder `tmp/<stage>-<pid>-<n>/` for one run of `stage`, with an empty `out/` inside
    /// for the stage to write its artifact into.
    pub fn new_run_dir(&self, stage: &str) -> Result<PathBuf, StoreError> {
        if self.lock.is_none() {
            return Err(StoreError::ReadOnly);
        }
        let safe = safe_name(stage);
        let tmp = self.tmp_dir();
        loop {
            let n = self.next_run.fetch_add(1, Ordering::Relaxed);
            let name = format!("{safe}-{}-{n}", std::process::id());
            let dir = tmp.join(&name);
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let out = dir.join("out");
                    fs::create_dir(&out).map_err(|e| StoreError::io("create", &out, e))?;
                    self.run_dirs
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(name);
                    return Ok(dir);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io("create", &dir, e)),
            }
        }
    }
}

pub(crate) const INDEX: &str = "index";
pub(crate) const ARTIFACTS: &str = "artifacts";
pub(crate) const TMP: &str = "tmp";
pub(crate) const LOGS: &str = "logs";
pub(crate) const CHECKPOINTS: &str = "checkpoints";
pub(crate) const SLURM: &str = "slurm";

/// A stage name as a file name: anything but letters, digits, `-` and `_` becomes `_`.
fn safe_name(stage: &str) -> String {
    stage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Deletes everything in `dir` except the names in `keep`; returns what was (or would be) removed.
pub(crate) fn clear_dir(dir: &Path, keep: &HashSet<String>) -> Result<Vec<PathBuf>, StoreError> {
    let removed = entries_except(dir, keep)?;
    for path in &removed {
        remove_tree(path)?;
    }
    Ok(removed)
}

/// The entries of `dir` whose names are not in `keep` (none when `dir` is missing).
pub(crate) fn entries_except(
    dir: &Path,
    keep: &HashSet<String>,
) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("read", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("read", dir, e))?;
        if !keep.contains(entry.file_name().to_string_lossy().as_ref()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("root", &self.root)
            .field("writable", &self.lock.is_some())
            .field("live_holder", &self.live_holder)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_index::tests::{manifest, record};
    use crate::workspace_lock::test_child;
    use crate::{FileHasher, Manifest, RunState};

    #[test]
    fn a_workspace_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Workspace>();
    }

    #[test]
    fn writing_creates_the_layout_and_clears_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".yiflow");
        // What a killed run leaves: a half-written stage folder, partly read-only.
        let leftover = root.join("tmp/train-1-0/out/sub");
        fs::create_dir_all(&leftover).unwrap();
        fs::write(leftover.join("x"), "partial").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(leftover.join("x"), fs::Permissions::from_mode(0o444)).unwrap();
            fs::set_permissions(&leftover, fs::Permissions::from_mode(0o555)).unwrap();
        }

        let ws = Workspace::open(&root, Access::Write, "yiflow run a.kdl").unwrap();
        assert!(ws.is_writable());
        assert_eq!(ws.took_over(), None);
        for sub in ["artifacts", "tmp", "logs", "checkpoints", "index"] {
            assert!(root.join(sub).is_dir(), "{sub} exists");
        }
        assert!(
            !root.join("tmp/train-1-0").exists(),
            "leftovers are deleted"
        );
        assert_eq!(ws.checkpoints_dir("abc"), root.join("checkpoints/abc"));
        assert_eq!(ws.artifacts().root(), root.join("artifacts"));

        let run = ws.new_run_dir("my eval/2").unwrap();
        let other = ws.new_run_dir("my eval/2").unwrap();
        assert_ne!(run, other);
        assert_eq!(run.parent(), Some(ws.tmp_dir().as_path()));
        let name = run.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("my_eval_2-") && name.contains(&std::process::id().to_string()),
            "{name}"
        );
        assert!(run.join("out").is_dir());
        assert_eq!(fs::read_dir(run.join("out")).unwrap().count(), 0);
    }

    #[test]
    fn a_second_writer_is_refused_and_a_reader_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path(), Access::Write, "yiflow run a.kdl").unwrap();
        ws.index().put_manifest(&manifest("fp", "c")).unwrap();
        // Another open of the lock file conflicts even within one process, like another process.
        let error = Workspace::open(dir.path(), Access::Write, "yiflow run b.kdl").unwrap_err();
        assert!(matches!(error, StoreError::Locked(_)), "{error}");
        ws.index().flush().unwrap();

        let reader = Workspace::open(dir.path(), Access::Read, "yiflow status a.kdl").unwrap();
        assert_eq!(
            reader.live_holder().map(|h| h.pid),
            Some(std::process::id())
        );
        assert!(!reader.is_writable());
        assert!(reader.index().manifest("fp").unwrap().is_some());
        assert!(matches!(
            reader.index().put_manifest(&manifest("x", "y")),
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(reader.new_run_dir("s"), Err(StoreError::ReadOnly)));
    }

    #[test]
    fn a_reader_of_a_free_workspace_never_blocks_a_run_and_keeps_what_it_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("corpus.txt");
        fs::write(&input, "many tokens").unwrap();
        let old = std::time::SystemTime::now() - Duration::from_hours(1);
        fs::File::options()
            .write(true)
            .open(&input)
            .unwrap()
            .set_modified(old)
            .unwrap();
        {
            let ws = Workspace::open(dir.path(), Access::Write, "yiflow run a.kdl").unwrap();
            ws.index().put_manifest(&manifest("fp", "c")).unwrap();
        }

        let reader = Workspace::open(dir.path(), Access::Read, "yiflow plan a.kdl").unwrap();
        assert_eq!(reader.live_holder(), None);
        assert!(
            reader.index().manifest("fp").unwrap().is_some(),
            "sees the last run"
        );
        let hash = FileHasher::hash(reader.index(), &input).unwrap();
        assert!(matches!(
            reader.index().put_manifest(&manifest("x", "y")),
            Err(StoreError::ReadOnly)
        ));
        drop(reader);
        // What the reader hashed is remembered for the next run.
        let ws = Workspace::open(dir.path(), Access::Write, "yiflow run a.kdl").unwrap();
        let stamp = ws
            .index()
            .file_stamp(&input)
            .unwrap()
            .expect("stamp written back");
        assert_eq!(stamp.hash, hash);
        drop(ws);

        // A reader that is still busy does not keep a run from opening the index.
        let reader = Workspace::open(dir.path(), Access::Read, "yiflow plan a.kdl").unwrap();
        let ws = Workspace::open(dir.path(), Access::Write, "yiflow run a.kdl").unwrap();
        ws.index().put_manifest(&manifest("fp2", "c2")).unwrap();
        drop(reader);
        assert!(ws.index().manifest("fp2").unwrap().is_some());
    }

    #[test]
    fn reading_a_workspace_that_does_not_exist_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".yiflow");
        let reader = Workspace::open(&root, Access::Read, "yiflow status a.kdl").unwrap();
        assert!(reader.index().stage_records().unwrap().is_empty());
        assert!(!root.exists());
    }

    #[test]
    fn child_runs_in_workspace() {
        // The body of the child process of the test below; a no-op as an ordinary test.
        let Some(dir) = test_child::arg() else { return };
        let ws = Workspace::open(&dir, Access::Write, "yiflow run held.kdl").unwrap();
        let mut running = record("r", "train", RunState::Running);
        running.fingerprint = "fp-train".into();
        ws.index().put_stage_record(&running).unwrap();
        let m: Manifest = manifest("fp-data", "c-data");
        ws.index().put_manifest(&m).unwrap();
        ws.index().flush().unwrap();
        test_child::ready_and_wait();
    }

    #[test]
    fn status_reads_a_workspace_that_another_process_runs_in_and_a_killed_run_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let held = test_child::spawn("workspace::tests::child_runs_in_workspace", dir.path());
        let pid = held.child.id();

        let reader = Workspace::open(dir.path(), Access::Read, "yiflow status a.kdl").unwrap();
        assert_eq!(reader.live_holder().map(|h| h.pid), Some(pid));
        let record = reader.index().stage_record("r", "train").unwrap().unwrap();
        assert_eq!(record.state, RunState::Running);
        assert!(reader.index().manifest("fp-data").unwrap().is_some());
        drop(reader);

        let error = Workspace::open(dir.path(), Access::Write, "yiflow run b.kdl").unwrap_err();
        assert!(
            error.to_string().contains(&format!("in use by pid {pid}")),
            "{error}"
        );

        held.kill();
        let ws = Workspace::open(dir.path(), Access::Write, "yiflow run b.kdl").unwrap();
        assert_eq!(ws.took_over().map(|h| h.pid), Some(pid));
        assert_eq!(
            ws.index()
                .stage_record("r", "train")
                .unwrap()
                .map(|r| r.state),
            Some(RunState::Running),
            "what the killed run recorded is still there"
        );
    }
}
