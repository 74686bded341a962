//! The `pretrain` kind: the report's three-phase pretraining (Yi-Lightning, §3) of a recipe's
//! `model` on a `tokenize` stage's shards, in the worker binary.
//!
//! ```kdl
//! stage pretrain kind=pretrain {
//!     input tokens tokenizer      // a `tokenize` stage (and optionally the `bpe` stage, whose
//!                                 //   tokenizer.json is copied into the artifact)
//!     model tiny-moe              // a `model NAME { ... }` block
//!     phase initial      tokens="160K" lr=3e-3 warmup=20 seq=128 batch=16   // warmup, LR -> half
//!     phase intermediate tokens="80K" seq=256 batch=8 batch-growth="loss" batch-max=32 patience=10 plateau=0.005
//!     phase decay        tokens="35K" lr-end=0                               // LR -> floor, fast
//!     micro-batch 4               // sequences per forward pass (gradient accumulation)
//!     adamw beta1=0.9 beta2=0.95 weight-decay=0.1 eps=1e-8
//!     clip 1.0                    // global gradient norm (0: off)
//!     aux-loss 0.01               // MoE load-balancing loss weight
//!     checkpoint every=25 keep=2  // steps between asynchronous checkpoints, how many to keep
//!     rollback spike=3.0 max=20   // roll back on NaN/inf or loss > 3x its running average
//!     eval every=50 batches=4     // validation loss (every 0: at the end only)
//! }
//! ```
//! Phases inherit `lr` (as the previous phase's `lr-end`), `seq` and `batch` from the one before.
//! Defaults: first phase lr 3e-4, seq min(256, max-seq), batch 8, warmup 0; `lr-end` half the LR
//! (initial), the LR (intermediate), 0 (decay); batch growth off (`batch-max` 4x batch when on,
//! patience 10, plateau 0.005); micro-batch = batch; adamw as above; clip 1.0; aux-loss 0.01;
//! checkpoint every=100 keep=2; rollback spike=3.0 max=20; eval every=0 batches=4.
//!
//! Artifact: `model.safetensors` (f32 weights named after the module tree), `config.json`,
//! `metrics.jsonl` (one row per step), `faults.jsonl`, `train.json` (a summary) and the
//! `tokenizer.json` when an input holds one.

use serde_json::Value;
use yiflow_dsl::{Sink, StageDecl};
use yiflow_engine::{DecodeCx, ExecError, Launch, Stage, StageIo};

use crate::train;
#[cfg(feature = "torch")]
use crate::train::PretrainParams;

/// `stage NAME kind=pretrain { input TOKENS; model NAME; phase ... }`
pub struct Pretrain;

impl Stage for Pretrain {
    fn kind(&self) -> &'static str {
        "pretrain"
    }

    fn summary(&self) -> &'static str {
        "pretrains a model in three phases on token shards, with asynchronous checkpoints"
    }

    /// 2: the phases continue one token stream, and SwiGLU, RoPE and the loss run fused (both
    /// change the trained weights, so artifacts of version 1 must not be reused).
    fn version(&self) -> u32 {
        2
    }

    fn children(&self) -> &'static [&'static str] {
        train::SETTINGS
    }

    fn decode(&self, stage: &StageDecl, cx: &DecodeCx<'_>, sink: &mut Sink) -> Value {
        train::decode(stage, cx, sink)
            .and_then(|p| serde_json::to_value(p).ok())
            .unwrap_or(Value::Null)
    }

    fn launch(&self, _params: &Value) -> Launch {
        Launch::Worker
    }

    #[cfg(not(feature = "torch"))]
    fn execute(&self, _params: &Value, io: &StageIo) -> Result<(), ExecError> {
        Err(format!(
            "stage `{}` (pretrain) runs in `yiflow-worker`, which links LibTorch; this binary does not",
            io.stage
        )
        .into())
    }

    #[cfg(feature = "torch")]
    fn execute(&self, params: &Value, io: &StageIo) -> Result<(), ExecError> {
        let params: PretrainParams = serde_json::from_value(params.clone())?;
        crate::pretrain_run::run(&params, io)
    }
}
