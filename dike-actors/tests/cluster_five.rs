//! Three master nodes and two nodes that only join, as separate OS
//! processes, and a client node in this process: a group of five replicas
//! (on every node) keeps answering after two of its replicas' processes (the
//! leader's among them) are killed — even when both are masters and the
//! master group is left without a majority: serving a group needs only the
//! group's own quorum and the client's cached routing table.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_five_keeps_answering_after_two_replica_processes_are_killed() {
    common::group_survives_killed_replicas_on("five", 3, 2, 2).await;
}
