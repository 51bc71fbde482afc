//! A leader's proposals in flight: the slots it proposed in its ballot and
//! that are not chosen yet, with the voters that accepted each (the quorum
//! tally of `Accepted`) and when each was last sent.
//!
//! A plain part with no IO: the leader sends the `Accept`s it is told to
//! and marks chosen the slots the tally gives back.
//!
//! Invariants:
//! - a member's acceptance of a slot counts once;
//! - a slot leaves the tally once a quorum accepted it (it is chosen), or
//!   when the leader learns it chosen some other way.

use crate::entry::Entry;
use crate::ids::{MemberId, Slot};
use std::collections::BTreeMap;

/// A slot proposed in the leader's ballot and not yet chosen.
#[derive(Debug)]
struct Proposal {
    /// The value proposed.
    entry: Entry,
    /// The voters that accepted it, in the order they did.
    acks: Vec<MemberId>,
    /// When its `Accept`s were last sent.
    sent_at: u64,
}

/// The leader's proposals in flight, by slot.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// The proposals not chosen yet.
    slots: BTreeMap<Slot, Proposal>,
}

impl Tally {
    /// No proposal in flight.
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// How many slots are in flight.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot is in flight.
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Puts `entry` in flight at `slot`, sent at `now`, accepted by nobody
    /// yet (replacing what was in flight there).
    pub(super) fn propose(&mut self, slot: Slot, entry: Entry, now: u64) {
        let proposal = Proposal {
            entry,
            acks: Vec::new(),
            sent_at: now,
        };
        self.slots.insert(slot, proposal);
    }

    /// Counts voter `from`'s acceptance of `slot` (once however often it
    /// is told); once `quorum` voters accepted, the slot is chosen: it
    /// leaves the tally and its entry is returned. Nothing happens for a
    /// slot not in flight.
    pub(super) fn accept(&mut self, slot: Slot, from: MemberId, quorum: usize) -> Option<Entry> {
        let p = self.slots.get_mut(&slot)?;
        if !p.acks.contains(&from) {
            p.acks.push(from);
        }
        if p.acks.len() < quorum {
            return None;
        }
        self.remove(slot)
    }

    /// Takes `slot` out of the tally (it was chosen some other way);
    /// returns the entry that was in flight there, if any.
    pub(super) fn remove(&mut self, slot: Slot) -> Option<Entry> {
        self.slots.remove(&slot).map(|p| p.entry)
    }

    /// Takes every slot at or below `slot` out of the tally (they are
    /// chosen); returns them with their entries, in slot order.
    pub(super) fn remove_through(&mut self, slot: Slot) -> Vec<(Slot, Entry)> {
        let mut gone = Vec::new();
        while let Some(first) = self.slots.first_entry() {
            if *first.key() > slot {
                break;
            }
            let (s, p) = first.remove_entry();
            gone.push((s, p.entry));
        }
        gone
    }

    /// Whether `m` accepted every slot in flight.
    pub(super) fn accepted_by(&self, m: MemberId) -> bool {
        self.slots.values().all(|p| p.acks.contains(&m))
    }

    /// The proposals last sent `after` ticks or more before `now` (their
    /// messages may be lost), each with the `members` that did not accept
    /// it yet, in slot order; they count as sent again at `now`.
    pub(super) fn resend_due(
        &mut self,
        now: u64,
        after: u64,
        members: &[MemberId],
    ) -> Vec<(Slot, Entry, Vec<MemberId>)> {
        let mut due = Vec::new();
        for (slot, p) in self.slots.iter_mut() {
            if now >= p.sent_at + after {
                p.sent_at = now;
                let missing = members
                    .iter()
                    .copied()
                    .filter(|m| !p.acks.contains(m))
                    .collect();
                due.push((*slot, p.entry.clone(), missing));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: u64) -> MemberId {
        MemberId::new(i, 1)
    }

    fn slots(t: &Tally) -> Vec<Slot> {
        t.slots.keys().copied().collect()
    }

    #[test]
    fn a_slot_is_chosen_once_a_quorum_accepted_it() {
        let mut t = Tally::new();
        t.propose(4, Entry::Noop, 0);
        assert_eq!(t.accept(4, m(1), 2), None);
        assert_eq!(t.accept(4, m(2), 2), Some(Entry::Noop));
        assert!(t.is_empty(), "a chosen slot leaves the tally");
    }

    #[test]
    fn a_members_acceptance_counts_once() {
        let mut t = Tally::new();
        t.propose(4, Entry::Noop, 0);
        assert_eq!(t.accept(4, m(1), 2), None);
        assert_eq!(t.accept(4, m(1), 2), None, "the same voter again");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_acceptance_of_a_slot_not_in_flight_counts_nothing() {
        let mut t = Tally::new();
        t.propose(4, Entry::Noop, 0);
        assert_eq!(t.accept(5, m(1), 1), None);
        assert_eq!(slots(&t), vec![4]);
        assert!(!t.accepted_by(m(1)));
    }

    #[test]
    fn a_slot_proposed_again_starts_its_tally_over() {
        let mut t = Tally::new();
        t.propose(4, Entry::Noop, 0);
        t.accept(4, m(1), 2);
        t.propose(4, Entry::Noop, 1);
        assert_eq!(t.accept(4, m(2), 2), None);
    }

    #[test]
    fn a_slot_chosen_some_other_way_leaves_the_tally() {
        let mut t = Tally::new();
        t.propose(4, Entry::Noop, 0);
        t.propose(5, Entry::Noop, 0);
        assert_eq!(t.remove(4), Some(Entry::Noop));
        assert_eq!(t.remove(4), None);
        assert_eq!(slots(&t), vec![5]);
    }

    #[test]
    fn a_commit_index_takes_every_slot_at_or_below_it_out() {
        let mut t = Tally::new();
        for s in [3, 5, 6, 8] {
            t.propose(s, Entry::Noop, 0);
        }
        let gone: Vec<Slot> = t.remove_through(6).into_iter().map(|(s, _)| s).collect();
        assert_eq!(gone, vec![3, 5, 6]);
        assert_eq!(slots(&t), vec![8]);
    }

    #[test]
    fn a_member_accepted_everything_only_if_it_accepted_every_slot_in_flight() {
        let mut t = Tally::new();
        assert!(t.accepted_by(m(1)), "nothing in flight");
        t.propose(1, Entry::Noop, 0);
        t.propose(2, Entry::Noop, 0);
        t.accept(1, m(1), 3);
        assert!(!t.accepted_by(m(1)));
        t.accept(2, m(1), 3);
        assert!(t.accepted_by(m(1)));
    }

    #[test]
    fn a_proposal_is_resent_only_once_the_resend_interval_passed() {
        let mut t = Tally::new();
        t.propose(1, Entry::Noop, 0);
        t.propose(2, Entry::Noop, 3);
        let members = [m(1)];
        assert!(t.resend_due(3, 4, &members).is_empty());
        let due: Vec<Slot> = t.resend_due(4, 4, &members).iter().map(|d| d.0).collect();
        assert_eq!(due, vec![1]);
        assert!(
            t.resend_due(7, 4, &members).iter().all(|d| d.0 == 2),
            "slot 1 counts as sent at 4"
        );
    }

    #[test]
    fn a_resend_goes_only_to_members_that_did_not_accept() {
        let mut t = Tally::new();
        t.propose(1, Entry::Noop, 0);
        t.accept(1, m(2), 3);
        let due = t.resend_due(10, 4, &[m(1), m(2), m(3)]);
        assert_eq!(due, vec![(1, Entry::Noop, vec![m(1), m(3)])]);
    }
}
