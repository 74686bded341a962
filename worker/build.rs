//! Records where libtorch lives in the worker's run path, so `yiflow-worker` starts without
//! `LD_LIBRARY_PATH`: torch-sys links the libraries, but its rpath reaches only its own targets.
//! On a machine whose libtorch lives elsewhere (the GPU nodes), `LD_LIBRARY_PATH` still wins, as
//! the linker writes a `RUNPATH`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    let lib = std::env::var_os("LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(|t| PathBuf::from(t).join("lib")));
    // The link's target, so the path stays valid whichever checkout built the binary.
    match lib.as_ref().map(|l| (l, l.canonicalize())) {
        Some((_, Ok(lib))) => println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display()),
        Some((lib, Err(e))) => println!(
            "cargo:warning=libtorch's lib folder {} is missing ({e}): run scripts/install-libtorch.sh",
            lib.display()
        ),
        None => println!("cargo:warning=LIBTORCH is not set: run scripts/install-libtorch.sh"),
    }
}
