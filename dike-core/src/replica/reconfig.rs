//! Changing a group's members through its own log, one change at a time,
//! with stop-signs (after Stoppable Paxos).
//!
//! A change is a `StopSign(next)` entry at slot `s`: it closes the current
//! configuration (epoch `e`) at `s`, and every slot after `s` belongs to
//! `next` (epoch `e + 1`), which starts with a fresh phase 1 among its own
//! voters. Invariants:
//! - a leader proposes nothing after a stop-sign it proposes, and refuses a
//!   second change while one is in flight, so there is never a moment with
//!   two configurations choosing the same slots;
//! - if a stop-sign is chosen at `s`, nothing is chosen after `s` in the old
//!   configuration (a new leader re-proposes a stop-sign only when no later
//!   slot holds a value from a higher ballot, else it replaces it by a no-op);
//! - ballots start with the epoch, so acceptors that joined epoch `e + 1`
//!   reject every ballot of epoch `e`;
//! - a member is `(node, incarnation)`: a node back with an empty disk is a
//!   new member that no quorum counts until a change adds it.

use super::{Replica, Role};
use crate::config::Config;
use crate::entry::Entry;
use crate::ids::{MemberId, Slot};
use crate::ready::{RequestError, RequestId};
use crate::server::StateMachine;
use serde::{Deserialize, Serialize};

/// One membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigChange {
    /// Adds a non-voting learner, which receives the log (snapshot first).
    AddLearner(MemberId),
    /// Turns a caught-up learner into a voter (grows the voters).
    Promote(MemberId),
    /// Swaps voter `old` for caught-up learner `new` in one entry.
    Replace {
        /// The voter that leaves.
        old: MemberId,
        /// The learner that takes its place.
        new: MemberId,
    },
    /// Removes a voter or a learner.
    Remove(MemberId),
}

/// Why a change was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReconfigError {
    /// Only the leader proposes changes.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this replica believes in.
        leader: Option<MemberId>,
    },
    /// Another change is still in flight; retry once it is done.
    #[error("a membership change is already in flight")]
    InProgress,
    /// The member is already part of the group (as voter or learner).
    #[error("{0} is already a member of the group")]
    AlreadyMember(MemberId),
    /// The member is not part of the group in the needed role.
    #[error("{0} is not a {1} of the group")]
    NotA(MemberId, &'static str),
    /// The learner is too far behind to vote yet, or has not reported how
    /// far it is to this leader.
    #[error("learner {member} is not caught up: {lag} slots behind, or not heard from (at most {allowed} allowed)")]
    NotCaughtUp {
        /// The learner.
        member: MemberId,
        /// How far behind the commit index it is.
        lag: u64,
        /// The most the options allow.
        allowed: u64,
    },
    /// The change would leave the group without voters.
    #[error("the group would be left without voters")]
    NoVoters,
    /// The group already has as many voters (or learners) as a
    /// configuration may hold.
    #[error("the group already has {max} {role}, the most a configuration may hold")]
    TooMany {
        /// "voters" or "learners".
        role: &'static str,
        /// [`crate::config::MAX_MEMBERS`].
        max: usize,
    },
    /// The leader is handing leadership over; ask the next leader.
    #[error("leadership is being handed to {to}; retry at the next leader")]
    TransferInProgress {
        /// The transfer's target.
        to: MemberId,
    },
}

impl ConfigChange {
    /// The configuration after this change, or why it cannot apply to `c`.
    pub fn apply_to(&self, c: &Config) -> Result<Config, ReconfigError> {
        let mut next = Config {
            epoch: c.epoch + 1,
            voters: c.voters.clone(),
            learners: c.learners.clone(),
        };
        let is_member = |m: &MemberId| c.voters.contains(m) || c.learners.contains(m);
        match *self {
            ConfigChange::AddLearner(m) => {
                if is_member(&m) {
                    return Err(ReconfigError::AlreadyMember(m));
                }
                if next.learners.len() >= crate::config::MAX_MEMBERS {
                    return Err(ReconfigError::TooMany {
                        role: "learners",
                        max: crate::config::MAX_MEMBERS,
                    });
                }
                next.learners.push(m);
            }
            ConfigChange::Promote(m) => {
                if !c.learners.contains(&m) {
                    return Err(ReconfigError::NotA(m, "learner"));
                }
                if next.voters.len() >= crate::config::MAX_MEMBERS {
                    return Err(ReconfigError::TooMany {
                        role: "voters",
                        max: crate::config::MAX_MEMBERS,
                    });
                }
                next.learners.retain(|x| *x != m);
                next.voters.push(m);
            }
            ConfigChange::Replace { old, new } => {
                if !c.voters.contains(&old) {
                    return Err(ReconfigError::NotA(old, "voter"));
                }
                if !c.learners.contains(&new) {
                    return Err(ReconfigError::NotA(new, "learner"));
                }
                next.learners.retain(|x| *x != new);
                for v in next.voters.iter_mut() {
                    if *v == old {
                        *v = new;
                    }
                }
            }
            ConfigChange::Remove(m) => {
                if !is_member(&m) {
                    return Err(ReconfigError::NotA(m, "member"));
                }
                next.voters.retain(|x| *x != m);
                next.learners.retain(|x| *x != m);
                if next.voters.is_empty() {
                    return Err(ReconfigError::NoVoters);
                }
            }
        }
        Ok(next)
    }

    /// The learner this change makes a voter, if any.
    fn promoted(&self) -> Option<MemberId> {
        match *self {
            ConfigChange::Promote(m) | ConfigChange::Replace { new: m, .. } => Some(m),
            _ => None,
        }
    }
}

impl<M: StateMachine> Replica<M> {
    /// Proposes a membership change (leader only). The change is done when
    /// its stop-sign is chosen and applied: then a response for
    /// `RequestId::Reconfig(id)` carries the new configuration (encoded).
    /// Refused at once if this replica does not lead, if another change is in
    /// flight, or if a learner to promote is not caught up.
    pub fn propose_change(&mut self, id: u64, change: ConfigChange) -> Result<(), ReconfigError> {
        let leader = self.leader;
        let commit = self.cursor.commit();
        let max_lag = self.opts.max_learner_lag;
        let concurrent_ok = self.bugs.concurrent_changes;
        let unheard_ok = self.bugs.promote_unheard_learners;
        let Role::Leader(l) = &mut self.role else {
            // Whoever asks needs a leader, as a command's sender does.
            self.leader_wanted();
            return Err(ReconfigError::NotLeader { leader });
        };
        if l.change_in_flight() && !concurrent_ok {
            return Err(ReconfigError::InProgress);
        }
        if let Some(to) = l.transfer_target() {
            return Err(ReconfigError::TransferInProgress { to });
        }
        let next = change.apply_to(&self.config)?;
        if let Some(m) = change.promoted() {
            // A learner this leader never heard from is not caught up,
            // however young the log: it may not even run yet, and a voter
            // that does not answer costs the group a vote (a new master
            // promoted before its replica started left the master group
            // without a quorum when one more master died).
            let heard = l.progress().acked(m);
            let lag = commit.saturating_sub(heard.unwrap_or(0));
            if (heard.is_none() && !unheard_ok) || lag > max_lag {
                return Err(ReconfigError::NotCaughtUp {
                    member: m,
                    lag,
                    allowed: max_lag,
                });
            }
        }
        tracing::info!(member = %self.id, ?change, epoch = next.epoch, "proposing membership change");
        l.wake(self.clock.now());
        self.flush_proposals();
        self.propose_stop_sign(next);
        self.waiting.insert(RequestId::Reconfig(id));
        Ok(())
    }

    /// Whether this replica learned that it is no longer a member.
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// Applies a chosen stop-sign at `slot`: the next configuration governs
    /// every later slot, and leadership starts over in the new epoch.
    pub(super) fn apply_stop_sign(&mut self, slot: Slot, next: &Config) {
        if next.epoch != self.config.epoch + 1 {
            // Left over from an older configuration: changes nothing. A
            // leader that re-proposed it may go on proposing.
            if let Role::Leader(l) = &mut self.role {
                l.forget_stop(slot);
            }
            return;
        }
        tracing::info!(member = %self.id, slot, epoch = next.epoch, voters = ?next.voters, "configuration changed");
        let old_leader = self.leader();
        if let Role::Leader(l) = &self.role {
            // Members that leave hear no more from the new epoch: tell them
            // now that the stop-sign is chosen, so they learn they left. A
            // leader that leaves itself tells every member, old and new:
            // it will send nothing more (the runtime stops a replaced
            // replica at once), and without this the members that stay
            // would learn the stop-sign only from an election timeout in
            // the old epoch — never, in a hibernating group.
            let (ballot, commit) = (l.ballot(), self.cursor.commit());
            let leader_leaves = !next.is_voter(self.id);
            let told: Vec<MemberId> = self
                .config
                .all_members()
                .chain(next.all_members())
                .filter(|m| *m != self.id)
                .filter(|m| leader_leaves || !next.all_members().any(|n| n == *m))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            for m in told {
                self.send(
                    m,
                    crate::message::Message::Heartbeat {
                        ballot,
                        commit,
                        read_round: 0,
                        hibernate: false,
                    },
                );
            }
        }
        self.config = next.clone();
        self.removed = !self.config.all_members().any(|m| m == self.id);
        let proposed_here: Vec<RequestId> = self
            .waiting
            .iter()
            .copied()
            .filter(|r| matches!(r, RequestId::Reconfig(_)))
            .collect();
        let encoded = crate::codec::encode("config", next)
            .map_err(|e| RequestError::Application(e.to_string()));
        for id in proposed_here {
            self.respond(id, encoded.clone());
        }
        if self.recovering {
            return;
        }
        let was_leader = matches!(self.role, Role::Leader(_));
        if !matches!(self.role, Role::Follower) {
            self.step_down(None);
        }
        if self.removed || !self.config.is_voter(self.id) {
            self.leader = None;
            return;
        }
        // Start the new epoch at once: the old leader if it stays a voter,
        // else the first voter of the new configuration.
        let old_leader_stays = old_leader.is_some_and(|l| self.config.is_voter(l));
        if was_leader || (!old_leader_stays && self.config.voters.first() == Some(&self.id)) {
            self.start_election();
        }
    }

    fn propose_stop_sign(&mut self, next: Config) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let slot = l.propose_stop();
        self.propose_entry(slot, Entry::StopSign(next));
    }
}
