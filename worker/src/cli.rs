//! The worker's command line. The engine starts it as `yiflow-worker exec-stage` for the stage kinds
//! whose tensor work needs LibTorch; people run `yiflow-worker doctor` to see what it finds.

use clap::{Parser, Subcommand};

use crate::bench_checkpoint::BenchCheckpointArgs;
use crate::bench_train::BenchTrainArgs;

/// Runs yiflow's LibTorch stages (pretraining, fine-tuning, serving) in their own process.
///
/// The `yiflow` binary starts it; you rarely run it by hand, except `yiflow-worker doctor`.
#[derive(Debug, Parser)]
#[command(name = "yiflow-worker", version, long_version = LONG_VERSION)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The version line with the LibTorch binding it was built with.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (tch 0.24.0, for PyTorch 2.11.0)"
);

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs one stage as `yiflow run` describes it in the YIFLOW_* environment variables.
    ExecStage,
    /// Prints the LibTorch in use, whether CUDA is seen and how many devices, and checks that a
    /// tensor computes on each.
    Doctor,
    /// Measures training throughput (tokens/s, MFU) of a model preset: forward, backward and an
    /// AdamW step on one fixed random batch, bf16 on CUDA, timed after a warm-up.
    BenchTrain(BenchTrainArgs),
    /// Measures the training loop's pause for an asynchronous checkpoint of the whole training
    /// state, against a synchronous save of the same state.
    BenchCheckpoint(BenchCheckpointArgs),
}
