//! What the workspace remembers: artifact manifests by fingerprint, the last run of every stage, and
//! the stamps of hashed input files. A small trait of ours over the store (sled today) so that the
//! engine never depends on the database directly, and read-only views can stand in while a run holds it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StoreError;

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the artifact, `/`-separated.
    pub path: String,
    pub size: u64,
    /// blake3 of the contents, hex.
    pub hash: String,
    pub executable: bool,
    /// Modification time (ns since the epoch) and inode when recorded: unchanged stamps mean the
    /// file need not be read again to verify it.
    pub mtime_ns: i128,
    pub ino: u64,
}

/// A complete artifact, stored under the fingerprint of the stage run that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// blake3 over the sorted (path, executable, hash) of every file: the artifact's identity, and its
    /// folder name under `artifacts/`.
    pub content_hash: String,
    pub files: Vec<FileEntry>,
    pub stage: String,
    pub kind: String,
    pub fingerprint: String,
    /// The fingerprint key (see `FingerprintKey`) as JSON, for `plan --explain`.
    pub key: Value,
    /// Unix time in ms when the producing run started, and how long it took.
    pub started_at: u64,
    pub duration_ms: u64,
    /// The run's log, relative to the workspace.
    pub log: Option<String>,
    /// Metrics the stage reported (e.g. final loss), free-form.
    #[serde(default)]
    pub metrics: Value,
}

/// How the last run of a stage ended (or that it is running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Succeeded,
    Cached,
    Failed,
    Cancelled,
    /// A declared file changed while the stage ran: the result was not recorded.
    Stale,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Cached => "cached",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Stale => "stale",
        };
        f.write_str(text)
    }
}

/// The last run of one stage of one recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub recipe: String,
    pub stage: String,
    pub state: RunState,
    pub fingerprint: String,
    /// The fingerprint key as JSON: `plan` diffs the next key against it to say why a stage reruns.
    pub key: Value,
    pub content_hash: Option<String>,
    pub started_at: u64,
    pub duration_ms: u64,
    /// Log of the run, relative to the workspace.
    pub log: Option<String>,
    /// How a failed run ended ("exit code 2", "killed by signal 9", "timeout").
    pub detail: Option<String>,
    /// Cluster job id when the stage ran under Slurm.
    pub job_id: Option<String>,
}

/// Size, modification time and inode of a file when it was last hashed, with the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
    pub hash: String,
}

/// The workspace's index.
pub trait Index: Send + Sync {
    fn manifest(&self, fingerprint: &str) -> Result<Option<Manifest>, StoreError>;
    fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError>;
    fn remove_manifest(&self, fingerprint: &str) -> Result<(), StoreError>;
    fn manifests(&self) -> Result<Vec<Manifest>, StoreError>;

    fn stage_record(&self, recipe: &str, stage: &str) -> Result<Option<StageRecord>, StoreError>;
    fn put_stage_record(&self, record: &StageRecord) -> Result<(), StoreError>;
    /// Every stage record, of every recipe using the workspace.
    fn stage_records(&self) -> Result<Vec<StageRecord>, StoreError>;

    fn file_stamp(&self, path: &Path) -> Result<Option<FileStamp>, StoreError>;
    fn put_file_stamp(&self, path: &Path, stamp: &FileStamp) -> Result<(), StoreError>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
}
