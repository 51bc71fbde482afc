//! A linearizability search with memoised configurations: Wing and Gong's
//! search over a linked list of call and return events, with Lowe's cache of
//! (operations linearized so far, state) pairs already explored, so a
//! history with many concurrent or unknown operations is decided in about
//! one step per distinct configuration instead of one per interleaving.
//!
//! An operation whose outcome is unknown has its return at the end of
//! time: it may be linearized anywhere after its invocation, or nowhere
//! (the search succeeds once only unknown operations remain).
//!
//! Invariant: the answer is exact; a search that runs out of its time
//! budget says so (`None`), never "linearizable".

use stateright::semantics::SequentialSpec;
use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One operation of a history: when it was invoked and returned (any
/// totally ordered time), and what it returned (`None`: unknown, may or
/// may not have taken effect).
#[derive(Clone, Debug)]
pub struct HistoryOp<O, R> {
    /// The operation.
    pub op: O,
    /// Invocation time.
    pub invoke: u64,
    /// Return time and value; `None` for an unknown outcome.
    pub ret: Option<(u64, R)>,
}

const HEAD: usize = 0;

/// Whether `ops` is linearizable with respect to `spec`; `None` if the
/// search did not finish within `budget`.
pub fn check<S>(spec: S, ops: &[HistoryOp<S::Op, S::Ret>], budget: Duration) -> Option<bool>
where
    S: SequentialSpec + Clone + Hash + Eq,
{
    let started = Instant::now();
    // Events: index 0 is the list head; then two per operation.
    // Sorted by time, calls before returns at equal times (the permissive
    // reading: they overlap), unknown returns last.
    let mut timed: Vec<(u64, u8, usize, bool)> = Vec::with_capacity(2 * ops.len());
    for (i, o) in ops.iter().enumerate() {
        timed.push((o.invoke, 0, i, true));
        match &o.ret {
            Some((at, _)) => timed.push((*at, 1, i, false)),
            None => timed.push((u64::MAX, 2, i, false)),
        }
    }
    timed.sort_by_key(|&(t, kind, i, _)| (t, kind, i));
    let n = timed.len() + 1;
    let end = n; // past the last event
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| i.saturating_sub(1)).collect();
    let mut op_of = vec![usize::MAX; n];
    let mut is_call = vec![false; n];
    let mut ret_of_call = vec![0usize; n];
    let mut call_pos = vec![0usize; ops.len()];
    let mut ret_pos = vec![0usize; ops.len()];
    for (k, &(_, _, i, call)) in timed.iter().enumerate() {
        let e = k + 1;
        op_of[e] = i;
        is_call[e] = call;
        if call {
            call_pos[i] = e;
        } else {
            ret_pos[i] = e;
        }
    }
    for i in 0..ops.len() {
        ret_of_call[call_pos[i]] = ret_pos[i];
    }
    let lift = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[e], next[e]);
        next[p] = q;
        if q != end {
            prev[q] = p;
        }
    };
    let unlift = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[e], next[e]);
        next[p] = e;
        if q != end {
            prev[q] = e;
        }
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state = spec;
    let mut cache: HashSet<(Vec<u64>, S)> = HashSet::new();
    let mut stack: Vec<(usize, S)> = Vec::new();
    let mut entry = next[HEAD];
    let mut steps: u64 = 0;
    loop {
        steps += 1;
        if steps % 4096 == 0 && started.elapsed() > budget {
            return None;
        }
        if entry == end || (!is_call[entry] && ops[op_of[entry]].ret.is_none()) {
            return Some(true);
        }
        let i = op_of[entry];
        if is_call[entry] {
            let mut after = state.clone();
            let ok = match &ops[i].ret {
                Some((_, r)) => after.is_valid_step(&ops[i].op, r),
                None => {
                    after.invoke(&ops[i].op);
                    true
                }
            };
            if ok {
                let mut lin = linearized.clone();
                lin[i / 64] |= 1 << (i % 64);
                if cache.insert((lin.clone(), after.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, after)));
                    linearized = lin;
                    lift(entry, &mut next, &mut prev);
                    lift(ret_of_call[entry], &mut next, &mut prev);
                    entry = next[HEAD];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // The return of an operation not linearized yet: undo the last
            // choice and try the next candidate after it.
            let Some((call, old)) = stack.pop() else {
                return Some(false);
            };
            let j = op_of[call];
            unlift(ret_of_call[call], &mut next, &mut prev);
            unlift(call, &mut next, &mut prev);
            linearized[j / 64] &= !(1 << (j % 64));
            state = old;
            entry = next[call];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;
    use crate::linearizability::{CounterSpec, Out};
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

    type H = HistoryOp<Op, Out>;

    fn add(n: i64, invoke: u64, ret: Option<(u64, i64)>) -> H {
        HistoryOp {
            op: Op::Add(n),
            invoke,
            ret: ret.map(|(t, v)| (t, Out::Count(v))),
        }
    }

    const BUDGET: Duration = Duration::from_secs(10);

    #[test]
    fn sequential_and_concurrent_counter_histories() {
        // a: add 1 -> 1, then b: add 2 -> 3.
        let h = [add(1, 0, Some((1, 1))), add(2, 2, Some((3, 3)))];
        assert_eq!(check(CounterSpec::default(), &h, BUDGET), Some(true));
        // Sequential, but b saw a's add missing.
        let h = [add(1, 0, Some((1, 1))), add(2, 2, Some((3, 2)))];
        assert_eq!(check(CounterSpec::default(), &h, BUDGET), Some(false));
        // Concurrent: either order, b first.
        let h = [add(1, 0, Some((5, 3))), add(2, 1, Some((4, 2)))];
        assert_eq!(check(CounterSpec::default(), &h, BUDGET), Some(true));
    }

    #[test]
    fn an_unknown_add_may_count_or_not_but_only_after_its_invocation() {
        let with = [add(5, 0, None), add(1, 1, Some((2, 6)))];
        assert_eq!(check(CounterSpec::default(), &with, BUDGET), Some(true));
        let without = [add(5, 0, None), add(1, 1, Some((2, 1)))];
        assert_eq!(check(CounterSpec::default(), &without, BUDGET), Some(true));
        let before = [add(1, 0, Some((1, 6))), add(5, 2, None)];
        assert_eq!(check(CounterSpec::default(), &before, BUDGET), Some(false));
    }

    #[test]
    fn many_unknown_adds_are_decided_quickly() {
        // 40 unknown adds of distinct powers (2^40 subsets without the
        // cache), then a read-like add of 0 that sees the sum of all.
        let mut h: Vec<H> = (0..40).map(|k| add(1 << k, k, None)).collect();
        let all: i64 = (0..40).map(|k| 1i64 << k).sum();
        h.push(add(0, 100, Some((101, all))));
        let started = Instant::now();
        assert_eq!(check(CounterSpec::default(), &h, BUDGET), Some(true));
        assert!(started.elapsed() < BUDGET);
    }

    /// A tiny seeded generator, so the comparison is reproducible.
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn it_agrees_with_stateright_on_random_counter_histories() {
        let mut rng = Lcg(7);
        for _ in 0..300 {
            // Up to 3 processes, each a sequence of adds; some returns are
            // off by one to make some histories non-linearizable.
            let mut ops: Vec<(u64, H)> = Vec::new();
            for p in 0..3u64 {
                let mut t = rng.below(3);
                for _ in 0..rng.below(4) {
                    let n = rng.below(3) as i64 + 1;
                    let inv = t;
                    let ret = inv + 1 + rng.below(6);
                    let unknown = rng.below(8) == 0;
                    let value = rng.below(10) as i64;
                    ops.push((p, add(n, inv, (!unknown).then_some((ret, value)))));
                    t = ret + 1;
                    if unknown {
                        break;
                    }
                }
            }
            let history: Vec<H> = ops.iter().map(|(_, h)| h.clone()).collect();
            let ours = check(CounterSpec::default(), &history, BUDGET);
            // The same history through stateright, in time order.
            let mut events: Vec<(u64, u8, u64, Option<Out>, Op)> = Vec::new();
            for (p, h) in &ops {
                events.push((h.invoke, 0, *p, None, h.op.clone()));
                if let Some((t, r)) = &h.ret {
                    events.push((*t, 1, *p, Some(r.clone()), h.op.clone()));
                }
            }
            events.sort_by_key(|e| (e.0, e.1));
            let mut tester = LinearizabilityTester::<u64, CounterSpec>::new(CounterSpec::default());
            for (_, _, p, r, op) in events {
                match r {
                    None => tester.on_invoke(p, op).map(drop).expect("valid"),
                    Some(r) => tester.on_return(p, r).map(drop).expect("valid"),
                }
            }
            let theirs = tester.serialized_history().is_some();
            assert_eq!(ours, Some(theirs), "history {history:?}");
        }
    }
}
