//! The node's admin actor: what an operator may ask a node to do about
//! itself from another process (today: join the cluster).
//!
//! Only the node itself knows its incarnation, so only the node can join
//! itself ([`crate::NodeHandle::join`]). Every node therefore runs one admin actor,
//! a child of its `DikeNode`, named [`admin_name`]`(node)` and a member of
//! the process group [`ADMIN_PG`], which ractor_cluster shares with every
//! connected node; a client finds a node's admin actor there by name
//! (`join_remote`).
//!
//! Invariants: every payload is a `Vec<u8>` from [`dike_core::codec`]; a
//! payload that fails to decode is answered with an error, never a panic,
//! so a caller never waits out its timeout for a malformed request. Variant
//! names are wire tags: never rename one.

use crate::cluster::liveness::Round;
use crate::node::config::MasterSpec;
use crate::node::context::{NodeChild, NodeContext};
use crate::node::dial::dial;
use dike_core::codec;
use dike_core::routing::{NodeInfo, RoutingTable};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The process group every node's admin actor joins.
pub const ADMIN_PG: &str = "dike/admin";

/// The actor name of node `node`'s admin actor.
pub fn admin_name(node: &str) -> String {
    format!("dike-admin/{node}")
}

/// Messages to a node's admin actor, local or remote.
#[derive(RactorClusterMessage)]
pub enum AdminMsg {
    /// Join the cluster: an encoded [`JoinRequest`]; the answer is an
    /// encoded [`AdminReply`].
    #[rpc]
    Join(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// The liveness ping of DESIGN 4.3: answered at once with nothing.
    #[rpc]
    Ping(RpcReplyPort<Vec<u8>>),
    /// The cluster's masters (the master group's voters) as this node
    /// knows them: an encoded `Vec<String>` of `NAME@HOST:PORT` (see
    /// [`crate::node::discover`]).
    #[rpc]
    Masters(RpcReplyPort<Vec<u8>>),
    /// The routing table this node has cached: an encoded
    /// `Option<RoutingTable>` (`None` if the node cannot say).
    #[rpc]
    Table(RpcReplyPort<Vec<u8>>),
    /// What this node says about itself: an encoded [`NodeAbout`].
    #[rpc]
    About(RpcReplyPort<Vec<u8>>),
}

/// What a node says about itself ([`AdminMsg::About`]), for the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAbout {
    /// The version of its `dike-actors`.
    pub version: String,
    /// Whole seconds since it started.
    pub uptime_seconds: u64,
}

impl NodeAbout {
    /// What the node of `ctx` says about itself now.
    pub fn of(ctx: &NodeContext) -> NodeAbout {
        NodeAbout {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: ctx.started.elapsed().as_secs(),
        }
    }
}

/// What a caller asks with [`AdminMsg::Join`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The node the caller means; a node of another name refuses, so a
    /// caller that reached the wrong address learns it.
    pub node: String,
}

/// How a node answered [`AdminMsg::Join`], as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinAnswer {
    /// The node was added to the routing table.
    Joined(NodeInfo),
    /// The node was known already (it is marked up).
    AlreadyKnown(NodeInfo),
}

/// An admin actor's answer: what it did, or why not (a message to show).
pub type AdminReply = Result<JoinAnswer, String>;

/// Why asking another node to join failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinNodeError {
    /// No cluster session to the address could be opened.
    #[error(
        "node {name} at {address} is not reachable ({reason}); is it running, and listening there?"
    )]
    Unreachable {
        /// The node meant.
        name: String,
        /// Its address.
        address: String,
        /// What connecting said.
        reason: String,
    },
    /// A session was opened, but no node of that name showed up.
    #[error(
        "no node named {name:?} answered at {address} within {after:?}; check the node's \
         --name and that it was started with the same cookie"
    )]
    UnknownNode {
        /// The node meant.
        name: String,
        /// Its address.
        address: String,
        /// How long the caller waited.
        after: Duration,
    },
    /// The node's admin actor did not answer in time (or went away).
    #[error("node {name} did not answer: {reason}")]
    NoAnswer {
        /// The node.
        name: String,
        /// What the call said.
        reason: String,
    },
    /// The node tried to join and could not (for example no master answered).
    #[error("node {name} could not join: {reason}")]
    Failed {
        /// The node.
        name: String,
        /// Its reason.
        reason: String,
    },
    /// The answer could not be encoded or decoded (mixed versions?).
    #[error("cannot encode or decode the join exchange: {0}")]
    Decode(String),
    /// The calling node is stopping.
    #[error("the calling node is not running")]
    NodeStopped,
}

/// What joining answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The node was added to the routing table.
    Joined(NodeInfo),
    /// The node was known already (it is marked up).
    AlreadyKnown(NodeInfo),
}

/// A future an [`AdminNode`] returns.
pub(crate) type NodeFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the admin actor asks of its own node: implemented by the node's
/// handle (`crate::NodeHandle`), above this module, so the admin actor
/// (which the dispatcher and the operator's commands talk to) does not
/// import the root actor that starts it.
pub(crate) trait AdminNode: Send + Sync + 'static {
    /// The node's shared context.
    fn context(&self) -> &Arc<NodeContext>;
    /// Joins the cluster (`NodeHandle::join`), or says why not.
    fn join(&self) -> NodeFuture<'_, Result<JoinOutcome, String>>;
    /// The routing table the node has cached, if it can say.
    fn cached_table(&self) -> NodeFuture<'_, Option<RoutingTable>>;
}

/// The node the admin actor answers for.
type Node = Arc<dyn AdminNode>;

/// The admin actor.
pub(crate) struct Admin;

impl Actor for Admin {
    type Msg = AdminMsg;
    type State = Node;
    type Arguments = Node;

    async fn pre_start(
        &self,
        myself: ActorRef<AdminMsg>,
        node: Node,
    ) -> Result<Node, ActorProcessingErr> {
        ractor::pg::join(ADMIN_PG.to_owned(), vec![myself.get_cell()]);
        Ok(node)
    }

    async fn handle(
        &self,
        _myself: ActorRef<AdminMsg>,
        msg: AdminMsg,
        node: &mut Node,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AdminMsg::Join(bytes, reply) => {
                // Joining waits for the master: answer from a task so the
                // actor stays responsive.
                let node = node.clone();
                tokio::spawn(async move {
                    let answer = join_self(&node, &bytes).await;
                    let encoded = codec::encode("admin reply", &answer).unwrap_or_default();
                    let _ = reply.send(encoded);
                });
            }
            AdminMsg::Ping(reply) => {
                let _ = reply.send(Vec::new());
            }
            AdminMsg::Masters(reply) => {
                let known = node.context().masters();
                let voter = |s: &&MasterSpec| {
                    let id = crate::node::config::node_id_of(&s.name);
                    known.config.voters.iter().any(|v| v.node == id)
                };
                let masters: Vec<String> = known
                    .specs
                    .iter()
                    .filter(voter)
                    .map(ToString::to_string)
                    .collect();
                let _ = reply.send(codec::encode("masters", &masters).unwrap_or_default());
            }
            AdminMsg::Table(reply) => {
                // Asks the dispatcher: answer from a task.
                let node = node.clone();
                tokio::spawn(async move {
                    let table = node.cached_table().await;
                    let _ = reply.send(codec::encode("routing table", &table).unwrap_or_default());
                });
            }
            AdminMsg::About(reply) => {
                let about = NodeAbout::of(node.context());
                let _ = reply.send(codec::encode("node about", &about).unwrap_or_default());
            }
        }
        Ok(())
    }
}

/// Handles one [`AdminMsg::Join`] payload on `node`.
async fn join_self(node: &Node, bytes: &[u8]) -> AdminReply {
    let req: JoinRequest =
        codec::decode("join request", bytes).map_err(|e| format!("malformed join request: {e}"))?;
    let name = &node.context().config.name;
    if &req.node != name {
        return Err(format!("this is node {name:?}, not {:?}", req.node));
    }
    match node.join().await? {
        JoinOutcome::Joined(n) => Ok(JoinAnswer::Joined(n)),
        JoinOutcome::AlreadyKnown(n) => Ok(JoinAnswer::AlreadyKnown(n)),
    }
}

/// Spawns `node`'s admin actor under `supervisor` and records it in the
/// node's context.
pub(crate) async fn spawn_admin(
    ctx: &NodeContext,
    node: Node,
    supervisor: ActorCell,
) -> Result<ActorRef<AdminMsg>, ActorProcessingErr> {
    let name = admin_name(&ctx.config.name);
    let (a, _) = Actor::spawn_linked(Some(name), Admin, node, supervisor).await?;
    ctx.set_actor(NodeChild::Admin, Some(a.get_cell()));
    Ok(a)
}

/// The admin actor of node `name` among the members of [`ADMIN_PG`] this
/// node sees (its own, and those of connected nodes).
pub fn find_admin(name: &str) -> Option<ActorRef<AdminMsg>> {
    let wanted = admin_name(name);
    ractor::pg::get_members(&ADMIN_PG.to_owned())
        .into_iter()
        .find(|c| c.get_name().as_deref() == Some(wanted.as_str()))
        .map(ActorRef::from)
}

/// Pings the admin actor of every node this node sees, its own included;
/// answers which answered within `timeout` (see
/// [`crate::cluster::liveness`] for why its own).
pub async fn ping_peers(me: &str, timeout: Duration) -> Round {
    let mut pings = tokio::task::JoinSet::new();
    for cell in ractor::pg::get_members(&ADMIN_PG.to_owned()) {
        let Some(name) = cell.get_name() else {
            continue;
        };
        let Some(node) = name.strip_prefix("dike-admin/").map(str::to_owned) else {
            continue;
        };
        let admin: ActorRef<AdminMsg> = cell.into();
        pings.spawn(async move {
            let answered = admin.call(AdminMsg::Ping, Some(timeout)).await;
            let ok = matches!(answered, Ok(ractor::rpc::CallResult::Success(_)));
            (node, ok)
        });
    }
    let mut round = Round::default();
    while let Some(Ok((node, ok))) = pings.join_next().await {
        if node == me {
            round.me = ok;
        } else {
            round.peers.push((node, ok));
        }
    }
    round.peers.sort();
    round
}

/// Asks node `name`, listening at `address`, to join the cluster, from the
/// node of `ctx`: connects to it if needed, waits (until `within` passes)
/// for its admin actor to appear, and asks.
pub(crate) async fn join_remote(
    ctx: &NodeContext,
    name: &str,
    address: &str,
    within: Duration,
) -> Result<JoinOutcome, JoinNodeError> {
    let deadline = Instant::now() + within;
    let admin = match find_admin(name) {
        Some(a) => a,
        None => {
            connect(ctx, name, address).await?;
            wait_for_admin(name, address, within, deadline).await?
        }
    };
    let payload = codec::encode(
        "join request",
        &JoinRequest {
            node: name.to_owned(),
        },
    )
    .map_err(|e| JoinNodeError::Decode(e.to_string()))?;
    // The node's own join waits up to its request timeout for the master.
    let wait = within + ctx.config.request_timeout + Duration::from_secs(1);
    let no_answer = |reason: String| JoinNodeError::NoAnswer {
        name: name.to_owned(),
        reason,
    };
    let bytes = match admin
        .call(|port| AdminMsg::Join(payload, port), Some(wait))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(b)) => b,
        Ok(ractor::rpc::CallResult::Timeout) => {
            return Err(no_answer(format!("no answer within {wait:?}")))
        }
        Ok(ractor::rpc::CallResult::SenderError) => {
            return Err(no_answer("its admin actor went away".into()))
        }
        Err(e) => return Err(no_answer(e.to_string())),
    };
    let answer: AdminReply =
        codec::decode("admin reply", &bytes).map_err(|e| JoinNodeError::Decode(e.to_string()))?;
    match answer {
        Ok(JoinAnswer::Joined(n)) => Ok(JoinOutcome::Joined(n)),
        Ok(JoinAnswer::AlreadyKnown(n)) => Ok(JoinOutcome::AlreadyKnown(n)),
        Err(reason) => Err(JoinNodeError::Failed {
            name: name.to_owned(),
            reason,
        }),
    }
}

async fn connect(ctx: &NodeContext, name: &str, address: &str) -> Result<(), JoinNodeError> {
    let server = ctx.node_server().ok_or(JoinNodeError::NodeStopped)?;
    let unreachable = |reason: String| JoinNodeError::Unreachable {
        name: name.to_owned(),
        address: address.to_owned(),
        reason,
    };
    let attempt = dial(&server, address, None, ctx.config.tls.as_ref());
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("connecting timed out".into())),
    }
}

/// Polls the process group until `name`'s admin actor shows up (a new
/// session's members arrive once it is authenticated).
async fn wait_for_admin(
    name: &str,
    address: &str,
    within: Duration,
    deadline: Instant,
) -> Result<ActorRef<AdminMsg>, JoinNodeError> {
    loop {
        if let Some(a) = find_admin(name) {
            return Ok(a);
        }
        if Instant::now() >= deadline {
            return Err(JoinNodeError::UnknownNode {
                name: name.to_owned(),
                address: address.to_owned(),
                after: within,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_join_answer_or_request_is_a_decode_error() {
        assert!(codec::decode::<JoinRequest>("join request", b"\xc1").is_err());
        assert!(codec::decode::<AdminReply>("admin reply", &[]).is_err());
        let ok: AdminReply = Err("no".into());
        let bytes = codec::encode("admin reply", &ok).expect("encode");
        assert_eq!(
            codec::decode::<AdminReply>("admin reply", &bytes).ok(),
            Some(ok)
        );
    }
}
