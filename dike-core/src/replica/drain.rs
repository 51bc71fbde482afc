//! Draining: moving leadership off a node an operator is about to work on
//! (after Kubernetes' cordon/drain and CockroachDB's node drain).
//!
//! The runtime tells every replica which nodes the routing table marks
//! draining ([`Replica::set_draining_nodes`]). Then:
//! - a leader on a draining node hands leadership off (a transfer it starts
//!   by itself) to a voter on a node that is not draining and that it heard
//!   from within an election timeout, the most advanced first; while it
//!   looks for one, its heartbeats ask every member to answer, so an idle
//!   group finds one too. A hand-off that gave up is retried with the
//!   hand-back's backoff. It keeps doing so for as long as it leads there;
//! - a replica on a draining node answers no `TimeoutNow`, no transfer
//!   targets it, and no hand-back to the preferred leader goes to it (a
//!   draining preferred leader counts as missed, so once undrained it gets
//!   leadership back as after a failover);
//! - a draining replica loses the preferred leader's short election timeout.
//!
//! Invariant: draining only changes *who* starts an election and *when*,
//! like a transfer, never how ballots are chosen or promised. And liveness
//! comes first: a draining replica still campaigns on its own (normal)
//! election timeout and may win, so a group whose other voters cannot lead
//! is led from a draining node rather than not at all; it hands off again
//! once another voter answers.

use super::{Replica, Role};
use crate::ids::NodeId;
use crate::server::StateMachine;
use std::collections::BTreeSet;

impl<M: StateMachine> Replica<M> {
    /// The nodes the routing table marks draining (replacing the previous
    /// set). A leader whose own node is among them starts handing
    /// leadership off at its next tick.
    pub fn set_draining_nodes(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        let nodes: BTreeSet<NodeId> = nodes.into_iter().collect();
        if nodes == self.draining {
            return;
        }
        tracing::info!(member = %self.id, draining = ?nodes, "draining nodes changed");
        self.draining = nodes;
        let now = self.clock.now();
        if let Role::Leader(l) = &mut self.role {
            // An asleep leader gets no ticks: wake it to hand off (or to
            // hand back to a preferred leader that was undrained).
            l.wake(now);
        }
    }

    /// Whether this replica's node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.contains(&self.id.node)
    }

    /// Whether this leader is draining and must look for a voter to hand
    /// off to: it stays awake and its heartbeats ask every member to answer.
    pub(super) fn drain_hand_off_due(&self) -> bool {
        self.is_draining() && matches!(&self.role, Role::Leader(l) if !l.is_transferring())
    }

    /// A draining leader's tick (no transfer under way): hands off to the
    /// best voter heard from recently on a node that is not draining, if
    /// any and no backoff holds it.
    pub(super) fn hand_off_while_draining(&mut self) {
        let (now, e) = (self.clock.now(), self.opts.election_ticks.max(1));
        let Role::Leader(l) = &self.role else {
            return;
        };
        if !l.hand_back().may_retry(now) {
            return;
        }
        let heard = |n: NodeId| {
            self.config
                .voters
                .iter()
                .filter(|v| v.node == n)
                .any(|v| l.progress().heard_at(*v).is_some_and(|t| now <= t + e))
        };
        let Some(to) = self.hand_over_target(heard) else {
            return;
        };
        if let Err(e) = self.start_transfer(to, true) {
            tracing::debug!(member = %self.id, %to, "no hand-off while draining: {e}");
        }
    }
}
