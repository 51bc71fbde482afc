//! What one hosted replica costs in memory, by part: the heap bytes that
//! stay allocated per replica once N of them run in one process, counted
//! by a global allocator that tracks live bytes (exact, unlike RSS).
//!
//! - `ractor actor`: a named actor with the replica's message type that
//!   does nothing, in a process group like a replica: what ractor itself
//!   costs (mailboxes, task, registry and group entries).
//! - `replica, memory storage`: a real [`ReplicaActor`] of a 5-member
//!   `counter` group (this node's member and four elsewhere) that has not
//!   heard from the others, on in-memory storage.
//! - `replica, node log`: the same on the durable node log in a temporary
//!   directory, as `dike node --data-dir` runs it.
//!
//! `cargo bench -p dike-actors --bench replica_cost`
//! Environment: `DIKE_BENCH_REPLICAS` (default 2000) per part.

use dike_actors::cluster::wire::{self, ReplicaMsg};
use dike_actors::counter::Counter;
use dike_actors::group::replica::{Assignment, NextTick, ReplicaActor, ReplicaArgs};
use dike_actors::node::context::NodeContext;
use dike_actors::NodeConfig;
use dike_core::{Config, MemberId, PaxosServer};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only a counter is
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// An actor with the replica's message type that does nothing.
struct Idle;

impl Actor for Idle {
    type Msg = ReplicaMsg;
    type State = ();
    type Arguments = String;

    async fn pre_start(
        &self,
        myself: ActorRef<ReplicaMsg>,
        group: String,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(wire::group_pg(&group), vec![myself.get_cell()]);
        Ok(())
    }
}

/// The node context of the replicas: `dir` for the node log, else memory.
fn context(dir: Option<&std::path::Path>) -> std::sync::Arc<NodeContext> {
    let addr = "127.0.0.1:1".parse().expect("an address");
    let builder = NodeConfig::builder("cost", addr)
        .cookie("c")
        .master("other@127.0.0.1:2");
    let builder = match dir {
        Some(d) => builder.data_dir(d),
        None => builder.in_memory(),
    };
    let ctx = NodeContext::new(builder.build().expect("a config"));
    ctx.register::<Counter>();
    ctx
}

/// Live heap bytes per item after `spawn`ing `n` items (and letting them
/// settle), with what they return kept alive until measured.
async fn per_item<T, F, Fut>(n: usize, mut spawn: F) -> (f64, Vec<T>)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let before = LIVE.load(Ordering::Relaxed);
    let mut kept = Vec::with_capacity(n);
    for i in 0..n {
        kept.push(spawn(i).await);
    }
    // Let started tasks reach their first wait.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let after = LIVE.load(Ordering::Relaxed);
    ((after - before) as f64 / n as f64, kept)
}

async fn replicas(n: usize, dir: Option<&std::path::Path>, part: &str, prefix: &str) {
    let ctx = context(dir);
    let me = MemberId::new(ctx.config.node_id().0, ctx.incarnation.0);
    let others = (1..=4).map(|i| MemberId::new(1_000 + i, 1));
    let voters: Vec<MemberId> = std::iter::once(me).chain(others).collect();
    let (bytes, kept) = per_item(n, |i| {
        let args = ReplicaArgs {
            ctx: ctx.clone(),
            assignment: Assignment {
                group: format!("{prefix}-{i}"),
                kind: Counter::KIND.into(),
                member: me,
                generation: 1,
                config: Config::initial(voters.clone()),
            },
            next_tick: Arc::new(NextTick::now()),
        };
        let name = wire::replica_name(&args.assignment.group, 1, me);
        async move {
            Actor::spawn(Some(name), ReplicaActor, args)
                .await
                .expect("a replica starts")
        }
    })
    .await;
    report(part, n, bytes);
    stop(kept).await;
}

async fn stop<M: ractor::Message>(actors: Vec<(ActorRef<M>, tokio::task::JoinHandle<()>)>) {
    for (actor, handle) in actors {
        actor.stop(None);
        handle.await.expect("stopped");
    }
}

fn report(part: &str, n: usize, bytes: f64) {
    println!("| {part} | {n} | {:.1} |", bytes / 1024.0);
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("DIKE_BENCH_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!("| part | replicas | live heap KiB per replica |");
    println!("|---|---|---|");
    let (bytes, kept) = per_item(n, |i| async move {
        let name = format!("idle-{i}");
        Actor::spawn(Some(name), Idle, format!("idle-{i}"))
            .await
            .expect("an actor starts")
    })
    .await;
    report("ractor actor", n, bytes);
    stop(kept).await;
    replicas(n, None, "replica, memory storage", "mem").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    replicas(n, Some(dir.path()), "replica, node log", "log").await;
}
