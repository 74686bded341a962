// What every function of the shim shares: it returns 0 on success, or 1 with the C++ exception's
// message (PyTorch's, for a failing op) written NUL-terminated into the caller's buffer
// (`stages/src/shim.rs` reads it).
#pragma once

#include <cstddef>
#include <cstring>
#include <exception>

namespace yiflow {

template <typename F>
int guarded(F body, char* err, std::size_t err_len) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    if (err_len > 0) {
      std::strncpy(err, e.what(), err_len - 1);
      err[err_len - 1] = '\0';
    }
    return 1;
  }
}

}  // namespace yiflow
