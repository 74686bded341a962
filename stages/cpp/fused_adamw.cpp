// PyTorch's fused AdamW kernel (`at::_fused_adamw_`, what `torch.optim.AdamW(fused=True)` runs),
// for the one op tch 0.24 does not bind that the trainer needs. tch's tensors are `at::Tensor*`
// on the C side (libtch's `typedef torch::Tensor *tensor`), so the flat buffers pass straight in.
//
// One call updates a whole flat buffer: weights, first and second moments in place, in one pass
// that reads the gradient once, where the same update in separate ATen ops makes eight passes and
// writes three full-size temporaries.

#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adamw.h>

#include <cstddef>

#include "shim.h"

extern "C" {

// Returns 0, or 1 with the reason in `err` (at most `err_len` bytes, NUL-terminated).
int yiflow_fused_adamw(const at::Tensor* weights, const at::Tensor* grads, const at::Tensor* m,
                       const at::Tensor* v, const at::Tensor* step, double lr, double beta1,
                       double beta2, double weight_decay, double eps, char* err,
                       std::size_t err_len) {
  return yiflow::guarded(
      [&] {
        at::_fused_adamw_({*weights}, {*grads}, {*m}, {*v}, {}, {*step}, lr, beta1, beta2,
                          weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
      },
      err, err_len);
}
}
