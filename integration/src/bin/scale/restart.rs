//! A node with many replicas killed and started again on its data dir: how
//! soon it serves.
//!
//! "Serving" is measured three ways, each from the spawn of the new
//! process and polled at the same time: `/ready` answers 200 (the node read
//! the routing table from a master quorum); `dike_replicas_hosted` is back
//! to what it was before the kill (every replica actor runs again); and a
//! sample of the groups it hosts each acknowledged a write that the
//! restarted node's replica then applied. A write alone would prove
//! little: the other four replicas of a group acknowledge it without the
//! restarted one.

use crate::attempt::{count_retries, each_concurrently, retry_until};
use crate::create::{since, LISTED};
use crate::{gauges, http_of, ready, PREFIX};
use dike_actors::NodeHandle;
use dike_core::{MemberId, NodeId};
use dike_examples::arithmetic::{Arithmetic, ArithmeticRequest};
use integration::wait::{poll_until, NotYet};
use integration::{Client, Cluster};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long each of the three conditions may take after the spawn.
const RESTART_WITHIN: Duration = Duration::from_secs(120);

/// How long the client may take to see every replica of a group.
const SEE_WITHIN: Duration = Duration::from_secs(30);

/// Groups of the restarted node written to (all, if it hosts fewer).
const SAMPLE: usize = 100;

/// What the restart measured.
#[derive(Clone, Debug, Serialize)]
pub struct Restart {
    /// The node killed and started again.
    pub node: String,
    /// The node leading the master group before the kill, if it could be
    /// told (the killed node is another one).
    pub master_leader: Option<String>,
    /// Its `dike_replicas_hosted` before the kill.
    pub hosted_before: Option<u64>,
    /// Seconds from the spawn until `/ready` answered 200.
    pub ready_s: Option<f64>,
    /// Seconds from the spawn until `dike_replicas_hosted` was back to
    /// `hosted_before`.
    pub hosted_s: Option<f64>,
    /// Groups of the node written to.
    pub sampled: usize,
    /// Seconds from the spawn until every sampled group acknowledged a
    /// write.
    pub writes_acked_s: Option<f64>,
    /// Seconds from the spawn until the restarted node's replica of every
    /// sampled group had applied that write.
    pub writes_applied_s: Option<f64>,
    /// Sampled groups that missed a step by the deadline.
    pub failed: usize,
    /// The first [`LISTED`] of them, with why.
    pub failures: Vec<String>,
    /// Writes that failed and were sent again, by error kind.
    pub write_retries: BTreeMap<String, u64>,
}

/// Kills a node that does not lead the master group (the last such node;
/// the last node if the leader cannot be told), starts it again and
/// measures how soon it serves.
pub async fn measure(cluster: &mut Cluster, client: &Client, concurrency: usize) -> Restart {
    let leader = client.master_leader().await;
    let victim = (0..cluster.len())
        .rev()
        .find(|&i| Some(cluster.node_id(i)) != leader)
        .unwrap_or(cluster.len() - 1);
    let addr = http_of(cluster, victim);
    let hosted_before = gauges(addr).await.ok().map(|g| g.hosted);
    let sample = sample_groups(client, cluster.node_id(victim)).await;
    if let Some((group, _)) = sample.first() {
        see_every_replica(client, group).await;
    }
    eprintln!(
        "scale: restart: kill -9 {} ({} replicas hosted), {} groups sampled",
        cluster.name(victim),
        hosted_before.map_or("?".into(), |h| h.to_string()),
        sample.len()
    );
    let master_leader = leader
        .and_then(|l| cluster.index_of(l))
        .map(|i| cluster.name(i).to_owned());

    cluster.kill(victim);
    let spawned = Instant::now();
    cluster.start(victim);
    let deadline = spawned + RESTART_WITHIN;

    let answers_ready = poll_until(RESTART_WITHIN, || async {
        ready(addr).await.map(|()| Instant::now())
    });
    let hosts_again = poll_until(RESTART_WITHIN, || async {
        let hosted = gauges(addr).await?.hosted;
        match hosted_before {
            Some(before) if hosted < before => {
                Err(NotYet(format!("{hosted} of {before} replicas hosted")))
            }
            _ => Ok(Instant::now()),
        }
    });
    let sampled = sample.len();
    let node = client.node().clone();
    let writes = each_concurrently(sample, concurrency, move |(group, member)| {
        let node = node.clone();
        async move { write_and_apply(&node, &group, member, deadline).await }
    });
    let (answers_ready, hosts_again, writes) = tokio::join!(answers_ready, hosts_again, writes);

    let mut restart = Restart {
        node: cluster.name(victim).to_owned(),
        master_leader,
        hosted_before,
        ready_s: answers_ready.ok().map(|at| since(spawned, at)),
        hosted_s: hosts_again.ok().map(|at| since(spawned, at)),
        sampled,
        writes_acked_s: None,
        writes_applied_s: None,
        failed: 0,
        failures: Vec::new(),
        write_retries: BTreeMap::new(),
    };
    // The latest time over the sampled groups; none if a group missed it,
    // or if there was no group to sample.
    let start = (sampled > 0).then_some(0.0f64);
    let (mut acked, mut applied) = (start, start);
    for (group, outcome) in writes {
        count_retries(&mut restart.write_retries, &outcome.write);
        let ack = outcome
            .write
            .result
            .as_ref()
            .ok()
            .map(|_| since(spawned, outcome.write.at));
        acked = acked.zip(ack).map(|(a, b)| a.max(b));
        let here = outcome.applied.as_ref().ok().map(|at| since(spawned, *at));
        applied = applied.zip(here).map(|(a, b)| a.max(b));
        let why = match (&outcome.write.result, &outcome.applied) {
            (Err(e), _) => Some(format!("{group}: no write acknowledged: {e}")),
            (Ok(_), Err(why)) => Some(format!("{group}: write not applied here: {}", why.0)),
            (Ok(_), Ok(_)) => None,
        };
        if let Some(why) = why {
            restart.failed += 1;
            if restart.failures.len() < LISTED {
                restart.failures.push(why);
            }
        }
    }
    restart.writes_acked_s = acked;
    restart.writes_applied_s = applied;
    restart
}

/// Waits (within [`SEE_WITHIN`]) until every replica of `group` answers
/// the client's status request. A client node that just connected learns
/// of the replicas of other nodes a moment after its sessions open; a
/// restart measured before that would count the client's delay as the
/// node's. Only warns if they do not all answer.
async fn see_every_replica(client: &Client, group: &str) {
    let seen = poll_until(SEE_WITHIN, || async {
        for (m, s) in client.replica_statuses(group).await? {
            s.map_err(|e| NotYet(format!("{m}: {e}")))?;
        }
        Ok::<(), NotYet>(())
    })
    .await;
    if let Err(why) = seen {
        eprintln!(
            "scale: restart: not every replica of {group} answered the client before the kill: {}",
            why.0
        );
    }
}

/// Up to [`SAMPLE`] scale groups with a replica on `node`, spread evenly
/// over them, with that replica's member id.
async fn sample_groups(client: &Client, node: NodeId) -> Vec<(String, MemberId)> {
    let Ok(table) = client.routing_table().await else {
        return Vec::new();
    };
    let hosted: Vec<(String, MemberId)> = table
        .groups_on(node)
        .filter(|g| g.name.starts_with(PREFIX))
        .filter_map(|g| Some((g.name.clone(), g.member_on(node)?)))
        .collect();
    let step = hosted.len().div_ceil(SAMPLE).max(1);
    hosted.into_iter().step_by(step).collect()
}

/// One sampled group's write and its application by the restarted replica.
struct WriteOutcome {
    write: crate::attempt::Attempt<Result<i64, dike_examples::arithmetic::ArithmeticError>>,
    /// When the restarted replica had applied the write.
    applied: Result<Instant, NotYet>,
}

/// Writes to `group` until acknowledged, then waits until `member` (the
/// restarted replica) applied as far as the group's other replicas had
/// right after the write.
async fn write_and_apply(
    node: &NodeHandle,
    group: &str,
    member: MemberId,
    deadline: Instant,
) -> (String, WriteOutcome) {
    let handle = node.group::<Arithmetic>(group);
    let write = retry_until(deadline, || handle.call(ArithmeticRequest::Add(1))).await;
    let applied = match write.result {
        Ok(_) => applied_by(node, group, member, deadline).await,
        Err(_) => Err(NotYet("no write to apply".into())),
    };
    (group.to_owned(), WriteOutcome { write, applied })
}

/// Polls until `member` of `group` applied at least the highest slot the
/// other voters report once one of them answers; returns when it had.
async fn applied_by(
    node: &NodeHandle,
    group: &str,
    member: MemberId,
    deadline: Instant,
) -> Result<Instant, NotYet> {
    let left = || deadline.saturating_duration_since(Instant::now());
    let target = poll_until(left(), || async {
        let table = node.cached_table().await?;
        let (mut target, mut last) = (None, None);
        for m in table.voters(group)?.iter().filter(|m| **m != member) {
            match node.replica_status(group, *m).await {
                Ok(s) => target = target.max(Some(s.applied)),
                Err(e) => last = Some(e),
            }
        }
        target.ok_or_else(|| {
            let last = last.map_or("none asked".into(), |e| e.to_string());
            NotYet(format!(
                "no other replica answered a status request: {last}"
            ))
        })
    })
    .await?;
    poll_until(left(), || async {
        let s = node.replica_status(group, member).await?;
        if s.applied >= target {
            Ok(Instant::now())
        } else {
            Err(NotYet(format!("applied {} of {target}", s.applied)))
        }
    })
    .await
}
