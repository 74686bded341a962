//! Runs a stage's process on this machine, under the supervisor (`yiflow supervise`), with its output
//! going to the stage's log file.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use yiflow_dsl::ExecutorDecl;

use crate::Launch;

/// Everything needed to start one stage process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub log: PathBuf,
    pub executor: ExecutorDecl,
}

/// How a stage process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitOutcome {
    Success,
    /// Failed, with how ("exit code 2"); `retry` is true where trying again may help by itself.
    Failed {
        detail: String,
        retry: bool,
    },
    Cancelled,
}

/// The programs stage processes are started with.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The `yiflow` binary (supervisor and torch-free kinds).
    pub yiflow: PathBuf,
    /// The `yiflow-worker` binary (`LibTorch` kinds).
    pub worker: PathBuf,
}

impl Programs {
    /// The running `yiflow` and the worker beside it (or `$YIFLOW_WORKER`).
    pub fn current() -> std::io::Result<Self> {
        let yiflow = std::env::current_exe()?;
        let worker = std::env::var_os("YIFLOW_WORKER")
            .map_or_else(|| yiflow.with_file_name("yiflow-worker"), PathBuf::from);
        Ok(Self { yiflow, worker })
    }

    /// Program and arguments for a kind's launch.
    pub fn command_for(&self, launch: &Launch) -> (PathBuf, Vec<String>, Vec<(String, String)>) {
        match launch {
            Launch::Shell { line, env } => {
                ("sh".into(), vec!["-c".into(), line.clone()], env.clone())
            }
            Launch::Internal => (self.yiflow.clone(), vec!["exec-stage".into()], Vec::new()),
            Launch::Worker => (self.worker.clone(), vec!["exec-stage".into()], Vec::new()),
        }
    }
}

/// Runs `spec` locally until it ends or `cancel` fires (then the supervisor stops its process group).
pub async fn run_local(
    programs: &Programs,
    spec: &ProcessSpec,
    cancel: &CancellationToken,
) -> std::io::Result<ExitOutcome> {
    if spec.program.is_absolute() && !spec.program.exists() {
        append(
            &spec.log,
            &format!("yiflow: {} not found\n", spec.program.display()),
        )?;
        return Ok(ExitOutcome::Failed {
            detail: format!(
                "{} not found (build it with `cargo build --release -p yiflow-worker`, or set YIFLOW_WORKER)",
                spec.program.display()
            ),
            retry: false,
        });
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    let mut command = Command::new(&programs.yiflow);
    command
        .arg("supervise")
        .arg("--")
        .arg(&spec.program)
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own group, so a Ctrl-C in the terminal reaches the engine only; the engine stops stages.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = command.spawn()?;
    let stdin = child.stdin.take();
    let status = tokio::select! {
        status = child.wait() => status?,
        () = cancel.cancelled() => {
            drop(stdin);
            child.wait().await?;
            return Ok(ExitOutcome::Cancelled);
        }
    };
    drop(stdin);
    Ok(match status.code() {
        Some(0) => ExitOutcome::Success,
        Some(code) if code > 128 => ExitOutcome::Failed {
            detail: format!("killed by signal {}", code - 128),
            retry: false,
        },
        Some(code) => ExitOutcome::Failed {
            detail: format!("exit code {code}"),
            retry: false,
        },
        None => ExitOutcome::Failed {
            detail: "the supervisor was killed".into(),
            retry: false,
        },
    })
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}
