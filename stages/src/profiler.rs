//! PyTorch's Kineto profiler through `cpp/profiler.cpp` (tch binds none of it): records the CPU ops
//! and CUDA kernels between [`Profiler::start`] and [`Profiler::finish`] and writes them as a Chrome
//! trace, the file `torch.profiler` exports, so one tool (bench/train-throughput/kernels.py)
//! summarises either side of the training benchmark.

use std::ffi::{CString, c_char, c_int};
use std::path::Path;

use crate::shim;

#[allow(unsafe_code)]
unsafe extern "C" {
    fn yiflow_profiler_start(cuda: c_int, err: *mut c_char, err_len: usize) -> c_int;
    fn yiflow_profiler_stop(path: *const c_char, err: *mut c_char, err_len: usize) -> c_int;
}

/// A recording in progress. Dropped without [`Profiler::finish`], it stops and keeps nothing.
#[derive(Debug)]
pub struct Profiler {
    running: bool,
}

impl Profiler {
    /// Starts recording CPU ops, and CUDA kernels when `cuda`.
    #[allow(unsafe_code)]
    pub fn start(cuda: bool) -> Result<Self, String> {
        // SAFETY: the shim writes at most `len` bytes into the buffer `call` passes.
        shim::call(|err, len| unsafe { yiflow_profiler_start(c_int::from(cuda), err, len) })?;
        Ok(Self { running: true })
    }

    /// Stops recording and writes the Chrome trace to `path`.
    pub fn finish(mut self, path: &Path) -> Result<(), String> {
        self.running = false;
        stop(path)
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if self.running {
            let _ = stop(Path::new("/dev/null"));
        }
    }
}

#[allow(unsafe_code)]
fn stop(path: &Path) -> Result<(), String> {
    let path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: `path` is a NUL-terminated string alive for the call; the shim writes at most `len`
    // bytes into the buffer `call` passes.
    shim::call(|err, len| unsafe { yiflow_profiler_stop(path.as_ptr(), err, len) })
}
