//! A small synchronous client over Slurm's commands, for the Slurm executor: [`Slurm::submit`] sends a
//! stage's command to `sbatch` as a batch job, [`Slurm::query`] follows jobs with `squeue`, `scontrol`
//! and `sacct`, [`JobState::outcome`] maps every end state to what the engine does next, and
//! [`Slurm::cancel`] calls `scancel`. Each call runs a few short-lived processes; the async executor
//! calls it from blocking threads.
//!
//! What this relies on (checked against slurm-wlm 22.05 on the cluster of `scripts/slurm-up.sh`):
//! - `squeue --jobs` shows live jobs only (pending, running, completing) and leaves out ids it does not
//!   list, except that a single unknown id is an error ("Invalid job id specified").
//! - `scontrol show job ID` still shows a finished job, with its exit code, for `MinJobAge` seconds
//!   (300 by default) after it ended; after that only `sacct` knows it, and `sacct` needs slurmdbd
//!   ("Slurm accounting storage is disabled" otherwise). A job none of them sees is [`JobState::Unknown`].
//! - A job that asked for GPUs gets `CUDA_VISIBLE_DEVICES` from Slurm's gres/gpu plugin, with or without
//!   cgroups (`SLURM_JOB_GPUS` and `GPU_DEVICE_ORDINAL` hold the same indices). With cgroup device
//!   constraints the indices are renumbered from 0 while `SLURM_JOB_GPUS` keeps the node's numbering, so
//!   `CUDA_VISIBLE_DEVICES` is the one to trust and the others are only fallbacks. A job without GPUs
//!   gets none of them; Slurm even drops a `CUDA_VISIBLE_DEVICES` inherited from `sbatch`.

mod job_spec;
mod job_state;

pub use job_spec::SlurmJobSpec;
pub use job_state::{JobOutcome, JobState};

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// A Slurm job id, as `sbatch --parsable` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim().parse().map(JobId)
    }
}

/// Error type of the Slurm client.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("run `{program}`: {}", not_found(.dir.as_deref()))]
    NotFound {
        program: &'static str,
        dir: Option<PathBuf>,
    },
    #[error("run `{program}`: {source}")]
    Spawn {
        program: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("submit job `{job}`: sbatch rejected it ({status}): {stderr}")]
    Rejected {
        job: String,
        status: String,
        stderr: String,
    },
    #[error("run `{program} {args}` ({status}): {stderr}")]
    Command {
        program: &'static str,
        args: String,
        status: String,
        stderr: String,
    },
    #[error("read the output of `{program}`: {problem}: {output:?}")]
    Output {
        program: &'static str,
        problem: &'static str,
        output: String,
    },
    #[error("write the batch script of job `{job}` to {}: {source}", .path.display())]
    Script {
        job: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("create the folder {} for job `{job}`: {source}", .path.display())]
    CreateDir {
        job: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("export `{name}` in job `{job}`: not a shell variable name")]
    EnvName { job: String, name: String },
}

fn not_found(dir: Option<&Path>) -> String {
    match dir {
        Some(dir) => format!("no such command in {}", dir.display()),
        None => {
            "Slurm's commands are not on PATH (run yiflow where `sbatch` works, e.g. a login node)"
                .to_owned()
        }
    }
}

impl SlurmError {
    /// Whether the controller was out of reach (down, restarting, overloaded): worth trying again
    /// later rather than failing the stage.
    pub fn is_transient(&self) -> bool {
        const SIGNS: [&str; 5] = [
            "Unable to contact slurm controller",
            "Socket timed out",
            "Resource temporarily unavailable",
            "Zero Bytes were transmitted or received",
            "Slurm temporarily unable to accept job",
        ];
        match self {
            SlurmError::Rejected { stderr, .. } | SlurmError::Command { stderr, .. } => {
                SIGNS.iter().any(|sign| stderr.contains(sign))
            }
            _ => false,
        }
    }
}

/// The Slurm client: finds Slurm's commands on PATH, or in one folder.
#[derive(Debug, Default)]
pub struct Slurm {
    bin_dir: Option<PathBuf>,
    /// Set once `sacct` said accounting is off, so it is not asked again.
    no_accounting: AtomicBool,
}

/// How many job ids one `squeue` or `sacct` call carries.
const IDS_PER_CALL: usize = 500;

impl Slurm {
    /// A client that finds Slurm's commands on PATH.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client that runs Slurm's commands from `dir` (e.g. `/opt/slurm/bin`).
    pub fn with_bin_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            bin_dir: Some(dir.into()),
            no_accounting: AtomicBool::new(false),
        }
    }

    /// `sbatch --version`, to say early and clearly when Slurm is missing.
    pub fn version(&self) -> Result<String, SlurmError> {
        let output = self.run("sbatch", &["--version".to_owned()])?;
        check("sbatch", &["--version".to_owned()], &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Writes the batch script and submits it; the job's id.
    pub fn submit(&self, spec: &SlurmJobSpec) -> Result<JobId, SlurmError> {
        let script = spec.batch_script()?;
        for path in [&spec.script_path, &spec.stdout_path] {
            // A job whose output folder is missing fails before its first line, with no log to show.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| SlurmError::CreateDir {
                    job: spec.name.clone(),
                    path: dir.to_owned(),
                    source,
                })?;
            }
        }
        std::fs::write(&spec.script_path, script).map_err(|source| SlurmError::Script {
            job: spec.name.clone(),
            path: spec.script_path.clone(),
            source,
        })?;
        let output = self.run("sbatch", &spec.sbatch_args())?;
        if !output.status.success() {
            return Err(SlurmError::Rejected {
                job: spec.name.clone(),
                status: output.status.to_string(),
                stderr: stderr_text(&output),
            });
        }
        parse_sbatch(&String::from_utf8_lossy(&output.stdout))
    }

    /// The state of each job: `squeue` for live jobs, `scontrol show job` for recently finished ones,
    /// `sacct` (when accounting runs) for older ones, [`JobState::Unknown`] for the rest.
    pub fn query(&self, ids: &[JobId]) -> Result<HashMap<JobId, JobState>, SlurmError> {
        let mut states = HashMap::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            states.extend(self.squeue(chunk)?);
        }
        for &id in ids {
            if !states.contains_key(&id)
                && let Some(state) = self.scontrol(id)?
            {
                states.insert(id, state);
            }
        }
        let missing: Vec<JobId> = ids
            .iter()
            .copied()
            .filter(|id| !states.contains_key(id))
            .collect();
        for chunk in missing.chunks(IDS_PER_CALL) {
            states.extend(self.sacct(chunk));
        }
        for &id in ids {
            states.entry(id).or_insert(JobState::Unknown);
        }
        Ok(states)
    }

    /// Cancels the jobs; ids that already ended or that Slurm does not know are fine.
    pub fn cancel(&self, ids: &[JobId]) -> Result<(), SlurmError> {
        if ids.is_empty() {
            return Ok(());
        }
        let args: Vec<String> = ids.iter().map(JobId::to_string).collect();
        let output = self.run("scancel", &args)?;
        let stderr = stderr_text(&output);
        let harmless = |line: &str| {
            line.contains("already completing or completed")
                || line.contains("Invalid job id specified")
        };
        if output.status.success() || (!stderr.is_empty() && stderr.lines().all(harmless)) {
            return Ok(());
        }
        Err(command_error("scancel", &args, &output))
    }

    fn squeue(&self, ids: &[JobId]) -> Result<Vec<(JobId, JobState)>, SlurmError> {
        let args = vec![
            "--noheader".to_owned(),
            format!("--jobs={}", join_ids(ids)),
            "--format=%i|%T|%r".to_owned(),
        ];
        let output = self.run("squeue", &args)?;
        // `squeue --jobs=ID` with one unknown id fails, where several unknown ids list nothing.
        if !output.status.success() && !stderr_text(&output).contains("Invalid job id specified") {
            return Err(command_error("squeue", &args, &output));
        }
        parse_squeue(&String::from_utf8_lossy(&output.stdout))
    }

    fn scontrol(&self, id: JobId) -> Result<Option<JobState>, SlurmError> {
        let args = vec![
            "show".to_owned(),
            "job".to_owned(),
            "--oneliner".to_owned(),
            id.to_string(),
        ];
        let output = self.run("scontrol", &args)?;
        if !output.status.success() {
            if stderr_text(&output).contains("Invalid job id specified") {
                return Ok(None);
            }
            return Err(command_error("scontrol", &args, &output));
        }
        Ok(parse_scontrol(&String::from_utf8_lossy(&output.stdout), id))
    }

    /// Accounting is optional: any failure of `sacct` only means it cannot tell.
    fn sacct(&self, ids: &[JobId]) -> Vec<(JobId, JobState)> {
        if ids.is_empty() || self.no_accounting.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let args = vec![
            "--noheader".to_owned(),
            "--parsable2".to_owned(),
            "--allocations".to_owned(),
            format!("--jobs={}", join_ids(ids)),
            "--format=JobIDRaw,State,ExitCode".to_owned(),
        ];
        match self.run("sacct", &args) {
            Ok(output) if output.status.success() => {
                parse_sacct(&String::from_utf8_lossy(&output.stdout))
            }
            Ok(output) => {
                let stderr = stderr_text(&output);
                if stderr.contains("accounting storage is disabled") {
                    self.no_accounting.store(true, Ordering::Relaxed);
                }
                tracing::debug!(%stderr, "sacct cannot tell the state of finished jobs");
                Vec::new()
            }
            Err(error) => {
                tracing::debug!(%error, "sacct cannot tell the state of finished jobs");
                Vec::new()
            }
        }
    }

    fn run(&self, program: &'static str, args: &[String]) -> Result<Output, SlurmError> {
        let path = match &self.bin_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let mut command = Command::new(path);
        command.args(args);
        if program == "sbatch" {
            // The job inherits sbatch's environment: the engine's own GPU list must not leak into a
            // job that Slurm gives other GPUs, or none.
            command
                .env_remove("CUDA_VISIBLE_DEVICES")
                .env_remove("GPU_DEVICE_ORDINAL");
        }
        tracing::trace!(program, ?args, "slurm command");
        command.output().map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => SlurmError::NotFound {
                program,
                dir: self.bin_dir.clone(),
            },
            _ => SlurmError::Spawn { program, source },
        })
    }
}

fn check(program: &'static str, args: &[String], output: &Output) -> Result<(), SlurmError> {
    if output.status.success() {
        Ok(())
    } else {
        Err(command_error(program, args, output))
    }
}

fn command_error(program: &'static str, args: &[String], output: &Output) -> SlurmError {
    SlurmError::Command {
        program,
        args: args.join(" "),
        status: output.status.to_string(),
        stderr: stderr_text(output),
    }
}

fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

fn join_ids(ids: &[JobId]) -> String {
    ids.iter()
        .map(JobId::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `sbatch --parsable` prints `ID` or `ID;CLUSTER`.
fn parse_sbatch(stdout: &str) -> Result<JobId, SlurmError> {
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default();
    let id = line.split(';').next().unwrap_or_default();
    id.parse().map_err(|_| SlurmError::Output {
        program: "sbatch",
        problem: "expected a job id",
        output: stdout.to_owned(),
    })
}

/// Lines of `squeue --format=%i|%T|%r`.
fn parse_squeue(stdout: &str) -> Result<Vec<(JobId, JobState)>, SlurmError> {
    let bad = |problem| SlurmError::Output {
        program: "squeue",
        problem,
        output: stdout.to_owned(),
    };
    let mut states = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut fields = line.splitn(3, '|');
        let (Some(id), Some(state), reason) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad("expected `id|state|reason` lines"));
        };
        let id = id.parse().map_err(|_| bad("expected a job id first"))?;
        let state = match JobState::from_slurm(state, (0, 0)) {
            Some(JobState::Pending { .. }) => JobState::Pending {
                reason: reason.unwrap_or_default().to_owned(),
            },
            Some(state) => state,
            None => unknown_state("squeue", id, state),
        };
        states.push((id, state));
    }
    Ok(states)
}

/// The record of `scontrol show job --oneliner ID`: `Key=Value` fields separated by spaces.
fn parse_scontrol(stdout: &str, id: JobId) -> Option<JobState> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("JobId={id} ")))?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key).and_then(|f| f.strip_prefix('=')))
    };
    let name = field("JobState")?;
    let exit = field("ExitCode").and_then(parse_exit).unwrap_or((0, 0));
    Some(match JobState::from_slurm(name, exit) {
        Some(JobState::Pending { .. }) => JobState::Pending {
            reason: field("Reason").unwrap_or_default().to_owned(),
        },
        Some(state) => state,
        None => unknown_state("scontrol", id, name),
    })
}

/// Lines of `sacct --parsable2 --format=JobIDRaw,State,ExitCode`; a requeued job's last line wins.
fn parse_sacct(stdout: &str) -> Vec<(JobId, JobState)> {
    let mut states = Vec::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.trim().split('|').collect();
        let [id, state, exit] = fields[..] else {
            continue;
        };
        let Ok(id) = id.parse::<JobId>() else {
            continue;
        };
        let exit = parse_exit(exit).unwrap_or((0, 0));
        let state =
            JobState::from_slurm(state, exit).unwrap_or_else(|| unknown_state("sacct", id, state));
        states.retain(|(seen, _)| *seen != id);
        states.push((id, state));
    }
    states
}

fn unknown_state(program: &str, id: JobId, state: &str) -> JobState {
    tracing::warn!(program, job = %id, state, "slurm reported a job state yiflow does not know");
    JobState::Unknown
}

/// `CODE:SIGNAL`, as `scontrol` and `sacct` write exit statuses.
fn parse_exit(text: &str) -> Option<(i32, i32)> {
    let (code, signal) = text.trim().split_once(':')?;
    Some((code.parse().ok()?, signal.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    // Captured from slurm-wlm 22.05.8 on the cluster of scripts/slurm-up.sh.
    const SCONTROL_COMPLETED: &str = r"JobId=11 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901749 Nice=0 Account=(null) QOS=(null) JobState=COMPLETED Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-28T08:42:36 EligibleTime=2026-11-28T08:42:36 AccrueTime=2026-11-28T08:42:36 StartTime=2026-11-28T08:42:37 EndTime=2026-11-28T08:42:37 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-28T08:42:37 Scheduler=Main Partition=debug AllocNode:Sid=localhost:6340 ReqNodeList=(null) ExcNodeList=(null) NodeList=localhost BatchHost=localhost NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=12052M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=12052M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/st/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= ";
    const SCONTROL_FAILED: &str = r"JobId=12 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901748 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-28T08:42:36 EligibleTime=2026-11-28T08:42:36 AccrueTime=2026-11-28T08:42:36 StartTime=2026-11-28T08:42:37 EndTime=2026-11-28T08:42:37 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-28T08:42:37 Scheduler=Main Partition=debug AllocNode:Sid=localhost:6340 ReqNodeList=(null) ExcNodeList=(null) NodeList=localhost BatchHost=localhost NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=12052M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=12052M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/st/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= ";
    const SCONTROL_CANCELLED: &str = r"JobId=6 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901754 Nice=0 Account=(null) QOS=(null) JobState=CANCELLED Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=00:00:01 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-28T08:42:27 EligibleTime=2026-11-28T08:42:27 AccrueTime=2026-11-28T08:42:27 StartTime=2026-11-28T08:42:27 EndTime=2026-11-28T08:42:28 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-28T08:42:27 Scheduler=Main Partition=debug AllocNode:Sid=localhost:6340 ReqNodeList=(null) ExcNodeList=(null) NodeList=localhost BatchHost=localhost NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=12052M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=12052M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/st/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= ";
    const SCONTROL_TIMEOUT: &str = r"JobId=13 JobName=stage with spaces UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901747 Nice=0 Account=(null) QOS=(null) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=00:01:11 TimeLimit=00:01:00 TimeMin=N/A SubmitTime=2026-11-28T08:42:36 EligibleTime=2026-11-28T08:42:36 AccrueTime=2026-11-28T08:42:36 StartTime=2026-11-28T08:42:38 EndTime=2026-11-28T08:43:49 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-28T08:42:38 Scheduler=Main Partition=debug AllocNode:Sid=localhost:6340 ReqNodeList=(null) ExcNodeList=(null) NodeList=localhost BatchHost=localhost NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=12052M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=12052M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/st/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= ";
    const SCONTROL_PENDING: &str = r"JobId=9 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901751 Nice=0 Account=(null) QOS=(null) JobState=PENDING Reason=BeginTime Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-28T08:42:27 EligibleTime=2026-11-28T09:42:27 AccrueTime=2026-11-28T09:42:27 StartTime=2026-11-28T09:42:27 EndTime=Unknown Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-28T08:42:27 Scheduler=Main Partition=debug AllocNode:Sid=localhost:6340 ReqNodeList=(null) ExcNodeList=(null) NodeList= NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=12052M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=12052M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/st/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= ";
    const SCONTROL_RUNNING: &str = r"JobId=7 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901753 Nice=0 Account=(null) QOS=(null) JobState=RUNNING Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:02 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-28T08:42:27 EligibleTime=2026-11-28T08:42:27 AccrueTime=2026-11-28T08:42:27 StartTime=2026-11-28T08:42:27 EndTime=Unknown Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-28T08:42:27 Scheduler=Main Partition=debug AllocNode:Sid=localhost:6340 ReqNodeList=(null) ExcNodeList=(null) NodeList=localhost BatchHost=localhost NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=12052M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=12052M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/st/cap StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= ";
    const SCONTROL_SIGNAL: &str = r"JobId=4 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901756 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=JobLaunchFailure Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:11 RunTime=00:00:00 TimeLimit=365-00:00:00 TimeMin=N/A SubmitTime=2026-11-28T08:42:02 EligibleTime=2026-11-28T08:42:02 AccrueTime=2026-11-28T08:42:02 StartTime=2026-11-28T08:42:03 EndTime=2026-11-28T08:42:03 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-28T08:42:03 Scheduler=Backfill Partition=debug AllocNode:Sid=localhost:6340 ReqNodeList=(null) ExcNodeList=(null) NodeList=localhost BatchHost=localhost NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=12052M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=12052M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/st/cap StdErr=/tmp/st/cap/sig.out StdIn=/dev/null StdOut=/tmp/st/cap/sig.out Power= ";
    const SCONTROL_LAUNCHFAIL: &str = r"JobId=3 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901757 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=JobLaunchFailure Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:53 RunTime=00:00:00 TimeLimit=365-00:00:00 TimeMin=N/A SubmitTime=2026-11-28T08:42:02 EligibleTime=2026-11-28T08:42:02 AccrueTime=2026-11-28T08:42:02 StartTime=2026-11-28T08:42:03 EndTime=2026-11-28T08:42:03 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-28T08:42:03 Scheduler=Backfill Partition=debug AllocNode:Sid=localhost:6340 ReqNodeList=(null) ExcNodeList=(null) NodeList=localhost BatchHost=localhost NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=12052M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=12052M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/st/cap StdErr=/nonexistent/dir/x.out StdIn=/dev/null StdOut=/nonexistent/dir/x.out Power= ";

    /// `squeue --noheader --jobs=6,7,8,9,10,1 --format=%i|%T|%r` right after `scancel 6` (1 is gone).
    const SQUEUE: &str = "6|COMPLETING|None\n8|PENDING|Resources\n9|PENDING|BeginTime\n10|PENDING|Priority\n7|RUNNING|None\n";

    fn pending(reason: &str) -> JobState {
        JobState::Pending {
            reason: reason.to_owned(),
        }
    }

    /// A job for the fake commands below.
    fn spec(dir: &Path) -> SlurmJobSpec {
        SlurmJobSpec {
            name: "yiflow:train".to_owned(),
            command: "true".to_owned(),
            script_path: dir.join("jobs/train.sh"),
            workdir: dir.to_owned(),
            stdout_path: dir.join("logs/train.log"),
            ..SlurmJobSpec::default()
        }
    }

    #[test]
    fn sbatch_parsable_output_gives_the_job_id() {
        assert_eq!(parse_sbatch("42\n").unwrap(), JobId(42));
        assert_eq!(parse_sbatch("42;gpu-cluster\n").unwrap(), JobId(42));
        let error = parse_sbatch("Submitted batch job 42\n").unwrap_err();
        assert!(error.to_string().contains("expected a job id"), "{error}");
    }

    #[test]
    fn squeue_lines_give_live_states_with_pending_reasons() {
        let states: HashMap<JobId, JobState> = parse_squeue(SQUEUE).unwrap().into_iter().collect();
        assert_eq!(states.len(), 5);
        assert_eq!(states[&JobId(6)], JobState::Completing);
        assert_eq!(states[&JobId(7)], JobState::Running);
        assert_eq!(states[&JobId(8)], pending("Resources"));
        assert_eq!(states[&JobId(9)], pending("BeginTime"));
        assert_eq!(states[&JobId(10)], pending("Priority"));
        assert_eq!(states[&JobId(8)].to_string(), "pending (Resources)");
        assert!(parse_squeue("").unwrap().is_empty());
    }

    #[test]
    fn squeue_garbage_is_an_error_not_a_state() {
        let error = parse_squeue("JOBID STATE\n").unwrap_err();
        assert!(error.to_string().contains("squeue"), "{error}");
        assert!(parse_squeue("x|RUNNING|None\n").is_err());
    }

    #[test]
    fn scontrol_records_give_end_states_and_exit_codes() {
        let cases = [
            (SCONTROL_COMPLETED, 11, JobState::Completed),
            (
                SCONTROL_FAILED,
                12,
                JobState::Failed {
                    exit_code: 3,
                    signal: None,
                },
            ),
            (SCONTROL_CANCELLED, 6, JobState::Cancelled),
            (SCONTROL_TIMEOUT, 13, JobState::Timeout),
            (SCONTROL_PENDING, 9, pending("BeginTime")),
            (SCONTROL_RUNNING, 7, JobState::Running),
            (
                SCONTROL_SIGNAL,
                4,
                JobState::Failed {
                    exit_code: 0,
                    signal: Some(11),
                },
            ),
            (
                SCONTROL_LAUNCHFAIL,
                3,
                JobState::Failed {
                    exit_code: 0,
                    signal: Some(53),
                },
            ),
        ];
        for (text, id, expected) in cases {
            assert_eq!(parse_scontrol(text, JobId(id)), Some(expected), "job {id}");
        }
        // The record of another job is not this one's.
        assert_eq!(parse_scontrol(SCONTROL_FAILED, JobId(1)), None);
        assert_eq!(parse_scontrol("", JobId(12)), None);
    }

    #[test]
    fn sacct_lines_give_end_states_and_the_last_attempt_wins() {
        // The documented `--parsable2` shape; this cluster runs without slurmdbd, so none was captured.
        let text = "21|COMPLETED|0:0\n22|FAILED|2:0\n23|CANCELLED by 0|0:15\n24|OUT_OF_MEMORY|0:125\n\
                    25|NODE_FAIL|0:0\n25|PREEMPTED|0:0\n26|TIMEOUT|0:0\nbad line\n";
        let states: HashMap<JobId, JobState> = parse_sacct(text).into_iter().collect();
        assert_eq!(states[&JobId(21)], JobState::Completed);
        assert_eq!(
            states[&JobId(22)],
            JobState::Failed {
                exit_code: 2,
                signal: None
            }
        );
        assert_eq!(states[&JobId(23)], JobState::Cancelled);
        assert_eq!(states[&JobId(24)], JobState::OutOfMemory);
        assert_eq!(states[&JobId(25)], JobState::Preempted);
        assert_eq!(states[&JobId(26)], JobState::Timeout);
        assert_eq!(states.len(), 6);
    }
    /// A folder of fake Slurm commands, each a shell script.
    fn fake_bin(commands: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in commands {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    #[test]
    fn missing_commands_say_slurm_is_not_on_path() {
        let bin = fake_bin(&[]);
        let slurm = Slurm::with_bin_dir(bin.path());
        let error = slurm.version().unwrap_err();
        assert!(matches!(
            error,
            SlurmError::NotFound {
                program: "sbatch",
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            format!("run `sbatch`: no such command in {}", bin.path().display())
        );
        // Looked up on PATH (as `Slurm::new()` does), the message says where Slurm should be.
        let error = SlurmError::NotFound {
            program: "sbatch",
            dir: None,
        };
        assert!(
            error
                .to_string()
                .starts_with("run `sbatch`: Slurm's commands are not on PATH"),
            "{error}"
        );
    }

    #[test]
    fn a_rejected_submission_carries_sbatch_stderr() {
        let bin = fake_bin(&[(
            "sbatch",
            "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2; exit 1",
        )]);
        let work = tempfile::tempdir().unwrap();
        let error = Slurm::with_bin_dir(bin.path())
            .submit(&spec(work.path()))
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("submit job `yiflow:train`: sbatch rejected it"),
            "{text}"
        );
        assert!(text.contains("Invalid partition name specified"), "{text}");
        assert!(!error.is_transient());
        // The script and the log folder were written before sbatch ran.
        assert!(work.path().join("jobs/train.sh").is_file());
        assert!(work.path().join("logs").is_dir());
    }

    #[test]
    fn an_unreachable_controller_is_transient() {
        let bin = fake_bin(&[(
            "squeue",
            "echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1",
        )]);
        let error = Slurm::with_bin_dir(bin.path())
            .query(&[JobId(1)])
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
    }

    #[test]
    fn jobs_nobody_knows_are_unknown_and_sacct_is_asked_once() {
        let counter = tempfile::NamedTempFile::new().unwrap();
        let bin = fake_bin(&[
            (
                "squeue",
                "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
            ),
            (
                "scontrol",
                "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
            ),
            (
                "sacct",
                &format!(
                    "echo x >> {}; echo 'Slurm accounting storage is disabled' >&2; exit 1",
                    counter.path().display()
                ),
            ),
        ]);
        let slurm = Slurm::with_bin_dir(bin.path());
        for _ in 0..2 {
            let states = slurm.query(&[JobId(5)]).unwrap();
            assert_eq!(states[&JobId(5)], JobState::Unknown);
        }
        assert_eq!(std::fs::read_to_string(counter.path()).unwrap(), "x\n");
    }
}
