//! What a leader knows of each member's progress in its ballot: the
//! highest slot the member acknowledged, the commit index it reported, and
//! when it was last heard from. The leader uses it to promote learners
//! that caught up, to pick a member to hand leadership to, to know when
//! the group may sleep, and to see when a transfer's target holds
//! everything.
//!
//! A plain part with no IO; the leader itself counts among the members.
//!
//! Invariants:
//! - a member's acknowledged slot and reported commit index never fall;
//! - a reported commit index counts as acknowledged too;
//! - a member never heard of has no progress at all (not slot 0).

use crate::ids::{MemberId, Slot};
use std::collections::BTreeMap;

/// Each member's progress as its leader saw it.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The highest slot each member acknowledged (an `Accepted`, a commit
    /// index it reported, or a catch-up request).
    acked: BTreeMap<MemberId, Slot>,
    /// The commit index each member reported (heartbeat acks).
    commits: BTreeMap<MemberId, Slot>,
    /// The tick each member was last heard from.
    heard_at: BTreeMap<MemberId, u64>,
}

impl Progress {
    /// Nobody heard from.
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Notes that `m` answered at `now`.
    pub(super) fn heard(&mut self, m: MemberId, now: u64) {
        self.heard_at.insert(m, now);
    }

    /// When `m` was last heard from, if ever.
    pub(super) fn heard_at(&self, m: MemberId) -> Option<u64> {
        self.heard_at.get(&m).copied()
    }

    /// Notes that `m` acknowledged `slot`.
    pub(super) fn note_acked(&mut self, m: MemberId, slot: Slot) {
        let acked = self.acked.entry(m).or_insert(0);
        *acked = (*acked).max(slot);
    }

    /// The highest slot `m` acknowledged, if it acknowledged any.
    pub(super) fn acked(&self, m: MemberId) -> Option<Slot> {
        self.acked.get(&m).copied()
    }

    /// Notes that `m` reported knowing every slot up to `commit` chosen
    /// (which acknowledges them too).
    pub(super) fn note_commit(&mut self, m: MemberId, commit: Slot) {
        self.note_acked(m, commit);
        let known = self.commits.entry(m).or_insert(0);
        *known = (*known).max(commit);
    }

    /// The highest commit index `m` reported, if it reported one.
    pub(super) fn commit(&self, m: MemberId) -> Option<Slot> {
        self.commits.get(&m).copied()
    }

    /// Whether every one of `members` reported a commit index of at least
    /// `commit`.
    pub(super) fn all_know(&self, members: &[MemberId], commit: Slot) -> bool {
        members
            .iter()
            .all(|m| self.commit(*m).is_some_and(|c| c >= commit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: u64) -> MemberId {
        MemberId::new(i, 1)
    }

    #[test]
    fn a_member_never_heard_of_has_no_progress() {
        let mut p = Progress::new();
        assert_eq!(
            (p.acked(m(1)), p.commit(m(1)), p.heard_at(m(1))),
            (None, None, None)
        );
        p.note_acked(m(1), 0);
        assert_eq!(p.acked(m(1)), Some(0), "slot 0 is progress heard of");
        assert_eq!(p.acked(m(2)), None);
    }

    #[test]
    fn a_members_acknowledged_slot_never_falls() {
        let mut p = Progress::new();
        p.note_acked(m(1), 7);
        p.note_acked(m(1), 4);
        assert_eq!(p.acked(m(1)), Some(7));
        p.note_commit(m(1), 5);
        assert_eq!(p.acked(m(1)), Some(7));
        p.note_acked(m(1), 9);
        assert_eq!(p.acked(m(1)), Some(9));
    }

    #[test]
    fn a_reported_commit_index_counts_as_acknowledged() {
        let mut p = Progress::new();
        p.note_commit(m(1), 6);
        assert_eq!(p.acked(m(1)), Some(6));
        assert_eq!(p.commit(m(1)), Some(6));
    }

    #[test]
    fn an_acknowledged_slot_is_no_reported_commit_index() {
        let mut p = Progress::new();
        p.note_acked(m(1), 6);
        assert_eq!(p.commit(m(1)), None);
    }

    #[test]
    fn a_reported_commit_index_never_falls() {
        let mut p = Progress::new();
        p.note_commit(m(1), 6);
        p.note_commit(m(1), 2);
        assert_eq!(p.commit(m(1)), Some(6));
    }

    #[test]
    fn every_member_knows_a_commit_index_only_once_each_reported_it() {
        let mut p = Progress::new();
        let members = [m(1), m(2)];
        assert!(!p.all_know(&members, 0), "nobody reported");
        p.note_commit(m(1), 5);
        p.note_acked(m(2), 5);
        assert!(
            !p.all_know(&members, 5),
            "an acknowledged slot is no report"
        );
        p.note_commit(m(2), 4);
        assert!(!p.all_know(&members, 5));
        assert!(p.all_know(&members, 4));
        p.note_commit(m(2), 6);
        assert!(p.all_know(&members, 5));
    }

    #[test]
    fn a_member_was_last_heard_at_the_latest_time_noted() {
        let mut p = Progress::new();
        p.heard(m(1), 3);
        p.heard(m(1), 8);
        assert_eq!(p.heard_at(m(1)), Some(8));
        assert_eq!(p.heard_at(m(2)), None);
    }
}
