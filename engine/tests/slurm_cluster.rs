//! The Slurm client against a real cluster: start one with `scripts/slurm-up.sh` (as root), then
//! `YIFLOW_SLURM_TESTS=1 cargo test -p yiflow-engine --test slurm_cluster`. Without the variable every
//! test says why it skips and passes. The tests take the cluster one at a time (it has 2 CPUs and 2
//! fake GPUs, and the GPU test needs both), about two minutes in all, most of it the time-limit test.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use yiflow_engine::{JobId, JobOutcome, JobState, Slurm, SlurmError, SlurmJobSpec};

/// Serialises the tests: each wants the whole (small) cluster.
static CLUSTER: Mutex<()> = Mutex::new(());

/// The cluster, or `None` (with the reason printed) when the tests are not asked for.
fn cluster(test: &str) -> Option<MutexGuard<'static, ()>> {
    if std::env::var("YIFLOW_SLURM_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "skipping {test}: set YIFLOW_SLURM_TESTS=1 with a cluster up (scripts/slurm-up.sh)"
        );
        return None;
    }
    Some(
        CLUSTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

fn spec(dir: &Path, name: &str, command: &str) -> SlurmJobSpec {
    SlurmJobSpec {
        name: format!("yiflow-test:{name}"),
        command: command.to_owned(),
        script_path: dir.join(format!("jobs/{name}.sh")),
        workdir: dir.to_owned(),
        stdout_path: dir.join(format!("logs/{name}.log")),
        ..SlurmJobSpec::default()
    }
}

fn query_one(slurm: &Slurm, id: JobId) -> JobState {
    let mut states = slurm.query(&[id]).expect("query the cluster");
    states.remove(&id).expect("query answers every id")
}

/// Polls until `done` holds for the job's state, or panics after `limit`.
fn wait_for(
    slurm: &Slurm,
    id: JobId,
    limit: Duration,
    done: impl Fn(&JobState) -> bool,
) -> JobState {
    let start = Instant::now();
    loop {
        let state = query_one(slurm, id);
        if done(&state) {
            return state;
        }
        assert!(
            start.elapsed() < limit,
            "job {id} still {state} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_finished(slurm: &Slurm, id: JobId, limit: Duration) -> JobState {
    wait_for(slurm, id, limit, JobState::is_finished)
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("logs/{name}.log"))).unwrap_or_default()
}

#[test]
fn a_job_that_succeeds_is_completed_with_its_env_and_log() {
    let Some(_cluster) = cluster("a_job_that_succeeds_is_completed_with_its_env_and_log") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let slurm = Slurm::new();
    assert!(slurm.version().unwrap().starts_with("slurm"));
    let mut job = spec(
        dir.path(),
        "ok",
        "echo \"stage=$YIFLOW_STAGE gpus=[$CUDA_VISIBLE_DEVICES]\" > out.txt; echo done",
    );
    job.env = vec![("YIFLOW_STAGE".to_owned(), "ok stage".to_owned())];
    let submitted = Instant::now();
    let id = slurm.submit(&job).unwrap();
    let state = wait_finished(&slurm, id, Duration::from_secs(30));
    eprintln!(
        "job {id} completed {:?} after submission",
        submitted.elapsed()
    );
    assert_eq!(state, JobState::Completed);
    assert_eq!(state.outcome(), JobOutcome::Success);
    // The job ran in its workdir, with the spec's env and no GPU.
    let out = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert_eq!(out, "stage=ok stage gpus=[]\n");
    assert_eq!(log(dir.path(), "ok"), "done\n");
}

#[test]
fn a_failing_job_reports_its_exit_code() {
    let Some(_cluster) = cluster("a_failing_job_reports_its_exit_code") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let slurm = Slurm::new();
    let id = slurm
        .submit(&spec(dir.path(), "fails", "echo about to fail >&2; exit 3"))
        .unwrap();
    let state = wait_finished(&slurm, id, Duration::from_secs(30));
    assert_eq!(
        state,
        JobState::Failed {
            exit_code: 3,
            signal: None
        }
    );
    match state.outcome() {
        JobOutcome::Failure { reason } => assert_eq!(reason, "the job exited with code 3"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // stderr goes to the same log.
    assert_eq!(log(dir.path(), "fails"), "about to fail\n");
}

#[test]
fn a_job_past_its_time_limit_times_out() {
    let Some(_cluster) = cluster("a_job_past_its_time_limit_times_out") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let slurm = Slurm::new();
    // Slurm counts limits in whole minutes and checks them about every 30 s: 60-90 s, then the kill.
    let mut job = spec(dir.path(), "slow", "echo started; exec sleep 600");
    job.time = Some("1".to_owned());
    let submitted = Instant::now();
    let id = slurm.submit(&job).unwrap();
    let state = wait_finished(&slurm, id, Duration::from_secs(150));
    eprintln!(
        "job {id} timed out {:?} after submission",
        submitted.elapsed()
    );
    assert_eq!(state, JobState::Timeout);
    assert!(
        matches!(state.outcome(), JobOutcome::Failure { reason } if reason.contains("time limit"))
    );
    assert!(log(dir.path(), "slow").contains("DUE TO TIME LIMIT"));
}

#[test]
fn a_job_over_its_memory_is_killed() {
    let Some(_cluster) = cluster("a_job_over_its_memory_is_killed") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let slurm = Slurm::new();
    // `tail` holds its whole input (no newline in it) until the input ends, 5 s later.
    let mut job = spec(
        dir.path(),
        "hungry",
        "{ head -c 300m /dev/zero; sleep 5; } | tail | wc -c",
    );
    job.memory = Some("50M".to_owned());
    let id = slurm.submit(&job).unwrap();
    // Without cgroups the test cluster enforces memory by polling: SIGKILL, not OUT_OF_MEMORY.
    let state = wait_finished(&slurm, id, Duration::from_secs(30));
    assert_eq!(
        state,
        JobState::Failed {
            exit_code: 0,
            signal: Some(9)
        }
    );
    assert!(log(dir.path(), "hungry").contains("Exceeded job memory limit"));
}

#[test]
fn a_cancelled_job_is_cancelled_and_leaves_the_queue() {
    let Some(_cluster) = cluster("a_cancelled_job_is_cancelled_and_leaves_the_queue") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let slurm = Slurm::new();
    let running = slurm
        .submit(&spec(dir.path(), "running", "exec sleep 600"))
        .unwrap();
    wait_for(&slurm, running, Duration::from_secs(30), |s| {
        *s == JobState::Running
    });
    // A job held back an hour stays pending: cancelling works there too.
    let mut held = spec(dir.path(), "held", "true");
    held.extra_args = vec!["--begin=now+1hour".to_owned()];
    let held = slurm.submit(&held).unwrap();
    let state = query_one(&slurm, held);
    assert_eq!(
        state,
        JobState::Pending {
            reason: "BeginTime".to_owned()
        }
    );

    let cancelled = Instant::now();
    slurm.cancel(&[running, held]).unwrap();
    for id in [running, held] {
        assert_eq!(
            wait_finished(&slurm, id, Duration::from_secs(30)),
            JobState::Cancelled
        );
    }
    eprintln!(
        "cancelled jobs ended {:?} after scancel",
        cancelled.elapsed()
    );
    // Cancelling again, or a job that already ended, is fine.
    slurm.cancel(&[running, held]).unwrap();
}

#[test]
fn two_gpu_jobs_get_different_gpus_and_a_third_waits() {
    let Some(_cluster) = cluster("two_gpu_jobs_get_different_gpus_and_a_third_waits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let slurm = Slurm::new();
    let command = "echo \"$CUDA_VISIBLE_DEVICES $YIFLOW_DEVICES\"; sleep 4";
    let ids: Vec<JobId> = ["gpu-a", "gpu-b", "gpu-c"]
        .iter()
        .map(|name| {
            let mut job = spec(dir.path(), name, command);
            job.gpus = 1;
            slurm.submit(&job).unwrap()
        })
        .collect();
    // Both GPUs busy at once, the third job waiting for one.
    let start = Instant::now();
    loop {
        let states = slurm.query(&ids).unwrap();
        let running = ids
            .iter()
            .filter(|id| states[id] == JobState::Running)
            .count();
        if running == 2 {
            let waiting: Vec<&JobState> = ids
                .iter()
                .map(|id| &states[id])
                .filter(|s| !s.is_finished())
                .collect();
            assert!(
                waiting
                    .iter()
                    .any(|s| matches!(s, JobState::Pending { .. })),
                "the third job should wait: {states:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "two jobs never ran together: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (id, name) in ids.iter().zip(["gpu-a", "gpu-b", "gpu-c"]) {
        assert_eq!(
            wait_finished(&slurm, *id, Duration::from_mins(1)),
            JobState::Completed
        );
        let line = log(dir.path(), name);
        let (visible, devices) = line.trim().split_once(' ').expect("two words");
        // Inside the job the one GPU is cuda:0, whichever physical one it is.
        assert_eq!(devices, "cuda:0", "{name}");
        assert!(["0", "1"].contains(&visible), "{name}: {line}");
        *seen.entry(visible.to_owned()).or_default() += 1;
    }
    // The third job reused a GPU that one of the first two freed.
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn unknown_jobs_and_rejected_submissions() {
    let Some(_cluster) = cluster("unknown_jobs_and_rejected_submissions") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let slurm = Slurm::new();
    let never = JobId(60_000_000);
    assert_eq!(query_one(&slurm, never), JobState::Unknown);
    assert_eq!(query_one(&slurm, never).outcome(), JobOutcome::NotFinished);

    let mut job = spec(dir.path(), "nowhere", "true");
    job.partition = Some("no-such-partition".to_owned());
    let error = slurm.submit(&job).unwrap_err();
    assert!(matches!(error, SlurmError::Rejected { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("Invalid partition name specified"),
        "{error}"
    );
    assert!(!error.is_transient());
}
