//! With the `torch` feature, records where libtorch lives in the run path of this crate's test
//! binaries, so `cargo test -p yiflow-stages --features torch` runs without `LD_LIBRARY_PATH`
//! (torch-sys links the libraries, but its rpath reaches only its own targets). The worker's
//! build script does the same for the worker. When that libtorch has CUDA, the test binaries also
//! keep `libtorch_cuda.so` linked (the linker would drop it, as nothing names its symbols), so the
//! tests that need a GPU see one.
//!
//! With `torch` it also compiles `cpp/`, the bindings of what tch lacks (PyTorch's fused AdamW
//! kernel, custom autograd functions for the model's fused ops and MoE regrouping, the run-time
//! compiler of the CUDA kernels, the Kineto profiler), against the same libtorch headers and C++
//! ABI that torch-sys builds with.

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
    let lib = lib.and_then(|l| l.canonicalize().ok());
    #[cfg(feature = "torch")]
    compile_shim(lib.as_deref());
    if let Some(lib) = lib {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}

/// Builds the C++ shim. Headers come from `LIBTORCH_INCLUDE` (torch-sys's own variable) or the
/// `include` folder beside the libraries; the ABI flag follows torch-sys (`LIBTORCH_CXX11_ABI`, 1).
#[cfg(feature = "torch")]
fn compile_shim(lib: Option<&std::path::Path>) {
    const SOURCES: [&str; 5] = [
        "cpp/cuda_kernels.cpp",
        "cpp/expert_order.cpp",
        "cpp/fused_adamw.cpp",
        "cpp/fused_ops.cpp",
        "cpp/profiler.cpp",
    ];
    const KERNELS: &str = "cpp/fused_kernels.cu";
    for source in SOURCES
        .iter()
        .chain(&["cpp/shim.h", "cpp/cuda_kernels.h", KERNELS])
    {
        println!("cargo:rerun-if-changed={source}");
    }
    // The CUDA source, compiled at run time by NVRTC, as a C++ string literal to #include.
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernels = std::fs::read_to_string(KERNELS).expect("cpp/fused_kernels.cu is readable");
    assert!(
        !kernels.contains(")yiflow\""),
        "{KERNELS} contains the raw string's delimiter"
    );
    std::fs::write(
        out.join("fused_kernels.cu.inc"),
        format!("R\"yiflow({kernels})yiflow\"\n"),
    )
    .expect("OUT_DIR is writable");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = std::env::var_os("LIBTORCH_INCLUDE")
        .map(|i| PathBuf::from(i).join("include"))
        .or_else(|| lib.and_then(|l| l.parent()).map(|t| t.join("include")));
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .files(SOURCES)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false);
    build.include(&out);
    if let Some(include) = include {
        build.include(include);
    }
    build.compile("yiflow_torch_shim");
}
