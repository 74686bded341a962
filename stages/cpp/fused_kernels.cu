// CUDA kernels of the fused ops (fused_ops.cpp), compiled at run time by NVRTC (nvrtc_kernels.cpp),
// so the worker needs no CUDA toolkit at build time. NVRTC compiles this without any header:
// bf16 is handled as its bits, and every entry point is `extern "C"` so the host finds it by name.
//
// Each kernel exists for two storage types (bf16, f32) and two widths: `W` elements per thread
// moved as one 16-byte access (the fast form, when the row lengths are multiples of W and the
// pointers aligned), or one element (any shape). Arithmetic is f32 throughout. All are grid-stride
// loops, so any launch size covers any tensor.

typedef unsigned short bf16;
typedef long long i64;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __uint_as_float(static_cast<unsigned>(x) << 16); }

template <typename S> __device__ __forceinline__ S from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
// Round to nearest, ties to even, as PyTorch's bf16 conversion does; a NaN stays a NaN.
template <> __device__ __forceinline__ bf16 from_float<bf16>(float x) {
  unsigned u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16>(0x7fc0);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<bf16>(u >> 16);
}

// W consecutive elements, moved as one access of W * sizeof(S) bytes.
template <typename S, int W> struct alignas(W * sizeof(S)) Pack { S v[W]; };

template <typename S, int W> __device__ __forceinline__ Pack<S, W> load(const S* p) {
  return *reinterpret_cast<const Pack<S, W>*>(p);
}
template <typename S, int W> __device__ __forceinline__ void store(S* p, const Pack<S, W>& v) {
  *reinterpret_cast<Pack<S, W>*>(p) = v;
}

__device__ __forceinline__ i64 first_item() { return blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ i64 item_stride() { return static_cast<i64>(gridDim.x) * blockDim.x; }

// Element e of rows of length n as (row, column). In 32 bits when every index fits (`narrow`, the
// same for all threads of a launch): 64-bit division is a long software routine on GPUs, and the
// memory-bound kernels below are otherwise spending their time on it.
struct RowCol {
  i64 row, col;
};
__device__ __forceinline__ RowCol row_col(i64 e, i64 n, bool narrow) {
  if (narrow) {
    const unsigned r = static_cast<unsigned>(e) / static_cast<unsigned>(n);
    return {r, static_cast<i64>(static_cast<unsigned>(e) - r * static_cast<unsigned>(n))};
  }
  const i64 r = e / n;
  return {r, e - r * n};
}

// True when 32-bit indices reach every element of `count`.
__device__ __forceinline__ bool fits_32_bits(i64 count) { return count <= 0xffffffffll; }

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// --- SwiGLU: out[r, c] = silu(x[r, c]) * x[r, h + c] for x [rows, 2h], out [rows, h] ---------------

template <typename S, int W>
__device__ void swiglu_forward(const S* x, S* out, i64 rows, i64 h) {
  const i64 items = rows * h / W;
  const bool narrow = fits_32_bits(rows * h);
  for (i64 i = first_item(); i < items; i += item_stride()) {
    const i64 e = i * W;
    const RowCol at = row_col(e, h, narrow);
    const S* in = x + at.row * 2 * h + at.col;
    Pack<S, W> gate = load<S, W>(in), up = load<S, W>(in + h), o;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float g = to_float(gate.v[k]);
      o.v[k] = from_float<S>(g * sigmoid(g) * to_float(up.v[k]));
    }
    store<S, W>(out + e, o);
  }
}

// dx [rows, 2h]: the gate's gradient grad * up * silu'(gate), then up's, grad * silu(gate).
template <typename S, int W>
__device__ void swiglu_backward(const S* grad, const S* x, S* dx, i64 rows, i64 h) {
  const i64 items = rows * h / W;
  const bool narrow = fits_32_bits(rows * h);
  for (i64 i = first_item(); i < items; i += item_stride()) {
    const i64 e = i * W;
    const RowCol rc = row_col(e, h, narrow);
    const i64 at = rc.row * 2 * h + rc.col;
    Pack<S, W> d = load<S, W>(grad + e), gate = load<S, W>(x + at), up = load<S, W>(x + at + h);
    Pack<S, W> d_gate, d_up;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float g = to_float(gate.v[k]), u = to_float(up.v[k]), dk = to_float(d.v[k]);
      const float s = sigmoid(g);
      d_gate.v[k] = from_float<S>(dk * u * s * (1.0f + g * (1.0f - s)));
      d_up.v[k] = from_float<S>(dk * g * s);
    }
    store<S, W>(dx + at, d_gate);
    store<S, W>(dx + at + h, d_up);
  }
}

// --- Rotary embeddings, rotate-half layout -------------------------------------------------------
// x [batch, len, heads, 2 * half] with strides (sb, sl, sh, 1); out contiguous, same shape;
// cos, sin [len, half] f32. Out = (x1 cos - x2 sin, x2 cos + x1 sin) for the halves x1, x2 of a
// head; `sign` -1 rotates backwards (the transpose), which is the backward.

template <typename S, int W>
__device__ void rope(const S* x, S* out, const float* cos, const float* sin, float sign, i64 batch,
                     i64 len, i64 heads, i64 half, i64 sb, i64 sl, i64 sh) {
  const i64 per_head = half / W, items = batch * len * heads * per_head;
  const bool narrow = fits_32_bits(items);
  for (i64 i = first_item(); i < items; i += item_stride()) {
    const RowCol in_head = row_col(i, per_head, narrow), in_token = row_col(in_head.row, heads, narrow),
                 in_batch = row_col(in_token.row, len, narrow);
    const i64 j = in_head.col * W, head = in_token.col, pos = in_batch.col, b = in_batch.row;
    const S* in = x + b * sb + pos * sl + head * sh + j;
    S* o = out + ((b * len + pos) * heads + head) * 2 * half + j;
    Pack<S, W> x1 = load<S, W>(in), x2 = load<S, W>(in + half), o1, o2;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float c = cos[pos * half + j + k], s = sign * sin[pos * half + j + k];
      const float a = to_float(x1.v[k]), bk = to_float(x2.v[k]);
      o1.v[k] = from_float<S>(a * c - bk * s);
      o2.v[k] = from_float<S>(bk * c + a * s);
    }
    store<S, W>(o, o1);
    store<S, W>(o + half, o2);
  }
}

// --- Cross-entropy over logits [rows, vocab] (contiguous) ------------------------------------------

// (max, sum of exp(x - max)) pairs, merged.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float top = fmaxf(m, m2);
  s = s * expf(m - top) + s2 * expf(m2 - top);
  m = top;
}

// One block per row (blockDim a multiple of 32, at most 1024): the row's log-sum-exp in one pass
// (running max and sum), and its loss lse - logit[target]; NaN for a target outside the vocabulary.
template <typename S, int W>
__device__ void cross_entropy_forward(const S* logits, const i64* targets, float* lse, float* loss,
                                      i64 rows, i64 vocab) {
  __shared__ float shared_m[32], shared_s[32];
  for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
    const S* x = logits + row * vocab;
    float m = -3.402823466e38f, s = 0.0f;
    for (i64 c = threadIdx.x * static_cast<i64>(W); c < vocab; c += static_cast<i64>(blockDim.x) * W) {
      Pack<S, W> v = load<S, W>(x + c);
      float top = m;
#pragma unroll
      for (int k = 0; k < W; ++k) top = fmaxf(top, to_float(v.v[k]));
      s *= expf(m - top);
#pragma unroll
      for (int k = 0; k < W; ++k) s += expf(to_float(v.v[k]) - top);
      m = top;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      merge(m, s, __shfl_xor_sync(0xffffffffu, m, offset), __shfl_xor_sync(0xffffffffu, s, offset));
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    if (lane == 0) {
      shared_m[warp] = m;
      shared_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
      m = lane < warps ? shared_m[lane] : -3.402823466e38f;
      s = lane < warps ? shared_s[lane] : 0.0f;
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) {
        merge(m, s, __shfl_xor_sync(0xffffffffu, m, offset), __shfl_xor_sync(0xffffffffu, s, offset));
      }
      if (lane == 0) {
        const float row_lse = m + logf(s);
        const i64 t = targets[row];
        lse[row] = row_lse;
        loss[row] = t >= 0 && t < vocab ? row_lse - to_float(x[t]) : __int_as_float(0x7fc00000);
      }
    }
    __syncthreads();
  }
}

// grad = (softmax - onehot(target)) * scale[0], in the logits' dtype; `scale` stays on the device.
template <typename S, int W>
__device__ void cross_entropy_backward(const S* logits, const i64* targets, const float* lse,
                                       const float* scale, S* grad, i64 rows, i64 vocab) {
  const i64 items = rows * vocab / W;
  const bool narrow = fits_32_bits(rows * vocab);
  const float g = scale[0];
  for (i64 i = first_item(); i < items; i += item_stride()) {
    const i64 e = i * W;
    const RowCol at = row_col(e, vocab, narrow);
    const i64 col = at.col, t = targets[at.row];
    const float row_lse = lse[at.row];
    Pack<S, W> v = load<S, W>(logits + e), o;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float p = expf(to_float(v.v[k]) - row_lse);
      o.v[k] = from_float<S>((col + k == t ? p - 1.0f : p) * g);
    }
    store<S, W>(grad + e, o);
  }
}

// --- Entry points: <name>_<dtype>_<width> -----------------------------------------------------------

#define YIFLOW_ENTRY_POINTS(S, TAG, W)                                                             \
  extern "C" __global__ void swiglu_forward_##TAG##_##W(const S* x, S* out, i64 rows, i64 h) {    \
    swiglu_forward<S, W>(x, out, rows, h);                                                         \
  }                                                                                                \
  extern "C" __global__ void swiglu_backward_##TAG##_##W(const S* grad, const S* x, S* dx,        \
                                                         i64 rows, i64 h) {                        \
    swiglu_backward<S, W>(grad, x, dx, rows, h);                                                   \
  }                                                                                                \
  extern "C" __global__ void rope_##TAG##_##W(const S* x, S* out, const float* cos,               \
                                              const float* sin, float sign, i64 batch, i64 len,   \
                                              i64 heads, i64 half, i64 sb, i64 sl, i64 sh) {      \
    rope<S, W>(x, out, cos, sin, sign, batch, len, heads, half, sb, sl, sh);                       \
  }                                                                                                \
  extern "C" __global__ void cross_entropy_forward_##TAG##_##W(                                   \
      const S* logits, const i64* targets, float* lse, float* loss, i64 rows, i64 vocab) {        \
    cross_entropy_forward<S, W>(logits, targets, lse, loss, rows, vocab);                          \
  }                                                                                                \
  extern "C" __global__ void cross_entropy_backward_##TAG##_##W(                                  \
      const S* logits, const i64* targets, const float* lse, const float* scale, S* grad,         \
      i64 rows, i64 vocab) {                                                                       \
    cross_entropy_backward<S, W>(logits, targets, lse, scale, grad, rows, vocab);                  \
  }

YIFLOW_ENTRY_POINTS(bf16, bf16, 8)
YIFLOW_ENTRY_POINTS(bf16, bf16, 1)
YIFLOW_ENTRY_POINTS(float, f32, 4)
YIFLOW_ENTRY_POINTS(float, f32, 1)
