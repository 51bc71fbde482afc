//! The node's transport: what travels between nodes for groups (replicas'
//! protocol messages, clients' requests to replicas and their replies),
//! coalesced per peer node.
//!
//! Sent one cluster message each, every request, reply and batch of
//! envelopes pays its own trip through ractor_cluster's session actor,
//! write task, socket write, read task, session actor and decode, on both
//! ends; with hundreds of clients that trip, not Paxos, is most of a
//! write's CPU. Instead:
//! - a replica puts its batches of envelopes, and its answers to requests
//!   another node forwarded, in the node's [`Outbox`] itself (no message to
//!   the transport but one [`TransportMsg::Flush`] per batch; see
//!   [`crate::cluster::outbox`] for why);
//! - a router hands the transport a request for a remote replica
//!   ([`TransportMsg::Request`], a local call whose reply port the
//!   transport keeps under a fresh id), which it queues there too.
//!
//! When the `Flush` comes up (the rule of [`crate::coalesce`]: once the
//! mailbox has caught up, so that a burst in progress leaves whole), the
//! transport first yields its worker thread once, so that tasks already
//! ready to run (replicas woken by the same group commit or the same
//! delivered batch) queue their messages too; then each destination node's
//! queue leaves as one [`TransportMsg::Deliver`]: whatever arrives together
//! leaves together, e.g. a leader's answers to one batch of commands travel
//! as one message. The yield matters most with many groups, where each
//! replica has one message at a time: writes spread over 1,000 groups sent
//! 11.6–12.6 batches per write without it and 1.2–1.4 with it. The receiving
//! transport hands envelopes and requests to the local replica they name,
//! found by its actor name ([`wire::replica_name`]), and replies to the
//! reply ports it kept.
//!
//! Every node runs one transport, a child of its `DikeNode`, named
//! [`transport_name`]`(node id)` and a member of the process group
//! [`TRANSPORT_PG`], where peers find it.
//!
//! Invariants: items from one sender to one node leave in the order they
//! were handed over (one queue per node, one actor sending, one cluster
//! session);
//! nothing waits here for a write (replicas hand over only what the driver
//! released); a payload that fails to decode is logged and dropped, never a
//! panic; envelopes for an unreachable node or replica are dropped, as the
//! network may (the protocol retransmits); a request that cannot be
//! delivered is answered at once (its reply port is dropped, or the replica
//! is reported as knowing no leader), and so is one forwarded to a node
//! whose cluster session ends before it answers ([`TransportMsg::PeerDown`]),
//! so its router retries elsewhere instead of waiting out its timeout; a
//! reply port whose caller gave up is
//! forgotten within [`SWEEP_EVERY`]. Variant names are wire tags: never
//! rename one.

use crate::cluster::outbox::{FlushNow, Outbox};
use crate::cluster::wire::{self, ClientReply, ReplicaMsg, ReplyError};
pub use crate::cluster::wire::{
    decode_batch, encode_batch, Answer, Batch, Forwarded, Parcel, MAX_PARCELS, MAX_REQUESTS,
};
use crate::node::context::{NodeChild, NodeContext};
use crate::node::metrics::Mailbox;
use dike_core::{codec, MemberId, NodeId, RequestError};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The process group every node's transport joins.
pub const TRANSPORT_PG: &str = "dike/transport";

/// How often the transport forgets reply ports whose callers gave up.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The actor name of the transport of the node with id `node`.
pub fn transport_name(node: NodeId) -> String {
    format!("dike-transport/{}", node.0)
}

/// Messages to a node's transport, local or remote.
#[derive(RactorClusterMessage)]
pub enum TransportMsg {
    /// From a local router: an encoded [`wire::ClientRequest`] (`.4`) for
    /// the replica of generation `.1` of group `.0` of the member on node
    /// `.2` with incarnation `.3`; the reply is an encoded [`ClientReply`].
    #[rpc]
    Request(String, u64, u64, u64, Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// From the transport of node `.0` (as it says; see
    /// [`crate::cluster::undecodable`]): an encoded [`Batch`].
    Deliver(u64, Vec<u8>),
    /// Sends everything queued in the node's [`Outbox`] (cast by whoever
    /// queued the first item of a batch).
    Flush,
    /// Forgets reply ports whose callers gave up (on a timer); sent at
    /// this time of the node's clock (nanoseconds since its start).
    Sweep(u64),
    /// From the node: its cluster session with node `.0` ended. Requests
    /// forwarded there are answered at once (their reply ports drop): the
    /// node will not answer them, and their routers retry elsewhere
    /// instead of waiting out their attempt timeout.
    PeerDown(u64),
}

/// The transport actor. See the module documentation.
pub struct Transport;

/// The transport's state.
pub struct TransportState {
    me: NodeId,
    /// Peer transports found so far (dropped when a cast to one fails).
    peers: HashMap<u64, ActorRef<TransportMsg>>,
    /// Reply ports of requests forwarded to other nodes, by id, with the
    /// node each went to.
    waiting: HashMap<u64, (u64, RpcReplyPort<Vec<u8>>)>,
    next_id: u64,
    /// The node (for its metrics).
    ctx: Arc<NodeContext>,
}

impl Actor for Transport {
    type Msg = TransportMsg;
    type State = TransportState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<TransportMsg>,
        ctx: Arc<NodeContext>,
    ) -> Result<TransportState, ActorProcessingErr> {
        ractor::pg::join(TRANSPORT_PG.to_owned(), vec![myself.get_cell()]);
        // The timer stops by itself once the actor is gone.
        let clock = ctx.clone();
        myself.send_interval(SWEEP_EVERY, move || {
            TransportMsg::Sweep(u64::try_from(clock.clock().as_nanos()).unwrap_or(u64::MAX))
        });
        // What a predecessor left queued goes now.
        ctx.outbox()
            .restart(|| myself.cast(TransportMsg::Flush).is_ok());
        Ok(TransportState {
            me: ctx.config.node_id(),
            peers: HashMap::new(),
            waiting: HashMap::new(),
            next_id: 0,
            ctx,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TransportMsg>,
        msg: TransportMsg,
        state: &mut TransportState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TransportMsg::Request(group, generation, node, incarnation, request, port) => {
                let to = MemberId::new(node, incarnation);
                if node == state.me.0 {
                    // Dropping the port answers a caller whose replica is
                    // not here at once.
                    if let Some(replica) = local_replica(&group, generation, to) {
                        let _ = replica.cast(ReplicaMsg::Request(request, port));
                    }
                } else {
                    state.next_id += 1;
                    let id = state.next_id;
                    tracing::debug!(%group, node, id, "forwarding a request to another node");
                    state.waiting.insert(id, (node, port));
                    let forwarded = Forwarded {
                        id,
                        group,
                        to,
                        request,
                        generation,
                    };
                    queue(state.ctx.outbox(), &myself, node, |b| {
                        b.requests.push(forwarded)
                    });
                }
            }
            TransportMsg::Flush => {
                // Let the tasks that are ready on this worker run first: the
                // replicas one group commit or one delivered batch woke queue
                // their messages, which then leave in this flush.
                tokio::task::yield_now().await;
                let ctx = state.ctx.clone();
                if let FlushNow::Send(batches) = ctx
                    .outbox()
                    .on_flush(|| myself.cast(TransportMsg::Flush).is_ok())
                {
                    state.flush(batches);
                }
            }
            TransportMsg::Deliver(from, bytes) => match decode_batch(&bytes) {
                Ok(batch) => {
                    state
                        .ctx
                        .metrics
                        .transport_received(batch.from, bytes.len());
                    state.deliver(&myself, batch)
                }
                Err(e) => state.ctx.drop_undecodable(from, "a transport batch", &e),
            },
            TransportMsg::Sweep(sent) => {
                let waited = state.ctx.clock().saturating_sub(Duration::from_nanos(sent));
                state.ctx.metrics.mailbox_wait(Mailbox::Transport, waited);
                state.waiting.retain(|_, (_, port)| !port.is_closed())
            }
            TransportMsg::PeerDown(node) => {
                let before = state.waiting.len();
                state.waiting.retain(|_, (to, _)| *to != node);
                // A restarted peer's transport is another actor.
                state.peers.remove(&node);
                let dropped = before - state.waiting.len();
                if dropped > 0 {
                    tracing::debug!(node, dropped, "peer down: its requests answered at once");
                }
            }
        }
        Ok(())
    }
}

/// Queues an item for node `node` in `outbox` (`add` puts it in that
/// node's batch), casting `transport` a `Flush` if none is scheduled.
pub(crate) fn queue(
    outbox: &Outbox,
    transport: &ActorRef<TransportMsg>,
    node: u64,
    add: impl FnOnce(&mut Batch),
) {
    outbox.push(node, add, || transport.cast(TransportMsg::Flush).is_ok());
}

impl TransportState {
    /// Sends each node's batch as one message.
    fn flush(&mut self, batches: HashMap<u64, Batch>) {
        let me = self.me.0;
        for (node, mut batch) in batches {
            batch.from = me;
            let sent = match encode_batch(&batch) {
                Ok(bytes) => match peer(&mut self.peers, node) {
                    Some(peer) => {
                        self.ctx.metrics.transport_sent(node, bytes.len());
                        let ok = peer.cast(TransportMsg::Deliver(me, bytes)).is_ok();
                        if !ok {
                            // Its session stopped: look it up again next time.
                            self.peers.remove(&node);
                        }
                        ok
                    }
                    None => false,
                },
                Err(e) => {
                    tracing::error!(node, "cannot encode a transport batch: {e}");
                    false
                }
            };
            if !sent {
                tracing::trace!(node, "peer transport not reachable");
                // Their callers learn at once (the ports drop).
                for r in &batch.requests {
                    self.waiting.remove(&r.id);
                }
            }
        }
    }

    /// Hands what a peer sent to the local replicas and callers.
    fn deliver(&mut self, myself: &ActorRef<TransportMsg>, batch: Batch) {
        let from = batch.from;
        for parcel in batch.parcels {
            deliver_parcel(from, parcel);
        }
        for r in batch.requests {
            tracing::debug!(group = %r.group, from, id = r.id, "a request from another node");
            match local_replica(&r.group, r.generation, r.to) {
                Some(replica) => {
                    let _ = replica.cast(ReplicaMsg::Forwarded(from, r.id, r.request));
                }
                None => {
                    let answer: ClientReply = Err(ReplyError::Request(RequestError::NotLeader {
                        leader: None,
                    }));
                    if let Ok(reply) = codec::encode_compact("client reply", &answer) {
                        let id = r.id;
                        queue(self.ctx.outbox(), myself, from, |b| {
                            b.answers.push(Answer { id, reply })
                        });
                    }
                }
            }
        }
        for a in batch.answers {
            if let Some((_, port)) = self.waiting.remove(&a.id) {
                // The caller may have given up meanwhile.
                let _ = port.send(a.reply);
            }
        }
    }
}

/// The transport of node `node`, from the cache or the process group.
fn peer(
    peers: &mut HashMap<u64, ActorRef<TransportMsg>>,
    node: u64,
) -> Option<ActorRef<TransportMsg>> {
    if let Some(p) = peers.get(&node) {
        return Some(p.clone());
    }
    let wanted = transport_name(NodeId(node));
    let cell = ractor::pg::get_members(&TRANSPORT_PG.to_owned())
        .into_iter()
        .find(|c| c.get_name().as_deref() == Some(wanted.as_str()))?;
    let actor: ActorRef<TransportMsg> = cell.into();
    peers.insert(node, actor.clone());
    Some(actor)
}

/// The replica of `member` of generation `generation` of `group` if it runs
/// on this node.
pub fn local_replica(
    group: &str,
    generation: u64,
    member: MemberId,
) -> Option<ActorRef<ReplicaMsg>> {
    ractor::registry::where_is(wire::replica_name(group, generation, member)).map(Into::into)
}

/// Hands `parcel` to the local replica it is for, if it runs here.
pub(crate) fn deliver_parcel(from: u64, parcel: Parcel) {
    match local_replica(&parcel.group, parcel.generation, parcel.to) {
        Some(replica) => {
            let _ = replica.cast(ReplicaMsg::Protocol(from, parcel.envelopes));
        }
        None => {
            tracing::trace!(group = %parcel.group, generation = parcel.generation, to = %parcel.to,
                "no such replica here");
        }
    }
}

impl NodeContext {
    /// The node's transport now running, if any.
    pub(crate) fn transport(&self) -> Option<ActorRef<TransportMsg>> {
        self.actor(NodeChild::Transport)
    }
}

/// Spawns the node's transport under `supervisor` and records it in the
/// node's context.
pub(crate) async fn spawn_transport(
    ctx: &Arc<NodeContext>,
    supervisor: ActorCell,
) -> Result<ActorRef<TransportMsg>, ActorProcessingErr> {
    let name = transport_name(ctx.config.node_id());
    let (t, _) = Actor::spawn_linked(Some(name), Transport, ctx.clone(), supervisor).await?;
    ctx.set_actor(NodeChild::Transport, Some(t.get_cell()));
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{until_counted, Counting, CountingArgs};

    #[test]
    fn batches_round_trip_and_garbage_is_an_error() {
        let batch = Batch {
            from: 4,
            parcels: vec![Parcel {
                group: "g".into(),
                to: MemberId::new(3, 7),
                envelopes: vec![1, 2, 3],
                generation: 5,
            }],
            requests: vec![Forwarded {
                id: 9,
                group: "h".into(),
                to: MemberId::new(2, 1),
                request: vec![4],
                generation: 0,
            }],
            answers: vec![Answer {
                id: 8,
                reply: vec![5, 6],
            }],
        };
        let bytes = encode_batch(&batch).expect("encodes");
        assert_eq!(decode_batch(&bytes).expect("decodes"), batch);
        assert!(decode_batch(&[0xc1]).is_err());
        assert!(decode_batch(&bytes[..bytes.len() - 1]).is_err());
        assert!(Batch::default().is_empty());
    }

    #[test]
    fn a_batch_with_more_requests_than_its_bound_is_refused() {
        let request = |id| Forwarded {
            id,
            group: String::new(),
            to: MemberId::new(1, 1),
            request: Vec::new(),
            generation: 0,
        };
        let mut batch = Batch {
            requests: (0..MAX_REQUESTS as u64).map(request).collect(),
            ..Batch::default()
        };
        let at_bound = encode_batch(&batch).expect("encodes");
        assert_eq!(
            decode_batch(&at_bound).map(|b| b.requests.len()),
            Ok(MAX_REQUESTS)
        );
        batch.requests.push(request(0));
        let over = encode_batch(&batch).expect("encodes");
        let refused = decode_batch(&over).unwrap_err();
        assert!(refused.to_string().contains("at most 65536"), "{refused}");
    }

    #[tokio::test]
    async fn a_parcel_reaches_only_the_replica_of_its_generation() {
        let m = MemberId::new(3, 7);
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let name = wire::replica_name("g", 1, m);
        let args = CountingArgs {
            count: count.clone(),
            counts: |m| matches!(m, ReplicaMsg::Protocol(..)),
            group: None,
        };
        let (actor, handle) = Counting::spawn(Some(name), args).await;
        let parcel = |generation| Parcel {
            group: "g".into(),
            to: m,
            envelopes: Vec::new(),
            generation,
        };
        // A parcel of the group created again under its name, then one of
        // the replica's own generation: only the second arrives (the first
        // would have arrived before it, from the same sender).
        deliver_parcel(1, parcel(2));
        deliver_parcel(1, parcel(1));
        until_counted(&count, "the parcel never arrived").await;
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        actor.stop(None);
        handle.await.expect("stopped");
    }

    #[tokio::test]
    async fn a_request_forwarded_to_a_node_whose_session_ended_is_answered_at_once() {
        let config = crate::node::config::NodeConfig::builder(
            "transport-down-a",
            "127.0.0.1:1".parse().expect("address"),
        )
        .cookie("c")
        .in_memory()
        .build()
        .expect("config");
        let ctx = NodeContext::new(config);
        let peer = crate::node::config::node_id_of("transport-down-b");
        let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // A peer node's transport that takes batches and never answers.
        let args = CountingArgs {
            count: delivered.clone(),
            counts: |m| matches!(m, TransportMsg::Deliver(..)),
            group: Some(TRANSPORT_PG.to_owned()),
        };
        let (silent, silent_handle) = Counting::spawn(Some(transport_name(peer)), args).await;
        let name = transport_name(ctx.config.node_id());
        let (transport, handle) = Actor::spawn(Some(name), Transport, ctx)
            .await
            .expect("spawn the transport");
        // Far longer than the test may take: only the session's end can
        // answer the caller.
        let wait = Duration::from_secs(600);
        let call = tokio::spawn({
            let transport = transport.clone();
            async move {
                transport
                    .call(
                        |port| TransportMsg::Request("g".into(), 0, peer.0, 1, vec![1], port),
                        Some(wait),
                    )
                    .await
            }
        });
        until_counted(&delivered, "never forwarded").await;
        transport
            .cast(TransportMsg::PeerDown(peer.0))
            .expect("cast");
        let answered = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("answered at once, not after the call's timeout")
            .expect("the caller's task");
        assert!(
            matches!(answered, Ok(ractor::rpc::CallResult::SenderError)),
            "{answered:?}"
        );
        for (actor, handle) in [
            (transport.get_cell(), handle),
            (silent.get_cell(), silent_handle),
        ] {
            actor.stop(None);
            handle.await.expect("stopped");
        }
    }

    #[test]
    fn names_differ_per_node() {
        assert_ne!(transport_name(NodeId(1)), transport_name(NodeId(2)));
    }
}
