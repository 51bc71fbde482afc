//! Creating the groups: every creation sent to the master (a bounded number
//! in flight), then every group queried until it answers, since a new group
//! elects its leader before it can serve.
//!
//! Both times run from the first creation sent. A group that was not
//! created, or never answered, by the deadline is reported with its last
//! error.

use crate::attempt::{count_retries, each_concurrently, retry_until};
use dike_examples::arithmetic::{Arithmetic, ArithmeticRequest};
use integration::{Client, Cluster};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Failures listed by name in a report; the rest are only counted.
pub const LISTED: usize = 10;

/// What creating the groups took.
#[derive(Clone, Debug, Serialize)]
pub struct Creation {
    /// Creations in flight at a time.
    pub concurrency: usize,
    /// Groups asked for.
    pub asked: usize,
    /// Groups whose creation the master acknowledged.
    pub created: usize,
    /// Seconds from the first creation sent until the last acknowledged.
    pub acked_s: f64,
    /// Groups that answered a query (a linearizable read at their leader).
    pub answering: usize,
    /// Seconds from the first creation sent until the last created group
    /// answered.
    pub answering_s: f64,
    /// Groups not created or not answering by the deadline.
    pub failed: usize,
    /// The first [`LISTED`] of them, with the last error.
    pub failures: Vec<String>,
    /// Creations that failed and were sent again, by error kind.
    pub create_retries: BTreeMap<String, u64>,
    /// Queries that failed and were sent again, by error kind.
    pub query_retries: BTreeMap<String, u64>,
}

/// Creates `names` (groups of `size` replicas), `concurrency` at a time,
/// then waits until each answers; each of the two steps may take `within`.
pub async fn create_all(
    client: &Client,
    names: &[String],
    size: usize,
    concurrency: usize,
    within: Duration,
) -> Creation {
    let start = Instant::now();
    let node = client.node().clone();
    let deadline = start + within;
    let adds = each_concurrently(names.to_vec(), concurrency, move |name| {
        let node = node.clone();
        async move {
            let a = retry_until(deadline, || node.add_group_sized::<Arithmetic>(&name, size)).await;
            (name, a)
        }
    })
    .await;
    let mut creation = Creation {
        concurrency,
        asked: names.len(),
        created: 0,
        acked_s: 0.0,
        answering: 0,
        answering_s: 0.0,
        failed: 0,
        failures: Vec::new(),
        create_retries: BTreeMap::new(),
        query_retries: BTreeMap::new(),
    };
    let mut created = Vec::with_capacity(names.len());
    for (name, a) in adds {
        count_retries(&mut creation.create_retries, &a);
        match a.result {
            Ok(_) => {
                creation.created += 1;
                creation.acked_s = creation.acked_s.max(since(start, a.at));
                created.push(name);
            }
            Err(e) => creation.fail(format!("{name}: not created: {e}")),
        }
    }

    let node = client.node().clone();
    let deadline = Instant::now() + within;
    let reads = each_concurrently(created, concurrency, move |name| {
        let node = node.clone();
        async move {
            let group = node.group::<Arithmetic>(&name);
            let a = retry_until(deadline, || group.query(ArithmeticRequest::Read)).await;
            (name, a)
        }
    })
    .await;
    for (name, a) in reads {
        count_retries(&mut creation.query_retries, &a);
        match a.result {
            Ok(_) => {
                creation.answering += 1;
                creation.answering_s = creation.answering_s.max(since(start, a.at));
            }
            Err(e) => creation.fail(format!("{name}: created, never answered: {e}")),
        }
    }
    creation
}

impl Creation {
    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.failures.len() < LISTED {
            self.failures.push(why);
        }
    }
}

/// Seconds from `start` to `at`.
pub fn since(start: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(start).as_secs_f64()
}

/// How many replicas of the groups named `prefix…` the routing table
/// places on each node, in node order (`None` if the table cannot be
/// read).
pub async fn placed_per_node(client: &Client, cluster: &Cluster, prefix: &str) -> Vec<Option<u64>> {
    let table = client.routing_table().await.ok();
    (0..cluster.len())
        .map(|i| {
            let id = cluster.node_id(i);
            table.as_ref().map(|t| {
                t.groups_on(id)
                    .filter(|g| g.name.starts_with(prefix))
                    .count() as u64
            })
        })
        .collect()
}
