//! Fault-injecting storage for the simulator: writes become durable only
//! when their (simulated) sync completes, a crash loses every write not yet
//! synced, and a sync can fail — after which the storage refuses all work
//! (fail-stop), as the durable engine does.

use crate::message::Envelope;
use crate::storage::{Recovered, Storage, StorageError, Write};
use std::collections::VecDeque;

/// Writes waiting for their sync, with the messages that wait on them.
#[derive(Debug)]
struct Pending {
    due: u64,
    writes: Vec<Write>,
    after: Vec<Envelope>,
}

/// Storage whose syncs take time and can fail.
#[derive(Debug, Default)]
pub struct FaultyStorage {
    durable: Recovered,
    pending: VecDeque<Pending>,
    failed: bool,
}

impl FaultyStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `writes` to become durable `delay` steps after `now`, or
    /// after the writes queued earlier (a disk syncs one batch at a time);
    /// `after` is released once they are.
    pub fn submit(&mut self, now: u64, delay: u64, writes: Vec<Write>, after: Vec<Envelope>) {
        let due = self.pending.back().map_or(now, |p| p.due.max(now)) + delay;
        self.pending.push_back(Pending { due, writes, after });
    }

    /// Whether a sync is due at step `now`.
    pub fn sync_due(&self, now: u64) -> bool {
        !self.failed && self.pending.front().is_some_and(|p| p.due <= now)
    }

    /// Completes the next due sync and returns the messages it releases; if
    /// `fail`, the sync fails instead: nothing becomes durable and the
    /// storage stops for good.
    pub fn sync(&mut self, fail: bool) -> Result<Vec<Envelope>, StorageError> {
        if self.failed {
            return Err(StorageError::Failed("an earlier sync failed".into()));
        }
        if fail {
            self.failed = true;
            self.pending.clear();
            return Err(StorageError::Io {
                op: "fdatasync",
                reason: "injected failure".into(),
            });
        }
        let Some(p) = self.pending.pop_front() else {
            return Ok(Vec::new());
        };
        self.durable.apply(&p.writes);
        Ok(p.after)
    }

    /// The process died: every write not yet synced is lost; the storage
    /// works again for the next life (a failed sync does not damage data).
    pub fn crash(&mut self) {
        self.pending.clear();
        self.failed = false;
    }

    /// The disk is gone: start empty.
    pub fn wipe(&mut self) {
        *self = Self::default();
    }
}

impl Storage for FaultyStorage {
    fn write(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::Failed("an earlier sync failed".into()));
        }
        self.submit(0, 0, writes.to_vec(), Vec::new());
        self.sync(false).map(|_| ())
    }

    fn load(&self) -> Result<Recovered, StorageError> {
        Ok(self.durable.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Ballot;

    #[test]
    fn faulty_storage_passes_the_contract_when_it_does_not_fail() {
        crate::storage::contract::run_all(
            FaultyStorage::new,
            Some(|mut s: FaultyStorage| {
                s.crash();
                s
            }),
        );
    }

    #[test]
    fn unsynced_writes_are_lost_in_a_crash_and_a_failed_sync_stops_everything() {
        let mut s = FaultyStorage::new();
        let b = Ballot::new(1, crate::ids::MemberId::new(1, 1));
        s.submit(0, 5, vec![Write::Promise(b)], Vec::new());
        assert!(!s.sync_due(4));
        s.crash();
        assert_eq!(s.load().expect("load").promised, Ballot::ZERO);
        s.submit(0, 1, vec![Write::Promise(b)], Vec::new());
        assert!(s.sync(true).is_err());
        assert!(matches!(
            s.write(&[Write::Commit(1)]),
            Err(StorageError::Failed(_))
        ));
        assert_eq!(s.load().expect("load").promised, Ballot::ZERO);
    }
}
