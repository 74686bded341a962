//! `yiflow-worker exec-stage`: runs one stage inside this process, as the engine describes it in
//! the `YIFLOW_*` environment (see [`StageIo`]).

use thiserror::Error;
use yiflow_engine::{ExecError, Launch, Registry, StageIo};

/// Why a stage could not run.
#[derive(Debug, Error)]
pub enum ExecStageError {
    #[error("cannot read the stage's environment: {0}")]
    Environment(ExecError),
    #[error("unknown stage kind `{kind}` (this worker knows {known})")]
    UnknownKind { kind: String, known: String },
    #[error("stage kind `{kind}` does not run in the worker (the engine starts it as {launch})")]
    NotAWorkerKind { kind: String, launch: &'static str },
    #[error("cannot read the parameters of stage `{stage}`: {source}")]
    Params { stage: String, source: ExecError },
    #[error("stage `{stage}` ({kind}) failed: {source}")]
    Failed {
        stage: String,
        kind: String,
        source: ExecError,
    },
}

/// Runs the stage the environment describes with the worker's stage kinds.
pub fn exec_stage_from_env(
    load_cuda: impl FnOnce() -> Result<(), String>,
) -> Result<(), ExecStageError> {
    let io = StageIo::from_env().map_err(ExecStageError::Environment)?;
    exec_stage(&io, &yiflow_stages::registry(), load_cuda)
}

/// Runs the stage `io` describes. `load_cuda` is called first when the stage was given CUDA
/// devices, so LibTorch sees them.
pub fn exec_stage(
    io: &StageIo,
    registry: &Registry,
    load_cuda: impl FnOnce() -> Result<(), String>,
) -> Result<(), ExecStageError> {
    let stage = registry
        .get(&io.kind)
        .ok_or_else(|| ExecStageError::UnknownKind {
            kind: io.kind.clone(),
            known: registry
                .names()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let params = io.params().map_err(|source| ExecStageError::Params {
        stage: io.stage.clone(),
        source,
    })?;
    match stage.launch(&params) {
        Launch::Worker => {}
        Launch::Shell { .. } => {
            return Err(ExecStageError::NotAWorkerKind {
                kind: io.kind.clone(),
                launch: "a shell command",
            });
        }
        Launch::Internal => {
            return Err(ExecStageError::NotAWorkerKind {
                kind: io.kind.clone(),
                launch: "`yiflow exec-stage`",
            });
        }
    }
    if io.devices.iter().any(|d| d.starts_with("cuda"))
        && let Err(e) = load_cuda()
    {
        tracing::warn!(
            "stage `{}` was given {:?} but CUDA cannot load: {e}",
            io.stage,
            io.devices
        );
    }
    tracing::info!(stage = %io.stage, kind = %io.kind, "running");
    stage
        .execute(&params, io)
        .map_err(|source| ExecStageError::Failed {
            stage: io.stage.clone(),
            kind: io.kind.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn io(dir: &std::path::Path, kind: &str, params: &str) -> StageIo {
        let params_file = dir.join("params.json");
        std::fs::write(&params_file, params).unwrap();
        StageIo {
            stage: "s".to_owned(),
            kind: kind.to_owned(),
            out: dir.join("out"),
            inputs: BTreeMap::new(),
            checkpoints: dir.join("checkpoints"),
            devices: vec!["cuda:0".to_owned()],
            seed: 1,
            recipe_dir: dir.to_owned(),
            params_file,
        }
    }

    #[test]
    fn refuses_kinds_it_does_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let registry = yiflow_stages::registry();
        let never =
            || -> Result<(), String> { panic!("CUDA is loaded only for a stage that runs") };
        let unknown = exec_stage(&io(dir.path(), "pretrian", "{}"), &registry, never).unwrap_err();
        assert!(
            unknown
                .to_string()
                .starts_with("unknown stage kind `pretrian` (this worker knows `bpe`, `command`"),
            "{unknown}"
        );
        let command = io(dir.path(), "command", r#"{"run": "true", "env": {}}"#);
        let shell = exec_stage(&command, &registry, never).unwrap_err();
        assert_eq!(
            shell.to_string(),
            "stage kind `command` does not run in the worker (the engine starts it as a shell command)"
        );
        let broken = exec_stage(&io(dir.path(), "command", "{"), &registry, never).unwrap_err();
        assert!(matches!(broken, ExecStageError::Params { .. }), "{broken}");
    }
}
