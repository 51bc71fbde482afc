//! The master's rebalancer: on every node, and acting only where the
//! local master replica leads, it carries out placement one membership
//! change at a time — replicas move onto a node that joined, and away from a
//! node down longer than [`NodeConfig::replace_after`](crate::NodeConfig) —
//! and changes the master group itself towards the masters the operator
//! asked for.
//!
//! Each step: read the table; read the master group's configuration from
//! the local master replica, record it in the table if newer (how every
//! node learns the masters) and propose its next change
//! ([`dike_core::rebalance::next_master_change`]); for groups with a move in flight, read the
//! group's configuration from its leader, record it in the table if newer,
//! and propose the change that finishes the move
//! ([`dike_core::rebalance::finish_move`]); then start new moves
//! ([`dike_core::rebalance::start_moves`]) with `AddLearner`. A change is
//! recorded in the table (`SetConfig`) once the group has chosen it, and
//! nodes start or stop replicas when their dispatchers see the table.
//!
//! A change whose answer or record did not come back (a timeout, a lost
//! reply, a master that did not take the record) may still have been
//! chosen: the rebalancer re-reads such a group every step until the table
//! holds its configuration. Without that, an idle group whose table entry
//! lists no learner would keep a learner the table does not know of.
//!
//! Invariants: every decision is a function of the table and the groups'
//! own configurations, never of the rebalancer's memory (the groups to
//! re-read are a hint: a new master leader does not have it, and such a
//! group is read again when it next moves), so a new master
//! leader (or a restarted rebalancer) carries on where the last stopped; a
//! group's change is proposed in the group's log, which refuses a second
//! change while one is in flight, so two masters that both believe they
//! lead cannot change one group twice at once.

use crate::cluster::wire::{ClientRequest, ReplicaMsg, ReplicaStatus};
use crate::error::DikeError;
use crate::group::supervisor::GroupSupMsg;
use crate::master::{MasterReply, MasterRequest};
use crate::node::config::MASTER_GROUP;
use crate::node::context::{wall_nanos, NodeContext};
use crate::routing::router::Router;
use dike_core::rebalance;
use dike_core::replica::ConfigChange;
use dike_core::routing::{GroupInfo, RoutingTable};
use dike_core::NodeId;
use dike_core::{codec, Config};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// At most this many membership changes are proposed per step, so one step
/// stays short and a large move is spread over several.
const CHANGES_PER_STEP: usize = 8;

/// Messages to the rebalancer (local only).
pub enum RebalancerMsg {
    /// Take one step now (sent by the rebalancer to itself).
    Step,
}

impl ractor::Message for RebalancerMsg {}

/// The rebalancer actor. See the module documentation.
pub struct Rebalancer;

/// The rebalancer's state.
pub struct RebalancerState {
    ctx: Arc<NodeContext>,
    router: Router,
    /// Groups whose change this rebalancer could not record: re-read every
    /// step until the table holds their configuration.
    unrecorded: Mutex<BTreeSet<String>>,
}

impl Actor for Rebalancer {
    type Msg = RebalancerMsg;
    type State = RebalancerState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<RebalancerMsg>,
        ctx: Arc<NodeContext>,
    ) -> Result<RebalancerState, ActorProcessingErr> {
        myself.send_after(ctx.config.rebalance_every, || RebalancerMsg::Step);
        Ok(RebalancerState {
            router: Router::new(ctx.clone()),
            ctx,
            unrecorded: Mutex::new(BTreeSet::new()),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RebalancerMsg>,
        msg: RebalancerMsg,
        state: &mut RebalancerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RebalancerMsg::Step => {
                if state.leads_master().await {
                    if let Err(e) = state.step().await {
                        tracing::debug!("rebalancing step failed: {e}");
                    }
                }
                // The next step is planned after this one ends, so slow steps
                // never pile up in the mailbox.
                myself.send_after(state.ctx.config.rebalance_every, || RebalancerMsg::Step);
            }
        }
        Ok(())
    }
}

impl RebalancerState {
    /// Whether this node's master replica leads the master group.
    async fn leads_master(&self) -> bool {
        let Some(groups) = self.ctx.group_supervisor() else {
            return false;
        };
        let Ok(Some(replica)) =
            ractor::call_t!(groups, GroupSupMsg::Replica, 1000, MASTER_GROUP.to_owned())
        else {
            return false;
        };
        let Ok(bytes) = ractor::call_t!(replica, ReplicaMsg::Status, 1000, false) else {
            return false;
        };
        codec::decode::<ReplicaStatus>("replica status", &bytes)
            .is_ok_and(|s| s.leader == Some(s.member))
    }

    /// One step: finish moves in flight, then start new ones.
    async fn step(&self) -> Result<(), DikeError> {
        let table = self.router.refresh().await?;
        self.step_masters(&table).await;
        let now = wall_nanos() / 1_000_000_000;
        let grace = self.ctx.config.replace_after.as_secs();
        let dead = rebalance::dead_nodes(&table, now, grace);
        self.forget(&table, &dead).await;
        self.reread_unrecorded(&table).await;
        let mut budget = CHANGES_PER_STEP;
        let in_flight = table
            .groups
            .values()
            .filter(|g| !g.config.learners.is_empty());
        for group in in_flight {
            if budget == 0 {
                return Ok(());
            }
            let Some(config) = self.read_config(group).await else {
                continue;
            };
            if let Some(change) = rebalance::finish_move(&table, &config, group.size, &dead) {
                self.change(&group.name, change).await;
                budget -= 1;
            }
        }
        for (name, to) in rebalance::start_moves(&table, &dead) {
            if budget == 0 {
                return Ok(());
            }
            let Some(group) = table.group(&name) else {
                continue;
            };
            // Only start from the configuration the table holds: if the group
            // moved on, the table learns it now and the next step decides.
            match self.read_config(group).await {
                Some(config) if config.epoch == group.config.epoch => {
                    self.change(&name, ConfigChange::AddLearner(to)).await;
                    budget -= 1;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Records the master group's configuration if the table's is older,
    /// then proposes its next change towards the masters wanted, if any.
    async fn step_masters(&self, table: &RoutingTable) {
        let config = match self
            .router
            .membership(MASTER_GROUP, ClientRequest::Membership)
            .await
        {
            Ok(config) => config,
            Err(e) => {
                tracing::debug!("cannot read the master group's configuration: {e}");
                return;
            }
        };
        let recorded = table.masters.config.as_ref();
        if recorded.is_none_or(|c| config.epoch > c.epoch) {
            self.record(MASTER_GROUP, config.clone()).await;
        }
        if let Some(change) = rebalance::next_master_change(table, &config) {
            self.change(MASTER_GROUP, change).await;
        }
    }

    /// Takes nodes whose replicas are all gone out of the table: those the
    /// operator removes, and those down longer than the grace period (never
    /// a master node, or one the operator wants as a master: the master
    /// replica is not among the table's groups).
    async fn forget(&self, table: &RoutingTable, dead: &BTreeSet<NodeId>) {
        let mut masters = table.masters.nodes();
        let known = self.ctx.masters();
        masters.extend(known.config.all_members().map(|m| m.node));
        for (node, removed_by_operator) in rebalance::nodes_to_forget(table, dead, &masters) {
            let req = if removed_by_operator {
                MasterRequest::RemoveNode { node }
            } else {
                MasterRequest::ForgetNode { node }
            };
            match self.router.master(req).await {
                Ok(MasterReply::NodeRemoved(n)) => {
                    tracing::info!(node = %n.name, removed_by_operator, "node left the routing table")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(node = node.0, "cannot take a node out of the table: {e}"),
            }
        }
    }

    /// Reads every group whose change this rebalancer could not record (its
    /// configuration is recorded if newer); a group read is no longer one.
    async fn reread_unrecorded(&self, table: &RoutingTable) {
        let names: Vec<String> = self.unrecorded().iter().cloned().collect();
        for name in names {
            let read = match table.group(&name) {
                // A move in flight: read this step anyway.
                Some(group) if !group.config.learners.is_empty() => true,
                Some(group) => self.read_config(group).await.is_some(),
                // Removed meanwhile, or the master group (read every step).
                None => true,
            };
            if read {
                self.unrecorded().remove(&name);
            }
        }
    }

    fn unrecorded(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.unrecorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The group's configuration from its leader, recorded in the table if
    /// the table's is older. `None` if the leader could not be asked.
    async fn read_config(&self, group: &GroupInfo) -> Option<Config> {
        match self
            .router
            .membership(&group.name, ClientRequest::Membership)
            .await
        {
            Ok(config) => {
                if config.epoch > group.config.epoch {
                    self.record(&group.name, config.clone()).await;
                }
                Some(config)
            }
            Err(e) => {
                tracing::debug!(group = %group.name, "cannot read the configuration: {e}");
                None
            }
        }
    }

    /// Proposes `change` in `group` and records the configuration it chose.
    async fn change(&self, group: &str, change: ConfigChange) {
        let span = tracing::info_span!("membership_change", %group, ?change);
        let proposed = self
            .router
            .membership(group, ClientRequest::Change(change))
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        match proposed {
            Ok(config) => {
                tracing::info!(epoch = config.epoch, voters = ?config.voters, learners = ?config.learners, "membership changed");
                drop(_enter);
                self.record(group, config).await;
            }
            // A learner still catching up is the common case: try next
            // step. The change may have been made all the same (an answer
            // lost on the way), so the group is read again.
            Err(e) => {
                tracing::debug!("membership change not made: {e}");
                self.unrecorded().insert(group.to_owned());
            }
        }
    }

    async fn record(&self, group: &str, config: Config) {
        let req = MasterRequest::SetConfig {
            group: group.to_owned(),
            config,
        };
        match self.router.master(req).await {
            Ok(MasterReply::Done) => return,
            Ok(other) => {
                tracing::warn!(%group, ?other, "the master did not record a configuration")
            }
            Err(e) => tracing::warn!(%group, "cannot record a configuration: {e}"),
        }
        self.unrecorded().insert(group.to_owned());
    }
}
