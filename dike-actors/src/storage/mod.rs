//! Durable storage: one log per node, shared by all its groups, with group
//! commit.
//!
//! Invariant: a write acknowledged by [`NodeLog::write`] (or whose
//! [`NodeLog::submit`] completion got `Ok`) is in the log or covered by its
//! group's snapshot file after any crash, and reopening the directory gives
//! every group exactly what replaying its durable writes in order gives —
//! every acknowledged write, and possibly some whose acknowledgement the
//! crash prevented.
//!
//! - `record`: checksummed, length-prefixed framing; torn tail vs. damage.
//! - `files`: directory layout, atomic file replacement, incarnation.
//! - `index`: in-memory state of every group and liveness of segments.
//! - `writer`: the single writer thread: group commit, rolling,
//!   compaction, fail-stop.
//! - `recovery`: replay on open.
//! - `node_log`: the public handles.
//!
//! See `docs/STORAGE.md` for the record format and the reasoning.

pub(crate) mod files;
mod index;
mod node_log;
pub mod provider;
mod record;
mod recovery;
mod writer;

#[cfg(test)]
mod tests;

pub use node_log::{GroupStorage, LogOptions, LogStats, NodeLog};

/// Identifies a group within a node log. Every record carries it.
pub type GroupId = u64;
