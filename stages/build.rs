//! With the `torch` feature, records where libtorch lives in the run path of this crate's test
//! binaries, so `cargo test -p yiflow-stages --features torch` runs without `LD_LIBRARY_PATH`
//! (torch-sys links the libraries, but its rpath reaches only its own targets). The worker's
//! build script does the same for the worker. When that libtorch has CUDA, the test binaries also
//! keep `libtorch_cuda.so` linked (the linker would drop it, as nothing names its symbols), so the
//! tests that need a GPU see one.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let lib = std::env::var_os("LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(|t| PathBuf::from(t).join("lib")));
    // The link's target, so the path stays valid whichever checkout built the binary.
    if let Some(lib) = lib.and_then(|l| l.canonicalize().ok()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
