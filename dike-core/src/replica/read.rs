//! Linearizable reads without a log write (read-index).
//!
//! A query is answered by the leader once (1) a quorum acknowledged a
//! heartbeat round started after the query arrived, so no higher ballot had
//! taken over when it arrived, and (2) the state has applied every slot that
//! was committed when it arrived. Queries that arrive together share a round.

use super::{Replica, Role};
use crate::ids::{Ballot, MemberId, Slot};
use crate::ready::{RequestError, RequestId};
use crate::server::StateMachine;
use std::collections::BTreeMap;

#[derive(Debug)]
struct PendingRead {
    id: u64,
    payload: Vec<u8>,
    read_index: Slot,
    round: Option<u64>,
}

/// A leader's queries awaiting confirmation.
#[derive(Debug, Default)]
pub(crate) struct ReadIndex {
    last_round: u64,
    pending: Vec<PendingRead>,
    acks: BTreeMap<MemberId, u64>,
}

impl ReadIndex {
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(crate) fn has_unsent(&self) -> bool {
        self.pending.iter().any(|r| r.round.is_none())
    }

    /// The round a heartbeat should carry: a new one if queries wait for
    /// one, the last one again while queries wait for its acks, else 0.
    pub(crate) fn start_round(&mut self) -> u64 {
        if self.has_unsent() {
            self.last_round += 1;
            for r in self.pending.iter_mut().filter(|r| r.round.is_none()) {
                r.round = Some(self.last_round);
            }
            self.last_round
        } else if self.pending.is_empty() {
            0
        } else {
            self.last_round
        }
    }

    /// A round for a heartbeat that asks every member for its commit index:
    /// the round queries wait for, if any, else a fresh one. A round with no
    /// query waiting confirms nothing but later queries' rounds would.
    pub(crate) fn probe_round(&mut self) -> u64 {
        match self.start_round() {
            0 => {
                self.last_round += 1;
                self.last_round
            }
            r => r,
        }
    }

    /// The highest round acknowledged by a quorum of `voters`.
    fn confirmed(&self, voters: &[MemberId], quorum: usize) -> u64 {
        let mut rounds: Vec<u64> = voters
            .iter()
            .map(|v| self.acks.get(v).copied().unwrap_or(0))
            .collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds.get(quorum.saturating_sub(1)).copied().unwrap_or(0)
    }
}

impl<M: StateMachine> Replica<M> {
    /// Submits a read-only query from a local client, answered through
    /// [`crate::server::PaxosServer::handle_query`] without a log write once
    /// it is linearizable. The answer comes as a response for
    /// `RequestId::Query(id)`.
    pub fn query(&mut self, id: u64, payload: Vec<u8>) {
        let rid = RequestId::Query(id);
        let leader = self.leader;
        let Role::Leader(l) = &mut self.role else {
            self.leader_wanted();
            self.respond(rid, Err(RequestError::NotLeader { leader }));
            return;
        };
        let read_index = self.cursor.commit().max(l.phase1_end);
        l.wake(self.clock.now());
        l.reads.pending.push(PendingRead {
            id,
            payload,
            read_index,
            round: None,
        });
        self.waiting.insert(rid);
    }

    /// Starts a read round if queries wait for one.
    pub(super) fn flush_reads(&mut self) {
        if matches!(&self.role, Role::Leader(l) if l.reads.has_unsent()) {
            self.heartbeat();
        }
    }

    pub(super) fn on_heartbeat_ack(
        &mut self,
        from: MemberId,
        ballot: Ballot,
        round: u64,
        commit: Slot,
    ) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        l.heard(from, self.clock.now());
        let seen = l.progress.entry(from).or_insert(0);
        *seen = (*seen).max(commit);
        let acked = l.commit_acks.entry(from).or_insert(0);
        *acked = (*acked).max(commit);
        let a = l.reads.acks.entry(from).or_insert(0);
        *a = (*a).max(round);
        self.serve_reads();
        self.on_member_progress(from, ballot);
    }

    /// Answers every confirmed query whose read index is applied.
    pub(super) fn serve_reads(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.reads.pending.is_empty() {
            return;
        }
        let confirmed = l.reads.confirmed(&self.config.voters, self.config.quorum());
        let applied = self.cursor.applied();
        let (ready, waiting): (Vec<PendingRead>, Vec<PendingRead>) =
            std::mem::take(&mut l.reads.pending)
                .into_iter()
                .partition(|r| r.round.is_some_and(|x| x <= confirmed) && r.read_index <= applied);
        l.reads.pending = waiting;
        for r in ready {
            let result = match self.machine.query(&r.payload) {
                Some(reply) => reply.map_err(RequestError::Application),
                None => Err(RequestError::QueryUnsupported),
            };
            self.respond(RequestId::Query(r.id), result);
        }
    }
}
