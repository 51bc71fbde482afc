//! The simulator's checks: agreement, ordered application, exactly-once
//! application, effects at most once, and linearizability.

use super::client::Client;
use super::register::{Action, RegisterRequest, RegisterSpec, Ret};
use super::wgl::{self, HistoryOp};
use crate::codec;
use crate::config::Config;
use crate::entry::Entry;
use crate::ids::{Ballot, ClientId, MemberId, Slot};
use crate::ready::AppliedSlot;
use crate::storage::Accepted;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Where a command was first applied, and by whom it was proposed.
#[derive(Debug, Clone, Copy)]
struct FreshApply {
    slot: Slot,
    op: u64,
    proposer: MemberId,
    boot: u64,
}

/// How long the linearizability search of one schedule may run: a search
/// that runs out fails the schedule (it is never taken as a pass).
const LINEARIZABILITY_BUDGET: Duration = Duration::from_secs(20);

pub(crate) struct Checker {
    /// The clients' operations, for the linearizability search; the times
    /// are positions in `history`.
    ops: Vec<HistoryOp<Action, Ret>>,
    /// Each client's operation in flight (an index into `ops`).
    pending: BTreeMap<usize, usize>,
    history: Vec<String>,
    chosen: BTreeMap<Slot, Entry>,
    last_applied: BTreeMap<MemberId, Slot>,
    /// Slots each member applied from its log in its current life.
    applied_by: BTreeMap<(MemberId, u64), BTreeSet<Slot>>,
    fresh: BTreeMap<(ClientId, u64), FreshApply>,
    /// Every value proposed in each ballot for each slot, with the life of
    /// the member that proposed it.
    proposed: BTreeMap<(Ballot, Slot), (Entry, u64)>,
    /// The life (boot) of its owner that first sent each ballot.
    ballot_lives: BTreeMap<Ballot, u64>,
    /// The voters of each epoch (the initial configuration's, then those
    /// of each chosen stop-sign).
    voters: BTreeMap<u64, Vec<MemberId>>,
    /// The highest promise each member holds durably.
    durable_promise: BTreeMap<MemberId, Ballot>,
    /// Who accepted each (ballot, slot) in phase 2, durably.
    accepted_by: BTreeMap<(Ballot, Slot), BTreeSet<MemberId>>,
    /// The value chosen at each slot (a quorum of its epoch's voters
    /// durably accepted it in one ballot), and that ballot.
    chosen_by_quorum: BTreeMap<Slot, (Ballot, Entry)>,
    failure: Option<String>,
}

impl Checker {
    pub fn new(initial: &Config) -> Self {
        Checker {
            ops: Vec::new(),
            pending: BTreeMap::new(),
            history: Vec::new(),
            chosen: BTreeMap::new(),
            last_applied: BTreeMap::new(),
            applied_by: BTreeMap::new(),
            fresh: BTreeMap::new(),
            proposed: BTreeMap::new(),
            ballot_lives: BTreeMap::new(),
            voters: BTreeMap::from([(initial.epoch, initial.voters.clone())]),
            accepted_by: BTreeMap::new(),
            durable_promise: BTreeMap::new(),
            chosen_by_quorum: BTreeMap::new(),
            failure: None,
        }
    }

    pub fn fail(&mut self, reason: String) {
        if self.failure.is_none() {
            self.failure = Some(reason);
        }
    }

    pub fn take_failure(&mut self) -> Result<(), String> {
        match self.failure.take() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    pub fn on_invoke(&mut self, client: usize, action: Action) {
        let at = self.history.len() as u64;
        self.history
            .push(format!("client {client} invokes {action:?}"));
        if self.pending.insert(client, self.ops.len()).is_some() {
            self.fail(format!("history recording: client {client} invoked twice"));
        }
        self.ops.push(HistoryOp {
            op: action,
            invoke: at,
            ret: None,
        });
    }

    pub fn on_return(&mut self, client: usize, ret: Ret) {
        let at = self.history.len() as u64;
        self.history
            .push(format!("client {client} returns {ret:?}"));
        match self.pending.remove(&client) {
            Some(i) => self.ops[i].ret = Some((at, ret)),
            None => self.fail(format!(
                "history recording: client {client} returned without an invocation"
            )),
        }
    }

    /// The owner of `ballot`, in its life `boot`, sent a message of that
    /// ballot to another member. A ballot belongs to one life: a later life
    /// that campaigns with a ballot an earlier one already showed to others
    /// may get a second value chosen under it.
    pub fn on_ballot_sent(&mut self, ballot: Ballot, boot: u64) {
        match self.ballot_lives.get(&ballot) {
            Some(&first) if first != boot => self.fail(format!(
                "ballot {ballot} was used by two lives of {}: boots {first} and {boot}",
                ballot.leader
            )),
            Some(_) => {}
            None => {
                self.ballot_lives.insert(ballot, boot);
            }
        }
    }

    /// `member` answered `Accept(ballot, slot)` with `Accepted`, which it
    /// sends only once its acceptance is durable. Once a quorum of the
    /// epoch's voters accepted in one ballot, that ballot's value is chosen:
    /// no slot may be chosen with two values, and every proposal of a
    /// higher ballot at that slot must carry the chosen value (Paxos's P2c),
    /// whether or not any replica ever applies it.
    pub fn on_accepted_sent(&mut self, member: MemberId, ballot: Ballot, slot: Slot) {
        self.accepted_by
            .entry((ballot, slot))
            .or_default()
            .insert(member);
        self.settle_chosen((ballot, slot));
    }

    /// `member` made a promise of `ballot` durable.
    pub fn on_durable_promise(&mut self, member: MemberId, ballot: Ballot) {
        let p = self.durable_promise.entry(member).or_insert(ballot);
        *p = (*p).max(ballot);
    }

    /// `member` acknowledged read round `round` of the leader of `ballot`.
    /// A member that has durably promised a higher ballot must refuse: the
    /// leader it would confirm may already be replaced, and its reads stale.
    pub fn on_read_ack(&mut self, member: MemberId, ballot: Ballot, round: u64) {
        if let Some(p) = self.durable_promise.get(&member).filter(|p| **p > ballot) {
            let p = *p;
            self.fail(format!(
                "{member} acknowledged read round {round} of ballot {ballot} after promising {p}"
            ));
        }
    }

    /// `member`, in its life `boot`, made `value` at `slot` durable. A
    /// proposer accepts its own proposal this way (it sends itself no
    /// `Accepted` over the network); a value learnt from others (catch-up)
    /// is no acceptance and is not counted.
    pub fn on_durable_accept(&mut self, member: MemberId, boot: u64, slot: Slot, value: &Accepted) {
        let b = value.ballot;
        let own = b.leader == member
            && self
                .proposed
                .get(&(b, slot))
                .is_some_and(|(e, life)| *life == boot && *e == value.entry);
        if own {
            self.on_accepted_sent(member, b, slot);
        }
    }

    /// Whether `key` reached a quorum now; if so records and checks it.
    fn settle_chosen(&mut self, key: (Ballot, Slot)) {
        let (ballot, slot) = key;
        let Some(voters) = self.voters.get(&ballot.epoch) else {
            return; // the epoch's configuration is not known yet
        };
        let (Some((entry, _)), Some(by)) = (self.proposed.get(&key), self.accepted_by.get(&key))
        else {
            return;
        };
        let votes = voters.iter().filter(|v| by.contains(v)).count();
        if votes < voters.len() / 2 + 1 {
            return;
        }
        let entry = entry.clone();
        match self.chosen_by_quorum.get(&slot) {
            Some((_, first)) if *first != entry => {
                let first = first.clone();
                self.fail(format!(
                    "slot {slot} was chosen twice: {first:?} and, in ballot {ballot}, {entry:?}"
                ));
                return;
            }
            Some((b, _)) if *b <= ballot => return,
            _ => {}
        }
        self.chosen_by_quorum.insert(slot, (ballot, entry.clone()));
        // Stoppable Paxos: once a stop-sign of epoch e is chosen at s,
        // nothing after s is chosen in epoch e.
        let epoch = ballot.epoch;
        let clash = self.chosen_by_quorum.iter().find(|(s, (b, e))| {
            b.epoch == epoch
                && ((matches!(entry, Entry::StopSign(_)) && **s > slot)
                    || (matches!(e, Entry::StopSign(_)) && **s < slot))
        });
        if let Some((s, (b, e))) = clash {
            let (s, b, e) = (*s, *b, e.clone());
            self.fail(format!(
                "epoch {epoch} chose {entry:?} at slot {slot} (ballot {ballot}) and {e:?} at slot {s} (ballot {b}): nothing follows a chosen stop-sign in its epoch"
            ));
            return;
        }

        // Higher ballots proposed at this slot must agree.
        let later: Vec<(Ballot, Entry)> = self
            .proposed
            .range((ballot, slot)..)
            .filter(|((b, s), _)| *s == slot && *b > ballot)
            .map(|((b, _), (e, _))| (*b, e.clone()))
            .collect();
        for (b, e) in later {
            if e != entry {
                self.fail(format!(
                    "slot {slot} was chosen in ballot {ballot} with {entry:?}, yet ballot {b} proposed {e:?} there"
                ));
            }
        }
        if let Entry::StopSign(next) = &entry {
            if let std::collections::btree_map::Entry::Vacant(v) = self.voters.entry(next.epoch) {
                v.insert(next.voters.clone());
                let pending: Vec<(Ballot, Slot)> = self
                    .accepted_by
                    .keys()
                    .filter(|(b, _)| b.epoch == next.epoch)
                    .copied()
                    .collect();
                for k in pending {
                    self.settle_chosen(k);
                }
            }
        }
    }

    /// A member (in its life `boot`) sent `Accept(ballot, slot, entry)`.
    /// One ballot proposes at most one value per slot: a second one means
    /// two proposers (or two lives of one) used the same ballot, and
    /// followers that infer "chosen" from ballot equality would then apply
    /// different values.
    pub fn on_accept_sent(&mut self, ballot: Ballot, slot: Slot, entry: &Entry, boot: u64) {
        match self.proposed.get(&(ballot, slot)) {
            Some((first, _)) if first == entry => {}
            Some((first, first_boot)) => self.fail(format!(
                "ballot {ballot} proposed two values for slot {slot}: {first:?} (life {first_boot}) and {entry:?} (life {boot})"
            )),
            None => {
                self.proposed.insert((ballot, slot), (entry.clone(), boot));
            }
        }
        if let Some((b, chosen)) = self.chosen_by_quorum.get(&slot) {
            if ballot > *b && chosen != entry {
                let (b, chosen) = (*b, chosen.clone());
                self.fail(format!(
                    "slot {slot} was chosen in ballot {b} with {chosen:?}, yet ballot {ballot} proposes {entry:?} there"
                ));
            }
        }
    }

    pub fn on_start(&mut self, member: MemberId, _boot: u64, applied: Slot) {
        self.last_applied.insert(member, applied);
    }

    pub fn on_applied(&mut self, member: MemberId, boot: u64, a: &AppliedSlot) {
        let last = self.last_applied.get(&member).copied().unwrap_or(0);
        if a.slot <= last {
            self.fail(format!(
                "{member} applied slot {} after slot {last}: out of order",
                a.slot
            ));
        }
        self.last_applied.insert(member, a.slot);
        self.applied_by
            .entry((member, boot))
            .or_default()
            .insert(a.slot);
        match self.chosen.get(&a.slot) {
            Some(e) if *e != a.entry => {
                self.fail(format!(
                    "agreement: slot {} applied as {:?} and as {:?} (by {member})",
                    a.slot, e, a.entry
                ));
                return;
            }
            Some(_) => {}
            None => {
                self.chosen.insert(a.slot, a.entry.clone());
            }
        }
        let Entry::Batch(b) = &a.entry else { return };
        for (cmd, fresh) in b.commands.iter().zip(&a.fresh) {
            if !fresh {
                continue;
            }
            let key = (cmd.client, cmd.seq);
            let op = codec::decode::<RegisterRequest>("request", &cmd.payload)
                .map_or(u64::MAX, |r| r.op);
            match self.fresh.get(&key) {
                Some(f) if f.slot != a.slot => {
                    self.fail(format!(
                        "exactly-once: command {key:?} applied at slot {} and again at slot {}",
                        f.slot, a.slot
                    ));
                }
                Some(_) => {}
                None => {
                    self.fresh.insert(
                        key,
                        FreshApply {
                            slot: a.slot,
                            op,
                            proposer: b.proposer,
                            boot: b.boot,
                        },
                    );
                }
            }
        }
    }

    pub fn final_checks(
        &mut self,
        clients: &[Client],
        boots: &[(MemberId, u64)],
        effects: &BTreeMap<u64, u32>,
    ) -> Result<(), String> {
        self.take_failure()?;
        for c in clients {
            for key in &c.acked {
                if !self.fresh.contains_key(key) {
                    return Err(format!("acknowledged command {key:?} was never applied"));
                }
            }
        }
        for (op, n) in effects {
            if *n > 1 {
                return Err(format!("effect of operation {op:#x} ran {n} times"));
            }
        }
        for (key, f) in &self.fresh {
            let alive_same_life = boots.iter().any(|(m, b)| *m == f.proposer && *b == f.boot);
            let applied_it = self
                .applied_by
                .get(&(f.proposer, f.boot))
                .is_some_and(|s| s.contains(&f.slot));
            let ran = effects.get(&f.op).copied().unwrap_or(0);
            if alive_same_life && applied_it && ran != 1 {
                return Err(format!(
                    "effect of command {key:?} (op {:#x}, slot {}) ran {ran} times though its proposer {} applied it and never restarted",
                    f.op, f.slot, f.proposer
                ));
            }
        }
        let tail = self.history.len().saturating_sub(60);
        match wgl::check(RegisterSpec::default(), &self.ops, LINEARIZABILITY_BUDGET) {
            Some(true) => Ok(()),
            Some(false) => Err(format!(
                "history is not linearizable; last events:\n    {}",
                self.history[tail..].join("\n    ")
            )),
            None => Err(format!(
                "the linearizability search could not decide within {LINEARIZABILITY_BUDGET:?} ({} operations); last events:\n    {}",
                self.ops.len(),
                self.history[tail..].join("\n    ")
            )),
        }
    }
}
