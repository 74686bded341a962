//! Errors of a run that are not a stage's own failure: the store, devices, the file system.

use std::path::PathBuf;

use crate::{DeviceError, SlurmError, StoreError};

/// Why the engine itself could not go on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("declared file {path} changed while the stage ran")]
    FileChanged { path: String },
    #[error("declared file {path} is gone: {source}")]
    FileGone {
        path: String,
        #[source]
        source: StoreError,
    },
}

impl EngineError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
