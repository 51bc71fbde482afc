//! etcd as the benchmark's point of comparison: a cluster of `etcd`
//! processes on loopback (Debian's etcd-server 3.4, installed by
//! `integration/scripts/install-etcd.sh`), and two clients for it.
//!
//! - `GrpcClient` (feature `etcd-grpc`): etcd's native gRPC API through
//!   the `etcd-client` crate, as etcd's own clients use it. The benchmark's
//!   headline etcd figures go through it.
//! - [`JsonGatewayClient`]: etcd's HTTP/JSON gateway, which needs no gRPC
//!   stack (so no protoc at build time) but costs etcd more CPU per write:
//!   the gateway decodes the JSON and passes the request on to etcd's own
//!   gRPC server over a loopback connection. The cluster's readiness check
//!   uses it, and `vs-etcd --etcd-json` measures it as a secondary row.

#[cfg(feature = "etcd-grpc")]
mod grpc;
mod json;

#[cfg(feature = "etcd-grpc")]
pub use grpc::GrpcClient;
pub use json::JsonGatewayClient;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
    /// A gRPC call failed.
    #[cfg(feature = "etcd-grpc")]
    #[error("etcd gRPC: {0}")]
    Grpc(#[from] etcd_client::Error),
}

/// A running etcd cluster; its processes are killed when dropped.
pub struct EtcdCluster {
    children: Vec<Child>,
    /// The members' client addresses.
    pub clients: Vec<SocketAddr>,
}

impl EtcdCluster {
    /// Starts `n` members on loopback with their data under `dir`, and waits
    /// until a write through each member's JSON gateway succeeds.
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
                match JsonGatewayClient::connect(*addr).await {
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
