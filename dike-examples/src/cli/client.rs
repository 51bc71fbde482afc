//! The client node of the admin and request commands: a short-lived node in
//! the `dike` process that does not join (so it never hosts replicas), on a
//! free loopback port, with the example kinds registered.

use super::args::Via;
use super::error::CliError;
use super::kinds;
use dike_actors::node::discover;
use dike_actors::node::tls::Tls;
use dike_actors::{DikeError, DikeNode, MasterSpec, NodeConfig, NodeHandle};
use dike_core::routing::RoutingTable;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Seconds a client command waits for the cluster without `--timeout`.
pub const DEFAULT_TIMEOUT: u64 = 10;

/// A connected client node; stop it with [`Client::stop`] when done.
pub struct Client {
    node: NodeHandle,
    timeout: Duration,
}

impl Client {
    /// Learns the masters from `via` (see [`masters_of`]), starts the
    /// client node and waits until the master answers.
    pub async fn connect(via: &Via) -> Result<Client, CliError> {
        let timeout = Duration::from_secs(via.timeout.unwrap_or(DEFAULT_TIMEOUT).max(1));
        let cookie = via.cookie.secret()?;
        let dial = Duration::from_secs(via.dial_timeout.max(1)).min(timeout);
        let tls = via.tls.load()?;
        let cookie_of = (cookie.as_str(), via.cookie.source());
        let (masters, table) = masters_of(&via.via, cookie_of, tls.as_ref(), dial).await?;
        let listen = free_loopback_addr()?;
        let mut b = NodeConfig::builder(format!("dike-cli-{}", std::process::id()), listen)
            .cookie(cookie)
            .join(false)
            .in_memory()
            .request_timeout(timeout);
        b = kinds::with_all(b);
        if let Some(tls) = tls {
            b = b.tls(tls);
        }
        for m in &masters {
            b = b.master(m.to_string());
        }
        let node = DikeNode::start(b.build()?).await?;
        let client = Client { node, timeout };
        if let Some(table) = table {
            // The node reached gave its routing table: data requests are
            // routed by it, also while the master quorum is down. Commands
            // that need the master say so themselves.
            client.node.install_table(table);
            return Ok(client);
        }
        // The first request needs cluster sessions; retry until the deadline.
        if let Err(e) = client
            .retry(|n| async move { n.routing_table().await })
            .await
        {
            client.stop().await;
            let names: Vec<String> = masters.iter().map(|m| m.name.clone()).collect();
            return Err(CliError::NoMasterQuorum {
                masters: names.join(", "),
                reason: e.to_string(),
            });
        }
        Ok(client)
    }

    /// The client's node.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// How long the command may wait for the cluster (`--timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
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

    /// The kind of `group`: from the cached routing table (a group's kind
    /// never changes), else from the master's.
    pub async fn kind_of(&self, group: &str) -> Result<String, CliError> {
        if let Ok(cached) = self.node.cached_table().await {
            if let Some(g) = cached.group(group) {
                return Ok(g.kind.clone());
            }
        }
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

/// The masters to use for `via`: its `NAME@HOST:PORT` entries are masters
/// as given; a plain `HOST:PORT` is any node, asked for the masters it knows
/// (each within `dial`, the next one asked too after a short wait or a
/// failure; the first that answers wins, so a list with dead or hung
/// entries still works, see `discover::reach_any`), and its cached routing
/// table comes along. With
/// both kinds, the named masters are the fallback when no plain entry
/// answers.
/// `cookie` is the secret, `source` where it came from (named if a node
/// refuses it).
async fn masters_of(
    via: &[String],
    (cookie, source): (&str, String),
    tls: Option<&Tls>,
    dial: Duration,
) -> Result<(Vec<MasterSpec>, Option<RoutingTable>), CliError> {
    let mut named = Vec::new();
    let mut plain = Vec::new();
    for v in via.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        if v.contains('@') {
            let spec = v.parse::<MasterSpec>().map_err(|_| {
                CliError::Usage(format!(
                    "--via {v:?} is neither HOST:PORT nor NAME@HOST:PORT"
                ))
            })?;
            named.push(spec);
        } else if v
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            plain.push(v.to_owned());
        } else {
            return Err(CliError::Usage(format!(
                "--via {v:?} is neither HOST:PORT nor NAME@HOST:PORT"
            )));
        }
    }
    if plain.is_empty() {
        if named.is_empty() {
            return Err(CliError::Usage("--via names no node".into()));
        }
        return Ok((named, None));
    }
    let failures = match discover::reach_any(&plain, cookie, tls, dial).await {
        Ok(r) => return Ok((r.masters, r.table)),
        Err(failures) => failures,
    };
    if !named.is_empty() {
        return Ok((named, None));
    }
    Err(CliError::Discover {
        failures,
        cookie: source,
    })
}

/// Whether `e` may clear up by itself while the cluster settles.
fn transient(e: &DikeError) -> bool {
    matches!(
        e,
        DikeError::Unavailable { .. }
            | DikeError::Timeout { .. }
            | DikeError::DispatcherTimeout { .. }
            | DikeError::NodeStopped(_)
    )
}

/// A loopback address with a port free right now (see
/// [`dike_harness::free_loopback_addr`]).
fn free_loopback_addr() -> Result<SocketAddr, CliError> {
    dike_harness::free_loopback_addr()
        .map_err(|e| CliError::Usage(format!("cannot find a free local port: {e}")))
}
