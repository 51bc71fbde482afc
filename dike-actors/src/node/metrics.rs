//! The node's metrics, served by `GET /metrics` in the Prometheus text
//! format (see [`crate::node::http`]).
//!
//! One [`NodeMetrics`] per node, in its [`NodeContext`]: no global
//! registry, so two nodes in one process (the tests) count apart. Actors
//! update counters and gauges as things happen; what others already count
//! (the node log's writer, the kernel for the process) is read at scrape
//! time by collectors.
//!
//! Invariant: the number of series stays bounded whatever the number of
//! groups, clients or requests: no label names a group, a node or a
//! client; labels are server kinds (those in the routing table) and
//! outcomes (fixed lists: [`DikeError::label`], and one per
//! [`RequestError`] variant).
//!
//! [`NodeContext`]: crate::node::context::NodeContext

use crate::error::DikeError;
use crate::storage::provider::StorageProvider;
use dike_core::RequestError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The `Content-Type` of [`NodeMetrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The prefix of every metric name.
pub const PREFIX: &str = "dike";

/// Labels of a finished client request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The group's server kind (`unknown` if the table has no such group).
    kind: String,
    /// `ok`, or the error's [`DikeError::label`].
    outcome: &'static str,
}

/// The label of a latency histogram: the group's server kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

type LatencyFamily = Family<KindLabel, Histogram, fn() -> Histogram>;

/// Request latency buckets: 100 µs doubling to about 6.5 s (past the
/// default request timeout of 5 s).
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Every metric of one node. See the module documentation.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: LatencyFamily,
    client_requests: Family<RequestLabels, Counter>,
    client_request_seconds: LatencyFamily,
    /// Commands applied to state machines by this node's replicas
    /// (replays after a panicked command included).
    pub(crate) commands_applied: Counter,
    /// Times a replica on this node became its group's leader.
    pub(crate) leaderships_won: Counter,
    /// Times a replica on this node saw its group's leader change.
    pub(crate) leader_changes: Counter,
    /// Replica actors running on this node (the master's included).
    pub(crate) replicas: Gauge,
    /// Other nodes this node has a cluster session with.
    pub(crate) peers_up: Gauge,
}

impl NodeMetrics {
    /// The metrics of a node whose replicas keep their state in `storage`
    /// (which adds its own, if it has any).
    pub fn new(storage: &dyn StorageProvider) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Client requests (commands and queries) answered by replicas on this node, by the group's server kind and outcome (not_leader: sent on to the leader by the client)",
            requests.clone(),
        );
        let request_seconds: LatencyFamily = Family::new_with_constructor(request_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a client request reaching a replica on this node to its answer, by the group's server kind",
            request_seconds.clone(),
        );
        let client_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "client_requests",
            "Requests (commands and queries) to groups sent through this node's dispatcher, by the group's server kind and outcome",
            client_requests.clone(),
        );
        let client_request_seconds: LatencyFamily = Family::new_with_constructor(request_histogram);
        registry.register(
            "client_request_duration_seconds",
            "Time from a request reaching this node's dispatcher to its answer, retries included, by the group's server kind",
            client_request_seconds.clone(),
        );
        let commands_applied = Counter::default();
        registry.register(
            "commands_applied",
            "Commands applied to state machines by this node's replicas",
            commands_applied.clone(),
        );
        let leaderships_won = Counter::default();
        registry.register(
            "leaderships_won",
            "Times a replica on this node became its group's leader",
            leaderships_won.clone(),
        );
        let leader_changes = Counter::default();
        registry.register(
            "leader_changes",
            "Times a replica on this node saw its group's leader change (an election counts once per replica that sees it)",
            leader_changes.clone(),
        );
        let replicas = Gauge::default();
        registry.register(
            "replicas_hosted",
            "Replicas running on this node, the master's included",
            replicas.clone(),
        );
        let peers_up = Gauge::default();
        registry.register(
            "peers_up",
            "Other nodes (cluster members and client processes) this node has a cluster session with",
            peers_up.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        storage.register_metrics(&mut registry);
        NodeMetrics {
            registry,
            requests,
            request_seconds,
            client_requests,
            client_request_seconds,
            commands_applied,
            leaderships_won,
            leader_changes,
            replicas,
            peers_up,
        }
    }

    /// Counts one request a replica of a group of `kind` on this node
    /// answered after `elapsed`.
    pub fn record_served<T>(
        &self,
        kind: &str,
        result: &Result<T, RequestError>,
        elapsed: Duration,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(RequestError::NotLeader { .. }) => "not_leader",
            Err(RequestError::Application(_)) => "application_error",
            Err(RequestError::Stale) => "stale",
            Err(RequestError::Busy) => "busy",
            Err(RequestError::QueryUnsupported) => "query_unsupported",
            Err(RequestError::SessionExpired) => "session_expired",
        };
        record(
            &self.requests,
            &self.request_seconds,
            kind,
            outcome,
            elapsed,
        );
    }

    /// Counts one request this node's dispatcher finished, to a group of
    /// `kind`, after `elapsed`.
    pub fn record_request<T>(&self, kind: &str, result: &Result<T, DikeError>, elapsed: Duration) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        let (count, time) = (&self.client_requests, &self.client_request_seconds);
        record(count, time, kind, outcome, elapsed);
    }

    /// Every metric in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn record(
    count: &Family<RequestLabels, Counter>,
    time: &LatencyFamily,
    kind: &str,
    outcome: &'static str,
    elapsed: Duration,
) {
    let kind = kind.to_owned();
    time.get_or_create(&KindLabel { kind: kind.clone() })
        .observe(elapsed.as_secs_f64());
    count.get_or_create(&RequestLabels { kind, outcome }).inc();
}

/// Reads the process's CPU time and resident memory from `/proc/self` at
/// each scrape (Linux; elsewhere the two series are absent).
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat`: the
/// kernel's `USER_HZ`, 100 on every architecture Linux runs on today
/// except Alpha.
const USER_HZ: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        if let Some(ticks) = stat.as_deref().and_then(cpu_ticks) {
            let cpu = ConstCounter::new(ticks as f64 / USER_HZ);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "CPU time of the node's process, user and system",
                None,
                cpu.metric_type(),
            )?;
            cpu.encode(m)?;
        }
        let status = std::fs::read_to_string("/proc/self/status").ok();
        if let Some(kib) = status.as_deref().and_then(rss_kib) {
            let rss = ConstGauge::new(kib.saturating_mul(1024) as i64);
            let m = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of the node's process",
                None,
                rss.metric_type(),
            )?;
            rss.encode(m)?;
        }
        Ok(())
    }
}

/// User plus system CPU time in clock ticks, from `/proc/self/stat`
/// (fields 14 and 15; the command name, field 2, may hold spaces and
/// parentheses, so fields are counted after its last `)`).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory in KiB, from the `VmRSS:` line of `/proc/self/status`.
fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::provider::MemoryProvider;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn a_dispatched_request_is_counted_by_kind_and_outcome_and_timed() {
        let m = NodeMetrics::new(&MemoryProvider::default());
        m.record_request::<()>("kv", &Ok(()), Duration::from_millis(3));
        m.record_request::<()>("kv", &Ok(()), Duration::from_millis(3));
        let timeout = DikeError::Timeout {
            group: "g".into(),
            after: Duration::from_secs(5),
            detail: None,
        };
        m.record_request::<()>("kv", &Err(timeout), Duration::from_secs(5));
        let text = m.encode().expect("encodes");
        let ok = r#"dike_client_requests_total{kind="kv",outcome="ok"}"#;
        let late = r#"dike_client_requests_total{kind="kv",outcome="timeout"}"#;
        assert_eq!(sample(&text, ok), Some("2"), "{text}");
        assert_eq!(sample(&text, late), Some("1"), "{text}");
        let count = r#"dike_client_request_duration_seconds_count{kind="kv"}"#;
        assert_eq!(sample(&text, count), Some("3"), "{text}");
        // 3 ms is above the 1.6 ms bucket's bound and within 3.2 ms's.
        let below = r#"dike_client_request_duration_seconds_bucket{kind="kv",le="0.0016"}"#;
        let above = r#"dike_client_request_duration_seconds_bucket{kind="kv",le="0.0032"}"#;
        assert_eq!(sample(&text, below), Some("0"), "{text}");
        assert_eq!(sample(&text, above), Some("2"), "{text}");
    }

    #[test]
    fn a_served_request_is_counted_by_kind_and_outcome_and_timed() {
        let m = NodeMetrics::new(&MemoryProvider::default());
        let not_leader = RequestError::NotLeader { leader: None };
        m.record_served::<()>("kv", &Ok(()), Duration::from_millis(1));
        m.record_served::<()>("kv", &Err(not_leader), Duration::from_millis(1));
        let text = m.encode().expect("encodes");
        let ok = r#"dike_requests_total{kind="kv",outcome="ok"}"#;
        let redirected = r#"dike_requests_total{kind="kv",outcome="not_leader"}"#;
        assert_eq!(sample(&text, ok), Some("1"), "{text}");
        assert_eq!(sample(&text, redirected), Some("1"), "{text}");
        let count = r#"dike_request_duration_seconds_count{kind="kv"}"#;
        assert_eq!(sample(&text, count), Some("2"), "{text}");
    }

    #[test]
    fn every_metric_name_carries_the_prefix() {
        let m = NodeMetrics::new(&MemoryProvider::default());
        m.record_request::<()>("kv", &Ok(()), Duration::from_millis(1));
        let text = m.encode().expect("encodes");
        let names: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split(['{', ' ']).next().unwrap_or(l))
            .collect();
        assert!(names.contains(&"dike_commands_applied_total"), "{text}");
        assert!(names.contains(&"dike_peers_up"), "{text}");
        if cfg!(target_os = "linux") {
            assert!(names.contains(&"dike_process_cpu_seconds_total"), "{text}");
            assert!(
                names.contains(&"dike_process_resident_memory_bytes"),
                "{text}"
            );
        }
        for n in names {
            assert!(n.starts_with("dike_"), "{n} in {text}");
        }
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name_even_with_spaces_in_it() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime ...
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn resident_memory_is_the_vmrss_line_in_kib() {
        let status = "Name:\tdike\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t4\n";
        assert_eq!(rss_kib(status), Some(1234));
        assert_eq!(rss_kib("Name:\tdike\n"), None);
    }
}
