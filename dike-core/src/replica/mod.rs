//! One replica of one group: proposer, acceptor and learner of Multi-Paxos,
//! as a plain struct with no IO, no clock and no async.
//!
//! Inputs: [`Replica::step`] (a message), [`Replica::tick`] (logical time),
//! [`Replica::propose`] and [`Replica::query`] (local clients). Output:
//! [`Replica::take_ready`], which says what to persist, what to send at once
//! and what to send only after the persist, which clients to answer and which
//! side effects to run.
//!
//! Invariants (checked by the simulator on every run):
//! - a slot is never chosen with two different values;
//! - entries are applied strictly in slot order, so every replica's applied
//!   sequence is a prefix of every other's;
//! - `Promise` and `Accepted` leave only after the writes backing them are
//!   durable (they are always in `Ready::after_write`).
//!
//! The code is split by role: `acceptor` (phase 1b/2b), `proposer`
//! (candidate and leader: phase 1a/2a, batching, pipelining), `learner`
//! (commit, apply, catch-up, snapshots), `read` (read-index queries),
//! `reconfig` (membership changes), `transfer` (leadership transfer and
//! the hand-back to the preferred leader) and `drain` (leadership moving
//! off draining nodes). State that a rule set of its own keeps lives in
//! parts with private fields: `votes` (the acceptor's promise and log),
//! `cursor` (how far the log is known chosen, written down and applied,
//! and the latest snapshot), `clock` (logical time and the election
//! timer), and the candidate's and leader's: `promises` (phase 1's tally
//! and the values a new leader re-proposes), `tally` (proposals in flight
//! and who accepted each), `progress` (each member's progress as the
//! leader saw it), `read_index` (the read-index rounds) and `hand_back`
//! (when leadership goes back to the preferred leader, and the backoff of
//! the transfers a leader starts by itself). The candidate's and leader's
//! own fields (`CandidateState`, `LeaderState`) are private to `proposer`;
//! the other role files use their methods.

mod acceptor;
mod clock;
mod cursor;
mod drain;
mod hand_back;
mod learner;
mod progress;
mod promises;
mod proposer;
mod read;
mod read_index;
mod reconfig;
mod tally;
mod transfer;
mod votes;

use crate::config::{Config, ReplicaOptions};
use crate::entry::{Command, Entry};
use crate::ids::{Ballot, MemberId, NodeId, Slot};
use crate::message::{Envelope, Message};
use crate::ready::{Ready, RequestError, RequestId, Response};
use crate::rng::Rng;
use crate::server::StateMachine;
use crate::session::SessionTable;
use crate::storage::{Recovered, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use clock::ElectionClock;
pub use clock::MAX_ELECTION_BACKOFF;
use cursor::Cursor;
use proposer::{CandidateState, LeaderState};
pub use reconfig::{ConfigChange, ReconfigError};
pub use transfer::TransferError;
use votes::Votes;

/// The replica's current role.
#[derive(Debug)]
enum Role {
    Follower,
    Candidate(CandidateState),
    Leader(Box<LeaderState>),
}

/// Deliberate protocol bugs, for proving that the simulator's checks bite.
/// Never enable outside such tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// Send `Accepted`/`Promise` before the write backing them is durable.
    pub reply_before_persist: bool,
    /// Accept proposals from ballots lower than the promised one.
    pub accept_lower_ballot: bool,
    /// A new leader ignores the values acceptors report in phase 1.
    pub ignore_promised_values: bool,
    /// A leader accepts a second membership change while one is in flight.
    pub concurrent_changes: bool,
    /// Promises and acceptances from non-voters count toward quorums.
    pub count_non_voters: bool,
    /// A candidate sends its `Prepare`s before its own promise of the
    /// ballot is durable, so a crash can make the next life reuse it.
    pub prepare_before_promise_durable: bool,
    /// A follower acknowledges the read round of a leader whose ballot it
    /// has already promised to outbid (no fence on read rounds).
    pub ack_stale_read_rounds: bool,
    /// A new leader keeps every stop-sign it learns in phase 1, even one
    /// that a later slot of a higher ballot shows was never chosen.
    pub stop_sign_never_overtaken: bool,
    /// The target of a leadership transfer campaigns in the old leader's
    /// ballot instead of a fresh, higher one of its own.
    pub transfer_reuses_ballot: bool,
    /// Callers of the group (the simulator's clients and rebalancer)
    /// follow a leader hint only to a member the routing table lists, so a
    /// leader the table has not recorded yet is never reached (the
    /// runtime's router did this once).
    pub hints_only_to_listed: bool,
    /// A leader takes a learner it never heard from as being at slot 0, so
    /// in a log younger than `max_learner_lag` it promotes a learner whose
    /// replica never ran (`propose_change` did this once).
    pub promote_unheard_learners: bool,
    /// A follower of a sleeping group that knows its leader stays asleep
    /// when a request reaches it, so a leader that hung while its group
    /// slept is replaced only once the failure detector reports its node
    /// (`leader_wanted` did this once).
    pub sleeping_follower_stays_asleep: bool,
}

/// How the runtime's failure detector knows a node is down
/// ([`Replica::node_down`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReport {
    /// Its cluster session closed and none is left: its process exited
    /// (or its host is gone).
    SessionClosed,
    /// It stopped answering pings while its session stays open: hung, cut
    /// off, or only slow on a congested cluster.
    Unresponsive,
}

/// Why a replica could not be recovered from storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    /// The stored snapshot could not be loaded into the state machine.
    #[error("cannot restore the snapshot at slot {slot}: {reason}")]
    Snapshot {
        /// The snapshot's slot.
        slot: Slot,
        /// Why.
        reason: String,
    },
}

/// One replica of one group. See the module documentation.
pub struct Replica<M: StateMachine> {
    id: MemberId,
    boot: u64,
    opts: ReplicaOptions,
    rng: Rng,
    machine: M,
    bugs: Bugs,
    trace: bool,

    /// The acceptor's promise and log.
    votes: Votes,

    /// How far the log is known chosen, written down and applied, and the
    /// latest snapshot.
    cursor: Cursor,

    // Learner.
    config: Config,
    sessions: SessionTable,
    /// Commands that panicked since the snapshot, with their messages.
    failed: BTreeMap<(Slot, usize), String>,
    /// This replica applied a configuration it is not part of.
    removed: bool,
    /// The leader said the group is idle: no election timeout until it
    /// speaks again or its node is reported down.
    hibernating: bool,
    /// Re-applying the log at start-up: no role changes, no messages.
    recovering: bool,
    /// Restarted, and waiting for the answers to its `CatchUp`s: its
    /// election timer asks again instead of campaigning, until it hears
    /// a leader or a reason to elect (see `ask_to_catch_up`).
    catching_up: bool,
    /// About to stop: takes no leadership handed over (`set_leaving`).
    leaving: bool,
    /// The nodes the routing table marks draining (`set_draining_nodes`).
    draining: BTreeSet<NodeId>,

    // Role and time.
    role: Role,
    leader: Option<MemberId>,
    /// Logical time and the election timer.
    clock: ElectionClock,

    // Local clients.
    waiting: BTreeSet<RequestId>,
    ready: Ready,
    /// Messages to this replica itself, handled before returning.
    inbox: Vec<Message>,
}

/// How a replica starts: who it is, what it serves, with which tuning.
pub struct Start<M> {
    /// This replica's member.
    pub member: MemberId,
    /// The group's initial configuration (a snapshot's later one wins).
    pub config: Config,
    /// The state machine.
    pub machine: M,
    /// Tuning.
    pub options: ReplicaOptions,
    /// Differs on every start of the member (the runtime counts starts).
    pub boot: u64,
    /// Seeds election timeouts and snapshot jitter.
    pub seed: u64,
}

impl<M: StateMachine> Replica<M> {
    /// A replica of a new group with members `start.config`.
    pub fn new(start: Start<M>) -> Self {
        let Start {
            member: id,
            config,
            machine,
            options: opts,
            boot,
            seed,
        } = start;
        let mut rng = Rng::new(seed ^ id.node.0.rotate_left(17) ^ boot.rotate_left(41));
        let first_snapshot_at = opts.snapshot_interval + rng.below(opts.snapshot_jitter + 1);
        let clock = ElectionClock::new(opts.election_ticks);
        let mut r = Replica {
            id,
            boot,
            opts,
            rng,
            machine,
            bugs: Bugs::default(),
            trace: false,
            votes: Votes::new(),
            cursor: Cursor::new(first_snapshot_at),
            config,
            sessions: SessionTable::new(),
            failed: BTreeMap::new(),
            removed: false,
            hibernating: false,
            recovering: false,
            catching_up: false,
            leaving: false,
            draining: BTreeSet::new(),
            role: Role::Follower,
            leader: None,
            clock,
            waiting: BTreeSet::new(),
            ready: Ready::default(),
            inbox: Vec::new(),
        };
        r.removed = !r.config.all_members().any(|m| m == r.id);
        r.reset_election_timer();
        r
    }

    /// A replica restarted from what its storage kept. `config` is the
    /// group's initial configuration, used when no snapshot records a later
    /// one. Chosen entries are re-applied; no side effect of an earlier life
    /// runs again.
    pub fn recover(start: Start<M>, recovered: Recovered) -> Result<Self, RecoverError> {
        let restarted = recovered != Recovered::default();
        let mut r = Replica::new(start);
        r.clock.note_round(recovered.promised.round);
        if let Some(snap) = recovered.snapshot {
            r.machine
                .import(&snap.state)
                .map_err(|e| RecoverError::Snapshot {
                    slot: snap.slot,
                    reason: e.to_string(),
                })?;
            r.sessions = snap.sessions.clone();
            r.config = snap.config.clone();
            // The first snapshot of this life is due as far after the
            // stored one as it would have been after slot 0.
            let gap = r.cursor.next_snapshot_at();
            r.cursor.install(snap, gap);
        }
        let applied = r.cursor.applied();
        let above_snapshot = recovered.log.into_iter().filter(|(s, _)| *s > applied);
        r.votes = Votes::restored(recovered.promised, above_snapshot);
        // Entries up to the stored commit point are chosen, as far as they
        // are contiguous.
        while r.cursor.commit() < recovered.commit && r.votes.mark_chosen(r.cursor.commit() + 1) {
            r.cursor.commit_through(r.cursor.commit() + 1);
        }
        // The storage holds this commit index already.
        let _ = r.cursor.take_unwritten_commit();
        r.recovering = true;
        r.apply_chosen();
        r.recovering = false;
        r.removed = !r.config.all_members().any(|m| m == r.id);
        // Nothing recovered is news for the runtime.
        r.ready = Ready::default();
        if restarted && !r.removed {
            // A crash may have lost writes this replica had already
            // reported (say, the commit it acknowledged before its group
            // went to sleep): nobody would send them again, so it asks
            // every other member once for what was chosen after its commit.
            r.catching_up = true;
            r.ask_to_catch_up();
        }
        Ok(r)
    }

    /// Enables deliberate protocol bugs (only for tests of the checkers).
    pub fn set_bugs(&mut self, bugs: Bugs) {
        self.bugs = bugs;
    }

    /// Reports every applied slot in [`Ready::applied`] (for checkers).
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on;
    }

    /// Handles a message from another replica (or from itself, for messages
    /// it produced in `Ready::after_write`).
    pub fn step(&mut self, from: MemberId, msg: Message) {
        self.dispatch(from, msg);
        self.drain_inbox();
    }

    /// Advances logical time by one tick: heartbeats, retransmissions,
    /// election timeouts.
    pub fn tick(&mut self) {
        self.clock.advance(1);
        match self.role {
            Role::Leader(_) => self.leader_tick(),
            Role::Candidate(_) => {
                if self.clock.expired() {
                    self.start_election();
                } else {
                    self.candidate_tick();
                }
            }
            Role::Follower => {
                if !self.hibernating && self.clock.expired() && self.config.is_voter(self.id) {
                    if self.catching_up {
                        self.ask_to_catch_up();
                    } else {
                        self.start_election();
                    }
                }
            }
        }
        self.drain_inbox();
    }

    /// The runtime's node-level failure detector reports `node` down (or
    /// unreachable). If our leader lives there, an election starts after a
    /// short random delay — also in a hibernating group, which sends no
    /// heartbeats that could time out. A follower that knows no leader yet
    /// (restarted, waiting for its catch-up answers) suspects the owner of
    /// the highest ballot it promised, if any (itself, if it led before):
    /// a restarting node that finds
    /// a peer unresponsive must not start an election in every group it
    /// hosts. Its election timer still runs, so a leader elsewhere that
    /// died is replaced anyway. After elections that failed in a row the
    /// delay is stretched as the election timeout is (see
    /// `Replica::reset_election_timer`): reports then come from a
    /// congested cluster, and elections started sooner never finish.
    ///
    /// A suspicion ([`DownReport::Unresponsive`]: pings missed) counts only
    /// from the time the leader (or promised candidate) has been silent
    /// for a base election timeout: on a congested cluster pings go
    /// unanswered while the leader's own messages still arrive (each of
    /// which puts the election off again), and reports about a live leader
    /// that came faster than a round trip deposed every leader before it
    /// got a slot chosen. Returns whether the report acts now (not put off
    /// until that silence).
    pub fn node_down(&mut self, node: crate::ids::NodeId, report: DownReport) -> bool {
        let promised = self.votes.promised();
        let promised = (promised != Ballot::ZERO).then_some(promised.leader);
        let suspect = self.leader.or(promised);
        if !matches!(self.role, Role::Follower) || suspect.is_some_and(|l| l.node != node) {
            return false;
        }
        self.hibernating = false;
        self.catching_up = false;
        let until_silent = match report {
            DownReport::SessionClosed => 0,
            DownReport::Unresponsive => self.clock.ticks_until_silent(),
        };
        // Within the stretched timeout once elections failed in a row: a
        // report on a busy cluster (a ping answered late) must not start
        // elections sooner than the congestion lets them finish.
        let e = self.clock.timeout();
        // A draining replica leaves the first try to the others.
        let later = if self.is_draining() { e } else { 0 };
        let wait = until_silent + later + self.rng.range(0, e);
        self.clock.expire_within(wait);
        until_silent == 0
    }

    /// Whether every election this replica started has settled (it has
    /// followed one leader for a whole election timeout since): only then
    /// may a report of its leader's node down make it campaign at once
    /// (`GroupDriver::on_node_down`). Reports that keep coming about live
    /// nodes (late pings on a busy cluster) would otherwise have the
    /// members of a small group depose one another faster than a leader
    /// gets a slot chosen.
    pub fn elections_settled(&self) -> bool {
        self.clock.settled()
    }

    /// Whether this replica needs `tick` calls: not while its group
    /// hibernates (a hibernating follower, or a leader with nothing to do),
    /// so a runtime can skip idle groups.
    pub fn wants_ticks(&self) -> bool {
        match &self.role {
            Role::Follower => !self.hibernating,
            Role::Candidate(_) => true,
            Role::Leader(l) => !l.is_asleep(),
        }
    }

    /// How many `tick` calls from now until one does more than advance the
    /// clock: the election deadline of a voting follower, the deadline or
    /// the next `Prepare` resend of a candidate, 1 for a leader; `u64::MAX`
    /// when no tick will (a hibernating group, a follower that does not
    /// vote). A runtime may hold back the ticks before that one and make
    /// them up (`tick` as many times) before handing the replica anything
    /// else: nothing can tell the difference.
    pub fn ticks_until_due(&self) -> u64 {
        if !self.wants_ticks() {
            return u64::MAX;
        }
        let deadline = self.clock.deadline();
        match &self.role {
            Role::Leader(_) => 1,
            Role::Candidate(c) => {
                let resend = c.resend_at(self.opts.heartbeat_ticks * self.clock.backoff());
                self.clock.ticks_until(deadline.min(resend))
            }
            Role::Follower if self.config.is_voter(self.id) => self.clock.ticks_until(deadline),
            Role::Follower => u64::MAX,
        }
    }

    /// Starts an election now (the runtime's failure detector calls this
    /// when the leader's node is down).
    pub fn campaign(&mut self) {
        if !matches!(self.role, Role::Leader(_)) && self.config.is_voter(self.id) {
            self.start_election();
            self.drain_inbox();
        }
    }

    /// Submits a command from a local client. The answer comes later as a
    /// [`Response`] for `RequestId::Command(cmd.client, cmd.seq)`.
    pub fn propose(&mut self, cmd: Command) {
        let id = RequestId::Command(cmd.client, cmd.seq);
        match self.sessions.check(cmd.client, cmd.seq) {
            crate::session::SessionCheck::Duplicate(reply) => {
                let result = reply.map_err(RequestError::Application);
                self.ready.responses.push(Response { to: id, result });
                return;
            }
            crate::session::SessionCheck::Stale => {
                self.respond(id, Err(RequestError::Stale));
                return;
            }
            crate::session::SessionCheck::Expired => {
                self.respond(id, Err(RequestError::SessionExpired));
                return;
            }
            crate::session::SessionCheck::New => {}
        }
        let leader = self.leader;
        match &mut self.role {
            Role::Leader(l) => {
                if self.waiting.contains(&id) {
                    return; // already queued or in flight: the same answer serves both
                }
                if !l.enqueue(cmd, self.opts.max_queued, self.clock.now()) {
                    self.respond(id, Err(RequestError::Busy));
                    return;
                }
                self.waiting.insert(id);
            }
            _ => {
                self.leader_wanted();
                self.respond(id, Err(RequestError::NotLeader { leader }));
            }
        }
    }

    /// Takes everything the runtime must do now. Commands queued since the
    /// last call are batched into slots here.
    pub fn take_ready(&mut self) -> Ready {
        self.flush_proposals();
        self.flush_reads();
        self.drain_inbox();
        if let Some(commit) = self.cursor.take_unwritten_commit() {
            self.ready
                .writes
                .push(crate::storage::Write::Commit(commit));
        }
        std::mem::take(&mut self.ready)
    }

    /// Whether `take_ready` has something (or queued commands to batch).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
            || self.cursor.has_unwritten_commit()
            || matches!(&self.role, Role::Leader(l) if l.has_unsent())
    }

    /// This replica's identity.
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// Whether this replica is the leader (phase 1 done for its ballot).
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The leader this replica believes in.
    pub fn leader(&self) -> Option<MemberId> {
        if self.is_leader() {
            Some(self.id)
        } else {
            self.leader
        }
    }

    /// The highest ballot promised.
    pub fn promised(&self) -> Ballot {
        self.votes.promised()
    }

    /// Every slot up to this one is known chosen here.
    pub fn commit_index(&self) -> Slot {
        self.cursor.commit()
    }

    /// Every slot up to this one is applied here.
    pub fn applied(&self) -> Slot {
        self.cursor.applied()
    }

    /// The membership in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The client session table.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// The latest snapshot, if any.
    pub fn snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.cursor.snapshot()
    }

    /// The chosen entry at `slot`, if still in the log.
    pub fn chosen_entry(&self, slot: Slot) -> Option<&Entry> {
        self.votes
            .get(slot)
            .filter(|e| e.chosen)
            .map(|e| &e.value.entry)
    }

    /// The current logical time.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    // ----- plumbing shared by the role modules -----

    fn dispatch(&mut self, from: MemberId, msg: Message) {
        match msg {
            Message::Prepare { ballot, from: slot } => self.on_prepare(from, ballot, slot),
            Message::Promise {
                ballot,
                from: slot,
                accepted,
                commit,
                snapshot_slot,
            } => self.on_promise(from, ballot, slot, accepted, commit, snapshot_slot),
            Message::Accept {
                ballot,
                slot,
                entry,
                commit,
            } => self.on_accept(from, ballot, slot, entry, commit),
            Message::Accepted { ballot, slot } => self.on_accepted(from, ballot, slot),
            Message::Nack { promised } => self.on_nack(from, promised),
            Message::Heartbeat {
                ballot,
                commit,
                read_round,
                hibernate,
            } => self.on_heartbeat(from, ballot, commit, read_round, hibernate),
            Message::HeartbeatAck {
                ballot,
                read_round,
                commit,
            } => self.on_heartbeat_ack(from, ballot, read_round, commit),
            Message::CatchUp { from: slot } => self.on_catch_up(from, slot),
            Message::Chosen { entries, commit } => self.on_chosen(from, entries, commit),
            Message::InstallSnapshot { snapshot } => self.on_install_snapshot(snapshot),
            Message::Compacted { upto } => self.on_compacted(from, upto),
            Message::TimeoutNow { ballot } => self.on_timeout_now(from, ballot),
        }
    }

    fn drain_inbox(&mut self) {
        while !self.inbox.is_empty() {
            let msgs = std::mem::take(&mut self.inbox);
            for m in msgs {
                self.dispatch(self.id, m);
            }
        }
    }

    /// Sends `msg` now (to itself: handled before the current input returns).
    fn send(&mut self, to: MemberId, msg: Message) {
        if to == self.id {
            self.inbox.push(msg);
        } else {
            self.ready.messages.push(Envelope {
                from: self.id,
                to,
                msg,
            });
        }
    }

    /// Sends `msg` once this `Ready`'s writes are durable.
    fn send_after_write(&mut self, to: MemberId, msg: Message) {
        if self.bugs.reply_before_persist {
            self.send(to, msg);
        } else {
            self.ready.after_write.push(Envelope {
                from: self.id,
                to,
                msg,
            });
        }
    }

    fn respond(&mut self, to: RequestId, result: Result<Vec<u8>, RequestError>) {
        self.waiting.remove(&to);
        self.ready.responses.push(Response { to, result });
    }

    /// Sets the next election deadline: a random time in `[e, 2e)` ticks,
    /// or in `[e/2, e)` for the group's preferred leader (its first voter)
    /// unless its node is draining, so a group whose members are all up
    /// usually elects it. The master
    /// rotates first voters over the nodes, which spreads leaders, and so
    /// the work of leading, over the cluster. Only a bias: any voter may
    /// still win, and safety does not depend on who does.
    ///
    /// Both bounds double with every election this replica started in a
    /// row without result, up to [`MAX_ELECTION_BACKOFF`] times: when
    /// messages take longer than an election timeout (a congested node, a
    /// slow link), elections that restart before their promises can arrive
    /// never finish, and each adds messages to the congestion; backing off
    /// lets one finish (see `ElectionClock::backoff`).
    fn reset_election_timer(&mut self) {
        let timeout = self.election_timeout();
        self.clock.reset(timeout);
    }

    /// A random election timeout, stretched by the current backoff (see
    /// [`Replica::reset_election_timer`]).
    fn election_timeout(&mut self) -> u64 {
        let preferred = self.config.voters.first() == Some(&self.id);
        let (low, high) = self.clock.timeout_range(preferred && !self.is_draining());
        self.rng.range(low, high)
    }

    /// A restarted replica asks every other member once for what was
    /// chosen after its commit (a crash may have lost writes it had
    /// already reported, say the commit it acknowledged before its group
    /// went to sleep: nobody would send them again), and waits
    /// [`MAX_ELECTION_BACKOFF`] election timeouts for the answers. The
    /// leader's tells it whom to follow (and, in a sleeping group, to
    /// sleep), which ends the wait.
    ///
    /// If no leader answered by then it asks again, and so on: it does not
    /// campaign on its own timer while it waits. A node restarting with
    /// 10,000 replicas takes longer than any fixed wait to process the
    /// answers (measured: every replica of the restarted node campaigned
    /// after its wait, deposing the leaders of all 10,000 groups, which
    /// kept the cluster electing for a minute; docs/BENCHMARKS.md). A
    /// group that really has no leader still elects when it is needed: a
    /// request to a member that knows no leader, or a report that the node
    /// of the leader it promised is down, ends the wait
    /// (`leader_wanted`, `node_down`), as hearing a leader does.
    /// The preferred leader waits as long as the others: a restarted node
    /// is the preferred leader of a fifth of its groups.
    fn ask_to_catch_up(&mut self) {
        let from = self.cursor.commit() + 1;
        for m in self.other_members() {
            self.send(m, Message::CatchUp { from });
        }
        let (low, high) = self.clock.catch_up_wait_range();
        let wait = self.rng.range(low, high);
        self.clock.reset(wait);
    }

    /// Every member of the group's configuration (voters and learners) but
    /// this replica.
    fn other_members(&self) -> Vec<MemberId> {
        let me = self.id;
        self.config.all_members().filter(|m| *m != me).collect()
    }

    /// Someone needs this group's leader (a command, a query, a membership
    /// change or read, a leadership transfer reached this follower) while
    /// it knows none: nobody can serve it until an election, so a deadline
    /// put off after a restart comes back to the timeout it would have had
    /// (a stretch from elections that did not finish stays: requests pour
    /// in exactly when the network is congested). A follower of a sleeping
    /// group that knows its leader wakes: its election timer runs again,
    /// and the leader's next message (the same request wakes the leader)
    /// puts it off; a leader that hung while its group slept (its session
    /// stays open, so no report comes for seconds) is replaced within an
    /// election timeout. Does nothing on a leader, a candidate, an awake
    /// follower that knows its leader, or a non-voter.
    pub fn leader_wanted(&mut self) {
        if !matches!(self.role, Role::Follower) || !self.config.is_voter(self.id) {
            return;
        }
        if self.leader.is_some() {
            if self.hibernating && !self.bugs.sleeping_follower_stays_asleep {
                self.hibernating = false;
                self.reset_election_timer();
            }
            return;
        }
        self.catching_up = false;
        let timeout = self.election_timeout();
        self.clock.expire_within(timeout);
    }

    /// Notes a ballot seen anywhere; a higher one than ours ends our
    /// candidacy or leadership.
    fn observe_ballot(&mut self, b: Ballot) {
        self.clock.note_round(b.round);
        let mine = match &self.role {
            Role::Leader(l) => Some(l.ballot()),
            Role::Candidate(c) => Some(c.ballot()),
            Role::Follower => None,
        };
        if let Some(mine) = mine {
            if b > mine {
                self.step_down(Some(b.leader));
            }
        }
    }

    /// Becomes a follower; local clients waiting on this leader are told to
    /// go elsewhere (their commands may still be chosen: a retry is answered
    /// from the session table).
    fn step_down(&mut self, leader: Option<MemberId>) {
        let was = std::mem::replace(&mut self.role, Role::Follower);
        self.leader = leader.filter(|l| *l != self.id);
        if let Role::Leader(l) = was {
            let waiting: Vec<RequestId> = std::mem::take(&mut self.waiting).into_iter().collect();
            for id in waiting {
                self.ready.responses.push(Response {
                    to: id,
                    result: Err(RequestError::NotLeader {
                        leader: self.leader,
                    }),
                });
            }
            drop(l);
        }
        self.reset_election_timer();
    }
}

#[cfg(test)]
mod drain_tests;
#[cfg(test)]
mod reconfig_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transfer_tests;
