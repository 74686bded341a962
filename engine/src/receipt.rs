//! The no-op fast path. After a run in which every stage ended succeeded or cached, the engine writes a
//! receipt: the hash of the recipe text (with the yiflow version and every stage kind's version) and, per
//! stage, its fingerprint, artifact hash and declared files. The next `yiflow run` of an unchanged recipe
//! checks the receipt instead of parsing the recipe: if the same files match the same globs with the same
//! hashes and every artifact is intact, every fingerprint is what it was, so nothing can need to run.
//! Any difference falls back to the full path (parse, plan, schedule), which is always correct.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::expand_glob;
use crate::{FileHasher, Plan, Registry, RunState, Verify, Workspace};

/// What one recipe's last complete run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// blake3 of the recipe text, the yiflow version and the kinds' versions.
    pub key: String,
    /// The recipe's name and folder, and the workspace (absolute).
    pub recipe: String,
    pub dir: PathBuf,
    pub workspace: PathBuf,
    /// Stages in topological order.
    pub stages: Vec<ReceiptStage>,
}

/// One stage's line of a receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptStage {
    pub name: String,
    pub fingerprint: String,
    pub content_hash: String,
    /// The `files` patterns as written.
    pub patterns: Vec<String>,
    /// Declared file (relative to the recipe's folder) -> content hash.
    pub files: BTreeMap<String, String>,
}

/// The key of a recipe text as this build of yiflow reads it.
pub fn receipt_key(text: &str, registry: &Registry) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    for name in registry.names() {
        let version = registry.get(name).map_or(0, |k| k.version());
        hasher.update(format!("\0{name}={version}").as_bytes());
    }
    hasher.update(b"\0");
    hasher.update(text.as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// Where the receipt of the recipe at `recipe` (absolute) is kept: a per-user cache, since the
/// workspace's own location is only known after parsing.
pub fn receipt_path(recipe: &Path) -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let id = blake3::hash(recipe.as_os_str().as_encoded_bytes()).to_hex();
    Some(
        cache
            .join("yiflow")
            .join("receipts")
            .join(format!("{}.json", &id[..32])),
    )
}

impl Receipt {
    /// Reads the receipt for `recipe` if it exists and was written for exactly this text.
    pub fn load(recipe: &Path, key: &str) -> Option<Receipt> {
        let text = std::fs::read(receipt_path(recipe)?).ok()?;
        let receipt: Receipt = serde_json::from_slice(&text).ok()?;
        (receipt.key == key).then_some(receipt)
    }

    /// The receipt of a plan whose stages all succeeded or were cached, from their records.
    pub fn of_run(plan: &Plan, ws: &Workspace, key: String) -> Option<Receipt> {
        let mut stages = Vec::with_capacity(plan.stages.len());
        for &i in &plan.order {
            let stage = &plan.stages[i];
            let record = ws
                .index()
                .stage_record(&plan.recipe.name, &stage.name)
                .ok()??;
            if !matches!(record.state, RunState::Succeeded | RunState::Cached) {
                return None;
            }
            let files = record.key.get("files")?;
            stages.push(ReceiptStage {
                name: stage.name.clone(),
                fingerprint: record.fingerprint,
                content_hash: record.content_hash?,
                patterns: stage.decl.files.iter().map(|f| f.value.clone()).collect(),
                files: serde_json::from_value(files.clone()).ok()?,
            });
        }
        Some(Receipt {
            key,
            recipe: plan.recipe.name.clone(),
            dir: plan.recipe.dir.clone(),
            workspace: ws.root().to_path_buf(),
            stages,
        })
    }

    /// Writes the receipt (atomically); failures only cost the fast path.
    pub fn save(&self, recipe: &Path) {
        let Some(path) = receipt_path(recipe) else {
            return;
        };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("receipts live in a folder"))?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::debug!("could not write the receipt {}: {e}", path.display());
        }
    }

    /// Removes the receipt of `recipe` (before a run that may change what it says).
    pub fn discard(recipe: &Path) {
        if let Some(path) = receipt_path(recipe) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// True when everything the receipt vouches for still holds in `ws`: every stage's globs match the
    /// same files with the same content, and every artifact is indexed and intact.
    pub fn still_holds(&self, ws: &Workspace) -> bool {
        let index = ws.index();
        self.stages.iter().all(|stage| {
            let mut files = BTreeMap::new();
            for pattern in &stage.patterns {
                let Ok(found) = expand_glob(&self.dir, pattern) else {
                    return false;
                };
                for path in found {
                    let Ok(hash) = FileHasher::hash(index, &path) else {
                        return false;
                    };
                    let rel = path.strip_prefix(&self.dir).unwrap_or(&path);
                    files.insert(rel.display().to_string(), hash);
                }
            }
            if files != stage.files {
                return false;
            }
            match index.manifest(&stage.fingerprint) {
                Ok(Some(m)) => {
                    m.content_hash == stage.content_hash
                        && ws.artifacts().verify(&m) == Verify::Intact
                }
                _ => false,
            }
        })
    }
}
