//! Multi-process tests and benchmark harness (grows with the runtime issues).
//!
//! The fault suite's pieces: [`history`] records what clients saw,
//! [`linearizability`] checks it key by key, [`nft`] cuts links between
//! node processes, [`faults`] plans faults, [`workload`] drives the
//! clients.

pub mod faults;
pub mod history;
pub mod linearizability;
pub mod nft;
pub mod workload;
