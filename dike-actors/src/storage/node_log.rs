//! [`NodeLog`], the one durable log of a node, and [`GroupStorage`], the
//! per-group handle that implements [`dike_core::Storage`] on it.
//!
//! Invariant: what `load` returns for a group is exactly what replaying its
//! durable writes gives; the in-memory view is updated only after the fsync
//! that made those writes durable, and before their completions run.

use super::files::{self, Layout};
use super::recovery::recover;
use super::writer::{self, Completion, Shared, Submission, Writer, WriterConfig};
use super::GroupId;
use dike_core::{Incarnation, Recovered, Storage, StorageError, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// How a [`NodeLog`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is closed and a new one started once an append would make
    /// it larger than this. Compaction works segment by segment, so this is
    /// also the granularity at which disk space is reclaimed.
    pub segment_bytes: u64,
    /// Whether writes that are queued together share one fsync. `false`
    /// makes every submission its own append and fsync: the baseline that
    /// the benchmark compares against, not a production setting.
    pub group_commit: bool,
    /// Most submissions made durable by one fsync.
    pub max_batch: usize,
    /// Whether completions run on a notifier thread of their own, so that
    /// waking the callers of one batch overlaps the next batch's fsync.
    /// Worth it when many OS threads block in [`GroupStorage`]'s `write`
    /// (each completion then wakes a thread); a caller whose completions
    /// only send a message, like the actor runtime's replicas, does better
    /// without the extra thread hop per batch (`false`): the completions
    /// then run on the writer thread right after the fsync.
    pub notifier_thread: bool,
    /// How far ahead of its end the active segment is kept zero-filled, so
    /// that appends overwrite blocks the file already has and their
    /// `fdatasync` need not commit a new size and block allocation to the
    /// file system's journal. Bounded by `segment_bytes`; 0 turns it off.
    pub preallocate_bytes: u64,
    /// A snapshot that encodes to at most this many bytes is written into
    /// the log, within its batch's append and `fdatasync`; a larger one
    /// replaces the group's snapshot file (a file write, a file fsync and a
    /// directory fsync, all on the writer thread, which every group's
    /// commits wait behind). 0 puts every snapshot in its file.
    pub log_snapshot_max_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            group_commit: true,
            max_batch: 4096,
            notifier_thread: true,
            preallocate_bytes: 4 << 20,
            log_snapshot_max_bytes: 64 << 10,
        }
    }
}

/// Work done by a node log since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Submissions made durable.
    pub appends: u64,
    /// Log appends, each made durable by one `fdatasync`.
    pub batches: u64,
    /// Every fsync issued: log appends, snapshot files, directories.
    pub fsyncs: u64,
    /// Bytes appended to the log, including records moved by compaction.
    pub log_bytes: u64,
    /// Compaction passes that deleted at least one segment.
    pub compactions: u64,
    /// Log segments currently on disk.
    pub segments: u64,
}

struct Inner {
    dir: PathBuf,
    incarnation: Incarnation,
    shared: Arc<Shared>,
    log_snapshot_max_bytes: u64,
    sender: Option<Sender<Submission>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel stops the writer once it has drained it.
        self.sender.take();
        if let Some(w) = self.writer.take() {
            // A completion that drops the last handle runs on the writer
            // thread itself, which then exits on its own.
            if w.thread().id() != std::thread::current().id() {
                let _ = w.join();
            }
        }
    }
}

/// The durable log of one node, shared by all its groups.
///
/// Cloning is cheap and shares the log; the writer thread stops and the
/// files are closed when the last clone (including every [`GroupStorage`])
/// is dropped. A data directory must be opened by one `NodeLog` at a time.
#[derive(Clone)]
pub struct NodeLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLog")
            .field("dir", &self.inner.dir)
            .field("incarnation", &self.inner.incarnation)
            .finish_non_exhaustive()
    }
}

impl NodeLog {
    /// Opens (creating if needed) the node log in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<NodeLog, StorageError> {
        Self::open_with(dir, LogOptions::default())
    }

    /// Opens (creating if needed) the node log in `dir`: recovers every
    /// group, cuts off a torn tail, and starts the writer thread.
    pub fn open_with(dir: impl AsRef<Path>, options: LogOptions) -> Result<NodeLog, StorageError> {
        let layout = Layout::create(dir.as_ref())?;
        let incarnation = layout.incarnation()?;
        let recovery = recover(&layout)?;
        let active = writer::open_segment(&layout, recovery.active_seq)?;
        layout.sync_dir()?;
        let shared = Arc::new(Shared {
            index: recovery.index.into(),
            ..Shared::default()
        });
        let config = WriterConfig {
            segment_bytes: options.segment_bytes.max(1),
            max_batch: if options.group_commit {
                options.max_batch.max(1)
            } else {
                1
            },
            notifier_thread: options.notifier_thread,
            preallocate_bytes: options.preallocate_bytes,
        };
        let writer = Writer {
            layout: layout.clone(),
            shared: shared.clone(),
            config,
            active,
            active_seq: recovery.active_seq,
            active_len: recovery.active_len,
            active_filled: recovery.active_len,
        };
        let (sender, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("dike-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(files::io("spawn log writer", layout.dir()))?;
        Ok(NodeLog {
            inner: Arc::new(Inner {
                dir: layout.dir().to_path_buf(),
                incarnation,
                shared,
                log_snapshot_max_bytes: options.log_snapshot_max_bytes,
                sender: Some(sender),
                writer: Some(handle),
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// This data directory's incarnation: created with the directory, kept
    /// for its whole life, different for a directory created afresh.
    pub fn incarnation(&self) -> Incarnation {
        self.inner.incarnation
    }

    /// The handle through which `group` reads and writes its state.
    pub fn group(&self, group: GroupId) -> GroupStorage {
        GroupStorage {
            node: self.clone(),
            group,
        }
    }

    /// Every group with state in the log or a snapshot, ascending.
    pub fn groups(&self) -> Result<Vec<GroupId>, StorageError> {
        let mut groups: Vec<GroupId> = self.inner.shared.index()?.groups().collect();
        groups.sort_unstable();
        Ok(groups)
    }

    /// Queues `writes` of `group` and returns at once; `done` is called
    /// from the writer thread with `Ok` once they are durable, or with the
    /// error that stopped the log. `done` must be quick (e.g. send a
    /// message): it delays every later batch.
    pub fn submit(
        &self,
        group: GroupId,
        writes: Vec<Write>,
        done: impl FnOnce(Result<(), StorageError>) + Send + 'static,
    ) {
        let done: Completion = Box::new(done);
        if let Err(e) = self.inner.shared.check() {
            return done(Err(e));
        }
        let Some(sender) = &self.inner.sender else {
            return done(Err(StorageError::Failed("node log is closed".into())));
        };
        let submission =
            match Submission::new(group, writes, self.inner.log_snapshot_max_bytes, done) {
                Ok(s) => s,
                Err((e, done)) => return done(Err(e)),
            };
        if let Err(mpsc::SendError(s)) = sender.send(submission) {
            (s.done)(Err(StorageError::Failed(
                "node log writer has stopped".into(),
            )));
        }
    }

    /// Applies `writes` of `group` and returns once they are durable.
    pub fn write(&self, group: GroupId, writes: &[Write]) -> Result<(), StorageError> {
        // Parking rather than a channel: no allocation of a channel per
        // write and no spinning, which matters with hundreds of writers.
        let waiter = Arc::new(Waiter {
            outcome: OnceLock::new(),
            thread: std::thread::current(),
        });
        let ack = Ack(waiter.clone());
        self.submit(group, writes.to_vec(), move |r| ack.complete(r));
        loop {
            if let Some(outcome) = waiter.outcome.get() {
                return outcome.clone();
            }
            std::thread::park();
        }
    }

    /// Forgets everything of `group` (the replica left this node) and
    /// returns once that is durable. Its records are reclaimed as the log
    /// compacts; its id is never used again (see [`NodeLog::is_erased`]).
    pub fn erase(&self, group: GroupId) -> Result<(), StorageError> {
        self.write(group, &[Write::Erase])
    }

    /// Whether `group` was erased.
    pub fn is_erased(&self, group: GroupId) -> Result<bool, StorageError> {
        Ok(self.inner.shared.index()?.is_erased(group))
    }

    /// Everything durably written for `group`.
    pub fn load(&self, group: GroupId) -> Result<Recovered, StorageError> {
        Ok(self.inner.shared.index()?.load(group))
    }

    /// How long each group commit's `fdatasync` took (a handle on the
    /// histogram the writer fills).
    pub fn fsync_seconds(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.inner.shared.counters.fsync_seconds.clone()
    }

    /// Counters of the work done so far.
    pub fn stats(&self) -> LogStats {
        let c = &self.inner.shared.counters;
        LogStats {
            appends: c.appends.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            log_bytes: c.log_bytes.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            segments: self
                .inner
                .shared
                .index()
                .map_or(0, |ix| ix.segments().len() as u64),
        }
    }

    /// Blocks the writer from publishing batches while the guard lives, so
    /// tests can queue submissions behind it.
    #[cfg(test)]
    pub(crate) fn hold_writer(&self) -> std::sync::MutexGuard<'_, super::index::Index> {
        self.inner.shared.index().expect("index")
    }

    /// Makes the next `n` log fsyncs fail (fail-stop tests).
    #[cfg(test)]
    pub(crate) fn fail_next_syncs(&self, n: u32) {
        self.inner.shared.fail_syncs.store(n, Ordering::SeqCst);
    }
}

/// Where a blocked [`NodeLog::write`] finds its outcome.
struct Waiter {
    outcome: OnceLock<Result<(), StorageError>>,
    thread: std::thread::Thread,
}

/// Completes a [`Waiter`] once: with the outcome given, or with `Failed` if
/// the completion is dropped uncalled (the writer stopped), so a writer
/// never waits forever.
struct Ack(Arc<Waiter>);

impl Ack {
    fn complete(self, outcome: Result<(), StorageError>) {
        let _ = self.0.outcome.set(outcome);
        // `Drop` wakes the waiting thread.
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        let _ = self.0.outcome.set(Err(StorageError::Failed(
            "node log writer stopped before the write was durable".into(),
        )));
        self.0.thread.unpark();
    }
}

/// One group's view of a [`NodeLog`]: a [`Storage`] whose writes share the
/// node's log and its fsyncs with every other group.
///
/// Groups are keyed by a `u64` group id, fixed for the life of the group
/// (names can change, ids are cheap to store in every record).
#[derive(Clone, Debug)]
pub struct GroupStorage {
    node: NodeLog,
    group: GroupId,
}

impl GroupStorage {
    /// The group this handle writes for.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The node log underneath.
    pub fn node(&self) -> &NodeLog {
        &self.node
    }

    /// Non-blocking write: see [`NodeLog::submit`].
    pub fn submit(
        &self,
        writes: Vec<Write>,
        done: impl FnOnce(Result<(), StorageError>) + Send + 'static,
    ) {
        self.node.submit(self.group, writes, done);
    }
}

impl Storage for GroupStorage {
    fn write(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        self.node.write(self.group, writes)
    }

    fn load(&self) -> Result<Recovered, StorageError> {
        self.node.load(self.group)
    }
}
