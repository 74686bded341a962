//! The worker binary as the engine and a person run it: it must start with no `LD_LIBRARY_PATH`
//! (its run path names the libtorch it was built against) and see LibTorch work.

use std::process::Command;

fn worker() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_yiflow-worker"));
    command.env_remove("LD_LIBRARY_PATH");
    command
}

#[test]
fn version_names_the_libtorch_binding() {
    let out = worker().arg("--version").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "yiflow-worker 0.1.0 (tch 0.24.0, for PyTorch 2.11.0)\n"
    );
}

#[test]
fn doctor_finds_libtorch_without_library_path() {
    let out = worker().arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("libtorch:        2.11.0"), "{stdout}");
    assert!(stdout.contains("CUDA devices:"), "{stdout}");
    assert!(stdout.contains("compute cpu      ok"), "{stdout}");
}

#[test]
fn exec_stage_outside_a_run_says_what_is_missing() {
    let out = worker()
        .arg("exec-stage")
        .env_remove("YIFLOW_DEVICES")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("YIFLOW_DEVICES is not set: stages are started by `yiflow run`"),
        "{stderr}"
    );
}
