//! One hosted replica with its storage, driven the way every runtime must
//! drive a `dike_core::Replica`: take what is ready, persist the writes, then
//! release the messages (those that wait for the write only now), answer the
//! clients and run the effects. No actor and no IO here except the storage
//! calls, so the ordering rules are tested without a runtime.
//!
//! Writes may complete later ([`Persist::Pending`], the durable node log's
//! group commit): the driver then holds what waits for them until
//! [`GroupDriver::persisted`] says they are durable, and meanwhile goes on
//! taking `Ready`s, up to [`MAX_WRITES_IN_FLIGHT`] batches: a leader sends
//! the next batch's `Accept`s while its own disk still writes the last one,
//! which is what the core's simulator does on every run (its storage keeps
//! a queue of unsynced batches). The actor's thread never waits for a disk.
//!
//! Invariants: the messages of a `Ready` that must wait for its writes
//! (`after_write`, and messages to itself) are released only after those
//! writes, and every batch before them, are durable; storage makes batches
//! durable in the order they were handed to it, and the driver releases
//! held messages in that order too; responses and effects go at once,
//! because they follow from entries already chosen, which a quorum holds
//! durably whatever this replica's disk does; a storage error stops the
//! driver (fail-stop) and nothing held is released.

use dike_core::codec::CodecError;
use dike_core::replica::{ConfigChange, ReconfigError};
use dike_core::server::StateMachine;
use dike_core::{
    Applied, Command, Config, Envelope, MemberId, RecoverError, Replica, ReplicaOptions, Response,
    Storage, StorageError, StoredReply, Write,
};
use std::collections::{BTreeMap, VecDeque};

/// How many batches of writes may be in flight at once; past that the
/// driver takes no further `Ready` until the oldest is durable.
pub const MAX_WRITES_IN_FLIGHT: usize = 8;

/// A boxed state machine, so one replica type serves every server kind.
pub struct DynMachine(pub Box<dyn StateMachine>);

impl StateMachine for DynMachine {
    fn apply(&mut self, command: &[u8]) -> Applied {
        self.0.apply(command)
    }
    fn query(&self, request: &[u8]) -> Option<StoredReply> {
        self.0.query(request)
    }
    fn export(&self) -> Result<Vec<u8>, CodecError> {
        self.0.export()
    }
    fn import(&mut self, state: &[u8]) -> Result<(), CodecError> {
        self.0.import(state)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
}

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Its storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// What storage kept could not be loaded.
    #[error(transparent)]
    Recover(#[from] RecoverError),
}

/// What one [`GroupDriver::drive`] released.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to other members, batched per member, in order.
    pub to_peers: BTreeMap<MemberId, Vec<Envelope>>,
    /// Answers to local clients.
    pub responses: Vec<Response>,
}

/// What [`ReplicaStorage::persist`] did with a batch of writes.
#[derive(Debug)]
pub enum Persist {
    /// Done already: durable (or failed); the completion is not called.
    Done(Result<(), StorageError>),
    /// Queued: the completion is called, from another thread, once the
    /// writes are durable or have failed.
    Pending,
}

/// Called once a pending batch of writes is durable (or failed).
pub type Completion = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// The storage of one hosted replica, as the driver uses it.
pub trait ReplicaStorage: Send + 'static {
    /// Everything durably written so far.
    fn load(&self) -> Result<dike_core::Recovered, StorageError>;
    /// Persists `writes` in order after every earlier batch; see
    /// [`Persist`].
    fn persist(&mut self, writes: Vec<Write>, done: Completion) -> Persist;
}

/// A blocking [`Storage`] as a [`ReplicaStorage`] that is always done at
/// once (memory storage, tests).
pub struct Blocking(pub Box<dyn Storage>);

impl ReplicaStorage for Blocking {
    fn load(&self) -> Result<dike_core::Recovered, StorageError> {
        self.0.load()
    }
    fn persist(&mut self, writes: Vec<Write>, _done: Completion) -> Persist {
        Persist::Done(self.0.write(&writes))
    }
}

impl ReplicaStorage for crate::storage::GroupStorage {
    fn load(&self) -> Result<dike_core::Recovered, StorageError> {
        Storage::load(self)
    }
    fn persist(&mut self, writes: Vec<Write>, done: Completion) -> Persist {
        self.submit(writes, done);
        Persist::Pending
    }
}

/// What a `Ready` releases once its writes are durable.
#[derive(Default)]
struct Held {
    to_peers: Vec<Envelope>,
    to_self: Vec<Envelope>,
    /// Its writes are durable already (a storage that finished at once
    /// while earlier batches were still pending).
    durable: bool,
}

/// A replica and its storage. See the module documentation.
pub struct GroupDriver {
    replica: Replica<DynMachine>,
    storage: Box<dyn ReplicaStorage>,
    /// One entry per batch handed to storage and not yet released, oldest
    /// first.
    held: VecDeque<Held>,
    next_query: u64,
    next_change: u64,
}

impl GroupDriver {
    /// Starts `member` from whatever `storage` holds (nothing for a new
    /// replica). `boot` must differ on every start of the member.
    pub fn start(
        member: MemberId,
        config: Config,
        machine: DynMachine,
        opts: ReplicaOptions,
        storage: Box<dyn ReplicaStorage>,
        boot: u64,
    ) -> Result<Self, DriverError> {
        let recovered = storage.load()?;
        let seed = boot.rotate_left(7) ^ member.node.0;
        let mut replica = Replica::recover(member, config, machine, opts, seed, boot, recovered)?;
        if replica.config().voters == [member] {
            // Alone in its group: nobody to wait for.
            replica.campaign();
        }
        Ok(GroupDriver {
            replica,
            storage,
            held: VecDeque::new(),
            next_query: 0,
            next_change: 0,
        })
    }

    /// The replica (read-only).
    pub fn replica(&self) -> &Replica<DynMachine> {
        &self.replica
    }

    /// Handles protocol messages addressed to this member; others are
    /// dropped with a warning.
    pub fn step(&mut self, envelopes: Vec<Envelope>) {
        let me = self.replica.id();
        for env in envelopes {
            if env.to == me {
                self.replica.step(env.from, env.msg);
            } else {
                tracing::warn!(to = %env.to, %me, "dropping a message for another member");
            }
        }
    }

    /// One logical tick.
    pub fn tick(&mut self) {
        self.replica.tick();
    }

    /// Starts an election now.
    pub fn campaign(&mut self) {
        self.replica.campaign();
    }

    /// The node-level failure detector saw `node` go down. The replica is
    /// told (`Replica::node_down`: if its leader was there it wakes from
    /// hibernation and elects after a short random delay); and if this
    /// replica is the first voter not on that node (a deterministic
    /// tie-break, so survivors do not duel) it campaigns now. Returns
    /// whether it campaigned.
    pub fn on_node_down(&mut self, node: dike_core::NodeId) -> bool {
        let r = &self.replica;
        let me = r.id();
        let leader_gone = r.leader().is_some_and(|l| l.node == node && l != me);
        let successor = r.config().voters.iter().find(|v| v.node != node).copied();
        self.replica.node_down(node);
        if leader_gone && successor == Some(me) {
            self.replica.campaign();
            true
        } else {
            false
        }
    }

    /// Whether the replica needs ticks (not while its group hibernates).
    pub fn wants_ticks(&self) -> bool {
        self.replica.wants_ticks()
    }

    /// Submits a command; its answer comes as a `Response` for
    /// `RequestId::Command(cmd.client, cmd.seq)`.
    pub fn propose(&mut self, cmd: Command) {
        self.replica.propose(cmd);
    }

    /// Submits a read-index query; returns the id of its future `Response`.
    pub fn query(&mut self, payload: Vec<u8>) -> u64 {
        self.next_query += 1;
        self.replica.query(self.next_query, payload);
        self.next_query
    }

    /// Proposes a membership change (leader only); its answer comes as a
    /// `Response` for `RequestId::Reconfig(id)` with the returned id.
    pub fn propose_change(&mut self, change: ConfigChange) -> Result<u64, ReconfigError> {
        self.next_change += 1;
        self.replica.propose_change(self.next_change, change)?;
        Ok(self.next_change)
    }

    /// Whether a batch of writes is in flight.
    pub fn is_persisting(&self) -> bool {
        !self.held.is_empty()
    }

    /// How many batches of writes are in flight.
    pub fn writes_in_flight(&self) -> usize {
        self.held.iter().filter(|h| !h.durable).count()
    }

    /// Runs the replica until it has nothing more to do or has
    /// [`MAX_WRITES_IN_FLIGHT`] writes in flight: take what is ready,
    /// persist it, release what waited for it, run the effects.
    /// `completion` makes the callback a pending write calls; the caller
    /// then feeds the results, in the order the writes were handed over, to
    /// [`GroupDriver::persisted`]. Messages to itself (its own `Promise`
    /// and `Accepted`, released after their write) are fed back here.
    pub fn drive(
        &mut self,
        completion: &mut dyn FnMut() -> Completion,
    ) -> Result<Output, StorageError> {
        let me = self.replica.id();
        let mut out = Output::default();
        while self.held.len() < MAX_WRITES_IN_FLIGHT && self.replica.has_ready() {
            let ready = self.replica.take_ready();
            if ready.is_empty() {
                // `has_ready` also counts commands queued at a leader whose
                // window is full: they wait for `Accepted` messages, which
                // only come if we return to the mailbox.
                break;
            }
            // Answers and effects of chosen entries need not wait.
            out.responses.extend(ready.responses);
            for effect in ready.effects {
                effect.run();
            }
            let mut held = Held::default();
            // Messages that need not wait for the write go now.
            for env in ready.messages {
                if env.to == me {
                    held.to_self.push(env);
                } else {
                    out.to_peers.entry(env.to).or_default().push(env);
                }
            }
            for env in ready.after_write {
                if env.to == me {
                    held.to_self.push(env);
                } else {
                    held.to_peers.push(env);
                }
            }
            if !ready.writes.is_empty() {
                match self.storage.persist(ready.writes, completion()) {
                    Persist::Done(r) => {
                        r?;
                        held.durable = true;
                    }
                    Persist::Pending => {}
                }
            } else {
                held.durable = true;
            }
            // Nothing overtakes a batch still in flight.
            self.held.push_back(held);
            self.release_durable(&mut out);
        }
        Ok(out)
    }

    /// The oldest write in flight finished with `result`: on success,
    /// releases what waited for it and drives on; on failure the driver
    /// stops.
    pub fn persisted(
        &mut self,
        result: Result<(), StorageError>,
        completion: &mut dyn FnMut() -> Completion,
    ) -> Result<Output, StorageError> {
        result?;
        let mut out = Output::default();
        if let Some(oldest) = self.held.iter_mut().find(|h| !h.durable) {
            oldest.durable = true;
        }
        self.release_durable(&mut out);
        let more = self.drive(completion)?;
        for (to, envs) in more.to_peers {
            out.to_peers.entry(to).or_default().extend(envs);
        }
        out.responses.extend(more.responses);
        Ok(out)
    }

    /// Releases, oldest first, every batch whose writes (and all earlier
    /// ones) are durable.
    fn release_durable(&mut self, out: &mut Output) {
        while self.held.front().is_some_and(|h| h.durable) {
            if let Some(held) = self.held.pop_front() {
                self.release(held, out);
            }
        }
    }

    fn release(&mut self, held: Held, out: &mut Output) {
        for env in held.to_peers {
            out.to_peers.entry(env.to).or_default().push(env);
        }
        for env in held.to_self {
            self.replica.step(env.from, env.msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::{Counter, CounterRequest};
    use dike_core::{codec, ClientId, GroupContext, MemoryStorage, RequestId, ServerMachine};

    fn machine(member: MemberId) -> DynMachine {
        DynMachine(Box::new(ServerMachine::<Counter>::new(GroupContext {
            group: "g".into(),
            kind: "counter".into(),
            member,
        })))
    }

    /// For storages that are always done at once.
    fn no_completion() -> Completion {
        Box::new(|_| panic!("a blocking storage never completes later"))
    }

    fn group(n: u64) -> Vec<GroupDriver> {
        let members: Vec<MemberId> = (1..=n).map(|i| MemberId::new(i, 1)).collect();
        let config = Config::initial(members.clone());
        members
            .iter()
            .map(|&m| {
                let storage = Box::new(Blocking(Box::new(MemoryStorage::new())));
                GroupDriver::start(
                    m,
                    config.clone(),
                    machine(m),
                    Default::default(),
                    storage,
                    1,
                )
                .expect("fresh start")
            })
            .collect()
    }

    /// Drives every driver and delivers messages until nothing moves.
    fn settle(ds: &mut [GroupDriver]) -> Vec<Response> {
        let mut responses = Vec::new();
        loop {
            let mut moved = false;
            for i in 0..ds.len() {
                let out = ds[i].drive(&mut no_completion).expect("memory storage");
                responses.extend(out.responses);
                for (to, envs) in out.to_peers {
                    moved = true;
                    let j = (to.node.0 - 1) as usize;
                    ds[j].step(envs);
                }
            }
            if !moved {
                return responses;
            }
        }
    }

    fn add(n: i64, seq: u64) -> Command {
        Command {
            client: ClientId(9),
            seq,
            ack_floor: seq,
            payload: codec::encode("req", &CounterRequest::Add(n)).expect("encodes"),
        }
    }

    #[test]
    fn a_command_proposed_at_the_leader_is_answered_once_chosen() {
        let mut ds = group(3);
        ds[0].campaign();
        settle(&mut ds);
        assert!(ds[0].replica().is_leader());
        ds[0].propose(add(5, 1));
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
        ds[0].propose(add(2, 1));
        settle(&mut ds);
        let payload = codec::encode("req", &CounterRequest::Get).expect("encodes");
        let id = ds[0].query(payload);
        let responses = settle(&mut ds);
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].to, RequestId::Query(id));
    }

    #[test]
    fn when_the_leaders_node_goes_down_exactly_the_first_survivor_campaigns() {
        let mut ds = group(3);
        ds[0].campaign();
        settle(&mut ds);
        let dead = ds[0].replica().id().node;
        let mut survivors = ds.split_off(1);
        assert!(!survivors[1].on_node_down(dead), "not the first survivor");
        assert!(
            !survivors[0].on_node_down(dike_core::NodeId(99)),
            "leader alive"
        );
        assert!(survivors[0].on_node_down(dead));
        // Deliver among the survivors only (indices shifted by one).
        for _ in 0..10 {
            for i in 0..2 {
                let out = survivors[i]
                    .drive(&mut no_completion)
                    .expect("memory storage");
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
        let members: Vec<MemberId> = (1..=3).map(|i| MemberId::new(i, 1)).collect();
        let config = Config::initial(members.clone());
        let opts = ReplicaOptions {
            window: 2,
            max_batch: 1,
            ..Default::default()
        };
        let mut ds: Vec<GroupDriver> = members
            .iter()
            .map(|&m| {
                let storage = Box::new(Blocking(Box::new(MemoryStorage::new())));
                GroupDriver::start(m, config.clone(), machine(m), opts.clone(), storage, 1)
                    .expect("fresh start")
            })
            .collect();
        ds[0].campaign();
        settle(&mut ds);
        assert!(ds[0].replica().is_leader());
        for seq in 1..=5 {
            ds[0].propose(add(1, seq));
        }
        let mut leader = ds.remove(0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let out = leader.drive(&mut no_completion).map(|o| o.to_peers.len());
            let _ = tx.send(out);
        });
        let out = rx.recv_timeout(std::time::Duration::from_secs(5));
        assert!(
            matches!(out, Ok(Ok(2))),
            "drive returns with accepts for both peers: {out:?}"
        );
    }

    #[test]
    fn a_failed_write_releases_nothing() {
        struct Broken;
        impl Storage for Broken {
            fn write(&mut self, _: &[dike_core::Write]) -> Result<(), StorageError> {
                Err(StorageError::Failed("disk gone".into()))
            }
            fn load(&self) -> Result<dike_core::Recovered, StorageError> {
                Ok(Default::default())
            }
        }
        let m = MemberId::new(1, 1);
        let config = Config::initial(vec![m, MemberId::new(2, 1), MemberId::new(3, 1)]);
        let mut d = GroupDriver::start(
            m,
            config,
            machine(m),
            Default::default(),
            Box::new(Blocking(Box::new(Broken))),
            1,
        )
        .expect("loads nothing");
        d.campaign();
        assert!(
            d.drive(&mut no_completion).is_err(),
            "the promise write fails"
        );
    }

    /// A storage whose writes complete when the test says so.
    struct Deferred {
        inner: MemoryStorage,
        pending: std::sync::Arc<std::sync::Mutex<Vec<Completion>>>,
    }

    impl ReplicaStorage for Deferred {
        fn load(&self) -> Result<dike_core::Recovered, StorageError> {
            self.inner.load()
        }
        fn persist(&mut self, writes: Vec<Write>, done: Completion) -> Persist {
            if let Err(e) = self.inner.write(&writes) {
                return Persist::Done(Err(e));
            }
            self.pending.lock().expect("not poisoned").push(done);
            Persist::Pending
        }
    }

    type Pending = std::sync::Arc<std::sync::Mutex<Vec<Completion>>>;

    /// Member 2 of a fresh group of 3, on a [`Deferred`] storage.
    fn deferred_follower() -> (GroupDriver, Vec<MemberId>, Pending) {
        let members: Vec<MemberId> = (1..=3).map(|i| MemberId::new(i, 1)).collect();
        let config = Config::initial(members.clone());
        let pending = Pending::default();
        let storage = Box::new(Deferred {
            inner: MemoryStorage::new(),
            pending: pending.clone(),
        });
        let me = members[1];
        let d = GroupDriver::start(me, config, machine(me), Default::default(), storage, 1)
            .expect("fresh start");
        (d, members, pending)
    }

    /// A `Prepare` in round `round` of `members[0]` for `members[1]`.
    fn prepare(members: &[MemberId], round: u64) -> Envelope {
        let ballot = dike_core::Ballot {
            round,
            leader: members[0],
            ..dike_core::Ballot::ZERO
        };
        Envelope {
            from: members[0],
            to: members[1],
            msg: dike_core::Message::Prepare { ballot, from: 1 },
        }
    }

    #[test]
    fn nothing_that_waits_for_a_pending_write_leaves_before_it_is_durable() {
        let (mut d, members, pending) = deferred_follower();
        // A Prepare from member 1: the answer (a Promise) waits for the
        // promise's write.
        d.step(vec![prepare(&members, 1)]);
        let mut calls = 0;
        let mut completion = || -> Completion {
            calls += 1;
            Box::new(|_| {})
        };
        let out = d.drive(&mut completion).expect("queued");
        assert!(
            out.to_peers.is_empty(),
            "the promise waits: {:?}",
            out.to_peers
        );
        assert!(d.is_persisting());
        assert_eq!(pending.lock().expect("not poisoned").len(), 1);
        let out = d.persisted(Ok(()), &mut completion).expect("durable");
        assert!(!d.is_persisting());
        let promised = out.to_peers.get(&members[0]).expect("the promise goes out");
        assert!(matches!(
            promised[0].msg,
            dike_core::Message::Promise { .. }
        ));
        assert!(d
            .persisted(Err(StorageError::Failed("disk".into())), &mut completion)
            .is_err());
    }

    #[test]
    fn writes_pipeline_and_their_answers_leave_in_order_once_durable() {
        let (mut d, members, pending) = deferred_follower();
        let me = members[1];
        let ballot = dike_core::Ballot {
            round: 1,
            leader: members[0],
            ..dike_core::Ballot::ZERO
        };
        let accept = |slot| Envelope {
            from: members[0],
            to: me,
            msg: dike_core::Message::Accept {
                ballot,
                slot,
                entry: dike_core::Entry::Noop,
                commit: 0,
            },
        };
        let mut completion = || -> Completion { Box::new(|_| {}) };
        d.step(vec![accept(1)]);
        assert!(d
            .drive(&mut completion)
            .expect("queued")
            .to_peers
            .is_empty());
        // The second accept is written while the first write is in flight.
        d.step(vec![accept(2)]);
        assert!(d
            .drive(&mut completion)
            .expect("queued")
            .to_peers
            .is_empty());
        assert_eq!(d.writes_in_flight(), 2);
        assert_eq!(pending.lock().expect("not poisoned").len(), 2);
        let accepted = |out: &Output| -> Vec<u64> {
            out.to_peers
                .values()
                .flatten()
                .filter_map(|e| match e.msg {
                    dike_core::Message::Accepted { slot, .. } => Some(slot),
                    _ => None,
                })
                .collect()
        };
        let out = d.persisted(Ok(()), &mut completion).expect("durable");
        assert_eq!(accepted(&out), vec![1], "only the first write is durable");
        let out = d.persisted(Ok(()), &mut completion).expect("durable");
        assert_eq!(accepted(&out), vec![2]);
        assert!(!d.is_persisting());
    }

    #[test]
    fn a_full_pipeline_takes_no_further_ready() {
        let (mut d, members, pending) = deferred_follower();
        let mut completion = || -> Completion { Box::new(|_| {}) };
        for round in 1..=MAX_WRITES_IN_FLIGHT as u64 + 3 {
            d.step(vec![prepare(&members, round)]);
            d.drive(&mut completion).expect("queued");
        }
        assert_eq!(d.writes_in_flight(), MAX_WRITES_IN_FLIGHT);
        assert_eq!(
            pending.lock().expect("not poisoned").len(),
            MAX_WRITES_IN_FLIGHT,
            "storage holds no more than the bound"
        );
        assert!(d.replica().has_ready(), "the rest waits in the replica");
        let out = d.persisted(Ok(()), &mut completion).expect("durable");
        assert_eq!(out.to_peers.values().flatten().count(), 1, "one promise");
        assert_eq!(d.writes_in_flight(), MAX_WRITES_IN_FLIGHT, "refilled");
    }
}
