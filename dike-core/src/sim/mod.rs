//! A deterministic simulator for one group: N replicas, concurrent clients,
//! a seeded network that drops, duplicates, reorders and delays messages,
//! partitions (symmetric, asymmetric, leader-isolating, bridged), crashes and
//! restarts that lose every write not yet durable, and failing fsyncs.
//!
//! Every run checks agreement, prefix-consistent application, exactly-once
//! application of acknowledged commands, at-most-once effects (exactly once
//! when the proposer never restarted), linearizability of the clients'
//! history (stateright's `LinearizabilityTester`), and liveness once faults
//! stop. A failing run reports its seed; re-running the seed replays it
//! exactly, with a trace.

mod checker;
mod client;
pub mod cluster;
mod faults;
mod membership;
mod network;
pub mod register;
pub mod storage;

pub use cluster::LocalCluster;
pub use network::NetFaults;

use crate::config::{Config, ReplicaOptions};
use crate::ids::MemberId;
use crate::ready::Ready;
use crate::replica::{Bugs, Replica};
use crate::rng::Rng;
use crate::server::{GroupContext, ServerMachine};
use crate::storage::Storage;
use checker::Checker;
use client::Client;
use network::{ClientRequest, Network, Packet};
use register::Register;
use std::fmt;
use storage::FaultyStorage;

/// Steps per replica tick.
const TICK: u64 = 10;

/// What a simulation run does.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed: the whole run follows from it.
    pub seed: u64,
    /// Replicas in the group (3 or 5).
    pub replicas: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations per client.
    pub ops_per_client: usize,
    /// Network faults while faults are on.
    pub net: NetFaults,
    /// Chance per step (in 1/10000) of a crash of a random replica.
    pub crash_per_10k: u64,
    /// Chance per step (in 1/10000) of a new partition (or healing one).
    pub partition_per_10k: u64,
    /// Chance (percent) that a storage sync fails (fail-stop of the replica).
    pub fsync_fail_pct: u64,
    /// Faults stop at this step; then the network heals and every replica
    /// restarts.
    pub fault_steps: u64,
    /// Liveness bound: every operation must complete by this step.
    pub max_steps: u64,
    /// Replica tuning.
    pub options: ReplicaOptions,
    /// Deliberate bugs (to show the checks bite).
    pub bugs: Bugs,
    /// Percent of operations sent as read-index queries.
    pub query_pct: u64,
    /// Percent of operations that panic in the server.
    pub explode_pct: u64,
    /// Record a trace of events (for replaying a failing seed).
    pub trace: bool,
    /// Extra nodes outside the initial configuration, for membership changes.
    pub spares: usize,
    /// Chance per step (in 1/10000) that the operator asks the leader for a
    /// membership change (add a learner, promote, replace, remove).
    pub membership_per_10k: u64,
    /// Percent of restarts that come back with an empty disk (a new
    /// incarnation, hence a new member the group must not count).
    pub wipe_pct: u64,
}

impl SimConfig {
    /// A run with every fault on, for `replicas` replicas.
    pub fn faulty(seed: u64, replicas: usize) -> Self {
        SimConfig {
            seed,
            replicas,
            clients: 4,
            ops_per_client: 12,
            net: NetFaults {
                drop_pct: 8,
                dup_pct: 4,
                max_delay: 12,
            },
            crash_per_10k: 40,
            partition_per_10k: 40,
            fsync_fail_pct: 1,
            fault_steps: 3_000,
            max_steps: 40_000,
            options: ReplicaOptions {
                heartbeat_ticks: 2,
                election_ticks: 8,
                max_batch: 8,
                window: 4,
                snapshot_interval: 6,
                snapshot_jitter: 4,
                catchup_batch: 4,
                max_sessions: 1_000,
                max_queued: 1_000,
                max_learner_lag: 4,
                // Half the seeds hibernate idle periods (elections then rely
                // on the simulated failure detector).
                hibernate_after_ticks: if seed % 2 == 0 { 6 } else { 0 },
            },
            bugs: Bugs::default(),
            query_pct: 20,
            explode_pct: 3,
            trace: false,
            spares: 0,
            membership_per_10k: 0,
            wipe_pct: 0,
        }
    }

    /// A faulty run with membership changes: two spare nodes, an operator
    /// that keeps changing the group, and restarts that lose their disk.
    pub fn membership(seed: u64, replicas: usize) -> Self {
        SimConfig {
            spares: 2,
            membership_per_10k: 80,
            wipe_pct: 15,
            ..SimConfig::faulty(seed, replicas)
        }
    }

    /// A run without faults.
    pub fn calm(seed: u64, replicas: usize) -> Self {
        SimConfig {
            net: NetFaults {
                drop_pct: 0,
                dup_pct: 0,
                max_delay: 5,
            },
            crash_per_10k: 0,
            partition_per_10k: 0,
            fsync_fail_pct: 0,
            fault_steps: 0,
            ..SimConfig::faulty(seed, replicas)
        }
    }
}

/// What a passing run did.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Operations completed.
    pub ops: usize,
    /// Highest slot applied.
    pub slots: u64,
    /// Crashes injected (including failed fsyncs).
    pub crashes: u64,
    /// Partitions injected.
    pub partitions: u64,
    /// Leader changes seen.
    pub elections: u64,
    /// Messages sent / dropped.
    pub messages: (u64, u64),
    /// Membership changes the leader accepted.
    pub changes: u64,
    /// Configuration epoch at the end.
    pub epoch: u64,
    /// Steps until every operation completed.
    pub steps: u64,
    /// The final register value.
    pub value: i64,
}

/// A failed run: the seed that replays it, what broke, and the trace.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The failing configuration (with its seed).
    pub seed: u64,
    /// Replicas in the run.
    pub replicas: usize,
    /// What broke.
    pub reason: String,
    /// The last events before the failure (when traced).
    pub trace: Vec<String>,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation failed: seed {} ({} replicas): {}",
            self.seed, self.replicas, self.reason
        )?;
        writeln!(f, "replay: DIKE_SIM_SEED={} DIKE_SIM_REPLICAS={} cargo test -p dike-core --test simulation replay_seed -- --nocapture", self.seed, self.replicas)?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// One simulated node hosting one replica.
struct Node {
    member: MemberId,
    replica: Option<Replica<ServerMachine<Register>>>,
    storage: FaultyStorage,
    boot: u64,
    restart_at: Option<u64>,
    /// Kept down after the heal: not a member of the final configuration.
    excluded: bool,
}

impl Node {
    fn fresh(member: MemberId) -> Self {
        Node {
            member,
            replica: None,
            storage: FaultyStorage::new(),
            boot: 0,
            restart_at: None,
            excluded: false,
        }
    }
}

/// The simulation.
pub struct Simulation {
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    nodes: Vec<Node>,
    net: Network,
    clients: Vec<Client>,
    checker: Checker,
    config: Config,
    report: SimReport,
    /// Trace lines; `true` marks message deliveries (only the last few are
    /// kept in a failure report, every other event is).
    trace: Vec<(bool, String)>,
    last_leader: Option<MemberId>,
    next_change: u64,
    /// Failure detector: for each observer, ticks each node has been
    /// unreachable (0: reachable).
    suspicion: Vec<Vec<u32>>,
    /// The configurations that changes accepted by leaders would start.
    pending_configs: Vec<Config>,
}

fn member(i: usize) -> MemberId {
    MemberId::new(i as u64 + 1, 1)
}

impl Simulation {
    /// Sets up a run.
    pub fn new(cfg: SimConfig) -> Self {
        let config = Config::initial((0..cfg.replicas).map(member).collect());
        let mut rng = Rng::new(cfg.seed);
        let mut sim = Simulation {
            net: Network::new(cfg.net.clone()),
            clients: (0..cfg.clients)
                .map(|i| Client::new(i, cfg.ops_per_client))
                .collect(),
            checker: Checker::new(cfg.replicas),
            nodes: Vec::new(),
            config,
            report: SimReport::default(),
            trace: Vec::new(),
            last_leader: None,
            next_change: 0,
            suspicion: Vec::new(),
            pending_configs: Vec::new(),
            now: 0,
            rng: Rng::new(rng.next_u64()),
            cfg,
        };
        for i in 0..sim.cfg.replicas + sim.cfg.spares {
            let mut node = Node::fresh(member(i));
            sim.start(&mut node);
            sim.nodes.push(node);
        }
        let n = sim.nodes.len();
        sim.suspicion = vec![vec![0; n]; n];
        register::reset_effects();
        register::quiet_deliberate_panics();
        sim
    }

    fn start(&mut self, node: &mut Node) {
        node.boot += 1;
        let ctx = GroupContext {
            group: "sim".into(),
            kind: "sim-register".into(),
            member: node.member,
        };
        let machine = ServerMachine::<Register>::new(ctx);
        let seed = self.rng.next_u64();
        let recovered = match node.storage.load() {
            Ok(r) => r,
            Err(e) => {
                self.checker
                    .fail(format!("{} cannot load its storage: {e}", node.member));
                return;
            }
        };
        let r = Replica::recover(
            node.member,
            self.config.clone(),
            machine,
            self.cfg.options.clone(),
            seed,
            node.boot,
            recovered,
        );
        match r {
            Ok(mut r) => {
                r.set_bugs(self.cfg.bugs);
                r.set_trace(true);
                self.checker.on_start(node.member, node.boot, r.applied());
                node.replica = Some(r);
            }
            Err(e) => self
                .checker
                .fail(format!("{} cannot recover: {e}", node.member)),
        }
    }

    /// Each node: its member, whether it is up, kept out, its epoch.
    fn describe_nodes(&self) -> String {
        let d: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.replica {
                Some(r) => format!(
                    "{} up e{} commit {}",
                    n.member,
                    r.config().epoch,
                    r.commit_index()
                ),
                None if n.excluded => format!("{} kept out", n.member),
                None => format!("{} down", n.member),
            })
            .collect();
        d.join(", ")
    }

    fn log(&mut self, f: impl FnOnce() -> String) {
        if self.cfg.trace {
            let line = format!("[{:>6}] {}", self.now, f());
            self.trace.push((false, line));
        }
    }

    fn log_delivery(&mut self, line: String) {
        if self.cfg.trace {
            let line = format!("[{:>6}] {line}", self.now);
            self.trace.push((true, line));
        }
    }

    /// Runs to completion and checks everything.
    pub fn run(mut self) -> Result<SimReport, SimFailure> {
        let result = self.run_inner();
        match result {
            Ok(()) => Ok(self.report),
            Err(reason) => {
                let tail = self.trace.len().saturating_sub(300);
                let trace = std::mem::take(&mut self.trace)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, (delivery, _))| !delivery || *i >= tail)
                    .map(|(_, (_, line))| line)
                    .collect();
                Err(SimFailure {
                    seed: self.cfg.seed,
                    replicas: self.cfg.replicas,
                    reason,
                    trace,
                })
            }
        }
    }

    fn run_inner(&mut self) -> Result<(), String> {
        while self.now < self.cfg.max_steps {
            self.step();
            self.checker.take_failure()?;
            if self.now > self.cfg.fault_steps && self.clients.iter().all(Client::done) {
                break;
            }
        }
        if !self.clients.iter().all(Client::done) {
            let pending: Vec<String> = self
                .clients
                .iter()
                .filter(|c| !c.done())
                .map(|c| c.describe())
                .collect();
            return Err(format!(
                "liveness: operations still pending at step {}: {}; latest {:?}; nodes {}",
                self.now,
                pending.join("; "),
                self.latest_config(),
                self.describe_nodes()
            ));
        }
        self.report.steps = self.now;
        self.converge()?;
        self.final_checks()
    }

    /// One step of simulated time.
    fn step(&mut self) {
        self.now += 1;
        if self.now == self.cfg.fault_steps + 1 {
            self.heal();
        } else if self.now > self.cfg.fault_steps && self.now % TICK == 0 {
            self.readmit();
        }
        while let Some(p) = self.net.pop_due(self.now) {
            self.deliver(p);
        }
        self.complete_jobs();
        if self.now % TICK == 0 {
            for i in 0..self.nodes.len() {
                if let Some(r) = self.nodes[i].replica.as_mut() {
                    r.tick();
                }
            }
            self.detect_failures();
        }
        self.drive_clients();
        if self.now <= self.cfg.fault_steps {
            self.inject_faults();
        }
        self.restart_due();
        for i in 0..self.nodes.len() {
            self.process_ready(i);
        }
        self.observe_leader();
    }

    fn deliver(&mut self, p: Packet) {
        match p {
            Packet::Peer { from, to, env } => {
                let desc = if self.cfg.trace {
                    format!("{} -> {}: {:?}", env.from, env.to, env.msg)
                } else {
                    String::new()
                };
                let Some(r) = self.nodes[to].replica.as_mut() else {
                    return;
                };
                if r.id() != env.to {
                    return; // for an earlier incarnation of this node
                }
                r.step(env.from, env.msg);
                let _ = from;
                self.log_delivery(desc);
            }
            Packet::Request { client, to, req } => {
                let Some(r) = self.nodes[to].replica.as_mut() else {
                    return;
                };
                self.clients[client].note_target(to);
                match req {
                    ClientRequest::Command(cmd) => r.propose(cmd),
                    ClientRequest::Query { id, payload } => r.query(id, payload),
                }
            }
            Packet::Response { client, resp } => {
                let member_index = |m: MemberId| (m.node.0 as usize).checked_sub(1);
                let now = self.now;
                let c = &mut self.clients[client];
                if let Err(e) = c.on_response(now, resp, member_index, &mut self.checker) {
                    self.checker.fail(e);
                }
            }
        }
    }

    fn process_ready(&mut self, i: usize) {
        let Some(r) = self.nodes[i].replica.as_mut() else {
            return;
        };
        if !r.has_ready() {
            return;
        }
        let ready: Ready = r.take_ready();
        let member = self.nodes[i].member;
        let boot = self.nodes[i].boot;
        for a in &ready.applied {
            self.checker.on_applied(member, boot, a);
        }
        for e in ready.effects {
            e.run();
        }
        for env in ready.messages {
            let to = (env.to.node.0 - 1) as usize;
            self.net.send_peer(&mut self.rng, self.now, i, to, env);
        }
        for resp in ready.responses {
            if let Some(client) = self.clients.iter().position(|c| c.owns(&resp.to)) {
                self.net
                    .send_client(&mut self.rng, self.now, Packet::Response { client, resp });
            }
        }
        if !ready.writes.is_empty() || !ready.after_write.is_empty() {
            let (now, delay) = (self.now, self.rng.range(1, 6));
            self.nodes[i]
                .storage
                .submit(now, delay, ready.writes, ready.after_write);
        }
    }

    /// Makes due writes durable and releases the messages waiting on them.
    fn complete_jobs(&mut self) {
        for i in 0..self.nodes.len() {
            while self.nodes[i].storage.sync_due(self.now) {
                let fail = self.now <= self.cfg.fault_steps
                    && self.rng.chance(self.cfg.fsync_fail_pct)
                    && self.may_lose(i);
                let Ok(after) = self.nodes[i].storage.sync(fail) else {
                    // Fail-stop: the replica must not go on as if the data
                    // were safe.
                    let m = self.nodes[i].member;
                    self.log(|| format!("fsync fails on {m}: fail-stop"));
                    self.crash(i);
                    break;
                };
                for env in after {
                    let to = (env.to.node.0 - 1) as usize;
                    self.net.send_peer(&mut self.rng, self.now, i, to, env);
                }
            }
        }
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.replica.take().is_some() {
            node.storage.crash();
            let down = self.rng.range(50, 600);
            node.restart_at = Some(self.now + down);
            self.report.crashes += 1;
            let m = node.member;
            self.log(|| format!("CRASH {m} (unsynced writes lost), down for {down} steps"));
        }
    }

    fn restart_due(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].restart_at.is_some_and(|t| t <= self.now) {
                let mut node = std::mem::replace(&mut self.nodes[i], Node::fresh(member(i)));
                node.restart_at = None;
                if self.now <= self.cfg.fault_steps && self.may_wipe() {
                    let old = node.member;
                    node.member.incarnation.0 += 1;
                    node.storage.wipe();
                    let m = node.member;
                    let guarded = self.guarded_configs();
                    self.log(|| {
                        format!("WIPE {old}: comes back empty as {m} (guarded {guarded:?})")
                    });
                }
                self.start(&mut node);
                let m = node.member;
                let applied = node.replica.as_ref().map_or(0, |r| r.applied());
                self.nodes[i] = node;
                self.log(|| format!("RESTART {m} at applied {applied}"));
            }
        }
    }

    fn inject_faults(&mut self) {
        if self.rng.below(10_000) < self.cfg.crash_per_10k {
            let victim = self.pick_victim();
            if self.may_lose(victim) {
                self.crash(victim);
            }
        }
        if self.rng.below(10_000) < self.cfg.partition_per_10k {
            self.repartition();
        }
        if self.rng.below(10_000) < self.cfg.membership_per_10k {
            self.change_membership();
        }
    }

    /// Half the time the leader, else a random replica.
    fn pick_victim(&mut self) -> usize {
        let leader = self
            .nodes
            .iter()
            .position(|x| x.replica.as_ref().is_some_and(|r| r.is_leader()));
        match leader {
            Some(l) if self.rng.chance(50) => l,
            _ => self.rng.below(self.nodes.len() as u64) as usize,
        }
    }

    fn repartition(&mut self) {
        let n = self.nodes.len();
        self.net.blocked.clear();
        let leader = self
            .nodes
            .iter()
            .position(|x| x.replica.as_ref().is_some_and(|r| r.is_leader()));
        let desc = faults::partition(&mut self.rng, &mut self.net.blocked, n, leader);
        self.report.partitions += 1;
        self.log(|| format!("PARTITION {desc}"));
    }

    fn heal(&mut self) {
        self.net.blocked.clear();
        self.net.faults_on = false;
        // Nodes outside the latest configuration stay down from now on: the
        // group must make progress without them.
        let config = self.latest_config();
        for n in &mut self.nodes {
            n.excluded = !config.all_members().any(|m| m == n.member);
            if n.excluded {
                n.replica = None;
                n.storage.crash();
                n.restart_at = None;
            } else if n.replica.is_none() {
                n.restart_at = Some(self.now);
            }
        }
        self.log(|| "HEAL: faults stop, everyone restarts".to_string());
    }

    fn drive_clients(&mut self) {
        for c in 0..self.clients.len() {
            let n = self.nodes.len();
            let now = self.now;
            let query_pct = self.cfg.query_pct;
            let explode_pct = self.cfg.explode_pct;
            if let Some((to, req)) = self.clients[c].act(
                now,
                n,
                &mut self.rng,
                query_pct,
                explode_pct,
                &mut self.checker,
            ) {
                self.net
                    .send_client(&mut self.rng, now, Packet::Request { client: c, to, req });
            }
        }
    }

    fn observe_leader(&mut self) {
        let leader = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .find(|r| r.is_leader())
            .map(|r| r.id());
        if leader.is_some() && leader != self.last_leader {
            self.report.elections += 1;
            self.last_leader = leader;
            self.log(|| format!("LEADER {}", leader.map_or("-".into(), |l| l.to_string())));
        }
    }

    /// After the clients finish, lets every live member of the final
    /// configuration catch up (bounded).
    fn converge(&mut self) -> Result<(), String> {
        let deadline = self.now + 20_000;
        loop {
            let members = self.live_members();
            let replicas: Vec<&Replica<ServerMachine<Register>>> = members
                .iter()
                .filter_map(|&i| self.nodes[i].replica.as_ref())
                .collect();
            let applied: Vec<u64> = replicas.iter().map(|r| r.applied()).collect();
            let max_commit = replicas.iter().map(|r| r.commit_index()).max().unwrap_or(0);
            let config = self.latest_config();
            let settled = replicas.iter().all(|r| r.config().epoch == config.epoch);
            if !replicas.is_empty()
                && settled
                && applied.iter().all(|a| *a == max_commit)
                && self.net.is_empty()
            {
                self.report.slots = max_commit;
                self.report.epoch = config.epoch;
                return Ok(());
            }
            if self.now >= deadline {
                return Err(format!(
                    "members did not converge: applied {applied:?}, highest commit {max_commit}, config {config:?}"
                ));
            }
            self.step();
            self.checker.take_failure()?;
        }
    }

    fn final_checks(&mut self) -> Result<(), String> {
        let members = self.live_members();
        let replicas: Vec<&Replica<ServerMachine<Register>>> = members
            .iter()
            .filter_map(|&i| self.nodes[i].replica.as_ref())
            .collect();
        let Some(first) = replicas.first().copied() else {
            return Err("no live member of the final configuration".into());
        };
        for r in &replicas[1..] {
            if r.machine().server() != first.machine().server() {
                return Err(format!(
                    "replica states differ at slot {}: {} has {:?}, {} has {:?}",
                    r.applied(),
                    first.id(),
                    first.machine().server(),
                    r.id(),
                    r.machine().server()
                ));
            }
            if r.sessions() != first.sessions() {
                return Err(format!(
                    "session tables differ between {} and {}",
                    first.id(),
                    r.id()
                ));
            }
        }
        self.report.value = first.machine().server().value;
        self.report.messages = (self.net.sent, self.net.dropped);
        self.report.ops = self.clients.iter().map(|c| c.completed).sum();
        let boots: Vec<(MemberId, u64)> = self.nodes.iter().map(|n| (n.member, n.boot)).collect();
        self.checker
            .final_checks(&self.clients, &boots, &register::effects())
    }
}

/// Runs one configuration; on failure, replays the seed with tracing on so
/// the failure carries its trace.
pub fn run_traced(cfg: SimConfig) -> Result<SimReport, SimFailure> {
    match Simulation::new(cfg.clone()).run() {
        Ok(r) => Ok(r),
        Err(_) => Simulation::new(SimConfig { trace: true, ..cfg }).run(),
    }
}

/// Runs `count` seeds from `first` with `make(seed)`; stops at the first
/// failure. Returns how many runs passed and the summed report.
pub fn run_many(
    first: u64,
    count: u64,
    make: impl Fn(u64) -> SimConfig,
) -> Result<(u64, SimReport), SimFailure> {
    let mut total = SimReport::default();
    for seed in first..first + count {
        let r = run_traced(make(seed))?;
        total.ops += r.ops;
        total.slots += r.slots;
        total.crashes += r.crashes;
        total.partitions += r.partitions;
        total.elections += r.elections;
        total.messages.0 += r.messages.0;
        total.messages.1 += r.messages.1;
        total.steps += r.steps;
        total.changes += r.changes;
        total.epoch = total.epoch.max(r.epoch);
    }
    Ok((count, total))
}
