//! One replica with its storage, driven the way every runtime drives a
//! [`Replica`]: take what is ready, persist the writes, then release the
//! messages (those that wait for the write only once it is durable), answer
//! the clients and hand over the effects. The actor runtime and the
//! simulator both drive replicas through this code, so every simulated seed
//! runs the ordering rules production relies on.
//!
//! Writes may complete later ([`Persist::Pending`], the durable node log's
//! group commit): the driver then holds what waits for them until
//! [`GroupDriver::persisted`] says they are durable, and meanwhile goes on
//! taking `Ready`s, up to [`MAX_WRITES_IN_FLIGHT`] batches: a leader sends
//! the next batch's `Accept`s while its own disk still writes the last one.
//! No IO and no thread here: a storage completion is an input, carrying the
//! [`WriteToken`] its batch was handed over with.
//!
//! Invariants:
//! - the messages of a `Ready` that must wait for its writes (`after_write`,
//!   and messages to itself) are released only after those writes, and every
//!   batch before them, are durable;
//! - storage makes batches durable in the order they were handed over, and
//!   completions are taken strictly in that order: a completion for any
//!   token but the oldest one in flight is refused
//!   ([`DriverError::UnexpectedCompletion`]) and releases nothing;
//! - responses and effects go at once, because they follow from entries
//!   already chosen, which a quorum holds durably whatever this replica's
//!   disk does;
//! - a storage error stops the driver (fail-stop): nothing held is released
//!   and every later input is refused.

use crate::entry::Command;
use crate::ids::{MemberId, NodeId};
use crate::message::Envelope;
use crate::ready::{AppliedSlot, Response};
pub use crate::replica::Start;
use crate::replica::{
    Bugs, ConfigChange, DownReport, ReconfigError, RecoverError, Replica, TransferError,
};
use crate::server::{Effect, StateMachine};
use crate::storage::{Recovered, Storage, StorageError, Write};
use std::collections::{BTreeMap, VecDeque};

/// How many batches of writes may be in flight at once; past that the
/// driver takes no further `Ready` until the oldest is durable.
pub const MAX_WRITES_IN_FLIGHT: usize = 8;

/// Names one batch of writes handed to a [`ReplicaStorage`]; its completion
/// comes back to [`GroupDriver::persisted`] with the same token. Tokens
/// count up from 1 over the driver's life.
pub type WriteToken = u64;

/// Why a driver could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Its storage failed (the driver has stopped).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// What storage kept could not be loaded.
    #[error(transparent)]
    Recover(#[from] RecoverError),
    /// A completion arrived for a batch that is not the oldest in flight;
    /// it was ignored.
    #[error("write completion {got} out of order (expected {expected:?})")]
    UnexpectedCompletion {
        /// The token that came.
        got: WriteToken,
        /// The oldest token in flight, if any.
        expected: Option<WriteToken>,
    },
}

/// What one call of the driver released.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to other members, batched per member, in order.
    pub to_peers: BTreeMap<MemberId, Vec<Envelope>>,
    /// Answers to local clients.
    pub responses: Vec<Response>,
    /// Side effects of commands this replica proposed, in apply order; the
    /// runtime runs each once.
    pub effects: Vec<Effect>,
    /// Applied slots (only when the replica traces, for checkers).
    pub applied: Vec<AppliedSlot>,
}

impl Output {
    fn append(&mut self, more: Output) {
        for (to, envs) in more.to_peers {
            self.to_peers.entry(to).or_default().extend(envs);
        }
        self.responses.extend(more.responses);
        self.effects.extend(more.effects);
        self.applied.extend(more.applied);
    }
}

/// What [`ReplicaStorage::persist`] did with a batch of writes.
#[derive(Debug)]
pub enum Persist {
    /// Done already: durable (or failed); no completion will come.
    Done(Result<(), StorageError>),
    /// Queued: a completion with the batch's token will come, once the
    /// writes are durable or have failed, in the order batches were handed
    /// over.
    Pending,
}

/// The storage of one replica, as the driver uses it.
pub trait ReplicaStorage: Send + 'static {
    /// Everything durably written so far.
    fn load(&self) -> Result<Recovered, StorageError>;
    /// Persists `writes` in order after every earlier batch; see
    /// [`Persist`].
    fn persist(&mut self, token: WriteToken, writes: Vec<Write>) -> Persist;
}

impl<T: ReplicaStorage + ?Sized> ReplicaStorage for Box<T> {
    fn load(&self) -> Result<Recovered, StorageError> {
        (**self).load()
    }
    fn persist(&mut self, token: WriteToken, writes: Vec<Write>) -> Persist {
        (**self).persist(token, writes)
    }
}

/// A blocking [`Storage`] as a [`ReplicaStorage`] that is always done at
/// once (memory storage, tests).
pub struct Blocking<S: Storage>(pub S);

impl<S: Storage + Send + 'static> ReplicaStorage for Blocking<S> {
    fn load(&self) -> Result<Recovered, StorageError> {
        self.0.load()
    }
    fn persist(&mut self, _token: WriteToken, writes: Vec<Write>) -> Persist {
        Persist::Done(self.0.write(&writes))
    }
}

/// What a `Ready` releases once its writes are durable.
#[derive(Default)]
struct Held {
    /// The token of its writes (none if it had no writes or they were done
    /// at once).
    token: Option<WriteToken>,
    to_peers: Vec<Envelope>,
    to_self: Vec<Envelope>,
    /// Its writes are durable already.
    durable: bool,
}

/// A replica and its storage. See the module documentation.
pub struct GroupDriver<M: StateMachine, S: ReplicaStorage> {
    replica: Replica<M>,
    storage: S,
    /// One entry per batch taken and not yet released, oldest first.
    held: VecDeque<Held>,
    /// The last token handed to storage.
    last_token: WriteToken,
    /// A storage error stopped the driver.
    stopped: bool,
}

impl<M: StateMachine, S: ReplicaStorage> GroupDriver<M, S> {
    /// Starts from whatever `storage` holds (nothing for a new replica). A
    /// replica alone in its group campaigns at once.
    pub fn start(start: Start<M>, storage: S) -> Result<Self, DriverError> {
        let recovered = storage.load()?;
        let member = start.member;
        let mut replica = Replica::recover(start, recovered)?;
        if replica.config().voters == [member] {
            replica.campaign();
        }
        Ok(GroupDriver {
            replica,
            storage,
            held: VecDeque::new(),
            last_token: 0,
            stopped: false,
        })
    }

    /// The replica (read-only).
    pub fn replica(&self) -> &Replica<M> {
        &self.replica
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The replica, mutably, for the in-crate harnesses that drive it by
    /// hand (`LocalCluster`); whatever it makes ready goes out through
    /// [`GroupDriver::drive`] as usual.
    #[cfg(feature = "sim")]
    pub(crate) fn replica_mut(&mut self) -> &mut Replica<M> {
        &mut self.replica
    }

    /// Stops the driver and gives its storage back (a crash: what was
    /// durable stays, nothing held is released).
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The storage, mutably (the simulator completes its syncs).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Enables deliberate protocol bugs and tracing of applied slots (only
    /// for tests of the checkers).
    pub fn set_test_flags(&mut self, bugs: Bugs, trace: bool) {
        self.replica.set_bugs(bugs);
        self.replica.set_trace(trace);
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

    /// Whether this replica takes over when `node` goes down: its leader is
    /// there (and is not itself), and it is the first voter not on that
    /// node (a deterministic tie-break, so survivors do not duel).
    pub fn succeeds_leader_on(&self, node: NodeId) -> bool {
        let r = &self.replica;
        let me = r.id();
        let leader_gone = r.leader().is_some_and(|l| l.node == node && l != me);
        let successor = r.config().voters.iter().find(|v| v.node != node).copied();
        leader_gone && successor == Some(me)
    }

    /// The node-level failure detector saw `node` go down (`report`: how).
    /// The replica is told (`Replica::node_down`: if its leader was there
    /// it wakes from hibernation and elects after a short random delay,
    /// unless the report is a suspicion and it heard the leader within an
    /// election timeout); and if it acted on the report, [succeeds the
    /// leader there](Self::succeeds_leader_on) and its own elections have
    /// settled, it campaigns now. Returns whether it campaigned.
    pub fn on_node_down(&mut self, node: NodeId, report: DownReport) -> bool {
        let succeeds = self.succeeds_leader_on(node);
        let acted = self.replica.node_down(node, report);
        if acted && succeeds && self.replica.elections_settled() {
            self.replica.campaign();
            true
        } else {
            false
        }
    }

    /// Frees the spare space of the driver's buffers (the group went to
    /// sleep: the replica shed its own, see
    /// `ReplicaOptions::hibernate_snapshot_slots`).
    pub fn shrink_to_fit(&mut self) {
        self.held.shrink_to_fit();
    }

    /// Whether the replica needs ticks (not while its group hibernates).
    pub fn wants_ticks(&self) -> bool {
        self.replica.wants_ticks()
    }

    /// See [`Replica::ticks_until_due`].
    pub fn ticks_until_due(&self) -> u64 {
        self.replica.ticks_until_due()
    }

    /// Submits a command; its answer comes as a `Response` for
    /// `RequestId::Command(cmd.client, cmd.seq)`.
    pub fn propose(&mut self, cmd: Command) {
        self.replica.propose(cmd);
    }

    /// Submits a read-index query; its answer comes as a `Response` for
    /// `RequestId::Query(id)`. The caller keeps ids unique.
    pub fn query(&mut self, id: u64, payload: Vec<u8>) {
        self.replica.query(id, payload);
    }

    /// Proposes a membership change (leader only); its answer comes as a
    /// `Response` for `RequestId::Reconfig(id)`.
    pub fn propose_change(&mut self, id: u64, change: ConfigChange) -> Result<(), ReconfigError> {
        self.replica.propose_change(id, change)
    }

    /// Someone needs the group's leader and this replica knows none (see
    /// `Replica::leader_wanted`).
    pub fn leader_wanted(&mut self) {
        self.replica.leader_wanted();
    }

    /// Hands leadership to voter `to` (leader only; see
    /// `Replica::transfer_leadership`).
    pub fn transfer_leadership(&mut self, to: MemberId) -> Result<(), TransferError> {
        self.replica.transfer_leadership(to)
    }

    /// Marks the replica as about to stop: it takes no leadership handed
    /// over (`Replica::set_leaving`).
    pub fn set_leaving(&mut self, leaving: bool) {
        self.replica.set_leaving(leaving);
    }

    /// The nodes the routing table marks draining
    /// (`Replica::set_draining_nodes`).
    pub fn set_draining_nodes(&mut self, nodes: impl IntoIterator<Item = crate::ids::NodeId>) {
        self.replica.set_draining_nodes(nodes);
    }

    /// How many batches of writes are in flight.
    pub fn writes_in_flight(&self) -> usize {
        self.held.iter().filter(|h| !h.durable).count()
    }

    /// Runs the replica until it has nothing more to do or has
    /// [`MAX_WRITES_IN_FLIGHT`] writes in flight: take what is ready,
    /// persist it, release what may go. Messages to itself (its own
    /// `Promise` and `Accepted`, released after their write) are fed back
    /// here.
    pub fn drive(&mut self) -> Result<Output, DriverError> {
        if self.stopped {
            return Err(StorageError::Failed("an earlier write failed".into()).into());
        }
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
            out.responses.extend(ready.responses);
            out.effects.extend(ready.effects);
            out.applied.extend(ready.applied);
            let mut held = Held::default();
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
            if ready.writes.is_empty() {
                held.durable = true;
            } else {
                self.last_token += 1;
                match self.storage.persist(self.last_token, ready.writes) {
                    Persist::Done(Ok(())) => held.durable = true,
                    Persist::Done(Err(e)) => return Err(self.stop(e)),
                    Persist::Pending => held.token = Some(self.last_token),
                }
            }
            // Nothing overtakes a batch still in flight.
            self.held.push_back(held);
            self.release_durable(&mut out);
        }
        Ok(out)
    }

    /// The batch handed over with `token` finished with `result`. It must
    /// be the oldest batch in flight (anything else is refused and changes
    /// nothing). On success, releases what waited for it and drives on; on
    /// failure the driver stops.
    pub fn persisted(
        &mut self,
        token: WriteToken,
        result: Result<(), StorageError>,
    ) -> Result<Output, DriverError> {
        let expected = self.held.iter().find(|h| !h.durable).and_then(|h| h.token);
        if expected != Some(token) {
            return Err(DriverError::UnexpectedCompletion {
                got: token,
                expected,
            });
        }
        if let Err(e) = result {
            return Err(self.stop(e));
        }
        if let Some(oldest) = self.held.iter_mut().find(|h| !h.durable) {
            oldest.durable = true;
        }
        let mut out = Output::default();
        self.release_durable(&mut out);
        let more = self.drive()?;
        out.append(more);
        Ok(out)
    }

    fn stop(&mut self, e: StorageError) -> DriverError {
        self.stopped = true;
        self.held.clear();
        DriverError::Storage(e)
    }

    /// Releases, oldest first, every batch whose writes (and all earlier
    /// ones) are durable.
    fn release_durable(&mut self, out: &mut Output) {
        while self.held.front().is_some_and(|h| h.durable) {
            if let Some(held) = self.held.pop_front() {
                for env in held.to_peers {
                    out.to_peers.entry(env.to).or_default().push(env);
                }
                for env in held.to_self {
                    self.replica.step(env.from, env.msg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
