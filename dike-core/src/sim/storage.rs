//! Fault-injecting storage for the simulator: writes become durable only
//! when their (simulated) sync completes, a crash loses every write not yet
//! synced, and a sync can fail — after which the storage refuses all work
//! (fail-stop), as the durable engine does.

use crate::driver::{Persist, ReplicaStorage, WriteToken};
use crate::rng::Rng;
use crate::storage::{Recovered, Storage, StorageError, Write};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// How long a simulated sync takes, in steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskTiming {
    /// Shortest sync.
    pub min: u64,
    /// Longest ordinary sync.
    pub max: u64,
    /// Percent of syncs in the slow tail.
    pub slow_pct: u64,
    /// Longest slow sync: a replica's own writes complete long after its
    /// messages left (and after an election timeout).
    pub slow_max: u64,
}

impl Default for DiskTiming {
    fn default() -> Self {
        DiskTiming {
            min: 1,
            max: 5,
            slow_pct: 0,
            slow_max: 5,
        }
    }
}

/// A batch of writes waiting for its sync.
#[derive(Debug)]
struct Pending {
    /// When it was handed over.
    at: u64,
    due: u64,
    token: WriteToken,
    writes: Vec<Write>,
}

/// Storage whose syncs take time and can fail.
#[derive(Debug)]
pub struct FaultyStorage {
    durable: Recovered,
    pending: VecDeque<Pending>,
    failed: bool,
    /// The simulator's current step (set before the replica is driven).
    now: u64,
    timing: DiskTiming,
    rng: Rng,
    /// Every sync handed over before this step is slow (a disk hiccup).
    slow_until: u64,
}

impl Default for FaultyStorage {
    fn default() -> Self {
        Self::new(0, DiskTiming::default())
    }
}

impl FaultyStorage {
    /// Empty storage whose sync times follow `timing`, drawn from `seed`.
    pub fn new(seed: u64, timing: DiskTiming) -> Self {
        FaultyStorage {
            durable: Recovered::default(),
            pending: VecDeque::new(),
            failed: false,
            now: 0,
            timing,
            rng: Rng::new(seed),
            slow_until: 0,
        }
    }

    /// Makes every sync handed over before step `until` slow.
    pub fn slow_down(&mut self, until: u64) {
        self.slow_until = self.slow_until.max(until);
    }

    /// Sets the current step.
    pub fn set_now(&mut self, now: u64) {
        self.now = now;
    }

    /// Queues `writes`: durable after a drawn delay, and after the writes
    /// queued earlier (a disk syncs one batch at a time).
    fn submit(&mut self, token: WriteToken, writes: Vec<Write>) {
        let t = &self.timing;
        let delay = if self.now < self.slow_until || self.rng.chance(t.slow_pct) {
            self.rng.range(t.max, t.slow_max.max(t.max) + 1)
        } else {
            self.rng.range(t.min, t.max + 1)
        };
        let due = self
            .pending
            .back()
            .map_or(self.now, |p| p.due.max(self.now))
            + delay;
        let at = self.now;
        self.pending.push_back(Pending {
            at,
            due,
            token,
            writes,
        });
    }

    /// Whether the oldest unsynced write was handed over at least `steps`
    /// before `now` (the replica's messages have long left meanwhile).
    pub fn lagging(&self, now: u64, steps: u64) -> bool {
        self.pending
            .front()
            .is_some_and(|p| p.at + steps <= now && !self.failed)
    }

    /// Whether a sync is due at step `now`.
    pub fn sync_due(&self, now: u64) -> bool {
        !self.failed && self.pending.front().is_some_and(|p| p.due <= now)
    }

    /// Completes the oldest pending sync and returns its token and the
    /// writes it made durable; if `fail`, the sync fails instead: nothing
    /// becomes durable and the storage stops for good.
    pub fn sync(&mut self, fail: bool) -> Result<Option<(WriteToken, Vec<Write>)>, StorageError> {
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
            return Ok(None);
        };
        self.durable.apply(&p.writes);
        Ok(Some((p.token, p.writes)))
    }

    /// The process died: every write not yet synced is lost; the storage
    /// works again for the next life (a failed sync does not damage data).
    pub fn crash(&mut self) {
        self.pending.clear();
        self.failed = false;
    }

    /// The disk is gone: start empty.
    pub fn wipe(&mut self) {
        self.pending.clear();
        self.failed = false;
        self.durable = Recovered::default();
    }
}

/// A shared handle on a [`FaultyStorage`]: the driver of the node's
/// current life holds one, the simulated node keeps another across crashes.
#[derive(Clone, Debug, Default)]
pub struct SimDisk(Arc<Mutex<FaultyStorage>>);

impl SimDisk {
    /// A disk with the given timing.
    pub fn new(seed: u64, timing: DiskTiming) -> Self {
        SimDisk(Arc::new(Mutex::new(FaultyStorage::new(seed, timing))))
    }

    /// The storage. The simulator is single-threaded: a poisoned lock only
    /// follows a panic that already failed the run.
    pub fn get(&self) -> MutexGuard<'_, FaultyStorage> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ReplicaStorage for SimDisk {
    fn load(&self) -> Result<Recovered, StorageError> {
        self.get().load()
    }

    fn persist(&mut self, token: WriteToken, writes: Vec<Write>) -> Persist {
        let mut s = self.get();
        if s.failed {
            return Persist::Done(Err(StorageError::Failed("an earlier sync failed".into())));
        }
        s.submit(token, writes);
        Persist::Pending
    }
}

impl Storage for FaultyStorage {
    fn write(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::Failed("an earlier sync failed".into()));
        }
        self.durable.apply(writes);
        Ok(())
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
            FaultyStorage::default,
            Some(|mut s: FaultyStorage| {
                s.crash();
                s
            }),
        );
    }

    #[test]
    fn unsynced_writes_are_lost_in_a_crash_and_a_failed_sync_stops_everything() {
        let timing = DiskTiming {
            min: 5,
            max: 5,
            ..DiskTiming::default()
        };
        let mut s = FaultyStorage::new(1, timing);
        let b = Ballot::new(1, crate::ids::MemberId::new(1, 1));
        s.submit(1, vec![Write::Promise(b)]);
        assert!(!s.sync_due(4));
        s.crash();
        assert_eq!(s.load().expect("load").promised, Ballot::ZERO);
        s.submit(2, vec![Write::Promise(b)]);
        assert!(s.sync(true).is_err());
        assert!(matches!(
            s.write(&[Write::Commit(1)]),
            Err(StorageError::Failed(_))
        ));
        assert_eq!(s.load().expect("load").promised, Ballot::ZERO);
    }
}
