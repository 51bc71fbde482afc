//! The operator's commands that change the masters (`dike master
//! add|remove|replace`), and what they report: the masters as the routing
//! table shows them ([`MasterView`]). See [`crate::node::masters`] for how
//! a node learns the masters.

use crate::error::DikeError;
use crate::master::{MasterReply, MasterRequest};
use crate::node::config::{node_id_of, MasterSpec};
use crate::node::masters::MasterView;
use crate::node::NodeHandle;

impl NodeHandle {
    /// The masters this node knows now (name and address of every member
    /// of the master group it knows where to find).
    pub fn master_specs(&self) -> Vec<MasterSpec> {
        self.ctx.masters().specs.clone()
    }

    /// The masters as the routing table shows them (read from the master).
    pub async fn masters(&self) -> Result<MasterView, DikeError> {
        let table = self.routing_table().await?;
        Ok(MasterView::of(&table, &table.masters, &self.ctx.masters()))
    }

    /// Asks for node `add` to become a master and/or node `remove` to stop
    /// being one (both: a replacement). The master records the wish at
    /// once and its rebalancer carries it out one membership change at a
    /// time (a new master first catches up as a learner); poll
    /// [`NodeHandle::masters`] until [`MasterView::settled`]. Repeating a
    /// request changes nothing.
    pub async fn change_masters(
        &self,
        add: Option<&str>,
        remove: Option<&str>,
    ) -> Result<MasterView, DikeError> {
        let table = self.routing_table().await?;
        let known = |name: &str| {
            let node = node_id_of(name);
            table.node(node).is_some() || table.masters.nodes().contains(&node)
        };
        if let Some(name) = add.into_iter().chain(remove).find(|n| !known(n)) {
            return Err(DikeError::Rejected(format!(
                "no node named {name:?} in the routing table; a node becomes a master after it \
                 joined the cluster (list the nodes with `dike status`)"
            )));
        }
        let req = MasterRequest::ChangeMasters {
            add: add.map(node_id_of),
            remove: remove.map(node_id_of),
        };
        let group = self
            .master_as(req, |reply| match reply {
                MasterReply::Masters(group) => Ok(group),
                other => Err(other),
            })
            .await?;
        let table = self.cached_table().await?;
        Ok(MasterView::of(&table, &group, &self.ctx.masters()))
    }
}
