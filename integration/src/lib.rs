//! Multi-process tests and the benchmark harness of dike-rs.
//!
//! [`Cluster`] runs `dike node` processes on loopback (one address per node,
//! durable or in-memory storage, logs per node) and stops, kills, pauses,
//! resumes, restarts and adds them; [`Client`] is a client node in the test
//! process with the example kinds registered and the waits the tests share;
//! [`wait`] polls named conditions with deadlines. The scenarios of the
//! original Dike test suite live in `tests/original_suite.rs`; see
//! docs/TESTING.md.
//!
//! The fault suite (`tests/faults.rs`, `src/bin/soak.rs`): [`history`]
//! records what clients saw, [`linearizability`] checks it key by key,
//! [`nft`] cuts links between node processes, [`faults`] plans faults,
//! [`workload`] drives the clients and [`runner`] puts them together.
//!
//! The benchmarks (`src/bin/vs-etcd.rs`, `src/bin/scale/`, `src/bin/failover.rs`):
//! `dike_examples::loadgen` runs closed-loop load, [`proc_stat`] reads a process's CPU and memory,
//! [`node_http`] asks a node's `/ready` and `/metrics`.

pub mod binary;
pub mod client;
pub mod cluster;
pub mod etcd;
pub mod faults;
pub mod history;
pub mod linearizability;
pub mod nft;
pub mod node_http;
pub mod proc_stat;
pub mod runner;
pub mod wgl;
pub mod workload;

pub use binary::dike_binary;
pub use client::Client;
pub use cluster::{one_at_a_time, Cluster, ClusterBuilder, Storage};
/// The waits of the tests: one rule for every crate, in dike-harness.
pub use dike_harness::wait;
pub use wait::{wait_until, Check, NotYet};

/// Prints a benchmark's `report` on stdout: one JSON object if `json`,
/// else its `text` (the tables).
pub fn print_report<R: serde::Serialize>(json: bool, report: &R, text: impl FnOnce(&R) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("a report serializes")
        );
    } else {
        println!("{}", text(report));
    }
}
