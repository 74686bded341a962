//! `AdamW` (Loshchilov & Hutter 2019, decoupled weight decay) over one flat buffer: the model's
//! variables and their gradients are re-pointed at views of contiguous 1-D tensors, so a step is a
//! few kernels over every parameter at once instead of a few per parameter (a model has a hundred
//! tensors or more, and on a GPU each kernel launch costs more than the arithmetic). The update itself is PyTorch's fused `AdamW` kernel (`_fused_adamw_`, which tch
//! 0.24 does not bind; `fused_adamw.rs` calls it through a small C++ shim): one pass over the
//! buffers per weight-decay group. Where that kernel refuses the buffers (a device PyTorch has no
//! fused kernel for), the same update runs as plain ATen ops, eight passes instead of one. Each
//! variable's part of the buffers is still reachable by name, so checkpoints snapshot and restore
//! the state bit for bit under the names a per-variable optimizer would use.
//!
//! Weight-decay groups: matrices decay (attention and FFN projections, every expert, the router and
//! the output projection); vectors never do (RMSNorm gains, biases), nor does the token embedding,
//! whose rows a step only touches for the tokens it saw and which decay would shrink towards zero
//! between visits (the choice of GPT-NeoX and `OLMo`). The decayed variables come first in the
//! buffers, so decay is one kernel over a prefix.
//!
//! Mixed precision: the variables keep their dtype (bf16 on GPU) and get f32 master weights that
//! the update is applied to and then copied back; with f32 variables (CPU) the variables' buffer is
//! its own master. Gradients are always f32 views of one buffer: autograd adds each micro-batch's
//! gradient into the existing one in place (promoting bf16 to f32), so accumulation never rounds
//! to bf16. Every variable always has a gradient (zero when a backward pass did not reach it), as
//! with PyTorch's `zero_grad(set_to_none=False)`.

use tch::{Kind, Tensor};
use thiserror::Error;

use super::fused_adamw::fused_adamw;
use super::params::AdamWParams;

/// Every variable starts at a multiple of this many elements (128 bytes in bf16): the start
/// alignment vectorised kernels and grouped GEMMs (`_grouped_mm` wants 16-byte aligned operands)
/// expect of a tensor. The gaps stay zero in every buffer, so they change neither the update nor
/// the gradient norm.
const ALIGN: i64 = 64;

/// Why the variables cannot share one buffer.
#[derive(Debug, Error)]
pub enum AdamWError {
    #[error("there are no variables to optimise")]
    NoVariables,
    #[error(
        "variables must share one dtype and device to live in one buffer: `{first}` is {first_is}, `{other}` is {other_is}"
    )]
    Mixed {
        first: String,
        first_is: String,
        other: String,
        other_is: String,
    },
    #[error("cannot move the variables into the flat buffer: {0}")]
    Torch(#[from] tch::TchError),
}

/// One variable's place in the flat buffers.
struct Slot {
    name: String,
    var: Tensor,
    offset: i64,
}

impl Slot {
    /// This variable's part of `flat` (any of the buffers), in its shape.
    fn view(&self, flat: &Tensor) -> Tensor {
        flat.narrow(0, self.offset, self.var.numel() as i64)
            .view(self.var.size().as_slice())
    }
}

/// `AdamW` over a fixed set of named variables that share one dtype and device.
pub struct AdamW {
    /// Decayed variables first; within each group, in the order given.
    slots: Vec<Slot>,
    /// The variables' storage, in their dtype.
    params: Tensor,
    /// f32 weights when the variables are not f32 (otherwise `params` is the master).
    master: Option<Tensor>,
    /// The gradients' storage, f32.
    grads: Tensor,
    m: Tensor,
    v: Tensor,
    /// The first `decayed` elements get weight decay.
    decayed: i64,
    /// Elements of the variables, without the alignment gaps.
    numel: i64,
    hp: AdamWParams,
    /// The update's number, on the device, for the fused kernel's bias correction.
    step_number: Tensor,
    /// False once the fused kernel refused the buffers: later steps use the ATen ops.
    fused: bool,
}

/// True when a variable belongs to the decayed group (see the module docs).
pub fn decays(name: &str, dims: usize) -> bool {
    dims >= 2 && !name.starts_with("embed.")
}

fn describe(t: &Tensor) -> String {
    format!("{:?} on {:?}", t.kind(), t.device())
}

impl AdamW {
    /// Moves `vars` (name, variable: the variables to train) into the flat buffers and gives each
    /// a gradient bound to the gradient buffer (keeping what one already held). The variables keep
    /// their shapes and values; only their storage changes, so the modules holding them train on.
    pub fn new(vars: Vec<(String, Tensor)>, hp: AdamWParams) -> Result<Self, AdamWError> {
        let (first_name, first) = vars.first().ok_or(AdamWError::NoVariables)?;
        let (kind, device) = (first.kind(), first.device());
        if let Some((name, var)) = vars
            .iter()
            .find(|(_, v)| v.kind() != kind || v.device() != device)
        {
            return Err(AdamWError::Mixed {
                first: first_name.clone(),
                first_is: describe(first),
                other: name.clone(),
                other_is: describe(var),
            });
        }
        let mut vars = vars;
        // Stable: the order given survives within each group.
        vars.sort_by_key(|(name, var)| !decays(name, var.dim()));
        let mut slots = Vec::with_capacity(vars.len());
        let (mut offset, mut decayed, mut numel) = (0, 0, 0);
        for (name, var) in vars {
            let n = var.numel() as i64;
            if decays(&name, var.dim()) {
                decayed = offset + n;
            }
            numel += n;
            slots.push(Slot { name, var, offset });
            offset = (offset + n + ALIGN - 1) / ALIGN * ALIGN;
        }
        let params = Tensor::f_zeros([offset], (kind, device))?;
        let grads = Tensor::f_zeros([offset], (Kind::Float, device))?;
        create_grads(&slots)?;
        tch::no_grad(|| -> Result<(), AdamWError> {
            for s in &mut slots {
                let mut slice = s.view(&params);
                slice.f_copy_(&s.var)?;
                s.var.f_set_data(&slice)?;
                let mut grad = s.var.f_grad()?;
                if grad.defined() {
                    let mut slice = s.view(&grads);
                    slice.f_copy_(&grad)?;
                    grad.f_set_data(&slice)?;
                }
            }
            Ok(())
        })?;
        let master = if kind == Kind::Float {
            None
        } else {
            Some(params.f_to_kind(Kind::Float)?)
        };
        Ok(Self {
            slots,
            m: grads.f_zeros_like()?,
            v: grads.f_zeros_like()?,
            params,
            master,
            grads,
            step_number: Tensor::f_zeros([0i64; 0], (Kind::Float, device))?,
            decayed,
            numel,
            hp,
            fused: true,
        })
    }

    /// Number of optimised elements (the variables' sizes summed).
    pub fn numel(&self) -> i64 {
        self.numel
    }

    /// Names of the variables in the decayed group.
    pub fn decayed(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| s.offset < self.decayed)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// The f32 weights: the master copy, or the variables' own buffer when they are f32.
    fn weights_f32(&self) -> &Tensor {
        self.master.as_ref().unwrap_or(&self.params)
    }

    /// The global L2 norm of the gradients; scales them down to `max` when above it (`max` 0: never).
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        tch::no_grad(|| {
            let total = self.grads.norm().double_value(&[]);
            if max > 0.0 && total > max && total.is_finite() {
                let _ = self.grads.g_mul_scalar_(max / (total + 1e-6));
            }
            total
        })
    }

    /// One update at learning rate `lr`; `step` counts updates from 1 (bias correction).
    pub fn step(&mut self, lr: f64, step: u64) {
        tch::no_grad(|| {
            if self.fused {
                match self.fused_step(lr, step) {
                    Ok(()) => {}
                    Err(reason) => {
                        tracing::warn!(
                            %reason,
                            "PyTorch's fused AdamW kernel refused the buffers; updating with ATen ops"
                        );
                        self.fused = false;
                        self.composite_step(lr, step);
                    }
                }
            } else {
                self.composite_step(lr, step);
            }
            if let Some(master) = &self.master {
                self.params.copy_(master);
            }
        });
    }

    /// The update with PyTorch's fused kernel: one call per weight-decay group. The kernel checks
    /// the device and dtype before it writes, and both groups share them, so an `Err` (from the
    /// first call) leaves the state as it was; a later group failing after an earlier one was
    /// updated would be a bug, and panics like any other failing tensor op here.
    fn fused_step(&mut self, lr: f64, step: u64) -> Result<(), String> {
        let _ = self.step_number.fill_(step as f64);
        let w = self.weights_f32();
        let len = w.size()[0];
        let groups = [
            (0, self.decayed, self.hp.weight_decay),
            (self.decayed, len, 0.0),
        ];
        let mut updated = false;
        for (start, end, decay) in groups {
            if end > start {
                let part = |t: &Tensor| t.narrow(0, start, end - start);
                let done = fused_adamw(
                    &part(w),
                    &part(&self.grads),
                    &part(&self.m),
                    &part(&self.v),
                    &self.step_number,
                    lr,
                    &self.hp,
                    decay,
                );
                match done {
                    Err(reason) if updated => {
                        panic!("the fused AdamW kernel failed on the second group only: {reason}")
                    }
                    done => done?,
                }
                updated = true;
            }
        }
        Ok(())
    }

    /// The same update as separate ATen ops (no fused kernel for this device).
    fn composite_step(&mut self, lr: f64, step: u64) {
        let AdamWParams {
            beta1,
            beta2,
            weight_decay,
            eps,
        } = self.hp;
        let bc1 = 1.0 - beta1.powi(step as i32);
        let bc2 = 1.0 - beta2.powi(step as i32);
        let g = &self.grads;
        let _ = self.m.lerp_(g, 1.0 - beta1);
        let _ = self.v.lerp_(&g.square(), 1.0 - beta2);
        let mut w = self.weights_f32().shallow_clone();
        if weight_decay > 0.0 && self.decayed > 0 {
            let _ = w
                .narrow(0, 0, self.decayed)
                .g_mul_scalar_(1.0 - lr * weight_decay);
        }
        // lr / bc1 * m / (sqrt(v / bc2) + eps), with sqrt(bc2) moved out of the root so that
        // each factor is one pass: lr sqrt(bc2) / bc1 * m / (sqrt(v) + eps sqrt(bc2)).
        let mut denom = self.v.sqrt();
        let _ = denom.g_add_scalar_(eps * bc2.sqrt());
        let update = &self.m * (-lr * bc2.sqrt() / bc1);
        let _ = w.addcdiv_(&update, &denom);
    }

    /// Clears every gradient (one kernel over the gradient buffer; the bindings stay).
    pub fn zero_grad(&mut self) {
        let _ = self.grads.zero_();
    }

    /// The state to checkpoint, by name: `model.NAME` (f32 weights), `adamw.m.NAME`, `adamw.v.NAME`.
    /// They are views into the buffers, which later steps update: copy them to keep a snapshot.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let w = self.weights_f32();
        let mut out = Vec::with_capacity(3 * self.slots.len());
        for s in &self.slots {
            out.push((format!("model.{}", s.name), s.view(w)));
            out.push((format!("adamw.m.{}", s.name), s.view(&self.m)));
            out.push((format!("adamw.v.{}", s.name), s.view(&self.v)));
        }
        out
    }

    /// The f32 weights by their module-tree names (for `model.safetensors`); views into the buffer.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        let w = self.weights_f32();
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.view(w)))
            .collect()
    }

    /// Restores what [`AdamW::state`] gave, looking each tensor up with `get`.
    pub fn restore(&mut self, mut get: impl FnMut(&str) -> Option<Tensor>) -> Result<(), String> {
        let mut fetch = |key: String| get(&key).ok_or(format!("the checkpoint has no `{key}`"));
        tch::no_grad(|| {
            let w = self.weights_f32();
            for s in &self.slots {
                let saved = [
                    (fetch(format!("model.{}", s.name))?, w),
                    (fetch(format!("adamw.m.{}", s.name))?, &self.m),
                    (fetch(format!("adamw.v.{}", s.name))?, &self.v),
                ];
                for (src, flat) in saved {
                    if src.size() != s.var.size() {
                        return Err(format!(
                            "`{}` has shape {:?} in the checkpoint but {:?} in the model",
                            s.name,
                            src.size(),
                            s.var.size()
                        ));
                    }
                    s.view(flat).copy_(&src);
                }
            }
            if let Some(master) = &self.master {
                self.params.copy_(master);
            }
            Ok(())
        })
    }
}

/// Makes autograd create a gradient for every variable that requires one and has none yet (a
/// backward pass through zero times each), so that they can be bound to the gradient buffer
/// before the first real backward pass; tch has no way to set a variable's gradient directly.
fn create_grads(slots: &[Slot]) -> Result<(), tch::TchError> {
    let missing: Vec<Tensor> = slots
        .iter()
        .filter(|s| s.var.requires_grad() && !s.var.grad().defined())
        .map(|s| s.var.sum(Kind::Float) * 0.0)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    tch::with_grad(|| {
        Tensor::f_stack(&missing, 0)?
            .f_sum(Kind::Float)?
            .f_backward()
    })
}

#[cfg(test)]
mod tests {
    use tch::{Device, nn, nn::Module};

    use super::*;

    #[test]
    fn norms_biases_and_embeddings_do_not_decay() {
        assert!(decays("layers.0.attn.qkv.weight", 2));
        assert!(decays("layers.0.ffn.experts.gate_up", 3));
        assert!(decays("lm_head.weight", 2));
        assert!(!decays("embed.weight", 2));
        assert!(!decays("layers.0.attn_norm.weight", 1));
        assert!(!decays("norm.weight", 1));
    }

    /// One step against the formula, with and without decay.
    #[test]
    fn a_step_follows_the_adamw_update() {
        let w = Tensor::from_slice(&[1.0f32, -2.0])
            .view([1, 2])
            .set_requires_grad(true);
        let b = Tensor::from_slice(&[0.5f32]).set_requires_grad(true);
        let hp = AdamWParams {
            beta1: 0.9,
            beta2: 0.95,
            weight_decay: 0.1,
            eps: 1e-8,
        };
        let mut opt = AdamW::new(
            vec![
                ("b".to_owned(), b.shallow_clone()),
                ("w".to_owned(), w.shallow_clone()),
            ],
            hp,
        )
        .unwrap();
        assert_eq!(opt.decayed(), ["w"]);
        // loss = sum(w * [3, 4]) + 2b: gradients [3, 4] and 2.
        let loss =
            (&w * Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2])).sum(Kind::Float) + &b * 2.0;
        loss.sum(Kind::Float).backward();
        let norm = opt.clip_grad_norm(0.0);
        assert!((norm - (9.0f64 + 16.0 + 4.0).sqrt()).abs() < 1e-5);
        opt.step(0.01, 1);
        // First step: m/bc1 = g, v/bc2 = g^2, so the update is lr * sign(g) (plus decay).
        let got: Vec<f32> = Vec::try_from(w.view([-1])).unwrap();
        assert!(
            (f64::from(got[0]) - (1.0 * (1.0 - 0.001) - 0.01)).abs() < 1e-6,
            "{got:?}"
        );
        assert!(
            (f64::from(got[1]) - (-2.0 * (1.0 - 0.001) - 0.01)).abs() < 1e-6,
            "{got:?}"
        );
        let got_b = b.double_value(&[0]);
        assert!(
            (got_b - (0.5 - 0.01)).abs() < 1e-6,
            "no decay on a vector: {got_b}"
        );
    }

    #[test]
    fn clipping_scales_the_gradients_to_the_limit() {
        let w = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![("w".to_owned(), w.shallow_clone())],
            AdamWParams::default(),
        )
        .unwrap();
        (&w * Tensor::from_slice(&[30.0f32, 40.0]))
            .sum(Kind::Float)
            .backward();
        assert!((opt.clip_grad_norm(1.0) - 50.0).abs() < 1e-4);
        let g: Vec<f32> = Vec::try_from(w.grad()).unwrap();
        assert!(
            (g[0] - 0.6).abs() < 1e-4 && (g[1] - 0.8).abs() < 1e-4,
            "{g:?}"
        );
    }

    /// The fused kernel and the ATen ops are the same update: five steps from the same state and
    /// gradients, across both weight-decay groups, agree to f32 rounding; and the fused path is the
    /// one taken on the CPU (a refusal would have switched it off).
    #[test]
    fn the_fused_kernel_and_the_aten_ops_agree() {
        let hp = AdamWParams {
            beta1: 0.9,
            beta2: 0.95,
            weight_decay: 0.1,
            eps: 1e-8,
        };
        // Drawn once: tests run in parallel and share the global generator, so reseeding inside
        // `run` would not give both runs the same numbers.
        tch::manual_seed(5);
        let start_w = Tensor::randn([7, 5], (Kind::Float, Device::Cpu));
        let start_b = Tensor::randn([5], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([3, 7], (Kind::Float, Device::Cpu));
        let run = |fused: bool| -> (Vec<f32>, bool) {
            let w = start_w.copy().set_requires_grad(true);
            let b = start_b.copy().set_requires_grad(true);
            let mut opt = AdamW::new(
                vec![
                    ("b".to_owned(), b.shallow_clone()),
                    ("w".to_owned(), w.shallow_clone()),
                ],
                hp.clone(),
            )
            .unwrap();
            opt.fused = fused;
            for step in 1..=5 {
                opt.zero_grad();
                (x.matmul(&w) + &b).square().sum(Kind::Float).backward();
                opt.step(0.05, step);
            }
            let flat = Tensor::cat(&[w.detach().view([-1]), b.detach()], 0);
            (Vec::try_from(flat).unwrap(), opt.fused)
        };
        let ((fused, still_fused), (composite, _)) = (run(true), run(false));
        assert!(still_fused, "the fused kernel refused CPU f32 buffers");
        for (i, (a, c)) in fused.iter().zip(&composite).enumerate() {
            assert!(
                (a - c).abs() <= 1e-5 * c.abs().max(1.0),
                "element {i}: fused {a}, ATen ops {c}"
            );
        }
    }

    /// `AdamW` for one variable, step by step, in f64, written the way the paper states it.
    struct Reference {
        param: Tensor,
        m: Tensor,
        v: Tensor,
        decay: bool,
    }

    impl Reference {
        fn step(&mut self, grad: &Tensor, step: i32, lr: f64, hp: &AdamWParams) {
            let g = grad.to_kind(Kind::Double);
            if self.decay {
                self.param = &self.param * (1.0 - lr * hp.weight_decay);
            }
            self.m = &self.m * hp.beta1 + &g * (1.0 - hp.beta1);
            self.v = &self.v * hp.beta2 + g.square() * (1.0 - hp.beta2);
            let m_hat = &self.m / (1.0 - hp.beta1.powi(step));
            let v_hat = &self.v / (1.0 - hp.beta2.powi(step));
            self.param = &self.param - m_hat / (v_hat.sqrt() + hp.eps) * lr;
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
        // A vector first, so the sort into decayed and undecayed variables really moves it.
        let gain = root.var("gain", &[6], nn::Init::Const(1.0));
        let linear = nn::linear(&root / "linear", 6, 4, nn::LinearConfig::default());
        if kind == Kind::BFloat16 {
            vs.bfloat16();
        }
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut refs: Vec<Reference> = vars
            .iter()
            .map(|(name, v)| Reference {
                param: v.to_kind(Kind::Double),
                m: v.zeros_like().to_kind(Kind::Double),
                v: v.zeros_like().to_kind(Kind::Double),
                decay: decays(name, v.dim()),
            })
            .collect();
        let hp = AdamWParams {
            beta2: 0.999,
            ..AdamWParams::default()
        };
        let lr = 0.05;
        let mut opt = AdamW::new(
            vars.iter()
                .map(|(n, v)| (n.clone(), v.shallow_clone()))
                .collect(),
            hp.clone(),
        )
        .unwrap();
        assert_eq!(opt.numel(), 6 + 4 * 6 + 4);
        assert_eq!(opt.decayed(), ["linear.weight"]);
        let x = Tensor::randn([8, 6], (kind, Device::Cpu));
        let target = Tensor::randn([8, 4], (kind, Device::Cpu));
        let mut losses = Vec::new();
        for step in 1..=4 {
            // Two micro-batches of four rows, their gradients summed.
            for rows in [0, 4] {
                let half = x.narrow(0, rows, 4);
                let loss = (linear.forward(&(&half * &gain)) - target.narrow(0, rows, 4))
                    .square()
                    .mean(kind)
                    * 0.5;
                losses.push(loss.double_value(&[]));
                loss.backward();
            }
            for ((_, var), reference) in vars.iter().zip(&mut refs) {
                assert_eq!(var.grad().kind(), Kind::Float, "f32 gradients");
                reference.step(&var.grad(), step, lr, &hp);
            }
            opt.step(lr, step as u64);
            opt.zero_grad();
            for ((name, var), reference) in vars.iter().zip(&refs) {
                assert_eq!(var.kind(), kind);
                let diff = (var.to_kind(Kind::Double) - &reference.param)
                    .abs()
                    .max()
                    .double_value(&[]);
                let scale = reference.param.abs().max().double_value(&[]);
                assert!(
                    diff <= tolerance * scale,
                    "{kind:?} step {step} `{name}`: differs by {diff} (scale {scale})"
                );
                // Cleared for the next pass.
                assert!(var.grad().abs().sum(Kind::Float).double_value(&[]) < f64::MIN_POSITIVE);
            }
        }
        assert!(losses[6] + losses[7] < losses[0] + losses[1], "{losses:?}");
        // The gradients accumulate into the flat buffer, not into tensors of their own.
        let start = opt.grads.data_ptr() as usize;
        let end = start + 4 * opt.grads.numel();
        for (_, var) in &vars {
            let at = var.grad().data_ptr() as usize;
            assert!((start..end).contains(&at));
        }
    }

    /// Restoring a snapshot of [`AdamW::state`] taken after two steps, then redoing the third step,
    /// gives the third step's weights bit for bit, in the model and in the master copy.
    #[test]
    fn restoring_a_snapshot_replays_the_next_step_exactly() {
        for kind in [Kind::Float, Kind::BFloat16] {
            tch::manual_seed(5);
            let w = Tensor::randn([3, 4], (kind, Device::Cpu)).set_requires_grad(true);
            let b = Tensor::randn([4], (kind, Device::Cpu)).set_requires_grad(true);
            let vars = vec![
                ("b".to_owned(), b.shallow_clone()),
                ("w".to_owned(), w.shallow_clone()),
            ];
            let mut opt = AdamW::new(vars, AdamWParams::default()).unwrap();
            let x = Tensor::randn([5, 3], (kind, Device::Cpu));
            let step = |opt: &mut AdamW, n: u64| {
                (x.matmul(&w) + &b).square().sum(Kind::Float).backward();
                opt.clip_grad_norm(1.0);
                opt.step(1e-2, n);
                opt.zero_grad();
            };
            step(&mut opt, 1);
            step(&mut opt, 2);
            let snapshot: Vec<(String, Tensor)> = opt
                .state()
                .into_iter()
                .map(|(n, t)| (n, t.copy()))
                .collect();
            let names: Vec<&str> = snapshot.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "model.w",
                    "adamw.m.w",
                    "adamw.v.w",
                    "model.b",
                    "adamw.m.b",
                    "adamw.v.b"
                ]
            );
            assert_eq!(snapshot[0].1.kind(), Kind::Float, "f32 weights saved");
            step(&mut opt, 3);
            let after: Vec<Tensor> = [&w, &b].iter().map(|t| t.copy()).collect();
            let master: Vec<Tensor> = opt.weights().into_iter().map(|(_, t)| t.copy()).collect();
            let get = |k: &str| snapshot.iter().find(|(n, _)| n == k).map(|(_, t)| t.copy());
            opt.restore(get).unwrap();
            assert!(
                w.equal(&snapshot[0].1.to_kind(kind)),
                "the model gets the weights back"
            );
            step(&mut opt, 3);
            assert!(w.equal(&after[0]) && b.equal(&after[1]), "{kind:?}");
            for ((_, now), then) in opt.weights().iter().zip(&master) {
                assert!(now.equal(then), "{kind:?}");
            }
            assert!(
                opt.restore(|_| None)
                    .unwrap_err()
                    .contains("the checkpoint has no `model.w`")
            );
        }
    }

    #[test]
    fn refuses_what_cannot_share_a_buffer() {
        assert!(matches!(
            AdamW::new(Vec::new(), AdamWParams::default()),
            Err(AdamWError::NoVariables)
        ));
        let a = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::zeros([2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let err = AdamW::new(
            vec![("a".to_owned(), a), ("b".to_owned(), b)],
            AdamWParams::default(),
        )
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "variables must share one dtype and device to live in one buffer: `a` is Float on Cpu, `b` is Double on Cpu"
        );
    }
}
