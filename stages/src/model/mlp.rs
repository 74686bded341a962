//! The SwiGLU feed-forward network (Shazeer, 2020) of the dense layers, and of the MoE's shared
//! experts: `down(silu(gate(x)) * up(x))`, with the gate and up projections as one matrix.

use tch::{Tensor, nn};

use super::fused::swiglu;

/// A SwiGLU FFN of hidden size `hidden`.
#[derive(Debug)]
pub struct Mlp {
    gate_up: nn::Linear,
    down: nn::Linear,
}

impl Mlp {
    /// Weights at `p / "gate_up"` (`[2 * hidden, d]`, gate rows first) and `p / "down"`
    /// (`[d, hidden]`, initialised with `out_std` as residual-branch outputs are).
    pub fn new(p: &nn::Path, d: i64, hidden: i64, std: f64, out_std: f64) -> Self {
        Self {
            gate_up: nn::linear(p / "gate_up", d, 2 * hidden, linear_init(std)),
            down: nn::linear(p / "down", hidden, d, linear_init(out_std)),
        }
    }
}

impl nn::Module for Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        swiglu(&x.apply(&self.gate_up)).apply(&self.down)
    }
}

/// A bias-free linear layer with normal(0, std) weights.
pub fn linear_init(std: f64) -> nn::LinearConfig {
    nn::LinearConfig {
        ws_init: nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        },
        bs_init: None,
        bias: false,
    }
}
