//! The groups hosted on a node: the group supervisor starts one replica actor
//! per group the routing table assigns here (reconciliation), restarts it
//! within a budget, and each replica actor drives the core's replica through
//! the shared driver.

pub mod driver;
pub mod reconcile;
pub mod replica;
pub mod restart;
pub mod supervisor;
