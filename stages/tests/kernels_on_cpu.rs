//! The elementwise CUDA kernels of `cpp/fused_kernels.cu` run on the CPU: their source is compiled
//! with the C++ compiler under a small emulation of CUDA's built-ins
//! (`cpp/tests/kernels_on_cpu.cpp`) and checked against double-precision forms, so a change to
//! their index arithmetic or math is tested where no GPU is. On a GPU the CUDA test
//! `on_cuda_the_kernels_match_the_plain_forms` checks the compiled kernels themselves.

use std::path::Path;
use std::process::Command;

#[test]
fn the_kernels_compute_swiglu_rope_and_the_loss_gradient() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = manifest.join("cpp/tests/kernels_on_cpu.cpp");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let binary = dir.path().join("kernels_on_cpu");
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".to_owned());
    let built = Command::new(&compiler)
        .args(["-std=c++17", "-O1", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler `{compiler}`: {e}"));
    assert!(
        built.status.success(),
        "the kernels do not compile as C++:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = Command::new(&binary).output().expect("the harness runs");
    assert!(
        run.status.success(),
        "the kernels differ from their reference forms:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
