//! What every actor of one node shares: the configuration, the registry of
//! server kinds, the node's incarnation, the masters as the node knows
//! them, the node's metrics, whether it runs and has joined; and, untyped,
//! the current references of the node's children and what single concerns
//! keep for the whole node.
//!
//! The context sits under every other module of the runtime and names none
//! of the actors above it: it imports nothing from `cluster/`, `group/`,
//! `routing/` or `master/` (only the node's configuration, its masters and
//! its metrics, which import no actor either), so the folders read from the
//! node down (docs/ARCHITECTURE.md, "Modules"). Two things make that
//! possible:
//! - the node's children (`NodeChild`) are kept as [`ractor::ActorCell`]s;
//!   the module of each actor converts its own back to a typed
//!   [`ActorRef`] in an accessor beside the actor (e.g.
//!   `NodeContext::transport` in `cluster/transport.rs`), and the
//!   conversion checks the message type, so a wrong one finds no actor
//!   rather than one it cannot talk to;
//! - what one concern keeps for the whole node (the outbox, the effect
//!   runner, the dispatcher's router, ...: see `Part`) is stored here as
//!   `dyn Any` and typed by that concern's module (`NodePart`), whose
//!   accessor is the only way to it.
//!
//! Invariant: `boot` numbers handed out by [`NodeContext::next_boot`] never
//! repeat within the node's process and start above any earlier process's
//! (they are seeded from the wall clock), so a restarted replica never runs
//! the effects of an earlier life.

pub use crate::node::config::{Kinds, MachineFactory};

use crate::node::config::NodeConfig;
use crate::node::masters::Masters;
use crate::node::metrics::{MetricsOptions, NodeMetrics};
use dike_core::{Incarnation, PaxosServer};
use ractor::{ActorCell, ActorId, ActorRef, Message};
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// How the dispatcher's last routing-table refresh ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LastRefresh {
    /// No refresh has ended yet.
    NotYet,
    /// It failed, for this reason.
    Failed(String),
    /// The table was read; `listed`: it lists this node up, in its
    /// current incarnation.
    Read {
        /// Whether this node is in the table, up, as itself.
        listed: bool,
    },
}

/// The node actor's children, as its supervision tells them apart. The
/// context keeps the current reference of each ([`NodeContext::actor`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeChild {
    /// The dispatcher ([`crate::routing::dispatcher`]).
    Dispatcher,
    /// The group supervisor ([`crate::group::supervisor`]).
    GroupSupervisor,
    /// The admin actor ([`crate::node::admin`]).
    Admin,
    /// The transport ([`crate::cluster::transport`]).
    Transport,
    /// ractor_cluster's node server (never restarted: the node fails).
    NodeServer,
    /// The rebalancer ([`crate::master::rebalancer`]).
    Rebalancer,
}

impl NodeChild {
    /// Every child, each at its index in [`Children`].
    const ALL: [NodeChild; 6] = [
        NodeChild::Dispatcher,
        NodeChild::GroupSupervisor,
        NodeChild::Admin,
        NodeChild::Transport,
        NodeChild::NodeServer,
        NodeChild::Rebalancer,
    ];
}

impl std::fmt::Display for NodeChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeChild::Dispatcher => "dispatcher",
            NodeChild::GroupSupervisor => "group supervisor",
            NodeChild::Admin => "admin",
            NodeChild::Transport => "transport",
            NodeChild::NodeServer => "node server",
            NodeChild::Rebalancer => "rebalancer",
        })
    }
}

/// The running actor of each [`NodeChild`] (by `child as usize`), untyped:
/// the module of each actor converts it to its own message type.
#[derive(Default)]
struct Children([RwLock<Option<ActorCell>>; NodeChild::ALL.len()]);

/// What one concern keeps for the whole node: in the context, so every
/// actor and handle of the node reaches it, but typed only by the module
/// of that concern, which implements [`NodePart`] for its type and the
/// accessor beside it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Part {
    /// What waits to leave for other nodes ([`crate::cluster::outbox`]).
    Outbox,
    /// The runner of every replica's effects ([`crate::group::driver`]).
    Effects,
    /// The running dispatcher's router ([`crate::routing::dispatcher`]).
    Router,
    /// The rate limit of warnings about messages that do not decode
    /// ([`crate::cluster::undecodable`]).
    Undecodable,
    /// What the node last heard from the masters, for `GET /ready`
    /// ([`crate::node::http`]).
    Readiness,
    /// The HTTP endpoints, once started ([`crate::node::http`]).
    Http,
}

impl Part {
    /// How many parts there are.
    const COUNT: usize = 6;
}

/// A type that one concern keeps in the node context as its [`Part`]: one
/// value per node, made with `Default` on first use.
pub(crate) trait NodePart: Any + Default + Send + Sync {
    /// Its part; no other type claims the same.
    const PART: Part;
}

/// The value of each [`Part`] (by `part as usize`), once made.
#[derive(Default)]
struct Parts([OnceLock<Box<dyn Any + Send + Sync>>; Part::COUNT]);

/// The node-wide shared state. See the module documentation.
pub struct NodeContext {
    /// The node's configuration.
    pub config: NodeConfig,
    /// The life of this node's data (fresh per process with memory storage).
    pub incarnation: Incarnation,
    kinds: RwLock<Kinds>,
    boots: AtomicU64,
    /// Whether the node belongs in the routing table: `config.join`, or
    /// asked to join later ([`NodeContext::set_joining`]).
    joining: AtomicBool,
    /// The master refused this node's data dir: the operator removed it.
    removed: AtomicBool,
    /// The master's reason for that refusal, announced once the data dir
    /// is marked (see [`NodeContext::set_removed`]).
    removal: tokio::sync::watch::Sender<Option<String>>,
    /// Casts still being sent by the dispatcher.
    casts: AtomicUsize,
    /// The masters as this node knows them now (see [`crate::node::masters`]).
    masters: RwLock<Arc<Masters>>,
    /// The node's children now running (see [`NodeChild`]).
    children: Children,
    /// Node ticks so far (the group supervisor counts them; replicas make
    /// up the ticks they were not sent, see [`crate::group::replica`]).
    ticks: AtomicU64,
    /// The node's metrics (`GET /metrics`).
    pub metrics: NodeMetrics,
    /// How the dispatcher's last routing-table refresh ended
    /// ([`crate::NodeHandle::ready`] waits on it).
    pub(crate) refreshed: tokio::sync::watch::Sender<LastRefresh>,
    /// Between the node's start and its stop (`GET /health`).
    running: AtomicBool,
    /// When the context was made (the node's start, for its uptime).
    pub(crate) started: std::time::Instant,
    /// What single concerns keep for the whole node (see `Part`).
    parts: Parts,
}

/// Nanoseconds since the epoch (0 if the clock is before it).
pub(crate) fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl NodeContext {
    /// A context for `config` that hosts `kinds` (see
    /// [`NodeContext::new`], which adds the master's).
    pub(crate) fn with_kinds(config: NodeConfig, kinds: Kinds) -> Arc<Self> {
        let now = wall_nanos();
        let incarnation = config
            .storage
            .incarnation()
            .unwrap_or(Incarnation(now.max(1)));
        let options = MetricsOptions {
            record: config.http.is_some(),
            per_group: config.metrics_per_group,
        };
        let metrics = NodeMetrics::new(config.storage.as_ref(), options);
        let stored = config.data_dir.as_ref().and_then(|d| d.identity().masters);
        let masters = match stored {
            Some(stored) => Masters::stored_over_seeds(stored, &config.masters),
            None => Masters::seeds(&config.masters),
        };
        let ctx = NodeContext {
            kinds: RwLock::new(kinds),
            masters: RwLock::new(Arc::new(masters)),
            joining: AtomicBool::new(config.join),
            removed: AtomicBool::new(false),
            removal: tokio::sync::watch::Sender::new(None),
            config,
            incarnation,
            boots: AtomicU64::new(now),
            casts: AtomicUsize::new(0),
            children: Children::default(),
            ticks: AtomicU64::new(0),
            metrics,
            refreshed: tokio::sync::watch::Sender::new(LastRefresh::NotYet),
            running: AtomicBool::new(false),
            started: std::time::Instant::now(),
            parts: Parts::default(),
        };
        Arc::new(ctx)
    }

    /// Registers server kind `S` (again: replaces the constructor).
    pub fn register<S: PaxosServer>(&self) {
        if let Ok(mut kinds) = self.kinds.write() {
            kinds.insert::<S>();
        }
    }

    /// The constructor of `kind`, if registered.
    pub fn kind(&self, kind: &str) -> Option<MachineFactory> {
        self.kinds.read().ok()?.get(kind)
    }

    /// The node's clock: time since its start, for messages that carry
    /// when they were sent (to measure how long they waited in a mailbox).
    pub fn clock(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// A boot number never used before (see the module documentation).
    pub fn next_boot(&self) -> u64 {
        self.boots.fetch_add(1, Ordering::Relaxed)
    }

    /// The running `child` as an actor of message type `M`, if it runs:
    /// `None` also if `M` is not its message type (the module of each
    /// actor asks with its own, in a typed accessor beside the actor).
    pub(crate) fn actor<M: Message>(&self, child: NodeChild) -> Option<ActorRef<M>> {
        let cell = self.children.0[child as usize].read().ok()?.clone()?;
        (cell.is_message_type_of::<M>() == Some(true)).then(|| cell.into())
    }

    /// The node's value of `T`'s part, made on first use.
    pub(crate) fn part<T: NodePart>(&self) -> &T {
        let value = self.parts.0[T::PART as usize].get_or_init(|| Box::new(T::default()));
        match value.downcast_ref() {
            Some(value) => value,
            None => unreachable!("two types claim {:?} of the node context", T::PART),
        }
    }

    /// Records `cell` as the running `child` (`None`: none runs).
    pub(crate) fn set_actor(&self, child: NodeChild, cell: Option<ActorCell>) {
        if let Ok(mut slot) = self.children.0[child as usize].write() {
            *slot = cell;
        }
    }

    /// Which of the node's children the actor `id` is, if any.
    pub(crate) fn child(&self, id: ActorId) -> Option<NodeChild> {
        NodeChild::ALL.into_iter().find(|&child| {
            let slot = self.children.0[child as usize].read();
            slot.is_ok_and(|cell| cell.as_ref().is_some_and(|c| c.get_id() == id))
        })
    }

    /// The masters as this node knows them now.
    pub fn masters(&self) -> Arc<Masters> {
        self.masters
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Whether this node hosts a member of the master group now.
    pub fn is_master(&self) -> bool {
        self.masters()
            .member_on(self.config.node_id(), self.incarnation)
            .is_some()
    }

    /// Learns the masters `table` shows, if they changed: kept for the
    /// node's requests and written to its data dir, if any, for its next
    /// start. Returns whether they changed.
    pub(crate) fn learn_masters(&self, table: &dike_core::routing::RoutingTable) -> bool {
        let Some(next) = self.masters().learned(table) else {
            return false;
        };
        tracing::info!(epoch = next.config.epoch, masters = ?next.specs.iter().map(ToString::to_string).collect::<Vec<_>>(), "the masters changed");
        if let Some(dir) = &self.config.data_dir {
            if let Err(e) = dir.record_masters(&next) {
                tracing::warn!(dir = %dir.path().display(), "cannot record the masters: {e}");
            }
        }
        if let Ok(mut m) = self.masters.write() {
            *m = Arc::new(next);
        }
        true
    }

    /// Whether the node should be in the routing table and host replicas.
    pub fn joining(&self) -> bool {
        self.joining.load(Ordering::Relaxed)
    }

    /// From now on the node belongs in the routing table: the dispatcher
    /// re-joins it after a restart and starts the replicas assigned to it.
    pub(crate) fn set_joining(&self) {
        self.joining.store(true, Ordering::Relaxed);
    }

    /// Records in the data dir, if any, that the node has joined, so it
    /// re-joins by itself after a restart. A failure is logged: the node
    /// is joined all the same, only a restart would need `--join` again.
    pub(crate) fn record_joined(&self) {
        let Some(dir) = &self.config.data_dir else {
            return;
        };
        match dir.record_joined() {
            Ok(true) => {
                tracing::info!(dir = %dir.path().display(), "joined; recorded in the data dir")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(dir = %dir.path().display(), "cannot record the join: {e}"),
        }
    }

    /// Whether the master refused this node because the operator removed
    /// it from the cluster: it does not try to join again (and, out of the
    /// table, it is assigned no replica: its dispatcher stops them all).
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// Waits until the node learns that the operator removed it from the
    /// cluster; the master's reason (see [`crate::NodeHandle::removed`]).
    pub(crate) async fn wait_removed(&self) -> String {
        let mut removal = self.removal.subscribe();
        let reason = match removal.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The sender lives as long as the context, which `self` holds.
            Err(_) => std::future::pending().await,
        };
        reason
    }

    /// Records that the operator removed this node from the cluster
    /// (`reason` is the master's refusal): the node stops trying to join,
    /// and its data dir, if any, is marked so the next start is refused.
    /// The mark is written before the removal is logged or announced, so
    /// whoever sees either and stops the node finds the dir marked. Done
    /// once.
    pub(crate) fn set_removed(&self, reason: &str) {
        if self.removed.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(dir) = &self.config.data_dir {
            if let Err(e) = dir.record_removed() {
                tracing::warn!(dir = %dir.path().display(), "cannot record the removal: {e}");
            }
        }
        tracing::error!("{reason}");
        self.removal.send_replace(Some(reason.to_owned()));
    }

    /// Whether the node runs (started and not stopping).
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    pub(crate) fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    /// Casts the dispatcher is still sending (see `DispatcherMsg::Cast`).
    pub fn casts_in_flight(&self) -> usize {
        self.casts.load(Ordering::Relaxed)
    }

    /// Counts one cast in flight until the guard is dropped.
    pub(crate) fn cast_started(self: &Arc<Self>) -> CastGuard {
        self.casts.fetch_add(1, Ordering::Relaxed);
        CastGuard(self.clone())
    }

    /// Node ticks so far.
    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Acquire)
    }

    /// Counts one more node tick; returns the count. The group supervisor
    /// calls it on each tick of the node's ticker; a benchmark that hosts
    /// replicas without a node stands in for it.
    pub fn count_tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// One cast in flight; dropping it ends the count.
pub(crate) struct CastGuard(Arc<NodeContext>);

impl Drop for CastGuard {
    fn drop(&mut self) {
        self.0.casts.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_context_names_no_module_of_the_actors_above_it() {
        let source = include_str!("context.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        let above = [
            "crate::cluster",
            "crate::group",
            "crate::routing",
            "crate::master",
        ];
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            assert!(
                !above.iter().any(|m| line.contains(m)),
                "node/context.rs names an actor's module: {line}"
            );
        }
    }
}
