//! A peer that sends messages that do not decode is disconnected, and the
//! node warns about it once, not once per message or per reconnection; the
//! node stays up and serves.

mod common;

use dike_actors::cluster::transport::{transport_name, TransportMsg, TRANSPORT_PG};
use dike_actors::node::config::node_id_of;
use ractor::{ActorCell, ActorRef};
use std::time::Duration;

/// The transport actor of node `name`, as this process sees it once a
/// cluster session with that node is up.
async fn remote_transport(name: &str, other_than: Option<&ActorCell>) -> ActorRef<TransportMsg> {
    let wanted = transport_name(node_id_of(name));
    let found = common::poll_until(Duration::from_secs(20), || async {
        ractor::pg::get_members(&TRANSPORT_PG.to_owned())
            .into_iter()
            .find(|c| {
                c.get_name().as_deref() == Some(wanted.as_str())
                    && other_than.is_none_or(|o| o.get_id() != c.get_id())
            })
            .ok_or_else(|| common::NotYet(format!("no session with {name}'s transport")))
    })
    .await;
    found.expect("the node's transport is reachable").into()
}

/// Polls `count` of node `name`'s log until it reaches `at_least`.
async fn logged(
    procs: &common::Processes,
    name: &str,
    what: &str,
    at_least: usize,
) -> dike_harness::wait::Check<usize> {
    common::poll_until(Duration::from_secs(20), || async {
        let n = procs.log(name).matches(what).count();
        if n >= at_least {
            Ok(n)
        } else {
            Err(common::NotYet(format!("{n} × {what:?} logged")))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_is_disconnected_and_logged_once() {
    let (mut procs, masters) = common::start_masters("garbage", 1);
    let node = "garbage-m1";
    let client = common::client(&masters).await;
    let table = common::poll_until(Duration::from_secs(20), || client.routing_table()).await;
    assert!(table.is_ok(), "{table:?}\n{}", procs.log_tails());
    let me = client.node_id().0;

    let transport = remote_transport(node, None).await;
    let dropped = "cluster session dropped";
    let before = procs.log(node).matches(dropped).count();
    transport
        .cast(TransportMsg::Deliver(me, vec![0xc1, 0xff, 0x00]))
        .expect("cast");
    let closing = "closing the cluster session with node client-garbage-m1";
    let warned = logged(&procs, node, closing, 1).await;
    assert_eq!(warned, Ok(1), "{}", procs.log_tails());
    let first = logged(&procs, node, dropped, before + 1).await;
    assert!(
        first.is_ok(),
        "the session was closed\n{}",
        procs.log_tails()
    );

    // The client connects again by itself, and sends garbage again: the
    // session is closed again, and nothing more is logged about it.
    let again = remote_transport(node, Some(&transport.get_cell())).await;
    again
        .cast(TransportMsg::Deliver(me, vec![0x93, 0x01]))
        .expect("cast");
    let second = logged(&procs, node, dropped, first.unwrap_or(before + 1) + 1).await;
    assert!(second.is_ok(), "closed again\n{}", procs.log_tails());
    assert_eq!(
        procs.log(node).matches(closing).count(),
        1,
        "one warning a minute at most\n{}",
        procs.log_tails()
    );

    let served = common::poll_until(Duration::from_secs(20), || client.routing_table()).await;
    assert!(served.is_ok(), "{served:?}\n{}", procs.log_tails());
    assert!(procs.all_running(), "garbage does not stop the node");
    client.stop().await;
}
