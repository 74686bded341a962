//! `AdamW` (Loshchilov & Hutter 2019, decoupled weight decay) written out over the model's variables, so
//! that its state — moments, and f32 master weights when the model runs in bf16 — can be snapshotted
//! into checkpoints and restored bit for bit.
//!
//! Weight-decay groups: matrices decay (attention and FFN projections, every expert, the router and
//! the output projection); vectors never do (RMSNorm gains, biases), nor does the token embedding,
//! whose rows a step only touches for the tokens it saw and which decay would shrink towards zero
//! between visits (the choice of GPT-NeoX and `OLMo`).
//!
//! Mixed precision: with bf16 variables (GPU) each one gets an f32 master copy that the update is
//! applied to and then copied back, and gradients of micro-batches are summed in f32; with f32
//! variables (CPU) the variables are their own masters.

use tch::{Kind, Tensor};

use super::params::AdamWParams;

/// Optimizer state of one variable.
struct Slot {
    name: String,
    var: Tensor,
    /// f32 weights when `var` is not f32.
    master: Option<Tensor>,
    /// f32 sum of micro-batch gradients when `var` is not f32.
    grad_sum: Option<Tensor>,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// `AdamW` over a fixed set of named variables.
pub struct AdamW {
    slots: Vec<Slot>,
    hp: AdamWParams,
}

/// True when a variable belongs to the decayed group (see the module docs).
pub fn decays(name: &str, dims: usize) -> bool {
    dims >= 2 && !name.starts_with("embed.")
}

impl AdamW {
    /// State for `vars` (name, variable), in the order given (sort them for a stable layout).
    pub fn new(vars: Vec<(String, Tensor)>, hp: AdamWParams) -> Self {
        let slots = tch::no_grad(|| {
            vars.into_iter()
                .map(|(name, var)| {
                    let f32_var = var.kind() == Kind::Float;
                    let master = (!f32_var).then(|| var.to_kind(Kind::Float).detach());
                    let zeros = || var.zeros_like().to_kind(Kind::Float);
                    Slot {
                        decay: decays(&name, var.dim()),
                        grad_sum: (!f32_var).then(zeros),
                        m: zeros(),
                        v: zeros(),
                        master,
                        name,
                        var,
                    }
                })
                .collect()
        });
        Self { slots, hp }
    }

    /// Names of the variables in the decayed group.
    pub fn decayed(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| s.decay)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// After a micro-batch's backward pass: moves bf16 gradients into the f32 sums (no-op in f32,
    /// where the variables' own gradients accumulate).
    pub fn accumulate(&mut self) {
        tch::no_grad(|| {
            for s in &mut self.slots {
                if let Some(sum) = &mut s.grad_sum {
                    let g = s.var.grad();
                    if g.defined() {
                        let _ = sum.g_add_(&g.to_kind(Kind::Float));
                        s.var.zero_grad();
                    }
                }
            }
        });
    }

    fn grad(s: &Slot) -> Option<Tensor> {
        if let Some(sum) = &s.grad_sum {
            Some(sum.shallow_clone())
        } else {
            let g = s.var.grad();
            g.defined().then_some(g)
        }
    }

    /// The global L2 norm of the gradients; scales them down to `max` when above it (`max` 0: never).
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.slots.iter().filter_map(Self::grad).collect();
            if grads.is_empty() {
                return 0.0;
            }
            let norms: Vec<Tensor> = grads
                .iter()
                .map(|g| g.to_kind(Kind::Float).norm())
                .collect();
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            if max > 0.0 && total > max && total.is_finite() {
                let scale = max / (total + 1e-6);
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            }
            total
        })
    }

    /// One update at learning rate `lr`; `step` counts updates from 1 (bias correction).
    pub fn step(&mut self, lr: f64, step: u64) {
        let hp = &self.hp;
        let bc1 = 1.0 - hp.beta1.powi(step as i32);
        let bc2 = 1.0 - hp.beta2.powi(step as i32);
        tch::no_grad(|| {
            for s in &mut self.slots {
                let Some(g) = Self::grad(s) else { continue };
                let g = g.to_kind(Kind::Float);
                let _ = s.m.g_mul_scalar_(hp.beta1);
                let _ = s.m.g_add_(&(&g * (1.0 - hp.beta1)));
                let _ = s.v.g_mul_scalar_(hp.beta2);
                let _ = s.v.g_add_(&(&g * &g * (1.0 - hp.beta2)));
                let mut w = s.master.as_ref().unwrap_or(&s.var).shallow_clone();
                if s.decay && hp.weight_decay > 0.0 {
                    let _ = w.g_mul_scalar_(1.0 - lr * hp.weight_decay);
                }
                let denom = (s.v.sqrt() / bc2.sqrt()) + hp.eps;
                let _ = w.g_sub_(&(&s.m / denom * (lr / bc1)));
                if let Some(master) = &s.master {
                    s.var.copy_(master);
                }
            }
        });
    }

    /// Clears every gradient (and the f32 sums).
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.var.zero_grad();
            if let Some(sum) = &mut s.grad_sum {
                let _ = sum.zero_();
            }
        }
    }

    /// The state to checkpoint, by name: `model.NAME` (f32 weights), `adamw.m.NAME`, `adamw.v.NAME`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(3 * self.slots.len());
        for s in &self.slots {
            let w = s.master.as_ref().unwrap_or(&s.var);
            out.push((format!("model.{}", s.name), w.shallow_clone()));
            out.push((format!("adamw.m.{}", s.name), s.m.shallow_clone()));
            out.push((format!("adamw.v.{}", s.name), s.v.shallow_clone()));
        }
        out
    }

    /// The f32 weights by their module-tree names (for `model.safetensors`).
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .map(|s| {
                let w = s.master.as_ref().unwrap_or(&s.var);
                (s.name.clone(), w.shallow_clone())
            })
            .collect()
    }

    /// Restores what [`AdamW::state`] gave, looking each tensor up with `get`.
    pub fn restore(&mut self, mut get: impl FnMut(&str) -> Option<Tensor>) -> Result<(), String> {
        tch::no_grad(|| {
            for s in &mut self.slots {
                let fetch = |key: String, get: &mut dyn FnMut(&str) -> Option<Tensor>| {
                    get(&key).ok_or_else(|| format!("the checkpoint has no `{key}`"))
                };
                let w = fetch(format!("model.{}", s.name), &mut get)?;
                let m = fetch(format!("adamw.m.{}", s.name), &mut get)?;
                let v = fetch(format!("adamw.v.{}", s.name), &mut get)?;
                if w.size() != s.var.size() {
                    return Err(format!(
                        "`{}` has shape {:?} in the checkpoint but {:?} in the model",
                        s.name,
                        w.size(),
                        s.var.size()
                    ));
                }
                match &mut s.master {
                    Some(master) => {
                        master.copy_(&w);
                        s.var.copy_(master);
                    }
                    None => s.var.copy_(&w),
                }
                s.m.copy_(&m);
                s.v.copy_(&v);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

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
                ("w".to_owned(), w.shallow_clone()),
                ("b".to_owned(), b.shallow_clone()),
            ],
            hp,
        );
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
        let _ = Device::Cpu;
    }

    #[test]
    fn clipping_scales_the_gradients_to_the_limit() {
        let w = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![("w".to_owned(), w.shallow_clone())],
            AdamWParams::default(),
        );
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
}
