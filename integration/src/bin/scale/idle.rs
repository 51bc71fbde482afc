//! Nodes at rest: each node's CPU over a window, with its RSS and gauges at
//! the window's end; and the wait until a cluster has settled.
//!
//! The window is a fixed measuring time, not a wait for a condition: the
//! CPU a node uses in it is the figure. Settling is a condition, polled
//! with a deadline ([`wait_quiet`]).

use crate::{gauges, http_of, Gauges};
use integration::proc_stat::{cpu_seconds, resident_bytes};
use integration::wait::{poll_until, NotYet};
use integration::Cluster;
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the hibernating replicas must not have grown in number for the
/// cluster to count as quiet.
const QUIET_FOR: Duration = Duration::from_secs(5);

/// How long the cluster may take to become quiet; the idle window is
/// measured anyway after that, and the report says quiet was not reached.
const QUIET_WITHIN: Duration = Duration::from_secs(180);

/// One node over an idle window.
#[derive(Clone, Debug, Serialize)]
pub struct NodeSample {
    /// The node's name.
    pub name: String,
    /// CPU (user + system, from `/proc/PID/stat`) over the window, in % of
    /// one core.
    pub cpu_pct: Option<f64>,
    /// `VmRSS` at the window's end, in bytes.
    pub rss_bytes: Option<u64>,
    /// The node's gauges at the window's end.
    pub gauges: Option<Gauges>,
}

/// Every node's CPU over `window` (measured from now), then its RSS and
/// gauges.
pub async fn sample(cluster: &Cluster, window: Duration) -> Vec<NodeSample> {
    let pids: Vec<Option<u32>> = (0..cluster.len()).map(|i| cluster.pid(i)).collect();
    let cpu_now = || -> Vec<Option<f64>> { pids.iter().map(|p| p.and_then(cpu_seconds)).collect() };
    let before = cpu_now();
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let after = cpu_now();
    let wall = start.elapsed().as_secs_f64();
    let mut samples = Vec::with_capacity(cluster.len());
    for i in 0..cluster.len() {
        let cpu_pct = match (before[i], after[i]) {
            (Some(b), Some(a)) => Some((a - b) / wall * 100.0),
            _ => None,
        };
        samples.push(NodeSample {
            name: cluster.name(i).to_owned(),
            cpu_pct,
            rss_bytes: pids[i].and_then(resident_bytes),
            gauges: gauges(http_of(cluster, i)).await.ok(),
        });
    }
    samples
}

/// How the wait for a quiet cluster ended.
#[derive(Clone, Debug, Serialize)]
pub struct Quiet {
    /// Whether the cluster became quiet before [`QUIET_WITHIN`].
    pub reached: bool,
    /// Seconds the wait took.
    pub waited_s: f64,
    /// Replicas hibernating on all nodes together at the end.
    pub hibernating: u64,
    /// Replicas of the groups created (the most that can hibernate; the
    /// master group's are not counted).
    pub group_replicas: u64,
    /// Why it was not quiet, if it was not.
    pub last: Option<String>,
}

/// What the polls of [`wait_quiet`] have seen so far.
struct Seen {
    most: u64,
    grew_at: Instant,
}

/// Waits until the cluster is quiet: every group replica hibernates, or
/// the number of hibernating replicas (summed over the nodes'
/// `dike_replicas_hibernating`) has not grown for [`QUIET_FOR`].
pub async fn wait_quiet(cluster: &Cluster, group_replicas: usize) -> Quiet {
    let group_replicas = group_replicas as u64;
    let start = Instant::now();
    let seen = Mutex::new(Seen {
        most: 0,
        grew_at: start,
    });
    let outcome = poll_until(QUIET_WITHIN, || async {
        let mut total = 0;
        for i in 0..cluster.len() {
            total += gauges(http_of(cluster, i)).await?.hibernating;
        }
        let mut seen = seen.lock().map_err(|_| NotYet("poisoned".into()))?;
        if total > seen.most {
            seen.most = total;
            seen.grew_at = Instant::now();
        }
        let still = seen.grew_at.elapsed();
        if total >= group_replicas || still >= QUIET_FOR {
            Ok(total)
        } else {
            Err(NotYet(format!(
                "{total} of {group_replicas} group replicas hibernate, \
                 the last rise {:.1} s ago",
                still.as_secs_f64()
            )))
        }
    })
    .await;
    let waited_s = start.elapsed().as_secs_f64();
    match outcome {
        Ok(hibernating) => Quiet {
            reached: true,
            waited_s,
            hibernating,
            group_replicas,
            last: None,
        },
        Err(why) => Quiet {
            reached: false,
            waited_s,
            hibernating: seen.lock().map(|s| s.most).unwrap_or(0),
            group_replicas,
            last: Some(why.0),
        },
    }
}
