//! A single node on a data directory (the durable node log) stops and starts
//! again on the same directory: it keeps its incarnation, the master still
//! knows its groups, and the groups' state is back.

mod common;

use common::{free_addr, poll_until};
use dike_actors::counter::{Counter, CounterRequest};
use dike_actors::{DikeNode, NodeConfig, NodeHandle};
use std::path::Path;
use std::time::Duration;

async fn node_on(dir: &Path) -> NodeHandle {
    let config = NodeConfig::builder("durable", free_addr())
        .cookie("test-cookie")
        .data_dir(dir)
        .kind::<Counter>()
        .build()
        .expect("valid config");
    DikeNode::start(config).await.expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_on_its_data_dir_serves_its_groups_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = node_on(dir.path()).await;
    let added = poll_until(Duration::from_secs(15), || node.add_group::<Counter>("d")).await;
    assert!(added.is_ok(), "{added:?}");
    let d = node.group::<Counter>("d");
    let first = poll_until(Duration::from_secs(10), || d.call(CounterRequest::Add(5))).await;
    assert_eq!(first, Ok(5));
    assert_eq!(d.call(CounterRequest::Add(2)).await, Ok(7));
    node.stop().await;
    drop(d);
    drop(node);

    let node = node_on(dir.path()).await;
    let d = node.group::<Counter>("d");
    let after = poll_until(Duration::from_secs(15), || d.call(CounterRequest::Add(1))).await;
    assert_eq!(after, Ok(8), "the group's state survived the restart");
    let table = node.routing_table().await.expect("table");
    assert_eq!(table.groups.len(), 1, "the master's table survived too");
    node.stop().await;
}
