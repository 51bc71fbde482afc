//! Draining a node between `dike node` processes: `dike node drain` of the
//! node leading the most groups moves every leadership off it while
//! clients write, the node then leads nothing for as long as it drains,
//! `dike node undrain` gives its groups back to it (it is their preferred
//! leader), and no acknowledged write is lost on the way. Unknown nodes
//! exit 8 naming the node.

mod common;

use common::{text, wait_until_blocking, Cluster};
use dike_actors::NodeHandle;
use dike_examples::arithmetic::{Arithmetic, ArithmeticRequest};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const COOKIE: &str = "node-drain-cookie";
const GROUPS: [&str; 4] = ["d1", "d2", "d3", "d4"];

/// `dike status -o json`, parsed. A status that fails (under this test's
/// load a debug build's status can miss its 10 s deadline) is asked again,
/// for up to 30 s; the panic shows the last failure.
fn status(c: &Cluster) -> serde_json::Value {
    wait_until_blocking(Duration::from_secs(30), "dike status", || {
        let out = c.dike(&["status", "-o", "json"]);
        if !out.status.success() {
            return Err(text(&out));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", text(&out)))
    })
}

/// The node each group's leader is on, as `dike status` shows it (groups
/// without a leader shown are left out; the master group included).
fn leaders(status: &serde_json::Value) -> BTreeMap<String, String> {
    status["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| {
            Some((
                g["name"].as_str()?.to_owned(),
                g["leader"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Each data group's preferred leader: the node of its first voter.
fn preferred_leaders(c: &Cluster) -> BTreeMap<String, String> {
    let out = c.dike(&["routing-table", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    table["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| {
            Some((
                g["name"].as_str()?.to_owned(),
                g["members"][0].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// What one writer saw: the value before it began, and every write's
/// outcome (the new value, or why it failed).
struct Writes {
    group: &'static str,
    first: i64,
    outcomes: Vec<Result<i64, String>>,
}

/// Adds 1 to `group`, one write at a time, until `stop`.
async fn write_until(client: NodeHandle, group: &'static str, stop: Arc<AtomicBool>) -> Writes {
    let g = client.group::<Arithmetic>(group);
    let first = g
        .call(ArithmeticRequest::Read)
        .await
        .expect("read")
        .expect("a value");
    let mut outcomes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let r = match g.call(ArithmeticRequest::Add(1)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        outcomes.push(r);
    }
    Writes {
        group,
        first,
        outcomes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_leads_nothing_until_undrained_and_no_acknowledged_write_is_lost() {
    let c = Cluster::start("dr", COOKIE);
    for g in GROUPS {
        c.add_group(g);
    }
    for g in GROUPS {
        c.leader_of(g);
    }
    let before = leaders(&status(&c));
    let mut led: BTreeMap<&str, usize> = BTreeMap::new();
    for l in before.values() {
        *led.entry(l.as_str()).or_default() += 1;
    }
    let (drained, count) = led
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(n, k)| (n.to_string(), *k))
        .expect("leaders shown");
    eprintln!("leaders before: {before:?}; draining {drained} ({count} groups)");

    let client = c.client_node("dr-client").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = GROUPS
        .iter()
        .map(|g| tokio::spawn(write_until(client.clone(), g, stop.clone())))
        .collect();

    // Drain: exit 0 once nothing is led from the node, listing what moved.
    let out = c.dike(&["node", "drain", &drained, "-o", "json", "--timeout", "30"]);
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["drained"], drained.as_str());
    let moved: Vec<&str> = answer["moved"]
        .as_array()
        .expect("moved")
        .iter()
        .filter_map(|m| m["group"].as_str())
        .collect();
    for (g, l) in &before {
        if *l == drained {
            assert!(moved.contains(&g.as_str()), "{g} moved: {answer}");
        }
    }

    // It stays so while it drains (and says it drains), under load.
    let watch_until = Instant::now() + Duration::from_secs(4);
    let mut looks = 0;
    while Instant::now() < watch_until || looks < 3 {
        let s = status(&c);
        let now = leaders(&s);
        assert!(
            now.values().all(|l| *l != drained),
            "{drained} leads again while draining: {now:?}\n{}",
            c.logs()
        );
        let node = s["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["name"] == drained.as_str()))
            .cloned()
            .unwrap_or_default();
        assert_eq!(node["draining"], true, "{s}");
        looks += 1;
    }

    // Undrain: the groups it is the preferred leader of come back to it.
    let out = c.dike(&["node", "undrain", &drained]);
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    let preferred = preferred_leaders(&c);
    let back: Vec<&String> = preferred
        .iter()
        .filter(|(_, p)| **p == drained)
        .map(|(g, _)| g)
        .collect();
    assert!(
        !back.is_empty(),
        "{drained} is the preferred leader of some group: {preferred:?}"
    );
    // `wait_until_blocking` sleeps on this thread; block_in_place tells the runtime, so
    // the writers go on meanwhile.
    tokio::task::block_in_place(|| {
        let what = format!("{drained} leading {back:?} again");
        wait_until_blocking(Duration::from_secs(30), &what, || {
            let now = leaders(&status(&c));
            if back.iter().all(|g| now.get(*g) == Some(&drained)) {
                Ok(())
            } else {
                Err(format!("the leaders are {now:?}\n{}", c.logs()))
            }
        })
    });

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let w = w.await.expect("writer");
        let failed: Vec<&String> = w.outcomes.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failed.is_empty(), "{}: writes failed: {failed:?}", w.group);
        // One writer, one write at a time: each acknowledgement is the
        // previous value plus one, and the last one is what a read sees.
        let acked: Vec<i64> = w.outcomes.iter().filter_map(|r| r.clone().ok()).collect();
        let expected: Vec<i64> = (w.first + 1..=w.first + acked.len() as i64).collect();
        assert_eq!(
            acked, expected,
            "{}: each write applied once, in order",
            w.group
        );
        let read = client
            .group::<Arithmetic>(w.group)
            .query(ArithmeticRequest::Read)
            .await
            .expect("read")
            .expect("a value");
        assert_eq!(
            read,
            w.first + acked.len() as i64,
            "{}: no acknowledged write lost",
            w.group
        );
        eprintln!("{}: {} writes acknowledged", w.group, acked.len());
    }
    client.stop().await;
}

#[test]
fn draining_or_undraining_an_unknown_node_exits_8_naming_it() {
    let c = Cluster::start("du", COOKIE);
    for op in ["drain", "undrain"] {
        let out = c.dike(&["node", op, "nosuch"]);
        assert_eq!(out.status.code(), Some(8), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("\"nosuch\""),
            "the error names the node: {err}"
        );
    }
    // Draining twice is no error.
    let name = c.names[0].clone();
    for _ in 0..2 {
        let out = c.dike(&["node", "drain", &name]);
        assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    }
    let out = c.dike(&["node", "undrain", &name]);
    assert!(out.status.success(), "{}", text(&out));
}
