//! The acceptor's durable state: the highest ballot it promised and, slot
//! by slot, the value it accepted (or learned was chosen).
//!
//! A plain part with no IO: the replica writes each change to storage
//! (`Write::Promise`, `Write::Accept`) and sends what depends on it.
//!
//! Invariants:
//! - the promise never falls;
//! - an entry marked chosen stays chosen until compacted away;
//! - after a compaction through a slot, the log holds nothing at or below it.

use crate::ids::{Ballot, Slot};
use crate::storage::Accepted;
use std::collections::BTreeMap;
use std::ops::RangeBounds;

/// A log slot as this replica holds it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct LogEntry {
    /// The value, with the ballot it was accepted in.
    pub value: Accepted,
    /// Known to be chosen (by a quorum of `Accepted`, a commit index, or a
    /// catch-up from a replica that knew).
    pub chosen: bool,
}

/// The acceptor's promise and log.
#[derive(Debug, Default)]
pub(super) struct Votes {
    /// The highest ballot promised (`Ballot::ZERO` before any).
    promised: Ballot,
    /// The entries above the latest snapshot, by slot.
    log: BTreeMap<Slot, LogEntry>,
}

impl Votes {
    /// No promise, an empty log.
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// The state a storage kept: the promise `promised` and the `accepted`
    /// entries, none of them known chosen yet.
    pub(super) fn restored(
        promised: Ballot,
        accepted: impl IntoIterator<Item = (Slot, Accepted)>,
    ) -> Self {
        let log = accepted
            .into_iter()
            .map(|(slot, value)| {
                let entry = LogEntry {
                    value,
                    chosen: false,
                };
                (slot, entry)
            })
            .collect();
        Votes { promised, log }
    }

    /// The highest ballot promised.
    pub(super) fn promised(&self) -> Ballot {
        self.promised
    }

    /// Raises the promise to `ballot` if it is higher; returns whether it
    /// rose (and so needs a write).
    pub(super) fn promise(&mut self, ballot: Ballot) -> bool {
        if ballot > self.promised {
            self.promised = ballot;
            true
        } else {
            false
        }
    }

    /// The entry at `slot`, if the log holds one.
    pub(super) fn get(&self, slot: Slot) -> Option<&LogEntry> {
        self.log.get(&slot)
    }

    /// Puts `value` at `slot`, replacing whatever was there.
    pub(super) fn insert(&mut self, slot: Slot, value: Accepted, chosen: bool) {
        self.log.insert(slot, LogEntry { value, chosen });
    }

    /// Marks the entry at `slot` chosen, keeping its value; returns whether
    /// the log holds an entry there (nothing changes if not).
    pub(super) fn mark_chosen(&mut self, slot: Slot) -> bool {
        match self.log.get_mut(&slot) {
            Some(e) => {
                e.chosen = true;
                true
            }
            None => false,
        }
    }

    /// What a promise asked from `slot` on reports: every entry at or
    /// after it, chosen or not, with its ballot.
    pub(super) fn accepted_from(&self, slot: Slot) -> Vec<(Slot, Accepted)> {
        self.log
            .range(slot..)
            .map(|(s, e)| (*s, e.value.clone()))
            .collect()
    }

    /// The entries whose slots lie in `slots`, in slot order.
    pub(super) fn range(
        &self,
        slots: impl RangeBounds<Slot>,
    ) -> impl Iterator<Item = (Slot, &LogEntry)> {
        self.log.range(slots).map(|(s, e)| (*s, e))
    }

    /// Drops every entry at or below `slot` (a snapshot covers them).
    pub(super) fn compact_through(&mut self, slot: Slot) {
        self.log = self.log.split_off(&(slot + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;
    use crate::ids::MemberId;

    fn ballot(round: u64) -> Ballot {
        Ballot::new(round, MemberId::new(1, 0))
    }

    fn noop(round: u64) -> Accepted {
        Accepted {
            ballot: ballot(round),
            entry: Entry::Noop,
        }
    }

    fn slots(v: &Votes) -> Vec<Slot> {
        v.range(..).map(|(s, _)| s).collect()
    }

    #[test]
    fn nothing_is_promised_and_nothing_held_at_first() {
        let v = Votes::new();
        assert_eq!(v.promised(), Ballot::ZERO);
        assert!(slots(&v).is_empty());
    }

    #[test]
    fn a_promise_only_ever_rises() {
        let mut v = Votes::new();
        assert!(v.promise(ballot(3)), "a higher ballot raises it");
        assert!(!v.promise(ballot(2)), "a lower one does not");
        assert_eq!(v.promised(), ballot(3));
        assert!(!v.promise(ballot(3)), "nor does the same one again");
        assert_eq!(v.promised(), ballot(3));
        assert!(v.promise(ballot(4)));
        assert_eq!(v.promised(), ballot(4));
    }

    #[test]
    fn an_insert_replaces_the_value_and_flag_at_its_slot() {
        let mut v = Votes::new();
        v.insert(5, noop(1), false);
        v.insert(5, noop(2), true);
        let e = v.get(5).expect("held");
        assert_eq!(e.value, noop(2));
        assert!(e.chosen);
        assert_eq!(slots(&v), vec![5]);
    }

    #[test]
    fn marking_a_slot_chosen_keeps_its_value() {
        let mut v = Votes::new();
        v.insert(1, noop(4), false);
        assert!(v.mark_chosen(1));
        let e = v.get(1).expect("held");
        assert!(e.chosen);
        assert_eq!(e.value, noop(4));
    }

    #[test]
    fn a_chosen_entry_stays_chosen_when_marked_again() {
        let mut v = Votes::new();
        v.insert(1, noop(1), true);
        assert!(v.mark_chosen(1));
        assert!(v.get(1).expect("held").chosen);
    }

    #[test]
    fn marking_a_slot_the_log_lacks_adds_nothing() {
        let mut v = Votes::new();
        v.insert(1, noop(1), false);
        assert!(!v.mark_chosen(2));
        assert_eq!(v.get(2), None);
        assert_eq!(slots(&v), vec![1]);
    }

    #[test]
    fn a_promise_reports_every_entry_from_the_asked_slot_on() {
        let mut v = Votes::new();
        v.insert(2, noop(1), true);
        v.insert(4, noop(2), false);
        v.insert(7, noop(3), true);
        assert_eq!(v.accepted_from(3), vec![(4, noop(2)), (7, noop(3))]);
        assert_eq!(v.accepted_from(4), vec![(4, noop(2)), (7, noop(3))]);
        assert_eq!(v.accepted_from(8), vec![]);
        assert_eq!(v.accepted_from(0).len(), 3);
    }

    #[test]
    fn a_range_yields_the_entries_inside_it_in_slot_order() {
        let mut v = Votes::new();
        for s in [9, 3, 6, 1] {
            v.insert(s, noop(s), false);
        }
        let inside: Vec<Slot> = v.range(3..=6).map(|(s, _)| s).collect();
        assert_eq!(inside, vec![3, 6]);
        assert_eq!(slots(&v), vec![1, 3, 6, 9]);
    }

    #[test]
    fn compaction_drops_every_slot_at_or_below_the_snapshot() {
        let mut v = Votes::new();
        for s in 1..=6 {
            v.insert(s, noop(1), s <= 4);
        }
        v.compact_through(4);
        assert_eq!(slots(&v), vec![5, 6]);
        v.compact_through(10);
        assert!(slots(&v).is_empty());
    }

    #[test]
    fn compaction_keeps_the_promise() {
        let mut v = Votes::new();
        v.promise(ballot(5));
        v.insert(1, noop(5), true);
        v.compact_through(1);
        assert_eq!(v.promised(), ballot(5));
    }

    #[test]
    fn a_restored_log_keeps_its_promise_and_knows_nothing_chosen() {
        let v = Votes::restored(ballot(7), [(3, noop(6)), (4, noop(7))]);
        assert_eq!(v.promised(), ballot(7));
        assert_eq!(slots(&v), vec![3, 4]);
        assert!(v.range(..).all(|(_, e)| !e.chosen));
        assert_eq!(v.get(4).map(|e| &e.value), Some(&noop(7)));
    }
}
