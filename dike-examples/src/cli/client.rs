//! The client node of the admin and request commands: a short-lived node in
//! the `dike` process that does not join (so it never hosts replicas), on a
//! free loopback port, with the example kinds registered.

use super::args::Via;
use super::error::CliError;
use super::kinds;
use dike_actors::{DikeError, DikeNode, NodeConfig, NodeHandle};
use dike_core::routing::RoutingTable;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;
use tokio::time::Instant;

/// A connected client node; stop it with [`Client::stop`] when done.
pub struct Client {
    node: NodeHandle,
    timeout: Duration,
}

impl Client {
    /// Starts the client node for `via` and waits until the master answers.
    pub async fn connect(via: &Via) -> Result<Client, CliError> {
        let listen = free_loopback_addr()?;
        let timeout = Duration::from_secs(via.timeout.max(1));
        let mut b = NodeConfig::builder(format!("dike-cli-{}", std::process::id()), listen)
            .cookie(via.cookie.secret()?)
            .join(false)
            .in_memory()
            .request_timeout(timeout);
        for m in &via.via {
            m.parse::<dike_actors::MasterSpec>()
                .map_err(|_| CliError::Usage(format!("--via {m:?} is not NAME@HOST:PORT")))?;
            b = b.master(m.clone());
        }
        let node = DikeNode::start(b.build()?).await?;
        kinds::register_all(&node);
        let client = Client { node, timeout };
        // The first request needs cluster sessions; retry until the deadline.
        if let Err(e) = client
            .retry(|n| async move { n.routing_table().await })
            .await
        {
            client.stop().await;
            return Err(CliError::Unreachable {
                via: via.via.join(","),
                reason: e.to_string(),
            });
        }
        Ok(client)
    }

    /// The client's node.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// Runs `f` until it succeeds or the deadline passes, retrying only
    /// errors that may go away (no route yet, no leader yet). Only for
    /// requests that are safe to repeat: a command that timed out may have
    /// been applied.
    pub async fn retry<T, E, F, Fut>(&self, mut f: F) -> Result<T, CliError>
    where
        E: Into<CliError>,
        F: FnMut(NodeHandle) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let deadline = Instant::now() + self.timeout;
        loop {
            match f(self.node.clone()).await.map_err(Into::into) {
                Ok(v) => return Ok(v),
                Err(CliError::Cluster(e)) if transient(&e) && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The routing table, from the master.
    pub async fn table(&self) -> Result<RoutingTable, CliError> {
        self.retry(|n| async move { n.routing_table().await }).await
    }

    /// The kind of `group`, from the routing table.
    pub async fn kind_of(&self, group: &str) -> Result<String, CliError> {
        let table = self.table().await?;
        table
            .group(group)
            .map(|g| g.kind.clone())
            .ok_or_else(|| CliError::NoSuchGroup(group.to_owned()))
    }

    /// Waits (up to the client's timeout) until the dispatcher is done with
    /// every cast; returns whether it is.
    pub async fn drain_casts(&self) -> bool {
        self.node.wait_for_casts(self.timeout).await
    }

    /// Stops the client node.
    pub async fn stop(self) {
        self.node.stop().await;
    }
}

/// Whether `e` may clear up by itself while the cluster settles.
fn transient(e: &DikeError) -> bool {
    matches!(
        e,
        DikeError::Unavailable { .. } | DikeError::Timeout { .. } | DikeError::NodeStopped(_)
    )
}

/// A loopback address with a port free right now.
fn free_loopback_addr() -> Result<SocketAddr, CliError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| CliError::Usage(format!("cannot find a free local port: {e}")))
}
