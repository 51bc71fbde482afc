//! A candidate's phase 1: which voters promised its ballot, and for each
//! slot the value it must re-propose once elected, chosen from what the
//! promises reported (with the stop-sign rule applied to them).
//!
//! A plain part with no IO: the candidate checks a promise's ballot and
//! sender and hands the reported values over.
//!
//! Invariants:
//! - a voter's promise counts once;
//! - for each slot the value kept is one a promise reported known chosen
//!   if any did, else the one with the highest ballot (the first reported
//!   among equal ballots);
//! - nothing is re-proposed after a stop-sign that stands.

use crate::entry::Entry;
use crate::ids::{Ballot, MemberId, Slot};
use crate::storage::Accepted;
use std::collections::BTreeMap;

/// The promises a candidate collected and the values they reported.
#[derive(Debug, Default)]
pub(super) struct Promises {
    /// The voters that promised, in the order they did.
    promised_by: Vec<MemberId>,
    /// The value to re-propose per slot, and whether a promise reported it
    /// known chosen.
    best: BTreeMap<Slot, (Accepted, bool)>,
}

impl Promises {
    /// No promise yet.
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Counts `from`'s promise; returns whether it is a new one.
    pub(super) fn record(&mut self, from: MemberId) -> bool {
        if self.promised_by.contains(&from) {
            return false;
        }
        self.promised_by.push(from);
        true
    }

    /// How many voters promised.
    pub(super) fn count(&self) -> usize {
        self.promised_by.len()
    }

    /// Whether `m` promised.
    pub(super) fn has_promised(&self, m: MemberId) -> bool {
        self.promised_by.contains(&m)
    }

    /// Takes in the values one promise reported, from an acceptor that
    /// knew every slot up to `commit` chosen: per slot, a value known
    /// chosen wins over any other, else the highest ballot does.
    pub(super) fn adopt(&mut self, accepted: Vec<(Slot, Accepted)>, commit: Slot) {
        for (s, value) in accepted {
            let chosen = s <= commit;
            match self.best.get(&s) {
                Some((_, true)) => {}
                Some((old, false)) if !chosen && old.ballot >= value.ballot => {}
                _ => {
                    self.best.insert(s, (value, chosen));
                }
            }
        }
    }

    /// The values kept for the slots after `commit`, by slot.
    pub(super) fn into_values(self, commit: Slot) -> BTreeMap<Slot, Accepted> {
        self.best
            .into_iter()
            .filter(|(s, _)| *s > commit)
            .map(|(s, (v, _))| (s, v))
            .collect()
    }
}

/// The deliberate bug [`super::Bugs::stop_sign_never_overtaken`]: the first
/// stop-sign stands, whatever came after it.
pub(super) fn keep_first_stop_sign(values: &mut BTreeMap<Slot, Accepted>) -> Option<Slot> {
    let slot = values
        .iter()
        .find(|(_, v)| matches!(v.entry, Entry::StopSign(_)))
        .map(|(s, _)| *s)?;
    values.split_off(&(slot + 1));
    Some(slot)
}

/// Applies the stop-sign rule to the values a new leader will re-propose:
/// a stop-sign at slot `i` stands only if no later slot holds a value from a
/// higher ballot of the same epoch (then nothing after `i` can have been
/// chosen in that epoch, and those later values are dropped); otherwise it
/// cannot have been chosen and becomes a no-op. Returns the slot of the stop-sign that stands, if any.
pub(super) fn settle_stop_signs(values: &mut BTreeMap<Slot, Accepted>) -> Option<Slot> {
    let stops: Vec<(Slot, Ballot)> = values
        .iter()
        .filter(|(_, v)| matches!(v.entry, Entry::StopSign(_)))
        .map(|(s, v)| (*s, v.ballot))
        .collect();
    for (slot, ballot) in stops {
        // Only a later value of the stop-sign's own epoch can overtake it:
        // a value of a later epoch exists only because the stop-sign was
        // chosen and started that epoch.
        let overtaken = values
            .range(slot + 1..)
            .any(|(_, v)| v.ballot > ballot && v.ballot.epoch == ballot.epoch);
        if overtaken {
            if let Some(v) = values.get_mut(&slot) {
                v.entry = Entry::Noop;
            }
        } else {
            values.split_off(&(slot + 1));
            return Some(slot);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: u64) -> MemberId {
        MemberId::new(i, 1)
    }

    fn value(round: u64, payload: u8) -> Accepted {
        Accepted {
            ballot: Ballot::new(round, m(1)),
            entry: Entry::Batch(crate::entry::Batch {
                proposer: m(1),
                boot: u64::from(payload),
                commands: Vec::new().into(),
            }),
        }
    }

    #[test]
    fn a_voters_promise_counts_once() {
        let mut p = Promises::new();
        assert!(p.record(m(1)));
        assert!(!p.record(m(1)));
        assert!(p.record(m(2)));
        assert_eq!(p.count(), 2);
        assert!(p.has_promised(m(2)) && !p.has_promised(m(3)));
    }

    #[test]
    fn a_new_leader_reproposes_the_highest_ballot_value_reported_for_each_slot() {
        let mut p = Promises::new();
        p.adopt(vec![(1, value(2, 1)), (2, value(5, 1))], 0);
        p.adopt(vec![(1, value(4, 2)), (2, value(3, 2))], 0);
        p.adopt(vec![(1, value(3, 3)), (3, value(1, 3))], 0);
        let kept = p.into_values(0);
        assert_eq!(kept[&1], value(4, 2), "the higher ballot reported later");
        assert_eq!(kept[&2], value(5, 1), "the higher ballot reported first");
        assert_eq!(kept[&3], value(1, 3), "the only value reported");
    }

    #[test]
    fn among_equal_ballots_the_value_reported_first_is_kept() {
        let mut p = Promises::new();
        p.adopt(vec![(1, value(4, 1))], 0);
        p.adopt(vec![(1, value(4, 2))], 0);
        assert_eq!(p.into_values(0)[&1], value(4, 1));
    }

    #[test]
    fn a_value_reported_known_chosen_wins_over_any_ballot() {
        let mut p = Promises::new();
        p.adopt(vec![(1, value(2, 1))], 1);
        p.adopt(vec![(1, value(9, 2))], 0);
        assert_eq!(p.into_values(0)[&1], value(2, 1));
        let mut p = Promises::new();
        p.adopt(vec![(1, value(9, 2))], 0);
        p.adopt(vec![(1, value(2, 1))], 1);
        assert_eq!(p.into_values(0)[&1], value(2, 1), "reported later");
    }

    #[test]
    fn only_slots_after_the_commit_index_are_reproposed() {
        let mut p = Promises::new();
        p.adopt(
            vec![(3, value(1, 1)), (4, value(1, 1)), (5, value(1, 1))],
            0,
        );
        let slots: Vec<Slot> = p.into_values(4).into_keys().collect();
        assert_eq!(slots, vec![5]);
    }
}
