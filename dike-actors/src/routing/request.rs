//! A typed request to a group, as a [`DispatcherMsg`]: for a ractor user
//! who talks to the dispatcher with `call!`/`cast!` rather than through a
//! [`crate::GroupHandle`] (which uses it too).

use crate::error::DikeError;
use crate::routing::dispatcher::DispatcherMsg;
use dike_core::{codec, PaxosServer};
use ractor::RpcReplyPort;
use std::marker::PhantomData;

/// What the dispatcher answers a [`DispatcherMsg::Request`] with: the
/// encoded reply, or why there is none.
pub type Answer = Result<Vec<u8>, DikeError>;

/// A request of server kind `S` to one group, encoded once.
///
/// ```no_run
/// # async fn f(node: dike_actors::NodeHandle) -> Result<(), Box<dyn std::error::Error>> {
/// use dike_actors::counter::{Counter, CounterRequest};
/// use dike_actors::routing::request::GroupRequest;
/// let dispatcher = node.dispatcher().ok_or("node stopped")?;
/// let add = GroupRequest::<Counter>::command("c1", &CounterRequest::Add(5))?;
/// let answer = ractor::call!(dispatcher, |reply| add.message(reply))?;
/// let value = GroupRequest::<Counter>::reply(answer)?;
/// # let _ = value;
/// # Ok(()) }
/// ```
pub struct GroupRequest<S: PaxosServer> {
    group: String,
    payload: Vec<u8>,
    query: bool,
    _kind: PhantomData<fn() -> S>,
}

impl<S: PaxosServer> GroupRequest<S> {
    /// `req` as a command to `group`: through the log, applied once.
    pub fn command(group: impl Into<String>, req: &S::Request) -> Result<Self, DikeError> {
        Self::new(group.into(), req, false)
    }

    /// `req` as a query to `group`: answered by `handle_query` at the
    /// leader after a read-index round, without a log write.
    pub fn query(group: impl Into<String>, req: &S::Request) -> Result<Self, DikeError> {
        Self::new(group.into(), req, true)
    }

    fn new(group: String, req: &S::Request, query: bool) -> Result<Self, DikeError> {
        Ok(GroupRequest {
            group,
            payload: codec::encode("request", req)?,
            query,
            _kind: PhantomData,
        })
    }

    /// The group it goes to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The dispatcher message asking for it, answered on `reply`.
    pub fn message(self, reply: RpcReplyPort<Answer>) -> DispatcherMsg {
        DispatcherMsg::Request {
            group: self.group,
            payload: self.payload,
            query: self.query,
            reply,
        }
    }

    /// The dispatcher message sending it without an answer
    /// ([`DispatcherMsg::Cast`]); `None` for a query, which only answers.
    pub fn cast(self) -> Option<DispatcherMsg> {
        (!self.query).then_some(DispatcherMsg::Cast {
            group: self.group,
            payload: self.payload,
        })
    }

    /// The reply in the dispatcher's `answer`.
    pub fn reply(answer: Answer) -> Result<S::Reply, DikeError> {
        Ok(codec::decode("reply", &answer?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::{Counter, CounterRequest};

    #[test]
    fn a_query_cannot_be_cast_and_a_command_can() {
        let q = GroupRequest::<Counter>::query("c", &CounterRequest::Get).expect("encodes");
        assert!(q.cast().is_none());
        let c = GroupRequest::<Counter>::command("c", &CounterRequest::Add(1)).expect("encodes");
        match c.cast() {
            Some(DispatcherMsg::Cast { group, payload }) => {
                assert_eq!(group, "c");
                let req: CounterRequest = codec::decode("request", &payload).expect("decodes");
                assert_eq!(req, CounterRequest::Add(1));
            }
            _ => panic!("a command casts as DispatcherMsg::Cast"),
        }
    }

    #[test]
    fn a_reply_is_decoded_as_the_kind_says_and_an_error_passes_through() {
        let bytes = codec::encode("reply", &7i64).expect("encodes");
        assert_eq!(GroupRequest::<Counter>::reply(Ok(bytes)), Ok(7));
        let gone = DikeError::UnknownGroup("c".into());
        assert_eq!(GroupRequest::<Counter>::reply(Err(gone.clone())), Err(gone));
    }
}
