//! A process supervisor for fault tests: starts the project's binaries as child processes, kills
//! (`SIGKILL`), pauses (`SIGSTOP`), resumes (`SIGCONT`) and terminates (`SIGTERM`) them, and kills
//! every child when it is dropped, so a failing or panicking test leaves no process behind.
//!
//! Each child's stdout and stderr go to a log file; when a test panics, the supervisor prints
//! the tail of every child's log, which is usually where the reason is.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
}

pub struct Supervisor {
    children: Vec<Supervised>,
    log_dir: PathBuf,
}

impl Supervisor {
    /// A supervisor whose child logs go to `target/weir-test-logs/{test}`.
    pub fn new(test: &str) -> Self {
        let exe = std::env::current_exe().expect("test executable path");
        let target = exe.ancestors().nth(3).expect("target/<profile>/deps layout");
        Self::in_dir(target.join("weir-test-logs").join(crate::names::unique(test)))
    }

    /// A supervisor whose child logs go to `log_dir` (created if missing): for a program that is
    /// not a test executable in `target/<profile>/deps/`, such as `weir-bench`.
    pub fn in_dir(log_dir: PathBuf) -> Self {
        std::fs::create_dir_all(&log_dir)
            .unwrap_or_else(|e| panic!("create log directory {}: {e}", log_dir.display()));
        Self { children: Vec::new(), log_dir }
    }

    /// Where the children's logs (and a test's scratch files) go.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Starts `command` as the child called `name`. A later `spawn` with the same name (a
    /// restart) replaces it for `kill`, `pause` and the rest; the old one is still cleaned up.
    pub fn spawn(&mut self, name: &str, mut command: Command) -> u32 {
        // The n-th start of this name: restarts keep their earlier logs.
        let n = self.children.iter().filter(|c| c.name == name).count() + 1;
        let log = self.log_dir.join(format!("{name}.{n}.log"));
        let out = File::create(&log).expect("create child log");
        let err = out.try_clone().expect("clone child log handle");
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        // If the test process itself dies (killed by a CI timeout), take the child with it.
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let pid = child.id();
        self.children.push(Supervised { name: name.to_owned(), child, log });
        pid
    }

    fn current(&mut self, name: &str) -> &mut Supervised {
        self.children
            .iter_mut()
            .rev()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no child called {name}"))
    }

    fn signal(&mut self, name: &str, signal: Signal) {
        let child = self.current(name);
        let pid = Pid::from_raw(child.child.id() as i32);
        // ESRCH (already reaped) is fine for the callers: the process is not running either way.
        let _ = kill(pid, signal);
    }

    /// `kill -9`, then reap it.
    pub fn kill(&mut self, name: &str) -> ExitStatus {
        self.signal(name, Signal::SIGKILL);
        self.current(name).child.wait().expect("wait for killed child")
    }

    /// `SIGSTOP`: the process stays alive but does nothing, as a hung machine would. Returns once
    /// the kernel shows it stopped (signals are delivered asynchronously).
    pub fn pause(&mut self, name: &str) {
        self.signal(name, Signal::SIGSTOP);
        self.await_state(name, |state| state == Some('T'), "stopped");
    }

    /// `SIGCONT` after [`pause`](Self::pause). Returns once it is no longer stopped.
    pub fn resume(&mut self, name: &str) {
        self.signal(name, Signal::SIGCONT);
        self.await_state(name, |state| state != Some('T'), "running");
    }

    fn await_state(&mut self, name: &str, wanted: impl Fn(Option<char>) -> bool, what: &str) {
        let pid = self.current(name).child.id();
        let started = Instant::now();
        while !wanted(process_state(pid)) {
            assert!(started.elapsed() < Duration::from_secs(5), "{name} (pid {pid}) is not {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `SIGTERM`, then wait up to `grace` for a clean exit. Panics if it does not exit in time
    /// (the process is killed by the supervisor's drop).
    pub async fn terminate(&mut self, name: &str, grace: Duration) -> ExitStatus {
        self.signal(name, Signal::SIGTERM);
        self.wait_exit(name, grace)
            .await
            .unwrap_or_else(|| panic!("{name} did not exit within {grace:?} of SIGTERM"))
    }

    /// Waits up to `limit` for the child to exit on its own; `None` if it still runs.
    pub async fn wait_exit(&mut self, name: &str, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.current(name).child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if started.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the latest child called `name` is still running (paused counts as running).
    pub fn is_running(&mut self, name: &str) -> bool {
        self.current(name).child.try_wait().expect("try_wait").is_none()
    }

    /// The first name whose latest child is no longer running, with how it ended: a caller
    /// waiting for the job to make progress would wait for nothing.
    pub fn exited(&mut self) -> Option<(String, ExitStatus)> {
        let mut names: Vec<String> = Vec::new();
        for c in &self.children {
            if !names.contains(&c.name) {
                names.push(c.name.clone());
            }
        }
        names.into_iter().find_map(|name| {
            let status = self.current(&name).child.try_wait().expect("try_wait")?;
            Some((name, status))
        })
    }

    /// Everything the latest child called `name` wrote so far.
    pub fn log(&mut self, name: &str) -> String {
        let path = self.current(name).log.clone();
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Waits until the latest child called `name` has logged `needle`; panics after `limit`
    /// with the log, or as soon as the child exits without logging it.
    pub async fn wait_for_log(&mut self, name: &str, needle: &str, limit: Duration) {
        let started = Instant::now();
        loop {
            if self.log(name).contains(needle) {
                return;
            }
            let exited = !self.is_running(name);
            if exited || started.elapsed() >= limit {
                panic!(
                    "{name} {} without logging {needle:?}; its log:\n{}",
                    if exited { "exited" } else { "ran for the time limit" },
                    self.log(name)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The state letter of `/proc/{pid}/stat` ('R' running, 'S' sleeping, 'T' stopped, 'Z' zombie),
/// or `None` when no such process exists.
pub fn process_state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The fields of `/proc/{pid}/stat` after the command name (which is in parentheses and may
/// contain spaces): `[0]` is field 3 of proc(5), the state; `[11]` and `[12]` are fields 14 and
/// 15, the user and system CPU time in clock ticks. `None` when no such process exists.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for c in &mut self.children {
            if c.child.try_wait().ok().flatten().is_none() {
                // SIGKILL also ends a SIGSTOPped process.
                let _ = c.child.kill();
                let _ = c.child.wait();
            }
            if panicking {
                let log = std::fs::read_to_string(&c.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- last lines of {} ({}) ---", c.name, c.log.display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exited_names_the_latest_child_that_ended() {
        let mut supervisor = Supervisor::new("supervisor-exited");
        supervisor.spawn("short", Command::new("true"));
        let mut long = Command::new("sleep");
        long.arg("30");
        supervisor.spawn("long", long);
        assert!(supervisor.wait_exit("short", Duration::from_secs(5)).await.is_some());
        let (name, status) = supervisor.exited().expect("one child ended");
        assert_eq!(name, "short");
        assert!(status.success());
        // A restart under the same name replaces the ended child.
        let mut again = Command::new("sleep");
        again.arg("30");
        supervisor.spawn("short", again);
        assert_eq!(supervisor.exited(), None);
    }

    #[test]
    fn stat_fields_start_at_the_state() {
        // The test runs on a worker thread: the process's (main thread's) state is any letter.
        let fields = stat_fields(std::process::id()).expect("our own stat");
        assert!(fields[0].len() == 1 && fields[0].chars().all(|c| c.is_ascii_uppercase()));
        assert!(fields[11].parse::<u64>().is_ok() && fields[12].parse::<u64>().is_ok());
        assert_eq!(stat_fields(u32::MAX), None, "no such process");
    }
}
