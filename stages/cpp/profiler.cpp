// PyTorch's Kineto profiler (what `torch.profiler.profile` drives), for tch, which binds none of it:
// start recording CPU ops and CUDA kernels, stop and write a Chrome trace (the JSON that
// `chrome://tracing`, Perfetto and bench/train-throughput/kernels.py read).

#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstddef>
#include <set>
#include <string>

#include "shim.h"

extern "C" {

// Starts recording CPU ops, and CUDA kernels when `cuda` is non-zero. Returns 0, or 1 with the
// reason in `err` (at most `err_len` bytes, NUL-terminated).
int yiflow_profiler_start(int cuda, char* err, std::size_t err_len) {
  return yiflow::guarded(
      [&] {
        torch::profiler::impl::ProfilerConfig config(
            torch::profiler::impl::ProfilerState::KINETO);
        using torch::profiler::impl::ActivityType;
        std::set<ActivityType> activities{ActivityType::CPU};
        if (cuda != 0) {
          activities.insert(ActivityType::CUDA);
        }
        torch::autograd::profiler::prepareProfiler(config, activities);
        torch::autograd::profiler::enableProfiler(config, activities);
      },
      err, err_len);
}

// Stops recording and writes the Chrome trace to `path` (NUL-terminated). Returns 0, or 1 with the
// reason in `err`.
int yiflow_profiler_stop(const char* path, char* err, std::size_t err_len) {
  return yiflow::guarded(
      [&] { torch::autograd::profiler::disableProfiler()->save(std::string(path)); }, err,
      err_len);
}
}
