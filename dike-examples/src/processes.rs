//! A local cluster of `dike node` child processes on loopback, for the demo
//! and for tests: each node has its own free port, data directory and log
//! file under one temporary directory.
//!
//! Invariant: no child outlives the [`ProcessCluster`]: dropping it (at the
//! end, on an error, on Ctrl-C, or while a panic unwinds) kills every child
//! and waits for it, then removes the temporary directory.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Why the cluster could not be started or changed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A file, directory, port or process operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A node process exited by itself.
    #[error("node {name} exited by itself ({status}); the end of its log:\n{log_tail}")]
    Exited {
        /// The node.
        name: String,
        /// How it exited.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// No node of that name is in the cluster.
    #[error("no node named {0:?} in the local cluster")]
    NoSuchNode(String),
}

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
    children: Vec<Option<Child>>,
    // Dropped after `Drop::drop` has killed the children.
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
        let mut nodes = Vec::with_capacity(n);
        for i in 1..=n {
            let name = format!("n{i}");
            let data_dir = dir.path().join(&name);
            std::fs::create_dir_all(&data_dir).map_err(io(format!("create {data_dir:?}")))?;
            nodes.push(NodeSpec {
                addr: free_loopback_addr()?,
                log: dir.path().join(format!("{name}.log")),
                name,
                data_dir,
            });
        }
        let mut cluster = ProcessCluster {
            exe: exe.to_owned(),
            cookie: cookie.to_owned(),
            children: (0..n).map(|_| None).collect(),
            nodes,
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

    /// Polls node `i`'s port until it accepts connections (10 s at most).
    fn await_listening(&mut self, i: usize) -> Result<(), ProcessError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let addr = self.nodes[i].addr;
        loop {
            self.check_running()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(ProcessError::Io {
                    what: format!("reach node {} at {addr}", self.nodes[i].name),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
        let i = self.index(name).ok()?;
        self.children[i].as_ref().map(Child::id)
    }

    fn index(&self, name: &str) -> Result<usize, ProcessError> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| ProcessError::NoSuchNode(name.to_owned()))
    }

    fn spawn(&mut self, i: usize) -> Result<(), ProcessError> {
        let node = &self.nodes[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(io(format!("open {:?}", node.log)))?;
        let child = Command::new(&self.exe)
            .arg("node")
            .args(["--name", &node.name, "--listen", &node.addr.to_string()])
            .args(["--masters", &self.masters().join(",")])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .env("DIKE_COOKIE", &self.cookie)
            .env("RUST_LOG", "info,ractor_cluster=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io(format!("start node {}", node.name)))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Kills node `name` with SIGKILL (no chance to clean up) and waits
    /// until it is gone.
    pub fn kill(&mut self, name: &str) -> Result<(), ProcessError> {
        let i = self.index(name)?;
        if let Some(mut child) = self.children[i].take() {
            child.kill().map_err(io(format!("kill node {name}")))?;
            child.wait().map_err(io(format!("wait for node {name}")))?;
        }
        Ok(())
    }

    /// Starts a killed node again on its data directory (and port).
    pub fn restart(&mut self, name: &str) -> Result<(), ProcessError> {
        let i = self.index(name)?;
        if self.children[i].is_none() {
            self.spawn(i)?;
            self.await_listening(i)?;
        }
        Ok(())
    }

    /// Fails if a node that should run has exited by itself.
    pub fn check_running(&mut self) -> Result<(), ProcessError> {
        for (i, slot) in self.children.iter_mut().enumerate() {
            if let Some(child) = slot {
                if let Ok(Some(status)) = child.try_wait() {
                    *slot = None;
                    let node = &self.nodes[i];
                    return Err(ProcessError::Exited {
                        name: node.name.clone(),
                        status: status.to_string(),
                        log_tail: log_tail(&node.log, 15),
                    });
                }
            }
        }
        Ok(())
    }

    /// Kills every node and waits for them.
    pub fn stop_all(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The last `lines` lines of the file at `path` (empty if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback address whose port is free right now: on `127.0.X.1`, with X
/// from this process's id, where the system has it (Linux has all of
/// 127.0.0.0/8), else on 127.0.0.1. Nodes' outgoing connections take
/// ephemeral ports on 127.0.0.1, and one of those could take a port chosen
/// there before the node meant to listen on it has bound it.
///
/// Never the same address twice in one process: the probe's port is free
/// again once it returns, and the system may hand it to the next probe
/// (two nodes of one test cluster were once given the same port).
pub fn free_loopback_addr() -> Result<SocketAddr, ProcessError> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<SocketAddr>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let own = std::net::Ipv4Addr::new(127, 0, (std::process::id() % 254 + 1) as u8, 1);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let addr = TcpListener::bind((own, 0))
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .and_then(|l| l.local_addr())
            .map_err(io("find a free loopback port"))?;
        if given.insert(addr) {
            return Ok(addr);
        }
    }
}
