//! The learner's cursor: how far this replica knows the log chosen
//! (`commit`), how much of that it wrote down (`commit_written`), how far
//! its state machine applied it (`applied`), and the latest snapshot with
//! the slot the next one is due at. Also when it last asked a peer to
//! catch it up.
//!
//! A plain part with no IO: the replica checks the log (which slots are
//! chosen), applies entries, writes `Write::Commit` and snapshots, and
//! tells the cursor what it did.
//!
//! Invariants:
//! - the commit index never falls, nor does the applied slot;
//! - `applied <= commit`;
//! - `commit_written <= commit`, and it never falls;
//! - the snapshot's slot is at most `applied`, and never falls.

use crate::config::Config;
use crate::ids::Slot;
use crate::session::SessionTable;
use crate::storage::Snapshot;
use std::sync::Arc;

/// How far this replica learned, wrote down and applied the log.
#[derive(Debug)]
pub(super) struct Cursor {
    /// Every slot up to this one is known chosen here.
    commit: Slot,
    /// The highest commit index handed to storage (`Write::Commit`).
    commit_written: Slot,
    /// Every slot up to this one is applied to the state machine.
    applied: Slot,
    /// The latest snapshot, taken here or installed from a peer.
    snapshot: Option<Arc<Snapshot>>,
    /// A snapshot is taken once `applied` reaches this slot.
    next_snapshot_at: Slot,
    /// When this replica last asked a peer to catch it up.
    last_catchup_at: Option<u64>,
}

impl Cursor {
    /// Nothing known chosen, written or applied, no snapshot; the first
    /// snapshot is due at slot `first_snapshot_at`.
    pub(super) fn new(first_snapshot_at: Slot) -> Self {
        Cursor {
            commit: 0,
            commit_written: 0,
            applied: 0,
            snapshot: None,
            next_snapshot_at: first_snapshot_at,
            last_catchup_at: None,
        }
    }

    /// Every slot up to this one is known chosen.
    pub(super) fn commit(&self) -> Slot {
        self.commit
    }

    /// Every slot up to this one is applied.
    pub(super) fn applied(&self) -> Slot {
        self.applied
    }

    /// The latest snapshot, if any.
    pub(super) fn snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.snapshot.as_ref()
    }

    /// The latest snapshot's slot (0 without one): the log holds nothing
    /// at or below it.
    pub(super) fn snapshot_slot(&self) -> Slot {
        self.snapshot.as_ref().map_or(0, |s| s.slot)
    }

    /// The slot a snapshot is next due at.
    pub(super) fn next_snapshot_at(&self) -> Slot {
        self.next_snapshot_at
    }

    /// Raises the commit index to `slot` if it is higher (the caller knows
    /// every slot up to it chosen).
    pub(super) fn commit_through(&mut self, slot: Slot) {
        self.commit = self.commit.max(slot);
    }

    /// Whether the commit index rose past what was handed to storage.
    pub(super) fn has_unwritten_commit(&self) -> bool {
        self.commit > self.commit_written
    }

    /// The commit index to hand to storage, if it rose since the last
    /// time; it counts as written from now on.
    pub(super) fn take_unwritten_commit(&mut self) -> Option<Slot> {
        if self.has_unwritten_commit() {
            self.commit_written = self.commit;
            Some(self.commit)
        } else {
            None
        }
    }

    /// The slot to apply next: the one after `applied`, if it is known
    /// chosen.
    pub(super) fn next_to_apply(&self) -> Option<Slot> {
        (self.applied < self.commit).then_some(self.applied + 1)
    }

    /// Counts the slot after `applied` as applied, if it is known chosen.
    pub(super) fn applied_next(&mut self) {
        if self.applied < self.commit {
            self.applied += 1;
        }
    }

    /// Whether enough slots were applied for the next snapshot.
    pub(super) fn snapshot_due(&self) -> bool {
        self.applied >= self.next_snapshot_at
    }

    /// Puts the next snapshot off to `gap` slots after `applied` (one that
    /// was due could not be taken).
    pub(super) fn postpone_snapshot(&mut self, gap: Slot) {
        self.next_snapshot_at = self.applied + gap;
    }

    /// Records a snapshot of the state applied so far (`state`, with the
    /// membership `config` and the client `sessions` in force), due again
    /// `gap` slots later; returns it.
    pub(super) fn take_snapshot(
        &mut self,
        config: Config,
        state: Vec<u8>,
        sessions: SessionTable,
        gap: Slot,
    ) -> Arc<Snapshot> {
        let snap = Arc::new(Snapshot {
            slot: self.applied,
            config,
            state,
            sessions,
        });
        self.snapshot = Some(snap.clone());
        self.next_snapshot_at = self.applied + gap;
        snap
    }

    /// Takes `snap` (loaded into the state machine) as the state applied:
    /// `applied` moves to its slot, the commit index at least there, and
    /// the next snapshot is due `gap` slots after it. A snapshot older than
    /// `applied` changes nothing.
    pub(super) fn install(&mut self, snap: Arc<Snapshot>, gap: Slot) {
        if snap.slot < self.applied {
            return;
        }
        self.applied = snap.slot;
        self.commit = self.commit.max(snap.slot);
        self.next_snapshot_at = snap.slot + gap;
        self.snapshot = Some(snap);
    }

    /// Whether to ask a peer to catch this replica up at time `now`: at
    /// most once every `every` ticks, unless `force`d. If so, it counts as
    /// asked now and the answer is the slot to ask from (the one after the
    /// commit index).
    pub(super) fn ask_catch_up(&mut self, now: u64, every: u64, force: bool) -> Option<Slot> {
        let due = self.last_catchup_at.is_none_or(|t| now >= t + every);
        if force || due {
            self.last_catchup_at = Some(now);
            Some(self.commit + 1)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemberId;

    fn config() -> Config {
        Config::initial(vec![MemberId::new(1, 1)])
    }

    fn snapshot(slot: Slot) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            slot,
            config: config(),
            state: vec![slot as u8],
            sessions: SessionTable::new(),
        })
    }

    /// A cursor whose commit index is `commit` and applied slot `applied`.
    fn at(commit: Slot, applied: Slot) -> Cursor {
        let mut c = Cursor::new(100);
        c.commit_through(commit);
        for _ in 0..applied {
            c.applied_next();
        }
        c
    }

    #[test]
    fn nothing_is_known_written_or_applied_at_first() {
        let c = Cursor::new(10);
        assert_eq!((c.commit(), c.applied()), (0, 0));
        assert!(!c.has_unwritten_commit());
        assert!(c.snapshot().is_none());
        assert_eq!(c.snapshot_slot(), 0);
        assert_eq!(c.next_snapshot_at(), 10);
        assert_eq!(c.next_to_apply(), None);
    }

    #[test]
    fn the_commit_index_never_falls() {
        let mut c = Cursor::new(10);
        c.commit_through(5);
        c.commit_through(3);
        assert_eq!(c.commit(), 5);
        c.commit_through(6);
        assert_eq!(c.commit(), 6);
    }

    #[test]
    fn slots_are_applied_one_by_one_up_to_the_commit_index() {
        let mut c = at(2, 0);
        assert_eq!(c.next_to_apply(), Some(1));
        c.applied_next();
        assert_eq!(c.next_to_apply(), Some(2));
        c.applied_next();
        assert_eq!(c.applied(), 2);
        assert_eq!(c.next_to_apply(), None, "slot 3 is not known chosen");
        c.applied_next();
        assert_eq!(c.applied(), 2, "applied never passes the commit index");
    }

    #[test]
    fn a_risen_commit_index_is_written_once() {
        let mut c = Cursor::new(10);
        c.commit_through(4);
        assert!(c.has_unwritten_commit());
        assert_eq!(c.take_unwritten_commit(), Some(4));
        assert!(!c.has_unwritten_commit());
        assert_eq!(c.take_unwritten_commit(), None);
        c.commit_through(6);
        assert_eq!(c.take_unwritten_commit(), Some(6));
    }

    #[test]
    fn a_snapshot_is_due_once_applied_reaches_its_slot() {
        let mut c = at(10, 4);
        c.postpone_snapshot(2);
        assert_eq!(c.next_snapshot_at(), 6);
        c.applied_next();
        assert!(!c.snapshot_due());
        c.applied_next();
        assert!(c.snapshot_due());
    }

    #[test]
    fn a_snapshot_taken_covers_exactly_the_applied_slots() {
        let mut c = at(9, 7);
        let snap = c.take_snapshot(config(), vec![7], SessionTable::new(), 5);
        assert_eq!(snap.slot, 7);
        assert_eq!(c.snapshot_slot(), 7);
        assert_eq!(c.snapshot(), Some(&snap));
        assert_eq!(c.next_snapshot_at(), 12, "due again `gap` slots later");
    }

    #[test]
    fn an_installed_snapshot_moves_applied_and_commit_to_its_slot() {
        let mut c = at(3, 2);
        c.install(snapshot(8), 5);
        assert_eq!((c.applied(), c.commit()), (8, 8));
        assert_eq!(c.snapshot_slot(), 8);
        assert_eq!(c.next_snapshot_at(), 13);
    }

    #[test]
    fn an_installed_snapshot_below_the_commit_index_keeps_it() {
        let mut c = at(12, 2);
        c.install(snapshot(8), 5);
        assert_eq!((c.applied(), c.commit()), (8, 12));
    }

    #[test]
    fn a_snapshot_older_than_the_applied_slot_changes_nothing() {
        let mut c = at(9, 9);
        let taken = c.take_snapshot(config(), vec![9], SessionTable::new(), 5);
        c.install(snapshot(6), 1);
        assert_eq!((c.applied(), c.commit()), (9, 9));
        assert_eq!(c.snapshot(), Some(&taken));
        assert_eq!(c.next_snapshot_at(), 14);
    }

    #[test]
    fn a_catch_up_asks_from_the_slot_after_the_commit_index() {
        let mut c = at(4, 0);
        assert_eq!(c.ask_catch_up(0, 3, false), Some(5));
    }

    #[test]
    fn a_catch_up_is_asked_at_most_once_per_interval_unless_forced() {
        let mut c = Cursor::new(10);
        assert_eq!(c.ask_catch_up(5, 3, false), Some(1));
        assert_eq!(c.ask_catch_up(7, 3, false), None);
        assert_eq!(c.ask_catch_up(7, 3, true), Some(1), "forced");
        assert_eq!(
            c.ask_catch_up(9, 3, false),
            None,
            "counted from the forced one"
        );
        assert_eq!(c.ask_catch_up(10, 3, false), Some(1));
    }
}
