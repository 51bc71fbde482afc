//! The in-memory view of a node log: every group's state and, for each
//! segment, how many of its items are still live.
//!
//! Invariant: every live item — a group's highest promise, its commit point
//! (unless its snapshot implies it), the current value of each slot above
//! its snapshot, and its snapshot unless that is in a snapshot file — is
//! located in exactly one segment, the newest one that wrote it, and that
//! segment's `live` count includes it. A segment whose `live` count is zero
//! holds nothing recovery needs, given the snapshot files, and may be
//! deleted.

use super::GroupId;
use dike_core::{Recovered, Slot, Snapshot, Write};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Sequence number of a log segment.
pub(crate) type SegmentId = u64;

/// Item counts of one segment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentStats {
    /// Items ever written into the segment (snapshots only if written into
    /// the log rather than a file).
    pub total: u64,
    /// Items whose live copy is in this segment.
    pub live: u64,
}

/// One group's state plus where each of its live items sits on disk.
#[derive(Debug, Default)]
struct GroupState {
    recovered: Recovered,
    promise_at: Option<SegmentId>,
    commit_at: Option<SegmentId>,
    slot_at: BTreeMap<Slot, SegmentId>,
    /// Where the snapshot's live copy is, if it was written into the log;
    /// `None` with a snapshot means it is in the group's snapshot file.
    snapshot_at: Option<SegmentId>,
    /// The replica was erased: where its tombstone lives. A tombstone
    /// stays live for good, so recovery never replays the records before
    /// it into a replica; the provider never reuses an erased id.
    erased_at: Option<SegmentId>,
}

/// All groups of a node and the liveness of every segment.
#[derive(Debug, Default)]
pub(crate) struct Index {
    groups: HashMap<GroupId, GroupState>,
    segments: BTreeMap<SegmentId, SegmentStats>,
}

impl Index {
    /// Registers an (empty) segment.
    pub fn add_segment(&mut self, seg: SegmentId) {
        self.segments.entry(seg).or_default();
    }

    /// Forgets a deleted segment. It must hold no live item.
    pub fn remove_segment(&mut self, seg: SegmentId) {
        let stats = self.segments.remove(&seg);
        debug_assert_eq!(stats.map_or(0, |s| s.live), 0, "segment {seg} still live");
    }

    /// Known segments and their counts, oldest first.
    pub fn segments(&self) -> &BTreeMap<SegmentId, SegmentStats> {
        &self.segments
    }

    /// Groups that have any state (erased ones have none).
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups
            .iter()
            .filter(|(_, g)| g.erased_at.is_none())
            .map(|(id, _)| *id)
    }

    /// Whether `group` was erased.
    pub fn is_erased(&self, group: GroupId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|g| g.erased_at.is_some())
    }

    /// Everything stored for `group` (empty if nothing).
    pub fn load(&self, group: GroupId) -> Recovered {
        self.groups
            .get(&group)
            .map(|g| g.recovered.clone())
            .unwrap_or_default()
    }

    /// `group`'s snapshot slot, if it has a snapshot.
    pub fn snapshot_slot(&self, group: GroupId) -> Option<Slot> {
        self.groups
            .get(&group)?
            .recovered
            .snapshot
            .as_ref()
            .map(|s| s.slot)
    }

    /// Whether `group`'s current snapshot is the one in its snapshot file
    /// (rather than in the log, or none).
    pub fn snapshot_in_file(&self, group: GroupId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|g| g.recovered.snapshot.is_some() && g.snapshot_at.is_none())
    }

    /// Installs a snapshot read from its file (at open, before replay).
    pub fn install_snapshot(&mut self, group: GroupId, snap: Snapshot) {
        self.apply(group, &[Write::Snapshot(Arc::new(snap))], None);
    }

    /// Applies `writes` of `group`, whose log items were written into
    /// segment `at` (`None` only for snapshots in their files).
    pub fn apply(&mut self, group: GroupId, writes: &[Write], at: Option<SegmentId>) {
        let g = self.groups.entry(group).or_default();
        for w in writes {
            if let Write::Erase = w {
                // Every item of the replica dies; its tombstone lives on.
                let dead = std::mem::take(g);
                let items = (dead.promise_at.into_iter())
                    .chain(dead.commit_at)
                    .chain(dead.snapshot_at);
                for seg in items
                    .chain(dead.slot_at.into_values())
                    .chain(dead.erased_at)
                {
                    dec_live(&mut self.segments, seg);
                }
                if let Some(at) = at {
                    let stats = self.segments.entry(at).or_default();
                    stats.total += 1;
                    stats.live += 1;
                    g.erased_at = Some(at);
                }
                continue;
            }
            let before = (g.recovered.promised, g.recovered.commit);
            g.recovered.apply(std::slice::from_ref(w));
            let snap_slot = g.recovered.snapshot.as_ref().map_or(0, |s| s.slot);
            // `old`: where the item this write supersedes lived; `live`:
            // whether this write is now the item's live copy.
            let (old, live) = match w {
                Write::Promise(b) => {
                    if *b >= before.0 {
                        (g.promise_at.take(), true)
                    } else {
                        (None, false)
                    }
                }
                Write::Commit(c) => {
                    if *c >= before.1 && *c > snap_slot {
                        (g.commit_at.take(), true)
                    } else {
                        (None, false)
                    }
                }
                Write::Accept { slot, .. } => {
                    if *slot > snap_slot {
                        (g.slot_at.remove(slot), true)
                    } else {
                        (None, false)
                    }
                }
                Write::Snapshot(s) => {
                    let installed = g
                        .recovered
                        .snapshot
                        .as_ref()
                        .is_some_and(|cur| Arc::ptr_eq(cur, s));
                    if let Some(at) = at {
                        self.segments.entry(at).or_default().total += 1;
                    }
                    if installed {
                        let kept = g.slot_at.split_off(&(s.slot + 1));
                        let dropped = std::mem::replace(&mut g.slot_at, kept);
                        for seg in dropped.into_values() {
                            dec_live(&mut self.segments, seg);
                        }
                        if g.recovered.commit <= s.slot {
                            if let Some(seg) = g.commit_at.take() {
                                dec_live(&mut self.segments, seg);
                            }
                        }
                        if let Some(seg) = g.snapshot_at.take() {
                            dec_live(&mut self.segments, seg);
                        }
                        if let Some(at) = at {
                            self.segments.entry(at).or_default().live += 1;
                            g.snapshot_at = Some(at);
                        }
                    }
                    continue;
                }
                Write::Erase => continue,
            };
            if let Some(seg) = old {
                dec_live(&mut self.segments, seg);
            }
            let Some(at) = at else { continue };
            let stats = self.segments.entry(at).or_default();
            stats.total += 1;
            if live {
                stats.live += 1;
                match w {
                    Write::Promise(_) => g.promise_at = Some(at),
                    Write::Commit(_) => g.commit_at = Some(at),
                    Write::Accept { slot, .. } => {
                        g.slot_at.insert(*slot, at);
                    }
                    Write::Snapshot(_) | Write::Erase => {}
                }
            }
        }
    }

    /// The live items located in `segs`, as writes per group: appending
    /// them to a newer segment (and applying them there) empties `segs`.
    pub fn live_items(&self, segs: &BTreeSet<SegmentId>) -> Vec<(GroupId, Vec<Write>)> {
        let mut out = Vec::new();
        for (&group, g) in &self.groups {
            let inside = |at: Option<SegmentId>| at.is_some_and(|s| segs.contains(&s));
            let mut writes = Vec::new();
            if inside(g.erased_at) {
                writes.push(Write::Erase);
            }
            if inside(g.snapshot_at) {
                if let Some(snap) = &g.recovered.snapshot {
                    writes.push(Write::Snapshot(snap.clone()));
                }
            }
            if inside(g.promise_at) {
                writes.push(Write::Promise(g.recovered.promised));
            }
            for (&slot, &at) in &g.slot_at {
                if segs.contains(&at) {
                    if let Some(value) = g.recovered.log.get(&slot) {
                        writes.push(Write::Accept {
                            slot,
                            value: value.clone(),
                        });
                    }
                }
            }
            if inside(g.commit_at) {
                writes.push(Write::Commit(g.recovered.commit));
            }
            if !writes.is_empty() {
                out.push((group, writes));
            }
        }
        out.sort_by_key(|(group, _)| *group);
        out
    }
}

fn dec_live(segments: &mut BTreeMap<SegmentId, SegmentStats>, seg: SegmentId) {
    if let Some(s) = segments.get_mut(&seg) {
        s.live = s.live.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dike_core::{Accepted, Ballot, Config, Entry, MemberId, SessionTable};

    fn accept(slot: Slot) -> Write {
        Write::Accept {
            slot,
            value: Accepted {
                ballot: Ballot::ZERO,
                entry: Entry::Noop,
            },
        }
    }

    fn snapshot(slot: Slot) -> Write {
        Write::Snapshot(Arc::new(Snapshot {
            slot,
            config: Config::initial(vec![MemberId::new(1, 1)]),
            state: vec![],
            sessions: SessionTable::new(),
        }))
    }

    fn live(ix: &Index, seg: SegmentId) -> u64 {
        ix.segments()[&seg].live
    }

    #[test]
    fn a_rewritten_slot_is_live_only_where_last_written() {
        let mut ix = Index::default();
        ix.apply(1, &[accept(1), accept(2)], Some(1));
        ix.apply(1, &[accept(2)], Some(2));
        assert_eq!((live(&ix, 1), live(&ix, 2)), (1, 1));
        assert_eq!(ix.segments()[&1].total, 2);
    }

    #[test]
    fn a_snapshot_kills_the_slots_and_commit_it_covers() {
        let mut ix = Index::default();
        ix.apply(
            1,
            &[accept(1), accept(2), accept(3), Write::Commit(2)],
            Some(1),
        );
        ix.apply(1, &[snapshot(2)], Some(2));
        assert_eq!(live(&ix, 1), 1, "only slot 3 stays live");
        ix.apply(1, &[accept(2), Write::Commit(1)], Some(2));
        assert_eq!(
            live(&ix, 2),
            1,
            "only the snapshot: writes below it are dead on arrival"
        );
    }

    #[test]
    fn a_snapshot_in_the_log_lives_until_a_newer_one_in_a_file() {
        let mut ix = Index::default();
        ix.apply(1, &[snapshot(2)], Some(1));
        ix.apply(1, &[snapshot(1)], Some(2));
        assert_eq!((live(&ix, 1), live(&ix, 2)), (1, 0), "an older one is dead");
        assert_eq!(ix.segments()[&2].total, 1);
        assert!(!ix.snapshot_in_file(1));
        let items = ix.live_items(&BTreeSet::from([1]));
        assert!(
            matches!(&items[..], [(1, w)] if matches!(&w[..], [Write::Snapshot(s)] if s.slot == 2))
        );
        ix.apply(1, &[snapshot(3)], None);
        assert_eq!(live(&ix, 1), 0);
        assert!(ix.snapshot_in_file(1));
    }

    #[test]
    fn lower_promises_and_commits_are_dead_on_arrival() {
        let mut ix = Index::default();
        let high = Ballot {
            epoch: 0,
            round: 5,
            leader: MemberId::new(1, 1),
        };
        ix.apply(1, &[Write::Promise(high), Write::Commit(9)], Some(1));
        ix.apply(
            1,
            &[Write::Promise(Ballot::ZERO), Write::Commit(3)],
            Some(2),
        );
        assert_eq!((live(&ix, 1), live(&ix, 2)), (2, 0));
    }

    #[test]
    fn forwarding_live_items_empties_their_segment() {
        let mut ix = Index::default();
        let b = Ballot {
            epoch: 0,
            round: 1,
            leader: MemberId::new(1, 1),
        };
        ix.apply(
            1,
            &[Write::Promise(b), accept(4), accept(5), Write::Commit(4)],
            Some(1),
        );
        ix.apply(2, &[accept(1)], Some(1));
        ix.apply(1, &[accept(5)], Some(2));
        let before = (ix.load(1), ix.load(2));
        let items = ix.live_items(&BTreeSet::from([1]));
        assert_eq!(items.len(), 2);
        for (group, writes) in &items {
            ix.apply(*group, writes, Some(3));
        }
        assert_eq!(live(&ix, 1), 0);
        assert_eq!((ix.load(1), ix.load(2)), before);
    }
}
