//! The Slurm executor end to end: the real `yiflow` binary against the real one-node cluster of
//! `scripts/slurm-up.sh` (2 CPUs here, 2 fake GPUs). Without a reachable cluster every test says why and
//! passes, unless `YIFLOW_REQUIRE_SLURM=1` (set by `scripts/test.sh` when it started the cluster): then
//! a missing cluster fails. The tests take the cluster one at a time.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::{Project, ran, wait_for};

static CLUSTER: Mutex<()> = Mutex::new(());

/// The cluster, held for one test; `None` (after saying why) when there is none to test against.
fn cluster() -> Option<MutexGuard<'static, ()>> {
    let guard = CLUSTER.lock().unwrap_or_else(PoisonError::into_inner);
    let why = match Command::new("sinfo").args(["-h", "-o", "%T"]).output() {
        Ok(out)
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("idle") =>
        {
            return Some(guard);
        }
        Ok(out) if out.status.success() => format!(
            "the cluster has no idle node: sinfo says {:?}",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Ok(out) => format!(
            "sinfo failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("sinfo cannot run ({e}): Slurm is not installed"),
    };
    assert!(
        std::env::var_os("YIFLOW_REQUIRE_SLURM").is_none_or(|v| v != "1"),
        "YIFLOW_REQUIRE_SLURM=1 but no Slurm cluster is reachable: {why} (start one with scripts/slurm-up.sh)"
    );
    eprintln!("skipped: no Slurm cluster is reachable ({why}); start one with scripts/slurm-up.sh");
    None
}

/// Job ids of the workspace's journals (stages submitted and not yet handled), by stage.
fn journals(project: &Project) -> BTreeMap<String, u64> {
    let mut jobs = BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(project.path().join(".yiflow/slurm")) else {
        return jobs;
    };
    for dir in dirs.flatten() {
        let Ok(text) = std::fs::read_to_string(dir.path().join("job.json")) else {
            continue;
        };
        let journal: serde_json::Value = serde_json::from_str(&text).expect("a journal is JSON");
        jobs.insert(
            journal["stage"].as_str().expect("stage").to_owned(),
            journal["job"].as_u64().expect("job id"),
        );
    }
    jobs
}

/// Ids of every job Slurm still lists (pending, running or completing).
fn squeue() -> Vec<u64> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i"])
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `stage -> artifact` column of `yiflow status`, and `stage -> job` column.
fn status(project: &Project) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let run = project.yiflow("status", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut artifacts = BTreeMap::new();
    let mut jobs = BTreeMap::new();
    for line in run.stdout.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 5 && !line.starts_with("a run is") {
            artifacts.insert(fields[0].to_owned(), fields[3].to_owned());
            jobs.insert(fields[0].to_owned(), fields[4].to_owned());
        }
    }
    (artifacts, jobs)
}

const DIAMOND: &str = r#"
recipe diamond {
    workspace ".yiflow"
    EXECUTOR
}
stage source kind=command { run "seq 1 50 > $YIFLOW_OUT/numbers.txt" }
stage evens kind=command {
    input source
    run "grep '[02468]$' $YIFLOW_IN_source/numbers.txt > $YIFLOW_OUT/evens.txt"
}
stage squares kind=command {
    input source
    gpus 1
    run "awk '{ print $1 * $1 }' $YIFLOW_IN_source/numbers.txt > $YIFLOW_OUT/squares.txt"
}
stage report kind=command {
    input evens squares
    gpus 1
    cpus 1
    memory "100M"
    run "paste $YIFLOW_IN_evens/evens.txt $YIFLOW_IN_squares/squares.txt > $YIFLOW_OUT/report.txt; echo report written"
}
"#;

#[test]
fn a_diamond_with_gpu_stages_gives_the_artifacts_of_the_local_run() {
    let Some(_cluster) = cluster() else { return };
    let local = Project::new(&DIAMOND.replace("EXECUTOR", "executor local"));
    let run = local.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let slurm = Project::new(&DIAMOND.replace("EXECUTOR", "executor slurm { time \"00:05:00\" }"));
    let run = slurm.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ran(&run), ["evens", "report", "source", "squares"]);
    // The tests' workspaces live under /tmp: fine on one node, said clearly all the same.
    let workspace = slurm.path().join(".yiflow");
    assert!(
        run.stderr.contains(&format!(
            "warning: the workspace {} does not look shared with the cluster's nodes: it is under /tmp",
            workspace.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("submitted as slurm job").count(), 4);

    let (local_artifacts, _) = status(&local);
    let (slurm_artifacts, jobs) = status(&slurm);
    assert_eq!(local_artifacts, slurm_artifacts, "same content hashes");
    assert_eq!(local_artifacts.len(), 4);
    for (stage, job) in &jobs {
        assert!(job.parse::<u64>().is_ok(), "{stage} has job id {job}");
    }
    let log = slurm.yiflow("log", &["report"]);
    assert!(log.stdout.contains("report written"), "{}", log.stdout);
    assert!(
        log.stdout
            .contains(&format!("submitted as slurm job {}", jobs["report"])),
        "{}",
        log.stdout
    );
    assert!(journals(&slurm).is_empty(), "handled jobs leave no journal");
    // Cached now, without asking Slurm for anything.
    let again = slurm.yiflow("run", &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains("submit"), "{}", again.stderr);
}

#[test]
fn two_one_gpu_stages_share_the_two_gpus_and_a_third_waits() {
    let Some(_cluster) = cluster() else { return };
    let stage = |name: &str| {
        format!(
            "stage {name} kind=command {{\n    gpus 1\n    run \"echo $YIFLOW_STAGE $CUDA_VISIBLE_DEVICES \
             $YIFLOW_DEVICES $(date +%s.%N) >> starts; sleep 2; echo $YIFLOW_STAGE $(date +%s.%N) >> ends; \
             echo {name} > $YIFLOW_OUT/done\"\n}}\n"
        )
    };
    let recipe = format!(
        "recipe gpus {{\n    executor slurm\n}}\n{}{}{}",
        stage("one"),
        stage("two"),
        stage("three")
    );
    let project = Project::new(&recipe);
    let run = project.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ran(&run), ["one", "three", "two"]);

    // (start, gpu, stage), in the order they started.
    let mut starts: Vec<(f64, String, String)> = project
        .read("starts")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "one GPU, one device each: {l}");
            assert_eq!(f[2], "cuda:0", "{l}");
            (f[3].parse().unwrap(), f[1].to_owned(), f[0].to_owned())
        })
        .collect();
    starts.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(starts.len(), 3, "{starts:?}");
    let ends: BTreeMap<String, f64> = project
        .read("ends")
        .lines()
        .map(|l| {
            let (stage, t) = l.split_once(' ').unwrap();
            (stage.to_owned(), t.parse().unwrap())
        })
        .collect();
    let (first, second, third) = (&starts[0], &starts[1], &starts[2]);
    assert_ne!(first.1, second.1, "different GPUs: {starts:?}");
    for (_, gpu, _) in &starts {
        assert!(gpu == "0" || gpu == "1", "{starts:?}");
    }
    assert!(
        second.0 < ends[&first.2],
        "the first two ran at the same time: {starts:?} {ends:?}"
    );
    let earliest_end = ends[&first.2].min(ends[&second.2]);
    assert!(
        third.0 >= earliest_end,
        "the third waited for a GPU: {starts:?} {ends:?}"
    );
}

#[test]
fn a_failing_job_and_a_job_past_its_time_limit_are_reported_with_id_state_and_log() {
    let Some(_cluster) = cluster() else { return };
    let project = Project::new(
        r#"
recipe failing {
    executor slurm
}
stage broken kind=command { run "echo reading the corpus; echo no such shard >&2; exit 3" }
stage slow kind=command {
    executor slurm { time "1" }
    run "echo still working; sleep 300"
}
"#,
    );
    // Slurm counts time limits in minutes and checks them every ~30 s: this takes 60-90 s.
    let run = project.yiflow("run", &["--keep-going"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let (_, jobs) = status(&project);
    let broken = format!(
        "FAILED  broken: slurm job {} ended `failed (exit code 3)`: the job exited with code 3; the end of its log:\n        | reading the corpus\n        | no such shard",
        jobs["broken"]
    );
    assert!(run.stderr.contains(&broken), "{}", run.stderr);
    let slow = format!(
        "FAILED  slow: slurm job {} ended `timeout`: the job ran past its time limit and Slurm stopped it (raise `time`); the end of its log:\n        | still working\n        | slurmstepd-localhost: error: *** JOB {} ON localhost CANCELLED AT ",
        jobs["slow"], jobs["slow"]
    );
    assert!(run.stderr.contains(&slow), "{}", run.stderr);
    let status = project.yiflow("status", &[]);
    assert!(
        status.stdout.contains("broken  failed") && status.stdout.contains("slow    failed"),
        "{}",
        status.stdout
    );
    assert!(journals(&project).is_empty());
}

const SLEEPERS: &str = r#"
recipe sleepers {
    executor slurm
}
stage a kind=command { run "echo a >> runs; sleep 60; echo a > $YIFLOW_OUT/a" }
stage b kind=command { run "echo b >> runs; sleep 60; echo b > $YIFLOW_OUT/b" }
stage c kind=command { run "echo c >> runs; sleep 60; echo c > $YIFLOW_OUT/c" }
"#;

#[test]
fn ctrl_c_cancels_every_submitted_job_and_records_nothing() {
    let Some(_cluster) = cluster() else { return };
    let project = Project::new(SLEEPERS);
    let child = project.spawn_run(&[]);
    // Two run (2 CPUs), the third is queued.
    assert!(
        wait_for(Duration::from_secs(20), || journals(&project).len() == 3
            && project.count_lines("runs") == 2),
        "three jobs submitted, two running"
    );
    let jobs: Vec<u64> = journals(&project).into_values().collect();
    let live = squeue();
    assert!(
        jobs.iter().all(|j| live.contains(j)),
        "{jobs:?} in {live:?}"
    );
    common::interrupt(child.id());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert_eq!(stderr.matches("\nstopped ").count(), 3, "{stderr}");
    let live = squeue();
    assert!(
        jobs.iter().all(|j| !live.contains(j)),
        "nothing of {jobs:?} left in squeue: {live:?}"
    );
    let status = project.yiflow("status", &[]);
    assert_eq!(
        status.stdout.matches("cancelled").count(),
        3,
        "{}",
        status.stdout
    );
    let artifacts = std::fs::read_dir(project.path().join(".yiflow/artifacts")).unwrap();
    assert_eq!(artifacts.count(), 0, "no partial artifact");
    assert!(journals(&project).is_empty());
}

#[test]
fn a_killed_engine_run_again_reattaches_instead_of_submitting_twice() {
    let Some(_cluster) = cluster() else { return };
    let project = Project::new(
        r#"
recipe reattach {
    executor slurm
}
stage quick kind=command { run "echo quick >> runs; sleep 1; echo quick > $YIFLOW_OUT/out" }
stage long kind=command { run "echo long >> runs; sleep 6; echo long > $YIFLOW_OUT/out" }
stage after kind=command { input quick long; run "cat $YIFLOW_IN_quick/out $YIFLOW_IN_long/out > $YIFLOW_OUT/out" }
"#,
    );
    let mut child = project.spawn_run(&[]);
    assert!(
        wait_for(Duration::from_secs(20), || project.count_lines("runs") == 2),
        "both jobs started"
    );
    let jobs = journals(&project);
    child.kill().unwrap();
    child.wait().unwrap();
    // `quick` completes while no engine watches; `long` is still running at the rerun.
    assert!(wait_for(Duration::from_secs(20), || !squeue()
        .contains(&jobs["quick"])));
    assert!(squeue().contains(&jobs["long"]), "long still runs");

    let run = project.yiflow("run", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for stage in ["quick", "long"] {
        assert!(
            run.stderr.contains(&format!(
                "submit  {stage}: re-attached to slurm job {}",
                jobs[stage]
            )),
            "{}",
            run.stderr
        );
    }
    let mut runs: Vec<String> = project.read("runs").lines().map(str::to_owned).collect();
    runs.sort();
    assert_eq!(runs, ["long", "quick"], "no job ran twice");
    let (_, status_jobs) = status(&project);
    assert_eq!(status_jobs["quick"], jobs["quick"].to_string());
    assert_eq!(status_jobs["long"], jobs["long"].to_string());
    let log = project.yiflow("log", &["long"]);
    assert!(
        log.stdout.contains(&format!(
            "re-attached to slurm job {} (running) of an earlier run",
            jobs["long"]
        )),
        "{}",
        log.stdout
    );
}
