//! The yiflow engine: compiles recipes into plans, fingerprints stages, stores artifacts by content,
//! schedules stage processes and watches for edits.

mod assess;
mod devices;
mod engine_error;
mod fingerprint;
mod graph_render;
mod index;
mod load;
mod local_executor;
mod plan;
mod registry;
mod reporter;
mod scheduler;
mod stage;
mod stage_key;
mod supervisor;
mod watch;

pub use assess::{Assessment, Status, assess};
pub use devices::{DeviceError, DevicePool, detect_cuda};
pub use engine_error::EngineError;
pub use fingerprint::FingerprintKey;
pub use graph_render::{to_dot, to_mermaid};
pub use index::{FileEntry, FileStamp, Index, Manifest, RunState, StageRecord};
pub use load::{LoadError, load_plan};
pub use local_executor::{ExitOutcome, ProcessSpec, Programs, run_local};
pub use plan::{Plan, PlannedStage};
pub use registry::Registry;
pub use reporter::{Reporter, format_duration};
pub use scheduler::{Control, Failure, RunOptions, RunSummary, Scheduler};
pub use stage::{DecodeCx, ExecError, Launch, Stage, StageIo, input_var};
pub use supervisor::supervise;
pub use watch::{NamedOptions, watch};
