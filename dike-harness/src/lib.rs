//! The one process harness of dike-rs's multi-process tests and of the
//! `dike demo` program:
//!
//! - [`process`]: named child processes (`dike node`, `dike-node`), each
//!   with its own log file, killed and reaped when dropped, and [`processes`],
//!   a named set of them;
//! - [`ports`]: addresses whose ports are free right now;
//! - [`wait`]: the one rule for waiting on a condition with a deadline,
//!   async and blocking.
//!
//! It knows nothing of dike itself: the crates above it (dike-actors' tests,
//! dike-examples, integration) say which program runs with which arguments.

pub mod ports;
pub mod process;
pub mod processes;
pub mod wait;

#[cfg(test)]
mod test_support;

pub use ports::{free_loopback_addr, free_port, free_wildcard_port};
pub use process::{ChildProcess, Launch, ProcessError};
pub use processes::Processes;
pub use wait::{poll_until, poll_until_blocking, wait_until, wait_until_blocking, Check, NotYet};
