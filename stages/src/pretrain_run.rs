//! What the `pretrain` kind does in the worker: finds the shards (and tokenizer) among its inputs,
//! picks the device, trains, and writes the artifact.

use std::path::PathBuf;

use serde_json::json;
use tch::{Device, Tensor};
use yiflow_engine::{ExecError, StageIo};

use crate::bpe::TOKENIZER_FILE;
use crate::data::{INDEX_FILE, TOKENS_DIR, TokenShards};
use crate::train::{PretrainParams, Trainer, to_jsonl};

/// The device of the stage: its first `cuda:N` (CUDA must then be usable), else the CPU.
pub fn device(io: &StageIo) -> Result<Device, ExecError> {
    let Some(cuda) = io.devices.iter().find_map(|d| d.strip_prefix("cuda:")) else {
        return Ok(Device::Cpu);
    };
    let index: usize = cuda
        .parse()
        .map_err(|_| format!("device `cuda:{cuda}` is not of the form cuda:N"))?;
    if !tch::Cuda::is_available() || index >= tch::Cuda::device_count() as usize {
        return Err(format!(
            "stage `{}` was given cuda:{index} but LibTorch sees {} CUDA device(s) (run `yiflow-worker doctor`)",
            io.stage,
            tch::Cuda::device_count()
        )
        .into());
    }
    Ok(Device::Cuda(index))
}

/// Trains and writes the artifact into `io.out`.
pub fn run(params: &PretrainParams, io: &StageIo) -> Result<(), ExecError> {
    let tokens_dir = io
        .inputs
        .values()
        .find(|d| d.join(TOKENS_DIR).join(INDEX_FILE).is_file())
        .ok_or_else(|| {
            format!(
                "none of the inputs of stage `{}` holds token shards ({TOKENS_DIR}/{INDEX_FILE}): give it a `tokenize` stage",
                io.stage
            )
        })?;
    let tokenizer: Option<PathBuf> = io
        .inputs
        .values()
        .map(|d| d.join(TOKENIZER_FILE))
        .find(|f| f.is_file());
    let shards = TokenShards::open(tokens_dir)?;
    if shards.vocab_size() > params.model.vocab {
        return Err(format!(
            "the token shards use a vocabulary of {} but the model's `vocab` is {}: set `vocab {}` (or more) in the model block",
            shards.vocab_size(),
            params.model.vocab,
            shards.vocab_size()
        )
        .into());
    }
    let train = shards.split("train")?;
    let val = shards.split("val").ok().filter(|v| v.tokens() > 1);
    let device = device(io)?;
    std::fs::create_dir_all(&io.out)?;
    let trainer = Trainer::new(params, device, &train, val.as_ref(), io.seed)?;
    let trained = trainer.run(&io.checkpoints)?;

    let write = |name: &str, text: String| -> Result<(), ExecError> {
        let path = io.out.join(name);
        std::fs::write(&path, text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
    };
    let weights: Vec<(String, Tensor)> = trained
        .weights
        .iter()
        .map(|(n, t)| (n.clone(), t.to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&weights, io.out.join("model.safetensors"))?;
    write("config.json", serde_json::to_string_pretty(&params.model)?)?;
    write("metrics.jsonl", to_jsonl(&trained.metrics))?;
    write("faults.jsonl", to_jsonl(&trained.faults))?;
    if let Some(t) = &tokenizer {
        std::fs::copy(t, io.out.join(TOKENIZER_FILE))?;
    }
    let last = trained.metrics.last();
    let stalls: Vec<f64> = trained
        .checkpoint_stalls
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let summary = json!({
        "steps": last.map_or(0, |m| m.step),
        "tokens": last.map_or(0, |m| m.tokens),
        "final_loss": last.map(|m| m.loss),
        "val_loss": trained.final_val_loss,
        "rollbacks": trained.faults.len(),
        "resumed_from_step": trained.resumed_from,
        "device": format!("{device:?}"),
        "checkpoint_stall_ms": stalls,
        "parameters": params.model.param_count(),
        "active_parameters": params.model.active_param_count(),
    });
    write("train.json", serde_json::to_string_pretty(&summary)?)?;
    tracing::info!(
        steps = last.map_or(0, |m| m.step),
        loss = last.map_or(f64::NAN, |m| m.loss),
        val_loss = ?trained.final_val_loss,
        "trained"
    );
    Ok(())
}
