//! AdamW (Loshchilov & Hutter, 2019) over one flat buffer: the model's parameters and their
//! gradients are re-pointed at slices of two contiguous 1-D tensors, so one optimizer step is a
//! dozen element-wise kernels over all parameters at once, whatever their number, instead of a
//! dozen per parameter. tch 0.24 does not bind PyTorch's `_fused_adamw_` or `_foreach_*` kernels
//! (its generator skips them), and this gets most of their benefit with plain ATen ops.
//!
//! Mixed precision: the model keeps its dtype (bf16 on GPU); the optimizer holds f32 master
//! weights, f32 moments and f32 gradients (autograd adds each bf16 gradient into them in place, so
//! accumulation over micro-batches does not round to bf16 either), updates the master copy and
//! writes it back into the model's buffer.
//! Matrices (and the embedding) get weight decay; vectors (norm gains) do not.

use tch::{Kind, Tensor};
use thiserror::Error;

/// The optimizer's hyper-parameters (PyTorch's AdamW defaults but the learning rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Why the parameters cannot share one buffer.
#[derive(Debug, Error)]
pub enum FlatAdamWError {
    #[error("there are no trainable parameters to optimise")]
    NoParameters,
    #[error(
        "parameters must share one dtype and device to live in one buffer: found {first} and {other}"
    )]
    Mixed { first: String, other: String },
    #[error("cannot move the parameters into the flat buffer: {0}")]
    Torch(#[from] tch::TchError),
}

/// AdamW over all parameters of a model as one flat buffer.
#[derive(Debug)]
pub struct FlatAdamW {
    /// The model's variables, decayed ones first; their data are views of `flat_param`.
    params: Vec<Tensor>,
    /// Each parameter's `(offset, numel)` in the flat buffers.
    ranges: Vec<(i64, i64)>,
    /// The parameters' storage, in the model's dtype.
    flat_param: Tensor,
    /// The gradients' storage, f32.
    flat_grad: Tensor,
    master: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// The first `decayed` elements get weight decay.
    decayed: i64,
    /// The parameters' gradients are views of `flat_grad` (done after the first backward pass,
    /// which is when autograd creates them).
    grads_bound: bool,
    steps: i64,
    config: AdamWConfig,
}

impl FlatAdamW {
    /// Moves `vars` (a model's trainable variables) into one buffer and sets up the optimizer.
    /// The variables keep their shapes and values; only their storage changes.
    pub fn new(vars: Vec<Tensor>, config: AdamWConfig) -> Result<Self, FlatAdamWError> {
        let first = vars.first().ok_or(FlatAdamWError::NoParameters)?;
        let (kind, device) = (first.kind(), first.device());
        if let Some(other) = vars
            .iter()
            .find(|v| v.kind() != kind || v.device() != device)
        {
            return Err(FlatAdamWError::Mixed {
                first: format!("{kind:?} on {device:?}"),
                other: format!("{:?} on {:?}", other.kind(), other.device()),
            });
        }
        let mut params = vars;
        // Stable: matrices first, in the model's order, then vectors.
        params.sort_by_key(|v| v.dim() < 2);
        let decayed: i64 = params
            .iter()
            .filter(|v| v.dim() >= 2)
            .map(|v| v.numel() as i64)
            .sum();
        let total: i64 = params.iter().map(|v| v.numel() as i64).sum();
        let flat_param = Tensor::f_empty([total], (kind, device))?;
        let mut ranges = Vec::with_capacity(params.len());
        let mut offset = 0;
        tch::no_grad(|| -> Result<(), tch::TchError> {
            for var in &mut params {
                let numel = var.numel() as i64;
                let mut slice = flat_param
                    .f_narrow(0, offset, numel)?
                    .f_view(var.size().as_slice())?;
                slice.f_copy_(var)?;
                var.set_data(&slice);
                ranges.push((offset, numel));
                offset += numel;
            }
            Ok(())
        })?;
        let master = flat_param.f_to_kind(Kind::Float)?;
        Ok(Self {
            params,
            ranges,
            flat_grad: master.f_zeros_like()?,
            exp_avg: master.f_zeros_like()?,
            exp_avg_sq: master.f_zeros_like()?,
            flat_param,
            master,
            decayed,
            grads_bound: false,
            steps: 0,
            config,
        })
    }

    /// Number of optimised elements.
    pub fn numel(&self) -> i64 {
        self.flat_param.size()[0]
    }

    /// One AdamW step from the gradients the last backward pass left, then clears them.
    pub fn step(&mut self) {
        if !self.grads_bound {
            self.bind_grads();
        }
        self.steps += 1;
        let AdamWConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let bias1 = 1.0 - beta1.powi(self.steps as i32);
        let bias2 = 1.0 - beta2.powi(self.steps as i32);
        tch::no_grad(|| {
            let grad = &self.flat_grad;
            let _ = self.exp_avg.lerp_(grad, 1.0 - beta1);
            let _ = self.exp_avg_sq.lerp_(&grad.square(), 1.0 - beta2);
            if weight_decay > 0.0 && self.decayed > 0 {
                let _ = self
                    .master
                    .narrow(0, 0, self.decayed)
                    .g_mul_scalar_(1.0 - lr * weight_decay);
            }
            // lr / bias1 * m / (sqrt(v / bias2) + eps), with sqrt(bias2) moved out of the root so
            // that each factor is one pass: lr sqrt(bias2) / bias1 * m / (sqrt(v) + eps sqrt(bias2)).
            let mut denom = self.exp_avg_sq.sqrt();
            let _ = denom.g_add_scalar_(eps * bias2.sqrt());
            let update = &self.exp_avg * (-lr * bias2.sqrt() / bias1);
            let _ = self.master.addcdiv_(&update, &denom);
            self.flat_param.copy_(&self.master);
            let _ = self.flat_grad.zero_();
        });
    }

    /// Re-points every parameter's gradient at its (f32) slice of `flat_grad`, copying what the
    /// first backward pass produced; later passes accumulate into the slices in place (autograd
    /// adds a new gradient into one that exists, promoting bf16 to f32). A parameter the pass did
    /// not reach keeps a zero slice.
    fn bind_grads(&mut self) {
        tch::no_grad(|| {
            let _ = self.flat_grad.zero_();
            for (var, &(offset, numel)) in self.params.iter().zip(&self.ranges) {
                let mut grad = var.grad();
                if !grad.defined() {
                    continue;
                }
                let mut slice = self
                    .flat_grad
                    .narrow(0, offset, numel)
                    .view(var.size().as_slice());
                slice.copy_(&grad);
                grad.set_data(&slice);
            }
        });
        self.grads_bound = true;
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, nn, nn::Module};

    use super::*;

    /// PyTorch's AdamW for one parameter, step by step, in f64.
    struct Reference {
        param: Tensor,
        m: Tensor,
        v: Tensor,
        decay: bool,
    }

    impl Reference {
        fn step(&mut self, grad: &Tensor, step: i32, c: AdamWConfig) {
            let g = grad.to_kind(Kind::Double);
            if self.decay {
                self.param = &self.param * (1.0 - c.lr * c.weight_decay);
            }
            self.m = &self.m * c.beta1 + &g * (1.0 - c.beta1);
            self.v = &self.v * c.beta2 + g.square() * (1.0 - c.beta2);
            let m_hat = &self.m / (1.0 - c.beta1.powi(step));
            let v_hat = &self.v / (1.0 - c.beta2.powi(step));
            self.param = &self.param - m_hat / (v_hat.sqrt() + c.eps) * c.lr;
        }
    }

    #[test]
    fn matches_adamw_step_by_step_and_updates_the_model_in_place() {
        // f32: the model holds the master weights exactly.
        check_against_reference(Kind::Float, 1e-5);
        // bf16: the model holds the master weights rounded to bf16's 8 bits.
        check_against_reference(Kind::BFloat16, 1.0 / 256.0);
    }

    fn check_against_reference(kind: Kind, tolerance: f64) {
        tch::manual_seed(11);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        // A vector first, so the sort into decayed and undecayed parameters really moves it.
        let gain = root.var("gain", &[6], nn::Init::Const(1.0));
        let linear = nn::linear(&root / "linear", 6, 4, nn::LinearConfig::default());
        if kind == Kind::BFloat16 {
            vs.bfloat16();
        }
        let vars = vs.trainable_variables();
        let mut refs: Vec<Reference> = vars
            .iter()
            .map(|v| Reference {
                param: v.to_kind(Kind::Double),
                m: v.zeros_like().to_kind(Kind::Double),
                v: v.zeros_like().to_kind(Kind::Double),
                decay: v.dim() >= 2,
            })
            .collect();
        let config = AdamWConfig {
            lr: 0.05,
            weight_decay: 0.1,
            ..AdamWConfig::default()
        };
        let mut opt =
            FlatAdamW::new(vars.iter().map(Tensor::shallow_clone).collect(), config).unwrap();
        assert_eq!(opt.numel(), 6 + 4 * 6 + 4);
        let x = Tensor::randn([8, 6], (kind, Device::Cpu));
        let target = Tensor::randn([8, 4], (kind, Device::Cpu));
        let mut losses = Vec::new();
        for step in 1..=4 {
            let loss = (linear.forward(&(&x * &gain)) - &target)
                .square()
                .mean(kind);
            losses.push(loss.double_value(&[]));
            loss.backward();
            for (var, reference) in vars.iter().zip(&mut refs) {
                reference.step(&var.grad(), step, config);
            }
            opt.step();
            for (var, reference) in vars.iter().zip(&refs) {
                assert_eq!(var.kind(), kind);
                let diff = (var.to_kind(Kind::Double) - &reference.param)
                    .abs()
                    .max()
                    .double_value(&[]);
                let scale = reference.param.abs().max().double_value(&[]);
                assert!(
                    diff <= tolerance * scale,
                    "{kind:?} step {step}: differs by {diff} (scale {scale})"
                );
                // Cleared for the next pass.
                assert!(var.grad().abs().sum(Kind::Float).double_value(&[]) < f64::MIN_POSITIVE);
            }
        }
        assert!(losses[3] < losses[0], "{losses:?}");
        // The gradients accumulate into the flat buffer, not into tensors of their own.
        let (start, end) = (
            opt.flat_grad.data_ptr() as usize,
            opt.flat_grad.data_ptr() as usize + 4 * opt.numel() as usize,
        );
        for var in &vars {
            let at = var.grad().data_ptr() as usize;
            assert!((start..end).contains(&at));
        }
    }

    #[test]
    fn refuses_what_cannot_share_a_buffer() {
        assert!(matches!(
            FlatAdamW::new(Vec::new(), AdamWConfig::default()),
            Err(FlatAdamWError::NoParameters)
        ));
        let a = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::zeros([2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let err = FlatAdamW::new(vec![a, b], AdamWConfig::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameters must share one dtype and device to live in one buffer: found Float on Cpu and Double on Cpu"
        );
    }
}
