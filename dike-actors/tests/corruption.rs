//! Damaged files: a torn or flipped tail is cut off and never applied;
//! damage with valid data behind it is reported as `Corrupt`, never
//! silently dropped. Segments are preallocated (zeros past the last
//! record), so record ends come from the log's byte count, not file sizes.

use dike_actors::storage::{LogOptions, NodeLog};
use dike_core::{
    Accepted, Ballot, Config, Entry, MemberId, SessionTable, Snapshot, StorageError, Write,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn accept(slot: u64) -> Write {
    Write::Accept {
        slot,
        value: Accepted {
            ballot: Ballot {
                epoch: 0,
                round: 2,
                leader: MemberId::new(3, 1),
            },
            entry: Entry::Noop,
        },
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    out
}

fn len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x20;
    fs::write(path, bytes).expect("write");
}

/// Writes slots 1, 2 and 3 of group 1 as three records and returns the
/// segment with the end offset of each record.
fn three_records(dir: &Path) -> (PathBuf, [u64; 3]) {
    let log = NodeLog::open(dir).expect("open");
    let mut ends = [0; 3];
    for (i, end) in ends.iter_mut().enumerate() {
        log.write(1, &[accept(i as u64 + 1)]).expect("write");
        *end = log.stats().log_bytes;
    }
    assert!(
        len(&segments(dir)[0]) > ends[2],
        "the segment is preallocated past its records"
    );
    (segments(dir)[0].clone(), ends)
}

fn slots(log: &NodeLog) -> Vec<u64> {
    log.load(1).expect("load").log.keys().copied().collect()
}

#[test]
fn a_flipped_byte_in_the_last_record_is_cut_off_not_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segment, ends) = three_records(dir.path());
    flip(&segment, ends[2] - 1);
    let log = NodeLog::open(dir.path()).expect("reopen repairs the tail");
    assert_eq!(slots(&log), vec![1, 2]);
    assert_eq!(len(&segment), ends[1], "the torn record is truncated");
    log.write(1, &[accept(4)])
        .expect("writes go on after the repair");
    drop(log);
    assert_eq!(
        slots(&NodeLog::open(dir.path()).expect("reopen")),
        vec![1, 2, 4]
    );
}

#[test]
fn a_cut_last_record_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segment, ends) = three_records(dir.path());
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open");
    f.set_len(ends[2] - 3).expect("truncate");
    drop(f);
    assert_eq!(
        slots(&NodeLog::open(dir.path()).expect("reopen")),
        vec![1, 2]
    );
}

#[test]
fn a_last_record_without_its_start_is_cut_off() {
    // With preallocated segments a crash can leave the end of an append on
    // disk without its start (the first page never reached the disk).
    let dir = tempfile::tempdir().expect("tempdir");
    let (segment, ends) = three_records(dir.path());
    let mut bytes = fs::read(&segment).expect("read");
    bytes[ends[1] as usize..ends[1] as usize + 12].fill(0);
    fs::write(&segment, bytes).expect("write");
    assert_eq!(
        slots(&NodeLog::open(dir.path()).expect("reopen")),
        vec![1, 2]
    );
    assert_eq!(len(&segment), ends[1], "the torn record is truncated");
}

#[test]
fn preallocated_zeros_are_cut_off_and_writes_go_on_after_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segment, ends) = three_records(dir.path());
    let log = NodeLog::open(dir.path()).expect("reopen");
    assert_eq!(slots(&log), vec![1, 2, 3]);
    assert_eq!(len(&segment), ends[2], "the zeros are cut off on open");
    log.write(1, &[accept(4)]).expect("write");
    let end = ends[2] + log.stats().log_bytes;
    assert!(
        len(&segment) > end,
        "and preallocated again by the next write"
    );
    drop(log);
    assert_eq!(
        slots(&NodeLog::open(dir.path()).expect("reopen")),
        vec![1, 2, 3, 4]
    );
}

#[test]
fn a_segment_of_bare_records_from_before_batches_still_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(NodeLog::open(dir.path()).expect("create"));
    let mut bytes = Vec::new();
    for slot in [1, 2] {
        let payload =
            dike_core::codec::encode("record", &(1u64, vec![accept(slot)])).expect("encode");
        let len = (payload.len() as u32).to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&len);
        crc.update(&payload);
        bytes.extend_from_slice(&crc.finalize().to_le_bytes());
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&payload);
    }
    fs::write(&segments(dir.path())[0], bytes).expect("write");
    let log = NodeLog::open(dir.path()).expect("reopen");
    assert_eq!(slots(&log), vec![1, 2]);
    log.write(1, &[accept(3)]).expect("write after them");
    drop(log);
    assert_eq!(
        slots(&NodeLog::open(dir.path()).expect("reopen")),
        vec![1, 2, 3]
    );
}

#[test]
fn a_flipped_byte_in_a_middle_record_is_corruption() {
    for victim in [0, 1] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (segment, ends) = three_records(dir.path());
        let start = if victim == 0 { 0 } else { ends[0] };
        flip(&segment, start + 2);
        let size = len(&segment);
        match NodeLog::open(dir.path()) {
            Err(StorageError::Corrupt(msg)) => assert!(msg.contains("damaged record"), "{msg}"),
            other => panic!("record {victim} damaged: expected Corrupt, got {other:?}"),
        }
        assert_eq!(len(&segment), size, "nothing is truncated on corruption");
    }
}

#[test]
fn a_damaged_end_of_an_older_segment_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = LogOptions {
        segment_bytes: 1,
        ..LogOptions::default()
    };
    let log = NodeLog::open_with(dir.path(), options).expect("open");
    for slot in 1..=3 {
        log.write(1, &[accept(slot)]).expect("write");
    }
    drop(log);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 3, "one record per segment");
    flip(&segs[0], len(&segs[0]) - 1);
    assert!(matches!(
        NodeLog::open_with(dir.path(), options),
        Err(StorageError::Corrupt(_))
    ));
}

#[test]
fn a_damaged_snapshot_file_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = NodeLog::open(dir.path()).expect("open");
    // Large enough for a file of its own rather than the log.
    let state_len = LogOptions::default().log_snapshot_max_bytes as usize + 1;
    let snap = Snapshot {
        slot: 5,
        config: Config::initial(vec![MemberId::new(1, 1)]),
        state: vec![7; state_len],
        sessions: SessionTable::new(),
    };
    log.write(1, &[Write::Snapshot(Arc::new(snap))])
        .expect("write");
    drop(log);
    let file = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .expect("snapshot file");
    flip(&file, len(&file) - 4);
    assert!(matches!(
        NodeLog::open(dir.path()),
        Err(StorageError::Corrupt(_))
    ));
}
