//! A long simulator run: `count` schedules from seed `first`, rotating over
//! eight configurations the tests use (faults, membership changes,
//! membership changes while two leaders duel, and membership changes with
//! learners that start late, each on 5 and 3 replicas). Stops at the first failure,
//! prints it with its replay command and exits 1.
//!
//! `cargo run --release -p dike-core --features sim --example sim_soak -- FIRST COUNT`
//! (scripts/sim-soak.sh splits a run over processes).

use dike_core::sim::{run_traced, Schedule, SimReport};
use std::time::Instant;

/// The schedule and replica count of seed `seed`.
fn config(seed: u64) -> (Schedule, usize) {
    const ROTATION: [(Schedule, usize); 8] = [
        (Schedule::Faulty, 5),
        (Schedule::Faulty, 3),
        (Schedule::Membership, 5),
        (Schedule::Membership, 3),
        (Schedule::Dueling, 5),
        (Schedule::Dueling, 3),
        (Schedule::LateLearners, 5),
        (Schedule::LateLearners, 3),
    ];
    ROTATION[(seed % 8) as usize]
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let first = arg(1, 0);
    let count = arg(2, 10_000);
    let started = Instant::now();
    let mut total = SimReport::default();
    for seed in first..first + count {
        let (schedule, replicas) = config(seed);
        match run_traced(schedule.config(seed, replicas)) {
            Ok(r) => {
                total.ops += r.ops;
                total.crashes += r.crashes;
                total.partitions += r.partitions;
                total.elections += r.elections;
                total.changes += r.changes;
            }
            Err(f) => {
                // The failure names its schedule and its replay command.
                eprintln!("{f}");
                std::process::exit(1);
            }
        }
        let done = seed + 1 - first;
        if done % 10_000 == 0 {
            eprintln!(
                "{done}/{count} schedules passed ({:.0?})",
                started.elapsed()
            );
        }
    }
    println!(
        "schedules {count} (seeds {first}..{}) passed, violations 0: {} operations, {} crashes, {} partitions, {} leader changes, {} membership changes, in {:.1?}",
        first + count,
        total.ops,
        total.crashes,
        total.partitions,
        total.elections,
        total.changes,
        started.elapsed()
    );
}
