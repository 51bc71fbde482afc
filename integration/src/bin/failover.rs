//! `failover`: how long a group is without a leader when its leader's node
//! crashes under load (issue 20's P4).
//!
//! One fresh cluster of 5 `dike node` processes (all masters, data dirs,
//! `--http`), `--groups` `arithmetic` groups of 5 replicas, and
//! `--clients` closed-loop writers spread over them for the whole run. Then
//! `--trials` times:
//!
//! 1. the cluster is settled: every node answers `/ready` and hosts as many
//!    replicas as before the first trial, and the trial's group (the groups
//!    in turn) has a leader that every replica names;
//! 2. a probe starts a write (`Add(1)`) to that group every
//!    [`PROBE_EVERY`], each retried by the client's router until its
//!    deadline, as a user's request would be;
//! 3. the leader's node is killed with SIGKILL;
//! 4. measured: the time from the kill to the first acknowledged write that
//!    was sent after the kill (a write sent before it may have been chosen
//!    by the old leader);
//! 5. the node is started again on its data dir.
//!
//! Nothing is asserted: the trials, their median, p90, p99 and maximum are
//! printed (a table, or one JSON object with `--json`) against the target
//! (median < 500 ms, p99 < 1 s). Progress goes to stderr.
//!
//! ```text
//! cargo build --release -p dike-examples --bin dike
//! DIKE_BIN=target/release/dike cargo run --release -p integration --bin failover -- --trials 20
//! ```

use clap::Parser;
use dike_actors::NodeHandle;
use dike_core::NodeId;
use dike_examples::arithmetic::{Arithmetic, ArithmeticRequest};
use integration::node_http;
use integration::wait::{poll_until, NotYet};
use integration::{Client, Cluster, Storage};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Command line of `failover`.
#[derive(Parser, Debug)]
#[command(
    about = "Time from kill -9 of a group leader's node to the group's next acknowledged write"
)]
struct Args {
    /// Kills measured.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// `arithmetic` groups of 5 replicas; the trials take them in turn.
    #[arg(long, default_value_t = 16)]
    groups: usize,
    /// Closed-loop writers spread over the groups for the whole run.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// The client's request deadline, in seconds: how long a write is
    /// retried before it fails.
    #[arg(long, default_value_t = 10)]
    request_timeout_seconds: u64,
    /// How the leader's node fails: `kill` (SIGKILL, then started again on
    /// its data dir: its peers see its connections close at once) or
    /// `pause` (SIGSTOP, then SIGCONT: its connections stay open and it
    /// answers nothing, as a hung machine or a cut cable would look, so
    /// only missed pings and election timeouts tell).
    #[arg(long, value_enum, default_value_t = Fault::Kill)]
    fault: Fault,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
}

/// How the leader's node fails in a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Fault {
    /// SIGKILL, then a restart on the same data dir.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
}

/// The probe starts a write to the trial's group this often.
const PROBE_EVERY: Duration = Duration::from_millis(5);

/// How long settling before a trial, or its failover, may take.
const SETTLE_WITHIN: Duration = Duration::from_secs(120);

/// How long every node may take to answer `/ready` after the start.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The names of the groups: `failover-1` … `failover-N`.
const PREFIX: &str = "failover-";

/// One kill.
#[derive(Clone, Debug, Serialize)]
struct Trial {
    /// The group whose leader's node was killed.
    group: String,
    /// The node killed.
    killed: String,
    /// Whether the killed node also led the master group.
    killed_master_leader: bool,
    /// Milliseconds from the kill to the first acknowledged write sent
    /// after it; `None` if none was acknowledged within the deadline.
    failover_ms: Option<f64>,
    /// The node whose replica led the group after the failover, if known.
    new_leader: Option<String>,
    /// Probe writes sent after the kill that failed (each had been retried
    /// for the whole request deadline), by error kind.
    probe_errors: BTreeMap<String, u64>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
struct Report {
    fault: Fault,
    groups: usize,
    clients: usize,
    trials: Vec<Trial>,
    /// Failovers measured (trials with an acknowledged write).
    measured: usize,
    median_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    /// Background writes acknowledged and failed over the whole run.
    load_ok: u64,
    load_failed: u64,
}

/// The background load: `clients` closed-loop writers over `groups`, until
/// stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(node: &NodeHandle, groups: &[String], clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let groups = Arc::new(groups.to_vec());
        let tasks = (0..clients)
            .map(|c| {
                let (node, groups) = (node.clone(), groups.clone());
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        let group = &groups[i % groups.len()];
                        i += 1;
                        let r = node
                            .group::<Arithmetic>(group)
                            .call(ArithmeticRequest::Add(1))
                            .await;
                        let counter = if matches!(r, Ok(Ok(_))) { &ok } else { &failed };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// A probe write that ended: when it was sent, when it ended, and how
/// (the error kind if it failed).
type Ended = (Instant, Instant, Result<(), &'static str>);

/// Writes to one group, one started every [`PROBE_EVERY`] without waiting
/// for the earlier ones, each recording when it was sent and answered.
struct Probe {
    stop: Arc<AtomicBool>,
    /// (sent, answered, outcome) of every write that ended.
    ended: Arc<Mutex<Vec<Ended>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    fn start(node: &NodeHandle, group: &str) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(Mutex::new(Vec::new()));
        let (node, group) = (node.clone(), group.to_owned());
        let task = {
            let (stop, ended) = (stop.clone(), ended.clone());
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(PROBE_EVERY);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut writes = tokio::task::JoinSet::new();
                while !stop.load(Ordering::Relaxed) {
                    ticker.tick().await;
                    let (node, group, ended) = (node.clone(), group.clone(), ended.clone());
                    writes.spawn(async move {
                        let sent = Instant::now();
                        let r = node
                            .group::<Arithmetic>(&group)
                            .call(ArithmeticRequest::Add(1))
                            .await;
                        let outcome = match r {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(_)) => Err("application_error"),
                            Err(e) => Err(e.label()),
                        };
                        if let Ok(mut e) = ended.lock() {
                            e.push((sent, Instant::now(), outcome));
                        }
                    });
                    while writes.try_join_next().is_some() {}
                }
                // Writes still in flight are abandoned with the task.
                writes.abort_all();
            })
        };
        Probe { stop, ended, task }
    }

    /// The first acknowledgement of a write sent at or after `from`.
    fn first_ack_after(&self, from: Instant) -> Option<Instant> {
        let ended = self.ended.lock().ok()?;
        ended
            .iter()
            .filter(|(sent, _, r)| *sent >= from && r.is_ok())
            .map(|(_, at, _)| *at)
            .min()
    }

    /// Failed writes sent at or after `from`, by error kind.
    fn errors_after(&self, from: Instant) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        if let Ok(ended) = self.ended.lock() {
            for (_, _, r) in ended.iter().filter(|(sent, _, _)| *sent >= from) {
                if let Err(kind) = r {
                    *out.entry((*kind).to_owned()).or_default() += 1;
                }
            }
        }
        out
    }

    /// Stops starting writes; those in flight are abandoned.
    async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = (&mut self.task).await;
    }
}

/// Node `i`'s HTTP listener (the cluster is built with `--http`).
fn http_of(cluster: &Cluster, i: usize) -> SocketAddr {
    cluster
        .http_addr(i)
        .expect("failover clusters are built with --http")
}

/// Whether the node whose HTTP listener is `addr` answers `/ready` with 200.
async fn ready(addr: SocketAddr) -> Result<(), NotYet> {
    let reply = node_http::get(addr, "/ready").await?;
    if reply.status == 200 {
        Ok(())
    } else {
        Err(NotYet(format!("{addr}/ready: {}", reply.status)))
    }
}

/// `dike_replicas_hosted` of the node whose HTTP listener is `addr`.
async fn hosted(addr: SocketAddr) -> Result<u64, NotYet> {
    let reply = node_http::get(addr, "/metrics").await?;
    node_http::metric(&reply.body, "dike_replicas_hosted")
        .map(|v| v as u64)
        .ok_or_else(|| NotYet(format!("{addr}/metrics has no dike_replicas_hosted")))
}

/// Waits until every node answers `/ready` and hosts at least `before[i]`
/// replicas, and every replica of `group` names the same leader; returns
/// that leader's node.
async fn settle(cluster: &Cluster, client: &Client, before: &[u64], group: &str) -> NodeId {
    let settled = poll_until(SETTLE_WITHIN, || async {
        for (i, want) in before.iter().enumerate() {
            let addr = http_of(cluster, i);
            ready(addr).await?;
            let now = hosted(addr).await?;
            if now < *want {
                return Err(NotYet(format!(
                    "{} hosts {now} of {want} replicas",
                    cluster.name(i)
                )));
            }
        }
        let mut leaders = Vec::new();
        for (m, s) in client.replica_statuses(group).await? {
            let s = s.map_err(|e| NotYet(format!("{m}: {e}")))?;
            leaders.push(s.leader);
        }
        match leaders.first() {
            Some(Some(l)) if leaders.iter().all(|x| *x == Some(*l)) => Ok(l.node),
            _ => Err(NotYet(format!(
                "{group}'s replicas name leaders {leaders:?}"
            ))),
        }
    })
    .await;
    settled.unwrap_or_else(|why| {
        panic!(
            "not settled within {SETTLE_WITHIN:?}: {}\n{}",
            why.0,
            cluster.log_tails(20)
        )
    })
}

/// The node whose replica of `group` leads it, as any replica says.
async fn leader_of(client: &Client, group: &str) -> Option<NodeId> {
    let statuses = client.replica_statuses(group).await.ok()?;
    statuses
        .into_iter()
        .find_map(|(_, s)| s.ok().and_then(|s| s.leader))
        .map(|l| l.node)
}

/// One kill: the leader of `group` is on node `victim`.
async fn trial(
    cluster: &mut Cluster,
    client: &Client,
    group: &str,
    victim: usize,
    fault: Fault,
) -> Trial {
    let killed_master_leader = client.master_leader().await == Some(cluster.node_id(victim));
    let mut probe = Probe::start(client.node(), group);
    // The probe's first writes reach the leader before the kill.
    let warm = poll_until(Duration::from_secs(10), || async {
        probe
            .first_ack_after(Instant::now() - Duration::from_secs(60))
            .map(|_| ())
            .ok_or(NotYet("no probe write acknowledged yet".into()))
    })
    .await;
    if let Err(why) = warm {
        eprintln!(
            "failover: the probe of {group} got no answer before the kill: {}",
            why.0
        );
    }
    let killed_at = Instant::now();
    match fault {
        Fault::Kill => cluster.kill(victim),
        Fault::Pause => cluster.pause(victim),
    }
    let acked = poll_until(SETTLE_WITHIN, || async {
        probe
            .first_ack_after(killed_at)
            .ok_or(NotYet("no write sent after the kill acknowledged".into()))
    })
    .await;
    probe.stop().await;
    let probe_errors = probe.errors_after(killed_at);
    let new_leader = leader_of(client, group)
        .await
        .and_then(|n| cluster.index_of(n))
        .map(|i| cluster.name(i).to_owned());
    match fault {
        Fault::Kill => cluster.start(victim),
        Fault::Pause => cluster.resume(victim),
    }
    Trial {
        group: group.to_owned(),
        killed: cluster.name(victim).to_owned(),
        killed_master_leader,
        failover_ms: acked
            .ok()
            .map(|at| at.duration_since(killed_at).as_secs_f64() * 1e3),
        new_leader,
        probe_errors,
    }
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.0}"))
}

impl Report {
    fn text(&self) -> String {
        let mut out = format!(
            "failover ({:?}): {} trials, {} groups of 5 on 5 nodes, {} writers\n\n\
             | trial | group | killed | also master leader | failover ms | new leader | probe errors |\n\
             | --- | --- | --- | --- | --- | --- | --- |\n",
            self.fault,
            self.trials.len(),
            self.groups,
            self.clients
        );
        for (i, t) in self.trials.iter().enumerate() {
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {:?} |\n",
                i + 1,
                t.group,
                t.killed,
                if t.killed_master_leader { "yes" } else { "no" },
                ms(t.failover_ms),
                t.new_leader.as_deref().unwrap_or("-"),
                t.probe_errors
            );
        }
        out += &format!(
            "\nmeasured {} of {}: median {} ms (target < 500), p90 {} ms, p99 {} ms (target < 1000), max {} ms\n\
             background writes: {} acknowledged, {} failed\n",
            self.measured,
            self.trials.len(),
            ms(self.median_ms),
            ms(self.p90_ms),
            ms(self.p99_ms),
            ms(self.max_ms),
            self.load_ok,
            self.load_failed
        );
        out
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let groups: Vec<String> = (1..=args.groups.max(1))
        .map(|i| format!("{PREFIX}{i}"))
        .collect();
    eprintln!("failover: starting 5 nodes");
    let mut cluster = Cluster::builder("failover")
        .masters(5)
        .nodes(5)
        .storage(Storage::Durable)
        .group_size(5)
        .log_filter("warn")
        .http(true)
        .start();
    let timeout = Duration::from_secs(args.request_timeout_seconds.max(1));
    let client = Client::connect_with(&cluster, timeout).await;
    client
        .wait_for_live_nodes(&cluster.names(), READY_WITHIN)
        .await;
    eprintln!("failover: creating {} groups", groups.len());
    for g in &groups {
        client
            .wait_until(SETTLE_WITHIN, &format!("{g} is created"), || async {
                match client.add_group_sized::<Arithmetic>(g, 5).await {
                    Ok(_) => Ok(()),
                    // An attempt that timed out may have created it.
                    Err(e) if client.routing_table().await?.group(g).is_none() => Err(e.into()),
                    Err(_) => Ok(()),
                }
            })
            .await;
    }
    for g in &groups {
        client
            .wait_until(SETTLE_WITHIN, &format!("{g} answers"), || async {
                client
                    .group::<Arithmetic>(g)
                    .query(ArithmeticRequest::Read)
                    .await?
                    .map_err(NotYet::from)
            })
            .await;
    }
    let load = Load::start(client.node(), &groups, args.clients);
    let mut before = Vec::new();
    for i in 0..cluster.len() {
        let addr = http_of(&cluster, i);
        let n = poll_until(READY_WITHIN, || hosted(addr))
            .await
            .unwrap_or_else(|why| panic!("{}: {}", cluster.name(i), why.0));
        before.push(n);
    }
    let mut trials = Vec::new();
    for t in 0..args.trials {
        let group = &groups[t % groups.len()];
        let leader = settle(&cluster, &client, &before, group).await;
        let Some(victim) = cluster.index_of(leader) else {
            panic!("{group}'s leader is on a node the harness did not start: {leader:?}")
        };
        eprintln!(
            "failover: trial {}: {:?} {}, leader of {group}",
            t + 1,
            args.fault,
            cluster.name(victim)
        );
        let r = trial(&mut cluster, &client, group, victim, args.fault).await;
        eprintln!("failover: trial {}: {} ms", t + 1, ms(r.failover_ms));
        trials.push(r);
    }
    let (load_ok, load_failed) = load.stop().await;
    client.stop().await;
    drop(cluster);
    let mut times: Vec<f64> = trials.iter().filter_map(|t| t.failover_ms).collect();
    times.sort_by(f64::total_cmp);
    let report = Report {
        fault: args.fault,
        groups: groups.len(),
        clients: args.clients,
        measured: times.len(),
        median_ms: quantile(&times, 0.5),
        p90_ms: quantile(&times, 0.9),
        p99_ms: quantile(&times, 0.99),
        max_ms: times.last().copied(),
        trials,
        load_ok,
        load_failed,
    };
    integration::print_report(args.json, &report, Report::text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(10.0));
        assert_eq!(quantile(&v, 0.9), Some(18.0));
        assert_eq!(quantile(&v, 0.99), Some(20.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
    }
}
