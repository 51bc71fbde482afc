//! The fault suite's workload: concurrent clients doing per-key register
//! operations on the kv ring (read, write, compare-and-set), adds and reads
//! on arithmetic counters, and adds and reads on grow-only sets, every one
//! recorded in a [`Recorder`].
//!
//! Invariants: a worker has one operation in flight; after an operation of
//! unknown outcome it continues as a fresh process (see
//! [`crate::history`]); every written register value and every set element
//! is unique in the run, so the checker can tell writes apart.

use crate::history::{Op, Outcome, Recorder, Ret};
use dike_actors::{DikeError, NodeHandle};
use dike_core::rng::Rng;
use dike_core::PaxosServer;
use dike_examples::arithmetic::{Arithmetic, ArithmeticRequest};
use dike_examples::kv::{vnode_for, KvReply, KvRequest, KvServer};
use dike_examples::set::{SetReply, SetRequest, SetServer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The name of the group holding the workload's sets.
pub const SET_GROUP: &str = "sets";

/// What the workload touches and how hard.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Groups of the kv ring (`vnode-1..N`).
    pub vnodes: u32,
    /// Register keys spread over the ring.
    pub registers: usize,
    /// Arithmetic groups used as counters (`counter-1..N`).
    pub counters: usize,
    /// Sets in the set group.
    pub sets: usize,
    /// Concurrent clients.
    pub workers: usize,
    /// Pause between two operations of one worker.
    pub think: Duration,
    /// Seed of the workers' choices.
    pub seed: u64,
    /// The round of a run that checks its history in rounds: register and
    /// set keys are fresh every round (so each round's history starts from
    /// empty objects); counters carry over.
    pub round: u32,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            vnodes: 3,
            registers: 12,
            counters: 2,
            sets: 3,
            workers: 6,
            think: Duration::from_millis(10),
            seed: 1,
            round: 0,
        }
    }
}

/// One group the workload needs: name and server kind.
pub type GroupSpec = (String, &'static str);

impl WorkloadConfig {
    /// Every group the workload uses, with its kind.
    pub fn groups(&self) -> Vec<GroupSpec> {
        let mut g: Vec<GroupSpec> = dike_examples::kv::vnodes(self.vnodes)
            .map(|v| (v, KvServer::KIND))
            .collect();
        g.extend((1..=self.counters).map(|i| (counter_group(i), Arithmetic::KIND)));
        if self.sets > 0 {
            g.push((SET_GROUP.to_owned(), SetServer::KIND));
        }
        g
    }

    /// Every history key the workload uses.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = (0..self.registers)
            .map(|i| register_key(i, self.round))
            .collect();
        k.extend(self.counter_keys());
        k.extend((0..self.sets).map(|i| set_key(i, self.round)));
        k
    }

    /// The history keys of the counters.
    pub fn counter_keys(&self) -> Vec<String> {
        (1..=self.counters)
            .map(|i| counter_key(&counter_group(i)))
            .collect()
    }
}

fn counter_group(i: usize) -> String {
    format!("counter-{i}")
}

fn register_key(i: usize, round: u32) -> String {
    format!("kv:r{i}.{round}")
}

fn counter_key(group: &str) -> String {
    format!("counter:{group}")
}

fn set_key(i: usize, round: u32) -> String {
    format!("set:s{i}.{round}")
}

/// How an error of the runtime counts in the history: certainly without
/// effect, or maybe applied.
pub fn outcome_of_error(e: &DikeError) -> Outcome {
    match e {
        // Refused before anything was sent.
        DikeError::UnknownGroup(_) | DikeError::UnknownKind(_) => Outcome::Fail(e.to_string()),
        // Applied as a failed command (state unchanged) — unless it is a
        // retry answered "stale", which says nothing about the first try.
        DikeError::Application(m) if !m.contains("stale") => Outcome::Fail(e.to_string()),
        // Sent, maybe proposed: may take effect at any time.
        _ => Outcome::Unknown(e.to_string()),
    }
}

fn outcome<T>(r: Result<T, DikeError>, map: impl FnOnce(T) -> Option<Ret>) -> Outcome {
    match r {
        Ok(v) => match map(v) {
            Some(ret) => Outcome::Ok(ret),
            None => Outcome::Unknown("a reply of an unexpected shape".into()),
        },
        Err(e) => outcome_of_error(&e),
    }
}

fn parse(v: Option<String>) -> Option<u64> {
    v.and_then(|s| s.parse().ok())
}

/// Runs one operation on `key` through `node` and returns its outcome.
pub async fn execute(node: &NodeHandle, vnodes: u32, key: &str, op: &Op, query: bool) -> Outcome {
    if let Some(k) = key.strip_prefix("kv:") {
        let g = node.group::<KvServer>(&vnode_for(k, vnodes));
        let req = match op {
            Op::Read => KvRequest::Get(k.to_owned()),
            Op::Write(v) => KvRequest::Put(k.to_owned(), v.to_string()),
            Op::Cas { expect, new } => KvRequest::Cas {
                key: k.to_owned(),
                expect: expect.map(|e| e.to_string()),
                new: Some(new.to_string()),
            },
            _ => return Outcome::Fail(format!("{op:?} is not a register operation")),
        };
        let r = if query {
            g.query(req).await
        } else {
            g.call(req).await
        };
        outcome(r, |reply| match (op, reply) {
            (Op::Cas { .. }, KvReply::Cas(r)) => Some(Ret::Cas(match r {
                Ok(prev) => Ok(parse(prev)),
                Err(cur) => Err(parse(cur)),
            })),
            (Op::Read | Op::Write(_), KvReply::Value(v)) => Some(Ret::Value(parse(v))),
            _ => None,
        })
    } else if let Some(group) = key.strip_prefix("counter:") {
        let g = node.group::<Arithmetic>(group);
        let req = match op {
            Op::Add(n) => ArithmeticRequest::Add(*n),
            Op::ReadCounter => ArithmeticRequest::Read,
            _ => return Outcome::Fail(format!("{op:?} is not a counter operation")),
        };
        let r = if query {
            g.query(req).await
        } else {
            g.call(req).await
        };
        match r {
            Ok(Ok(v)) => Outcome::Ok(Ret::Count(v)),
            // An overflow is applied as a no-op.
            Ok(Err(e)) => Outcome::Fail(e.to_string()),
            Err(e) => outcome_of_error(&e),
        }
    } else if let Some(set) = key.strip_prefix("set:") {
        let g = node.group::<SetServer>(SET_GROUP);
        let req = match op {
            Op::Insert(x) => SetRequest::Add {
                set: set.to_owned(),
                element: *x,
            },
            Op::ReadSet => SetRequest::Read(set.to_owned()),
            _ => return Outcome::Fail(format!("{op:?} is not a set operation")),
        };
        let r = if query {
            g.query(req).await
        } else {
            g.call(req).await
        };
        outcome(r, |reply| match reply {
            SetReply::Added(b) => Some(Ret::Inserted(b)),
            SetReply::Elements(e) => Some(Ret::Elements(e)),
        })
    } else {
        Outcome::Fail(format!("unknown key {key:?}"))
    }
}

/// One worker's state: its current process and what it last saw.
struct Worker {
    id: usize,
    process: u64,
    rng: Rng,
    next_value: u64,
    last_seen: std::collections::HashMap<String, Option<u64>>,
}

impl Worker {
    fn unique(&mut self) -> u64 {
        self.next_value += 1;
        // Unique across workers: the worker in the high bits.
        ((self.id as u64 + 1) << 32) | self.next_value
    }

    fn choose(&mut self, config: &WorkloadConfig) -> (String, Op, bool) {
        let keys = config.keys();
        let key = keys[self.rng.below(keys.len() as u64) as usize].clone();
        let query = self.rng.chance(50);
        let op = if key.starts_with("kv:") {
            match self.rng.below(3) {
                0 => Op::Read,
                1 => Op::Write(self.unique()),
                _ => Op::Cas {
                    expect: self.last_seen.get(&key).copied().flatten(),
                    new: self.unique(),
                },
            }
        } else if key.starts_with("counter:") {
            if self.rng.chance(70) {
                Op::Add(self.rng.range(1, 6) as i64)
            } else {
                Op::ReadCounter
            }
        } else if self.rng.chance(70) {
            Op::Insert(self.unique())
        } else {
            Op::ReadSet
        };
        (key, op, query)
    }

    fn observe(&mut self, key: &str, op: &Op, outcome: &Outcome) {
        let seen = match (op, outcome) {
            (Op::Read, Outcome::Ok(Ret::Value(v))) => *v,
            (Op::Write(v), Outcome::Ok(_)) => Some(*v),
            (Op::Cas { new, .. }, Outcome::Ok(Ret::Cas(Ok(_)))) => Some(*new),
            (Op::Cas { .. }, Outcome::Ok(Ret::Cas(Err(cur)))) => *cur,
            _ => return,
        };
        self.last_seen.insert(key.to_owned(), seen);
    }
}

/// A running workload; stop it with [`Workload::stop`].
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Starts `config.workers` clients on `node`, recording into `recorder`.
    pub fn start(node: &NodeHandle, config: &WorkloadConfig, recorder: &Recorder) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..config.workers)
            .map(|id| {
                let (node, config, recorder, stop) =
                    (node.clone(), config.clone(), recorder.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut w = Worker {
                        id,
                        process: recorder.new_process(),
                        rng: Rng::new(config.seed.wrapping_mul(1000).wrapping_add(id as u64)),
                        next_value: 0,
                        last_seen: Default::default(),
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let (key, op, query) = w.choose(&config);
                        // Only reads can be queries.
                        let query = query && op.is_read();
                        let pending = recorder.invoke(w.process, id, &key, op.clone());
                        let outcome = execute(&node, config.vnodes, &key, &op, query).await;
                        w.observe(&key, &op, &outcome);
                        let unknown = matches!(outcome, Outcome::Unknown(_));
                        recorder.complete(pending, outcome);
                        if unknown {
                            w.process = recorder.new_process();
                        }
                        tokio::time::sleep(config.think).await;
                    }
                })
            })
            .collect();
        Workload { stop, tasks }
    }

    /// Asks every worker to stop and waits for their last operations (each
    /// ends within the client's request timeout).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The final read of every key after healing, recorded in the history
/// (through the log, so it also proves each group answers). Returns the
/// keys whose read did not succeed, with why.
pub async fn final_reads(
    node: &NodeHandle,
    config: &WorkloadConfig,
    recorder: &Recorder,
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for key in config.keys() {
        let op = if key.starts_with("kv:") {
            Op::Read
        } else if key.starts_with("counter:") {
            Op::ReadCounter
        } else {
            Op::ReadSet
        };
        let process = recorder.new_process();
        let pending = recorder.invoke(process, usize::MAX, &key, op.clone());
        let outcome = execute(node, config.vnodes, &key, &op, false).await;
        if !matches!(outcome, Outcome::Ok(_)) {
            failed.push((key.clone(), format!("{outcome:?}")));
        }
        recorder.complete(pending, outcome);
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_prove_nothing_was_applied_are_failures_the_rest_unknown() {
        let fail = |e: DikeError| matches!(outcome_of_error(&e), Outcome::Fail(_));
        assert!(fail(DikeError::UnknownGroup("g".into())));
        assert!(fail(DikeError::Application("panicked".into())));
        assert!(!fail(DikeError::Application(
            "stale request: already answered".into()
        )));
        assert!(!fail(DikeError::Timeout {
            group: "g".into(),
            after: Duration::from_secs(1),
            detail: None,
        }));
        assert!(!fail(DikeError::Unavailable {
            group: "g".into(),
            reason: "no leader".into()
        }));
        assert!(!fail(DikeError::NodeStopped("x".into())));
    }

    #[test]
    fn workers_choose_keys_of_every_kind_and_unique_values() {
        let config = WorkloadConfig::default();
        let mut w = Worker {
            id: 3,
            process: 1,
            rng: Rng::new(7),
            next_value: 0,
            last_seen: Default::default(),
        };
        let mut kinds = std::collections::BTreeSet::new();
        let mut values = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let (key, op, _) = w.choose(&config);
            assert!(config.keys().contains(&key));
            kinds.insert(op.model());
            if let Op::Write(v) | Op::Insert(v) | Op::Cas { new: v, .. } = op {
                assert!(values.insert(v), "value {v} chosen twice");
            }
        }
        assert_eq!(kinds.len(), 3);
        assert_eq!(config.groups().len(), 3 + 2 + 1);
    }
}
