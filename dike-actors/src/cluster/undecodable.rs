//! Messages from other nodes that do not decode.
//!
//! A peer's frames that do not parse at all never get here: ractor_cluster
//! closes the session on a framing error (a length over the node's
//! `max_frame_bytes`, a payload that is not a cluster frame), with one
//! warning. What gets here is a well-framed message from an authenticated
//! peer (it presented the cookie, and its certificate under TLS) whose
//! payload is not what this version expects: another version, a bug, or
//! garbage. The message says which node sent it (the sending transport or
//! replica puts its node id beside the payload), and the node:
//! - drops it and counts it (`dike_undecodable_received_total`);
//! - closes its cluster sessions with that node (`disconnect`), so a peer
//!   that sends garbage stops being heard until it connects again;
//! - warns the first time, then at most once per [`LOG_EVERY`] per sending
//!   node with how many were dropped in between ([`UndecodableLog`]), so a
//!   peer that keeps reconnecting and sending garbage cannot flood the log.
//!
//! A sender can lie about its id; it holds the cookie, so it could send any
//! protocol message anyway. The worst a lie does is close another node's
//! session, which that node opens again.

use crate::node::config::node_id_of;
use crate::node::context::{NodeContext, NodePart, Part};
use ractor::ActorRef;
use ractor_cluster::NodeServerMessage;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest time between two warnings about one sending node.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// How many sending nodes the log remembers at once. Past it, nodes not
/// warned about within [`LOG_EVERY`] are forgotten; if all were, new ones
/// are counted but not logged until some are.
pub const MAX_SENDERS: usize = 1024;

/// The rate limit of the warnings, per sending node. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct UndecodableLog {
    senders: Mutex<HashMap<u64, LogState>>,
}

#[derive(Debug, Default)]
struct LogState {
    last: Option<Instant>,
    /// Dropped since the last warning.
    unreported: u64,
}

impl UndecodableLog {
    /// One more message from node `from` dropped at `now`: `Some(n)` if a
    /// warning about `from` is due, `n` being how many of its messages were
    /// dropped since the last one (this one included); `None` if it stays
    /// quiet.
    pub fn dropped(&self, from: u64, now: Instant) -> Option<u64> {
        let Ok(mut senders) = self.senders.lock() else {
            return None;
        };
        if !senders.contains_key(&from) && senders.len() >= MAX_SENDERS {
            senders.retain(|_, s| s.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY));
            if senders.len() >= MAX_SENDERS {
                return None;
            }
        }
        let s = senders.entry(from).or_default();
        s.unreported += 1;
        let due = s.last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        if !due {
            return None;
        }
        s.last = Some(now);
        Some(std::mem::take(&mut s.unreported))
    }
}

/// What [`disconnect`] is told about the message it acts on.
#[derive(Debug)]
pub(crate) struct Garbage {
    /// The node id the message gave as its sender's.
    pub from: u64,
    /// What the message was meant to be ("a transport batch").
    pub what: String,
    /// Why it did not decode.
    pub error: String,
    /// `Some(n)`: warn, `n` messages of this sender dropped since the last
    /// warning; `None`: stay quiet.
    pub warn: Option<u64>,
}

/// Closes, from a task, every cluster session `server` has with the node
/// whose id is `garbage.from` (the sessions' peer names mapped through
/// `node_id_of`), and warns if `garbage.warn` says so, naming the node.
pub(crate) fn disconnect(
    server: ActorRef<NodeServerMessage>,
    garbage: Garbage,
    node_id_of: fn(&str) -> u64,
) {
    tokio::spawn(async move {
        let sessions = match ractor::call_t!(server, NodeServerMessage::GetSessions, 1000) {
            Ok(sessions) => sessions,
            Err(e) => {
                tracing::debug!("cannot list cluster sessions to close one: {e}");
                Default::default()
            }
        };
        let mut names = Vec::new();
        for s in sessions.values() {
            let Some(peer) = &s.peer_name else { continue };
            let name = peer.name.split('@').next().unwrap_or(&peer.name);
            if node_id_of(name) == garbage.from {
                s.actor.stop(Some(format!(
                    "it sent {} that does not decode",
                    garbage.what
                )));
                names.push(name.to_owned());
            }
        }
        let Some(dropped) = garbage.warn else {
            return;
        };
        let Garbage { what, error, .. } = &garbage;
        let quiet = "further ones are counted in dike_undecodable_received_total and \
                     logged at most once a minute per node";
        match names.first() {
            Some(name) => tracing::warn!(
                node = %name,
                dropped,
                "closing the cluster session with node {name}: it sent {what} that does not \
                 decode: {error} ({quiet})"
            ),
            None => tracing::warn!(
                dropped,
                "dropping {what} that does not decode, from node id {} (no cluster session \
                 with it): {error} ({quiet})",
                garbage.from
            ),
        }
    });
}

impl NodePart for UndecodableLog {
    const PART: Part = Part::Undecodable;
}

impl NodeContext {
    /// Drops a message that did not decode (`what` it was meant to be),
    /// which says node `from` sent it: counted, the cluster sessions with
    /// that node closed (unless it is this node), and a warning logged
    /// unless one went out about `from` within the last minute (see
    /// [`crate::cluster::undecodable`]).
    pub(crate) fn drop_undecodable(&self, from: u64, what: &str, error: &dyn std::fmt::Display) {
        self.metrics.undecodable_received.inc();
        let warn = self
            .part::<UndecodableLog>()
            .dropped(from, std::time::Instant::now());
        let garbage = Garbage {
            from,
            what: what.to_owned(),
            error: error.to_string(),
            warn,
        };
        match self.node_server() {
            Some(server) if from != self.config.node_id().0 => {
                disconnect(server, garbage, |name| node_id_of(name).0)
            }
            _ => {
                if let Some(dropped) = garbage.warn {
                    tracing::warn!(
                        dropped,
                        "dropping {what} from this node that does not decode: {error}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_drop_of_each_sender_is_logged_then_at_most_one_warning_a_minute_with_the_count() {
        let log = UndecodableLog::default();
        let t0 = Instant::now();
        assert_eq!(log.dropped(7, t0), Some(1));
        assert_eq!(
            log.dropped(8, t0),
            Some(1),
            "another sender has its own limit"
        );
        for i in 1..1000 {
            assert_eq!(log.dropped(7, t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.dropped(7, t0 + LOG_EVERY), Some(1000));
        assert_eq!(
            log.dropped(7, t0 + LOG_EVERY + Duration::from_secs(1)),
            None
        );
        assert_eq!(log.dropped(8, t0 + LOG_EVERY), Some(1));
    }

    #[test]
    fn senders_that_lie_about_their_ids_cannot_grow_the_log_past_its_bound() {
        let log = UndecodableLog::default();
        let t0 = Instant::now();
        for id in 0..MAX_SENDERS as u64 {
            assert_eq!(log.dropped(id, t0), Some(1));
        }
        assert_eq!(log.dropped(u64::MAX, t0), None, "full: counted, not logged");
        assert_eq!(log.senders.lock().unwrap().len(), MAX_SENDERS);
        let later = t0 + LOG_EVERY;
        assert_eq!(
            log.dropped(u64::MAX, later),
            Some(1),
            "stale senders forgotten"
        );
        assert_eq!(log.senders.lock().unwrap().len(), 1);
    }
}
