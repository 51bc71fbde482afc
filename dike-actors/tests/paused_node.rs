//! The liveness ping on separate OS processes: a node whose process is
//! paused (SIGSTOP) keeps its TCP sessions, so only unanswered pings reveal
//! it; the master marks it down, and once resumed (SIGCONT) it is marked up
//! again. Groups keep answering throughout.

mod common;

use common::{poll_until, sized_client, start_cluster, NotYet};
use dike_actors::counter::{Counter, CounterRequest};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_marked_down_by_pings_and_up_once_resumed() {
    let (mut procs, masters) = start_cluster("paused", 3, 2);
    let node = sized_client(&masters, 3).await;
    let formed = poll_until(Duration::from_secs(30), || async {
        let up = node.routing_table().await?.live_nodes().count();
        (up == 5).then_some(()).ok_or(NotYet(format!("{up} up")))
    })
    .await;
    assert!(formed.is_ok(), "{formed:?}\n{}", procs.log_tails());
    let added = poll_until(Duration::from_secs(10), || {
        node.add_group_sized::<Counter>("g", 3)
    })
    .await;
    assert!(added.is_ok(), "{added:?}\n{}", procs.log_tails());

    let victim = "paused-w1";
    let id = dike_actors::node::config::node_id_of(victim);
    procs.signal(victim, "STOP");
    let marked = poll_until(Duration::from_secs(30), || async {
        let t = node.routing_table().await?;
        (!t.is_up(id))
            .then_some(())
            .ok_or(NotYet("still up".into()))
    })
    .await;
    assert!(marked.is_ok(), "{marked:?}\n{}", procs.log_tails());
    let g = node.group::<Counter>("g");
    let answered = poll_until(Duration::from_secs(15), || g.call(CounterRequest::Add(1))).await;
    assert!(answered.is_ok(), "{answered:?}\n{}", procs.log_tails());

    procs.signal(victim, "CONT");
    let back = poll_until(Duration::from_secs(30), || async {
        let t = node.routing_table().await?;
        t.is_up(id).then_some(()).ok_or(NotYet("still down".into()))
    })
    .await;
    assert!(back.is_ok(), "{back:?}\n{}", procs.log_tails());
    node.stop().await;
}
