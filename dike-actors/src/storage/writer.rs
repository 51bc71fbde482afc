//! The single writer of a node log: group commit, segment rolling,
//! compaction and fail-stop.
//!
//! Invariant: a submission's completion is called with `Ok` only after the
//! `fdatasync` that covers its record has returned successfully; after any
//! IO error the writer makes nothing durable any more and completes every
//! submission with [`StorageError::Failed`] — it never retries an fsync,
//! because a failed fsync may have dropped dirty pages the kernel will not
//! write again.
//!
//! Group commit: the writer blocks for one submission, yields its CPU once
//! (so submitters that are running can add to the batch rather than each
//! wake it for a batch of their own), then takes every submission already
//! queued (up to `max_batch`) and makes them all durable with one append and
//! one `fdatasync`. Submissions that arrive while it is syncing form the next
//! batch, so the batch grows with the load.
//!
//! Preallocation: the active segment is kept zero-filled some way past its
//! end ([`WriterConfig::preallocate_bytes`]), so an append overwrites blocks
//! the file already has and its `fdatasync` need not also commit a new file
//! size and block allocation to the file system's journal (on ext4 that cut
//! the CPU and latency of a small append's sync by about a third). Each
//! append is one batch record (see [`record`]), so a crash that leaves only
//! part of it on disk leaves a torn tail, never records that look valid. A
//! segment's unused zeros are cut off when the next segment starts, and
//! recovery cuts them off the newest one.

use super::files::{io, Layout};
use super::index::{Index, SegmentId};
use super::{record, GroupId};
use dike_core::codec::encode;
use dike_core::{StorageError, Write};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// Called once with the outcome of a submission.
pub type Completion = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// One group's writes waiting for the writer, with their log record
/// already framed (and large snapshots encoded) by the submitting thread, so
/// encoding runs in parallel.
pub(crate) struct Submission {
    pub group: GroupId,
    pub writes: Vec<Write>,
    /// The framed record of the writes that go into the log: every write
    /// but the snapshots in `files`; empty if none.
    pub record: Vec<u8>,
    /// Snapshots too large for the log, each to replace the group's
    /// snapshot file: the index of its write and its encoded payload.
    pub files: Vec<(usize, Vec<u8>)>,
    pub done: Completion,
}

impl Submission {
    /// Frames the log record of `writes`: a snapshot goes into it if it
    /// encodes to at most `log_snapshot_max` bytes, into its file
    /// otherwise. Fails only if the writes cannot be encoded.
    pub fn new(
        group: GroupId,
        writes: Vec<Write>,
        log_snapshot_max: u64,
        done: Completion,
    ) -> Result<Self, (StorageError, Completion)> {
        let mut files = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            let Write::Snapshot(snap) = w else { continue };
            match encode("snapshot", snap.as_ref()) {
                Ok(payload) if payload.len() as u64 > log_snapshot_max => files.push((i, payload)),
                Ok(_) => {}
                Err(e) => return Err((encode_error(e), done)),
            }
        }
        let items: Vec<&Write> = writes
            .iter()
            .enumerate()
            .filter(|(i, _)| !files.iter().any(|(f, _)| f == i))
            .map(|(_, w)| w)
            .collect();
        let mut record = Vec::new();
        if !items.is_empty() {
            if let Err(e) = frame_record(group, &items, &mut record) {
                return Err((e, done));
            }
        }
        Ok(Submission {
            group,
            writes,
            record,
            files,
            done,
        })
    }

    /// Where write `i` of this submission lives once the batch's log
    /// record is in segment `seg`: in its file (`None`) or in `seg`.
    fn at(&self, i: usize, seg: SegmentId) -> Option<SegmentId> {
        if self.files.iter().any(|(f, _)| *f == i) {
            None
        } else {
            Some(seg)
        }
    }
}

/// Completions of one batch and the outcome to give them.
type Notice = (Vec<Completion>, Result<(), StorageError>);

/// Counters of the work done by a node log's writer.
#[derive(Debug)]
pub(crate) struct Counters {
    pub appends: AtomicU64,
    pub batches: AtomicU64,
    pub fsyncs: AtomicU64,
    pub log_bytes: AtomicU64,
    pub compactions: AtomicU64,
    /// How long each group commit's `fdatasync` took.
    pub fsync_seconds: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            appends: AtomicU64::default(),
            batches: AtomicU64::default(),
            fsyncs: AtomicU64::default(),
            log_bytes: AtomicU64::default(),
            compactions: AtomicU64::default(),
            // 20 µs doubling to about 1.3 s.
            fsync_seconds: Histogram::new(exponential_buckets(0.00002, 2.0, 17)),
        }
    }
}

/// State shared by the writer and every handle of the node log.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub index: Mutex<Index>,
    pub failure: OnceLock<String>,
    pub counters: Counters,
    /// Test hook: the next `n` log fsyncs report failure.
    #[cfg(test)]
    pub fail_syncs: std::sync::atomic::AtomicU32,
}

impl Shared {
    /// The index, or `Failed` if a thread panicked while holding it.
    pub fn index(&self) -> Result<MutexGuard<'_, Index>, StorageError> {
        self.index
            .lock()
            .map_err(|_| StorageError::Failed("storage index lock poisoned".into()))
    }

    /// `Err(Failed)` once the log has failed.
    pub fn check(&self) -> Result<(), StorageError> {
        match self.failure.get() {
            Some(reason) => Err(StorageError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    fn fail(&self, e: &StorageError) -> StorageError {
        let _ = self.failure.set(e.to_string());
        tracing::error!(error = %e, "node log failed; refusing further writes");
        e.clone()
    }
}

/// Tuning of the writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    pub segment_bytes: u64,
    pub max_batch: usize,
    /// Completions run on a notifier thread rather than on the writer's.
    pub notifier_thread: bool,
    /// How far past its end the active segment is zero-filled ahead of
    /// appends (at most to `segment_bytes`); 0 turns preallocation off.
    pub preallocate_bytes: u64,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub layout: Layout,
    pub shared: Arc<Shared>,
    pub config: WriterConfig,
    pub active: File,
    pub active_seq: SegmentId,
    /// Bytes of records in the active segment.
    pub active_len: u64,
    /// Length of the active segment's file: `active_len` plus zeros.
    pub active_filled: u64,
}

fn encode_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        op: "encode log record",
        reason: e.to_string(),
    }
}

/// Calls each completion of a batch with its outcome.
fn complete(dones: Vec<Completion>, outcome: &Result<(), StorageError>) {
    for done in dones {
        done(outcome.clone());
    }
}

/// Appends the record of `group`'s log items, framed to go in a batch, to
/// `buf`.
fn frame_record<W: serde::Serialize>(
    group: GroupId,
    items: &[W],
    buf: &mut Vec<u8>,
) -> Result<(), StorageError> {
    let payload = encode("log record", &(group, items)).map_err(encode_error)?;
    record::frame_in_batch(&payload, buf).map_err(encode_error)
}

impl Writer {
    /// Runs until every sender is gone. With
    /// [`WriterConfig::notifier_thread`], completions are called on a
    /// separate notifier thread, so waking the writers of one batch overlaps
    /// the fsync of the next; otherwise right here, after the fsync.
    pub fn run(mut self, rx: Receiver<Submission>) {
        let (tx, notices) = std::sync::mpsc::channel::<Notice>();
        let notifier = if self.config.notifier_thread {
            std::thread::Builder::new()
                .name("dike-log-notifier".into())
                .spawn(move || {
                    for (dones, outcome) in notices {
                        complete(dones, &outcome);
                    }
                })
                .ok()
        } else {
            None
        };
        // Without a notifier thread (not wanted, or it could not be
        // spawned), completions run here.
        let to_notifier = notifier.as_ref().map(|_| tx);
        let notify = move |(dones, outcome): Notice| match &to_notifier {
            Some(tx) => {
                if let Err(std::sync::mpsc::SendError((dones, outcome))) = tx.send((dones, outcome))
                {
                    complete(dones, &outcome);
                }
            }
            None => complete(dones, &outcome),
        };
        while let Ok(first) = rx.recv() {
            std::thread::yield_now();
            let mut batch = vec![first];
            while batch.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
            notify(self.commit(batch));
        }
        drop(notify);
        if let Some(n) = notifier {
            let _ = n.join();
        }
    }

    /// Makes `batch` durable; returns its completions and their outcome.
    fn commit(&mut self, batch: Vec<Submission>) -> Notice {
        let result = self.shared.check().and_then(|()| {
            let mut buf = Vec::with_capacity(batch.iter().map(|s| s.record.len()).sum());
            for s in &batch {
                buf.extend_from_slice(&s.record);
            }
            self.persist(&batch, &buf)
        });
        let result = match result {
            Ok(()) => {
                let c = &self.shared.counters;
                c.appends.fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e @ StorageError::Failed(_)) => Err(e),
            Err(e) => Err(self.shared.fail(&e)),
        };
        (batch.into_iter().map(|s| s.done).collect(), result)
    }

    /// Writes the batch's snapshots and log records durably, then updates
    /// the index and compacts if a segment was filled.
    fn persist(&mut self, batch: &[Submission], buf: &[u8]) -> Result<(), StorageError> {
        self.write_snapshots(batch)?;
        let rolled = if self.active_len > 0
            && self.active_len + buf.len() as u64 > self.config.segment_bytes
        {
            self.roll()?;
            true
        } else {
            false
        };
        self.append(buf)?;
        // Groups whose snapshot file a snapshot in the log may supersede.
        let mut in_file = Vec::new();
        {
            let mut index = self.shared.index()?;
            for s in batch {
                let logged_snapshot = s.writes.iter().enumerate().any(|(i, w)| {
                    matches!(w, Write::Snapshot(_)) && s.at(i, self.active_seq).is_some()
                });
                if logged_snapshot && index.snapshot_in_file(s.group) {
                    in_file.push(s.group);
                }
                if s.files.is_empty() {
                    index.apply(s.group, &s.writes, Some(self.active_seq));
                } else {
                    for (i, w) in s.writes.iter().enumerate() {
                        index.apply(s.group, std::slice::from_ref(w), s.at(i, self.active_seq));
                    }
                }
            }
            in_file.retain(|&group| !index.snapshot_in_file(group));
        }
        // A snapshot file goes once a newer snapshot in the log is durable,
        // and an erased replica's once its tombstone is (recovery deletes
        // both too, should a crash come in between).
        for s in batch {
            if s.writes.iter().any(|w| matches!(w, Write::Erase)) {
                self.layout.remove_snapshot(s.group)?;
            }
        }
        for group in in_file {
            self.layout.remove_snapshot(group)?;
        }
        if rolled {
            self.compact()?;
        }
        Ok(())
    }

    /// Writes each snapshot bound for a file that is newer than the group's
    /// current one to its file, before the batch's log records become
    /// durable. A crash in between leaves a snapshot without some
    /// un-acknowledged writes before it; a snapshot only holds chosen
    /// state, so that contradicts nothing a replica has promised.
    fn write_snapshots(&mut self, batch: &[Submission]) -> Result<(), StorageError> {
        let mut newest: HashMap<GroupId, u64> = HashMap::new();
        for s in batch {
            for (i, payload) in &s.files {
                let Some(Write::Snapshot(snap)) = s.writes.get(*i) else {
                    continue;
                };
                let current = match newest.get(&s.group) {
                    Some(slot) => Some(*slot),
                    None => self.shared.index()?.snapshot_slot(s.group),
                };
                if current.is_none_or(|slot| snap.slot >= slot) {
                    self.layout.write_snapshot_payload(s.group, payload)?;
                    self.count_fsyncs(2);
                    newest.insert(s.group, snap.slot);
                }
            }
        }
        Ok(())
    }

    /// Appends `records` (framed by [`frame_record`]) to the active segment
    /// as one batch record and makes it durable.
    fn append(&mut self, records: &[u8]) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = record::frame_batch(records).map_err(encode_error)?;
        let path = self.layout.segment(self.active_seq);
        self.preallocate(batch.len() as u64, &path)?;
        self.active
            .write_all_at(&batch, self.active_len)
            .map_err(io("append to log segment", &path))?;
        self.active_len += batch.len() as u64;
        #[cfg(test)]
        if self
            .shared
            .fail_syncs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(io("fsync log segment", &path)(std::io::Error::other(
                "injected fsync failure",
            )));
        }
        let started = Instant::now();
        self.active
            .sync_data()
            .map_err(io("fsync log segment", &path))?;
        self.count_fsyncs(1);
        let c = &self.shared.counters;
        c.fsync_seconds.observe(started.elapsed().as_secs_f64());
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.log_bytes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Zero-fills the active segment ahead of an append of `len` bytes if
    /// the append would go past the zeros already there. The append's own
    /// `fdatasync` makes the zeros durable too.
    fn preallocate(&mut self, len: u64, path: &std::path::Path) -> Result<(), StorageError> {
        let end = self.active_len + len;
        if end <= self.active_filled {
            return Ok(());
        }
        let target = (end + self.config.preallocate_bytes)
            .min(self.config.segment_bytes)
            .max(end);
        if target > end {
            let zeros = vec![0u8; (target - end) as usize];
            self.active
                .write_all_at(&zeros, end)
                .map_err(io("preallocate log segment", path))?;
        }
        self.active_filled = target;
        Ok(())
    }

    fn count_fsyncs(&self, n: u64) {
        self.shared.counters.fsyncs.fetch_add(n, Ordering::Relaxed);
    }

    /// Cuts the zeros off the active segment, then starts a new, empty
    /// segment and makes its creation durable.
    fn roll(&mut self) -> Result<(), StorageError> {
        if self.active_filled > self.active_len {
            let path = self.layout.segment(self.active_seq);
            self.active
                .set_len(self.active_len)
                .and_then(|()| self.active.sync_data())
                .map_err(io("cut preallocated space off a log segment", &path))?;
            self.count_fsyncs(1);
        }
        let seq = self.active_seq + 1;
        self.active = open_segment(&self.layout, seq)?;
        self.layout.sync_dir()?;
        self.count_fsyncs(1);
        self.active_seq = seq;
        self.active_len = 0;
        self.active_filled = 0;
        self.shared.index()?.add_segment(seq);
        Ok(())
    }

    /// Reclaims old segments that are at most half live: their live items
    /// are appended to the active segment, then the segments are deleted.
    /// Mostly-live segments are left alone, so each byte of live data is
    /// copied at most once per time its segment halves.
    fn compact(&mut self) -> Result<(), StorageError> {
        let (victims, forward) = {
            let index = self.shared.index()?;
            let victims: BTreeSet<SegmentId> = index
                .segments()
                .iter()
                .filter(|(&seg, s)| seg != self.active_seq && s.live * 2 <= s.total)
                .map(|(&seg, _)| seg)
                .collect();
            let forward = index.live_items(&victims);
            (victims, forward)
        };
        if victims.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for (group, items) in &forward {
            frame_record(*group, items, &mut buf)?;
        }
        self.append(&buf)?;
        {
            let mut index = self.shared.index()?;
            for (group, items) in &forward {
                index.apply(*group, items, Some(self.active_seq));
            }
        }
        for &seg in &victims {
            let path = self.layout.segment(seg);
            std::fs::remove_file(&path).map_err(io("delete log segment", &path))?;
            self.shared.index()?.remove_segment(seg);
        }
        self.layout.sync_dir()?;
        self.count_fsyncs(1);
        self.shared
            .counters
            .compactions
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(segments = ?victims, forwarded = forward.len(), "compacted log");
        Ok(())
    }
}

/// Opens segment `seq` for writing at given offsets (not `O_APPEND`: the
/// file may be longer than its records), creating it if missing.
pub(crate) fn open_segment(layout: &Layout, seq: SegmentId) -> Result<File, StorageError> {
    let path = layout.segment(seq);
    OpenOptions::new()
        .create(true)
        .write(true)
        // Recovery has cut the segment to its records; keep them.
        .truncate(false)
        .open(&path)
        .map_err(io("open log segment", &path))
}
