//! The original Dike test suite's arithmetic server: one integer per group.
//!
//! Requests: `Add(n)`, `Sub(n)`, `Mult(n)`, `Div(n)` change the value and
//! reply with the new one; `Read` replies with the current value (and is
//! answered as a read-index query when sent as one). Division by zero and
//! overflow are errors that leave the value unchanged.

use dike_core::{GroupContext, Outcome, PaxosServer};
use serde::{Deserialize, Serialize};

/// A request to an arithmetic group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArithmeticRequest {
    /// Adds `n`.
    Add(i64),
    /// Subtracts `n`.
    Sub(i64),
    /// Multiplies by `n`.
    Mult(i64),
    /// Divides by `n` (integer division, rounding toward zero).
    Div(i64),
    /// Reads the value.
    Read,
}

/// Why an arithmetic request failed (the value is unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ArithmeticError {
    /// `Div(0)`.
    #[error("division by zero")]
    DivisionByZero,
    /// The result does not fit in an `i64`.
    #[error("arithmetic overflow")]
    Overflow,
}

/// The reply: the value after the request, or why it failed.
pub type ArithmeticReply = Result<i64, ArithmeticError>;

/// The arithmetic paxos server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arithmetic {
    value: i64,
}

impl Arithmetic {
    /// The current value.
    pub fn value(&self) -> i64 {
        self.value
    }

    /// Applies `req` to `value`: the pure rule shared by calls and tests.
    pub fn compute(value: i64, req: ArithmeticRequest) -> ArithmeticReply {
        use ArithmeticRequest::*;
        match req {
            Add(n) => value.checked_add(n).ok_or(ArithmeticError::Overflow),
            Sub(n) => value.checked_sub(n).ok_or(ArithmeticError::Overflow),
            Mult(n) => value.checked_mul(n).ok_or(ArithmeticError::Overflow),
            Div(0) => Err(ArithmeticError::DivisionByZero),
            Div(n) => value.checked_div(n).ok_or(ArithmeticError::Overflow),
            Read => Ok(value),
        }
    }
}

impl PaxosServer for Arithmetic {
    const KIND: &'static str = "arithmetic";
    type Request = ArithmeticRequest;
    type Reply = ArithmeticReply;
    type State = i64;

    fn init(_ctx: &GroupContext) -> Self {
        Arithmetic::default()
    }

    fn restore(state: i64, _ctx: &GroupContext) -> Self {
        Arithmetic { value: state }
    }

    fn export_state(&self) -> i64 {
        self.value
    }

    fn handle_call(&mut self, req: ArithmeticRequest) -> Outcome<ArithmeticReply> {
        let reply = Self::compute(self.value, req);
        if let Ok(v) = reply {
            self.value = v;
        }
        Outcome::reply(reply)
    }

    fn handle_query(&self, req: &ArithmeticRequest) -> Option<ArithmeticReply> {
        (*req == ArithmeticRequest::Read).then_some(Ok(self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ArithmeticRequest::*;

    fn ctx() -> GroupContext {
        GroupContext {
            group: "a".into(),
            kind: Arithmetic::KIND.into(),
            member: dike_core::MemberId::new(1, 1),
        }
    }

    #[test]
    fn operations_apply_in_order() {
        let mut a = Arithmetic::init(&ctx());
        assert_eq!(a.handle_call(Add(10)).reply, Ok(10));
        assert_eq!(a.handle_call(Mult(3)).reply, Ok(30));
        assert_eq!(a.handle_call(Sub(2)).reply, Ok(28));
        assert_eq!(a.handle_call(Div(4)).reply, Ok(7));
        assert_eq!(a.handle_call(Read).reply, Ok(7));
    }

    #[test]
    fn division_by_zero_and_overflow_leave_the_value_unchanged() {
        let mut a = Arithmetic::restore(i64::MAX - 1, &ctx());
        assert_eq!(
            a.handle_call(Div(0)).reply,
            Err(ArithmeticError::DivisionByZero)
        );
        assert_eq!(a.handle_call(Add(5)).reply, Err(ArithmeticError::Overflow));
        assert_eq!(a.value(), i64::MAX - 1);
        assert_eq!(
            Arithmetic::restore(i64::MIN, &ctx())
                .handle_call(Div(-1))
                .reply,
            Err(ArithmeticError::Overflow)
        );
    }

    #[test]
    fn read_is_answered_as_a_query_and_nothing_else_is() {
        let a = Arithmetic::restore(4, &ctx());
        assert_eq!(a.handle_query(&Read), Some(Ok(4)));
        assert_eq!(a.handle_query(&Add(1)), None);
    }
}
