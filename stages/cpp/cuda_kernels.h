// The fused ops' CUDA kernels (fused_kernels.cu), compiled at run time with NVRTC for the GPU at
// hand and launched through the CUDA driver API on PyTorch's current stream. NVRTC and the driver
// are loaded with dlopen and their few functions declared here by hand: the worker is built
// without a CUDA toolkit and runs on machines without a GPU.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace yiflow::cuda {

// Elements per thread of the wide form of a kernel over `dtype` (one 16-byte access), or 0 when
// there is no kernel for that dtype (only bf16 and f32 have one).
int wide(at::ScalarType dtype);

// The entry point of fused_kernels.cu for `kernel` over `dtype` at `width`: "<kernel>_<bf16|f32>_<width>".
std::string entry_point(const char* kernel, at::ScalarType dtype, int width);

// True when NVRTC and the driver library could be loaded (a CUDA LibTorch is in the process).
bool available();

// Launches entry point `name` (e.g. "rope_bf16_8") on the current stream of `device` with
// `blocks` x `threads` and the kernel's arguments in `args` (pointers to each). The module is
// compiled on first use per device. Throws std::runtime_error saying what failed (with NVRTC's
// log for a compile error).
void launch(const at::Device& device, const std::string& name, std::int64_t blocks, int threads,
            void** args);

// Blocks that keep every multiprocessor of `device` busy with `threads`-thread blocks: the launch
// size of the grid-stride kernels, which loop over the rest.
std::int64_t resident_blocks(const at::Device& device, int threads);

}  // namespace yiflow::cuda
