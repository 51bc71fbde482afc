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
    pub ballot: Ballot,
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
    /// When its `Prepare`s go out again if resent every `every` ticks.
    pub(crate) fn resend_at(&self, every: u64) -> u64 {
        self.last_sent + every
    }
}

/// A leader's state.
#[derive(Debug)]
pub(crate) struct LeaderState {
    /// The ballot it leads in.
    pub ballot: Ballot,
    /// The slot the next proposal takes.
    pub next_slot: Slot,
    /// The proposals not chosen yet, with who accepted each.
    in_flight: Tally,
    /// Commands waiting for a slot.
    pub queue: VecDeque<Command>,
    /// Slots up to here were settled by phase 1; reads wait for them.
    pub phase1_end: Slot,
    /// When the last heartbeat went out.
    last_heartbeat: u64,
    /// The queries waiting for a read-index round.
    pub reads: ReadIndex,
    /// The slot of the stop-sign this leader proposed: nothing goes after it.
    pub stop: Option<Slot>,
    /// Each member's progress: the slot it acknowledged, the commit index
    /// it reported (the group hibernates only once every member knows the
    /// latest one), when it was last heard from in this ballot.
    pub progress: Progress,
    /// Nothing has happened since this tick.
    pub idle_since: u64,
    /// Hibernating: no heartbeats until something happens.
    pub asleep: bool,
    /// The leadership transfer under way: no new slot is proposed until it
    /// ends (see `transfer`).
    pub transfer: Option<Transfer>,
    /// Since this tick the preferred leader has been heard from and caught
    /// up without a break.
    pub preferred_since: Option<u64>,
    /// No transfer this leader starts by itself (a hand-back to the
    /// preferred leader, a hand-off while draining) before this tick, after
    /// one that gave up.
    pub retry_transfer_at: u64,
    /// Transfers this leader started by itself that gave up, for the
    /// backoff.
    pub transfers_given_up: u32,
    /// The preferred leader was silent for an election timeout during this
    /// leadership (a failover, a partition): only then is leadership handed
    /// back, never after an operator moved it away from a live one.
    pub preferred_missed: bool,
    /// The tick this leadership began, or last woke from hibernation:
    /// members are not heard from while the group sleeps, so silence
    /// counts only from here.
    pub since: u64,
    /// The leader was seen asleep since it last checked on the preferred
    /// leader (`since` moves when it wakes).
    pub slept: bool,
}

impl LeaderState {
    /// Something happened: heartbeats resume.
    pub(crate) fn wake(&mut self, now: u64) {
        self.idle_since = now;
        self.asleep = false;
    }

    /// Whether queries wait for a read round to be started.
    pub(crate) fn reads_unsent(&self) -> bool {
        self.reads.has_unsent()
    }

    /// Whether `m` acknowledged every slot this leader has in flight and
    /// some slot (or commit index) at or after `last`.
    pub(crate) fn acked_everything(&self, m: MemberId, last: Slot) -> bool {
        self.progress.acked(m).is_some_and(|s| s >= last) && self.in_flight.accepted_by(m)
    }

    /// The last slot this leader proposed (or settled in phase 1).
    pub(crate) fn last_proposed(&self) -> Slot {
        self.next_slot - 1
    }

    /// Whether a hand-back to the preferred leader is coming (it is back
    /// and caught up, and no backoff holds it): the group stays awake for
    /// it, so an idle group sleeps under its preferred leader.
    pub(crate) fn hand_back_due(&self, now: u64) -> bool {
        self.preferred_since.is_some() && now >= self.retry_transfer_at
    }

    /// Notes that `m` answered in this ballot.
    pub(crate) fn heard(&mut self, m: MemberId, now: u64) {
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
        self.role = Role::Leader(Box::new(LeaderState {
            ballot,
            next_slot: last + 1,
            in_flight: Tally::new(),
            queue: VecDeque::new(),
            phase1_end: last,
            last_heartbeat: self.clock.now(),
            reads: ReadIndex::new(),
            stop,
            progress: Progress::new(),
            idle_since: self.clock.now(),
            asleep: false,
            transfer: None,
            preferred_since: None,
            retry_transfer_at: 0,
            transfers_given_up: 0,
            preferred_missed: false,
            since: self.clock.now(),
            slept: false,
        }));
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
            if l.stop.is_some()
                || l.transfer.is_some()
                || l.queue.is_empty()
                || l.in_flight.len() as u64 >= self.opts.window
            {
                return;
            }
            let n = (l.queue.len()).min(
                self.opts
                    .max_batch
                    .clamp(1, crate::entry::MAX_BATCH_COMMANDS),
            );
            let commands: Arc<[Command]> = l.queue.drain(..n).collect();
            let slot = l.next_slot;
            l.next_slot += 1;
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
            && !l.hand_back_due(self.clock.now())
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
