//! Where replicas keep their durable state: a [`StorageProvider`] opens one
//! [`Storage`] per hosted replica. The node holds one provider for its whole
//! life, so a replica actor restarted after a crash reopens the same storage
//! and recovers what it wrote.
//!
//! Two providers: [`MemoryProvider`] (state lives as long as the process)
//! and [`NodeLogProvider`] (the durable node log: one log per node shared
//! by all groups, with group commit; its data directory also fixes the
//! node's incarnation).

use crate::driver::{Blocking, ReplicaStorage};
use crate::storage::{GroupId, LogOptions, NodeLog};
use dike_core::{Incarnation, MemberId, MemoryStorage, Recovered, Storage, StorageError, Write};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Opens the storage of one replica.
pub trait StorageProvider: Send + Sync + 'static {
    /// The storage of `member` of `group`, created empty if new.
    fn open(&self, group: &str, member: MemberId) -> Result<Box<dyn ReplicaStorage>, StorageError>;
    /// Forgets the storage of a replica that left this node.
    fn remove(&self, group: &str, member: MemberId) -> Result<(), StorageError>;
    /// The incarnation of durable data, if the provider keeps any across
    /// processes (`None`: every process is a new incarnation).
    fn incarnation(&self) -> Option<Incarnation> {
        None
    }
}

/// Keeps every replica's state in the node's durable log.
#[derive(Debug, Clone)]
pub struct NodeLogProvider {
    log: NodeLog,
}

impl NodeLogProvider {
    /// Opens (creating if needed) the node log in `dir`. Replicas submit
    /// their writes and their completions only send a message, so they run
    /// on the log's writer thread (no notifier thread).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        let options = LogOptions {
            notifier_thread: false,
            ..LogOptions::default()
        };
        Ok(NodeLogProvider {
            log: NodeLog::open_with(dir, options)?,
        })
    }

    /// The log's id of `member`'s replica of `group`: FNV-1a of both, so it
    /// is the same after every restart.
    pub fn group_id(group: &str, member: MemberId) -> GroupId {
        let key = format!("{group}/{}.{}", member.node.0, member.incarnation.0);
        crate::config::node_id_of(&key).0
    }
}

impl StorageProvider for NodeLogProvider {
    fn open(&self, group: &str, member: MemberId) -> Result<Box<dyn ReplicaStorage>, StorageError> {
        Ok(Box::new(self.log.group(Self::group_id(group, member))))
    }

    fn remove(&self, group: &str, _member: MemberId) -> Result<(), StorageError> {
        // The node log has no delete yet: the group's records stay until
        // a later version reclaims them.
        tracing::debug!(%group, "replica storage left in the node log");
        Ok(())
    }

    fn incarnation(&self) -> Option<Incarnation> {
        Some(self.log.incarnation())
    }
}

/// The stores of one [`MemoryProvider`], by group and member.
type Stores = HashMap<(String, MemberId), Arc<Mutex<MemoryStorage>>>;

/// Keeps every replica's state in memory, for the life of the process.
#[derive(Debug, Default)]
pub struct MemoryProvider {
    stores: Mutex<Stores>,
}

/// One replica's in-memory storage, shared with the provider so that it
/// outlives the replica actor.
#[derive(Debug, Clone)]
struct SharedMemory(Arc<Mutex<MemoryStorage>>);

fn poisoned(op: &'static str) -> StorageError {
    StorageError::Failed(format!("memory storage lock poisoned during {op}"))
}

impl Storage for SharedMemory {
    fn write(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        self.0.lock().map_err(|_| poisoned("write"))?.write(writes)
    }

    fn load(&self) -> Result<Recovered, StorageError> {
        self.0.lock().map_err(|_| poisoned("load"))?.load()
    }
}

impl StorageProvider for MemoryProvider {
    fn open(&self, group: &str, member: MemberId) -> Result<Box<dyn ReplicaStorage>, StorageError> {
        let mut stores = self.stores.lock().map_err(|_| poisoned("open"))?;
        let store = stores
            .entry((group.to_owned(), member))
            .or_insert_with(|| Arc::new(Mutex::new(MemoryStorage::new())));
        Ok(Box::new(Blocking(Box::new(SharedMemory(store.clone())))))
    }

    fn remove(&self, group: &str, member: MemberId) -> Result<(), StorageError> {
        let mut stores = self.stores.lock().map_err(|_| poisoned("remove"))?;
        stores.remove(&(group.to_owned(), member));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Persist;
    use dike_core::Ballot;

    #[test]
    fn a_reopened_store_holds_what_the_previous_one_wrote() {
        let p = MemoryProvider::default();
        let m = MemberId::new(1, 1);
        let promise = Ballot {
            round: 3,
            leader: m,
            ..Ballot::ZERO
        };
        let written = p
            .open("g", m)
            .map(|mut s| s.persist(vec![Write::Promise(promise)], Box::new(|_| {})));
        assert!(matches!(written, Ok(Persist::Done(Ok(())))));
        let again = p.open("g", m).and_then(|s| s.load()).expect("memory load");
        assert_eq!(again.promised, promise);
        let other = p.open("h", m).and_then(|s| s.load()).expect("memory load");
        assert_eq!(other.promised, Ballot::ZERO, "groups do not share storage");
        p.remove("g", m).expect("remove");
        let fresh = p.open("g", m).and_then(|s| s.load()).expect("memory load");
        assert_eq!(fresh.promised, Ballot::ZERO);
    }
}
