//! A leader's read-index rounds: the queries waiting to be answered, the
//! heartbeat round each waits for, and the highest round each member
//! acknowledged.
//!
//! A query may be answered once (1) a quorum of voters acknowledged a
//! round started after it arrived, so no higher ballot had taken over when
//! it arrived, and (2) the state machine applied every slot that was
//! committed (or settled by phase 1) when it arrived: its read index.
//! Queries that arrive together share a round.
//!
//! A plain part with no IO: the leader puts the rounds it is given on its
//! heartbeats, reports the acks, and runs the queries given back.
//!
//! Invariants:
//! - a round is never reused: each new one is higher than every earlier;
//! - a query waits for a round started after it arrived;
//! - a member's acknowledged round never falls.

use crate::ids::{MemberId, Slot};
use std::collections::BTreeMap;

/// A query waiting to be answered.
#[derive(Debug)]
struct PendingRead {
    /// The client's query id.
    id: u64,
    /// The query.
    payload: Vec<u8>,
    /// The state must have applied this slot before the query runs.
    read_index: Slot,
    /// The round the query waits for, once one was started for it.
    round: Option<u64>,
}

/// A leader's queries awaiting confirmation.
#[derive(Debug, Default)]
pub(crate) struct ReadIndex {
    /// The last round started.
    last_round: u64,
    /// The queries not answered yet, in arrival order.
    pending: Vec<PendingRead>,
    /// The highest round each member acknowledged.
    acks: BTreeMap<MemberId, u64>,
}

impl ReadIndex {
    /// No query waits, no round started.
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Whether no query waits.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether some query waits for a round to be started.
    pub(super) fn has_unsent(&self) -> bool {
        self.pending.iter().any(|r| r.round.is_none())
    }

    /// Adds query `id` with `payload`, to run once the state applied
    /// `read_index` and a round started after now is confirmed.
    pub(super) fn add(&mut self, id: u64, payload: Vec<u8>, read_index: Slot) {
        self.pending.push(PendingRead {
            id,
            payload,
            read_index,
            round: None,
        });
    }

    /// The round a heartbeat should carry: a new one if queries wait for
    /// one, the last one again while queries wait for its acks, else 0.
    pub(super) fn start_round(&mut self) -> u64 {
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
    pub(super) fn probe_round(&mut self) -> u64 {
        match self.start_round() {
            0 => {
                self.last_round += 1;
                self.last_round
            }
            r => r,
        }
    }

    /// Notes that `m` acknowledged `round` (and so every earlier one).
    pub(super) fn ack(&mut self, m: MemberId, round: u64) {
        let a = self.acks.entry(m).or_insert(0);
        *a = (*a).max(round);
    }

    /// Takes out the queries that may be answered now: a `quorum` of
    /// `voters` acknowledged their round, and the state `applied` their
    /// read index. Returns their ids and payloads, in arrival order.
    pub(super) fn take_ready(
        &mut self,
        voters: &[MemberId],
        quorum: usize,
        applied: Slot,
    ) -> Vec<(u64, Vec<u8>)> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let confirmed = self.confirmed(voters, quorum);
        let (ready, waiting): (Vec<PendingRead>, Vec<PendingRead>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|r| r.round.is_some_and(|x| x <= confirmed) && r.read_index <= applied);
        self.pending = waiting;
        ready.into_iter().map(|r| (r.id, r.payload)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: u64) -> MemberId {
        MemberId::new(i, 1)
    }

    /// Members 1 to 3 vote (a quorum of two); others do not.
    fn voters() -> Vec<MemberId> {
        (1..=3).map(m).collect()
    }

    /// The ids of the queries answered now, with the state at `applied`.
    fn answered(r: &mut ReadIndex, applied: Slot) -> Vec<u64> {
        r.take_ready(&voters(), 2, applied)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn no_round_is_carried_while_no_query_waits() {
        let mut r = ReadIndex::new();
        assert_eq!(r.start_round(), 0);
        assert!(r.is_empty());
    }

    #[test]
    fn queries_that_arrive_together_share_a_round() {
        let mut r = ReadIndex::new();
        r.add(1, vec![], 0);
        r.add(2, vec![], 0);
        assert!(r.has_unsent());
        assert_eq!(r.start_round(), 1);
        assert!(!r.has_unsent());
        r.ack(m(1), 1);
        r.ack(m(2), 1);
        assert_eq!(answered(&mut r, 0), vec![1, 2]);
    }

    #[test]
    fn a_round_is_carried_again_while_its_queries_wait() {
        let mut r = ReadIndex::new();
        r.add(1, vec![], 0);
        assert_eq!(r.start_round(), 1);
        assert_eq!(r.start_round(), 1);
    }

    #[test]
    fn a_query_is_answered_only_after_a_quorum_confirmed_a_round_started_after_it() {
        let mut r = ReadIndex::new();
        r.add(1, vec![], 0);
        let first = r.start_round();
        // Query 2 arrives while round `first` is out: its acks say nothing
        // about a ballot that took over after they were sent.
        r.add(2, vec![], 0);
        r.ack(m(1), first);
        r.ack(m(2), first);
        assert_eq!(answered(&mut r, 0), vec![1]);
        let second = r.start_round();
        assert!(second > first);
        r.ack(m(1), second);
        assert!(answered(&mut r, 0).is_empty(), "one voter of three");
        r.ack(m(3), second);
        assert_eq!(answered(&mut r, 0), vec![2]);
    }

    #[test]
    fn acks_of_members_that_do_not_vote_confirm_nothing() {
        let mut r = ReadIndex::new();
        r.add(1, vec![], 0);
        let round = r.start_round();
        r.ack(m(1), round);
        r.ack(m(9), round);
        assert!(answered(&mut r, 0).is_empty());
    }

    #[test]
    fn a_confirmed_query_waits_until_its_read_index_is_applied() {
        let mut r = ReadIndex::new();
        r.add(1, vec![7], 5);
        let round = r.start_round();
        r.ack(m(1), round);
        r.ack(m(2), round);
        assert!(answered(&mut r, 4).is_empty());
        assert_eq!(r.take_ready(&voters(), 2, 5), vec![(1, vec![7])]);
        assert!(r.is_empty());
    }

    #[test]
    fn a_members_acknowledged_round_never_falls() {
        let mut r = ReadIndex::new();
        r.add(1, vec![], 0);
        let round = r.start_round();
        r.ack(m(1), round);
        r.ack(m(2), round);
        r.ack(m(2), 0);
        assert_eq!(answered(&mut r, 0), vec![1]);
    }

    #[test]
    fn a_probe_starts_a_fresh_round_when_no_query_waits() {
        let mut r = ReadIndex::new();
        assert_eq!(r.probe_round(), 1);
        assert_eq!(r.probe_round(), 2);
        r.add(1, vec![], 0);
        assert_eq!(r.probe_round(), 3, "the query's round");
        assert_eq!(r.probe_round(), 3, "the round it waits for");
    }
}
