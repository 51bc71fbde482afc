//! Example paxos servers for dike-rs and the pieces of the `dike` program.

pub mod arithmetic;
pub mod bench;
pub mod cli;
pub mod demo;
pub mod kv;
pub mod loadgen;
pub mod lock;
pub mod processes;
pub mod set;
pub mod simulate;

pub use arithmetic::{Arithmetic, ArithmeticError, ArithmeticReply, ArithmeticRequest};
