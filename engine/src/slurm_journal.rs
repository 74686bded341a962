//! The journal of one stage submitted to Slurm: `job.json` in the stage's job folder
//! (`<workspace>/slurm/<stage>-<fingerprint>/`, beside the `out/` folder the job writes into). It is
//! written the moment `sbatch` returns a job id, so that an engine killed while the job is queued or
//! running finds the job again when run once more, instead of submitting the same work twice. The
//! job folder (journal included) is removed once the engine has handled the job's end.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::JobId;

/// What the engine remembers about a submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobJournal {
    pub job: JobId,
    pub recipe: String,
    pub stage: String,
    /// The stage's fingerprint: a job of another fingerprint is not re-attached to.
    pub fingerprint: String,
    /// The stage's log (the job's output), relative to the workspace.
    pub log: String,
    /// Unix time in ms when the stage was first launched (kept across re-attaching).
    pub started_at: u64,
}

const FILE: &str = "job.json";

impl JobJournal {
    /// The journal of the job folder `dir`, if one was written. An unreadable journal is reported and
    /// treated as absent (the stage is then submitted afresh).
    pub fn load(dir: &Path) -> Option<Self> {
        let path = dir.join(FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("failed to read {}: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_slice(&text) {
            Ok(journal) => Some(journal),
            Err(e) => {
                tracing::warn!("ignoring the damaged job journal {}: {e}", path.display());
                None
            }
        }
    }

    /// Writes the journal into `dir` in one step (a temporary file renamed into place), so a crash
    /// never leaves half a journal.
    pub fn save(&self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!("{FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_journal_loads_back_and_damage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(JobJournal::load(dir.path()), None);
        let journal = JobJournal {
            job: JobId(42),
            recipe: "r".into(),
            stage: "train".into(),
            fingerprint: "abc".into(),
            log: "logs/train/1-abc.log".into(),
            started_at: 7,
        };
        let path = journal.save(dir.path()).unwrap();
        assert_eq!(path, dir.path().join("job.json"));
        assert_eq!(JobJournal::load(dir.path()), Some(journal));
        assert!(!dir.path().join("job.json.tmp").exists());
        std::fs::write(&path, "{\"job\": ").unwrap();
        assert_eq!(JobJournal::load(dir.path()), None);
    }
}
