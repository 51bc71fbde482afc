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
    use crate::sim::register::{Action, RegisterSpec, Ret};

    fn op(action: Action, invoke: u64, ret: Option<(u64, i64)>) -> HistoryOp<Action, Ret> {
        HistoryOp {
            op: action,
            invoke,
            ret: ret.map(|(t, v)| (t, Ret::Value(v))),
        }
    }

    const BUDGET: Duration = Duration::from_secs(10);

    #[test]
    fn a_read_after_a_write_must_see_it() {
        let fresh = [
            op(Action::Set(5), 0, Some((1, 0))),
            op(Action::Get, 2, Some((3, 5))),
        ];
        assert_eq!(check(RegisterSpec::default(), &fresh, BUDGET), Some(true));
        let stale = [
            op(Action::Set(5), 0, Some((1, 0))),
            op(Action::Get, 2, Some((3, 0))),
        ];
        assert_eq!(check(RegisterSpec::default(), &stale, BUDGET), Some(false));
        // Overlapping, the read may come first.
        let overlapping = [
            op(Action::Set(5), 0, Some((3, 0))),
            op(Action::Get, 1, Some((2, 0))),
        ];
        assert_eq!(
            check(RegisterSpec::default(), &overlapping, BUDGET),
            Some(true)
        );
    }

    #[test]
    fn a_search_that_runs_out_of_time_says_so() {
        // 24 unknown adds of distinct powers of two and a read of a sum no
        // subset makes: refuting it takes every subset.
        let mut h: Vec<_> = (0..24).map(|k| op(Action::Add(1 << k), k, None)).collect();
        h.push(op(Action::Get, 100, Some((101, -1))));
        assert_eq!(check(RegisterSpec::default(), &h, Duration::ZERO), None);
    }
}
