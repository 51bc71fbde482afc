//! Removing a node from the cluster: [`NodeHandle::remove_node`] (what
//! `dike node remove` does).
//!
//! The master marks the node as being removed; from then on it takes no
//! new replicas, and the master's rebalancer moves its replicas away one
//! membership change at a time (a learner on another node catches up, then
//! takes the leaving voter's place), exactly as for a dead node but without
//! waiting for a grace period. Once the node hosts nothing it leaves the
//! routing table, and its data dir is refused if it comes back: the node
//! learns so from the master, logs it once and stops trying to join.
//!
//! Invariant: no replica is dropped before its replacement has caught up,
//! so a removal never leaves a group with fewer live voters than before.

use super::NodeHandle;
use crate::error::DikeError;
use crate::master::{MasterReply, MasterRequest};
use crate::node::config::node_id_of;
use dike_core::routing::NodeInfo;

/// How far a node's removal is (see [`NodeHandle::remove_node`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeRemoval {
    /// The node is being removed and still hosts this many replicas.
    Removing {
        /// The node.
        node: NodeInfo,
        /// Replicas it still hosts.
        replicas: usize,
    },
    /// The node hosts nothing any more and has left the routing table.
    Removed(NodeInfo),
}

impl NodeHandle {
    /// Removes node `name` from the cluster, or says how far its removal
    /// is: the first call starts it, later calls (from any node) answer the
    /// same way, until [`NodeRemoval::Removed`]. See the module
    /// documentation. A master node (or one the operator asked to become
    /// a master) is refused: take it out of the masters first (`dike
    /// master remove`).
    pub async fn remove_node(&self, name: &str) -> Result<NodeRemoval, DikeError> {
        let node = node_id_of(name);
        let table = self.routing_table().await?;
        let known = self.ctx.masters();
        let is_master = table.masters.nodes().contains(&node)
            || (table.masters.config.is_none() && known.spec(node).is_some());
        if is_master {
            let e = dike_core::routing::RoutingError::IsMaster { name: name.into() };
            return Err(DikeError::Rejected(e.to_string()));
        }
        if table.node(node).is_none() {
            let why = if table.removed.contains_key(&node) {
                "it was removed already"
            } else {
                "list the nodes with `dike status`"
            };
            return Err(DikeError::Rejected(format!(
                "no node named {name:?} in the routing table; {why}"
            )));
        }
        self.master_as(MasterRequest::RemoveNode { node }, |reply| match reply {
            MasterReply::Removing { node, replicas } => {
                Ok(NodeRemoval::Removing { node, replicas })
            }
            MasterReply::NodeRemoved(node) => Ok(NodeRemoval::Removed(node)),
            other => Err(other),
        })
        .await
    }
}
