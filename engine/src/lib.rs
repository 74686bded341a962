//! The yiflow engine: compiles recipes into plans, fingerprints stages, stores artifacts by content,
//! schedules stage processes and watches for edits.

mod index;
mod plan;
mod registry;
mod stage;

pub use index::{FileEntry, FileStamp, Index, Manifest, RunState, StageRecord};
pub use plan::{Plan, PlannedStage};
pub use registry::Registry;
pub use stage::{DecodeCx, ExecError, Launch, Stage, StageIo, input_var};

/// Placeholder until the store lands.
#[derive(Debug, thiserror::Error)]
#[error("store")]
pub struct StoreError;
