//! The MoE feed-forward network of the report (§2, Mixture-of-Experts): fine-grained expert
//! segmentation (after DeepSeekMoE, Dai et al. 2024), top-k routing, optional shared experts that
//! every token uses, and the Switch Transformer load-balancing loss (Fedus et al., 2021).
//!
//! Dispatch sorts the token-to-expert assignments by expert so that each expert's tokens are one
//! contiguous block ([`ExpertOrder`]), then runs every expert at once: by default one grouped GEMM per projection
//! (`_grouped_mm`, CUTLASS on Hopper, a fallback elsewhere), or, as [`ExpertKernel::PaddedBmm`],
//! a batched GEMM over blocks padded to the busiest expert. Neither loops over experts in Rust.
//! Nothing is dropped for capacity, so a token's output never depends on the other tokens.
//!
//! The report also balances load per expert-parallel group and per partition; with a single
//! device there is one group, so the per-expert loss here is the whole of it.

use tch::{Kind, Tensor, nn};

use super::config::Config;
use super::expert_order::ExpertOrder;
use super::fused::swiglu;
use super::mlp::{Mlp, linear_init};

/// How the experts' matrix products run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpertKernel {
    /// One `_grouped_mm` per projection over the sorted tokens.
    #[default]
    GroupedMm,
    /// Tokens scattered into `[experts, busiest, d]` blocks, one `bmm` per projection.
    PaddedBmm,
}

/// What one MoE layer reports besides its output.
#[derive(Debug)]
pub struct Routing {
    /// The Switch load-balancing loss of the layer: `experts * sum_i f_i * P_i`, 1 when balanced.
    pub aux_loss: Tensor,
    /// `f_i`: the fraction of token-to-expert assignments each routed expert got, `[experts]`.
    pub load: Tensor,
}

/// A MoE feed-forward layer.
#[derive(Debug)]
pub struct Moe {
    router: nn::Linear,
    /// `[experts, 2 * hidden, d]`: each routed expert's gate rows, then its up rows.
    gate_up: Tensor,
    /// `[experts, d, hidden]`.
    down: Tensor,
    shared: Option<Mlp>,
    experts: i64,
    top_k: i64,
    kernel: ExpertKernel,
}

impl Moe {
    /// Weights at `p / "router"`, `p / "experts" / {"gate_up", "down"}` and, with shared experts,
    /// `p / "shared"` (one SwiGLU of hidden `shared * ffn`, the sum of the shared experts).
    pub fn new(p: &nn::Path, config: &Config, std: f64, out_std: f64) -> Self {
        let d = config.d_model as i64;
        let experts = config.routed_experts() as i64;
        let hidden = config.expert_hidden() as i64;
        let shared = config.experts.as_ref().map_or(0, |e| e.shared) as i64;
        let e = p / "experts";
        Self {
            router: nn::linear(p / "router", d, experts, linear_init(std)),
            gate_up: e.var(
                "gate_up",
                &[experts, 2 * hidden, d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            ),
            down: e.var(
                "down",
                &[experts, d, hidden],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: out_std,
                },
            ),
            shared: (shared > 0)
                .then(|| Mlp::new(&(p / "shared"), d, shared * config.ffn as i64, std, out_std)),
            experts,
            top_k: config.routed_active() as i64,
            kernel: ExpertKernel::default(),
        }
    }

    /// Chooses how the experts' products run.
    pub fn set_kernel(&mut self, kernel: ExpertKernel) {
        self.kernel = kernel;
    }

    /// The layer's output for `x` (`[..., d]`) and its routing statistics.
    pub fn forward(&self, x: &Tensor) -> (Tensor, Routing) {
        let shape = x.size();
        let d = *shape.last().expect("MoE input has a feature dimension");
        let tokens = x.reshape([-1, d]);
        let n = tokens.size()[0];

        // Routing in f32 whatever the model's dtype: the probabilities feed the balancing loss.
        let probs = tokens
            .apply(&self.router)
            .to_kind(Kind::Float)
            .softmax(-1, Kind::Float);
        let (weights, chosen) = probs.topk(self.top_k, -1, true, false);
        let weights = &weights / weights.sum_dim_intlist(-1, true, Kind::Float);

        let order = ExpertOrder::new(&chosen, self.experts);
        let inputs = order.dispatch(&tokens);
        let outputs = match self.kernel {
            ExpertKernel::GroupedMm => self.grouped_mm(&inputs, &order.counts),
            ExpertKernel::PaddedBmm => {
                self.padded_bmm(&inputs, &order.counts, &order.sorted_experts)
            }
        };
        let gates = order.sorted(&weights).to_kind(x.kind()).unsqueeze(-1);
        let mut y = order.combine(&(outputs * gates));
        if let Some(shared) = &self.shared {
            y += tokens.apply(shared);
        }

        let load = order.counts.to_kind(Kind::Float) / (n * self.top_k) as f64;
        let aux_loss = load_balancing_loss(&probs, &load);
        (y.reshape(shape.as_slice()), Routing { aux_loss, load })
    }

    /// Each expert's SwiGLU over its contiguous block of `inputs`, as two grouped GEMMs.
    fn grouped_mm(&self, inputs: &Tensor, counts: &Tensor) -> Tensor {
        let offsets = counts.cumsum(0, Kind::Int);
        let gate_up = inputs.internal_grouped_mm(
            &self.gate_up.transpose(1, 2),
            Some(&offsets),
            None,
            None::<Kind>,
        );
        swiglu(&gate_up).internal_grouped_mm(
            &self.down.transpose(1, 2),
            Some(&offsets),
            None,
            None::<Kind>,
        )
    }

    /// The same as [`Moe::grouped_mm`] with `bmm` over blocks padded to the busiest expert.
    fn padded_bmm(&self, inputs: &Tensor, counts: &Tensor, sorted_experts: &Tensor) -> Tensor {
        let (rows, d) = inputs.size2().expect("sorted inputs are [assignments, d]");
        let busiest = counts.max().int64_value(&[]).max(1);
        let starts = counts.cumsum(0, Kind::Int64) - counts;
        let rank = Tensor::arange(rows, (Kind::Int64, inputs.device()))
            - starts.index_select(0, sorted_experts);
        let slot = sorted_experts * busiest + rank;
        let blocks = inputs
            .new_zeros(
                [self.experts * busiest, d],
                (inputs.kind(), inputs.device()),
            )
            .index_copy(0, &slot, inputs)
            .view([self.experts, busiest, d]);
        swiglu(&blocks.bmm(&self.gate_up.transpose(1, 2)))
            .bmm(&self.down.transpose(1, 2))
            .view([self.experts * busiest, d])
            .index_select(0, &slot)
    }
}

/// The Switch Transformer's auxiliary loss over `probs` (`[tokens, experts]`, the router's
/// softmax) and `load` (`[experts]`, the fraction of assignments each expert got):
/// `experts * sum_i load_i * mean_t probs_ti`. Its gradient (through the probabilities only) lowers
/// the probability of the overloaded experts; it is 1 when either side is uniform and `experts / k`
/// when every token goes to the same `k` experts with all its probability.
pub fn load_balancing_loss(probs: &Tensor, load: &Tensor) -> Tensor {
    let experts = probs.size()[1] as f64;
    (probs.mean_dim(0, false, Kind::Float) * load.detach()).sum(Kind::Float) * experts
}

#[cfg(test)]
mod tests {
    use tch::{Device, nn::OptimizerConfig};

    use super::*;
    use crate::model::Experts;

    fn config(count: usize, active: usize, segments: usize, shared: usize) -> Config {
        Config {
            d_model: 16,
            ffn: 32,
            experts: Some(Experts {
                count,
                active,
                segments,
                shared,
            }),
            ..Config::preset("tiny").unwrap()
        }
    }

    /// Every token through its experts one at a time: the definition the kernels must match.
    fn reference(moe: &Moe, x: &Tensor) -> Tensor {
        let probs = x.apply(&moe.router).softmax(-1, Kind::Float);
        let (weights, chosen) = probs.topk(moe.top_k, -1, true, false);
        let weights = &weights / weights.sum_dim_intlist(-1, true, Kind::Float);
        let rows: Vec<Tensor> = (0..x.size()[0])
            .map(|t| {
                let token = x.get(t);
                let mut out = moe
                    .shared
                    .as_ref()
                    .map_or_else(|| token.zeros_like(), |s| token.apply(s));
                for j in 0..moe.top_k {
                    let e = chosen.int64_value(&[t, j]);
                    let gate_up = moe.gate_up.get(e).matmul(&token).chunk(2, 0);
                    let hidden = gate_up[0].silu() * &gate_up[1];
                    out += moe.down.get(e).matmul(&hidden) * weights.double_value(&[t, j]);
                }
                out
            })
            .collect();
        Tensor::stack(&rows, 0)
    }

    #[test]
    fn both_kernels_match_the_per_token_definition_in_value_and_gradient() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut moe = Moe::new(&vs.root(), &config(4, 2, 2, 1), 0.3, 0.3);
        let x = Tensor::randn([40, 16], (Kind::Float, Device::Cpu));
        let expected = reference(&moe, &x);
        let target = Tensor::randn([40, 16], (Kind::Float, Device::Cpu));
        let mut grads = Vec::new();
        for kernel in [ExpertKernel::GroupedMm, ExpertKernel::PaddedBmm] {
            moe.set_kernel(kernel);
            let (y, routing) = moe.forward(&x);
            assert!(y.allclose(&expected, 1e-5, 1e-5, false), "{kernel:?}");
            assert!((routing.load.sum(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-6);
            for mut var in vs.trainable_variables() {
                var.zero_grad();
            }
            ((y - &target).square().mean(Kind::Float) + routing.aux_loss).backward();
            grads.push((
                moe.gate_up.grad().copy(),
                moe.down.grad().copy(),
                moe.router.ws.grad().copy(),
            ));
        }
        let (a, b) = (&grads[0], &grads[1]);
        assert!(a.0.allclose(&b.0, 1e-5, 1e-6, false) && a.1.allclose(&b.1, 1e-5, 1e-6, false));
        assert!(a.2.allclose(&b.2, 1e-5, 1e-6, false));
        assert!(a.0.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn balancing_loss_is_one_when_balanced_and_grows_with_collapse() {
        let experts = 8;
        // Balanced: each expert gets the same share and the same mean probability.
        let uniform = Tensor::full(
            [64, experts],
            1.0 / experts as f64,
            (Kind::Float, Device::Cpu),
        );
        let even = Tensor::full([experts], 1.0 / experts as f64, (Kind::Float, Device::Cpu));
        assert!((load_balancing_loss(&uniform, &even).double_value(&[]) - 1.0).abs() < 1e-6);
        // Collapsed: every token to experts 0 and 1 (top-2) with all its probability on them.
        let collapsed = Tensor::zeros([64, experts], (Kind::Float, Device::Cpu));
        let _ = collapsed.narrow(1, 0, 2).fill_(0.5);
        let load = Tensor::zeros([experts], (Kind::Float, Device::Cpu));
        let _ = load.narrow(0, 0, 2).fill_(0.5);
        assert!((load_balancing_loss(&collapsed, &load).double_value(&[]) - 4.0).abs() < 1e-6);
        // Its gradient lowers the overloaded experts' logits and raises the others'.
        let logits =
            Tensor::zeros([64, experts], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        tch::no_grad(|| {
            let _ = logits.narrow(1, 0, 2).fill_(5.0);
        });
        load_balancing_loss(&logits.softmax(-1, Kind::Float), &load).backward();
        let grad = logits.grad().mean_dim(0, false, Kind::Float);
        assert!(grad.double_value(&[0]) > 0.0 && grad.double_value(&[7]) < 0.0);
    }

    /// Coefficient of variation of the per-expert load.
    fn load_cv(load: &Tensor) -> f64 {
        (load.std(false) / load.mean(Kind::Float)).double_value(&[])
    }

    /// Trains a layer whose router starts collapsed on a toy regression; returns the load's
    /// coefficient of variation before and after.
    fn train_collapsed(aux_weight: f64) -> (f64, f64) {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let moe = Moe::new(&vs.root(), &config(8, 1, 2, 0), 0.1, 0.1); // top-2 of 16 segments
        // Inputs share one direction, and the router's first two rows point along it.
        let direction = Tensor::randn([16], (Kind::Float, Device::Cpu));
        let direction = &direction / direction.norm();
        tch::no_grad(|| {
            moe.router
                .ws
                .narrow(0, 0, 2)
                .copy_(&(direction.unsqueeze(0).repeat([2, 1]) * 2.0));
        });
        let teacher = Tensor::randn([16, 16], (Kind::Float, Device::Cpu)) * 0.25;
        let batch =
            || Tensor::randn([256, 16], (Kind::Float, Device::Cpu)) * 0.5 + &direction * 3.0;
        let before = load_cv(&moe.forward(&batch()).1.load);
        let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
        for _ in 0..300 {
            let x = batch();
            let (y, routing) = moe.forward(&x);
            let loss =
                (y - x.matmul(&teacher)).square().mean(Kind::Float) + routing.aux_loss * aux_weight;
            opt.backward_step(&loss);
        }
        let after = tch::no_grad(|| load_cv(&moe.forward(&batch()).1.load));
        (before, after)
    }

    #[test]
    fn training_with_the_balancing_loss_evens_out_expert_load() {
        let (before, balanced) = train_collapsed(0.1);
        let (_, unbalanced) = train_collapsed(0.0);
        // Collapsed on 2 of 16 experts the CV is sqrt(7) ~ 2.65.
        assert!(before > 2.5, "initial CV {before}");
        assert!(
            balanced < 0.5,
            "CV after training with the loss: {balanced} (from {before})"
        );
        assert!(
            unbalanced > 2.0 * balanced,
            "without the loss {unbalanced}, with it {balanced}"
        );
    }
}
