//! `yiflow plan`: for every stage, cached or will run, and why, without running anything.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::stage_key::{hash_files, prepare};
use crate::{EngineError, FingerprintKey, Plan, RunState, Workspace};

/// What a run would do with a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Cached,
    Run,
}

/// One stage's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    pub stage: String,
    pub kind: String,
    pub status: Status,
    pub reasons: Vec<String>,
    /// Known when every upstream artifact is known.
    pub fingerprint: Option<String>,
    pub key: Option<FingerprintKey>,
}

/// Assesses every stage of `plan` in topological order against the workspace's cache.
pub fn assess(
    plan: &Plan,
    ws: &Workspace,
    force: &[usize],
) -> Result<Vec<Assessment>, EngineError> {
    let index = ws.index();
    let mut hashes: BTreeMap<usize, String> = BTreeMap::new();
    let mut verdicts: BTreeMap<usize, Assessment> = BTreeMap::new();
    for &i in &plan.order {
        let stage = &plan.stages[i];
        let record = index.stage_record(&plan.recipe.name, &stage.name)?;
        let old_key: Option<FingerprintKey> = record
            .as_ref()
            .and_then(|r| serde_json::from_value(r.key.clone()).ok());
        let pending: Vec<&str> = stage
            .inputs
            .iter()
            .filter(|u| !hashes.contains_key(u))
            .map(|&u| plan.stages[u].name.as_str())
            .collect();
        let mut reasons = Vec::new();
        if !pending.is_empty() {
            // The key is not known yet; say what else changed by comparing all but the upstream part.
            if let Some(old) = &old_key {
                let partial = FingerprintKey {
                    kind: stage.kind.kind().to_owned(),
                    version: stage.kind.version(),
                    params: stage.params.clone(),
                    seed: plan.recipe.seed,
                    upstream: old.upstream.clone(),
                    files: hash_files(index, &plan.recipe.dir, stage)?,
                };
                reasons.extend(partial.reasons_against(old));
            } else {
                reasons.push("new stage (never run)".to_owned());
            }
            reasons.extend(pending.iter().map(|u| format!("upstream `{u}` will run")));
            verdicts.insert(
                i,
                Assessment {
                    stage: stage.name.clone(),
                    kind: stage.kind.kind().to_owned(),
                    status: Status::Run,
                    reasons,
                    fingerprint: None,
                    key: None,
                },
            );
            continue;
        }
        let upstream = stage
            .inputs
            .iter()
            .map(|&u| (plan.stages[u].name.clone(), hashes[&u].clone()))
            .collect();
        let forced = force.contains(&i);
        let prepared = prepare(plan, stage, upstream, index, ws.artifacts(), forced)?;
        let status = if let Some(manifest) = &prepared.cached {
            hashes.insert(i, manifest.content_hash.clone());
            Status::Cached
        } else {
            if forced {
                reasons.push("forced with --force".to_owned());
            }
            if let Some(note) = &prepared.note {
                reasons.push(note.clone());
            }
            match (&record, &old_key) {
                (None, _) | (_, None) => reasons.push("new stage (never run)".to_owned()),
                (Some(r), Some(old)) => {
                    let changes = prepared.key.reasons_against(old);
                    if changes.is_empty() && reasons.is_empty() {
                        reasons.push(match r.state {
                            RunState::Failed => "its last run failed".to_owned(),
                            RunState::Cancelled | RunState::Running => {
                                "its last run was interrupted".to_owned()
                            }
                            RunState::Stale => {
                                "a declared file changed during its last run".to_owned()
                            }
                            _ => "no cached artifact for this fingerprint".to_owned(),
                        });
                    }
                    reasons.extend(changes);
                }
            }
            Status::Run
        };
        verdicts.insert(
            i,
            Assessment {
                stage: stage.name.clone(),
                kind: stage.kind.kind().to_owned(),
                status,
                reasons,
                fingerprint: Some(prepared.fingerprint.clone()),
                key: Some(prepared.key),
            },
        );
    }
    Ok(plan
        .order
        .iter()
        .filter_map(|i| verdicts.remove(i))
        .collect())
}
