//! End-to-end tests of the `pretrain` kind: the real `yiflow` binary runs a tiny recipe (synthetic
//! source -> bpe -> tokenize -> pretrain) whose training runs in `yiflow-worker`.
//!
//! They need the worker built beside `yiflow` (`cargo build -p yiflow-worker` before `cargo test`),
//! or `YIFLOW_WORKER` naming it. Without it they are skipped with a notice — except where `CI` or
//! `YIFLOW_REQUIRE_WORKER` is set (scripts/test.sh sets it): there a missing worker fails them, so CI
//! never passes without running them.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Project, Run, alive, kill_group, ran, wait_for};
use serde_json::Value;

const RECIPE: &str = r#"
recipe tiny { workspace ".yiflow"; devices "cpu"; seed 7 }
model m { preset "tiny"; vocab 512; max-seq 128 }
stage corpus kind=source { synthetic stories docs=400 }
stage tokenizer kind=bpe { input corpus; vocab 512 }
stage tokens kind=tokenize { input corpus tokenizer; validation 0.05 }
stage pretrain kind=pretrain {
    input tokens tokenizer
    model m
    phase initial tokens=10240 lr=3e-3 warmup=4 seq=64 batch=8
    phase intermediate tokens=4096 seq=128 batch=4
    phase decay tokens=2048 lr-end=0
    micro-batch 4
    checkpoint every=5 keep=2
    rollback spike=3.0 max=ROLLBACKS
    eval every=10 batches=2
}
"#;

fn recipe(max_rollbacks: u32) -> String {
    RECIPE.replace("ROLLBACKS", &max_rollbacks.to_string())
}

/// The worker the engine will start, if built.
fn worker() -> Option<PathBuf> {
    let path = std::env::var_os("YIFLOW_WORKER").map_or_else(
        || Path::new(env!("CARGO_BIN_EXE_yiflow")).with_file_name("yiflow-worker"),
        PathBuf::from,
    );
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none() && std::env::var_os("YIFLOW_REQUIRE_WORKER").is_none(),
        "{} is missing: CI must `cargo build -p yiflow-worker` before `cargo test`",
        path.display()
    );
    eprintln!(
        "skipped: {} is not built (cargo build -p yiflow-worker)",
        path.display()
    );
    None
}

/// The artifact folder of `stage` (the one whose files include `marker`).
fn artifact(p: &Project, marker: &str) -> PathBuf {
    std::fs::read_dir(p.path().join(".yiflow/artifacts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|d| d.join(marker).is_file())
        .unwrap_or_else(|| panic!("no artifact holds {marker}"))
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (step, loss) of every row of an artifact's metrics, losses as written.
fn losses(dir: &Path) -> Vec<(u64, String)> {
    jsonl(&dir.join("metrics.jsonl"))
        .iter()
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].to_string()))
        .collect()
}

fn run_ok(p: &Project) -> Run {
    let run = p.yiflow("run", &[]);
    assert_eq!(
        run.code,
        0,
        "{}\n{}",
        run.stderr,
        p.yiflow("log", &["pretrain"]).stdout
    );
    run
}

/// Complete checkpoints of the pretrain stage: the highest step, if any.
fn newest_checkpoint(p: &Project) -> Option<u64> {
    let root = p.path().join(".yiflow/checkpoints");
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .flat_map(|fp| std::fs::read_dir(fp.path()).into_iter().flatten().flatten())
        .filter(|c| c.path().join("manifest.json").is_file())
        .filter_map(|c| {
            c.file_name()
                .to_string_lossy()
                .strip_prefix("step-")
                .and_then(|s| s.parse().ok())
        })
        .max()
}

/// Children of `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|s| {
                s.rsplit(") ")
                    .next()
                    .and_then(|rest| rest.split(' ').nth(1))
                    .and_then(|ppid| ppid.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

#[test]
fn a_tiny_recipe_trains_and_writes_weights_config_and_metrics() {
    if worker().is_none() {
        return;
    }
    let p = Project::new(&recipe(20));
    let check = p.yiflow("check", &[]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let run = run_ok(&p);
    assert_eq!(ran(&run), ["corpus", "pretrain", "tokenizer", "tokens"]);
    let dir = artifact(&p, "model.safetensors");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["vocab"], 512);
    assert!(dir.join("tokenizer.json").is_file());
    let rows = jsonl(&dir.join("metrics.jsonl"));
    // 10240 / (8 x 64) + 4096 / (4 x 128) + 2048 / 512 steps.
    assert_eq!(rows.len(), 20 + 8 + 4);
    let loss = |r: &Value| r["loss"].as_f64().unwrap();
    let head: f64 = rows[..3].iter().map(loss).sum::<f64>() / 3.0;
    let tail: f64 = rows[rows.len() - 3..].iter().map(loss).sum::<f64>() / 3.0;
    assert!(tail < head - 1.0, "loss falls: {head} -> {tail}");
    for key in ["lr", "tokens_per_s", "mfu", "aux_loss", "grad_norm"] {
        assert!(rows.iter().all(|r| r[key].is_number()), "{key}");
    }
    assert_eq!(rows[0]["phase"], "initial");
    assert_eq!(rows[25]["phase"], "intermediate");
    assert_eq!(rows[25]["seq"], 128);
    assert_eq!(rows[31]["phase"], "decay");
    assert_eq!(rows[0]["expert_load"].as_array().unwrap().len(), 16);
    assert!(rows[9]["val_loss"].is_number(), "evaluated at step 10");
    // Safetensors: an 8-byte header length, then a JSON header naming the module tree.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(
        header["embed.weight"]["shape"],
        serde_json::json!([512, 64])
    );
    assert_eq!(header["layers.7.attn.q.weight"]["dtype"], "F32");
    assert_eq!(
        newest_checkpoint(&p),
        None,
        "a finished run's checkpoints are removed"
    );
}

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint_with_the_same_losses() {
    if worker().is_none() {
        return;
    }
    let reference = Project::new(&recipe(20));
    run_ok(&reference);
    let expected = losses(&artifact(&reference, "model.safetensors"));

    let p = Project::new(&recipe(20));
    let mut child = p
        .command(&["run", "recipe.kdl"])
        .env("YIFLOW_TEST_STEP_DELAY_MS", "150")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let engine = child.id();
    assert!(
        wait_for(Duration::from_mins(4), || newest_checkpoint(&p)
            .is_some_and(|s| s >= 10)),
        "no checkpoint at step 10 or later"
    );
    // kill -9 the whole run: the worker's (and reaper's) process groups, then the engine.
    for pid in children(engine) {
        kill_group(pid);
    }
    let _ = child.kill();
    let _ = child.wait();
    let at = newest_checkpoint(&p).unwrap();
    assert!(at < 32, "killed before the end (checkpoint {at})");
    assert!(!alive(engine));

    run_ok(&p);
    let log = p.yiflow("log", &["pretrain"]).stdout;
    assert!(
        log.contains("resuming from checkpoint"),
        "the log says it resumed:\n{log}"
    );
    let dir = artifact(&p, "model.safetensors");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("train.json")).unwrap()).unwrap();
    let resumed = summary["resumed_from_step"].as_u64().unwrap();
    assert!(resumed >= 10 && resumed.is_multiple_of(5), "{summary}");
    assert_eq!(
        losses(&dir),
        expected,
        "the loss curve equals the uninterrupted one"
    );
}

#[test]
fn an_injected_nan_rolls_back_and_too_many_fail_clearly() {
    if worker().is_none() {
        return;
    }
    let p = Project::new(&recipe(20));
    let run = p
        .command(&["run", "recipe.kdl"])
        .env("YIFLOW_TEST_POISON_STEPS", "7,13")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let dir = artifact(&p, "model.safetensors");
    let faults = jsonl(&dir.join("faults.jsonl"));
    let at: Vec<(u64, u64)> = faults
        .iter()
        .map(|f| (f["step"].as_u64().unwrap(), f["restored"].as_u64().unwrap()))
        .collect();
    assert_eq!(at, [(7, 5), (13, 10)]);
    assert!(faults.iter().all(|f| f["reason"] == "nan"));
    let rows = jsonl(&dir.join("metrics.jsonl"));
    assert_eq!(rows.len(), 32, "every step done once");
    assert_eq!(rows.last().unwrap()["rollbacks"], 2);
    assert!(
        rows.iter()
            .all(|r| r["loss"].as_f64().is_some_and(f64::is_finite))
    );
    let log = p.yiflow("log", &["pretrain"]).stdout;
    assert!(log.contains("rolled back to step 5"), "{log}");

    let strict = Project::new(&recipe(1));
    let run = strict
        .command(&["run", "recipe.kdl"])
        .env("YIFLOW_TEST_POISON_STEPS", "12,13")
        .output()
        .unwrap();
    assert!(!run.status.success());
    let log = strict.yiflow("log", &["pretrain"]).stdout;
    assert!(
        log.contains("gave up after 1 rollbacks (rollback max=1); the last: step 13, nan loss"),
        "{log}"
    );
    // The failed run left checkpoints (steps 5 and 10); `--force` trains from scratch regardless.
    assert_eq!(newest_checkpoint(&strict), Some(10));
    let forced = strict.yiflow("run", &["--force", "pretrain"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    let log = strict.yiflow("log", &["pretrain"]).stdout;
    assert!(!log.contains("resuming from checkpoint"), "{log}");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(artifact(&strict, "model.safetensors").join("train.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["resumed_from_step"], Value::Null, "{summary}");
}
