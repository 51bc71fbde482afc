//! Leadership transfer (after Raft's TimeoutNow) and the hand-back to a
//! group's preferred leader.
//!
//! A leader asked to hand over to voter `to` stops proposing new slots
//! (commands queue, up to `max_queued`), waits until `to` has reported a
//! commit index at least the leader's own when the transfer began and has
//! acknowledged every slot the leader still has in flight, then sends it
//! `TimeoutNow`. The target starts an ordinary election at once: a ballot
//! above every one it has seen, phase 1 with a quorum. The old leader steps
//! down when it sees that higher ballot, answering its queued commands with
//! `NotLeader` naming the target. If none of this happens within an
//! election timeout the leader gives up and resumes proposing.
//!
//! Invariant: a transfer changes only *when* an election starts and *who*
//! starts it, never how ballots are chosen or promised, so safety rests on
//! the ballot rules alone. A stale or duplicated `TimeoutNow` (the receiver
//! promised a higher ballot since) is ignored.
//!
//! Preferred leaders: placement makes a group's first voter its preferred
//! leader. That voter acknowledges every heartbeat of another leader, so
//! the leader knows whether it is up and caught up. A leader that has seen
//! it silent for an election timeout (it failed over from it, or it was cut
//! off) hands leadership back once it has been heard from and caught up
//! for `preferred_leader_after_ticks` in a row (with a doubling wait after
//! each attempt that gave up). A leader that never missed it (an operator
//! moved leadership away from a live preferred leader) keeps leading. These
//! rules are kept, and tested, by the `hand_back` part.

use super::{Replica, Role};
use crate::ids::{Ballot, MemberId, NodeId, Slot};
use crate::message::Message;
use crate::server::StateMachine;
use serde::{Deserialize, Serialize};

/// A transfer under way at a leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    /// The voter that is to lead.
    to: MemberId,
    /// The leader's commit index when the transfer began: the target must
    /// have reported at least this much.
    commit_at_start: Slot,
    /// The leader gives up at this tick.
    until: u64,
    /// When `TimeoutNow` was last sent (resent once per heartbeat interval
    /// while the transfer lasts, in case it was lost).
    sent_at: Option<u64>,
    /// Started by the leader itself (a hand-back to the preferred leader,
    /// a hand-off while draining), not by a caller: it backs off if it
    /// gives up.
    automatic: bool,
}

impl Transfer {
    /// A transfer to `to` that a leader whose commit index is `commit`
    /// begins at `now` and gives up `timeout` ticks later (at least one);
    /// `automatic` if the leader starts it by itself.
    pub(super) fn new(to: MemberId, commit: Slot, now: u64, timeout: u64, automatic: bool) -> Self {
        Transfer {
            to,
            commit_at_start: commit,
            until: now + timeout.max(1),
            sent_at: None,
            automatic,
        }
    }

    /// The voter that is to lead.
    pub(super) fn to(&self) -> MemberId {
        self.to
    }

    /// Whether the leader started it by itself (it backs off if it gives
    /// up).
    pub(super) fn is_automatic(&self) -> bool {
        self.automatic
    }

    /// Whether the leader gives up at `now`.
    pub(super) fn expired(&self, now: u64) -> bool {
        now >= self.until
    }

    /// Whether the target, having reported commit index `reported`, holds
    /// every slot the leader knew chosen when the transfer began.
    pub(super) fn target_caught_up(&self, reported: Slot) -> bool {
        reported >= self.commit_at_start
    }

    /// Whether `TimeoutNow` may go (again) at `now`, if resent at most
    /// once every `every` ticks.
    pub(super) fn may_send(&self, now: u64, every: u64) -> bool {
        self.sent_at.is_none_or(|s| now >= s + every)
    }

    /// Notes that `TimeoutNow` went out at `now`.
    pub(super) fn note_sent(&mut self, now: u64) {
        self.sent_at = Some(now);
    }
}

/// Why a leadership transfer was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TransferError {
    /// Only the leader hands leadership over.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this replica believes in.
        leader: Option<MemberId>,
    },
    /// The target is this leader itself.
    #[error("the target is already the leader")]
    ToSelf,
    /// The target does not vote in the group's configuration.
    #[error("{0} is not a voter of the group")]
    NotAVoter(MemberId),
    /// A membership change is in flight; the transfer may follow it.
    #[error("a membership change is in flight; retry once it is done")]
    ReconfigInProgress,
    /// The target's node is draining: it takes no leadership.
    #[error("{0} is on a draining node; undrain it first")]
    Draining(MemberId),
    /// Leadership is already being handed to another member.
    #[error("leadership is already being handed to {to}")]
    InProgress {
        /// The target of the transfer under way.
        to: MemberId,
    },
}

impl<M: StateMachine> Replica<M> {
    /// Hands leadership to voter `to`: see the module documentation. `Ok`
    /// means the transfer started (or is already under way to `to`); whether
    /// it succeeds shows as `to` leading (and this replica following it),
    /// within about an election timeout, else this replica goes on leading.
    pub fn transfer_leadership(&mut self, to: MemberId) -> Result<(), TransferError> {
        if !self.is_leader() {
            // Whoever asks needs a leader, as a command's sender does.
            self.leader_wanted();
        }
        self.start_transfer(to, false)?;
        self.drain_inbox();
        Ok(())
    }

    /// The member this leader is handing leadership to, if a transfer is
    /// under way.
    pub fn transfer_target(&self) -> Option<MemberId> {
        match &self.role {
            Role::Leader(l) => l.transfer_target(),
            _ => None,
        }
    }

    /// Marks this replica as about to stop (its node shuts down): it no
    /// longer answers `TimeoutNow`, so no leadership is handed (back) to it.
    /// It still votes and may still win an election of its own timer, which
    /// safety and liveness may need.
    pub fn set_leaving(&mut self, leaving: bool) {
        self.leaving = leaving;
    }

    /// The voter (other than this replica) a leader should hand over to
    /// when it must go: among those whose node `alive` accepts and is not
    /// draining, the one that reported the most progress, the most recently
    /// heard from on a tie. `None` if this replica does not lead or no such
    /// voter exists.
    pub fn hand_over_target(&self, alive: impl Fn(NodeId) -> bool) -> Option<MemberId> {
        let Role::Leader(l) = &self.role else {
            return None;
        };
        self.config
            .voters
            .iter()
            .copied()
            .filter(|v| *v != self.id && alive(v.node) && !self.draining.contains(&v.node))
            .max_by_key(|v| {
                (
                    l.progress().acked(*v).unwrap_or(0),
                    l.progress().heard_at(*v).unwrap_or(0),
                    std::cmp::Reverse(*v),
                )
            })
    }

    pub(super) fn start_transfer(
        &mut self,
        to: MemberId,
        automatic: bool,
    ) -> Result<(), TransferError> {
        let leader = self.leader;
        let (now, commit) = (self.clock.now(), self.cursor.commit());
        let timeout = self.opts.election_ticks;
        let Role::Leader(l) = &mut self.role else {
            return Err(TransferError::NotLeader { leader });
        };
        if to == self.id {
            return Err(TransferError::ToSelf);
        }
        if !self.config.is_voter(to) {
            return Err(TransferError::NotAVoter(to));
        }
        if self.draining.contains(&to.node) {
            return Err(TransferError::Draining(to));
        }
        if l.change_in_flight() {
            return Err(TransferError::ReconfigInProgress);
        }
        if let Some(target) = l.transfer_target() {
            return if target == to {
                Ok(())
            } else {
                Err(TransferError::InProgress { to: target })
            };
        }
        tracing::info!(member = %self.id, %to, automatic, "handing leadership over");
        l.begin_transfer(Transfer::new(to, commit, now, timeout, automatic), now);
        // The heartbeat asks every member for its commit index (a probe
        // round), so an idle group learns at once how far the target is.
        self.heartbeat();
        self.try_hand_over();
        Ok(())
    }

    /// Sends `TimeoutNow` to the transfer's target once it holds everything
    /// this leader proposed (again at most once per heartbeat interval).
    fn try_hand_over(&mut self) {
        let (now, every) = (self.clock.now(), self.opts.heartbeat_ticks);
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let Some(t) = l.transfer() else {
            return;
        };
        let to = t.to();
        let reported = l.progress().commit(to).unwrap_or(0);
        if !t.target_caught_up(reported) || !l.acked_everything(to, l.last_proposed()) {
            return;
        }
        if !t.may_send(now, every) {
            return;
        }
        let ballot = l.ballot();
        if let Some(t) = l.transfer_mut() {
            t.note_sent(now);
        }
        tracing::debug!(member = %self.id, %to, "target caught up: TimeoutNow");
        self.send(to, Message::TimeoutNow { ballot });
    }

    /// A member answered the leader of `ballot`: it may be the transfer's
    /// target catching up.
    pub(super) fn on_member_progress(&mut self, from: MemberId, ballot: Ballot) {
        let target = matches!(&self.role, Role::Leader(l)
            if l.ballot() == ballot && l.transfer_target() == Some(from));
        if target {
            self.try_hand_over();
        }
    }

    /// Every leader tick: gives up a transfer past its deadline, resends
    /// `TimeoutNow`, hands leadership off if this replica's node is
    /// draining (see `drain`), else starts the hand-back to the preferred
    /// leader when it is due.
    pub(super) fn transfer_tick(&mut self) {
        let now = self.clock.now();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if let Some(t) = l.transfer() {
            if !t.expired(now) {
                self.try_hand_over();
                return;
            }
            if let Some(t) = l.give_up_transfer(now) {
                let to = t.to();
                tracing::info!(member = %self.id, %to, "leadership transfer gave up; leading on");
            }
            return;
        }
        if self.is_draining() {
            self.hand_off_while_draining();
        } else {
            self.hand_back_to_preferred();
        }
    }

    /// Starts a transfer to the group's first voter once it has been heard
    /// from and caught up for `preferred_leader_after_ticks` in a row, if
    /// this leader saw it silent for an election timeout before.
    fn hand_back_to_preferred(&mut self) {
        let after = self.opts.preferred_leader_after_ticks;
        let Some(&preferred) = self.config.voters.first() else {
            return;
        };
        if after == 0 || preferred == self.id {
            return;
        }
        let (now, commit) = (self.clock.now(), self.cursor.commit());
        // The preferred voter acknowledges every heartbeat.
        let recently = 2 * self.opts.heartbeat_ticks.max(1) + 1;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.is_asleep() {
            l.hand_back_mut().note_asleep();
            return;
        }
        if self.draining.contains(&preferred.node) {
            // No hand-back to a draining node; once it is undrained,
            // leadership goes back to it as after a failover.
            l.hand_back_mut().note_draining();
            return;
        }
        let last_heard = l.progress().heard_at(preferred);
        let heard = last_heard.is_some_and(|t| now <= t + recently);
        let caught_up = l.progress().acked(preferred).is_some_and(|s| s >= commit);
        let ready = !l.change_in_flight() && heard && caught_up;
        if !l.hand_back_mut().look(now, last_heard, ready) {
            return;
        }
        if let Err(e) = self.start_transfer(preferred, true) {
            tracing::debug!(member = %self.id, %preferred, "no hand-back: {e}");
        }
    }

    /// Whether this replica is its group's preferred leader (first voter)
    /// and follows another: it then acknowledges every heartbeat, so the
    /// leader knows when to hand leadership back.
    pub(super) fn is_preferred_follower(&self, leader: MemberId) -> bool {
        leader != self.id
            && self.opts.preferred_leader_after_ticks > 0
            && self.config.voters.first() == Some(&self.id)
    }

    pub(super) fn on_timeout_now(&mut self, from: MemberId, ballot: Ballot) {
        self.observe_ballot(ballot);
        let current = ballot.leader == from && ballot >= self.votes.promised();
        // A draining replica takes no leadership handed to it (its own
        // election timer still runs: see `drain`).
        if !current || self.leaving || self.is_draining() || self.is_leader() || self.removed {
            return;
        }
        if !self.config.is_voter(self.id) {
            return;
        }
        tracing::info!(member = %self.id, from = %from, "leadership handed over: campaigning");
        if self.bugs.transfer_reuses_ballot {
            self.campaign_in(ballot);
        } else {
            self.start_election();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Transfer;
    use crate::ids::MemberId;

    /// A transfer to member 2 begun at tick 100 with commit index 7,
    /// giving up after 10 ticks.
    fn transfer() -> Transfer {
        Transfer::new(MemberId::new(2, 0), 7, 100, 10, false)
    }

    #[test]
    fn a_transfer_gives_up_an_election_timeout_after_it_began() {
        let t = transfer();
        assert!(!t.expired(109));
        assert!(t.expired(110));
    }

    #[test]
    fn a_transfer_lasts_at_least_one_tick() {
        let t = Transfer::new(MemberId::new(2, 0), 7, 100, 0, false);
        assert!(!t.expired(100));
        assert!(t.expired(101));
    }

    #[test]
    fn the_target_must_report_the_commit_index_the_leader_had_when_the_transfer_began() {
        let t = transfer();
        assert!(!t.target_caught_up(6));
        assert!(t.target_caught_up(7));
        assert!(t.target_caught_up(8));
    }

    #[test]
    fn timeout_now_goes_out_at_most_once_per_heartbeat_interval() {
        let mut t = transfer();
        assert!(t.may_send(100, 3), "the first may go at once");
        t.note_sent(100);
        assert!(!t.may_send(102, 3));
        assert!(t.may_send(103, 3));
    }
}
