//! etcd as the benchmark's point of comparison: a cluster of `etcd`
//! processes on loopback (Debian's etcd-server 3.4, installed by
//! `integration/scripts/install-etcd.sh`), and a small client for its
//! HTTP/JSON gateway (`POST /v3/kv/put`) over kept-alive HTTP/1.1
//! connections.
//!
//! The gateway is used because it needs no gRPC stack in this workspace; it
//! costs etcd some CPU per request that its native gRPC API would not, which
//! `docs/BENCHMARKS.md` states next to the figures.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Why etcd could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The `etcd` program is not installed.
    #[error("etcd is not installed ({0}); run integration/scripts/install-etcd.sh")]
    Missing(String),
    /// A process or socket failed.
    #[error("etcd: {0}")]
    Io(#[from] std::io::Error),
    /// An answer that is not a 200 response.
    #[error("etcd answered: {0}")]
    Response(String),
    /// The cluster did not become ready.
    #[error("etcd cluster not ready: {0}")]
    NotReady(String),
}

/// A running etcd cluster; its processes are killed when dropped.
pub struct EtcdCluster {
    children: Vec<Child>,
    /// The members' client addresses.
    pub clients: Vec<SocketAddr>,
}

impl EtcdCluster {
    /// Starts `n` members on loopback with their data under `dir`, and waits
    /// until a write succeeds.
    pub async fn start(n: usize, dir: &Path) -> Result<EtcdCluster, EtcdError> {
        let version = Command::new("etcd").arg("--version").output();
        if let Err(e) = version {
            return Err(EtcdError::Missing(e.to_string()));
        }
        let ports: Vec<(SocketAddr, SocketAddr)> = (0..n)
            .map(|_| {
                (
                    crate::cluster::free_port(std::net::Ipv4Addr::LOCALHOST),
                    crate::cluster::free_port(std::net::Ipv4Addr::LOCALHOST),
                )
            })
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://{peer}"))
            .collect();
        let mut cluster = EtcdCluster {
            children: Vec::new(),
            clients: ports.iter().map(|(c, _)| *c).collect(),
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data = dir.join(format!("e{i}"));
            let log = std::fs::File::create(dir.join(format!("e{i}.log")))?;
            let child = Command::new("etcd")
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &format!("http://{client}")])
                .args(["--advertise-client-urls", &format!("http://{client}")])
                .args(["--listen-peer-urls", &format!("http://{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "dike-bench"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            cluster.children.push(child);
        }
        cluster.wait_ready(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// The members' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    async fn wait_ready(&self, within: Duration) -> Result<(), EtcdError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = String::from("no attempt");
        while tokio::time::Instant::now() < deadline {
            let mut ok = 0;
            for addr in &self.clients {
                match EtcdClient::connect(*addr).await {
                    Ok(mut c) => match c.put(b"ready", b"1").await {
                        Ok(()) => ok += 1,
                        Err(e) => last = e.to_string(),
                    },
                    Err(e) => last = e.to_string(),
                }
            }
            if ok == self.clients.len() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(EtcdError::NotReady(last))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One kept-alive HTTP/1.1 connection to an etcd member's JSON gateway.
pub struct EtcdClient {
    addr: SocketAddr,
    conn: BufReader<TcpStream>,
}

impl EtcdClient {
    /// Connects to the member at `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<EtcdClient, EtcdError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(EtcdClient {
            addr,
            conn: BufReader::new(stream),
        })
    }

    /// Writes `key = value` (a linearizable write through the Raft log)
    /// and waits for etcd's answer.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, base64(key), base64(value));
        let request = format!(
            "POST /v3/kv/put HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.conn.get_mut().write_all(request.as_bytes()).await?;
        let (status, body) = self.read_response().await?;
        if status != 200 {
            return Err(EtcdError::Response(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(())
    }

    /// Reads one response: its status and body (Content-Length or chunked).
    async fn read_response(&mut self) -> Result<(u16, Vec<u8>), EtcdError> {
        let mut line = String::new();
        if self.conn.read_line(&mut line).await? == 0 {
            return Err(EtcdError::Response("connection closed".into()));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| EtcdError::Response(format!("bad status line {line:?}")))?;
        let (mut length, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.conn.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| EtcdError::Response(format!("bad chunk size {line:?}")))?;
                let mut chunk = vec![0; size + 2];
                self.conn.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            self.conn.read_exact(&mut body).await?;
        }
        Ok((status, body))
    }
}

/// Standard base64 with padding (what etcd's gateway expects for bytes).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
