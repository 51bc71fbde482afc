//! The scenarios of the original Dike (Erlang) test suite, on real `dike
//! node` processes (issue 7, item 4). See docs/TESTING.md.
//!
//! - [`eleven_nodes_agree_on_parallel_arithmetic_and_survive_two_stopped_replicas`]:
//!   5 masters and 6 more nodes join (a second join answers "already
//!   known"); an arithmetic group lands on 5 distinct nodes; rounds of 5
//!   parallel random operations, each round checked against the model (some
//!   order of the round's operations explains every reply and the value read
//!   after it); 2 of the group's replicas are stopped, rounds go on; they come
//!   back and every replica reaches the same applied index.
//! - [`a_hash_ring_keeps_every_acknowledged_write_across_a_join_and_a_graceful_restart`]
//!   and [`a_hash_ring_keeps_every_acknowledged_write_across_a_join_and_a_kill_9`]:
//!   16 `kv` groups (`vnode-1..16`) on 5 nodes; 50 parallel clients with
//!   their own keys, every reply compared with a per-key model; a sixth node
//!   joins mid-load and groups must move to it; one node is restarted
//!   (SIGTERM, or SIGKILL) under load; more operations; every group's
//!   replicas agree; casts to random groups; they agree again and
//!   every key reads as the model says; then every node goes down the same
//!   way at once and restarts from its data, and every key still reads as
//!   the model says.
//! - [`a_single_node_ring_keeps_every_acknowledged_write_across_a_kill_9`]:
//!   the same on one node that is its own master (groups of one replica),
//!   killed and restarted from its data directory.
//!
//! Size: `DIKE_SCENARIO_SCALE` multiplies the operation counts; the
//! original numbers (100 rounds, 50 × 100 and 50 × 300 operations) are
//! scale 1, the default:
//!
//! ```sh
//! cargo test -p integration --test original_suite            # scale 1
//! DIKE_SCENARIO_SCALE=0.2 cargo test -p integration --test original_suite
//! DIKE_SCENARIO_SEED=7 cargo test -p integration --test original_suite  # replay a seed
//! ```
//!
//! The tests take [`one_at_a_time`]: each runs its cluster alone. A failing
//! test names the group, key or member that disagreed and keeps the
//! cluster's logs and data (the path is printed).

use dike_actors::DikeError;
use dike_examples::kv::{vnode_for, vnodes, KvReply, KvRequest, KvServer};
use dike_examples::{Arithmetic, ArithmeticReply, ArithmeticRequest};
use integration::{one_at_a_time, Client, Cluster, NotYet, Storage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Forming a cluster, electing, catching up: generous, the machine is shared.
const WITHIN: Duration = Duration::from_secs(90);
/// A request's deadline (retries included): long enough that a request
/// spanning an election or a restart is answered rather than timed out.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long groups may take to move to a node that joined.
const MOVE_WITHIN: Duration = Duration::from_secs(30);
const VNODES: u32 = 16;
/// How long one phase of the ring's clients may take (times the scale).
const PHASE_WITHIN: Duration = Duration::from_secs(150);
/// Failed requests a phase tolerates before it stops as unavailable.
const MAX_FAILED: usize = 20;
const CLIENTS: usize = 50;
const KEYS_PER_CLIENT: usize = 8;

/// The value of the `calc` group, read once it answers.
async fn read_calc(client: &Client) -> i64 {
    client
        .wait_until(WITHIN, "calc answers a read", || async {
            Ok(client
                .group::<Arithmetic>("calc")
                .query(ArithmeticRequest::Read)
                .await??)
        })
        .await
}

fn scale() -> f64 {
    std::env::var("DIKE_SCENARIO_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0)
}

/// `full` scaled, at least 1.
fn scaled(full: usize) -> usize {
    ((full as f64 * scale()).round() as usize).max(1)
}

fn seed() -> u64 {
    let seed = std::env::var("DIKE_SCENARIO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("DIKE_SCENARIO_SEED={seed} (scale {})", scale());
    seed
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------
// Arithmetic on eleven nodes
// ---------------------------------------------------------------------------

fn random_op(rng: &mut StdRng) -> ArithmeticRequest {
    match rng.random_range(0..4) {
        0 => ArithmeticRequest::Add(rng.random_range(1..=20)),
        1 => ArithmeticRequest::Sub(rng.random_range(1..=20)),
        2 => ArithmeticRequest::Mult(rng.random_range(2..=3)),
        _ => ArithmeticRequest::Div(rng.random_range(2..=3)),
    }
}

/// An order of `ops` (each with the reply it got) that, applied to `start`,
/// gives every op its reply and ends at `end`; `None` if there is none.
fn explaining_order(
    start: i64,
    ops: &[(ArithmeticRequest, ArithmeticReply)],
    end: i64,
) -> Option<Vec<usize>> {
    fn search(
        value: i64,
        ops: &[(ArithmeticRequest, ArithmeticReply)],
        used: &mut Vec<usize>,
        end: i64,
    ) -> bool {
        if used.len() == ops.len() {
            return value == end;
        }
        for i in 0..ops.len() {
            if used.contains(&i) {
                continue;
            }
            let (op, reply) = ops[i];
            if Arithmetic::compute(value, op) != reply {
                continue;
            }
            used.push(i);
            if search(reply.unwrap_or(value), ops, used, end) {
                return true;
            }
            used.pop();
        }
        false
    }
    let mut used = Vec::new();
    search(start, ops, &mut used, end).then_some(used)
}

#[test]
fn an_order_explains_concurrent_replies_or_none_does() {
    use ArithmeticRequest::*;
    // Add(2) then Mult(3) from 1: replies 3 and 9.
    let ops = [(Mult(3), Ok(9)), (Add(2), Ok(3))];
    assert_eq!(explaining_order(1, &ops, 9), Some(vec![1, 0]));
    // An Add applied twice would end at 11: no order explains it.
    assert_eq!(explaining_order(1, &ops, 11), None);
    assert_eq!(
        explaining_order(1, &[(Div(0), Arithmetic::compute(1, Div(0)))], 1),
        Some(vec![0])
    );
}

/// Runs `rounds` rounds of `members` parallel random operations on `calc`,
/// each round checked against the model; returns the value after the last.
async fn arithmetic_rounds(
    client: &Arc<Client>,
    rng: &mut StdRng,
    mut value: i64,
    rounds: usize,
    members: usize,
    phase: &str,
) -> i64 {
    for round in 0..rounds {
        let ops: Vec<ArithmeticRequest> = (0..members).map(|_| random_op(rng)).collect();
        let tasks: Vec<_> = ops
            .iter()
            .map(|op| {
                let (client, op) = (client.clone(), *op);
                tokio::spawn(async move { client.group::<Arithmetic>("calc").call(op).await })
            })
            .collect();
        let mut answered = Vec::new();
        for (op, task) in ops.iter().zip(tasks) {
            match task.await.expect("a client task") {
                Ok(reply) => answered.push((*op, reply)),
                Err(e) => panic!("{phase}, round {round}: {op:?} failed: {e}"),
            }
        }
        let read = read_calc(client).await;
        assert!(
            explaining_order(value, &answered, read).is_some(),
            "{phase}, round {round}: no order of {answered:?} from {value} reads {read}: \
             an operation was lost, applied twice or answered wrongly"
        );
        value = read;
    }
    value
}

/// The highest applied slot any replica of `group` reports (the
/// leader's, as far as the replicas know).
async fn highest_applied(client: &Client, group: &str) -> u64 {
    client
        .replica_statuses(group)
        .await
        .expect("table")
        .into_iter()
        .filter_map(|(_, s)| s.ok())
        .map(|s| s.applied)
        .max()
        .unwrap_or(0)
}

/// The value of `calc` read through the leader, and every replica's
/// applied index once all agree.
async fn assert_calc_replicas_agree(client: &Client, expected: i64, what: &str) -> u64 {
    let leader_applied = highest_applied(client, "calc").await;
    let applied = client
        .wait_for_replicas_to_agree("calc", leader_applied, WITHIN)
        .await;
    let read = client
        .group::<Arithmetic>("calc")
        .query(ArithmeticRequest::Read)
        .await
        .expect("read")
        .expect("a value");
    assert_eq!(
        read, expected,
        "{what}: calc reads {read}, the model says {expected}"
    );
    applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_nodes_agree_on_parallel_arithmetic_and_survive_two_stopped_replicas() {
    let _serial = one_at_a_time().await;
    init_tracing();
    let mut rng = StdRng::seed_from_u64(seed());
    let started = Instant::now();
    let mut cluster = Cluster::builder("arith").masters(5).nodes(11).start();
    let client = Arc::new(Client::connect_with(&cluster, REQUEST_TIMEOUT).await);
    let table = client.wait_for_live_nodes(&cluster.names(), WITHIN).await;
    assert_eq!(table.nodes.len(), 11, "5 masters and 6 nodes joined");

    // Joining again is answered "already known" and changes nothing.
    let joiner = table
        .node(cluster.node_id(5))
        .expect("in the table")
        .clone();
    let again = client.join_as(&joiner).await.expect("the master answers");
    assert_eq!(
        again,
        dike_actors::JoinOutcome::AlreadyKnown(joiner.clone())
    );
    let after = client.routing_table().await.expect("table");
    assert_eq!(after.nodes.len(), 11);
    assert_eq!(after.node(joiner.id), Some(&joiner));

    let group = client
        .wait_until(WITHIN, "group calc is created", || async {
            Ok(client.add_group_sized::<Arithmetic>("calc", 5).await?)
        })
        .await;
    let hosts: BTreeSet<_> = group.config.voters.iter().map(|m| m.node).collect();
    assert_eq!(hosts.len(), 5, "5 replicas on 5 distinct nodes: {group:?}");
    read_calc(&client).await;
    eprintln!("cluster formed in {:?}", started.elapsed());

    let rounds = scaled(100);
    let t = Instant::now();
    let value = arithmetic_rounds(&client, &mut rng, 0, rounds, 5, "all replicas up").await;
    eprintln!("{rounds} rounds in {:?}", t.elapsed());
    let applied = assert_calc_replicas_agree(&client, value, "after the rounds").await;

    // Stop two replicas (the leader among them) gracefully; rounds go on.
    let statuses = client.replica_statuses("calc").await.expect("statuses");
    let leader = statuses
        .iter()
        .find_map(|(_, s)| s.as_ref().ok().and_then(|s| s.leader))
        .expect("calc has a leader");
    let other = *group
        .config
        .voters
        .iter()
        .find(|m| **m != leader)
        .expect("a follower");
    let stopped: Vec<usize> = [leader, other]
        .iter()
        .map(|m| cluster.index_of(m.node).expect("a cluster node"))
        .collect();
    for &i in &stopped {
        let status = cluster.stop(i);
        assert!(
            status.success(),
            "{} exits cleanly: {status}",
            cluster.name(i)
        );
    }
    eprintln!(
        "stopped {:?} (leader {leader})",
        stopped.iter().map(|i| cluster.name(*i)).collect::<Vec<_>>()
    );
    let value = arithmetic_rounds(
        &client,
        &mut rng,
        value,
        scaled(50),
        5,
        "2 replicas stopped",
    )
    .await;

    // They come back on their data and catch up with the rest.
    for &i in &stopped {
        cluster.start(i);
    }
    client.wait_for_live_nodes(&cluster.names(), WITHIN).await;
    let final_applied = assert_calc_replicas_agree(&client, value, "after the restart").await;
    assert!(
        final_applied > applied,
        "the rounds with 2 replicas stopped were applied"
    );
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
    eprintln!("arithmetic scenario done in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// The hash ring
// ---------------------------------------------------------------------------

/// How the ring scenario takes a node down before restarting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    /// SIGTERM and a clean exit.
    Stop,
    /// SIGKILL.
    Kill,
}

impl Crash {
    /// Takes node `i` down this way (a graceful stop must exit cleanly).
    fn bring_down(self, cluster: &mut Cluster, i: usize) {
        match self {
            Crash::Stop => {
                let status = cluster.stop(i);
                assert!(
                    status.success(),
                    "{} exits cleanly: {status}",
                    cluster.name(i)
                );
            }
            Crash::Kill => cluster.kill(i),
        }
    }
}

/// What one client knows about its own keys (it is their only writer).
#[derive(Debug, Default)]
struct Model {
    /// The value every key must have (`None`: absent).
    values: BTreeMap<String, Option<String>>,
    /// Keys whose request failed: it may or may not have been applied, so
    /// they are no longer checked.
    unsure: BTreeSet<String>,
    acknowledged: usize,
}

fn key(client: usize, k: usize) -> String {
    format!("c{client}-key{k}")
}

/// A random operation on one of `client`'s keys, given the model.
fn random_kv_op(rng: &mut StdRng, client: usize, model: &Model, serial: u64) -> KvRequest {
    let k = key(client, rng.random_range(0..KEYS_PER_CLIENT));
    let value = format!("v{client}-{serial}");
    match rng.random_range(0..10) {
        0..=2 => KvRequest::Get(k),
        3..=5 => KvRequest::Put(k, value),
        6 => KvRequest::Delete(k),
        7..=8 => {
            // A compare-and-set that should apply.
            let expect = model.values.get(&k).cloned().flatten();
            KvRequest::Cas {
                key: k,
                expect,
                new: Some(value),
            }
        }
        _ => {
            // One that should not (a value never written).
            KvRequest::Cas {
                key: k,
                expect: Some("never".into()),
                new: Some(value),
            }
        }
    }
}

/// The reply the model expects for `req`, and the model after it.
fn expect_kv(values: &mut BTreeMap<String, Option<String>>, req: &KvRequest) -> KvReply {
    let slot = values.entry(req.key().to_owned()).or_insert(None);
    let current = slot.clone();
    match req {
        KvRequest::Get(_) => KvReply::Value(current),
        KvRequest::Put(_, v) => {
            *slot = Some(v.clone());
            KvReply::Value(current)
        }
        KvRequest::Delete(_) => {
            *slot = None;
            KvReply::Value(current)
        }
        KvRequest::Cas { expect, new, .. } => {
            if current == *expect {
                slot.clone_from(new);
                KvReply::Cas(Ok(current))
            } else {
                KvReply::Cas(Err(current))
            }
        }
    }
}

/// One client's `ops` sequential operations on its keys; every reply of a
/// key not marked unsure must be what the model says. `done` counts
/// operations of all clients.
async fn kv_client(
    client: Arc<Client>,
    id: usize,
    mut model: Model,
    ops: usize,
    seed: u64,
    progress: Arc<Progress>,
    phase: &'static str,
) -> (usize, Model) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for n in 0..ops {
        let serial = rng.random();
        let req = random_kv_op(&mut rng, id, &model, serial);
        let group = vnode_for(req.key(), VNODES);
        progress.now(id, format!("op {n}: {req:?} on {group}"));
        let handle = client.group::<KvServer>(&group);
        // Half the reads are read-index queries, half go through the log.
        let reply = if matches!(req, KvRequest::Get(_)) && rng.random_bool(0.5) {
            handle.query(req.clone()).await
        } else {
            handle.call(req.clone()).await
        };
        progress.done.fetch_add(1, Ordering::Relaxed);
        let key = req.key().to_owned();
        match reply {
            Ok(reply) => {
                model.acknowledged += 1;
                let expected = expect_kv(&mut model.values, &req);
                assert!(
                    model.unsure.contains(&key) || reply == expected,
                    "{phase}: client {id}, op {n}: {req:?} on {group} answered {reply:?}, \
                     the model says {expected:?}"
                );
            }
            Err(e) => {
                let failed = progress.failed.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!("{phase}: client {id}, op {n}: {req:?} on {group} failed: {e}");
                assert!(
                    failed <= MAX_FAILED,
                    "{phase}: {failed} requests failed; the last: client {id}, op {n}: \
                     {req:?} on {group}: {e}"
                );
                model.unsure.insert(key);
            }
        }
    }
    progress.now(id, "finished".into());
    (id, model)
}

/// What the clients of a phase are doing, for the message of a phase that
/// does not finish in time.
struct Progress {
    done: AtomicUsize,
    failed: AtomicUsize,
    current: std::sync::Mutex<Vec<String>>,
}

impl Progress {
    fn new(clients: usize) -> Progress {
        Progress {
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            current: std::sync::Mutex::new(vec![String::new(); clients]),
        }
    }

    fn now(&self, client: usize, what: String) {
        if let Ok(mut c) = self.current.lock() {
            c[client] = what;
        }
    }

    fn unfinished(&self) -> String {
        let c = self.current.lock().map(|c| c.clone()).unwrap_or_default();
        c.iter()
            .enumerate()
            .filter(|(_, w)| w.as_str() != "finished")
            .map(|(i, w)| format!("client {i}: {w}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `ops` operations on each of the clients' models in parallel (one
/// task per client); `during` runs in this task meanwhile, with the
/// clients' progress. Returns the models, in client order.
async fn kv_phase<F, Fut>(
    client: &Arc<Client>,
    models: Vec<Model>,
    ops: usize,
    seed: u64,
    phase: &'static str,
    during: F,
) -> Vec<Model>
where
    F: FnOnce(Arc<Progress>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let progress = Arc::new(Progress::new(models.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (id, model) in models.into_iter().enumerate() {
        let (client, progress) = (client.clone(), progress.clone());
        tasks.spawn(kv_client(client, id, model, ops, seed, progress, phase));
    }
    during(progress.clone()).await;
    let deadline = tokio::time::Instant::now() + PHASE_WITHIN.mul_f64(scale().max(1.0));
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok(m))) => out.push(m),
            Ok(Some(Err(e))) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Some(Err(e))) => panic!("{phase}: a client task ended: {e}"),
            Err(_) => panic!(
                "{phase}: not finished within {PHASE_WITHIN:?}; {} operations done, {} failed; \
                 unfinished clients:\n{}",
                progress.done.load(Ordering::Relaxed),
                progress.failed.load(Ordering::Relaxed),
                progress.unfinished()
            ),
        }
    }
    out.sort_by_key(|(id, _)| *id);
    let out: Vec<Model> = out.into_iter().map(|(_, m)| m).collect();
    let total = out.len() * ops;
    let unsure: usize = out.iter().map(|m| m.unsure.len()).sum();
    eprintln!(
        "{phase}: {total} operations in {:?}; keys unsure after a failed request: {unsure}",
        started.elapsed()
    );
    out
}

/// Waits until the phase's clients did `n` operations.
async fn wait_for_ops(client: &Client, progress: &Progress, n: usize) {
    let done = &progress.done;
    let what = format!("{n} operations are done");
    client
        .wait_until(WITHIN, &what, || async {
            let d = done.load(Ordering::Relaxed);
            if d >= n {
                Ok(())
            } else {
                Err(NotYet::from(format!("{d} done")))
            }
        })
        .await;
}

/// Every group's replicas applied the same slots, and every key every
/// client is sure of reads as its model says (read-index queries at the
/// leader).
async fn assert_ring_agrees(client: &Client, models: &[Model], what: &str) {
    for group in vnodes(VNODES) {
        let leader_applied = highest_applied(client, &group).await;
        client
            .wait_for_replicas_to_agree(&group, leader_applied, WITHIN)
            .await;
    }
    for (id, model) in models.iter().enumerate() {
        for (key, expected) in &model.values {
            if model.unsure.contains(key) {
                continue;
            }
            let group = vnode_for(key, VNODES);
            let got = client
                .group::<KvServer>(&group)
                .query(KvRequest::Get(key.clone()))
                .await
                .unwrap_or_else(|e| panic!("{what}: reading {key} on {group}: {e}"));
            assert_eq!(
                got,
                KvReply::Value(expected.clone()),
                "{what}: client {id}'s key {key} on {group}"
            );
        }
    }
}

/// The groups of the ring that have a replica on node `id`.
async fn groups_on(client: &Client, id: dike_core::NodeId) -> Result<Vec<String>, DikeError> {
    let t = client.routing_table().await?;
    Ok(t.groups_on(id).map(|g| g.name.clone()).collect())
}

struct Ring {
    test: &'static str,
    masters: usize,
    nodes: usize,
    group_size: usize,
    crash: Crash,
    join: bool,
}

async fn ring_scenario(ring: Ring) {
    let _serial = one_at_a_time().await;
    init_tracing();
    let seed = seed();
    let started = Instant::now();
    let mut cluster = Cluster::builder(ring.test)
        .masters(ring.masters)
        .nodes(ring.nodes)
        .storage(Storage::Durable)
        .start();
    let client = Arc::new(Client::connect_with(&cluster, REQUEST_TIMEOUT).await);
    client.wait_for_live_nodes(&cluster.names(), WITHIN).await;
    for group in vnodes(VNODES) {
        let what = format!("{group} is created");
        client
            .wait_until(WITHIN, &what, || async {
                Ok(client
                    .add_group_sized::<KvServer>(&group, ring.group_size)
                    .await?)
            })
            .await;
    }
    for group in vnodes(VNODES) {
        let what = format!("{group} answers");
        client
            .wait_until(WITHIN, &what, || async {
                Ok(client
                    .group::<KvServer>(&group)
                    .query(KvRequest::Get("-".into()))
                    .await?)
            })
            .await;
    }
    eprintln!(
        "{}: ring of {VNODES} formed in {:?}",
        ring.test,
        started.elapsed()
    );

    // Phase A, with a node joining halfway.
    let ops_a = scaled(100);
    let models = (0..CLIENTS).map(|_| Model::default()).collect();
    let mut joined = None;
    let (cluster_ref, joined_ref, client_ref) = (&mut cluster, &mut joined, &client);
    let models = kv_phase(
        &client,
        models,
        ops_a,
        seed,
        "phase A",
        move |done| async move {
            if ring.join {
                wait_for_ops(client_ref, &done, CLIENTS * ops_a / 2).await;
                *joined_ref = Some(cluster_ref.add_node());
            }
        },
    )
    .await;

    // Groups must move to the new node: master-driven rebalancing. Checked
    // here, reported at the end, so the rest of the scenario still runs.
    let mut moved = Ok(());
    if let Some(new) = joined {
        let names = cluster.names();
        client.wait_for_live_nodes(&names, WITHIN).await;
        let id = cluster.node_id(new);
        let r = integration::wait::poll_until(MOVE_WITHIN, || async {
            let groups = groups_on(&client, id).await?;
            if groups.is_empty() {
                Err(NotYet::from("no group has a replica on it"))
            } else {
                Ok(groups)
            }
        })
        .await;
        match r {
            Ok(groups) => eprintln!("groups moved to {}: {groups:?}", cluster.name(new)),
            Err(e) => {
                moved = Err(format!(
                    "no group moved to the joined node {} within {MOVE_WITHIN:?}: {}",
                    cluster.name(new),
                    e.0
                ))
            }
        }
    }

    // Phase B, with one node restarted once a tenth of it is done.
    let victim = ring.nodes - 1;
    let ops_b = scaled(300);
    let crash = ring.crash;
    let (cluster_ref, client_ref) = (&mut cluster, &client);
    let models = kv_phase(
        &client,
        models,
        ops_b,
        seed.wrapping_add(1),
        "phase B",
        move |done| async move {
            wait_for_ops(client_ref, &done, CLIENTS * ops_b / 10).await;
            crash.bring_down(cluster_ref, victim);
            eprintln!("{crash:?} {}", cluster_ref.name(victim));
            cluster_ref.start(victim);
        },
    )
    .await;
    client.wait_for_live_nodes(&cluster.names(), WITHIN).await;
    assert_ring_agrees(&client, &models, "after phase B").await;

    // Casts (one-way commands) to random groups, each to a key of its own
    // so that the order in which they land does not matter.
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(2));
    let mut extra = BTreeMap::new();
    for n in 0..scaled(200) {
        let key = format!("cast-{n}-{}", rng.random_range(0..1000));
        let value = format!("x{n}");
        let group = vnode_for(&key, VNODES);
        client
            .group::<KvServer>(&group)
            .cast(KvRequest::Put(key.clone(), value.clone()))
            .unwrap_or_else(|e| panic!("cast {n} to {key} on {group}: {e}"));
        extra.insert(key, Some(value));
    }
    assert!(
        client.wait_for_casts(WITHIN).await,
        "the casts were still in flight after {WITHIN:?}"
    );
    let extra_model = Model {
        values: extra,
        ..Model::default()
    };
    let mut all = models;
    all.push(extra_model);
    assert_ring_agrees(&client, &all, "after the casts to random groups").await;
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );

    // The whole cluster goes down the same way and comes back from its
    // data directories: every acknowledged write is still there.
    for i in 0..cluster.len() {
        ring.crash.bring_down(&mut cluster, i);
    }
    for i in 0..cluster.len() {
        cluster.start(i);
    }
    client.wait_for_live_nodes(&cluster.names(), WITHIN).await;
    assert_ring_agrees(&client, &all, "after the whole cluster restarted").await;
    let acknowledged: usize = all.iter().map(|m| m.acknowledged).sum();
    eprintln!(
        "{}: {acknowledged} acknowledged operations checked in {:?}",
        ring.test,
        started.elapsed()
    );
    if let Err(e) = moved {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_ring_keeps_every_acknowledged_write_across_a_join_and_a_graceful_restart() {
    ring_scenario(Ring {
        test: "ring-stop",
        masters: 3,
        nodes: 5,
        group_size: 3,
        crash: Crash::Stop,
        join: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_ring_keeps_every_acknowledged_write_across_a_join_and_a_kill_9() {
    ring_scenario(Ring {
        test: "ring-kill",
        masters: 3,
        nodes: 5,
        group_size: 3,
        crash: Crash::Kill,
        join: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_ring_keeps_every_acknowledged_write_across_a_kill_9() {
    ring_scenario(Ring {
        test: "ring-single",
        masters: 1,
        nodes: 1,
        group_size: 1,
        crash: Crash::Kill,
        join: false,
    })
    .await;
}
