//! Asynchronous checkpoints, after the report's memory-based asynchronous checkpointing
//! (Yi-Lightning, §4): the training loop only pauses to copy weights, optimizer moments and the
//! [`TrainState`] into host memory (buffers allocated once, pinned on CUDA); a background thread
//! writes that copy as `state.safetensors` plus `manifest.json` and `metrics.jsonl` into a temporary
//! folder, syncs it and renames it into place (`step-NNNNNNNNN`), then keeps the last K. A folder
//! is complete exactly when its name has no `.tmp-` prefix, so a kill at any moment leaves either
//! the previous checkpoint or the new one.
//!
//! The host copy also serves as the last good state the trainer rolls back to after a fault.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::metrics::{StepMetrics, from_jsonl, to_jsonl};
use super::train_state::TrainState;

const STATE_FILE: &str = "state.safetensors";
const MANIFEST_FILE: &str = "manifest.json";
const METRICS_FILE: &str = "metrics.jsonl";
const TMP_PREFIX: &str = ".tmp-";
/// 2: the data position counts tokens of one stream all phases share (1 counted a phase's sequences).
const FORMAT: u32 = 2;

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot {action} {path}: {reason}")]
    Io {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("checkpoint {path} is not usable: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("the checkpoint writer thread panicked")]
    Panicked,
}

fn io(action: &'static str, path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io {
        action,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    step: u64,
    state: TrainState,
    tensors: usize,
}

/// A training state in host memory.
pub struct Snapshot {
    pub tensors: Vec<(String, Tensor)>,
    pub state: TrainState,
    pub metrics: Vec<StepMetrics>,
}

impl Snapshot {
    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
    }
}

/// Takes snapshots and writes them in the background.
pub struct Checkpointer {
    dir: PathBuf,
    keep: usize,
    /// The last snapshot, when no write holds it.
    held: Option<Snapshot>,
    writing: Option<JoinHandle<(Snapshot, Result<PathBuf, CheckpointError>)>>,
    /// The loop's pause for each snapshot written.
    pub stalls: Vec<Duration>,
}

impl Checkpointer {
    /// Checkpoints in `dir`, keeping the last `keep`; leftovers of interrupted writes are removed.
    pub fn new(dir: &Path, keep: usize) -> Result<Self, CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        for entry in std::fs::read_dir(dir)
            .map_err(|e| io("list", dir, e))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
            held: None,
            writing: None,
            stalls: Vec::new(),
        })
    }

    /// Waits for the write in flight, if any, and takes its snapshot back.
    fn settle(&mut self) -> Result<(), CheckpointError> {
        if let Some(handle) = self.writing.take() {
            let (snapshot, result) = handle.join().map_err(|_| CheckpointError::Panicked)?;
            self.held = Some(snapshot);
            result?;
        }
        Ok(())
    }

    /// Copies `sources` and `state` into host memory (reusing the previous snapshot's buffers);
    /// with `write`, starts writing it in the background. Returns how long the caller was held up.
    pub fn capture(
        &mut self,
        sources: &[(String, Tensor)],
        state: &TrainState,
        metrics: &[StepMetrics],
        write: bool,
    ) -> Result<Duration, CheckpointError> {
        let start = Instant::now();
        self.settle()?;
        let reusable = self.held.take().filter(|s| {
            s.tensors.len() == sources.len()
                && s.tensors
                    .iter()
                    .zip(sources)
                    .all(|((a, x), (b, y))| a == b && x.size() == y.size() && x.kind() == y.kind())
        });
        let tensors = tch::no_grad(|| match reusable {
            Some(mut old) => {
                for ((_, dst), (_, src)) in old.tensors.iter_mut().zip(sources) {
                    dst.copy_(src);
                }
                old.tensors
            }
            None => sources
                .iter()
                .map(|(name, src)| {
                    let host = Tensor::empty(src.size(), (src.kind(), Device::Cpu));
                    let mut host = match src.device() {
                        Device::Cuda(i) => host.pin_memory(Device::Cuda(i)),
                        _ => host,
                    };
                    host.copy_(src);
                    (name.clone(), host)
                })
                .collect(),
        });
        let snapshot = Snapshot {
            tensors,
            state: state.clone(),
            metrics: metrics.to_vec(),
        };
        let stall = start.elapsed();
        if write {
            let dir = self.dir.clone();
            let keep = self.keep;
            self.writing = Some(std::thread::spawn(move || {
                let result = write_snapshot(&dir, &snapshot, keep);
                (snapshot, result)
            }));
            self.stalls.push(stall);
        } else {
            self.held = Some(snapshot);
        }
        Ok(stall)
    }

    /// The last snapshot taken (waiting for its write to finish).
    pub fn last(&mut self) -> Result<Option<&Snapshot>, CheckpointError> {
        self.settle()?;
        Ok(self.held.as_ref())
    }

    /// Waits for the write in flight.
    pub fn finish(&mut self) -> Result<(), CheckpointError> {
        self.settle()
    }

    /// The newest complete checkpoint in the folder, read into host memory.
    pub fn load_latest(&self) -> Result<Option<(PathBuf, Snapshot)>, CheckpointError> {
        let Some(path) = complete_checkpoints(&self.dir)?.pop() else {
            return Ok(None);
        };
        read_snapshot(&path).map(|s| Some((path, s)))
    }
}

/// Complete checkpoint folders of `dir`, oldest first.
pub fn complete_checkpoints(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io("list", dir, e))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
        .map(|e| e.path())
        .filter(|p| p.join(MANIFEST_FILE).is_file())
        .collect();
    found.sort();
    Ok(found)
}

fn sync_file(path: &Path) -> Result<(), CheckpointError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("sync", path, e))
}

/// Writes `snapshot` as `dir/step-NNNNNNNNN` through a temporary folder, then prunes to `keep`.
pub fn write_snapshot(
    dir: &Path,
    snapshot: &Snapshot,
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    let name = format!("step-{:09}", snapshot.state.step);
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let done = dir.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io("remove", &tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io("create", &tmp, e))?;
    let state_file = tmp.join(STATE_FILE);
    Tensor::write_safetensors(&snapshot.tensors, &state_file)
        .map_err(|e| io("write", &state_file, e))?;
    let metrics_file = tmp.join(METRICS_FILE);
    std::fs::write(&metrics_file, to_jsonl(&snapshot.metrics))
        .map_err(|e| io("write", &metrics_file, e))?;
    let manifest = Manifest {
        format: FORMAT,
        step: snapshot.state.step,
        state: snapshot.state.clone(),
        tensors: snapshot.tensors.len(),
    };
    let manifest_file = tmp.join(MANIFEST_FILE);
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| io("encode", &manifest_file, e))?;
    std::fs::write(&manifest_file, text).map_err(|e| io("write", &manifest_file, e))?;
    for f in [&state_file, &metrics_file, &manifest_file] {
        sync_file(f)?;
    }
    sync_file(&tmp)?;
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(|e| io("replace", &done, e))?;
    }
    std::fs::rename(&tmp, &done).map_err(|e| io("rename", &tmp, e))?;
    sync_file(dir)?;
    let all = complete_checkpoints(dir)?;
    for old in &all[..all.len().saturating_sub(keep)] {
        std::fs::remove_dir_all(old).map_err(|e| io("remove", old, e))?;
    }
    Ok(done)
}

/// Reads a complete checkpoint folder.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, CheckpointError> {
    let bad = |reason: String| CheckpointError::Bad {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path.join(MANIFEST_FILE))
        .map_err(|e| io("read", &path.join(MANIFEST_FILE), e))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| bad(format!("manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "format {} (this worker reads {FORMAT}); `yiflow run --force` trains from scratch",
            manifest.format
        )));
    }
    let tensors =
        Tensor::read_safetensors(path.join(STATE_FILE)).map_err(|e| bad(e.to_string()))?;
    if tensors.len() != manifest.tensors {
        return Err(bad(format!(
            "{} tensors, the manifest says {}",
            tensors.len(),
            manifest.tensors
        )));
    }
    let metrics_path = path.join(METRICS_FILE);
    let metrics_text =
        std::fs::read_to_string(&metrics_path).map_err(|e| io("read", &metrics_path, e))?;
    let metrics = from_jsonl(&metrics_text).map_err(|e| bad(format!("metrics: {e}")))?;
    Ok(Snapshot {
        tensors,
        state: manifest.state,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use tch::Kind;

    use super::*;

    fn sources(scale: f64) -> Vec<(String, Tensor)> {
        vec![
            (
                "model.w".to_owned(),
                Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]) * scale,
            ),
            (
                "adamw.m.w".to_owned(),
                Tensor::ones([3, 4], (Kind::Float, Device::Cpu)) * scale,
            ),
        ]
    }

    #[test]
    fn snapshots_round_trip_and_only_the_last_k_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut ck = Checkpointer::new(dir.path(), 2).unwrap();
        let mut state = TrainState::new(4);
        for step in 1..=4u64 {
            state.step = step * 10;
            state.tokens = step * 1000;
            state.data.offset = step;
            let src = sources(step as f64);
            ck.capture(&src, &state, &[], true).unwrap();
            // The copy is independent of the live tensors.
            let _ = src[0].1.shallow_clone().fill_(-1.0);
        }
        ck.finish().unwrap();
        let names: Vec<String> = complete_checkpoints(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["step-000000030", "step-000000040"]);
        let (path, snap) = ck.load_latest().unwrap().unwrap();
        assert!(path.ends_with("step-000000040"));
        assert_eq!(snap.state, state);
        let w = snap.get("model.w").unwrap();
        assert!(w.equal(&(Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]) * 4.0)));
    }

    #[test]
    fn an_interrupted_write_is_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut ck = Checkpointer::new(dir.path(), 2).unwrap();
        let mut state = TrainState::new(1);
        state.step = 5;
        ck.capture(&sources(1.0), &state, &[], true).unwrap();
        ck.finish().unwrap();
        // A write killed half-way: a temporary folder, and a step folder without its manifest.
        std::fs::create_dir_all(dir.path().join(".tmp-step-000000010")).unwrap();
        std::fs::create_dir_all(dir.path().join("step-000000010")).unwrap();
        let ck = Checkpointer::new(dir.path(), 2).unwrap();
        assert!(!dir.path().join(".tmp-step-000000010").exists());
        let (path, snap) = ck.load_latest().unwrap().unwrap();
        assert!(path.ends_with("step-000000005"));
        assert_eq!(snap.state.step, 5);
    }
}
