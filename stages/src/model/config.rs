//! The model's configuration: every architectural choice of the Yi-Lightning report (01.AI,
//! arXiv 2412.01253, §2 "Architecture") as a field, with named presets. Torch-free, so that
//! `yiflow check` and `yiflow plan` validate `model` blocks and fingerprint them without LibTorch;
//! the worker builds the tensors from the same value.
//!
//! Besides validation it answers the analytic questions the trainer and the benchmarks ask: the
//! number of parameters (total and active per token), the training FLOPs per token for MFU, and the
//! KV-cache bytes per token of the hybrid attention layout (the report's 82.8% reduction at
//! window 4096 and 64K context).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A decoder-only transformer after the Yi-Lightning report: RMSNorm, RoPE, grouped-query attention
/// in hybrid blocks of sliding-window and full-attention layers, optional KV sharing between
/// consecutive full-attention layers, and a dense or fine-grained MoE feed-forward network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Vocabulary size (embedding rows, logits).
    pub vocab: usize,
    /// Number of transformer layers.
    pub layers: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Query heads; the head size is `d_model / heads`.
    pub heads: usize,
    /// Key/value heads (grouped-query attention): each serves `heads / kv_heads` query heads.
    pub kv_heads: usize,
    /// Hidden size of the dense SwiGLU FFN, or of one whole (unsegmented) expert of the MoE.
    pub ffn: usize,
    /// The MoE feed-forward network; `None` means a dense FFN in every layer.
    pub experts: Option<Experts>,
    /// Which layers attend to everything and which only to a recent window.
    pub attention: AttentionLayout,
    /// Consecutive full-attention layers share one KV cache, in pairs (see [`Config::layer_specs`]).
    pub kv_share: bool,
    /// RoPE base (theta); context extension raises it.
    pub rope_base: f64,
    /// Longest sequence the model is meant for (checked by decoding; RoPE itself has no table).
    pub max_seq: usize,
    /// Epsilon of every RMSNorm.
    pub norm_eps: f64,
    /// The output projection reuses the embedding matrix.
    pub tie_embeddings: bool,
}

/// The MoE feed-forward network with fine-grained expert segmentation (report §2, after
/// DeepSeekMoE): each of `count` experts of hidden size `ffn` is split into `segments` experts of
/// hidden size `ffn / segments`, and a token is routed to `active * segments` of them, so the
/// active compute equals `active` whole experts while the routing has many more combinations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Experts {
    /// Whole experts before segmentation.
    pub count: usize,
    /// Whole experts' worth of compute each token activates (top-k before segmentation).
    pub active: usize,
    /// Fine-grained segments per expert.
    pub segments: usize,
    /// Shared experts (each of hidden size `ffn`) that every token goes through, besides the routed ones.
    pub shared: usize,
}

/// The hybrid attention layout (report §2, KV-cache reduction): with a window, every
/// `full_every`-th layer attends to the whole context and the others to the last `window` positions
/// (`full_every = 4`: three sliding-window layers, then one full layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AttentionLayout {
    /// Positions a sliding-window query sees, itself included; `None`: every layer is full.
    pub window: Option<usize>,
    /// One layer in this many is full attention (the last of each hybrid block).
    pub full_every: usize,
}

impl AttentionLayout {
    /// Every layer attends to the whole context.
    pub const FULL: Self = Self {
        window: None,
        full_every: 1,
    };
}

/// How one layer attends and where its keys and values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// `Some(w)`: sliding-window attention over the last `w` positions; `None`: full attention.
    pub window: Option<usize>,
    /// The KV-cache slot the layer reads; slots are numbered in the order their owners appear.
    pub kv_slot: usize,
    /// The layer computes its own keys and values (and writes the slot); otherwise it reuses those
    /// of the previous full-attention layer, which wrote the same slot, and has no K/V projections.
    pub owns_kv: bool,
}

/// A configuration that cannot build a model.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    #[error("`{field}` must be at least 1")]
    Zero { field: &'static str },
    #[error("d-model {d_model} is not divisible by heads {heads}")]
    HeadsDoNotDivide { d_model: usize, heads: usize },
    #[error("heads {heads} is not divisible by kv-heads {kv_heads}")]
    KvHeadsDoNotDivide { heads: usize, kv_heads: usize },
    #[error(
        "the head size d-model/heads = {head_dim} is odd, and RoPE rotates pairs of dimensions"
    )]
    OddHeadDim { head_dim: usize },
    #[error("active={active} is more than the {count} experts")]
    TooManyActive { active: usize, count: usize },
    #[error("ffn {ffn} is not divisible by segments={segments}")]
    SegmentsDoNotDivide { ffn: usize, segments: usize },
    #[error(
        "layers {layers} is not a whole number of hybrid blocks of full-every={full_every} layers"
    )]
    PartialBlock { layers: usize, full_every: usize },
    #[error("`{field}` must be {expected}, found {value}")]
    OutOfRange {
        field: &'static str,
        expected: &'static str,
        value: f64,
    },
}

impl ConfigError {
    /// The recipe setting at fault, to point a diagnostic at.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Zero { field } | Self::OutOfRange { field, .. } => field,
            Self::HeadsDoNotDivide { .. } | Self::OddHeadDim { .. } => "heads",
            Self::KvHeadsDoNotDivide { .. } => "kv-heads",
            Self::TooManyActive { .. } => "active",
            Self::SegmentsDoNotDivide { .. } => "ffn",
            Self::PartialBlock { .. } => "attention",
        }
    }

    /// How to fix it, for a help line.
    pub fn help(&self) -> String {
        match self {
            Self::Zero { field } => format!("set `{field}` to a positive number"),
            Self::HeadsDoNotDivide { d_model, .. } => {
                format!(
                    "choose heads among the divisors of {d_model} (e.g. a head size of 64 or 128)"
                )
            }
            Self::KvHeadsDoNotDivide { heads, .. } => {
                format!(
                    "choose kv-heads among the divisors of {heads}; kv-heads={heads} is plain multi-head attention"
                )
            }
            Self::OddHeadDim { .. } => "choose heads so that d-model/heads is even".to_owned(),
            Self::TooManyActive { count, .. } => format!("set active to at most {count}"),
            Self::SegmentsDoNotDivide { segments, .. } => {
                format!("set ffn to a multiple of {segments}, or change segments")
            }
            Self::PartialBlock { full_every, .. } => {
                format!("make layers a multiple of {full_every}, or change full-every")
            }
            Self::OutOfRange { expected, .. } => format!("use a value that is {expected}"),
        }
    }
}

impl Config {
    /// Names of the presets, for `preset "NAME"` and its suggestions.
    pub const PRESETS: &'static [&'static str] = &["tiny", "dense-125m", "moe-125m"];

    /// A named preset: `tiny` (CPU tests in seconds: hybrid attention, KV sharing, MoE with shared
    /// experts), `dense-125m` (~111M non-embedding parameters: 12 layers, d 768, vocab 32768) and
    /// `moe-125m` (the same with a 16-expert MoE of the same active size, ~0.75B in all).
    pub fn preset(name: &str) -> Option<Self> {
        let dense_125m = Self {
            vocab: 32768,
            layers: 12,
            d_model: 768,
            heads: 12,
            kv_heads: 4,
            ffn: 3328,
            experts: None,
            attention: AttentionLayout::FULL,
            kv_share: false,
            rope_base: 10_000.0,
            max_seq: 2048,
            norm_eps: 1e-5,
            tie_embeddings: false,
        };
        match name {
            "tiny" => Some(Self {
                vocab: 256,
                layers: 8,
                d_model: 64,
                heads: 4,
                kv_heads: 2,
                ffn: 128,
                experts: Some(Experts {
                    count: 8,
                    active: 2,
                    segments: 2,
                    shared: 1,
                }),
                attention: AttentionLayout {
                    window: Some(16),
                    full_every: 4,
                },
                kv_share: true,
                rope_base: 10_000.0,
                max_seq: 256,
                norm_eps: 1e-5,
                tie_embeddings: false,
            }),
            "dense-125m" => Some(dense_125m),
            // Two of 16 experts of hidden 1664, each cut in 2: top-4 of 32 segments of hidden 832,
            // i.e. the dense preset's 3328 active hidden units per token.
            "moe-125m" => Some(Self {
                ffn: 1664,
                experts: Some(Experts {
                    count: 16,
                    active: 2,
                    segments: 2,
                    shared: 0,
                }),
                ..dense_125m
            }),
            _ => None,
        }
    }

    /// The hidden size a dense SwiGLU FFN gets when none is given: 8/3 of d-model (the same
    /// parameters as a 4x GELU MLP), rounded up to a multiple of 64.
    pub fn default_ffn(d_model: usize) -> usize {
        (8 * d_model).div_ceil(3).div_ceil(64) * 64
    }

    /// The same configuration written one way only, so that equal models fingerprint equally:
    /// a layout whose every layer is full drops its window.
    #[must_use]
    pub fn canonical(mut self) -> Self {
        if self.attention.window.is_none() || self.attention.full_every == 1 {
            self.attention = AttentionLayout::FULL;
        }
        self
    }

    /// Every reason this configuration cannot build a model (empty when it can).
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("vocab", self.vocab),
            ("layers", self.layers),
            ("d-model", self.d_model),
            ("heads", self.heads),
            ("kv-heads", self.kv_heads),
            ("ffn", self.ffn),
            ("max-seq", self.max_seq),
        ] {
            if value == 0 {
                problems.push(ConfigError::Zero { field });
            }
        }
        if self.heads > 0 && !self.d_model.is_multiple_of(self.heads) {
            problems.push(ConfigError::HeadsDoNotDivide {
                d_model: self.d_model,
                heads: self.heads,
            });
        } else if self.heads > 0 && self.head_dim() % 2 == 1 {
            problems.push(ConfigError::OddHeadDim {
                head_dim: self.head_dim(),
            });
        }
        if self.kv_heads > 0 && !self.heads.is_multiple_of(self.kv_heads) {
            problems.push(ConfigError::KvHeadsDoNotDivide {
                heads: self.heads,
                kv_heads: self.kv_heads,
            });
        }
        if let Some(experts) = &self.experts {
            for (field, value) in [
                ("experts", experts.count),
                ("active", experts.active),
                ("segments", experts.segments),
            ] {
                if value == 0 {
                    problems.push(ConfigError::Zero { field });
                }
            }
            if experts.active > experts.count {
                problems.push(ConfigError::TooManyActive {
                    active: experts.active,
                    count: experts.count,
                });
            }
            if experts.segments > 0 && !self.ffn.is_multiple_of(experts.segments) {
                problems.push(ConfigError::SegmentsDoNotDivide {
                    ffn: self.ffn,
                    segments: experts.segments,
                });
            }
        }
        let layout = self.attention;
        if layout.window == Some(0) {
            problems.push(ConfigError::Zero { field: "window" });
        }
        if layout.full_every == 0 {
            problems.push(ConfigError::Zero {
                field: "full-every",
            });
        } else if layout.window.is_some() && !self.layers.is_multiple_of(layout.full_every) {
            problems.push(ConfigError::PartialBlock {
                layers: self.layers,
                full_every: layout.full_every,
            });
        }
        if !(self.rope_base > 1.0 && self.rope_base.is_finite()) {
            problems.push(ConfigError::OutOfRange {
                field: "rope-base",
                expected: "a finite number above 1",
                value: self.rope_base,
            });
        }
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            problems.push(ConfigError::OutOfRange {
                field: "norm-eps",
                expected: "between 0 and 1 (e.g. 1e-5)",
                value: self.norm_eps,
            });
        }
        problems
    }

    /// The configuration if it can build a model, else its first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.heads
    }

    /// Routed (fine-grained) experts per MoE layer, `count * segments`.
    pub fn routed_experts(&self) -> usize {
        self.experts.as_ref().map_or(0, |e| e.count * e.segments)
    }

    /// Routed experts each token goes to, `active * segments` (the router's top-k).
    pub fn routed_active(&self) -> usize {
        self.experts.as_ref().map_or(0, |e| e.active * e.segments)
    }

    /// Hidden size of one routed (fine-grained) expert, `ffn / segments`.
    pub fn expert_hidden(&self) -> usize {
        self.experts
            .as_ref()
            .map_or(self.ffn, |e| self.ffn / e.segments)
    }

    /// How every layer attends. Layer `i` is full attention when there is no window or when
    /// `(i + 1) % full_every == 0` (the last layer of each hybrid block), else sliding-window.
    ///
    /// KV sharing, as the report describes it ("consecutive full-attention layers share one KV
    /// cache"): full-attention layers are taken in pairs in depth order — the 1st with the 2nd, the
    /// 3rd with the 4th, with the sliding-window layers between them left alone. The first of a pair
    /// projects keys and values as usual and owns the slot; the second has only query and output
    /// projections and attends over the first one's keys and values (already rotated by RoPE, for
    /// the same positions), in training as in decoding. With an odd number of full layers the last
    /// one owns a slot alone. Sliding-window layers never share. Under the report's layout (3:1)
    /// this stores 1/8 of the layers' full-length caches plus 3/4 of window-length ones.
    pub fn layer_specs(&self) -> Vec<LayerSpec> {
        let mut specs = Vec::with_capacity(self.layers);
        let mut slots = 0;
        let mut unpaired_full: Option<usize> = None;
        for i in 0..self.layers {
            let window = match self.attention.window {
                Some(w) if (i + 1) % self.attention.full_every.max(1) != 0 => Some(w),
                _ => None,
            };
            if window.is_none()
                && self.kv_share
                && let Some(slot) = unpaired_full.take()
            {
                specs.push(LayerSpec {
                    window,
                    kv_slot: slot,
                    owns_kv: false,
                });
                continue;
            }
            if window.is_none() && self.kv_share {
                unpaired_full = Some(slots);
            }
            specs.push(LayerSpec {
                window,
                kv_slot: slots,
                owns_kv: true,
            });
            slots += 1;
        }
        specs
    }

    /// Parameters of the model as built (every expert counted).
    pub fn param_count(&self) -> u64 {
        self.embedding_params() + self.body_params(false)
    }

    /// Parameters outside the embedding and the output projection.
    pub fn non_embedding_param_count(&self) -> u64 {
        self.body_params(false) - self.lm_head_params()
    }

    /// Parameters one token's forward pass uses: routed experts count only `active * segments`.
    pub fn active_param_count(&self) -> u64 {
        self.embedding_params() + self.body_params(true)
    }

    /// Training FLOPs per token (forward and backward) at sequence length `seq`, for MFU:
    /// `6 * N` for the matrix products of the active non-embedding parameters and the output
    /// projection, plus `12 * heads * head_dim * context` per layer for the attention scores and
    /// their weighted sum, where `context` is `seq` for full layers and `min(window, seq)` for
    /// sliding ones (the PaLM convention, which does not halve for causality).
    pub fn train_flops_per_token(&self, seq: usize) -> f64 {
        let matmul = 6.0 * (self.body_params(true) - self.norm_params()) as f64;
        let attention: f64 = self
            .layer_specs()
            .iter()
            .map(|s| {
                12.0 * (self.heads * self.head_dim()) as f64
                    * s.window.map_or(seq, |w| w.min(seq)) as f64
            })
            .sum();
        matmul + attention
    }

    /// Bytes the KV cache holds per token of a context of `seq` tokens, with `elem_bytes` per value
    /// (2 for bf16): each slot keeps keys and values of `kv_heads * head_dim` for `seq` positions
    /// (full attention) or `min(window, seq)` (sliding window), divided by `seq`.
    pub fn kv_cache_bytes_per_token(&self, seq: usize, elem_bytes: usize) -> f64 {
        let per_position = (2 * self.kv_heads * self.head_dim() * elem_bytes) as f64;
        let positions: usize = self
            .layer_specs()
            .iter()
            .filter(|s| s.owns_kv)
            .map(|s| s.window.map_or(seq, |w| w.min(seq)))
            .sum();
        per_position * positions as f64 / seq as f64
    }

    /// The KV cache of this layout as a fraction of the same model with full attention and no
    /// sharing in every layer. Under the report's layout (`full-every=4`, KV sharing) this is
    /// `1/8 + 3/4 * window/seq`: 17.2% at window 4096 and 64K context, the report's 82.8% reduction.
    pub fn kv_cache_fraction(&self, seq: usize) -> f64 {
        let full = (2 * self.kv_heads * self.head_dim() * self.layers) as f64;
        self.kv_cache_bytes_per_token(seq, 1) / full
    }

    fn embedding_params(&self) -> u64 {
        (self.vocab * self.d_model) as u64
    }

    fn lm_head_params(&self) -> u64 {
        if self.tie_embeddings {
            0
        } else {
            (self.vocab * self.d_model) as u64
        }
    }

    fn norm_params(&self) -> u64 {
        ((2 * self.layers + 1) * self.d_model) as u64
    }

    /// Every parameter but the embedding: layers, final norm, output projection.
    fn body_params(&self, active_only: bool) -> u64 {
        let d = self.d_model as u64;
        let q = (self.heads * self.head_dim()) as u64;
        let kv = (self.kv_heads * self.head_dim()) as u64;
        let ffn = match &self.experts {
            None => 3 * d * self.ffn as u64,
            Some(e) => {
                let routed = if active_only {
                    self.routed_active()
                } else {
                    self.routed_experts()
                } as u64;
                let router = d * self.routed_experts() as u64;
                router
                    + routed * 3 * d * self.expert_hidden() as u64
                    + (e.shared * 3 * self.ffn) as u64 * d
            }
        };
        let layers: u64 = self
            .layer_specs()
            .iter()
            .map(|s| 2 * d * q + if s.owns_kv { 2 * d * kv } else { 0 } + ffn)
            .sum();
        layers + self.norm_params() + self.lm_head_params()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_canonical() {
        for name in Config::PRESETS {
            let config = Config::preset(name).unwrap();
            assert_eq!(config.problems(), vec![], "preset {name}");
            assert_eq!(config.clone().canonical(), config, "preset {name}");
        }
        assert_eq!(Config::preset("huge"), None);
    }

    #[test]
    fn dense_preset_has_about_110m_non_embedding_parameters() {
        let dense = Config::preset("dense-125m").unwrap();
        let non_embedding = dense.non_embedding_param_count();
        assert!(
            (105_000_000..115_000_000).contains(&non_embedding),
            "{non_embedding}"
        );
        assert_eq!(dense.param_count(), non_embedding + 2 * 32768 * 768);
        assert_eq!(dense.active_param_count(), dense.param_count());
    }

    #[test]
    fn moe_preset_activates_as_much_as_the_dense_one() {
        let dense = Config::preset("dense-125m").unwrap();
        let moe = Config::preset("moe-125m").unwrap();
        // Same active FFN width; the router's 768 x 32 weights per layer are all that differs.
        let router = 12 * 768 * 32;
        assert_eq!(
            moe.active_param_count(),
            dense.active_param_count() + router
        );
        assert!(
            moe.param_count() > 6 * dense.param_count() / 2,
            "{}",
            moe.param_count()
        );
        assert_eq!(moe.routed_experts(), 32);
        assert_eq!(moe.routed_active(), 4);
        assert_eq!(moe.expert_hidden(), 832);
    }

    #[test]
    fn layer_specs_follow_the_hybrid_layout_and_pair_full_layers() {
        let config = Config::preset("tiny").unwrap(); // 8 layers, window 16, full-every 4, kv-share
        let specs = config.layer_specs();
        let windows: Vec<Option<usize>> = specs.iter().map(|s| s.window).collect();
        assert_eq!(
            windows,
            [
                Some(16),
                Some(16),
                Some(16),
                None,
                Some(16),
                Some(16),
                Some(16),
                None
            ]
        );
        // Layers 3 and 7 are the full ones: 7 reuses 3's slot.
        assert_eq!(
            specs[3],
            LayerSpec {
                window: None,
                kv_slot: 3,
                owns_kv: true
            }
        );
        assert_eq!(
            specs[7],
            LayerSpec {
                window: None,
                kv_slot: 3,
                owns_kv: false
            }
        );
        assert_eq!(specs[4].kv_slot, 4);
        assert_eq!(specs.iter().filter(|s| s.owns_kv).count(), 7);

        let all_full = Config {
            attention: AttentionLayout::FULL,
            layers: 5,
            ..config.clone()
        };
        let slots: Vec<(usize, bool)> = all_full
            .layer_specs()
            .iter()
            .map(|s| (s.kv_slot, s.owns_kv))
            .collect();
        assert_eq!(
            slots,
            [(0, true), (0, false), (1, true), (1, false), (2, true)]
        );

        let unshared = Config {
            kv_share: false,
            ..config
        };
        assert!(
            unshared
                .layer_specs()
                .iter()
                .enumerate()
                .all(|(i, s)| s.owns_kv && s.kv_slot == i)
        );
    }

    #[test]
    fn kv_cache_fraction_matches_the_report() {
        // The report's layout at its scale: 82.8% less KV cache at window 4096 and 64K context.
        let report = Config {
            layers: 32,
            attention: AttentionLayout {
                window: Some(4096),
                full_every: 4,
            },
            kv_share: true,
            ..Config::preset("dense-125m").unwrap()
        };
        let fraction = report.kv_cache_fraction(65_536);
        assert!(
            (fraction - (1.0 / 8.0 + 0.75 * 4096.0 / 65_536.0)).abs() < 1e-12,
            "{fraction}"
        );
        assert_eq!(format!("{:.1}%", 100.0 * (1.0 - fraction)), "82.8%");
        // Without sharing the full layers keep their own caches: 1/4 instead of 1/8.
        let unshared = Config {
            kv_share: false,
            ..report.clone()
        };
        assert!((unshared.kv_cache_fraction(65_536) - (0.25 + 0.75 / 16.0)).abs() < 1e-12);
        // Shorter than the window, sliding layers hold everything: only the sharing saves.
        assert!((report.kv_cache_fraction(1024) - (1.0 / 8.0 + 0.75)).abs() < 1e-12);
        // Bytes: 2 (K and V) x kv-heads 4 x head 64 x 2 bytes (bf16) per layer and position.
        let full_bytes = report.layers as f64 * 2.0 * 4.0 * 64.0 * 2.0;
        assert!((report.kv_cache_bytes_per_token(65_536, 2) - fraction * full_bytes).abs() < 1e-6);
    }

    #[test]
    fn validation_names_the_setting_at_fault() {
        let tiny = Config::preset("tiny").unwrap();
        let bad = Config {
            heads: 3,
            kv_heads: 2,
            ffn: 129,
            experts: Some(Experts {
                count: 4,
                active: 5,
                segments: 2,
                shared: 0,
            }),
            attention: AttentionLayout {
                window: Some(16),
                full_every: 3,
            },
            norm_eps: 0.0,
            ..tiny
        };
        let fields: Vec<&str> = bad.problems().iter().map(ConfigError::field).collect();
        assert_eq!(
            fields,
            [
                "heads",
                "kv-heads",
                "active",
                "ffn",
                "attention",
                "norm-eps"
            ]
        );
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "d-model 64 is not divisible by heads 3"
        );
        let odd = Config {
            heads: 64,
            kv_heads: 64,
            ..Config::preset("tiny").unwrap()
        };
        assert_eq!(odd.validate(), Err(ConfigError::OddHeadDim { head_dim: 1 }));
    }

    #[test]
    fn default_ffn_is_eight_thirds_rounded_up() {
        assert_eq!(Config::default_ffn(768), 2048);
        assert_eq!(Config::default_ffn(256), 704);
        assert_eq!(Config::default_ffn(64), 192);
    }

    #[test]
    fn serialises_round_trip_with_recipe_names() {
        let tiny = Config::preset("tiny").unwrap();
        let json = serde_json::to_value(&tiny).unwrap();
        assert_eq!(json["d-model"], 64);
        assert_eq!(json["attention"]["full-every"], 4);
        assert_eq!(json["experts"]["segments"], 2);
        let back: Config = serde_json::from_value(json).unwrap();
        assert_eq!(back, tiny);
    }

    #[test]
    fn train_flops_count_attention_by_context() {
        let dense = Config::preset("dense-125m").unwrap();
        let matmul = 6.0 * (dense.non_embedding_param_count() + 32768 * 768 - 25 * 768) as f64;
        let attention = 12.0 * 12.0 * 768.0 * 1024.0;
        assert!((dense.train_flops_per_token(1024) - matmul - attention).abs() < 1.0);
    }
}
