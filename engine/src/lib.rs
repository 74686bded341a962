//! The yiflow engine: compiles recipes into plans, fingerprints stages, stores artifacts by content,
//! schedules stage processes and watches for edits.

mod artifact_store;
mod file_hasher;
mod gc;
mod index;
mod plan;
mod registry;
mod sled_index;
mod snapshot_index;
mod stage;
mod store_error;
mod workspace;
mod workspace_lock;

pub use artifact_store::{ArtifactStore, Verify};
pub use file_hasher::FileHasher;
pub use gc::GcReport;
pub use index::{FileEntry, FileStamp, Index, Manifest, RunState, StageRecord};
pub use plan::{Plan, PlannedStage};
pub use registry::Registry;
pub use sled_index::SledIndex;
pub use snapshot_index::SnapshotIndex;
pub use stage::{DecodeCx, ExecError, Launch, Stage, StageIo, input_var};
pub use store_error::StoreError;
pub use workspace::{Access, Workspace};
pub use workspace_lock::{LockHolder, WorkspaceLock};
