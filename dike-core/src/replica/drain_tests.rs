//! Draining (`drain`), one rule per test, on the lossless in-memory
//! `LocalCluster`.

use super::test_support::{machine, opts, ticks, Cluster};
use super::TransferError;
use crate::codec;
use crate::config::ReplicaOptions;
use crate::ids::{ClientId, MemberId};
use crate::ready::RequestId;
use crate::sim::register::{Action, RegisterRequest};
use crate::sim::LocalCluster;

fn m(i: usize) -> MemberId {
    Cluster::member(i)
}

fn cluster(n: usize, o: ReplicaOptions) -> Cluster {
    let mut c = LocalCluster::new(n, o, machine);
    assert_eq!(c.elect(0), Some(0));
    c
}

/// Ticks until `done` holds, at most `max` ticks; whether it held.
fn ticks_until(c: &mut Cluster, max: usize, done: impl Fn(&Cluster) -> bool) -> bool {
    for _ in 0..max {
        if done(c) {
            return true;
        }
        ticks(c, 1);
    }
    done(c)
}

/// Adds 1 at replica `at` as client `client` and says whether it was
/// answered with a value.
fn add_one(c: &mut Cluster, at: usize, client: u64) -> bool {
    let payload = codec::encode(
        "request",
        &RegisterRequest {
            op: client,
            action: Action::Add(1),
        },
    )
    .expect("encode");
    c.propose(at, client, 1, payload);
    c.run_until_quiet();
    let id = RequestId::Command(ClientId(client), 1);
    c.take_responses()
        .iter()
        .any(|(_, r)| r.to == id && r.result.is_ok())
}

#[test]
fn a_draining_leader_hands_leadership_to_a_voter_on_another_node() {
    let mut c = cluster(3, opts());
    c.set_draining(&[0]);
    let e = opts().election_ticks as usize;
    assert!(
        ticks_until(&mut c, e, |c| c.leader().is_some_and(|l| l != 0)),
        "leadership left the draining node within an election timeout"
    );
    ticks(&mut c, 10 * opts().preferred_leader_after_ticks as usize);
    assert_ne!(
        c.leader(),
        Some(0),
        "and is not handed back while it drains"
    );
    let leader = c.leader().expect("a leader");
    assert!(add_one(&mut c, leader, 1), "the group serves");
}

#[test]
fn a_hibernating_leader_wakes_to_hand_off_when_its_node_drains() {
    let o = ReplicaOptions {
        hibernate_after_ticks: 4,
        ..opts()
    };
    let mut c = cluster(3, o);
    ticks(&mut c, 100);
    assert!(!c.replica(0).wants_ticks(), "the group sleeps");
    c.set_draining(&[0]);
    assert!(c.replica(0).wants_ticks(), "draining wakes the leader");
    let e = opts().election_ticks as usize;
    assert!(
        ticks_until(&mut c, 2 * e, |c| c.leader().is_some_and(|l| l != 0)),
        "an idle group finds a voter to hand off to"
    );
}

#[test]
fn a_draining_replica_answers_no_timeout_now() {
    let mut c = cluster(3, opts());
    // Only the target knows it drains, so the leader still asks it.
    c.replica(1).set_draining_nodes([m(1).node]);
    c.replica(0)
        .transfer_leadership(m(1))
        .expect("transfer starts");
    c.run_until_quiet();
    assert_eq!(c.leader(), Some(0), "the target did not campaign");
    ticks(&mut c, opts().election_ticks as usize);
    assert_eq!(c.leader(), Some(0), "the leader gave up and leads on");
    assert_eq!(c.replica(0).transfer_target(), None);
}

#[test]
fn no_transfer_targets_a_voter_on_a_draining_node() {
    let mut c = cluster(3, opts());
    c.set_draining(&[1]);
    assert_eq!(
        c.replica(0).transfer_leadership(m(1)),
        Err(TransferError::Draining(m(1)))
    );
    assert_eq!(c.replica(0).hand_over_target(|_| true), Some(m(2)));
}

#[test]
fn a_draining_preferred_voter_gets_no_hand_back_until_it_is_undrained() {
    let after = opts().preferred_leader_after_ticks as usize;
    let mut c = cluster(3, opts());
    c.crash(0);
    assert!(ticks_until(&mut c, 100, |c| c.leader().is_some()));
    let interim = c.leader().expect("a leader without the preferred voter");
    c.restart(0).expect("restart");
    c.set_draining(&[0]);
    ticks(&mut c, 10 * after);
    assert_eq!(c.leader(), Some(interim), "no hand-back to a draining node");
    assert_eq!(c.replica(interim).transfer_target(), None, "not even tried");
    c.set_draining(&[]);
    assert!(
        ticks_until(&mut c, 5 * after, |c| c.leader() == Some(0)),
        "undrained, the preferred voter leads again"
    );
}

#[test]
fn leadership_drained_off_the_preferred_voter_returns_after_the_undrain() {
    let after = opts().preferred_leader_after_ticks as usize;
    let mut c = cluster(3, opts());
    c.set_draining(&[0]);
    assert!(ticks_until(&mut c, 100, |c| c
        .leader()
        .is_some_and(|l| l != 0)));
    ticks(&mut c, 5 * after);
    c.set_draining(&[]);
    assert!(
        ticks_until(&mut c, 10 * after, |c| c.leader() == Some(0)),
        "the preferred voter leads again"
    );
}

#[test]
fn a_draining_replica_campaigns_when_no_other_voter_can_lead() {
    let mut c = cluster(3, opts());
    // The leader dies and both voters left are draining: one of them must
    // lead all the same.
    c.set_draining(&[1, 2]);
    c.crash(0);
    assert!(
        ticks_until(&mut c, 10 * opts().election_ticks as usize, |c| c
            .leader()
            .is_some()),
        "a draining voter takes over rather than leave the group without a leader"
    );
    let leader = c.leader().expect("a leader");
    assert!(add_one(&mut c, leader, 1), "the group serves");
}

#[test]
fn a_draining_leader_with_nobody_to_hand_off_to_leads_on_and_hands_off_once_it_can() {
    let mut c = cluster(3, opts());
    c.cut.extend([(0, 1), (1, 0), (0, 2), (2, 0)]);
    c.set_draining(&[0]);
    ticks(&mut c, 5);
    assert_eq!(c.leader(), Some(0), "nobody answers: it keeps leading");
    c.cut.clear();
    let e = opts().election_ticks as usize;
    assert!(
        ticks_until(&mut c, 10 * e, |c| c.leader().is_some_and(|l| l != 0)),
        "it hands off once a voter answers"
    );
}
