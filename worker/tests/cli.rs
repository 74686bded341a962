//! The worker binary as the engine and a person run it: it must start with no `LD_LIBRARY_PATH`
//! (its run path names the libtorch it was built against) and see LibTorch work.

use std::process::Command;

fn worker() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_yiflow-worker"));
    command.env_remove("LD_LIBRARY_PATH");
    command
}

/// Runs a benchmark subcommand that prints one JSON object; it must succeed.
fn json_report(command: &mut Command) -> serde_json::Value {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
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

#[test]
fn bench_train_reports_throughput_and_a_falling_loss() {
    let report = json_report(
        worker()
            .args([
                "bench-train",
                "--preset",
                "tiny",
                "--seq",
                "32",
                "--batch",
                "2",
            ])
            .args(["--steps", "4", "--warmup", "2", "--device", "cpu", "--json"]),
    );
    assert_eq!(report["implementation"], "yiflow");
    assert_eq!(report["variant"], "grouped-mm");
    assert_eq!(report["dtype"], "f32");
    // Every parameter of the tiny preset is in the optimizer (config.rs's analytic count).
    assert_eq!(report["params"], 1_905_728);
    let tokens_per_s = report["tokens_per_s"].as_f64().unwrap();
    let ms_per_step = report["ms_per_step"].as_f64().unwrap();
    assert!(tokens_per_s > 0.0 && ms_per_step > 0.0, "{report}");
    assert!(
        (tokens_per_s * ms_per_step / 1000.0 - 64.0).abs() < 1e-6,
        "{report}"
    );
    let mfu = report["mfu"].as_f64().unwrap();
    let flops = report["flops_per_token"].as_f64().unwrap();
    assert!(
        (mfu - tokens_per_s * flops / 989e12).abs() < 1e-12,
        "{report}"
    );
    // Six steps on one batch: AdamW must have lowered the loss from ln(256) ~ 5.5.
    let (first, last) = (
        report["loss_first"].as_f64().unwrap(),
        report["loss_last"].as_f64().unwrap(),
    );
    assert!(
        (first - 256f64.ln()).abs() < 0.5 && last < first - 0.1,
        "{report}"
    );
}

#[test]
fn bench_train_names_the_setting_at_fault() {
    for (args, message) in [
        (
            &["--preset", "dense-1b"][..],
            "unknown preset `dense-1b` (known: tiny, dense-125m, moe-125m)",
        ),
        (
            &["--preset", "tiny", "--seq", "512", "--device", "cpu"][..],
            "--seq 512 is longer than preset `tiny`'s max-seq 256",
        ),
        (
            &["--preset", "tiny", "--batch", "0", "--device", "cpu"][..],
            "--batch must be at least 1, found 0",
        ),
    ] {
        let out = worker().arg("bench-train").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_checkpoint_times_both_saves_of_the_whole_state_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let report = json_report(
        worker()
            .args(["bench-checkpoint", "--preset", "tiny", "--seq", "32"])
            .args([
                "--batch",
                "2",
                "--every",
                "2",
                "--checkpoints",
                "3",
                "--json",
            ])
            .arg("--dir")
            .arg(dir.path()),
    );
    // Weights and both AdamW moments of every tiny parameter, in f32.
    assert_eq!(report["state_elements"], 3 * 1_905_728, "{report}");
    assert_eq!(report["state_bytes"], 4 * 3 * 1_905_728, "{report}");
    for side in ["sync_each_ms", "stall_each_ms"] {
        let each = report[side].as_array().unwrap();
        assert_eq!(each.len(), 3, "{report}");
        assert!(each.iter().all(|ms| ms.as_f64().unwrap() > 0.0), "{report}");
    }
    // The copy into host memory is part of a synchronous save.
    let copy = report["copy_ms"].as_f64().unwrap();
    assert!(
        copy > 0.0 && copy <= report["sync_ms"].as_f64().unwrap(),
        "{report}"
    );
    let interval = report["interval_ms"].as_f64().unwrap();
    assert!(
        (interval - 2.0 * report["step_ms"].as_f64().unwrap()).abs() < 1e-9,
        "{report}"
    );
    let ratio = report["ratio"].as_f64().unwrap();
    let (sync, stall) = (
        report["sync_ms"].as_f64().unwrap(),
        report["stall_ms"].as_f64().unwrap(),
    );
    assert!((ratio - stall / sync).abs() < 1e-9, "{report}");
    // The checkpoints it wrote are gone; the folder given stays.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bench_checkpoint_names_the_setting_at_fault() {
    for (args, message) in [
        (
            &["--layers", "0"][..],
            "--layers must be at least 1, found 0",
        ),
        (&["--every", "0"][..], "--every must be at least 1, found 0"),
        (&["--preset", "huge"][..], "unknown preset `huge`"),
    ] {
        let out = worker()
            .arg("bench-checkpoint")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
