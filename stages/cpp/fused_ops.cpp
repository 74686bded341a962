// Fused forms of three pieces of the model whose plain ATen forms are chains of memory-bound kernels,
// each a custom autograd function (tch cannot define one from Rust):
//
// - SwiGLU, `silu(gate) * up` over the two halves of one `[.., 2H]` projection: one kernel forward,
//   one backward that writes the `[.., 2H]` gradient directly (ATen: silu, mul; then two muls,
//   silu_backward and a cat).
// - Rotary embeddings in the rotate-half layout: one kernel forward, and the same kernel with the
//   angle negated backward, as a rotation's inverse is its transpose (ATen: neg, cat, mul, mul, add,
//   and about as many backward).
// - Cross-entropy over `[N, V]` logits: forward as ATen's log-softmax (in f32 from bf16 logits), of
//   which only the per-row log-sum-exp is kept; backward `softmax * g/N` in one kernel that writes
//   the gradient in the logits' dtype, then the N target entries. ATen instead keeps the f32
//   log-softmax (twice the logits' size in bf16) for backward, fills an f32 gradient of that size
//   with zeros, and reads both again in log_softmax_backward.
//
// On CUDA the kernels are PyTorch's jiterator (`at::cuda::CompileAndLaunchKernel`, NVRTC-compiled
// elementwise code on TensorIterator, which handles broadcasting and strides), looked up at run
// time: the worker does not link libtorch_cuda.so (it loads it when there is a GPU), and a CPU-only
// LibTorch has no such symbol. Elsewhere, when the symbol is missing, and after a kernel failed to
// compile or launch, the same arithmetic runs as ATen ops. Arithmetic inside the kernels is f32
// whatever the tensors' dtype.

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <dlfcn.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>

#include "shim.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// at::cuda::CompileAndLaunchKernel(code, name, num_outputs, inputs, extra_args, return_by_ref), as
// ATen/cuda/jiterator.h declares it in PyTorch 2.11.
using Jiterator = c10::SmallVector<at::Tensor> (*)(const std::string&, const std::string&, int,
                                                   const c10::SmallVector<at::Tensor>&,
                                                   const c10::SmallVector<at::Scalar>&, bool);

constexpr const char* kJiteratorSymbol =
    "_ZN2at4cuda22CompileAndLaunchKernelERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEES8_"
    "iRKN3c1011SmallVectorINS_6TensorELj6EEERKNSA_INS9_6ScalarELj1EEEb";

// The jiterator when libtorch_cuda.so is loaded, else null. Looked up on every call until found:
// the worker loads the CUDA library after start-up.
Jiterator jiterator() {
  static Jiterator found = nullptr;
  if (found == nullptr) {
    found = reinterpret_cast<Jiterator>(dlsym(RTLD_DEFAULT, kJiteratorSymbol));
  }
  return found;
}

// Set when a kernel failed to compile or launch: from then on every op takes its ATen path, so a
// driver or NVRTC without what the kernels need costs speed, not the run.
std::atomic<bool> kernels_failed{false};

// One elementwise kernel over `inputs` (broadcast together; all of one dtype, which is the
// output's), or nothing when the jiterator throws (said once on stderr, the stage's log).
std::optional<at::Tensor> launch(const char* code, const char* name,
                                 const c10::SmallVector<at::Tensor>& inputs) {
  try {
    return jiterator()(code, name, 1, inputs, {}, false)[0];
  } catch (const std::exception& e) {
    if (!kernels_failed.exchange(true)) {
      std::fprintf(stderr,
                   "yiflow: the fused CUDA kernel %s failed, so SwiGLU, RoPE and the loss run as "
                   "ATen ops from now on: %s\n",
                   name, e.what());
    }
    return std::nullopt;
  }
}

bool use_kernels(const at::Tensor& t) {
  return t.is_cuda() && !kernels_failed && jiterator() != nullptr;
}

// `[2, 1]`: 0 then 1, selecting the first or second half of a `[.., 2, H]` output in the kernels
// that write both halves of a rotate-half or gate/up layout in one pass.
at::Tensor halves(const at::Tensor& like) {
  return at::arange(2, like.options()).view({2, 1});
}

// `t` with an axis of 1 before its last, broadcast against `halves` to the `[.., 2, H]` output.
at::Tensor to_both_halves(const at::Tensor& t) {
  return t.unsqueeze(-2);
}

// --- SwiGLU ---------------------------------------------------------------------------------

constexpr const char* kSwigluForward = R"(
template <typename T> T yiflow_swiglu_forward(T gate, T up) {
  float g = static_cast<float>(gate);
  return static_cast<T>(g / (1.0f + expf(-g)) * static_cast<float>(up));
})";

// Output `[.., 2, H]`: half 0 the gradient of the gate, half 1 that of up.
constexpr const char* kSwigluBackward = R"(
template <typename T> T yiflow_swiglu_backward(T grad, T gate, T up, T which) {
  float d = static_cast<float>(grad), g = static_cast<float>(gate), u = static_cast<float>(up);
  float sig = 1.0f / (1.0f + expf(-g));
  float out = static_cast<float>(which) == 0.0f ? d * u * sig * (1.0f + g * (1.0f - sig)) : d * g * sig;
  return static_cast<T>(out);
})";

struct SwiGlu : public torch::autograd::Function<SwiGlu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate_up) {
    ctx->save_for_backward({gate_up});
    auto parts = gate_up.chunk(2, -1);
    if (use_kernels(gate_up)) {
      if (auto out = launch(kSwigluForward, "yiflow_swiglu_forward", {parts[0], parts[1]})) {
        return *out;
      }
    }
    return at::silu(parts[0]) * parts[1];
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor gate_up = ctx->get_saved_variables()[0];
    auto parts = gate_up.chunk(2, -1);
    const at::Tensor& grad = grads[0];
    if (use_kernels(gate_up)) {
      auto out = launch(kSwigluBackward, "yiflow_swiglu_backward",
                        {to_both_halves(grad.to(gate_up.scalar_type())), to_both_halves(parts[0]),
                         to_both_halves(parts[1]), halves(gate_up)});
      if (out) {
        return {out->flatten(-2)};
      }
    }
    // At least f32 (f64 stays f64).
    auto compute = at::promote_types(gate_up.scalar_type(), at::kFloat);
    at::Tensor gate = parts[0].to(compute), up = parts[1].to(compute), d = grad.to(compute);
    at::Tensor sig = at::sigmoid(gate);
    at::Tensor d_gate = d * up * sig * (1 + gate * (1 - sig));
    at::Tensor d_up = d * gate * sig;
    return {at::cat({d_gate, d_up}, -1).to(gate_up.scalar_type())};
  }
};

// --- Rotary embeddings ------------------------------------------------------------------------

// Output `[.., 2, D/2]`: (x1 cos - x2 sin, x2 cos + x1 sin) for the two halves x1, x2 of a head.
constexpr const char* kRope = R"(
template <typename T> T yiflow_rope(T x1, T x2, T cos_, T sin_, T which) {
  float a = static_cast<float>(x1), b = static_cast<float>(x2);
  float c = static_cast<float>(cos_), s = static_cast<float>(sin_);
  return static_cast<T>(static_cast<float>(which) == 0.0f ? a * c - b * s : b * c + a * s);
})";

// Rotates `x` (`[batch, len, heads, D]`) by the angles whose cosines and sines are `cos`, `sin`
// (`[len, D]`, both halves equal: the layout Rope::cos_sin makes); `sign` -1 rotates backwards.
at::Tensor rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, double sign) {
  const int64_t half = x.size(-1) / 2;
  // `[len, 1, D/2]`: broadcast over batch and heads.
  at::Tensor c = cos.narrow(-1, 0, half).unsqueeze(1).to(x.scalar_type());
  at::Tensor s = (sin.narrow(-1, 0, half) * sign).unsqueeze(1).to(x.scalar_type());
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  if (use_kernels(x)) {
    if (auto out = launch(kRope, "yiflow_rope",
                          {to_both_halves(x1), to_both_halves(x2), to_both_halves(c),
                           to_both_halves(s), halves(x)})) {
      return out->flatten(-2);
    }
  }
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

// exp(logit - lse) * scale, with the f32 values lse and scale each passed as the sum of two values
// of the logits' dtype (hi + lo), so that bf16 carries them to ~16 bits.
constexpr const char* kSoftmaxScaled = R"(
template <typename T> T yiflow_softmax_scaled(T logit, T lse_hi, T lse_lo, T scale_hi, T scale_lo) {
  float shifted = static_cast<float>(logit) - (static_cast<float>(lse_hi) + static_cast<float>(lse_lo));
  return static_cast<T>(expf(shifted) * (static_cast<float>(scale_hi) + static_cast<float>(scale_lo)));
})";

// `x` (f32) as hi + lo in `dtype`.
std::pair<at::Tensor, at::Tensor> split(const at::Tensor& x, at::ScalarType dtype) {
  at::Tensor hi = x.to(dtype);
  return {hi, (x - hi.to(at::kFloat)).to(dtype)};
}

struct CrossEntropy : public torch::autograd::Function<CrossEntropy> {
  // Mean over rows of -log softmax(logits)[target]; `logits` `[N, V]`, `targets` `[N]` int64.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets) {
    at::Tensor picked_logit = logits.gather(1, targets.unsqueeze(1)).squeeze(1).to(at::kFloat);
    at::Tensor picked;  // log-probabilities of the targets, f32
    {
      // Freed at the end of this scope: only its target entries and the log-sum-exp live on.
      at::Tensor log_probs = at::log_softmax(logits, 1, at::kFloat);
      picked = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1);
    }
    at::Tensor lse = picked_logit - picked;
    ctx->save_for_backward({logits, targets, lse, picked});
    return -picked.mean();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &targets = saved[1], &lse = saved[2], &picked = saved[3];
    // d(mean)/d(logit) = (softmax - onehot) * g / N; stays on the device (no synchronisation).
    at::Tensor scale = grads[0].to(at::kFloat) / static_cast<double>(logits.size(0));
    at::Tensor grad;
    if (use_kernels(logits)) {
      auto dtype = logits.scalar_type();
      auto [lse_hi, lse_lo] = split(lse.unsqueeze(1), dtype);
      auto [scale_hi, scale_lo] = split(scale.view({1, 1}), dtype);
      if (auto out = launch(kSoftmaxScaled, "yiflow_softmax_scaled",
                            {logits, lse_hi, lse_lo, scale_hi, scale_lo})) {
        grad = *out;
      }
    }
    if (!grad.defined()) {
      auto compute = at::promote_types(logits.scalar_type(), at::kFloat);
      grad = (at::exp(logits.to(compute) - lse.unsqueeze(1)) * scale).to(logits.scalar_type());
    }
    // The target entries from f32: softmax - 1 rounds badly once in bf16 when softmax is near 1.
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

// 1 when the CUDA kernels are reachable (libtorch_cuda.so loaded) and none has failed, else 0.
int yiflow_fused_kernels_available() {
  return !kernels_failed && jiterator() != nullptr ? 1 : 0;
}
}
