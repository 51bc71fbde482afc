//! The node: the root `DikeNode` actor and the handles users hold.
//!
//! `DikeNode` owns the ractor_cluster `NodeServer` (cookie authentication,
//! mutual TLS if configured ([`tls`]), isolated mode: the dispatcher
//! connects to every node it knows, through [`dial`]), the node
//! ticker (one timer per node, fanned out by the group supervisor to every
//! replica whose group is awake), the [`Dispatcher`] and the
//! [`GroupSupervisor`] (which also hosts the master replica on master nodes).
//!
//! Invariants: the dispatcher and the group supervisor are restarted after a
//! crash within the node's [`RestartBudget`]; past it, or if the
//! `NodeServer` dies, the node stops its children and fails, so the user's
//! supervisor (if any) sees the failure. The context always names the
//! currently running dispatcher and group supervisor.

pub mod admin;
mod change_masters;
pub mod config;
pub mod context;
pub mod data_dir;
pub mod dial;
pub mod discover;
mod drain;
mod handover;
pub mod http;
pub mod identity;
pub mod masters;
pub mod metrics;
pub mod page;
mod remove;
pub mod status;
pub mod tls;

pub use drain::DrainReport;
pub use handover::HandOverReport;
pub use remove::NodeRemoval;

use crate::cluster::transport::{spawn_transport, TransportMsg};
use crate::cluster::wire::{ReplicaMsg, ReplicaStatus};
use crate::error::{DikeError, StartError};
use crate::group::restart::RestartBudget;
use crate::group::supervisor::{GroupSupMsg, GroupSupervisor};
use crate::master::rebalancer::{Rebalancer, RebalancerMsg};
use crate::master::{MasterReply, MasterRequest, MasterServer};
pub use crate::node::admin::JoinOutcome;
use crate::node::admin::{spawn_admin, AdminNode, JoinNodeError, NodeFuture};
use crate::node::config::NodeConfig;
use crate::node::context::{LastRefresh, NodeChild, NodeContext};
use crate::routing::dispatcher::{Dispatcher, DispatcherMsg, InternalMsg};
use crate::routing::request::GroupRequest;
use dike_core::routing::{GroupInfo, RoutingTable};
use dike_core::{codec, NodeId, PaxosServer};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Messages to the node actor (local only).
pub enum DikeNodeMsg {
    /// One node tick.
    Tick,
    /// The cluster session to the named node dropped.
    PeerDown(String),
    /// A cluster session to the named node is ready.
    PeerUp(String),
}

impl ractor::Message for DikeNodeMsg {}

/// The root actor of a node. Start it with [`DikeNode::start`] or, under
/// your own supervisor, with [`DikeNode::start_linked`].
pub struct DikeNode;

/// The node actor's state.
pub struct DikeNodeState {
    ctx: Arc<NodeContext>,
    budget: RestartBudget,
    ticker: ractor::concurrency::JoinHandle<()>,
}

struct Events(ActorRef<DikeNodeMsg>);

fn peer_name(ses: &NodeServerSessionInformation) -> Option<String> {
    let name = &ses.peer_name.as_ref()?.name;
    Some(name.split('@').next().unwrap_or(name).to_owned())
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, _ses: NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, _ses: NodeServerSessionInformation) {}
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        if let Some(name) = peer_name(&ses) {
            let _ = self.0.cast(DikeNodeMsg::PeerDown(name));
        }
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        if let Some(name) = peer_name(&ses) {
            let _ = self.0.cast(DikeNodeMsg::PeerUp(name));
        }
    }
}

async fn spawn_dispatcher(
    ctx: &Arc<NodeContext>,
    sup: ActorCell,
) -> Result<ActorRef<DispatcherMsg>, ActorProcessingErr> {
    let (d, _) = Actor::spawn_linked(None, Dispatcher, ctx.clone(), sup).await?;
    ctx.set_actor(NodeChild::Dispatcher, Some(d.get_cell()));
    Ok(d)
}

/// The rebalancer runs on every node: it acts only where the node's master
/// replica leads, and any node that joined may become a master (`dike
/// master add`). Elsewhere it costs one local question per step.
async fn spawn_rebalancer(
    ctx: &Arc<NodeContext>,
    sup: ActorCell,
) -> Result<ActorRef<RebalancerMsg>, ActorProcessingErr> {
    let (r, _) = Actor::spawn_linked(None, Rebalancer, ctx.clone(), sup).await?;
    ctx.set_actor(NodeChild::Rebalancer, Some(r.get_cell()));
    Ok(r)
}

async fn spawn_groups(
    ctx: &Arc<NodeContext>,
    sup: ActorCell,
) -> Result<ActorRef<GroupSupMsg>, ActorProcessingErr> {
    let (g, _) = Actor::spawn_linked(None, GroupSupervisor, ctx.clone(), sup).await?;
    ctx.set_actor(NodeChild::GroupSupervisor, Some(g.get_cell()));
    Ok(g)
}

impl Actor for DikeNode {
    type Msg = DikeNodeMsg;
    type State = DikeNodeState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<DikeNodeMsg>,
        ctx: Arc<NodeContext>,
    ) -> Result<DikeNodeState, ActorProcessingErr> {
        let c = &ctx.config;
        let server = NodeServer::new(
            c.listen.port(),
            c.cookie.clone(),
            c.name.clone(),
            c.advertised_host().to_owned(),
            c.tls.as_ref().map(|t| t.incoming()),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(c.listen.ip())
        .with_max_inbound_frame_size(c.max_frame_bytes);
        let (node_server, _) = Actor::spawn_linked(None, server, (), myself.get_cell()).await?;
        node_server.cast(NodeServerMessage::SubscribeToEvents {
            id: format!("dike/{}", c.name),
            subscription: Box::new(Events(myself.clone())),
        })?;
        ctx.set_actor(NodeChild::NodeServer, Some(node_server.get_cell()));
        spawn_transport(&ctx, myself.get_cell()).await?;
        spawn_groups(&ctx, myself.get_cell()).await?;
        spawn_dispatcher(&ctx, myself.get_cell()).await?;
        spawn_rebalancer(&ctx, myself.get_cell()).await?;
        spawn_admin(
            &ctx,
            Arc::new(NodeHandle::of(&ctx, &myself)),
            myself.get_cell(),
        )
        .await?;
        let ticker = myself.send_interval(c.tick, || DikeNodeMsg::Tick);
        ctx.set_running(true);
        tracing::info!(name = %c.name, listen = %c.listen, advertise = %c.advertise, http = ?c.http, master = ctx.is_master(), tls = c.tls.is_some(), "node started");
        Ok(DikeNodeState {
            budget: RestartBudget::new(c.restarts),
            ctx,
            ticker,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<DikeNodeMsg>,
        state: &mut DikeNodeState,
    ) -> Result<(), ActorProcessingErr> {
        state.shutdown(&myself).await;
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<DikeNodeMsg>,
        msg: DikeNodeMsg,
        state: &mut DikeNodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DikeNodeMsg::Tick => {
                if let Some(g) = state.ctx.group_supervisor() {
                    let _ = g.cast(GroupSupMsg::Tick(state.ctx.clock()));
                }
            }
            DikeNodeMsg::PeerDown(name) => {
                tracing::info!(peer = %name, "cluster session dropped");
                count_peers(&state.ctx);
                if let Some(t) = state.ctx.transport() {
                    let node = crate::node::config::node_id_of(&name);
                    let _ = t.cast(TransportMsg::PeerDown(node.0));
                }
                if let Some(d) = state.ctx.dispatcher() {
                    let _ = d.cast(InternalMsg::PeerDown(name).into());
                }
            }
            DikeNodeMsg::PeerUp(name) => {
                tracing::debug!(peer = %name, "cluster session ready");
                count_peers(&state.ctx);
                if let Some(d) = state.ctx.dispatcher() {
                    let _ = d.cast(InternalMsg::Refresh.into());
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<DikeNodeMsg>,
        evt: SupervisionEvent,
        state: &mut DikeNodeState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorTerminated(cell, _, r) => (cell, r.unwrap_or_default()),
            SupervisionEvent::ActorFailed(cell, e) => (cell, e.to_string()),
            _ => return Ok(()),
        };
        let Some(child) = state.ctx.child(cell.get_id()) else {
            return Ok(());
        };
        tracing::warn!(which = %child, %why, "node child stopped");
        if child == NodeChild::NodeServer || !state.budget.allow(Instant::now()) {
            state.shutdown(&myself).await;
            return Err(format!("{child} stopped ({why}); the node gives up").into());
        }
        let ctx = state.ctx.clone();
        match child {
            NodeChild::Dispatcher => {
                spawn_dispatcher(&ctx, myself.get_cell()).await?;
            }
            NodeChild::Transport => {
                spawn_transport(&ctx, myself.get_cell()).await?;
            }
            NodeChild::Admin => {
                spawn_admin(
                    &ctx,
                    Arc::new(NodeHandle::of(&ctx, &myself)),
                    myself.get_cell(),
                )
                .await?;
            }
            NodeChild::Rebalancer => {
                spawn_rebalancer(&ctx, myself.get_cell()).await?;
            }
            NodeChild::GroupSupervisor => {
                spawn_groups(&ctx, myself.get_cell()).await?;
            }
            // Never restarted: the node gave up above.
            NodeChild::NodeServer => {}
        }
        Ok(())
    }
}

/// Sets the peers-up gauge to the number of distinct nodes this node has
/// a cluster session with (ractor_cluster may hold two sessions to one
/// peer for a moment), asked of the node server from a task.
fn count_peers(ctx: &Arc<NodeContext>) {
    let Some(server) = ctx.node_server() else {
        return;
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        match ractor::call_t!(server, NodeServerMessage::GetSessions, 1000) {
            Ok(sessions) => {
                let names: std::collections::BTreeSet<_> = sessions
                    .values()
                    .filter_map(|s| s.peer_name.as_ref().map(|p| p.name.clone()))
                    .collect();
                ctx.metrics.peers_up.set(names.len() as i64);
            }
            Err(e) => tracing::debug!("cannot count cluster sessions: {e}"),
        }
    });
}

impl DikeNodeState {
    async fn shutdown(&mut self, myself: &ActorRef<DikeNodeMsg>) {
        self.ctx.set_running(false);
        // Wakes whoever waits in `NodeHandle::ready`, to see the stop.
        self.ctx.refreshed.send_modify(|_| {});
        let http = self.ctx.take_http();
        if let Some(http) = http {
            http.stop();
        }
        self.ticker.abort();
        for child in [
            NodeChild::Dispatcher,
            NodeChild::GroupSupervisor,
            NodeChild::Transport,
        ] {
            self.ctx.set_actor(child, None);
        }
        myself
            .stop_children_and_wait(Some("node stopping".into()), Some(Duration::from_secs(5)))
            .await;
    }
}

impl NodeContext {
    /// A context for `config`, with its kinds and the master kind
    /// registered (every node may host a master replica).
    pub fn new(config: NodeConfig) -> Arc<Self> {
        let mut kinds = config.kinds.clone();
        kinds.insert::<MasterServer>();
        Self::with_kinds(config, kinds)
    }

    /// ractor_cluster's node server, which the node actor started, if
    /// recorded.
    pub(crate) fn node_server(&self) -> Option<ActorRef<NodeServerMessage>> {
        self.actor(NodeChild::NodeServer)
    }
}

impl DikeNode {
    /// Starts a node on its own (not under a supervisor).
    ///
    /// ```no_run
    /// use dike_actors::{counter::{Counter, CounterRequest}, DikeNode, NodeConfig};
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = NodeConfig::builder("solo", "127.0.0.1:4100".parse()?)
    ///     .cookie("secret")
    ///     .kind::<Counter>()
    ///     .build()?;
    /// let node = DikeNode::start(config).await?;
    /// node.ready(std::time::Duration::from_secs(15)).await?;
    /// node.add_group::<Counter>("c1").await?;
    /// let v = node.group::<Counter>("c1").call(CounterRequest::Add(5)).await?;
    /// assert_eq!(v, 5);
    /// # Ok(()) }
    /// ```
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, StartError> {
        Self::spawn_with(config, None).await
    }

    /// Starts a node linked to `supervisor`, which sees the node fail if it
    /// gives up.
    pub async fn start_linked(
        config: NodeConfig,
        supervisor: ActorCell,
    ) -> Result<NodeHandle, StartError> {
        Self::spawn_with(config, Some(supervisor)).await
    }

    async fn spawn_with(
        config: NodeConfig,
        supervisor: Option<ActorCell>,
    ) -> Result<NodeHandle, StartError> {
        let listen = config.listen;
        check_listen(listen)?;
        let http = config.http.map(http::bind).transpose()?;
        let ctx = NodeContext::new(config);
        let spawned = match supervisor {
            Some(s) => Actor::spawn_linked(None, DikeNode, ctx.clone(), s).await,
            None => Actor::spawn(None, DikeNode, ctx.clone()).await,
        };
        let (actor, _) = spawned.map_err(|e| spawn_failure(listen, &e.to_string()))?;
        let node = NodeHandle { ctx, actor };
        if let Some(server) = http {
            let runtime = tokio::runtime::Handle::current();
            match http::HttpServer::start(server, node.ctx.clone(), runtime) {
                Ok(serving) => node.ctx.keep_http(serving),
                Err(e) => {
                    node.stop().await;
                    return Err(StartError::Spawn {
                        what: "the HTTP thread",
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(node)
    }
}

/// Fails with the address and the cause if the cluster listener could not
/// bind `addr` (ractor_cluster would fail deep inside its actor, with a
/// message that names neither). The probe binds as the listener does (with
/// `SO_REUSEADDR`, so connections of a previous life in TIME_WAIT do not
/// count), and is closed at once; the listener binds right after.
fn check_listen(addr: std::net::SocketAddr) -> Result<(), StartError> {
    let probe = || -> std::io::Result<()> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1).map(drop)
    };
    probe().map_err(|e| StartError::Listen {
        addr,
        reason: bind_failure(&e),
    })
}

/// Why the node actor did not start. The probe of [`check_listen`] passed,
/// but another socket can still take the address before ractor_cluster's
/// listener binds it; that failure reaches us only as the text of nested
/// startup panics, so the OS's wording of `EADDRINUSE` (glibc's and musl's
/// `strerror`) is what marks it as [`StartError::Listen`], on which a
/// caller may retry with another address.
fn spawn_failure(listen: std::net::SocketAddr, reason: &str) -> StartError {
    if reason.contains("Address already in use") || reason.contains("Address in use") {
        let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        return StartError::Listen {
            addr: listen,
            reason: bind_failure(&in_use),
        };
    }
    StartError::Spawn {
        what: "DikeNode",
        reason: reason.to_owned(),
    }
}

/// Why binding a listener failed, in the operator's words.
pub(crate) fn bind_failure(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "the address is already in use (another node, or another program, listens there)"
                .to_owned()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "no network interface of this machine has that address".to_owned()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_owned()
        }
        _ => e.to_string(),
    }
}

impl AdminNode for NodeHandle {
    fn context(&self) -> &Arc<NodeContext> {
        &self.ctx
    }

    fn join(&self) -> NodeFuture<'_, Result<JoinOutcome, String>> {
        Box::pin(async move { NodeHandle::join(self).await.map_err(|e| e.to_string()) })
    }

    fn cached_table(&self) -> NodeFuture<'_, Option<RoutingTable>> {
        Box::pin(async move {
            NodeHandle::cached_table(self)
                .await
                .ok()
                .map(|t| (*t).clone())
        })
    }
}

/// A handle on a running node. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    ctx: Arc<NodeContext>,
    actor: ActorRef<DikeNodeMsg>,
}

impl NodeHandle {
    fn of(ctx: &Arc<NodeContext>, actor: &ActorRef<DikeNodeMsg>) -> NodeHandle {
        NodeHandle {
            ctx: ctx.clone(),
            actor: actor.clone(),
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.ctx.config.name
    }

    /// The node's id.
    pub fn node_id(&self) -> NodeId {
        self.ctx.config.node_id()
    }

    /// The node's root actor.
    pub fn actor(&self) -> &ActorRef<DikeNodeMsg> {
        &self.actor
    }

    /// The dispatcher now running (it changes if it is restarted).
    pub fn dispatcher(&self) -> Option<ActorRef<DispatcherMsg>> {
        self.ctx.dispatcher()
    }

    /// Registers server kind `S` on a running node, so it can host groups
    /// of it. Prefer [`crate::NodeConfigBuilder::kind`]: until this call, a
    /// replica of such a group that the node is asked to host does not
    /// start (the node retries at its next routing-table refresh).
    pub fn register<S: PaxosServer>(&self) {
        self.ctx.register::<S>();
    }

    /// Whether `kind` is registered on this node.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.ctx.kind(kind).is_some()
    }

    /// Waits until this node learns that the operator removed it from the
    /// cluster (`dike node remove`, or a restart on the data dir of a
    /// removed node that had not learned it yet); the master's reason. By
    /// then the data dir, if any, is marked, so a restart on it is refused
    /// with [`StartError::Removed`]. A removed node hosts no replica and
    /// does not try to join again; a program usually stops it (the `dike
    /// node` program exits with its start-failure code).
    pub async fn removed(&self) -> String {
        self.ctx.wait_removed().await
    }

    /// Waits until the node is ready to serve, at most `within`: its
    /// dispatcher has read the routing table from a master quorum and, if
    /// the node joins the cluster (the default), the table lists it. Then
    /// [`NodeHandle::add_group`] and requests can be sent without a retry
    /// loop. Fails with [`DikeError::NotReady`] saying what it still waits
    /// for (the masters' last error, or its join), or with
    /// [`DikeError::NodeStopped`].
    pub async fn ready(&self, within: Duration) -> Result<(), DikeError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut refreshed = self.ctx.refreshed.subscribe();
        loop {
            if !self.ctx.running() {
                return Err(DikeError::NodeStopped("the node stopped".into()));
            }
            let reason = match &*refreshed.borrow_and_update() {
                LastRefresh::Read { listed: true } => return Ok(()),
                LastRefresh::Read { listed: false } if !self.ctx.joining() => return Ok(()),
                LastRefresh::Read { listed: false } => {
                    "the routing table does not list it yet (it is joining)".to_owned()
                }
                LastRefresh::Failed(e) => format!("no routing table from the masters: {e}"),
                LastRefresh::NotYet => {
                    "no routing table yet: the first read from the masters has not finished"
                        .to_owned()
                }
            };
            let not_ready = || DikeError::NotReady {
                node: self.ctx.config.name.clone(),
                after: within,
                reason,
            };
            match tokio::time::timeout_at(deadline, refreshed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(DikeError::NodeStopped("the node stopped".into())),
                Err(_) => return Err(not_ready()),
            }
        }
    }

    /// Hands the dispatcher the message `msg` makes and waits for its
    /// answer; `request` says in words what was asked, for the error if
    /// the dispatcher does not answer in time.
    async fn ask<T: Send + 'static>(
        &self,
        request: impl FnOnce() -> String,
        msg: impl FnOnce(RpcReplyPort<Result<T, DikeError>>) -> DispatcherMsg,
    ) -> Result<T, DikeError> {
        let d = self
            .dispatcher()
            .ok_or_else(|| DikeError::NodeStopped("no dispatcher".into()))?;
        // The dispatcher gives up on a request at the request timeout; the
        // second more is for its answer to arrive.
        let wait = self.ctx.config.request_timeout + Duration::from_secs(1);
        match d.call(msg, Some(wait)).await {
            Ok(CallResult::Success(r)) => r,
            Ok(CallResult::Timeout) => Err(DikeError::DispatcherTimeout {
                request: request(),
                after: wait,
            }),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(DikeError::NodeStopped("dispatcher stopped".into()))
            }
        }
    }

    async fn master(&self, req: MasterRequest) -> Result<MasterReply, DikeError> {
        let kind = req.kind();
        let request = || format!("the master request {kind}");
        match self
            .ask(request, |port| DispatcherMsg::Master(req, port))
            .await?
        {
            MasterReply::Refused(r) => Err(DikeError::Rejected(r)),
            MasterReply::WasRemoved(r) => {
                self.ctx.set_removed(&r);
                Err(DikeError::Rejected(r))
            }
            other => Ok(other),
        }
    }

    /// Sends `req` to the master and takes its answer with `answer`, which
    /// hands back a reply that does not answer `req`; that one is an
    /// [`DikeError::UnexpectedReply`] naming both.
    async fn master_as<T>(
        &self,
        req: MasterRequest,
        answer: impl FnOnce(MasterReply) -> Result<T, MasterReply>,
    ) -> Result<T, DikeError> {
        let kind = req.kind();
        answer(self.master(req).await?).map_err(|other| other.unexpected(kind))
    }

    /// Registers this node with the master. The dispatcher also does this by
    /// itself when the configuration says `join`.
    pub async fn join(&self) -> Result<JoinOutcome, DikeError> {
        // From now on the dispatcher keeps the node joined and hosting.
        self.ctx.set_joining();
        let req = MasterRequest::Join {
            name: self.ctx.config.name.clone(),
            address: self.ctx.config.address(),
            incarnation: self.ctx.incarnation.0,
        };
        let outcome = self
            .master_as(req, |reply| match reply {
                MasterReply::Joined(n) => Ok(JoinOutcome::Joined(n)),
                MasterReply::AlreadyKnown(n) => Ok(JoinOutcome::AlreadyKnown(n)),
                other => Err(other),
            })
            .await?;
        self.ctx.record_joined();
        Ok(outcome)
    }

    /// Asks node `name`, running at `address` (`HOST:PORT`) and not joined
    /// yet, to join the cluster: only a node knows its own incarnation, so
    /// this asks the node's admin actor (see [`crate::node::admin`]) to call its
    /// own [`NodeHandle::join`]. Waits up to the request timeout for the
    /// node to show up.
    pub async fn join_node(&self, name: &str, address: &str) -> Result<JoinOutcome, JoinNodeError> {
        let within = self.ctx.config.request_timeout;
        crate::node::admin::join_remote(&self.ctx, name, address, within).await
    }

    /// Sends an encoded command to `group` without waiting for its reply:
    /// the untyped form of [`GroupHandle::cast`].
    pub fn cast_encoded(&self, group: &str, payload: Vec<u8>) -> Result<(), DikeError> {
        let d = self
            .dispatcher()
            .ok_or_else(|| DikeError::NodeStopped("no dispatcher".into()))?;
        let group = group.to_owned();
        ractor::cast!(d, DispatcherMsg::Cast { group, payload })
            .map_err(|_| DikeError::NodeStopped("dispatcher stopped".into()))
    }

    /// Casts the dispatcher is still sending. A process that exits right
    /// after casting cuts those off: see [`NodeHandle::wait_for_casts`].
    pub fn casts_in_flight(&self) -> usize {
        self.ctx.casts_in_flight()
    }

    /// Waits until the dispatcher is done with every cast handed to it so
    /// far (answered or given up on), or until `within` passes; returns
    /// whether it is done.
    pub async fn wait_for_casts(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        // The dispatcher takes its messages in order: once it answered this
        // call, every earlier cast is counted.
        if let Some(d) = self.dispatcher() {
            let wait = within.as_millis().try_into().unwrap_or(u64::MAX);
            let _ = ractor::call_t!(d, DispatcherMsg::RoutingTable, wait);
        }
        while self.ctx.casts_in_flight() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Creates group `name` of server kind `S` with the configured group
    /// size. An existing group of that name is returned unchanged.
    pub async fn add_group<S: PaxosServer>(&self, name: &str) -> Result<GroupInfo, DikeError> {
        self.add_group_of_kind(name, S::KIND, None).await
    }

    /// Creates group `name` of server kind `S` with `size` replicas.
    pub async fn add_group_sized<S: PaxosServer>(
        &self,
        name: &str,
        size: usize,
    ) -> Result<GroupInfo, DikeError> {
        self.add_group_of_kind(name, S::KIND, Some(size)).await
    }

    /// Creates group `name` of the kind named `kind` (its
    /// [`PaxosServer::KIND`]) with `size` replicas, or the configured group
    /// size: for a kind known only at run time, as a command line names it.
    pub async fn add_group_of_kind(
        &self,
        name: &str,
        kind: &str,
        size: Option<usize>,
    ) -> Result<GroupInfo, DikeError> {
        if !self.has_kind(kind) {
            return Err(DikeError::UnknownKind(kind.to_owned()));
        }
        let req = MasterRequest::AddGroup {
            name: name.to_owned(),
            kind: kind.to_owned(),
            size: size.unwrap_or(self.ctx.config.group_size),
        };
        self.master_as(req, |reply| match reply {
            MasterReply::Group(g) => Ok(g),
            other => Err(other),
        })
        .await
    }

    /// Deletes group `name`; its replicas stop at their nodes' next refresh.
    pub async fn remove_group(&self, name: &str) -> Result<GroupInfo, DikeError> {
        let req = MasterRequest::RemoveGroup { name: name.into() };
        self.master_as(req, |reply| match reply {
            MasterReply::Removed(g) => Ok(g),
            other => Err(other),
        })
        .await
    }

    /// The master group's configuration as this node knows it (see
    /// [`masters`]): from its flags or data dir at start, then as the
    /// routing table shows it.
    pub fn master_config(&self) -> dike_core::Config {
        self.ctx.masters().config.clone()
    }

    /// The routing table this node has cached (kept fresh from the master;
    /// it may be behind, and it is what requests are routed by).
    pub async fn cached_table(&self) -> Result<Arc<RoutingTable>, DikeError> {
        let d = self
            .dispatcher()
            .ok_or_else(|| DikeError::NodeStopped("no dispatcher".into()))?;
        ractor::call_t!(d, DispatcherMsg::RoutingTable, 1000)
            .map_err(|e| DikeError::NodeStopped(format!("dispatcher: {e}")))
    }

    /// Routes by `table` (another node's cached one, say) if it is newer
    /// than this node's: a client that reached some node can route data
    /// requests while the master quorum is down.
    pub fn install_table(&self, table: RoutingTable) {
        if let Some(d) = self.dispatcher() {
            let _ = d.cast(DispatcherMsg::Install(table));
        }
    }

    /// The routing table, read from the master (linearizable).
    pub async fn routing_table(&self) -> Result<RoutingTable, DikeError> {
        self.master_as(MasterRequest::GetTable, |reply| match reply {
            MasterReply::Table(t) => Ok(t),
            other => Err(other),
        })
        .await
    }

    /// A typed handle on group `name` of server kind `S`.
    pub fn group<S: PaxosServer>(&self, name: &str) -> GroupHandle<S> {
        GroupHandle {
            node: self.clone(),
            group: name.to_owned(),
            _kind: PhantomData,
        }
    }

    /// The replica actor of `group` on this node, if one runs here.
    pub async fn local_replica(&self, group: &str) -> Option<ActorRef<ReplicaMsg>> {
        let g = self.ctx.group_supervisor()?;
        ractor::call_t!(g, GroupSupMsg::Replica, 1000, group.to_owned())
            .ok()
            .flatten()
    }

    /// What the replica of `member` in `group` (on any connected node) says
    /// about itself.
    pub async fn replica_status(
        &self,
        group: &str,
        member: dike_core::MemberId,
    ) -> Result<ReplicaStatus, DikeError> {
        let within = Duration::from_secs(1);
        match status::replica_status_within(&self.ctx, group, None, member, within, true).await {
            Err(DikeError::Unavailable { group, reason }) => {
                let who = self.member_name(member).await;
                Err(DikeError::Unavailable {
                    group,
                    reason: format!("the replica on node {who}: {reason}"),
                })
            }
            other => other,
        }
    }

    /// The cluster's status (see [`status`]): the routing table read from
    /// the master, and every replica asked at once, each within `within`.
    pub async fn cluster_status(
        &self,
        within: Duration,
    ) -> Result<status::ClusterStatus, DikeError> {
        let table = self.routing_table().await?;
        let masters = table.masters.config.clone();
        let masters = masters.unwrap_or_else(|| self.ctx.masters().config.clone());
        Ok(status::gather(&self.ctx, &table, &masters, within).await)
    }

    /// Stops the node and waits until its actors are gone.
    pub async fn stop(&self) {
        let _ = self
            .actor
            .stop_and_wait(
                Some("stopped by its handle".into()),
                Some(Duration::from_secs(10)),
            )
            .await;
    }
}

/// A typed handle on one group: requests and replies of server kind `S`.
pub struct GroupHandle<S: PaxosServer> {
    node: NodeHandle,
    group: String,
    _kind: PhantomData<fn() -> S>,
}

impl<S: PaxosServer> GroupHandle<S> {
    /// Sends `req` through the group's log (applied exactly once) and
    /// returns the reply.
    pub async fn call(&self, req: S::Request) -> Result<S::Reply, DikeError> {
        self.send(req, false).await
    }

    /// Answers `req` with `handle_query` at the leader after a read-index
    /// round: linearizable, without a log write.
    pub async fn query(&self, req: S::Request) -> Result<S::Reply, DikeError> {
        self.send(req, true).await
    }

    /// Sends `req` through the group's log without waiting: the dispatcher
    /// sends it with the usual retries in the background and drops the
    /// reply. Fails only if `req` cannot be encoded or the node's
    /// dispatcher is gone; whether the command was applied is not reported
    /// (read the group to find out).
    pub fn cast(&self, req: S::Request) -> Result<(), DikeError> {
        let payload = codec::encode("request", &req)?;
        self.node.cast_encoded(&self.group, payload)
    }

    /// Sends `req` with the dispatcher's router from this task: the
    /// dispatcher's mailbox is not on the way (a request sent as a
    /// [`DispatcherMsg::Request`] takes the same router after it).
    async fn send(&self, req: S::Request, query: bool) -> Result<S::Reply, DikeError> {
        let payload = codec::encode("request", &req)?;
        let router = self
            .node
            .ctx
            .router()
            .ok_or_else(|| DikeError::NodeStopped("no dispatcher".into()))?;
        let span = tracing::info_span!(
            "request",
            group = %self.group,
            query,
            request = tracing::field::Empty
        );
        let answer = router
            .request(&self.group, payload, query)
            .instrument(span)
            .await;
        GroupRequest::<S>::reply(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_that_lost_its_address_after_the_probe_is_a_listen_error() {
        let addr: std::net::SocketAddr = "127.0.0.1:4000".parse().expect("an address");
        let ractor = "Actor panicked during startup 'Actor panicked during startup \
                      'Address already in use (os error 98)''";
        match spawn_failure(addr, ractor) {
            StartError::Listen { addr: a, reason } => {
                assert_eq!(a, addr);
                assert!(reason.contains("already in use"), "{reason}");
            }
            other => panic!("expected a listen error, got {other:?}"),
        }
        assert!(matches!(
            spawn_failure(addr, "Actor panicked during startup 'boom'"),
            StartError::Spawn {
                what: "DikeNode",
                ..
            }
        ));
    }
}
