//! Leadership transfer between `dike node` processes: `dike leader
//! transfer` moves a group's leader to the node asked for (and fails with
//! the right exit code for an unknown group or node), and a node stopped
//! with SIGTERM hands its leaderships over before it exits, so a client
//! writing all along sees no failed write and loses none.

mod common;

use common::{text, wait_until_blocking, Cluster};
use dike_actors::NodeHandle;
use dike_examples::arithmetic::{Arithmetic, ArithmeticRequest};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const COOKIE: &str = "leader-transfer-cookie";

#[test]
fn dike_leader_transfer_moves_the_leader_to_the_node_asked_for() {
    let c = Cluster::start("lt", COOKIE);
    c.add_group("calc");
    let before = c.leader_of("calc");
    let target = c
        .names
        .iter()
        .find(|n| **n != before)
        .expect("another node")
        .clone();

    let out = c.dike(&["leader", "transfer", "calc", &target, "-o", "json"]);
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["leader"], target.as_str());
    assert_eq!(answer["previous"], before.as_str());
    assert_eq!(
        c.leader_of("calc"),
        target,
        "dike status shows the new leader"
    );

    // Asking for the node that leads already succeeds at once.
    let out = c.dike(&["leader", "transfer", "calc", &target]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already leads"));

    let out = c.dike(&["leader", "transfer", "calc", "nosuch"]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nosuch\"") && c.names.iter().all(|n| err.contains(n.as_str())),
        "the error names the node asked for and the known ones: {err}"
    );
    let out = c.dike(&["leader", "transfer", "nogroup", &target]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));

    // The master group's leadership moves the same way.
    let master = c.leader_of("dike.master");
    let to = c
        .names
        .iter()
        .find(|n| **n != master)
        .expect("another master")
        .clone();
    let out = c.dike(&["leader", "transfer", "dike.master", &to, "-o", "json"]);
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    assert_eq!(c.leader_of("dike.master"), to, "dike status shows it");
    let out = c.dike(&["routing-table"]);
    assert!(
        out.status.success(),
        "the masters answer under their new leader: {}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_with_sigterm_hands_its_leaderships_over_without_losing_a_write() {
    let mut c = Cluster::start("gs", COOKIE);
    c.add_group("calc");
    // The node that leads the group is the one stopped.
    let stopping = c.leader_of("calc");

    let client = c.client_node("lt-client").await;
    let calc = client.group::<Arithmetic>("calc");
    let first = calc.call(ArithmeticRequest::Read).await.expect("read");
    let first = first.expect("a value");

    // One writer, one write at a time: every acknowledged value must be
    // the previous one plus one.
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let acked = acked.clone();
        async move {
            let mut acks: Vec<(Instant, Result<i64, String>)> = Vec::new();
            let until = Instant::now() + Duration::from_secs(6);
            while Instant::now() < until {
                let r = calc.call(ArithmeticRequest::Add(1)).await;
                let r = match r {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if r.is_ok() {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                acks.push((Instant::now(), r));
            }
            acks
        }
    });
    // The old leader acknowledges some writes before the SIGTERM.
    tokio::task::block_in_place(|| {
        wait_until_blocking(
            Duration::from_secs(30),
            "writes under the old leader",
            || match acked.load(Ordering::SeqCst) {
                n if n >= 20 => Ok(()),
                n => Err(format!("{n} acknowledged")),
            },
        )
    });
    let i = c.index_of(&stopping);
    let node = c.nodes[i].as_mut().expect("running");
    let stopped_at = Instant::now();
    node.signal("TERM").expect("kill -TERM");
    // `wait_until_blocking` sleeps on this thread; block_in_place tells the runtime, so
    // the writer and the client node go on meanwhile.
    tokio::task::block_in_place(|| {
        wait_until_blocking(Duration::from_secs(15), "the node exiting", || {
            match node.exited() {
                Some(_) => Ok(()),
                None => Err("it still runs".to_owned()),
            }
        })
    });
    let log = node.log();
    let acks = writer.await.expect("writer");

    let failed: Vec<&String> = acks.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "writes failed: {failed:?}\n{}", c.logs());
    let values: Vec<i64> = acks.iter().filter_map(|(_, r)| r.clone().ok()).collect();
    let expected: Vec<i64> = (first + 1..=first + values.len() as i64).collect();
    assert_eq!(values, expected, "each write applied once, in order");
    let last = calc_read(&client).await;
    assert_eq!(
        last,
        first + values.len() as i64,
        "no acknowledged write lost"
    );

    let gap = acks
        .windows(2)
        .filter(|w| w[1].0 >= stopped_at)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} writes; longest gap between acknowledgements after SIGTERM: {gap:?} \
         (the election timeout is 500-1000 ms)",
        values.len()
    );
    assert!(
        log.contains("leaderships handed over") && !log.contains("handed_over=0"),
        "the stopping node handed its leaderships over:\n{log}"
    );
    let new_leader = c.leader_of("calc");
    assert_ne!(new_leader, stopping);
    let j = c.index_of(&new_leader);
    let new_log = c.nodes[j].as_ref().expect("running").log();
    assert!(
        new_log.contains("leadership handed over: campaigning"),
        "{new_leader} was elected by the transfer:\n{new_log}"
    );
    c.nodes[i] = None;
    client.stop().await;
}

async fn calc_read(client: &NodeHandle) -> i64 {
    let calc = client.group::<Arithmetic>("calc");
    calc.query(ArithmeticRequest::Read)
        .await
        .expect("read")
        .expect("a value")
}
