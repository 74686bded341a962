//! Keeps stage processes from outliving the engine.
//!
//! Every local stage runs in a process group of its own. The engine starts one small helper process per
//! run, `yiflow reap`, and tells it over a pipe which groups are alive (`+PID` / `-PID` lines). The helper
//! does nothing until the pipe closes — which happens however the engine ends, `kill -9` included — and
//! then stops every group still registered (SIGTERM, then SIGKILL after a grace period). One helper per
//! run instead of one supervisor per stage keeps the cost of a stage to the stage's own processes.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};

/// How long stages get between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

static PIPE: Mutex<Option<ChildStdin>> = Mutex::new(None);

fn send(line: &str) {
    let mut pipe = PIPE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if pipe.is_none() {
        *pipe = start();
    }
    if let Some(stdin) = pipe.as_mut()
        && stdin.write_all(line.as_bytes()).is_err()
    {
        tracing::warn!("the stage reaper is gone; stages may outlive a killed engine");
        *pipe = None;
    }
}

fn start() -> Option<ChildStdin> {
    let exe = std::env::current_exe().ok()?;
    let spawned = Command::new(exe)
        .arg("reap")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        // Its own group: a Ctrl-C in the terminal is the engine's to handle.
        .process_group(0)
        .spawn();
    match spawned {
        Ok(mut child) => child.stdin.take(),
        Err(e) => {
            tracing::warn!("failed to start the stage reaper: {e}");
            None
        }
    }
}

/// Registers the process group led by `pid` (a stage that just started).
pub fn watch_group(pid: u32) {
    send(&format!("+{pid}\n"));
}

/// Unregisters a group whose stage has ended.
pub fn forget_group(pid: u32) {
    send(&format!("-{pid}\n"));
}

/// Sends `signal` to the group led by `pid`; false when the group is gone.
pub fn signal_group(pid: u32, signal: Signal) -> bool {
    Pid::from_raw(pid as i32).is_some_and(|p| kill_process_group(p, signal).is_ok())
}

fn group_alive(pid: u32) -> bool {
    Pid::from_raw(pid as i32).is_some_and(|p| test_kill_process_group(p).is_ok())
}

/// `yiflow reap`: waits for its stdin to close, then stops every group still registered.
pub fn reap() -> i32 {
    let mut groups = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (sign, pid) = line.split_at(line.len().min(1));
        match (sign, pid.parse::<u32>()) {
            ("+", Ok(pid)) => {
                groups.insert(pid);
            }
            ("-", Ok(pid)) => {
                groups.remove(&pid);
            }
            _ => {}
        }
    }
    groups.retain(|&pid| signal_group(pid, Signal::TERM));
    let deadline = Instant::now() + GRACE;
    while !groups.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        groups.retain(|&pid| group_alive(pid));
    }
    for pid in groups {
        signal_group(pid, Signal::KILL);
    }
    0
}
