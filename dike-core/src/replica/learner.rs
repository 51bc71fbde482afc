//! The learner: which slots are chosen, applying them in order, catching up
//! from other replicas, and snapshots with log truncation.
//!
//! Invariant: every slot up to the commit index is chosen, and slots are
//! applied one by one in order, each exactly once per life of the state
//! machine (a rebuild after a panic replays without effects). How far the
//! log is known chosen, written down and applied is kept by the `cursor`
//! part (`applied <= commit` and the rest of its rules live there).

use super::{Replica, Role};
use crate::entry::Entry;
use crate::ids::{Ballot, MemberId, Slot};
use crate::message::{Message, MAX_CHOSEN_ENTRIES};
use crate::ready::{AppliedSlot, RequestError, RequestId, Response};
use crate::server::{Applied, StateMachine};
use crate::session::SessionCheck;
use crate::storage::{Accepted, Snapshot, Write};
use std::sync::Arc;

impl<M: StateMachine> Replica<M> {
    /// A leader in `ballot` says every slot up to `commit` is chosen. Our
    /// entries accepted in that same ballot carry the leader's value, so
    /// they are chosen; for others we ask the leader.
    pub(super) fn learn_commit(&mut self, leader: MemberId, ballot: Ballot, commit: Slot) {
        while self.cursor.commit() < commit {
            let next = self.cursor.commit() + 1;
            let known = self
                .votes
                .get(next)
                .is_some_and(|e| e.chosen || e.value.ballot == ballot);
            if !known {
                break;
            }
            self.votes.mark_chosen(next);
            self.cursor.commit_through(next);
        }
        self.apply_chosen();
        if self.cursor.commit() < commit {
            self.request_catch_up(leader, false);
        }
    }

    /// Asks `from` for chosen entries after our commit index, at most once
    /// per heartbeat interval unless `now` is set.
    pub(super) fn request_catch_up(&mut self, from: MemberId, now: bool) {
        if from == self.id {
            return;
        }
        let every = self.opts.heartbeat_ticks;
        if let Some(from_slot) = self.cursor.ask_catch_up(self.clock.now(), every, now) {
            self.send(from, Message::CatchUp { from: from_slot });
        }
    }

    /// Extends `commit` over contiguous chosen slots and applies them.
    pub(super) fn advance_commit(&mut self) {
        while let Some(e) = self.votes.get(self.cursor.commit() + 1) {
            if !e.chosen {
                break;
            }
            self.cursor.commit_through(self.cursor.commit() + 1);
        }
        self.prune_in_flight();
        self.apply_chosen();
    }

    pub(super) fn on_catch_up(&mut self, from: MemberId, slot: Slot) {
        if let Role::Leader(l) = &mut self.role {
            l.note_catch_up(from, slot.saturating_sub(1));
        }
        // The sender knows every slot before `slot` chosen: if that is more
        // than this replica knows, it asks back (in an idle group where
        // nobody leads, nobody else would tell it).
        if slot > self.cursor.commit().saturating_add(1) {
            self.request_catch_up(from, false);
        }
        let mut slot = slot;
        if slot <= self.cursor.snapshot_slot() {
            if let Some(snapshot) = self.cursor.snapshot().cloned() {
                // The snapshot, then what was chosen after it: a member that
                // gets only the snapshot from a group about to sleep would
                // hear of the later slots from nobody.
                slot = snapshot.slot + 1;
                self.send(from, Message::InstallSnapshot { snapshot });
            }
        }
        let commit = self.cursor.commit();
        let all_sent = slot > commit || self.send_chosen_from(from, slot) >= commit;
        // A sleeping leader tells a member that asks (one that restarted,
        // say) that the group sleeps, once it sent all it was missing: else
        // the member, hearing nothing, would wake the group with an election.
        if let Role::Leader(l) = &self.role {
            if l.is_asleep() && all_sent && from != self.id {
                let msg = Message::Heartbeat {
                    ballot: l.ballot(),
                    commit,
                    read_round: 0,
                    hibernate: true,
                };
                self.send(from, msg);
            }
        }
    }

    /// Sends `to` the chosen entries from `slot` on, at most a catch-up
    /// batch of them; returns the last slot of the batch.
    fn send_chosen_from(&mut self, to: MemberId, slot: Slot) -> Slot {
        let commit = self.cursor.commit();
        let end = commit.min(
            slot.saturating_add(self.opts.catchup_batch.clamp(1, MAX_CHOSEN_ENTRIES) as u64)
                .saturating_sub(1),
        );
        let entries: Vec<(Slot, Accepted)> = self
            .votes
            .range(slot..=end)
            .filter(|(_, e)| e.chosen)
            .map(|(s, e)| (s, e.value.clone()))
            .collect();
        if !entries.is_empty() {
            self.send(to, Message::Chosen { entries, commit });
        }
        end
    }

    pub(super) fn on_chosen(
        &mut self,
        from: MemberId,
        entries: Vec<(Slot, Accepted)>,
        their_commit: Slot,
    ) {
        for (slot, value) in entries {
            if slot > self.cursor.commit() {
                // A value chosen in a higher ballot means our own leadership
                // (if any) is over: a leader's commit index must only cover
                // slots its own ballot's proposals won, because followers
                // infer "chosen" from entries accepted in that ballot.
                self.observe_ballot(value.ballot);
                self.mark_chosen(slot, value);
            }
        }
        self.advance_commit();
        self.try_become_leader();
        if self.cursor.commit() < their_commit {
            self.request_catch_up(from, true);
        }
    }

    pub(super) fn on_install_snapshot(&mut self, snap: Arc<Snapshot>) {
        if snap.slot <= self.cursor.applied() {
            return;
        }
        if let Err(e) = self.machine.import(&snap.state) {
            tracing::warn!(member = %self.id, slot = snap.slot, error = %e, "ignoring a snapshot that does not load");
            return;
        }
        tracing::debug!(member = %self.id, slot = snap.slot, "installed snapshot");
        if matches!(self.role, Role::Leader(_)) {
            // Someone chose slots past our commit index: we are stale (and
            // our commit index must not come to cover proposals of ours
            // that lost).
            self.step_down(None);
        }
        self.sessions = snap.sessions.clone();
        if snap.config.epoch > self.config.epoch {
            // The snapshot is past a stop-sign we never applied: any role we
            // held belonged to the old configuration.
            if !matches!(self.role, Role::Follower) {
                self.step_down(None);
            }
            self.config = snap.config.clone();
            self.removed = !self.config.all_members().any(|m| m == self.id);
        }
        self.votes.compact_through(snap.slot);
        self.failed.clear();
        let gap = self.opts.snapshot_interval + self.rng.below(self.opts.snapshot_jitter + 1);
        self.ready.writes.push(Write::Snapshot(snap.clone()));
        self.cursor.install(snap, gap);
        self.answer_waiters_from_sessions();
        self.prune_in_flight();
        self.advance_commit();
        self.try_become_leader();
    }

    /// Local clients whose commands the snapshot already applied get their
    /// cached replies.
    fn answer_waiters_from_sessions(&mut self) {
        let done: Vec<(RequestId, Result<Vec<u8>, RequestError>)> = self
            .waiting
            .iter()
            .filter_map(|id| match id {
                RequestId::Command(c, s) => match self.sessions.check(*c, *s) {
                    SessionCheck::Duplicate(r) => Some((*id, r.map_err(RequestError::Application))),
                    SessionCheck::Stale => Some((*id, Err(RequestError::Stale))),
                    SessionCheck::Expired => Some((*id, Err(RequestError::SessionExpired))),
                    SessionCheck::New => None,
                },
                RequestId::Query(_) | RequestId::Reconfig(_) => None,
            })
            .collect();
        for (id, result) in done {
            self.respond(id, result);
        }
    }

    /// Applies every chosen slot after `applied`.
    pub(super) fn apply_chosen(&mut self) {
        while let Some(slot) = self.cursor.next_to_apply() {
            let Some(e) = self.votes.get(slot) else { break };
            let entry = e.value.entry.clone();
            self.apply_slot(slot, &entry);
            self.cursor.applied_next();
            self.maybe_snapshot();
        }
        self.serve_reads();
    }

    fn apply_slot(&mut self, slot: Slot, entry: &Entry) {
        if let Entry::StopSign(next) = entry {
            self.apply_stop_sign(slot, next);
        }
        let Entry::Batch(batch) = entry else {
            if self.trace {
                self.ready.applied.push(AppliedSlot {
                    slot,
                    entry: entry.clone(),
                    fresh: Vec::new(),
                });
            }
            return;
        };
        let mine = batch.proposer == self.id && batch.boot == self.boot;
        let mut fresh = Vec::with_capacity(if self.trace { batch.commands.len() } else { 0 });
        for (i, cmd) in batch.commands.iter().enumerate() {
            let id = RequestId::Command(cmd.client, cmd.seq);
            let (result, was_fresh) = match self.sessions.check(cmd.client, cmd.seq) {
                SessionCheck::Duplicate(r) => {
                    self.sessions.acknowledge(cmd.client, cmd.ack_floor);
                    (r.map_err(RequestError::Application), false)
                }
                SessionCheck::Stale => (Err(RequestError::Stale), false),
                SessionCheck::Expired => (Err(RequestError::SessionExpired), false),
                SessionCheck::New => {
                    let (reply, effect) = match self.machine.apply(&cmd.payload) {
                        Applied::Done { reply, effect } => (reply, effect),
                        Applied::Panicked(msg) => {
                            self.failed.insert((slot, i), msg.clone());
                            self.rebuild_state(slot, i);
                            (Err(msg), None)
                        }
                    };
                    let ok = reply.is_ok();
                    self.record_reply(cmd, reply.clone(), slot);
                    if let (true, Some(effect)) = (mine, effect) {
                        self.ready.effects.push(effect);
                    }
                    (reply.map_err(RequestError::Application), ok)
                }
            };
            if self.trace {
                fresh.push(was_fresh);
            }
            if self.waiting.remove(&id) {
                self.ready.responses.push(Response { to: id, result });
            }
        }
        if self.trace {
            self.ready.applied.push(AppliedSlot {
                slot,
                entry: entry.clone(),
                fresh,
            });
        }
    }

    /// After a panic while applying command `index` of `slot`, rebuilds the
    /// state machine and session table from the last snapshot by replaying
    /// every command before it, skipping the ones that failed. Deterministic
    /// on every replica; effects are not run again.
    fn rebuild_state(&mut self, slot: Slot, index: usize) {
        tracing::warn!(member = %self.id, slot, index, "server panicked; rebuilding its state");
        let base = match self.cursor.snapshot() {
            Some(s) => {
                if let Err(e) = self.machine.import(&s.state) {
                    // The snapshot loaded before; it must load again.
                    tracing::error!(member = %self.id, error = %e, "snapshot no longer loads");
                }
                self.sessions = s.sessions.clone();
                s.slot
            }
            None => {
                self.machine.reset();
                self.sessions = crate::session::SessionTable::new();
                0
            }
        };
        let entries: Vec<(Slot, Entry)> = self
            .votes
            .range(base + 1..=slot)
            .map(|(s, e)| (s, e.value.entry.clone()))
            .collect();
        for (s, entry) in entries {
            let Entry::Batch(batch) = entry else { continue };
            for (i, cmd) in batch.commands.iter().enumerate() {
                if s == slot && i >= index {
                    return;
                }
                if let Some(msg) = self.failed.get(&(s, i)) {
                    if self.sessions.check(cmd.client, cmd.seq) == SessionCheck::New {
                        let reply = Err(msg.clone());
                        self.record_reply(cmd, reply, s);
                    }
                    continue;
                }
                match self.sessions.check(cmd.client, cmd.seq) {
                    SessionCheck::New => {
                        let reply = match self.machine.apply(&cmd.payload) {
                            Applied::Done { reply, .. } => reply,
                            Applied::Panicked(m) => Err(m),
                        };
                        self.record_reply(cmd, reply, s);
                    }
                    SessionCheck::Duplicate(_) => {
                        self.sessions.acknowledge(cmd.client, cmd.ack_floor)
                    }
                    SessionCheck::Stale | SessionCheck::Expired => {}
                }
            }
        }
    }

    /// Records `cmd`'s reply in the session table.
    fn record_reply(
        &mut self,
        cmd: &crate::entry::Command,
        reply: crate::session::StoredReply,
        slot: Slot,
    ) {
        let max = self.opts.max_sessions;
        self.sessions
            .record(cmd.client, cmd.seq, cmd.ack_floor, reply, slot, max);
    }

    /// Takes a snapshot when enough slots were applied since the last one,
    /// and drops the log at or below it.
    fn maybe_snapshot(&mut self) {
        if self.cursor.snapshot_due() {
            self.snapshot_now();
        }
    }

    /// The group goes to sleep (see `ReplicaOptions::hibernate_snapshot_slots`):
    /// a replica that applied that many slots since its last snapshot
    /// takes one now and drops its log up to it, and every replica frees
    /// its spare buffer space, so a sleeping group holds its state and
    /// little more, however much it was written before.
    pub(super) fn on_sleep(&mut self) {
        let every = self.opts.hibernate_snapshot_slots;
        if every > 0 && self.cursor.applied() >= self.cursor.snapshot_slot() + every {
            self.snapshot_now();
        }
        self.inbox.shrink_to_fit();
        if let Role::Leader(l) = &mut self.role {
            l.shrink_to_fit();
        }
    }

    /// Takes a snapshot of the state applied so far and drops the log at
    /// or below it; the next one is due `snapshot_interval` (plus jitter)
    /// slots later.
    fn snapshot_now(&mut self) {
        let state = match self.machine.export() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(member = %self.id, error = %e, "cannot export state; snapshot skipped");
                self.cursor.postpone_snapshot(self.opts.snapshot_interval);
                return;
            }
        };
        let gap =
            self.opts.snapshot_interval.max(1) + self.rng.below(self.opts.snapshot_jitter + 1);
        let (config, sessions) = (self.config.clone(), self.sessions.clone());
        let snap = self.cursor.take_snapshot(config, state, sessions, gap);
        self.votes.compact_through(snap.slot);
        self.failed.clear();
        self.ready.writes.push(Write::Snapshot(snap));
    }
}
