//! A closed-loop load generator: `clients` tasks, each sending one request,
//! waiting for its answer and sending the next, for a fixed time. Latencies
//! go into an HDR histogram; errors are counted by their message.
//!
//! Used by `dike bench` ([`crate::bench`]) and by the benchmarks of the
//! `integration` crate (`vs-etcd`, where both systems are driven by the same
//! loop, in the same process, with the same accounting, and `scale`).
//!
//! Invariant: a task never has more than one request in flight, so the
//! offered load is exactly `clients` outstanding requests.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadReport {
    /// Concurrent clients.
    pub clients: usize,
    /// Requests answered successfully.
    pub ok: u64,
    /// Failed requests, by error message.
    pub errors: BTreeMap<String, u64>,
    /// How long the measured part ran, in seconds.
    pub seconds: f64,
    /// Successful requests per second.
    pub throughput: f64,
    /// Latency percentiles of successful requests, in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
}

/// The latency histogram: 1 µs to 1 hour (longer ones count as 1 hour),
/// 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("1 µs to 1 hour are valid bounds")
}

/// Runs `op(client, i)` in a closed loop from `clients` tasks: first for
/// `warmup` (not measured), then for `measure`.
pub async fn closed_loop<F, Fut, E>(
    clients: usize,
    warmup: Duration,
    measure: Duration,
    op: F,
) -> LoadReport
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let op = op.clone();
        tasks.spawn(async move {
            let mut hist = histogram();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut i = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let r = op(client, i).await;
                i += 1;
                if sent < measure_from {
                    continue;
                }
                match r {
                    Ok(()) => {
                        let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        hist.saturating_record(us.max(1));
                    }
                    Err(e) => *errors.entry(e.to_string()).or_default() += 1,
                }
            }
            (hist, errors)
        });
    }
    let mut hist = histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((h, e)) = joined {
            let _ = hist.add(h);
            for (k, v) in e {
                *errors.entry(k).or_default() += v;
            }
        }
    }
    let seconds = measure.as_secs_f64();
    LoadReport {
        clients,
        ok: hist.len(),
        errors,
        seconds,
        throughput: hist.len() as f64 / seconds,
        p50_us: hist.value_at_quantile(0.50),
        p90_us: hist.value_at_quantile(0.90),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_answer_is_counted_and_errors_are_grouped() {
        let r = closed_loop(
            4,
            Duration::ZERO,
            Duration::from_millis(200),
            |client, i| async move {
                tokio::task::yield_now().await;
                if client == 0 && i % 2 == 1 {
                    Err("odd")
                } else {
                    Ok(())
                }
            },
        )
        .await;
        assert!(r.ok > 0);
        assert!(r.errors.get("odd").copied().unwrap_or(0) > 0);
        assert_eq!(r.errors.len(), 1);
        assert!(r.p50_us <= r.p99_us && r.p99_us <= r.max_us);
    }
}
