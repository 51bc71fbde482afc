//! Deterministic simulation of one group under faults. Each test runs many
//! seeded schedules; a failure prints its seed, the command that replays it,
//! and a trace.
//!
//! `DIKE_SIM_SCALE=N` multiplies the number of seeds (for long runs).

use dike_core::sim::{run_many, run_traced, Schedule, SimConfig};
use dike_core::Bugs;

fn scale() -> u64 {
    std::env::var("DIKE_SIM_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn check(first: u64, count: u64, make: impl Fn(u64) -> SimConfig) {
    match run_many(first, count * scale(), make) {
        Ok((n, total)) => eprintln!(
            "{n} schedules passed: {} ops, {} slots, {} crashes, {} partitions, {} leader changes, \
             {} membership changes, {} leadership transfers, {} drains, {}/{} messages dropped, \
             slowest operation {} steps",
            total.ops,
            total.slots,
            total.crashes,
            total.partitions,
            total.elections,
            total.changes,
            total.transfers,
            total.drains,
            total.messages.1,
            total.messages.0,
            total.slowest
        ),
        Err(f) => panic!("{f}"),
    }
}

#[test]
fn without_faults_every_operation_completes_and_checks_pass() {
    check(0, 20, |s| SimConfig::calm(s, 5));
    check(0, 20, |s| SimConfig::calm(s, 3));
}

#[test]
fn five_replicas_survive_faults_seeds_0_to_500() {
    check(0, 500, |s| SimConfig::faulty(s, 5));
}

#[test]
fn five_replicas_survive_faults_seeds_500_to_1000() {
    check(500, 500, |s| SimConfig::faulty(s, 5));
}

#[test]
fn five_replicas_survive_faults_seeds_1000_to_1500() {
    check(1000, 500, |s| SimConfig::faulty(s, 5));
}

#[test]
fn five_replicas_survive_faults_seeds_1500_to_2000() {
    check(1500, 500, |s| SimConfig::faulty(s, 5));
}

#[test]
fn three_replicas_survive_faults() {
    check(10_000, 500, |s| SimConfig::faulty(s, 3));
}

#[test]
fn nodes_drained_and_undrained_at_random_keep_every_check() {
    let drains = |c: SimConfig| SimConfig {
        drain_per_10k: 200,
        ..c
    };
    check(40_000, 200, |s| drains(SimConfig::faulty(s, 3)));
    check(41_000, 100, |s| drains(SimConfig::membership(s, 5)));
}

#[test]
fn membership_changes_under_faults_five_replicas() {
    check(20_000, 600, |s| SimConfig::membership(s, 5));
}

#[test]
fn membership_changes_under_faults_three_replicas() {
    check(30_000, 600, |s| SimConfig::membership(s, 3));
}

#[test]
fn membership_changes_while_two_leaders_duel_five_replicas() {
    check(40_000, 300, |s| SimConfig::dueling(s, 5));
}

#[test]
fn membership_changes_while_two_leaders_duel_three_replicas() {
    check(50_000, 300, |s| SimConfig::dueling(s, 3));
}

/// Learners whose replica starts late (their node is up, the replica
/// answers nothing yet) are not promoted before the leader hears from them.
#[test]
fn membership_changes_with_learners_that_start_late() {
    check(80_000, 300, |s| SimConfig::late_learners(s, 3));
    check(81_000, 200, |s| SimConfig::late_learners(s, 5));
}

/// Every message between replicas takes longer than an election timeout (a
/// congested transport):
/// candidates that restarted before their promises could arrive would
/// never be elected; backed-off election timeouts let one finish, and the
/// group serves every operation.
#[test]
fn a_group_elects_and_serves_when_every_message_takes_longer_than_an_election_timeout() {
    check(60_000, 20, |s| SimConfig::congested(s, 5));
}

/// The same congested transport, and a failure detector that keeps
/// reporting live nodes down (late pings on a busy cluster): each report
/// used to start an election within one base timeout, however many had
/// failed in a row, so elections restarted before their promises could
/// arrive and the group never elected (a liveness failure with the fix
/// undone: `node_down` ignoring `election_backoff`).
#[test]
fn a_congested_group_elects_and_serves_while_live_nodes_are_reported_down() {
    // A report every 5 ticks on each node: with each report starting an
    // election within one base timeout, the first seed already fails.
    check(61_000, 20, |s| SimConfig::congested_suspicious(s, 5));
    // With three voters a candidate needs one promise besides its own, so
    // each false report about the leader's node used to depose it: the
    // first other voter campaigned at once, however many elections had
    // failed in a row, and the three deposed one another (10 of these
    // 100 seeds failed). It now campaigns at once only when its elections
    // have settled (`Replica::elections_settled`). Then seed 197 still
    // failed: every replica heard its leader's node reported down every
    // ~10 ticks, faster than a round trip, and each report brought its
    // election forward. A suspicion (pings missed) of a leader heard
    // within an election timeout now changes nothing (`DownReport`).
    check(0, 200, |s| SimConfig::congested_suspicious(s, 3));
}

/// A leader's node hangs, mostly while its group sleeps: a paused process
/// keeps its sessions, so the failure detector reports it only after 25
/// election timeouts, as the runtime's pings take seconds. Every operation
/// is answered within 15 election timeouts all the same: a request that
/// reaches a sleeping follower wakes its election timer
/// (`Replica::leader_wanted`).
#[test]
fn a_hung_leader_is_replaced_in_time_also_while_its_group_sleeps() {
    check(80_000, 100, |s| SimConfig::hung_leader(s, 5));
    check(81_000, 100, |s| SimConfig::hung_leader(s, 3));
}

/// Every fault, and false reports of live nodes down on top.
#[test]
fn five_replicas_survive_faults_and_false_suspicions() {
    check(70_000, 300, |s| SimConfig::faulty_suspicious(s, 5));
}

/// Finds a seed in `0..limit` for which the run fails; panics if none does.
fn some_seed_fails(limit: u64, make: impl Fn(u64) -> SimConfig) -> String {
    for seed in 0..limit {
        if let Err(f) = dike_core::sim::Simulation::new(make(seed)).run() {
            // Liveness failures do not count: the bug must break safety.
            assert!(
                !f.reason.starts_with("liveness"),
                "expected a safety violation, got: {f}"
            );
            return f.reason;
        }
    }
    panic!("no seed in 0..{limit} failed: the checks do not bite");
}

#[test]
fn the_checks_catch_replies_sent_before_the_write_is_durable() {
    let reason = some_seed_fails(400, |s| SimConfig {
        bugs: Bugs {
            reply_before_persist: true,
            ..Bugs::default()
        },
        crash_per_10k: 120,
        fsync_fail_pct: 0,
        ..SimConfig::faulty(s, 3)
    });
    eprintln!("caught: {reason}");
}

#[test]
fn the_checks_catch_a_ballot_reused_after_a_crash() {
    let reason = some_seed_fails(400, |s| SimConfig {
        bugs: Bugs {
            prepare_before_promise_durable: true,
            ..Bugs::default()
        },
        ..SimConfig::faulty(s, 3)
    });
    eprintln!("caught: {reason}");
}

#[test]
fn the_checks_catch_a_follower_acking_a_stale_leaders_read_round() {
    let reason = some_seed_fails(400, |s| SimConfig {
        bugs: Bugs {
            ack_stale_read_rounds: true,
            ..Bugs::default()
        },
        query_pct: 50,
        ..SimConfig::faulty(s, 5)
    });
    eprintln!("caught: {reason}");
}

/// The schedule that shows it is rare: about one membership schedule in
/// 4,000 (first at seed 4,720), and one dueling schedule in 500 (first at
/// seed 425 when this was written), hence the dueling schedule and the
/// longer search; seeds are deterministic, so the search ends at the same
/// seed every run.
#[test]
fn the_checks_catch_a_stop_sign_that_is_never_overtaken() {
    let reason = some_seed_fails(3_000, |s| SimConfig {
        bugs: Bugs {
            stop_sign_never_overtaken: true,
            ..Bugs::default()
        },
        membership_per_10k: 400,
        ..SimConfig::dueling(s, 3)
    });
    eprintln!("caught: {reason}");
}

#[test]
fn the_checks_catch_accepting_a_lower_ballot() {
    let reason = some_seed_fails(400, |s| SimConfig {
        bugs: Bugs {
            accept_lower_ballot: true,
            ..Bugs::default()
        },
        ..SimConfig::faulty(s, 5)
    });
    eprintln!("caught: {reason}");
}

#[test]
fn the_checks_catch_a_leader_that_ignores_promised_values() {
    let reason = some_seed_fails(400, |s| SimConfig {
        bugs: Bugs {
            ignore_promised_values: true,
            ..Bugs::default()
        },
        ..SimConfig::faulty(s, 5)
    });
    eprintln!("caught: {reason}");
}

#[test]
fn the_checks_catch_votes_counted_from_non_members() {
    let reason = some_seed_fails(400, |s| SimConfig {
        bugs: Bugs {
            count_non_voters: true,
            ..Bugs::default()
        },
        ..SimConfig::membership(s, 3)
    });
    eprintln!("caught: {reason}");
}

#[test]
fn the_checks_catch_two_membership_changes_in_flight() {
    let reason = some_seed_fails(400, |s| SimConfig {
        bugs: Bugs {
            concurrent_changes: true,
            ..Bugs::default()
        },
        membership_per_10k: 400,
        ..SimConfig::membership(s, 3)
    });
    eprintln!("caught: {reason}");
}

/// A leader that took a learner it never heard from as being at slot 0
/// promoted one whose replica had not started, in a log younger than
/// `max_learner_lag` (`dike master replace` did, and a master group lost its
/// quorum when one more master died).
#[test]
fn the_checks_catch_a_learner_promoted_before_its_replica_ran() {
    let reason = some_seed_fails(400, |s| SimConfig {
        bugs: Bugs {
            promote_unheard_learners: true,
            ..Bugs::default()
        },
        ..SimConfig::late_learners(s, 3)
    });
    assert!(reason.contains("before its replica ran"), "{reason}");
    eprintln!("caught: {reason}");
}

/// Callers route by a routing table that learns a membership change only
/// after the group chose it: a caller that follows leader hints only to
/// members the table lists never reaches a leader that just moved in, and
/// neither does the rebalancer that would record it (a liveness failure).
#[test]
fn the_checks_catch_callers_that_follow_hints_only_to_listed_members() {
    let mut caught = None;
    for seed in 0..2000 {
        let cfg = SimConfig {
            bugs: Bugs {
                hints_only_to_listed: true,
                ..Bugs::default()
            },
            transfer_per_10k: 200,
            ..SimConfig::membership(seed, 3)
        };
        if let Err(f) = dike_core::sim::Simulation::new(cfg).run() {
            caught = Some(format!("seed {seed}: {}", f.reason));
            break;
        }
    }
    let reason = caught.expect("no seed in 0..2000 failed: the checks do not bite");
    assert!(reason.contains(": liveness"), "{reason}");
    eprintln!("caught: {reason}");
}

/// Safety must rest on the ballot rules alone: a transfer target that
/// campaigns in the old leader's ballot (instead of a fresh, higher one of
/// its own) makes two leaders propose in one ballot once the old leader
/// gives the transfer up and resumes.
/// A bug the simulator could not see until it checked how long operations
/// wait (the `dike node` processes showed it: 5.4–6.1 s for a request to a
/// sleeping group whose leader hung): a sleeping follower that knows its
/// leader stayed asleep when a request reached it.
#[test]
fn the_checks_catch_a_sleeping_follower_that_waits_for_the_failure_detector() {
    let reason = some_seed_fails(20, |s| SimConfig {
        bugs: Bugs {
            sleeping_follower_stays_asleep: true,
            ..Bugs::default()
        },
        ..SimConfig::hung_leader(s, 3)
    });
    assert!(reason.starts_with("latency"), "{reason}");
    eprintln!("caught: {reason}");
}

#[test]
fn the_checks_catch_a_transfer_target_reusing_the_old_leaders_ballot() {
    let reason = some_seed_fails(400, |s| SimConfig {
        bugs: Bugs {
            transfer_reuses_ballot: true,
            ..Bugs::default()
        },
        transfer_per_10k: 200,
        ..SimConfig::faulty(s, 3)
    });
    eprintln!("caught: {reason}");
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Seeds beyond the ranges above that once failed, each fixed since: they
/// run on every `cargo test` so the fixes stay.
#[test]
fn seeds_that_found_bugs_at_scale_pass() {
    let seeds = [
        // Two voters left 8 slots behind in an idle group where every
        // member restarted and nobody led (a CatchUp from beyond a
        // member's commit now makes it ask back).
        (Schedule::Faulty, 12_011_440, 5),
        // A learner at slot 0 never caught up in an idle restarted group
        // (the rebalancer's configuration read now wants a leader).
        (Schedule::Membership, 115_272, 3),
        (Schedule::LateLearners, 83_129, 3),
        // A change whose record was lost left the group unread (the
        // rebalancer now re-reads it).
        (Schedule::Membership, 112_992, 3),
    ];
    for (schedule, seed, replicas) in seeds {
        if let Err(f) = run_traced(schedule.config(seed, replicas)) {
            panic!("{f}");
        }
    }
}

/// Replays one seed of one schedule with a trace: `DIKE_SIM_SCHEDULE=…
/// DIKE_SIM_SEED=… DIKE_SIM_REPLICAS=… cargo test -p dike-core --test
/// simulation replay_seed -- --nocapture` (the faulty schedule, seed 0 and 5
/// replicas by default). A failing run prints this command for itself.
#[test]
fn replay_seed() {
    let name: String = env_or("DIKE_SIM_SCHEDULE", "faulty".to_owned());
    let Some(schedule) = Schedule::named(&name) else {
        let names: Vec<_> = Schedule::ALL.iter().map(|s| s.name()).collect();
        panic!("DIKE_SIM_SCHEDULE={name:?} is none of {names:?}");
    };
    let seed = env_or("DIKE_SIM_SEED", 0u64);
    let replicas = env_or("DIKE_SIM_REPLICAS", 5usize);
    match run_traced(schedule.config(seed, replicas)) {
        Ok(r) => eprintln!("{name} seed {seed} passed: {r:?}"),
        Err(f) => panic!("{f}"),
    }
}
