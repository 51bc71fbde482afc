//! The contract every [`Storage`] implementation must pass.
//!
//! Call [`run_all`] from the implementation's tests with a constructor for
//! empty storage and, for durable engines, a function that closes and
//! reopens the same storage (a restart): everything written must come back.

use super::{Accepted, Recovered, Snapshot, Storage, Write};
use crate::config::Config;
use crate::entry::{Batch, Command, Entry};
use crate::ids::{Ballot, ClientId, MemberId, Slot};
use crate::session::SessionTable;
use std::sync::Arc;

fn ballot(round: u64) -> Ballot {
    Ballot {
        epoch: 0,
        round,
        leader: MemberId::new(round % 5 + 1, 1),
    }
}

fn entry(tag: u8) -> Entry {
    Entry::Batch(Batch {
        proposer: MemberId::new(1, 1),
        boot: 1,
        commands: Arc::from(vec![Command {
            client: ClientId(tag as u64),
            seq: 1,
            ack_floor: 1,
            payload: vec![tag; 3],
        }]),
    })
}

fn accept(slot: Slot, round: u64, tag: u8) -> Write {
    Write::Accept {
        slot,
        value: Accepted {
            ballot: ballot(round),
            entry: entry(tag),
        },
    }
}

fn snapshot(slot: Slot) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        slot,
        config: Config::initial(vec![
            MemberId::new(1, 1),
            MemberId::new(2, 1),
            MemberId::new(3, 1),
        ]),
        state: vec![1, 2, 3, slot as u8],
        sessions: SessionTable::new(),
    })
}

/// Runs every contract check. `reopen`, when given, must close the storage
/// and open it again from its durable form.
pub fn run_all<S, M, R>(make: M, reopen: Option<R>)
where
    S: Storage,
    M: Fn() -> S,
    R: Fn(S) -> S,
{
    let cycle = |s: S| match &reopen {
        Some(r) => r(s),
        None => s,
    };
    empty_storage_loads_empty(make());
    writes_come_back_in_order(make(), &cycle);
    promise_never_goes_down(make(), &cycle);
    later_accept_replaces_earlier(make(), &cycle);
    commit_never_goes_down(make(), &cycle);
    snapshot_drops_entries_at_or_below_it_only(make(), &cycle);
    older_snapshot_does_not_replace_newer(make(), &cycle);
    many_batches_survive(make(), &cycle);
    erase_forgets_everything(make(), &cycle);
}

fn erase_forgets_everything<S: Storage>(mut s: S, cycle: &dyn Fn(S) -> S) {
    s.write(&[Write::Promise(ballot(3)), accept(1, 3, 1), Write::Commit(1)])
        .expect("write");
    s.write(&[Write::Erase]).expect("erase");
    let s = cycle(s);
    assert_eq!(
        s.load().expect("load"),
        Recovered::default(),
        "an erased replica loads empty"
    );
}

fn empty_storage_loads_empty<S: Storage>(s: S) {
    assert_eq!(
        s.load().expect("load empty"),
        Recovered::default(),
        "fresh storage must be empty"
    );
}

fn writes_come_back_in_order<S: Storage>(mut s: S, cycle: &dyn Fn(S) -> S) {
    s.write(&[
        Write::Promise(ballot(3)),
        accept(1, 3, 1),
        accept(2, 3, 2),
        Write::Commit(1),
    ])
    .expect("write");
    let s = cycle(s);
    let r = s.load().expect("load");
    assert_eq!(r.promised, ballot(3));
    assert_eq!(r.log.len(), 2);
    assert_eq!(r.log[&1].entry, entry(1));
    assert_eq!(r.log[&2].ballot, ballot(3));
    assert_eq!(r.commit, 1);
    assert!(r.snapshot.is_none());
}

fn promise_never_goes_down<S: Storage>(mut s: S, cycle: &dyn Fn(S) -> S) {
    s.write(&[Write::Promise(ballot(7))]).expect("write");
    s.write(&[Write::Promise(ballot(4))]).expect("write");
    let s = cycle(s);
    assert_eq!(s.load().expect("load").promised, ballot(7));
}

fn later_accept_replaces_earlier<S: Storage>(mut s: S, cycle: &dyn Fn(S) -> S) {
    s.write(&[accept(5, 1, 1)]).expect("write");
    let mut s = cycle(s);
    s.write(&[accept(5, 2, 9)]).expect("write");
    let s = cycle(s);
    let r = s.load().expect("load");
    assert_eq!(
        r.log[&5],
        Accepted {
            ballot: ballot(2),
            entry: entry(9)
        }
    );
}

fn commit_never_goes_down<S: Storage>(mut s: S, cycle: &dyn Fn(S) -> S) {
    s.write(&[Write::Commit(10), Write::Commit(4)])
        .expect("write");
    let s = cycle(s);
    assert_eq!(s.load().expect("load").commit, 10);
}

fn snapshot_drops_entries_at_or_below_it_only<S: Storage>(mut s: S, cycle: &dyn Fn(S) -> S) {
    let writes: Vec<Write> = (1..=10).map(|i| accept(i, 1, i as u8)).collect();
    s.write(&writes).expect("write");
    s.write(&[Write::Snapshot(snapshot(6))])
        .expect("write snapshot");
    let mut s = cycle(s);
    let r = s.load().expect("load");
    assert_eq!(r.snapshot.as_deref(), Some(&*snapshot(6)));
    assert_eq!(r.log.keys().copied().collect::<Vec<_>>(), vec![7, 8, 9, 10]);
    assert!(r.commit >= 6, "a snapshot implies its slot is committed");
    // Writes after the snapshot keep working and survive a restart.
    s.write(&[accept(11, 2, 11), Write::Commit(11)])
        .expect("write");
    let s = cycle(s);
    let r = s.load().expect("load");
    assert_eq!(
        r.log.keys().copied().collect::<Vec<_>>(),
        vec![7, 8, 9, 10, 11]
    );
    assert_eq!(r.commit, 11);
}

fn older_snapshot_does_not_replace_newer<S: Storage>(mut s: S, cycle: &dyn Fn(S) -> S) {
    s.write(&[Write::Snapshot(snapshot(20)), Write::Snapshot(snapshot(12))])
        .expect("write");
    let s = cycle(s);
    assert_eq!(s.load().expect("load").snapshot.map(|x| x.slot), Some(20));
}

fn many_batches_survive<S: Storage>(mut s: S, cycle: &dyn Fn(S) -> S) {
    for round in 0..20u64 {
        let base = round * 50;
        let writes: Vec<Write> = (1..=50)
            .map(|i| accept(base + i, round + 1, i as u8))
            .collect();
        s.write(&writes).expect("write");
        s.write(&[Write::Commit(base + 50)]).expect("commit");
        if round == 9 {
            s = cycle(s);
        }
    }
    let s = cycle(s);
    let r = s.load().expect("load");
    assert_eq!(r.log.len(), 1000);
    assert_eq!(r.commit, 1000);
    assert_eq!(r.log[&777].ballot, ballot(16));
}
