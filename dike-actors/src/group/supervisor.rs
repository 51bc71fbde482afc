//! The group supervisor: one replica actor per group hosted on the node,
//! started and stopped by reconciliation with the routing table, restarted
//! after a crash within a [`RestartBudget`].
//!
//! Invariants: at most one replica actor per group runs on the node; a
//! replica stopped on purpose (reconciliation, shutdown) is never restarted;
//! a crashed one is restarted from its storage unless the budget is
//! exhausted, in which case the supervisor itself fails and its own
//! supervisor (the node) decides.

use crate::cluster::wire::{self, ReplicaMsg};
use crate::group::reconcile;
use crate::group::replica::{Assignment, NextTick, ReplicaActor, ReplicaArgs};
use crate::group::restart::RestartBudget;
use crate::master::MASTER_KIND;
use crate::node::config::MASTER_GROUP;
use crate::node::context::{NodeChild, NodeContext};
use crate::node::metrics::Mailbox;
use dike_core::codec;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a replica that left a group still runs before it stops.
const LINGER: Duration = Duration::from_secs(20);

/// How long stopping the replicas may take.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Messages to the group supervisor (local only).
pub enum GroupSupMsg {
    /// The replicas the routing table assigns to this node, and every group
    /// in the table with its generation.
    Reconcile(BTreeMap<String, Assignment>, BTreeMap<String, u64>),
    /// One node tick, passed on to every replica; sent at this time of the
    /// node's clock (its time since start).
    Tick(std::time::Duration),
    /// Node `NodeId` is down, as the failure detector knows: tell every
    /// replica.
    NodeDown(dike_core::NodeId, dike_core::DownReport),
    /// The replica actor of a group, if running here.
    Replica(String, RpcReplyPort<Option<ActorRef<ReplicaMsg>>>),
    /// Every replica actor assigned here, by group.
    Replicas(RpcReplyPort<Vec<(String, ActorRef<ReplicaMsg>)>>),
    /// The linger of the replica actor with this id is over: stop it,
    /// unless it was assigned here again meanwhile.
    LingerOver(ActorId),
    /// The nodes the routing table marks draining: passed on to every
    /// replica when the set changes, and to every replica started later.
    Draining(BTreeSet<dike_core::NodeId>),
}

impl ractor::Message for GroupSupMsg {}

/// The group supervisor actor.
pub struct GroupSupervisor;

struct Child {
    actor: ActorRef<ReplicaMsg>,
    assignment: Assignment,
    /// The node tick the replica next needs, as it last said
    /// ([`ReplicaArgs::next_tick`]).
    next_tick: Arc<NextTick>,
}

/// Casts node tick number `tick`, sent at `at`, to each child it is due
/// for; returns how many got one. A hibernating group's replicas get none,
/// so an idle group costs the node nothing per tick, and a follower gets
/// none before its election deadline.
fn tick<'a>(children: impl IntoIterator<Item = &'a Child>, tick: u64, at: u64) -> usize {
    children
        .into_iter()
        .filter(|c| c.next_tick.due(tick))
        .filter(|c| c.actor.cast(ReplicaMsg::Tick(at)).is_ok())
        .count()
}

/// A replica actor no longer assigned here.
struct Stopping {
    child: Child,
    /// Still running out its linger (not told to stop yet).
    lingering: bool,
}

/// The supervisor's state.
pub struct GroupSupState {
    ctx: Arc<NodeContext>,
    children: BTreeMap<String, Child>,
    by_id: HashMap<ActorId, String>,
    /// Replicas told to stop (no longer assigned here), with what they
    /// hosted: their storage is erased once they have stopped. One that
    /// still lingers is taken back if it is assigned here again.
    stopping: HashMap<ActorId, Stopping>,
    pinned: BTreeMap<String, Assignment>,
    budget: RestartBudget,
    warned_kinds: BTreeSet<String>,
    /// The nodes the routing table marks draining, as last told.
    draining: BTreeSet<dike_core::NodeId>,
}

impl NodeContext {
    /// The node's group supervisor now running, if any.
    pub(crate) fn group_supervisor(&self) -> Option<ActorRef<GroupSupMsg>> {
        self.actor(NodeChild::GroupSupervisor)
    }
}

impl Actor for GroupSupervisor {
    type Msg = GroupSupMsg;
    type State = GroupSupState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<GroupSupMsg>,
        ctx: Arc<NodeContext>,
    ) -> Result<GroupSupState, ActorProcessingErr> {
        let mut pinned = BTreeMap::new();
        if let Some(a) = master_assignment(&ctx) {
            pinned.insert(MASTER_GROUP.to_owned(), a);
        }
        let mut state = GroupSupState {
            budget: RestartBudget::new(ctx.config.restarts),
            ctx,
            children: BTreeMap::new(),
            by_id: HashMap::new(),
            stopping: HashMap::new(),
            pinned,
            warned_kinds: BTreeSet::new(),
            draining: BTreeSet::new(),
        };
        state.ensure_pinned(&myself).await;
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<GroupSupMsg>,
        state: &mut GroupSupState,
    ) -> Result<(), ActorProcessingErr> {
        myself
            .stop_children_and_wait(Some("group supervisor stopping".into()), Some(STOP_WAIT))
            .await;
        state.ctx.metrics.replicas.set(0);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<GroupSupMsg>,
        msg: GroupSupMsg,
        state: &mut GroupSupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GroupSupMsg::Tick(sent) => {
                let now = state.ctx.clock();
                let metrics = &state.ctx.metrics;
                metrics.mailbox_wait(Mailbox::GroupSupervisor, now.saturating_sub(sent));
                let at = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
                let count = state.ctx.count_tick();
                tick(state.children.values(), count, at);
            }
            GroupSupMsg::Reconcile(desired, existing) => {
                state.repin_master(&myself);
                state.ensure_pinned(&myself).await;
                let running: BTreeMap<String, Assignment> = state
                    .children
                    .iter()
                    .map(|(k, c)| (k.clone(), c.assignment.clone()))
                    .collect();
                let pinned: BTreeSet<String> = state.pinned.keys().cloned().collect();
                let plan = reconcile::plan(&running, &desired, &pinned);
                for group in plan.stop {
                    // A member that left a group that goes on lingers: the
                    // remaining members may still need it to learn that the
                    // change that removed it was chosen (a leader that
                    // replaced itself, say). A group removed, or created
                    // again under its name, does not go on.
                    let generation = state.children.get(&group).map(|c| c.assignment.generation);
                    let goes_on =
                        generation.is_some() && existing.get(&group).copied() == generation;
                    let linger = goes_on.then_some(LINGER);
                    state.stop(&myself, &group, linger);
                }
                for a in plan.start {
                    state.start(&myself, a).await;
                }
            }
            GroupSupMsg::NodeDown(node, report) => {
                for c in state.children.values() {
                    let _ = c.actor.cast(ReplicaMsg::NodeDown(node.0, report));
                }
            }
            GroupSupMsg::Replica(group, port) => {
                let _ = port.send(state.children.get(&group).map(|c| c.actor.clone()));
            }
            GroupSupMsg::Replicas(port) => {
                let all = state
                    .children
                    .iter()
                    .map(|(g, c)| (g.clone(), c.actor.clone()))
                    .collect();
                let _ = port.send(all);
            }
            GroupSupMsg::Draining(nodes) => {
                if nodes != state.draining {
                    state.draining = nodes;
                    for c in state.children.values() {
                        state.tell_draining(&c.actor);
                    }
                }
            }
            GroupSupMsg::LingerOver(id) => {
                if let Some(s) = state.stopping.get_mut(&id).filter(|s| s.lingering) {
                    s.lingering = false;
                    s.child.actor.stop(Some("unassigned; lingered".into()));
                }
            }
        }
        state.count_replicas();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<GroupSupMsg>,
        evt: SupervisionEvent,
        state: &mut GroupSupState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "terminated".into()))
            }
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let Some(group) = state.by_id.remove(&id) else {
            return Ok(());
        };
        if let Some(gone) = state.stopping.remove(&id) {
            state.erase(&gone.child.assignment);
            return Ok(());
        }
        let Some(child) = state.children.remove(&group) else {
            return Ok(());
        };
        tracing::warn!(%group, %why, "replica crashed");
        if !state.budget.allow(Instant::now()) {
            // A failing actor skips post_stop: stop the replicas now, so the
            // next group supervisor does not find them still running.
            myself
                .stop_children_and_wait(Some("group supervisor gives up".into()), Some(STOP_WAIT))
                .await;
            state.ctx.metrics.replicas.set(0);
            return Err(
                format!("replicas crash too often (last: {group}: {why}); giving up").into(),
            );
        }
        state.start(&myself, child.assignment).await;
        state.count_replicas();
        Ok(())
    }
}

/// The master replica this node hosts, as the masters it knows now say
/// (see [`crate::node::masters`]), if any. A fresh replica starts from the
/// configuration known now (as a learner, when it is being added).
fn master_assignment(ctx: &NodeContext) -> Option<Assignment> {
    let masters = ctx.masters();
    let member = masters.member_on(ctx.config.node_id(), ctx.incarnation)?;
    Some(Assignment {
        group: MASTER_GROUP.to_owned(),
        kind: MASTER_KIND.to_owned(),
        member,
        generation: 0,
        config: masters.config.clone(),
    })
}

impl GroupSupState {
    /// Follows the masters: pins the master replica of a node that became
    /// a master, and lets that of a node that no longer is one linger (the
    /// remaining masters may need it to learn the change that removed it)
    /// and stop.
    fn repin_master(&mut self, myself: &ActorRef<GroupSupMsg>) {
        let now = master_assignment(&self.ctx);
        let member = |a: Option<&Assignment>| a.map(|a| a.member);
        if member(now.as_ref()) == member(self.pinned.get(MASTER_GROUP)) {
            return;
        }
        tracing::info!(
            master = now.is_some(),
            "the masters changed: this node's master replica follows"
        );
        match now {
            Some(a) => self.pinned.insert(MASTER_GROUP.to_owned(), a),
            None => self.pinned.remove(MASTER_GROUP),
        };
        let running = self.children.get(MASTER_GROUP).map(|c| c.assignment.member);
        if running.is_some() && running != member(self.pinned.get(MASTER_GROUP)) {
            self.stop(myself, MASTER_GROUP, Some(LINGER));
        }
    }

    /// Sets the replicas-hosted gauge to the replicas running here.
    fn count_replicas(&self) {
        self.ctx.metrics.replicas.set(self.children.len() as i64);
    }

    async fn ensure_pinned(&mut self, myself: &ActorRef<GroupSupMsg>) {
        let missing: Vec<Assignment> = self
            .pinned
            .values()
            .filter(|a| !self.children.contains_key(&a.group))
            .cloned()
            .collect();
        for a in missing {
            self.start(myself, a).await;
        }
    }

    async fn start(&mut self, myself: &ActorRef<GroupSupMsg>, a: Assignment) {
        if self.take_back(&a) {
            return;
        }
        if self.ctx.kind(&a.kind).is_none() {
            if self.warned_kinds.insert(a.kind.clone()) {
                tracing::error!(group = %a.group, kind = %a.kind,
                    "cannot host a replica: server kind not registered on this node");
            }
            return;
        }
        let name = wire::replica_name(&a.group, a.generation, a.member);
        let next_tick = Arc::new(NextTick::now());
        let args = ReplicaArgs {
            ctx: self.ctx.clone(),
            assignment: a.clone(),
            next_tick: next_tick.clone(),
        };
        match Actor::spawn_linked(Some(name), ReplicaActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                if !self.draining.is_empty() {
                    self.tell_draining(&actor);
                }
                self.by_id.insert(actor.get_id(), a.group.clone());
                self.children.insert(
                    a.group.clone(),
                    Child {
                        actor,
                        assignment: a,
                        next_tick,
                    },
                );
            }
            // Retried at the next reconciliation.
            Err(e) => tracing::error!(group = %a.group, "cannot start replica: {e}"),
        }
    }

    /// Tells replica `actor` which nodes are draining.
    fn tell_draining(&self, actor: &ActorRef<ReplicaMsg>) {
        let ids: Vec<u64> = self.draining.iter().map(|n| n.0).collect();
        match codec::encode("draining nodes", &ids) {
            Ok(bytes) => {
                let _ = actor.cast(ReplicaMsg::Draining(bytes));
            }
            Err(e) => tracing::warn!("cannot encode the draining nodes: {e}"),
        }
    }

    /// Stops the replica of `group`, after `linger` if given (it is no
    /// longer counted as running here meanwhile).
    fn stop(&mut self, myself: &ActorRef<GroupSupMsg>, group: &str, linger: Option<Duration>) {
        if let Some(c) = self.children.remove(group) {
            tracing::info!(%group, ?linger, "stopping replica: no longer assigned to this node");
            let id = c.actor.get_id();
            match linger {
                None => c.actor.stop(Some("unassigned".into())),
                Some(after) => {
                    myself.send_after(after, move || GroupSupMsg::LingerOver(id));
                }
            }
            let lingering = linger.is_some();
            self.stopping.insert(
                id,
                Stopping {
                    child: c,
                    lingering,
                },
            );
        }
    }

    /// Takes back a lingering replica of exactly assignment `a` (group,
    /// generation and member) instead of starting a new one: it was moved
    /// away and back within its linger. Its actor name is still taken, so a
    /// new actor could not start until the linger ended, and the group would
    /// miss this member that long.
    fn take_back(&mut self, a: &Assignment) -> bool {
        let back = self.stopping.iter().find_map(|(id, s)| {
            let b = &s.child.assignment;
            (s.lingering
                && b.group == a.group
                && b.generation == a.generation
                && b.member == a.member)
                .then_some(*id)
        });
        let Some(id) = back else {
            return false;
        };
        let Some(s) = self.stopping.remove(&id) else {
            return false;
        };
        tracing::info!(group = %a.group, member = %a.member, "replica assigned here again while it lingered: kept");
        self.children.insert(
            a.group.clone(),
            Child {
                actor: s.child.actor,
                assignment: a.clone(),
                next_tick: s.child.next_tick,
            },
        );
        true
    }

    /// Erases the storage of a replica that stopped because it is no longer
    /// assigned here, unless the same replica runs here again already (it
    /// came back while the old actor lingered, and uses that storage).
    fn erase(&self, gone: &Assignment) {
        let back = self.children.get(&gone.group).is_some_and(|c| {
            c.assignment.member == gone.member && c.assignment.generation == gone.generation
        });
        if back {
            return;
        }
        let storage = &self.ctx.config.storage;
        if let Err(e) = storage.remove(&gone.group, gone.generation, gone.member) {
            tracing::warn!(group = %gone.group, "cannot erase the replica's storage: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::Counter;
    use crate::node::config::NodeConfig;
    use crate::test_support::{Counting, CountingArgs};
    use dike_core::{Config, MemberId, PaxosServer};

    /// A node context named `name`, in memory, with the counter kind, and
    /// this node's member of a group.
    fn context(name: &str) -> (Arc<NodeContext>, MemberId) {
        let addr = "127.0.0.1:1".parse().expect("address");
        let config = NodeConfig::builder(name, addr)
            .cookie("c")
            .master("other@127.0.0.1:2")
            .in_memory()
            .build()
            .expect("config");
        let ctx = NodeContext::new(config);
        ctx.register::<Counter>();
        let member = MemberId::new(ctx.config.node_id().0, ctx.incarnation.0);
        (ctx, member)
    }

    async fn replica_of(sup: &ActorRef<GroupSupMsg>, group: &str) -> Option<ActorRef<ReplicaMsg>> {
        ractor::call_t!(sup, GroupSupMsg::Replica, 1000, group.to_owned()).expect("answers")
    }

    #[tokio::test]
    async fn ticks_go_only_to_replicas_they_are_due_for() {
        let member = MemberId::new(1, 1);
        let mut children = Vec::new();
        let mut counts = Vec::new();
        // Due at ticks 7 and 8, and never (hibernating).
        for due in [7, 8, u64::MAX] {
            let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let args = CountingArgs {
                count: count.clone(),
                counts: |m| matches!(m, ReplicaMsg::Tick(_)),
                group: None,
            };
            let (actor, handle) = Counting::spawn(None, args).await;
            let child = Child {
                actor,
                assignment: Assignment {
                    group: format!("g-{due}"),
                    kind: Counter::KIND.into(),
                    member,
                    generation: 1,
                    config: Config::initial(vec![member]),
                },
                next_tick: Arc::new(NextTick::now()),
            };
            child.next_tick.set(due);
            children.push((child, handle));
            counts.push(count);
        }
        assert_eq!(tick(children.iter().map(|(c, _)| c), 7, 0), 1);
        for (child, handle) in children {
            // Draining handles what the mailbox holds, the tick included.
            child.actor.drain().expect("drain");
            handle.await.expect("stopped");
        }
        let got: Vec<usize> = counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            .collect();
        assert_eq!(got, [1, 0, 0]);
    }

    /// A replica says it wants no ticks once its group hibernates (here a
    /// group of one, which elects itself and falls asleep when idle).
    #[tokio::test]
    async fn a_replica_whose_group_hibernates_asks_for_no_more_ticks() {
        let (ctx, member) = context("sup-ticks");
        let next_tick = Arc::new(NextTick::now());
        let args = ReplicaArgs {
            ctx: ctx.clone(),
            assignment: Assignment {
                group: "sleepy".into(),
                kind: Counter::KIND.into(),
                member,
                generation: 1,
                config: Config::initial(vec![member]),
            },
            next_tick: next_tick.clone(),
        };
        let (replica, handle) = Actor::spawn(None, ReplicaActor, args).await.expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(30);
        // Ticks as the supervisor sends them, until the replica declines.
        while next_tick.due(u64::MAX - 1) {
            assert!(Instant::now() < deadline, "the group never hibernated");
            let count = ctx.count_tick();
            if next_tick.due(count) {
                replica.cast(ReplicaMsg::Tick(count)).expect("cast");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The gauges followed without a tick.
        assert_eq!(ctx.metrics.replicas_hibernating.get(), 1);
        assert_eq!(ctx.metrics.replicas_leading.get(), 1);
        replica.stop(None);
        handle.await.expect("stopped");
    }

    /// A replica moved away and back within its linger is taken back at
    /// once: the same actor runs again, so the group does not miss this
    /// member until the linger ends (the new actor's name would be taken).
    #[tokio::test]
    async fn a_replica_assigned_here_again_while_it_lingers_is_taken_back() {
        let (ctx, member) = context("sup-test");
        let a = Assignment {
            group: "g".into(),
            kind: Counter::KIND.into(),
            member,
            generation: 3,
            config: Config::initial(vec![member]),
        };
        let (sup, handle) = Actor::spawn(None, GroupSupervisor, ctx)
            .await
            .expect("spawn");
        let existing = BTreeMap::from([("g".to_owned(), 3)]);
        let desired = BTreeMap::from([("g".to_owned(), a)]);
        sup.cast(GroupSupMsg::Reconcile(desired.clone(), existing.clone()))
            .expect("cast");
        let first = replica_of(&sup, "g").await.expect("started");
        // Moved away: the group goes on, so the replica lingers.
        sup.cast(GroupSupMsg::Reconcile(BTreeMap::new(), existing.clone()))
            .expect("cast");
        assert!(replica_of(&sup, "g").await.is_none());
        // And back.
        sup.cast(GroupSupMsg::Reconcile(desired, existing))
            .expect("cast");
        let again = replica_of(&sup, "g").await.expect("running again at once");
        assert_eq!(
            again.get_id(),
            first.get_id(),
            "the lingering actor was taken back"
        );
        // Its linger running out no longer stops it.
        sup.cast(GroupSupMsg::LingerOver(first.get_id()))
            .expect("cast");
        let still = replica_of(&sup, "g").await.expect("still running");
        assert_eq!(still.get_id(), first.get_id());
        assert_eq!(still.get_status(), ractor::ActorStatus::Running);
        sup.stop(None);
        handle.await.expect("stopped");
    }
}
