//! Where replicas keep their durable state: a [`StorageProvider`] opens one
//! [`Storage`] per hosted replica. The node holds one provider for its whole
//! life, so a replica actor restarted after a crash reopens the same storage
//! and recovers what it wrote.
//!
//! Two providers: [`MemoryProvider`] (state lives as long as the process)
//! and [`NodeLogProvider`] (the durable node log: one log per node shared
//! by all groups, with group commit; its data directory also fixes the
//! node's incarnation).

use crate::storage::{GroupId, GroupStorage, LogOptions, NodeLog};
use dike_core::{
    Blocking, Incarnation, MemberId, MemoryStorage, Persist, Recovered, ReplicaStorage, Storage,
    StorageError, Write, WriteToken,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Tells a replica that the batch of writes it handed over with a token is
/// durable (or failed). Called on the storage's thread: it must be quick
/// (send a message).
pub type Notifier = Arc<dyn Fn(WriteToken, Result<(), StorageError>) + Send + Sync>;

/// Opens the storage of one replica.
pub trait StorageProvider: Send + Sync + 'static {
    /// The storage of `member` of creation `generation` of `group`, created
    /// empty if new. Writes that complete later are reported through
    /// `notify`.
    fn open(
        &self,
        group: &str,
        generation: u64,
        member: MemberId,
        notify: Notifier,
    ) -> Result<Box<dyn ReplicaStorage>, StorageError>;
    /// Forgets the storage of a replica that left this node.
    fn remove(&self, group: &str, generation: u64, member: MemberId) -> Result<(), StorageError>;
    /// The incarnation of durable data, if the provider keeps any across
    /// processes (`None`: every process is a new incarnation).
    fn incarnation(&self) -> Option<Incarnation> {
        None
    }
    /// Adds the provider's own metrics to the node's registry (see
    /// [`crate::node::metrics`]); none by default.
    fn register_metrics(&self, _registry: &mut Registry) {}
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
        Self::open_sized(dir, None)
    }

    /// [`NodeLogProvider::open`] with log segments of `segment_bytes`
    /// (`None`: the default size).
    pub fn open_sized(
        dir: impl AsRef<Path>,
        segment_bytes: Option<u64>,
    ) -> Result<Self, StorageError> {
        let defaults = LogOptions::default();
        let options = LogOptions {
            notifier_thread: false,
            segment_bytes: segment_bytes.unwrap_or(defaults.segment_bytes),
            ..defaults
        };
        Ok(NodeLogProvider {
            log: NodeLog::open_with(dir, options)?,
        })
    }

    /// The incarnation of the log's data directory.
    pub fn data_incarnation(&self) -> Incarnation {
        self.log.incarnation()
    }

    /// The log's first id of `member`'s replica of creation `generation`
    /// of `group`: FNV-1a of all three, so it is the same after every
    /// restart and differs for a group re-created under the same name.
    /// (Generation 0, the master and groups of older tables, keeps the key
    /// without it.)
    pub fn group_id(group: &str, generation: u64, member: MemberId) -> GroupId {
        Self::nth_id(group, generation, member, 0)
    }

    /// The `n`th id of the replica: a replica that was erased (it moved
    /// away) and comes back to this node takes the next id, so nothing it
    /// writes can follow its own tombstone.
    fn nth_id(group: &str, generation: u64, member: MemberId, n: u32) -> GroupId {
        let (node, inc) = (member.node.0, member.incarnation.0);
        let mut key = if generation == 0 {
            format!("{group}/{node}.{inc}")
        } else {
            format!("{group}#{generation}/{node}.{inc}")
        };
        if n > 0 {
            key.push_str(&format!("~{n}"));
        }
        crate::node::identity::node_id_of(&key).0
    }

    /// The replica's current id: the first not erased.
    fn current_id(
        &self,
        group: &str,
        generation: u64,
        member: MemberId,
    ) -> Result<GroupId, StorageError> {
        for n in 0..u32::MAX {
            let id = Self::nth_id(group, generation, member, n);
            if !self.log.is_erased(id)? {
                return Ok(id);
            }
        }
        Err(StorageError::Failed(format!(
            "every log id of {group} is erased"
        )))
    }
}

/// One replica's part of the node log: its writes join the next group
/// commit, and `notify` reports them durable.
struct LogStorage {
    group: GroupStorage,
    notify: Notifier,
}

impl ReplicaStorage for LogStorage {
    fn load(&self) -> Result<Recovered, StorageError> {
        Storage::load(&self.group)
    }

    fn persist(&mut self, token: WriteToken, writes: Vec<Write>) -> Persist {
        let notify = self.notify.clone();
        self.group
            .submit(writes, move |result| notify(token, result));
        Persist::Pending
    }
}

impl StorageProvider for NodeLogProvider {
    fn open(
        &self,
        group: &str,
        generation: u64,
        member: MemberId,
        notify: Notifier,
    ) -> Result<Box<dyn ReplicaStorage>, StorageError> {
        let group = self.log.group(self.current_id(group, generation, member)?);
        Ok(Box::new(LogStorage { group, notify }))
    }

    fn remove(&self, group: &str, generation: u64, member: MemberId) -> Result<(), StorageError> {
        let id = self.current_id(group, generation, member)?;
        self.log.erase(id)?;
        tracing::debug!(%group, generation, %member, "replica storage erased");
        Ok(())
    }

    fn incarnation(&self) -> Option<Incarnation> {
        Some(self.log.incarnation())
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "node_log_fsync_duration_seconds",
            "Time of the fdatasync that makes one group commit of the node log durable",
            self.log.fsync_seconds(),
        );
        registry.register_collector(Box::new(LogCollector(self.log.clone())));
    }
}

/// The node log's own counters ([`NodeLog::stats`]), read at each scrape.
#[derive(Debug)]
struct LogCollector(NodeLog);

impl Collector for LogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let counters = [
            (
                "node_log_fsyncs",
                "Every fsync of the node log: group commits, snapshot files, directories",
                s.fsyncs,
            ),
            (
                "node_log_written_bytes",
                "Bytes appended to the node log, records moved by compaction included",
                s.log_bytes,
            ),
            (
                "node_log_commits",
                "Group commits of the node log (appends made durable by one fdatasync)",
                s.batches,
            ),
            (
                "node_log_writes",
                "Write batches of replicas made durable by the node log",
                s.appends,
            ),
            (
                "node_log_compactions",
                "Compaction passes of the node log that deleted a segment",
                s.compactions,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let g = ConstGauge::new(s.segments as i64);
        let help = "Segments of the node log on disk";
        g.encode(encoder.encode_descriptor("node_log_segments", help, None, g.metric_type())?)
    }
}

/// The stores of one [`MemoryProvider`], by group, generation and member.
type Stores = HashMap<(String, u64, MemberId), Arc<Mutex<MemoryStorage>>>;

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
    fn open(
        &self,
        group: &str,
        generation: u64,
        member: MemberId,
        _notify: Notifier,
    ) -> Result<Box<dyn ReplicaStorage>, StorageError> {
        let mut stores = self.stores.lock().map_err(|_| poisoned("open"))?;
        let store = stores
            .entry((group.to_owned(), generation, member))
            .or_insert_with(|| Arc::new(Mutex::new(MemoryStorage::new())));
        Ok(Box::new(Blocking(SharedMemory(store.clone()))))
    }

    fn remove(&self, group: &str, generation: u64, member: MemberId) -> Result<(), StorageError> {
        let mut stores = self.stores.lock().map_err(|_| poisoned("remove"))?;
        stores.remove(&(group.to_owned(), generation, member));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dike_core::Ballot;

    fn unused() -> Notifier {
        Arc::new(|_, _| panic!("memory storage completes at once"))
    }

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
            .open("g", 1, m, unused())
            .map(|mut s| s.persist(1, vec![Write::Promise(promise)]));
        assert!(matches!(written, Ok(Persist::Done(Ok(())))));
        let again = p
            .open("g", 1, m, unused())
            .and_then(|s| s.load())
            .expect("memory load");
        assert_eq!(again.promised, promise);
        let other = p
            .open("h", 1, m, unused())
            .and_then(|s| s.load())
            .expect("memory load");
        assert_eq!(other.promised, Ballot::ZERO, "groups do not share storage");
        p.remove("g", 1, m).expect("remove");
        let fresh = p
            .open("g", 1, m, unused())
            .and_then(|s| s.load())
            .expect("memory load");
        assert_eq!(fresh.promised, Ballot::ZERO);
    }

    #[test]
    fn the_node_log_exports_its_fsyncs_bytes_and_fsync_latency() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = NodeLogProvider::open(dir.path()).expect("open");
        let (tx, rx) = std::sync::mpsc::channel();
        let notify: Notifier = Arc::new(move |token, result| {
            let _ = tx.send((token, result));
        });
        let m = MemberId::new(1, 1);
        let promise = Ballot {
            round: 1,
            leader: m,
            ..Ballot::ZERO
        };
        let mut store = p.open("g", 1, m, notify).expect("open replica");
        assert!(matches!(
            store.persist(7, vec![Write::Promise(promise)]),
            Persist::Pending
        ));
        let done = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert!(matches!(done, Ok((7, Ok(())))), "{done:?}");

        let text = crate::node::metrics::NodeMetrics::new(&p, Default::default())
            .encode()
            .expect("encodes");
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {series} in {text}"))
        };
        assert!(value("dike_node_log_fsyncs_total") >= 1.0, "{text}");
        assert!(value("dike_node_log_written_bytes_total") > 0.0, "{text}");
        assert!(value("dike_node_log_commits_total") >= 1.0, "{text}");
        assert!(
            value("dike_node_log_fsync_duration_seconds_count") >= 1.0,
            "{text}"
        );
    }
}
