// Fused forms of three pieces of the model whose plain ATen forms are chains of memory-bound kernels,
// each a custom autograd function (tch cannot define one from Rust):
//
// - SwiGLU, `silu(gate) * up` over the two halves of one `[.., 2H]` projection: one kernel forward,
//   one backward that writes the `[.., 2H]` gradient directly (ATen: silu, mul; then two muls,
//   silu_backward and a cat).
// - Rotary embeddings in the rotate-half layout: one kernel forward, and the same kernel with the
//   angle negated backward, as a rotation's inverse is its transpose (ATen: neg, cat, mul, mul, add,
//   and about as many backward).
// - Cross-entropy over `[N, V]` logits: forward one pass over each row for its log-sum-exp (running
//   max and sum, in f32), which is all that backward keeps besides the logits; backward
//   `(softmax - onehot) * g/N` in one kernel that writes the gradient in the logits' dtype. ATen
//   instead keeps the f32 log-softmax (twice the logits' size in bf16) for backward, fills an f32
//   gradient of that size with zeros, and reads both again in log_softmax_backward.
//
// On CUDA the kernels are fused_kernels.cu, compiled by NVRTC at run time (cuda_kernels.cpp): the
// worker does not link libtorch_cuda.so (it loads it when there is a GPU) nor the CUDA toolkit.
// Each moves its tensors once, 16 bytes per access where the shapes allow, which is what an
// elementwise kernel on strided halves (TensorIterator's, ATen's or the jiterator's) does not.
// Elsewhere — the CPU, f64, and after a kernel failed to compile or launch — the same arithmetic
// runs as ATen ops.

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>

#include "cuda_kernels.h"
#include "shim.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int kThreads = 256;

// Set when a kernel failed to compile or launch: from then on every op takes its ATen path, so a
// driver or NVRTC without what the kernels need costs speed, not the run.
std::atomic<bool> kernels_failed{false};

bool use_kernels(const at::Tensor& t) {
  return t.is_cuda() && yiflow::cuda::wide(t.scalar_type()) != 0 && !kernels_failed &&
         yiflow::cuda::available();
}

// The kernel width for `dtype`: the wide form when every length in `multiples` is a multiple of
// its width and every pointer is aligned to 16 bytes, else one element per thread.
int width(at::ScalarType dtype, std::initializer_list<std::int64_t> multiples,
          std::initializer_list<const void*> pointers) {
  const int wide = yiflow::cuda::wide(dtype);
  for (std::int64_t m : multiples) {
    if (m % wide != 0) return 1;
  }
  for (const void* p : pointers) {
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return 1;
  }
  return wide;
}

// Runs `kernel` (without its dtype and width suffix) over `like`'s device, or returns false when
// it fails (said once on stderr, the stage's log).
bool run(const char* kernel, const at::Tensor& like, int width, std::int64_t blocks,
         std::initializer_list<void*> args) {
  const std::string name = yiflow::cuda::entry_point(kernel, like.scalar_type(), width);
  try {
    yiflow::cuda::launch(like.device(), name, blocks, kThreads, const_cast<void**>(args.begin()));
    return true;
  } catch (const std::exception& e) {
    if (!kernels_failed.exchange(true)) {
      std::fprintf(stderr,
                   "yiflow: the fused CUDA kernel %s failed, so SwiGLU, RoPE and the loss run as "
                   "ATen ops from now on: %s\n",
                   name.c_str(), e.what());
    }
    return false;
  }
}

// Blocks for `items` work items of a grid-stride kernel on `like`'s device.
std::int64_t blocks_for(const at::Tensor& like, std::int64_t items) {
  const std::int64_t needed = (items + kThreads - 1) / kThreads;
  return std::min(needed, yiflow::cuda::resident_blocks(like.device(), kThreads));
}

// --- SwiGLU ---------------------------------------------------------------------------------

struct SwiGlu : public torch::autograd::Function<SwiGlu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate_up) {
    ctx->save_for_backward({gate_up});
    if (use_kernels(gate_up)) {
      at::Tensor x = gate_up.contiguous();
      std::int64_t h = x.size(-1) / 2, rows = x.numel() / std::max<std::int64_t>(2 * h, 1);
      auto shape = x.sizes().vec();
      shape.back() = h;
      at::Tensor out = at::empty(shape, x.options());
      const int w = width(x.scalar_type(), {h}, {x.data_ptr()});
      void *px = x.data_ptr(), *pout = out.data_ptr();
      if (run("swiglu_forward", x, w, blocks_for(x, rows * h / w), {&px, &pout, &rows, &h})) {
        return out;
      }
    }
    auto parts = gate_up.chunk(2, -1);
    return at::silu(parts[0]) * parts[1];
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor gate_up = ctx->get_saved_variables()[0];
    if (use_kernels(gate_up)) {
      at::Tensor x = gate_up.contiguous();
      at::Tensor grad = grads[0].to(x.scalar_type()).contiguous();
      std::int64_t h = x.size(-1) / 2, rows = x.numel() / std::max<std::int64_t>(2 * h, 1);
      at::Tensor dx = at::empty_like(x, at::MemoryFormat::Contiguous);
      const int w = width(x.scalar_type(), {h}, {x.data_ptr(), grad.data_ptr()});
      void *pgrad = grad.data_ptr(), *px = x.data_ptr(), *pdx = dx.data_ptr();
      if (run("swiglu_backward", x, w, blocks_for(x, rows * h / w),
              {&pgrad, &px, &pdx, &rows, &h})) {
        return {dx};
      }
    }
    auto parts = gate_up.chunk(2, -1);
    // At least f32 (f64 stays f64).
    auto compute = at::promote_types(gate_up.scalar_type(), at::kFloat);
    at::Tensor gate = parts[0].to(compute), up = parts[1].to(compute), d = grads[0].to(compute);
    at::Tensor sig = at::sigmoid(gate);
    at::Tensor d_gate = d * up * sig * (1 + gate * (1 - sig));
    at::Tensor d_up = d * gate * sig;
    return {at::cat({d_gate, d_up}, -1).to(gate_up.scalar_type())};
  }
};

// --- Rotary embeddings ------------------------------------------------------------------------

// Rotates `x` (`[batch, len, heads, D]`) by the angles whose cosines and sines are `cos`, `sin`
// (`[len, D]`, both halves equal: the layout Rope::cos_sin makes); `sign` -1 rotates backwards.
at::Tensor rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, double sign) {
  std::int64_t half = x.size(-1) / 2;
  if (use_kernels(x) && x.dim() == 4) {
    at::Tensor in = x.stride(-1) == 1 ? x : x.contiguous();
    at::Tensor c = cos.narrow(-1, 0, half).to(at::kFloat).contiguous();
    at::Tensor s = sin.narrow(-1, 0, half).to(at::kFloat).contiguous();
    at::Tensor out = at::empty(in.sizes(), in.options().memory_format(at::MemoryFormat::Contiguous));
    std::int64_t batch = in.size(0), len = in.size(1), heads = in.size(2);
    std::int64_t sb = in.stride(0), sl = in.stride(1), sh = in.stride(2);
    float sign_f = static_cast<float>(sign);
    const int w = width(in.scalar_type(), {half, sb, sl, sh}, {in.data_ptr()});
    void *px = in.data_ptr(), *pout = out.data_ptr(), *pc = c.data_ptr(), *ps = s.data_ptr();
    if (run("rope", in, w, blocks_for(in, batch * len * heads * half / w),
            {&px, &pout, &pc, &ps, &sign_f, &batch, &len, &heads, &half, &sb, &sl, &sh})) {
      return out;
    }
  }
  // `[len, 1, D/2]`: broadcast over batch and heads.
  at::Tensor c = cos.narrow(-1, 0, half).unsqueeze(1).to(x.scalar_type());
  at::Tensor s = (sin.narrow(-1, 0, half) * sign).unsqueeze(1).to(x.scalar_type());
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return at::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1);
}

struct Rope : public torch::autograd::Function<Rope> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rotate(x, cos, sin, 1.0);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    return {rotate(grads[0], saved[0], saved[1], -1.0), at::Tensor(), at::Tensor()};
  }
};

// --- Cross-entropy ----------------------------------------------------------------------------

struct CrossEntropy : public torch::autograd::Function<CrossEntropy> {
  // Mean over rows of -log softmax(logits)[target]; `logits` `[N, V]`, `targets` `[N]` int64.
  // Keeps the logits and each row's log-sum-exp (f32) for backward.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets) {
    if (use_kernels(logits) && logits.dim() == 2 && targets.scalar_type() == at::kLong) {
      at::Tensor x = logits.contiguous(), t = targets.contiguous();
      std::int64_t rows = x.size(0), vocab = x.size(1);
      at::Tensor lse = at::empty({rows}, x.options().dtype(at::kFloat));
      at::Tensor loss = at::empty({rows}, x.options().dtype(at::kFloat));
      const int w = width(x.scalar_type(), {vocab}, {x.data_ptr()});
      void *px = x.data_ptr(), *pt = t.data_ptr(), *plse = lse.data_ptr(),
           *ploss = loss.data_ptr();
      // One block per row.
      const std::int64_t blocks = std::min(rows, yiflow::cuda::resident_blocks(x.device(), kThreads));
      if (run("cross_entropy_forward", x, w, blocks, {&px, &pt, &plse, &ploss, &rows, &vocab})) {
        ctx->save_for_backward({x, t, lse});
        return loss.mean();
      }
    }
    at::Tensor picked_logit = logits.gather(1, targets.unsqueeze(1)).squeeze(1).to(at::kFloat);
    at::Tensor picked;  // log-probabilities of the targets, f32
    {
      // Freed at the end of this scope: only its target entries and the log-sum-exp live on.
      at::Tensor log_probs = at::log_softmax(logits, 1, at::kFloat);
      picked = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1);
    }
    ctx->save_for_backward({logits, targets, picked_logit - picked});
    return -picked.mean();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &targets = saved[1], &lse = saved[2];
    // d(mean)/d(logit) = (softmax - onehot) * g / N; stays on the device (no synchronisation).
    at::Tensor scale = grads[0].to(at::kFloat) / static_cast<double>(logits.size(0));
    if (use_kernels(logits) && logits.is_contiguous() && targets.scalar_type() == at::kLong &&
        targets.is_contiguous()) {
      std::int64_t rows = logits.size(0), vocab = logits.size(1);
      at::Tensor grad = at::empty_like(logits);
      at::Tensor g = scale.contiguous();
      const int w = width(logits.scalar_type(), {vocab}, {logits.data_ptr()});
      void *px = logits.data_ptr(), *pt = targets.data_ptr(), *plse = lse.data_ptr(),
           *pscale = g.data_ptr(), *pgrad = grad.data_ptr();
      if (run("cross_entropy_backward", logits, w, blocks_for(logits, rows * vocab / w),
              {&px, &pt, &plse, &pscale, &pgrad, &rows, &vocab})) {
        return {grad, at::Tensor()};
      }
    }
    auto compute = at::promote_types(logits.scalar_type(), at::kFloat);
    at::Tensor grad =
        (at::exp(logits.to(compute) - lse.unsqueeze(1)) * scale).to(logits.scalar_type());
    // The target entries from f32: softmax - 1 rounds badly once in bf16 when softmax is near 1.
    at::Tensor picked = logits.gather(1, targets.unsqueeze(1)).squeeze(1).to(compute) - lse;
    at::Tensor at_target = (at::exp(picked) - 1) * scale;
    grad.scatter_(1, targets.unsqueeze(1), at_target.unsqueeze(1).to(grad.scalar_type()));
    return {grad, at::Tensor()};
  }
};

}  // namespace

extern "C" {

// Each writes a new tensor into `*out` (freed by the caller) and returns 0, or returns 1 with
// PyTorch's message in `err` (at most `err_len` bytes, NUL-terminated).

int yiflow_swiglu(const at::Tensor* gate_up, at::Tensor** out, char* err, std::size_t err_len) {
  return yiflow::guarded([&] { *out = new at::Tensor(SwiGlu::apply(*gate_up)); }, err,
                         err_len);
}

int yiflow_rope(const at::Tensor* x, const at::Tensor* cos, const at::Tensor* sin, at::Tensor** out,
                char* err, std::size_t err_len) {
  return yiflow::guarded([&] { *out = new at::Tensor(Rope::apply(*x, *cos, *sin)); }, err,
                         err_len);
}

int yiflow_cross_entropy(const at::Tensor* logits, const at::Tensor* targets, at::Tensor** out,
                         char* err, std::size_t err_len) {
  return yiflow::guarded(
      [&] { *out = new at::Tensor(CrossEntropy::apply(*logits, *targets)); }, err, err_len);
}

// 1 when the CUDA kernels can be compiled (NVRTC and the driver found) and none has failed, else 0.
int yiflow_fused_kernels_available() {
  return !kernels_failed && yiflow::cuda::available() ? 1 : 0;
}
}
