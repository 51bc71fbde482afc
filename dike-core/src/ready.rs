//! What a replica asks its runtime to do.
//!
//! Invariant: a message in [`Ready::after_write`] may leave only once every
//! write in the same `Ready` (and every earlier one) is durable. Writes must
//! be made durable in the order they are produced.

use crate::entry::Entry;
use crate::ids::{ClientId, MemberId, Slot};
use crate::message::Envelope;
use crate::server::Effect;
use crate::storage::Write;
use serde::{Deserialize, Serialize};

/// Which request a response answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RequestId {
    /// A command, by its session and sequence number.
    Command(ClientId, u64),
    /// A query, by the id the runtime gave it.
    Query(u64),
    /// A membership change, by the id given to `Replica::propose_change`.
    Reconfig(u64),
}

/// Why a request was not answered with a reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RequestError {
    /// This replica is not the leader; try `leader` if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this replica believes in, if any.
        leader: Option<MemberId>,
    },
    /// The server failed on this request (a panic, or an undecodable
    /// request); the state is unchanged.
    #[error("application error: {0}")]
    Application(String),
    /// The request's reply was already acknowledged by its client.
    #[error("stale request: the client already acknowledged this sequence number")]
    Stale,
    /// Too many commands are waiting at the leader.
    #[error("busy: too many queued commands")]
    Busy,
    /// The server does not answer this request as a query.
    #[error("the server does not answer this request as a query")]
    QueryUnsupported,
    /// The group forgot the client's session (it keeps a bounded number):
    /// the command was not applied now, and whether an earlier attempt of it
    /// was cannot be told. The client must start a new session.
    #[error("session expired: the group no longer remembers this client; whether an earlier attempt was applied is unknown")]
    SessionExpired,
}

/// A response to a local client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request answered.
    pub to: RequestId,
    /// Encoded reply or error.
    pub result: Result<Vec<u8>, RequestError>,
}

/// An applied slot, reported when `Replica::set_trace(true)` (for checkers).
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedSlot {
    /// The slot.
    pub slot: Slot,
    /// Its value.
    pub entry: Entry,
    /// For each command of the entry: whether it changed the state (false for
    /// duplicates answered from the session table and for failed commands).
    pub fresh: Vec<bool>,
}

/// The replica's output since the last `take_ready`.
#[derive(Debug, Default)]
pub struct Ready {
    /// Writes to make durable, in order.
    pub writes: Vec<Write>,
    /// Messages that may be sent at once.
    pub messages: Vec<Envelope>,
    /// Messages that may be sent only once `writes` are durable.
    pub after_write: Vec<Envelope>,
    /// Responses to local clients.
    pub responses: Vec<Response>,
    /// Side effects to run (once).
    pub effects: Vec<Effect>,
    /// Applied slots (only when tracing).
    pub applied: Vec<AppliedSlot>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.messages.is_empty()
            && self.after_write.is_empty()
            && self.responses.is_empty()
            && self.effects.is_empty()
            && self.applied.is_empty()
    }
}
