//! The load of `dike bench`: write commands to the example kinds' groups,
//! sent by [`crate::loadgen::closed_loop`] (`C` tasks, each with one command
//! in flight); every failure is counted by kind. It needs only a
//! [`NodeHandle`] of a node that can reach the groups.

use crate::arithmetic::{Arithmetic, ArithmeticRequest};
use crate::kv::{vnode_for, KvRequest, KvServer};
use crate::loadgen::{closed_loop, LoadReport};
use dike_actors::{DikeError, NodeHandle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Which example kind to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchKind {
    /// `Add(1)` on arithmetic groups `bench-1` … `bench-G`.
    Arithmetic,
    /// `Put`s on the kv ring `vnode-1` … `vnode-G`: task `c`'s `i`-th
    /// writes [`kv_key`]`(c, i)`, the keys the vs-etcd harness writes.
    Kv,
}

impl BenchKind {
    /// The server kind's name.
    pub fn kind(self) -> &'static str {
        match self {
            BenchKind::Arithmetic => <Arithmetic as dike_core::PaxosServer>::KIND,
            BenchKind::Kv => <KvServer as dike_core::PaxosServer>::KIND,
        }
    }

    /// The groups a run over `groups` groups uses.
    pub fn groups(self, groups: u32) -> Vec<String> {
        let prefix = match self {
            BenchKind::Arithmetic => "bench",
            BenchKind::Kv => "vnode",
        };
        (1..=groups.max(1))
            .map(|i| format!("{prefix}-{i}"))
            .collect()
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchConfig {
    /// The kind (and so the groups and the command).
    pub kind: BenchKind,
    /// Number of groups.
    pub groups: u32,
    /// Concurrent closed-loop tasks.
    pub concurrency: usize,
    /// How long to send, after the warm-up.
    pub duration: Duration,
    /// How long to send before the measured part (not counted).
    pub warmup: Duration,
    /// Bytes per value (kv only).
    pub value_size: usize,
}

/// What a run measured. Latencies are in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// The kind loaded.
    pub kind: BenchKind,
    /// Number of groups.
    pub groups: u32,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// How long the run took, in seconds.
    pub duration_s: f64,
    /// Commands answered with a reply.
    pub ops: u64,
    /// Failed commands, by kind of error (`timeout`, `unavailable`, …).
    pub errors: BTreeMap<String, u64>,
    /// Answered commands per second.
    pub throughput: f64,
    /// Median latency.
    pub p50_us: u64,
    /// 90th percentile latency.
    pub p90_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
    /// Highest latency.
    pub max_us: u64,
}

/// Why a run could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The configuration cannot run.
    #[error("invalid bench configuration: {0}")]
    Config(String),
}

/// Runs the load of `config` through `node` (the groups must exist), with
/// [`closed_loop`]; failures are counted by kind (`timeout`,
/// `unavailable`, …).
pub async fn run(node: &NodeHandle, config: &BenchConfig) -> Result<BenchReport, BenchError> {
    if config.concurrency == 0 || config.groups == 0 {
        return Err(BenchError::Config(
            "concurrency and groups must be at least 1".into(),
        ));
    }
    let (node, shared) = (node.clone(), Arc::new(config.clone()));
    let load = closed_loop(
        config.concurrency,
        config.warmup,
        config.duration,
        move |task, i| {
            let (node, config) = (node.clone(), shared.clone());
            async move {
                one_command(&node, &config, task, i)
                    .await
                    .map_err(|e| e.label())
            }
        },
    )
    .await;
    Ok(BenchReport::new(config, load))
}

/// The key task `client` writes with its `i`-th put: 1,024 keys per task,
/// written in turn, so the state stays the same size however long a run
/// is. The vs-etcd harness writes the same keys to both systems.
pub fn kv_key(client: usize, i: u64) -> String {
    format!("k{client}-{}", i % 1024)
}

/// The value of the `i`-th put: `size` bytes of `i`'s decimal digits.
pub fn kv_value(size: usize, i: u64) -> String {
    let digits = format!("{i:016}");
    digits.chars().cycle().take(size).collect()
}

/// Sends task `task`'s `i`-th write command of the configured kind and
/// waits for its reply.
async fn one_command(
    node: &NodeHandle,
    config: &BenchConfig,
    task: usize,
    i: u64,
) -> Result<(), DikeError> {
    match config.kind {
        BenchKind::Arithmetic => {
            // Each task walks the groups from its own starting point.
            let group = (task as u64 + i) % u64::from(config.groups) + 1;
            let reply = node
                .group::<Arithmetic>(&format!("bench-{group}"))
                .call(ArithmeticRequest::Add(1))
                .await?;
            reply
                .map(drop)
                .map_err(|e| DikeError::Application(e.to_string()))
        }
        BenchKind::Kv => {
            let key = kv_key(task, i);
            let group = vnode_for(&key, config.groups);
            let req = KvRequest::Put(key, kv_value(config.value_size, i));
            node.group::<KvServer>(&group).call(req).await.map(drop)
        }
    }
}

impl BenchReport {
    /// The report of a run of `config` that measured `load`.
    pub fn new(config: &BenchConfig, load: LoadReport) -> BenchReport {
        BenchReport {
            kind: config.kind,
            groups: config.groups,
            concurrency: config.concurrency,
            duration_s: load.seconds,
            ops: load.ok,
            errors: load.errors,
            throughput: load.throughput,
            p50_us: load.p50_us,
            p90_us: load.p90_us,
            p99_us: load.p99_us,
            max_us: load.max_us,
        }
    }

    /// Failed commands of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The report as lines of text.
    pub fn to_text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let mut out = format!(
            "bench: {} on {} groups, concurrency {}, {:.1} s\n",
            self.kind.kind(),
            self.groups,
            self.concurrency,
            self.duration_s
        );
        let _ = writeln!(out, "ops         {}", self.ops);
        let _ = write!(out, "errors      {}", self.error_count());
        if !self.errors.is_empty() {
            let by_kind: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = write!(out, " ({})", by_kind.join(", "));
        }
        out += "\n";
        let _ = writeln!(out, "throughput  {:.1} ops/s", self.throughput);
        let _ = writeln!(
            out,
            "latency     p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.max_us)
        );
        out
    }

    /// The report as one JSON object on one line.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self).map(|s| s + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BenchReport {
        let config = BenchConfig {
            kind: BenchKind::Kv,
            groups: 4,
            concurrency: 8,
            duration: Duration::from_secs(2),
            warmup: Duration::ZERO,
            value_size: 16,
        };
        let load = LoadReport {
            clients: 8,
            ok: 5,
            errors: BTreeMap::from([("timeout".to_owned(), 2), ("unavailable".to_owned(), 1)]),
            seconds: 2.0,
            throughput: 2.5,
            p50_us: 300,
            p90_us: 400,
            p99_us: 5000,
            max_us: 5000,
        };
        BenchReport::new(&config, load)
    }

    #[test]
    fn the_report_counts_ops_errors_and_percentiles() {
        let r = report();
        assert_eq!(r.ops, 5);
        assert_eq!(r.error_count(), 3);
        assert!((r.throughput - 2.5).abs() < 1e-9);
        assert!((295..=305).contains(&r.p50_us), "{}", r.p50_us);
        assert!((4990..=5010).contains(&r.max_us), "{}", r.max_us);
        let text = r.to_text();
        assert!(text.contains("kv on 4 groups, concurrency 8"), "{text}");
        assert!(
            text.contains("errors      3 (timeout: 2, unavailable: 1)"),
            "{text}"
        );
        assert!(text.contains("throughput  2.5 ops/s"), "{text}");
        assert!(text.contains("p50 0.30 ms"), "{text}");
    }

    #[test]
    fn the_json_report_is_one_object_with_every_field() {
        let json = report().to_json().expect("json");
        assert_eq!(json.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["kind"], "kv");
        assert_eq!(v["ops"], 5);
        assert_eq!(v["errors"]["timeout"], 2);
        for field in [
            "throughput",
            "p50_us",
            "p90_us",
            "p99_us",
            "max_us",
            "duration_s",
        ] {
            assert!(v.get(field).is_some(), "{field} missing: {json}");
        }
    }

    #[test]
    fn groups_are_named_by_kind() {
        assert_eq!(BenchKind::Arithmetic.groups(2), ["bench-1", "bench-2"]);
        assert_eq!(BenchKind::Kv.groups(1), ["vnode-1"]);
    }
}
