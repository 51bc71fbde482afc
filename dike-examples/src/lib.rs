//! Example paxos servers for dike-rs and the pieces of the `dike` program.

pub mod arithmetic;
pub mod cli;
pub mod demo;
pub mod kv;
pub mod lock;
pub mod set;

pub use arithmetic::{Arithmetic, ArithmeticError, ArithmeticReply, ArithmeticRequest};
