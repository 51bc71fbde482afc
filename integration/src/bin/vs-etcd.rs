//! `vs-etcd`: dike-rs and etcd side by side on this machine, under the same
//! closed-loop write load from the same load generator.
//!
//! Each system runs as 5 server processes on loopback with durable storage
//! (dike-rs: 5 `dike node` processes, all masters, 16 `kv` groups of 5
//! replicas; etcd 3.4: 5 members). The load: C concurrent clients, each
//! writing a 16-byte value to a random key and waiting for the answer. Runs
//! are interleaved (etcd, dike, dike, etcd, …) and every run starts fresh
//! clusters. Reported per run: throughput, p50/p99 latency, CPU seconds
//! used by the servers and by the load generator, per write.
//!
//! etcd is driven through its native gRPC API (row `etcd (gRPC)`: the
//! etcd-client crate, with all five members as endpoints), which needs the
//! `etcd-grpc` feature (and protoc to build it); built without it, vs-etcd
//! skips that row and says so. `--etcd-json` adds a row through etcd's
//! HTTP/JSON gateway (`etcd (JSON gateway)`), which needs no feature. Only
//! the client protocol differs between the rows: same load loop, same keys
//! and values.
//!
//! `--tls on` runs both systems over mutual TLS (each cluster with a CA and
//! certificates of its own); `--tls both` runs each system plain and over
//! TLS side by side (rows `+TLS`), which is how docs/BENCHMARKS.md measures
//! what TLS costs.
//!
//! ```text
//! integration/scripts/install-etcd.sh   # etcd and protoc
//! cargo run --release -p integration --bin vs-etcd --features etcd-grpc -- --concurrency 64,256 --seconds 20
//! ```

use clap::Parser;
use dike_examples::bench::{kv_key, kv_value};
use dike_examples::kv::{vnode_for, vnodes, KvRequest, KvServer};
use dike_examples::loadgen::{closed_loop, LoadReport};
#[cfg(feature = "etcd-grpc")]
use integration::etcd::GrpcClient;
use integration::etcd::{EtcdCluster, EtcdError, JsonGatewayClient};
use integration::node_http;
use integration::proc_stat::{cpu_seconds, own_cpu_seconds};
use integration::{Client, Cluster, Storage};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Command line of `vs-etcd`.
#[derive(Parser, Debug)]
#[command(about = "dike-rs vs etcd: closed-loop durable writes on 5 processes each")]
struct Args {
    /// Concurrent clients, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    concurrency: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Unmeasured warm-up seconds per run.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Rounds of (etcd, dike) per concurrency; the order alternates.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// dike-rs groups (the kv ring's vnodes).
    #[arg(long, default_value_t = 16)]
    groups: u32,
    /// Bytes per value.
    #[arg(long, default_value_t = 16)]
    value_size: usize,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    json: bool,
    /// Run only this system (`dike` or `etcd`), e.g. to profile it.
    #[arg(long)]
    only: Option<String>,
    /// Also run etcd through its HTTP/JSON gateway (a row `etcd (JSON
    /// gateway)`), besides its gRPC API.
    #[arg(long)]
    etcd_json: bool,
    /// etcd gRPC clients the load is spread over (load client `c` uses
    /// client `c` mod N); each keeps one HTTP/2 connection per member.
    #[cfg(feature = "etcd-grpc")]
    #[arg(long, default_value_t = 1)]
    etcd_grpc_clients: usize,
    /// Send every etcd gRPC request to the leader (found by asking the
    /// members' status) instead of spreading them over the members, so no
    /// follower forwards a write.
    #[cfg(feature = "etcd-grpc")]
    #[arg(long)]
    etcd_leader_only: bool,
    /// Async runtime threads of each `dike node` (its `--worker-threads`;
    /// default: one per core).
    #[arg(long)]
    node_threads: Option<std::num::NonZeroUsize>,
    /// Instead of etcd against dike-rs, dike-rs without metrics against
    /// dike-rs with them: every node with `--http` (so it records its
    /// metrics) and `/metrics` of every node scraped every
    /// `--scrape-every` seconds during the run.
    #[arg(long)]
    metrics_ab: bool,
    /// Seconds between scrapes with `--metrics-ab`.
    #[arg(long, default_value_t = 1)]
    scrape_every: u64,
    /// Mutual TLS on every link of both systems (`on`), none (`off`), or
    /// each system both ways side by side (`both`: rows `+TLS` besides
    /// the plain ones). etcd's TLS rows need the `etcd-grpc` feature (its
    /// JSON gateway rows stay plain); each cluster gets a CA and
    /// certificates of its own, made as `dike certs` makes them.
    #[arg(long, value_enum, default_value_t = TlsMode::Off)]
    tls: TlsMode,
}

/// `--tls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TlsMode {
    Off,
    On,
    Both,
}

impl TlsMode {
    /// The TLS settings of the runs of one system, in round order.
    fn settings(self) -> &'static [bool] {
        match self {
            TlsMode::Off => &[false],
            TlsMode::On => &[true],
            TlsMode::Both => &[false, true],
        }
    }
}

/// What a run measures.
#[derive(Clone, Copy, Debug)]
enum System {
    /// etcd, through the given API; with `.1`, over mutual TLS.
    Etcd(EtcdApi, bool),
    /// dike-rs; with `metrics`, every node records metrics and is scraped;
    /// with `tls`, every session runs over mutual TLS.
    Dike { metrics: bool, tls: bool },
}

/// The API an etcd run's load goes through.
#[derive(Clone, Copy, Debug)]
enum EtcdApi {
    /// Native gRPC (`KV.Put`).
    #[cfg(feature = "etcd-grpc")]
    Grpc,
    /// The HTTP/JSON gateway (`POST /v3/kv/put`).
    Json,
}

impl EtcdApi {
    fn label(self, tls: bool) -> &'static str {
        match (self, tls) {
            #[cfg(feature = "etcd-grpc")]
            (EtcdApi::Grpc, false) => "etcd (gRPC)",
            #[cfg(feature = "etcd-grpc")]
            (EtcdApi::Grpc, true) => "etcd (gRPC) +TLS",
            (EtcdApi::Json, _) => "etcd (JSON gateway)",
        }
    }
}

/// The systems of one round, in the order of even rounds (odd rounds run
/// them reversed, so no system always goes first).
fn systems(args: &Args) -> Vec<System> {
    if args.metrics_ab {
        // An A/B of metrics: dike-rs with them against dike-rs without.
        return vec![
            System::Dike {
                metrics: true,
                tls: false,
            },
            System::Dike {
                metrics: false,
                tls: false,
            },
        ];
    }
    let (etcd, dike) = match args.only.as_deref() {
        Some("etcd") => (true, false),
        Some("dike") => (false, true),
        _ => (true, true),
    };
    let tls = args.tls.settings();
    let mut systems = Vec::new();
    if etcd {
        #[cfg(feature = "etcd-grpc")]
        for &t in tls {
            systems.push(System::Etcd(EtcdApi::Grpc, t));
        }
        #[cfg(not(feature = "etcd-grpc"))]
        eprintln!(
            "etcd (gRPC): skipped: vs-etcd was built without the `etcd-grpc` feature; \
             run integration/scripts/install-etcd.sh (etcd and protoc), then build with \
             `--features etcd-grpc` (--etcd-json runs etcd through its JSON gateway instead)"
        );
        if args.etcd_json {
            // The gateway rows stay plain: their client speaks plain HTTP.
            systems.push(System::Etcd(EtcdApi::Json, false));
        }
    }
    if dike {
        for &t in tls {
            systems.push(System::Dike {
                metrics: false,
                tls: t,
            });
        }
    }
    systems
}

/// One measured run.
#[derive(serde::Serialize)]
struct Run {
    system: &'static str,
    load: LoadReport,
    /// CPU seconds of the server processes during the measured window.
    server_cpu: f64,
    /// CPU seconds of this process (the load generator) in that window.
    loadgen_cpu: f64,
}

impl Run {
    fn row(&self) -> String {
        let per = |cpu: f64| cpu / self.load.ok.max(1) as f64 * 1e6;
        let errors: u64 = self.load.errors.values().sum();
        format!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {:.2} | {} |",
            self.system,
            self.load.clients,
            self.load.throughput,
            self.load.p50_us as f64 / 1000.0,
            self.load.p99_us as f64 / 1000.0,
            per(self.server_cpu),
            per(self.loadgen_cpu),
            self.server_cpu / self.load.seconds,
            errors
        )
    }
}

fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| cpu_seconds(p)).sum()
}

/// Runs `load` twice: once unmeasured (warm-up), then measured with the CPU
/// of `pids` and of this process taken around it.
async fn measured<F>(args: &Args, pids: &[u32], load: F) -> (LoadReport, f64, f64)
where
    F: Fn(Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = LoadReport> + Send>>,
{
    load(Duration::from_secs(args.warmup)).await;
    let (s0, l0) = (cpu_of(pids), own_cpu_seconds().unwrap_or(0.0));
    let report = load(Duration::from_secs(args.seconds)).await;
    let (s1, l1) = (cpu_of(pids), own_cpu_seconds().unwrap_or(0.0));
    (report, s1 - s0, l1 - l0)
}

/// The connections an etcd run's load clients write through.
enum EtcdConns {
    /// gRPC clients shared by all load clients: client `c` uses `c` mod
    /// their number.
    #[cfg(feature = "etcd-grpc")]
    Grpc(Vec<GrpcClient>),
    /// One HTTP/1.1 connection per load client (HTTP/1.1 carries one
    /// request at a time), spread over the members.
    Json(Vec<Mutex<JsonGatewayClient>>),
}

impl EtcdConns {
    /// Opens `api`'s connections for `clients` load clients.
    // Without the feature, only the gRPC arm reads `args`.
    #[cfg_attr(not(feature = "etcd-grpc"), allow(unused_variables))]
    async fn open(
        args: &Args,
        api: EtcdApi,
        clients: usize,
        cluster: &EtcdCluster,
    ) -> Result<EtcdConns, EtcdError> {
        match api {
            // By default one gRPC client (one HTTP/2 connection per member)
            // carries every load client's requests as concurrent streams:
            // the more streams share a connection, the more requests go out
            // and come in per syscall on both sides, and on this CPU-bound
            // 2-core machine etcd's CPU per write is what limits its
            // throughput. etcd's own benchmark tool shares connections the
            // same way (`--clients` over fewer `--conns`).
            // `--etcd-grpc-clients N` spreads the load over N clients, to
            // check this at a given concurrency.
            #[cfg(feature = "etcd-grpc")]
            EtcdApi::Grpc => {
                let tls = cluster.tls.as_ref();
                let members = if args.etcd_leader_only {
                    vec![GrpcClient::leader(&cluster.clients, tls).await?]
                } else {
                    cluster.clients.clone()
                };
                let mut pool = Vec::new();
                for _ in 0..args.etcd_grpc_clients.max(1) {
                    pool.push(GrpcClient::connect(&members, tls).await?);
                }
                Ok(EtcdConns::Grpc(pool))
            }
            EtcdApi::Json => {
                let mut conns = Vec::new();
                for c in 0..clients {
                    let addr = cluster.clients[c % cluster.clients.len()];
                    conns.push(Mutex::new(JsonGatewayClient::connect(addr).await?));
                }
                Ok(EtcdConns::Json(conns))
            }
        }
    }

    /// Writes `key = value` for load client `client`.
    async fn put(&self, client: usize, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        match self {
            #[cfg(feature = "etcd-grpc")]
            EtcdConns::Grpc(pool) => pool[client % pool.len()].put(key, value).await,
            EtcdConns::Json(conns) => conns[client].lock().await.put(key, value).await,
        }
    }
}

async fn run_etcd(args: &Args, clients: usize, api: EtcdApi, tls: bool) -> Run {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cluster = EtcdCluster::start_with(5, dir.path(), tls)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let conns = EtcdConns::open(args, api, clients, &cluster)
        .await
        .unwrap_or_else(|e| panic!("connect to etcd: {e}"));
    let conns = Arc::new(conns);
    let size = args.value_size;
    let (load, server_cpu, loadgen_cpu) = measured(args, &cluster.pids(), |d| {
        let conns = conns.clone();
        Box::pin(closed_loop(clients, Duration::ZERO, d, move |c, i| {
            let conns = conns.clone();
            async move {
                let key = kv_key(c, i);
                conns
                    .put(c, key.as_bytes(), kv_value(size, i).as_bytes())
                    .await
            }
        }))
    })
    .await;
    Run {
        system: api.label(tls),
        load,
        server_cpu,
        loadgen_cpu,
    }
}

/// `GET /metrics` of `addr`: the body's length, or why not.
async fn scrape(addr: std::net::SocketAddr) -> Result<usize, String> {
    let reply = node_http::get(addr, "/metrics")
        .await
        .map_err(|e| e.to_string())?;
    if reply.status != 200 {
        return Err(format!("status {}: {}", reply.status, reply.body.trim()));
    }
    if !reply.body.contains("dike_requests_total{") {
        return Err("no request counted: the node does not record".into());
    }
    Ok(reply.body.len())
}

async fn run_dike(args: &Args, clients: usize, metrics: bool, tls: bool) -> Run {
    let threads = args.node_threads.map(|n| n.to_string());
    let node_args: Vec<&str> = match &threads {
        Some(n) => vec!["--worker-threads", n],
        None => Vec::new(),
    };
    let cluster = Cluster::builder("vs-etcd")
        .masters(5)
        .nodes(5)
        .storage(Storage::Durable)
        .group_size(5)
        .log_filter("warn")
        .node_args(&node_args)
        .http(metrics)
        .tls(tls)
        .start();
    let client = Client::connect_with(&cluster, Duration::from_secs(10)).await;
    client
        .wait_for_live_nodes(&cluster.names(), Duration::from_secs(60))
        .await;
    for g in vnodes(args.groups) {
        client
            .add_group::<KvServer>(&g)
            .await
            .expect("add a kv group");
        let handle = client.group::<KvServer>(&g);
        client
            .wait_until(Duration::from_secs(30), "the group answers", || async {
                Ok(handle
                    .call(KvRequest::Put("warm".into(), "1".into()))
                    .await?)
            })
            .await;
    }
    eprintln!(
        "dike-rs: groups led per node: {:?}",
        leaders_per_node(&client, args.groups).await
    );
    let pids: Vec<u32> = (0..cluster.len()).filter_map(|i| cluster.pid(i)).collect();
    let https: Vec<std::net::SocketAddr> = (0..cluster.len())
        .filter_map(|i| cluster.http_addr(i))
        .collect();
    let every = Duration::from_secs(args.scrape_every.max(1));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let scraper = tokio::spawn(async move {
        let (mut scrapes, mut failed) = (0u64, Vec::new());
        if https.is_empty() {
            return (scrapes, failed);
        }
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => return (scrapes, failed),
            }
            for a in &https {
                match scrape(*a).await {
                    Ok(_) => scrapes += 1,
                    Err(e) => failed.push(format!("{a}: {e}")),
                }
            }
            if failed.len() > 10 {
                return (scrapes, failed);
            }
        }
    });
    let node = client.node().clone();
    let (groups, size) = (args.groups, args.value_size);
    let (load, server_cpu, loadgen_cpu) = measured(args, &pids, |d| {
        let node = node.clone();
        Box::pin(closed_loop(clients, Duration::ZERO, d, move |c, i| {
            let node = node.clone();
            async move {
                let key = kv_key(c, i);
                let group = vnode_for(&key, groups);
                node.group::<KvServer>(&group)
                    .call(KvRequest::Put(key, kv_value(size, i)))
                    .await
                    .map(|_| ())
            }
        }))
    })
    .await;
    let _ = stop.send(());
    if let Ok((scrapes, failed)) = scraper.await {
        if metrics {
            eprintln!("dike-rs +metrics: {scrapes} scrapes, failed: {failed:?}");
        }
    }
    client.stop().await;
    drop(cluster);
    Run {
        system: match (metrics, tls) {
            (true, _) => "dike-rs +metrics",
            (false, true) => "dike-rs +TLS",
            (false, false) => "dike-rs",
        },
        load,
        server_cpu,
        loadgen_cpu,
    }
}

/// How many of the groups each node leads, most first (as the groups'
/// replicas report it; a group without a known leader is not counted).
async fn leaders_per_node(client: &Client, groups: u32) -> Vec<usize> {
    let mut led = std::collections::BTreeMap::<u64, usize>::new();
    for g in vnodes(groups) {
        let Ok(statuses) = client.replica_statuses(&g).await else {
            continue;
        };
        let leader = statuses
            .iter()
            .find_map(|(_, s)| s.as_ref().ok().and_then(|s| s.leader));
        if let Some(l) = leader {
            *led.entry(l.node.0).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = led.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.json {
        println!("| system | clients | writes/s | p50 ms | p99 ms | server CPU µs/write | loadgen CPU µs/write | server cores busy | errors |");
        println!("|---|---|---|---|---|---|---|---|---|");
    }
    let systems = systems(&args);
    for round in 0..args.rounds {
        for &c in &args.concurrency {
            let mut order = systems.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for system in order {
                let run = match system {
                    System::Etcd(api, tls) => run_etcd(&args, c, api, tls).await,
                    System::Dike { metrics, tls } => run_dike(&args, c, metrics, tls).await,
                };
                if args.json {
                    println!("{}", serde_json::to_string(&run).expect("a run serializes"));
                } else {
                    println!("{}", run.row());
                }
                if !run.load.errors.is_empty() {
                    eprintln!("{} errors: {:?}", run.system, run.load.errors);
                }
            }
        }
    }
}
