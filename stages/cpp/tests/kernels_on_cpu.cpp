// Runs the elementwise kernels of fused_kernels.cu on the CPU, to check their index arithmetic and
// math where no GPU is (CI): CUDA's few built-ins the kernels use are defined here, and each
// kernel's grid-stride loop is run sequentially for every block of a small grid with one thread
// per block, so every element is visited by the same index code the GPU runs. Checked against
// double-precision forms of SwiGLU (forward, backward), RoPE (on a strided view, backwards) and
// the cross-entropy gradient, for both the 16-byte and the one-element widths. The loss's forward
// reduces across a warp, which this cannot emulate; the CUDA test covers it.
//
// Built and run by stages/tests/kernels_on_cpu.rs; prints what differs and exits 1 on a mismatch.

#include <math.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static

struct Dim {
  unsigned x = 0, y = 0, z = 0;
};
Dim blockIdx, threadIdx, gridDim{1, 1, 1}, blockDim{1, 1, 1};

inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
// Only for the loss's forward to compile; it is not run.
inline float __shfl_xor_sync(unsigned, float v, int) { return v; }
inline void __syncthreads() {}

#include "../fused_kernels.cu"

namespace {

int failures = 0;

void expect_close(const char* what, long at, double got, double want, double tol) {
  if (std::fabs(got - want) > tol * (1.0 + std::fabs(want)) && failures++ < 10) {
    std::printf("%s at %ld: %g, want %g\n", what, at, got, want);
  }
}

double value(bf16 x) { return to_float(x); }

// Every block of a `blocks`-block grid in turn.
template <typename F>
void launch(unsigned blocks, F kernel) {
  gridDim.x = blocks;
  for (unsigned b = 0; b < blocks; ++b) {
    blockIdx.x = b;
    kernel();
  }
}

template <int W>
void check(long rows, long h, long half, long vocab) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  auto fill = [&](std::vector<bf16>& v) {
    for (auto& e : v) e = from_float<bf16>(normal(rng));
  };

  std::vector<bf16> x(rows * 2 * h), grad(rows * h), out(rows * h), dx(rows * 2 * h);
  fill(x);
  fill(grad);
  launch(3, [&] { swiglu_forward<bf16, W>(x.data(), out.data(), rows, h); });
  launch(3, [&] { swiglu_backward<bf16, W>(grad.data(), x.data(), dx.data(), rows, h); });
  for (long r = 0; r < rows; ++r) {
    for (long c = 0; c < h; ++c) {
      const double g = value(x[r * 2 * h + c]), u = value(x[r * 2 * h + h + c]);
      const double d = value(grad[r * h + c]), s = 1.0 / (1.0 + std::exp(-g));
      expect_close("SwiGLU forward", r * h + c, value(out[r * h + c]), g * s * u, 1e-2);
      expect_close("SwiGLU gate gradient", r * h + c, value(dx[r * 2 * h + c]),
                   d * u * s * (1.0 + g * (1.0 - s)), 1e-2);
      expect_close("SwiGLU up gradient", r * h + c, value(dx[r * 2 * h + h + c]), d * g * s,
                   1e-2);
    }
  }

  // The first `heads` of `heads + 2` packed heads: a strided view, as attention passes it.
  const long batch = 2, len = 5, heads = 3, packed = heads + 2, d = 2 * half;
  std::vector<bf16> q(batch * len * packed * d), rotated(batch * len * heads * d);
  fill(q);
  std::vector<float> cos(len * half), sin(len * half);
  for (long i = 0; i < len * half; ++i) {
    cos[i] = std::cos(0.1 * i);
    sin[i] = std::sin(0.1 * i);
  }
  launch(2, [&] {
    rope<bf16, W>(q.data(), rotated.data(), cos.data(), sin.data(), -1.0f, batch, len, heads, half,
                  len * packed * d, packed * d, d);
  });
  for (long t = 0; t < batch * len; ++t) {
    const long pos = t % len;
    for (long head = 0; head < heads; ++head) {
      const bf16* in = &q[(t * packed + head) * d];
      const bf16* o = &rotated[(t * heads + head) * d];
      for (long j = 0; j < half; ++j) {
        const double a = value(in[j]), b = value(in[j + half]);
        const double c = cos[pos * half + j], s = -sin[pos * half + j];
        expect_close("RoPE first half", j, value(o[j]), a * c - b * s, 2e-2);
        expect_close("RoPE second half", j, value(o[j + half]), b * c + a * s, 2e-2);
      }
    }
  }

  std::vector<bf16> logits(rows * vocab), dlogits(rows * vocab);
  fill(logits);
  std::vector<long long> targets(rows);
  std::vector<float> lse(rows);
  const float scale = 0.25f;
  for (long r = 0; r < rows; ++r) {
    targets[r] = static_cast<long long>(rng() % vocab);
    double top = -1e300, sum = 0.0;
    for (long c = 0; c < vocab; ++c) top = std::fmax(top, value(logits[r * vocab + c]));
    for (long c = 0; c < vocab; ++c) sum += std::exp(value(logits[r * vocab + c]) - top);
    lse[r] = static_cast<float>(top + std::log(sum));
  }
  launch(3, [&] {
    cross_entropy_backward<bf16, W>(logits.data(), targets.data(), lse.data(), &scale,
                                    dlogits.data(), rows, vocab);
  });
  for (long r = 0; r < rows; ++r) {
    for (long c = 0; c < vocab; ++c) {
      const double p = std::exp(value(logits[r * vocab + c]) - lse[r]);
      const double want = (c == targets[r] ? p - 1.0 : p) * scale;
      expect_close("cross-entropy gradient", r * vocab + c, value(dlogits[r * vocab + c]), want,
                   1e-2);
    }
  }
}

}  // namespace

int main() {
  // The 32-bit and 64-bit forms of the index split agree, up to the last 32-bit element.
  for (long e : {0L, 5L, 4294967295L - 7}) {
    for (long n : {3L, 96L, 4096L}) {
      const RowCol narrow = row_col(e, n, true), wide = row_col(e, n, false);
      if ((narrow.row != wide.row || narrow.col != wide.col || wide.row * n + wide.col != e) &&
          failures++ < 10) {
        std::printf("row_col(%ld, %ld) differs between 32 and 64 bits\n", e, n);
      }
    }
  }
  check<8>(7, 96, 16, 1024);
  check<1>(7, 45, 6, 1001);
  std::printf("%d mismatches\n", failures);
  return failures == 0 ? 0 : 1;
}
