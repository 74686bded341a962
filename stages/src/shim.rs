//! Calling into `cpp/`, the C++ shim over the parts of LibTorch that tch 0.24 does not bind: every
//! shim function returns 0 on success, or non-zero with PyTorch's message written, NUL-terminated,
//! into a buffer the caller passes with its length.

use std::ffi::{CStr, c_char, c_int, c_void};

use tch::Tensor;

/// Calls `f` with an error buffer and its length; `Err` holds the message a failing call wrote.
pub(crate) fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut err = [0 as c_char; 512];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    #[allow(clippy::cast_sign_loss)] // c_char is i8 on x86-64: the same bytes
    let bytes = err.map(|c| c as u8);
    Err(CStr::from_bytes_until_nul(&bytes).map_or_else(
        |_| "the C++ call failed without a message".to_owned(),
        |m| m.to_string_lossy().into_owned(),
    ))
}

/// Runs a shim function that writes a new tensor, and takes ownership of it. A failure is a shape
/// or dtype the model never passes, so it panics with PyTorch's message, as tch's own ops do.
#[allow(unsafe_code)]
pub(crate) fn new_tensor(
    what: &str,
    f: impl FnOnce(*mut *mut c_void, *mut c_char, usize) -> c_int,
) -> Tensor {
    let mut out: *mut c_void = std::ptr::null_mut();
    if let Err(e) = call(|err, len| f(&raw mut out, err, len)) {
        panic!("{what} failed: {e}");
    }
    // SAFETY: on success the shim stored a pointer to a heap-allocated `at::Tensor` it no longer
    // owns, which is what tch's `Tensor` wraps (and deletes on drop).
    unsafe { Tensor::from_ptr(out.cast()) }
}
