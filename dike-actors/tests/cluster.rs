//! Three master nodes as separate OS processes and a client node in this
//! process: a group of three replicas keeps answering after its leader's
//! process is killed.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_keeps_answering_after_its_leaders_process_is_killed() {
    common::group_survives_killed_replicas("three", 3, 1).await;
}
