//! Five master nodes as separate OS processes and a client node in this
//! process: a group of five replicas keeps answering after two of its
//! replicas' processes (the leader's among them) are killed.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_five_keeps_answering_after_two_replica_processes_are_killed() {
    common::group_survives_killed_replicas("five", 5, 2).await;
}
