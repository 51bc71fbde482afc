//! Writes spread over many groups against writes over few: closed-loop
//! `Add(1)` commands from `--clients` clients, each to a group drawn from
//! the run's set (the first 1, 16 or min(N, 1000) scale groups), with
//! [`dike_examples::loadgen::closed_loop`]. The sets alternate in order from
//! round to round, so none always runs first; each run has an unmeasured
//! warm-up (which also wakes the set's hibernating groups).

use crate::Args;
use dike_examples::arithmetic::{Arithmetic, ArithmeticRequest};
use dike_examples::loadgen::{closed_loop, LoadReport};
use integration::proc_stat::cpu_seconds;
use integration::{node_http, Client, Cluster};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The group sets compared: the last one against the 16.
const FEW: usize = 16;
const MANY: usize = 1000;

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct LoadRun {
    /// Groups the writes were spread over.
    pub groups: usize,
    /// The round (from 0).
    pub round: usize,
    /// Throughput, latencies and errors.
    pub load: LoadReport,
    /// CPU seconds of all nodes together during the run, per write, in µs.
    pub server_cpu_us_per_write: f64,
    /// What the nodes did per write during the run, from their `/metrics`
    /// (`None` if a node did not answer).
    pub traffic: Option<Traffic>,
}

/// Work of all nodes together per acknowledged write.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Traffic {
    /// Transport batches sent (`dike_transport_sent_messages_total`).
    pub batches: f64,
    /// Bytes sent by the transports (`dike_transport_sent_bytes_total`).
    pub bytes: f64,
    /// Node-log group commits (`dike_node_log_fsyncs_total`).
    pub fsyncs: f64,
}

/// The cluster-wide totals behind [`Traffic`]; `None` if a node's
/// `/metrics` did not answer.
async fn traffic_totals(cluster: &Cluster) -> Option<Traffic> {
    let mut sum = Traffic::default();
    for i in 0..cluster.len() {
        let reply = node_http::get(cluster.http_addr(i)?, "/metrics")
            .await
            .ok()?;
        let body = &reply.body;
        sum.batches += node_http::metric_sum(body, "dike_transport_sent_messages_total");
        sum.bytes += node_http::metric_sum(body, "dike_transport_sent_bytes_total");
        sum.fsyncs += node_http::metric_sum(body, "dike_node_log_fsyncs_total");
    }
    Some(sum)
}

/// Every run, and the means per set.
#[derive(Clone, Debug, Serialize)]
pub struct Load {
    /// Every run, in the order they ran.
    pub runs: Vec<LoadRun>,
    /// Mean writes/s over the rounds, per set: (groups, writes/s).
    pub mean: Vec<(usize, f64)>,
    /// Mean writes/s over the largest set divided by that over 16 groups
    /// (`None` with 16 groups or fewer).
    pub ratio: Option<f64>,
}

/// The sets of groups a run of `groups` groups compares: 1, 16 and
/// min(groups, 1000), without repeats or sets larger than `groups`.
pub fn sets(groups: usize) -> Vec<usize> {
    let mut sets: Vec<usize> = [1, FEW, MANY]
        .into_iter()
        .map(|k| k.min(groups))
        .filter(|&k| k > 0)
        .collect();
    sets.dedup();
    sets
}

/// Runs `args.rounds` rounds of loads over every set of `names`.
pub async fn measure(args: &Args, cluster: &Cluster, client: &Client, names: &[String]) -> Load {
    let pids: Vec<u32> = (0..cluster.len()).filter_map(|i| cluster.pid(i)).collect();
    let cpu = || pids.iter().filter_map(|&p| cpu_seconds(p)).sum::<f64>();
    let sets = sets(names.len());
    let mut runs = Vec::new();
    for round in 0..args.rounds {
        let mut order = sets.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &k in &order {
            eprintln!("scale: load over {k} groups, round {round}");
            let set: Arc<Vec<String>> = Arc::new(names[..k].to_vec());
            let warmup = Duration::from_secs(args.warmup_seconds);
            writes(client, &set, args.clients, warmup).await;
            let traffic_before = traffic_totals(cluster).await;
            let before = cpu();
            let load = writes(
                client,
                &set,
                args.clients,
                Duration::from_secs(args.load_seconds),
            )
            .await;
            let used = cpu() - before;
            let per_write = 1.0 / load.ok.max(1) as f64;
            let traffic = match (traffic_before, traffic_totals(cluster).await) {
                (Some(b), Some(a)) => Some(Traffic {
                    batches: (a.batches - b.batches) * per_write,
                    bytes: (a.bytes - b.bytes) * per_write,
                    fsyncs: (a.fsyncs - b.fsyncs) * per_write,
                }),
                _ => None,
            };
            runs.push(LoadRun {
                groups: k,
                round,
                server_cpu_us_per_write: used * per_write * 1e6,
                traffic,
                load,
            });
        }
    }
    let mean: Vec<(usize, f64)> = sets
        .iter()
        .map(|&k| {
            let of_k: Vec<f64> = runs
                .iter()
                .filter(|r| r.groups == k)
                .map(|r| r.load.throughput)
                .collect();
            (k, of_k.iter().sum::<f64>() / of_k.len().max(1) as f64)
        })
        .collect();
    let ratio = match (mean.iter().find(|(k, _)| *k == FEW), mean.last()) {
        (Some((_, few)), Some((many, of_many))) if *many > FEW && *few > 0.0 => Some(of_many / few),
        _ => None,
    };
    Load { runs, mean, ratio }
}

/// `clients` closed-loop writers for `time`, each command to a group of
/// `set` picked by a hash of the client and its count.
async fn writes(
    client: &Client,
    set: &Arc<Vec<String>>,
    clients: usize,
    time: Duration,
) -> LoadReport {
    let node = client.node().clone();
    let set = set.clone();
    closed_loop(clients, Duration::ZERO, time, move |c, i| {
        let node = node.clone();
        let set = set.clone();
        async move {
            let pick =
                dike_core::hash::fnv1a(&[(c as u64).to_le_bytes(), i.to_le_bytes()].concat());
            let group = &set[(pick % set.len() as u64) as usize];
            match node
                .group::<Arithmetic>(group)
                .call(ArithmeticRequest::Add(1))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err("application_error"),
                Err(e) => Err(e.label()),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sets_are_one_sixteen_and_up_to_a_thousand_groups() {
        assert_eq!(sets(10_000), [1, 16, 1000]);
        assert_eq!(sets(50), [1, 16, 50]);
        assert_eq!(sets(16), [1, 16]);
        assert_eq!(sets(5), [1, 5]);
        assert_eq!(sets(1), [1]);
        assert!(sets(0).is_empty());
    }
}
