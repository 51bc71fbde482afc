//! The errors of the `dike` program: one enum for everything a command can
//! fail on, each message saying what to fix.

use dike_actors::node::admin::JoinNodeError;
use dike_actors::node::config::MASTER_GROUP;
use dike_actors::node::discover::DiscoverError;
use dike_actors::node::tls::TlsError;
use dike_actors::{DikeError, StartError};

/// Why a `dike` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument is not usable (the message names it).
    #[error("{0}")]
    Usage(String),
    /// The TLS files are not usable (the message names the file).
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// `dike certs` could not make a certificate.
    #[error("{0}")]
    Certs(String),
    /// The node (or the command's client node) could not start.
    #[error("cannot start the node: {0}")]
    Start(#[from] StartError),
    /// No `--via` node told the masters.
    #[error("{}", discover_message(failures, cookie))]
    Discover {
        /// What each `--via` node tried said.
        failures: Vec<DiscoverError>,
        /// Where the cookie came from (see `Cookie::source`), named if a
        /// node refused it.
        cookie: String,
    },
    /// The masters did not answer before the deadline.
    #[error("no master quorum answered (masters {masters}): {reason}")]
    NoMasterQuorum {
        /// The masters' names.
        masters: String,
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
    /// The routing table has no node of that name.
    #[error("no node named {node:?} in the routing table (nodes: {known}); list them with `dike status`")]
    NoSuchNode {
        /// The name asked for.
        node: String,
        /// The nodes the table has, by name.
        known: String,
    },
    /// The node hosts no voter of the group.
    #[error("node {node:?} hosts no voter of group {group:?} (its voters are on {voters})")]
    NotAVoter {
        /// The group.
        group: String,
        /// The node asked for.
        node: String,
        /// The nodes of the group's voters, by name.
        voters: String,
    },
    /// The key-value ring in the routing table is missing or broken (the
    /// message says which group to add).
    #[error("{0}")]
    Ring(String),
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
    /// The group answered with an application error (`{"Err":…}`); the
    /// reply itself went to stdout.
    #[error("the group answered with an error: {0}")]
    ErrorReply(String),
    /// The demo could not go on.
    #[error("the demo stopped: {0}")]
    Demo(String),
    /// `dike node drain` timed out with groups still led from the node.
    #[error(
        "{node} still leads {} after {}s: {}; their other voters cannot take over (down or \
         behind?); {node} stays draining",
        groups.len(), after.as_secs(), groups.join(", ")
    )]
    DrainTimeout {
        /// The node being drained.
        node: String,
        /// How long the command waited.
        after: std::time::Duration,
        /// The groups still led from it.
        groups: Vec<String>,
    },
    /// A node's replicas did not all move away within the wait.
    #[error(
        "node {node:?} still hosts {replicas} replicas after {waited}s; its removal goes on in \
         the background: run `dike node remove {node}` again to wait, or watch `dike status`"
    )]
    StillRemoving {
        /// The node.
        node: String,
        /// Replicas it still hosts.
        replicas: usize,
        /// Seconds waited.
        waited: u64,
    },
    /// `dike master add|remove|replace` waited and the master group is not
    /// made of the masters wanted yet.
    #[error(
        "the masters are still changing after {waited} s (voters: {voters}; being added: \
         {learners}; wanted: {wanted}); the change goes on in the background: watch it with \
         `dike master list`"
    )]
    MastersChanging {
        /// The voters now.
        voters: String,
        /// The learners now.
        learners: String,
        /// The masters wanted.
        wanted: String,
        /// Seconds waited.
        waited: u64,
    },
    /// The running node stopped by itself.
    #[error("the node stopped unexpectedly")]
    NodeStopped,
    /// The node learned that the operator removed it from the cluster
    /// (the master's reason, which says what to do).
    #[error("{0}")]
    Removed(String),
}

/// One line per `--via` node tried, or the one failure.
fn discover_message(failures: &[DiscoverError], cookie: &str) -> String {
    let text = match failures {
        [] => "no --via node was tried".to_owned(),
        [one] => format!("cannot reach the cluster: {one}"),
        many => {
            let lines: Vec<String> = many.iter().map(|e| format!("  {e}")).collect();
            format!(
                "cannot reach the cluster through any --via node:\n{}",
                lines.join("\n")
            )
        }
    };
    if failures
        .iter()
        .any(|f| matches!(f, DiscoverError::Cookie { .. }))
    {
        format!("{text}\n(this command's cookie came from {cookie}; it must be the cluster's)")
    } else {
        text
    }
}

/// The exit codes of the `dike` program, by cause (README, "Exit codes").
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Anything not listed below (an internal error, output that cannot be
    /// written, the node stopped, a master that answered with a reply of
    /// the wrong kind).
    pub const OTHER: u8 = 1;
    /// A usage error: a bad flag, argument or request text (also clap's).
    pub const USAGE: u8 = 2;
    /// No `--via` node could be reached (nothing listens, or no answer).
    pub const UNREACHABLE: u8 = 3;
    /// The cluster refused the cookie.
    pub const AUTH: u8 = 4;
    /// The cluster was reached but no master quorum answered.
    pub const NO_MASTER_QUORUM: u8 = 5;
    /// The group did not answer in time (unavailable, or timed out: a
    /// command may or may not have been applied), or the node's dispatcher
    /// did not.
    pub const UNAVAILABLE: u8 = 6;
    /// The group or the master answered with an error: an application
    /// error reply, a refused change, a compare-and-set that did not apply.
    pub const REFUSED: u8 = 7;
    /// No such group.
    pub const NOT_FOUND: u8 = 8;
    /// The node could not start (a port in use, a data dir in use, ...),
    /// or it stopped because the operator removed it from the cluster.
    pub const START: u8 = 9;
    /// A TLS handshake with the cluster failed: certificates of another
    /// CA, an expired certificate, a node that requires TLS of a client
    /// without it, or one without TLS dialled with it.
    pub const TLS: u8 = 10;
}

impl CliError {
    /// The program's exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_)
            | CliError::BadRequest { .. }
            | CliError::UnknownKind { .. }
            | CliError::Tls(_)
            | CliError::Certs(_) => exit::USAGE,
            CliError::Start(_) | CliError::Removed(_) => exit::START,
            CliError::Discover { failures, .. } => {
                let any = |f: fn(&DiscoverError) -> bool| failures.iter().any(f);
                if any(|f| {
                    matches!(
                        f,
                        DiscoverError::Tls { .. } | DiscoverError::TlsRequired { .. }
                    )
                }) {
                    exit::TLS
                } else if any(|f| matches!(f, DiscoverError::Cookie { .. })) {
                    exit::AUTH
                } else {
                    exit::UNREACHABLE
                }
            }
            CliError::NoMasterQuorum { .. } => exit::NO_MASTER_QUORUM,
            CliError::Cluster(e) => match e {
                DikeError::UnknownGroup(_) => exit::NOT_FOUND,
                DikeError::Unavailable { group, .. } | DikeError::Timeout { group, .. }
                    if group == MASTER_GROUP =>
                {
                    exit::NO_MASTER_QUORUM
                }
                DikeError::Unavailable { .. }
                | DikeError::Timeout { .. }
                | DikeError::DispatcherTimeout { .. }
                | DikeError::NotReady { .. }
                | DikeError::SessionExpired { .. } => exit::UNAVAILABLE,
                DikeError::Application(_) | DikeError::Rejected(_) => exit::REFUSED,
                DikeError::UnknownKind(_)
                | DikeError::Decode(_)
                | DikeError::UnexpectedReply { .. }
                | DikeError::NodeStopped(_) => exit::OTHER,
            },
            CliError::NoSuchGroup(_) | CliError::NoSuchNode { .. } | CliError::Ring(_) => {
                exit::NOT_FOUND
            }
            CliError::NotAVoter { .. } => exit::REFUSED,
            CliError::DrainTimeout { .. } => exit::UNAVAILABLE,
            CliError::StillRemoving { .. } | CliError::MastersChanging { .. } => exit::UNAVAILABLE,
            CliError::Join(
                JoinNodeError::Unreachable { .. } | JoinNodeError::UnknownNode { .. },
            ) => exit::UNREACHABLE,
            CliError::CasMismatch { .. } | CliError::ErrorReply(_) => exit::REFUSED,
            CliError::Join(_) | CliError::Output(_) | CliError::Demo(_) | CliError::NodeStopped => {
                exit::OTHER
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cluster(e: DikeError) -> (String, u8) {
        let e = CliError::Cluster(e);
        (e.to_string(), e.exit_code())
    }

    #[test]
    fn a_dispatcher_that_does_not_answer_exits_as_a_timeout() {
        let (message, code) = cluster(DikeError::DispatcherTimeout {
            request: "a request to group \"g\"".into(),
            after: Duration::from_secs(6),
        });
        assert!(
            message.contains("did not answer a request to group \"g\" within 6s"),
            "{message}"
        );
        assert_eq!(code, exit::UNAVAILABLE);
        let timeout = cluster(DikeError::Timeout {
            group: "g".into(),
            after: Duration::from_secs(5),
            detail: None,
        });
        assert_eq!(code, timeout.1, "the same code as a group's timeout");
    }

    #[test]
    fn a_reply_of_the_wrong_kind_exits_as_an_internal_error_naming_both() {
        let (message, code) = cluster(DikeError::UnexpectedReply {
            request: "GetTable".into(),
            reply: "Done".into(),
        });
        assert!(
            message.contains("request GetTable with a reply Done")
                && message.contains("same version"),
            "{message}"
        );
        assert_eq!(code, exit::OTHER);
    }

    #[test]
    fn a_master_timeout_exits_as_no_master_quorum() {
        let (_, code) = cluster(DikeError::Timeout {
            group: MASTER_GROUP.into(),
            after: Duration::from_secs(5),
            detail: None,
        });
        assert_eq!(code, exit::NO_MASTER_QUORUM);
    }
}
