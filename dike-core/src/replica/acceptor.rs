//! The acceptor: phase 1b (promises) and phase 2b (accepts).
//!
//! Invariant: once a ballot is promised, nothing from a lower ballot is
//! accepted; and every `Promise`/`Accepted` is sent after the write that
//! backs it, so a restarted acceptor never contradicts what it said.

use super::{Replica, Role};
use crate::entry::Entry;
use crate::ids::{Ballot, MemberId, Slot};
use crate::message::Message;
use crate::server::StateMachine;
use crate::storage::{Accepted, Write};

impl<M: StateMachine> Replica<M> {
    /// Raises the promise to `b` (with a write) if it is higher.
    fn promise(&mut self, b: Ballot) {
        if self.votes.promise(b) {
            self.ready.writes.push(Write::Promise(b));
        }
    }

    /// The ballot to reject `ballot` with, if it must be rejected: it is
    /// below the promise, or belongs to a configuration this replica already
    /// left behind.
    fn fence(&self, ballot: Ballot) -> Option<Ballot> {
        if ballot.epoch < self.config.epoch {
            let floor = Ballot {
                epoch: self.config.epoch,
                round: 0,
                leader: MemberId::new(0, 0),
            };
            return Some(self.votes.promised().max(floor));
        }
        let promised = self.votes.promised();
        (ballot < promised).then_some(promised)
    }

    /// Whether `ballot` belongs to a configuration this replica has not
    /// applied yet. Such a ballot gets no promise and no acceptance until we
    /// caught up to the stop-sign that started it (requested here): every
    /// acceptor taking part in an epoch then durably knows that its
    /// stop-sign was chosen, so none can be fenced off by a ballot whose
    /// reason it forgot.
    fn ahead_of_us(&mut self, from: MemberId, ballot: Ballot) -> bool {
        if ballot.epoch > self.config.epoch {
            if from != self.id {
                self.request_catch_up(from, false);
            }
            return true;
        }
        false
    }

    /// Whether a message in `ballot` may be acted on: notes the ballot,
    /// answers a fenced one with a `Nack` (unless `ignore_fence`, a
    /// deliberate bug), and holds back one from a configuration not applied
    /// yet.
    fn admit(&mut self, from: MemberId, ballot: Ballot, ignore_fence: bool) -> bool {
        self.observe_ballot(ballot);
        if let Some(promised) = self.fence(ballot).filter(|_| !ignore_fence) {
            self.send(from, Message::Nack { promised });
            return false;
        }
        !self.ahead_of_us(from, ballot)
    }

    /// Stores `value` at `slot`, in memory and (through `Ready`) on disk.
    pub(super) fn store(&mut self, slot: Slot, value: Accepted, chosen: bool) {
        self.ready.writes.push(Write::Accept {
            slot,
            value: value.clone(),
        });
        self.votes.insert(slot, value, chosen);
    }

    pub(super) fn on_prepare(&mut self, from: MemberId, ballot: Ballot, slot: Slot) {
        if !self.admit(from, ballot, false) {
            return;
        }
        // Only voters vote.
        let voting = self.config.is_voter(self.id) && !self.removed;
        if !voting && !self.bugs.count_non_voters {
            return;
        }
        if ballot > self.votes.promised() && from != self.id {
            // Someone is campaigning: give it time before competing.
            self.leader = None;
            self.reset_election_timer();
        }
        if from != self.id && ballot >= self.votes.promised() {
            self.clock.heard();
        }
        self.promise(ballot);
        let accepted = self.votes.accepted_from(slot);
        let reply = Message::Promise {
            ballot,
            from: slot,
            accepted,
            commit: self.cursor.commit(),
            snapshot_slot: self.cursor.snapshot_slot(),
        };
        self.send_after_write(from, reply);
    }

    pub(super) fn on_accept(
        &mut self,
        from: MemberId,
        ballot: Ballot,
        slot: Slot,
        entry: Entry,
        commit: Slot,
    ) {
        if !self.admit(from, ballot, self.bugs.accept_lower_ballot) {
            return;
        }
        self.follow(ballot);
        self.promise(ballot);
        if slot <= self.cursor.snapshot_slot() {
            // Chosen and compacted here; the sender is behind.
            self.send(
                from,
                Message::Compacted {
                    upto: self.cursor.snapshot_slot(),
                },
            );
        } else {
            match self.votes.get(slot) {
                // A chosen value is never replaced. A proposal from a ballot at
                // or above the chosen value's ballot carries the same value, so
                // acknowledging it is truthful; a lower one may not, so the
                // sender is told what was chosen instead.
                Some(e) if e.chosen && ballot < e.value.ballot => {
                    let chosen = vec![(slot, e.value.clone())];
                    self.send(
                        from,
                        Message::Chosen {
                            entries: chosen,
                            commit: self.cursor.commit(),
                        },
                    );
                }
                Some(e) if e.chosen => {
                    self.send_after_write(from, Message::Accepted { ballot, slot });
                }
                _ => {
                    self.store(slot, Accepted { ballot, entry }, false);
                    self.send_after_write(from, Message::Accepted { ballot, slot });
                }
            }
        }
        if from != self.id {
            self.learn_commit(from, ballot, commit);
        }
    }

    pub(super) fn on_heartbeat(
        &mut self,
        from: MemberId,
        ballot: Ballot,
        commit: Slot,
        read_round: u64,
        hibernate: bool,
    ) {
        if self.bugs.ack_stale_read_rounds && read_round > 0 && ballot < self.votes.promised() {
            self.ack_heartbeat(from, ballot, read_round);
        }
        if !self.admit(from, ballot, false) {
            return;
        }
        let was_asleep = self.hibernating;
        self.follow(ballot);
        self.learn_commit(from, ballot, commit);
        self.hibernating = hibernate && self.leader == Some(ballot.leader);
        if self.hibernating && !was_asleep {
            self.on_sleep();
        }
        // Voters answer read rounds and hibernation requests (with their
        // commit index); learners always report progress, and so does the
        // preferred leader while another leads (see `transfer`).
        if read_round > 0
            || hibernate
            || !self.config.is_voter(self.id)
            || self.is_preferred_follower(ballot.leader)
        {
            self.ack_heartbeat(from, ballot, read_round);
        }
    }

    fn ack_heartbeat(&mut self, to: MemberId, ballot: Ballot, read_round: u64) {
        let commit = self.cursor.commit();
        self.send(
            to,
            Message::HeartbeatAck {
                ballot,
                read_round,
                commit,
            },
        );
    }

    /// Treats `ballot`'s owner as the leader and restarts the election timer.
    fn follow(&mut self, ballot: Ballot) {
        if ballot.leader == self.id {
            return;
        }
        if !matches!(self.role, Role::Follower) {
            // observe_ballot already stepped down for a higher ballot; an
            // equal one cannot come from someone else.
            return;
        }
        self.clock.heard();
        self.leader = Some(ballot.leader);
        self.catching_up = false;
        self.hibernating = false;
        // Timeouts go back to their base once this leader has lasted a
        // whole (stretched) one.
        self.clock.follow(ballot);
        self.reset_election_timer();
    }
}
