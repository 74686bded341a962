//! The trainer shared by the training stage kinds. Parameters, LR schedule, batch growth, data
//! loading and metrics are torch-free (validated and tested without LibTorch); the optimizer,
//! checkpoints and the loop itself sit behind the `torch` feature.

#[cfg(feature = "torch")]
mod adamw;
mod batch_growth;
#[cfg(feature = "torch")]
mod checkpoint;
#[cfg(feature = "torch")]
mod fused_adamw;
mod loader;
mod metrics;
mod params;
mod schedule;
mod train_state;
#[cfg(feature = "torch")]
mod trainer;

#[cfg(feature = "torch")]
pub use adamw::{AdamW, AdamWError, decays};
pub use batch_growth::BatchGrower;
#[cfg(feature = "torch")]
pub use checkpoint::{
    CheckpointError, Checkpointer, Snapshot, complete_checkpoints, read_snapshot, write_snapshot,
};
pub use loader::{Batch, DataPosition, Loader, TooFewTokens, block_tokens, fixed_batch};
pub use metrics::{
    CPU_CORE_FLOPS, Fault, H100_BF16_FLOPS, PeakFlops, StepMetrics, from_jsonl, to_jsonl,
};
pub use params::{
    AdamWParams, BatchGrowth, CheckpointParams, EvalParams, PhaseKind, PhaseParams, PretrainParams,
    RollbackParams, SETTINGS, decode,
};
pub use schedule::learning_rate;
pub use train_state::{BatchId, TrainState};
#[cfg(feature = "torch")]
pub use trainer::{TrainError, Trainable, Trained, Trainer};
