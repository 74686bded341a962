//! Helpers for end-to-end tests: a recipe in a temporary folder and the real `yiflow` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temporary project folder holding one recipe.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(recipe: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("recipe.kdl"), recipe).expect("write recipe");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn recipe(&self) -> PathBuf {
        self.dir.path().join("recipe.kdl")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write file");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap_or_default()
    }

    pub fn set_recipe(&self, recipe: &str) {
        self.write("recipe.kdl", recipe);
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_yiflow"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs `yiflow ARGS... recipe.kdl` (the recipe goes after the subcommand).
    pub fn yiflow(&self, sub: &str, extra: &[&str]) -> Run {
        let mut args = vec![sub, "recipe.kdl"];
        args.extend_from_slice(extra);
        let output = self.command(&args).output().expect("yiflow runs");
        Run::from(output)
    }

    /// Starts `yiflow run recipe.kdl EXTRA...` in the background.
    pub fn spawn_run(&self, extra: &[&str]) -> Child {
        let mut args = vec!["run", "recipe.kdl"];
        args.extend_from_slice(extra);
        self.command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("yiflow starts")
    }

    /// Lines of the file a stage appended to (marker files record executions).
    pub fn count_lines(&self, rel: &str) -> usize {
        self.read(rel).lines().count()
    }

    pub fn plan_json(&self) -> serde_json::Value {
        let run = self.yiflow("plan", &["--format", "json"]);
        assert_eq!(run.code, 0, "plan failed: {}", run.stderr);
        serde_json::from_str(&run.stdout).expect("plan prints JSON")
    }
}

/// A finished `yiflow` process.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Waits until `cond` holds, up to `limit`.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The `ran` stage names of a run's output, sorted.
pub fn ran(run: &Run) -> Vec<String> {
    let mut v: Vec<String> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("ran     "))
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    v.sort();
    v
}

/// Is a process with this pid alive?
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Sends SIGINT to `pid`, as Ctrl-C in a terminal would.
pub fn interrupt(pid: u32) {
    rustix::process::kill_process(pid_of(pid), rustix::process::Signal::INT)
        .unwrap_or_else(|e| panic!("SIGINT to {pid}: {e}"));
}

/// SIGKILL to the process group led by `pid`, if there is one, and to `pid` itself.
///
/// Through the syscall, not the `kill` program: procps-ng 4.0.2's `kill -9 -PGID` signals the group
/// of PGID's first digit only (`kill -9 -25256` is `kill(-2, SIGKILL)`), and `-1` is every process.
pub fn kill_group(pid: u32) {
    let _ = rustix::process::kill_process_group(pid_of(pid), rustix::process::Signal::KILL);
    let _ = rustix::process::kill_process(pid_of(pid), rustix::process::Signal::KILL);
}

fn pid_of(pid: u32) -> rustix::process::Pid {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .unwrap_or_else(|| panic!("{pid} is not a process id"))
}
