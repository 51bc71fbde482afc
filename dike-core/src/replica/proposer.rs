//! The proposer: candidacy (phase 1a, once per leadership, covering every
//! later slot) and leadership (phase 2a with batching and a bounded window of
//! pipelined slots).
//!
//! Invariant: a leader proposes at most one value per slot in its ballot, and
//! for every slot that might have been chosen before, the value with the
//! highest ballot among a quorum of promises.
//!
//! The rules of phase 1's tally and of the values a new leader adopts live
//! in the `promises` part, those of the quorum tally of `Accepted` in
//! `tally`, and each member's progress in `progress`.

use super::hand_back::HandBack;
use super::progress::Progress;
use super::promises::{keep_first_stop_sign, settle_stop_signs, Promises};
use super::read_index::ReadIndex;
use super::tally::Tally;
use super::transfer::Transfer;
use super::{Replica, Role};
use crate::entry::{Batch, Command, Entry};
use crate::ids::{Ballot, MemberId, Slot};
use crate::message::Message;
use crate::server::StateMachine;
use crate::storage::Accepted;
use std::collections::VecDeque;
use std::sync::Arc;

/// A candidate collecting promises.
#[derive(Debug)]
pub(crate) struct CandidateState {
    /// The ballot it campaigns in.
    ballot: Ballot,
    /// Phase 1 covers every slot from here on.
    from: Slot,
    /// The promises so far and the values they reported.
    promises: Promises,
    /// Some acceptor compacted up to here: catch up before leading.
    must_reach: Slot,
    /// When its `Prepare`s last went out.
    last_sent: u64,
}

impl CandidateState {
    /// The ballot it campaigns in.
    pub(super) fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// When its `Prepare`s go out again if resent every `every` ticks.
    pub(super) fn resend_at(&self, every: u64) -> u64 {
        self.last_sent + every
    }
}

/// A leader's state. The proposer drives it; the other roles go through
/// its methods, and borrow its parts (`progress`, the transfer under way,
/// the hand-back) whose own rules keep them consistent.
#[derive(Debug)]
pub(crate) struct LeaderState {
    /// The ballot it leads in.
    ballot: Ballot,
    /// The slot the next proposal takes.
    next_slot: Slot,
    /// The proposals not chosen yet, with who accepted each.
    in_flight: Tally,
    /// Commands waiting for a slot.
    queue: VecDeque<Command>,
    /// Slots up to here were settled by phase 1; reads wait for them.
    phase1_end: Slot,
    /// When the last heartbeat went out.
    last_heartbeat: u64,
    /// The queries waiting for a read-index round.
    reads: ReadIndex,
    /// The slot of the stop-sign this leader proposed: nothing goes after it.
    stop: Option<Slot>,
    /// Each member's progress: the slot it acknowledged, the commit index
    /// it reported (the group hibernates only once every member knows the
    /// latest one), when it was last heard from in this ballot.
    progress: Progress,
    /// Nothing has happened since this tick.
    idle_since: u64,
    /// Hibernating: no heartbeats until something happens.
    asleep: bool,
    /// The leadership transfer under way: no new slot is proposed until it
    /// ends (see `transfer`).
    transfer: Option<Transfer>,
    /// When leadership goes back to the preferred leader, and the backoff
    /// of the transfers this leader starts by itself.
    hand_back: HandBack,
}

impl LeaderState {
    /// A leader elected in `ballot` at `now`, after a phase 1 that settled
    /// every slot up to `last` (`stop`: the slot of a stop-sign among them,
    /// which nothing may follow).
    pub(super) fn new(
        ballot: Ballot,
        last: Slot,
        stop: Option<Slot>,
        now: u64,
        hand_back: HandBack,
    ) -> Self {
        LeaderState {
            ballot,
            next_slot: last + 1,
            in_flight: Tally::new(),
            queue: VecDeque::new(),
            phase1_end: last,
            last_heartbeat: now,
            reads: ReadIndex::new(),
            stop,
            progress: Progress::new(),
            idle_since: now,
            asleep: false,
            transfer: None,
            hand_back,
        }
    }

    /// The ballot it leads in.
    pub(super) fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// Something happened: heartbeats resume.
    pub(super) fn wake(&mut self, now: u64) {
        self.idle_since = now;
        self.asleep = false;
    }

    /// Whether the group hibernates under this leader: no heartbeats until
    /// something happens.
    pub(super) fn is_asleep(&self) -> bool {
        self.asleep
    }

    /// Frees the spare space of its command queue (the group went to
    /// sleep: see `Replica::on_sleep`).
    pub(super) fn shrink_to_fit(&mut self) {
        self.queue.shrink_to_fit();
    }

    /// Queues `cmd` for a slot unless `max` commands wait already (then
    /// `false`), and wakes the leader.
    pub(super) fn enqueue(&mut self, cmd: Command, max: usize, now: u64) -> bool {
        if self.queue.len() >= max {
            return false;
        }
        self.queue.push_back(cmd);
        self.wake(now);
        true
    }

    /// The next batch of queued commands (at most `max_batch`, at least
    /// one) and the slot it takes, unless none waits, a stop-sign or a
    /// transfer holds new slots back, or `window` slots are in flight.
    pub(super) fn take_batch(
        &mut self,
        window: u64,
        max_batch: usize,
    ) -> Option<(Slot, Arc<[Command]>)> {
        if self.stop.is_some()
            || self.transfer.is_some()
            || self.queue.is_empty()
            || self.in_flight.len() as u64 >= window
        {
            return None;
        }
        let n = self
            .queue
            .len()
            .min(max_batch.clamp(1, crate::entry::MAX_BATCH_COMMANDS));
        let commands: Arc<[Command]> = self.queue.drain(..n).collect();
        let slot = self.next_slot;
        self.next_slot += 1;
        Some((slot, commands))
    }

    /// Whether `take_ready` has something to send: commands to batch (no
    /// transfer holding them) or queries waiting for a read round.
    pub(super) fn has_unsent(&self) -> bool {
        (!self.queue.is_empty() && self.transfer.is_none()) || self.reads_unsent()
    }

    /// Whether queries wait for a read round to be started.
    pub(super) fn reads_unsent(&self) -> bool {
        self.reads.has_unsent()
    }

    /// Queues query `id` for a read round. Its read index is the commit
    /// index, and at least every slot phase 1 settled.
    pub(super) fn add_read(&mut self, id: u64, payload: Vec<u8>, commit: Slot, now: u64) {
        let read_index = commit.max(self.phase1_end);
        self.wake(now);
        self.reads.add(id, payload, read_index);
    }

    /// The queries a quorum of `voters` confirmed whose read index is
    /// `applied` already, to answer now.
    pub(super) fn take_ready_reads(
        &mut self,
        voters: &[MemberId],
        quorum: usize,
        applied: Slot,
    ) -> Vec<(u64, Vec<u8>)> {
        self.reads.take_ready(voters, quorum, applied)
    }

    /// Notes `m`'s answer to a heartbeat at `now`: it knows every slot up
    /// to `commit` chosen, and acknowledges read round `round`.
    pub(super) fn note_heartbeat_ack(&mut self, m: MemberId, commit: Slot, round: u64, now: u64) {
        self.heard(m, now);
        self.progress.note_commit(m, commit);
        self.reads.ack(m, round);
    }

    /// Notes that `m` asked for the chosen slots from `slot + 1` on: it
    /// knows those up to `slot`.
    pub(super) fn note_catch_up(&mut self, m: MemberId, slot: Slot) {
        self.progress.note_acked(m, slot);
    }

    /// Each member's progress as this leader saw it.
    pub(super) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Whether `m` acknowledged every slot this leader has in flight and
    /// some slot (or commit index) at or after `last`.
    pub(super) fn acked_everything(&self, m: MemberId, last: Slot) -> bool {
        self.progress.acked(m).is_some_and(|s| s >= last) && self.in_flight.accepted_by(m)
    }

    /// The last slot this leader proposed (or settled in phase 1).
    pub(super) fn last_proposed(&self) -> Slot {
        self.next_slot - 1
    }

    /// Whether a membership change (a stop-sign this leader proposed) is
    /// in flight.
    pub(super) fn change_in_flight(&self) -> bool {
        self.stop.is_some()
    }

    /// Takes the next slot for a stop-sign: nothing is proposed after it.
    pub(super) fn propose_stop(&mut self) -> Slot {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.stop = Some(slot);
        slot
    }

    /// The stop-sign at `slot` turned out to be left over from an older
    /// configuration: if it is the one this leader proposed, proposing goes
    /// on.
    pub(super) fn forget_stop(&mut self, slot: Slot) {
        if self.stop == Some(slot) {
            self.stop = None;
        }
    }

    /// The transfer under way, if any.
    pub(super) fn transfer(&self) -> Option<&Transfer> {
        self.transfer.as_ref()
    }

    /// The transfer under way, if any, to note progress in.
    pub(super) fn transfer_mut(&mut self) -> Option<&mut Transfer> {
        self.transfer.as_mut()
    }

    /// The member leadership is being handed to, if a transfer is under way.
    pub(super) fn transfer_target(&self) -> Option<MemberId> {
        self.transfer.as_ref().map(Transfer::to)
    }

    /// Whether a transfer is under way (no new slot is proposed).
    pub(super) fn is_transferring(&self) -> bool {
        self.transfer.is_some()
    }

    /// Starts `transfer` at `now`, waking the leader.
    pub(super) fn begin_transfer(&mut self, transfer: Transfer, now: u64) {
        self.transfer = Some(transfer);
        self.wake(now);
    }

    /// The transfer under way gave up at `now`: the leader leads on (and
    /// backs off if it started it by itself). Returns it.
    pub(super) fn give_up_transfer(&mut self, now: u64) -> Option<Transfer> {
        let t = self.transfer.take()?;
        self.wake(now);
        self.hand_back.note_gave_up(now, t.is_automatic());
        Some(t)
    }

    /// When leadership goes back to the preferred leader, and the backoff
    /// of the transfers this leader starts by itself.
    pub(super) fn hand_back(&self) -> &HandBack {
        &self.hand_back
    }

    /// The hand-back, to note what the leader saw of the preferred leader.
    pub(super) fn hand_back_mut(&mut self) -> &mut HandBack {
        &mut self.hand_back
    }

    /// Notes that `m` answered in this ballot.
    fn heard(&mut self, m: MemberId, now: u64) {
        self.progress.heard(m, now);
    }
}

impl<M: StateMachine> Replica<M> {
    pub(super) fn start_election(&mut self) {
        self.catching_up = false;
        if !self.config.is_voter(self.id) || self.removed {
            self.role = Role::Follower;
            return;
        }
        let round = self.clock.max_round_seen().max(self.votes.promised().round) + 1;
        let ballot = Ballot {
            epoch: self.config.epoch,
            round,
            leader: self.id,
        };
        if ballot <= self.votes.promised() {
            // We promised a ballot of a later configuration than ours: we
            // are behind and cannot campaign in it; catch up first.
            self.reset_election_timer();
            for m in self.config.voters.clone() {
                if m != self.id {
                    self.send(
                        m,
                        Message::CatchUp {
                            from: self.cursor.commit() + 1,
                        },
                    );
                }
            }
            return;
        }
        self.campaign_in(ballot);
    }

    /// Campaigns in `ballot` (above every ballot this replica promised,
    /// except with the deliberate bug `transfer_reuses_ballot`).
    pub(super) fn campaign_in(&mut self, ballot: Ballot) {
        self.clock.note_round(ballot.round);
        if matches!(self.role, Role::Leader(_)) {
            self.step_down(None);
        }
        self.leader = None;
        self.clock.count_election();
        self.reset_election_timer();
        let from = self.cursor.commit() + 1;
        tracing::debug!(member = %self.id, %ballot, from, "starting election");
        self.role = Role::Candidate(CandidateState {
            ballot,
            from,
            promises: Promises::new(),
            must_reach: 0,
            last_sent: self.clock.now(),
        });
        // Our own promise of `ballot` is written in this same `Ready`; the
        // others hear of `ballot` only once that write is durable. A ballot
        // nobody else saw may be reused by the next life after a crash; one
        // that others saw never is, since its promise survives the crash
        // and the next life's rounds start above it.
        for m in self.config.voters.clone() {
            self.send_prepare(m, ballot, from);
        }
        // Learners may know more than every live voter (for instance that a
        // stop-sign was chosen, which moves the group to a configuration
        // whose voters are alive): ask them too.
        for m in self.config.learners.clone() {
            self.send(m, Message::CatchUp { from });
        }
    }

    pub(super) fn candidate_tick(&mut self) {
        // Resent as often as the election timeout allows (see
        // `ElectionClock::backoff`): under congestion resending adds to it.
        let every = self.opts.heartbeat_ticks * self.clock.backoff();
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if self.clock.now() < c.last_sent + every {
            return;
        }
        c.last_sent = self.clock.now();
        let (ballot, from) = (c.ballot, c.from);
        let missing: Vec<MemberId> = self
            .config
            .voters
            .iter()
            .copied()
            .filter(|m| !c.promises.has_promised(*m))
            .collect();
        for m in missing {
            self.send_prepare(m, ballot, from);
        }
    }

    /// Sends `Prepare(ballot)` to `m`: to itself at once (it writes the
    /// promise), to others after this `Ready`'s writes are durable.
    fn send_prepare(&mut self, m: MemberId, ballot: Ballot, from: Slot) {
        let msg = Message::Prepare { ballot, from };
        if m == self.id || self.bugs.prepare_before_promise_durable {
            self.send(m, msg);
        } else {
            self.send_after_write(m, msg);
        }
    }

    pub(super) fn on_promise(
        &mut self,
        from: MemberId,
        ballot: Ballot,
        slot: Slot,
        accepted: Vec<(Slot, Accepted)>,
        commit: Slot,
        snapshot_slot: Slot,
    ) {
        let ignore_values = self.bugs.ignore_promised_values;
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if c.ballot != ballot
            || c.from != slot
            || (!self.config.is_voter(from) && !self.bugs.count_non_voters)
            || !c.promises.record(from)
        {
            return;
        }
        if !ignore_values {
            c.promises.adopt(accepted, commit);
        }
        if snapshot_slot >= c.from {
            c.must_reach = c.must_reach.max(snapshot_slot);
        }
        // The acceptor knows of chosen slots we do not: fetch them (they
        // may hold a stop-sign that ends this configuration).
        if self.cursor.commit() < commit.max(snapshot_slot) {
            let from_slot = self.cursor.commit() + 1;
            self.send(from, Message::CatchUp { from: from_slot });
        }
        self.try_become_leader();
    }

    /// Becomes leader once a quorum promised and the replica holds every
    /// slot some acceptor compacted.
    pub(super) fn try_become_leader(&mut self) {
        let Role::Candidate(c) = &self.role else {
            return;
        };
        if c.promises.count() < self.config.quorum() || self.cursor.commit() < c.must_reach {
            return;
        }
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else {
            return;
        };
        let ballot = c.ballot;
        let mut values = c.promises.into_values(self.cursor.commit());
        // A stop-sign for any epoch but the next one is left over from an
        // older configuration (never chosen here): it changes nothing.
        let next_epoch = self.config.epoch + 1;
        for v in values.values_mut() {
            if matches!(&v.entry, Entry::StopSign(c) if c.epoch != next_epoch) {
                v.entry = Entry::Noop;
            }
        }
        let stop = if self.bugs.stop_sign_never_overtaken {
            keep_first_stop_sign(&mut values)
        } else {
            settle_stop_signs(&mut values)
        };
        let last = values
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.cursor.commit());
        tracing::debug!(member = %self.id, %ballot, from = self.cursor.commit() + 1, last, "elected leader");
        self.leader = Some(self.id);
        let now = self.clock.now();
        let hand_back = HandBack::new(
            now,
            self.opts.preferred_leader_after_ticks,
            self.opts.election_ticks,
        );
        self.role = Role::Leader(Box::new(LeaderState::new(
            ballot, last, stop, now, hand_back,
        )));
        for slot in self.cursor.commit() + 1..=last {
            let entry = values.remove(&slot).map_or(Entry::Noop, |v| v.entry);
            self.propose_entry(slot, entry);
        }
        // Let followers know at once (and learn the commit index).
        self.heartbeat();
    }

    /// Proposes `entry` at `slot` in the leader's ballot.
    pub(super) fn propose_entry(&mut self, slot: Slot, entry: Entry) {
        let commit = self.cursor.commit();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        l.in_flight.propose(slot, entry.clone(), self.clock.now());
        let members: Vec<MemberId> = self.config.all_members().collect();
        self.send_accept(&members, ballot, slot, entry, commit);
    }

    /// Sends `Accept(ballot, slot, entry, commit)` to each of `to`.
    fn send_accept(
        &mut self,
        to: &[MemberId],
        ballot: Ballot,
        slot: Slot,
        entry: Entry,
        commit: Slot,
    ) {
        for m in to {
            let msg = Message::Accept {
                ballot,
                slot,
                entry: entry.clone(),
                commit,
            };
            self.send(*m, msg);
        }
    }

    /// Moves queued commands into new slots while the window has room.
    pub(super) fn flush_proposals(&mut self) {
        loop {
            let Role::Leader(l) = &mut self.role else {
                return;
            };
            let Some((slot, commands)) = l.take_batch(self.opts.window, self.opts.max_batch) else {
                return;
            };
            let entry = Entry::Batch(Batch {
                proposer: self.id,
                boot: self.boot,
                commands,
            });
            self.propose_entry(slot, entry);
        }
    }

    pub(super) fn on_accepted(&mut self, from: MemberId, ballot: Ballot, slot: Slot) {
        self.count_accepted(from, ballot, slot);
        self.on_member_progress(from, ballot);
    }

    fn count_accepted(&mut self, from: MemberId, ballot: Ballot, slot: Slot) {
        let quorum = self.config.quorum();
        let counts = self.config.is_voter(from) || self.bugs.count_non_voters;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        l.heard(from, self.clock.now());
        l.progress.note_acked(from, slot);
        if !counts {
            return;
        }
        let Some(entry) = l.in_flight.accept(slot, from, quorum) else {
            return;
        };
        self.mark_chosen(slot, Accepted { ballot, entry });
        self.advance_commit();
    }

    /// Records that `value` is chosen at `slot`.
    pub(super) fn mark_chosen(&mut self, slot: Slot, value: Accepted) {
        if slot <= self.cursor.snapshot_slot() {
            return;
        }
        match self.votes.get(slot) {
            Some(e) if e.chosen => {}
            // We hold a value from an older ballot that lost: the chosen one
            // replaces it, on disk too, before any commit point that covers
            // it is written.
            Some(e) if e.value.entry != value.entry => self.store(slot, value, true),
            Some(_) => {
                self.votes.mark_chosen(slot);
            }
            None => self.store(slot, value, true),
        }
        let lost_slot = match &mut self.role {
            Role::Leader(l) => l.in_flight.remove(slot).is_some_and(|proposed| {
                self.votes
                    .get(slot)
                    .is_some_and(|e| e.value.entry != proposed)
            }),
            _ => false,
        };
        if lost_slot {
            // Another ballot chose a different value where we proposed: we
            // are not the leader any more (see `on_chosen`).
            self.step_down(None);
        }
    }

    /// Drops proposals for slots that became chosen some other way (a
    /// snapshot or a catch-up). Commands of ours that lost their slot to
    /// another value go back to the queue; the session table keeps a command
    /// that was chosen elsewhere from applying twice.
    pub(super) fn prune_in_flight(&mut self) {
        let commit = self.cursor.commit();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let mut requeue = Vec::new();
        for (slot, proposed) in l.in_flight.remove_through(commit) {
            let chosen_same = self
                .votes
                .get(slot)
                .is_some_and(|e| e.value.entry == proposed);
            if let (false, Entry::Batch(b)) = (chosen_same, proposed) {
                requeue.extend(b.commands.iter().cloned());
            }
        }
        for cmd in requeue.into_iter().rev() {
            let id = crate::ready::RequestId::Command(cmd.client, cmd.seq);
            if self.waiting.contains(&id)
                && self.sessions.check(cmd.client, cmd.seq) == crate::session::SessionCheck::New
            {
                l.queue.push_front(cmd);
            }
        }
    }

    pub(super) fn leader_tick(&mut self) {
        self.transfer_tick();
        let commit = self.cursor.commit();
        let hand_off_due = self.drain_hand_off_due();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if self.clock.now() < l.last_heartbeat + self.opts.heartbeat_ticks {
            return;
        }
        let idle = l.in_flight.is_empty()
            && l.queue.is_empty()
            && l.reads.is_empty()
            && l.stop.is_none()
            && l.transfer.is_none()
            && !l.hand_back.due(self.clock.now())
            && !hand_off_due;
        if !idle {
            l.idle_since = self.clock.now();
            l.asleep = false;
        }
        if l.asleep {
            return; // hibernating: nothing to say until something happens
        }
        let hibernate = idle
            && self.opts.hibernate_after_ticks > 0
            && self.clock.now() >= l.idle_since + self.opts.hibernate_after_ticks;
        // Retransmit proposals that have waited too long (lost messages).
        let ballot = l.ballot;
        let resend_after = 2 * self.opts.heartbeat_ticks;
        let members: Vec<MemberId> = self.config.all_members().collect();
        let resend = l
            .in_flight
            .resend_due(self.clock.now(), resend_after, &members);
        for (slot, entry, missing) in resend {
            self.send_accept(&missing, ballot, slot, entry, commit);
        }
        if hibernate {
            // Sleep only once every member acknowledged the commit index:
            // a member left behind would have nothing to catch up from.
            let (commit, others) = (self.cursor.commit(), self.other_members());
            let mut asleep = false;
            if let Role::Leader(l) = &mut self.role {
                l.asleep = l.progress.all_know(&others, commit);
                asleep = l.asleep;
            }
            if asleep {
                self.on_sleep();
            }
        }
        self.send_heartbeat(hibernate);
    }

    /// Sends the commit index (and the current read round) to every member.
    pub(super) fn heartbeat(&mut self) {
        self.send_heartbeat(false);
    }

    fn send_heartbeat(&mut self, hibernate: bool) {
        let commit = self.cursor.commit();
        let hand_off_due = self.drain_hand_off_due();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if !hibernate {
            l.asleep = false;
        }
        l.last_heartbeat = self.clock.now();
        let ballot = l.ballot;
        // During a transfer every member reports its commit index, so the
        // leader sees when the target holds everything (in an idle group
        // too, where no `Accepted` would tell); so does a draining leader
        // looking for a voter to hand off to (see `drain`).
        let read_round = if l.transfer.is_some() || hand_off_due {
            l.reads.probe_round()
        } else {
            l.reads.start_round()
        };
        for m in self.other_members() {
            self.send(
                m,
                Message::Heartbeat {
                    ballot,
                    commit,
                    read_round,
                    hibernate,
                },
            );
        }
        if read_round > 0 {
            let commit = self.cursor.commit();
            self.send(
                self.id,
                Message::HeartbeatAck {
                    ballot,
                    read_round,
                    commit,
                },
            );
        }
    }

    pub(super) fn on_nack(&mut self, from: MemberId, promised: Ballot) {
        self.observe_ballot(promised);
        if promised.epoch > self.config.epoch {
            // The group moved to a later configuration without us noticing:
            // fetch the log up to its stop-sign.
            self.request_catch_up(from, false);
        }
    }

    pub(super) fn on_compacted(&mut self, from: MemberId, upto: Slot) {
        if upto > self.cursor.commit() {
            let from_slot = self.cursor.commit() + 1;
            self.send(from, Message::CatchUp { from: from_slot });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::hand_back::HandBack;
    use super::super::transfer::Transfer;
    use super::LeaderState;
    use crate::entry::{Command, Entry};
    use crate::ids::{Ballot, ClientId, MemberId, Slot};

    fn m(i: u64) -> MemberId {
        MemberId::new(i, 0)
    }

    /// A leader elected at tick 0 whose phase 1 settled slots up to `last`.
    fn leader(last: Slot) -> LeaderState {
        let ballot = Ballot {
            epoch: 0,
            round: 1,
            leader: m(1),
        };
        LeaderState::new(ballot, last, None, 0, HandBack::new(0, 10, 10))
    }

    fn cmd(seq: u64) -> Command {
        Command::new(ClientId(1), seq, vec![])
    }

    /// Queues commands `1..=n`.
    fn queue(l: &mut LeaderState, n: u64) {
        for seq in 1..=n {
            assert!(l.enqueue(cmd(seq), 100, 0));
        }
    }

    #[test]
    fn a_leader_queues_no_more_commands_than_allowed() {
        let mut l = leader(0);
        assert!(l.enqueue(cmd(1), 2, 0));
        assert!(l.enqueue(cmd(2), 2, 0));
        assert!(!l.enqueue(cmd(3), 2, 0), "the queue is full");
    }

    #[test]
    fn new_slots_follow_the_slots_phase_1_settled() {
        let mut l = leader(7);
        queue(&mut l, 2);
        assert_eq!(l.take_batch(10, 1).map(|(s, _)| s), Some(8));
        assert_eq!(l.take_batch(10, 1).map(|(s, _)| s), Some(9));
        assert_eq!(l.last_proposed(), 9);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_commands_and_at_least_one() {
        let mut l = leader(0);
        queue(&mut l, 5);
        let (_, batch) = l.take_batch(10, 3).expect("a batch");
        assert_eq!(batch.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let (_, batch) = l.take_batch(10, 0).expect("a batch");
        assert_eq!(batch.len(), 1, "max_batch 0 still carries one command");
    }

    #[test]
    fn at_most_a_window_of_slots_is_in_flight() {
        let mut l = leader(0);
        queue(&mut l, 3);
        for _ in 0..2 {
            let (slot, _) = l.take_batch(2, 1).expect("room in the window");
            l.in_flight.propose(slot, Entry::Noop, 0);
        }
        assert_eq!(
            l.take_batch(2, 1),
            None,
            "two slots in flight fill the window"
        );
    }

    #[test]
    fn nothing_is_proposed_after_a_stop_sign() {
        let mut l = leader(0);
        queue(&mut l, 1);
        assert_eq!(l.propose_stop(), 1);
        assert!(l.change_in_flight());
        assert_eq!(l.take_batch(10, 10), None);
    }

    #[test]
    fn a_stop_sign_found_left_over_lets_proposing_go_on() {
        let mut l = leader(0);
        queue(&mut l, 1);
        let stop = l.propose_stop();
        l.forget_stop(stop + 1);
        assert!(
            l.change_in_flight(),
            "another slot's stop-sign changes nothing"
        );
        l.forget_stop(stop);
        assert!(!l.change_in_flight());
        assert_eq!(l.take_batch(10, 10).map(|(s, _)| s), Some(stop + 1));
    }

    #[test]
    fn no_slot_is_proposed_while_leadership_is_being_handed_over() {
        let mut l = leader(0);
        queue(&mut l, 1);
        l.begin_transfer(Transfer::new(m(2), 0, 0, 10, false), 0);
        assert_eq!(l.take_batch(10, 10), None);
        assert!(
            !l.has_unsent(),
            "commands held by a transfer are nothing to send"
        );
        assert!(l.give_up_transfer(10).is_some());
        assert!(l.has_unsent());
        assert!(l.take_batch(10, 10).is_some());
    }

    #[test]
    fn a_query_reads_at_least_every_slot_phase_1_settled() {
        let mut l = leader(5);
        l.add_read(1, vec![], 3, 0);
        assert_eq!(l.reads.start_round(), 1);
        let voters = [m(1), m(2), m(3)];
        for v in voters {
            l.note_heartbeat_ack(v, 3, 1, 0);
        }
        assert!(
            l.take_ready_reads(&voters, 2, 4).is_empty(),
            "slot 5 not applied yet"
        );
        assert_eq!(l.take_ready_reads(&voters, 2, 5), vec![(1, vec![])]);
    }

    #[test]
    fn anything_a_leader_is_handed_wakes_it() {
        let mut l = leader(0);
        l.asleep = true;
        assert!(l.enqueue(cmd(1), 10, 3));
        assert!(!l.is_asleep());
        l.asleep = true;
        l.add_read(1, vec![], 0, 4);
        assert!(!l.is_asleep());
        l.asleep = true;
        l.begin_transfer(Transfer::new(m(2), 0, 5, 10, false), 5);
        assert!(!l.is_asleep());
    }
}
