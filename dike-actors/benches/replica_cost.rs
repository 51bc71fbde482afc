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
//! - `driven, …`: groups of 5 replicas all hosted in this process (five
//!   members of this node), driven as the scale benchmark drives its
//!   groups, then some writes: the live heap per replica once spawned,
//!   once each group elected a leader and answered one query, after
//!   `DIKE_BENCH_WRITES` writes to each group, and once every replica
//!   hibernates. A stand-in for the group supervisor ticks the node
//!   every `TICK` (faster than a node's 50 ms: only the count matters).
//!
//! `cargo bench -p dike-actors --bench replica_cost`
//! Environment: `DIKE_BENCH_REPLICAS` (default 2000) for the first three
//! parts, `DIKE_BENCH_GROUPS` (default 400, five replicas each) and
//! `DIKE_BENCH_WRITES` (default 20) for the driven ones;
//! `DIKE_BENCH_SLEEP_SNAPSHOT` sets `hibernate_snapshot_slots` (default:
//! the runtime's, 16; 0 keeps every slot while asleep).

use dike_actors::cluster::wire::{self, ClientReply, ClientRequest, ReplicaMsg, ReplyError};
use dike_actors::counter::{Counter, CounterRequest};
use dike_actors::group::replica::{Assignment, NextTick, ReplicaActor, ReplicaArgs};
use dike_actors::node::context::NodeContext;
use dike_actors::NodeConfig;
use dike_core::{
    codec, ClientId, Command, Config, MemberId, PaxosServer, ReplicaOptions, RequestError,
};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    // `DIKE_BENCH_SLEEP_SNAPSHOT=0` measures replicas that keep their log
    // asleep (as before `hibernate_snapshot_slots`).
    let builder = match std::env::var("DIKE_BENCH_SLEEP_SNAPSHOT") {
        Ok(v) => builder.replica_options(ReplicaOptions {
            hibernate_snapshot_slots: v.parse().expect("DIKE_BENCH_SLEEP_SNAPSHOT: slots"),
            ..dike_actors::node::config::runtime_replica_options()
        }),
        Err(_) => builder,
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
    let groups = env("DIKE_BENCH_GROUPS", 400);
    let writes = env("DIKE_BENCH_WRITES", 20) as u64;
    driven(groups, writes, None, "memory storage", "dmem").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    driven(groups, writes, Some(dir.path()), "node log", "dlog").await;
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The members of every driven group: five of this node.
const MEMBERS: u64 = 5;

/// How often the stand-in ticks the node.
const TICK: Duration = Duration::from_millis(5);

/// One hosted replica, as its supervisor knows it.
struct Hosted {
    actor: ActorRef<ReplicaMsg>,
    handle: tokio::task::JoinHandle<()>,
    next_tick: Arc<NextTick>,
}

/// `groups` groups of [`MEMBERS`] replicas here, driven through an
/// election, one query and `writes` commands each, then left to hibernate;
/// prints the live heap per replica after each step.
async fn driven(
    groups: usize,
    writes: u64,
    dir: Option<&std::path::Path>,
    storage: &str,
    prefix: &str,
) {
    let ctx = context(dir);
    let node = ctx.config.node_id().0;
    let voters: Vec<MemberId> = (1..=MEMBERS).map(|i| MemberId::new(node, i)).collect();
    let name = |g: usize| format!("{prefix}-{g}");
    let start = LIVE.load(Ordering::Relaxed);
    let mut hosted = Vec::new();
    for g in 0..groups {
        for &member in &voters {
            let next_tick = Arc::new(NextTick::now());
            let args = ReplicaArgs {
                ctx: ctx.clone(),
                assignment: Assignment {
                    group: name(g),
                    kind: Counter::KIND.into(),
                    member,
                    generation: 1,
                    config: Config::initial(voters.clone()),
                },
                next_tick: next_tick.clone(),
            };
            let (actor, handle) = Actor::spawn(
                Some(wire::replica_name(&name(g), 1, member)),
                ReplicaActor,
                args,
            )
            .await
            .expect("a replica starts");
            hosted.push(Hosted {
                actor,
                handle,
                next_tick,
            });
        }
    }
    let replicas = hosted.len();
    let per_replica = |what: &str| {
        let bytes = (LIVE.load(Ordering::Relaxed) - start) as f64 / replicas as f64;
        report(&format!("driven, {storage}: {what}"), replicas, bytes);
    };
    per_replica("spawned");
    let hosted = Arc::new(hosted);
    let ticking = Arc::new(AtomicBool::new(true));
    let ticker = tokio::spawn(ticks(ctx.clone(), hosted.clone(), ticking.clone()));

    let requests = |make: fn(usize, u64) -> ClientRequest, count: u64| {
        let hosted = hosted.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for g in 0..groups {
                let members: Vec<ActorRef<ReplicaMsg>> = (0..MEMBERS as usize)
                    .map(|m| hosted[g * MEMBERS as usize + m].actor.clone())
                    .collect();
                tasks.spawn(async move {
                    for seq in 1..=count {
                        until_answered(&members, &make(g, seq)).await;
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("a group's requests");
            }
        }
    };
    requests(|_, _| query(), 1).await;
    per_replica("elected, one query answered");
    requests(
        |g, seq| {
            let add = codec::encode("add", &CounterRequest::Add(1)).expect("encodes");
            ClientRequest::Command(Command::new(ClientId(g as u64 + 1), seq, add))
        },
        writes,
    )
    .await;
    per_replica(&format!("after {writes} writes"));
    while !all_hibernate(&hosted).await {
        tokio::time::sleep(TICK * 10).await;
    }
    per_replica("hibernating");
    ticking.store(false, Ordering::Relaxed);
    ticker.await.expect("the ticker");
    let hosted = Arc::try_unwrap(hosted).ok().expect("the only owner");
    for h in hosted {
        h.actor.stop(None);
        h.handle.await.expect("stopped");
    }
}

fn query() -> ClientRequest {
    ClientRequest::Query(codec::encode("get", &CounterRequest::Get).expect("encodes"))
}

/// What the group supervisor does on each node tick: counts it and sends
/// it to the replicas it is due for.
async fn ticks(ctx: Arc<NodeContext>, hosted: Arc<Vec<Hosted>>, ticking: Arc<AtomicBool>) {
    while ticking.load(Ordering::Relaxed) {
        let tick = ctx.count_tick();
        let at = u64::try_from(ctx.clock().as_nanos()).unwrap_or(u64::MAX);
        for h in hosted.iter().filter(|h| h.next_tick.due(tick)) {
            let _ = h.actor.cast(ReplicaMsg::Tick(at));
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Sends `request` to the group's members, following leader hints, until
/// one answers it.
async fn until_answered(members: &[ActorRef<ReplicaMsg>], request: &ClientRequest) {
    let bytes = codec::encode("request", request).expect("encodes");
    let mut to = 0;
    loop {
        let payload = bytes.clone();
        let answer = members[to]
            .call(
                |port| ReplicaMsg::Request(payload, port),
                Some(Duration::from_secs(5)),
            )
            .await;
        let reply = match answer {
            Ok(CallResult::Success(reply)) => {
                codec::decode::<ClientReply>("reply", &reply).expect("a reply")
            }
            _ => panic!("replica {to} did not answer"),
        };
        match reply {
            Ok(_) => return,
            Err(ReplyError::Request(RequestError::NotLeader { leader: Some(l) })) => {
                to = (l.incarnation.0 - 1) as usize;
            }
            Err(_) => {
                // No leader yet (or busy): the next member, a tick later.
                to = (to + 1) % members.len();
                tokio::time::sleep(TICK).await;
            }
        }
    }
}

/// Whether every replica says it hibernates.
async fn all_hibernate(hosted: &[Hosted]) -> bool {
    for h in hosted {
        let status = h
            .actor
            .call(
                |port| ReplicaMsg::Status(false, port),
                Some(Duration::from_secs(5)),
            )
            .await;
        let Ok(CallResult::Success(bytes)) = status else {
            panic!("a replica did not answer its status");
        };
        let status: wire::ReplicaStatus = codec::decode("status", &bytes).expect("a status");
        if status.hibernating != Some(true) {
            return false;
        }
    }
    true
}
