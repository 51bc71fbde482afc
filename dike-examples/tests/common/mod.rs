//! Helpers shared by the process tests of the `dike` program.
// Each test file uses what it needs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A loopback address with a port free right now.
pub fn free_addr() -> SocketAddr {
    dike_examples::processes::free_loopback_addr().expect("a free loopback port")
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

/// A `dike node` child process and its log file; killed when dropped
/// however the test ends, its log removed unless the test failed.
pub struct NodeChild {
    /// The process.
    pub child: Child,
    /// Its stderr.
    pub log: PathBuf,
}

impl NodeChild {
    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
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
) -> NodeChild {
    let log = std::env::temp_dir().join(format!("dike-{label}-{name}-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_dike"))
        .args(["node", "--name", name, "--listen", &addr.to_string()])
        .args(["--masters", masters])
        .args(args)
        .env("DIKE_COOKIE", cookie)
        .env("RUST_LOG", "info,ractor_cluster=warn")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn dike node");
    NodeChild { child, log }
}
