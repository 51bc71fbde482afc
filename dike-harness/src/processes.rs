//! A named set of child processes, their logs in one directory.
//!
//! Invariant: dropping the set kills and reaps every child first (also while
//! a panic unwinds), then removes the log directory if asked to and no panic
//! is unwinding.

use crate::process::{io_error, log_tails, ChildProcess, Launch, ProcessError};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// A named set of child processes with their logs in one directory
/// (`DIR/NAME.log`). See the module documentation.
pub struct Processes {
    dir: PathBuf,
    remove_dir: bool,
    members: Vec<ChildProcess>,
}

impl Processes {
    /// An empty set logging into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Processes, ProcessError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        Ok(Processes {
            dir,
            remove_dir: false,
            members: Vec::new(),
        })
    }

    /// Removes the log directory when dropped, unless a panic is unwinding
    /// (a failing test keeps its logs).
    pub fn removing_logs(mut self) -> Processes {
        self.remove_dir = true;
        self
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts process `name` as `launch` says, logging to `DIR/NAME.log`.
    pub fn spawn(&mut self, name: &str, launch: Launch) -> Result<(), ProcessError> {
        if self.members.iter().any(|p| p.name() == name) {
            return Err(ProcessError::Duplicate(name.to_owned()));
        }
        let log = self.dir.join(format!("{name}.log"));
        self.members.push(ChildProcess::spawn(name, launch, log)?);
        Ok(())
    }

    /// Whether a process `name` was started here.
    pub fn contains(&self, name: &str) -> bool {
        self.members.iter().any(|p| p.name() == name)
    }

    /// Process `name`.
    pub fn get(&self, name: &str) -> Result<&ChildProcess, ProcessError> {
        self.members
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| ProcessError::NoSuchProcess(name.to_owned()))
    }

    /// Process `name`, to kill, signal or restart.
    pub fn get_mut(&mut self, name: &str) -> Result<&mut ChildProcess, ProcessError> {
        self.members
            .iter_mut()
            .find(|p| p.name() == name)
            .ok_or_else(|| ProcessError::NoSuchProcess(name.to_owned()))
    }

    /// Every process, in the order started.
    pub fn iter(&self) -> impl Iterator<Item = &ChildProcess> {
        self.members.iter()
    }

    /// [`ChildProcess::kill`] of process `name`.
    pub fn kill(&mut self, name: &str) -> Result<(), ProcessError> {
        self.get_mut(name)?.kill()
    }

    /// [`ChildProcess::signal`] of process `name`.
    pub fn signal(&mut self, name: &str, signal: &str) -> Result<(), ProcessError> {
        self.get_mut(name)?.signal(signal)
    }

    /// [`ChildProcess::restart`] of process `name`.
    pub fn restart(&mut self, name: &str) -> Result<(), ProcessError> {
        self.get_mut(name)?.restart()
    }

    /// [`ChildProcess::stop`] of process `name`.
    pub fn stop(&mut self, name: &str, grace: Duration) -> Result<ExitStatus, ProcessError> {
        self.get_mut(name)?.stop(grace)
    }

    /// Process `name`'s id while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.get(name).ok()?.pid()
    }

    /// Everything process `name` has logged so far (empty if unknown).
    pub fn log(&self, name: &str) -> String {
        self.get(name).map(ChildProcess::log).unwrap_or_default()
    }

    /// Whether every process is running.
    pub fn all_running(&mut self) -> bool {
        self.members.iter_mut().all(ChildProcess::is_running)
    }

    /// The processes that exited although nobody killed or stopped them,
    /// with how they ended.
    pub fn unexpected_exits(&mut self) -> Vec<(String, ExitStatus)> {
        self.members
            .iter_mut()
            .filter_map(|p| Some((p.name().to_owned(), p.exited()?)))
            .collect()
    }

    /// Fails with the first process that exited by itself (its status and
    /// the end of its log).
    pub fn check_running(&mut self) -> Result<(), ProcessError> {
        self.members
            .iter_mut()
            .try_for_each(ChildProcess::check_running)
    }

    /// The last `lines` lines of every process's log, for a failing test's
    /// message.
    pub fn log_tails(&self, lines: usize) -> String {
        format!(
            "logs in {}\n{}",
            self.dir.display(),
            log_tails(&self.members, lines)
        )
    }

    /// Kills every process and waits for them.
    pub fn kill_all(&mut self) {
        for p in &mut self.members {
            let _ = p.kill();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.kill_all();
        if self.remove_dir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::wait_until_blocking;

    use crate::test_support::{dir, gone, sleeper};

    #[test]
    fn dropping_the_set_kills_and_reaps_every_child_and_removes_the_logs() {
        let d = dir("drop");
        let mut ps = Processes::new(&d).expect("dir").removing_logs();
        ps.spawn("a", sleeper()).expect("spawn");
        ps.spawn("b", sleeper()).expect("spawn");
        assert!(matches!(
            ps.spawn("a", sleeper()),
            Err(ProcessError::Duplicate(_))
        ));
        let pids: Vec<u32> = ["a", "b"].iter().filter_map(|n| ps.pid(n)).collect();
        assert_eq!(pids.len(), 2);
        assert!(ps.all_running());
        drop(ps);
        assert!(pids.iter().all(|p| gone(*p)), "{pids:?}");
        assert!(!d.exists());
    }

    #[test]
    fn a_killed_process_restarts_with_the_same_command_and_one_log() {
        let mut ps = Processes::new(dir("restart")).expect("dir").removing_logs();
        let say = Launch::new("sh")
            .args(["-c", "echo life of $WHO >&2; exec sleep 600"])
            .env("WHO", "n1");
        ps.spawn("n1", say).expect("spawn");
        let lives_logged = |ps: &Processes, n: usize| {
            wait_until_blocking(Duration::from_secs(10), "the life logged", || {
                let log = ps.log("n1");
                if log.matches("life of n1").count() == n {
                    Ok(())
                } else {
                    Err(log)
                }
            })
        };
        lives_logged(&ps, 1);
        let first = ps.pid("n1").expect("running");
        assert!(matches!(
            ps.restart("n1"),
            Err(ProcessError::StillRunning(_))
        ));
        ps.kill("n1").expect("kill");
        assert_eq!(ps.pid("n1"), None);
        assert!(ps.unexpected_exits().is_empty(), "a kill is expected");
        ps.restart("n1").expect("restart");
        assert_ne!(ps.pid("n1"), Some(first));
        assert_eq!(ps.get("n1").expect("known").lives(), 2);
        lives_logged(&ps, 2);
    }

    #[test]
    fn an_exit_by_itself_is_reported_with_its_status_and_log() {
        let mut ps = Processes::new(dir("exit")).expect("dir").removing_logs();
        ps.spawn("ok", sleeper()).expect("spawn");
        let fail = Launch::new("sh").args(["-c", "echo bad config >&2; exit 3"]);
        ps.spawn("bad", fail).expect("spawn");
        let exits = wait_until_blocking(Duration::from_secs(10), "bad exiting", || {
            let exits = ps.unexpected_exits();
            if exits.is_empty() {
                Err("still running")
            } else {
                Ok(exits)
            }
        });
        assert_eq!(exits.len(), 1);
        assert_eq!((exits[0].0.as_str(), exits[0].1.code()), ("bad", Some(3)));
        match ps.check_running() {
            Err(ProcessError::Exited { name, log_tail, .. }) => {
                assert_eq!(name, "bad");
                assert_eq!(log_tail, "bad config\n");
            }
            other => panic!("{other:?}"),
        }
        assert!(ps.log_tails(5).contains("--- bad ("));
    }
}
