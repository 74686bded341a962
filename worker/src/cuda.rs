//! Loads PyTorch's CUDA library at start-up. The worker links `libtorch_cuda.so` but uses none of
//! its symbols directly, so the linker drops it (`--as-needed`) and LibTorch would then report no
//! CUDA at all. Loading it by hand registers the CUDA backend. On a CPU-only LibTorch the library
//! is missing and that is fine.

use std::ffi::CStr;

/// The library that registers LibTorch's CUDA backend when loaded.
const LIBTORCH_CUDA: &CStr = c"libtorch_cuda.so";

/// Loads `libtorch_cuda.so` (found through the binary's run path or `LD_LIBRARY_PATH`) for the
/// whole process; the error is the loader's message when it cannot.
// dlopen and dlerror are C functions; nothing in Rust's standard library loads a shared object.
#[allow(unsafe_code)]
pub fn load() -> Result<(), String> {
    // SAFETY: the name is a NUL-terminated string that outlives the call, and the flags are valid.
    // The handle is deliberately never closed: the backend must stay registered until exit.
    let handle =
        unsafe { libc::dlopen(LIBTORCH_CUDA.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if !handle.is_null() {
        return Ok(());
    }
    // SAFETY: dlerror returns null or a NUL-terminated message valid until the next dl* call on
    // this thread; it is copied out at once.
    let message = unsafe {
        let error = libc::dlerror();
        if error.is_null() {
            None
        } else {
            Some(CStr::from_ptr(error).to_string_lossy().into_owned())
        }
    };
    Err(message.unwrap_or_else(|| format!("cannot load {}", LIBTORCH_CUDA.to_string_lossy())))
}
