//! The test's own view of a [`Cluster`]: a client node in the test process
//! that does not join (so it never hosts replicas), reaching the cluster
//! through its masters, with the example kinds (`arithmetic`, `kv`, `lock`)
//! registered, plus the waits and checks the scenarios share.
//!
//! Invariant: every wait polls a named condition with a deadline and, when
//! it panics, names the condition, the last reason it did not hold and
//! where the node logs are.

use crate::cluster::Cluster;
use crate::wait::{Check, NotYet};
use dike_actors::cluster::wire::ReplicaStatus;
use dike_actors::master::{MasterReply, MasterRequest};
use dike_actors::routing::dispatcher::DispatcherMsg;
use dike_actors::{DikeError, DikeNode, JoinOutcome, NodeConfig, NodeHandle, StartError};
use dike_core::routing::{NodeInfo, RoutingTable};
use dike_core::MemberId;
use std::future::Future;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

/// How long [`Client::connect`] waits for the masters to answer.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(60);

/// A client node of a cluster; dereferences to its [`NodeHandle`]
/// (`client.group::<Arithmetic>("calc").call(..)`).
pub struct Client {
    node: NodeHandle,
    log_dir: PathBuf,
}

impl Deref for Client {
    type Target = NodeHandle;

    fn deref(&self) -> &NodeHandle {
        &self.node
    }
}

impl Client {
    /// Starts a client of `cluster` (request deadline 5 s; new groups get
    /// the cluster's `--group-size`, else 5, or 1 with a single master) and
    /// waits until the master answers.
    pub async fn connect(cluster: &Cluster) -> Client {
        Self::connect_with(cluster, Duration::from_secs(5)).await
    }

    /// [`Client::connect`] with another request deadline.
    pub async fn connect_with(cluster: &Cluster, request_timeout: Duration) -> Client {
        // The address is probed free, but another socket on the machine can
        // take it before the node binds it: try a few fresh ones.
        let mut tries = 0;
        let node = loop {
            tries += 1;
            match Self::start_node(cluster, request_timeout).await {
                Err(StartError::Listen { addr, reason }) if tries < 5 => {
                    eprintln!("client node: cannot listen on {addr} ({reason}); another address");
                }
                started => break started.expect("the client node starts"),
            }
        };
        let client = Client {
            node,
            log_dir: cluster.log_dir().to_path_buf(),
        };
        client
            .wait_until(CONNECT_WITHIN, "the master answers the client", || {
                client.routing_table_check()
            })
            .await;
        client
    }

    /// Starts a client node of `cluster` on a fresh address.
    async fn start_node(
        cluster: &Cluster,
        request_timeout: Duration,
    ) -> Result<NodeHandle, StartError> {
        let addr = cluster.client_addr();
        let last = match addr.ip() {
            std::net::IpAddr::V4(ip) => ip.octets()[3],
            std::net::IpAddr::V6(_) => 0,
        };
        let name = format!("c{}-client{last}", cluster.octet());
        let tls = cluster.tls_config(&name, addr.ip()).map(|files| {
            files
                .load()
                .unwrap_or_else(|e| panic!("the client's TLS files: {e}"))
        });
        let mut b = NodeConfig::builder(name, addr)
            .cookie(cluster.cookie())
            .join(false)
            .in_memory()
            .request_timeout(request_timeout);
        for m in cluster.masters() {
            b = b.master(m.clone());
        }
        let size = cluster
            .group_size()
            .unwrap_or(if cluster.masters().len() == 1 { 1 } else { 5 });
        b = b.group_size(size);
        if let Some(tls) = tls {
            b = b.tls(tls);
        }
        let b = dike_examples::cli::kinds::with_all(b);
        let config = b.build().expect("a valid client configuration");
        DikeNode::start(config).await
    }

    /// The client's node.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// The routing table, read from the master.
    pub async fn routing_table(&self) -> Result<RoutingTable, DikeError> {
        self.node.routing_table().await
    }

    async fn routing_table_check(&self) -> Check<RoutingTable> {
        Ok(self.routing_table().await?)
    }

    /// Polls `condition` until it holds (see [`crate::wait`]); panics after
    /// `within` naming `what`, the last reason and the node log directory.
    pub async fn wait_until<T, F, Fut>(&self, within: Duration, what: &str, condition: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Check<T>>,
    {
        let what = format!("{what} (node logs in {})", self.log_dir.display());
        crate::wait::wait_until(within, &what, condition).await
    }

    /// Waits until the table shows every node named in `names` up and
    /// returns the table.
    pub async fn wait_for_live_nodes(&self, names: &[String], within: Duration) -> RoutingTable {
        let what = format!("the table shows {} nodes up", names.len());
        self.wait_until(within, &what, || async {
            let t = self.routing_table().await?;
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !t.is_up(dike_actors::node::config::node_id_of(n)))
                .collect();
            if missing.is_empty() {
                Ok(t)
            } else {
                Err(NotYet::from(format!("not up: {missing:?}")))
            }
        })
        .await
    }

    /// What every voter of `group` says about itself, in the table's order;
    /// an unreachable member is an error entry.
    pub async fn replica_statuses(
        &self,
        group: &str,
    ) -> Result<Vec<(MemberId, Result<ReplicaStatus, DikeError>)>, DikeError> {
        let table = self.routing_table().await?;
        let voters = table
            .voters(group)
            .map_err(|_| DikeError::UnknownGroup(group.to_owned()))?
            .to_vec();
        let mut out = Vec::with_capacity(voters.len());
        for m in voters {
            out.push((m, self.node.replica_status(group, m).await));
        }
        Ok(out)
    }

    /// Waits until every voter of `group` answers and all report the same
    /// applied index, at least `at_least`; returns that index.
    pub async fn wait_for_replicas_to_agree(
        &self,
        group: &str,
        at_least: u64,
        within: Duration,
    ) -> u64 {
        let what = format!("every replica of {group} applied the same slots (≥ {at_least})");
        self.wait_until(within, &what, || async {
            let statuses = self.replica_statuses(group).await?;
            let mut applied = Vec::new();
            for (m, s) in &statuses {
                match s {
                    Ok(s) => applied.push(s.applied),
                    Err(e) => return Err(NotYet::from(format!("{m}: {e}"))),
                }
            }
            let first = applied.first().copied().unwrap_or(0);
            if first >= at_least && applied.iter().all(|a| *a == first) {
                Ok(first)
            } else {
                let seen: Vec<String> = statuses
                    .iter()
                    .zip(&applied)
                    .map(|((m, _), a)| format!("{m}={a}"))
                    .collect();
                Err(NotYet::from(format!("applied: {}", seen.join(", "))))
            }
        })
        .await
    }

    /// Sends the master a join of the node `info` describes, as that node
    /// would (same name, address and incarnation): a node already in the
    /// table is answered [`JoinOutcome::AlreadyKnown`] and nothing changes.
    pub async fn join_as(&self, info: &NodeInfo) -> Result<JoinOutcome, DikeError> {
        let dispatcher = self
            .node
            .dispatcher()
            .ok_or_else(|| DikeError::NodeStopped("no dispatcher".into()))?;
        let req = MasterRequest::Join {
            name: info.name.clone(),
            address: info.address.clone(),
            incarnation: info.incarnation.0,
        };
        let kind = req.kind();
        let reply = ractor::call_t!(dispatcher, DispatcherMsg::Master, 10_000, req)
            .map_err(|e| DikeError::NodeStopped(format!("dispatcher: {e}")))??;
        match reply {
            MasterReply::Joined(n) => Ok(JoinOutcome::Joined(n)),
            MasterReply::AlreadyKnown(n) => Ok(JoinOutcome::AlreadyKnown(n)),
            MasterReply::Refused(r) => Err(DikeError::Rejected(r)),
            other => Err(other.unexpected(kind)),
        }
    }

    /// The node whose replica leads the master group, as the masters say
    /// (`None` if none that answers names a leader).
    pub async fn master_leader(&self) -> Option<dike_core::NodeId> {
        for m in self.node.master_config().voters {
            let status = self
                .node
                .replica_status(dike_actors::node::config::MASTER_GROUP, m)
                .await;
            if let Some(l) = status.ok().and_then(|s| s.leader) {
                return Some(l.node);
            }
        }
        None
    }

    /// Stops the client node.
    pub async fn stop(self) {
        self.node.stop().await;
    }
}
