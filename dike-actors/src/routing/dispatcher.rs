//! The dispatcher: every node's entry point for requests, and the keeper of
//! its routing-table cache.
//!
//! It refreshes the table periodically (and when a request names a group it
//! does not know; the master sends the table only if the node's copy is not
//! the current one), keeps the node connected to the masters and to every node
//! in the table, registers the node with the master (`join`), tells the
//! group supervisor which replicas the table assigns to this node, and
//! reports peers whose session dropped to the master (on master nodes).
//!
//! Invariant: the actor never waits on the network itself — every request,
//! refresh and join runs in a task and reports back by message — so a slow
//! or dead peer never blocks routing of other requests.

use crate::cluster::liveness::{Liveness, Round, Verdict};
use crate::error::DikeError;
use crate::group::reconcile;
use crate::group::supervisor::GroupSupMsg;
use crate::master::{MasterReply, MasterRequest};
use crate::node::context::{LastRefresh, NodeChild, NodeContext, NodePart, Part};
use crate::node::dial::{dial, DialError};
use crate::routing::router::Router;
use dike_core::codec;
use dike_core::routing::RoutingTable;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::NodeServerMessage;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tracing::Instrument;

/// Messages to the dispatcher. Usable with `call!`/`cast!`:
///
/// ```no_run
/// # async fn f(node: dike_actors::NodeHandle) -> Result<(), Box<dyn std::error::Error>> {
/// use dike_actors::routing::dispatcher::DispatcherMsg;
/// let dispatcher = node.dispatcher().ok_or("node stopped")?;
/// let table = ractor::call!(dispatcher, DispatcherMsg::RoutingTable)?;
/// println!("table version {}", table.version);
/// # Ok(()) }
/// ```
pub enum DispatcherMsg {
    /// An encoded request to `group` (a read-index query if `query`); the
    /// answer is the encoded reply. Build it typed with
    /// [`GroupRequest::message`](crate::routing::request::GroupRequest::message).
    Request {
        /// The group.
        group: String,
        /// The encoded `S::Request`.
        payload: Vec<u8>,
        /// Answer with `handle_query` (no log write) instead of a command.
        query: bool,
        /// Where the answer goes.
        reply: RpcReplyPort<Result<Vec<u8>, DikeError>>,
    },
    /// An encoded command to `group`, fire-and-forget: sent through the
    /// log with the usual retries from a background task; the reply (or
    /// the failure) is dropped. Usable with `cast!`:
    /// `ractor::cast!(dispatcher, DispatcherMsg::Cast { group, payload })`.
    Cast {
        /// The group.
        group: String,
        /// The encoded `S::Request`.
        payload: Vec<u8>,
    },
    /// A request to the master group.
    Master(MasterRequest, RpcReplyPort<Result<MasterReply, DikeError>>),
    /// Asks `group`'s leader to hand leadership to `to`; answered once the
    /// leader started the transfer (or refused it).
    Transfer {
        /// The group.
        group: String,
        /// The voter that is to lead.
        to: dike_core::MemberId,
        /// Where the answer goes.
        reply: RpcReplyPort<Result<(), DikeError>>,
    },
    /// The cached routing table.
    RoutingTable(RpcReplyPort<Arc<RoutingTable>>),
    /// A routing table learnt elsewhere (another node's cached one): kept
    /// if newer than the cached one.
    Install(RoutingTable),
    /// What the node sends its own dispatcher (its timer, its tasks'
    /// results, cluster sessions that dropped). Opaque outside this crate:
    /// nothing a user sends.
    Internal(Internal),
}

/// A message the node sends its own dispatcher. See
/// [`DispatcherMsg::Internal`].
pub struct Internal(pub(crate) InternalMsg);

/// The dispatcher's own messages.
pub(crate) enum InternalMsg {
    /// Refreshes the table now (also sent by the dispatcher's timer).
    Refresh,
    /// A refresh finished.
    Refreshed(Result<Arc<RoutingTable>, DikeError>),
    /// The cluster session to node `name` dropped.
    PeerDown(String),
    /// A liveness round ended: which nodes answered their ping.
    Pinged(Round),
}

impl From<InternalMsg> for DispatcherMsg {
    fn from(msg: InternalMsg) -> Self {
        DispatcherMsg::Internal(Internal(msg))
    }
}

impl ractor::Message for DispatcherMsg {}

/// How long a peer may take to answer a liveness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// A refresh that found the table unchanged reconciles the node's replicas
/// with it only this often (a changed table, at once): with 10,000 groups a
/// pass is not free, and one now and then still restarts a replica that
/// stopped for good.
const RECONCILE_UNCHANGED_EVERY: Duration = Duration::from_secs(5);

/// The dispatcher actor.
pub struct Dispatcher;

/// The dispatcher's state.
pub struct DispatcherState {
    ctx: Arc<NodeContext>,
    router: Arc<Router>,
    refreshing: bool,
    pinging: bool,
    /// The table last reconciled, and when.
    reconciled: Option<(Arc<RoutingTable>, std::time::Instant)>,
    liveness: Liveness,
    timer: ractor::concurrency::JoinHandle<()>,
}

/// The running dispatcher's router, which [`crate::GroupHandle`]s use
/// directly: set by each dispatcher as it starts, cleared as it stops.
type CurrentRouter = RwLock<Option<Arc<Router>>>;

impl NodePart for CurrentRouter {
    const PART: Part = Part::Router;
}

impl NodeContext {
    /// The running dispatcher's router, if any.
    pub(crate) fn router(&self) -> Option<Arc<Router>> {
        self.part::<CurrentRouter>().read().ok()?.clone()
    }

    /// The dispatcher now running, if any.
    pub fn dispatcher(&self) -> Option<ActorRef<DispatcherMsg>> {
        self.actor(NodeChild::Dispatcher)
    }
}

impl Actor for Dispatcher {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<DispatcherMsg>,
        ctx: Arc<NodeContext>,
    ) -> Result<DispatcherState, ActorProcessingErr> {
        let timer = myself.send_interval(ctx.config.refresh, || InternalMsg::Refresh.into());
        let _ = myself.cast(InternalMsg::Refresh.into());
        let router = Arc::new(Router::new(ctx.clone()));
        if let Ok(mut current) = ctx.part::<CurrentRouter>().write() {
            *current = Some(router.clone());
        }
        Ok(DispatcherState {
            router,
            ctx,
            refreshing: false,
            pinging: false,
            reconciled: None,
            liveness: Liveness::default(),
            timer,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DispatcherMsg>,
        state: &mut DispatcherState,
    ) -> Result<(), ActorProcessingErr> {
        state.timer.abort();
        // A dispatcher started in its place has set its own already.
        if let Ok(mut r) = state.ctx.part::<CurrentRouter>().write() {
            if r.as_ref().is_some_and(|r| Arc::ptr_eq(r, &state.router)) {
                *r = None;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<DispatcherMsg>,
        msg: DispatcherMsg,
        state: &mut DispatcherState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Request {
                group,
                payload,
                query,
                reply,
            } => {
                let router = state.router.clone();
                let span = tracing::info_span!(
                    "request",
                    %group,
                    query,
                    request = tracing::field::Empty
                );
                tokio::spawn(
                    async move {
                        let r = router.request(&group, payload, query).await;
                        if let Err(e) = &r {
                            tracing::debug!("request failed: {e}");
                        }
                        let _ = reply.send(r);
                    }
                    .instrument(span),
                );
            }
            DispatcherMsg::Cast { group, payload } => {
                let router = state.router.clone();
                let in_flight = state.ctx.cast_started();
                let span = tracing::info_span!("cast", %group);
                tokio::spawn(
                    async move {
                        if let Err(e) = router.request(&group, payload, false).await {
                            tracing::warn!("cast to {group} failed: {e}");
                        }
                        drop(in_flight);
                    }
                    .instrument(span),
                );
            }
            DispatcherMsg::Transfer { group, to, reply } => {
                let router = state.router.clone();
                let span = tracing::info_span!("transfer", %group, %to);
                tokio::spawn(
                    async move {
                        let _ = reply.send(router.transfer(&group, to).await);
                    }
                    .instrument(span),
                );
            }
            DispatcherMsg::Master(req, reply) => {
                let router = state.router.clone();
                let refresh = !req.is_query();
                let span = tracing::info_span!("master_request", ?req);
                let me = myself.clone();
                tokio::spawn(
                    async move {
                        let r = router.master(req).await;
                        if refresh && r.is_ok() {
                            let _ = me.cast(InternalMsg::Refresh.into());
                        }
                        let _ = reply.send(r);
                    }
                    .instrument(span),
                );
            }
            DispatcherMsg::RoutingTable(reply) => {
                let _ = reply.send(state.router.table());
            }
            DispatcherMsg::Install(table) => {
                if state.router.install(table) {
                    state.reconcile(&state.router.table());
                    // Sessions to the table's nodes now, not at the next
                    // refresh: requests are routed by it at once.
                    let (ctx, router) = (state.ctx.clone(), state.router.clone());
                    tokio::spawn(async move { connect_missing(&ctx, &router.table()).await });
                }
            }
            DispatcherMsg::Internal(Internal(msg)) => state.internal(&myself, msg),
        }
        Ok(())
    }
}

impl DispatcherState {
    /// Handles one of the dispatcher's own messages.
    fn internal(&mut self, myself: &ActorRef<DispatcherMsg>, msg: InternalMsg) {
        match msg {
            InternalMsg::Refresh => {
                if !self.pinging {
                    self.pinging = true;
                    let (me, name) = (myself.clone(), self.ctx.config.name.clone());
                    tokio::spawn(async move {
                        let answers = crate::node::admin::ping_peers(&name, PING_TIMEOUT).await;
                        let _ = me.cast(InternalMsg::Pinged(answers).into());
                    });
                }
                if !self.refreshing {
                    self.refreshing = true;
                    let (ctx, router, me) = (self.ctx.clone(), self.router.clone(), myself.clone());
                    tokio::spawn(async move {
                        let r = refresh(&ctx, &router).await;
                        let _ = me.cast(InternalMsg::Refreshed(r).into());
                    });
                } else {
                    // A refresh in flight may wait a whole request timeout
                    // for a master it has no session to; reconnecting must
                    // not wait for it, or a peer that was down (or not yet
                    // listening) stays unreachable that long.
                    let (ctx, router) = (self.ctx.clone(), self.router.clone());
                    tokio::spawn(async move { connect_missing(&ctx, &router.table()).await });
                }
            }
            InternalMsg::Refreshed(r) => {
                self.refreshing = false;
                let me = self.ctx.config.node_id();
                let outcome = match &r {
                    Ok(table) => LastRefresh::Read {
                        listed: table
                            .node(me)
                            .is_some_and(|n| n.is_up() && n.incarnation == self.ctx.incarnation),
                    },
                    Err(e) => LastRefresh::Failed(e.to_string()),
                };
                self.ctx.refreshed.send_replace(outcome);
                match r {
                    Ok(table) => {
                        let fresh = self.reconciled.as_ref().is_some_and(|(t, at)| {
                            Arc::ptr_eq(t, &table) && at.elapsed() < RECONCILE_UNCHANGED_EVERY
                        });
                        if !fresh {
                            self.reconcile(&table);
                        }
                    }
                    Err(e) => tracing::debug!("routing table refresh failed: {e}"),
                }
            }
            InternalMsg::PeerDown(name) => {
                self.liveness.forget(&name);
                self.peer_down(name, true);
            }
            InternalMsg::Pinged(mut round) => {
                self.pinging = false;
                // Clients (the `dike` program, an application's client
                // node) answer pings too, but host no replica: only the
                // cluster's nodes count.
                let table = self.router.table();
                round.peers.retain(|(name, _)| {
                    table.node(crate::node::config::node_id_of(name)).is_some()
                });
                if !round.conclusive() {
                    tracing::debug!(?round, "most nodes missed their ping: no peer judged");
                }
                for (name, verdict) in self.liveness.record_round(&round) {
                    match verdict {
                        Verdict::Unresponsive => {
                            tracing::warn!(peer = %name, "peer does not answer pings: treating it as down");
                            self.peer_down(name, false);
                        }
                        Verdict::Back => {
                            tracing::info!(peer = %name, "peer answers pings again");
                        }
                    }
                }
            }
        }
    }

    fn reconcile(&mut self, table: &Arc<RoutingTable>) {
        self.reconciled = Some((table.clone(), std::time::Instant::now()));
        self.ctx.metrics.learn_peers(table);
        if let Some(groups) = self.ctx.group_supervisor() {
            let draining = table.draining_nodes().collect();
            let _ = groups.cast(GroupSupMsg::Draining(draining));
        }
        if !self.ctx.joining() {
            return;
        }
        let me = dike_core::MemberId {
            node: self.ctx.config.node_id(),
            incarnation: self.ctx.incarnation,
        };
        let mine = reconcile::assignments(table, me);
        if let Some(groups) = self.ctx.group_supervisor() {
            let existing = table
                .groups
                .iter()
                .map(|(name, g)| (name.clone(), g.generation))
                .collect();
            let _ = groups.cast(GroupSupMsg::Reconcile(mine, existing));
        }
    }

    /// A peer's session dropped (`session_dropped`; then only if no
    /// session to it is left) or it stopped answering pings: local replicas
    /// whose leader was there may campaign at once (the node-level failure
    /// detector of DESIGN 4.3), and a master node reports the peer down to
    /// the master.
    fn peer_down(&self, name: String, session_dropped: bool) {
        let node = crate::node::config::node_id_of(&name);
        let (router, ctx) = (self.router.clone(), self.ctx.clone());
        tokio::spawn(async move {
            // A duplicate session closed by ractor_cluster's de-duplication
            // is no failure: act only if no session to the peer is left.
            if session_dropped && connected_names(&ctx).await.contains(&name) {
                return;
            }
            // A closed session is certain; unanswered pings only a
            // suspicion, which a replica counts only once its leader there
            // has been silent for an election timeout
            // (`dike_core::Replica::node_down`).
            let report = if session_dropped {
                dike_core::DownReport::SessionClosed
            } else {
                dike_core::DownReport::Unresponsive
            };
            if let Some(groups) = ctx.group_supervisor() {
                let _ = groups.cast(GroupSupMsg::NodeDown(node, report));
            }
            if !ctx.is_master() || !router.table().is_up(node) {
                return;
            }
            let since = crate::node::context::wall_nanos() / 1_000_000_000;
            match router.master(MasterRequest::NodeDown { node, since }).await {
                Ok(r) => tracing::info!(%name, ?r, "reported node down"),
                Err(e) => tracing::warn!(%name, "cannot report node down: {e}"),
            }
        });
    }
}

/// The names and peer addresses of the nodes this node has a session with.
async fn connected_names(ctx: &NodeContext) -> BTreeSet<String> {
    let mut connected = BTreeSet::new();
    let Some(server) = ctx.node_server() else {
        return connected;
    };
    match ractor::call_t!(server, NodeServerMessage::GetSessions, 1000) {
        Ok(sessions) => {
            for s in sessions.values() {
                connected.insert(s.peer_addr.clone());
                if let Some(p) = &s.peer_name {
                    let name = p.name.split('@').next().unwrap_or_default();
                    connected.insert(name.to_owned());
                }
            }
        }
        Err(e) => tracing::debug!("cannot list cluster sessions: {e}"),
    }
    connected
}

/// One refresh: connect to every known node not connected, fetch the table,
/// and join (or re-join after a restart) if this node should be in it.
async fn refresh(ctx: &NodeContext, router: &Router) -> Result<Arc<RoutingTable>, DikeError> {
    connect_missing(ctx, &router.table()).await;
    let table = match router.refresh().await {
        Ok(table) => table,
        // A node that knows only masters of an earlier configuration (its
        // `--masters` seeds, say) may not reach the master leader, a master
        // added since: learn the masters, and where they listen, from the
        // table of a node it is connected to, and ask again.
        Err(e) => match learn_masters_from_peers(ctx, router).await {
            true => {
                connect_missing(ctx, &router.table()).await;
                router.refresh().await?
            }
            false => return Err(e),
        },
    };
    let me = ctx.config.node_id();
    let known = table.node(me).map(|n| (n.is_up(), n.incarnation));
    let must_join = ctx.joining() && !ctx.removed() && known != Some((true, ctx.incarnation));
    if !must_join {
        return Ok(table);
    }
    let join = MasterRequest::Join {
        name: ctx.config.name.clone(),
        address: ctx.config.address(),
        incarnation: ctx.incarnation.0,
    };
    let kind = join.kind();
    match router.master(join).await? {
        MasterReply::Joined(_) | MasterReply::AlreadyKnown(_) => {
            ctx.record_joined();
            router.refresh().await
        }
        MasterReply::WasRemoved(r) => {
            ctx.set_removed(&r);
            Err(DikeError::Rejected(r))
        }
        MasterReply::Refused(r) => Err(DikeError::Rejected(r)),
        other => Err(other.unexpected(kind)),
    }
}

/// Asks every connected node which masters it knows
/// ([`AdminMsg::Masters`](crate::node::admin::AdminMsg), a short list), then
/// those that name a master this node does not know for their cached
/// routing table ([`AdminMsg::Table`](crate::node::admin::AdminMsg)), and
/// installs the one that knows the latest master configuration, if that is
/// newer than the masters this node knows. Returns whether the node learned
/// new masters. While the master quorum is down every refresh comes here,
/// so a whole table (megabytes with many groups) is only asked of a node
/// that knows other masters.
async fn learn_masters_from_peers(ctx: &NodeContext, router: &Router) -> bool {
    use crate::node::admin::{AdminMsg, ADMIN_PG};
    let known: BTreeSet<String> = ctx.masters().specs.iter().map(|s| s.name.clone()).collect();
    let known = Arc::new(known);
    let mut asks = tokio::task::JoinSet::new();
    for cell in ractor::pg::get_members(&ADMIN_PG.to_owned()) {
        if cell.get_id().is_local() {
            continue;
        }
        let admin: ActorRef<AdminMsg> = cell.into();
        let known = known.clone();
        asks.spawn(async move {
            let call =
                |msg: fn(RpcReplyPort<Vec<u8>>) -> AdminMsg| admin.call(msg, Some(PING_TIMEOUT));
            let Ok(ractor::rpc::CallResult::Success(bytes)) = call(AdminMsg::Masters).await else {
                return None;
            };
            let masters: Vec<String> = codec::decode("masters", &bytes).ok()?;
            let name = |spec: &String| spec.split_once('@').map(|(n, _)| n.to_owned());
            if masters.iter().filter_map(name).all(|n| known.contains(&n)) {
                return None;
            }
            match call(AdminMsg::Table).await {
                Ok(ractor::rpc::CallResult::Success(bytes)) => {
                    codec::decode::<Option<RoutingTable>>("routing table", &bytes)
                        .ok()
                        .flatten()
                }
                _ => None,
            }
        });
    }
    let epoch = |t: &RoutingTable| t.masters.config.as_ref().map_or(0, |c| c.epoch);
    let mut best: Option<RoutingTable> = None;
    while let Some(answer) = asks.join_next().await {
        if let Ok(Some(t)) = answer {
            if best.as_ref().is_none_or(|b| epoch(&t) > epoch(b)) {
                best = Some(t);
            }
        }
    }
    let Some(table) = best.filter(|t| epoch(t) > ctx.masters().config.epoch) else {
        return false;
    };
    tracing::info!(
        epoch = epoch(&table),
        "the masters known here do not answer; learned newer ones from a peer's routing table"
    );
    router.install(table);
    true
}

/// Opens a cluster session to every master and table node that has none,
/// all at once (an unreachable node costs one timeout, not one each).
/// ractor_cluster does not reconnect by itself.
async fn connect_missing(ctx: &NodeContext, table: &RoutingTable) {
    let Some(server) = ctx.node_server() else {
        return;
    };
    let connected = connected_names(ctx).await;
    let me = &ctx.config.name;
    let known = ctx.masters();
    let masters = known.specs.iter().map(|m| (&m.name, &m.address));
    let nodes = table.nodes.values().map(|n| (&n.name, &n.address));
    let mut tried = BTreeSet::new();
    let mut attempts = tokio::task::JoinSet::new();
    for (name, address) in masters.chain(nodes) {
        if name == me || connected.contains(name) || connected.contains(address) {
            continue;
        }
        if !tried.insert(address.clone()) {
            continue;
        }
        let (server, name, address) = (server.clone(), name.clone(), address.clone());
        let local = ctx.config.listen.ip();
        let tls = ctx.config.tls.clone();
        // Nodes connect only to the nodes they know (isolated mode), never
        // through ractor_cluster's transitive connects, which would not
        // bind the source address (see `dial`).
        attempts.spawn(async move {
            let attempt = dial(&server, &address, Some(local), tls.as_ref());
            match tokio::time::timeout(Duration::from_secs(1), attempt).await {
                Ok(Ok(_)) => tracing::debug!(%name, %address, "connecting"),
                // A TLS failure is a configuration error an operator must
                // see; a node that is down is not news.
                Ok(Err(e @ DialError::Tls(_))) => {
                    tracing::warn!(%name, %address, "cannot connect: {e}")
                }
                Ok(Err(e)) => tracing::debug!(%name, %address, "cannot connect: {e}"),
                Err(_) => tracing::debug!(%name, %address, "connect timed out"),
            }
        });
    }
    while attempts.join_next().await.is_some() {}
}
