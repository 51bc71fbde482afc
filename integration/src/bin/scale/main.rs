//! `scale`: what many groups cost (issue 20). For each group count N, on a
//! fresh cluster of `dike node` processes (5 by default, all masters, data
//! dirs, `--http` for `/ready` and `/metrics`), N `arithmetic` groups of 5
//! replicas, and:
//!
//! 1. baseline: each node's RSS and CPU with no group, once every node is
//!    ready;
//! 2. create: the N groups (`scale-1` … `scale-N`), up to
//!    `--create-concurrency` at a time: the time until every creation is
//!    acknowledged, and until every group answers a query;
//! 3. idle: once the cluster is quiet, each node's CPU over
//!    `--idle-seconds`, its RSS, the replicas it hosts and the RSS per
//!    replica added since the baseline;
//! 4. restart: one node that does not lead the master group is killed
//!    (SIGKILL) and started again on its data dir; the time from the spawn
//!    until `/ready` answers 200, until it hosts its replicas again, and
//!    until sampled groups it hosts acknowledged a write that its replica
//!    applied;
//! 5. load: closed-loop `Add(1)` writes from `--clients` clients over 1, 16
//!    and min(N, 1000) groups, in alternating order.
//!
//! Nothing is asserted: the figures are printed (a table, or one JSON
//! object per group count with `--json`) for the owner to judge against the
//! targets. Progress goes to stderr.
//!
//! ```text
//! cargo build --release -p dike-examples --bin dike
//! DIKE_BIN=target/release/dike cargo run --release -p integration --bin scale -- --groups 1000,10000
//! ```

mod attempt;
mod create;
mod idle;
mod load;
mod report;
mod restart;

use clap::Parser;
use integration::node_http;
use integration::wait::{poll_until, NotYet};
use integration::{Client, Cluster, Storage};
use report::{node_figures, Report, Setup};
use std::net::SocketAddr;
use std::time::Duration;

/// Command line of `scale`.
#[derive(Parser, Debug)]
#[command(about = "The cost of many groups: create, idle, restart and load N groups")]
pub struct Args {
    /// Group counts, one fresh cluster each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    groups: Vec<usize>,
    /// `dike node` processes (the first 5, or 3, or 1, are masters).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Group creations (and then first queries) in flight at a time.
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// Seconds over which idle CPU is sampled.
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// Measured seconds per load run.
    #[arg(long, default_value_t = 10)]
    load_seconds: u64,
    /// Unmeasured warm-up seconds before each load run.
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Concurrent closed-loop clients of the load.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Rounds of load runs (1, 16 and up to 1000 groups); odd rounds run
    /// the sets in reverse order.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seconds creating the groups (and then querying them) may take before
    /// the groups still missing are reported as failed.
    #[arg(long, default_value_t = 600)]
    deadline_seconds: u64,
    /// Print one JSON object per group count instead of the tables.
    #[arg(long)]
    json: bool,
}

/// The names of the scale groups: `scale-1` … `scale-N`.
pub const PREFIX: &str = "scale-";

/// How long every node may take to answer `/ready` after the start.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The longest idle window of the baseline (shorter if `--idle-seconds` is).
const BASELINE_WINDOW: Duration = Duration::from_secs(5);

/// Gauges of one node's `/metrics`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Gauges {
    /// `dike_replicas_hosted`: replica actors running, the master's included.
    pub hosted: u64,
    /// `dike_replicas_hibernating`.
    pub hibernating: u64,
    /// `dike_replicas_leading`.
    pub leading: u64,
}

/// The gauges of the node whose HTTP listener is `addr`.
pub async fn gauges(addr: SocketAddr) -> Result<Gauges, NotYet> {
    let reply = node_http::get(addr, "/metrics").await?;
    if reply.status != 200 {
        return Err(NotYet(format!("{addr}/metrics: status {}", reply.status)));
    }
    let read = |series: &str| {
        node_http::metric(&reply.body, series)
            .map(|v| v as u64)
            .ok_or_else(|| NotYet(format!("{addr}/metrics has no {series}")))
    };
    Ok(Gauges {
        hosted: read("dike_replicas_hosted")?,
        hibernating: read("dike_replicas_hibernating")?,
        leading: read("dike_replicas_leading")?,
    })
}

/// Whether the node whose HTTP listener is `addr` answers `/ready` with 200.
pub async fn ready(addr: SocketAddr) -> Result<(), NotYet> {
    let reply = node_http::get(addr, "/ready").await?;
    if reply.status == 200 {
        Ok(())
    } else {
        Err(NotYet(format!(
            "{addr}/ready: {} {}",
            reply.status,
            reply.body.trim()
        )))
    }
}

/// Node `i`'s HTTP listener (every scale cluster has them).
pub fn http_of(cluster: &Cluster, i: usize) -> SocketAddr {
    cluster
        .http_addr(i)
        .expect("scale clusters are built with --http")
}

/// The masters of a cluster of `nodes` nodes: 5, 3 or 1.
fn masters_for(nodes: usize) -> usize {
    match nodes {
        5.. => 5,
        3..=4 => 3,
        _ => 1,
    }
}

/// Starts the cluster of one group count and waits until every node is in
/// the routing table and answers `/ready`.
async fn start_cluster(args: &Args) -> Cluster {
    let masters = masters_for(args.nodes);
    let cluster = Cluster::builder("scale")
        .masters(masters)
        .nodes(args.nodes.max(1))
        .storage(Storage::Durable)
        .group_size(masters)
        .log_filter("warn")
        .http(true)
        .start();
    let client = Client::connect_with(&cluster, Duration::from_secs(10)).await;
    client
        .wait_for_live_nodes(&cluster.names(), READY_WITHIN)
        .await;
    client.stop().await;
    let every_node_ready = poll_until(READY_WITHIN, || async {
        for i in 0..cluster.len() {
            ready(http_of(&cluster, i)).await?;
        }
        Ok::<(), NotYet>(())
    })
    .await;
    if let Err(why) = every_node_ready {
        panic!(
            "not every node answered /ready within {READY_WITHIN:?}: {}\n{}",
            why.0,
            cluster.log_tails(20)
        );
    }
    cluster
}

/// Measures one group count on a fresh cluster.
async fn run(args: &Args, groups: usize) -> Report {
    eprintln!("scale: {groups} groups: starting {} nodes", args.nodes);
    let mut cluster = start_cluster(args).await;
    let size = masters_for(args.nodes);
    let baseline_window = BASELINE_WINDOW.min(Duration::from_secs(args.idle_seconds.max(1)));
    let idle_window = Duration::from_secs(args.idle_seconds.max(1));
    let setup = Setup {
        groups,
        nodes: cluster.len(),
        replicas_per_group: size,
        baseline_window_s: baseline_window.as_secs_f64(),
        idle_window_s: idle_window.as_secs_f64(),
    };
    eprintln!("scale: baseline over {baseline_window:?}");
    let baseline = idle::sample(&cluster, baseline_window).await;

    let client = Client::connect_with(&cluster, Duration::from_secs(10)).await;
    eprintln!(
        "scale: creating {groups} groups, {} at a time",
        args.create_concurrency
    );
    let names: Vec<String> = (1..=groups).map(|i| format!("{PREFIX}{i}")).collect();
    let within = Duration::from_secs(args.deadline_seconds);
    let creation = create::create_all(&client, &names, size, args.create_concurrency, within).await;
    let placed = create::placed_per_node(&client, &cluster, PREFIX).await;
    // Idle is measured with no client connected: a client's dispatcher
    // keeps reading the routing table from the master, which is not the
    // nodes' own cost.
    client.stop().await;

    eprintln!("scale: waiting until the cluster is quiet");
    let quiet = idle::wait_quiet(&cluster, groups * size).await;
    eprintln!("scale: idle over {idle_window:?}");
    let idle = idle::sample(&cluster, idle_window).await;
    let nodes = node_figures(&baseline, &idle, &placed);

    let client = Client::connect_with(&cluster, Duration::from_secs(10)).await;
    let restart = restart::measure(&mut cluster, &client, args.create_concurrency).await;
    let load = load::measure(args, &cluster, &client, &names).await;
    client.stop().await;
    drop(cluster);
    Report::new(setup, creation, quiet, nodes, restart, load)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    for &groups in &args.groups {
        let report = run(&args, groups).await;
        integration::print_report(args.json, &report, Report::text);
    }
}
