//! The errors of the `dike` program: one enum for everything a command can
//! fail on, each message saying what to fix.

use dike_actors::node::admin::JoinNodeError;
use dike_actors::{DikeError, StartError};

/// Why a `dike` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument is not usable (the message names it).
    #[error("{0}")]
    Usage(String),
    /// The node (or the command's client node) could not start.
    #[error("cannot start the node: {0}")]
    Start(#[from] StartError),
    /// The masters did not answer before the deadline.
    #[error("cannot reach the cluster through {via} (is it running, with this cookie?): {reason}")]
    Unreachable {
        /// The masters tried.
        via: String,
        /// The last error.
        reason: String,
    },
    /// The cluster did not answer as asked.
    #[error("{0}")]
    Cluster(#[from] DikeError),
    /// The request text is not a request of the group's kind.
    #[error("the request is not a valid {kind} request: {reason}\n  example: {example}")]
    BadRequest {
        /// The group's kind.
        kind: String,
        /// What the JSON parser said.
        reason: String,
        /// A request of that kind, as JSON.
        example: String,
    },
    /// The group's kind has no JSON form in this program.
    #[error("group {group:?} is of kind {kind:?}, which this program does not know (known: arithmetic, kv, lock, set)")]
    UnknownKind {
        /// The group.
        group: String,
        /// Its kind.
        kind: String,
    },
    /// The routing table has no such group.
    #[error("no group named {0:?}; list them with `dike routing-table`, create one with `dike add-group`")]
    NoSuchGroup(String),
    /// Output could not be written or encoded.
    #[error("cannot write the output: {0}")]
    Output(String),
    /// Another node could not be made to join.
    #[error("{0}")]
    Join(#[from] JoinNodeError),
    /// A compare-and-set found another value than expected.
    #[error("compare-and-set not applied: {key:?} holds {}", current.as_deref().map_or_else(|| "no value".to_owned(), |v| format!("{v:?}")))]
    CasMismatch {
        /// The key.
        key: String,
        /// Its value now (`None`: absent).
        current: Option<String>,
    },
    /// The demo could not go on.
    #[error("the demo stopped: {0}")]
    Demo(String),
    /// The running node stopped by itself.
    #[error("the node stopped unexpectedly")]
    NodeStopped,
}
