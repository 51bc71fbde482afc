//! The `replica` target.
//!
//! One `dike_core` replica (through `GroupDriver`, as the runtime and the
//! simulator drive it) fed an arbitrary sequence of well-typed inputs:
//! protocol messages from its peers, ticks, proposals, node-down reports
//! and storage completions. No input may make it panic, and after every
//! step:
//! - its promise never goes down (in memory and in what it writes), and it
//!   acknowledges (`Accepted`) only an `Accept` that arrived while its
//!   ballot was at or above the promise;
//! - a slot once seen chosen keeps its value;
//! - it has applied no further than its commit index.
//!
//! Every proposal of slot `s` that a peer sends carries the same value
//! (`value_of`), as in a correct run (one value per slot and ballot, and
//! phase 1 carries a chosen value forward): the inputs are arbitrary in
//! order, timing and ballots, but not Byzantine.

use arbitrary::{Arbitrary, Unstructured};
use dike_core::sim::register::{Action, Register, RegisterRequest};
use dike_core::{
    codec, Accepted, Ballot, Batch, ClientId, Command, Config, DownReport, Entry, Envelope,
    GroupContext, GroupDriver, MemberId, Message, NodeId, Output, Persist, Recovered,
    ReplicaOptions, ReplicaStorage, ServerMachine, Start, StorageError, Write, WriteToken,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The slots the input can name (every slot number is taken modulo this).
pub const SLOTS: u64 = 24;

/// A ballot from small choices: epoch, round, and the index of its leader.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct B(u8, u8, u8);

/// A protocol message from a peer, in small choices (`message` makes the
/// real one; slots are taken modulo [`SLOTS`], values are `value_of`).
#[derive(Arbitrary, Debug)]
pub enum Msg {
    Prepare(B, u8),
    Promise {
        b: B,
        from: u8,
        accepted: Vec<(u8, B)>,
        commit: u8,
    },
    Accept {
        b: B,
        slot: u8,
        commit: u8,
    },
    Accepted(B, u8),
    Nack(B),
    Heartbeat {
        b: B,
        commit: u8,
        read_round: u8,
        hibernate: bool,
    },
    HeartbeatAck {
        b: B,
        read_round: u8,
        commit: u8,
    },
    CatchUp(u8),
    Chosen {
        entries: Vec<(u8, B)>,
        commit: u8,
    },
    Compacted(u8),
    TimeoutNow(B),
}

/// One step of the input: what happens to the replica next.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// A message from member `from % 4` (3: a stranger).
    Step { from: u8, msg: Msg },
    /// `n % 16` ticks.
    Tick(u8),
    /// A client's command to the register.
    Propose { client: u8, seq: u8, add: i8 },
    /// A read-only query.
    Query(u8),
    /// The replica is told to campaign.
    Campaign,
    /// Node `n % 4 + 1` is reported down: its session closed, or (the
    /// high bit set) its pings went unanswered.
    NodeDown(u8),
    /// The oldest write in flight is durable.
    Durable,
}

fn members() -> Vec<MemberId> {
    (1..=3).map(|n| MemberId::new(n, 1)).collect()
}

/// A member of the group, or (index 3) a stranger.
fn member(i: u8) -> MemberId {
    MemberId::new(u64::from(i % 4) + 1, 1)
}

fn ballot(b: B) -> Ballot {
    Ballot {
        epoch: u64::from(b.0 % 2),
        round: u64::from(b.1 % 8),
        leader: member(b.2),
    }
}

fn slot(s: u8) -> u64 {
    u64::from(s) % SLOTS
}

fn register_request(op: u64, add: i64) -> Vec<u8> {
    codec::encode(
        "request",
        &RegisterRequest {
            op,
            action: Action::Add(add),
        },
    )
    .expect("encodes")
}

/// The one value any peer ever proposes at `slot`.
fn value_of(slot: u64) -> Entry {
    if slot % 3 == 0 {
        return Entry::Noop;
    }
    Entry::Batch(Batch {
        proposer: MemberId::new(2, 1),
        boot: 1,
        commands: vec![Command::new(
            ClientId(1000),
            slot,
            register_request(slot, 1),
        )]
        .into(),
    })
}

fn accepted(s: u8, b: B) -> (u64, Accepted) {
    let slot = slot(s);
    (
        slot,
        Accepted {
            ballot: ballot(b),
            entry: value_of(slot),
        },
    )
}

fn message(msg: Msg) -> Message {
    match msg {
        Msg::Prepare(b, from) => Message::Prepare {
            ballot: ballot(b),
            from: slot(from),
        },
        Msg::Promise {
            b,
            from,
            accepted: acc,
            commit,
        } => Message::Promise {
            ballot: ballot(b),
            from: slot(from),
            accepted: acc.into_iter().map(|(s, b)| accepted(s, b)).collect(),
            commit: slot(commit),
            snapshot_slot: 0,
        },
        Msg::Accept { b, slot: s, commit } => Message::Accept {
            ballot: ballot(b),
            slot: slot(s),
            entry: value_of(slot(s)),
            commit: slot(commit),
        },
        Msg::Accepted(b, s) => Message::Accepted {
            ballot: ballot(b),
            slot: slot(s),
        },
        Msg::Nack(b) => Message::Nack {
            promised: ballot(b),
        },
        Msg::Heartbeat {
            b,
            commit,
            read_round,
            hibernate,
        } => Message::Heartbeat {
            ballot: ballot(b),
            commit: slot(commit),
            read_round: u64::from(read_round % 4),
            hibernate,
        },
        Msg::HeartbeatAck {
            b,
            read_round,
            commit,
        } => Message::HeartbeatAck {
            ballot: ballot(b),
            read_round: u64::from(read_round % 4),
            commit: slot(commit),
        },
        Msg::CatchUp(from) => Message::CatchUp { from: slot(from) },
        Msg::Chosen { entries, commit } => Message::Chosen {
            entries: entries.into_iter().map(|(s, b)| accepted(s, b)).collect(),
            commit: slot(commit),
        },
        Msg::Compacted(upto) => Message::Compacted { upto: slot(upto) },
        Msg::TimeoutNow(b) => Message::TimeoutNow { ballot: ballot(b) },
    }
}

/// Storage whose writes complete when the input says so; it checks that
/// the promises it is given never go down.
#[derive(Default)]
struct Disk {
    durable: Recovered,
    in_flight: VecDeque<(WriteToken, Vec<Write>)>,
    highest_promise: Option<Ballot>,
}

impl ReplicaStorage for Disk {
    fn load(&self) -> Result<Recovered, StorageError> {
        Ok(self.durable.clone())
    }

    fn persist(&mut self, token: WriteToken, writes: Vec<Write>) -> Persist {
        for w in &writes {
            if let Write::Promise(b) = w {
                if let Some(p) = self.highest_promise {
                    assert!(*b >= p, "promise written went down from {p:?} to {b:?}");
                }
                self.highest_promise = Some(*b);
            }
        }
        self.in_flight.push_back((token, writes));
        Persist::Pending
    }
}

type Driver = GroupDriver<ServerMachine<Register>, Disk>;

/// What the replica has shown so far, checked after every step.
#[derive(Default)]
struct Seen {
    promised: Option<Ballot>,
    chosen: BTreeMap<u64, Entry>,
    /// `(ballot, slot)` of every `Accept` that arrived at or above the
    /// promise of its time: the only ones the replica may acknowledge.
    acceptable: BTreeSet<(Ballot, u64)>,
}

impl Seen {
    /// Notes an incoming message before the replica sees it.
    fn arriving(&mut self, d: &Driver, msg: &Message) {
        if let Message::Accept { ballot, slot, .. } = msg {
            if *ballot >= d.replica().promised() {
                self.acceptable.insert((*ballot, *slot));
            }
        }
    }

    /// Checks what the driver released.
    fn released(&self, out: &Output) {
        for env in out.to_peers.values().flatten() {
            if let Message::Accepted { ballot, slot } = env.msg {
                assert!(
                    self.acceptable.contains(&(ballot, slot)),
                    "acknowledged slot {slot} in {ballot:?}, below the promise when its Accept came"
                );
            }
        }
    }

    fn check(&mut self, d: &Driver) {
        let r = d.replica();
        if let Some(p) = self.promised {
            assert!(
                r.promised() >= p,
                "promise went down: {p:?} to {:?}",
                r.promised()
            );
        }
        self.promised = Some(r.promised());
        assert!(
            r.applied() <= r.commit_index(),
            "applied {} beyond commit {}",
            r.applied(),
            r.commit_index()
        );
        for s in 1..=r.commit_index().min(SLOTS + 64) {
            if let Some(e) = r.chosen_entry(s) {
                if let Some(before) = self.chosen.insert(s, e.clone()) {
                    assert_eq!(&before, e, "chosen slot {s} changed its value");
                }
            }
        }
    }
}

/// The `replica` target's body over raw bytes, decoded into `Vec<Op>` the
/// way libfuzzer-sys decodes a typed target's input (too short for the
/// type's size hint, or not decodable: nothing to run), so a corpus file
/// means the same here as in `fuzz/`.
pub fn run_bytes(data: &[u8]) {
    if data.len() < <Vec<Op> as Arbitrary>::size_hint(0).0 {
        return;
    }
    if let Ok(ops) = Vec::<Op>::arbitrary_take_rest(Unstructured::new(data)) {
        run(ops);
    }
}

/// The `replica` target's body over typed input (what `fuzz/` hands it).
pub fn run(ops: Vec<Op>) {
    let me = MemberId::new(1, 1);
    let options = ReplicaOptions {
        snapshot_interval: 8,
        ..ReplicaOptions::default()
    };
    let start = Start {
        member: me,
        config: Config::initial(members()),
        machine: ServerMachine::<Register>::new(GroupContext {
            group: "g".into(),
            kind: "sim-register".into(),
            member: me,
        }),
        options,
        boot: 1,
        seed: 7,
    };
    let mut d: Driver = GroupDriver::start(start, Disk::default()).expect("starts");
    let mut seen = Seen::default();
    for op in ops.into_iter().take(512) {
        match op {
            Op::Step { from, msg } => {
                let msg = message(msg);
                seen.arriving(&d, &msg);
                d.step(vec![Envelope {
                    from: member(from),
                    to: me,
                    msg,
                }])
            }
            Op::Tick(n) => {
                for _ in 0..(n % 16) {
                    d.tick();
                }
            }
            Op::Propose { client, seq, add } => d.propose(Command::new(
                ClientId(u64::from(client % 4)),
                u64::from(seq % 16),
                register_request(u64::from(seq), i64::from(add)),
            )),
            Op::Query(q) => d.query(u64::from(q), register_request(u64::from(q), 0)),
            Op::Campaign => d.campaign(),
            Op::NodeDown(n) => {
                // The high bit: a suspicion (pings missed) rather than a
                // closed session.
                let report = if n & 0x80 == 0 {
                    DownReport::SessionClosed
                } else {
                    DownReport::Unresponsive
                };
                let _ = d.on_node_down(NodeId(u64::from(n % 4) + 1), report);
            }
            Op::Durable => {
                if let Some((token, writes)) = d.storage_mut().in_flight.pop_front() {
                    d.storage_mut().durable.apply(&writes);
                    let out = d
                        .persisted(token, Ok(()))
                        .expect("the oldest completion is taken");
                    seen.released(&out);
                }
            }
        }
        // A storage error stops the driver; there is none here.
        seen.released(&d.drive().expect("drives"));
        seen.check(&d);
    }
}
