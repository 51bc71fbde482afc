//! Draining a node ([`NodeHandle::drain_node`], what `dike node drain`
//! does) and undraining it ([`NodeHandle::set_draining`]).
//!
//! The master only records the flag in the routing table
//! ([`MasterRequest::SetDraining`]). Everything else follows from the table:
//! placement puts no new group or learner on a draining node, and every
//! node's dispatcher tells its replicas which nodes drain
//! (`GroupSupMsg::Draining`, `ReplicaMsg::Draining`), so a leader there
//! hands off and no leadership is handed to it (`dike_core`'s
//! `replica::drain`).
//!
//! Invariant: success is read from the replicas' own statuses (no group
//! says the node leads it), never assumed from the flag.

use super::status::ClusterStatus;
use super::NodeHandle;
use crate::error::DikeError;
use crate::master::{MasterReply, MasterRequest};
use crate::node::config::node_id_of;
use std::time::{Duration, Instant};

/// How long each replica may take to answer while a drain is watched.
const PER_REPLICA: Duration = Duration::from_secs(1);

/// What [`NodeHandle::drain_node`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Groups the node led when the drain began, with the node that leads
    /// each now (`None`: no answering replica leads it at the moment).
    pub moved: Vec<(String, Option<String>)>,
    /// Groups the node still leads at the deadline (empty on success).
    pub still_led: Vec<String>,
}

impl NodeHandle {
    /// Marks node `name` draining (or not) in the routing table. Marking a
    /// node as it already is changes nothing. Unknown nodes are refused
    /// ([`DikeError::Rejected`], naming the node).
    pub async fn set_draining(&self, name: &str, draining: bool) -> Result<(), DikeError> {
        let req = MasterRequest::SetDraining {
            node: node_id_of(name),
            draining,
        };
        let answer = |reply: MasterReply| match reply {
            MasterReply::Done => Ok(()),
            other => Err(other),
        };
        match self.master_as(req, answer).await {
            Err(DikeError::Rejected(why)) => {
                Err(DikeError::Rejected(format!("node {name:?}: {why}")))
            }
            done_or_failed => done_or_failed,
        }
    }

    /// Drains node `name` and waits, up to `within`, until no group says
    /// the node leads it (a group whose other voters cannot lead stays led
    /// there: it then shows in [`DrainReport::still_led`]).
    pub async fn drain_node(&self, name: &str, within: Duration) -> Result<DrainReport, DikeError> {
        let deadline = Instant::now() + within;
        let before = led_from(&self.cluster_status(PER_REPLICA).await?, name);
        self.set_draining(name, true).await?;
        loop {
            let now = self.cluster_status(PER_REPLICA).await?;
            let still_led = led_from(&now, name);
            if still_led.is_empty() || Instant::now() >= deadline {
                let moved = before
                    .iter()
                    .filter(|g| !still_led.contains(g))
                    .map(|g| (g.clone(), leader_of(&now, g)))
                    .collect();
                return Ok(DrainReport { moved, still_led });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The groups whose leader, as the status shows it, is on node `name`.
fn led_from(status: &ClusterStatus, name: &str) -> Vec<String> {
    status
        .groups
        .iter()
        .filter(|g| g.leader.as_deref() == Some(name))
        .map(|g| g.name.clone())
        .collect()
}

/// The node that leads `group` in the status, if any.
fn leader_of(status: &ClusterStatus, group: &str) -> Option<String> {
    status
        .groups
        .iter()
        .find(|g| g.name == group)
        .and_then(|g| g.leader.clone())
}
