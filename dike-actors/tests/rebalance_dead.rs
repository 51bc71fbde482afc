//! The master replaces the replicas of a node that stays down past its
//! grace period with membership changes, on separate OS processes: every
//! group ends with all its voters on live nodes, keeps its state and
//! answers.

mod common;

use common::{groups_with_values, poll_until, settled, sized_client, NotYet};
use common::{start_cluster_with, values_kept};
use dike_core::NodeId;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_node_down_past_its_grace_are_replaced() {
    let (mut procs, masters) = start_cluster_with("rebal-dead", 3, 2, &["--replace-after", "2"]);
    let node = sized_client(&masters, 3).await;
    let values = groups_with_values(&procs, &node).await;

    let table = node.routing_table().await.expect("table");
    let victim = "rebal-dead-w1";
    let dead: NodeId = dike_actors::node::config::node_id_of(victim);
    let hosted = table.groups_on(dead).count();
    assert!(hosted > 0, "the victim hosts replicas");
    procs.kill(victim);

    let replaced = poll_until(Duration::from_secs(90), || async {
        let t = node.routing_table().await?;
        let left = t.groups_on(dead).count();
        if left == 0 && settled(&t) {
            Ok(t)
        } else {
            Err(NotYet(format!("{left} groups still on the dead node")))
        }
    })
    .await;
    let table = match replaced {
        Ok(t) => t,
        Err(e) => panic!("{}\n{}", e.0, procs.log_tails()),
    };
    assert!(table
        .groups
        .values()
        .all(|g| g.config.voters.iter().all(|v| table.is_up(v.node))));
    values_kept(&procs, &node, &values).await;
    node.stop().await;
}
