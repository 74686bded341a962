// See cuda_kernels.h.

#include "cuda_kernels.h"

#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <dirent.h>
#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

namespace yiflow::cuda {
namespace {

// fused_kernels.cu as a string literal, made by build.rs.
constexpr const char* kSource =
#include "fused_kernels.cu.inc"
    ;

// --- The few driver and NVRTC declarations used (cuda.h and nvrtc.h, CUDA 12 and 13) ------------

using CUresult = int;
using CUdevice = int;
using CUcontext = struct CUctx_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;
using nvrtcResult = int;
using nvrtcProgram = struct _nvrtcProgram*;

constexpr int kAttributeMultiprocessors = 16;  // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
constexpr int kAttributeMajor = 75;            // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kAttributeMinor = 76;            // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR

struct Driver {
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice);
  CUresult (*cuCtxGetCurrent)(CUcontext*);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void**, void**);
  CUresult (*cuGetErrorString)(CUresult, const char**);
};

struct Nvrtc {
  nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram*, const char*, const char*, int,
                                    const char* const*, const char* const*);
  nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int, const char* const*);
  nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, std::size_t*);
  nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char*);
  nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, std::size_t*);
  nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char*);
  nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram*);
  const char* (*nvrtcGetErrorString)(nvrtcResult);
};

template <typename F>
bool resolve(void* library, const char* name, F& slot) {
  slot = reinterpret_cast<F>(dlsym(library, name));
  return slot != nullptr;
}

// The folder of the loaded CUDA runtime (libcudart), where a pip-installed PyTorch also keeps
// NVRTC (nvidia/cu13/lib); empty when none is loaded.
std::string cudart_folder() {
  std::string found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* out) {
        const char* name = info->dlpi_name;
        if (name != nullptr && std::strstr(name, "/libcudart.so") != nullptr) {
          std::string path(name);
          *static_cast<std::string*>(out) = path.substr(0, path.rfind('/'));
          return 1;
        }
        return 0;
      },
      &found);
  return found;
}

// NVRTC, preferring the copy beside the loaded CUDA runtime (the same CUDA release as PyTorch's).
// Its compiler builtins are loaded first from the same folder: NVRTC looks for them by name only,
// which finds a library already loaded but not that folder, outside the library path.
void* open_nvrtc() {
  const char* names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
  const std::string folder = cudart_folder();
  if (!folder.empty()) {
    if (DIR* dir = opendir(folder.c_str())) {
      while (const dirent* entry = readdir(dir)) {
        const std::string file = entry->d_name;
        if (file.rfind("libnvrtc-builtins.so.", 0) == 0 && file.find(".alt.") == std::string::npos) {
          dlopen((folder + "/" + file).c_str(), RTLD_NOW | RTLD_GLOBAL);
        }
      }
      closedir(dir);
    }
    for (const char* name : names) {
      if (void* library = dlopen((folder + "/" + name).c_str(), RTLD_NOW | RTLD_LOCAL)) {
        return library;
      }
    }
  }
  for (const char* name : names) {
    if (void* library = dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
      return library;
    }
  }
  return nullptr;
}

class Runtime {
 public:
  // The process's runtime, or null when the driver or NVRTC cannot be loaded.
  static Runtime* get() {
    static Runtime* runtime = load();
    return runtime;
  }

  void launch(const at::Device& device, const std::string& name, std::int64_t blocks, int threads,
              void** args) {
    c10::DeviceGuard guard(device);
    make_context_current(device.index());
    CUfunction function = this->function(device.index(), name);
    c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
    auto stream = static_cast<CUstream>(impl.getStream(device).native_handle());
    check(driver_.cuLaunchKernel(function, static_cast<unsigned>(blocks), 1, 1,
                                 static_cast<unsigned>(threads), 1, 1, 0, stream, args, nullptr),
          "launching " + name);
  }

  std::int64_t multiprocessors(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& count = multiprocessors_[device];
    if (count == 0) {
      CUdevice handle = 0;
      check(driver_.cuDeviceGet(&handle, device), "finding the device");
      check(driver_.cuDeviceGetAttribute(&count, kAttributeMultiprocessors, handle),
            "counting multiprocessors");
    }
    return count;
  }

 private:
  static Runtime* load() {
    void* libcuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    void* libnvrtc = open_nvrtc();
    if (libcuda == nullptr || libnvrtc == nullptr) {
      return nullptr;
    }
    auto runtime = std::make_unique<Runtime>();
    Driver& d = runtime->driver_;
    Nvrtc& n = runtime->nvrtc_;
    const bool complete =
        resolve(libcuda, "cuDeviceGet", d.cuDeviceGet) &&
        resolve(libcuda, "cuDeviceGetAttribute", d.cuDeviceGetAttribute) &&
        resolve(libcuda, "cuCtxGetCurrent", d.cuCtxGetCurrent) &&
        resolve(libcuda, "cuCtxSetCurrent", d.cuCtxSetCurrent) &&
        resolve(libcuda, "cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain) &&
        resolve(libcuda, "cuModuleLoadData", d.cuModuleLoadData) &&
        resolve(libcuda, "cuModuleGetFunction", d.cuModuleGetFunction) &&
        resolve(libcuda, "cuLaunchKernel", d.cuLaunchKernel) &&
        resolve(libcuda, "cuGetErrorString", d.cuGetErrorString) &&
        resolve(libnvrtc, "nvrtcCreateProgram", n.nvrtcCreateProgram) &&
        resolve(libnvrtc, "nvrtcCompileProgram", n.nvrtcCompileProgram) &&
        resolve(libnvrtc, "nvrtcGetProgramLogSize", n.nvrtcGetProgramLogSize) &&
        resolve(libnvrtc, "nvrtcGetProgramLog", n.nvrtcGetProgramLog) &&
        resolve(libnvrtc, "nvrtcGetCUBINSize", n.nvrtcGetCUBINSize) &&
        resolve(libnvrtc, "nvrtcGetCUBIN", n.nvrtcGetCUBIN) &&
        resolve(libnvrtc, "nvrtcDestroyProgram", n.nvrtcDestroyProgram) &&
        resolve(libnvrtc, "nvrtcGetErrorString", n.nvrtcGetErrorString);
    return complete ? runtime.release() : nullptr;
  }

  void check(CUresult result, const std::string& what) const {
    if (result != 0) {
      const char* message = nullptr;
      driver_.cuGetErrorString(result, &message);
      throw std::runtime_error(what + ": CUDA error " + std::to_string(result) + " (" +
                               (message != nullptr ? message : "unknown") + ")");
    }
  }

  void check(nvrtcResult result, nvrtcProgram program, const std::string& what) const {
    if (result != 0) {
      std::string log;
      std::size_t size = 0;
      if (program != nullptr && nvrtc_.nvrtcGetProgramLogSize(program, &size) == 0 && size > 1) {
        log.resize(size);
        nvrtc_.nvrtcGetProgramLog(program, log.data());
        log.resize(size - 1);
      }
      throw std::runtime_error(what + ": " + nvrtc_.nvrtcGetErrorString(result) +
                               (log.empty() ? "" : "\n" + log));
    }
  }

  // PyTorch makes the device's primary context current on the threads it uses; this covers a
  // thread where nothing has yet.
  void make_context_current(int device) {
    CUcontext context = nullptr;
    check(driver_.cuCtxGetCurrent(&context), "reading the current context");
    if (context == nullptr) {
      CUdevice handle = 0;
      check(driver_.cuDeviceGet(&handle, device), "finding the device");
      check(driver_.cuDevicePrimaryCtxRetain(&context, handle), "retaining the primary context");
      check(driver_.cuCtxSetCurrent(context), "making the primary context current");
    }
  }

  CUfunction function(int device, const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = functions_.find({device, name});
    if (found != functions_.end()) {
      return found->second;
    }
    auto module = modules_.find(device);
    if (module == modules_.end()) {
      module = modules_.emplace(device, compile(device)).first;
    }
    CUfunction function = nullptr;
    check(driver_.cuModuleGetFunction(&function, module->second, name.c_str()),
          "finding kernel " + name);
    functions_.emplace(std::make_pair(device, name), function);
    return function;
  }

  // Compiles fused_kernels.cu into machine code for `device`'s architecture and loads it.
  CUmodule compile(int device) {
    CUdevice handle = 0;
    int major = 0, minor = 0;
    check(driver_.cuDeviceGet(&handle, device), "finding the device");
    check(driver_.cuDeviceGetAttribute(&major, kAttributeMajor, handle), "reading the device");
    check(driver_.cuDeviceGetAttribute(&minor, kAttributeMinor, handle), "reading the device");
    const std::string arch =
        "--gpu-architecture=sm_" + std::to_string(major) + std::to_string(minor);
    const char* options[] = {arch.c_str(), "--std=c++17"};
    nvrtcProgram program = nullptr;
    check(nvrtc_.nvrtcCreateProgram(&program, kSource, "fused_kernels.cu", 0, nullptr, nullptr),
          nullptr, "creating the NVRTC program");
    std::vector<char> cubin;
    try {
      check(nvrtc_.nvrtcCompileProgram(program, 2, options), program,
            "compiling fused_kernels.cu for sm_" + std::to_string(major) + std::to_string(minor));
      std::size_t size = 0;
      check(nvrtc_.nvrtcGetCUBINSize(program, &size), program, "reading the machine code");
      cubin.resize(size);
      check(nvrtc_.nvrtcGetCUBIN(program, cubin.data()), program, "reading the machine code");
    } catch (...) {
      nvrtc_.nvrtcDestroyProgram(&program);
      throw;
    }
    nvrtc_.nvrtcDestroyProgram(&program);
    CUmodule module = nullptr;
    check(driver_.cuModuleLoadData(&module, cubin.data()), "loading the compiled kernels");
    return module;
  }

  Driver driver_{};
  Nvrtc nvrtc_{};
  std::mutex mutex_;
  std::map<int, CUmodule> modules_;
  std::map<std::pair<int, std::string>, CUfunction> functions_;
  std::map<int, int> multiprocessors_;
};

}  // namespace

int wide(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16:
      return 8;
    case at::kFloat:
      return 4;
    default:
      return 0;
  }
}

std::string entry_point(const char* kernel, at::ScalarType dtype, int width) {
  return std::string(kernel) + (dtype == at::kBFloat16 ? "_bf16_" : "_f32_") + std::to_string(width);
}

bool available() { return Runtime::get() != nullptr; }

void launch(const at::Device& device, const std::string& name, std::int64_t blocks, int threads,
            void** args) {
  Runtime* runtime = Runtime::get();
  if (runtime == nullptr) {
    throw std::runtime_error("NVRTC or the CUDA driver library could not be loaded");
  }
  runtime->launch(device, name, std::max<std::int64_t>(blocks, 1), threads, args);
}

std::int64_t resident_blocks(const at::Device& device, int threads) {
  Runtime* runtime = Runtime::get();
  const std::int64_t sms = runtime != nullptr ? runtime->multiprocessors(device.index()) : 1;
  // 2048 threads per multiprocessor on every GPU since Volta's; twice that in flight hides the
  // tail of a wave.
  return sms * 2 * (2048 / threads);
}

}  // namespace yiflow::cuda
