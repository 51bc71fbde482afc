//! The paxos server behaviour users implement, and its byte-level adapter.
//!
//! Invariant: applying the same commands in the same order to the same state
//! gives the same state and the same replies on every replica. Side effects
//! leave `handle_call` only as an [`Effect`], which the replica runs once, on
//! the replica that proposed the command.

use crate::codec::{self, CodecError};
use crate::ids::MemberId;
use crate::session::StoredReply;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::{self, Debug};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Where a group instance runs: passed to `init` and `restore`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupContext {
    /// The group's name (for example `"counter-1"`).
    pub group: String,
    /// The server kind ([`PaxosServer::KIND`]).
    pub kind: String,
    /// This replica's identity.
    pub member: MemberId,
}

/// A side effect to run once, after its command is chosen and applied.
pub struct Effect(Box<dyn FnOnce() + Send + 'static>);

impl Effect {
    /// Wraps a closure.
    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        Effect(Box::new(f))
    }

    /// Runs the effect, consuming it.
    pub fn run(self) {
        (self.0)()
    }
}

impl Debug for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Effect(..)")
    }
}

/// What `handle_call` returns: the reply (recorded on every replica, so a
/// retry is answered the same way) and an optional side effect.
#[derive(Debug)]
pub struct Outcome<R> {
    /// The reply to the caller.
    pub reply: R,
    /// The side effect, run once on the proposing replica.
    pub effect: Option<Effect>,
}

impl<R> Outcome<R> {
    /// A reply without side effect.
    pub fn reply(reply: R) -> Self {
        Outcome {
            reply,
            effect: None,
        }
    }

    /// Adds a side effect.
    pub fn with_effect(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.effect = Some(Effect::new(f));
        self
    }
}

/// A replicated, deterministic state machine: the gen_server-like behaviour
/// of Dike's `paxos_server`.
///
/// `handle_call` must depend only on the request and the current state: no
/// clocks, no randomness, no IO. External data travels inside requests. A
/// panic inside `handle_call` does not kill the group: the command is applied
/// as failed on every replica (state unchanged) and the caller gets an
/// application error.
pub trait PaxosServer: Send + Sized + 'static {
    /// The name under which groups of this server are added.
    const KIND: &'static str;
    /// A request (command or query).
    type Request: Serialize + DeserializeOwned + Send + Debug;
    /// A reply.
    type Reply: Serialize + DeserializeOwned + Send + Debug;
    /// The exported state, for snapshots and new replicas.
    type State: Serialize + DeserializeOwned;

    /// A fresh group.
    fn init(ctx: &GroupContext) -> Self;
    /// A group restored from [`PaxosServer::export_state`].
    fn restore(state: Self::State, ctx: &GroupContext) -> Self;
    /// The state to snapshot.
    fn export_state(&self) -> Self::State;
    /// Applies a command.
    fn handle_call(&mut self, req: Self::Request) -> Outcome<Self::Reply>;
    /// Answers a read-only request without a log write, or `None` if this
    /// request must go through the log.
    fn handle_query(&self, _req: &Self::Request) -> Option<Self::Reply> {
        None
    }
}

/// What applying one encoded command did.
#[derive(Debug)]
pub enum Applied {
    /// The command ran (or failed cleanly); the reply is recorded.
    Done {
        /// Encoded reply, or an application error message.
        reply: StoredReply,
        /// The side effect, if any.
        effect: Option<Effect>,
    },
    /// The server panicked: its state may be half-changed and must be
    /// rebuilt before anything else is applied.
    Panicked(String),
}

/// The byte-level state machine the replica drives. [`ServerMachine`]
/// implements it for every [`PaxosServer`]; tests may implement it directly.
pub trait StateMachine: Send + 'static {
    /// Applies an encoded command.
    fn apply(&mut self, command: &[u8]) -> Applied;
    /// Answers an encoded query without changing state; `None` when the
    /// server does not answer it as a query.
    fn query(&self, request: &[u8]) -> Option<StoredReply>;
    /// Serialises the state.
    fn export(&self) -> Result<Vec<u8>, CodecError>;
    /// Replaces the state with an exported one.
    fn import(&mut self, state: &[u8]) -> Result<(), CodecError>;
    /// Replaces the state with a fresh group's.
    fn reset(&mut self);
}

/// Adapts a [`PaxosServer`] to [`StateMachine`] with MessagePack encoding.
pub struct ServerMachine<S: PaxosServer> {
    server: S,
    ctx: GroupContext,
}

impl<S: PaxosServer> ServerMachine<S> {
    /// A fresh group of `S`.
    pub fn new(ctx: GroupContext) -> Self {
        ServerMachine {
            server: S::init(&ctx),
            ctx,
        }
    }

    /// The server (for inspection).
    pub fn server(&self) -> &S {
        &self.server
    }
}

/// Turns a panic payload into its message.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

impl<S: PaxosServer> StateMachine for ServerMachine<S> {
    fn apply(&mut self, command: &[u8]) -> Applied {
        let req: S::Request = match codec::decode("request", command) {
            Ok(r) => r,
            Err(e) => {
                return Applied::Done {
                    reply: Err(e.to_string()),
                    effect: None,
                }
            }
        };
        let server = &mut self.server;
        match catch_unwind(AssertUnwindSafe(|| server.handle_call(req))) {
            Ok(out) => {
                let reply = codec::encode("reply", &out.reply).map_err(|e| e.to_string());
                Applied::Done {
                    reply,
                    effect: out.effect,
                }
            }
            Err(p) => Applied::Panicked(format!("application error: {}", panic_message(&*p))),
        }
    }

    fn query(&self, request: &[u8]) -> Option<StoredReply> {
        let req: S::Request = match codec::decode("request", request) {
            Ok(r) => r,
            Err(e) => return Some(Err(e.to_string())),
        };
        match catch_unwind(AssertUnwindSafe(|| self.server.handle_query(&req))) {
            Ok(Some(r)) => Some(codec::encode("reply", &r).map_err(|e| e.to_string())),
            Ok(None) => None,
            Err(p) => Some(Err(format!("application error: {}", panic_message(&*p)))),
        }
    }

    fn export(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("server state", &self.server.export_state())
    }

    fn import(&mut self, state: &[u8]) -> Result<(), CodecError> {
        let st: S::State = codec::decode("server state", state)?;
        self.server = S::restore(st, &self.ctx);
        Ok(())
    }

    fn reset(&mut self) {
        self.server = S::init(&self.ctx);
    }
}
