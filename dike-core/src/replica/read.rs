//! Linearizable reads without a log write (read-index).
//!
//! A query is answered by the leader once (1) a quorum acknowledged a
//! heartbeat round started after the query arrived, so no higher ballot had
//! taken over when it arrived, and (2) the state has applied every slot that
//! was committed when it arrived. Queries that arrive together share a round.
//! The rounds and the queries waiting for them are kept by the `read_index`
//! part, where these rules are tested.

use super::{Replica, Role};
use crate::ids::{Ballot, MemberId, Slot};
use crate::ready::{RequestError, RequestId};
use crate::server::StateMachine;

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
        l.add_read(id, payload, self.cursor.commit(), self.clock.now());
        self.waiting.insert(rid);
    }

    /// Starts a read round if queries wait for one.
    pub(super) fn flush_reads(&mut self) {
        if matches!(&self.role, Role::Leader(l) if l.reads_unsent()) {
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
        if l.ballot() != ballot {
            return;
        }
        l.note_heartbeat_ack(from, commit, round, self.clock.now());
        self.serve_reads();
        self.on_member_progress(from, ballot);
    }

    /// Answers every confirmed query whose read index is applied.
    pub(super) fn serve_reads(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let applied = self.cursor.applied();
        let ready = l.take_ready_reads(&self.config.voters, self.config.quorum(), applied);
        for (id, payload) in ready {
            let result = match self.machine.query(&payload) {
                Some(reply) => reply.map_err(RequestError::Application),
                None => Err(RequestError::QueryUnsupported),
            };
            self.respond(RequestId::Query(id), result);
        }
    }
}
