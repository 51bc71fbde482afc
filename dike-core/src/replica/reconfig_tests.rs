//! Membership changes, by property: learners catch up before they vote, one
//! change at a time, the leader can leave, and a wiped node is a stranger.

use super::promises::settle_stop_signs;
use crate::codec;
use crate::config::{Config, ReplicaOptions};
use crate::entry::Entry;
use crate::ids::{Ballot, ClientId, MemberId};
use crate::ready::RequestId;
use crate::replica::{ConfigChange, ReconfigError};
use crate::server::{GroupContext, ServerMachine};
use crate::sim::register::{Action, Register, RegisterRequest};
use crate::sim::LocalCluster;
use crate::storage::Accepted;
use std::collections::BTreeMap;

type Cluster = LocalCluster<ServerMachine<Register>>;

fn m(i: usize) -> MemberId {
    Cluster::member(i)
}

fn cluster(n: usize, spares: usize) -> Cluster {
    let opts = ReplicaOptions {
        snapshot_interval: 8,
        snapshot_jitter: 0,
        max_batch: 1,
        max_learner_lag: 2,
        ..ReplicaOptions::default()
    };
    let mut c = LocalCluster::with_spares(n, spares, opts, |id| {
        ServerMachine::new(GroupContext {
            group: "g".into(),
            kind: "sim-register".into(),
            member: id,
        })
    });
    assert_eq!(c.elect(0), Some(0));
    c
}

fn add(c: &mut Cluster, client: u64, n: i64) {
    let leader = settle(c);
    let payload = codec::encode(
        "request",
        &RegisterRequest {
            op: client,
            action: Action::Add(n),
        },
    )
    .expect("encode");
    c.propose(leader, client, 1, payload);
    c.run_until_quiet();
}

/// Ticks until a leader exists and every live replica applied what it knows.
fn settle(c: &mut Cluster) -> usize {
    for round in 0..300 {
        c.tick();
        c.run_until_quiet();
        match c.leader() {
            Some(l) if round >= 10 => return l,
            _ => {}
        }
    }
    panic!("no leader after 300 ticks");
}

fn change(c: &mut Cluster, id: u64, ch: ConfigChange) -> Config {
    let leader = settle(c);
    c.replica(leader)
        .propose_change(id, ch)
        .expect("change accepted");
    c.run_until_quiet();
    let responses = c.take_responses();
    let (_, r) = responses
        .iter()
        .find(|(_, r)| r.to == RequestId::Reconfig(id))
        .expect("change reported done");
    let bytes = r.result.clone().expect("change succeeded");
    codec::decode("config", &bytes).expect("config")
}

fn value(c: &mut Cluster, i: usize) -> i64 {
    c.replica(i).machine().server().value
}

#[test]
fn a_learner_catches_up_then_replaces_a_voter() {
    let mut c = cluster(3, 1);
    for k in 1..=20 {
        add(&mut c, k, 1);
    }
    let cfg = change(&mut c, 1, ConfigChange::AddLearner(m(3)));
    assert_eq!(cfg.learners, vec![m(3)]);
    assert_eq!(cfg.epoch, 1);
    settle(&mut c);
    assert_eq!(
        value(&mut c, 3),
        20,
        "the learner received the state (snapshot, then log)"
    );
    let cfg = change(
        &mut c,
        2,
        ConfigChange::Replace {
            old: m(1),
            new: m(3),
        },
    );
    assert_eq!(cfg.voters, vec![m(0), m(3), m(2)]);
    assert!(cfg.learners.is_empty());
    settle(&mut c);
    assert!(
        c.replica(1).is_removed(),
        "the replaced voter learns it was removed"
    );
    add(&mut c, 100, 5);
    settle(&mut c);
    for i in [0, 2, 3] {
        assert_eq!(value(&mut c, i), 25, "member {i}");
    }
}

#[test]
fn a_second_change_is_refused_while_one_is_in_flight() {
    let mut c = cluster(3, 2);
    c.cut.extend([(0, 1), (0, 2)]);
    c.replica(0)
        .propose_change(1, ConfigChange::AddLearner(m(3)))
        .expect("first change");
    c.run_until_quiet();
    assert_eq!(
        c.replica(0)
            .propose_change(2, ConfigChange::AddLearner(m(4))),
        Err(ReconfigError::InProgress)
    );
}

/// A leader cut off from the others proposes a change: until its
/// stop-sign is chosen, no command goes into a slot after it (the slots
/// after it belong to the next configuration), however long it waits.
#[test]
fn a_leader_proposes_nothing_after_its_stop_sign() {
    let mut c = cluster(3, 1);
    c.cut.extend([(0, 1), (0, 2), (1, 0), (2, 0)]);
    c.replica(0)
        .propose_change(1, ConfigChange::AddLearner(m(3)))
        .expect("change accepted");
    c.run_until_quiet();
    let stop = c
        .replica(0)
        .votes
        .range(..)
        .find(|(_, e)| matches!(e.value.entry, Entry::StopSign(_)))
        .map(|(s, _)| s)
        .expect("the leader accepted its own stop-sign");
    let payload = codec::encode(
        "request",
        &RegisterRequest {
            op: 1,
            action: Action::Add(1),
        },
    )
    .expect("encode");
    c.propose(0, 7, 1, payload);
    c.run_until_quiet();
    for _ in 0..20 {
        c.tick();
        c.run_until_quiet();
    }
    assert!(c.replica(0).is_leader(), "still leading, cut off");
    let after: Vec<u64> = c
        .replica(0)
        .votes
        .range(stop + 1..)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(after, Vec::<u64>::new(), "proposed after the stop-sign");
}

#[test]
fn a_learner_that_is_behind_is_not_promoted() {
    let mut c = cluster(3, 1);
    c.crash(3);
    change(&mut c, 1, ConfigChange::AddLearner(m(3)));
    for k in 1..=10 {
        add(&mut c, k, 1);
    }
    let leader = settle(&mut c);
    promoting_3_is_refused_as_not_caught_up(&mut c, leader);
}

/// The leader refuses to promote learner 3: it is not caught up.
fn promoting_3_is_refused_as_not_caught_up(c: &mut Cluster, leader: usize) {
    let refused = c
        .replica(leader)
        .propose_change(2, ConfigChange::Promote(m(3)));
    assert!(
        matches!(refused, Err(ReconfigError::NotCaughtUp { .. })),
        "{refused:?}"
    );
}

/// A young log is shorter than the allowed lag, so a learner's lag alone
/// cannot tell: one the leader never heard from (its replica not running)
/// must not be promoted.
#[test]
fn a_learner_never_heard_from_is_not_promoted_even_in_a_young_log() {
    let mut c = cluster(3, 1);
    c.crash(3);
    change(&mut c, 1, ConfigChange::AddLearner(m(3)));
    let leader = settle(&mut c);
    let commit = c.replica(leader).commit_index();
    assert!(commit <= 2, "the log is young: commit {commit}");
    promoting_3_is_refused_as_not_caught_up(&mut c, leader);
}

#[test]
fn the_leader_can_remove_itself_and_a_remaining_member_takes_over() {
    let mut c = cluster(5, 0);
    add(&mut c, 1, 7);
    let cfg = change(&mut c, 1, ConfigChange::Remove(m(0)));
    assert!(!cfg.voters.contains(&m(0)));
    let leader = settle(&mut c);
    assert_ne!(leader, 0);
    assert!(c.replica(0).is_removed());
    add(&mut c, 2, 1);
    settle(&mut c);
    assert_eq!(
        value(&mut c, leader),
        8,
        "nothing chosen before the change was lost"
    );
}

/// Found by the fault suite's churn test (integration/tests/faults.rs): the
/// runtime stops a replaced replica as soon as the table shows the change,
/// so a leader that replaces itself must tell the members that stay that
/// the stop-sign is chosen; otherwise they wait for an election timeout in
/// the old epoch (forever, in a hibernating group).
#[test]
fn a_leader_that_replaces_itself_tells_the_staying_members_at_once() {
    let mut c = cluster(5, 1);
    add(&mut c, 1, 7);
    change(&mut c, 1, ConfigChange::AddLearner(m(5)));
    let leader = settle(&mut c);
    let epoch = c.replica(leader).config().epoch;
    c.replica(leader)
        .propose_change(
            2,
            ConfigChange::Replace {
                old: m(leader),
                new: m(5),
            },
        )
        .expect("change accepted");
    c.run_until_quiet();
    c.crash(leader);
    // No tick: nothing may wait for an election timeout.
    c.run_until_quiet();
    for i in (0..6).filter(|i| *i != leader) {
        assert_eq!(
            c.replica(i).config().epoch,
            epoch + 1,
            "member {i} learned the stop-sign is chosen"
        );
    }
    let next = c.leader().expect("a new leader without waiting");
    assert_ne!(next, leader);
    add(&mut c, 3, 1);
    assert_eq!(value(&mut c, next), 8);
}

#[test]
fn grow_from_three_to_five_and_shrink_back() {
    let mut c = cluster(3, 2);
    change(&mut c, 1, ConfigChange::AddLearner(m(3)));
    change(&mut c, 2, ConfigChange::AddLearner(m(4)));
    settle(&mut c);
    change(&mut c, 3, ConfigChange::Promote(m(3)));
    let cfg = change(&mut c, 4, ConfigChange::Promote(m(4)));
    assert_eq!(cfg.voters.len(), 5);
    assert_eq!(cfg.quorum(), 3);
    add(&mut c, 9, 3);
    change(&mut c, 5, ConfigChange::Remove(m(1)));
    let cfg = change(&mut c, 6, ConfigChange::Remove(m(2)));
    assert_eq!(cfg.voters, vec![m(0), m(3), m(4)]);
    add(&mut c, 10, 1);
    settle(&mut c);
    for i in [0, 3, 4] {
        assert_eq!(value(&mut c, i), 4, "member {i}");
    }
}

#[test]
fn a_wiped_node_comes_back_as_a_stranger_whose_votes_do_not_count() {
    let mut c = cluster(3, 0);
    add(&mut c, 1, 1);
    c.wipe(1);
    c.crash(2);
    let stranger = c.replica(1).id();
    assert_ne!(stranger, m(1));
    assert!(
        c.replica(1).is_removed(),
        "a new incarnation is not a member"
    );
    // Leader plus the stranger are two live nodes of three, but only one
    // voter: nothing may be chosen.
    add(&mut c, 2, 1);
    for _ in 0..50 {
        c.tick();
        c.run_until_quiet();
    }
    let answered = c
        .take_responses()
        .iter()
        .any(|(_, r)| r.to == RequestId::Command(ClientId(2), 1));
    assert!(
        !answered,
        "a command was chosen with the vote of a stranger"
    );
    assert_eq!(value(&mut c, 0), 1);
}

#[test]
fn a_stop_sign_overtaken_by_a_later_higher_ballot_becomes_a_no_op() {
    let b = |round| Ballot {
        epoch: 0,
        round,
        leader: m(0),
    };
    let stop = Entry::StopSign(Config::initial(vec![m(0)]));
    let mut values: BTreeMap<u64, Accepted> = BTreeMap::new();
    values.insert(
        5,
        Accepted {
            ballot: b(2),
            entry: stop.clone(),
        },
    );
    values.insert(
        6,
        Accepted {
            ballot: b(3),
            entry: Entry::Noop,
        },
    );
    assert_eq!(settle_stop_signs(&mut values), None);
    assert_eq!(values[&5].entry, Entry::Noop);

    let mut values: BTreeMap<u64, Accepted> = BTreeMap::new();
    values.insert(
        5,
        Accepted {
            ballot: b(3),
            entry: stop.clone(),
        },
    );
    values.insert(
        6,
        Accepted {
            ballot: b(2),
            entry: Entry::Noop,
        },
    );
    assert_eq!(settle_stop_signs(&mut values), Some(5));
    assert!(
        !values.contains_key(&6),
        "nothing is proposed after a standing stop-sign"
    );
}

/// A member that learnt a later epoch's entries (catch-up) before applying
/// the stop-sign that started that epoch reports both in phase 1; the later
/// epoch's value proves the stop-sign was chosen, it does not overtake it.
/// (Found by the long simulator soak: the stop-sign became a no-op.)
#[test]
fn a_value_of_a_later_epoch_after_a_stop_sign_does_not_overtake_it() {
    let stop = Entry::StopSign(Config::initial(vec![m(0)]));
    let mut values: BTreeMap<u64, Accepted> = BTreeMap::new();
    values.insert(
        17,
        Accepted {
            ballot: Ballot {
                epoch: 1,
                round: 17,
                leader: m(1),
            },
            entry: stop.clone(),
        },
    );
    values.insert(
        18,
        Accepted {
            ballot: Ballot {
                epoch: 2,
                round: 21,
                leader: m(2),
            },
            entry: Entry::Noop,
        },
    );
    assert_eq!(settle_stop_signs(&mut values), Some(17));
    assert_eq!(values[&17].entry, stop);
}

#[test]
fn a_configuration_never_grows_past_the_members_a_peer_would_decode() {
    use crate::config::MAX_MEMBERS;
    let member = |i: usize| MemberId::new(i as u64 + 1, 1);
    let full = Config {
        epoch: 3,
        voters: (0..MAX_MEMBERS).map(member).collect(),
        learners: (MAX_MEMBERS..2 * MAX_MEMBERS).map(member).collect(),
    };
    let newcomer = member(2 * MAX_MEMBERS);
    assert_eq!(
        ConfigChange::AddLearner(newcomer).apply_to(&full),
        Err(ReconfigError::TooMany {
            role: "learners",
            max: MAX_MEMBERS
        })
    );
    assert_eq!(
        ConfigChange::Promote(member(MAX_MEMBERS)).apply_to(&full),
        Err(ReconfigError::TooMany {
            role: "voters",
            max: MAX_MEMBERS
        })
    );
    // A replacement keeps the count: allowed.
    let next = ConfigChange::Replace {
        old: member(0),
        new: member(MAX_MEMBERS),
    }
    .apply_to(&full)
    .expect("a replacement keeps the number of voters");
    assert_eq!(next.voters.len(), MAX_MEMBERS);
}
