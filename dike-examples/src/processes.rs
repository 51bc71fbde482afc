//! The demo's local cluster: `dike node` child processes on loopback, each
//! with its own free port, data directory and log file under one temporary
//! directory. The processes themselves are [`dike_harness::Processes`].
//!
//! Invariant: no child outlives the [`ProcessCluster`]: dropping it (at the
//! end, on an error, on Ctrl-C, or while a panic unwinds) kills every child
//! and waits for it, then removes the temporary directory.

use dike_harness::wait::poll_until_blocking;
use dike_harness::{free_loopback_addr, Launch, Processes};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use dike_harness::ProcessError;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Io { what, source }
}

/// One node of the cluster.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// Its listen address.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its log file (stderr of the process).
    pub log: PathBuf,
}

/// `dike node` children, every one a master. See the module documentation.
pub struct ProcessCluster {
    exe: PathBuf,
    cookie: String,
    nodes: Vec<NodeSpec>,
    // Dropped (every child killed) before `dir` is removed.
    processes: Processes,
    dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// Starts `n` nodes `n1` … `nN` of program `exe` (a `dike` binary),
    /// every one a master, with durable data directories.
    pub fn start(exe: &Path, n: usize, cookie: &str) -> Result<ProcessCluster, ProcessError> {
        let dir = tempfile::Builder::new()
            .prefix("dike-demo-")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        let processes = Processes::new(dir.path())?;
        let mut nodes = Vec::with_capacity(n);
        for i in 1..=n {
            let name = format!("n{i}");
            let data_dir = dir.path().join(&name);
            std::fs::create_dir_all(&data_dir).map_err(io(format!("create {data_dir:?}")))?;
            nodes.push(NodeSpec {
                addr: free_loopback_addr().map_err(io("find a free loopback port"))?,
                log: processes.dir().join(format!("{name}.log")),
                name,
                data_dir,
            });
        }
        let mut cluster = ProcessCluster {
            exe: exe.to_owned(),
            cookie: cookie.to_owned(),
            nodes,
            processes,
            dir,
        };
        // One at a time: nodes that all dial each other at the same instant
        // can lose sessions to ractor_cluster's duplicate-connection
        // handling; a node that finds the earlier ones listening does not.
        for i in 0..n {
            cluster.spawn(i)?;
            cluster.await_listening(i)?;
        }
        Ok(cluster)
    }

    /// Polls node `i`'s port until it accepts connections (10 s at most);
    /// fails at once if a node exited.
    fn await_listening(&mut self, i: usize) -> Result<(), ProcessError> {
        let addr = self.nodes[i].addr;
        let processes = &mut self.processes;
        let listening = poll_until_blocking(Duration::from_secs(10), || {
            if let Err(exited) = processes.check_running() {
                return Ok(Err(exited));
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).map(|_| Ok(()))
        });
        listening.unwrap_or_else(|_| {
            Err(ProcessError::Io {
                what: format!("reach node {} at {addr}", self.nodes[i].name),
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            })
        })
    }

    /// The temporary directory holding data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The masters list, `NAME@HOST:PORT` each.
    pub fn masters(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{}@{}", n.name, n.addr))
            .collect()
    }

    /// The process id of a running node.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.processes.pid(name)
    }

    /// The last `lines` lines of node `name`'s log.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        self.processes
            .get(name)
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }

    fn spawn(&mut self, i: usize) -> Result<(), ProcessError> {
        let node = &self.nodes[i];
        let launch = Launch::new(&self.exe)
            .arg("node")
            .args(["--name", &node.name, "--listen", &node.addr.to_string()])
            .args(["--masters", &self.masters().join(",")])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .env("DIKE_COOKIE", &self.cookie)
            .env("RUST_LOG", "info,ractor_cluster=warn");
        self.processes.spawn(&node.name, launch)
    }

    /// Kills node `name` with SIGKILL (no chance to clean up) and waits
    /// until it is gone.
    pub fn kill(&mut self, name: &str) -> Result<(), ProcessError> {
        self.processes.kill(name)
    }

    /// Starts a killed node again on its data directory (and port).
    pub fn restart(&mut self, name: &str) -> Result<(), ProcessError> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| ProcessError::NoSuchProcess(name.to_owned()))?;
        if !self.processes.get_mut(name)?.is_running() {
            self.processes.restart(name)?;
            self.await_listening(i)?;
        }
        Ok(())
    }

    /// Fails if a node that should run has exited by itself.
    pub fn check_running(&mut self) -> Result<(), ProcessError> {
        self.processes.check_running()
    }

    /// Kills every node and waits for them.
    pub fn stop_all(&mut self) {
        self.processes.kill_all();
    }
}
