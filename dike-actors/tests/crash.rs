//! Crash tests on a real process: `storage-crash-writer` is killed with
//! SIGKILL at random moments, again and again on the same data dir, and
//! after every kill each write it acknowledged must be found on disk.

use dike_actors::storage::NodeLog;
use dike_core::{Entry, Recovered};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const GROUPS: u64 = 8;
const SEGMENT_BYTES: &str = "32768";
const KILLS: usize = 20;

/// xorshift64*: enough randomness for kill timing, replayable from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let mut words = line.strip_prefix("ack ")?.split(' ');
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// Runs the writer until it has acknowledged at least `min_acks` writes,
/// waits `delay`, kills it, and returns every write it acknowledged.
fn run_and_kill(dir: &Path, min_acks: usize, delay: Duration) -> Vec<(u64, u64)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-writer"))
        .arg(dir)
        .arg(GROUPS.to_string())
        .arg(SEGMENT_BYTES)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn storage-crash-writer");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let ack = parse_ack(&line).unwrap_or_else(|| panic!("unexpected output {line:?}"));
            if tx.send(ack).is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acks.len() < min_acks {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ack) => acks.push(ack),
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "writer gave {} of {min_acks} acks before the deadline: {e}; status {:?}",
                    acks.len(),
                    child.try_wait()
                );
            }
        }
    }
    // The fault: a kill at a random moment while writes are in flight.
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the writer must die from the kill");
    reader.join().expect("reader");
    acks.extend(rx.try_iter());
    acks
}

/// Every acknowledged slot up to `upto` is in the log with its own value,
/// or covered by the snapshot, and the commit point covers it.
fn check_group(group: u64, upto: u64, r: &Recovered) {
    let snap = r.snapshot.as_ref().map_or(0, |s| s.slot);
    if let Some(s) = &r.snapshot {
        let slot = s.slot.to_le_bytes();
        assert!(
            !s.state.is_empty() && s.state.chunks(8).all(|c| c == slot),
            "group {group} snapshot state"
        );
    }
    assert!(
        r.commit >= upto,
        "group {group}: commit {} < acked {upto}",
        r.commit
    );
    for slot in snap + 1..=upto {
        let value = r
            .log
            .get(&slot)
            .unwrap_or_else(|| panic!("group {group}: acknowledged slot {slot} lost"));
        let Entry::Batch(batch) = &value.entry else {
            panic!("group {group} slot {slot}: not a batch");
        };
        assert_eq!(
            batch.commands[0].payload,
            format!("g{group}s{slot}").into_bytes(),
            "group {group} slot {slot}: wrong value"
        );
    }
}

#[test]
fn every_acknowledged_write_survives_repeated_sigkill() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acked: HashMap<u64, u64> = HashMap::new();
    let started = Instant::now();
    for kill in 0..KILLS {
        let min_acks = 20 + rng.below(1_000) as usize;
        let delay = Duration::from_micros(rng.below(30_000));
        let acks = run_and_kill(dir.path(), min_acks, delay);
        for (group, slot) in &acks {
            let top = acked.entry(*group).or_default();
            *top = (*top).max(*slot);
        }
        let log = NodeLog::open(dir.path())
            .unwrap_or_else(|e| panic!("seed {seed}, kill {kill}: reopen failed: {e}"));
        for (&group, &upto) in &acked {
            check_group(group, upto, &log.load(group).expect("load"));
        }
        println!(
            "kill {kill}: {} acks this run, {:?} on disk, {:?} elapsed",
            acks.len(),
            log.stats().segments,
            started.elapsed()
        );
    }
    assert_eq!(acked.len() as u64, GROUPS, "every group made progress");
    let oldest_segment = std::fs::read_dir(dir.path())
        .expect("list data dir")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse::<u64>()
                .ok()
        })
        .min();
    assert!(
        oldest_segment.is_some_and(|seq| seq > 1),
        "compaction ran between the crashes (oldest segment {oldest_segment:?})"
    );
}
