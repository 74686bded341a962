//! `yiflow-worker bench-train`: the training throughput of one model preset, measured the way the
//! GPU benchmark (`bench/train-throughput/run.sh`) compares it with PyTorch: forward, cross-entropy
//! (plus 0.01 x the MoE balancing loss), backward and an AdamW step on one fixed random batch,
//! timed over whole steps after a warm-up, between two device synchronisations.
//!
//! MFU is `tokens/s x Config::train_flops_per_token(seq) / peak`: 6 x the active non-embedding
//! matrix parameters (the output projection included) plus the attention scores and weighted sums,
//! `12 x heads x head_dim x seq` per layer (PaLM's convention, no halving for causality).

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;
use tch::{Cuda, Device, Kind, Tensor};
use thiserror::Error;
use yiflow_stages::model::{Config, ExpertKernel, Transformer, fused};
use yiflow_stages::profiler::Profiler;
use yiflow_stages::train::{AdamWParams, TrainError, Trainable};

/// Weight of the MoE balancing loss in the benchmark's objective.
const AUX_WEIGHT: f64 = 0.01;

/// The optimizer's settings but the learning rate: PyTorch's `AdamW` defaults but a lighter weight
/// decay, as the PyTorch side of the comparison (`bench/train-throughput/bench.py`) sets them.
const ADAMW: AdamWParams = AdamWParams {
    beta1: 0.9,
    beta2: 0.999,
    weight_decay: 0.01,
    eps: 1e-8,
};

/// What to measure.
#[derive(Debug, Clone, Args)]
pub struct BenchTrainArgs {
    /// Model preset (tiny, dense-125m, moe-125m).
    #[arg(long)]
    pub preset: String,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 1024)]
    pub seq: i64,
    /// Sequences per step.
    #[arg(long, default_value_t = 32)]
    pub batch: i64,
    /// Timed steps, after the warm-up.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first (allocator, kernel selection, cuBLAS handles).
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// How MoE experts run.
    #[arg(long, value_enum, default_value_t = KernelArg::GroupedMm)]
    pub expert_kernel: KernelArg,
    /// Where to run: `cuda` (bf16 weights and activations) or `cpu` (f32, for tests).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cuda)]
    pub device: DeviceArg,
    /// Peak dense bf16 TFLOP/s of the device, for MFU (H100 SXM and H200: 989).
    #[arg(long, default_value_t = 989.0)]
    pub peak_tflops: f64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    /// Time forward and backward only, without the AdamW step (to see the optimizer's share).
    #[arg(long)]
    pub no_optimizer: bool,
    /// Run SwiGLU, RoPE and the loss as plain ATen ops instead of the fused kernels
    /// (`yiflow_stages::model::fused`), to measure what fusing them gains.
    #[arg(long)]
    pub unfused: bool,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
    /// After timing, record 3 more steps with PyTorch's profiler and write them to this file as a
    /// Chrome trace (bench/train-throughput/kernels.py summarises it).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

/// `--expert-kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelArg {
    GroupedMm,
    PaddedBmm,
}

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Cuda,
    Cpu,
}

/// Why the benchmark could not run.
#[derive(Debug, Error)]
pub enum BenchTrainError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("the loss is not finite ({loss}) after {steps} steps")]
    Diverged { loss: f64, steps: usize },
    #[error("cannot trace the steps into {path}: {reason}")]
    Trace { path: PathBuf, reason: String },
}

/// One measurement, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct BenchTrainReport {
    pub implementation: &'static str,
    pub variant: String,
    pub preset: String,
    pub device: String,
    pub dtype: &'static str,
    pub seq: i64,
    pub batch: i64,
    pub steps: usize,
    pub warmup: usize,
    /// Parameters the optimizer updates (every parameter of the built model).
    pub params: u64,
    pub active_params: u64,
    pub non_embedding_params: u64,
    pub flops_per_token: f64,
    pub ms_per_step: f64,
    pub tokens_per_s: f64,
    pub peak_tflops: f64,
    pub mfu: f64,
    /// Loss of the first warm-up step and of the last timed step (same batch every step, so it
    /// falls: a check that the optimizer trains).
    pub loss_first: f64,
    pub loss_last: f64,
}

impl fmt::Display for BenchTrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}) {} batch {} seq {}: {:.0} tok/s, {:.1} ms/step, MFU {:.1}% of {} TFLOP/s; loss {:.3} -> {:.3}",
            self.preset,
            self.variant,
            self.device,
            self.dtype,
            self.batch,
            self.seq,
            self.tokens_per_s,
            self.ms_per_step,
            100.0 * self.mfu,
            self.peak_tflops,
            self.loss_first,
            self.loss_last
        )
    }
}

/// Why a benchmark's model could not be set up (shared by `bench-train` and `bench-checkpoint`).
#[derive(Debug, Error)]
pub enum SetupError {
    #[error("unknown preset `{name}` (known: {})", Config::PRESETS.join(", "))]
    UnknownPreset { name: String },
    #[error("--{what} must be at least 1, found {value}")]
    NotPositive { what: &'static str, value: i64 },
    #[error("--seq {seq} is longer than preset `{preset}`'s max-seq {max_seq}")]
    TooLong {
        seq: i64,
        preset: String,
        max_seq: usize,
    },
    #[error("CUDA is not available ({0}); use --device cpu to run on the CPU")]
    NoCuda(String),
    #[error(transparent)]
    Build(#[from] TrainError),
}

/// The preset named `name`.
pub fn preset(name: &str) -> Result<Config, SetupError> {
    Config::preset(name).ok_or_else(|| SetupError::UnknownPreset {
        name: name.to_owned(),
    })
}

/// Checks that every `(option, value)` of `counts` is at least 1 and that `seq` fits the model.
pub fn check_shape(
    preset: &str,
    config: &Config,
    seq: i64,
    counts: &[(&'static str, i64)],
) -> Result<(), SetupError> {
    if let Some(&(what, value)) = counts.iter().find(|(_, value)| *value < 1) {
        return Err(SetupError::NotPositive { what, value });
    }
    if seq > config.max_seq as i64 {
        return Err(SetupError::TooLong {
            seq,
            preset: preset.to_owned(),
            max_seq: config.max_seq,
        });
    }
    Ok(())
}

/// A fixed random batch of `batch` sequences of `seq` tokens: inputs `[batch, seq]` and flat
/// next-token targets.
pub fn random_batch(config: &Config, batch: i64, seq: i64, device: Device) -> (Tensor, Tensor) {
    let tokens = Tensor::randint(config.vocab as i64, [batch, seq + 1], (Kind::Int64, device));
    (
        tokens.narrow(1, 0, seq),
        tokens.narrow(1, 1, seq).reshape([-1]),
    )
}

/// The benchmarks' objective: cross-entropy plus [`AUX_WEIGHT`] x the MoE balancing loss.
pub fn objective(model: &Transformer, input: &Tensor, targets: &Tensor) -> Tensor {
    let out = model.forward(input);
    fused::cross_entropy(&out.logits, targets) + out.aux_loss * AUX_WEIGHT
}

/// Waits for the device's queued work (a no-op on the CPU), so a clock read after it is honest.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        Cuda::synchronize(i as i64);
    }
}

/// `cuda:N` or `cpu`, as the reports name the device.
pub fn device_label(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_owned(),
    }
}

/// The device `--device` names; `load_cuda` makes LibTorch's CUDA backend available.
pub fn pick_device(
    arg: DeviceArg,
    load_cuda: impl FnOnce() -> Result<(), String>,
) -> Result<Device, SetupError> {
    match arg {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Cuda => {
            let loaded = load_cuda();
            if !Cuda::is_available() {
                return Err(SetupError::NoCuda(loaded.err().unwrap_or_else(|| {
                    "libtorch_cuda loaded, but no device is visible".to_owned()
                })));
            }
            Ok(Device::Cuda(0))
        }
    }
}

/// Runs the benchmark; `load_cuda` makes LibTorch's CUDA backend available.
pub fn bench_train(
    args: &BenchTrainArgs,
    load_cuda: impl FnOnce() -> Result<(), String>,
) -> Result<BenchTrainReport, BenchTrainError> {
    let config = preset(&args.preset)?;
    check_shape(
        &args.preset,
        &config,
        args.seq,
        &[
            ("seq", args.seq),
            ("batch", args.batch),
            ("steps", args.steps as i64),
        ],
    )?;
    let device = pick_device(args.device, load_cuda)?;
    fused::set_enabled(!args.unfused);
    tch::manual_seed(1234);
    let Trainable {
        vs: _vs,
        mut model,
        opt: mut optimizer,
    } = Trainable::new(&config, device, ADAMW).map_err(SetupError::from)?;
    let dtype = if device.is_cuda() { "bf16" } else { "f32" };
    let kernel = match args.expert_kernel {
        KernelArg::GroupedMm => ExpertKernel::GroupedMm,
        KernelArg::PaddedBmm => ExpertKernel::PaddedBmm,
    };
    model.set_expert_kernel(kernel);
    let optimizer_numel = optimizer.numel();
    let (no_optimizer, lr) = (args.no_optimizer, args.lr);
    let mut updates = 0;
    let (input, targets) = random_batch(&config, args.batch, args.seq, device);
    let mut step = || -> Tensor {
        let loss = objective(&model, &input, &targets);
        loss.backward();
        if !no_optimizer {
            updates += 1;
            optimizer.step(lr, updates);
        }
        optimizer.zero_grad();
        loss.detach()
    };

    let mut first = None;
    for _ in 0..args.warmup {
        let loss = step();
        first.get_or_insert(loss);
    }
    synchronize(device);
    let started = Instant::now();
    let mut last = None;
    for _ in 0..args.steps {
        last = Some(step());
    }
    synchronize(device);
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &args.trace {
        let failed = |reason| BenchTrainError::Trace {
            path: path.clone(),
            reason,
        };
        let profiler = Profiler::start(device.is_cuda()).map_err(failed)?;
        for _ in 0..3 {
            let _ = step();
        }
        synchronize(device);
        profiler.finish(path).map_err(failed)?;
    }
    let loss_last = last.map_or(f64::NAN, |l| l.double_value(&[]));
    let loss_first = first.map_or(f64::NAN, |l| l.double_value(&[]));
    if !loss_last.is_finite() {
        return Err(BenchTrainError::Diverged {
            loss: loss_last,
            steps: args.warmup + args.steps,
        });
    }

    let tokens_per_s = (args.steps as i64 * args.batch * args.seq) as f64 / seconds;
    let flops_per_token = config.train_flops_per_token(args.seq as usize);
    let mut variant = if config.experts.is_none() {
        "dense".to_owned()
    } else {
        match kernel {
            ExpertKernel::GroupedMm => "grouped-mm".to_owned(),
            ExpertKernel::PaddedBmm => "padded-bmm".to_owned(),
        }
    };
    if args.unfused {
        variant.push_str(" unfused");
    }
    if no_optimizer {
        variant.push_str(" fwd+bwd");
    }
    Ok(BenchTrainReport {
        implementation: "yiflow",
        variant,
        preset: args.preset.clone(),
        device: device_label(device),
        dtype,
        seq: args.seq,
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        params: optimizer_numel as u64,
        active_params: config.active_param_count(),
        non_embedding_params: config.non_embedding_param_count(),
        flops_per_token,
        ms_per_step: 1000.0 * seconds / args.steps as f64,
        tokens_per_s,
        peak_tflops: args.peak_tflops,
        mfu: tokens_per_s * flops_per_token / (args.peak_tflops * 1e12),
        loss_first,
        loss_last,
    })
}
