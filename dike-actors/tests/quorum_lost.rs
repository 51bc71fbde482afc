//! One master and two workers as processes, a group on all three: with both
//! workers killed, a request fails naming how many replicas were reachable
//! against the quorum it needs, not an internal id.

mod common;

use common::{poll_until, sized_client, start_cluster};
use dike_actors::counter::{Counter, CounterRequest};
use dike_actors::DikeError;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_without_a_quorum_says_how_many_replicas_are_reachable_and_how_many_it_needs() {
    let (mut procs, masters) = start_cluster("quorum", 1, 2);
    let node = sized_client(&masters, 3).await;
    let formed = poll_until(Duration::from_secs(30), || async {
        let t = node.routing_table().await?;
        let up = t.live_nodes().count();
        if up == 3 {
            Ok(t)
        } else {
            Err(DikeError::NodeStopped(format!("{up} nodes up")))
        }
    })
    .await;
    assert!(formed.is_ok(), "{formed:?}\n{}", procs.log_tails());
    let added = poll_until(Duration::from_secs(10), || node.add_group::<Counter>("q")).await;
    assert!(added.is_ok(), "{added:?}\n{}", procs.log_tails());
    let g = node.group::<Counter>("q");
    let first = poll_until(Duration::from_secs(15), || g.call(CounterRequest::Add(1))).await;
    assert_eq!(first, Ok(1), "{}", procs.log_tails());

    procs.kill("quorum-w1");
    procs.kill("quorum-w2");
    // Unavailable or timed out (the last attempt may have had no answer),
    // the message says why in the operator's terms.
    match g.call(CounterRequest::Add(1)).await {
        Err(e @ (DikeError::Unavailable { .. } | DikeError::Timeout { .. })) => {
            let text = e.to_string();
            assert!(
                text.contains("1 of 3 replicas reachable, a quorum needs 2"),
                "{text}"
            );
        }
        other => panic!("expected the group to be unavailable, got {other:?}"),
    }
}
