//! The yiflow engine: compiles recipes into plans, fingerprints stages, stores artifacts by content,
//! schedules stage processes and watches for edits.

mod artifact_store;
mod assess;
mod devices;
mod engine_error;
mod file_hasher;
mod fingerprint;
mod gc;
mod graph_render;
mod index;
mod load;
mod local_executor;
mod plan;
mod reaper;
mod receipt;
mod registry;
mod reporter;
mod scheduler;
mod sled_index;
mod slurm;
mod slurm_executor;
mod slurm_journal;
mod snapshot_index;
mod stage;
mod stage_key;
mod stage_run;
mod store_error;
mod watch;
mod workspace;
mod workspace_lock;

pub use artifact_store::{ArtifactStore, Verify};
pub use assess::{Assessment, Status, assess};
pub use devices::{DeviceError, DevicePool, detect_cuda};
pub use engine_error::EngineError;
pub use file_hasher::FileHasher;
pub use fingerprint::FingerprintKey;
pub use gc::GcReport;
pub use graph_render::{to_dot, to_mermaid};
pub use index::{FileEntry, FileStamp, Index, Manifest, RunState, StageRecord};
pub use load::{LoadError, load_plan};
pub use local_executor::{ExitOutcome, ProcessSpec, Programs, run_local};
pub use plan::{Plan, PlannedStage};
pub use reaper::reap;
pub use receipt::{Receipt, ReceiptStage, receipt_key, receipt_path};
pub use registry::Registry;
pub use reporter::{Reporter, format_duration};
pub use scheduler::{Control, Failure, RunOptions, RunSummary, Scheduler};
pub use sled_index::SledIndex;
pub use slurm::{JobId, JobOutcome, JobState, Slurm, SlurmError, SlurmJobSpec};
pub use slurm_executor::{
    JobEvent, MAX_RESUBMITS, SlurmExecutor, SlurmStage, UNKNOWN_PATIENCE, local_only,
};
pub use slurm_journal::JobJournal;
pub use snapshot_index::SnapshotIndex;
pub use stage::{DecodeCx, ExecError, Launch, Stage, StageIo, input_var};
pub use store_error::StoreError;
pub use watch::{NamedOptions, watch};
pub use workspace::{Access, Workspace};
pub use workspace_lock::{LockHolder, WorkspaceLock};
