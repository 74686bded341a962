//! Computing a stage's fingerprint key from its plan entry, its upstream artifacts and its files, and
//! deciding whether the cache can serve it. Shared by `yiflow plan` and the scheduler.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{
    ArtifactStore, EngineError, FileHasher, FingerprintKey, Index, Manifest, Plan, PlannedStage,
    Verify,
};

/// A stage's key together with what the cache holds for it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub key: FingerprintKey,
    pub fingerprint: String,
    /// The intact cached artifact, if any.
    pub cached: Option<Manifest>,
    /// Why a cache entry that exists cannot be used ("artifact modified on disk").
    pub note: Option<String>,
}

/// Hashes of the stage's declared files (relative path -> hash), reading only files whose stamp changed.
pub fn hash_files(
    index: &dyn Index,
    dir: &Path,
    stage: &PlannedStage,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut files = BTreeMap::new();
    for rel in &stage.files {
        let hash =
            FileHasher::hash(index, &dir.join(rel)).map_err(|source| EngineError::FileGone {
                path: rel.display().to_string(),
                source,
            })?;
        files.insert(rel.display().to_string(), hash);
    }
    Ok(files)
}

/// The key of `stage` given its upstream artifacts' content hashes, and its cache entry.
pub fn prepare(
    plan: &Plan,
    stage: &PlannedStage,
    upstream: BTreeMap<String, String>,
    index: &dyn Index,
    artifacts: &ArtifactStore,
    force: bool,
) -> Result<Prepared, EngineError> {
    let key = FingerprintKey {
        kind: stage.kind.kind().to_owned(),
        version: stage.kind.version(),
        params: stage.params.clone(),
        seed: plan.recipe.seed,
        upstream,
        files: hash_files(index, &plan.recipe.dir, stage)?,
    };
    let fingerprint = key.fingerprint();
    let mut prepared = Prepared {
        key,
        fingerprint,
        cached: None,
        note: None,
    };
    if force {
        return Ok(prepared);
    }
    if let Some(manifest) = index.manifest(&prepared.fingerprint)? {
        match artifacts.verify(&manifest) {
            Verify::Intact => prepared.cached = Some(manifest),
            Verify::Missing => {
                prepared.note = Some("its cached artifact was deleted on disk".into());
            }
            Verify::Modified(files) => {
                let shown: Vec<&str> = files.iter().take(3).map(String::as_str).collect();
                prepared.note = Some(format!(
                    "its cached artifact was modified on disk ({}{})",
                    shown.join(", "),
                    if files.len() > 3 { ", ..." } else { "" }
                ));
            }
        }
    }
    Ok(prepared)
}
