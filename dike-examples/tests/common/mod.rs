//! Helpers shared by the process tests of the `dike` program.
// Each test file uses what it needs.
#![allow(dead_code)]

pub use dike_harness::process::log_tails;
pub use dike_harness::wait::wait_until_blocking;
pub use dike_harness::ChildProcess;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

/// A port free on every address (`0.0.0.0`) right now, below the ephemeral
/// range ([`dike_harness::free_wildcard_port`]).
pub fn free_wildcard_port() -> u16 {
    dike_harness::free_wildcard_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A loopback address with a port free right now.
pub fn free_addr() -> SocketAddr {
    dike_harness::free_loopback_addr().expect("a free loopback port")
}

/// The `--masters` list `NAME@ADDR,…` of `names` at `addrs` (pairwise;
/// the shorter decides).
pub fn masters_list<N: AsRef<str>>(names: &[N], addrs: &[SocketAddr]) -> String {
    let each: Vec<String> = names
        .iter()
        .zip(addrs)
        .map(|(n, a)| format!("{}@{a}", n.as_ref()))
        .collect();
    each.join(",")
}

/// `GET path` over one HTTP/1.0 connection: the status and the body.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let bad = || std::io::Error::other(format!("not an HTTP answer: {answer:?}"));
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

/// Starts `dike node --name NAME --listen ADDR --masters MASTERS ARGS…`
/// with `cookie` as `DIKE_COOKIE`, its stderr (the log) in a file of the
/// temporary directory named after `label` and `name`.
pub fn spawn_node(
    label: &str,
    name: &str,
    addr: SocketAddr,
    masters: &str,
    args: &[&str],
    cookie: &str,
) -> ChildProcess {
    let log = std::env::temp_dir().join(format!("dike-{label}-{name}-{}.log", std::process::id()));
    let launch = dike_harness::Launch::new(env!("CARGO_BIN_EXE_dike"))
        .args(["node", "--name", name, "--listen", &addr.to_string()])
        .args(["--masters", masters])
        .args(args)
        .env("DIKE_COOKIE", cookie)
        .env("RUST_LOG", "info,ractor_cluster=warn");
    ChildProcess::spawn(name, launch, log)
        .unwrap_or_else(|e| panic!("spawn dike node: {e}"))
        .removing_log()
}

/// Three master nodes as `dike node` processes, killed when dropped.
pub struct Cluster {
    /// The nodes' names.
    pub names: Vec<String>,
    /// Their listen addresses.
    pub addrs: Vec<SocketAddr>,
    /// The masters list, NAME@HOST:PORT,…
    pub masters: String,
    /// The node processes (`None`: stopped).
    pub nodes: Vec<Option<ChildProcess>>,
    cookie: String,
    client_args: Vec<String>,
}

impl Cluster {
    /// A node in the test process named `name`, routing through the
    /// masters, that hosts no replica (it does not join); it knows the
    /// `arithmetic` kind.
    pub async fn client_node(&self, name: &str) -> dike_actors::NodeHandle {
        let mut b = dike_actors::NodeConfig::builder(name, free_addr())
            .cookie(self.cookie.clone())
            .join(false)
            .in_memory()
            .request_timeout(Duration::from_secs(5));
        for m in self.masters.split(',') {
            b = b.master(m.to_owned());
        }
        let config = b.kind::<dike_examples::arithmetic::Arithmetic>().build();
        dike_actors::DikeNode::start(config.expect("client config"))
            .await
            .expect("client node")
    }

    /// Starts nodes LABEL1…LABEL3 in memory with `cookie` and waits until
    /// the routing table shows all three up.
    pub fn start(label: &str, cookie: &str) -> Cluster {
        Cluster::start_with(label, cookie, |_| Vec::new(), Vec::new())
    }

    /// [`Cluster::start`], each node also given `node_args(name)` and every
    /// `dike` command of [`Cluster::dike`] `client_args` (TLS flags, say).
    pub fn start_with(
        label: &str,
        cookie: &str,
        node_args: impl Fn(&str) -> Vec<String>,
        client_args: Vec<String>,
    ) -> Cluster {
        let names: Vec<String> = (1..=3).map(|i| format!("{label}{i}")).collect();
        let addrs: Vec<SocketAddr> = names.iter().map(|_| free_addr()).collect();
        let masters = masters_list(&names, &addrs);
        let nodes = names
            .iter()
            .zip(&addrs)
            .map(|(n, a)| {
                let extra = node_args(n);
                let mut args = vec!["--in-memory", "--worker-threads", "2"];
                args.extend(extra.iter().map(String::as_str));
                Some(spawn_node(label, n, *a, &masters, &args, cookie))
            })
            .collect();
        let c = Cluster {
            names,
            addrs,
            masters,
            nodes,
            cookie: cookie.to_owned(),
            client_args,
        };
        c.wait_until_up();
        c
    }

    /// Every node, for `--via`: a stopped one is skipped.
    pub fn via(&self) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        addrs.join(",")
    }

    /// Runs `dike ARGS… --via VIA` with the cluster's client arguments,
    /// with `--timeout 10` unless ARGS has one.
    pub fn dike(&self, args: &[&str]) -> Output {
        self.dike_as(args, &self.client_args)
    }

    /// [`Cluster::dike`] with `client_args` instead of the cluster's.
    pub fn dike_as(&self, args: &[&str], client_args: &[String]) -> Output {
        let timeout: &[&str] = if args.contains(&"--timeout") {
            &[]
        } else {
            &["--timeout", "10"]
        };
        Command::new(env!("CARGO_BIN_EXE_dike"))
            .args(args)
            .args(["--via", &self.via()])
            .args(timeout)
            .args(client_args)
            .env("DIKE_COOKIE", &self.cookie)
            .output()
            .expect("run dike")
    }

    /// The last lines of every running node's log.
    pub fn logs(&self) -> String {
        log_tails(self.nodes.iter().flatten(), 20)
    }

    fn wait_until_up(&self) {
        wait_until_blocking(Duration::from_secs(60), "the cluster up", || {
            let out = self.dike(&["routing-table", "--json"]);
            let ups = String::from_utf8_lossy(&out.stdout)
                .matches("\"up\"")
                .count();
            if out.status.success() && ups == 3 {
                Ok(())
            } else {
                Err(format!("{}\n{}", text(&out), self.logs()))
            }
        })
    }

    /// Creates group `name` on all three nodes and waits until it answers.
    pub fn add_group(&self, name: &str) {
        let out = self.dike(&["add-group", name, "arithmetic", "--size", "3"]);
        assert!(out.status.success(), "{}\n{}", text(&out), self.logs());
        wait_until_blocking(
            Duration::from_secs(30),
            &format!("{name} answering"),
            || {
                let out = self.dike(&["query", name, r#""Read""#]);
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!("{}\n{}", text(&out), self.logs()))
                }
            },
        )
    }

    /// The node `dike status -o json` shows leading `group`, once one does.
    pub fn leader_of(&self, group: &str) -> String {
        wait_until_blocking(
            Duration::from_secs(20),
            &format!("a leader of {group} shown"),
            || {
                let out = self.dike(&["status", "-o", "json"]);
                let status: serde_json::Value =
                    serde_json::from_slice(&out.stdout).unwrap_or_default();
                status["groups"]
                    .as_array()
                    .and_then(|gs| gs.iter().find(|g| g["name"] == group))
                    .and_then(|g| g["leader"].as_str().map(str::to_owned))
                    .ok_or_else(|| format!("{}\n{}", text(&out), self.logs()))
            },
        )
    }

    /// The index of node `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .expect("a node of the cluster")
    }
}

/// A finished command's exit status, stdout and stderr, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `Ok` if the command succeeded; otherwise its stderr and `context` (the
/// nodes' logs), for a poll that retries a command until it works.
pub fn succeeded(out: &Output, context: impl FnOnce() -> String) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            context()
        ))
    }
}
