//! `yiflow gc`: frees what no stage needs any more. What stays: the artifact of the latest run of
//! every stage of every recipe that used the workspace, the manifests of that content, the logs those
//! runs and manifests name, and the checkpoints of an interrupted training run that a rerun would
//! resume, and the Slurm job folders of such a run, which a rerun re-attaches to. Everything else
//! goes: older manifests, artifact folders nothing references, other logs, checkpoints of finished
//! runs, job folders an engine killed mid-run left for stages that have moved on, and leftovers in
//! `tmp/`.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::artifact_store::{remove_tree, tree_size};
use crate::workspace::{CHECKPOINTS, SLURM, entries_except};
use crate::{RunState, StoreError, Workspace};

/// What [`Workspace::gc`] removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    pub artifacts_removed: usize,
    pub artifacts_kept: usize,
    pub manifests_removed: usize,
    pub manifests_kept: usize,
    pub logs_removed: usize,
    pub checkpoints_removed: usize,
    /// Slurm job folders (`slurm/<stage>-<fp>/`) of runs no rerun will re-attach to.
    pub slurm_removed: usize,
    /// Folders and files under `tmp/` left by killed runs.
    pub tmp_removed: usize,
    /// Bytes of the files removed.
    pub bytes_freed: u64,
}

impl Workspace {
    /// Drops what the latest runs no longer reference (see the module docs). Needs the workspace
    /// opened for writing; with `dry_run` nothing is deleted and the report says what would be.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport, StoreError> {
        if self.lock.is_none() {
            return Err(StoreError::ReadOnly);
        }
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        let records = self.index.stage_records()?;
        let keep_content: HashSet<String> = records
            .iter()
            .filter_map(|r| r.content_hash.clone())
            .collect();
        let mut keep_logs: HashSet<PathBuf> = records
            .iter()
            .filter_map(|r| r.log.as_deref())
            .map(|log| self.root.join(log))
            .collect();
        // A run that did not finish (killed, failed, cancelled) resumes from its checkpoints when its
        // fingerprint comes round again. A stale run's inputs changed under it: no resuming that.
        let unfinished: Vec<_> = records
            .iter()
            .filter(|r| {
                matches!(
                    r.state,
                    RunState::Running | RunState::Failed | RunState::Cancelled
                )
            })
            .collect();
        let keep_checkpoints: HashSet<String> =
            unfinished.iter().map(|r| r.fingerprint.clone()).collect();
        let keep_jobs: HashSet<String> = unfinished
            .iter()
            .filter_map(|r| {
                let dir = self.slurm_job_dir(&r.stage, &r.fingerprint);
                Some(dir.file_name()?.to_string_lossy().into_owned())
            })
            .collect();

        // Manifests first: a manifest whose folder is gone would only be rebuilt, but a folder is
        // never deleted while a kept manifest names it.
        for manifest in self.index.manifests()? {
            if keep_content.contains(&manifest.content_hash) {
                report.manifests_kept += 1;
                keep_logs.extend(manifest.log.as_deref().map(|log| self.root.join(log)));
            } else {
                report.manifests_removed += 1;
                if !dry_run {
                    self.index.remove_manifest(&manifest.fingerprint)?;
                }
            }
        }
        if !dry_run {
            self.index.flush()?;
        }

        for name in self.artifacts.list()? {
            if keep_content.contains(&name) {
                report.artifacts_kept += 1;
                continue;
            }
            report.artifacts_removed += 1;
            report.bytes_freed += tree_size(&self.artifacts.path(&name));
            if !dry_run {
                self.artifacts.remove(&name)?;
            }
        }

        for dir in entries_except(&self.root.join(CHECKPOINTS), &keep_checkpoints)? {
            report.checkpoints_removed += 1;
            report.bytes_freed += Self::discard(&dir, dry_run)?;
        }

        for dir in entries_except(&self.root.join(SLURM), &keep_jobs)? {
            report.slurm_removed += 1;
            report.bytes_freed += Self::discard(&dir, dry_run)?;
        }

        for log in files_below(&self.logs_dir())? {
            if !keep_logs.contains(&log) {
                report.logs_removed += 1;
                report.bytes_freed += Self::discard(&log, dry_run)?;
            }
        }
        if !dry_run {
            remove_empty_dirs(&self.logs_dir());
        }

        let in_use = self
            .run_dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for leftover in entries_except(&self.tmp_dir(), &in_use)? {
            report.tmp_removed += 1;
            report.bytes_freed += Self::discard(&leftover, dry_run)?;
        }
        Ok(report)
    }

    /// Removes `path` unless `dry_run`; returns its size.
    fn discard(path: &Path, dry_run: bool) -> Result<u64, StoreError> {
        let size = tree_size(path);
        if !dry_run {
            remove_tree(path)?;
        }
        Ok(size)
    }
}

/// Every file below `dir`, recursively (none when `dir` is missing).
fn files_below(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("read", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("read", &dir, e))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Removes the empty folders below `dir` (not `dir` itself), deepest first.
fn remove_empty_dirs(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            remove_empty_dirs(&path);
            // Fails, as it should, when the folder is not empty.
            let _ = fs::remove_dir(&path);
        }
    }
}

impl fmt::Display for GcReport {
    /// `removed 3 artifacts, 5 manifests and 2 logs (12.4 MiB freed); kept 10 artifacts`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            (self.artifacts_removed, "artifact", "artifacts"),
            (self.manifests_removed, "manifest", "manifests"),
            (self.logs_removed, "log", "logs"),
            (
                self.checkpoints_removed,
                "checkpoint folder",
                "checkpoint folders",
            ),
            (self.slurm_removed, "Slurm job folder", "Slurm job folders"),
            (self.tmp_removed, "leftover in tmp/", "leftovers in tmp/"),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect();
        let kept = format!(
            "kept {} {} ({} {})",
            self.artifacts_kept,
            if self.artifacts_kept == 1 {
                "artifact"
            } else {
                "artifacts"
            },
            self.manifests_kept,
            if self.manifests_kept == 1 {
                "manifest"
            } else {
                "manifests"
            },
        );
        if parts.is_empty() {
            return write!(f, "nothing to remove; {kept}");
        }
        let list = match parts.as_slice() {
            [one] => one.clone(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
            [] => unreachable!("parts is not empty"),
        };
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let freed = if self.dry_run { "to free" } else { "freed" };
        write!(
            f,
            "{verb} {list} ({} {freed}); {kept}",
            human_bytes(self.bytes_freed)
        )
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_index::tests::{manifest, record};
    use crate::{Access, StageRecord, Verify};

    /// Commits an artifact with one file and records a manifest for it under `fingerprint`.
    fn artifact(ws: &Workspace, fingerprint: &str, content: &str) -> String {
        let run = ws.new_run_dir("s").unwrap();
        fs::write(run.join("out/data.txt"), content).unwrap();
        let (hash, files) = ws.artifacts().commit(&run.join("out")).unwrap();
        fs::remove_dir_all(&run).unwrap();
        let mut m = manifest(fingerprint, &hash);
        m.files = files;
        m.log = Some(format!("logs/{fingerprint}.log"));
        ws.index().put_manifest(&m).unwrap();
        fs::write(ws.root().join(format!("logs/{fingerprint}.log")), "log").unwrap();
        hash
    }

    fn latest(stage: &str, state: RunState, fingerprint: &str, hash: Option<&str>) -> StageRecord {
        let mut r = record("r", stage, state);
        r.fingerprint = fingerprint.into();
        r.content_hash = hash.map(Into::into);
        r.log = Some(format!("logs/{fingerprint}.log"));
        r
    }

    #[test]
    fn gc_keeps_what_the_latest_runs_reference_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path(), Access::Write, "yiflow gc a.kdl").unwrap();
        let old = artifact(&ws, "fp-a-old", "old output");
        let new = artifact(&ws, "fp-a-new", "new output");
        // Another fingerprint with byte-identical output shares the kept folder: its manifest stays.
        let same = artifact(&ws, "fp-a-same", "new output");
        assert_eq!(same, new);
        let b = artifact(&ws, "fp-b", "b output");
        ws.index()
            .put_stage_record(&latest("a", RunState::Succeeded, "fp-a-new", Some(&new)))
            .unwrap();
        ws.index()
            .put_stage_record(&latest("b", RunState::Cached, "fp-b", Some(&b)))
            .unwrap();
        // An interrupted training run keeps its checkpoints; a finished one does not.
        ws.index()
            .put_stage_record(&latest("train", RunState::Running, "fp-train", None))
            .unwrap();
        fs::create_dir_all(ws.checkpoints_dir("fp-train").join("step-100")).unwrap();
        fs::write(ws.checkpoints_dir("fp-train").join("step-100/w"), "w").unwrap();
        fs::create_dir_all(ws.checkpoints_dir("fp-b")).unwrap();
        fs::write(ws.checkpoints_dir("fp-b").join("w"), "12345").unwrap();
        fs::write(ws.logs_dir().join("fp-train.log"), "training").unwrap();
        // An engine killed while its stages ran under Slurm: the interrupted stage's job folder
        // stays for the rerun to re-attach; one of a stage that has since finished goes.
        let train_job = ws.slurm_job_dir("train", "fp-train");
        fs::create_dir_all(train_job.join("out")).unwrap();
        let old_job = ws.slurm_job_dir("a", "fp-a-old");
        fs::create_dir_all(old_job.join("out")).unwrap();
        fs::write(old_job.join("job.json"), "{}").unwrap();
        // A killed run's leftover; and a folder a stage of this process is writing right now.
        fs::create_dir_all(ws.tmp_dir().join("x-1-0/out")).unwrap();
        let busy = ws.new_run_dir("busy").unwrap();

        let dry = ws.gc(true).unwrap();
        assert!(dry.dry_run);
        assert!(
            ws.artifacts().path(&old).exists(),
            "a dry run deletes nothing"
        );
        assert!(ws.index().manifest("fp-a-old").unwrap().is_some());

        let report = ws.gc(false).unwrap();
        assert_eq!(
            report,
            GcReport {
                dry_run: false,
                ..dry.clone()
            }
        );
        assert_eq!(report.artifacts_removed, 1);
        assert_eq!(report.artifacts_kept, 2);
        assert_eq!(report.manifests_removed, 1);
        assert_eq!(report.manifests_kept, 3);
        assert_eq!(report.checkpoints_removed, 1);
        assert_eq!(report.slurm_removed, 1);
        assert_eq!(report.logs_removed, 1);
        assert_eq!(report.tmp_removed, 1);
        assert_eq!(
            report.bytes_freed,
            "old output".len() as u64 + 5 + "{}".len() as u64 + "log".len() as u64
        );
        assert!(train_job.join("out").exists());
        assert!(!old_job.exists());

        assert!(!ws.artifacts().path(&old).exists());
        assert_eq!(ws.index().manifest("fp-a-old").unwrap(), None);
        assert!(!ws.logs_dir().join("fp-a-old.log").exists());
        for fp in ["fp-a-new", "fp-a-same", "fp-b"] {
            let m = ws.index().manifest(fp).unwrap().expect("kept manifest");
            assert_eq!(ws.artifacts().verify(&m), Verify::Intact, "{fp}");
            assert!(ws.logs_dir().join(format!("{fp}.log")).exists(), "{fp}");
        }
        assert!(ws.checkpoints_dir("fp-train").join("step-100/w").exists());
        assert!(ws.logs_dir().join("fp-train.log").exists());
        assert!(!ws.checkpoints_dir("fp-b").exists());
        assert!(!ws.tmp_dir().join("x-1-0").exists());
        assert!(
            busy.join("out").exists(),
            "a stage's folder in use is left alone"
        );

        let again = ws.gc(false).unwrap();
        assert_eq!(
            again.to_string(),
            "nothing to remove; kept 2 artifacts (3 manifests)"
        );
    }

    #[test]
    fn gc_needs_the_workspace_lock() {
        let dir = tempfile::tempdir().unwrap();
        drop(Workspace::open(dir.path(), Access::Write, "yiflow run a.kdl").unwrap());
        let reader = Workspace::open(dir.path(), Access::Read, "yiflow status a.kdl").unwrap();
        assert!(matches!(reader.gc(true), Err(StoreError::ReadOnly)));
    }

    #[test]
    fn the_report_reads_well() {
        let report = GcReport {
            dry_run: false,
            artifacts_removed: 3,
            artifacts_kept: 10,
            manifests_removed: 5,
            manifests_kept: 12,
            logs_removed: 1,
            checkpoints_removed: 0,
            slurm_removed: 2,
            tmp_removed: 0,
            bytes_freed: 13_002_342,
        };
        assert_eq!(
            report.to_string(),
            "removed 3 artifacts, 5 manifests, 1 log and 2 Slurm job folders (12.4 MiB freed); kept 10 artifacts (12 manifests)"
        );
        let dry = GcReport {
            dry_run: true,
            artifacts_removed: 1,
            bytes_freed: 10,
            ..GcReport::default()
        };
        assert_eq!(
            dry.to_string(),
            "would remove 1 artifact (10 B to free); kept 0 artifacts (0 manifests)"
        );
    }
}
