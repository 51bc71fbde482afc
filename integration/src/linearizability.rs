//! Linearizability of a recorded history, key by key: a search for a total
//! order of the operations that respects real time and the key's sequential
//! specification ([`crate::wgl`], with memoised configurations; its answers
//! are cross-checked against stateright's `LinearizabilityTester` on random
//! histories).
//!
//! How outcomes enter the tester:
//! - `Ok(ret)`: invoked and returned, in real-time order of the two events;
//! - `Fail`: certainly without effect, left out;
//! - `Unknown` (and still in flight): invoked and never returned. The tester
//!   treats an operation in flight at the end as optional: it may be placed
//!   anywhere after its invocation, or nowhere — exactly "may or may not
//!   have happened". Its process must not invoke anything after it (the
//!   recorder's workers take a fresh process id).
//! - reads that did not return are left out (they change nothing);
//! - an unknown write or set insert whose (unique) value no completed
//!   operation ever returned is left out: placed anywhere but last, the
//!   next operation on the key would have returned its value, so "nowhere"
//!   is as good as any place. This keeps the search small when a fault
//!   leaves many operations unknown; unknown counter adds always stay.
//!
//! The search is exponential in the worst case (the cache makes it about
//! linear in the distinct (linearized set, state) pairs, which unknown
//! counter adds multiply only by the values they can sum to), so every key
//! is checked under a time budget; a key that runs out of budget is
//! reported [`KeyResult::Inconclusive`], never as linearizable.

use crate::history::{Model, Op, Outcome, Record, Ret};
use crate::wgl::{self, HistoryOp};
use stateright::semantics::SequentialSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A return value as the search handles it: [`Ret`] with a set's elements
/// shared, since the tester clones its partial order at every step and a
/// set read of a long run holds hundreds of elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Out {
    /// See [`Ret::Value`].
    Value(Option<u64>),
    /// See [`Ret::Cas`].
    Cas(Result<Option<u64>, Option<u64>>),
    /// See [`Ret::Count`].
    Count(i64),
    /// See [`Ret::Inserted`].
    Inserted(bool),
    /// See [`Ret::Elements`].
    Elements(Arc<BTreeSet<u64>>),
    /// See [`Ret::Mismatch`].
    Mismatch,
}

impl From<&Ret> for Out {
    fn from(r: &Ret) -> Self {
        match r {
            Ret::Value(v) => Out::Value(*v),
            Ret::Cas(c) => Out::Cas(*c),
            Ret::Count(c) => Out::Count(*c),
            Ret::Inserted(b) => Out::Inserted(*b),
            Ret::Elements(e) => Out::Elements(Arc::new(e.clone())),
            Ret::Mismatch => Out::Mismatch,
        }
    }
}

/// A register with read, write (returns the previous value) and
/// compare-and-set — the kv server's semantics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegisterSpec(pub Option<u64>);

impl SequentialSpec for RegisterSpec {
    type Op = Op;
    type Ret = Out;

    fn invoke(&mut self, op: &Op) -> Out {
        match *op {
            Op::Read => Out::Value(self.0),
            Op::Write(v) => Out::Value(self.0.replace(v)),
            Op::Cas { expect, new } => {
                if self.0 == expect {
                    self.0 = Some(new);
                    Out::Cas(Ok(expect))
                } else {
                    Out::Cas(Err(self.0))
                }
            }
            _ => Out::Mismatch,
        }
    }
}

/// An integer counter: add returns the new value — the arithmetic server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CounterSpec(pub i64);

impl SequentialSpec for CounterSpec {
    type Op = Op;
    type Ret = Out;

    fn invoke(&mut self, op: &Op) -> Out {
        match *op {
            Op::Add(n) => {
                self.0 = self.0.wrapping_add(n);
                Out::Count(self.0)
            }
            Op::ReadCounter => Out::Count(self.0),
            _ => Out::Mismatch,
        }
    }
}

/// A grow-only set: insert returns whether the element was new; read
/// returns every element.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SetSpec(pub BTreeSet<u64>);

impl SequentialSpec for SetSpec {
    type Op = Op;
    type Ret = Out;

    fn invoke(&mut self, op: &Op) -> Out {
        match op {
            Op::Insert(x) => Out::Inserted(self.0.insert(*x)),
            Op::ReadSet => Out::Elements(Arc::new(self.0.clone())),
            _ => Out::Mismatch,
        }
    }

    fn is_valid_step(&mut self, op: &Op, ret: &Out) -> bool {
        // Compare without cloning the set on every read.
        match (op, ret) {
            (Op::ReadSet, Out::Elements(e)) => **e == self.0,
            _ => self.invoke(op) == *ret,
        }
    }
}

/// The verdict on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyResult {
    /// A valid total order exists.
    Linearizable,
    /// No total order explains what the clients saw.
    NotLinearizable,
    /// The search did not finish within the budget.
    Inconclusive(String),
    /// The history itself is malformed (e.g. two operations in flight on
    /// one process, or operations of two models on one key).
    Invalid(String),
}

/// The verdict on one key, with what it covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVerdict {
    /// The key.
    pub key: String,
    /// Its model.
    pub model: Model,
    /// Operations given to the tester (completed + possibly applied).
    pub ops: usize,
    /// Of those, operations whose outcome is unknown.
    pub unknown: usize,
    /// The result.
    pub result: KeyResult,
    /// How long the check took.
    pub took: Duration,
}

/// The checker's verdict on a whole history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// One verdict per key, in key order.
    pub keys: Vec<KeyVerdict>,
}

impl Verdict {
    /// Whether every key is linearizable.
    pub fn is_linearizable(&self) -> bool {
        self.keys
            .iter()
            .all(|k| k.result == KeyResult::Linearizable)
    }

    /// The keys that are not linearizable, inconclusive or invalid.
    pub fn problems(&self) -> impl Iterator<Item = &KeyVerdict> {
        self.keys
            .iter()
            .filter(|k| k.result != KeyResult::Linearizable)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: usize = self.keys.iter().map(|k| k.ops).sum();
        let unknown: usize = self.keys.iter().map(|k| k.unknown).sum();
        let bad = self.problems().count();
        if bad == 0 {
            write!(
                f,
                "linearizable: {} keys, {ops} operations ({unknown} of unknown outcome)",
                self.keys.len()
            )
        } else {
            write!(
                f,
                "NOT linearizable or not checked: {bad} of {} keys",
                self.keys.len()
            )?;
            for k in self.problems() {
                write!(
                    f,
                    "\n  {} ({:?}, {} ops): {:?}",
                    k.key, k.model, k.ops, k.result
                )?;
            }
            Ok(())
        }
    }
}

/// The operations of one key's records as the search takes them, with how
/// many there are and how many of unknown outcome. Reads that did not
/// return are left out (they change nothing), and so are unknown writes
/// nobody observed (see the module documentation).
fn history(records: &[&Record]) -> (Vec<HistoryOp<Op, Out>>, Vec<u64>, usize, usize) {
    let observed = observed_values(records);
    let mut ops = Vec::new();
    let mut processes = Vec::new();
    let mut unknown = 0;
    for r in records {
        match &r.outcome {
            Some(Outcome::Ok(ret)) => {
                let at = r.return_us.unwrap_or(r.invoke_us);
                processes.push(r.process);
                ops.push(HistoryOp {
                    op: r.op.clone(),
                    invoke: r.invoke_us,
                    ret: Some((at, Out::from(ret))),
                });
            }
            Some(Outcome::Fail(_)) => {}
            Some(Outcome::Unknown(_)) | None => {
                let unobserved = match r.op {
                    Op::Write(v) | Op::Cas { new: v, .. } | Op::Insert(v) => !observed.contains(&v),
                    _ => false,
                };
                if !r.op.is_read() && !unobserved {
                    unknown += 1;
                    processes.push(r.process);
                    ops.push(HistoryOp {
                        op: r.op.clone(),
                        invoke: r.invoke_us,
                        ret: None,
                    });
                }
            }
        }
    }
    let n = ops.len();
    (ops, processes, n, unknown)
}

/// Why the history is malformed, if it is: a process has one operation at
/// a time, and none after one whose outcome is unknown.
fn malformed(ops: &[HistoryOp<Op, Out>], processes: &[u64]) -> Option<String> {
    let mut by_process: BTreeMap<u64, Vec<&HistoryOp<Op, Out>>> = BTreeMap::new();
    for (o, p) in ops.iter().zip(processes) {
        by_process.entry(*p).or_default().push(o);
    }
    for (p, mut list) in by_process {
        list.sort_by_key(|o| o.invoke);
        for w in list.windows(2) {
            match &w[0].ret {
                None => {
                    return Some(format!(
                        "process {p} invokes {:?} after an operation of unknown outcome",
                        w[1].op
                    ))
                }
                Some((at, _)) if *at > w[1].invoke => {
                    return Some(format!("process {p} has two operations in flight at once"))
                }
                Some(_) => {}
            }
        }
    }
    None
}

/// Every value some completed operation of the key returned.
fn observed_values(records: &[&Record]) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    for r in records {
        if let Some(Outcome::Ok(ret)) = &r.outcome {
            match ret {
                Ret::Value(v) | Ret::Cas(Ok(v) | Err(v)) => seen.extend(*v),
                Ret::Elements(e) => seen.extend(e),
                Ret::Count(_) | Ret::Inserted(_) | Ret::Mismatch => {}
            }
        }
    }
    seen
}

/// Checks one key's records (all of one model) within `budget`.
pub fn check_key(key: &str, records: &[&Record], budget: Duration) -> KeyVerdict {
    let started = Instant::now();
    let models: BTreeSet<Model> = records.iter().map(|r| r.op.model()).collect();
    let model = models.first().copied().unwrap_or(Model::Register);
    let (events, processes, ops, unknown) = history(records);
    let verdict = |result| KeyVerdict {
        key: key.to_owned(),
        model,
        ops,
        unknown,
        result,
        took: started.elapsed(),
    };
    if models.len() > 1 {
        return verdict(KeyResult::Invalid(format!(
            "operations of several models on one key: {models:?}"
        )));
    }
    if let Some(why) = malformed(&events, &processes) {
        return verdict(KeyResult::Invalid(why));
    }
    let answer = match model {
        Model::Register => wgl::check(RegisterSpec::default(), &events, budget),
        Model::Counter => wgl::check(CounterSpec::default(), &events, budget),
        Model::Set => wgl::check(SetSpec::default(), &events, budget),
    };
    match answer {
        Some(true) => verdict(KeyResult::Linearizable),
        Some(false) => verdict(KeyResult::NotLinearizable),
        None => verdict(KeyResult::Inconclusive(format!(
            "search did not finish within {budget:?}"
        ))),
    }
}

/// Checks every key of `records`, each within `budget_per_key`.
pub fn check(records: &[Record], budget_per_key: Duration) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_key.entry(&r.key).or_default().push(r);
    }
    Verdict {
        keys: by_key
            .into_iter()
            .map(|(k, rs)| check_key(k, &rs, budget_per_key))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;

    const BUDGET: Duration = Duration::from_secs(10);

    /// One hand-written operation: `(process, op, invoke, return, outcome)`
    /// with times in µs.
    type Line = (u64, Op, u64, Option<u64>, Option<Outcome>);

    fn history(ops: &[Line]) -> Vec<Record> {
        ops.iter()
            .map(|(p, op, i, r, o)| Record {
                process: *p,
                worker: *p as usize,
                key: "k".into(),
                op: op.clone(),
                invoke_us: *i,
                return_us: *r,
                outcome: o.clone(),
            })
            .collect()
    }

    fn ok(r: Ret) -> Option<Outcome> {
        Some(Outcome::Ok(r))
    }

    fn unknown() -> Option<Outcome> {
        Some(Outcome::Unknown("timed out".into()))
    }

    fn result(records: &[Record]) -> KeyResult {
        let v = check(records, BUDGET);
        assert_eq!(v.keys.len(), 1);
        v.keys[0].result.clone()
    }

    fn v(x: u64) -> Ret {
        Ret::Value(Some(x))
    }

    #[test]
    fn a_concurrent_register_history_with_cas_is_linearizable() {
        let h = history(&[
            (1, Op::Write(1), 0, Some(10), ok(Ret::Value(None))),
            // Concurrent with each other: the read may see either order.
            (1, Op::Write(2), 20, Some(40), ok(v(1))),
            (2, Op::Read, 25, Some(30), ok(v(2))),
            (
                3,
                Op::Cas {
                    expect: Some(2),
                    new: 3,
                },
                50,
                Some(60),
                ok(Ret::Cas(Ok(Some(2)))),
            ),
            (
                2,
                Op::Cas {
                    expect: Some(2),
                    new: 4,
                },
                70,
                Some(80),
                ok(Ret::Cas(Err(Some(3)))),
            ),
            (1, Op::Read, 90, Some(95), ok(v(3))),
        ]);
        assert_eq!(result(&h), KeyResult::Linearizable);
    }

    #[test]
    fn counters_and_sets_with_concurrent_operations_are_linearizable() {
        let mut h = history(&[
            (1, Op::Add(2), 0, Some(30), ok(Ret::Count(5))),
            (2, Op::Add(3), 5, Some(10), ok(Ret::Count(3))),
            (3, Op::ReadCounter, 40, Some(50), ok(Ret::Count(5))),
        ]);
        h.extend(
            history(&[
                (1, Op::Insert(7), 0, Some(30), ok(Ret::Inserted(true))),
                (2, Op::Insert(7), 5, Some(10), ok(Ret::Inserted(false))),
                (3, Op::ReadSet, 8, Some(9), ok(Ret::Elements([7].into()))),
                (3, Op::ReadSet, 40, Some(50), ok(Ret::Elements([7].into()))),
            ])
            .into_iter()
            .map(|mut r| {
                r.key = "s".into();
                r
            }),
        );
        let verdict = check(&h, BUDGET);
        assert!(verdict.is_linearizable(), "{verdict}");
        assert_eq!(verdict.keys.len(), 2);
    }

    #[test]
    fn an_unknown_write_may_have_happened_or_not_but_not_before_its_invocation() {
        // Seen by a later read: it happened.
        let seen = history(&[
            (1, Op::Write(1), 0, Some(10), ok(Ret::Value(None))),
            (2, Op::Write(2), 20, Some(5000), unknown()),
            (3, Op::Read, 30, Some(40), ok(v(2))),
            (3, Op::Read, 50, Some(60), ok(v(2))),
        ]);
        assert_eq!(result(&seen), KeyResult::Linearizable);
        // Never seen: it did not happen (or not yet).
        let unseen = history(&[
            (1, Op::Write(1), 0, Some(10), ok(Ret::Value(None))),
            (2, Op::Write(2), 20, Some(5000), unknown()),
            (3, Op::Read, 6000, Some(6010), ok(v(1))),
        ]);
        assert_eq!(result(&unseen), KeyResult::Linearizable);
        // It may even take effect long after its timeout.
        let late = history(&[
            (2, Op::Write(2), 20, Some(5000), unknown()),
            (3, Op::Read, 6000, Some(6010), ok(Ret::Value(None))),
            (3, Op::Read, 7000, Some(7010), ok(v(2))),
        ]);
        assert_eq!(result(&late), KeyResult::Linearizable);
        // Seen before it was invoked: impossible.
        let early = history(&[
            (3, Op::Read, 0, Some(10), ok(v(2))),
            (2, Op::Write(2), 20, Some(5000), unknown()),
        ]);
        assert_eq!(result(&early), KeyResult::NotLinearizable);
        // A failed write never happened.
        let failed = history(&[
            (
                2,
                Op::Write(2),
                0,
                Some(10),
                Some(Outcome::Fail("unknown group".into())),
            ),
            (3, Op::Read, 20, Some(30), ok(v(2))),
        ]);
        assert_eq!(result(&failed), KeyResult::NotLinearizable);
    }

    #[test]
    fn many_unknown_set_inserts_check_quickly_and_observed_ones_still_count() {
        // 40 unknown inserts, one of them observed by a later read.
        let mut ops: Vec<Line> = (0..40u64)
            .map(|i| (100 + i, Op::Insert(i), i * 10, Some(9000), unknown()))
            .collect();
        ops.push((
            1,
            Op::ReadSet,
            10_000,
            Some(10_010),
            ok(Ret::Elements([7].into())),
        ));
        ops.push((
            1,
            Op::ReadSet,
            10_020,
            Some(10_030),
            ok(Ret::Elements([7].into())),
        ));
        let started = Instant::now();
        assert_eq!(result(&history(&ops)), KeyResult::Linearizable);
        assert!(started.elapsed() < Duration::from_secs(5));
        let v = check(&history(&ops), BUDGET);
        assert_eq!(
            v.keys[0].unknown, 1,
            "only the observed unknown insert is searched"
        );
        // An observed unknown still has to fit: 7 seen, then gone.
        ops.push((
            1,
            Op::ReadSet,
            10_040,
            Some(10_050),
            ok(Ret::Elements([].into())),
        ));
        assert_eq!(result(&history(&ops)), KeyResult::NotLinearizable);
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let h = history(&[
            (1, Op::Write(1), 0, Some(10), ok(Ret::Value(None))),
            (2, Op::Read, 20, Some(30), ok(Ret::Value(None))),
        ]);
        assert_eq!(result(&h), KeyResult::NotLinearizable);
        let counter = history(&[
            (1, Op::Add(1), 0, Some(10), ok(Ret::Count(1))),
            (1, Op::Add(1), 20, Some(30), ok(Ret::Count(2))),
            (2, Op::ReadCounter, 40, Some(50), ok(Ret::Count(1))),
        ]);
        assert_eq!(result(&counter), KeyResult::NotLinearizable);
        let set = history(&[
            (1, Op::Insert(1), 0, Some(10), ok(Ret::Inserted(true))),
            (2, Op::Insert(2), 0, Some(10), ok(Ret::Inserted(true))),
            (3, Op::ReadSet, 40, Some(50), ok(Ret::Elements([2].into()))),
        ]);
        assert_eq!(result(&set), KeyResult::NotLinearizable);
    }

    #[test]
    fn a_stale_read_is_caught() {
        let h = history(&[
            (1, Op::Write(1), 0, Some(10), ok(Ret::Value(None))),
            (1, Op::Write(2), 20, Some(30), ok(v(1))),
            (2, Op::Read, 40, Some(50), ok(v(1))),
        ]);
        assert_eq!(result(&h), KeyResult::NotLinearizable);
    }

    #[test]
    fn a_duplicated_compare_and_set_is_caught() {
        // The cas 1 → 2 applied twice: after the write of 1 it is back at 2.
        let h = history(&[
            (1, Op::Write(1), 0, Some(10), ok(Ret::Value(None))),
            (
                1,
                Op::Cas {
                    expect: Some(1),
                    new: 2,
                },
                20,
                Some(30),
                ok(Ret::Cas(Ok(Some(1)))),
            ),
            (2, Op::Write(1), 40, Some(50), ok(v(2))),
            (2, Op::Read, 60, Some(70), ok(v(2))),
        ]);
        assert_eq!(result(&h), KeyResult::NotLinearizable);
        // And a duplicated add on a counter.
        let counter = history(&[
            (1, Op::Add(5), 0, Some(10), ok(Ret::Count(5))),
            (2, Op::ReadCounter, 20, Some(30), ok(Ret::Count(10))),
        ]);
        assert_eq!(result(&counter), KeyResult::NotLinearizable);
    }

    #[test]
    fn a_process_that_invokes_after_an_unknown_outcome_makes_the_history_invalid() {
        let h = history(&[
            (1, Op::Write(1), 0, Some(10), unknown()),
            (1, Op::Write(2), 20, Some(30), ok(v(1))),
        ]);
        assert!(matches!(result(&h), KeyResult::Invalid(_)));
    }

    #[test]
    fn the_recorder_feeds_the_checker() {
        let h = Recorder::new();
        let p = h.new_process();
        let a = h.invoke(p, 0, "k", Op::Write(4));
        h.complete(a, Outcome::Ok(Ret::Value(None)));
        let b = h.invoke(p, 0, "k", Op::Read);
        h.complete(b, Outcome::Ok(v(4)));
        let verdict = check(&h.records(), BUDGET);
        assert!(verdict.is_linearizable(), "{verdict}");
        assert!(verdict
            .to_string()
            .starts_with("linearizable: 1 keys, 2 operations"));
    }

    #[test]
    fn a_long_low_concurrency_history_checks_quickly() {
        // 4 processes, 400 operations: the size of a key in a CI run.
        let mut ops = Vec::new();
        let mut value = None;
        for i in 0..400u64 {
            let p = i % 4;
            let t = i * 10;
            let (op, ret) = if i % 3 == 0 {
                (Op::Read, Ret::Value(value))
            } else {
                let prev = value.replace(i);
                (Op::Write(i), Ret::Value(prev))
            };
            ops.push((p, op, t, Some(t + 8), ok(ret)));
        }
        let started = Instant::now();
        assert_eq!(result(&history(&ops)), KeyResult::Linearizable);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
