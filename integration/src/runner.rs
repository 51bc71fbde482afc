//! One fault run: start a cluster of real node processes with durable
//! storage, drive the [`workload`](crate::workload), inject faults from the
//! [`Scheduler`] one at a time (each held, healed, and timed until every
//! group answers again), then heal everything and check.
//!
//! Checked after the heal: every node is up again; every group has one
//! leader all its voters agree on and answers; all voters of every group
//! (the master group too) applied the same slots and hold the same state
//! (the state digest of [`ReplicaStatus`]); no acknowledged counter add or
//! set add is lost (final reads); and the whole history — final reads
//! included — is linearizable key by key.
//!
//! Invariant: every wait polls a condition with a deadline; the only sleeps
//! are a fault's planned hold and the pause between polls. A failing run
//! writes `history.json` and every node log to a directory it names.

use crate::client::Client;
use crate::cluster::{Cluster, Storage};
use crate::faults::{Action, Fault, FaultKind, Scheduler, View};
use crate::history::{Op, Outcome, OutcomeCounts, Recorder, Ret};
use crate::linearizability::{self, Verdict};
use crate::nft::Partition;
use crate::wait::{poll_until, NotYet};
use crate::workload::{self, Workload, WorkloadConfig};
use dike_actors::cluster::wire::ReplicaStatus;
use dike_actors::node::config::MASTER_GROUP;
use dike_actors::{DikeError, NodeHandle};
use dike_core::MemberId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// What a run does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The run's name (directories, node names).
    pub name: String,
    /// Nodes in the cluster (the first 5, or 3, or 1, are masters).
    pub nodes: usize,
    /// How long faults are injected under load.
    pub duration: Duration,
    /// The fault kinds to draw from.
    pub kinds: Vec<FaultKind>,
    /// Seed of the scheduler and the workload.
    pub seed: u64,
    /// The workload.
    pub workload: WorkloadConfig,
    /// Shortest and longest hold of one fault.
    pub hold: (Duration, Duration),
    /// How long after a heal every group must answer again.
    pub recover_within: Duration,
    /// Length of one round: the history is checked at the end of every
    /// round (the workload pauses for it), which keeps each check small in
    /// a long soak. A CI run is one round.
    pub round: Duration,
    /// Time budget of the linearizability search per key.
    pub check_budget: Duration,
    /// Where a failing run writes its evidence (default: the temp dir).
    pub out: Option<PathBuf>,
}

impl RunConfig {
    /// A CI-sized run of `kinds` named `name`.
    pub fn new(name: &str, kinds: &[FaultKind], seed: u64) -> Self {
        RunConfig {
            name: name.to_owned(),
            nodes: 5,
            duration: Duration::from_secs(20),
            kinds: kinds.to_vec(),
            seed,
            workload: WorkloadConfig {
                seed,
                ..WorkloadConfig::default()
            },
            hold: (Duration::from_secs(2), Duration::from_secs(4)),
            recover_within: Duration::from_secs(30),
            round: Duration::from_secs(180),
            check_budget: Duration::from_secs(20),
            out: None,
        }
    }
}

/// One injected fault and how the cluster took it.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    /// What was done.
    pub fault: Fault,
    /// When it was injected (since the workload started).
    pub at: Duration,
    /// From the injection until every group answered while the fault held
    /// (`None`: not before the heal — expected when a fault leaves a group
    /// without a quorum it can reach).
    pub available_after: Option<Duration>,
    /// From the heal until every group answered again (`None`: not within
    /// the deadline).
    pub recovered_after: Option<Duration>,
}

/// What a run saw and concluded.
#[derive(Clone, Debug)]
pub struct Report {
    /// The run's name.
    pub name: String,
    /// Its seed.
    pub seed: u64,
    /// Operations by outcome.
    pub counts: OutcomeCounts,
    /// The faults, in order.
    pub faults: Vec<FaultRecord>,
    /// The linearizability verdict.
    pub verdict: Verdict,
    /// Every other check that failed.
    pub failures: Vec<String>,
    /// Where the evidence of a failing run is.
    pub evidence: Option<PathBuf>,
    /// How long the whole run took.
    pub took: Duration,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.verdict.is_linearizable()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== fault run {} (seed {}) {} in {:.1}s",
            self.name,
            self.seed,
            if self.passed() { "PASSED" } else { "FAILED" },
            self.took.as_secs_f64()
        )?;
        writeln!(f, "operations: {}", self.counts)?;
        let mut by_kind: BTreeMap<FaultKind, usize> = BTreeMap::new();
        for r in &self.faults {
            *by_kind.entry(r.fault.kind).or_default() += 1;
        }
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        writeln!(
            f,
            "faults injected: {} ({})",
            self.faults.len(),
            kinds.join(", ")
        )?;
        for r in &self.faults {
            let during = match r.available_after {
                Some(d) => format!("all groups answered {:.2}s into it", d.as_secs_f64()),
                None => "some group did not answer while it held".to_owned(),
            };
            let rec = match r.recovered_after {
                Some(d) => format!("{during}; recovered {:.2}s after the heal", d.as_secs_f64()),
                None => format!("{during}; DID NOT RECOVER"),
            };
            writeln!(f, "  at {:>6.1}s {} — {rec}", r.at.as_secs_f64(), r.fault)?;
        }
        writeln!(f, "checker: {}", self.verdict)?;
        for x in &self.failures {
            writeln!(f, "FAILED CHECK: {x}")?;
        }
        if let Some(e) = &self.evidence {
            writeln!(f, "history and node logs: {}", e.display())?;
        }
        Ok(())
    }
}

fn ipv4(cluster: &Cluster, i: usize) -> Ipv4Addr {
    match cluster.addr(i).ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
    }
}

/// The master group's voters as the client knows them now (the cluster's
/// masters list at first; the client learns every change from the table).
fn masters_of(client: &Client) -> Vec<MemberId> {
    client.node().master_config().voters
}

/// The voters of `group` (the master group's from the cluster's masters).
async fn voters(client: &Client, group: &str) -> Result<Vec<MemberId>, NotYet> {
    if group == MASTER_GROUP {
        return Ok(masters_of(client));
    }
    let t = client.routing_table().await?;
    Ok(t.voters(group)
        .map_err(|_| DikeError::UnknownGroup(group.to_owned()))?
        .to_vec())
}

/// The leader some voter of `group` believes in.
async fn leader_of(node: &NodeHandle, group: &str, voters: &[MemberId]) -> Option<MemberId> {
    for m in voters {
        if let Ok(ReplicaStatus {
            leader: Some(l), ..
        }) = node.replica_status(group, *m).await
        {
            return Some(l);
        }
    }
    None
}

/// Who leads what now, for the scheduler.
async fn view(client: &Client, cluster: &Cluster, groups: &[String]) -> View {
    let mut v = View {
        addrs: (0..cluster.len()).map(|i| ipv4(cluster, i)).collect(),
        ..View::default()
    };
    for g in groups {
        let Ok(vs) = voters(client, g).await else {
            continue;
        };
        if let Some(l) = leader_of(client.node(), g, &vs).await {
            if let Some(i) = cluster.index_of(l.node) {
                v.data_leaders.push(i);
            }
        }
    }
    let masters = masters_of(client);
    if let Some(l) = leader_of(client.node(), MASTER_GROUP, &masters).await {
        v.master_leader = cluster.index_of(l.node);
    }
    v
}

/// One read-only query to `group` of `kind`: does it answer?
async fn probe(node: &NodeHandle, group: &str, kind: &str) -> Result<(), DikeError> {
    use dike_examples::arithmetic::{Arithmetic, ArithmeticRequest};
    use dike_examples::kv::{KvRequest, KvServer};
    use dike_examples::set::{SetRequest, SetServer};
    match kind {
        "kv" => node
            .group::<KvServer>(group)
            .query(KvRequest::Get("probe".into()))
            .await
            .map(drop),
        "arithmetic" => node
            .group::<Arithmetic>(group)
            .query(ArithmeticRequest::Read)
            .await
            .map(drop),
        _ => node
            .group::<SetServer>(group)
            .query(SetRequest::Read("probe".into()))
            .await
            .map(drop),
    }
}

/// Waits until every group answers a query; returns how long it took.
async fn wait_all_answer(
    node: &NodeHandle,
    groups: &[(String, &'static str)],
    within: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    poll_until(within, || async {
        for (g, kind) in groups {
            probe(node, g, kind)
                .await
                .map_err(|e| NotYet(format!("{g}: {e}")))?;
        }
        Ok::<(), NotYet>(())
    })
    .await
    .map(|()| started.elapsed())
    .map_err(|e| e.0)
}

async fn inject(
    cluster: &mut Cluster,
    partition: &mut Option<Partition>,
    fault: &Fault,
    run: &mut RunState,
    client: &Client,
) -> Result<(), String> {
    match &fault.action {
        Action::Join => run.joined.push(cluster.add_node()),
        Action::Decommission(i) => {
            // Only starts it: the recovery waits until the node has left.
            client
                .node()
                .remove_node(cluster.name(*i))
                .await
                .map_err(|e| e.to_string())?;
            run.joined.retain(|j| j != i);
            run.removed.insert(*i);
        }
        Action::Drain(i) => client
            .node()
            .set_draining(cluster.name(*i), true)
            .await
            .map_err(|e| e.to_string())?,
        Action::Transfer(i) => transfer_one(client, cluster, *i).await,
        Action::Remove(i) => {
            cluster.kill(*i);
            run.joined.retain(|j| j != i);
            run.removed.insert(*i);
        }
        Action::ReplaceMaster { old, new } => {
            cluster.kill(*old);
            run.removed.insert(*old);
            run.joined.retain(|j| j != new);
            // Only asks: the recovery waits until the masters changed. The
            // master quorum may be electing a new leader: ask until it takes
            // the request.
            let (old, new) = (cluster.name(*old), cluster.name(*new));
            let asked = poll_until(Duration::from_secs(30), || async {
                let node = client.node();
                node.change_masters(Some(new), Some(old))
                    .await
                    .map(|_| ())
                    .map_err(|e| NotYet(e.to_string()))
            })
            .await;
            asked.map_err(|e| format!("the master replacement was not taken: {}", e.0))?;
        }
        Action::Kill(nodes) => nodes.iter().for_each(|i| cluster.kill(*i)),
        Action::Pause(nodes) => nodes.iter().for_each(|i| cluster.pause(*i)),
        Action::Partition(t) => match partition {
            Some(p) => p.apply(t).map_err(|e| e.to_string())?,
            None => return Err(format!("{} needs nft, which is not available", fault.kind)),
        },
    }
    Ok(())
}

async fn heal(
    client: &Client,
    cluster: &mut Cluster,
    partition: &mut Option<Partition>,
    fault: &Fault,
) -> Result<(), String> {
    match &fault.action {
        Action::Join
        | Action::Remove(_)
        | Action::Decommission(_)
        | Action::ReplaceMaster { .. }
        | Action::Transfer(_) => {}
        Action::Drain(i) => client
            .node()
            .set_draining(cluster.name(*i), false)
            .await
            .map_err(|e| e.to_string())?,
        Action::Kill(nodes) => nodes.iter().for_each(|i| cluster.start(*i)),
        Action::Pause(nodes) => nodes.iter().for_each(|i| cluster.resume(*i)),
        Action::Partition(_) => {
            if let Some(p) = partition {
                p.heal().map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// Hands one leadership that node `i` holds (of a group in the table) to
/// another voter of the group, as an operator would. A transfer the group
/// refuses or does not finish in time (a change in flight, a target
/// behind) is reported and is not a failure: the checks judge what the
/// clients saw.
async fn transfer_one(client: &Client, cluster: &Cluster, i: usize) {
    let Ok(table) = client.routing_table().await else {
        eprintln!("transfer: no routing table");
        return;
    };
    let node = cluster.node_id(i);
    for (name, g) in &table.groups {
        let vs = &g.config.voters;
        let Some(leader) = leader_of(client.node(), name, vs).await else {
            continue;
        };
        let Some(to) = vs.iter().find(|v| v.node != node) else {
            continue;
        };
        if leader.node != node {
            continue;
        }
        let within = Duration::from_secs(3);
        let target = cluster
            .index_of(to.node)
            .map_or_else(|| to.to_string(), |j| cluster.name(j).to_owned());
        match client.node().transfer_leadership(name, *to, within).await {
            Ok(()) => eprintln!("transfer: {name} now led by {target}"),
            Err(e) => eprintln!("transfer: {name} to {target} not done: {e}"),
        }
        return;
    }
    eprintln!("transfer: {} leads no data group", cluster.name(i));
}

/// Every voter of `group` answers, names the same leader, applied the same
/// slots and holds the same state.
async fn replicas_agree(client: &Client, group: &str) -> Result<u64, NotYet> {
    let vs = voters(client, group).await?;
    let mut seen = Vec::new();
    for m in &vs {
        let s = client
            .node()
            .replica_status(group, *m)
            .await
            .map_err(|e| NotYet(format!("{m}: {e}")))?;
        seen.push(s);
    }
    let leaders: BTreeSet<Option<MemberId>> = seen.iter().map(|s| s.leader).collect();
    let states: BTreeSet<(u64, Option<u64>)> =
        seen.iter().map(|s| (s.applied, s.state_digest)).collect();
    let describe = || {
        seen.iter()
            .map(|s| {
                format!(
                    "{}: leader {:?} applied {} digest {:?}",
                    s.member, s.leader, s.applied, s.state_digest
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if leaders.len() != 1 || leaders.contains(&None) {
        return Err(NotYet(format!("no agreed leader: {}", describe())));
    }
    if states.len() != 1 {
        return Err(NotYet(format!("replicas differ: {}", describe())));
    }
    Ok(seen[0].applied)
}

/// Checks the final reads against what was acknowledged: every acked add
/// to a counter and every acked element of a set is there.
fn lost_writes(records: &[crate::history::Record]) -> Vec<String> {
    let mut out = Vec::new();
    let mut acked_add: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut acked_insert: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let mut last_read: BTreeMap<&str, &Ret> = BTreeMap::new();
    for r in records {
        match (&r.op, &r.outcome) {
            (Op::Add(n), Some(Outcome::Ok(_))) => acked_add.entry(&r.key).or_default().0 += n,
            (Op::Add(n), Some(Outcome::Unknown(_)) | None) => {
                acked_add.entry(&r.key).or_default().1 += n
            }
            (Op::Insert(x), Some(Outcome::Ok(_))) => {
                acked_insert.entry(&r.key).or_default().insert(*x);
            }
            (Op::ReadCounter | Op::ReadSet, Some(Outcome::Ok(ret))) if r.worker == usize::MAX => {
                last_read.insert(&r.key, ret);
            }
            _ => {}
        }
    }
    for (key, (acked, maybe)) in acked_add {
        match last_read.get(key) {
            Some(Ret::Count(v)) if (acked..=acked + maybe).contains(v) => {}
            Some(Ret::Count(v)) => out.push(format!(
                "{key}: final value {v}, but acknowledged adds sum to {acked} (+ up to {maybe} unknown)"
            )),
            _ => out.push(format!("{key}: no final read")),
        }
    }
    for (key, acked) in acked_insert {
        match last_read.get(key) {
            Some(Ret::Elements(e)) => {
                let lost: Vec<&u64> = acked.difference(e).collect();
                if !lost.is_empty() {
                    out.push(format!(
                        "{key}: {} acknowledged adds missing from the final read: {lost:?}",
                        lost.len()
                    ));
                }
            }
            _ => out.push(format!("{key}: no final read")),
        }
    }
    out
}

/// Runs one fault run. `partition` must be given when `config.kinds`
/// contains a kind that needs nft.
pub async fn run(config: RunConfig, mut partition: Option<Partition>) -> Report {
    let started = Instant::now();
    let masters = match config.nodes {
        n if n >= 5 => 5,
        n if n >= 3 => 3,
        _ => 1,
    };
    let mut cluster = Cluster::builder(&config.name)
        .masters(masters)
        .nodes(config.nodes)
        .storage(Storage::Durable)
        .group_size(config.nodes.min(5))
        .node_args(
            if config.kinds.contains(&FaultKind::Churn)
                || config.kinds.contains(&FaultKind::ReplaceMaster)
            {
                &["--replace-after", "5"]
            } else {
                &[]
            },
        )
        .log_filter(
            std::env::var("DIKE_NODE_LOG").unwrap_or_else(|_| "info,ractor_cluster=warn".into()),
        )
        .start();
    let client = Client::connect(&cluster).await;
    client
        .wait_for_live_nodes(&cluster.names(), Duration::from_secs(60))
        .await;
    let groups = config.workload.groups();
    for (g, kind) in &groups {
        client
            .wait_until(
                Duration::from_secs(30),
                &format!("group {g} is added"),
                || async { Ok(client.add_group_of_kind(g, kind, None).await?) },
            )
            .await;
    }
    if let Err(e) = wait_all_answer(client.node(), &groups, Duration::from_secs(60)).await {
        panic!(
            "the groups never answered before any fault: {e}; logs in {}",
            cluster.log_dir().display()
        );
    }
    let mut scheduler = Scheduler::new(config.seed, &config.kinds);
    scheduler.hold = config.hold;
    let mut run = RunState {
        joined: Vec::new(),
        removed: BTreeSet::new(),
        faults: Vec::new(),
        failures: Vec::new(),
        recorders: Vec::new(),
        verdict: Verdict::default(),
        counters: config
            .workload
            .counter_keys()
            .into_iter()
            .map(|k| (k, 0))
            .collect(),
    };
    let load_started = Instant::now();
    let end = load_started + config.duration;
    let mut round = 0;
    while run.failures.is_empty() && (round == 0 || Instant::now() + config.hold.0 < end) {
        let round_end = (Instant::now() + config.round).min(end);
        let mut workload_config = config.workload.clone();
        workload_config.round = round;
        run_round(
            &config,
            &workload_config,
            round_end,
            load_started,
            &mut scheduler,
            &mut run,
            &mut cluster,
            &mut partition,
            &client,
            &groups,
        )
        .await;
        round += 1;
    }
    let mut counts = OutcomeCounts::default();
    for r in &run.recorders {
        let c = r.counts();
        counts.ok += c.ok;
        counts.fail += c.fail;
        counts.unknown += c.unknown;
        counts.in_flight += c.in_flight;
    }
    let mut report = Report {
        name: config.name.clone(),
        seed: config.seed,
        counts,
        faults: run.faults,
        verdict: run.verdict,
        failures: run.failures,
        evidence: None,
        took: started.elapsed(),
    };
    if !report.passed() {
        report.evidence = Some(write_evidence(&config, &run.recorders, &cluster));
    }
    drop(partition);
    client.stop().await;
    report
}

/// Whether the membership change after a churn fault is done: no group
/// has a learner (no move in flight), and the node `node` is a voter of some
/// group (`joined`) or of none (removed).
async fn churn_done(client: &Client, node: dike_core::NodeId, joined: bool) -> Result<(), NotYet> {
    let t = client.routing_table().await?;
    let moving: Vec<&str> = t
        .groups
        .values()
        .filter(|g| !g.config.learners.is_empty())
        .map(|g| g.name.as_str())
        .collect();
    if !moving.is_empty() {
        return Err(NotYet(format!("moves in flight in {moving:?}")));
    }
    let hosting: Vec<&str> = t
        .groups
        .values()
        .filter(|g| g.member_on(node).is_some())
        .map(|g| g.name.as_str())
        .collect();
    match (joined, hosting.is_empty()) {
        (true, false) | (false, true) => Ok(()),
        (true, true) => Err(NotYet("no group moved onto the new node yet".into())),
        (false, false) => Err(NotYet(format!("the removed node still holds {hosting:?}"))),
    }
}

/// Whether the decommissioning of `node` is done: it left the routing table
/// (which the master does only once no group has a member on it) and is
/// listed as removed.
async fn decommission_done(client: &Client, node: dike_core::NodeId) -> Result<(), NotYet> {
    let t = client.routing_table().await?;
    if let Some(n) = t.node(node) {
        let hosting = t.groups_on(node).count();
        return Err(NotYet(format!(
            "{} is still in the table (removing: {}, hosting {hosting} replicas)",
            n.name, n.removing
        )));
    }
    if !t.removed.contains_key(&node) {
        return Err(NotYet("the node left but is not listed as removed".into()));
    }
    Ok(())
}

/// Whether the masters are settled with `new` a voter and `old` gone.
async fn masters_replaced(client: &Client, old: &str, new: &str) -> Result<(), NotYet> {
    let view = client
        .node()
        .masters()
        .await
        .map_err(|e| NotYet(e.to_string()))?;
    let voters = &view.voters;
    if view.settled() && voters.iter().any(|v| v == new) && !voters.iter().any(|v| v == old) {
        Ok(())
    } else {
        Err(NotYet(format!("masters now: {view:?}")))
    }
}

/// What the rounds of a run accumulate.
struct RunState {
    /// Nodes that joined during the run (and were not removed).
    joined: Vec<usize>,
    /// Nodes removed for good.
    removed: BTreeSet<usize>,
    faults: Vec<FaultRecord>,
    failures: Vec<String>,
    recorders: Vec<Recorder>,
    verdict: Verdict,
    /// Each counter's value at the end of the last round.
    counters: BTreeMap<String, i64>,
}

/// One round: load with faults until `round_end`, then heal and check. A
/// round's history starts from known objects: fresh register and set keys,
/// and counters whose value the last round's final read established (an
/// acknowledged `Add` of that value opens the round's history).
#[allow(clippy::too_many_arguments)]
async fn run_round(
    config: &RunConfig,
    workload_config: &WorkloadConfig,
    round_end: Instant,
    load_started: Instant,
    scheduler: &mut Scheduler,
    run: &mut RunState,
    cluster: &mut Cluster,
    partition: &mut Option<Partition>,
    client: &Client,
    groups: &[(String, &'static str)],
) {
    let group_names: Vec<String> = groups.iter().map(|(g, _)| g.clone()).collect();
    let recorder = Recorder::new();
    for (key, value) in &run.counters {
        let p = recorder.new_process();
        let opening = recorder.invoke(p, usize::MAX - 1, key, Op::Add(*value));
        recorder.complete(opening, Outcome::Ok(Ret::Count(*value)));
    }
    let workload = Workload::start(client.node(), workload_config, &recorder);
    while Instant::now() + config.hold.0 < round_end {
        let mut v = view(client, cluster, &group_names).await;
        v.joined = run.joined.clone();
        let fault = scheduler.next(&v);
        let at = load_started.elapsed();
        eprintln!("[{:>6.1}s] inject {fault}", at.as_secs_f64());
        if let Err(e) = inject(cluster, partition, &fault, run, client).await {
            run.failures.push(format!("cannot inject {fault}: {e}"));
            break;
        }
        let injected = Instant::now();
        let available_after = tokio::time::timeout(
            fault.hold,
            wait_all_answer(client.node(), groups, fault.hold),
        )
        .await
        .ok()
        .and_then(Result::ok);
        tokio::time::sleep_until(injected + fault.hold).await;
        if let Err(e) = heal(client, cluster, partition, &fault).await {
            run.failures.push(format!("cannot heal {fault}: {e}"));
            break;
        }
        let recovered = match &fault.action {
            Action::Join | Action::Remove(_) => {
                let moved = Instant::now();
                let within = config.recover_within;
                let node = cluster.node_id(match &fault.action {
                    Action::Remove(i) => *i,
                    _ => cluster.len() - 1,
                });
                let joined = matches!(fault.action, Action::Join);
                match poll_until(within, || churn_done(client, node, joined)).await {
                    Ok(()) => wait_all_answer(client.node(), groups, within)
                        .await
                        .map(|_| moved.elapsed()),
                    Err(e) => Err(format!("groups did not move: {}", e.0)),
                }
            }
            Action::Decommission(i) => {
                let moved = Instant::now();
                let within = config.recover_within;
                let node = cluster.node_id(*i);
                match poll_until(within, || decommission_done(client, node)).await {
                    Ok(()) => {
                        // Out of the table, it learns it was removed, marks
                        // its data dir and exits 9 by itself.
                        let gone = poll_until(within, || {
                            std::future::ready(
                                cluster.exited(*i).ok_or(NotYet("it still runs".into())),
                            )
                        })
                        .await;
                        cluster.kill(*i);
                        match gone {
                            Ok(s) if s.code() == Some(9) => {
                                wait_all_answer(client.node(), groups, within)
                                    .await
                                    .map(|_| moved.elapsed())
                            }
                            Ok(s) => Err(format!("the removed node exited with {s}, not 9")),
                            Err(e) => Err(format!("the removed node did not exit: {}", e.0)),
                        }
                    }
                    Err(e) => Err(format!("the node was not decommissioned: {}", e.0)),
                }
            }
            Action::ReplaceMaster { old, new } => {
                let moved = Instant::now();
                let within = config.recover_within;
                let (old, new) = (cluster.name(*old), cluster.name(*new));
                match poll_until(within, || masters_replaced(client, old, new)).await {
                    Ok(()) => wait_all_answer(client.node(), groups, within)
                        .await
                        .map(|_| moved.elapsed()),
                    Err(e) => Err(format!("the master was not replaced: {}", e.0)),
                }
            }
            _ => wait_all_answer(client.node(), groups, config.recover_within).await,
        };
        let recovered_after = match recovered {
            Ok(d) => {
                eprintln!(
                    "[{:>6.1}s] healed; every group answers after {:.2}s",
                    load_started.elapsed().as_secs_f64(),
                    d.as_secs_f64()
                );
                Some(d)
            }
            Err(e) => {
                run.failures.push(format!(
                    "after {fault}: not every group answered within {:?} of the heal: {e}",
                    config.recover_within
                ));
                None
            }
        };
        run.faults.push(FaultRecord {
            fault,
            at,
            available_after,
            recovered_after,
        });
        if recovered_after.is_none() {
            break;
        }
    }
    workload.stop().await;
    check_after_heal(
        config,
        workload_config,
        run,
        cluster,
        client,
        groups,
        &recorder,
    )
    .await;
    run.recorders.push(recorder);
}

/// The checks after a round: see the module documentation.
async fn check_after_heal(
    config: &RunConfig,
    workload_config: &WorkloadConfig,
    run: &mut RunState,
    cluster: &mut Cluster,
    client: &Client,
    groups: &[(String, &'static str)],
    recorder: &Recorder,
) {
    let failures = &mut run.failures;
    if let Err(e) = poll_until(Duration::from_secs(60), || async {
        let t = client.routing_table().await?;
        let down: Vec<String> = cluster
            .names()
            .into_iter()
            .enumerate()
            .filter(|(i, n)| {
                !run.removed.contains(i) && !t.is_up(dike_actors::node::config::node_id_of(n))
            })
            .map(|(_, n)| n)
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(NotYet(format!("not up: {down:?}")))
        }
    })
    .await
    {
        failures.push(format!(
            "not every node is up again after the heal: {}",
            e.0
        ));
    }
    if let Err(e) = wait_all_answer(client.node(), groups, Duration::from_secs(30)).await {
        failures.push(format!("not every group answers after the heal: {e}"));
    }
    for (key, why) in workload::final_reads(client.node(), workload_config, recorder).await {
        failures.push(format!("final read of {key} failed: {why}"));
    }
    let names = groups.iter().map(|(g, _)| g.as_str());
    for g in names.chain([MASTER_GROUP]) {
        if let Err(e) = poll_until(Duration::from_secs(30), || replicas_agree(client, g)).await {
            failures.push(format!("replicas of {g} do not agree: {}", e.0));
        }
    }
    let exits = cluster.unexpected_exits();
    if !exits.is_empty() {
        failures.push(format!("node processes exited by themselves: {exits:?}"));
    }
    let records = recorder.records();
    failures.extend(lost_writes(&records));
    for r in &records {
        if let (Op::ReadCounter, Some(Outcome::Ok(Ret::Count(v))), usize::MAX) =
            (&r.op, &r.outcome, r.worker)
        {
            run.counters.insert(r.key.clone(), *v);
        }
    }
    let budget = config.check_budget;
    let verdict = tokio::task::spawn_blocking(move || linearizability::check(&records, budget))
        .await
        .unwrap_or_default();
    run.verdict.keys.extend(verdict.keys);
}

/// Writes `history.json` and a copy of every node log into a fresh
/// directory; returns it.
fn write_evidence(config: &RunConfig, recorders: &[Recorder], cluster: &Cluster) -> PathBuf {
    let base = config.out.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "dike-faults-{}-seed{}-{}",
        config.name,
        config.seed,
        std::process::id()
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return dir;
    }
    for (i, r) in recorders.iter().enumerate() {
        // The last round is the one that failed.
        let name = if i + 1 == recorders.len() {
            "history.json".to_owned()
        } else {
            format!("history-round-{i}.json")
        };
        if let Err(e) = r.dump(&dir.join(name)) {
            eprintln!("{e}");
        }
    }
    if let Ok(entries) = std::fs::read_dir(cluster.log_dir()) {
        for e in entries.flatten() {
            let _ = std::fs::copy(e.path(), dir.join(e.file_name()));
        }
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Record;

    fn rec(key: &str, worker: usize, op: Op, outcome: Option<Outcome>) -> Record {
        Record {
            process: 1,
            worker,
            key: key.into(),
            op,
            invoke_us: 0,
            return_us: Some(1),
            outcome,
        }
    }

    #[test]
    fn a_final_read_missing_an_acknowledged_add_is_a_lost_write() {
        let ok = |r| Some(Outcome::Ok(r));
        let unknown = Some(Outcome::Unknown("timeout".into()));
        let fine = vec![
            rec("c", 0, Op::Add(2), ok(Ret::Count(2))),
            rec("c", 0, Op::Add(3), unknown.clone()),
            rec("c", usize::MAX, Op::ReadCounter, ok(Ret::Count(5))),
            rec("s", 0, Op::Insert(1), ok(Ret::Inserted(true))),
            rec("s", 0, Op::Insert(2), unknown),
            rec("s", usize::MAX, Op::ReadSet, ok(Ret::Elements([1].into()))),
        ];
        assert!(lost_writes(&fine).is_empty(), "{:?}", lost_writes(&fine));
        let lost = vec![
            rec("c", 0, Op::Add(2), ok(Ret::Count(2))),
            rec("c", usize::MAX, Op::ReadCounter, ok(Ret::Count(0))),
            rec("s", 0, Op::Insert(1), ok(Ret::Inserted(true))),
            rec("s", usize::MAX, Op::ReadSet, ok(Ret::Elements([].into()))),
        ];
        let found = lost_writes(&lost);
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
