//! A long simulator run: `count` schedules from seed `first`, rotating over
//! the four configurations the tests use (faults on 5 and 3 replicas,
//! membership changes on 5 and 3 replicas). Stops at the first failure,
//! prints it with its replay command and exits 1.
//!
//! `cargo run --release -p dike-core --features sim --example sim_soak -- FIRST COUNT`
//! (scripts/sim-soak.sh splits a run over processes).

use dike_core::sim::{run_traced, SimConfig, SimReport};
use std::time::Instant;

/// The configuration of seed `seed`, and its name.
fn config(seed: u64) -> (SimConfig, &'static str) {
    match seed % 4 {
        0 => (SimConfig::faulty(seed, 5), "faulty, 5 replicas"),
        1 => (SimConfig::faulty(seed, 3), "faulty, 3 replicas"),
        2 => (SimConfig::membership(seed, 5), "membership, 5 replicas"),
        _ => (SimConfig::membership(seed, 3), "membership, 3 replicas"),
    }
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
        let (cfg, name) = config(seed);
        match run_traced(cfg) {
            Ok(r) => {
                total.ops += r.ops;
                total.crashes += r.crashes;
                total.partitions += r.partitions;
                total.elections += r.elections;
                total.changes += r.changes;
            }
            Err(f) => {
                eprintln!("seed {seed} ({name}) failed:\n{f}");
                let test = if name.starts_with("membership") {
                    "replay_membership_seed"
                } else {
                    "replay_seed"
                };
                eprintln!(
                    "replay: DIKE_SIM_SEED={seed} DIKE_SIM_REPLICAS={} cargo test -p dike-core --test simulation {test} -- --nocapture",
                    f.replicas
                );
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
