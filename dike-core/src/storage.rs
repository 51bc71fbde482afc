//! What a replica must keep across crashes, and the trait that keeps it.
//!
//! Invariant: a write returned as `Ok` by [`Storage::write`] survives any
//! crash. A replica sends `Promise` and `Accepted` only after the writes that
//! back them are durable (the runtime enforces this with `Ready`).

#[cfg(any(test, feature = "sim"))]
pub mod contract;
mod memory;

pub use memory::MemoryStorage;

use crate::config::Config;
use crate::entry::{Batch, Command, Entry};
use crate::ids::{Ballot, MemberId, Slot};
use crate::session::SessionTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A group's applied state at one slot: what a new or lagging replica
/// starts from, and what lets the log below `slot` be dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every slot up to and including this one is applied in `state`.
    pub slot: Slot,
    /// The membership in force after `slot`.
    pub config: Config,
    /// The exported state of the paxos server.
    #[serde(with = "crate::codec::bytes")]
    pub state: Vec<u8>,
    /// The client sessions after `slot`.
    pub sessions: SessionTable,
}

/// An accepted (or learned) log entry with the ballot it was accepted in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The ballot of the proposal that was accepted.
    pub ballot: Ballot,
    /// The value.
    pub entry: Entry,
}

/// One durable change. Writes are applied in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// The acceptor promised `Ballot`: never accept anything lower again.
    Promise(Ballot),
    /// The acceptor accepted `value` at `slot` (replacing any earlier value).
    Accept {
        /// The slot.
        slot: Slot,
        /// Ballot and entry.
        value: Accepted,
    },
    /// Every slot up to this one is chosen with the value stored for it.
    /// Never lowers an earlier commit point.
    Commit(Slot),
    /// Replace the snapshot; entries at or below `snapshot.slot` may be
    /// dropped, entries above it are kept.
    Snapshot(Arc<Snapshot>),
    /// Forget everything stored for this replica: it left its node, or its
    /// group was removed. Written by the runtime, never by a replica; a
    /// later load returns nothing.
    Erase,
}

impl Write {
    /// Accepting a batch of one command proposed by `proposer` (boot 1) in
    /// `ballot` at `slot`: handy for storage tools, tests and benchmarks.
    pub fn accept_one(slot: Slot, ballot: Ballot, proposer: MemberId, command: Command) -> Write {
        let batch = Batch {
            proposer,
            boot: 1,
            commands: Arc::from(vec![command]),
        };
        Write::Accept {
            slot,
            value: Accepted {
                ballot,
                entry: Entry::Batch(batch),
            },
        }
    }
}

/// Everything a replica finds on restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Highest promised ballot (`Ballot::ZERO` if none).
    pub promised: Ballot,
    /// Accepted entries above the snapshot, by slot.
    pub log: BTreeMap<Slot, Accepted>,
    /// Highest commit point written.
    pub commit: Slot,
    /// Latest snapshot, if any.
    pub snapshot: Option<Arc<Snapshot>>,
}

impl Recovered {
    /// Applies `writes` in order, as a storage engine replays its log.
    /// Engines may use this to rebuild their in-memory view.
    pub fn apply(&mut self, writes: &[Write]) {
        for w in writes {
            match w {
                Write::Promise(b) => self.promised = self.promised.max(*b),
                Write::Accept { slot, value } => {
                    if self.snapshot.as_ref().is_none_or(|s| *slot > s.slot) {
                        self.log.insert(*slot, value.clone());
                    }
                }
                Write::Commit(c) => self.commit = self.commit.max(*c),
                Write::Snapshot(s) => {
                    if self.snapshot.as_ref().is_none_or(|old| s.slot >= old.slot) {
                        self.log = self.log.split_off(&(s.slot + 1));
                        self.commit = self.commit.max(s.slot);
                        self.snapshot = Some(s.clone());
                    }
                }
                Write::Erase => *self = Recovered::default(),
            }
        }
    }
}

/// Why storage failed. A replica treats every storage error as fatal for
/// itself (fail-stop): it never goes on as if the data were safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// An IO operation failed.
    #[error("storage IO error during {op}: {reason}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        reason: String,
    },
    /// Stored data is damaged in a way that cannot be repaired by dropping a
    /// torn tail.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// The storage failed earlier and refuses further work (fail-stop).
    #[error("storage has failed and is stopped: {0}")]
    Failed(String),
}

/// Durable state of one replica of one group.
pub trait Storage: Send {
    /// Applies `writes` in order and returns once all are durable.
    fn write(&mut self, writes: &[Write]) -> Result<(), StorageError>;

    /// Reads back everything written so far.
    fn load(&self) -> Result<Recovered, StorageError>;
}
