//! # dike-core
//!
//! The sans-IO heart of dike-rs: the paxos server behaviour, the per-group
//! Multi-Paxos replica as a plain state machine, client sessions, the storage
//! trait with an in-memory implementation, and (feature `sim`) a deterministic
//! simulator that checks the protocol under faults.
//!
//! Nothing here does IO, reads a clock or spawns a task: time is a tick count
//! passed in, randomness is a seeded generator passed in, and every effect on
//! the world comes out of the replica as data for the runtime to execute.

pub mod codec;
pub mod config;
pub mod driver;
pub mod entry;
pub mod hash;
pub mod ids;
pub mod message;
pub mod placement;
pub mod ready;
pub mod rebalance;
pub mod replica;
pub mod rng;
pub mod route;
pub mod routing;
pub mod server;
pub mod session;
#[cfg(feature = "sim")]
pub mod sim;
pub mod storage;

pub use config::{Config, ReplicaOptions};
pub use driver::{
    Blocking, DriverError, GroupDriver, Output, Persist, ReplicaStorage, Start, WriteToken,
    MAX_WRITES_IN_FLIGHT,
};
pub use entry::{Batch, Command, Entry};
pub use ids::{Ballot, ClientId, Incarnation, MemberId, NodeId, Slot};
pub use message::{Envelope, Message};
pub use ready::{AppliedSlot, Ready, RequestError, RequestId, Response};
pub use replica::{Bugs, DownReport, RecoverError, Replica};
pub use server::{
    Applied, Effect, GroupContext, Outcome, PaxosServer, ServerMachine, StateMachine,
};
pub use session::{SessionCheck, SessionTable, StoredReply};
pub use storage::{Accepted, MemoryStorage, Recovered, Snapshot, Storage, StorageError, Write};
