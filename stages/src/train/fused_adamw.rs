//! The Rust side of `cpp/fused_adamw.cpp`: PyTorch's fused `AdamW` kernel over one flat buffer
//! (tch 0.24 binds neither `_fused_adamw_` nor the `_foreach_*` ops it is made of).

use std::ffi::{c_char, c_int, c_void};

use tch::Tensor;

use super::params::AdamWParams;
use crate::shim;

#[allow(unsafe_code)]
unsafe extern "C" {
    fn yiflow_fused_adamw(
        weights: *const c_void,
        grads: *const c_void,
        m: *const c_void,
        v: *const c_void,
        step: *const c_void,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// One `AdamW` update of `weights` in place, with `m` and `v` (all f32, one shape and device, like
/// `grads`); `step` is a one-element f32 tensor on the same device holding the update's number
/// from 1 (bias correction). `weight_decay` is `hp`'s or 0 for the undecayed group. The error is
/// PyTorch's message (an unsupported device or dtype).
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
pub fn fused_adamw(
    weights: &Tensor,
    grads: &Tensor,
    m: &Tensor,
    v: &Tensor,
    step: &Tensor,
    lr: f64,
    hp: &AdamWParams,
    weight_decay: f64,
) -> Result<(), String> {
    // SAFETY: tch's tensor handles are `at::Tensor*` on the C side (libtch's `tensor` type), which
    // the shim only dereferences during the call; the borrows keep them alive for it. The shim
    // writes at most `err_len` bytes into the buffer `call` passes.
    shim::call(|err, err_len| unsafe {
        yiflow_fused_adamw(
            weights.as_ptr().cast(),
            grads.as_ptr().cast(),
            m.as_ptr().cast(),
            v.as_ptr().cast(),
            step.as_ptr().cast(),
            lr,
            hp.beta1,
            hp.beta2,
            weight_decay,
            hp.eps,
            err,
            err_len,
        )
    })
}
