//! # dike-actors
//!
//! The dike-rs runtime: every group replica, the dispatcher and the master
//! are supervised [ractor] actors in a [ractor_cluster] of nodes, and the
//! durable storage engine (one log per node, group commit) in [`storage`].
//!
//! The modules follow a request: [`node`] (the root actor, the handles users
//! hold, configuration), [`routing`] (the dispatcher and the router: which
//! group, which member, retries), [`cluster`] (the transport between nodes,
//! the wire format, liveness), [`group`] (the group supervisor and the replica
//! actors that drive the core's replicas), [`storage`] (the durable node log
//! and the providers replicas open), and [`master`] (the routing table's own
//! group and its rebalancer).
//!
//! See docs/ARCHITECTURE.md ("Runtime") for the actor tree, the messages and
//! how failures are handled.

pub mod cluster;
pub mod coalesce;
pub mod counter;
pub mod error;
pub mod group;
pub mod master;
pub mod node;
pub mod routing;
pub mod storage;
#[cfg(test)]
mod test_support;

pub use error::{DikeError, StartError};
pub use node::config::{MasterSpec, NodeConfig, NodeConfigBuilder};
pub use node::{
    DikeNode, DrainReport, GroupHandle, HandOverReport, JoinOutcome, NodeHandle, NodeRemoval,
};
