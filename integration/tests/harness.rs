//! The cluster harness itself on real processes: three durable masters
//! start, serve a group, and every operation of [`Cluster`] does what it
//! says — pause/resume, a graceful stop that exits cleanly, a kill, a
//! restart on the same data directory and a node added later.

use dike_examples::{Arithmetic, ArithmeticRequest};
use integration::{one_at_a_time, Client, Cluster};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_operation_works_on_real_processes() {
    let _serial = one_at_a_time().await;
    let mut cluster = Cluster::builder("harness").masters(3).start();
    assert!(cluster.log_dir().exists());
    assert!(cluster.data_dir(0).is_some());
    let client = Client::connect(&cluster).await;
    client.wait_for_live_nodes(&cluster.names(), WITHIN).await;

    client
        .wait_until(WITHIN, "group calc is created", || async {
            Ok(client.add_group_sized::<Arithmetic>("calc", 3).await?)
        })
        .await;
    let calc = client.group::<Arithmetic>("calc");
    let add = || async { Ok(calc.call(ArithmeticRequest::Add(1)).await??) };
    assert_eq!(client.wait_until(WITHIN, "calc answers", add).await, 1);

    // A paused node answers nothing, but two of three still serve.
    let paused = 2;
    cluster.pause(paused);
    assert!(cluster.is_running(paused), "a paused node still runs");
    client
        .wait_until(WITHIN, "calc answers with a node paused", add)
        .await;
    cluster.resume(paused);

    // A graceful stop exits cleanly; the node comes back as the same member.
    let status = cluster.stop(1);
    assert!(status.success(), "SIGTERM makes dike node exit 0: {status}");
    assert!(!cluster.is_running(1));
    client
        .wait_until(WITHIN, "calc answers with a node stopped", add)
        .await;
    cluster.restart(1);
    assert_eq!(cluster.lives(1), 2);

    // A killed node restarted on its data directory catches up.
    cluster.kill(0);
    assert!(cluster.pid(0).is_none());
    let value = client
        .wait_until(WITHIN, "calc answers with a node killed", add)
        .await;
    cluster.restart(0);
    client.wait_for_live_nodes(&cluster.names(), WITHIN).await;
    let applied = client.wait_for_replicas_to_agree("calc", 1, WITHIN).await;
    assert!(applied >= 1);
    let read = client
        .wait_until(WITHIN, "calc reads", || async {
            Ok(calc.query(ArithmeticRequest::Read).await??)
        })
        .await;
    assert_eq!(read, value, "nothing acknowledged was lost");

    // A node added later joins.
    let added = cluster.add_node();
    assert_eq!(cluster.len(), 4);
    let table = client.wait_for_live_nodes(&cluster.names(), WITHIN).await;
    let info = table
        .node(cluster.node_id(added))
        .expect("the new node is in the table");
    assert_eq!(info.address, cluster.addr(added).to_string());
    assert_eq!(
        cluster.addr(added).ip().to_string(),
        format!("127.0.{}.{}", cluster.octet(), added + 1),
        "every node has its own loopback address"
    );
    assert!(cluster.unexpected_exits().is_empty());
    client.stop().await;
}
