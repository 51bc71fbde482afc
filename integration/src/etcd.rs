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
    /// The members' client addresses (`https` with TLS).
    pub clients: Vec<SocketAddr>,
    /// Where each member also takes plain HTTP: the client addresses
    /// without TLS; with TLS, a second loopback listener that only the
    /// readiness check uses.
    ready: Vec<SocketAddr>,
    /// The client's TLS files, if the cluster runs TLS.
    pub tls: Option<EtcdTls>,
}

/// The files a client of a TLS etcd cluster presents and trusts (PEM).
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// The CA that signed every member's and the client's certificate.
    pub ca: std::path::PathBuf,
    /// The client's certificate.
    pub cert: std::path::PathBuf,
    /// The client's private key.
    pub key: std::path::PathBuf,
}

/// Makes a CA under `dir` and issues a certificate for every name in
/// `names` from it (for `localhost` and `127.0.0.1`), as `dike certs` does.
fn issue_certs(dir: &Path, names: &[String]) -> Result<(), EtcdError> {
    use dike_examples::cli::certs;
    let failed =
        |e: dike_examples::cli::CliError| EtcdError::NotReady(format!("certificates: {e}"));
    certs::create_ca(dir).map_err(failed)?;
    let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    for name in names {
        certs::issue(name, dir, &hosts, 30, dir).map_err(failed)?;
    }
    Ok(())
}

impl EtcdCluster {
    /// Starts `n` members on loopback with their data under `dir`, and waits
    /// until a write through each member's JSON gateway succeeds.
    pub async fn start(n: usize, dir: &Path) -> Result<EtcdCluster, EtcdError> {
        Self::start_with(n, dir, false).await
    }

    /// [`EtcdCluster::start`], with `tls`: mutual TLS between the members
    /// and for clients (`--client-cert-auth`, `--peer-client-cert-auth`),
    /// every certificate from a CA made under `dir` ([`EtcdCluster::tls`]
    /// has the client's).
    pub async fn start_with(n: usize, dir: &Path, tls: bool) -> Result<EtcdCluster, EtcdError> {
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
        let scheme = if tls { "https" } else { "http" };
        let ready: Vec<SocketAddr> = if tls {
            (0..n)
                .map(|_| crate::cluster::free_port(std::net::Ipv4Addr::LOCALHOST))
                .collect()
        } else {
            ports.iter().map(|(c, _)| *c).collect()
        };
        let certs = dir.join("certs");
        let names: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
        let client_tls = if tls {
            let client = "etcd-client".to_owned();
            issue_certs(&certs, &[names.clone(), vec![client.clone()]].concat())?;
            let (cert, key) = dike_examples::cli::certs::paths(&certs, &client);
            Some(EtcdTls {
                ca: certs.join(dike_examples::cli::certs::CA_CERT),
                cert,
                key,
            })
        } else {
            None
        };
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}={scheme}://{peer}"))
            .collect();
        let mut cluster = EtcdCluster {
            children: Vec::new(),
            clients: ports.iter().map(|(c, _)| *c).collect(),
            ready: ready.clone(),
            tls: client_tls,
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data = dir.join(format!("e{i}"));
            let log = std::fs::File::create(dir.join(format!("e{i}.log")))?;
            let mut listen = format!("{scheme}://{client}");
            let mut cmd = Command::new("etcd");
            if tls {
                listen += &format!(",http://{}", ready[i]);
                let (cert, key) = dike_examples::cli::certs::paths(&certs, &names[i]);
                let ca = certs.join(dike_examples::cli::certs::CA_CERT);
                cmd.arg("--cert-file")
                    .arg(&cert)
                    .arg("--key-file")
                    .arg(&key);
                cmd.arg("--trusted-ca-file")
                    .arg(&ca)
                    .arg("--client-cert-auth");
                cmd.arg("--peer-cert-file")
                    .arg(&cert)
                    .arg("--peer-key-file")
                    .arg(&key);
                cmd.arg("--peer-trusted-ca-file")
                    .arg(&ca)
                    .arg("--peer-client-cert-auth");
            }
            let child = cmd
                .args(["--name", &names[i]])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &listen])
                .args(["--advertise-client-urls", &format!("{scheme}://{client}")])
                .args(["--listen-peer-urls", &format!("{scheme}://{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("{scheme}://{peer}"),
                ])
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

    /// Polls until every member takes a put through the JSON gateway.
    async fn wait_ready(&self, within: Duration) -> Result<(), EtcdError> {
        crate::wait::poll_until(within, || async {
            for addr in &self.ready {
                let mut c = JsonGatewayClient::connect(*addr).await?;
                c.put(b"ready", b"1").await?;
            }
            Ok::<(), crate::wait::NotYet>(())
        })
        .await
        .map_err(|last| EtcdError::NotReady(last.0))
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
