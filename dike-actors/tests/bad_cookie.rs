//! A node presenting the wrong cookie gets no answer (a typed error within
//! its deadline), and the cluster it knocked on stays up and serves a node
//! with the right cookie.

mod common;

use dike_actors::DikeError;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cookie_is_refused_and_the_cluster_stays_up() {
    let (mut procs, masters) = common::start_masters("cookie", 1);
    let intruder = common::client_with_cookie(&masters, "not-the-cookie").await;
    let refused = intruder.routing_table().await;
    assert!(
        matches!(
            refused,
            Err(DikeError::Timeout { .. } | DikeError::Unavailable { .. })
        ),
        "{refused:?}"
    );
    intruder.stop().await;
    assert!(procs.all_running(), "the master survives a bad handshake");

    let friend = common::client(&masters).await;
    let table = common::poll_until(Duration::from_secs(20), || friend.routing_table()).await;
    assert!(table.is_ok(), "{table:?}\n{}", procs.log_tails());
    friend.stop().await;
}
