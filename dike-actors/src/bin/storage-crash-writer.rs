//! Crash-test workload for the durable node log.
//!
//! `storage-crash-writer <data-dir> <groups> <segment-bytes>` opens the node
//! log in `<data-dir>`, resumes every group where its recovered state ends,
//! and then writes from one thread per group, forever: slot `s` of group `g`
//! gets an entry whose single command carries the payload `g<g>s<s>`, the
//! commit point follows each accept, and every 16 slots a snapshot trails
//! the log by 8 slots; its state is the slot's bytes, repeated to go past
//! the size limit of a snapshot in the log every other time. After each write is durable it prints `ack <g> <s>`
//! and flushes, so whoever kills the process knows what must survive.

use dike_actors::storage::{LogOptions, NodeLog};
use dike_core::{
    Ballot, ClientId, Command, Config, MemberId, SessionTable, Snapshot, Storage, Write,
};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

/// How often a large snapshot's state repeats its slot: 72 KB, more than
/// the default limit for a snapshot in the log.
const LARGE_REPEAT: usize = 9000;

fn usage() -> ExitCode {
    eprintln!("usage: storage-crash-writer <data-dir> <groups> <segment-bytes>");
    ExitCode::from(2)
}

fn accept(group: u64, slot: u64) -> Write {
    let leader = MemberId::new(1, 1);
    let cmd = Command::new(
        ClientId(group),
        slot,
        format!("g{group}s{slot}").into_bytes(),
    );
    Write::accept_one(slot, Ballot::new(1, leader), leader, cmd)
}

/// A snapshot at `slot` whose state is the slot's bytes, repeated
/// [`LARGE_REPEAT`] times in every other snapshot, so that snapshots go
/// into the log and into their files by turns.
fn snapshot(slot: u64) -> Write {
    let repeat = if (slot / 16) % 2 == 0 {
        LARGE_REPEAT
    } else {
        1
    };
    Write::Snapshot(Arc::new(Snapshot {
        slot,
        config: Config::initial(vec![MemberId::new(1, 1)]),
        state: slot.to_le_bytes().repeat(repeat),
        sessions: SessionTable::new(),
    }))
}

fn run_group(log: &NodeLog, group: u64) -> Result<(), String> {
    let mut storage = log.group(group);
    let recovered = storage.load().map_err(|e| e.to_string())?;
    let mut slot = recovered
        .log
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(recovered.commit)
        .max(recovered.snapshot.map_or(0, |s| s.slot));
    loop {
        slot += 1;
        let mut writes = vec![accept(group, slot), Write::Commit(slot)];
        if slot % 16 == 0 {
            writes.push(snapshot(slot - 8));
        }
        storage.write(&writes).map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ack {group} {slot}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, groups, segment_bytes] = args.as_slice() else {
        return usage();
    };
    let (Ok(groups), Ok(segment_bytes)) = (groups.parse::<u64>(), segment_bytes.parse::<u64>())
    else {
        return usage();
    };
    let options = LogOptions {
        segment_bytes,
        ..LogOptions::default()
    };
    let log = match NodeLog::open_with(dir, options) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("cannot open node log in {dir}: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::thread::scope(|s| {
        for group in 0..groups {
            let log = &log;
            s.spawn(move || {
                // Any failure ends the whole process: the crash test then
                // sees the exit status and the message.
                if let Err(e) = run_group(log, group) {
                    eprintln!("storage-crash-writer: group {group}: {e}");
                    std::process::exit(1);
                }
            });
        }
    });
    ExitCode::SUCCESS
}
