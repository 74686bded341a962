//! One transformer layer, pre-norm: `h = x + attention(norm(x))`, `out = h + ffn(norm(h))`. Its
//! attention is sliding-window or full as [`Config::layer_specs`] lays out the report's hybrid
//! blocks (§2: with `full-every=4`, three sliding-window layers and then one full layer), and its
//! feed-forward network is dense or MoE.

use tch::{Tensor, nn};

use super::attention::{Attention, Kv, SequenceContext};
use super::config::{Config, LayerSpec};
use super::kv_cache::CacheSlot;
use super::mlp::Mlp;
use super::moe::{ExpertKernel, Moe, Routing};
use super::rms_norm::RmsNorm;

/// The feed-forward half of a layer.
#[derive(Debug)]
pub enum Ffn {
    Dense(Mlp),
    Moe(Moe),
}

/// One layer.
#[derive(Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    ffn: Ffn,
}

impl Block {
    /// Weights at `p / "attn_norm"`, `p / "attn"`, `p / "ffn_norm"` and `p / "ffn"`.
    pub fn new(p: &nn::Path, config: &Config, spec: LayerSpec, std: f64, out_std: f64) -> Self {
        let d = config.d_model as i64;
        let ffn = if config.experts.is_some() {
            Ffn::Moe(Moe::new(&(p / "ffn"), config, std, out_std))
        } else {
            Ffn::Dense(Mlp::new(&(p / "ffn"), d, config.ffn as i64, std, out_std))
        };
        Self {
            attn_norm: RmsNorm::new(&(p / "attn_norm"), d, config.norm_eps),
            attn: Attention::new(&(p / "attn"), config, spec, std, out_std),
            ffn_norm: RmsNorm::new(&(p / "ffn_norm"), d, config.norm_eps),
            ffn,
        }
    }

    /// Training forward; `shared` is the layer's KV slot for this pass (see [`Attention::forward`]).
    pub fn forward(
        &self,
        x: &Tensor,
        cx: &SequenceContext,
        shared: &mut Option<Kv>,
    ) -> (Tensor, Option<Routing>) {
        let h = x + self.attn.forward(&x.apply(&self.attn_norm), cx, shared);
        let (ffn, routing) = self.feed_forward(&h.apply(&self.ffn_norm));
        (h + ffn, routing)
    }

    /// Decoding forward of positions `start..` against the layer's cache slot.
    pub fn forward_step(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        slot: &mut CacheSlot,
        start: i64,
    ) -> Tensor {
        let h = x + self
            .attn
            .forward_step(&x.apply(&self.attn_norm), cos, sin, slot, start);
        let ffn = self.feed_forward(&h.apply(&self.ffn_norm)).0;
        h + ffn
    }

    /// Chooses how a MoE layer's experts run (no effect on a dense layer).
    pub fn set_expert_kernel(&mut self, kernel: ExpertKernel) {
        if let Ffn::Moe(moe) = &mut self.ffn {
            moe.set_kernel(kernel);
        }
    }

    fn feed_forward(&self, x: &Tensor) -> (Tensor, Option<Routing>) {
        match &self.ffn {
            Ffn::Dense(mlp) => (x.apply(mlp), None),
            Ffn::Moe(moe) => {
                let (y, routing) = moe.forward(x);
                (y, Some(routing))
            }
        }
    }
}
