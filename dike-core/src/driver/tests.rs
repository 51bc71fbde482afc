//! The driver's ordering rules, one rule per test, plus the crash scenarios
//! those rules exist for.

use super::*;
use crate::codec;
use crate::config::{Config, ReplicaOptions};
use crate::entry::Entry;
use crate::ids::{Ballot, ClientId};
use crate::message::Message;
use crate::ready::RequestId;
use crate::server::{GroupContext, ServerMachine};
use crate::sim::register::{Action, Register, RegisterRequest};
use crate::storage::MemoryStorage;
use std::sync::{Arc, Mutex};

type Machine = ServerMachine<Register>;

fn machine(member: MemberId) -> Machine {
    ServerMachine::new(GroupContext {
        group: "g".into(),
        kind: "sim-register".into(),
        member,
    })
}

fn members(n: u64) -> Vec<MemberId> {
    (1..=n).map(|i| MemberId::new(i, 1)).collect()
}

fn start_with<S: ReplicaStorage>(
    member: MemberId,
    config: Config,
    options: ReplicaOptions,
    storage: S,
    boot: u64,
) -> GroupDriver<Machine, S> {
    let start = Start {
        member,
        config,
        machine: machine(member),
        options,
        boot,
        seed: 7,
    };
    GroupDriver::start(start, storage).expect("starts")
}

type MemDriver = GroupDriver<Machine, Blocking<MemoryStorage>>;

fn group(n: u64) -> Vec<MemDriver> {
    let ms = members(n);
    let config = Config::initial(ms.clone());
    ms.iter()
        .map(|&m| {
            let storage = Blocking(MemoryStorage::new());
            start_with(m, config.clone(), ReplicaOptions::default(), storage, 1)
        })
        .collect()
}

/// Drives every driver and delivers messages until nothing moves.
fn settle(ds: &mut [MemDriver]) -> Vec<Response> {
    let mut responses = Vec::new();
    loop {
        let mut moved = false;
        for i in 0..ds.len() {
            let out = ds[i].drive().expect("memory storage");
            responses.extend(out.responses);
            for (to, envs) in out.to_peers {
                moved = true;
                ds[(to.node.0 - 1) as usize].step(envs);
            }
        }
        if !moved {
            return responses;
        }
    }
}

fn command(client: u64, action: Action) -> Command {
    Command {
        client: ClientId(client),
        seq: 1,
        ack_floor: 0,
        payload: codec::encode("request", &RegisterRequest { op: client, action })
            .expect("encodes"),
    }
}

#[test]
fn a_command_proposed_at_the_leader_is_answered_once_chosen() {
    let mut ds = group(3);
    ds[0].campaign();
    settle(&mut ds);
    assert!(ds[0].replica().is_leader());
    ds[0].propose(command(9, Action::Add(5)));
    let responses = settle(&mut ds);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].to, RequestId::Command(ClientId(9), 1));
    let reply: i64 =
        codec::decode("reply", responses[0].result.as_ref().expect("ok")).expect("decodes");
    assert_eq!(reply, 5);
}

#[test]
fn a_group_of_one_leads_at_once_and_answers_queries() {
    let mut ds = group(1);
    settle(&mut ds);
    assert!(ds[0].replica().is_leader());
    ds[0].propose(command(9, Action::Add(2)));
    settle(&mut ds);
    let payload = codec::encode(
        "request",
        &RegisterRequest {
            op: 2,
            action: Action::Get,
        },
    )
    .expect("encodes");
    ds[0].query(41, payload);
    let responses = settle(&mut ds);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].to, RequestId::Query(41));
}

/// False reports (late pings on a busy cluster) would otherwise let the
/// voters of a small group depose one another faster than a leader gets a
/// slot chosen: a report campaigns at once only for a replica whose
/// elections have settled.
#[test]
fn a_report_of_the_leaders_node_down_does_not_campaign_at_once_before_elections_settle() {
    let mut ds = group(3);
    // ds[0] wins an election, then ds[1] deposes it: ds[0] has started an
    // election and not yet followed a leader for a whole timeout since.
    ds[0].campaign();
    settle(&mut ds);
    ds[1].campaign();
    settle(&mut ds);
    assert!(ds[1].replica().is_leader());
    assert!(!ds[0].replica().elections_settled());
    let leader_node = ds[1].replica().id().node;
    assert!(
        !ds[0].on_node_down(leader_node, DownReport::SessionClosed),
        "the first survivor campaigned at once"
    );
    // A replica that never started an election has nothing to settle.
    assert!(ds[2].replica().elections_settled());
}

#[test]
fn when_the_leaders_node_goes_down_exactly_the_first_survivor_campaigns() {
    let mut ds = group(3);
    ds[0].campaign();
    settle(&mut ds);
    let dead = ds[0].replica().id().node;
    let mut survivors = ds.split_off(1);
    assert!(
        !survivors[1].on_node_down(dead, DownReport::SessionClosed),
        "not the first survivor"
    );
    assert!(
        !survivors[0].on_node_down(NodeId(99), DownReport::SessionClosed),
        "leader alive"
    );
    assert!(survivors[0].on_node_down(dead, DownReport::SessionClosed));
    for _ in 0..10 {
        for i in 0..2 {
            let out = survivors[i].drive().expect("memory storage");
            for (to, envs) in out.to_peers {
                if to.node.0 >= 2 {
                    survivors[(to.node.0 - 2) as usize].step(envs);
                }
            }
        }
    }
    assert!(survivors[0].replica().is_leader());
}

#[test]
fn a_leader_with_a_full_window_returns_instead_of_spinning() {
    let ms = members(3);
    let config = Config::initial(ms.clone());
    let opts = ReplicaOptions {
        window: 2,
        max_batch: 1,
        ..Default::default()
    };
    let mut ds: Vec<MemDriver> = ms
        .iter()
        .map(|&m| {
            start_with(
                m,
                config.clone(),
                opts.clone(),
                Blocking(MemoryStorage::new()),
                1,
            )
        })
        .collect();
    ds[0].campaign();
    settle(&mut ds);
    assert!(ds[0].replica().is_leader());
    for client in 1..=5 {
        ds[0].propose(command(client, Action::Add(1)));
    }
    let mut leader = ds.remove(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let out = leader.drive().map(|o| o.to_peers.len());
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(std::time::Duration::from_secs(5));
    assert!(
        matches!(out, Ok(Ok(2))),
        "drive returns with accepts for both peers: {out:?}"
    );
}

#[test]
fn a_failed_write_releases_nothing_and_stops_the_driver() {
    struct Broken;
    impl Storage for Broken {
        fn write(&mut self, _: &[Write]) -> Result<(), StorageError> {
            Err(StorageError::Failed("disk gone".into()))
        }
        fn load(&self) -> Result<Recovered, StorageError> {
            Ok(Default::default())
        }
    }
    let ms = members(3);
    let mut d = start_with(
        ms[0],
        Config::initial(ms.clone()),
        ReplicaOptions::default(),
        Blocking(Broken),
        1,
    );
    d.campaign();
    assert!(d.drive().is_err(), "the promise write fails");
    d.tick();
    assert!(d.drive().is_err(), "a stopped driver stays stopped");
}

/// A disk whose writes become durable when the test says so, and whose
/// unsynced writes a crash loses. Shared, so it outlives a driver.
#[derive(Clone, Default)]
struct Disk(Arc<Mutex<DiskState>>);

#[derive(Default)]
struct DiskState {
    durable: MemoryStorage,
    pending: VecDeque<(WriteToken, Vec<Write>)>,
}

impl Disk {
    fn state(&self) -> std::sync::MutexGuard<'_, DiskState> {
        self.0.lock().expect("not poisoned")
    }

    /// Makes the oldest pending batch durable; returns its token.
    fn sync_one(&self) -> Option<WriteToken> {
        let mut s = self.state();
        let (token, writes) = s.pending.pop_front()?;
        s.durable.write(&writes).expect("memory write");
        Some(token)
    }

    fn pending(&self) -> usize {
        self.state().pending.len()
    }

    /// The process died: unsynced writes are gone.
    fn crash(&self) {
        self.state().pending.clear();
    }
}

impl ReplicaStorage for Disk {
    fn load(&self) -> Result<Recovered, StorageError> {
        self.state().durable.load()
    }
    fn persist(&mut self, token: WriteToken, writes: Vec<Write>) -> Persist {
        self.state().pending.push_back((token, writes));
        Persist::Pending
    }
}

type DiskDriver = GroupDriver<Machine, Disk>;

fn disk_group(n: u64, options: &ReplicaOptions) -> (Vec<DiskDriver>, Vec<Disk>) {
    let ms = members(n);
    let config = Config::initial(ms.clone());
    let disks: Vec<Disk> = ms.iter().map(|_| Disk::default()).collect();
    let ds = ms
        .iter()
        .zip(&disks)
        .map(|(&m, disk)| start_with(m, config.clone(), options.clone(), disk.clone(), 1))
        .collect();
    (ds, disks)
}

fn opts() -> ReplicaOptions {
    ReplicaOptions {
        snapshot_interval: 1_000,
        snapshot_jitter: 0,
        ..ReplicaOptions::default()
    }
}

/// A network of drivers on [`Disk`]s: delivers what each releases along the
/// links that are up, and syncs the disks of `syncing` members.
struct Net {
    options: ReplicaOptions,
    ds: Vec<Option<DiskDriver>>,
    disks: Vec<Disk>,
    /// Links that are up, as (from index, to index).
    up: Vec<(usize, usize)>,
    syncing: Vec<bool>,
}

impl Net {
    fn new(n: u64) -> Self {
        Self::with_options(n, opts())
    }

    fn with_options(n: u64, options: ReplicaOptions) -> Self {
        let (ds, disks) = disk_group(n, &options);
        let n = n as usize;
        Net {
            options,
            ds: ds.into_iter().map(Some).collect(),
            disks,
            up: (0..n).flat_map(|a| (0..n).map(move |b| (a, b))).collect(),
            syncing: vec![true; n],
        }
    }

    fn d(&mut self, i: usize) -> &mut DiskDriver {
        self.ds[i].as_mut().expect("running")
    }

    fn only_links(&mut self, links: &[(usize, usize)]) {
        self.up = links.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
    }

    fn send(&mut self, from: usize, out: Output) {
        for (to, envs) in out.to_peers {
            let j = (to.node.0 - 1) as usize;
            if self.up.contains(&(from, j)) {
                if let Some(d) = self.ds[j].as_mut() {
                    d.step(envs);
                }
            }
        }
    }

    /// Drives, syncs and delivers until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1_000 {
            let mut moved = false;
            for i in 0..self.ds.len() {
                let Some(d) = self.ds[i].as_mut() else {
                    continue;
                };
                let mut outs = vec![d.drive().expect("drives")];
                if self.syncing[i] {
                    while let Some(token) = self.disks[i].sync_one() {
                        outs.push(d.persisted(token, Ok(())).expect("in order"));
                    }
                }
                for out in outs {
                    moved |= !out.to_peers.is_empty();
                    self.send(i, out);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network did not settle");
    }

    fn crash_and_restart(&mut self, i: usize, boot: u64) {
        self.ds[i] = None;
        self.disks[i].crash();
        let ms = members(self.disks.len() as u64);
        let config = Config::initial(ms.clone());
        let options = self.options.clone();
        self.ds[i] = Some(start_with(
            ms[i],
            config,
            options,
            self.disks[i].clone(),
            boot,
        ));
    }

    fn chosen(&self, i: usize, slot: u64) -> Option<Entry> {
        self.ds[i]
            .as_ref()
            .and_then(|d| d.replica().chosen_entry(slot).cloned())
    }
}

/// The scenario of a ballot reused after a crash (3 replicas): n1
/// campaigns while its own promise is not yet durable; n1 leads; an
/// `Accept` of `Set 111` reaches only n2; n1 crashes and loses the unsynced
/// promise; n1 restarts and campaigns again, with n3 only; `Set 222` is
/// chosen at slot 1; then n1's heartbeat reaches n2. If the second life
/// could reuse the first life's ballot, n2 would take the heartbeat's
/// commit index as proof that its own `Set 111` was chosen. Whatever the
/// two lives did, no slot may be chosen with two values.
#[test]
fn a_candidate_restarted_before_its_promise_was_durable_never_splits_a_slot() {
    let mut net = Net::new(3);
    // Life 1 of n1: its disk does not sync.
    net.syncing[0] = false;
    net.d(0).campaign();
    net.settle();
    net.only_links(&[(0, 1)]);
    net.d(0).propose(command(1, Action::Set(111)));
    net.settle();
    assert!(net.disks[0].pending() > 0, "n1's writes are still unsynced");
    // n1 crashes: its promise (and its accept) are lost.
    net.crash_and_restart(0, 2);
    net.syncing[0] = true;
    net.only_links(&[(0, 2)]);
    net.d(0).campaign();
    net.settle();
    assert!(net.d(0).replica().is_leader(), "life 2 leads with n3");
    net.d(0).propose(command(2, Action::Set(222)));
    net.settle();
    assert!(net.chosen(0, 1).is_some(), "slot 1 is chosen in life 2");
    // n2 hears life 2's heartbeat.
    net.only_links(&[(0, 1), (0, 2)]);
    for _ in 0..4 {
        net.d(0).tick();
        net.settle();
    }
    let one = net.chosen(0, 1);
    for i in 1..3 {
        if let Some(theirs) = net.chosen(i, 1) {
            assert_eq!(Some(&theirs), one.as_ref(), "slot 1 differs on n{}", i + 1);
        }
    }
    let values: Vec<i64> = (0..3)
        .filter_map(|i| net.ds[i].as_ref())
        .filter(|d| d.replica().applied() >= 1)
        .map(|d| d.replica().machine().server().value)
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] == w[1]),
        "replicas applied different values: {values:?}"
    );
}

#[test]
fn a_prepare_leaves_only_once_the_candidates_own_promise_is_durable() {
    let mut net = Net::new(3);
    net.syncing[0] = false;
    net.d(0).campaign();
    let out = net.d(0).drive().expect("drives");
    assert!(
        out.to_peers.is_empty(),
        "nothing of the new ballot leaves before its promise is durable: {:?}",
        out.to_peers
    );
    let token = net.disks[0].sync_one().expect("the promise is pending");
    let out = net.d(0).persisted(token, Ok(())).expect("in order");
    let prepares = out
        .to_peers
        .values()
        .flatten()
        .filter(|e| matches!(e.msg, Message::Prepare { .. }))
        .count();
    assert_eq!(prepares, 2, "then the prepares go to both peers");
}

/// Member 2 of a fresh group of 3, on a [`Disk`].
fn disk_follower() -> (DiskDriver, Vec<MemberId>, Disk) {
    let ms = members(3);
    let disk = Disk::default();
    let d = start_with(
        ms[1],
        Config::initial(ms.clone()),
        ReplicaOptions::default(),
        disk.clone(),
        1,
    );
    (d, ms, disk)
}

/// A `Prepare` in round `round` of `ms[0]` for `ms[1]`.
fn prepare(ms: &[MemberId], round: u64) -> Envelope {
    let ballot = Ballot {
        round,
        leader: ms[0],
        ..Ballot::ZERO
    };
    Envelope {
        from: ms[0],
        to: ms[1],
        msg: Message::Prepare { ballot, from: 1 },
    }
}

#[test]
fn nothing_that_waits_for_a_pending_write_leaves_before_it_is_durable() {
    let (mut d, ms, disk) = disk_follower();
    d.step(vec![prepare(&ms, 1)]);
    let out = d.drive().expect("queued");
    assert!(
        out.to_peers.is_empty(),
        "the promise waits: {:?}",
        out.to_peers
    );
    assert_eq!(d.writes_in_flight(), 1);
    let token = disk.sync_one().expect("pending");
    let out = d.persisted(token, Ok(())).expect("durable");
    assert_eq!(d.writes_in_flight(), 0);
    let promised = out.to_peers.get(&ms[0]).expect("the promise goes out");
    assert!(matches!(promised[0].msg, Message::Promise { .. }));
}

#[test]
fn a_failed_pending_write_stops_the_driver() {
    let (mut d, ms, _disk) = disk_follower();
    d.step(vec![prepare(&ms, 1)]);
    d.drive().expect("queued");
    let failed = d.persisted(1, Err(StorageError::Failed("disk".into())));
    assert!(matches!(failed, Err(DriverError::Storage(_))));
    assert!(d.drive().is_err());
}

#[test]
fn completions_are_taken_strictly_in_order() {
    let (mut d, ms, disk) = disk_follower();
    d.step(vec![prepare(&ms, 1)]);
    d.drive().expect("queued");
    d.step(vec![prepare(&ms, 2)]);
    d.drive().expect("queued");
    assert_eq!(d.writes_in_flight(), 2);
    // The second batch's completion may not release the first one's promise.
    let early = d.persisted(2, Ok(()));
    assert!(
        matches!(
            early,
            Err(DriverError::UnexpectedCompletion {
                got: 2,
                expected: Some(1)
            })
        ),
        "{early:?}"
    );
    assert_eq!(d.writes_in_flight(), 2, "nothing was released");
    assert!(matches!(
        d.persisted(7, Ok(())),
        Err(DriverError::UnexpectedCompletion { got: 7, .. })
    ));
    let first = disk.sync_one().expect("pending");
    assert_eq!(first, 1);
    let out = d.persisted(first, Ok(())).expect("the oldest");
    assert_eq!(out.to_peers.values().flatten().count(), 1, "one promise");
    assert!(matches!(
        d.persisted(1, Ok(())),
        Err(DriverError::UnexpectedCompletion { got: 1, .. })
    ));
}

#[test]
fn writes_pipeline_and_their_answers_leave_in_order_once_durable() {
    let (mut d, ms, disk) = disk_follower();
    let me = ms[1];
    let ballot = Ballot {
        round: 1,
        leader: ms[0],
        ..Ballot::ZERO
    };
    let accept = |slot| Envelope {
        from: ms[0],
        to: me,
        msg: Message::Accept {
            ballot,
            slot,
            entry: Entry::Noop,
            commit: 0,
        },
    };
    d.step(vec![accept(1)]);
    assert!(d.drive().expect("queued").to_peers.is_empty());
    d.step(vec![accept(2)]);
    assert!(d.drive().expect("queued").to_peers.is_empty());
    assert_eq!(d.writes_in_flight(), 2);
    let accepted = |out: &Output| -> Vec<u64> {
        out.to_peers
            .values()
            .flatten()
            .filter_map(|e| match e.msg {
                Message::Accepted { slot, .. } => Some(slot),
                _ => None,
            })
            .collect()
    };
    let t = disk.sync_one().expect("pending");
    let out = d.persisted(t, Ok(())).expect("durable");
    assert_eq!(accepted(&out), vec![1], "only the first write is durable");
    let t = disk.sync_one().expect("pending");
    let out = d.persisted(t, Ok(())).expect("durable");
    assert_eq!(accepted(&out), vec![2]);
    assert_eq!(d.writes_in_flight(), 0);
}

#[test]
fn a_full_pipeline_takes_no_further_ready() {
    let (mut d, ms, disk) = disk_follower();
    for round in 1..=MAX_WRITES_IN_FLIGHT as u64 + 3 {
        d.step(vec![prepare(&ms, round)]);
        d.drive().expect("queued");
    }
    assert_eq!(d.writes_in_flight(), MAX_WRITES_IN_FLIGHT);
    assert_eq!(
        disk.pending(),
        MAX_WRITES_IN_FLIGHT,
        "storage holds no more"
    );
    assert!(d.replica().has_ready(), "the rest waits in the replica");
    let t = disk.sync_one().expect("pending");
    let out = d.persisted(t, Ok(())).expect("durable");
    assert_eq!(out.to_peers.values().flatten().count(), 1, "one promise");
    assert_eq!(d.writes_in_flight(), MAX_WRITES_IN_FLIGHT, "refilled");
}

/// A replica that acknowledged a commit and then lost it to a crash, in a
/// group that sends it nothing more (idle, or asleep), asks for it on its
/// own when it restarts.
#[test]
fn a_restarted_replica_that_lost_its_last_writes_catches_up_without_new_traffic() {
    let mut net = Net::new(3);
    net.d(0).campaign();
    net.settle();
    net.syncing[2] = false;
    net.d(0).propose(command(1, Action::Set(5)));
    net.settle();
    // The commit reaches n3 with the next heartbeat.
    for _ in 0..3 {
        net.d(0).tick();
        net.settle();
    }
    assert_eq!(
        net.d(2).replica().applied(),
        1,
        "n3 applied slot 1 in memory"
    );
    net.crash_and_restart(2, 2);
    net.syncing[2] = true;
    assert_eq!(net.d(2).replica().applied(), 0, "its writes were lost");
    // No tick anywhere: only n3's own request can bring slot 1 back.
    net.settle();
    assert_eq!(net.d(2).replica().applied(), 1);
    assert_eq!(net.d(2).replica().machine().server().value, 5);
}

/// A member behind the others' snapshots gets, in one answer to its
/// catch-up request, the snapshot and what was chosen after it: when the
/// group then sleeps, nobody would send it the later slots.
#[test]
fn a_catch_up_past_a_snapshot_brings_the_slots_after_it_too() {
    let options = ReplicaOptions {
        snapshot_interval: 2,
        snapshot_jitter: 0,
        ..ReplicaOptions::default()
    };
    let mut net = Net::with_options(3, options);
    net.d(0).campaign();
    net.settle();
    net.only_links(&[(0, 1)]);
    for client in 1..=5 {
        net.d(0).propose(command(client, Action::Add(1)));
        net.settle();
    }
    for _ in 0..3 {
        net.d(0).tick();
        net.settle();
    }
    let snap = net.d(0).replica().snapshot().map_or(0, |s| s.slot);
    let commit = net.d(0).replica().commit_index();
    assert!(
        snap > 0 && snap < commit,
        "snapshot {snap}, commit {commit}"
    );
    // n3 comes back (a restart: it asks on its own), no tick anywhere.
    net.only_links(&[(0, 1), (0, 2), (1, 2)]);
    net.crash_and_restart(2, 2);
    net.settle();
    assert_eq!(net.d(2).replica().applied(), commit);
    assert_eq!(net.d(2).replica().machine().server().value, 5);
}

/// The successor of a leader it hears does not campaign on a suspicion of
/// the leader's node (pings missed on a congested cluster), only on its
/// session closing.
#[test]
fn a_suspicion_of_a_leader_still_heard_does_not_make_its_successor_campaign() {
    let mut ds = group(3);
    ds[0].campaign();
    settle(&mut ds);
    let leader = ds[0].replica().id().node;
    assert!(ds[1].succeeds_leader_on(leader));
    assert!(ds[1].replica().elections_settled());
    assert!(
        !ds[1].on_node_down(leader, DownReport::Unresponsive),
        "campaigned on a suspicion of a leader it hears"
    );
    assert!(ds[1].on_node_down(leader, DownReport::SessionClosed));
}
