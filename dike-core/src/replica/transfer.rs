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
//! moved leadership away from a live preferred leader) keeps leading.

use super::{Replica, Role};
use crate::ids::{Ballot, MemberId, NodeId, Slot};
use crate::message::Message;
use crate::server::StateMachine;
use serde::{Deserialize, Serialize};

/// A transfer under way at a leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    /// The voter that is to lead.
    pub to: MemberId,
    /// The leader's commit index when the transfer began: the target must
    /// have reported at least this much.
    pub commit_at_start: Slot,
    /// The leader gives up at this tick.
    pub until: u64,
    /// When `TimeoutNow` was last sent (resent once per heartbeat interval
    /// while the transfer lasts, in case it was lost).
    pub sent_at: Option<u64>,
    /// Started by the leader itself (a hand-back to the preferred leader,
    /// a hand-off while draining), not by a caller: it backs off if it
    /// gives up.
    pub automatic: bool,
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
            Role::Leader(l) => l.transfer.as_ref().map(|t| t.to),
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
                    l.progress.acked(*v).unwrap_or(0),
                    l.progress.heard_at(*v).unwrap_or(0),
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
        let until = now + self.opts.election_ticks.max(1);
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
        if l.stop.is_some() {
            return Err(TransferError::ReconfigInProgress);
        }
        if let Some(t) = &l.transfer {
            return if t.to == to {
                Ok(())
            } else {
                Err(TransferError::InProgress { to: t.to })
            };
        }
        tracing::info!(member = %self.id, %to, automatic, "handing leadership over");
        l.transfer = Some(Transfer {
            to,
            commit_at_start: commit,
            until,
            sent_at: None,
            automatic,
        });
        l.wake(now);
        // The heartbeat asks every member for its commit index (a probe
        // round), so an idle group learns at once how far the target is.
        self.heartbeat();
        self.try_hand_over();
        Ok(())
    }

    /// Sends `TimeoutNow` to the transfer's target once it holds everything
    /// this leader proposed (again at most once per heartbeat interval).
    fn try_hand_over(&mut self) {
        let now = self.clock.now();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let Some(t) = &l.transfer else {
            return;
        };
        let to = t.to;
        let reported = l.progress.commit(to).unwrap_or(0);
        if reported < t.commit_at_start || !l.acked_everything(to, l.last_proposed()) {
            return;
        }
        if t.sent_at
            .is_some_and(|s| now < s + self.opts.heartbeat_ticks)
        {
            return;
        }
        let ballot = l.ballot;
        if let Some(t) = l.transfer.as_mut() {
            t.sent_at = Some(now);
        }
        tracing::debug!(member = %self.id, %to, "target caught up: TimeoutNow");
        self.send(to, Message::TimeoutNow { ballot });
    }

    /// A member answered the leader of `ballot`: it may be the transfer's
    /// target catching up.
    pub(super) fn on_member_progress(&mut self, from: MemberId, ballot: Ballot) {
        let target = matches!(&self.role, Role::Leader(l)
            if l.ballot == ballot && l.transfer.as_ref().is_some_and(|t| t.to == from));
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
        let after = self.opts.preferred_leader_after_ticks;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if let Some(t) = &l.transfer {
            if now < t.until {
                self.try_hand_over();
                return;
            }
            let (to, automatic) = (t.to, t.automatic);
            tracing::info!(member = %self.id, %to, "leadership transfer gave up; leading on");
            l.transfer = None;
            l.wake(now);
            l.preferred_since = None;
            if automatic {
                l.transfers_given_up = l.transfers_given_up.saturating_add(1);
                let wait = after
                    .max(1)
                    .saturating_mul(1 << l.transfers_given_up.min(5));
                l.retry_transfer_at = now + wait;
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
        if l.asleep {
            l.slept = true;
            l.preferred_since = None;
            return;
        }
        if self.draining.contains(&preferred.node) {
            // No hand-back to a draining node; once it is undrained,
            // leadership goes back to it as after a failover.
            l.preferred_missed = true;
            l.preferred_since = None;
            return;
        }
        if std::mem::take(&mut l.slept) {
            l.since = now;
        }
        let last_heard = l.progress.heard_at(preferred).unwrap_or(0).max(l.since);
        if now >= last_heard + self.opts.election_ticks.max(1) {
            l.preferred_missed = true;
        }
        if !l.preferred_missed {
            return;
        }
        let heard = l
            .progress
            .heard_at(preferred)
            .is_some_and(|t| now <= t + recently);
        let caught_up = l.progress.acked(preferred).is_some_and(|s| s >= commit);
        if l.stop.is_some() || !heard || !caught_up {
            l.preferred_since = None;
            return;
        }
        let since = *l.preferred_since.get_or_insert(now);
        if now < since + after || now < l.retry_transfer_at {
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
