//! # dike-actors
//!
//! The dike-rs runtime: every group replica, the dispatcher and the master
//! are supervised [ractor] actors in a [ractor_cluster] of nodes, and the
//! durable storage engine (one log per node, group commit) in [`storage`].
//!
//! See docs/ARCHITECTURE.md ("Runtime") for the actor tree, the messages and
//! how failures are handled.

pub mod admin;
pub mod coalesce;
pub mod config;
pub mod context;
pub mod counter;
pub mod dispatcher;
pub mod driver;
pub mod error;
pub mod group_supervisor;
pub mod liveness;
pub mod master;
pub mod node;
pub mod provider;
pub mod rebalancer;
pub mod reconcile;
pub mod replica_actor;
pub mod restart;
pub mod router;
pub mod storage;
pub mod transport;
pub mod wire;

pub use config::{MasterSpec, NodeConfig, NodeConfigBuilder};
pub use error::{DikeError, StartError};
pub use node::{DikeNode, GroupHandle, JoinOutcome, NodeHandle};
