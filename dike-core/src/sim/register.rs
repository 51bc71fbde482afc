//! The simulator's paxos server: an integer register whose operations make
//! histories easy to check, plus an operation that panics half-way to prove
//! that a failed command leaves the state unchanged.
//!
//! The same type is the sequential specification the linearizability checker
//! compares histories against.

use crate::server::{GroupContext, Outcome, PaxosServer};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// One operation on the register. `op` is unique per operation in a run, so
/// side effects can be counted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Unique id of the operation (effects are counted by it).
    pub op: u64,
    /// What to do.
    pub action: Action,
}

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Sets the value; replies with the previous value.
    Set(i64),
    /// Adds to the value; replies with the new value.
    Add(i64),
    /// Sets `new` if the value is `expect`; replies with the value before.
    Cas {
        /// Expected current value.
        expect: i64,
        /// Value to set.
        new: i64,
    },
    /// Reads the value (through the log, or as a read-index query).
    Get,
    /// Scribbles on the state and panics: must leave the state unchanged.
    Explode,
}

/// The register.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Register {
    /// The current value.
    pub value: i64,
}

thread_local! {
    /// Effects run on this thread, by operation id: how many times each ran.
    static EFFECTS: RefCell<BTreeMap<u64, u32>> = const { RefCell::new(BTreeMap::new()) };
    /// Set right before a deliberate panic, taken by the panic hook.
    static EXPLODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps the deliberate panics of [`Action::Explode`] out of the test
/// output; every other panic, whatever its message says (a failure report
/// may quote an exploded operation), still reaches the previous hook.
pub fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !EXPLODING.with(|e| e.replace(false)) {
                previous(info);
            }
        }));
    });
}

/// Forgets every recorded effect (start of a run).
pub fn reset_effects() {
    EXPLODING.with(|e| e.set(false));
    EFFECTS.with(|e| e.borrow_mut().clear());
}

/// How many times each operation's effect ran in this thread's current run.
pub fn effects() -> BTreeMap<u64, u32> {
    EFFECTS.with(|e| e.borrow().clone())
}

impl Register {
    /// The reply `action` gives on this state, applying it.
    pub fn step(&mut self, action: Action) -> Option<i64> {
        match action {
            Action::Set(v) => Some(std::mem::replace(&mut self.value, v)),
            Action::Add(d) => {
                self.value = self.value.wrapping_add(d);
                Some(self.value)
            }
            Action::Cas { expect, new } => {
                let before = self.value;
                if before == expect {
                    self.value = new;
                }
                Some(before)
            }
            Action::Get => Some(self.value),
            Action::Explode => None,
        }
    }
}

impl PaxosServer for Register {
    const KIND: &'static str = "sim-register";
    type Request = RegisterRequest;
    type Reply = i64;
    type State = i64;

    fn init(_ctx: &GroupContext) -> Self {
        Register::default()
    }

    fn restore(state: i64, _ctx: &GroupContext) -> Self {
        Register { value: state }
    }

    fn export_state(&self) -> i64 {
        self.value
    }

    fn handle_call(&mut self, req: RegisterRequest) -> Outcome<i64> {
        if req.action == Action::Explode {
            self.value = self.value.wrapping_add(1_000_000);
            EXPLODING.with(|e| e.set(true));
            panic!("register exploded on purpose (op {})", req.op);
        }
        let reply = self.step(req.action).unwrap_or_default();
        let op = req.op;
        Outcome::reply(reply).with_effect(move || {
            EFFECTS.with(|e| *e.borrow_mut().entry(op).or_insert(0) += 1);
        })
    }

    fn handle_query(&self, req: &RegisterRequest) -> Option<i64> {
        match req.action {
            Action::Get => Some(self.value),
            _ => None,
        }
    }
}

/// What a client saw: a value, or an application error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// The reply value.
    Value(i64),
    /// The command failed (the state is unchanged).
    Failed,
}

/// The register as a sequential specification for stateright.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegisterSpec(pub Register);

impl stateright::semantics::SequentialSpec for RegisterSpec {
    type Op = Action;
    type Ret = Ret;

    fn invoke(&mut self, op: &Action) -> Ret {
        match self.0.step(*op) {
            Some(v) => Ret::Value(v),
            None => Ret::Failed,
        }
    }
}

#[cfg(test)]
mod hook_tests {
    use super::*;

    #[test]
    fn the_hook_hides_the_deliberate_panic_and_nothing_after_it() {
        quiet_deliberate_panics();
        let exploded = std::panic::catch_unwind(|| {
            let mut r = Register::default();
            r.handle_call(RegisterRequest {
                op: 1,
                action: Action::Explode,
            })
        });
        assert!(exploded.is_err());
        assert!(
            !EXPLODING.with(|e| e.get()),
            "the hook took the deliberate panic's mark"
        );
        // A failure report that quotes an exploded operation carries no
        // mark, so the hook passes it on.
        assert!(!EXPLODING.with(|e| e.get()));
    }
}
