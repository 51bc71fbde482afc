//! Durable appends per second from many concurrent groups.
//!
//! Each of N threads is one group and appends one accepted entry (128-byte
//! command) at a time, waiting until it is durable before the next — what a
//! replica does before answering `Accepted`. Engines:
//!
//! - `dike group commit`: [`NodeLog`] as shipped.
//! - `dike fsync per append`: the same engine with group commit off, the
//!   baseline.
//! - `..., submit API`: the same two through [`NodeLog::submit`], as the
//!   actor runtime will use it: no thread per group; each group keeps one
//!   append in flight and its completion issues the next.
//! - `redb` / `fjall` (feature `compare-engines`): one durable transaction
//!   (redb) or insert + journal `fdatasync` (fjall) per append; and the
//!   same two behind a group-commit thread like `NodeLog`'s (`+ group
//!   commit`: one transaction / one journal fdatasync per batch).
//!
//! `cargo bench -p dike-actors --bench durable_storage --features compare-engines`
//! Environment: `DIKE_BENCH_SECS` (default 3) per cell, `DIKE_BENCH_DIR`
//! (default: the system temp dir) for the data, `DIKE_BENCH_THREADS`
//! (default `1,16,256`), `DIKE_BENCH_ENGINES` (run only engines whose
//! name contains it).

use dike_actors::storage::{LogOptions, NodeLog};
use dike_core::{Ballot, ClientId, Command, MemberId, Write};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A durable key-value or log engine under test.
trait Engine: Send + Sync {
    /// Makes `write` of `group` durable before returning.
    fn append(&self, group: u64, slot: u64, write: &Write) -> Result<(), String>;
    /// Fsyncs issued so far, when the engine can tell.
    fn fsyncs(&self) -> Option<u64>;
}

impl Engine for NodeLog {
    fn append(&self, group: u64, _slot: u64, write: &Write) -> Result<(), String> {
        self.write(group, std::slice::from_ref(write))
            .map_err(|e| e.to_string())
    }
    fn fsyncs(&self) -> Option<u64> {
        Some(self.stats().fsyncs)
    }
}

#[cfg(feature = "compare-engines")]
mod others {
    use super::Engine;
    use dike_core::codec::encode;
    use dike_core::Write;
    use std::path::Path;
    use std::sync::mpsc::{self, Sender, SyncSender};

    const LOG: redb::TableDefinition<(u64, u64), &[u8]> = redb::TableDefinition::new("log");

    pub struct Redb(redb::Database);

    impl Redb {
        pub fn open(dir: &Path) -> Result<Self, String> {
            redb::Database::create(dir.join("bench.redb"))
                .map(Redb)
                .map_err(|e| e.to_string())
        }
    }

    impl Engine for Redb {
        fn append(&self, group: u64, slot: u64, write: &Write) -> Result<(), String> {
            let bytes = encode("write", write).map_err(|e| e.to_string())?;
            let tx = self.0.begin_write().map_err(|e| e.to_string())?;
            {
                let mut t = tx.open_table(LOG).map_err(|e| e.to_string())?;
                t.insert((group, slot), bytes.as_slice())
                    .map_err(|e| e.to_string())?;
            }
            tx.commit().map_err(|e| e.to_string())
        }
        fn fsyncs(&self) -> Option<u64> {
            None
        }
    }

    /// One durable commit of many appends.
    pub trait BatchStore: Send + 'static {
        fn commit(&mut self, batch: &[(u64, u64, Vec<u8>)]) -> Result<(), String>;
    }

    impl BatchStore for Redb {
        fn commit(&mut self, batch: &[(u64, u64, Vec<u8>)]) -> Result<(), String> {
            let tx = self.0.begin_write().map_err(|e| e.to_string())?;
            {
                let mut t = tx.open_table(LOG).map_err(|e| e.to_string())?;
                for (group, slot, bytes) in batch {
                    t.insert((*group, *slot), bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
            tx.commit().map_err(|e| e.to_string())
        }
    }

    impl BatchStore for Fjall {
        fn commit(&mut self, batch: &[(u64, u64, Vec<u8>)]) -> Result<(), String> {
            for (group, slot, bytes) in batch {
                self.log
                    .insert(key(*group, *slot), bytes.as_slice())
                    .map_err(|e| e.to_string())?;
            }
            self.db
                .persist(fjall::PersistMode::SyncData)
                .map_err(|e| e.to_string())
        }
    }

    type Request = (u64, u64, Vec<u8>, SyncSender<Result<(), String>>);

    /// Group commit bolted onto another engine: one thread takes every
    /// queued append and makes them durable with one commit, as `NodeLog`
    /// does — so the comparison is of engines, not of batching.
    pub struct Coalesced {
        queue: Option<Sender<Request>>,
        writer: Option<std::thread::JoinHandle<()>>,
    }

    impl Coalesced {
        pub fn new(mut store: impl BatchStore) -> Self {
            let (queue, rx) = mpsc::channel::<Request>();
            let writer = std::thread::spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(4095));
                    let items: Vec<(u64, u64, Vec<u8>)> = batch
                        .iter_mut()
                        .map(|(g, s, b, _)| (*g, *s, std::mem::take(b)))
                        .collect();
                    let outcome = store.commit(&items);
                    for (_, _, _, reply) in batch {
                        let _ = reply.send(outcome.clone());
                    }
                }
            });
            Coalesced {
                queue: Some(queue),
                writer: Some(writer),
            }
        }
    }

    impl Drop for Coalesced {
        fn drop(&mut self) {
            self.queue.take();
            if let Some(w) = self.writer.take() {
                let _ = w.join();
            }
        }
    }

    impl Engine for Coalesced {
        fn append(&self, group: u64, slot: u64, write: &Write) -> Result<(), String> {
            let bytes = encode("write", write).map_err(|e| e.to_string())?;
            let (reply, outcome) = mpsc::sync_channel(1);
            self.queue
                .as_ref()
                .ok_or("closed")?
                .send((group, slot, bytes, reply))
                .map_err(|e| e.to_string())?;
            outcome.recv().map_err(|e| e.to_string())?
        }
        fn fsyncs(&self) -> Option<u64> {
            None
        }
    }

    fn key(group: u64, slot: u64) -> Vec<u8> {
        let mut key = group.to_be_bytes().to_vec();
        key.extend_from_slice(&slot.to_be_bytes());
        key
    }

    pub struct Fjall {
        db: fjall::Database,
        log: fjall::Keyspace,
    }

    impl Fjall {
        pub fn open(dir: &Path) -> Result<Self, String> {
            let db = fjall::Database::builder(dir.join("fjall"))
                .open()
                .map_err(|e| e.to_string())?;
            let log = db
                .keyspace("log", fjall::KeyspaceCreateOptions::default)
                .map_err(|e| e.to_string())?;
            Ok(Fjall { db, log })
        }
    }

    impl Engine for Fjall {
        fn append(&self, group: u64, slot: u64, write: &Write) -> Result<(), String> {
            let bytes = encode("write", write).map_err(|e| e.to_string())?;
            self.log
                .insert(key(group, slot), bytes)
                .map_err(|e| e.to_string())?;
            self.db
                .persist(fjall::PersistMode::SyncData)
                .map_err(|e| e.to_string())
        }
        fn fsyncs(&self) -> Option<u64> {
            None
        }
    }
}

fn accept(group: u64, slot: u64) -> Write {
    let leader = MemberId::new(1, 1);
    let cmd = Command::new(ClientId(group), slot, vec![0x5a; 128]);
    Write::accept_one(slot, Ballot::new(1, leader), leader, cmd)
}

/// One cell of the results table.
struct Row {
    engine: &'static str,
    threads: usize,
    appends: u64,
    per_sec: f64,
    fsyncs_per_sec: Option<f64>,
    p50_us: u32,
    p99_us: u32,
}

fn measure(engine: &'static str, e: &dyn Engine, threads: usize, window: Duration) -> Row {
    let barrier = Barrier::new(threads + 1);
    let (latencies, elapsed, fsyncs) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|group| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut lat = Vec::new();
                    barrier.wait();
                    let end = Instant::now() + window;
                    let mut slot = 0;
                    while Instant::now() < end {
                        slot += 1;
                        let w = accept(group, slot);
                        let t = Instant::now();
                        if let Err(err) = e.append(group, slot, &w) {
                            panic!("{engine}: append failed: {err}");
                        }
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    lat
                })
            })
            .collect();
        let fsyncs_before = e.fsyncs();
        barrier.wait();
        let start = Instant::now();
        let mut all: Vec<u32> = Vec::new();
        for w in workers {
            all.extend(w.join().expect("bench thread"));
        }
        let elapsed = start.elapsed();
        let fsyncs = e.fsyncs().zip(fsyncs_before).map(|(a, b)| a - b);
        (all, elapsed, fsyncs)
    });
    let mut sorted = latencies;
    row(engine, threads, &mut sorted, elapsed, fsyncs)
}

fn row(
    engine: &'static str,
    threads: usize,
    latencies: &mut [u32],
    elapsed: Duration,
    fsyncs: Option<u64>,
) -> Row {
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let secs = elapsed.as_secs_f64();
    Row {
        engine,
        threads,
        appends: latencies.len() as u64,
        per_sec: latencies.len() as f64 / secs,
        fsyncs_per_sec: fsyncs.map(|f| f as f64 / secs),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// Shared by the completions of [`measure_submit`].
struct InFlight {
    log: NodeLog,
    end: Instant,
    latencies: std::sync::Mutex<Vec<u32>>,
    finished: std::sync::mpsc::Sender<()>,
}

/// Submits slot `slot` of `group`; its completion submits the next one
/// until the window closes — a replica actor with one append in flight.
fn issue(f: Arc<InFlight>, group: u64, slot: u64) {
    let t = Instant::now();
    let next = f.clone();
    f.log.submit(group, vec![accept(group, slot)], move |r| {
        if let Err(e) = r {
            panic!("submit failed: {e}");
        }
        let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
        if let Ok(mut l) = next.latencies.lock() {
            l.push(us);
        }
        if Instant::now() < next.end {
            issue(next, group, slot + 1);
        } else {
            let _ = next.finished.send(());
        }
    });
}

/// Like [`measure`], but through the non-blocking submit API: no thread
/// per group, each group keeps one append in flight and its completion
/// (on the log's notifier thread) issues the next.
fn measure_submit(engine: &'static str, log: NodeLog, groups: usize, window: Duration) -> Row {
    let (finished, done) = std::sync::mpsc::channel();
    let fsyncs_before = log.stats().fsyncs;
    let start = Instant::now();
    let f = Arc::new(InFlight {
        log: log.clone(),
        end: start + window,
        latencies: std::sync::Mutex::new(Vec::new()),
        finished,
    });
    for group in 0..groups as u64 {
        issue(f.clone(), group, 1);
    }
    for _ in 0..groups {
        done.recv().expect("group finished");
    }
    let elapsed = start.elapsed();
    let fsyncs = log.stats().fsyncs - fsyncs_before;
    let mut sorted = f.latencies.lock().map(|l| l.clone()).unwrap_or_default();
    drop(f);
    row(engine, groups, &mut sorted, elapsed, Some(fsyncs))
}

type Opener = fn(&Path) -> Result<Box<dyn Engine>, String>;

fn engines() -> Vec<(&'static str, Opener)> {
    fn dike(dir: &Path, group_commit: bool) -> Result<Box<dyn Engine>, String> {
        let options = LogOptions {
            group_commit,
            ..LogOptions::default()
        };
        NodeLog::open_with(dir, options)
            .map(|l| Box::new(l) as Box<dyn Engine>)
            .map_err(|e| e.to_string())
    }
    #[allow(unused_mut)]
    let mut list: Vec<(&'static str, Opener)> = vec![
        ("dike group commit", |d| dike(d, true)),
        ("dike fsync per append", |d| dike(d, false)),
    ];
    #[cfg(feature = "compare-engines")]
    {
        list.push(("redb", |d| {
            others::Redb::open(d).map(|e| Box::new(e) as Box<dyn Engine>)
        }));
        list.push(("fjall", |d| {
            others::Fjall::open(d).map(|e| Box::new(e) as Box<dyn Engine>)
        }));
        list.push(("redb + group commit", |d| {
            others::Redb::open(d).map(|e| Box::new(others::Coalesced::new(e)) as Box<dyn Engine>)
        }));
        list.push(("fjall + group commit", |d| {
            others::Fjall::open(d).map(|e| Box::new(others::Coalesced::new(e)) as Box<dyn Engine>)
        }));
    }
    list
}

fn print_row(row: &Row) {
    println!(
        "| {} | {} | {} | {:.0} | {} | {} | {} |",
        row.engine,
        row.threads,
        row.appends,
        row.per_sec,
        row.fsyncs_per_sec
            .map_or("n/a".to_owned(), |f| format!("{f:.0}")),
        row.p50_us,
        row.p99_us
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let secs: f64 = std::env::var("DIKE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let threads: Vec<usize> = std::env::var("DIKE_BENCH_THREADS")
        .unwrap_or_else(|_| "1,16,256".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    let only = std::env::var("DIKE_BENCH_ENGINES").ok();
    let root = match std::env::var_os("DIKE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("bench dir");
    println!("data dir: {} ({secs} s per cell)\n", root.path().display());
    println!("| engine | groups (threads) | appends | appends/s | fsyncs/s | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for &n in &threads {
        for (i, (name, open)) in engines().into_iter().enumerate() {
            if !only.as_ref().is_none_or(|o| name.contains(o.as_str())) {
                continue;
            }
            let dir = root.path().join(format!("{i}-{n}"));
            std::fs::create_dir_all(&dir).expect("cell dir");
            let engine = open(&dir).unwrap_or_else(|e| panic!("{name}: open failed: {e}"));
            let row = measure(name, engine.as_ref(), n, Duration::from_secs_f64(secs));
            drop(engine);
            print_row(&row);
            rows.push(row);
        }
        for (name, group_commit) in [
            ("dike group commit, submit API", true),
            ("dike fsync per append, submit API", false),
        ] {
            if !only.as_ref().is_none_or(|o| name.contains(o.as_str())) {
                continue;
            }
            let dir = root.path().join(format!("submit-{group_commit}-{n}"));
            let options = LogOptions {
                group_commit,
                ..LogOptions::default()
            };
            let log = NodeLog::open_with(&dir, options).expect("open");
            let row = measure_submit(name, log, n, Duration::from_secs_f64(secs));
            print_row(&row);
            rows.push(row);
        }
    }
    let rate = |engine: &str, n: usize| {
        rows.iter()
            .find(|r| r.engine == engine && r.threads == n)
            .map(|r| r.per_sec)
    };
    println!();
    for &n in &threads {
        for api in ["", ", submit API"] {
            if let (Some(gc), Some(base)) = (
                rate(&format!("dike group commit{api}"), n),
                rate(&format!("dike fsync per append{api}"), n),
            ) {
                println!(
                    "{n} groups{api}: group commit does {:.1}x the appends/s of fsync-per-append",
                    gc / base
                );
            }
        }
    }
}
