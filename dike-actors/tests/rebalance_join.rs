//! The master moves replicas with membership changes, on separate OS
//! processes: when a node joins, replicas move onto it until every node
//! holds within one replica of every other; every group keeps its state and
//! answers, and the new members catch up.

mod common;

use common::{free_addr, groups_with_values, poll_until, settled, sized_client, NotYet};
use common::{start_cluster_with, values_kept};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_move_to_a_node_that_joins_until_loads_are_even() {
    let (mut procs, masters) = start_cluster_with("rebal-join", 3, 2, &[]);
    let node = sized_client(&masters, 3).await;
    let values = groups_with_values(&procs, &node).await;

    procs.spawn("rebal-join-w3", free_addr(), &["--group-size", "5"]);
    let newcomer = dike_actors::node::config::node_id_of("rebal-join-w3");
    let balanced = poll_until(Duration::from_secs(90), || async {
        let t = node.routing_table().await?;
        let load = t.load();
        let (min, max) = (load.values().min(), load.values().max());
        let on_new = t.groups_on(newcomer).count();
        let even = matches!((min, max), (Some(a), Some(b)) if b - a <= 1);
        if load.len() == 6 && even && settled(&t) && on_new > 0 {
            Ok(t)
        } else {
            Err(NotYet(format!("load {load:?}, {on_new} on the new node")))
        }
    })
    .await;
    let table = match balanced {
        Ok(t) => t,
        Err(e) => panic!("{}\n{}", e.0, procs.log_tails()),
    };
    values_kept(&procs, &node, &values).await;

    // The new members caught up, and the members that left stopped.
    for g in table.groups_on(newcomer) {
        let member = g.member_on(newcomer).expect("hosted");
        let caught_up = poll_until(Duration::from_secs(15), || async {
            let s = node.replica_status(&g.name, member).await?;
            (s.applied > 0)
                .then_some(())
                .ok_or(NotYet(format!("{member} applied {}", s.applied)))
        })
        .await;
        assert!(caught_up.is_ok(), "{}: {caught_up:?}", g.name);
    }
    node.stop().await;
}
