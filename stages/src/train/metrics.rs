//! What the trainer records: one [`StepMetrics`] row per optimizer step in `metrics.jsonl`, the
//! faults it recovered from in `faults.jsonl`, and the peak throughput MFU is measured against.

use serde::{Deserialize, Serialize};

use super::params::PhaseKind;

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps done, counting this one (1-based).
    pub step: u64,
    pub phase: PhaseKind,
    /// Mean next-token cross-entropy of the step's batch (without the auxiliary loss).
    pub loss: f64,
    pub lr: f64,
    /// Sequences in the step's batch.
    pub batch: usize,
    pub seq: usize,
    /// Training tokens seen so far, this step included.
    pub tokens: u64,
    pub tokens_per_s: f64,
    /// Model FLOPs utilisation against [`PeakFlops`].
    pub mfu: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// The MoE load-balancing loss (1 when balanced; 0 for a dense model).
    pub aux_loss: f64,
    /// Share of routed assignments per expert, averaged over the MoE layers (empty when dense).
    pub expert_load: Vec<f64>,
    /// Rollbacks so far (see `faults.jsonl`).
    pub rollbacks: u64,
    /// Validation loss, at evaluation steps.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
}

/// A fault the trainer recovered from by rolling back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The step that went wrong (1-based, as it would have been numbered).
    pub step: u64,
    /// "nan" (not finite) or "spike".
    pub reason: String,
    /// The loss (`None` when not finite).
    pub loss: Option<f64>,
    /// The running average the spike was measured against.
    pub average: Option<f64>,
    /// The step restored.
    pub restored: u64,
}

/// The peak throughput MFU is measured against, and what it assumes.
#[derive(Debug, Clone, PartialEq)]
pub struct PeakFlops {
    pub flops: f64,
    pub assumption: String,
}

/// Dense bf16 tensor-core peak of an H100 SXM, 989.4 TFLOPS (NVIDIA H100 datasheet, "BF16 Tensor
/// Core 1,979 teraFLOPS" with sparsity, half of it dense). The H200 has the same GH100 compute and
/// the same figure; only its memory differs.
pub const H100_BF16_FLOPS: f64 = 989.4e12;

/// A CPU core's f32 peak as assumed here: 3 GHz x 32 FLOP/cycle (two 8-wide AVX2 FMA units).
pub const CPU_CORE_FLOPS: f64 = 3.0e9 * 32.0;

impl PeakFlops {
    /// The peak of the device training runs on: `YIFLOW_PEAK_TFLOPS` when set (per device), else
    /// [`H100_BF16_FLOPS`] per CUDA device or [`CPU_CORE_FLOPS`] per CPU thread.
    pub fn of(cuda_devices: usize, cpu_threads: usize) -> Self {
        if let Some(t) = std::env::var("YIFLOW_PEAK_TFLOPS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
        {
            let n = cuda_devices.max(1);
            return Self {
                flops: t * 1e12 * n as f64,
                assumption: format!("{t} TFLOPS per device from YIFLOW_PEAK_TFLOPS, {n} device(s)"),
            };
        }
        if cuda_devices > 0 {
            Self {
                flops: H100_BF16_FLOPS * cuda_devices as f64,
                assumption: format!(
                    "{cuda_devices} x 989.4 TFLOPS (H100/H200 SXM dense bf16); set YIFLOW_PEAK_TFLOPS for another GPU"
                ),
            }
        } else {
            let n = cpu_threads.max(1);
            Self {
                flops: CPU_CORE_FLOPS * n as f64,
                assumption: format!("{n} CPU thread(s) x 96 GFLOPS (3 GHz, 32 f32 FLOP/cycle)"),
            }
        }
    }
}

/// Serialises rows as JSON lines.
pub fn to_jsonl<T: Serialize>(rows: &[T]) -> String {
    let mut out = String::new();
    for row in rows {
        if let Ok(line) = serde_json::to_string(row) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Reads JSON lines written by [`to_jsonl`].
pub fn from_jsonl<T: for<'de> Deserialize<'de>>(text: &str) -> Result<Vec<T>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}
