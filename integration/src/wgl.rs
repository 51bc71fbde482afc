//! The memoised linearizability search lives in the simulator
//! ([`dike_core::sim::wgl`]), which checks its own histories with it; the
//! fault suite's checker uses the same one. These tests cross-check it on
//! counter histories against stateright's exhaustive tester.

pub use dike_core::sim::wgl::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;
    use crate::linearizability::{CounterSpec, Out};
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
    use std::time::{Duration, Instant};

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
