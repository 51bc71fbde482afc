//! # dike-actors
//!
//! The dike-rs runtime: every group replica, the dispatcher and the master
//! are supervised [ractor] actors in a [ractor_cluster] of nodes.
//!
//! See docs/ARCHITECTURE.md ("Runtime") for the actor tree, the messages and
//! how failures are handled.

pub mod config;
pub mod counter;
pub mod driver;
pub mod error;
pub mod master;
pub mod provider;
pub mod restart;
pub mod wire;

pub use config::{MasterSpec, NodeConfig, NodeConfigBuilder};
pub use error::{DikeError, StartError};
pub mod context;
pub mod dispatcher;
pub mod group_supervisor;
pub mod node;
pub mod reconcile;
pub mod replica_actor;
pub mod router;

pub use node::{DikeNode, GroupHandle, JoinOutcome, NodeHandle};
