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
//! groups, clients or requests: no label names a group or a client, and
//! only nodes of the routing table are named (others are `other`); labels
//! are server kinds (those in the routing table), table nodes and outcomes
//! (fixed lists: [`DikeError::label`], and one per [`RequestError`]
//! variant). The one exception is opt-in: with `metrics_per_group`
//! ([`NodeConfig::metrics_per_group`]) the `dike_group_*` series name each
//! group hosted here, and are dropped when its replica stops.
//!
//! [`NodeConfig::metrics_per_group`]: crate::node::config::NodeConfig::metrics_per_group
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
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
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

/// The series of one server kind that every answered request touches,
/// resolved once: looked up in their families on each request, they cost
/// two allocations and a hash of the label set each time.
#[derive(Clone, Debug)]
struct KindSeries {
    ok: Counter,
    seconds: Histogram,
}

/// A request count by kind and outcome and a latency by kind, with the
/// series of each kind seen so far resolved ([`KindSeries`]). Kinds come
/// from the routing table, so the map stays small.
#[derive(Debug)]
struct RequestSeries {
    count: Family<RequestLabels, Counter>,
    time: LatencyFamily,
    by_kind: RwLock<HashMap<String, KindSeries>>,
}

impl RequestSeries {
    fn new(count: Family<RequestLabels, Counter>, time: LatencyFamily) -> Self {
        RequestSeries {
            count,
            time,
            by_kind: RwLock::default(),
        }
    }

    /// Counts one request to a group of `kind` that ended in `outcome`
    /// after `elapsed`.
    fn record(&self, kind: &str, outcome: &'static str, elapsed: Duration) {
        if let Ok(kinds) = self.by_kind.read() {
            if let Some(series) = kinds.get(kind) {
                return self.count(series, kind, outcome, elapsed);
            }
        }
        self.count(&self.resolve(kind), kind, outcome, elapsed);
    }

    fn count(&self, series: &KindSeries, kind: &str, outcome: &'static str, elapsed: Duration) {
        series.seconds.observe(elapsed.as_secs_f64());
        if outcome == "ok" {
            series.ok.inc();
        } else {
            let labels = RequestLabels {
                kind: kind.to_owned(),
                outcome,
            };
            self.count.get_or_create(&labels).inc();
        }
    }

    /// The series of `kind`, resolved from the families and kept.
    fn resolve(&self, kind: &str) -> KindSeries {
        let series = KindSeries {
            ok: self.count.get_or_create_owned(&RequestLabels {
                kind: kind.to_owned(),
                outcome: "ok",
            }),
            seconds: self.time.get_or_create_owned(&KindLabel {
                kind: kind.to_owned(),
            }),
        };
        if let Ok(mut kinds) = self.by_kind.write() {
            kinds.insert(kind.to_owned(), series.clone());
        }
        series
    }
}

/// The label of a per-peer series: the peer node's name if it is in the
/// routing table, else [`OTHER_PEER`] (client processes come and go with
/// fresh names: one series each would grow without bound).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// The transport series of one peer, resolved once.
#[derive(Clone, Debug)]
struct PeerSeries {
    sent: Counter,
    sent_bytes: Counter,
    received: Counter,
    received_bytes: Counter,
}

/// The transport's counters by peer, with the series of each peer
/// resolved on first use. Only nodes of the routing table have their own
/// ([`TransportSeries::learn`]); every other sender shares
/// [`OTHER_PEER`]'s.
#[derive(Debug)]
struct TransportSeries {
    sent: Family<PeerLabel, Counter>,
    sent_bytes: Family<PeerLabel, Counter>,
    received: Family<PeerLabel, Counter>,
    received_bytes: Family<PeerLabel, Counter>,
    /// The routing table's nodes by id: name and, once used, series.
    peers: RwLock<HashMap<u64, (String, OnceLock<PeerSeries>)>>,
    other: OnceLock<PeerSeries>,
}

impl TransportSeries {
    fn series(&self, peer: &str) -> PeerSeries {
        let label = PeerLabel {
            peer: peer.to_owned(),
        };
        PeerSeries {
            sent: self.sent.get_or_create_owned(&label),
            sent_bytes: self.sent_bytes.get_or_create_owned(&label),
            received: self.received.get_or_create_owned(&label),
            received_bytes: self.received_bytes.get_or_create_owned(&label),
        }
    }

    /// Runs `count` on the series of `node`.
    fn with(&self, node: u64, count: impl FnOnce(&PeerSeries)) {
        if let Ok(peers) = self.peers.read() {
            if let Some((name, series)) = peers.get(&node) {
                return count(series.get_or_init(|| self.series(name)));
            }
        }
        count(self.other.get_or_init(|| self.series(OTHER_PEER)));
    }

    /// Learns the names of the nodes of `table`.
    fn learn(&self, table: &dike_core::routing::RoutingTable) {
        let same = |peers: &HashMap<u64, (String, OnceLock<PeerSeries>)>| {
            peers.len() == table.nodes.len()
                && table
                    .nodes
                    .values()
                    .all(|n| peers.get(&n.id.0).is_some_and(|(name, _)| *name == n.name))
        };
        // The table's nodes rarely change: look under the read lock that the
        // transport's counting shares, and write only on a change.
        if self.peers.read().is_ok_and(|p| same(&p)) {
            return;
        }
        let Ok(mut peers) = self.peers.write() else {
            return;
        };
        if !same(&peers) {
            *peers = table
                .nodes
                .values()
                .map(|n| (n.id.0, (n.name.clone(), OnceLock::new())))
                .collect();
        }
    }
}

/// The label of a per-group series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

/// The labels of a per-group request count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupOutcome {
    group: String,
    outcome: &'static str,
}

/// The series per group (opt-in).
#[derive(Debug)]
struct PerGroup {
    requests: Family<GroupOutcome, Counter>,
    applied: Family<GroupLabel, Counter>,
}

/// The actors whose mailbox wait is measured: the node's busiest, each fed
/// by a periodic message that carries when it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mailbox {
    /// The group supervisor (every node tick passes through it).
    GroupSupervisor,
    /// Replica actors (the longest wait of any that gets ticks: a
    /// hibernating replica gets none).
    Replica,
    /// The transport (its reply-port sweep, once a second).
    Transport,
}

impl Mailbox {
    const ALL: [Mailbox; 3] = [
        Mailbox::GroupSupervisor,
        Mailbox::Replica,
        Mailbox::Transport,
    ];

    fn label(self) -> &'static str {
        match self {
            Mailbox::GroupSupervisor => "group_supervisor",
            Mailbox::Replica => "replica",
            Mailbox::Transport => "transport",
        }
    }
}

/// The longest mailbox wait per [`Mailbox`] since the last scrape, in ns.
type MailboxWaits = std::sync::Arc<[std::sync::atomic::AtomicU64; 3]>;

/// The label of a mailbox series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActorLabel {
    actor: &'static str,
}

/// Encodes `dike_mailbox_wait_seconds` and starts the next period.
#[derive(Debug)]
struct MailboxCollector(MailboxWaits);

impl Collector for MailboxCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "mailbox_wait_seconds",
            "The longest time a periodic message waited in the mailbox of the node's busiest actors (the group supervisor, any replica, the transport) since the previous scrape: a backlog shows as a long wait",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for which in Mailbox::ALL {
            let nanos = self.0[which as usize].swap(0, std::sync::atomic::Ordering::Relaxed);
            let label = ActorLabel {
                actor: which.label(),
            };
            let wait = ConstGauge::new(nanos as f64 / 1e9);
            wait.encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// The peer label of a node that is not in the routing table.
pub const OTHER_PEER: &str = "other";

/// Commands per batch buckets: 1 doubling to 4096.
fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Request latency buckets: 100 µs doubling to about 6.5 s (past the
/// default request timeout of 5 s).
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// What a node's metrics record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsOptions {
    /// Count on the request path at all. Off, requests, commands applied,
    /// batches, transport traffic and mailbox waits are not counted (a
    /// node without `--http` serves no metrics, so it skips their cost);
    /// gauges and rare events are kept either way.
    pub record: bool,
    /// Add the series per group (`--metrics-per-group`).
    pub per_group: bool,
}

/// Every metric of one node. See the module documentation.
#[derive(Debug)]
pub struct NodeMetrics {
    /// Whether the request path is counted ([`MetricsOptions::record`]).
    record: bool,
    registry: Registry,
    /// Requests answered by replicas on this node.
    served: RequestSeries,
    /// Requests sent through this node's dispatcher.
    dispatched: RequestSeries,
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
    /// Replicas on this node that lead their group.
    pub(crate) replicas_leading: Gauge,
    /// Replicas on this node whose group hibernates (skips ticks).
    pub(crate) replicas_hibernating: Gauge,
    /// Elections started by replicas on this node.
    pub(crate) elections_started: Counter,
    /// Commands a leading replica took in between two drives (one slot).
    pub(crate) batch_commands: Histogram,
    /// Snapshots sent to replicas behind the log's start.
    pub(crate) snapshots_sent: Counter,
    /// Snapshots received by replicas on this node.
    pub(crate) snapshots_received: Counter,
    /// Catch-up requests sent by replicas on this node.
    pub(crate) catch_ups_sent: Counter,
    /// Messages from other nodes dropped because they did not decode.
    pub(crate) undecodable_received: Counter,
    transport: TransportSeries,
    per_group: Option<PerGroup>,
    mailbox_waits: MailboxWaits,
}

/// Every value [`served_outcome`] gives.
const SERVED_OUTCOMES: [&str; 7] = [
    "ok",
    "not_leader",
    "application_error",
    "stale",
    "busy",
    "query_unsupported",
    "session_expired",
];

/// The outcome label of a replica's answer.
fn served_outcome<T>(result: &Result<T, RequestError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(RequestError::NotLeader { .. }) => "not_leader",
        Err(RequestError::Application(_)) => "application_error",
        Err(RequestError::Stale) => "stale",
        Err(RequestError::Busy) => "busy",
        Err(RequestError::QueryUnsupported) => "query_unsupported",
        Err(RequestError::SessionExpired) => "session_expired",
    }
}

impl NodeMetrics {
    /// The metrics of a node whose replicas keep their state in `storage`
    /// (which adds its own, if it has any), recording what `options` say.
    pub fn new(storage: &dyn StorageProvider, options: MetricsOptions) -> Self {
        let per_group = options.per_group && options.record;
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
        let replicas_leading = Gauge::default();
        registry.register(
            "replicas_leading",
            "Replicas on this node that lead their group",
            replicas_leading.clone(),
        );
        let replicas_hibernating = Gauge::default();
        registry.register(
            "replicas_hibernating",
            "Replicas on this node whose group hibernates (idle: no ticks, no heartbeats)",
            replicas_hibernating.clone(),
        );
        let elections_started = Counter::default();
        registry.register(
            "elections_started",
            "Elections (phase 1 with a new ballot) started by replicas on this node",
            elections_started.clone(),
        );
        let batch_commands = batch_histogram();
        registry.register(
            "batch_commands",
            "Commands a leading replica on this node took in between two drives: they share one slot, one write and one Accept",
            batch_commands.clone(),
        );
        let snapshots_sent = Counter::default();
        registry.register(
            "snapshots_sent",
            "Snapshots replicas on this node sent to a replica behind the start of their log",
            snapshots_sent.clone(),
        );
        let snapshots_received = Counter::default();
        registry.register(
            "snapshots_received",
            "Snapshots replicas on this node received to catch up",
            snapshots_received.clone(),
        );
        let catch_ups_sent = Counter::default();
        registry.register(
            "catch_ups_sent",
            "Catch-up requests (for chosen slots a replica missed) sent by replicas on this node",
            catch_ups_sent.clone(),
        );
        let undecodable_received = Counter::default();
        registry.register(
            "undecodable_received",
            "Messages from other nodes (transport batches, protocol messages) dropped because they did not decode",
            undecodable_received.clone(),
        );
        let transport_sent = Family::<PeerLabel, Counter>::default();
        registry.register(
            "transport_sent_messages",
            "Batches this node's transport sent, by peer node (peers not in the routing table, such as client processes, as \"other\")",
            transport_sent.clone(),
        );
        let transport_sent_bytes = Family::<PeerLabel, Counter>::default();
        registry.register(
            "transport_sent_bytes",
            "Bytes of the batches this node's transport sent, by peer node",
            transport_sent_bytes.clone(),
        );
        let transport_received = Family::<PeerLabel, Counter>::default();
        registry.register(
            "transport_received_messages",
            "Batches this node's transport received, by peer node",
            transport_received.clone(),
        );
        let transport_received_bytes = Family::<PeerLabel, Counter>::default();
        registry.register(
            "transport_received_bytes",
            "Bytes of the batches this node's transport received, by peer node",
            transport_received_bytes.clone(),
        );
        let per_group = per_group.then(|| {
            let requests = Family::<GroupOutcome, Counter>::default();
            registry.register(
                "group_requests",
                "Client requests answered by this node's replica of each group, by outcome (with --metrics-per-group)",
                requests.clone(),
            );
            let applied = Family::<GroupLabel, Counter>::default();
            registry.register(
                "group_commands_applied",
                "Commands applied by this node's replica of each group (with --metrics-per-group)",
                applied.clone(),
            );
            PerGroup { requests, applied }
        });
        let mailbox_waits = MailboxWaits::default();
        registry.register_collector(Box::new(MailboxCollector(mailbox_waits.clone())));
        registry.register_collector(Box::new(ProcessCollector));
        storage.register_metrics(&mut registry);
        NodeMetrics {
            record: options.record,
            registry,
            served: RequestSeries::new(requests, request_seconds),
            dispatched: RequestSeries::new(client_requests, client_request_seconds),
            commands_applied,
            leaderships_won,
            leader_changes,
            replicas,
            peers_up,
            replicas_leading,
            replicas_hibernating,
            elections_started,
            batch_commands,
            snapshots_sent,
            snapshots_received,
            catch_ups_sent,
            undecodable_received,
            transport: TransportSeries {
                sent: transport_sent,
                sent_bytes: transport_sent_bytes,
                received: transport_received,
                received_bytes: transport_received_bytes,
                peers: RwLock::default(),
                other: OnceLock::new(),
            },
            per_group,
            mailbox_waits,
        }
    }

    /// A message to `which` waited `waited` in its mailbox.
    pub(crate) fn mailbox_wait(&self, which: Mailbox, waited: Duration) {
        if !self.record {
            return;
        }
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.mailbox_waits[which as usize].fetch_max(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counter of commands applied by this node's replica of `group`,
    /// if series per group are on.
    pub(crate) fn group_applied(&self, group: &str) -> Option<Counter> {
        let label = GroupLabel {
            group: group.to_owned(),
        };
        Some(
            self.per_group
                .as_ref()?
                .applied
                .get_or_create(&label)
                .clone(),
        )
    }

    /// The counter of commands applied by this node's replicas, if the
    /// request path is counted.
    pub(crate) fn applied(&self) -> Option<Counter> {
        self.record.then(|| self.commands_applied.clone())
    }

    /// Counts a leader's batch of `commands`, if the request path is
    /// counted.
    pub(crate) fn batch(&self, commands: u64) {
        if self.record {
            self.batch_commands.observe(commands as f64);
        }
    }

    /// Drops the series of `group` (its replica here stopped).
    pub(crate) fn forget_group(&self, group: &str) {
        let Some(p) = &self.per_group else {
            return;
        };
        p.applied.remove(&GroupLabel {
            group: group.to_owned(),
        });
        for outcome in SERVED_OUTCOMES {
            p.requests.remove(&GroupOutcome {
                group: group.to_owned(),
                outcome,
            });
        }
    }

    /// Learns the names of the nodes of `table` for the per-peer series.
    pub(crate) fn learn_peers(&self, table: &dike_core::routing::RoutingTable) {
        self.transport.learn(table);
    }

    /// Counts one batch of `bytes` this node's transport sent to `node`.
    pub(crate) fn transport_sent(&self, node: u64, bytes: usize) {
        if self.record {
            self.transport.with(node, |s| {
                s.sent.inc();
                s.sent_bytes.inc_by(bytes as u64);
            });
        }
    }

    /// Counts one batch of `bytes` this node's transport received from
    /// `node`.
    pub(crate) fn transport_received(&self, node: u64, bytes: usize) {
        if self.record {
            self.transport.with(node, |s| {
                s.received.inc();
                s.received_bytes.inc_by(bytes as u64);
            });
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
        if !self.record {
            return;
        }
        self.served.record(kind, served_outcome(result), elapsed);
    }

    /// Counts one request the replica of `group` on this node answered, if
    /// series per group are on.
    pub fn record_served_in_group<T>(&self, group: &str, result: &Result<T, RequestError>) {
        if let Some(p) = &self.per_group {
            let outcome = served_outcome(result);
            let labels = GroupOutcome {
                group: group.to_owned(),
                outcome,
            };
            p.requests.get_or_create(&labels).inc();
        }
    }

    /// Counts one request this node's dispatcher finished, to a group of
    /// `kind`, after `elapsed`.
    pub fn record_request<T>(&self, kind: &str, result: &Result<T, DikeError>, elapsed: Duration) {
        if !self.record {
            return;
        }
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.dispatched.record(kind, outcome, elapsed);
    }

    /// Every metric in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
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

    const ON: MetricsOptions = MetricsOptions {
        record: true,
        per_group: false,
    };
    const PER_GROUP: MetricsOptions = MetricsOptions {
        record: true,
        per_group: true,
    };

    #[test]
    fn a_node_that_does_not_record_counts_no_request() {
        let off = MetricsOptions {
            record: false,
            per_group: true,
        };
        let m = NodeMetrics::new(&MemoryProvider::default(), off);
        m.record_request::<()>("kv", &Ok(()), Duration::from_millis(3));
        m.record_served::<()>("kv", &Ok(()), Duration::from_millis(3));
        m.transport_sent(1, 10);
        assert!(m.applied().is_none() && m.group_applied("g").is_none());
        let text = m.encode().expect("encodes");
        assert!(!text.contains("outcome=\"ok\""), "{text}");
        assert!(!text.contains("dike_transport_sent_bytes_total{"), "{text}");
    }

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn a_dispatched_request_is_counted_by_kind_and_outcome_and_timed() {
        let m = NodeMetrics::new(&MemoryProvider::default(), ON);
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
        let m = NodeMetrics::new(&MemoryProvider::default(), ON);
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
    fn the_mailbox_wait_is_the_longest_since_the_last_scrape() {
        let m = NodeMetrics::new(&MemoryProvider::default(), ON);
        m.mailbox_wait(Mailbox::Replica, Duration::from_millis(3));
        m.mailbox_wait(Mailbox::Replica, Duration::from_millis(250));
        m.mailbox_wait(Mailbox::Replica, Duration::from_millis(7));
        let text = m.encode().expect("encodes");
        let replica = r#"dike_mailbox_wait_seconds{actor="replica"}"#;
        let transport = r#"dike_mailbox_wait_seconds{actor="transport"}"#;
        assert_eq!(sample(&text, replica), Some("0.25"), "{text}");
        assert_eq!(sample(&text, transport), Some("0.0"), "{text}");
        let text = m.encode().expect("encodes");
        assert_eq!(sample(&text, replica), Some("0.0"), "{text}");
    }

    #[test]
    fn series_per_group_exist_only_when_asked_for_and_go_with_the_group() {
        let off = NodeMetrics::new(&MemoryProvider::default(), ON);
        assert!(off.group_applied("calc").is_none());
        off.record_served_in_group::<()>("calc", &Ok(()));
        assert!(!off.encode().expect("encodes").contains("dike_group_"));

        let on = NodeMetrics::new(&MemoryProvider::default(), PER_GROUP);
        on.group_applied("calc").expect("on").inc();
        on.record_served_in_group::<()>("calc", &Ok(()));
        on.record_served_in_group::<()>("calc", &Err(RequestError::Busy));
        let text = on.encode().expect("encodes");
        let ok = r#"dike_group_requests_total{group="calc",outcome="ok"}"#;
        let busy = r#"dike_group_requests_total{group="calc",outcome="busy"}"#;
        let applied = r#"dike_group_commands_applied_total{group="calc"}"#;
        assert_eq!(sample(&text, ok), Some("1"), "{text}");
        assert_eq!(sample(&text, busy), Some("1"), "{text}");
        assert_eq!(sample(&text, applied), Some("1"), "{text}");
        on.forget_group("calc");
        let text = on.encode().expect("encodes");
        assert!(!text.contains("group=\"calc\""), "{text}");
    }

    #[test]
    fn transport_series_name_table_nodes_and_lump_the_others_together() {
        let m = NodeMetrics::new(&MemoryProvider::default(), ON);
        let mut table = dike_core::routing::RoutingTable::new();
        let id = crate::node::config::node_id_of("n1");
        let inc = dike_core::Incarnation(1);
        table.add_node(id, "n1", "127.0.0.1:1", inc).expect("add");
        m.learn_peers(&table);
        m.transport_sent(id.0, 100);
        m.transport_sent(id.0, 20);
        for client in 0..50 {
            m.transport_received(1_000 + client, 10);
        }
        let text = m.encode().expect("encodes");
        let sent = r#"dike_transport_sent_bytes_total{peer="n1"}"#;
        assert_eq!(sample(&text, sent), Some("120"), "{text}");
        let batches = r#"dike_transport_sent_messages_total{peer="n1"}"#;
        assert_eq!(sample(&text, batches), Some("2"), "{text}");
        let others = r#"dike_transport_received_messages_total{peer="other"}"#;
        assert_eq!(sample(&text, others), Some("50"), "{text}");
        // Fifty clients, one series: only table nodes are named.
        let mut peers: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dike_transport_received_bytes_total"))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        peers.sort_unstable();
        assert_eq!(peers, ["n1", "other"], "{text}");
    }

    #[test]
    fn every_metric_name_carries_the_prefix() {
        let m = NodeMetrics::new(&MemoryProvider::default(), ON);
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
