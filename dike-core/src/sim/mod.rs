//! A deterministic simulator for one group: N replicas, concurrent clients,
//! a seeded network that drops, duplicates, reorders and delays messages,
//! partitions (symmetric, asymmetric, leader-isolating, bridged, two nodes
//! cut off from each other only), crashes and
//! restarts that lose every write not yet durable, and failing fsyncs.
//!
//! Every run checks agreement, prefix-consistent application, exactly-once
//! application of acknowledged commands, at-most-once effects (exactly once
//! when the proposer never restarted), linearizability of the clients'
//! history (a memoised search, [`wgl`], with a time budget: a search
//! that runs out fails the run), and liveness once faults
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
pub mod wgl;

pub use cluster::LocalCluster;
pub use network::NetFaults;

use crate::config::{Config, ReplicaOptions};
use crate::driver::{GroupDriver, Output, Start};
use crate::ids::{MemberId, NodeId};
use crate::replica::{Bugs, Replica};
use crate::rng::Rng;
use crate::route::Route;
use crate::server::{GroupContext, ServerMachine};
use checker::Checker;
use client::Client;
use network::{ClientRequest, Network, Packet};
use register::Register;
use std::collections::BTreeSet;
use std::fmt;
use storage::{DiskTiming, SimDisk};

/// The simulated replica: the production driver over the simulated disk.
type SimDriver = GroupDriver<ServerMachine<Register>, SimDisk>;
type SimReplica = Replica<ServerMachine<Register>>;

/// Steps per replica tick.
const TICK: u64 = 10;
/// Steps between two reads of the group's configuration into the table:
/// long enough that clients often route by a table a change has outdated.
const TABLE_EVERY: u64 = 20 * TICK;
/// Chance (in %) that recording a chosen configuration in the table fails.
const TABLE_LOST_PCT: u64 = 30;

/// The named fault schedules; a failing seed is replayed by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// No faults.
    Calm,
    /// Every fault on: crashes (quick and at the worst moment), pauses,
    /// partitions, slow disks, failing syncs, lossy links, clock skew.
    Faulty,
    /// [`Schedule::Faulty`] plus an operator changing the group's members
    /// and restarts that lose their disk.
    Membership,
    /// [`Schedule::Membership`] where most partitions cut just two nodes off
    /// from each other, the leader and one other, so leadership keeps
    /// flipping between two leaders that cannot hear each other while the
    /// members change.
    Dueling,
    /// [`Schedule::Faulty`] with a failure detector that also reports live
    /// nodes down now and then.
    FaultySuspicious,
    /// [`Schedule::Calm`] on a transport where every message between
    /// replicas takes longer than an election timeout.
    Congested,
    /// [`Schedule::Congested`] with a failure detector that keeps reporting
    /// live nodes down (late pings on a busy cluster).
    CongestedSuspicious,
    /// [`Schedule::Membership`] where half the learners the operator adds
    /// start their replica late, and a learner up to 1,000 slots behind
    /// may be promoted (as any learner may in a log that young).
    LateLearners,
    /// [`Schedule::Calm`] with clients that pause between operations, so
    /// the group sleeps now and then, and a leader whose node hangs, mostly
    /// while its group sleeps; the failure detector reports a hung node
    /// only after many election timeouts (as the runtime's pings do), and
    /// every operation must be answered within a few election timeouts.
    HungLeader,
}

impl Schedule {
    /// Every schedule, in the order of their names.
    pub const ALL: [Schedule; 9] = [
        Schedule::Calm,
        Schedule::Faulty,
        Schedule::Membership,
        Schedule::Dueling,
        Schedule::FaultySuspicious,
        Schedule::Congested,
        Schedule::CongestedSuspicious,
        Schedule::LateLearners,
        Schedule::HungLeader,
    ];

    /// The schedule's name (what `DIKE_SIM_SCHEDULE` takes).
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Calm => "calm",
            Schedule::Faulty => "faulty",
            Schedule::Membership => "membership",
            Schedule::Dueling => "dueling",
            Schedule::FaultySuspicious => "faulty-suspicious",
            Schedule::Congested => "congested",
            Schedule::CongestedSuspicious => "congested-suspicious",
            Schedule::LateLearners => "late-learners",
            Schedule::HungLeader => "hung-leader",
        }
    }

    /// The schedule named `name`.
    pub fn named(name: &str) -> Option<Schedule> {
        Schedule::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The run of this schedule for `seed` on `replicas` replicas.
    pub fn config(self, seed: u64, replicas: usize) -> SimConfig {
        match self {
            Schedule::Calm => SimConfig::calm(seed, replicas),
            Schedule::Faulty => SimConfig::faulty(seed, replicas),
            Schedule::Membership => SimConfig::membership(seed, replicas),
            Schedule::Dueling => SimConfig::dueling(seed, replicas),
            Schedule::FaultySuspicious => SimConfig::faulty_suspicious(seed, replicas),
            Schedule::Congested => SimConfig::congested(seed, replicas),
            Schedule::CongestedSuspicious => SimConfig::congested_suspicious(seed, replicas),
            Schedule::LateLearners => SimConfig::late_learners(seed, replicas),
            Schedule::HungLeader => SimConfig::hung_leader(seed, replicas),
        }
    }
}

/// What a simulation run does.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The schedule this run was made from (what replays it).
    pub schedule: Schedule,
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
    /// Percent of partitions that cut only the link between the leader
    /// (or a random node) and one other node: two nodes that cannot hear
    /// each other, each heard by everyone else.
    pub duel_pct: u64,
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
    /// How long syncs take, with a slow tail (a replica's own writes
    /// completing long after its messages left).
    pub disk: DiskTiming,
    /// Percent of crashes followed by a restart within an election timeout.
    pub quick_restart_pct: u64,
    /// Chance per step (in 1/10000) of a crash at the worst moment: of a
    /// node whose own writes lag the messages it sent since.
    pub lagging_crash_per_10k: u64,
    /// Chance per step (in 1/10000) that a random node's disk turns slow
    /// for a few election timeouts: every sync then takes the slow tail.
    pub slow_disk_per_10k: u64,
    /// Chance per step (in 1/10000) that a random node pauses (a stopped
    /// process: no ticks, no messages handled, nothing lost) for up to a
    /// few election timeouts.
    pub pause_per_10k: u64,
    /// Each node's tick period differs from the nominal one by up to this
    /// many steps (clock-rate skew between replicas).
    pub tick_skew: u64,
    /// Chance per step (in 1/10000), while faults are on or clients still
    /// run, that the operator asks the leader to hand leadership to a
    /// random voter (dead, lagging or partitioned ones included; now and
    /// then a non-voter or the leader itself, which must be refused).
    pub transfer_per_10k: u64,
    /// Chance per step (in 1/10000), while faults are on or clients still
    /// run, that the operator drains a random node or undrains a draining
    /// one (every node may end up draining: the group must still serve).
    pub drain_per_10k: u64,
    /// Chance per step (in 1/10000), while faults are on or clients still
    /// run, that the failure detector of a random node reports another,
    /// live node down: a false positive, as the runtime's ping gives when a
    /// busy cluster answers late. 0 leaves the seeds' schedules as they
    /// were.
    pub false_suspicion_per_10k: u64,
    /// Percent of the learners the operator adds whose replica starts late:
    /// their node is up (the operator counts it as available) but answers
    /// nothing for one to six election timeouts, as a node whose replica of
    /// the group has not started yet.
    pub late_learner_pct: u64,
    /// Longest pause of a client between an answer and its next
    /// operation, in steps (0: none; with pauses the group sleeps now and
    /// then).
    pub think_max: u64,
    /// Chance per step (in 1/10000) that the leader's node hangs (a paused
    /// process) while its group sleeps, a quarter of that while it is
    /// awake; for longer than the failure detector takes to report it. One
    /// node hangs at a time.
    pub hang_leader_per_10k: u64,
    /// Ticks an observer waits before it reports a node that runs but does
    /// not answer (paused, or its link cut): the runtime's pings. A crashed
    /// node's sessions close: it is reported after
    /// [`faults::SUSPECT_AFTER`] ticks.
    pub unresponsive_after: u32,
    /// If set, every operation issued while faults are on (and at least
    /// this long before they stop) must be answered within this many steps
    /// of its issue: for schedules whose faults always leave a majority
    /// healthy.
    pub latency_bound: Option<u64>,
}

impl SimConfig {
    /// A run with every fault on, for `replicas` replicas.
    pub fn faulty(seed: u64, replicas: usize) -> Self {
        SimConfig {
            schedule: Schedule::Faulty,
            seed,
            replicas,
            clients: 4,
            ops_per_client: 12,
            net: NetFaults {
                drop_pct: 8,
                dup_pct: 4,
                max_delay: 12,
                min_peer_delay: 0,
                client_drop_pct: 3,
            },
            crash_per_10k: 40,
            partition_per_10k: 40,
            duel_pct: 0,
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
                // Of those, half snapshot as their group goes to sleep.
                hibernate_snapshot_slots: if seed % 4 == 0 { 1 } else { 0 },
                // After a failover, leadership goes back to the first voter
                // by transfer once it is back and caught up.
                preferred_leader_after_ticks: 6,
            },
            bugs: Bugs::default(),
            query_pct: 20,
            explode_pct: 3,
            trace: false,
            spares: 0,
            membership_per_10k: 0,
            wipe_pct: 0,
            disk: DiskTiming {
                min: 1,
                max: 5,
                slow_pct: 4,
                slow_max: 160,
            },
            quick_restart_pct: 40,
            lagging_crash_per_10k: 40,
            slow_disk_per_10k: 20,
            pause_per_10k: 15,
            tick_skew: 3,
            transfer_per_10k: 30,
            drain_per_10k: 10,
            false_suspicion_per_10k: 0,
            late_learner_pct: 0,
            think_max: 0,
            hang_leader_per_10k: 0,
            unresponsive_after: faults::SUSPECT_AFTER,
            latency_bound: None,
        }
    }

    /// A faulty run with membership changes: two spare nodes, an operator
    /// that keeps changing the group, and restarts that lose their disk.
    pub fn membership(seed: u64, replicas: usize) -> Self {
        SimConfig {
            schedule: Schedule::Membership,
            spares: 2,
            membership_per_10k: 80,
            wipe_pct: 15,
            ..SimConfig::faulty(seed, replicas)
        }
    }

    /// Membership changes while leadership flips between two nodes that
    /// cannot hear each other (see [`Schedule::Dueling`]).
    pub fn dueling(seed: u64, replicas: usize) -> Self {
        SimConfig {
            schedule: Schedule::Dueling,
            partition_per_10k: 120,
            duel_pct: 80,
            membership_per_10k: 120,
            ..SimConfig::membership(seed, replicas)
        }
    }

    /// A run without faults.
    pub fn calm(seed: u64, replicas: usize) -> Self {
        SimConfig {
            schedule: Schedule::Calm,
            net: NetFaults {
                drop_pct: 0,
                dup_pct: 0,
                max_delay: 5,
                min_peer_delay: 0,
                client_drop_pct: 0,
            },
            crash_per_10k: 0,
            lagging_crash_per_10k: 0,
            slow_disk_per_10k: 0,
            pause_per_10k: 0,
            partition_per_10k: 0,
            fsync_fail_pct: 0,
            fault_steps: 0,
            ..SimConfig::faulty(seed, replicas)
        }
    }

    /// Membership changes where half the learners added start their
    /// replica late, and promotion allows a lag of 1,000 slots (as a log
    /// younger than `max_learner_lag` does): a learner is promoted only
    /// once the leader heard from it, or the check on promotions fails.
    pub fn late_learners(seed: u64, replicas: usize) -> Self {
        let membership = SimConfig::membership(seed, replicas);
        SimConfig {
            schedule: Schedule::LateLearners,
            late_learner_pct: 50,
            options: ReplicaOptions {
                max_learner_lag: 1_000,
                ..membership.options.clone()
            },
            ..membership
        }
    }

    /// Every fault, and a false report of a live node down about every
    /// 250 steps on each node.
    pub fn faulty_suspicious(seed: u64, replicas: usize) -> Self {
        SimConfig {
            schedule: Schedule::FaultySuspicious,
            false_suspicion_per_10k: 40,
            ..SimConfig::faulty(seed, replicas)
        }
    }

    /// A calm run on a transport where every message between replicas
    /// takes longer than an election timeout: round trips of 2 × 120 steps
    /// against candidacies of at most 2 × 8 ticks of 10 steps.
    pub fn congested(seed: u64, replicas: usize) -> Self {
        let calm = SimConfig::calm(seed, replicas);
        SimConfig {
            schedule: Schedule::Congested,
            net: NetFaults {
                min_peer_delay: 120,
                ..calm.net.clone()
            },
            // A read's confirmation round takes longer than a client's
            // timeout here, and each retry asks anew.
            query_pct: 0,
            // No operator moving leadership around.
            transfer_per_10k: 0,
            drain_per_10k: 0,
            // The network is quiet only once the group hibernates:
            // heartbeats are always in flight otherwise.
            options: crate::ReplicaOptions {
                hibernate_after_ticks: 6,
                preferred_leader_after_ticks: 0,
                ..calm.options.clone()
            },
            ..calm
        }
    }

    /// A calm network, clients that pause up to 40 ticks between
    /// operations (the group sleeps after 6 idle ticks), and a leader's
    /// node that hangs for longer than the failure detector takes to report
    /// it, 25 election timeouts; every operation must be answered within
    /// 15 election timeouts (a client waits about 2 before it asks another
    /// node; the slowest of 20,000 seeds took 11.8). A sleeping group has no
    /// election timer running, so only a request that wakes a follower
    /// replaces its hung leader in time.
    pub fn hung_leader(seed: u64, replicas: usize) -> Self {
        let calm = SimConfig::calm(seed, replicas);
        let election = TICK * calm.options.election_ticks;
        let report_after = 25 * calm.options.election_ticks as u32;
        SimConfig {
            schedule: Schedule::HungLeader,
            clients: 2,
            ops_per_client: 30,
            think_max: 40 * TICK,
            hang_leader_per_10k: 30,
            unresponsive_after: report_after,
            latency_bound: Some(15 * election),
            fault_steps: 8_000,
            // Nobody moves leadership around but the hangs.
            transfer_per_10k: 0,
            drain_per_10k: 0,
            options: crate::ReplicaOptions {
                hibernate_after_ticks: 6,
                ..calm.options.clone()
            },
            ..calm
        }
    }

    /// [`SimConfig::congested`], and a false report of a live node down
    /// every 50 steps (5 ticks) on each node, one in four of them on the
    /// node of its leader.
    pub fn congested_suspicious(seed: u64, replicas: usize) -> Self {
        SimConfig {
            schedule: Schedule::CongestedSuspicious,
            false_suspicion_per_10k: 1000,
            ..SimConfig::congested(seed, replicas)
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
    /// Leadership transfers the leader started (on the operator's request).
    pub transfers: u64,
    /// Drains and undrains of nodes.
    pub drains: u64,
    /// Configuration epoch at the end.
    pub epoch: u64,
    /// Steps until every operation completed.
    pub steps: u64,
    /// The longest an operation waited for its answer, in steps.
    pub slowest: u64,
    /// The final register value.
    pub value: i64,
}

/// A failed run: the seed that replays it, what broke, and the trace.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The schedule of the failing run.
    pub schedule: Schedule,
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
            "simulation failed: seed {} ({} schedule, {} replicas): {}",
            self.seed,
            self.schedule.name(),
            self.replicas,
            self.reason
        )?;
        writeln!(f, "replay: DIKE_SIM_SCHEDULE={} DIKE_SIM_SEED={} DIKE_SIM_REPLICAS={} cargo test -p dike-core --test simulation replay_seed -- --nocapture", self.schedule.name(), self.seed, self.replicas)?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// One simulated node hosting one replica.
struct Node {
    member: MemberId,
    /// The replica's driver while the node is up.
    driver: Option<SimDriver>,
    /// The node's disk, which outlives every life of the replica.
    disk: SimDisk,
    boot: u64,
    restart_at: Option<u64>,
    /// Kept down after the heal: not a member of the final configuration.
    excluded: bool,
    /// Paused (a stopped process) until this step.
    paused_until: Option<u64>,
    /// Steps between this node's ticks.
    tick_every: u64,
}

impl Node {
    fn fresh(member: MemberId, disk: SimDisk) -> Self {
        Node {
            member,
            driver: None,
            disk,
            boot: 0,
            restart_at: None,
            excluded: false,
            paused_until: None,
            tick_every: TICK,
        }
    }

    /// Whether the node's process is gone (crashed, not restarted yet): its
    /// sessions closed, unlike a paused node's.
    fn crashed(&self) -> bool {
        self.driver.is_none()
    }

    /// Whether the node runs: up and not paused.
    fn running(&self, now: u64) -> bool {
        self.driver.is_some() && self.paused_until.is_none_or(|t| t <= now)
    }

    /// The replica, while the node is up.
    fn replica(&self) -> Option<&SimReplica> {
        self.driver.as_ref().map(GroupDriver::replica)
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
    /// The nodes the operator marked draining (every replica is told, as
    /// the runtime's routing table would).
    draining: BTreeSet<NodeId>,
    /// The routing table's copy of the group's configuration: what
    /// clients route by. Like the runtime's, it lags the group: it learns a
    /// change only when the simulated rebalancer reads the configuration
    /// from a leader it reaches ([`Simulation::record_table`]).
    table: Config,
    /// The newest epoch whose record was made or lost.
    table_decided: u64,
    /// Learners the operator added: for each, the epochs of the
    /// configurations that added it, and whether its replica has sent
    /// anything since. One that has not cannot have caught up, and a leader
    /// of such a configuration (or a later one) must not promote it.
    new_learners: std::collections::BTreeMap<MemberId, Vec<(u64, bool)>>,
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
                .map(|i| Client::new(i, cfg.ops_per_client, cfg.think_max))
                .collect(),
            checker: Checker::new(&config),
            nodes: Vec::new(),
            report: SimReport::default(),
            trace: Vec::new(),
            last_leader: None,
            next_change: 0,
            suspicion: Vec::new(),
            pending_configs: Vec::new(),
            draining: BTreeSet::new(),
            table: config.clone(),
            table_decided: 0,
            new_learners: std::collections::BTreeMap::new(),
            config,
            now: 0,
            rng: Rng::new(rng.next_u64()),
            cfg,
        };
        for i in 0..sim.cfg.replicas + sim.cfg.spares {
            let disk = SimDisk::new(sim.rng.next_u64(), sim.cfg.disk.clone());
            let mut node = Node::fresh(member(i), disk);
            let skew = sim.cfg.tick_skew.min(TICK - 1);
            node.tick_every = TICK - skew + sim.rng.below(2 * skew + 1);
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
        let start = Start {
            member: node.member,
            config: self.config.clone(),
            machine,
            options: self.cfg.options.clone(),
            boot: node.boot,
            seed: self.rng.next_u64(),
        };
        node.disk.get().set_now(self.now);
        match GroupDriver::start(start, node.disk.clone()) {
            Ok(mut d) => {
                d.set_test_flags(self.cfg.bugs, true);
                d.set_draining_nodes(self.draining.iter().copied());
                self.checker
                    .on_start(node.member, node.boot, d.replica().applied());
                node.driver = Some(d);
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
            .map(|n| match n.replica() {
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
                    schedule: self.cfg.schedule,
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
        let mut deferred = Vec::new();
        while let Some(p) = self.net.pop_due(self.now) {
            match p.destination().map(|to| &self.nodes[to]) {
                // A paused process handles its messages when it resumes.
                Some(n) if n.driver.is_some() && !n.running(self.now) => deferred.push(p),
                _ => self.deliver(p),
            }
        }
        for p in deferred {
            let to = p.destination().unwrap_or(0);
            let due = self.nodes[to].paused_until.unwrap_or(self.now) + 1;
            self.net.defer(&mut self.rng, due, p);
        }
        self.complete_jobs();
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            if self.now % n.tick_every == 0 && n.running(self.now) {
                if let Some(d) = n.driver.as_mut() {
                    d.tick();
                }
            }
        }
        if self.now % TICK == 0 {
            self.detect_failures();
        }
        self.record_change();
        if self.now % TABLE_EVERY == 0 {
            self.record_table();
        }
        self.drive_clients();
        self.check_latency();
        if self.now <= self.cfg.fault_steps {
            self.inject_faults();
        }
        let running = self.now <= self.cfg.fault_steps || !self.clients.iter().all(Client::done);
        if running && self.rng.below(10_000) < self.cfg.transfer_per_10k {
            self.transfer_leadership();
        }
        if running && self.rng.below(10_000) < self.cfg.drain_per_10k {
            self.drain_or_undrain();
        }
        if running
            && self.cfg.false_suspicion_per_10k > 0
            && self.rng.below(10_000) < self.cfg.false_suspicion_per_10k
        {
            self.suspect_wrongly();
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
                let Some(d) = self.nodes[to].driver.as_mut() else {
                    return;
                };
                if d.replica().id() != env.to {
                    return; // for an earlier incarnation of this node
                }
                d.step(vec![env]);
                let _ = from;
                self.log_delivery(desc);
            }
            Packet::Request { client, to, req } => {
                let Some(d) = self.nodes[to].driver.as_mut() else {
                    return;
                };
                self.clients[client].note_target(to);
                match req {
                    ClientRequest::Command(cmd) => d.propose(cmd),
                    ClientRequest::Query { id, payload } => d.query(id, payload),
                }
            }
            Packet::Response { client, resp } => {
                let listed = self.listed();
                let only_listed = self.cfg.bugs.hints_only_to_listed;
                let member_index = |m: MemberId| {
                    (m.node.0 as usize)
                        .checked_sub(1)
                        .filter(|i| !only_listed || listed.contains(i))
                };
                let now = self.now;
                let c = &mut self.clients[client];
                if let Err(e) = c.on_response(now, resp, member_index, &mut self.checker) {
                    self.checker.fail(e);
                }
            }
        }
    }

    /// Drives node `i`'s replica: what it releases goes out.
    fn process_ready(&mut self, i: usize) {
        let now = self.now;
        if !self.nodes[i].running(now) {
            return;
        }
        self.nodes[i].disk.get().set_now(now);
        let Some(d) = self.nodes[i].driver.as_mut() else {
            return;
        };
        match d.drive() {
            Ok(out) => self.release(i, out),
            Err(e) => self.checker.fail(format!(
                "{} cannot drive its replica: {e}",
                self.nodes[i].member
            )),
        }
    }

    /// Sends, answers and checks what node `i`'s driver released.
    fn release(&mut self, i: usize, out: Output) {
        let member = self.nodes[i].member;
        let boot = self.nodes[i].boot;
        if !out.to_peers.is_empty() {
            for (_, ran) in self.new_learners.get_mut(&member).into_iter().flatten() {
                *ran = true;
            }
        }
        for a in &out.applied {
            self.checker.on_applied(member, boot, a);
        }
        for e in out.effects {
            e.run();
        }
        for env in out.to_peers.into_values().flatten() {
            self.check_sent(&env, boot);
            let to = (env.to.node.0 - 1) as usize;
            self.net.send_peer(&mut self.rng, self.now, i, to, env);
        }
        for resp in out.responses {
            if let Some(client) = self.clients.iter().position(|c| c.owns(&resp.to)) {
                self.net
                    .send_client(&mut self.rng, self.now, Packet::Response { client, resp });
            }
        }
    }

    /// Checks what a proposer sends: each ballot belongs to one life of its
    /// owner, and proposes one value per slot.
    fn check_sent(&mut self, env: &crate::message::Envelope, boot: u64) {
        use crate::message::Message;
        let ballot = match &env.msg {
            Message::Accept {
                ballot,
                slot,
                entry,
                ..
            } => {
                self.checker.on_accept_sent(*ballot, *slot, entry, boot);
                *ballot
            }
            Message::Prepare { ballot, .. }
            | Message::Heartbeat { ballot, .. }
            | Message::TimeoutNow { ballot } => *ballot,
            Message::Accepted { ballot, slot } => {
                self.checker.on_accepted_sent(env.from, *ballot, *slot);
                return;
            }
            Message::HeartbeatAck {
                ballot, read_round, ..
            } if *read_round > 0 => {
                self.checker.on_read_ack(env.from, *ballot, *read_round);
                return;
            }
            _ => return,
        };
        if ballot.leader == env.from {
            self.checker.on_ballot_sent(ballot, boot);
        }
    }

    /// Makes due writes durable and hands their completions to the drivers.
    fn complete_jobs(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].running(self.now) {
                continue;
            }
            loop {
                if !self.nodes[i].disk.get().sync_due(self.now) {
                    break;
                }
                let fail = self.now <= self.cfg.fault_steps
                    && self.rng.chance(self.cfg.fsync_fail_pct)
                    && self.may_lose(i);
                let synced = self.nodes[i].disk.get().sync(fail);
                let token = match synced {
                    Ok(Some((token, writes))) => {
                        let (m, boot) = (self.nodes[i].member, self.nodes[i].boot);
                        for w in &writes {
                            match w {
                                crate::storage::Write::Accept { slot, value } => {
                                    self.checker.on_durable_accept(m, boot, *slot, value);
                                }
                                crate::storage::Write::Promise(b) => {
                                    self.checker.on_durable_promise(m, *b);
                                }
                                _ => {}
                            }
                        }
                        token
                    }
                    Ok(None) => break,
                    Err(_) => {
                        // Fail-stop: the replica must not go on as if the
                        // data were safe.
                        let m = self.nodes[i].member;
                        self.log(|| format!("fsync fails on {m}: fail-stop"));
                        self.crash(i);
                        break;
                    }
                };
                let now = self.now;
                let Some(d) = self.nodes[i].driver.as_mut() else {
                    break;
                };
                d.storage_mut().get().set_now(now);
                match d.persisted(token, Ok(())) {
                    Ok(out) => self.release(i, out),
                    Err(e) => {
                        let m = self.nodes[i].member;
                        self.checker
                            .fail(format!("{m}: a durable write was refused: {e}"));
                        break;
                    }
                }
            }
        }
    }

    fn crash(&mut self, i: usize) {
        let quick = self.rng.chance(self.cfg.quick_restart_pct);
        let node = &mut self.nodes[i];
        node.paused_until = None;
        if node.driver.take().is_some() {
            node.disk.get().crash();
            // A quick restart comes back before the others' failure
            // detectors notice, well within an election timeout.
            let down = if quick {
                self.rng.range(1, TICK * faults::SUSPECT_AFTER as u64)
            } else {
                self.rng.range(50, 600)
            };
            node.restart_at = Some(self.now + down);
            self.report.crashes += 1;
            let m = node.member;
            self.log(|| format!("CRASH {m} (unsynced writes lost), down for {down} steps"));
        }
    }

    fn restart_due(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].restart_at.is_some_and(|t| t <= self.now) {
                let disk = self.nodes[i].disk.clone();
                let mut node = std::mem::replace(&mut self.nodes[i], Node::fresh(member(i), disk));
                node.restart_at = None;
                if self.now <= self.cfg.fault_steps && self.may_wipe() {
                    let old = node.member;
                    node.member.incarnation.0 += 1;
                    node.disk.get().wipe();
                    let m = node.member;
                    let guarded = self.guarded_configs();
                    self.log(|| {
                        format!("WIPE {old}: comes back empty as {m} (guarded {guarded:?})")
                    });
                }
                self.start(&mut node);
                let m = node.member;
                let applied = node.replica().map_or(0, |r| r.applied());
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
        if self.rng.below(10_000) < self.cfg.slow_disk_per_10k {
            let victim = self.pick_victim();
            let e = TICK * self.cfg.options.election_ticks.max(1);
            let until = self.now + self.rng.range(e, 3 * e);
            self.nodes[victim].disk.get().slow_down(until);
            let m = self.nodes[victim].member;
            self.log(|| format!("SLOW DISK {m} until {until}"));
        }
        if self.rng.below(10_000) < self.cfg.lagging_crash_per_10k {
            let now = self.now;
            let lagging: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| {
                    self.nodes[i].running(now) && self.nodes[i].disk.get().lagging(now, 2 * TICK)
                })
                .collect();
            if !lagging.is_empty() {
                let victim = lagging[self.rng.below(lagging.len() as u64) as usize];
                if self.may_lose(victim) {
                    self.crash(victim);
                }
            }
        }
        if self.rng.below(10_000) < self.cfg.partition_per_10k {
            self.repartition();
        }
        if self.rng.below(10_000) < self.cfg.pause_per_10k {
            let victim = self.pick_victim();
            let e = TICK * self.cfg.options.election_ticks.max(1);
            let until = self.now + self.rng.range(1, 3 * e);
            let n = &mut self.nodes[victim];
            if n.driver.is_some() && n.paused_until.is_none_or(|t| t <= self.now) {
                n.paused_until = Some(until);
                let m = n.member;
                self.log(|| format!("PAUSE {m} until {until}"));
            }
        }
        if self.rng.below(10_000) < self.cfg.membership_per_10k {
            self.change_membership();
        }
        if self.cfg.hang_leader_per_10k > 0 {
            self.hang_leader();
        }
    }

    /// Now and then hangs the leader's node (see
    /// [`SimConfig::hang_leader_per_10k`]) for longer than the failure
    /// detector takes to report it, unless a node hangs already.
    fn hang_leader(&mut self) {
        let now = self.now;
        if self.nodes.iter().any(|n| !n.running(now)) {
            return;
        }
        let Some(l) = self
            .nodes
            .iter()
            .position(|n| n.replica().is_some_and(|r| r.is_leader()))
        else {
            return;
        };
        let asleep = self.nodes[l].replica().is_some_and(|r| !r.wants_ticks());
        let chance = if asleep {
            self.cfg.hang_leader_per_10k
        } else {
            self.cfg.hang_leader_per_10k / 4
        };
        if self.rng.below(10_000) >= chance {
            return;
        }
        let report = TICK * self.cfg.unresponsive_after as u64;
        let until = now + report + self.rng.range(report / 4, report);
        let n = &mut self.nodes[l];
        n.paused_until = Some(until);
        let m = n.member;
        self.log(|| format!("HANG {m} (leader, group asleep: {asleep}) until {until}"));
    }

    /// Fails the run if an operation issued while faults are on has waited
    /// longer than [`SimConfig::latency_bound`].
    fn check_latency(&mut self) {
        let Some(bound) = self.cfg.latency_bound else {
            return;
        };
        if self.now > self.cfg.fault_steps {
            return;
        }
        let now = self.now;
        if let Some(late) = self.clients.iter().find_map(|c| c.overdue(now, bound)) {
            self.checker.fail(format!(
                "latency: {late}, with a majority of the nodes healthy (bound {bound} steps)"
            ));
        }
    }

    /// Half the time the leader, else a random replica.
    fn pick_victim(&mut self) -> usize {
        let leader = self
            .nodes
            .iter()
            .position(|x| x.replica().is_some_and(|r| r.is_leader()));
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
            .position(|x| x.replica().is_some_and(|r| r.is_leader()));
        let desc = if self.cfg.duel_pct > 0 && self.rng.chance(self.cfg.duel_pct) {
            faults::duel(&mut self.rng, &mut self.net.blocked, n, leader)
        } else {
            faults::partition(&mut self.rng, &mut self.net.blocked, n, leader)
        };
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
            n.paused_until = None;
            n.excluded = !config.all_members().any(|m| m == n.member);
            if n.excluded {
                n.driver = None;
                n.disk.get().crash();
                n.restart_at = None;
            } else if n.driver.is_none() {
                n.restart_at = Some(self.now);
            }
        }
        self.log(|| "HEAL: faults stop, everyone restarts".to_string());
    }

    /// The node indices of the voters the table lists.
    fn listed(&self) -> Vec<usize> {
        self.table
            .voters
            .iter()
            .filter_map(|m| self.index_of(*m))
            .collect()
    }

    fn drive_clients(&mut self) {
        let listed = self.listed();
        for c in 0..self.clients.len() {
            let n = self.nodes.len();
            let now = self.now;
            let query_pct = self.cfg.query_pct;
            let explode_pct = self.cfg.explode_pct;
            if let Some((to, req)) = self.clients[c].act(
                now,
                n,
                &listed,
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

    /// The index of the node `m` lives on.
    fn index_of(&self, m: MemberId) -> Option<usize> {
        let i = (m.node.0 as usize).checked_sub(1)?;
        (i < self.nodes.len()).then_some(i)
    }

    /// The operator records a configuration the group chose, as the
    /// rebalancer does once its change returns; one record in
    /// `100 / TABLE_LOST_PCT` is lost (the master or the reply did not
    /// make it), so the table stays behind until [`Simulation::record_table`]
    /// repairs it.
    fn record_change(&mut self) {
        let latest = self.latest_config();
        if latest.epoch <= self.table.epoch || latest.epoch <= self.table_decided {
            return;
        }
        self.table_decided = latest.epoch;
        if self.rng.chance(TABLE_LOST_PCT) {
            let epoch = latest.epoch;
            self.log(|| format!("TABLE record of epoch {epoch} lost"));
        } else {
            self.table = latest;
        }
    }

    /// The simulated rebalancer: reads the group's configuration from its
    /// leader, found as every caller finds it (a [`Route`] from the voters
    /// the table lists, following leader hints), and records it in the
    /// table if newer. A route that does not reach the leader leaves the
    /// table as it is.
    fn record_table(&mut self) {
        let listed = self.table.voters.clone();
        let mut route: Route = Route::new(None);
        for _ in 0..2 * listed.len() {
            let Some(m) = route.next(&listed) else {
                return;
            };
            let now = self.now;
            let Some(i) = self
                .index_of(m)
                .filter(|&i| self.nodes[i].running(now))
                .filter(|&i| self.nodes[i].replica().is_some_and(|r| r.id() == m))
            else {
                continue;
            };
            // The runtime's rebalancer reads the configuration of every
            // group with a learner (a move in flight) each step, and of
            // every group whose change it could not record; a member asked
            // needs a leader to answer, so an idle group whose members
            // restarted elects one.
            if !self.table.learners.is_empty() || self.table.epoch < self.table_decided {
                if let Some(d) = self.nodes[i].driver.as_mut() {
                    if !d.replica().is_leader() {
                        d.leader_wanted();
                    }
                }
            }
            let Some(r) = self.nodes[i].replica() else {
                continue;
            };
            if r.is_leader() {
                if r.config().epoch > self.table.epoch {
                    self.table = r.config().clone();
                    let (epoch, voters) = (self.table.epoch, self.table.voters.clone());
                    self.log(|| format!("TABLE epoch {epoch}: voters {voters:?}"));
                }
                return;
            }
            let only_listed = self.cfg.bugs.hints_only_to_listed;
            if let Some(l) = r
                .leader()
                .filter(|l| *l != m && (!only_listed || listed.contains(l)))
            {
                route.follow(l);
            }
        }
    }

    fn observe_leader(&mut self) {
        let leader = self
            .nodes
            .iter()
            .filter_map(Node::replica)
            .find(|r| r.is_leader())
            .map(|r| r.id());
        if leader.is_some() && leader != self.last_leader {
            self.report.elections += 1;
            self.last_leader = leader;
            self.log(|| format!("LEADER {}", leader.map_or("-".into(), |l| l.to_string())));
        }
    }

    /// After the clients finish, lets every live member of the final
    /// configuration catch up, and the routing table learn it (bounded).
    fn converge(&mut self) -> Result<(), String> {
        let deadline = self.now + 20_000;
        loop {
            let members = self.live_members();
            let replicas: Vec<&SimReplica> = members
                .iter()
                .filter_map(|&i| self.nodes[i].replica())
                .collect();
            let applied: Vec<u64> = replicas.iter().map(|r| r.applied()).collect();
            let max_commit = replicas.iter().map(|r| r.commit_index()).max().unwrap_or(0);
            let config = self.latest_config();
            let settled = replicas.iter().all(|r| r.config().epoch == config.epoch);
            let recorded = self.table.epoch == config.epoch;
            if !replicas.is_empty()
                && settled
                && recorded
                && applied.iter().all(|a| *a == max_commit)
                && self.net.is_empty()
            {
                self.report.slots = max_commit;
                self.report.epoch = config.epoch;
                return Ok(());
            }
            if self.now >= deadline && !recorded {
                return Err(format!(
                    "liveness: the routing table never learned configuration {config:?}; it lists epoch {} with voters {:?}",
                    self.table.epoch, self.table.voters
                ));
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
        let replicas: Vec<&SimReplica> = members
            .iter()
            .filter_map(|&i| self.nodes[i].replica())
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
        self.report.slowest = self.clients.iter().map(|c| c.slowest).max().unwrap_or(0);
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
        total.transfers += r.transfers;
        total.drains += r.drains;
        total.epoch = total.epoch.max(r.epoch);
        total.slowest = total.slowest.max(r.slowest);
    }
    Ok((count, total))
}
