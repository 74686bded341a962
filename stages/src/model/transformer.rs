//! The whole decoder (report §2): token embedding, the layers of [`Config::layer_specs`], a final
//! RMSNorm and the output projection. [`Transformer::forward`] runs a batch of whole sequences for
//! training; [`Transformer::forward_step`] decodes incrementally against a [`KvCache`] and gives the
//! same logits.
//!
//! Weight names follow the module tree, so checkpoint keys are predictable:
//! `embed.weight`, `layers.{i}.attn_norm.weight`, `layers.{i}.attn.qkv.weight` (or `attn.q.weight`
//! in a layer that borrows its keys and values), `layers.{i}.attn.out.weight`,
//! `layers.{i}.ffn_norm.weight`, `layers.{i}.ffn.{gate_up,down}.weight` (dense) or
//! `layers.{i}.ffn.router.weight`, `layers.{i}.ffn.experts.{gate_up,down}`,
//! `layers.{i}.ffn.shared.{gate_up,down}.weight` (MoE), `norm.weight`, and `lm_head.weight` unless
//! the embeddings are tied.
//!
//! Initialisation: normal(0, 0.02) everywhere, with the projections that write into the residual
//! stream (`attn.out`, `ffn.down`, the experts' `down`) scaled by `1/sqrt(2 * layers)` (GPT-2).

use tch::{Device, Kind, Tensor, nn};

use super::attention::{Kv, SequenceContext};
use super::block::Block;
use super::config::{Config, LayerSpec};
use super::error::ModelError;
use super::kv_cache::KvCache;
use super::mlp::linear_init;
use super::moe::ExpertKernel;
use super::rms_norm::RmsNorm;
use super::rope::Rope;

/// Standard deviation of the initial weights.
const INIT_STD: f64 = 0.02;

/// What a training forward pass gives.
#[derive(Debug)]
pub struct Output {
    /// `[batch, len, vocab]`, in the model's dtype.
    pub logits: Tensor,
    /// The Switch load-balancing loss averaged over the MoE layers (1 when balanced; 0 for a
    /// dense model). The trainer adds it to the language-model loss with its own weight.
    pub aux_loss: Tensor,
    /// Fraction of routed assignments per expert, `[moe_layers, experts]`, for metrics.
    pub expert_load: Option<Tensor>,
}

/// The Yi-Lightning decoder.
#[derive(Debug)]
pub struct Transformer {
    embed: nn::Embedding,
    blocks: Vec<Block>,
    specs: Vec<LayerSpec>,
    /// Per layer: no later layer reads its KV slot, so the slot can be let go after it.
    last_reader: Vec<bool>,
    norm: RmsNorm,
    lm_head: Option<nn::Linear>,
    rope: Rope,
    config: Config,
}

impl Transformer {
    /// Builds the model's weights under `p` (see the module docs for their names).
    pub fn new(p: &nn::Path, config: &Config) -> Result<Self, ModelError> {
        config.validate()?;
        let (vocab, d) = (config.vocab as i64, config.d_model as i64);
        let out_std = INIT_STD / (2.0 * config.layers as f64).sqrt();
        let specs = config.layer_specs();
        let blocks = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| Block::new(&(p / "layers" / i), config, *spec, INIT_STD, out_std))
            .collect();
        let last_reader = (0..specs.len())
            .map(|i| {
                specs[i + 1..]
                    .iter()
                    .all(|later| later.kv_slot != specs[i].kv_slot)
            })
            .collect();
        let embedding = nn::EmbeddingConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: INIT_STD,
            },
            ..Default::default()
        };
        Ok(Self {
            embed: nn::embedding(p / "embed", vocab, d, embedding),
            blocks,
            specs,
            last_reader,
            norm: RmsNorm::new(&(p / "norm"), d, config.norm_eps),
            lm_head: (!config.tie_embeddings)
                .then(|| nn::linear(p / "lm_head", d, vocab, linear_init(INIT_STD))),
            rope: Rope::new(config.head_dim() as i64, config.rope_base, p.device()),
            config: config.clone(),
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Chooses how the MoE layers' experts run (for benchmarks and cross-checks).
    pub fn set_expert_kernel(&mut self, kernel: ExpertKernel) {
        for block in &mut self.blocks {
            block.set_expert_kernel(kernel);
        }
    }

    /// Training forward over `tokens` (`[batch, len]`, int64).
    pub fn forward(&self, tokens: &Tensor) -> Output {
        let (_, len) = tokens.size2().expect("tokens are [batch, len]");
        let mut x = tokens.apply(&self.embed);
        let window = self.config.attention.window.map(|w| w as i64);
        let cx = SequenceContext::new(&self.rope, len, window, x.kind(), x.device());
        let mut shared: Vec<Option<Kv>> = (0..self.specs.len()).map(|_| None).collect();
        let (mut aux, mut loads) = (Vec::new(), Vec::new());
        for (i, (block, spec)) in self.blocks.iter().zip(&self.specs).enumerate() {
            let (y, routing) = block.forward(&x, &cx, &mut shared[spec.kv_slot]);
            x = y;
            if self.last_reader[i] {
                shared[spec.kv_slot] = None;
            }
            if let Some(routing) = routing {
                aux.push(routing.aux_loss);
                loads.push(routing.load);
            }
        }
        let aux_loss = if aux.is_empty() {
            Tensor::zeros([], (Kind::Float, x.device()))
        } else {
            Tensor::stack(&aux, 0).mean(Kind::Float)
        };
        Output {
            logits: self.logits(&x),
            aux_loss,
            expert_load: (!loads.is_empty()).then(|| Tensor::stack(&loads, 0)),
        }
    }

    /// An empty cache for decoding `batch` sequences of up to `capacity` positions, in the model's
    /// dtype and on its device.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<KvCache, ModelError> {
        if capacity > self.config.max_seq as i64 {
            return Err(ModelError::CapacityTooLarge {
                capacity,
                max_seq: self.config.max_seq,
            });
        }
        if capacity < 1 || batch < 1 {
            return Err(ModelError::CacheFull {
                needed: 1,
                capacity: capacity.min(batch),
            });
        }
        let weights = &self.embed.ws;
        Ok(KvCache::new(
            &self.config,
            batch,
            capacity,
            weights.kind(),
            weights.device(),
        ))
    }

    /// Decodes `tokens` (`[batch, len]`) at the cache's next positions and returns their logits
    /// (`[batch, len, vocab]`): `len > 1` for a prompt, 1 per generated token. No gradients.
    pub fn forward_step(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor, ModelError> {
        let bad = || ModelError::BadTokens {
            shape: tokens.size(),
            kind: tokens.kind(),
        };
        let (batch, len) = tokens.size2().map_err(|_| bad())?;
        if len < 1 || tokens.kind() != Kind::Int64 {
            return Err(bad());
        }
        if batch != cache.batch() {
            return Err(ModelError::BatchMismatch {
                cache: cache.batch(),
                tokens: batch,
            });
        }
        let start = cache.len();
        if start + len > cache.capacity() {
            return Err(ModelError::CacheFull {
                needed: start + len,
                capacity: cache.capacity(),
            });
        }
        let logits = tch::no_grad(|| {
            let mut x = tokens.apply(&self.embed);
            let (cos, sin) = self.rope.cos_sin(start, len, x.kind());
            for (block, spec) in self.blocks.iter().zip(&self.specs) {
                x = block.forward_step(&x, &cos, &sin, cache.slot(spec.kv_slot), start);
            }
            self.logits(&x)
        });
        cache.advance(len);
        Ok(logits)
    }

    fn logits(&self, x: &Tensor) -> Tensor {
        let x = x.apply(&self.norm);
        match &self.lm_head {
            Some(head) => x.apply(head),
            None => x.linear(&self.embed.ws, None::<Tensor>),
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed.ws.device()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttentionLayout, Experts};

    fn tiny() -> Config {
        Config::preset("tiny").unwrap()
    }

    fn build(config: &Config) -> (nn::VarStore, Transformer) {
        build_on(config, Device::Cpu)
    }

    fn build_on(config: &Config, device: Device) -> (nn::VarStore, Transformer) {
        let vs = nn::VarStore::new(device);
        let model = Transformer::new(&vs.root(), config).unwrap();
        (vs, model)
    }

    fn tokens(batch: i64, len: i64, vocab: usize) -> Tensor {
        Tensor::randint(vocab as i64, [batch, len], (Kind::Int64, Device::Cpu))
    }

    #[test]
    fn parameter_count_matches_the_formula() {
        let tiny = tiny();
        let variants = [
            tiny.clone(),
            Config {
                experts: None,
                ..tiny.clone()
            },
            Config {
                tie_embeddings: true,
                kv_share: false,
                ..tiny.clone()
            },
            Config {
                attention: AttentionLayout::FULL,
                layers: 5,
                ..tiny.clone()
            },
            Config {
                experts: Some(Experts {
                    count: 4,
                    active: 1,
                    segments: 4,
                    shared: 2,
                }),
                ..tiny
            },
        ];
        for config in variants {
            let (vs, _) = build(&config);
            let built: i64 = vs
                .trainable_variables()
                .iter()
                .map(Tensor::numel)
                .sum::<usize>() as i64;
            assert_eq!(built as u64, config.param_count(), "{config:?}");
        }
    }

    #[test]
    fn weight_names_follow_the_module_tree() {
        let (vs, _) = build(&tiny());
        let names = vs.variables();
        for name in [
            "embed.weight",
            "layers.0.attn_norm.weight",
            "layers.0.attn.qkv.weight",
            "layers.3.attn.qkv.weight", // the first full layer owns the shared KV...
            "layers.7.attn.q.weight",   // ...the second borrows it
            "layers.7.attn.out.weight",
            "layers.0.ffn.router.weight",
            "layers.0.ffn.experts.gate_up",
            "layers.0.ffn.experts.down",
            "layers.0.ffn.shared.gate_up.weight",
            "layers.0.ffn.shared.down.weight",
            "layers.0.ffn_norm.weight",
            "norm.weight",
            "lm_head.weight",
        ] {
            assert!(
                names.contains_key(name),
                "no {name} in {:?}",
                names.keys().collect::<Vec<_>>()
            );
        }
        assert!(!names.contains_key("layers.7.attn.qkv.weight"));
        assert_eq!(names["layers.0.ffn.experts.gate_up"].size(), [16, 128, 64]);
    }

    #[test]
    fn changing_future_tokens_never_changes_earlier_outputs() {
        tch::manual_seed(5);
        let config = tiny(); // window 16 < 40: sliding layers use the mask path
        let (_, model) = build(&config);
        let a = tokens(2, 40, config.vocab);
        let b = a.copy();
        b.narrow(1, 25, 15).copy_(&tokens(2, 15, config.vocab));
        let (la, lb) = tch::no_grad(|| (model.forward(&a).logits, model.forward(&b).logits));
        assert!(
            la.narrow(1, 0, 25)
                .allclose(&lb.narrow(1, 0, 25), 1e-5, 1e-6, false)
        );
        assert!(
            !la.narrow(1, 25, 15)
                .allclose(&lb.narrow(1, 25, 15), 1e-3, 1e-3, false)
        );
    }

    #[test]
    fn a_window_covering_the_sequence_equals_full_attention() {
        tch::manual_seed(6);
        let windowed = Config {
            attention: AttentionLayout {
                window: Some(32),
                full_every: 4,
            },
            kv_share: false,
            ..tiny()
        };
        let full = Config {
            attention: AttentionLayout::FULL,
            ..windowed.clone()
        };
        let (vs_windowed, windowed) = build(&windowed);
        let (mut vs_full, full) = build(&full);
        vs_full.copy(&vs_windowed).unwrap();
        let x = tokens(2, 32, 256);
        let (a, b) = tch::no_grad(|| (windowed.forward(&x).logits, full.forward(&x).logits));
        assert!(a.allclose(&b, 1e-5, 1e-6, false));
        // With more tokens than the window the sliding layers see less, and it shows.
        let x = tokens(2, 48, 256);
        let (a, b) = tch::no_grad(|| (windowed.forward(&x).logits, full.forward(&x).logits));
        assert!(
            a.narrow(1, 0, 32)
                .allclose(&b.narrow(1, 0, 32), 1e-5, 1e-6, false)
        );
        assert!(
            !a.narrow(1, 32, 16)
                .allclose(&b.narrow(1, 32, 16), 1e-4, 1e-4, false)
        );
    }

    /// Decodes `x` in chunks of the given sizes and compares every step with the full forward pass.
    fn assert_decoding_matches(config: &Config, chunks: &[i64], device: Device) {
        let (_, model) = build_on(config, device);
        let len: i64 = chunks.iter().sum();
        let x = tokens(2, len, config.vocab).to_device(device);
        let expected = tch::no_grad(|| model.forward(&x).logits);
        let mut cache = model.new_cache(2, len).unwrap();
        let mut start = 0;
        for &chunk in chunks {
            let got = model
                .forward_step(&x.narrow(1, start, chunk), &mut cache)
                .unwrap();
            let want = expected.narrow(1, start, chunk);
            let diff = (&got - &want).abs().max().double_value(&[]);
            assert!(
                diff < 1e-4,
                "positions {start}..{}: max difference {diff}",
                start + chunk
            );
            start += chunk;
        }
        assert_eq!(cache.len(), len);
    }

    /// A prompt, single tokens past the window, a chunk that wraps the rings, more single tokens.
    fn decoding_chunks() -> Vec<i64> {
        let mut chunks = vec![5];
        chunks.extend([1; 15]);
        chunks.push(7);
        chunks.extend([1; 20]);
        chunks.push(19);
        chunks
    }

    #[test]
    fn incremental_decoding_equals_the_full_forward_pass() {
        tch::manual_seed(7);
        // tiny: hybrid layout (window 16), KV sharing between layers 3 and 7, MoE with shared experts.
        assert_decoding_matches(&tiny(), &decoding_chunks(), Device::Cpu);
        // Dense, every layer full, adjacent layers sharing: the shared-slot path under masks.
        let dense = Config {
            experts: None,
            attention: AttentionLayout::FULL,
            ..tiny()
        };
        assert_decoding_matches(&dense, &[6, 1, 1, 9, 1, 3], Device::Cpu);
    }

    #[test]
    fn decoding_refuses_what_the_cache_cannot_hold() {
        let (_, model) = build(&tiny());
        let mut cache = model.new_cache(1, 8).unwrap();
        let _ = model.forward_step(&tokens(1, 6, 256), &mut cache).unwrap();
        let full = model
            .forward_step(&tokens(1, 3, 256), &mut cache)
            .unwrap_err();
        assert_eq!(
            full.to_string(),
            "a KV cache of 8 positions cannot take 9: create it with a larger capacity"
        );
        assert!(matches!(
            model.forward_step(&tokens(2, 1, 256), &mut cache),
            Err(ModelError::BatchMismatch { .. })
        ));
        assert!(matches!(
            model.new_cache(1, 100_000),
            Err(ModelError::CapacityTooLarge { .. })
        ));
        let floats = Tensor::zeros([1, 1], (Kind::Float, Device::Cpu));
        assert!(matches!(
            model.forward_step(&floats, &mut cache),
            Err(ModelError::BadTokens { .. })
        ));
    }

    #[test]
    fn dense_models_report_no_routing() {
        let (_, model) = build(&Config {
            experts: None,
            ..tiny()
        });
        let out = model.forward(&tokens(1, 8, 256));
        assert_eq!(out.logits.size(), [1, 8, 256]);
        assert!(out.expert_load.is_none());
        assert!(out.aux_loss.double_value(&[]).abs() < f64::EPSILON);
        let (_, moe) = build(&tiny());
        let out = moe.forward(&tokens(1, 8, 256));
        assert_eq!(out.expert_load.unwrap().size(), [8, 16]);
        let aux = out.aux_loss.double_value(&[]);
        assert!(aux > 0.5 && aux < 16.0, "{aux}");
    }

    // On a CUDA machine: `cargo test -p yiflow-stages --features torch -- --ignored --nocapture`.

    #[test]
    #[ignore = "needs a CUDA device"]
    fn on_cuda_decoding_matches_and_both_expert_kernels_agree_in_bf16() {
        assert!(tch::Cuda::is_available(), "no CUDA device is visible");
        let device = Device::Cuda(0);
        tch::manual_seed(8);
        assert_decoding_matches(&tiny(), &decoding_chunks(), device);
        let config = Config {
            max_seq: 512,
            ..tiny()
        };
        let (mut vs, mut model) = build_on(&config, device);
        vs.bfloat16();
        let x = tokens(4, 256, config.vocab).to_device(device);
        let mut outputs = Vec::new();
        for kernel in [ExpertKernel::GroupedMm, ExpertKernel::PaddedBmm] {
            model.set_expert_kernel(kernel);
            for mut var in vs.trainable_variables() {
                var.zero_grad();
            }
            let out = model.forward(&x);
            assert_eq!(out.logits.kind(), Kind::BFloat16);
            let loss = out.logits.to_kind(Kind::Float).square().mean(Kind::Float) + out.aux_loss;
            loss.backward();
            let grad = vs.variables()["layers.0.ffn.experts.gate_up"]
                .grad()
                .to_kind(Kind::Float);
            outputs.push((out.logits.to_kind(Kind::Float), grad));
        }
        let (a, b) = (&outputs[0], &outputs[1]);
        let scale = a.0.abs().max().double_value(&[]);
        let diff = (&a.0 - &b.0).abs().max().double_value(&[]);
        assert!(
            diff < 2e-2 * scale,
            "logits differ by {diff} (scale {scale})"
        );
        let scale = a.1.abs().max().double_value(&[]);
        let diff = (&a.1 - &b.1).abs().max().double_value(&[]);
        assert!(
            scale > 0.0 && diff < 5e-2 * scale,
            "expert gradients differ by {diff} (scale {scale})"
        );
    }

    #[test]
    #[ignore = "needs a CUDA device; prints forward+backward throughput"]
    fn on_cuda_forward_backward_throughput() {
        assert!(tch::Cuda::is_available(), "no CUDA device is visible");
        let device = Device::Cuda(0);
        let (batch, seq, steps) = (16, 1024, 10);
        for name in ["dense-125m", "moe-125m"] {
            let config = Config::preset(name).unwrap();
            let (mut vs, mut model) = build_on(&config, device);
            vs.bfloat16();
            let kernels: &[ExpertKernel] = if config.experts.is_some() {
                &[ExpertKernel::GroupedMm, ExpertKernel::PaddedBmm]
            } else {
                &[ExpertKernel::GroupedMm]
            };
            for &kernel in kernels {
                model.set_expert_kernel(kernel);
                let x = tokens(batch, seq + 1, config.vocab).to_device(device);
                let (input, target) = (x.narrow(1, 0, seq), x.narrow(1, 1, seq));
                let step = || {
                    let out = model.forward(&input);
                    let logits = out
                        .logits
                        .view([-1, config.vocab as i64])
                        .to_kind(Kind::Float);
                    let loss = logits.cross_entropy_for_logits(&target.reshape([-1]))
                        + out.aux_loss * 0.01;
                    loss.backward();
                };
                for _ in 0..3 {
                    step();
                }
                tch::Cuda::synchronize(0);
                let started = std::time::Instant::now();
                for _ in 0..steps {
                    step();
                }
                tch::Cuda::synchronize(0);
                let seconds = started.elapsed().as_secs_f64();
                let tokens_per_s = (steps * batch * seq) as f64 / seconds;
                let mfu = tokens_per_s * config.train_flops_per_token(seq as usize) / 989e12;
                println!(
                    "{name:<11} {kernel:<10?} bf16 batch {batch} seq {seq}: {:>7.0} tok/s, MFU {:.1}% (of 989 TFLOP/s), {:.1} ms/step",
                    tokens_per_s,
                    100.0 * mfu,
                    1000.0 * seconds / steps as f64
                );
            }
        }
    }
}
