//! A node that is its own single master, in this process: the whole API
//! behind one node, groups of one replica.

mod common;

use common::{free_addr, poll_until, NotYet};
use dike_actors::counter::{Counter, CounterRequest};
use dike_actors::routing::request::GroupRequest;
use dike_actors::{DikeError, DikeNode, NodeConfig, NodeHandle};
use std::time::Duration;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn single_node(name: &str) -> NodeHandle {
    init_tracing();
    let config = NodeConfig::builder(name, free_addr())
        .cookie("test-cookie")
        .request_timeout(Duration::from_secs(3))
        .kind::<Counter>()
        .build()
        .expect("valid config");
    let node = DikeNode::start(config).await.expect("node starts");
    node.ready(Duration::from_secs(15))
        .await
        .expect("ready once it read the table from its own master");
    node
}

async fn with_group(name: &str, group: &str) -> NodeHandle {
    let node = single_node(name).await;
    // Ready: no retry needed.
    let g = node
        .add_group::<Counter>(group)
        .await
        .expect("group added once the node is ready");
    assert_eq!(
        g.config.voters.len(),
        1,
        "single-node groups have one replica"
    );
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_queries_are_answered_in_single_node_mode() {
    let node = with_group("solo-calls", "c").await;
    let c = node.group::<Counter>("c");
    let first = poll_until(Duration::from_secs(10), || c.call(CounterRequest::Add(5))).await;
    assert_eq!(first, Ok(5));
    assert_eq!(c.call(CounterRequest::Add(2)).await, Ok(7));
    assert_eq!(c.query(CounterRequest::Get).await, Ok(7));
    let again = node.join().await;
    assert!(
        matches!(again, Ok(dike_actors::JoinOutcome::AlreadyKnown(_))),
        "{again:?}"
    );
    let table = node.routing_table().await.expect("table");
    assert!(table.group("c").is_some());
    assert!(table.is_up(node.node_id()));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed() {
    let node = with_group("solo-errors", "e").await;
    let e = node.group::<Counter>("e");
    let failed = poll_until(Duration::from_secs(10), || async {
        match e.call(CounterRequest::Fail).await {
            Err(DikeError::Application(m)) => Ok(m),
            other => Err(DikeError::Decode(format!("{other:?}"))),
        }
    })
    .await;
    assert!(failed.is_ok(), "{failed:?}");
    assert_eq!(
        e.call(CounterRequest::Add(1)).await,
        Ok(1),
        "state unchanged"
    );
    let unknown = node
        .group::<Counter>("nope")
        .call(CounterRequest::Get)
        .await;
    assert_eq!(unknown, Err(DikeError::UnknownGroup("nope".into())));
    let kind = node.add_group_of_kind("x", "no-such-kind", None).await;
    assert_eq!(kind, Err(DikeError::UnknownKind("no-such-kind".into())));
    let again = node
        .add_group::<Counter>("e")
        .await
        .expect("existing group");
    assert_eq!(again.name, "e");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replica_is_restarted_and_recovers_its_state() {
    let node = with_group("solo-crash", "r").await;
    let r = node.group::<Counter>("r");
    let first = poll_until(Duration::from_secs(10), || r.call(CounterRequest::Add(40))).await;
    assert_eq!(first, Ok(40));
    let old = node.local_replica("r").await.expect("replica runs here");
    old.kill();
    let restarted = poll_until(Duration::from_secs(10), || async {
        match node.local_replica("r").await {
            Some(new) if new.get_id() != old.get_id() => Ok(new),
            _ => Err(DikeError::NodeStopped("not restarted yet".into())),
        }
    })
    .await;
    assert!(
        restarted.is_ok(),
        "the group supervisor restarts the replica"
    );
    let after = poll_until(Duration::from_secs(10), || r.call(CounterRequest::Add(2))).await;
    assert_eq!(
        after,
        Ok(42),
        "the restarted replica recovered from storage"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_input_is_dropped_or_refused_and_the_replica_lives_on() {
    use dike_actors::cluster::wire::{ClientReply, ReplicaMsg, ReplyError};
    let node = with_group("solo-garbage", "b").await;
    let b = node.group::<Counter>("b");
    let first = poll_until(Duration::from_secs(10), || b.call(CounterRequest::Add(3))).await;
    assert_eq!(first, Ok(3));
    let replica = node.local_replica("b").await.expect("replica runs here");
    replica
        .cast(ReplicaMsg::Protocol(
            node.node_id().0,
            vec![0xc1, 0xff, 0x00],
        ))
        .expect("cast");
    let answer = ractor::call_t!(replica, ReplicaMsg::Request, 2000, vec![0xff, 0xfe])
        .expect("a malformed request is answered");
    let reply: ClientReply = dike_core::codec::decode("reply", &answer).expect("decodes");
    assert!(matches!(reply, Err(ReplyError::Malformed(_))), "{reply:?}");
    assert_eq!(b.call(CounterRequest::Add(1)).await, Ok(4));
    let same = node.local_replica("b").await.expect("still running");
    assert_eq!(same.get_id(), replica.get_id(), "no crash, no restart");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_restart_budget_the_group_supervisor_is_restarted_by_the_node() {
    init_tracing();
    let config = NodeConfig::builder("solo-budget", free_addr())
        .cookie("test-cookie")
        .restarts(dike_actors::group::restart::RestartPolicy {
            intensity: 1,
            period: Duration::from_secs(60),
        })
        .build()
        .expect("valid config");
    let node = DikeNode::start(config).await.expect("node starts");
    // A kind registered after the start (not on the builder) works too.
    node.register::<Counter>();
    let added = poll_until(Duration::from_secs(15), || node.add_group::<Counter>("k")).await;
    assert!(added.is_ok(), "{added:?}");
    let k = node.group::<Counter>("k");
    let first = poll_until(Duration::from_secs(10), || k.call(CounterRequest::Add(10))).await;
    assert_eq!(first, Ok(10));
    let master = dike_actors::node::config::MASTER_GROUP;
    let old_master = node.local_replica(master).await.expect("master replica");
    // First crash: restarted by the group supervisor. Second: over budget,
    // the group supervisor gives up and the node starts a new one.
    for _ in 0..2 {
        let old = node.local_replica("k").await.expect("replica runs here");
        old.kill();
        let back = poll_until(Duration::from_secs(10), || async {
            match node.local_replica("k").await {
                Some(new) if new.get_id() != old.get_id() => Ok(new),
                _ => Err(DikeError::NodeStopped("not back yet".into())),
            }
        })
        .await;
        assert!(back.is_ok(), "the replica comes back");
    }
    let after = poll_until(Duration::from_secs(10), || k.call(CounterRequest::Add(1))).await;
    assert_eq!(after, Ok(11), "state recovered from the node's storage");
    let new_master = node.local_replica(master).await.expect("master replica");
    assert_ne!(
        new_master.get_id(),
        old_master.get_id(),
        "the new group supervisor started every replica afresh"
    );
    node.stop().await;
}

/// A user's supervisor: records the ids of children that stopped.
struct UserSupervisor;

impl ractor::Actor for UserSupervisor {
    type Msg = UserMsg;
    type State = Vec<ractor::ActorId>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _me: ractor::ActorRef<UserMsg>,
        _: (),
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok(Vec::new())
    }

    async fn handle(
        &self,
        _me: ractor::ActorRef<UserMsg>,
        msg: UserMsg,
        stopped: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        let UserMsg::Stopped(port) = msg;
        let _ = port.send(stopped.clone());
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ractor::ActorRef<UserMsg>,
        evt: ractor::SupervisionEvent,
        stopped: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        if let ractor::SupervisionEvent::ActorTerminated(cell, ..)
        | ractor::SupervisionEvent::ActorFailed(cell, _) = evt
        {
            stopped.push(cell.get_id());
        }
        Ok(())
    }
}

enum UserMsg {
    Stopped(ractor::RpcReplyPort<Vec<ractor::ActorId>>),
}

impl ractor::Message for UserMsg {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_under_a_users_supervisor_and_its_dispatcher_answers_call() {
    init_tracing();
    let (sup, _) = ractor::Actor::spawn(None, UserSupervisor, ())
        .await
        .expect("supervisor");
    let config = NodeConfig::builder("solo-linked", free_addr())
        .cookie("test-cookie")
        .kind::<Counter>()
        .build()
        .expect("valid config");
    let node = DikeNode::start_linked(config, sup.get_cell())
        .await
        .expect("node starts");
    node.ready(Duration::from_secs(15)).await.expect("ready");
    node.add_group::<Counter>("u").await.expect("added");

    // The dispatcher's messages work with ractor's call! macros, typed.
    let dispatcher = node.dispatcher().expect("dispatcher runs");
    let add = GroupRequest::<Counter>::command("u", &CounterRequest::Add(9)).expect("encodes");
    let answer = ractor::call_t!(dispatcher, |reply| add.message(reply), 10_000)
        .expect("the dispatcher answers");
    assert_eq!(GroupRequest::<Counter>::reply(answer), Ok(9));
    let cast = GroupRequest::<Counter>::command("u", &CounterRequest::Add(1)).expect("encodes");
    dispatcher
        .cast(cast.cast().expect("a command casts"))
        .expect("cast");
    let get = GroupRequest::<Counter>::query("u", &CounterRequest::Get).expect("encodes");
    let read = poll_until(Duration::from_secs(10), || async {
        let get = GroupRequest::<Counter>::query("u", &CounterRequest::Get)?;
        let answer = ractor::call_t!(dispatcher, |reply| get.message(reply), 10_000)
            .map_err(|e| NotYet(format!("the dispatcher: {e}")))?;
        match GroupRequest::<Counter>::reply(answer)? {
            10 => Ok(10),
            v => Err(NotYet(format!("the cast is not applied yet: {v}"))),
        }
    })
    .await;
    assert_eq!(read, Ok(10), "the query of {:?} sees the cast", get.group());

    let id = node.actor().get_id();
    node.stop().await;
    let stopped = ractor::call_t!(sup, UserMsg::Stopped, 1000).expect("supervisor answers");
    assert!(
        stopped.contains(&id),
        "the user's supervisor saw the node stop"
    );
    sup.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_group_stops_its_replica_and_becomes_unknown() {
    let node = with_group("solo-remove", "gone").await;
    let g = node.group::<Counter>("gone");
    let first = poll_until(Duration::from_secs(10), || g.call(CounterRequest::Add(1))).await;
    assert_eq!(first, Ok(1));
    let removed = node.remove_group("gone").await.expect("removed");
    assert_eq!(removed.name, "gone");
    let stopped = poll_until(Duration::from_secs(10), || async {
        match node.local_replica("gone").await {
            None => Ok(()),
            Some(_) => Err(DikeError::NodeStopped("still running".into())),
        }
    })
    .await;
    assert!(stopped.is_ok(), "reconciliation stops the replica");
    let unknown = poll_until(Duration::from_secs(10), || async {
        match g.call(CounterRequest::Get).await {
            Err(DikeError::UnknownGroup(_)) => Ok(()),
            other => Err(DikeError::Decode(format!("{other:?}"))),
        }
    })
    .await;
    assert!(unknown.is_ok(), "{unknown:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cast_command_is_applied_without_the_caller_waiting_for_it() {
    let node = with_group("solo-cast", "k").await;
    let k = node.group::<Counter>("k");
    let first = poll_until(Duration::from_secs(10), || k.call(CounterRequest::Add(1))).await;
    assert_eq!(first, Ok(1));
    k.cast(CounterRequest::Add(41))
        .expect("the dispatcher takes the cast");
    let seen = poll_until(Duration::from_secs(10), || async {
        match k.query(CounterRequest::Get).await {
            Ok(42) => Ok(()),
            other => Err(DikeError::Decode(format!("not applied yet: {other:?}"))),
        }
    })
    .await;
    assert_eq!(seen, Ok(()), "the cast's effect shows in a read");
    assert!(
        node.wait_for_casts(Duration::from_secs(5)).await,
        "a finished cast is no longer counted"
    );
    assert_eq!(node.casts_in_flight(), 0);
    node.stop().await;
    assert!(
        matches!(
            k.cast(CounterRequest::Add(1)),
            Err(DikeError::NodeStopped(_))
        ),
        "a cast to a stopped node fails at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_actor_refuses_malformed_or_misaddressed_joins_and_is_restarted() {
    use dike_actors::node::admin::{find_admin, AdminMsg, AdminReply, JoinRequest};
    use dike_core::codec;
    let node = single_node("solo-admin").await;
    let admin = find_admin("solo-admin").expect("the admin actor is in its process group");

    let bytes = ractor::call_t!(admin, AdminMsg::Join, 2000, vec![0xc1, 0x00]).expect("answered");
    let reply: AdminReply = codec::decode("admin reply", &bytes).expect("an admin reply");
    assert!(
        reply.as_ref().is_err_and(|e| e.contains("malformed")),
        "{reply:?}"
    );

    let other = JoinRequest {
        node: "someone-else".into(),
    };
    let payload = codec::encode("join request", &other).expect("encode");
    let bytes = ractor::call_t!(admin, AdminMsg::Join, 2000, payload).expect("answered");
    let reply: AdminReply = codec::decode("admin reply", &bytes).expect("an admin reply");
    assert!(
        reply
            .as_ref()
            .is_err_and(|e| e.contains("not \"someone-else\"")),
        "{reply:?}"
    );

    // The node joins its own master in the background; wait for that, so
    // the join below meets a table that has it (and not the other way round).
    let in_table = poll_until(Duration::from_secs(15), || async {
        let table = node.routing_table().await?;
        if table.is_up(node.node_id()) {
            Ok(())
        } else {
            Err(DikeError::NodeStopped("not in the table yet".into()))
        }
    })
    .await;
    assert_eq!(in_table, Ok(()), "the node joins its own master");
    let joined = poll_until(Duration::from_secs(15), || async {
        node.join_node("solo-admin", "127.0.0.1:1")
            .await
            .map_err(|e| DikeError::Rejected(e.to_string()))
    })
    .await;
    assert!(
        matches!(joined, Ok(dike_actors::JoinOutcome::AlreadyKnown(_))),
        "a master is in the table already: {joined:?}"
    );

    admin.kill();
    let restarted = poll_until(Duration::from_secs(10), || async {
        match find_admin("solo-admin") {
            Some(a) if a.get_id() != admin.get_id() => Ok(()),
            _ => Err(DikeError::NodeStopped("not restarted yet".into())),
        }
    })
    .await;
    assert_eq!(restarted, Ok(()), "the node restarts its admin actor");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_masters_do_not_answer_is_not_ready_and_says_why() {
    init_tracing();
    let absent = free_addr();
    let config = NodeConfig::builder("solo-unready", free_addr())
        .cookie("test-cookie")
        .master(format!("gone@{absent}"))
        .request_timeout(Duration::from_millis(500))
        .kind::<Counter>()
        .build()
        .expect("valid config");
    let node = DikeNode::start(config).await.expect("node starts");
    match node.ready(Duration::from_secs(2)).await {
        Err(DikeError::NotReady {
            node: name, reason, ..
        }) => {
            assert_eq!(name, "solo-unready");
            assert!(reason.contains("routing table"), "{reason}");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    node.stop().await;
    assert!(
        matches!(
            node.ready(Duration::from_secs(2)).await,
            Err(DikeError::NodeStopped(_))
        ),
        "a stopped node says it stopped"
    );
}
