//! Runs stages as Slurm batch jobs: the scheduler's counterpart of [`crate::run_local`] for stages whose
//! executor is `slurm`. Each run submits one job running exactly the command a local run would, writes
//! the job id into the stage's journal ([`JobJournal`]) as soon as `sbatch` returns, and follows it
//! until it ends. One poller follows every live job of the run with one `squeue` call, every 0.2 s
//! after something changed, slowing to every 2 s while nothing does.
//!
//! End states: `COMPLETED` is a success (the scheduler commits `out/` as for a local run); `FAILED`,
//! `CANCELLED`, `TIMEOUT`, `OUT_OF_MEMORY` and `DEADLINE` fail the stage with the job id, the state and
//! the tail of the job's log; `NODE_FAIL`, `BOOT_FAIL` and `PREEMPTED` are the cluster's fault, so the job is
//! submitted again, up to [`MAX_RESUBMITS`] times, without using up the stage's `retries`. A job that
//! no Slurm command knows is waited for, not failed, for [`UNKNOWN_PATIENCE`].
//!
//! Cancelling (Ctrl-C, watch mode) `scancel`s the job and waits until Slurm has ended it. A killed
//! engine leaves its jobs alone; run again, it re-attaches to a journalled job that is still queued or
//! running, and takes the result of one that completed meanwhile.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::local_executor::ExitOutcome;
use crate::{JobId, JobJournal, JobOutcome, JobState, Slurm, SlurmError, SlurmJobSpec};

/// The first poll interval after a change, and the slowest one.
const MIN_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(2);
/// How long a job may stay invisible to every Slurm command before it counts as lost.
pub const UNKNOWN_PATIENCE: Duration = Duration::from_mins(1);
/// How often a job is submitted again after its node failed or it was preempted.
pub const MAX_RESUBMITS: u32 = 3;
/// How long a cancelled job is given to end before the engine stops waiting for it.
const CANCEL_PATIENCE: Duration = Duration::from_secs(30);
/// Failed polls in a row after which the followed jobs are given up.
const MAX_POLL_ERRORS: u32 = 15;
/// Lines of the job's log quoted in a failure.
const TAIL_LINES: usize = 8;

/// What the poller last saw of a job.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    State(JobState),
    /// Slurm could not be asked for a long while.
    Error(String),
}

/// Jobs being followed, each with a channel to its stage's run.
#[derive(Default)]
struct Followed {
    jobs: Mutex<HashMap<JobId, watch::Sender<Seen>>>,
    wake: Notify,
}

/// One stage to run as a job.
#[derive(Debug, Clone)]
pub struct SlurmStage {
    /// The job, ready for `sbatch`.
    pub spec: SlurmJobSpec,
    /// The stage's job folder: the journal, the batch script and `out/`.
    pub dir: PathBuf,
    /// The journal written once the job is submitted (its `job` is filled in then).
    pub journal: JobJournal,
}

/// What a stage's job did, as it happens (for the index, `yiflow status` and the terminal).
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// Submitted, or found again from an earlier run (`attached`).
    Submitted { job: JobId, attached: bool },
    /// Slurm reported a new state.
    State { job: JobId, state: JobState },
    /// Ended through no fault of its own; submitted again.
    Resubmitting { job: JobId, reason: String },
}

/// How following a job ended.
enum FollowEnd {
    Ended(JobState),
    Cancelled,
    Lost(String),
}

/// The Slurm executor of one run.
pub struct SlurmExecutor {
    slurm: Arc<Slurm>,
    followed: Arc<Followed>,
    poller: JoinHandle<()>,
}

impl Drop for SlurmExecutor {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl SlurmExecutor {
    /// An executor over `slurm`; starts its poller on the current tokio runtime.
    pub fn new(slurm: Slurm) -> Self {
        let slurm = Arc::new(slurm);
        let followed = Arc::new(Followed::default());
        let poller = tokio::spawn(poll(slurm.clone(), followed.clone()));
        Self {
            slurm,
            followed,
            poller,
        }
    }

    /// The client, for checks before a run.
    pub fn slurm(&self) -> &Slurm {
        &self.slurm
    }

    /// Runs `stage` as a job until it ends or `cancel` fires; `events` hears of its job id and states.
    pub async fn run(
        &self,
        stage: SlurmStage,
        events: impl Fn(JobEvent) + Send + Sync,
        cancel: &CancellationToken,
    ) -> ExitOutcome {
        let log = stage.spec.stdout_path.clone();
        let mut job = match self.reattach(&stage, &log).await {
            Ok(Reattach::Live(job)) => {
                events(JobEvent::Submitted {
                    job,
                    attached: true,
                });
                Some(job)
            }
            Ok(Reattach::Completed(job)) => {
                events(JobEvent::Submitted {
                    job,
                    attached: true,
                });
                return ExitOutcome::Success;
            }
            Ok(Reattach::No) => None,
            Err(e) => return failed(format!("failed to ask Slurm about an earlier job: {e}")),
        };
        let mut resubmits = 0;
        loop {
            let id = match job {
                Some(id) => id,
                None => match self.submit(&stage, cancel).await {
                    Ok(id) => {
                        events(JobEvent::Submitted {
                            job: id,
                            attached: false,
                        });
                        id
                    }
                    Err(detail) => return failed(detail),
                },
            };
            match self.follow(id, &events, cancel).await {
                FollowEnd::Cancelled => {
                    self.cancel(id).await;
                    note(&log, &format!("cancelled slurm job {id}"));
                    return ExitOutcome::Cancelled;
                }
                FollowEnd::Lost(why) => {
                    return failed(format!("slurm job {id}: {why}{}", tail(&log)));
                }
                FollowEnd::Ended(state) => match state.outcome() {
                    JobOutcome::Success => return ExitOutcome::Success,
                    JobOutcome::Retry { reason } if resubmits < MAX_RESUBMITS => {
                        resubmits += 1;
                        note(
                            &log,
                            &format!(
                                "slurm job {id}: {reason}; submitting it again ({resubmits} of {MAX_RESUBMITS})"
                            ),
                        );
                        events(JobEvent::Resubmitting { job: id, reason });
                        job = None;
                    }
                    JobOutcome::Retry { reason } => {
                        return failed(format!(
                            "slurm job {id} ended `{state}`: {reason}, for the {} time; giving up{}",
                            ordinal(MAX_RESUBMITS + 1),
                            tail(&log)
                        ));
                    }
                    JobOutcome::Failure { reason } => {
                        return failed(format!(
                            "slurm job {id} ended `{state}`: {reason}{}",
                            tail(&log)
                        ));
                    }
                    JobOutcome::NotFinished => unreachable!("followed until finished"),
                },
            }
        }
    }

    /// A journalled job of the same fingerprint from an earlier (killed) run: still live, completed,
    /// or gone (then its folder is cleared for a fresh submission).
    async fn reattach(&self, stage: &SlurmStage, log: &Path) -> Result<Reattach, SlurmError> {
        let Some(old) = JobJournal::load(&stage.dir) else {
            return Ok(Reattach::No);
        };
        if old.fingerprint != stage.journal.fingerprint {
            return Ok(Reattach::No);
        }
        let state = self.query_one(old.job).await?;
        Ok(match state {
            JobState::Completed => {
                note(
                    log,
                    &format!("slurm job {} of an earlier run completed", old.job),
                );
                Reattach::Completed(old.job)
            }
            JobState::Unknown => {
                note(
                    log,
                    &format!(
                        "slurm job {} of an earlier run is unknown to Slurm; submitting again",
                        old.job
                    ),
                );
                Reattach::No
            }
            state if !state.is_finished() => {
                note(
                    log,
                    &format!(
                        "re-attached to slurm job {} ({state}) of an earlier run",
                        old.job
                    ),
                );
                Reattach::Live(old.job)
            }
            state => {
                note(
                    log,
                    &format!(
                        "slurm job {} of an earlier run ended `{state}`; submitting again",
                        old.job
                    ),
                );
                Reattach::No
            }
        })
    }

    async fn query_one(&self, job: JobId) -> Result<JobState, SlurmError> {
        let slurm = self.slurm.clone();
        let states = tokio::task::spawn_blocking(move || slurm.query(&[job]))
            .await
            .map_err(|e| SlurmError::Spawn {
                program: "squeue",
                source: std::io::Error::other(e),
            })??;
        Ok(states.get(&job).cloned().unwrap_or(JobState::Unknown))
    }

    /// Submits the job into a cleared `out/`, retrying while the controller is out of reach, and
    /// journals its id. The error is the failure's detail.
    async fn submit(
        &self,
        stage: &SlurmStage,
        cancel: &CancellationToken,
    ) -> Result<JobId, String> {
        let out = stage.dir.join("out");
        if out.exists() {
            std::fs::remove_dir_all(&out)
                .map_err(|e| format!("failed to clear {}: {e}", out.display()))?;
        }
        std::fs::create_dir_all(&out)
            .map_err(|e| format!("failed to create {}: {e}", out.display()))?;
        let mut delay = Duration::from_secs(1);
        let deadline = Instant::now() + UNKNOWN_PATIENCE;
        let job = loop {
            let slurm = self.slurm.clone();
            let spec = stage.spec.clone();
            let submitted = tokio::task::spawn_blocking(move || slurm.submit(&spec))
                .await
                .map_err(|e| format!("failed to submit: {e}"))?;
            match submitted {
                Ok(job) => break job,
                Err(e)
                    if e.is_transient() && Instant::now() < deadline && !cancel.is_cancelled() =>
                {
                    tracing::warn!("sbatch failed, trying again in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                }
                Err(e) => return Err(format!("failed to {e}")),
            }
        };
        let journal = JobJournal {
            job,
            ..stage.journal.clone()
        };
        if let Err(e) = journal.save(&stage.dir) {
            // Without a journal a killed engine would submit the stage twice: better not to run it.
            self.cancel(job).await;
            return Err(format!(
                "failed to write the journal of slurm job {job} in {}: {e}",
                stage.dir.display()
            ));
        }
        note(
            &stage.spec.stdout_path,
            &format!("submitted as slurm job {job}"),
        );
        Ok(job)
    }

    /// Follows `job` until it ends, is lost, or `cancel` fires.
    async fn follow(
        &self,
        job: JobId,
        events: &impl Fn(JobEvent),
        cancel: &CancellationToken,
    ) -> FollowEnd {
        let mut seen = self.followed.follow(job);
        let mut unknown_since = Some(Instant::now());
        let mut last: Option<JobState> = None;
        let end = loop {
            tokio::select! {
                () = cancel.cancelled() => break FollowEnd::Cancelled,
                changed = seen.changed() => {
                    if changed.is_err() {
                        break FollowEnd::Lost("the engine stopped following it".into());
                    }
                }
                // Wakes up to notice a job that stays unknown.
                () = tokio::time::sleep(MAX_POLL) => {}
            }
            let now = seen.borrow_and_update().clone();
            match now {
                Seen::Error(e) => break FollowEnd::Lost(format!("Slurm cannot be asked: {e}")),
                Seen::State(JobState::Unknown) => {
                    let since = *unknown_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= UNKNOWN_PATIENCE {
                        break FollowEnd::Lost(format!(
                            "no Slurm command has known the job for {}s (purged without accounting?)",
                            UNKNOWN_PATIENCE.as_secs()
                        ));
                    }
                }
                Seen::State(state) => {
                    unknown_since = None;
                    if last.as_ref() != Some(&state) {
                        events(JobEvent::State {
                            job,
                            state: state.clone(),
                        });
                        last = Some(state.clone());
                    }
                    if state.is_finished() {
                        break FollowEnd::Ended(state);
                    }
                }
            }
        };
        if !matches!(end, FollowEnd::Cancelled) {
            self.followed.unfollow(job);
        }
        end
    }

    /// `scancel`s `job` and waits (up to [`CANCEL_PATIENCE`]) until Slurm has ended it, so nothing of
    /// it writes on after the engine has moved on.
    async fn cancel(&self, job: JobId) {
        let slurm = self.slurm.clone();
        match tokio::task::spawn_blocking(move || slurm.cancel(&[job])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("failed to cancel slurm job {job}: {e}"),
            Err(e) => tracing::warn!("failed to cancel slurm job {job}: {e}"),
        }
        let mut seen = self.followed.follow(job);
        let deadline = tokio::time::Instant::now() + CANCEL_PATIENCE;
        loop {
            let done = match &*seen.borrow_and_update() {
                Seen::State(JobState::Unknown) => false,
                Seen::State(state) => state.is_finished(),
                Seen::Error(_) => true,
            };
            if done {
                break;
            }
            match tokio::time::timeout_at(deadline, seen.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::warn!(
                        "slurm job {job} has not ended {}s after scancel",
                        CANCEL_PATIENCE.as_secs()
                    );
                    break;
                }
            }
        }
        self.followed.unfollow(job);
    }
}

enum Reattach {
    No,
    Live(JobId),
    Completed(JobId),
}

impl Followed {
    fn follow(&self, job: JobId) -> watch::Receiver<Seen> {
        let receiver = {
            let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            jobs.entry(job)
                .or_insert_with(|| watch::channel(Seen::State(JobState::Unknown)).0)
                .subscribe()
        };
        self.wake.notify_one();
        receiver
    }

    fn unfollow(&self, job: JobId) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&job);
    }

    fn ids(&self) -> Vec<JobId> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.retain(|_, sender| !sender.is_closed());
        jobs.keys().copied().collect()
    }

    /// Hands each followed job its state; true when any changed.
    fn publish(&self, states: &HashMap<JobId, JobState>) -> bool {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changed = false;
        for (job, sender) in jobs.iter() {
            let Some(state) = states.get(job) else {
                continue;
            };
            let seen = Seen::State(state.clone());
            changed |= sender.send_if_modified(|old| {
                if *old == seen {
                    false
                } else {
                    *old = seen.clone();
                    true
                }
            });
        }
        changed
    }

    fn publish_error(&self, error: &str) {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        for sender in jobs.values() {
            sender.send_replace(Seen::Error(error.to_owned()));
        }
    }
}

/// The poller: one query for every followed job, quickly after a change, slowly while nothing moves.
async fn poll(slurm: Arc<Slurm>, followed: Arc<Followed>) {
    let mut interval = MIN_POLL;
    let mut errors = 0;
    loop {
        let ids = followed.ids();
        if ids.is_empty() {
            followed.wake.notified().await;
            interval = MIN_POLL;
            continue;
        }
        let client = slurm.clone();
        match tokio::task::spawn_blocking(move || client.query(&ids)).await {
            Ok(Ok(states)) => {
                errors = 0;
                if followed.publish(&states) {
                    interval = MIN_POLL;
                }
            }
            Ok(Err(e)) => {
                errors += 1;
                tracing::warn!("failed to ask Slurm about the jobs (try {errors}): {e}");
                if errors >= MAX_POLL_ERRORS {
                    followed.publish_error(&e.to_string());
                    errors = 0;
                }
            }
            Err(e) => tracing::warn!("the Slurm poll failed: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = followed.wake.notified() => interval = MIN_POLL,
        }
        interval = (interval * 3 / 2).min(MAX_POLL);
    }
}

fn failed(detail: String) -> ExitOutcome {
    ExitOutcome::Failed {
        detail,
        retry: false,
    }
}

/// Appends `# yiflow: TEXT` to the stage's log (the job appends its own output).
fn note(log: &Path, text: &str) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| writeln!(f, "# yiflow: {text}"));
    if let Err(e) = written {
        tracing::debug!("failed to write to {}: {e}", log.display());
    }
}

/// The last lines the job wrote to its log (the engine's header and notes left out), indented, after
/// words saying where they come from.
fn tail(log: &Path) -> String {
    let Ok(bytes) = std::fs::read(log) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(n, l)| {
            !(l.starts_with("# yiflow:")
                || (*n == 1 && l.starts_with("# command:"))
                || l.trim().is_empty())
        })
        .map(|(_, l)| l)
        .collect();
    if lines.is_empty() {
        return "; its log is empty".to_owned();
    }
    let start = lines.len().saturating_sub(TAIL_LINES);
    let mut out = String::from("; the end of its log:");
    for line in &lines[start..] {
        out.push_str("\n        | ");
        out.push_str(line);
    }
    out
}

fn ordinal(n: u32) -> String {
    match n {
        1 => "1st".into(),
        2 => "2nd".into(),
        3 => "3rd".into(),
        n => format!("{n}th"),
    }
}

/// Why `dir` is evidently not on a filesystem that cluster nodes share (a local temporary folder or
/// memory filesystem), or `None` when nothing says so.
pub fn local_only(dir: &Path) -> Option<String> {
    for prefix in ["/tmp", "/var/tmp", "/dev/shm", "/run"] {
        if dir.starts_with(prefix) {
            return Some(format!(
                "it is under {prefix}, which each machine has for itself"
            ));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    // The longest mount point above `dir` is the filesystem it is on.
    let (fs_type, point) = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            Some((fs_type, point.replace("\\040", " ")))
        })
        .filter(|(_, point)| dir.starts_with(point))
        .max_by_key(|(_, point)| point.len())?;
    matches!(fs_type, "tmpfs" | "ramfs")
        .then(|| format!("it is on a {fs_type} filesystem (mounted at {point}), which lives in one machine's memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_folders_are_evidently_local() {
        let why = local_only(Path::new("/tmp/x/.yiflow")).unwrap();
        assert!(why.contains("/tmp"), "{why}");
        assert!(local_only(Path::new("/dev/shm/ws")).is_some());
    }

    #[test]
    fn the_tail_leaves_out_yiflow_lines_and_keeps_the_last_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let mut text = String::from("# yiflow: stage `a`\n# command: sh -c x\n");
        for i in 0..20 {
            text += "line ";
            text += &i.to_string();
            text += "\n";
        }
        text.push_str("# yiflow: submitted as slurm job 3\n");
        std::fs::write(&log, text).unwrap();
        let tail = tail(&log);
        assert!(tail.starts_with("; the end of its log:"), "{tail}");
        assert!(tail.ends_with("| line 19"), "{tail}");
        assert!(
            tail.contains("| line 12") && !tail.contains("line 11"),
            "{tail}"
        );
        assert!(
            !tail.contains("yiflow") && !tail.contains("command"),
            "{tail}"
        );
        std::fs::write(&log, "# yiflow: x\n").unwrap();
        assert_eq!(self::tail(&log), "; its log is empty");
    }
}
