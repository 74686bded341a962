//! Fused forms of the model's memory-bound pieces — SwiGLU, rotary embeddings, cross-entropy —
//! through `cpp/fused_ops.cpp`: each is one custom autograd function whose CUDA forward and backward
//! are single kernels (`cpp/fused_kernels.cu`, compiled at run time by NVRTC) where the plain ATen
//! forms are chains of kernels that each read and write the whole activation, and the loss reads
//! the logits once forward and keeps no f32 copy of them for backward. On the CPU the same functions run as ATen ops. [`set_enabled`]
//! switches the model back to the plain forms ([`reference`]): benchmarks compare the two, tests
//! check that they agree.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

use tch::Tensor;

use crate::shim::new_tensor;

#[allow(unsafe_code)]
unsafe extern "C" {
    fn yiflow_swiglu(
        gate_up: *const c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn yiflow_rope(
        x: *const c_void,
        cos: *const c_void,
        sin: *const c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn yiflow_cross_entropy(
        logits: *const c_void,
        targets: *const c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn yiflow_fused_kernels_available() -> c_int;
}

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether the model uses the fused functions (the default) or the plain ATen forms of
/// [`reference`], for the whole process.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// See [`set_enabled`].
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// True when the CUDA kernels can be built (NVRTC and the CUDA driver library are found) and none
/// has failed to compile or launch; otherwise CUDA tensors take the ATen path too (a failure is said once on
/// stderr).
#[allow(unsafe_code)]
pub fn cuda_kernels_available() -> bool {
    // SAFETY: takes nothing, reads a symbol table.
    unsafe { yiflow_fused_kernels_available() != 0 }
}

/// `silu(gate) * up` of the two halves `[gate, up]` of the last axis of `gate_up` (`[.., 2H]` ->
/// `[.., H]`): the SwiGLU feed-forward network's hidden activation (Shazeer, 2020).
#[allow(unsafe_code)]
pub fn swiglu(gate_up: &Tensor) -> Tensor {
    if !enabled() {
        return reference::swiglu(gate_up);
    }
    // SAFETY: tch's handles are `at::Tensor*` on the C side; the borrow keeps the input alive for
    // the call, and the shim writes at most `len` bytes of error.
    new_tensor("fused SwiGLU", |out, err, len| unsafe {
        yiflow_swiglu(gate_up.as_ptr().cast(), out, err, len)
    })
}

/// Rotates `x` (`[batch, len, heads, head_dim]`) by the rotary angles of its positions, whose
/// cosines and sines are `cos` and `sin` (`[len, head_dim]` as [`super::rope::Rope::cos_sin`]
/// makes them: both halves equal). Rotate-half: `x * cos + [-x2, x1] * sin` for the halves
/// `x1`, `x2` of each head.
#[allow(unsafe_code)]
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    if !enabled() {
        return reference::rope(x, cos, sin);
    }
    // SAFETY: as in `swiglu`.
    new_tensor("fused RoPE", |out, err, len| unsafe {
        yiflow_rope(
            x.as_ptr().cast(),
            cos.as_ptr().cast(),
            sin.as_ptr().cast(),
            out,
            err,
            len,
        )
    })
}

/// Mean cross-entropy of `logits` (`[.., V]`, any float dtype; softmax computed in f32) against
/// `targets` (int64, the logits' shape without its last axis), over all positions: a 0-dim f32
/// tensor.
#[allow(unsafe_code)]
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    let vocab = *logits.size().last().expect("logits have a vocabulary axis");
    let (logits, targets) = (logits.reshape([-1, vocab]), targets.reshape([-1]));
    if !enabled() {
        return reference::cross_entropy(&logits, &targets);
    }
    // SAFETY: as in `swiglu`.
    new_tensor("fused cross-entropy", |out, err, len| unsafe {
        yiflow_cross_entropy(
            logits.as_ptr().cast(),
            targets.as_ptr().cast(),
            out,
            err,
            len,
        )
    })
}

/// The same functions as plain ATen ops, as the model ran them before they were fused.
pub mod reference {
    use tch::{Kind, Tensor};

    /// See [`super::swiglu`].
    pub fn swiglu(gate_up: &Tensor) -> Tensor {
        let halves = gate_up.chunk(2, -1);
        halves[0].silu() * &halves[1]
    }

    /// See [`super::rope`].
    pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let (cos, sin) = (cos.unsqueeze(1), sin.unsqueeze(1)); // over the heads
        let halves = x.chunk(2, -1);
        let rotated = Tensor::cat(&[&halves[1].neg(), &halves[0]], -1);
        x * cos + rotated * sin
    }

    /// See [`super::cross_entropy`]: log-softmax in f32 straight from the logits' dtype.
    pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
        logits.log_softmax(-1, Kind::Float).nll_loss(targets)
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::model::rope::Rope;

    /// Value and gradient of `f` at `x` (f64, CPU), with the output weighted by `w` so that every
    /// element's gradient matters.
    fn value_and_grad(f: impl Fn(&Tensor) -> Tensor, x: &Tensor, w: &Tensor) -> (Tensor, Tensor) {
        let x = x.detach().set_requires_grad(true);
        let y = f(&x);
        (&y * w).sum(Kind::Double).backward();
        (y.detach(), x.grad())
    }

    fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
        assert_eq!(a.size(), b.size(), "{what}: shapes");
        let diff = (a - b).abs().max().double_value(&[]);
        let scale = b.abs().max().double_value(&[]).max(1e-12);
        assert!(
            diff <= tol * scale,
            "{what}: max difference {diff} at scale {scale}"
        );
    }

    fn randn(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Double, Device::Cpu))
    }

    #[test]
    fn swiglu_and_its_gradient_match_the_plain_form() {
        tch::manual_seed(11);
        let x = randn(&[3, 5, 16]) * 3.0;
        let w = randn(&[3, 5, 8]);
        let (y, g) = value_and_grad(swiglu, &x, &w);
        let (y_ref, g_ref) = value_and_grad(reference::swiglu, &x, &w);
        assert_close("value", &y, &y_ref, 1e-12);
        assert_close("gradient", &g, &g_ref, 1e-12);
    }

    #[test]
    fn rope_and_its_gradient_match_the_plain_form() {
        tch::manual_seed(12);
        let (cos, sin) = Rope::new(8, 10_000.0, Device::Cpu).cos_sin(3, 6, Kind::Double);
        let x = randn(&[2, 6, 5, 8]); // [batch, len, heads, head_dim]
        let weights = randn(&[2, 6, 5, 8]);
        let fused = |x: &Tensor| rope(x, &cos, &sin);
        let plain = |x: &Tensor| reference::rope(x, &cos, &sin);
        let (y, g) = value_and_grad(fused, &x, &weights);
        let (y_ref, g_ref) = value_and_grad(plain, &x, &weights);
        assert_close("value", &y, &y_ref, 1e-12);
        assert_close("gradient", &g, &g_ref, 1e-12);
    }

    #[test]
    fn cross_entropy_and_its_gradient_match_the_plain_form() {
        tch::manual_seed(13);
        let logits = randn(&[7, 11]) * 4.0;
        let targets = Tensor::randint(11, [7], (Kind::Int64, Device::Cpu));
        let one = Tensor::from(2.5f64);
        let (y, g) = value_and_grad(|l| cross_entropy(l, &targets), &logits, &one);
        let (y_ref, g_ref) =
            value_and_grad(|l| reference::cross_entropy(l, &targets), &logits, &one);
        assert_eq!(y.kind(), Kind::Float);
        assert_close("value", &y, &y_ref, 1e-6);
        // The reference's log-softmax is f32, so its gradient is good to f32 only.
        assert_close("gradient", &g, &g_ref, 1e-6);
    }

    #[test]
    fn cross_entropy_in_bf16_stays_close_to_f64() {
        tch::manual_seed(14);
        let logits = randn(&[64, 1000]) * 3.0;
        let targets = Tensor::randint(1000, [64], (Kind::Int64, Device::Cpu));
        let one = Tensor::from(1.0f64);
        let low = logits.to_kind(Kind::BFloat16);
        let (y, g) = value_and_grad(
            |l| cross_entropy(l, &targets),
            &low,
            &one.to_kind(Kind::Float),
        );
        let exact_input = low.to_kind(Kind::Double);
        let (y_ref, g_ref) = value_and_grad(
            |l| reference::cross_entropy(l, &targets),
            &exact_input,
            &one,
        );
        assert_eq!(g.kind(), Kind::BFloat16);
        assert_close("value", &y.to_kind(Kind::Double), &y_ref, 1e-5);
        assert_close("gradient", &g.to_kind(Kind::Double), &g_ref, 1e-2);
    }

    // On a CUDA machine: `cargo test -p yiflow-stages --features torch -- --ignored fused`.

    /// The CUDA kernels against the plain forms on the same device, in f32 and bf16, value and
    /// gradient, on shapes like the model's (strided views, broadcasting).
    #[test]
    #[ignore = "needs a CUDA device"]
    fn on_cuda_the_kernels_match_the_plain_forms() {
        assert!(tch::Cuda::is_available(), "no CUDA device is visible");
        assert!(
            cuda_kernels_available(),
            "CUDA is visible but NVRTC or the driver library could not be loaded"
        );
        let device = Device::Cuda(0);
        tch::manual_seed(15);
        for (kind, tol) in [(Kind::Float, 1e-5), (Kind::BFloat16, 2e-2)] {
            let on = |t: Tensor| t.to_device(device).to_kind(kind);
            let grads = |f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, w: &Tensor| {
                let x = x.detach().set_requires_grad(true);
                let y = f(&x);
                (&y.to_kind(Kind::Float) * w).sum(Kind::Float).backward();
                (
                    y.detach().to_kind(Kind::Double),
                    x.grad().to_kind(Kind::Double),
                )
            };
            let check = |what: &str,
                         f: &dyn Fn(&Tensor) -> Tensor,
                         g: &dyn Fn(&Tensor) -> Tensor,
                         x: &Tensor,
                         w: &Tensor| {
                let (y, dx) = grads(f, x, w);
                let (y_ref, dx_ref) = grads(g, x, w);
                assert_close(&format!("{what} {kind:?} value"), &y, &y_ref, tol);
                assert_close(&format!("{what} {kind:?} gradient"), &dx, &dx_ref, tol);
            };
            // Each op twice: at shapes the wide kernels take (16-byte accesses), and at odd ones
            // that fall to the one-element kernels.
            for h in [96, 45] {
                let gate_up = on(randn(&[4, 100, 2 * h]) * 3.0);
                let w = randn(&[4, 100, h]).to_device(device).to_kind(Kind::Float);
                check("SwiGLU", &swiglu, &reference::swiglu, &gate_up, &w);
            }

            for head_dim in [64, 12] {
                let rope_tables = Rope::new(head_dim, 10_000.0, device);
                let (cos, sin) = rope_tables.cos_sin(5, 100, kind);
                // The queries and keys of a packed projection: a strided view, as attention
                // passes it.
                let packed = on(randn(&[2, 100, 12, head_dim]));
                let x = packed.narrow(2, 0, 10);
                let w = randn(&[2, 100, 10, head_dim])
                    .to_device(device)
                    .to_kind(Kind::Float);
                let f = |x: &Tensor| rope(x, &cos, &sin);
                let f_ref = |x: &Tensor| reference::rope(x, &cos, &sin);
                check("RoPE", &f, &f_ref, &x, &w);
            }

            for vocab in [5000, 1001] {
                let logits = on(randn(&[300, vocab]) * 4.0);
                let targets = Tensor::randint(vocab, [300], (Kind::Int64, device));
                let one = Tensor::from(1.5f32).to_device(device);
                let f = |l: &Tensor| cross_entropy(l, &targets);
                let f_ref = |l: &Tensor| reference::cross_entropy(l, &targets);
                check("cross-entropy", &f, &f_ref, &logits, &one);
            }
        }
        // Had a kernel failed, the checks above would have compared the ATen path with itself.
        assert!(
            cuda_kernels_available(),
            "a fused kernel failed: see stderr"
        );
    }
}
