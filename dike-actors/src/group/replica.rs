//! The replica actor: one [`GroupDriver`] of one group on this node, fed by
//! peers, ticks and clients.
//!
//! Invariants: the actor joins the process group of its Dike group, where
//! routers find it, and is named [`wire::replica_name`], by which the
//! node's transport delivers peers' messages to it; messages to peers go
//! through the node's transport ([`crate::cluster::transport`]); after every
//! batch of inputs it drives the replica (persist, then send, then answer),
//! so nothing leaves before its write; an input that fails to decode is
//! logged and dropped, never a panic; a storage failure stops the actor
//! (its supervisor restarts it from storage, within its restart budget).

use crate::cluster::transport::{self, Answer, Parcel};
use crate::cluster::wire::{
    self, ClientReply, ClientRequest, ReplicaMsg, ReplicaStatus, ReplyError,
};
use crate::coalesce::Coalescer;
use crate::group::driver::{DynMachine, ReplicaDriver};
use crate::node::context::NodeContext;
use crate::node::metrics::{Mailbox, NodeMetrics};
use crate::storage::provider::Notifier;
use dike_core::replica::{ReconfigError, TransferError};
use dike_core::{
    codec, Config, DriverError, GroupContext, GroupDriver, MemberId, Message, Output, RequestError,
    RequestId, Response, Start, StateMachine,
};
use prometheus_client::metrics::gauge::Gauge;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The replica actor. See the module documentation.
pub struct ReplicaActor;

/// What a replica actor is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The group.
    pub group: String,
    /// Its server kind.
    pub kind: String,
    /// This node's member of the group.
    pub member: MemberId,
    /// Which creation of the group's name (see `GroupInfo::generation`).
    pub generation: u64,
    /// The group's configuration as the routing table knows it.
    pub config: Config,
}

/// Arguments of [`ReplicaActor`].
pub struct ReplicaArgs {
    /// The node.
    pub ctx: Arc<NodeContext>,
    /// What to host.
    pub assignment: Assignment,
    /// Set by the replica after each message: the node tick it next needs
    /// (see [`NextTick`]).
    pub next_tick: Arc<NextTick>,
}

/// The node tick (a count, [`NodeContext`]'s) at which a replica next needs
/// one, shared with its supervisor, which sends a node tick only to the
/// replicas it is due for: not to one whose group hibernates (any other
/// message wakes it, and it asks again), nor to a follower before its
/// election deadline ([`dike_core::Replica::ticks_until_due`]). Before it
/// handles anything, a replica makes up the ticks it was not sent
/// (`ReplicaState::catch_up`), so its clock is the node's. At 1,000s of
/// groups, ticks to every awake replica were most of a node's messages.
#[derive(Debug)]
pub struct NextTick(AtomicU64);

impl NextTick {
    /// Due at once (a replica that has not said yet).
    pub fn now() -> Self {
        NextTick(AtomicU64::new(0))
    }

    /// Whether node tick `tick` is due (`u64::MAX - 1` is due unless the
    /// replica needs no tick at all).
    pub fn due(&self, tick: u64) -> bool {
        self.0.load(Ordering::Relaxed) <= tick
    }

    pub(crate) fn set(&self, tick: u64) {
        self.0.store(tick, Ordering::Relaxed);
    }
}

/// The actor's state.
pub struct ReplicaState {
    driver: ReplicaDriver,
    group: String,
    /// Which creation of the group's name this replica serves.
    generation: u64,
    kind: String,
    ctx: Arc<NodeContext>,
    /// Clients waiting for an answer, and since when.
    waiting: HashMap<RequestId, (ReplyTo, Instant)>,
    flush: Coalescer,
    boot: u64,
    /// The id of the last read-index query handed to the driver.
    last_query: u64,
    /// The id of the last membership change handed to the driver.
    last_change: u64,
    /// The leader this replica believed in after its last drive.
    leader: Option<MemberId>,
    /// The ballot it had promised after its last drive.
    promised: dike_core::Ballot,
    /// Commands handed to the driver since the last drive.
    batched: u64,
    /// Its part in the node's leading and hibernating gauges.
    gauges: RoleGauges,
    /// See [`ReplicaArgs::next_tick`].
    next_tick: Arc<NextTick>,
    /// Whether it wanted ticks when it last said.
    wanted_ticks: bool,
    /// The node ticks its clock has followed (see [`NextTick`]).
    ticks_seen: u64,
}

/// A replica's part in the node's `replicas_leading` and
/// `replicas_hibernating` gauges: what it added there, taken back when it
/// goes (on drop, however the actor ends).
struct RoleGauges {
    leading: Gauge,
    hibernating: Gauge,
    is_leading: bool,
    is_hibernating: bool,
}

impl RoleGauges {
    fn new(metrics: &NodeMetrics) -> Self {
        RoleGauges {
            leading: metrics.replicas_leading.clone(),
            hibernating: metrics.replicas_hibernating.clone(),
            is_leading: false,
            is_hibernating: false,
        }
    }

    /// The replica leads, and hibernates, or not.
    fn set(&mut self, leading: bool, hibernating: bool) {
        fn flip(gauge: &Gauge, was: &mut bool, is: bool) {
            if *was != is {
                if is {
                    gauge.inc();
                } else {
                    gauge.dec();
                }
                *was = is;
            }
        }
        flip(&self.leading, &mut self.is_leading, leading);
        flip(&self.hibernating, &mut self.is_hibernating, hibernating);
    }
}

impl Drop for RoleGauges {
    fn drop(&mut self) {
        self.set(false, false);
    }
}

impl Actor for ReplicaActor {
    type Msg = ReplicaMsg;
    type State = ReplicaState;
    type Arguments = ReplicaArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ReplicaMsg>,
        args: ReplicaArgs,
    ) -> Result<ReplicaState, ActorProcessingErr> {
        let a = args.assignment;
        let make = args
            .ctx
            .kind(&a.kind)
            .ok_or_else(|| format!("server kind {:?} is not registered", a.kind))?;
        let machine = DynMachine::new(
            make(GroupContext {
                group: a.group.clone(),
                kind: a.kind.clone(),
                member: a.member,
            }),
            args.ctx.metrics.applied(),
            args.ctx.metrics.group_applied(&a.group),
        );
        let storage = args
            .ctx
            .config
            .storage
            .open(&a.group, a.generation, a.member, notifier(&myself))
            .map_err(DriverError::from)?;
        let boot = args.ctx.next_boot();
        let start = Start {
            member: a.member,
            config: a.config,
            machine,
            options: args.ctx.config.replica.clone(),
            boot,
            seed: boot.rotate_left(7) ^ a.member.node.0,
        };
        let driver = GroupDriver::start(start, storage)?;
        ractor::pg::join(wire::group_pg(&a.group), vec![myself.get_cell()]);
        let gauges = RoleGauges::new(&args.ctx.metrics);
        tracing::info!(group = %a.group, member = %a.member, "replica started");
        let ticks_seen = args.ctx.ticks();
        let mut state = ReplicaState {
            driver,
            group: a.group,
            generation: a.generation,
            kind: a.kind,
            ctx: args.ctx,
            waiting: HashMap::new(),
            flush: Coalescer::default(),
            boot,
            last_query: 0,
            last_change: 0,
            leader: None,
            promised: dike_core::Ballot::default(),
            batched: 0,
            gauges,
            next_tick: args.next_tick,
            wanted_ticks: true,
            ticks_seen,
        };
        state.drive()?;
        state.publish_ticks();
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ReplicaMsg>,
        state: &mut ReplicaState,
    ) -> Result<(), ActorProcessingErr> {
        state.ctx.metrics.forget_group(&state.group);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ReplicaMsg>,
        msg: ReplicaMsg,
        state: &mut ReplicaState,
    ) -> Result<(), ActorProcessingErr> {
        let ticked = state.catch_up();
        if ticked && !matches!(msg, ReplicaMsg::Tick(_)) {
            // A due tick may have had something to do.
            state.schedule_flush(&myself);
        }
        match msg {
            ReplicaMsg::Protocol(from, bytes) => match wire::decode_envelopes(&bytes) {
                Ok(envs) => {
                    let snapshots = envs
                        .iter()
                        .filter(|e| matches!(e.msg, Message::InstallSnapshot { .. }))
                        .count();
                    if snapshots > 0 {
                        state
                            .ctx
                            .metrics
                            .snapshots_received
                            .inc_by(snapshots as u64);
                    }
                    state.driver.step(envs);
                    state.schedule_flush(&myself);
                }
                Err(e) => state.ctx.drop_undecodable(
                    from,
                    &format!("a protocol message for {}", state.group),
                    &e,
                ),
            },
            ReplicaMsg::Request(bytes, port) => {
                state.on_request(&bytes, ReplyTo::Port(port));
                state.schedule_flush(&myself);
            }
            ReplicaMsg::Forwarded(node, id, bytes) => {
                state.on_request(&bytes, ReplyTo::Remote { node, id });
                state.schedule_flush(&myself);
            }
            ReplicaMsg::Tick(sent) => {
                let waited = state.ctx.clock().saturating_sub(Duration::from_nanos(sent));
                state.ctx.metrics.mailbox_wait(Mailbox::Replica, waited);
                // The ticks were made up above (none if the group fell
                // asleep while this one was on its way).
                if ticked {
                    state.drive()?;
                }
                state.observe_role();
            }
            ReplicaMsg::Flush => {
                if state.flush.on_flush()
                    || state.flush.recast(myself.cast(ReplicaMsg::Flush).is_ok())
                {
                    state.drive()?;
                }
            }
            ReplicaMsg::Persisted(token) => state.on_persisted(token, Ok(()))?,
            ReplicaMsg::PersistFailed(token, why) => {
                state.on_persisted(token, Err(dike_core::StorageError::Failed(why)))?
            }
            ReplicaMsg::NodeDown(node, report) => {
                if state.driver.on_node_down(dike_core::NodeId(node), report) {
                    tracing::info!(group = %state.group, node, "leader's node down: campaigning");
                    state.drive()?;
                }
            }
            ReplicaMsg::Draining(nodes) => {
                match codec::decode::<Vec<u64>>("draining nodes", &nodes) {
                    Ok(nodes) => {
                        let draining = nodes.into_iter().map(dike_core::NodeId);
                        state.driver.set_draining_nodes(draining);
                        state.drive()?;
                    }
                    Err(e) => {
                        tracing::warn!(group = %state.group, "ignoring a draining message: {e}")
                    }
                }
            }
            ReplicaMsg::HandOver(live, port) => {
                let live: Vec<u64> = codec::decode("live nodes", &live).unwrap_or_default();
                state.driver.set_leaving(true);
                let target = state
                    .driver
                    .replica()
                    .hand_over_target(|n| live.contains(&n.0));
                let started = match target {
                    Some(to) => match state.driver.transfer_leadership(to) {
                        Ok(()) => Some(to),
                        Err(e) => {
                            tracing::info!(group = %state.group, %to, "no hand-over: {e}");
                            None
                        }
                    },
                    None => None,
                };
                if started.is_some() {
                    state.drive()?;
                }
                match codec::encode("hand-over target", &started) {
                    Ok(bytes) => {
                        let _ = port.send(bytes);
                    }
                    Err(e) => tracing::warn!("cannot encode a hand-over answer: {e}"),
                }
            }
            ReplicaMsg::Status(with_digest, port) => {
                match codec::encode("status", &state.status(with_digest)) {
                    Ok(bytes) => {
                        let _ = port.send(bytes);
                    }
                    Err(e) => tracing::warn!("cannot encode a status: {e}"),
                }
            }
        }
        state.publish_ticks();
        Ok(())
    }
}

impl ReplicaState {
    /// Drives at the end of the current mailbox batch (see
    /// [`crate::coalesce`]): everything already queued is handled first, so
    /// commands that arrive together share a slot.
    fn schedule_flush(&mut self, myself: &ActorRef<ReplicaMsg>) {
        if self.flush.on_input() {
            self.flush.cast(myself.cast(ReplicaMsg::Flush).is_ok());
        }
    }

    /// What this replica says about itself; with its state's digest if
    /// `with_digest` (which exports the whole state).
    fn status(&self, with_digest: bool) -> ReplicaStatus {
        let r = self.driver.replica();
        ReplicaStatus {
            member: r.id(),
            leader: r.leader(),
            applied: r.applied(),
            starts: self.boot,
            state_digest: with_digest
                .then(|| r.machine().export().ok().map(|b| wire::digest(&b)))
                .flatten(),
            hibernating: Some(!self.driver.wants_ticks()),
        }
    }

    fn on_request(&mut self, bytes: &[u8], port: ReplyTo) {
        let span = tracing::debug_span!(
            "replica_request",
            group = %self.group,
            member = %self.driver.replica().id(),
            request = tracing::field::Empty
        )
        .entered();
        match codec::decode::<ClientRequest>("client request", bytes) {
            Ok(ClientRequest::Command(cmd)) => {
                if !span.is_disabled() {
                    let id = crate::routing::router::request_id(cmd.client, cmd.seq);
                    span.record("request", id.as_str());
                    let leads = self.driver.replica().is_leader();
                    tracing::debug!(leads, "command handed to the replica");
                }
                self.batched += 1;
                self.waiting.insert(
                    RequestId::Command(cmd.client, cmd.seq),
                    (port, Instant::now()),
                );
                self.driver.propose(cmd);
            }
            Ok(ClientRequest::Query(payload)) => {
                self.last_query += 1;
                let id = self.last_query;
                self.waiting
                    .insert(RequestId::Query(id), (port, Instant::now()));
                self.driver.query(id, payload);
            }
            Ok(ClientRequest::Change(change)) => {
                match self.driver.propose_change(self.last_change + 1, change) {
                    Ok(()) => {
                        self.last_change += 1;
                        self.waiting.insert(
                            RequestId::Reconfig(self.last_change),
                            (port, Instant::now()),
                        );
                    }
                    Err(ReconfigError::NotLeader { leader }) => {
                        self.reply(
                            port,
                            Err(ReplyError::Request(RequestError::NotLeader { leader })),
                        );
                    }
                    Err(e) => self.reply(port, Err(ReplyError::Reconfig(e.to_string()))),
                }
            }
            Ok(ClientRequest::Status(with_digest)) => {
                let answer = codec::encode("status", &self.status(with_digest))
                    .map_err(|e| ReplyError::Request(RequestError::Application(e.to_string())));
                self.reply(port, answer);
            }
            Ok(ClientRequest::Transfer(to)) => {
                let r = self.driver.replica();
                let answer = if r.is_leader() && r.id() == to {
                    Ok(())
                } else {
                    self.driver.transfer_leadership(to)
                };
                let answer = match answer {
                    Ok(()) => codec::encode("transfer target", &to)
                        .map_err(|e| ReplyError::Request(RequestError::Application(e.to_string()))),
                    Err(TransferError::NotLeader { leader }) => {
                        Err(ReplyError::Request(RequestError::NotLeader { leader }))
                    }
                    Err(e) => Err(ReplyError::Transfer(e.to_string())),
                };
                self.reply(port, answer);
            }
            Ok(ClientRequest::Membership) => {
                if !self.driver.replica().is_leader() {
                    // The rebalancer needs a leader, as a command's sender
                    // does: an idle group whose members restarted elects
                    // only when one is needed.
                    self.driver.leader_wanted();
                }
                let r = self.driver.replica();
                let answer = if r.is_leader() {
                    codec::encode("config", r.config())
                        .map_err(|e| ReplyError::Request(RequestError::Application(e.to_string())))
                } else {
                    Err(ReplyError::Request(RequestError::NotLeader {
                        leader: r.leader(),
                    }))
                };
                self.reply(port, answer);
            }
            Err(e) => {
                tracing::warn!("malformed client request: {e}");
                self.reply(port, Err(ReplyError::Malformed(e.to_string())));
            }
        }
    }

    /// Persists, sends, answers. A storage error fails the actor.
    fn drive(&mut self) -> Result<(), ActorProcessingErr> {
        let batched = std::mem::take(&mut self.batched);
        if batched > 0 && self.driver.replica().is_leader() {
            self.ctx.metrics.batch(batched);
        }
        let out = self.driver.drive()?;
        self.release(out);
        Ok(())
    }

    /// Storage finished the write handed over with `token`. Completions
    /// come in the order the writes were handed over; the driver refuses
    /// any other (logged, nothing released). A failed write fails the
    /// actor.
    fn on_persisted(
        &mut self,
        token: u64,
        result: Result<(), dike_core::StorageError>,
    ) -> Result<(), ActorProcessingErr> {
        match self.driver.persisted(token, result) {
            Ok(out) => {
                self.release(out);
                Ok(())
            }
            Err(e @ DriverError::UnexpectedCompletion { .. }) => {
                tracing::warn!(group = %self.group, "ignoring a write completion: {e}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn release(&mut self, out: Output) {
        self.count_leader_change();
        self.observe_role();
        self.ctx.effects().run(&self.group, out.effects);
        // One encoder for the drive: an Accept to every follower is
        // encoded once.
        let mut encoder = wire::EnvelopeEncoder::default();
        for (to, envs) in out.to_peers {
            self.send(to, &envs, &mut encoder);
        }
        for Response { to, result } in out.responses {
            if let Some((port, since)) = self.waiting.remove(&to) {
                let debug = tracing::enabled!(tracing::Level::DEBUG);
                if let (RequestId::Command(client, seq), true) = (to, debug) {
                    let request = crate::routing::router::request_id(client, seq);
                    let ok = result.is_ok();
                    tracing::debug!(group = %self.group, %request, ok, "answering");
                }
                if !matches!(to, RequestId::Reconfig(_)) {
                    let metrics = &self.ctx.metrics;
                    metrics.record_served(&self.kind, &result, since.elapsed());
                    metrics.record_served_in_group(&self.group, &result);
                }
                self.reply(port, result.map_err(ReplyError::Request));
            }
        }
    }

    /// Updates the node's leading and hibernating gauges, and counts an
    /// election this replica started (a promise of a ballot of its own).
    /// Publishes the node tick the replica next needs
    /// ([`ReplicaArgs::next_tick`]). A change of whether it wants ticks at
    /// all also updates the role
    /// gauges, which ticks keep current otherwise and a hibernating
    /// replica no longer gets. A replica that stops wanting ticks (its
    /// group went to sleep) frees its buffers' spare space.
    fn publish_ticks(&mut self) {
        let wants = self.driver.wants_ticks();
        let due = self.driver.ticks_until_due();
        self.next_tick.set(self.ticks_seen.saturating_add(due));
        if self.wanted_ticks != wants {
            self.wanted_ticks = wants;
            self.observe_role();
            if !wants {
                self.driver.shrink_to_fit();
                self.waiting.shrink_to_fit();
            }
        }
    }

    /// Makes up the node ticks since the last message (see [`NextTick`]):
    /// as many `tick`s, while the replica wants them. Returns whether it
    /// ticked.
    fn catch_up(&mut self) -> bool {
        let now = self.ctx.ticks();
        let mut ticked = false;
        while self.ticks_seen < now && self.driver.wants_ticks() {
            self.driver.tick();
            self.ticks_seen += 1;
            ticked = true;
        }
        self.ticks_seen = now;
        ticked
    }

    fn observe_role(&mut self) {
        let r = self.driver.replica();
        let promised = r.promised();
        if promised != self.promised {
            self.promised = promised;
            if promised.leader == r.id() {
                self.ctx.metrics.elections_started.inc();
            }
        }
        let leading = r.is_leader();
        let hibernating = !self.driver.wants_ticks();
        self.gauges.set(leading, hibernating);
    }

    /// Counts in the node's metrics a change of the leader this replica
    /// believes in, and whether it is this replica.
    fn count_leader_change(&mut self) {
        let r = self.driver.replica();
        let leader = r.leader();
        if leader == self.leader {
            return;
        }
        self.leader = leader;
        let metrics = &self.ctx.metrics;
        if leader.is_some() {
            metrics.leader_changes.inc();
        }
        if leader == Some(r.id()) {
            metrics.leaderships_won.inc();
        }
    }

    /// Answers a client, wherever it waits.
    fn reply(&self, to: ReplyTo, answer: ClientReply) {
        let bytes = match codec::encode_compact("client reply", &answer) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cannot encode a client reply: {e}");
                return;
            }
        };
        match to {
            // The caller may have given up; that is not an error here.
            ReplyTo::Port(port) => {
                let _ = port.send(bytes);
            }
            ReplyTo::Remote { node, id } => {
                if let Some(t) = self.ctx.transport() {
                    transport::queue(self.ctx.outbox(), &t, node, |b| {
                        b.answers.push(Answer { id, reply: bytes })
                    });
                }
            }
        }
    }

    /// Hands `envs` for `to` to the node's transport (which drops them if
    /// `to` is unreachable, as the network may), encoded by `encoder`.
    fn send(
        &mut self,
        to: MemberId,
        envs: &[dike_core::Envelope],
        encoder: &mut wire::EnvelopeEncoder,
    ) {
        for e in envs {
            match e.msg {
                Message::InstallSnapshot { .. } => self.ctx.metrics.snapshots_sent.inc(),
                Message::CatchUp { .. } => self.ctx.metrics.catch_ups_sent.inc(),
                _ => 0,
            };
        }
        let bytes = match encoder.encode(envs) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(group = %self.group, "cannot encode protocol messages: {e}");
                return;
            }
        };
        let parcel = Parcel {
            group: self.group.clone(),
            to,
            envelopes: bytes,
            generation: self.generation,
        };
        if to.node == self.ctx.config.node_id() {
            transport::deliver_parcel(self.ctx.config.node_id().0, parcel);
            return;
        }
        let Some(t) = self.ctx.transport() else {
            tracing::trace!(group = %self.group, %to, "no transport (node stopping)");
            return;
        };
        transport::queue(self.ctx.outbox(), &t, to.node.0, |b| b.parcels.push(parcel));
    }
}

/// Tells the replica, by a message carrying the write's token, that a
/// write is durable or failed.
fn notifier(myself: &ActorRef<ReplicaMsg>) -> Notifier {
    let me = myself.clone();
    Arc::new(move |token, result| {
        let msg = match result {
            Ok(()) => ReplicaMsg::Persisted(token),
            Err(e) => ReplicaMsg::PersistFailed(token, e.to_string()),
        };
        // The replica may have stopped meanwhile: nothing waits then.
        let _ = me.cast(msg);
    })
}

/// Where the answer to a client request goes.
enum ReplyTo {
    /// A caller on this node, or one that called the replica directly.
    Port(RpcReplyPort<Vec<u8>>),
    /// A request node `node`'s transport forwarded under `id`.
    Remote { node: u64, id: u64 },
}
