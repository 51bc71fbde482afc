//! Leadership transfer and the hand-back to the preferred leader, one rule
//! per test, on the lossless in-memory `LocalCluster` (or a replica driven
//! by hand).

use super::test_support::{machine, opts, ticks, Cluster};
use super::TransferError;
use crate::codec;
use crate::config::{Config, ReplicaOptions};
use crate::ids::{Ballot, ClientId, MemberId};
use crate::message::Message;
use crate::ready::{RequestError, RequestId};
use crate::replica::{ConfigChange, ReconfigError, Replica, Start};
use crate::sim::register::{Action, RegisterRequest};
use crate::sim::LocalCluster;

fn m(i: usize) -> MemberId {
    Cluster::member(i)
}

fn cluster(n: usize) -> Cluster {
    let mut c = LocalCluster::with_spares(n, 1, opts(), machine);
    assert_eq!(c.elect(0), Some(0));
    c
}

fn add(c: &mut Cluster, at: usize, client: u64, n: i64) {
    let payload = codec::encode(
        "request",
        &RegisterRequest {
            op: client,
            action: Action::Add(n),
        },
    )
    .expect("encode");
    c.propose(at, client, 1, payload);
}

fn answer(c: &mut Cluster, client: u64) -> Option<Result<i64, RequestError>> {
    let id = RequestId::Command(ClientId(client), 1);
    c.take_responses()
        .into_iter()
        .find(|(_, r)| r.to == id)
        .map(|(_, r)| {
            r.result
                .map(|b| codec::decode("reply", &b).expect("decode"))
        })
}

fn value(c: &mut Cluster, i: usize) -> i64 {
    c.replica(i).machine().server().value
}

fn ballot_of(c: &mut Cluster, i: usize) -> Ballot {
    c.replica(i).promised()
}

#[test]
fn a_transfer_target_campaigns_at_once() {
    let mut c = cluster(3);
    let before = ballot_of(&mut c, 0);
    c.replica(0)
        .transfer_leadership(m(2))
        .expect("transfer starts");
    // No tick: the target does not wait for an election timeout.
    c.run_until_quiet();
    assert_eq!(c.leader(), Some(2));
    let after = ballot_of(&mut c, 2);
    assert!(after > before, "a fresh, higher ballot: {after} > {before}");
    assert_eq!(after.leader, m(2));
    assert_eq!(c.replica(0).leader(), Some(m(2)), "the old leader follows");
}

#[test]
fn a_leader_transferring_admits_no_new_proposal() {
    let mut c = cluster(3);
    // The target cannot hear the leader for now: the transfer waits.
    c.cut.insert((0, 1));
    c.replica(0)
        .transfer_leadership(m(1))
        .expect("transfer starts");
    let commit = c.replica(0).commit_index();
    add(&mut c, 0, 7, 1);
    c.run_until_quiet();
    assert_eq!(answer(&mut c, 7), None, "the command waits");
    assert_eq!(
        c.replica(0).commit_index(),
        commit,
        "nothing is proposed while the transfer lasts"
    );
    assert_eq!(c.replica(2).commit_index(), commit);
    c.cut.clear();
    let mut waited = 0;
    while c.leader() != Some(1) && waited < 4 {
        ticks(&mut c, 1);
        waited += 1;
    }
    assert_eq!(c.leader(), Some(1));
    assert_eq!(
        answer(&mut c, 7),
        Some(Err(RequestError::NotLeader { leader: Some(m(1)) })),
        "the queued command is sent to the new leader"
    );
    assert_eq!(value(&mut c, 1), 0, "and was never proposed");
}

#[test]
fn a_transfer_to_a_lagging_voter_waits_until_it_caught_up() {
    let mut c = cluster(3);
    c.cut.insert((0, 2));
    for client in 1..=5 {
        add(&mut c, 0, client, 1);
        c.run_until_quiet();
    }
    c.replica(0)
        .transfer_leadership(m(2))
        .expect("transfer starts");
    c.run_until_quiet();
    assert_eq!(c.leader(), Some(0), "no hand-over to a voter that lags");
    assert_eq!(c.replica(0).transfer_target(), Some(m(2)));
    assert_eq!(value(&mut c, 2), 0);
    c.cut.clear();
    let mut waited = 0;
    while c.leader() != Some(2) && waited < 8 {
        ticks(&mut c, 1);
        waited += 1;
    }
    assert_eq!(c.leader(), Some(2), "once caught up it takes over");
    assert_eq!(value(&mut c, 2), 5, "with everything the old leader chose");
}

#[test]
fn an_unfinished_transfer_gives_up_and_the_leader_resumes() {
    let mut c = cluster(3);
    c.crash(2);
    c.replica(0)
        .transfer_leadership(m(2))
        .expect("transfer starts");
    add(&mut c, 0, 9, 4);
    c.run_until_quiet();
    assert_eq!(answer(&mut c, 9), None, "held while the transfer lasts");
    ticks(&mut c, opts().election_ticks as usize);
    assert_eq!(c.leader(), Some(0));
    assert_eq!(c.replica(0).transfer_target(), None, "the transfer gave up");
    assert_eq!(
        answer(&mut c, 9),
        Some(Ok(4)),
        "and the command went through"
    );
}

#[test]
fn a_timeout_now_from_a_ballot_below_the_promise_is_ignored() {
    let config = Config::initial((0..3).map(m).collect());
    let mut r = Replica::new(Start {
        member: m(1),
        config,
        machine: machine(m(1)),
        options: opts(),
        boot: 1,
        seed: 1,
    });
    let old = Ballot::new(1, m(0));
    let newer = Ballot::new(2, m(2));
    r.step(
        m(2),
        Message::Prepare {
            ballot: newer,
            from: 1,
        },
    );
    let _ = r.take_ready();
    r.step(m(0), Message::TimeoutNow { ballot: old });
    let ready = r.take_ready();
    assert!(ready.writes.is_empty() && ready.after_write.is_empty());
    assert_eq!(r.promised(), newer, "no campaign on a stale request");
}

#[test]
fn a_transfer_is_refused_by_a_follower_to_itself_and_to_a_non_voter() {
    let mut c = cluster(3);
    assert_eq!(
        c.replica(1).transfer_leadership(m(2)),
        Err(TransferError::NotLeader { leader: Some(m(0)) })
    );
    assert_eq!(
        c.replica(0).transfer_leadership(m(0)),
        Err(TransferError::ToSelf)
    );
    assert_eq!(
        c.replica(0).transfer_leadership(m(3)),
        Err(TransferError::NotAVoter(m(3))),
        "a node outside the group"
    );
}

#[test]
fn a_transfer_and_a_membership_change_exclude_each_other() {
    let mut c = cluster(3);
    c.crash(2);
    c.replica(0)
        .transfer_leadership(m(2))
        .expect("transfer starts");
    assert_eq!(
        c.replica(0).transfer_leadership(m(1)),
        Err(TransferError::InProgress { to: m(2) })
    );
    assert_eq!(
        c.replica(0)
            .propose_change(1, ConfigChange::AddLearner(m(3))),
        Err(ReconfigError::TransferInProgress { to: m(2) })
    );
    ticks(&mut c, opts().election_ticks as usize);
    c.replica(0)
        .propose_change(1, ConfigChange::AddLearner(m(3)))
        .expect("a change once the transfer gave up");
    assert_eq!(
        c.replica(0).transfer_leadership(m(1)),
        Err(TransferError::ReconfigInProgress)
    );
}

#[test]
fn a_leaving_replica_takes_no_leadership_handed_over() {
    let mut c = cluster(3);
    c.replica(1).set_leaving(true);
    c.replica(0)
        .transfer_leadership(m(1))
        .expect("transfer starts");
    c.run_until_quiet();
    assert_eq!(c.leader(), Some(0));
    ticks(&mut c, opts().election_ticks as usize);
    assert_eq!(c.leader(), Some(0), "the leader resumed");
    assert_eq!(c.replica(0).transfer_target(), None);
}

#[test]
fn a_leader_that_must_go_hands_over_to_the_most_advanced_live_voter() {
    let mut c = cluster(5);
    c.cut.insert((0, 1));
    add(&mut c, 0, 1, 1);
    c.run_until_quiet();
    let target = c.replica(0).hand_over_target(|n| n != m(4).node);
    assert!(
        matches!(target, Some(t) if t == m(2) || t == m(3)),
        "not the lagging m(1), not the dead m(4): {target:?}"
    );
    assert_eq!(
        c.replica(1).hand_over_target(|_| true),
        None,
        "followers do not"
    );
}

#[test]
fn leadership_goes_back_to_the_preferred_voter_once_it_has_been_caught_up_for_a_while() {
    let after = opts().preferred_leader_after_ticks as usize;
    let mut c = cluster(3);
    c.crash(0);
    let mut waited = 0;
    while c.leader().is_none() && waited < 100 {
        ticks(&mut c, 1);
        waited += 1;
    }
    let interim = c.leader().expect("a leader without the preferred voter");
    for client in 1..=3 {
        add(&mut c, interim, client, 2);
        c.run_until_quiet();
    }
    ticks(&mut c, opts().election_ticks as usize);
    c.restart(0).expect("restart");
    c.run_until_quiet();
    // Caught up at once, yet not handed back before it has stayed so.
    ticks(&mut c, after / 2);
    assert_eq!(c.leader(), Some(interim), "no hand-back right away");
    let mut waited = 0;
    while c.leader() != Some(0) && waited < 3 * after {
        ticks(&mut c, 1);
        waited += 1;
    }
    assert_eq!(c.leader(), Some(0), "the preferred voter leads again");
    assert_eq!(value(&mut c, 0), 6);
    ticks(&mut c, 5 * after);
    assert_eq!(c.leader(), Some(0), "and keeps leading: no flapping");
}

#[test]
fn leadership_moved_away_from_a_live_preferred_voter_stays_where_it_was_moved() {
    let mut c = cluster(3);
    c.replica(0)
        .transfer_leadership(m(2))
        .expect("transfer starts");
    c.run_until_quiet();
    assert_eq!(c.leader(), Some(2));
    ticks(&mut c, 10 * opts().preferred_leader_after_ticks as usize);
    assert_eq!(
        c.leader(),
        Some(2),
        "no hand-back: the preferred never failed"
    );
}

#[test]
fn no_hand_back_while_the_preferred_voter_is_down() {
    let mut c = cluster(3);
    c.crash(0);
    let mut waited = 0;
    while c.leader().is_none() && waited < 100 {
        ticks(&mut c, 1);
        waited += 1;
    }
    let interim = c.leader().expect("a leader");
    ticks(&mut c, 50);
    assert_eq!(c.leader(), Some(interim));
    assert_eq!(c.replica(interim).transfer_target(), None);
}

#[test]
fn a_hibernating_group_led_away_from_its_live_preferred_voter_does_not_hand_back_on_waking() {
    let o = ReplicaOptions {
        hibernate_after_ticks: 4,
        ..opts()
    };
    let mut c = LocalCluster::with_spares(3, 1, o, machine);
    assert_eq!(c.elect(0), Some(0));
    c.replica(0)
        .transfer_leadership(m(2))
        .expect("transfer starts");
    c.run_until_quiet();
    assert_eq!(c.leader(), Some(2));
    ticks(&mut c, 100);
    assert!(!c.replica(2).wants_ticks(), "the group sleeps");
    add(&mut c, 2, 5, 1);
    c.run_until_quiet();
    ticks(&mut c, 10 * opts().preferred_leader_after_ticks as usize);
    assert_eq!(c.leader(), Some(2), "silence while asleep is no failover");
}
