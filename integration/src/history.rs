//! The history of a fault run: every client operation as an invocation and
//! an outcome, with times, recorded from many tasks at once and dumped as
//! JSON when a run fails.
//!
//! Invariants: a logical process (`process`) has at most one operation in
//! flight; once one of its operations ends [`Outcome::Unknown`] the process
//! is retired (its operation may still take effect at any later time) and the
//! worker continues under a fresh process id from [`Recorder::new_process`].
//! Times are offsets from the recorder's start on one monotonic clock, so
//! "returned before invoked" between any two records is real-time order;
//! `started_unix_ms` anchors them to the wall clock.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What kind of object a key names; decides its sequential specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Model {
    /// A register with read, write and compare-and-set (a kv key).
    Register,
    /// An integer counter with add and read (an arithmetic group).
    Counter,
    /// A grow-only set with add and read-all.
    Set,
}

/// One operation as a client invoked it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Register: read the value.
    Read,
    /// Register: write a value; returns the previous one.
    Write(u64),
    /// Register: store `new` if the value is `expect` (`None`: absent).
    Cas {
        /// The value the register must hold.
        expect: Option<u64>,
        /// The value to store.
        new: u64,
    },
    /// Counter: add; returns the new value.
    Add(i64),
    /// Counter: read the value.
    ReadCounter,
    /// Set: add an element; returns whether it was new.
    Insert(u64),
    /// Set: read every element.
    ReadSet,
}

impl Op {
    /// The model this operation belongs to.
    pub fn model(&self) -> Model {
        match self {
            Op::Read | Op::Write(_) | Op::Cas { .. } => Model::Register,
            Op::Add(_) | Op::ReadCounter => Model::Counter,
            Op::Insert(_) | Op::ReadSet => Model::Set,
        }
    }

    /// Whether the operation never changes state (a failed or unknown read
    /// can be left out of the history).
    pub fn is_read(&self) -> bool {
        matches!(self, Op::Read | Op::ReadCounter | Op::ReadSet)
    }
}

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ret {
    /// A register's value: the current one (read) or the previous one (write).
    Value(Option<u64>),
    /// A compare-and-set: `Ok(previous)` if it applied, `Err(current)` if not.
    Cas(Result<Option<u64>, Option<u64>>),
    /// A counter's value (after an add, or read).
    Count(i64),
    /// Whether an inserted element was new.
    Inserted(bool),
    /// A set's elements.
    Elements(BTreeSet<u64>),
    /// The operation does not belong to the model it was applied to.
    Mismatch,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It took effect and returned this.
    Ok(Ret),
    /// It certainly did not take effect (why).
    Fail(String),
    /// It may or may not have taken effect (why: a timeout, no quorum…).
    Unknown(String),
}

/// One operation of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The logical process that invoked it (one op in flight per process).
    pub process: u64,
    /// The worker (client task) behind the process.
    pub worker: usize,
    /// The object: a key, a counter group, a set.
    pub key: String,
    /// The operation.
    pub op: Op,
    /// When it was invoked (µs since the recorder started).
    pub invoke_us: u64,
    /// When it returned (µs since the recorder started); `None` while in flight.
    pub return_us: Option<u64>,
    /// How it ended; `None` while in flight.
    pub outcome: Option<Outcome>,
}

/// Counts of a history's operations by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// Operations that returned a value.
    pub ok: usize,
    /// Operations that certainly had no effect.
    pub fail: usize,
    /// Operations that may or may not have taken effect.
    pub unknown: usize,
    /// Operations that never ended (the run stopped while they were in flight).
    pub in_flight: usize,
}

impl std::fmt::Display for OutcomeCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ok, {} fail, {} unknown, {} in flight",
            self.ok, self.fail, self.unknown, self.in_flight
        )
    }
}

/// The serialised form of a history (what [`Recorder::dump`] writes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryFile {
    /// Wall-clock time of the recorder's start (ms since the Unix epoch).
    pub started_unix_ms: u64,
    /// Every record, in invocation order.
    pub records: Vec<Record>,
}

/// Why a history could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be written.
    #[error("cannot write history to {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The history could not be serialised.
    #[error("cannot serialise the history: {0}")]
    Json(#[from] serde_json::Error),
}

/// A handle on one invoked operation, to complete it with [`Recorder::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "complete the operation with Recorder::complete"]
pub struct Pending(usize);

#[derive(Debug)]
struct Inner {
    records: Vec<Record>,
    next_process: u64,
    /// The last time handed out: times are unique and increasing, so two
    /// events never tie and a process's return precedes its next invoke.
    last_us: u64,
}

impl Inner {
    fn stamp(&mut self, now_us: u64) -> u64 {
        self.last_us = now_us.max(self.last_us + 1);
        self.last_us
    }
}

/// A thread-safe recorder of a history. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Recorder {
    start: Instant,
    started_unix_ms: u64,
    inner: Arc<Mutex<Inner>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty history starting now.
    pub fn new() -> Self {
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Recorder {
            start: Instant::now(),
            started_unix_ms,
            inner: Arc::new(Mutex::new(Inner {
                records: Vec::new(),
                next_process: 0,
                last_us: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking worker must not hide the history of the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// A process id never used before.
    pub fn new_process(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_process += 1;
        inner.next_process
    }

    /// Records that `process` (of `worker`) invokes `op` on `key` now.
    pub fn invoke(&self, process: u64, worker: usize, key: &str, op: Op) -> Pending {
        let now = self.now_us();
        let mut inner = self.lock();
        let invoke_us = inner.stamp(now);
        inner.records.push(Record {
            process,
            worker,
            key: key.to_owned(),
            op,
            invoke_us,
            return_us: None,
            outcome: None,
        });
        Pending(inner.records.len() - 1)
    }

    /// Records how the operation `pending` ended, now.
    pub fn complete(&self, pending: Pending, outcome: Outcome) {
        let now = self.now_us();
        let mut inner = self.lock();
        let at = inner.stamp(now);
        if let Some(r) = inner.records.get_mut(pending.0) {
            r.return_us = Some(at);
            r.outcome = Some(outcome);
        }
    }

    /// A copy of every record so far.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// Counts of the operations by outcome.
    pub fn counts(&self) -> OutcomeCounts {
        count(&self.lock().records)
    }

    /// Writes the history as JSON to `path`.
    pub fn dump(&self, path: &Path) -> Result<(), HistoryError> {
        let file = HistoryFile {
            started_unix_ms: self.started_unix_ms,
            records: self.records(),
        };
        let json = serde_json::to_vec_pretty(&file)?;
        std::fs::write(path, json).map_err(|source| HistoryError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// Counts of `records` by outcome.
pub fn count(records: &[Record]) -> OutcomeCounts {
    let mut c = OutcomeCounts::default();
    for r in records {
        match &r.outcome {
            Some(Outcome::Ok(_)) => c.ok += 1,
            Some(Outcome::Fail(_)) => c.fail += 1,
            Some(Outcome::Unknown(_)) => c.unknown += 1,
            None => c.in_flight += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_invocation_order_and_times_and_count_by_outcome() {
        let h = Recorder::new();
        let (p, q) = (h.new_process(), h.new_process());
        assert_ne!(p, q);
        let a = h.invoke(p, 0, "k", Op::Write(1));
        let b = h.invoke(q, 1, "k", Op::Read);
        h.complete(b, Outcome::Ok(Ret::Value(Some(1))));
        h.complete(a, Outcome::Unknown("timeout".into()));
        let _c = h.invoke(p + 5, 0, "k", Op::Read);
        let r = h.records();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].op, Op::Write(1));
        assert!(r[0].invoke_us < r[1].invoke_us);
        assert!(r[1].return_us.expect("returned") < r[0].return_us.expect("returned"));
        let c = h.counts();
        assert_eq!((c.ok, c.fail, c.unknown, c.in_flight), (1, 0, 1, 1));
        assert_eq!(c.to_string(), "1 ok, 0 fail, 1 unknown, 1 in flight");
    }

    #[test]
    fn the_history_round_trips_through_json() {
        let h = Recorder::new();
        let p = h.new_process();
        let a = h.invoke(p, 0, "s", Op::Insert(3));
        h.complete(a, Outcome::Ok(Ret::Inserted(true)));
        let b = h.invoke(p, 0, "s", Op::ReadSet);
        h.complete(b, Outcome::Ok(Ret::Elements([3].into())));
        let dir = std::env::temp_dir().join(format!("dike-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("history.json");
        h.dump(&path).expect("dump");
        let back: HistoryFile =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
        assert_eq!(back.records, h.records());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
