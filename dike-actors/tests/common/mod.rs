//! Helpers of the multi-process tests: master nodes as separate OS
//! processes (`dike-node`) on loopback, killed when the test ends however it
//! ends, and a client node in the test process that does not join.
//!
//! ractor's registry and process groups are per process, so only separate
//! processes test the real wire path; each test file is its own process.

// Each test file compiles this module and uses a part of it.
#![allow(dead_code)]

use dike_actors::counter::{Counter, CounterRequest};
use dike_actors::{DikeError, DikeNode, NodeConfig, NodeHandle};
use dike_core::routing::RoutingTable;
pub use dike_harness::wait::{poll_until, NotYet};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

const COOKIE: &str = "cluster-test-cookie";

/// The `dike-node` processes of one test: every node is a child process
/// (see [`dike_harness::process`]), killed when this is dropped, also when
/// the test panics; the logs are removed unless the test failed.
pub struct Processes {
    processes: dike_harness::Processes,
    masters: Vec<String>,
    extra: Vec<String>,
}

impl Processes {
    /// Starts node `name` on `addr` (in memory) with `args` besides the
    /// cluster's.
    pub fn spawn(&mut self, name: &str, addr: SocketAddr, args: &[&str]) {
        let launch = dike_harness::Launch::new(env!("CARGO_BIN_EXE_dike-node"))
            .args(["--name", name, "--listen", &addr.to_string()])
            .args(["--cookie", COOKIE, "--masters", &self.masters.join(",")])
            .arg("--in-memory")
            .args(args)
            .args(&self.extra)
            .env(
                "RUST_LOG",
                std::env::var("DIKE_NODE_LOG").unwrap_or("info,ractor_cluster=warn".into()),
            );
        self.processes
            .spawn(name, launch)
            .unwrap_or_else(|e| panic!("spawn dike-node: {e}"));
    }

    /// Kills node `name` (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self, name: &str) {
        self.processes.kill(name).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sends signal `sig` (`STOP`, `CONT`, …) to node `name`.
    pub fn signal(&mut self, name: &str, sig: &str) {
        self.processes
            .signal(name, sig)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Whether every node is still running.
    pub fn all_running(&mut self) -> bool {
        self.processes.all_running()
    }

    /// Everything node `name` has logged so far.
    pub fn log(&self, name: &str) -> String {
        self.processes.log(name)
    }

    /// The tail of every node's log, for a failing test's message.
    pub fn log_tails(&self) -> String {
        self.processes.log_tails(15)
    }
}

/// A free loopback address, never the same twice in this test binary
/// ([`dike_harness::free_loopback_addr`]).
pub fn free_addr() -> SocketAddr {
    dike_harness::free_loopback_addr().expect("a free loopback port")
}

/// `n` master nodes as processes.
pub fn start_masters(test: &str, n: usize) -> (Processes, Vec<String>) {
    start_cluster(test, n, 0)
}

/// `masters` master nodes and `workers` nodes that only join, as processes;
/// returns the masters list. Group size is every node.
pub fn start_cluster(test: &str, masters: usize, workers: usize) -> (Processes, Vec<String>) {
    start_cluster_with(test, masters, workers, &[])
}

/// [`start_cluster`] with `args` given to every node, then and later.
pub fn start_cluster_with(
    test: &str,
    masters: usize,
    workers: usize,
    args: &[&str],
) -> (Processes, Vec<String>) {
    let logs = std::env::temp_dir().join(format!("dike-{test}-{}", std::process::id()));
    let nodes: Vec<(String, SocketAddr)> = (1..=masters)
        .map(|i| format!("{test}-m{i}"))
        .chain((1..=workers).map(|i| format!("{test}-w{i}")))
        .map(|name| (name, free_addr()))
        .collect();
    let list: Vec<String> = nodes[..masters]
        .iter()
        .map(|(n, a)| format!("{n}@{a}"))
        .collect();
    let mut procs = Processes {
        processes: dike_harness::Processes::new(logs)
            .expect("log dir")
            .removing_logs(),
        masters: list.clone(),
        extra: args.iter().map(|a| a.to_string()).collect(),
    };
    let size = nodes.len().to_string();
    for (name, addr) in &nodes {
        procs.spawn(name, *addr, &["--group-size", &size]);
    }
    (procs, list)
}

pub async fn client(masters: &[String]) -> NodeHandle {
    client_with_cookie(masters, COOKIE).await
}

/// A client node (not joining) whose new groups have `size` replicas.
pub async fn sized_client(masters: &[String], size: usize) -> NodeHandle {
    build_client(masters, COOKIE, size).await
}

/// A client node that does not join, presenting `cookie`.
pub async fn client_with_cookie(masters: &[String], cookie: &str) -> NodeHandle {
    build_client(masters, cookie, masters.len()).await
}

async fn build_client(masters: &[String], cookie: &str, size: usize) -> NodeHandle {
    let mut b = NodeConfig::builder(
        format!(
            "client-{}",
            masters
                .first()
                .map(String::as_str)
                .unwrap_or("none")
                .split('@')
                .next()
                .unwrap_or("none")
        ),
        free_addr(),
    )
    .cookie(cookie)
    .join(false)
    .group_size(size)
    .request_timeout(Duration::from_secs(5));
    for m in masters {
        b = b.master(m.clone());
    }
    DikeNode::start(b.kind::<Counter>().build().expect("valid config"))
        .await
        .expect("client node starts")
}

/// The scenario of the cluster tests: `n` masters form a cluster, a group of
/// `n` replicas answers, then the processes of its leader and of `kills - 1`
/// other replicas are killed and the group keeps answering, every
/// acknowledged call applied exactly once, and the master marks the killed
/// nodes down.
pub async fn group_survives_killed_replicas(test: &str, n: usize, kills: usize) {
    group_survives_killed_replicas_on(test, n, 0, kills).await
}

/// [`group_survives_killed_replicas`] with `workers` more nodes that join
/// without being masters; the group spans every node.
pub async fn group_survives_killed_replicas_on(
    test: &str,
    masters_n: usize,
    workers: usize,
    kills: usize,
) {
    let n = masters_n + workers;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (mut procs, masters) = start_cluster(test, masters_n, workers);
    let node = sized_client(&masters, n).await;

    let formed = poll_until(Duration::from_secs(30), || async {
        let t = node.routing_table().await?;
        let up = t.live_nodes().count();
        if up == n {
            Ok(t)
        } else {
            Err(DikeError::NodeStopped(format!("{up} nodes up")))
        }
    })
    .await;
    assert!(formed.is_ok(), "{formed:?}\n{}", procs.log_tails());

    let group = poll_until(Duration::from_secs(10), || node.add_group::<Counter>("g")).await;
    let group = match group {
        Ok(g) => g,
        Err(e) => panic!("add_group: {}\n{}", e.0, procs.log_tails()),
    };
    assert_eq!(group.config.voters.len(), n);

    let g = node.group::<Counter>("g");
    let first = poll_until(Duration::from_secs(15), || g.call(CounterRequest::Add(1))).await;
    assert!(first.is_ok(), "{first:?}\n{}", procs.log_tails());
    let mut acked = 1;
    for _ in 0..20 {
        g.call(CounterRequest::Add(1))
            .await
            .expect("healthy group answers");
        acked += 1;
    }

    // Kill the leader's process first: the others must elect a new one.
    let voters = group.config.voters.clone();
    let leader = poll_until(Duration::from_secs(5), || async {
        let status = node.replica_status("g", voters[0]).await?;
        status
            .leader
            .ok_or_else(|| DikeError::NodeStopped("no leader known".into()))
    })
    .await
    .expect("the group has a leader");
    // Other nodes' replicas are reached through the transport (the status
    // above too): ractor_cluster keeps no proxy of them in this process,
    // which cost about 11 KiB per remote member on every node.
    let proxies = ractor::pg::get_members(&dike_actors::cluster::wire::group_pg("g"));
    assert!(
        proxies.is_empty(),
        "proxies of remote replicas: {proxies:?}"
    );
    let mut doomed = vec![leader];
    doomed.extend(voters.iter().filter(|v| **v != leader).take(kills - 1));
    let table = node.routing_table().await.expect("table");
    let victims: Vec<String> = doomed
        .iter()
        .map(|m| {
            table
                .node(m.node)
                .map(|n| n.name.clone())
                .expect("in table")
        })
        .collect();
    for v in &victims {
        procs.kill(v);
    }

    // A call that fails at this level may still have been applied; one that
    // succeeds was applied exactly once.
    let (mut after, mut unsure) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while after < 10 {
        assert!(
            Instant::now() < deadline,
            "after killing {victims:?}: {after} calls answered\n{}",
            procs.log_tails()
        );
        match g.call(CounterRequest::Add(1)).await {
            Ok(_) => after += 1,
            Err(_) => unsure += 1,
        }
    }
    let value = g.query(CounterRequest::Get).await.expect("query");
    let acked = acked + after;
    eprintln!("killed {victims:?}; value {value}, acknowledged {acked}, unsure {unsure}");
    assert!(
        (acked..=acked + unsure).contains(&value),
        "every acknowledged add applied once: value {value}, acknowledged {acked}, unsure {unsure}"
    );

    // The master can only record what it sees while it has a quorum.
    let masters_dead = victims
        .iter()
        .filter(|v| masters.iter().any(|m| m.starts_with(&format!("{v}@"))))
        .count();
    let master_alive = masters_dead * 2 < masters_n;
    let marked = poll_until(Duration::from_secs(15), || async {
        if !master_alive {
            return Ok(());
        }
        let t = node.routing_table().await?;
        let down = doomed.iter().filter(|m| !t.is_up(m.node)).count();
        if down == doomed.len() {
            Ok(())
        } else {
            Err(DikeError::NodeStopped(format!("{down} marked down")))
        }
    })
    .await;
    assert!(marked.is_ok(), "{marked:?}\n{}", procs.log_tails());

    // One more and no quorum is left: calls fail with a typed error within
    // the deadline instead of hanging.
    if let Some(last) = voters.iter().find(|v| !doomed.contains(v)) {
        if (doomed.len() + 1) * 2 > n {
            let name = table
                .node(last.node)
                .map(|n| n.name.clone())
                .expect("in table");
            procs.kill(&name);
            let started = Instant::now();
            let r = g.call(CounterRequest::Add(1)).await;
            assert!(
                matches!(
                    r,
                    Err(DikeError::Timeout { .. } | DikeError::Unavailable { .. })
                ),
                "{r:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "bounded by the deadline"
            );
        }
    }
    node.stop().await;
}

// Helpers of the rebalancing tests.

pub const GROUPS: usize = 4;

/// Forms the five-node cluster, creates the groups (3 replicas each) and gives each a
/// distinct value; returns the values by group.
pub async fn groups_with_values(procs: &Processes, node: &NodeHandle) -> BTreeMap<String, i64> {
    let formed = poll_until(Duration::from_secs(30), || async {
        let up = node.routing_table().await?.live_nodes().count();
        (up == 5).then_some(()).ok_or(NotYet(format!("{up} up")))
    })
    .await;
    assert!(formed.is_ok(), "{formed:?}\n{}", procs.log_tails());
    let mut values = BTreeMap::new();
    for i in 1..=GROUPS {
        let name = format!("g{i}");
        let added = poll_until(Duration::from_secs(10), || {
            node.add_group_sized::<Counter>(&name, 3)
        })
        .await;
        assert!(added.is_ok(), "{added:?}\n{}", procs.log_tails());
        let g = node.group::<Counter>(&name);
        let first = poll_until(Duration::from_secs(15), || g.call(CounterRequest::Add(0))).await;
        assert!(first.is_ok(), "{first:?}\n{}", procs.log_tails());
        for _ in 0..i {
            g.call(CounterRequest::Add(10)).await.expect("healthy");
        }
        values.insert(name, 10 * i as i64);
    }
    values
}

/// Every group answers one more add with exactly the value it should have.
pub async fn values_kept(procs: &Processes, node: &NodeHandle, values: &BTreeMap<String, i64>) {
    for (name, v) in values {
        let g = node.group::<Counter>(name);
        let r = poll_until(Duration::from_secs(15), || g.call(CounterRequest::Add(1))).await;
        assert_eq!(
            r.as_ref().ok(),
            Some(&(v + 1)),
            "{name}: {r:?}\n{}",
            procs.log_tails()
        );
    }
}

pub fn settled(t: &RoutingTable) -> bool {
    t.groups
        .values()
        .all(|g| g.config.learners.is_empty() && g.config.voters.len() == 3)
}
