//! A cluster of `dike node` processes on loopback, for tests that need real
//! processes and real crashes.
//!
//! Every node is a child process of the test running `dike node` (see
//! [`crate::binary`]) on its own loopback address `127.0.X.Y`: `X` is one
//! octet per cluster (from the test process's pid and a counter, so clusters
//! of parallel tests do not share addresses), `Y` is the node's index + 1.
//! Ports are probed free on that address. Node names carry the cluster's
//! octet (`c37-n0`), so two clusters driven from one test process never
//! mix their process groups. Each node keeps its data in its own directory
//! under the cluster's temporary directory (unless the cluster runs in
//! memory) and writes its log to `<log_dir>/<name>.log`, one file across
//! all its lives.
//!
//! The processes are [`dike_harness::Processes`]; this module adds what a
//! dike cluster needs around them (addresses, TLS, data directories, the
//! masters list, restarts that keep all of it).
//!
//! Invariants: every child is killed when the [`Cluster`] is dropped,
//! also when the test panics; a node keeps its name, address and data
//! directory across [`Cluster::restart`]; on a panic (or with
//! `DIKE_KEEP_LOGS=1`) the temporary directory is kept and its path and
//! the tail of every log are printed.

use crate::binary::dike_binary;
use dike_actors::node::config::node_id_of;
use dike_actors::node::tls::TlsConfig;
use dike_core::NodeId;
use dike_harness::{Launch, Processes};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// How long a graceful stop may take before the test fails.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// The last octet of the first client address; nodes use the octets below.
const FIRST_CLIENT_OCTET: u8 = 200;

/// Where a cluster's nodes keep replica state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A data directory per node (`--data-dir`): a restarted node is the
    /// same member of its groups again.
    Durable,
    /// Memory only (`--in-memory`): a restarted node comes back empty, as a
    /// new incarnation.
    InMemory,
}

/// What a cluster is made of; build one with [`Cluster::builder`].
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    test: String,
    masters: usize,
    nodes: usize,
    storage: Storage,
    group_size: Option<usize>,
    log_filter: String,
    node_args: Vec<String>,
    http: bool,
    tls: bool,
}

impl ClusterBuilder {
    /// Runs every cluster session over mutual TLS (default: plain TCP): the
    /// cluster gets a CA of its own (`dike certs create-ca`) and every node
    /// and client a certificate from it for its name and address
    /// ([`Cluster::tls_config`]).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Gives every node an HTTP listener (`--http`, on its own address and
    /// a free port; see [`Cluster::http_addr`]), which also makes it
    /// record its metrics (default: none).
    pub fn http(mut self, on: bool) -> Self {
        self.http = on;
        self
    }

    /// More arguments for every node's `dike node` (e.g.
    /// `["--replace-after", "5"]`).
    pub fn node_args(mut self, args: &[&str]) -> Self {
        self.node_args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// Master nodes: the first `m` nodes (1, 3 or 5; default 3).
    pub fn masters(mut self, m: usize) -> Self {
        self.masters = m;
        self
    }

    /// Nodes in all, masters included (default: as many as masters). The
    /// nodes after the masters start with `--join`.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// Where nodes keep their state (default [`Storage::Durable`]).
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// `--group-size` of every node (default: the program's default).
    pub fn group_size(mut self, size: usize) -> Self {
        self.group_size = Some(size);
        self
    }

    /// The nodes' `RUST_LOG` (default `info`, or `DIKE_NODE_LOG` if set).
    pub fn log_filter(mut self, filter: impl Into<String>) -> Self {
        self.log_filter = filter.into();
        self
    }

    /// Starts every node's process and returns at once; wait for the
    /// cluster with [`crate::Client::wait_for_live_nodes`].
    ///
    /// Panics if the description is not a cluster (masters not 1, 3 or 5,
    /// fewer nodes than masters, too many nodes for one address octet).
    pub fn start(self) -> Cluster {
        assert!(
            matches!(self.masters, 1 | 3 | 5),
            "a cluster has 1, 3 or 5 masters, not {}",
            self.masters
        );
        let nodes = self.nodes.max(self.masters);
        let octet = next_cluster_octet();
        let root = tempfile::Builder::new()
            .prefix(&format!("dike-{}-", self.test))
            .tempdir()
            .expect("create the cluster's temporary directory");
        let log_dir = root.path().join("logs");
        std::fs::create_dir_all(&log_dir).expect("create the log directory");
        let tls_dir = self.tls.then(|| {
            let dir = root.path().join("certs");
            dike_examples::cli::certs::create_ca(&dir).expect("create the cluster's CA");
            dir
        });
        let processes = Processes::new(&log_dir).unwrap_or_else(|e| panic!("{e}"));
        let mut cluster = Cluster {
            test: self.test,
            octet,
            cookie: format!("dike-test-{}-{octet}-{}", std::process::id(), nanos()),
            root: Some(root),
            log_dir,
            processes,
            storage: self.storage,
            group_size: self.group_size,
            log_filter: self.log_filter,
            node_args: self.node_args,
            http: self.http,
            tls_dir,
            masters: Vec::new(),
            nodes: Vec::new(),
            clients: AtomicU32::new(0),
        };
        for i in 0..nodes {
            cluster.define_node(i < self.masters);
        }
        cluster.masters = cluster.nodes[..self.masters]
            .iter()
            .map(|n| format!("{}@{}", n.name, n.addr))
            .collect();
        for i in 0..nodes {
            cluster.start(i);
        }
        cluster
    }
}

/// One node of the cluster.
struct Node {
    name: String,
    addr: SocketAddr,
    master: bool,
    data_dir: Option<PathBuf>,
    log: PathBuf,
    /// Its HTTP listener, if the cluster has them.
    http: Option<SocketAddr>,
}

/// A cluster of `dike node` processes. See the module documentation.
pub struct Cluster {
    test: String,
    octet: u8,
    cookie: String,
    root: Option<tempfile::TempDir>,
    log_dir: PathBuf,
    /// The node processes, by node name.
    processes: Processes,
    storage: Storage,
    group_size: Option<usize>,
    log_filter: String,
    node_args: Vec<String>,
    http: bool,
    /// The CA and the certificates, if the cluster runs TLS.
    tls_dir: Option<PathBuf>,
    masters: Vec<String>,
    nodes: Vec<Node>,
    clients: AtomicU32,
}

impl Cluster {
    /// A cluster for the test named `test` (used in directory and log
    /// names): 3 masters, durable storage.
    pub fn builder(test: &str) -> ClusterBuilder {
        ClusterBuilder {
            test: test.to_owned(),
            masters: 3,
            nodes: 0,
            storage: Storage::Durable,
            group_size: None,
            log_filter: std::env::var("DIKE_NODE_LOG").unwrap_or_else(|_| "info".into()),
            node_args: Vec::new(),
            http: false,
            tls: false,
        }
    }

    /// The TLS files of the node or client `name` at `ip` (issued from the
    /// cluster's CA the first time, for its name, `ip`, `localhost` and
    /// `127.0.0.1`), or `None` if the cluster runs without TLS.
    pub fn tls_config(&self, name: &str, ip: std::net::IpAddr) -> Option<TlsConfig> {
        let dir = self.tls_dir.as_ref()?;
        let (cert, key) = dike_examples::cli::certs::paths(dir, name);
        if !cert.exists() {
            let names = [name, &ip.to_string(), "localhost", "127.0.0.1"].map(str::to_owned);
            dike_examples::cli::certs::issue(name, dir, &names, 30, dir)
                .unwrap_or_else(|e| panic!("issue a certificate for {name}: {e}"));
        }
        Some(TlsConfig {
            cert,
            key,
            ca: dir.join(dike_examples::cli::certs::CA_CERT),
        })
    }

    /// Number of nodes (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never: a cluster has masters).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The test's name.
    pub fn test(&self) -> &str {
        &self.test
    }

    /// The cluster's loopback octet `X` (addresses are `127.0.X.Y`).
    pub fn octet(&self) -> u8 {
        self.octet
    }

    /// The cookie every node presents.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// The masters, `NAME@HOST:PORT`, as every node is started with.
    pub fn masters(&self) -> &[String] {
        &self.masters
    }

    /// Where nodes keep state.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// The `--group-size` nodes were started with, if any.
    pub fn group_size(&self) -> Option<usize> {
        self.group_size
    }

    /// Node `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.node(i).name
    }

    /// Every node's name, in index order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Node `i`'s HTTP listener, if the cluster was built with
    /// [`ClusterBuilder::http`].
    pub fn http_addr(&self, i: usize) -> Option<SocketAddr> {
        self.nodes[i].http
    }

    /// Node `i`'s cluster address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.node(i).addr
    }

    /// Node `i`'s id (derived from its name).
    pub fn node_id(&self, i: usize) -> NodeId {
        node_id_of(&self.node(i).name)
    }

    /// The index of the node with id `id`.
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| node_id_of(&n.name) == id)
    }

    /// Whether node `i` is a master.
    pub fn is_master(&self, i: usize) -> bool {
        self.node(i).master
    }

    /// Node `i`'s process id while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.processes.pid(self.name(i))
    }

    /// Node `i`'s data directory (`None` in memory).
    pub fn data_dir(&self, i: usize) -> Option<&Path> {
        self.node(i).data_dir.as_deref()
    }

    /// The directory of every node's log.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.node(i).log
    }

    /// How many times node `i` was started.
    pub fn lives(&self, i: usize) -> u32 {
        self.processes.get(self.name(i)).map_or(0, |p| p.lives())
    }

    /// A fresh address for a client node of this cluster (`127.0.X.200+`).
    pub fn client_addr(&self) -> SocketAddr {
        let k = self.clients.fetch_add(1, Ordering::Relaxed);
        let last = u8::try_from(u32::from(FIRST_CLIENT_OCTET) + k % 55).unwrap_or(254);
        free_port(Ipv4Addr::new(127, 0, self.octet, last))
    }

    /// Whether node `i`'s process is running (paused counts as running).
    pub fn is_running(&mut self, i: usize) -> bool {
        let name = self.node(i).name.clone();
        self.processes.get_mut(&name).is_ok_and(|p| p.is_running())
    }

    /// How node `i`'s process ended, if it exited by itself (`None` while
    /// it runs or once reaped).
    pub fn exited(&mut self, i: usize) -> Option<ExitStatus> {
        let name = self.name(i).to_owned();
        self.processes.get_mut(&name).ok()?.exited()
    }

    /// The nodes whose process ended although the harness did not stop it,
    /// with how it ended.
    pub fn unexpected_exits(&mut self) -> Vec<(String, ExitStatus)> {
        self.processes.unexpected_exits()
    }

    /// Starts node `i`'s process (with its name, address and data
    /// directory; the same command in every life). Panics if it is running.
    pub fn start(&mut self, i: usize) {
        assert!(!self.is_running(i), "{} is already running", self.name(i));
        let lives = self.lives(i) + 1;
        let node = self.node(i);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open the node's log");
        let _ = writeln!(
            log,
            "===== harness: life {lives} of {} on {} (pid of the test {}) =====",
            node.name,
            node.addr,
            std::process::id()
        );
        let name = node.name.clone();
        if self.processes.contains(&name) {
            self.processes
                .restart(&name)
                .unwrap_or_else(|e| panic!("{e}"));
            return;
        }
        let launch = self.launch(i);
        self.processes
            .spawn(&name, launch)
            .unwrap_or_else(|e| panic!("spawn `dike node`: {e}"));
    }

    /// The command of node `i`: `dike node` with its name, address, data
    /// directory and TLS files, its output to its log.
    fn launch(&self, i: usize) -> Launch {
        let node = self.node(i);
        let mut launch = Launch::new(dike_binary())
            .arg("node")
            .args(["--name", &node.name, "--listen", &node.addr.to_string()])
            .args(["--masters", &self.masters.join(",")])
            .env("DIKE_COOKIE", &self.cookie)
            .env("RUST_LOG", &self.log_filter)
            .stdout_to_log(true);
        if !node.master {
            launch = launch.arg("--join");
        }
        launch = match (&node.data_dir, self.storage) {
            (Some(dir), Storage::Durable) => launch.arg("--data-dir").arg(dir),
            _ => launch.arg("--in-memory"),
        };
        if let Some(size) = self.group_size {
            launch = launch.args(["--group-size", &size.to_string()]);
        }
        if let Some(http) = node.http {
            launch = launch.args(["--http", &http.to_string()]);
        }
        if let Some(tls) = self.tls_config(&node.name, node.addr.ip()) {
            launch = launch.arg("--tls-cert").arg(&tls.cert);
            launch = launch.arg("--tls-key").arg(&tls.key);
            launch = launch.arg("--tls-ca").arg(&tls.ca);
        }
        launch.args(&self.node_args)
    }

    /// Stops node `i` gracefully: SIGTERM, then waits for the process to
    /// exit (panics after [`STOP_GRACE`], killing it). A paused node is
    /// resumed so it can handle the signal.
    pub fn stop(&mut self, i: usize) -> ExitStatus {
        let name = self.name(i).to_owned();
        self.processes
            .stop(&name, STOP_GRACE)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Kills node `i` with SIGKILL (a crash: nothing is flushed or closed)
    /// and reaps it; a node that already exited is only reaped.
    pub fn kill(&mut self, i: usize) {
        let name = self.name(i).to_owned();
        if self.processes.contains(&name) {
            self.processes.kill(&name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Freezes node `i` (SIGSTOP): its sockets stay open but it answers
    /// nothing, as a hung machine would.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "STOP");
    }

    /// Lets a paused node `i` go on (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        self.signal(i, "CONT");
    }

    fn signal(&mut self, i: usize, signal: &str) {
        assert!(self.is_running(i), "{} is not running", self.name(i));
        let name = self.name(i).to_owned();
        self.processes
            .signal(&name, signal)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops node `i` gracefully if it runs, then starts it again with the
    /// same name, address and data directory.
    pub fn restart(&mut self, i: usize) {
        if self.is_running(i) {
            self.stop(i);
        }
        self.start(i);
    }

    /// Starts one more node, which joins the cluster; returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.define_node(false);
        self.start(i);
        i
    }

    /// The last `lines` lines of every node's log, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        self.processes.log_tails(lines)
    }

    fn define_node(&mut self, master: bool) -> usize {
        let i = self.nodes.len();
        let last = u8::try_from(i + 1)
            .ok()
            .filter(|y| *y < FIRST_CLIENT_OCTET)
            .expect("fewer than 200 nodes per cluster");
        let name = format!("c{}-n{i}", self.octet);
        let root = self.root.as_ref().expect("temp dir").path();
        let data_dir = match self.storage {
            Storage::Durable => {
                let d = root.join(&name).join("data");
                std::fs::create_dir_all(&d).expect("create a data directory");
                Some(d)
            }
            Storage::InMemory => None,
        };
        let ip = Ipv4Addr::new(127, 0, self.octet, last);
        self.nodes.push(Node {
            addr: free_port(ip),
            http: self.http.then(|| free_port(ip)),
            log: self.log_dir.join(format!("{name}.log")),
            name,
            master,
            data_dir,
        });
        i
    }

    fn node(&self, i: usize) -> &Node {
        let n = self.nodes.len();
        self.nodes
            .get(i)
            .unwrap_or_else(|| panic!("no node {i}: the cluster has {n}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.processes.kill_all();
        let keep = std::thread::panicking() || std::env::var_os("DIKE_KEEP_LOGS").is_some();
        if keep {
            eprintln!("{}", self.log_tails(20));
            if let Some(root) = self.root.take() {
                let path = root.keep();
                eprintln!("kept the cluster's logs and data in {}", path.display());
            }
        }
    }
}

/// Holds one cluster test at a time in this process (a 2-core machine runs
/// one cluster well, several badly); take it first thing in a test and keep
/// the guard to its end. A test that panicked releases it.
pub async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// The `X` of a new cluster's `127.0.X.Y` addresses: different for every
/// cluster of this process (for the first 254) and, through the pid, likely
/// different from other test processes' (ports are probed free anyway).
fn next_cluster_octet() -> u8 {
    static CLUSTERS: AtomicU32 = AtomicU32::new(0);
    cluster_octet(std::process::id(), CLUSTERS.fetch_add(1, Ordering::Relaxed))
}

/// `X` from a pid and a per-process counter: in `1..=254`, never the `0`
/// of `127.0.0.1`, whose ports everything else on the machine uses.
pub fn cluster_octet(pid: u32, counter: u32) -> u8 {
    let x = (pid.wrapping_mul(37).wrapping_add(counter)) % 254 + 1;
    u8::try_from(x).unwrap_or(1)
}

/// An address on `ip` whose port is free right now
/// ([`dike_harness::free_port`]); panics if there is none.
pub fn free_port(ip: Ipv4Addr) -> SocketAddr {
    dike_harness::free_port(ip).unwrap_or_else(|e| panic!("{e}"))
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_octets_avoid_zero_and_differ_between_clusters_of_a_process() {
        let pid = 4242;
        let xs: std::collections::BTreeSet<u8> = (0..254).map(|c| cluster_octet(pid, c)).collect();
        assert_eq!(xs.len(), 254);
        assert!(!xs.contains(&0) && !xs.contains(&255));
        assert_ne!(cluster_octet(1000, 0), cluster_octet(1001, 0));
    }

    #[test]
    #[should_panic(expected = "1, 3 or 5 masters")]
    fn two_masters_are_refused() {
        Cluster::builder("bad").masters(2).start();
    }
}
