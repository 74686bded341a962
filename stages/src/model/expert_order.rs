//! The token-to-expert assignments of a MoE layer sorted by expert, and the two regroupings between
//! token order (a row per token) and that order (a row per assignment, each expert's one block),
//! through `cpp/expert_order.cpp`: custom autograd functions whose backward passes are each other's
//! forward, so both directions are gathers. As `index_select` and `index_add` they were the same
//! values, but each backward was an `index_add` of bf16 rows with atomic adds, 13% of the MoE
//! preset's step on an H100.

use std::ffi::{c_char, c_int, c_void};

use tch::{Kind, Tensor};

use crate::shim::new_tensor;

/// The shim's regroupings: input, `token_of`, `position`, `k`, then the output and error buffer.
type Regroup = unsafe extern "C" fn(
    *const c_void,
    *const c_void,
    *const c_void,
    i64,
    *mut *mut c_void,
    *mut c_char,
    usize,
) -> c_int;

#[allow(unsafe_code)]
unsafe extern "C" {
    fn yiflow_moe_dispatch(
        x: *const c_void,
        token_of: *const c_void,
        position: *const c_void,
        k: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn yiflow_moe_combine(
        rows: *const c_void,
        token_of: *const c_void,
        position: *const c_void,
        k: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// The `n * k` assignments of `n` tokens to `k` experts each, sorted by expert (stably, so each
/// expert's tokens keep their order).
#[derive(Debug)]
pub(super) struct ExpertOrder {
    /// The expert of each sorted assignment, `[n * k]`.
    pub sorted_experts: Tensor,
    /// How many assignments each expert got, `[experts]` (int64).
    pub counts: Tensor,
    /// The token-major index `t * k + j` of each sorted assignment, `[n * k]`.
    order: Tensor,
    /// The token of each sorted assignment, `[n * k]`.
    token_of: Tensor,
    /// Where token-major assignment `t * k + j` sits in the sorted order: `order`'s inverse.
    position: Tensor,
    k: i64,
}

impl ExpertOrder {
    /// Sorts the assignments `chosen` (`[n, k]`, expert ids below `experts`).
    pub fn new(chosen: &Tensor, experts: i64) -> Self {
        let k = *chosen.size().last().expect("assignments are [tokens, k]");
        let assignments = chosen.flatten(0, -1);
        let (sorted_experts, order) = assignments.sort_stable(true, 0, false);
        let token_of = order.floor_divide_scalar(k);
        let position = order.empty_like().scatter(
            0,
            &order,
            &Tensor::arange(order.size()[0], (Kind::Int64, order.device())),
        );
        // Not `bincount`: on CUDA it reads the largest id back to size its output, a device
        // synchronisation in every MoE layer that leaves the GPU idle while the host catches up.
        let counts = Tensor::zeros([experts], (Kind::Int64, chosen.device())).scatter_add(
            0,
            &assignments,
            &assignments.ones_like(),
        );
        Self {
            sorted_experts,
            counts,
            order,
            token_of,
            position,
            k,
        }
    }

    /// `tokens` (`[n, d]`) as one row per assignment in sorted order (`[n * k, d]`).
    pub fn dispatch(&self, tokens: &Tensor) -> Tensor {
        self.regroup("MoE dispatch", yiflow_moe_dispatch, tokens)
    }

    /// The sum over each token's assignments of `rows` (`[n * k, d]`, sorted order): `[n, d]`.
    pub fn combine(&self, rows: &Tensor) -> Tensor {
        self.regroup("MoE combine", yiflow_moe_combine, rows)
    }

    #[allow(unsafe_code)]
    fn regroup(&self, what: &str, f: Regroup, x: &Tensor) -> Tensor {
        // SAFETY: tch's handles are `at::Tensor*` on the C side; the borrows keep the inputs alive
        // for the call, and the shim writes at most `len` bytes of error.
        new_tensor(what, |out, err, len| unsafe {
            f(
                x.as_ptr().cast(),
                self.token_of.as_ptr().cast(),
                self.position.as_ptr().cast(),
                self.k,
                out,
                err,
                len,
            )
        })
    }

    /// A per-assignment `[n, k]` tensor (e.g. the gate weights) flattened into sorted order.
    pub fn sorted(&self, per_assignment: &Tensor) -> Tensor {
        per_assignment.flatten(0, -1).index_select(0, &self.order)
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;

    /// `f(input)` and the gradient of `sum(f(input) * weights)`.
    fn grad_of(
        f: impl Fn(&Tensor) -> Tensor,
        input: &Tensor,
        weights: &Tensor,
    ) -> (Tensor, Tensor) {
        let input = input.detach().set_requires_grad(true);
        let out = f(&input);
        (&out * weights).sum(Kind::Double).backward();
        (out.detach(), input.grad())
    }

    /// Both regroupings against their plain forms (`index_select`, `index_add`), value and
    /// gradient, with experts chosen so that some get many tokens and one none.
    #[test]
    fn dispatch_and_combine_match_index_select_and_index_add() {
        tch::manual_seed(21);
        let (tokens, k, d, experts) = (9, 3, 5, 6);
        let chosen = Tensor::randint(experts - 1, [tokens, k], (Kind::Int64, Device::Cpu));
        let order = ExpertOrder::new(&chosen, experts);
        let token_of = order.token_of.shallow_clone();
        let counts: Vec<i64> = Vec::try_from(&order.counts).expect("int64 counts");
        assert_eq!(counts.iter().sum::<i64>(), tokens * k);
        assert_eq!(counts[5], 0);
        let sorted: Vec<i64> = Vec::try_from(&order.sorted_experts).expect("int64 experts");
        assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "{sorted:?}");

        let per_token = Tensor::randn([tokens, d], (Kind::Double, Device::Cpu));
        let weights = Tensor::randn([tokens * k, d], (Kind::Double, Device::Cpu));
        let (out, grad) = grad_of(|t| order.dispatch(t), &per_token, &weights);
        let plain = |t: &Tensor| t.index_select(0, &token_of);
        let (out_ref, grad_ref) = grad_of(plain, &per_token, &weights);
        assert!(out.allclose(&out_ref, 1e-12, 1e-12, false));
        assert!(grad.allclose(&grad_ref, 1e-12, 1e-12, false));

        let rows = Tensor::randn([tokens * k, d], (Kind::Double, Device::Cpu));
        let weights = Tensor::randn([tokens, d], (Kind::Double, Device::Cpu));
        let (out, grad) = grad_of(|r| order.combine(r), &rows, &weights);
        let plain = |r: &Tensor| per_token.zeros_like().index_add(0, &token_of, r);
        let (out_ref, grad_ref) = grad_of(plain, &rows, &weights);
        assert!(out.allclose(&out_ref, 1e-12, 1e-12, false));
        assert!(grad.allclose(&grad_ref, 1e-12, 1e-12, false));
    }
}
