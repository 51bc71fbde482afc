//! What the runtime adds to the core's [`dike_core::GroupDriver`]: a
//! boxed state machine so one replica actor type serves every kind, and
//! the node's effect runner.
//!
//! Invariant: an effect runs once, off the replica actors, in the order its
//! replica handed it over; a panicking effect is caught and logged and
//! takes nothing down, and a slow one delays only the effects queued behind
//! it, never a group's protocol work.

use crate::node::context::{NodeContext, NodePart, Part};
use dike_core::codec::CodecError;
use dike_core::server::{panic_message, StateMachine};
use dike_core::{Applied, Effect, StoredReply};
use prometheus_client::metrics::counter::Counter;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;

/// A boxed state machine, so one replica type serves every server kind;
/// it counts the commands it applies in the node's metrics.
pub struct DynMachine {
    machine: Box<dyn StateMachine>,
    applied: Option<Counter>,
    group_applied: Option<Counter>,
}

impl DynMachine {
    /// `machine`, counting its applied commands in `applied` (the node's
    /// count) and in `group_applied` (its group's), where counted.
    pub fn new(
        machine: Box<dyn StateMachine>,
        applied: Option<Counter>,
        group_applied: Option<Counter>,
    ) -> Self {
        DynMachine {
            machine,
            applied,
            group_applied,
        }
    }
}

impl StateMachine for DynMachine {
    fn apply(&mut self, command: &[u8]) -> Applied {
        if let Some(c) = &self.applied {
            c.inc();
        }
        if let Some(c) = &self.group_applied {
            c.inc();
        }
        self.machine.apply(command)
    }
    fn query(&self, request: &[u8]) -> Option<StoredReply> {
        self.machine.query(request)
    }
    fn export(&self) -> Result<Vec<u8>, CodecError> {
        self.machine.export()
    }
    fn import(&mut self, state: &[u8]) -> Result<(), CodecError> {
        self.machine.import(state)
    }
    fn reset(&mut self) {
        self.machine.reset()
    }
}

/// The core driver as the replica actor runs it.
pub type ReplicaDriver = dike_core::GroupDriver<DynMachine, Box<dyn dike_core::ReplicaStorage>>;

/// An effect with the name of its group, on its way to the effect thread.
type Job = (String, Effect);

/// Runs effects on one thread of their own, in order, each under
/// `catch_unwind`. See the module documentation.
pub struct EffectRunner {
    /// Started on first use; `None` inside once the thread could not start
    /// (effects then run inline, still caught).
    tx: Mutex<Option<Option<Sender<Job>>>>,
}

impl NodePart for EffectRunner {
    const PART: Part = Part::Effects;
}

impl NodeContext {
    /// Runs the effects of every replica on this node.
    pub(crate) fn effects(&self) -> &EffectRunner {
        self.part()
    }
}

impl Default for EffectRunner {
    fn default() -> Self {
        EffectRunner {
            tx: Mutex::new(None),
        }
    }
}

impl EffectRunner {
    /// Queues `effects` of `group`.
    pub fn run(&self, group: &str, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let tx = {
            let mut slot = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(Self::spawn).clone()
        };
        for effect in effects {
            let job = (group.to_owned(), effect);
            match &tx {
                Some(tx) => {
                    if let Err(mpsc::SendError((group, effect))) = tx.send(job) {
                        run_caught(&group, effect);
                    }
                }
                None => run_caught(&job.0, job.1),
            }
        }
    }

    fn spawn() -> Option<Sender<Job>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("dike-effects".into())
            .spawn(move || {
                for (group, effect) in rx {
                    run_caught(&group, effect);
                }
            });
        match started {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!("cannot start the effect thread ({e}): effects run inline");
                None
            }
        }
    }
}

/// Runs one effect; a panic is logged, not propagated.
fn run_caught(group: &str, effect: Effect) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| effect.run())) {
        tracing::error!(%group, "an effect panicked: {}", panic_message(&*panic));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_panicking_effect_is_contained_and_later_effects_still_run_in_order() {
        let runner = EffectRunner::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s1 = seen.clone();
        let s2 = seen.clone();
        runner.run(
            "g",
            vec![
                Effect::new(move || s1.lock().expect("lock").push(1)),
                Effect::new(|| panic!("an effect that fails")),
                Effect::new(move || s2.lock().expect("lock").push(2)),
            ],
        );
        wait_until("both effects", || seen.lock().expect("lock").len() == 2);
        assert_eq!(*seen.lock().expect("lock"), vec![1, 2]);
    }

    #[test]
    fn a_blocking_effect_does_not_block_the_caller() {
        let runner = EffectRunner::default();
        let (release, wait) = mpsc::channel::<()>();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        runner.run(
            "g",
            vec![
                Effect::new(move || {
                    let _ = wait.recv();
                }),
                Effect::new(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                }),
            ],
        );
        // `run` returned although the first effect still blocks.
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        release.send(()).expect("the effect waits");
        wait_until("the second effect", || ran.load(Ordering::SeqCst) == 1);
    }
}
