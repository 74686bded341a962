//! `yiflow-worker bench-checkpoint`: how long the training loop stalls for one asynchronous
//! checkpoint, against a synchronous save of the same state (issue: the stall must be at most 10%).
//!
//! Both sides train the same model with the trainer's optimizer and checkpoint its whole state —
//! f32 weights, both AdamW moments and the [`TrainState`] — every `--every` steps, through the
//! trainer's own [`Checkpointer`]:
//!
//! - **async**: the loop's pause is what [`Checkpointer::capture`] takes: waiting for the previous
//!   write if it is still running, then copying the state into host buffers (pinned on CUDA);
//!   the background thread writes, syncs and renames while training goes on.
//! - **sync**: the loop's pause is the copy into host memory plus [`write_snapshot`] (safetensors,
//!   fsync, rename, pruning), as a save that does not overlap with training takes.
//!
//! Host buffers are allocated before the first measured checkpoint on both sides, as the trainer
//! does when it starts. A checkpoint that comes round before the previous one is written waits for
//! that write (the host buffers are still in use): the stall is then no longer the copy alone, so
//! `--every` must leave the writer its time, as a real run's interval of minutes does.

use std::cell::Cell;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tch::{Device, Kind, Tensor};
use thiserror::Error;
use yiflow_stages::model::Config;
use yiflow_stages::train::{
    AdamW, AdamWParams, CheckpointError, Checkpointer, TrainState, Trainable, write_snapshot,
};

use crate::bench_train::{
    DeviceArg, SetupError, check_shape, device_label, objective, pick_device, preset, random_batch,
    synchronize,
};

/// What to measure.
#[derive(Debug, Clone, Args)]
pub struct BenchCheckpointArgs {
    /// Model preset (tiny, dense-125m, moe-125m).
    #[arg(long, default_value = "dense-125m")]
    pub preset: String,
    /// Overrides the preset's number of layers (a smaller state on small machines).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Tokens per sequence of the training steps between checkpoints.
    #[arg(long, default_value_t = 128)]
    pub seq: i64,
    /// Sequences per training step.
    #[arg(long, default_value_t = 4)]
    pub batch: i64,
    /// Training steps between two checkpoints.
    #[arg(long, default_value_t = 5)]
    pub every: usize,
    /// Checkpoints measured on each side.
    #[arg(long, default_value_t = 3)]
    pub checkpoints: usize,
    /// Where to run: `cpu` (f32) or `cuda` (bf16 weights, f32 optimizer state).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Folder for the checkpoints (removed afterwards); default: a new folder in the system's
    /// temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Why the benchmark could not run.
#[derive(Debug, Error)]
pub enum BenchCheckpointError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("cannot create the checkpoint folder {path}: {reason}")]
    Dir { path: PathBuf, reason: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("the loss is not finite ({0}): the measurement would not be of a training run")]
    Diverged(f64),
}

/// The result, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct BenchCheckpointReport {
    pub preset: String,
    pub layers: usize,
    pub device: String,
    /// Elements in one checkpoint's tensors (weights and both moments).
    pub state_elements: u64,
    pub state_bytes: u64,
    pub every: usize,
    pub checkpoints: usize,
    /// Mean time of one training step (async side, checkpoints excluded).
    pub step_ms: f64,
    /// Training time between two checkpoints (`every` steps).
    pub interval_ms: f64,
    /// The loop's pause per synchronous save (median, and each).
    pub sync_ms: f64,
    pub sync_each_ms: Vec<f64>,
    /// Of a synchronous save, the copy into host memory (median); the rest is writing. The
    /// asynchronous stall is this copy alone when the previous write ends within `interval_ms`,
    /// and grows by what the write takes beyond it otherwise.
    pub copy_ms: f64,
    /// The loop's pause per asynchronous checkpoint (median, and each).
    pub stall_ms: f64,
    pub stall_each_ms: Vec<f64>,
    /// `stall_ms / sync_ms`.
    pub ratio: f64,
}

impl fmt::Display for BenchCheckpointReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} layers, {}), {:.0} MB of state every {} steps of {:.1} ms: synchronous save {:.1} ms (copy {:.1} ms), asynchronous stall {:.1} ms ({:.1}% of it)",
            self.preset,
            self.layers,
            self.device,
            self.state_bytes as f64 / 1e6,
            self.every,
            self.step_ms,
            self.sync_ms,
            self.copy_ms,
            self.stall_ms,
            100.0 * self.ratio
        )
    }
}

fn median_ms(durations: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = durations.iter().map(|d| 1000.0 * d.as_secs_f64()).collect();
    ms.sort_by(f64::total_cmp);
    ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN)
}

fn each_ms(durations: &[Duration]) -> Vec<f64> {
    durations.iter().map(|d| 1000.0 * d.as_secs_f64()).collect()
}

/// Runs the benchmark; `load_cuda` makes LibTorch's CUDA backend available.
pub fn bench_checkpoint(
    args: &BenchCheckpointArgs,
    load_cuda: impl FnOnce() -> Result<(), String>,
) -> Result<BenchCheckpointReport, BenchCheckpointError> {
    let mut config = preset(&args.preset)?;
    if let Some(layers) = args.layers {
        config.layers = layers;
    }
    check_shape(
        &args.preset,
        &config,
        args.seq,
        &[
            ("layers", config.layers as i64),
            ("seq", args.seq),
            ("batch", args.batch),
            ("every", args.every as i64),
            ("checkpoints", args.checkpoints as i64),
        ],
    )?;
    let device = pick_device(args.device, load_cuda)?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            std::env::temp_dir().join(format!("yiflow-bench-checkpoint-{}", std::process::id()))
        }
    };
    let made = |path: PathBuf| {
        std::fs::create_dir_all(&path)
            .map(|()| path.clone())
            .map_err(|e| BenchCheckpointError::Dir {
                path,
                reason: e.to_string(),
            })
    };
    let (async_dir, sync_dir) = (made(dir.join("async"))?, made(dir.join("sync"))?);
    let result = measure(args, &config, device, &async_dir, &sync_dir);
    let _ = std::fs::remove_dir_all(&async_dir);
    let _ = std::fs::remove_dir_all(&sync_dir);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir(&dir);
    }
    result
}

fn measure(
    args: &BenchCheckpointArgs,
    config: &Config,
    device: Device,
    async_dir: &std::path::Path,
    sync_dir: &std::path::Path,
) -> Result<BenchCheckpointReport, BenchCheckpointError> {
    tch::manual_seed(1234);
    let Trainable {
        vs: _vs,
        model,
        mut opt,
    } = Trainable::new(config, device, AdamWParams::default()).map_err(SetupError::from)?;
    let (input, targets) = random_batch(config, args.batch, args.seq, device);
    let steps = Cell::new(0u64);
    let train = |opt: &mut AdamW, n: usize| -> Result<Duration, BenchCheckpointError> {
        let started = Instant::now();
        let mut loss = Tensor::zeros([], (Kind::Float, device));
        for _ in 0..n {
            steps.set(steps.get() + 1);
            loss = objective(&model, &input, &targets);
            loss.backward();
            opt.clip_grad_norm(1.0);
            opt.step(1e-4, steps.get());
            opt.zero_grad();
        }
        let loss = loss.double_value(&[]);
        if !loss.is_finite() {
            return Err(BenchCheckpointError::Diverged(loss));
        }
        synchronize(device);
        Ok(started.elapsed())
    };
    let mut state = TrainState::new(args.batch as usize);

    // Warm-up (allocator, kernels) and host buffers for both sides.
    train(&mut opt, 1)?;
    let mut background = Checkpointer::new(async_dir, 2)?;
    let mut inline = Checkpointer::new(sync_dir, 2)?;
    background.capture(&opt.state(), &state, &[], false)?;
    inline.capture(&opt.state(), &state, &[], false)?;

    let mut training = Duration::ZERO;
    let mut stalls = Vec::with_capacity(args.checkpoints);
    for _ in 0..args.checkpoints {
        training += train(&mut opt, args.every)?;
        state.step = steps.get();
        stalls.push(background.capture(&opt.state(), &state, &[], true)?);
    }
    background.finish()?;

    let (mut saves, mut copies) = (Vec::with_capacity(args.checkpoints), Vec::new());
    for _ in 0..args.checkpoints {
        train(&mut opt, args.every)?;
        state.step = steps.get();
        let started = Instant::now();
        copies.push(inline.capture(&opt.state(), &state, &[], false)?);
        if let Some(snapshot) = inline.last()? {
            write_snapshot(sync_dir, snapshot, 2)?;
        }
        saves.push(started.elapsed());
    }

    let state_tensors = opt.state();
    let state_elements: u64 = state_tensors.iter().map(|(_, t)| t.numel() as u64).sum();
    let state_bytes: u64 = state_tensors
        .iter()
        .map(|(_, t)| (t.numel() * t.kind().elt_size_in_bytes()) as u64)
        .sum();
    let (sync_ms, stall_ms) = (median_ms(&saves), median_ms(&stalls));
    let step_ms = 1000.0 * training.as_secs_f64() / (args.every * args.checkpoints) as f64;
    Ok(BenchCheckpointReport {
        preset: args.preset.clone(),
        layers: config.layers,
        device: device_label(device),
        state_elements,
        state_bytes,
        every: args.every,
        checkpoints: args.checkpoints,
        step_ms,
        interval_ms: step_ms * args.every as f64,
        sync_ms,
        sync_each_ms: each_ms(&saves),
        copy_ms: median_ms(&copies),
        stall_ms,
        stall_each_ms: each_ms(&stalls),
        ratio: stall_ms / sync_ms,
    })
}
