//! The errors a user of the runtime sees: one enum for the request boundary
//! ([`DikeError`]) and one for starting a node ([`StartError`]).

use std::time::Duration;

/// Why a request to a group (or to the master) was not answered with a reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DikeError {
    /// The routing table has no group of this name.
    #[error("no group named {0:?}; create it with add_group first")]
    UnknownGroup(String),
    /// No server kind of this name is registered on this node.
    #[error(
        "server kind {0:?} is not registered on this node; register it with \
         NodeConfigBuilder::kind::<S>() before the node starts"
    )]
    UnknownKind(String),
    /// The node did not get ready (see [`crate::NodeHandle::ready`]) in time.
    #[error("node {node} is not ready after {after:?}: {reason}")]
    NotReady {
        /// The node's name.
        node: String,
        /// How long it was waited for.
        after: Duration,
        /// What it is still waiting for.
        reason: String,
    },
    /// No replica of the group answered as leader (no quorum reachable, or
    /// the group is electing a leader) before the deadline.
    #[error("group {group:?} is unavailable: {reason}")]
    Unavailable {
        /// The group.
        group: String,
        /// What the last attempt saw.
        reason: String,
    },
    /// The deadline passed while the request was in flight; it may or may not
    /// have been applied (a retry with the same session is applied once).
    #[error("request to group {group:?} timed out after {after:?}{}", in_parentheses(.detail))]
    Timeout {
        /// The group.
        group: String,
        /// The deadline that passed.
        after: Duration,
        /// What the caller saw, if it says more (how many replicas
        /// answered against how many a quorum needs).
        detail: Option<String>,
    },
    /// The server failed on this request (it panicked, or could not decode
    /// it); the group's state is unchanged.
    #[error("application error: {0}")]
    Application(String),
    /// A request or reply could not be encoded or decoded.
    #[error("cannot encode or decode: {0}")]
    Decode(String),
    /// The master refused a change (for example too few live nodes).
    #[error("the master refused: {0}")]
    Rejected(String),
    /// The group no longer remembered this node's client session (groups
    /// keep a bounded number of them): the request was not applied now, and
    /// whether an earlier attempt of it was is unknown. Later requests use a
    /// new session.
    #[error("session expired at group {group:?}: the request was not applied now, and whether an earlier attempt was is unknown")]
    SessionExpired {
        /// The group.
        group: String,
    },
    /// The node is shutting down or its dispatcher is not running.
    #[error("the node is not running: {0}")]
    NodeStopped(String),
    /// This node's dispatcher took a request but did not answer it within
    /// the wait (the request timeout and a second more, by which it answers
    /// every request it can): the node is overloaded or stuck. The request
    /// may or may not have been applied.
    #[error(
        "this node's dispatcher did not answer {request} within {after:?}: the node is \
         overloaded or stuck; the request may or may not have been applied"
    )]
    DispatcherTimeout {
        /// What was asked, in words (`a request to group "g"`, `the master
        /// request AddGroup`).
        request: String,
        /// How long the caller waited.
        after: Duration,
    },
    /// The master answered with a reply of another kind than the request
    /// calls for: the two sides speak different versions of the protocol
    /// (a master node running another version of dike).
    #[error(
        "the master answered the request {request} with a reply {reply}, which is not an answer \
         to it; do all master nodes run the same version of dike as this one?"
    )]
    UnexpectedReply {
        /// The request's kind (`AddGroup`).
        request: String,
        /// The kind of the reply that came (`Table`).
        reply: String,
    },
}

impl DikeError {
    /// A short, stable name of the error's kind (the `outcome` label of
    /// the request metrics; never carries a group name).
    pub fn label(&self) -> &'static str {
        match self {
            DikeError::UnknownGroup(_) => "unknown_group",
            DikeError::UnknownKind(_) => "unknown_kind",
            DikeError::NotReady { .. } => "not_ready",
            DikeError::Unavailable { .. } => "unavailable",
            DikeError::Timeout { .. } => "timeout",
            DikeError::Application(_) => "application_error",
            DikeError::Decode(_) => "decode_error",
            DikeError::Rejected(_) => "rejected",
            DikeError::SessionExpired { .. } => "session_expired",
            DikeError::NodeStopped(_) => "node_stopped",
            DikeError::DispatcherTimeout { .. } => "dispatcher_timeout",
            DikeError::UnexpectedReply { .. } => "unexpected_reply",
        }
    }
}

impl From<dike_core::codec::CodecError> for DikeError {
    fn from(e: dike_core::codec::CodecError) -> Self {
        DikeError::Decode(e.to_string())
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The cluster listener cannot bind its address.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address asked for (`--listen`).
        addr: std::net::SocketAddr,
        /// Why, in the operator's words.
        reason: String,
    },
    /// The address the node would publish to the cluster is not one other
    /// nodes can dial.
    #[error("cannot advertise {address} to the cluster: {reason}")]
    Advertise {
        /// The address (the listen address unless one was given to advertise).
        address: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Another process uses the data directory (it holds its lock).
    #[error("data dir {} is in use by another process ({holder}); stop that node first, or give this one another data dir", dir.display())]
    DataDirInUse {
        /// The data directory.
        dir: std::path::PathBuf,
        /// Who holds it, as that process wrote it in the lock file (its
        /// process id and node name), or "unknown".
        holder: String,
    },
    /// The data directory belongs to a node of another name.
    #[error("data dir {} belongs to node {stored:?}, not {given:?}: start it with the name {stored:?}, or give {given:?} a data dir of its own", dir.display())]
    OtherNode {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The name it was created under.
        stored: String,
        /// The name this start asked for.
        given: String,
    },
    /// The data directory holds data of another cluster (masters it does
    /// not know).
    #[error("data dir {} holds data of another cluster (masters {}), not of this one (masters {}): start with masters it knows (those it was created with, or the cluster's masters as it last learned them; it learns later changes by itself), or use a fresh data dir", dir.display(), stored.join(","), given.join(","))]
    OtherCluster {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The master names it knows (created with, and learned).
        stored: Vec<String>,
        /// The master names this start asked for.
        given: Vec<String>,
    },
    /// The node of this data directory was removed from the cluster.
    #[error("node {name:?} was removed from the cluster (dike node remove), and data dir {} belongs to it: start the machine with an empty data dir to add it again as a new node", dir.display())]
    Removed {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The node's name.
        name: String,
    },
    /// The data directory cannot be read, written or locked.
    #[error("cannot use data dir {}: {reason}", dir.display())]
    DataDir {
        /// The data directory.
        dir: std::path::PathBuf,
        /// What failed.
        reason: String,
    },
    /// The HTTP listener (`--http`) cannot bind its address.
    #[error("cannot serve HTTP on {addr}: {reason}")]
    HttpListen {
        /// The address asked for (`--http`).
        addr: std::net::SocketAddr,
        /// Why, in the operator's words.
        reason: String,
    },
    /// An actor could not be spawned (for example a name clash with another
    /// node in this process).
    #[error("cannot spawn {what}: {reason}")]
    Spawn {
        /// Which actor.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// " (detail)", or nothing.
fn in_parentheses(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map_or_else(String::new, |d| format!(" ({d})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatcher_that_does_not_answer_is_a_timeout_naming_the_request_and_the_wait() {
        let e = DikeError::DispatcherTimeout {
            request: "a request to group \"g\"".into(),
            after: Duration::from_secs(6),
        };
        assert_eq!(
            e.to_string(),
            "this node's dispatcher did not answer a request to group \"g\" within 6s: the node \
             is overloaded or stuck; the request may or may not have been applied"
        );
        assert_eq!(e.label(), "dispatcher_timeout");
    }

    #[test]
    fn a_reply_of_the_wrong_kind_names_the_request_and_the_reply() {
        let e = DikeError::UnexpectedReply {
            request: "AddGroup".into(),
            reply: "Table".into(),
        };
        assert_eq!(
            e.to_string(),
            "the master answered the request AddGroup with a reply Table, which is not an answer \
             to it; do all master nodes run the same version of dike as this one?"
        );
        assert_eq!(e.label(), "unexpected_reply");
    }
}
