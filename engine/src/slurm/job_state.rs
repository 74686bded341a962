//! Where a Slurm job is (its state, from any of Slurm's commands) and what the engine does about it:
//! wait, accept the result, submit again, or report a failure.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a job is, as Slurm reports it. States Slurm has beyond these are folded into the nearest one
/// (see [`JobState::from_slurm`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting; `reason` is Slurm's (`Resources`, `Priority`, `QOSMaxGRESPerUser`, ...).
    Pending {
        reason: String,
    },
    Running,
    /// Suspended or stopped by an administrator; resumes later.
    Suspended,
    /// Ended; Slurm is still cleaning up its processes.
    Completing,
    Completed,
    /// Ended with a non-zero exit code, or killed by a signal.
    Failed {
        exit_code: i32,
        signal: Option<i32>,
    },
    Cancelled,
    Timeout,
    OutOfMemory,
    NodeFail,
    BootFail,
    Preempted,
    /// Reached its `--deadline` before it could run to the end.
    Deadline,
    /// Neither `squeue`, `scontrol` nor `sacct` knows the job (not yet, or no longer): not a failure.
    Unknown,
}

/// What the engine does with a job, given its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Success,
    /// Ended through no fault of its own (its node failed, or it was preempted): submit it again.
    Retry {
        reason: String,
    },
    Failure {
        reason: String,
    },
    /// Still queued or running, or not visible: ask again later.
    NotFinished,
}

impl JobState {
    /// The state from Slurm's name for it (`squeue %T`, `scontrol JobState=`, `sacct State`) and the
    /// job's exit status (code, signal). Returns `None` for a name Slurm does not use.
    pub fn from_slurm(state: &str, exit: (i32, i32)) -> Option<Self> {
        // sacct writes `CANCELLED by 0`; fixed-width outputs end truncated names with `+`.
        let name = state
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches('+');
        let state = match name {
            "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD"
            | "RESV_DEL_HOLD" | "POWER_UP_NODE" => JobState::Pending {
                reason: String::new(),
            },
            "RUNNING" | "RESIZING" | "SIGNALING" => JobState::Running,
            "SUSPENDED" | "STOPPED" => JobState::Suspended,
            "COMPLETING" | "STAGE_OUT" | "UPDATE_DB" => JobState::Completing,
            "COMPLETED" | "COMPLETE" if exit == (0, 0) => JobState::Completed,
            "COMPLETED" | "COMPLETE" | "FAILED" | "SPECIAL_EXIT" | "LAUNCH_FAILED" => {
                JobState::Failed {
                    exit_code: exit.0,
                    signal: (exit.1 != 0).then_some(exit.1),
                }
            }
            "CANCELLED" => JobState::Cancelled,
            "TIMEOUT" => JobState::Timeout,
            "OUT_OF_MEMORY" => JobState::OutOfMemory,
            "NODE_FAIL" => JobState::NodeFail,
            "BOOT_FAIL" => JobState::BootFail,
            "PREEMPTED" => JobState::Preempted,
            "DEADLINE" => JobState::Deadline,
            // A federation moved the job to a sibling cluster: this one no longer follows it.
            "REVOKED" => JobState::Unknown,
            _ => return None,
        };
        Some(state)
    }

    /// Whether the job has ended (nothing of it runs any more).
    pub fn is_finished(&self) -> bool {
        !matches!(
            self,
            JobState::Pending { .. }
                | JobState::Running
                | JobState::Suspended
                | JobState::Completing
                | JobState::Unknown
        )
    }

    /// What the engine does next.
    pub fn outcome(&self) -> JobOutcome {
        let failure = |reason: &str| JobOutcome::Failure {
            reason: reason.to_owned(),
        };
        let retry = |reason: &str| JobOutcome::Retry {
            reason: reason.to_owned(),
        };
        match self {
            JobState::Pending { .. }
            | JobState::Running
            | JobState::Suspended
            | JobState::Completing
            | JobState::Unknown => JobOutcome::NotFinished,
            JobState::Completed => JobOutcome::Success,
            JobState::Failed {
                exit_code: 0,
                signal: None,
            } => failure("the job failed without an exit code (Slurm could not start it)"),
            JobState::Failed {
                exit_code,
                signal: None,
            } => failure(&format!("the job exited with code {exit_code}")),
            JobState::Failed {
                signal: Some(signal),
                ..
            } => failure(&format!("the job was killed by signal {signal}")),
            JobState::Cancelled => failure("the job was cancelled (scancel, or an administrator)"),
            JobState::Timeout => {
                failure("the job ran past its time limit and Slurm stopped it (raise `time`)")
            }
            JobState::OutOfMemory => failure("the job ran out of memory (raise `memory`)"),
            JobState::Deadline => failure("the job reached its deadline before it could finish"),
            JobState::NodeFail => retry("the job's node failed"),
            JobState::BootFail => retry("the job's node failed to boot"),
            JobState::Preempted => retry("the job was preempted by a higher-priority job"),
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobState::Pending { reason } if !reason.is_empty() && reason != "None" => {
                write!(f, "pending ({reason})")
            }
            JobState::Pending { .. } => f.write_str("pending"),
            JobState::Running => f.write_str("running"),
            JobState::Suspended => f.write_str("suspended"),
            JobState::Completing => f.write_str("completing"),
            JobState::Completed => f.write_str("completed"),
            JobState::Failed {
                exit_code,
                signal: None,
            } => write!(f, "failed (exit code {exit_code})"),
            JobState::Failed {
                signal: Some(signal),
                ..
            } => write!(f, "failed (signal {signal})"),
            JobState::Cancelled => f.write_str("cancelled"),
            JobState::Timeout => f.write_str("timeout"),
            JobState::OutOfMemory => f.write_str("out of memory"),
            JobState::NodeFail => f.write_str("node failure"),
            JobState::BootFail => f.write_str("node boot failure"),
            JobState::Preempted => f.write_str("preempted"),
            JobState::Deadline => f.write_str("deadline reached"),
            JobState::Unknown => f.write_str("unknown to slurm"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(reason: &str) -> JobState {
        JobState::Pending {
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn state_names_fold_into_the_nearest_state() {
        assert_eq!(
            JobState::from_slurm("CANCELLED+", (0, 0)),
            Some(JobState::Cancelled)
        );
        assert_eq!(
            JobState::from_slurm("CONFIGURING", (0, 0)),
            Some(pending(""))
        );
        assert_eq!(
            JobState::from_slurm("STOPPED", (0, 0)),
            Some(JobState::Suspended)
        );
        assert_eq!(
            JobState::from_slurm("STAGE_OUT", (0, 0)),
            Some(JobState::Completing)
        );
        assert_eq!(
            JobState::from_slurm("COMPLETED", (1, 0)),
            Some(JobState::Failed {
                exit_code: 1,
                signal: None
            })
        );
        assert_eq!(JobState::from_slurm("MADE_UP", (0, 0)), None);
    }

    #[test]
    fn end_states_map_to_success_retry_or_failure() {
        assert_eq!(JobState::Completed.outcome(), JobOutcome::Success);
        for state in [JobState::NodeFail, JobState::Preempted, JobState::BootFail] {
            assert!(
                matches!(state.outcome(), JobOutcome::Retry { .. }),
                "{state}"
            );
            assert!(state.is_finished());
        }
        let reason = |state: JobState| match state.outcome() {
            JobOutcome::Failure { reason } => reason,
            other => panic!("{state} gave {other:?}"),
        };
        assert!(
            reason(JobState::Failed {
                exit_code: 3,
                signal: None
            })
            .contains("code 3")
        );
        assert!(
            reason(JobState::Failed {
                exit_code: 0,
                signal: Some(9)
            })
            .contains("signal 9")
        );
        assert!(reason(JobState::Cancelled).contains("cancelled"));
        assert!(reason(JobState::Timeout).contains("time limit"));
        assert!(reason(JobState::OutOfMemory).contains("memory"));
        assert!(reason(JobState::Deadline).contains("deadline"));
        for state in [
            pending("Priority"),
            JobState::Running,
            JobState::Suspended,
            JobState::Completing,
            JobState::Unknown,
        ] {
            assert_eq!(state.outcome(), JobOutcome::NotFinished, "{state}");
            assert!(!state.is_finished());
        }
    }
}
