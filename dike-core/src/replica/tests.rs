//! The replica's behaviour, by concern: acceptor, proposer, learner,
//! sessions, reads, snapshots, failures. Each test drives replicas by hand
//! (directly, or through the lossless in-memory `LocalCluster`).

use super::test_support::{machine, opts, req, ticks, Machine};
use crate::codec;
use crate::config::{Config, ReplicaOptions};
use crate::entry::{Batch, Command, Entry};
use crate::ids::{Ballot, ClientId, MemberId};
use crate::message::Message;
use crate::ready::{RequestError, RequestId};
use crate::replica::{DownReport, Replica, Start};
use crate::sim::register::Action;
use crate::sim::LocalCluster;
use crate::storage::{Accepted, Write};

fn m(i: u64) -> MemberId {
    MemberId::new(i, 1)
}

/// What `r` sends `to` now (not after a write).
fn sent_to(r: &mut Replica<Machine>, to: MemberId) -> Vec<Message> {
    let ready = r.take_ready();
    ready
        .messages
        .into_iter()
        .filter(|e| e.to == to)
        .map(|e| e.msg)
        .collect()
}

fn single(id: u64, n: u64) -> Replica<Machine> {
    in_config(id, Config::initial((1..=n).map(m).collect()))
}

/// Replica `id` of a group in `config`.
fn in_config(id: u64, config: Config) -> Replica<Machine> {
    Replica::new(Start {
        member: m(id),
        config,
        machine: machine(m(id)),
        options: opts(),
        boot: 1,
        seed: 7,
    })
}

fn cluster(n: usize, o: ReplicaOptions) -> LocalCluster<Machine> {
    let mut c = LocalCluster::new(n, o, machine);
    assert_eq!(
        c.elect(0),
        Some(0),
        "replica 0 should win an uncontested election"
    );
    c
}

/// Ticks replica `i` alone until it leaves the follower role; fails with
/// `after` if that takes `within` ticks or more.
fn ticks_until_it_campaigns(c: &mut LocalCluster<Machine>, i: usize, within: u64, after: &str) {
    let mut ticks = 0;
    while matches!(c.replica(i).role, super::Role::Follower) {
        assert!(ticks < within, "no election {ticks} ticks after {after}");
        c.replica(i).tick();
        ticks += 1;
    }
}

/// A group of `n` that applied one command and then fell asleep.
fn hibernated(n: usize) -> LocalCluster<Machine> {
    let o = ReplicaOptions {
        hibernate_after_ticks: 4,
        ..opts()
    };
    let mut c = cluster(n, o);
    c.propose(0, 1, 1, req(1, Action::Add(1)));
    c.run_until_quiet();
    ticks(&mut c, 20);
    c
}

fn reply_of(c: &mut LocalCluster<Machine>, id: RequestId) -> Result<i64, RequestError> {
    let rs = c.take_responses();
    let (_, r) = rs
        .into_iter()
        .find(|(_, r)| r.to == id)
        .expect("a response");
    r.result
        .map(|b| codec::decode::<i64>("reply", &b).expect("decode"))
}

fn value(c: &mut LocalCluster<Machine>, i: usize) -> i64 {
    c.replica(i).machine().server().value
}

fn batch(cmds: &[(u64, u64)]) -> Entry {
    Entry::Batch(Batch {
        proposer: m(9),
        boot: 1,
        commands: cmds
            .iter()
            .map(|(c, s)| Command {
                client: ClientId(*c),
                seq: *s,
                ack_floor: *s,
                payload: req(*s, Action::Add(1)),
            })
            .collect::<Vec<_>>()
            .into(),
    })
}

// ----- acceptor -----

#[test]
fn a_promise_leaves_only_after_its_write() {
    let mut r = single(2, 3);
    let b = Ballot::new(3, m(1));
    r.step(m(1), Message::Prepare { ballot: b, from: 1 });
    let ready = r.take_ready();
    assert_eq!(ready.writes, vec![Write::Promise(b)]);
    assert!(ready.messages.is_empty(), "nothing may go before the write");
    assert!(
        matches!(ready.after_write[..], [ref e] if matches!(e.msg, Message::Promise { ballot, .. } if ballot == b))
    );
}

#[test]
fn an_accepted_leaves_only_after_the_accept_is_written() {
    let mut r = single(2, 3);
    let b = Ballot::new(1, m(1));
    r.step(
        m(1),
        Message::Accept {
            ballot: b,
            slot: 1,
            entry: Entry::Noop,
            commit: 0,
        },
    );
    let ready = r.take_ready();
    assert!(ready.writes.contains(&Write::Accept {
        slot: 1,
        value: Accepted {
            ballot: b,
            entry: Entry::Noop
        }
    }));
    assert!(ready.messages.is_empty());
    assert!(
        matches!(ready.after_write[..], [ref e] if e.msg == Message::Accepted { ballot: b, slot: 1 })
    );
}

#[test]
fn an_acceptor_rejects_a_lower_ballot_with_its_promise() {
    let mut r = single(2, 3);
    let high = Ballot::new(5, m(3));
    r.step(
        m(3),
        Message::Prepare {
            ballot: high,
            from: 1,
        },
    );
    let _ = r.take_ready();
    let low = Ballot::new(4, m(1));
    r.step(
        m(1),
        Message::Accept {
            ballot: low,
            slot: 1,
            entry: Entry::Noop,
            commit: 0,
        },
    );
    let ready = r.take_ready();
    assert!(
        ready.writes.is_empty(),
        "a rejected proposal must not be stored"
    );
    assert!(matches!(ready.messages[..], [ref e] if e.msg == Message::Nack { promised: high }));
}

/// A value learnt chosen in ballot 5 sits at slot 1 of replica 2 of 3,
/// whose promise stays below it (a catch-up stores chosen values without
/// a promise); then the leader of the lower ballot 4 asks it to accept
/// another value there.
#[test]
fn a_lower_ballot_accept_on_a_chosen_slot_is_answered_with_the_chosen_value() {
    let mut r = single(2, 3);
    let ballot = Ballot::new;
    let chosen = Accepted {
        ballot: ballot(5, m(3)),
        entry: batch(&[(1, 1)]),
    };
    r.step(
        m(3),
        Message::Chosen {
            entries: vec![(1, chosen.clone())],
            commit: 1,
        },
    );
    let _ = r.take_ready();
    assert!(r.promised() < ballot(4, m(1)));
    r.step(
        m(1),
        Message::Accept {
            ballot: ballot(4, m(1)),
            slot: 1,
            entry: batch(&[(2, 1)]),
            commit: 0,
        },
    );
    let ready = r.take_ready();
    let to_proposer: Vec<&Message> = ready
        .messages
        .iter()
        .chain(&ready.after_write)
        .filter(|e| e.to == m(1))
        .map(|e| &e.msg)
        .collect();
    assert_eq!(
        to_proposer,
        vec![&Message::Chosen {
            entries: vec![(1, chosen.clone())],
            commit: 1,
        }],
        "told what was chosen, and no Accepted"
    );
    assert!(
        !ready
            .writes
            .iter()
            .any(|w| matches!(w, Write::Accept { slot: 1, .. })),
        "the chosen value is not overwritten on disk"
    );
    assert_eq!(r.chosen_entry(1), Some(&chosen.entry));
}

/// Replica 2 applied the membership change that started epoch 1; a
/// leader still in epoch 0 campaigns and proposes with a higher round.
#[test]
fn a_ballot_of_an_older_epoch_is_refused_with_the_fence() {
    let config = Config {
        epoch: 1,
        voters: (1..=3).map(m).collect(),
        learners: Vec::new(),
    };
    let mut r = in_config(2, config);
    let old = Ballot::new(9, m(1));
    let fence = Ballot {
        epoch: 1,
        round: 0,
        leader: MemberId::new(0, 0),
    };
    r.step(
        m(1),
        Message::Prepare {
            ballot: old,
            from: 1,
        },
    );
    r.step(
        m(1),
        Message::Accept {
            ballot: old,
            slot: 1,
            entry: Entry::Noop,
            commit: 0,
        },
    );
    let ready = r.take_ready();
    assert!(ready.writes.is_empty(), "neither promised nor accepted");
    assert!(ready.after_write.is_empty());
    let answers: Vec<&Message> = ready.messages.iter().map(|e| &e.msg).collect();
    assert_eq!(
        answers,
        vec![
            &Message::Nack { promised: fence },
            &Message::Nack { promised: fence }
        ]
    );
    assert_eq!(r.promised(), Ballot::ZERO);
}

// ----- learner -----

/// Replica 2 of 3 accepted slot 1 from the leader of ballot `b`.
fn accepted_at_slot_1(b: Ballot) -> Replica<Machine> {
    let mut r = single(2, 3);
    r.step(
        b.leader,
        Message::Accept {
            ballot: b,
            slot: 1,
            entry: batch(&[(1, 1)]),
            commit: 0,
        },
    );
    let _ = r.take_ready();
    r
}

#[test]
fn a_commit_index_from_the_leader_of_an_entrys_ballot_marks_it_chosen() {
    let b = Ballot::new(1, m(1));
    let mut r = accepted_at_slot_1(b);
    assert_eq!(r.chosen_entry(1), None);
    r.step(
        m(1),
        Message::Heartbeat {
            ballot: b,
            commit: 1,
            read_round: 0,
            hibernate: false,
        },
    );
    assert_eq!(r.commit_index(), 1);
    assert_eq!(r.chosen_entry(1), Some(&batch(&[(1, 1)])));
}

/// The leader of ballot 2 may have chosen another value at slot 1 than
/// the one accepted there in ballot 1: its commit index says nothing
/// about that one, and the replica asks it instead.
#[test]
fn a_commit_index_from_the_leader_of_another_ballot_marks_nothing_chosen() {
    let b1 = Ballot::new(1, m(1));
    let b2 = Ballot::new(2, m(3));
    let mut r = accepted_at_slot_1(b1);
    r.step(
        m(3),
        Message::Heartbeat {
            ballot: b2,
            commit: 1,
            read_round: 0,
            hibernate: false,
        },
    );
    assert_eq!(r.commit_index(), 0);
    assert_eq!(r.chosen_entry(1), None);
    let asked: Vec<Message> = sent_to(&mut r, m(3));
    assert_eq!(asked, vec![Message::CatchUp { from: 1 }]);
}

// ----- proposer -----

#[test]
fn a_new_leader_reproposes_the_highest_ballot_values_and_fills_holes_with_noops() {
    let mut r = single(1, 3);
    r.campaign();
    let ready = r.take_ready();
    let own = ready
        .after_write
        .iter()
        .find(|e| matches!(e.msg, Message::Promise { .. }))
        .expect("own promise")
        .clone();
    assert!(ready.messages.is_empty(), "prepares wait for the promise");
    let prepare = ready
        .after_write
        .iter()
        .find(|e| e.to != r.id())
        .expect("a prepare to a peer");
    let Message::Prepare { ballot, from } = prepare.msg.clone() else {
        panic!("expected a prepare")
    };
    r.step(own.from, own.msg);
    let old = Ballot::new(0, m(2));
    let older = Ballot::new(0, m(1));
    let accepted = vec![
        (
            1,
            Accepted {
                ballot: older,
                entry: batch(&[(1, 1)]),
            },
        ),
        (
            3,
            Accepted {
                ballot: old,
                entry: batch(&[(3, 1)]),
            },
        ),
    ];
    r.step(
        m(2),
        Message::Promise {
            ballot,
            from,
            accepted,
            commit: 0,
            snapshot_slot: 0,
        },
    );
    assert!(r.is_leader());
    let ready = r.take_ready();
    let to2: Vec<(u64, Entry)> = ready
        .messages
        .iter()
        .filter(|e| e.to == m(2))
        .filter_map(|e| match &e.msg {
            Message::Accept { slot, entry, .. } => Some((*slot, entry.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        to2,
        vec![
            (1, batch(&[(1, 1)])),
            (2, Entry::Noop),
            (3, batch(&[(3, 1)]))
        ]
    );
}

#[test]
fn commands_that_arrive_together_share_one_slot() {
    let mut c = cluster(3, opts());
    for seq in 1..=10 {
        c.propose(0, seq, 1, req(seq, Action::Add(1)));
    }
    let ready = c.replica(0).take_ready();
    let accepts: Vec<&Entry> = ready
        .messages
        .iter()
        .filter(|e| e.to == m(2))
        .filter_map(|e| match &e.msg {
            Message::Accept { entry, .. } => Some(entry),
            _ => None,
        })
        .collect();
    assert_eq!(accepts.len(), 1);
    assert_eq!(accepts[0].len(), 10);
}

#[test]
fn no_more_slots_than_the_window_are_in_flight() {
    let mut c = cluster(
        3,
        ReplicaOptions {
            window: 2,
            max_batch: 1,
            ..opts()
        },
    );
    for seq in 1..=5 {
        c.propose(0, seq, 1, req(seq, Action::Add(1)));
    }
    let ready = c.replica(0).take_ready();
    let slots = ready
        .messages
        .iter()
        .filter(|e| e.to == m(2) && matches!(e.msg, Message::Accept { .. }))
        .count();
    assert_eq!(slots, 2);
}

#[test]
fn five_replicas_choose_and_apply_a_command_in_order() {
    let mut c = cluster(5, opts());
    c.propose(0, 1, 1, req(1, Action::Set(7)));
    c.propose(0, 2, 1, req(2, Action::Add(3)));
    c.run_until_quiet();
    assert_eq!(reply_of(&mut c, RequestId::Command(ClientId(1), 1)), Ok(0));
    c.tick();
    c.tick();
    c.run_until_quiet();
    for i in 0..5 {
        assert_eq!(value(&mut c, i), 10, "replica {i}");
    }
}

/// Whatever `max_batch` says, no slot carries more commands than a peer
/// (or the log on disk) would decode.
#[test]
fn a_slot_never_carries_more_commands_than_a_batch_may_hold() {
    use crate::entry::MAX_BATCH_COMMANDS;
    let o = ReplicaOptions {
        max_batch: usize::MAX,
        max_queued: usize::MAX,
        snapshot_interval: 10_000_000,
        ..opts()
    };
    let mut c = cluster(1, o);
    let window = c.replica(0).opts.window as usize;
    // The window fills with one command per slot; the rest waits in the
    // queue, more than a batch may hold.
    let n = window + MAX_BATCH_COMMANDS + 1;
    for client in 1..=n as u64 {
        c.replica(0).propose(Command::new(
            ClientId(client),
            1,
            req(client, Action::Add(1)),
        ));
    }
    c.run_until_quiet();
    let sizes: Vec<usize> = c
        .replica(0)
        .votes
        .range(..)
        .map(|(_, e)| e.value.entry.len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), n, "every command was proposed");
    let largest = sizes.iter().max().copied().unwrap_or(0);
    assert!(
        largest <= MAX_BATCH_COMMANDS,
        "a slot of {largest} commands"
    );
}

// ----- sessions and effects -----

#[test]
fn a_retried_command_is_applied_once_and_answered_from_the_session_table() {
    let mut c = cluster(3, opts());
    c.propose(0, 1, 1, req(1, Action::Add(5)));
    c.run_until_quiet();
    assert_eq!(reply_of(&mut c, RequestId::Command(ClientId(1), 1)), Ok(5));
    c.propose(0, 1, 1, req(1, Action::Add(5)));
    c.run_until_quiet();
    assert_eq!(reply_of(&mut c, RequestId::Command(ClientId(1), 1)), Ok(5));
    assert_eq!(value(&mut c, 0), 5);
    assert_eq!(c.effects_run, 1, "the effect runs once, on the proposer");
}

#[test]
fn a_panicking_command_fails_everywhere_and_leaves_the_state_unchanged() {
    let mut c = cluster(3, opts());
    c.propose(0, 1, 1, req(1, Action::Add(5)));
    c.run_until_quiet();
    crate::sim::register::quiet_deliberate_panics();
    c.propose(0, 2, 1, req(2, Action::Explode));
    c.run_until_quiet();
    let r = reply_of(&mut c, RequestId::Command(ClientId(2), 1));
    assert!(
        matches!(r, Err(RequestError::Application(ref msg)) if msg.contains("exploded")),
        "{r:?}"
    );
    c.propose(0, 3, 1, req(3, Action::Add(1)));
    c.run_until_quiet();
    assert_eq!(reply_of(&mut c, RequestId::Command(ClientId(3), 1)), Ok(6));
    c.tick();
    c.tick();
    c.run_until_quiet();
    for i in 0..3 {
        assert_eq!(value(&mut c, i), 6, "replica {i}");
    }
}

// ----- reads -----

#[test]
fn a_query_is_answered_by_the_leader_without_a_log_write() {
    let mut c = cluster(3, opts());
    c.propose(0, 1, 1, req(1, Action::Set(42)));
    c.run_until_quiet();
    let commit = c.replica(0).commit_index();
    c.replica(0).query(77, req(2, Action::Get));
    c.run_until_quiet();
    assert_eq!(reply_of(&mut c, RequestId::Query(77)), Ok(42));
    assert_eq!(
        c.replica(0).commit_index(),
        commit,
        "a query writes nothing to the log"
    );
}

#[test]
fn a_query_waits_for_a_quorum_and_is_refused_by_followers() {
    let mut c = cluster(3, opts());
    c.cut.extend([(0, 1), (0, 2)]);
    c.replica(0).query(1, req(1, Action::Get));
    c.run_until_quiet();
    assert!(
        c.take_responses().is_empty(),
        "an isolated leader must not answer a query"
    );
    c.replica(1).query(2, req(2, Action::Get));
    c.run_until_quiet();
    assert_eq!(
        reply_of(&mut c, RequestId::Query(2)),
        Err(RequestError::NotLeader { leader: Some(m(1)) })
    );
}

// ----- failures, recovery, catch-up, snapshots -----

#[test]
fn when_the_leader_crashes_another_takes_over_without_losing_chosen_commands() {
    let mut c = cluster(5, opts());
    c.propose(0, 1, 1, req(1, Action::Add(5)));
    c.run_until_quiet();
    c.crash(0);
    let mut leader = None;
    for _ in 0..200 {
        c.tick();
        c.run_until_quiet();
        leader = c.leader();
        if leader.is_some() {
            break;
        }
    }
    let l = leader.expect("a new leader within 200 ticks");
    c.propose(l, 2, 1, req(2, Action::Add(1)));
    c.run_until_quiet();
    assert_eq!(reply_of(&mut c, RequestId::Command(ClientId(2), 1)), Ok(6));
}

#[test]
fn a_restarted_replica_recovers_from_storage_without_rerunning_effects() {
    let mut c = cluster(3, opts());
    for seq in 1..=5 {
        c.propose(0, seq, 1, req(seq, Action::Add(2)));
        c.run_until_quiet();
    }
    let effects = c.effects_run;
    c.crash(0);
    c.restart(0).expect("restart");
    c.run_until_quiet();
    assert_eq!(value(&mut c, 0), 10);
    assert_eq!(c.effects_run, effects);
}

#[test]
fn a_replica_behind_the_snapshot_catches_up_from_a_snapshot() {
    let o = ReplicaOptions {
        snapshot_interval: 5,
        snapshot_jitter: 0,
        max_batch: 1,
        ..opts()
    };
    let mut c = cluster(3, o);
    c.crash(2);
    for seq in 1..=30 {
        c.propose(0, seq, 1, req(seq, Action::Add(1)));
        c.run_until_quiet();
    }
    let snap = c
        .replica(0)
        .snapshot()
        .map(|s| s.slot)
        .expect("the leader snapshotted");
    assert!(snap >= 25);
    assert!(
        c.replica(0).chosen_entry(1).is_none(),
        "the log below the snapshot is dropped"
    );
    c.restart(2).expect("restart");
    for _ in 0..10 {
        c.tick();
        c.run_until_quiet();
    }
    assert_eq!(value(&mut c, 2), 30);
    assert!(
        c.replica(2).snapshot().is_some(),
        "it caught up through a snapshot"
    );
    let leader_sessions = c.replica(0).sessions().clone();
    assert_eq!(c.replica(2).sessions(), &leader_sessions);
}

#[test]
fn a_stale_retry_after_the_client_moved_on_is_refused() {
    let mut c = cluster(3, opts());
    c.propose(0, 1, 1, req(1, Action::Add(1)));
    c.propose(0, 1, 2, req(2, Action::Add(1)));
    c.run_until_quiet();
    let _ = c.take_responses();
    let cmd = Command {
        client: ClientId(1),
        seq: 1,
        ack_floor: 1,
        payload: req(1, Action::Add(1)),
    };
    c.replica(0).propose(cmd);
    c.run_until_quiet();
    assert_eq!(
        reply_of(&mut c, RequestId::Command(ClientId(1), 1)),
        Err(RequestError::Stale)
    );
}

/// Whatever `catchup_batch` says, a catch-up carries no more entries than a
/// peer would decode.
#[test]
fn a_catch_up_never_carries_more_entries_than_a_peer_would_decode() {
    use crate::message::MAX_CHOSEN_ENTRIES;
    let o = ReplicaOptions {
        catchup_batch: usize::MAX,
        ..opts()
    };
    let config = Config::initial((1..=3).map(m).collect());
    let mut r = Replica::new(Start {
        member: m(1),
        config,
        machine: machine(m(1)),
        options: o,
        boot: 1,
        seed: 7,
    });
    let last = MAX_CHOSEN_ENTRIES as u64 + 10;
    for slot in 1..=last {
        let value = Accepted {
            ballot: Ballot::ZERO,
            entry: Entry::Noop,
        };
        r.votes.insert(slot, value, true);
    }
    r.cursor.commit_through(last);
    r.step(m(2), Message::CatchUp { from: 1 });
    let sent: Vec<usize> = r
        .take_ready()
        .messages
        .iter()
        .filter_map(|e| match &e.msg {
            Message::Chosen { entries, .. } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![MAX_CHOSEN_ENTRIES]);
}

/// A member asking to be caught up from slot `s` knows every slot before
/// `s` chosen. One that knows less asks it back: in an idle group where
/// every member restarted and nobody leads, members that missed the last
/// slots would otherwise never hear of them (the simulator's faulty
/// schedule, seed 12011440: two voters stayed 8 slots behind for good).
#[test]
fn a_member_asked_to_catch_up_from_beyond_its_commit_asks_back() {
    let mut r = single(3, 3);
    assert_eq!(r.commit_index(), 0);
    r.step(m(1), Message::CatchUp { from: 9 });
    let asked: Vec<_> = sent_to(&mut r, m(1));
    assert_eq!(asked, vec![Message::CatchUp { from: 1 }]);
    // Asked from where it is, it has nothing to ask for.
    r.step(m(1), Message::CatchUp { from: 1 });
    assert!(r.take_ready().messages.is_empty());
}

// ----- hibernation -----

#[test]
fn an_idle_group_hibernates_and_wakes_on_a_command() {
    let mut c = hibernated(3);
    for i in 0..3 {
        assert!(!c.replica(i).wants_ticks(), "replica {i} should hibernate");
    }
    let before = c.delivered;
    ticks(&mut c, 50);
    assert_eq!(c.delivered, before, "a hibernating group sends nothing");
    c.propose(0, 2, 1, req(2, Action::Add(1)));
    c.run_until_quiet();
    assert_eq!(reply_of(&mut c, RequestId::Command(ClientId(2), 1)), Ok(2));
    assert!(c.replica(0).wants_ticks());
}

#[test]
fn a_group_left_to_its_timers_elects_its_first_voter_and_another_without_it() {
    for n in [3, 5] {
        let mut c = LocalCluster::new(n, opts(), machine);
        let mut ticks = 0;
        while c.leader().is_none() && ticks < 100 {
            c.tick();
            c.run_until_quiet();
            ticks += 1;
        }
        assert_eq!(c.leader(), Some(0), "the preferred leader of {n} wins");
        c.crash(0);
        let mut ticks = 0;
        while c.leader().is_none() && ticks < 100 {
            c.tick();
            c.run_until_quiet();
            ticks += 1;
        }
        assert!(
            c.leader().is_some_and(|l| l != 0),
            "the others elect one of them"
        );
    }
}

#[test]
fn a_hibernating_group_elects_a_new_leader_when_the_leaders_node_is_reported_down() {
    let o = ReplicaOptions {
        hibernate_after_ticks: 4,
        ..opts()
    };
    let mut c = cluster(3, o);
    for _ in 0..20 {
        c.tick();
        c.run_until_quiet();
    }
    c.crash(0);
    for _ in 0..100 {
        c.tick();
        c.run_until_quiet();
    }
    assert_eq!(
        c.leader(),
        None,
        "without a failure report, hibernating followers wait"
    );
    for i in 1..3 {
        c.replica(i).node_down(m(1).node, DownReport::SessionClosed);
    }
    for _ in 0..40 {
        c.tick();
        c.run_until_quiet();
    }
    assert!(
        c.leader().is_some_and(|l| l != 0),
        "a new leader after the report"
    );
}

/// A member that restarts while its group hibernates asks the others to
/// catch it up; the sleeping leader's answer tells it the group sleeps, so
/// it sleeps too instead of waking the whole group with an election (with
/// 10,000 groups on the restarted node, 10,000 elections at once).
#[test]
fn a_member_restarted_in_a_hibernating_group_goes_back_to_sleep_without_an_election() {
    let mut c = hibernated(3);
    assert!((0..3).all(|i| !c.replica(i).wants_ticks()), "asleep");
    c.crash(2);
    c.restart(2).expect("restart");
    c.run_until_quiet();
    let promised = c.replica(0).promised();
    ticks(&mut c, 100);
    assert_eq!(c.leader(), Some(0));
    assert_eq!(c.replica(0).promised(), promised, "no election");
    assert!(!c.replica(2).wants_ticks(), "the restarted member sleeps");
    assert_eq!(c.replica(2).commit_index(), c.replica(0).commit_index());
}

/// The same restart on a congested node: the answers to the restarted
/// member's `CatchUp`s arrive only after twice an election timeout. It
/// waits for them instead of electing, then sleeps like the others.
#[test]
fn a_restarted_member_whose_catch_up_answers_are_late_waits_for_them_instead_of_electing() {
    let mut c = hibernated(3);
    let promised = c.replica(0).promised();
    c.crash(2);
    c.restart(2).expect("restart");
    let late = 2 * c.replica(2).opts.election_ticks;
    for t in 0..late {
        c.replica(2).tick();
        assert!(
            matches!(c.replica(2).role, super::Role::Follower),
            "elected after {t} ticks without an answer"
        );
    }
    c.run_until_quiet();
    ticks(&mut c, 100);
    assert_eq!(c.leader(), Some(0));
    assert_eq!(c.replica(0).promised(), promised, "no election");
    assert!(!c.replica(2).wants_ticks(), "the restarted member sleeps");
}

/// Every member of an idle group restarted: nobody leads, and nobody
/// elects until a leader is needed. A membership change (or a leadership
/// transfer) asked of a member is such a need, as a command is: else a
/// rebalancer could never move an idle group after a restart of the whole
/// cluster (each member answers "no leader known", and waits on).
#[test]
fn a_membership_request_to_a_restarted_idle_group_gets_it_a_leader() {
    use crate::replica::{ConfigChange, TransferError};
    type Ask = fn(&mut Replica<Machine>) -> bool;
    let change: Ask = |r| {
        let change = ConfigChange::Remove(m(3));
        matches!(
            r.propose_change(1, change),
            Err(crate::replica::ReconfigError::NotLeader { leader: None })
        )
    };
    let transfer: Ask = |r| {
        matches!(
            r.transfer_leadership(m(2)),
            Err(TransferError::NotLeader { leader: None })
        )
    };
    for (what, ask) in [("a change", change), ("a transfer", transfer)] {
        let mut c = hibernated(3);
        for i in 0..3 {
            c.crash(i);
        }
        for i in 0..3 {
            c.restart(i).expect("restart");
        }
        ticks(&mut c, 10);
        assert_eq!(c.leader(), None, "nobody leads an idle restarted group");
        assert!(ask(c.replica(1)), "{what}: refused with no leader known");
        let within = 2 * c.replica(1).opts.election_ticks as usize;
        ticks(&mut c, within);
        assert!(
            c.leader().is_some(),
            "{what}: no leader {within} ticks after it was asked of a member"
        );
    }
}

/// The group's preferred leader, restarted, waits as long as any other
/// member: [8e, 16e) ticks, not the preferred [e/2, e) stretched 8 times.
#[test]
fn a_restarted_preferred_leader_waits_for_its_catch_up_as_long_as_the_others() {
    let mut c = hibernated(3);
    c.crash(0);
    c.restart(0).expect("restart");
    let wait = c.replica(0).opts.election_ticks * super::MAX_ELECTION_BACKOFF;
    for t in 0..wait {
        c.replica(0).tick();
        assert!(
            matches!(c.replica(0).role, super::Role::Follower),
            "the preferred leader elected {t} ticks after its restart"
        );
    }
}

/// While it waits for those answers, a report that some other node is down
/// (a restarting node under load finds peers slow to answer its pings) does
/// not make it elect; a report on the node of the leader it promised does.
#[test]
fn a_restarted_member_elects_early_only_when_the_node_of_the_leader_it_promised_is_down() {
    let mut c = hibernated(3);
    c.crash(2);
    c.restart(2).expect("restart");
    assert_eq!(c.replica(2).promised().leader, m(1), "replica 0 led");
    c.replica(2).node_down(m(2).node, DownReport::SessionClosed);
    let e = c.replica(2).opts.election_ticks;
    for t in 0..2 * e {
        c.replica(2).tick();
        assert!(
            matches!(c.replica(2).role, super::Role::Follower),
            "elected {t} ticks after another node was reported down"
        );
    }
    c.replica(2).node_down(m(1).node, DownReport::SessionClosed);
    ticks_until_it_campaigns(&mut c, 2, e, "the leader's node was reported down");
}

/// When every member restarted, no leader answers the catch-up: the group
/// elects once a request needs it, as soon as a group that was never put
/// off would.
#[test]
fn a_group_whose_members_all_restarted_elects_when_a_request_comes() {
    let mut c = cluster(3, opts());
    c.propose(0, 1, 1, req(1, Action::Add(1)));
    c.run_until_quiet();
    for i in 0..3 {
        c.crash(i);
        c.restart(i).expect("restart");
    }
    c.run_until_quiet();
    let e = c.replica(0).opts.election_ticks as usize;
    ticks(&mut c, e / 2);
    assert_eq!(c.leader(), None, "no election while nobody asks");
    c.propose(1, 1, 2, req(2, Action::Add(1)));
    c.run_until_quiet();
    assert_eq!(
        reply_of(&mut c, RequestId::Command(ClientId(1), 2)),
        Err(RequestError::NotLeader { leader: None })
    );
    let mut ticks = 0;
    while c.leader().is_none() {
        assert!(ticks < 2 * e, "no leader {ticks} ticks after the request");
        c.tick();
        c.run_until_quiet();
        ticks += 1;
    }
    let l = c.leader().expect("a leader");
    c.propose(l, 1, 2, req(2, Action::Add(1)));
    c.run_until_quiet();
    assert_eq!(reply_of(&mut c, RequestId::Command(ClientId(1), 2)), Ok(2));
}

/// A follower, then a candidate, each held back until the tick it named:
/// the ticks before it change nothing, and the named one acts.
#[test]
fn ticks_before_the_one_a_replica_names_as_due_change_nothing() {
    let mut r = single(2, 3);
    let _ = r.take_ready();
    let due = r.ticks_until_due();
    assert!(due > 1 && due < u64::MAX, "{due}");
    for _ in 1..due {
        r.tick();
        assert!(matches!(r.role, super::Role::Follower));
        let ready = r.take_ready();
        assert!(ready.messages.is_empty() && ready.after_write.is_empty());
    }
    r.tick();
    assert!(matches!(r.role, super::Role::Candidate(_)), "due: elects");
    // A candidate's next due tick is its first Prepare resend.
    let _ = r.take_ready();
    let due = r.ticks_until_due();
    assert_eq!(due, r.opts.heartbeat_ticks);
    let sent = |r: &mut Replica<Machine>| {
        let ready = r.take_ready();
        ready.messages.len() + ready.after_write.len()
    };
    for _ in 1..due {
        r.tick();
        assert_eq!(sent(&mut r), 0);
    }
    r.tick();
    assert!(sent(&mut r) > 0, "due: resends");
}

/// Elections started in a row without a leader to follow stretch the
/// election timeouts, doubling up to the bound; following one leader for a
/// whole (stretched) timeout brings them back.
#[test]
fn failed_elections_in_a_row_stretch_timeouts_until_a_leader_lasts() {
    let mut r = single(2, 3);
    let e = r.opts.election_ticks;
    let mut spans = Vec::new();
    for _ in 0..6 {
        r.start_election();
        let _ = r.take_ready();
        let span = r.clock.deadline() - r.clock.now();
        spans.push(span);
        r.clock.advance(span);
    }
    for (i, span) in spans.iter().enumerate() {
        let factor = (1u64 << i.min(3)).min(super::MAX_ELECTION_BACKOFF);
        assert!(
            (factor * e..2 * factor * e).contains(span),
            "election {i}: {span} ticks, factor {factor}"
        );
    }
    // A leader heard, then heard for a whole stretched timeout.
    let leader = Ballot {
        epoch: 0,
        round: r.clock.max_round_seen() + 1,
        leader: m(1),
    };
    let heartbeat = |commit| Message::Heartbeat {
        ballot: leader,
        commit,
        read_round: 0,
        hibernate: false,
    };
    r.step(m(1), heartbeat(0));
    assert_eq!(r.clock.backoff(), super::MAX_ELECTION_BACKOFF, "not yet");
    r.clock.advance(e * super::MAX_ELECTION_BACKOFF);
    r.step(m(1), heartbeat(0));
    assert_eq!(r.clock.backoff(), 1, "the leader lasted");
    let span = r.clock.deadline() - r.clock.now();
    assert!((e..2 * e).contains(&span), "{span}");
}

/// After elections that failed in a row (a congested cluster), a report
/// that the leader's node is down waits within the stretched timeout, as
/// the election timer does: reports of busy peers as down started
/// elections every half second in thousands of groups at once, each adding
/// to the congestion that made them fail (docs/BENCHMARKS.md, 10,000
/// groups). Without backoff the report still elects within one timeout.
#[test]
fn a_down_report_after_failed_elections_waits_within_the_stretched_timeout() {
    let e = opts().election_ticks;
    let span_after = |failed: usize, seed: u64| {
        let config = Config::initial((1..=3).map(m).collect());
        let mut r = Replica::new(Start {
            member: m(2),
            config,
            machine: machine(m(2)),
            options: opts(),
            boot: 1,
            seed,
        });
        for _ in 0..failed {
            r.start_election();
            let _ = r.take_ready();
        }
        // Following member 1 again, not yet for a whole stretched timeout.
        let leader = Ballot {
            epoch: 0,
            round: r.clock.max_round_seen() + 1,
            leader: m(1),
        };
        r.step(
            m(1),
            Message::Heartbeat {
                ballot: leader,
                commit: 0,
                read_round: 0,
                hibernate: true,
            },
        );
        let _ = r.take_ready();
        r.node_down(m(1).node, DownReport::SessionClosed);
        r.clock.deadline() - r.clock.now()
    };
    let fresh: Vec<u64> = (0..40).map(|seed| span_after(0, seed)).collect();
    assert!(fresh.iter().all(|s| *s < e), "{fresh:?}");
    let congested: Vec<u64> = (0..40).map(|seed| span_after(4, seed)).collect();
    let stretched = e * super::MAX_ELECTION_BACKOFF;
    assert!(congested.iter().all(|s| *s < stretched), "{congested:?}");
    assert!(
        congested.iter().filter(|s| **s >= e).count() > congested.len() / 2,
        "most wait past one timeout: {congested:?}"
    );
}

/// A restarted member whose `CatchUp` answers are late (its node is busy
/// starting thousands of replicas) asks again instead of campaigning: an
/// election from it would depose a leader that is alive. A request that
/// finds it knowing no leader ends the wait, and it elects.
#[test]
fn a_restarted_member_asks_again_instead_of_campaigning_until_a_leader_is_wanted() {
    let mut c = hibernated(3);
    c.crash(2);
    c.restart(2).expect("restart");
    let catch_ups = |c: &mut LocalCluster<Machine>| {
        let ready = c.replica(2).take_ready();
        ready
            .messages
            .iter()
            .filter(|env| matches!(env.msg, Message::CatchUp { .. }))
            .count()
    };
    assert_eq!(catch_ups(&mut c), 2, "asks both others at the restart");
    let e = c.replica(2).opts.election_ticks * super::MAX_ELECTION_BACKOFF;
    let mut asked = 0;
    for _ in 0..10 * e {
        c.replica(2).tick();
        asked += catch_ups(&mut c);
        assert!(
            matches!(c.replica(2).role, super::Role::Follower),
            "campaigned while waiting for its catch-up answers"
        );
    }
    assert!(asked >= 2 * 4, "asked again: {asked} CatchUps");
    c.replica(2).leader_wanted();
    ticks_until_it_campaigns(&mut c, 2, 4 * e, "a leader was wanted");
}

/// A group of 3 that applied `writes` commands and then fell asleep, with
/// a snapshot as it goes to sleep after 3 slots.
fn asleep_after(writes: u64) -> LocalCluster<Machine> {
    let o = ReplicaOptions {
        hibernate_after_ticks: 4,
        hibernate_snapshot_slots: 3,
        ..opts()
    };
    let mut c = cluster(3, o);
    for seq in 1..=writes {
        c.propose(0, 1, seq, req(seq, Action::Add(1)));
        c.run_until_quiet();
    }
    ticks(&mut c, 20);
    assert!((0..3).all(|i| !c.replica(i).wants_ticks()), "asleep");
    c
}

/// Rule: a group going to sleep sheds its log. Every replica that applied
/// `hibernate_snapshot_slots` since its last snapshot takes one as the
/// leader's sleep heartbeat reaches it (the leader as it falls asleep),
/// so a sleeping group holds its state, not the slots that made it.
#[test]
fn a_replica_whose_group_goes_to_sleep_snapshots_and_drops_its_log() {
    let mut c = asleep_after(5);
    for i in 0..3 {
        let r = c.replica(i);
        let applied = r.applied();
        assert!(applied >= 5, "replica {i} applied the writes");
        assert_eq!(r.snapshot().map(|s| s.slot), Some(applied), "replica {i}");
        assert!(
            r.chosen_entry(applied).is_none(),
            "replica {i} dropped its log"
        );
        assert_eq!(value(&mut c, i), 5);
    }
    // It wakes and serves as before.
    c.propose(0, 1, 6, req(6, Action::Add(1)));
    c.run_until_quiet();
    assert_eq!(value(&mut c, 0), 6);
}

/// Rule: fewer slots than `hibernate_snapshot_slots` since the last
/// snapshot are kept through a sleep (no snapshot per short wake).
#[test]
fn a_group_written_less_than_the_sleep_threshold_keeps_its_log_asleep() {
    let mut c = asleep_after(1);
    for i in 0..3 {
        let r = c.replica(i);
        assert!(r.snapshot().is_none(), "replica {i} took no snapshot");
        assert!(r.chosen_entry(r.applied()).is_some(), "replica {i}");
    }
}

/// A follower of a leader that heartbeats, `ticks` ticks after its last
/// heartbeat, with the leader on node 1.
fn following_for(ticks: u64) -> LocalCluster<Machine> {
    let mut c = cluster(3, opts());
    c.propose(0, 1, 1, req(1, Action::Add(1)));
    c.run_until_quiet();
    assert_eq!(c.leader(), Some(0));
    for _ in 0..ticks {
        c.replica(1).tick();
    }
    c
}

/// Rule: a suspicion (pings missed) of the node of a leader heard within
/// the last election timeout counts only once the leader has been silent
/// for a whole one: its own messages say more than missed pings on a
/// congested cluster do, and each puts the election off again.
#[test]
fn a_suspicion_of_a_leader_heard_within_an_election_timeout_waits_for_its_silence() {
    let e = opts().election_ticks;
    let mut c = following_for(1);
    assert!(!c.replica(1).node_down(m(1).node, DownReport::Unresponsive));
    for t in 1..e {
        assert!(
            matches!(c.replica(1).role, super::Role::Follower),
            "elected {t} ticks after hearing its leader"
        );
        c.replica(1).tick();
    }
    // Heard again: the election is put off again.
    let mut c = following_for(1);
    c.replica(1).node_down(m(1).node, DownReport::Unresponsive);
    for t in 0..3 * e {
        ticks(&mut c, 1);
        assert_eq!(c.leader(), Some(0), "deposed {t} ticks after a suspicion");
    }
}

/// Rule: the same suspicion once the leader has been silent for an
/// election timeout brings the election forward, as a closed session
/// does at once.
#[test]
fn a_suspicion_of_a_leader_silent_for_an_election_timeout_brings_the_election_forward() {
    let e = opts().election_ticks;
    let mut c = following_for(e);
    assert!(c.replica(1).node_down(m(1).node, DownReport::Unresponsive));
    let mut c = following_for(1);
    assert!(c.replica(1).node_down(m(1).node, DownReport::SessionClosed));
}

/// Rule: a suspicion put off because the leader was heard just before
/// its group fell asleep still wakes the group: once the leader has been
/// silent for a timeout, the followers elect (the report comes once per
/// outage, and a sleeping group has no other timer).
#[test]
fn a_suspicion_of_a_leader_heard_just_before_its_group_slept_still_brings_an_election() {
    let o = ReplicaOptions {
        hibernate_after_ticks: 4,
        ..opts()
    };
    let mut c = cluster(3, o);
    c.propose(0, 1, 1, req(1, Action::Add(1)));
    c.run_until_quiet();
    let mut slept_after = 0;
    while c.replica(1).wants_ticks() {
        ticks(&mut c, 1);
        slept_after += 1;
        assert!(slept_after < 40, "the group never slept");
    }
    c.crash(0);
    for i in 1..3 {
        assert!(!c.replica(i).node_down(m(1).node, DownReport::Unresponsive));
        assert!(c.replica(i).wants_ticks(), "replica {i} woke");
    }
    let e = opts().election_ticks as usize;
    ticks(&mut c, 4 * e);
    assert!(c.leader().is_some_and(|l| l != 0), "a new leader");
}

/// Rule: a request that reaches a follower of a sleeping group, instead of
/// its leader, wakes the follower's election timer: a leader that hung
/// while its group slept (no message, no report for seconds) is replaced
/// within an election timeout.
#[test]
fn a_request_at_a_sleeping_follower_wakes_its_election_timer() {
    let mut c = hibernated(3);
    assert!((0..3).all(|i| !c.replica(i).wants_ticks()), "asleep");
    c.crash(0);
    let cmd = Command::new(ClientId(7), 1, req(7, Action::Add(1)));
    c.replica(1).propose(cmd);
    assert!(c.replica(1).wants_ticks(), "the follower woke");
    let e = opts().election_ticks as usize;
    ticks(&mut c, 3 * e);
    assert!(c.leader().is_some_and(|l| l != 0), "a new leader");
}

/// Rule: the same request while the leader is alive wakes the follower
/// only until the leader's next message: the leader keeps its leadership.
#[test]
fn a_request_at_a_sleeping_follower_of_a_live_leader_deposes_nobody() {
    let mut c = hibernated(3);
    let promised = c.replica(0).promised();
    let cmd = Command::new(ClientId(7), 1, req(7, Action::Add(1)));
    c.replica(1).propose(cmd.clone());
    c.replica(0).propose(cmd);
    let e = opts().election_ticks as usize;
    ticks(&mut c, 3 * e);
    assert_eq!(c.leader(), Some(0));
    assert_eq!(c.replica(0).promised(), promised, "no election");
}
