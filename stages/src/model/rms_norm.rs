//! RMSNorm (Zhang & Sennrich, 2019): the pre-attention, pre-FFN and final normalisation of the
//! Yi models, which scale by the root mean square without centring.

use tch::{Tensor, nn};

/// `x / sqrt(mean(x^2) + eps) * weight` over the last dimension.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    dim: i64,
    eps: f64,
}

impl RmsNorm {
    /// A norm over `dim` features with its gain at `p / "weight"`, initialised to one.
    pub fn new(p: &nn::Path, dim: i64, eps: f64) -> Self {
        Self {
            weight: p.var("weight", &[dim], nn::Init::Const(1.0)),
            dim,
            eps,
        }
    }
}

impl nn::Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        // ATen's rms_norm accumulates half-precision inputs in f32 (and is one fused kernel on CUDA).
        x.rms_norm([self.dim], Some(&self.weight), self.eps)
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, nn::Module};

    use super::*;

    #[test]
    fn normalises_by_the_root_mean_square() {
        let vs = nn::VarStore::new(Device::Cpu);
        let norm = RmsNorm::new(&vs.root(), 8, 1e-6);
        let x = Tensor::randn([3, 5, 8], (Kind::Float, Device::Cpu)) * 7.0 + 1.0;
        let expected = &x / (x.square().mean_dim(-1, true, Kind::Float) + 1e-6).sqrt();
        assert!(norm.forward(&x).allclose(&expected, 1e-5, 1e-5, false));
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert_eq!(names, ["weight"]);
    }
}
