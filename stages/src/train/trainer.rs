//! The training loop every training stage shares: phases measured in tokens with their own LR
//! schedule, sequence length and batch size; gradient accumulation over micro-batches; global
//! gradient clipping; `AdamW`; bf16 weights with f32 masters on CUDA, f32 on CPU; per-step metrics;
//! asynchronous checkpoints and resumption; rollback after a NaN/inf or spiking loss.
//!
//! Determinism (CPU): the model is initialised from the seed, batches follow from the seed and the
//! saved [`DataPosition`](super::loader::DataPosition), and LibTorch's generator is reseeded from the
//! seed and the step number before every step, so a run resumed from a checkpoint computes the same
//! losses step for step as one never interrupted (given the same number of threads).
//!
//! Test hook: `YIFLOW_TEST_POISON_STEPS="12,30"` makes the loss of those steps NaN the first time
//! each is reached (to exercise rollback); `YIFLOW_TEST_STEP_DELAY_MS=N` sleeps N ms after each step
//! (to interrupt a run at a known point). Only tests set them.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor, nn};

use super::adamw::{AdamW, AdamWError};
use super::checkpoint::{CheckpointError, Checkpointer};
use super::loader::{Batch, Loader, block_tokens, fixed_batch};
use super::metrics::{Fault, PeakFlops, StepMetrics};
use super::params::{AdamWParams, PretrainParams};
use super::schedule::learning_rate;
use super::train_state::{BatchId, TrainState};
use crate::data::TokenSplit;
use crate::model::{Config, ModelError, Transformer, fused};

/// Steps the running loss average must have seen before a spike can be called.
const SPIKE_MIN_STEPS: u64 = 5;
/// Weight of the newest loss in the running average.
const AVERAGE_DECAY: f64 = 0.9;

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot build the model: {0}")]
    Model(#[from] ModelError),
    #[error("cannot set up the optimizer: {0}")]
    Optimizer(#[from] AdamWError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("cannot resume from {path}: {reason}")]
    Resume { path: String, reason: String },
    #[error("{0}")]
    Data(String),
    #[error(
        "gave up after {rollbacks} rollbacks (rollback max={max}); the last: step {step}, {reason} loss {loss}; raise `rollback max=` or lower the LR"
    )]
    TooManyRollbacks {
        rollbacks: usize,
        max: usize,
        step: u64,
        reason: String,
        loss: f64,
    },
    #[error("LibTorch failed: {0}")]
    Torch(#[from] tch::TchError),
}

/// What a finished run gives back.
pub struct Trained {
    pub metrics: Vec<StepMetrics>,
    pub faults: Vec<Fault>,
    pub final_val_loss: Option<f64>,
    pub resumed_from: Option<u64>,
    pub checkpoint_stalls: Vec<Duration>,
    /// The f32 weights by module-tree name.
    pub weights: Vec<(String, Tensor)>,
}

/// A model and the optimizer over its trainable variables, set up as training does it: initialised
/// from the current torch seed, bf16 on CUDA (the optimizer keeps f32 masters), f32 on the CPU, the
/// variables laid out in the optimizer's buffers by name (not in hash order).
pub struct Trainable {
    /// Owns the variables.
    pub vs: nn::VarStore,
    pub model: Transformer,
    pub opt: AdamW,
}

impl Trainable {
    pub fn new(config: &Config, device: Device, hp: AdamWParams) -> Result<Self, TrainError> {
        let mut vs = nn::VarStore::new(device);
        let model = Transformer::new(&vs.root(), config)?;
        if device.is_cuda() {
            vs.bfloat16();
        }
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let opt = AdamW::new(vars, hp)?;
        Ok(Self { vs, model, opt })
    }
}

/// A training run over one split of token shards.
pub struct Trainer<'a> {
    params: &'a PretrainParams,
    device: Device,
    _vs: nn::VarStore,
    model: Transformer,
    opt: AdamW,
    train: &'a TokenSplit,
    val: Option<&'a TokenSplit>,
    seed: u64,
    peak: PeakFlops,
    poison: BTreeSet<u64>,
    step_delay: Option<Duration>,
}

fn env_list(name: &str) -> BTreeSet<u64> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

impl<'a> Trainer<'a> {
    /// A model initialised from `seed` on `device` (bf16 with f32 masters on CUDA).
    pub fn new(
        params: &'a PretrainParams,
        device: Device,
        train: &'a TokenSplit,
        val: Option<&'a TokenSplit>,
        seed: u64,
    ) -> Result<Self, TrainError> {
        tch::manual_seed(seed as i64);
        let Trainable { vs, model, opt } =
            Trainable::new(&params.model, device, params.adamw.clone())?;
        let cuda = usize::from(device.is_cuda());
        Ok(Self {
            params,
            device,
            _vs: vs,
            model,
            opt,
            train,
            val,
            seed,
            peak: PeakFlops::of(cuda, tch::get_num_threads().max(1) as usize),
            poison: env_list("YIFLOW_TEST_POISON_STEPS"),
            step_delay: std::env::var("YIFLOW_TEST_STEP_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
        })
    }

    /// Makes the loss of these steps NaN the first time each is reached (what
    /// `YIFLOW_TEST_POISON_STEPS` does), to exercise rollbacks.
    #[must_use]
    pub fn poison_steps(mut self, steps: impl IntoIterator<Item = u64>) -> Self {
        self.poison.extend(steps);
        self
    }

    /// Trains through every phase, checkpointing into `checkpoints` and resuming from its newest
    /// complete checkpoint.
    pub fn run(mut self, checkpoints: &Path) -> Result<Trained, TrainError> {
        let p = self.params;
        tracing::info!(peak = %self.peak.assumption, device = ?self.device, "peak FLOPs for MFU");
        let mut ck = Checkpointer::new(checkpoints, p.checkpoint.keep)?;
        let mut state = TrainState::new(p.phases[0].batch);
        let mut metrics: Vec<StepMetrics> = Vec::new();
        let mut resumed_from = None;
        if let Some((path, snap)) = ck.load_latest()? {
            self.opt
                .restore(|k| snap.get(k))
                .map_err(|reason| TrainError::Resume {
                    path: path.display().to_string(),
                    reason,
                })?;
            state = snap.state.clone();
            metrics = snap.metrics;
            resumed_from = Some(state.step);
            tracing::info!(
                step = state.step,
                tokens = state.tokens,
                "resuming from checkpoint {}",
                path.display()
            );
        }
        // The in-memory last good state, for rollbacks before the first checkpoint.
        ck.capture(&self.opt.state(), &state, &metrics, false)?;

        // One token stream for all phases: a phase goes on where the one before it stopped.
        let block = block_tokens(p.phases.iter().map(|phase| phase.seq));
        let mut l = Loader::new(self.train, block, self.seed)
            .map_err(|e| TrainError::Data(e.to_string()))?;
        while state.phase < p.phases.len() {
            let phase = &p.phases[state.phase];
            let rows = state.grower.batch;
            // Draw the next batch that did not cause a fault before.
            let (batch, id) = loop {
                let id = BatchId {
                    phase: state.phase,
                    position: state.data,
                };
                let b = l.next_batch(&mut state.data, rows, phase.seq);
                if !state.skipped.contains(&id) {
                    break (b, id);
                }
                tracing::info!(
                    step = state.step + 1,
                    "skipping a batch that caused a fault"
                );
            };
            let started = Instant::now();
            tch::manual_seed((self.seed ^ 0x5eed).wrapping_add(state.step) as i64);
            let (mut loss, aux, load) = self.forward_backward(&batch)?;
            let step = state.step + 1;
            if self.poison.remove(&step) {
                tracing::warn!(step, "test hook: poisoning the loss");
                loss = f64::NAN;
            }
            let grad_norm = self.opt.clip_grad_norm(p.clip);
            let reason = if grad_norm.is_finite() {
                fault(loss, &state, p.rollback.spike)
            } else {
                Some("nan")
            };
            if let Some(reason) = reason {
                let average = state.loss_average;
                self.opt.zero_grad();
                let rollbacks = state.faults.len() + 1;
                if rollbacks > p.rollback.max {
                    return Err(TrainError::TooManyRollbacks {
                        rollbacks: rollbacks - 1,
                        max: p.rollback.max,
                        step,
                        reason: reason.to_owned(),
                        loss,
                    });
                }
                let snap = ck
                    .last()?
                    .ok_or_else(|| TrainError::Data("no state to roll back to".to_owned()))?;
                self.opt
                    .restore(|k| snap.get(k))
                    .map_err(TrainError::Data)?;
                let mut restored = snap.state.clone();
                metrics.clone_from(&snap.metrics);
                let fault = Fault {
                    step,
                    reason: reason.to_owned(),
                    loss: loss.is_finite().then_some(loss),
                    average,
                    restored: restored.step,
                };
                tracing::warn!(
                    step,
                    loss,
                    ?average,
                    restored = restored.step,
                    "{reason} loss: rolled back to step {} and skipping the batch",
                    restored.step
                );
                restored.faults.clone_from(&state.faults);
                restored.faults.push(fault);
                restored.skipped.clone_from(&state.skipped);
                restored.skipped.push(id);
                state = restored;
                continue;
            }
            let lr = learning_rate(phase, state.phase_step, state.phase_tokens);
            self.opt.step(lr, step);
            self.opt.zero_grad();
            let tokens = (batch.rows * batch.seq) as u64;
            let elapsed = started.elapsed().as_secs_f64().max(1e-9);
            let tokens_per_s = tokens as f64 / elapsed;
            state.step = step;
            state.tokens += tokens;
            state.phase_tokens += tokens;
            state.phase_step += 1;
            state.loss_average = Some(match state.loss_average {
                Some(a) => AVERAGE_DECAY * a + (1.0 - AVERAGE_DECAY) * loss,
                None => loss,
            });
            state.averaged += 1;
            if let Some(rule) = &phase.batch_growth
                && state.grower.observe(loss, rule)
            {
                tracing::info!(
                    step,
                    batch = state.grower.batch,
                    "loss plateaued: batch grown"
                );
            }
            let mut row = StepMetrics {
                step,
                phase: phase.kind,
                loss,
                lr,
                batch: batch.rows,
                seq: batch.seq,
                tokens: state.tokens,
                tokens_per_s,
                mfu: tokens_per_s * p.model.train_flops_per_token(batch.seq) / self.peak.flops,
                grad_norm,
                aux_loss: aux,
                expert_load: load,
                rollbacks: state.faults.len() as u64,
                val_loss: None,
            };
            if state.phase_tokens >= phase.tokens {
                state.phase += 1;
                state.phase_step = 0;
                state.phase_tokens = 0;
                if let Some(next) = p.phases.get(state.phase) {
                    state.grower = super::batch_growth::BatchGrower::new(next.batch);
                }
            }
            let last = state.phase >= p.phases.len();
            if p.eval.every > 0 && step.is_multiple_of(p.eval.every as u64) && !last {
                row.val_loss = self.evaluate()?;
            }
            if step.is_multiple_of(10) || step == 1 {
                tracing::info!(
                    step,
                    loss = format!("{loss:.4}"),
                    lr = format!("{lr:.2e}"),
                    batch = batch.rows,
                    seq = batch.seq,
                    tok_s = format!("{tokens_per_s:.0}"),
                    "step"
                );
            }
            metrics.push(row);
            if step.is_multiple_of(p.checkpoint.every as u64) && !last {
                let stall = ck.capture(&self.opt.state(), &state, &metrics, true)?;
                tracing::debug!(
                    step,
                    stall_ms = stall.as_secs_f64() * 1e3,
                    "checkpoint taken"
                );
            }
            if let Some(d) = self.step_delay {
                std::thread::sleep(d);
            }
        }
        ck.finish()?;
        let final_val_loss = self.evaluate()?;
        if let (Some(v), Some(last)) = (final_val_loss, metrics.last_mut()) {
            last.val_loss = Some(v);
        }
        Ok(Trained {
            metrics,
            faults: state.faults,
            final_val_loss,
            resumed_from,
            checkpoint_stalls: ck.stalls.clone(),
            weights: self.opt.weights(),
        })
    }

    /// Forward and backward over `batch` in micro-batches; the mean loss, aux loss and expert load.
    fn forward_backward(&mut self, batch: &Batch) -> Result<(f64, f64, Vec<f64>), TrainError> {
        let micro = self
            .params
            .micro_batch
            .unwrap_or(batch.rows)
            .clamp(1, batch.rows.max(1));
        let seq = batch.seq as i64;
        let inputs = Tensor::from_slice(&batch.inputs)
            .view([batch.rows as i64, seq])
            .to_device(self.device);
        let targets = Tensor::from_slice(&batch.targets)
            .view([batch.rows as i64, seq])
            .to_device(self.device);
        let mut loss_sum = Tensor::zeros([], (Kind::Float, self.device));
        let mut aux_sum = Tensor::zeros([], (Kind::Float, self.device));
        let mut load = None;
        let mut start = 0;
        while start < batch.rows {
            let n = micro.min(batch.rows - start);
            let x = inputs.narrow(0, start as i64, n as i64);
            let y = targets.narrow(0, start as i64, n as i64);
            let out = self.model.forward(&x);
            let lm = fused::cross_entropy(&out.logits, &y);
            let aux = out.aux_loss.to_kind(Kind::Float);
            let share = n as f64 / batch.rows as f64;
            let total = (&lm + &aux * self.params.aux_loss) * share;
            total.f_backward()?;
            loss_sum += lm.detach() * share;
            aux_sum += aux.detach() * share;
            load = out.expert_load.map(|l| l.detach());
            start += n;
        }
        let expert_load = match load {
            Some(l) => Vec::<f64>::try_from(
                l.to_kind(Kind::Double)
                    .mean_dim(0, false, Kind::Double)
                    .to_device(Device::Cpu),
            )?,
            None => Vec::new(),
        };
        Ok((
            loss_sum.double_value(&[]),
            aux_sum.double_value(&[]),
            expert_load,
        ))
    }

    /// Mean validation loss over the first `eval batches` batches of the last phase's length.
    fn evaluate(&self) -> Result<Option<f64>, TrainError> {
        let Some(val) = self.val else { return Ok(None) };
        let Some(phase) = self.params.phases.last() else {
            return Ok(None);
        };
        let sequences = val.packed(phase.seq).len();
        if sequences == 0 {
            return Ok(None);
        }
        let rows = phase.batch.min(sequences).max(1);
        let (mut sum, mut count) = (0.0, 0usize);
        for b in 0..self.params.eval.batches {
            let batch = fixed_batch(val, phase.seq, b * rows, rows);
            if batch.rows == 0 {
                break;
            }
            let loss = tch::no_grad(|| -> Result<f64, TrainError> {
                let x = Tensor::from_slice(&batch.inputs)
                    .view([batch.rows as i64, batch.seq as i64])
                    .to_device(self.device);
                let y = Tensor::from_slice(&batch.targets).to_device(self.device);
                let logits = self.model.forward(&x).logits;
                Ok(fused::cross_entropy(&logits, &y).double_value(&[]))
            })?;
            sum += loss * batch.rows as f64;
            count += batch.rows;
        }
        Ok((count > 0).then(|| sum / count as f64))
    }
}

/// Why a step's loss calls for a rollback: not finite, or above `spike` times the running average.
fn fault(loss: f64, state: &TrainState, spike: f64) -> Option<&'static str> {
    if !loss.is_finite() {
        return Some("nan");
    }
    match state.loss_average {
        Some(avg) if state.averaged >= SPIKE_MIN_STEPS && loss > spike * avg => Some("spike"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ShardIndex, ShardWriter, TokenDtype, TokenShards};
    use crate::model::Config;
    use crate::train::params::{
        AdamWParams, CheckpointParams, EvalParams, PhaseKind, PhaseParams, RollbackParams,
    };

    /// Documents of a learnable pattern: counting up from a random start, modulo the vocabulary.
    fn shards(dir: &Path) -> TokenShards {
        let mut rng = crate::data::Rng::new(3);
        let mut write = |split: &str, docs: usize| {
            let mut w = ShardWriter::new(dir, split, TokenDtype::U16, 1 << 20).unwrap();
            for _ in 0..docs {
                let start = rng.range(3, 120) as u32;
                let len = rng.range(10, 60) as u32;
                let doc: Vec<u32> = (0..len).map(|i| 3 + (start + i) % 125).chain([2]).collect();
                w.write_document(&doc).unwrap();
            }
            w.finish().unwrap()
        };
        let train = write("train", 300);
        let val = write("val", 20);
        let index = ShardIndex {
            format: 1,
            dtype: TokenDtype::U16,
            vocab_size: 128,
            eos: Some(2),
            bos: None,
            splits: [("train".to_owned(), train), ("val".to_owned(), val)]
                .into_iter()
                .collect(),
        };
        index.write(dir).unwrap();
        TokenShards::open(dir).unwrap()
    }

    fn params() -> PretrainParams {
        let phase = |kind, tokens, lr, lr_end, seq, batch| PhaseParams {
            kind,
            tokens,
            lr,
            lr_end,
            warmup: if kind == PhaseKind::Initial { 3 } else { 0 },
            seq,
            batch,
            batch_growth: None,
        };
        PretrainParams {
            model: Config {
                vocab: 128,
                max_seq: 64,
                ..Config::preset("tiny").unwrap()
            },
            phases: vec![
                phase(PhaseKind::Initial, 4 * 32 * 12, 3e-3, 1.5e-3, 32, 4),
                phase(PhaseKind::Intermediate, 2 * 64 * 6, 1.5e-3, 1.5e-3, 64, 2),
                phase(PhaseKind::Decay, 2 * 64 * 3, 1.5e-3, 0.0, 64, 2),
            ],
            micro_batch: Some(2),
            adamw: AdamWParams::default(),
            clip: 1.0,
            aux_loss: 0.01,
            checkpoint: CheckpointParams { every: 4, keep: 2 },
            rollback: RollbackParams { spike: 3.0, max: 3 },
            eval: EvalParams {
                every: 0,
                batches: 2,
            },
        }
    }

    fn losses(t: &Trained) -> Vec<(u64, f64)> {
        t.metrics.iter().map(|m| (m.step, m.loss)).collect()
    }

    #[test]
    fn trains_through_the_phases_and_resumes_step_for_step() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards(dir.path());
        let (train, val) = (shards.split("train").unwrap(), shards.split("val").unwrap());
        let p = params();
        let ck = dir.path().join("ck");
        let full = Trainer::new(&p, Device::Cpu, &train, Some(&val), 9)
            .unwrap()
            .run(&ck)
            .unwrap();
        assert_eq!(full.metrics.len(), 12 + 6 + 3);
        let kinds: Vec<(PhaseKind, usize)> =
            full.metrics.iter().map(|m| (m.phase, m.seq)).collect();
        assert_eq!(kinds[0], (PhaseKind::Initial, 32));
        assert_eq!(kinds[12], (PhaseKind::Intermediate, 64));
        assert_eq!(kinds[20], (PhaseKind::Decay, 64));
        let first = full.metrics[0].loss;
        let last = full.metrics.last().unwrap().loss;
        assert!(last < first - 0.5, "loss falls: {first} -> {last}");
        // The decay phase's 3 steps start at 1.5e-3 and take the LR at 1/3 and 2/3 of it down
        // the 1 - sqrt curve: 1.5e-3 * (1 - sqrt(2/3)) at the last step.
        let decay: Vec<f64> = full.metrics[18..].iter().map(|m| m.lr).collect();
        assert!(
            (decay[0] - 1.5e-3).abs() < 1e-12
                && (decay[2] - 1.5e-3 * (1.0 - (2.0f64 / 3.0).sqrt())).abs() < 1e-12,
            "{decay:?}"
        );
        assert!(full.final_val_loss.is_some());
        assert!(
            full.metrics
                .iter()
                .all(|m| m.expert_load.len() == p.model.routed_experts())
        );

        // Phases of 32 and 64 tokens share blocks of 64, and every phase goes on where the one
        // before stopped: the data position of step 20 has moved past every token trained on.
        let (_, snap) = Checkpointer::new(&ck, 2)
            .unwrap()
            .load_latest()
            .unwrap()
            .unwrap();
        let epoch = Loader::new(&train, 64, 9).unwrap().epoch_tokens();
        let data = snap.state.data;
        assert_eq!(
            data.epoch * epoch + data.offset,
            snap.state.tokens,
            "{data:?}"
        );

        // The newest checkpoint is step 20 (the last K of 4, 8, ..., 20): a rerun resumes there
        // and computes the same losses as the uninterrupted run.
        let resumed = Trainer::new(&p, Device::Cpu, &train, Some(&val), 9)
            .unwrap()
            .run(&ck)
            .unwrap();
        assert_eq!(resumed.resumed_from, Some(20));
        assert_eq!(losses(&resumed), losses(&full));
    }

    #[test]
    fn a_nan_rolls_back_skips_the_batch_and_too_many_fail() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards(dir.path());
        let train = shards.split("train").unwrap();
        let p = params();
        let t = Trainer::new(&p, Device::Cpu, &train, None, 9)
            .unwrap()
            .poison_steps([6, 10])
            .run(&dir.path().join("a"))
            .unwrap();
        let restored: Vec<(u64, u64)> = t.faults.iter().map(|f| (f.step, f.restored)).collect();
        assert_eq!(restored, [(6, 4), (10, 8)]);
        assert!(
            t.faults
                .iter()
                .all(|f| f.reason == "nan" && f.loss.is_none())
        );
        assert_eq!(t.metrics.len(), 21, "every step still done once");
        assert_eq!(t.metrics.last().unwrap().rollbacks, 2);
        let steps: Vec<u64> = t.metrics.iter().map(|m| m.step).collect();
        assert_eq!(steps, (1..=21).collect::<Vec<_>>());
        assert!(t.metrics.iter().all(|m| m.loss.is_finite()));

        let err = Trainer::new(&p, Device::Cpu, &train, None, 9)
            .unwrap()
            .poison_steps([2, 3, 5, 7])
            .run(&dir.path().join("b"))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("gave up after 3 rollbacks (rollback max=3)"),
            "{err}"
        );
    }
}
