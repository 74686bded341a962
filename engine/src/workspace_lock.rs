//! One writer per workspace. `<ws>/lock` carries an OS file lock (flock) for as long as a run holds the
//! workspace, and names the holder in JSON so a second run can say who it is. The OS releases the lock
//! when its process dies however it dies, so a lock file that names a holder whose lock is free was
//! left by a killed run: it is taken over with a note, never a manual unlock chore.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Who holds (or held) a workspace: the JSON content of `<ws>/lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// The command line, e.g. `yiflow run recipes/quickstart.kdl`.
    pub command: String,
    /// Unix time in ms when the holder took the lock.
    pub started_at: u64,
    /// The workspace folder.
    #[serde(default)]
    pub workspace: PathBuf,
}

impl LockHolder {
    /// The holder this process would write.
    fn this_process(workspace: &Path, command: &str) -> Self {
        LockHolder {
            pid: std::process::id(),
            host: hostname(),
            command: command.to_owned(),
            started_at: unix_ms(SystemTime::now()),
            workspace: workspace.to_path_buf(),
        }
    }

    /// When the holder started, as `YYYY-MM-DD HH:MM:SS UTC`.
    pub fn started(&self) -> String {
        format_utc(self.started_at)
    }
}

impl fmt::Display for LockHolder {
    /// `pid 4242 (yiflow run a.kdl, started 2026-11-03 14:02:11 UTC)`, naming the host when it is not
    /// this one (a workspace on a shared file system).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pid == 0 {
            f.write_str("another process (the lock file does not say which)")?;
            return Ok(());
        }
        write!(f, "pid {}", self.pid)?;
        if self.host != hostname() {
            write!(f, " on host {}", self.host)?;
        }
        write!(f, " ({}, started {})", self.command, self.started())
    }
}

/// The workspace lock, held until dropped.
#[derive(Debug)]
pub struct WorkspaceLock {
    file: File,
    path: PathBuf,
    holder: LockHolder,
}

/// A racing `holder()` probe holds a shared lock for microseconds; a real holder for the whole run.
/// Trying a few times over ~100 ms tells them apart.
const ACQUIRE_TRIES: u32 = 6;
const ACQUIRE_PAUSE: Duration = Duration::from_millis(20);

impl WorkspaceLock {
    /// Takes the lock of the workspace `ws` (created if missing) for `command`. Returns the holder
    /// named by a lock left behind by a killed process, which has just been taken over, if any.
    pub fn acquire(
        ws: &Path,
        command: &str,
    ) -> Result<(WorkspaceLock, Option<LockHolder>), StoreError> {
        fs::create_dir_all(ws).map_err(|e| StoreError::io("create", ws, e))?;
        let ws = std::path::absolute(ws).unwrap_or_else(|_| ws.to_path_buf());
        let path = ws.join("lock");
        // Rust opens files close-on-exec, so stage processes never inherit (and keep) the lock.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    tries += 1;
                    if tries == ACQUIRE_TRIES {
                        let mut holder =
                            read_holder_patiently(&file).unwrap_or_else(unknown_holder);
                        holder.workspace.clone_from(&ws);
                        return Err(StoreError::Locked(holder));
                    }
                    std::thread::sleep(ACQUIRE_PAUSE);
                }
                Err(TryLockError::Error(e)) => return Err(StoreError::io("lock", &path, e)),
            }
        }
        // A clean release empties the file, so a holder still named here was killed.
        let stale = read_holder(&file).map(|mut h| {
            h.workspace.clone_from(&ws);
            h
        });
        let holder = LockHolder::this_process(&ws, command);
        let json = serde_json::to_vec(&holder).map_err(|source| StoreError::Encode {
            what: "the lock holder".into(),
            source,
        })?;
        file.set_len(0)
            .and_then(|()| file.write_all_at(&json, 0))
            .map_err(|e| StoreError::io("write", &path, e))?;
        Ok((WorkspaceLock { file, path, holder }, stale))
    }

    /// The process holding the lock of `ws` right now, if any (a lock file left by a killed process
    /// counts as free).
    pub fn holder(ws: &Path) -> Option<LockHolder> {
        let file = File::open(ws.join("lock")).ok()?;
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = read_holder_patiently(&file).unwrap_or_else(unknown_holder);
                holder.workspace = std::path::absolute(ws).unwrap_or_else(|_| ws.to_path_buf());
                Some(holder)
            }
            Err(TryLockError::Error(_)) => None,
        }
    }

    /// What this lock says about its holder (this process).
    pub fn me(&self) -> &LockHolder {
        &self.holder
    }
}

impl Drop for WorkspaceLock {
    fn drop(&mut self) {
        // Empty the file first: a holder still named after the lock is free means a killed process.
        if let Err(e) = self.file.set_len(0) {
            tracing::warn!("failed to clear {}: {e}", self.path.display());
        }
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &File) -> Option<LockHolder> {
    serde_json::from_slice(&read_all_at(file)).ok()
}

/// The holder writes its JSON right after locking; give it a moment if the file is still empty.
fn read_holder_patiently(file: &File) -> Option<LockHolder> {
    for _ in 0..25 {
        if let Some(holder) = read_holder(file) {
            return Some(holder);
        }
        std::thread::sleep(ACQUIRE_PAUSE);
    }
    None
}

/// The whole file by positional reads (the handle's offset is left alone).
fn read_all_at(file: &File) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = file.read_at(&mut chunk, buf.len() as u64) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf
}

fn unknown_holder() -> LockHolder {
    LockHolder {
        pid: 0,
        host: hostname(),
        command: String::new(),
        started_at: 0,
        workspace: PathBuf::new(),
    }
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian; Howard Hinnant's `civil_from_days`).
fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Child processes for tests: the test binary re-executed to run one "test" whose body holds a lock
/// (or the index) until its stdin closes or it is killed.
#[cfg(test)]
pub(crate) mod test_child {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, ChildStdout, Command, Stdio};

    /// Environment variable that carries the child's argument (a path).
    pub const ARG_ENV: &str = "YIFLOW_TEST_CHILD_ARG";
    /// What the child prints once it holds what it should.
    pub const READY: &str = "YIFLOW-CHILD-READY";

    pub struct Held {
        pub child: Child,
        _stdout: BufReader<ChildStdout>,
    }

    impl Held {
        /// Lets the child release and exit normally.
        pub fn release(mut self) {
            drop(self.child.stdin.take());
            let _ = self.child.wait();
        }

        /// `kill -9`.
        pub fn kill(mut self) {
            self.child.kill().expect("kill child");
            let _ = self.child.wait();
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Runs the test `name` (full path) of this binary in a child with `arg`, and waits until it says
    /// it is ready.
    pub fn spawn(name: &str, arg: &std::path::Path) -> Held {
        // The running image itself: with a target folder shared between checkouts, the file at
        // `current_exe()` may already be another build of this crate's tests.
        let mut child = Command::new("/proc/self/exe")
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ARG_ENV, arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn test child");
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut line = String::new();
        loop {
            line.clear();
            let n = stdout.read_line(&mut line).expect("read child stdout");
            assert!(n > 0, "test child `{name}` exited before it was ready");
            // libtest prints `test NAME ... ` on the same line first.
            if line.trim_end().ends_with(READY) {
                break;
            }
        }
        Held {
            child,
            _stdout: stdout,
        }
    }

    /// In the child: the argument, or `None` when running as an ordinary test.
    pub fn arg() -> Option<std::path::PathBuf> {
        std::env::var_os(ARG_ENV).map(Into::into)
    }

    /// In the child: says it is ready, then waits for stdin to close.
    pub fn ready_and_wait() {
        println!("{READY}");
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    }
}

#[cfg(test)]
mod tests {
    use super::test_child;
    use super::*;

    #[test]
    fn child_holds_lock() {
        // The body of the child process of the tests below; a no-op as an ordinary test.
        let Some(ws) = test_child::arg() else { return };
        let (_lock, _) = WorkspaceLock::acquire(&ws, "yiflow run held.kdl").expect("child lock");
        test_child::ready_and_wait();
    }

    const CHILD: &str = "workspace_lock::tests::child_holds_lock";

    #[test]
    fn held_lock_names_this_process_and_is_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, stale) = WorkspaceLock::acquire(dir.path(), "yiflow run a.kdl").unwrap();
        assert_eq!(stale, None);
        // flock conflicts between two opens even within one process.
        let holder = WorkspaceLock::holder(dir.path()).expect("lock is held");
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.command, "yiflow run a.kdl");
        drop(lock);
        assert_eq!(WorkspaceLock::holder(dir.path()), None);
        let (_again, stale) = WorkspaceLock::acquire(dir.path(), "yiflow run b.kdl").unwrap();
        assert_eq!(stale, None, "a clean release leaves nothing to take over");
    }

    #[test]
    fn a_live_holder_in_another_process_refuses_a_second_run() {
        let dir = tempfile::tempdir().unwrap();
        let held = test_child::spawn(CHILD, dir.path());
        let pid = held.child.id();
        let error = WorkspaceLock::acquire(dir.path(), "yiflow run b.kdl").unwrap_err();
        let StoreError::Locked(holder) = &error else {
            panic!("expected Locked, got {error}")
        };
        assert_eq!(holder.pid, pid);
        assert_eq!(holder.command, "yiflow run held.kdl");
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "is in use by pid {pid} (yiflow run held.kdl, started "
            )),
            "{text}"
        );
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert_eq!(WorkspaceLock::holder(dir.path()).map(|h| h.pid), Some(pid));

        held.release();
        let (_lock, stale) = WorkspaceLock::acquire(dir.path(), "yiflow run b.kdl").unwrap();
        assert_eq!(stale, None);
    }

    #[test]
    fn a_lock_left_by_a_killed_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let held = test_child::spawn(CHILD, dir.path());
        let pid = held.child.id();
        held.kill();
        assert_eq!(
            WorkspaceLock::holder(dir.path()),
            None,
            "a dead holder holds nothing"
        );
        let (lock, stale) = WorkspaceLock::acquire(dir.path(), "yiflow run b.kdl").unwrap();
        let stale = stale.expect("the killed holder is reported");
        assert_eq!(stale.pid, pid);
        assert_eq!(stale.command, "yiflow run held.kdl");
        assert_eq!(lock.me().pid, std::process::id());
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
    }
}
