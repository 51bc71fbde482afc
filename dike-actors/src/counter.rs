//! A tiny paxos server shipped with the runtime, used by its tests, the
//! `dike-node` binary and the documentation examples: one integer per group.

use dike_core::{GroupContext, Outcome, PaxosServer};
use serde::{Deserialize, Serialize};

/// A request to a counter group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterRequest {
    /// Adds `n` (wrapping) and replies with the new value.
    Add(i64),
    /// Replies with the value; answered as a read-index query when sent as one.
    Get,
    /// Panics: the command is applied as failed and the value is unchanged.
    Fail,
}

/// The counter paxos server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    value: i64,
}

impl PaxosServer for Counter {
    const KIND: &'static str = "counter";
    type Request = CounterRequest;
    type Reply = i64;
    type State = i64;

    fn init(_ctx: &GroupContext) -> Self {
        Counter::default()
    }

    fn restore(state: i64, _ctx: &GroupContext) -> Self {
        Counter { value: state }
    }

    fn export_state(&self) -> i64 {
        self.value
    }

    fn handle_call(&mut self, req: CounterRequest) -> Outcome<i64> {
        match req {
            CounterRequest::Add(n) => self.value = self.value.wrapping_add(n),
            CounterRequest::Get => {}
            CounterRequest::Fail => panic!("the counter was asked to fail"),
        }
        Outcome::reply(self.value)
    }

    fn handle_query(&self, req: &CounterRequest) -> Option<i64> {
        (*req == CounterRequest::Get).then_some(self.value)
    }
}
