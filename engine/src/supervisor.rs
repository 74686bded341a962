//! The light supervisor every local stage process runs under (`yiflow supervise -- PROGRAM ARGS`).
//!
//! It starts the stage in a process group of its own and stops that whole group (the stage and anything
//! it started) when the engine goes away: the engine holds the write end of the supervisor's stdin, so
//! an engine that exits, is cancelled or is killed with `kill -9` closes it, and the supervisor sees EOF.
//! That is what keeps a killed engine from leaving training processes behind.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};

/// How long the stage gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// Runs `command` supervised; returns the exit code to exit with (128 + N when killed by signal N).
pub fn supervise(command: &[String]) -> i32 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("yiflow supervise: no command given");
        return 2;
    };
    let mut child = match Command::new(program)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("yiflow: failed to start `{program}`: {e}");
            return 127;
        }
    };
    let group = Pid::from_raw(child.id() as i32).expect("a child pid is positive");

    // EOF (or an error) on stdin means the engine is gone or wants the stage stopped.
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let stopper = std::thread::spawn(move || {
        if rx.recv().is_ok() {
            let _ = kill_process_group(group, Signal::TERM);
            std::thread::sleep(GRACE);
            let _ = kill_process_group(group, Signal::KILL);
        }
    });
    drop(stopper);

    let status = match child.wait() {
        Ok(status) => status,
        Err(e) => {
            eprintln!("yiflow: lost track of the stage process: {e}");
            let _ = kill_process_group(group, Signal::KILL);
            return 1;
        }
    };
    // Whatever the stage left running in its group does not outlive it.
    let _ = kill_process_group(group, Signal::KILL);
    if let Some(code) = status.code() {
        code
    } else {
        let signal = status.signal().unwrap_or(0);
        eprintln!("yiflow: stage process killed by signal {signal}");
        128 + signal
    }
}
