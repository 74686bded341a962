//! Records where libtorch lives in the worker's run path, so `yiflow-worker` starts without
//! LD_LIBRARY_PATH. torch-sys links the libraries but its rpath reaches only its own targets.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    let lib = std::env::var_os("LIBTORCH_LIB")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(|t| std::path::PathBuf::from(t).join("lib")));
    if let Some(lib) = lib.and_then(|l| l.canonicalize().ok()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
