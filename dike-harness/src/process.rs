//! Child processes of a test (or of the demo): each one named, started from
//! a [`Launch`] (program, arguments, environment), writing its stderr (and,
//! if asked, its stdout) to a log file of its own.
//!
//! Invariant: no child outlives its owner. Dropping a [`ChildProcess`], or
//! the [`Processes`](crate::Processes) holding it — at the end, on an
//! error, or while a panic unwinds — kills the child (SIGKILL) and waits for
//! it, so no node of a failed test lingers holding ports and data
//! directories.
//!
//! A log is appended to across the process's lives ([`ChildProcess::restart`]),
//! so what a node logged before a crash is still there after the restart.
//! A failing test keeps its logs: removal ([`ChildProcess::removing_log`],
//! [`crate::Processes::removing_logs`]) is skipped while a panic unwinds.

use crate::wait::{poll_until_blocking, NotYet};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Why a process could not be started, signalled or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A file, directory or process operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// A process exited by itself.
    #[error("{name} exited by itself ({status}); the end of its log:\n{log_tail}")]
    Exited {
        /// The process.
        name: String,
        /// How it exited.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// No process of that name was started here.
    #[error("no process named {0:?}")]
    NoSuchProcess(String),
    /// A process of that name was already started here.
    #[error("a process named {0:?} was already started")]
    Duplicate(String),
    /// The process is not running (never started again after a kill, or it
    /// exited).
    #[error("{0} is not running")]
    NotRunning(String),
    /// The process is running, so it cannot be started again.
    #[error("{0} is already running")]
    StillRunning(String),
    /// kill(1) could not signal the process.
    #[error("kill -{signal} {name} failed ({status})")]
    Signal {
        /// The process.
        name: String,
        /// The signal's name.
        signal: String,
        /// How kill(1) exited.
        status: ExitStatus,
    },
    /// The process was still running when the grace period of a graceful
    /// stop ended; it was killed.
    #[error("{name} did not stop within {within:?} of SIGTERM; log: {}", log.display())]
    NotStopped {
        /// The process.
        name: String,
        /// The grace period.
        within: Duration,
        /// Its log file.
        log: PathBuf,
    },
}

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Io { what, source }
}

/// How to start a process: program, arguments, environment. Kept by the
/// [`ChildProcess`], so a restart runs the very same command.
#[derive(Clone, Debug)]
pub struct Launch {
    program: OsString,
    args: Vec<OsString>,
    /// `None`: removed from the inherited environment.
    env: Vec<(OsString, Option<OsString>)>,
    stdout_to_log: bool,
}

impl Launch {
    /// Runs `program` with no arguments, the caller's environment, stdin
    /// and stdout closed, stderr to the log.
    pub fn new(program: impl AsRef<OsStr>) -> Launch {
        Launch {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdout_to_log: false,
        }
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets environment variable `key` to `value`.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        let value = Some(value.as_ref().to_owned());
        self.env.push((key.as_ref().to_owned(), value));
        self
    }

    /// Removes environment variable `key` from what the process inherits.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Launch {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Whether stdout goes to the log too (default: discarded).
    pub fn stdout_to_log(mut self, on: bool) -> Launch {
        self.stdout_to_log = on;
        self
    }

    /// The arguments, as given.
    pub fn arguments(&self) -> &[OsString] {
        &self.args
    }

    fn command(&self, log: File) -> io::Result<Command> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        let stdout = if self.stdout_to_log {
            Stdio::from(log.try_clone()?)
        } else {
            Stdio::null()
        };
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(log);
        Ok(cmd)
    }
}

/// One named child process and its log file. See the module documentation.
pub struct ChildProcess {
    name: String,
    launch: Launch,
    log: PathBuf,
    child: Option<Child>,
    lives: u32,
    remove_log: bool,
}

impl ChildProcess {
    /// Starts process `name` as `launch` says, appending its output to the
    /// file `log` (created if missing).
    pub fn spawn(
        name: impl Into<String>,
        launch: Launch,
        log: impl Into<PathBuf>,
    ) -> Result<ChildProcess, ProcessError> {
        let mut p = ChildProcess {
            name: name.into(),
            launch,
            log: log.into(),
            child: None,
            lives: 0,
            remove_log: false,
        };
        p.restart()?;
        Ok(p)
    }

    /// Removes the log file when dropped, unless a panic is unwinding (a
    /// failing test keeps its logs).
    pub fn removing_log(mut self) -> ChildProcess {
        self.remove_log = true;
        self
    }

    /// Starts the process again, with the same program, arguments and
    /// environment, after a [`ChildProcess::kill`], a
    /// [`ChildProcess::stop`] or an exit. Fails if it is running.
    pub fn restart(&mut self) -> Result<(), ProcessError> {
        if self.is_running() {
            return Err(ProcessError::StillRunning(self.name.clone()));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_error(format!("open {}", self.log.display())))?;
        let child = self
            .launch
            .command(log)
            .and_then(|mut cmd| cmd.spawn())
            .map_err(io_error(format!("start {}", self.name)))?;
        self.child = Some(child);
        self.lives += 1;
        Ok(())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it is started.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// How many times it was started.
    pub fn lives(&self) -> u32 {
        self.lives
    }

    /// Its process id, unless it was killed or stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How it ended, if it exited by itself (not through
    /// [`ChildProcess::kill`] or [`ChildProcess::stop`]); `None` while it
    /// runs (a failure to ask the system counts as running).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Whether it runs (a paused process does).
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// Fails with its exit status and the end of its log if it exited by
    /// itself.
    pub fn check_running(&mut self) -> Result<(), ProcessError> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(ProcessError::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log_tail: self.log_tail(15),
            }),
        }
    }

    /// Kills it with SIGKILL (a crash: nothing is flushed or closed) and
    /// waits until it is gone; one that already exited is only reaped.
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                child
                    .kill()
                    .map_err(io_error(format!("kill {}", self.name)))?;
            }
            child
                .wait()
                .map_err(io_error(format!("wait for {}", self.name)))?;
        }
        Ok(())
    }

    /// Sends signal `signal` (`STOP`, `CONT`, `TERM`, …) with kill(1).
    pub fn signal(&mut self, signal: &str) -> Result<(), ProcessError> {
        let pid = self
            .pid()
            .ok_or_else(|| ProcessError::NotRunning(self.name.clone()))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .map_err(io_error("run kill(1)"))?;
        if status.success() {
            Ok(())
        } else {
            Err(ProcessError::Signal {
                name: self.name.clone(),
                signal: signal.to_owned(),
                status,
            })
        }
    }

    /// Stops it gracefully: SIGTERM (and SIGCONT, so a paused process can
    /// handle it), then waits for it to exit. After `grace` it is killed
    /// and the stop fails.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, ProcessError> {
        if !self.is_running() {
            return Err(ProcessError::NotRunning(self.name.clone()));
        }
        self.signal("TERM")?;
        self.signal("CONT")?;
        let child = self.child.as_mut().expect("running");
        let exited = poll_until_blocking(grace, || match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err(NotYet::from("it still runs")),
            Err(e) => Err(NotYet::from(e)),
        });
        match exited {
            Ok(status) => {
                self.child = None;
                Ok(status)
            }
            Err(_) => {
                self.kill()?;
                Err(ProcessError::NotStopped {
                    name: self.name.clone(),
                    within: grace,
                    log: self.log.clone(),
                })
            }
        }
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it has logged so far, in all its lives.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log, each ending in a newline.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.kill();
        if self.remove_log && !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The last `lines` lines of `text`, each ending in a newline.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The last `lines` lines of every log of `processes`, each under a
/// `--- NAME (PATH) ---` header, for a failing test's message.
pub fn log_tails<'a>(
    processes: impl IntoIterator<Item = &'a ChildProcess>,
    lines: usize,
) -> String {
    processes
        .into_iter()
        .map(|p| {
            format!(
                "--- {} ({}) ---\n{}",
                p.name,
                p.log.display(),
                p.log_tail(lines)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::wait_until_blocking;

    use crate::test_support::{dir, gone, sleeper};

    #[test]
    fn a_tail_is_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 10), "a\nb\nc\n");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn a_child_is_killed_while_a_panic_unwinds_and_its_log_is_kept() {
        let log = dir("unwind").with_extension("log");
        let pid = std::sync::Mutex::new(None);
        let r = std::panic::catch_unwind(|| {
            let p = ChildProcess::spawn("u", sleeper(), &log)
                .expect("spawn")
                .removing_log();
            *pid.lock().unwrap() = p.pid();
            panic!("the test fails");
        });
        assert!(r.is_err());
        let pid = pid.into_inner().unwrap().expect("started");
        assert!(gone(pid));
        assert!(log.exists(), "a failing test keeps its log");
        let _ = std::fs::remove_file(&log);
    }

    #[test]
    fn a_paused_process_still_runs_and_stops_gracefully_on_term() {
        let mut p = ChildProcess::spawn("p", sleeper(), dir("pause").with_extension("log"))
            .expect("spawn")
            .removing_log();
        p.signal("STOP").expect("STOP");
        assert!(p.is_running());
        let status = p.stop(Duration::from_secs(10)).expect("stops");
        assert!(!status.success());
        assert_eq!(p.pid(), None);
        assert!(matches!(p.signal("CONT"), Err(ProcessError::NotRunning(_))));
    }

    #[test]
    fn the_environment_is_set_and_emptied_in_order() {
        let launch = Launch::new("env")
            .env("DIKE_HARNESS_A", "1")
            .env("DIKE_HARNESS_B", "2")
            .env_remove("DIKE_HARNESS_B")
            .stdout_to_log(true);
        let log = dir("env").with_extension("log");
        let mut p = ChildProcess::spawn("env", launch, log)
            .expect("spawn")
            .removing_log();
        wait_until_blocking(Duration::from_secs(10), "env exiting", || {
            p.exited().ok_or("still running")
        });
        let out = p.log();
        assert!(out.contains("DIKE_HARNESS_A=1\n"), "{out}");
        assert!(!out.contains("DIKE_HARNESS_B"), "{out}");
    }
}
