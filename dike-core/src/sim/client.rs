//! A simulated client: one operation at a time, retried with the same
//! sequence number until answered. It finds the leader as the runtime's
//! router does ([`Route`]): leader hints first, else the members the
//! simulated routing table lists, in turn.

use super::checker::Checker;
use super::network::ClientRequest;
use super::register::{Action, RegisterRequest, Ret};
use crate::codec;
use crate::entry::Command;
use crate::ids::{ClientId, MemberId};
use crate::ready::{RequestError, RequestId, Response};
use crate::rng::Rng;
use crate::route::Route;

/// Steps without an answer before a request is sent again elsewhere.
const TIMEOUT: u64 = 150;

#[derive(Debug)]
struct Pending {
    op: u64,
    action: Action,
    query: bool,
    seq: u64,
    qid: u64,
    target: usize,
    deadline: u64,
    resend_at: Option<u64>,
    attempts: u32,
    /// The step it was issued.
    invoked: u64,
}

/// A client session.
#[derive(Debug)]
pub(crate) struct Client {
    idx: usize,
    id: ClientId,
    seq: u64,
    remaining: usize,
    pub completed: usize,
    issued: u64,
    current: Option<Pending>,
    /// Where requests go next, by node index.
    route: Route<usize>,
    next_qid: u64,
    /// Commands acknowledged with a value: (client, seq).
    pub acked: Vec<(ClientId, u64)>,
    /// Longest pause between an answer and the next operation, in steps
    /// (0: none).
    think_max: u64,
    /// When the next operation may be issued (while thinking).
    next_at: Option<u64>,
    /// The longest time an operation took from its issue to its answer.
    pub slowest: u64,
}

impl Client {
    /// Client `idx`, which issues `ops` operations one after the other,
    /// pausing up to `think_max` steps before each (0: none).
    pub fn new(idx: usize, ops: usize, think_max: u64) -> Self {
        Client {
            idx,
            id: ClientId(1000 + idx as u64),
            seq: 0,
            remaining: ops,
            completed: 0,
            issued: 0,
            current: None,
            route: Route::starting_at(None, idx),
            next_qid: (idx as u64) << 40,
            acked: Vec::new(),
            think_max,
            next_at: None,
            slowest: 0,
        }
    }

    /// The current operation's description if it was issued more than
    /// `bound` steps before `now` and is still unanswered.
    pub fn overdue(&self, now: u64, bound: u64) -> Option<String> {
        let p = self.current.as_ref()?;
        (now.saturating_sub(p.invoked) > bound).then(|| {
            format!(
                "client {}'s {:?} issued at step {} is unanswered after {} steps ({} attempts, last to node {})",
                self.idx,
                p.action,
                p.invoked,
                now - p.invoked,
                p.attempts + 1,
                p.target
            )
        })
    }

    pub fn done(&self) -> bool {
        self.remaining == 0 && self.current.is_none()
    }

    pub fn describe(&self) -> String {
        format!(
            "client {} ({} left, current {:?})",
            self.idx, self.remaining, self.current
        )
    }

    pub fn owns(&self, id: &RequestId) -> bool {
        match id {
            RequestId::Command(c, _) => *c == self.id,
            RequestId::Query(q) => q >> 40 == self.idx as u64,
            RequestId::Reconfig(_) => false,
        }
    }

    pub fn note_target(&mut self, _to: usize) {}

    fn request(&mut self, p: &mut Pending) -> ClientRequest {
        let payload = codec::encode(
            "request",
            &RegisterRequest {
                op: p.op,
                action: p.action,
            },
        )
        .unwrap_or_default();
        if p.query {
            self.next_qid += 1;
            p.qid = self.next_qid;
            ClientRequest::Query { id: p.qid, payload }
        } else {
            ClientRequest::Command(Command {
                client: self.id,
                seq: p.seq,
                ack_floor: p.seq,
                payload,
            })
        }
    }

    /// Issues a new operation or retries the current one when due.
    /// `listed`: the node indices of the voters the table lists.
    #[allow(clippy::too_many_arguments)]
    pub fn act(
        &mut self,
        now: u64,
        replicas: usize,
        listed: &[usize],
        rng: &mut Rng,
        query_pct: u64,
        explode_pct: u64,
        checker: &mut Checker,
    ) -> Option<(usize, ClientRequest)> {
        if let Some(mut p) = self.current.take() {
            let timed_out = now >= p.deadline;
            let resend = p.resend_at.is_some_and(|t| now >= t);
            if !timed_out && !resend {
                self.current = Some(p);
                return None;
            }
            p.attempts += 1;
            p.target = self
                .route
                .next(listed)
                .unwrap_or_else(|| rng.below(replicas as u64) as usize);
            p.deadline = now + TIMEOUT;
            p.resend_at = None;
            let req = self.request(&mut p);
            let to = p.target;
            self.current = Some(p);
            return Some((to, req));
        }
        if self.remaining == 0 {
            return None;
        }
        if self.think_max > 0 {
            let at = *self
                .next_at
                .get_or_insert_with(|| now + rng.below(self.think_max));
            if now < at {
                return None;
            }
            self.next_at = None;
        }
        self.remaining -= 1;
        let roll = rng.below(100);
        let (action, query) = if roll < explode_pct {
            (Action::Explode, false)
        } else if roll < explode_pct + query_pct {
            (Action::Get, true)
        } else {
            let v = rng.range(0, 20) as i64;
            match rng.below(4) {
                0 => (Action::Set(v), false),
                1 => (Action::Add(v), false),
                2 => (
                    Action::Cas {
                        expect: rng.range(0, 20) as i64,
                        new: v,
                    },
                    false,
                ),
                _ => (Action::Get, false),
            }
        };
        if !query {
            self.seq += 1;
        }
        self.issued += 1;
        let op = ((self.idx as u64) << 32) | self.issued;
        let target = self
            .route
            .next(listed)
            .unwrap_or_else(|| rng.below(replicas as u64) as usize);
        let mut p = Pending {
            op,
            action,
            query,
            seq: self.seq,
            qid: 0,
            target,
            deadline: now + TIMEOUT,
            resend_at: None,
            attempts: 0,
            invoked: now,
        };
        checker.on_invoke(self.idx, action);
        let req = self.request(&mut p);
        self.current = Some(p);
        Some((target, req))
    }

    /// Handles a response; ignores answers to earlier attempts.
    pub fn on_response(
        &mut self,
        now: u64,
        resp: Response,
        member_index: impl Fn(MemberId) -> Option<usize>,
        checker: &mut Checker,
    ) -> Result<(), String> {
        let Some(p) = self.current.as_mut() else {
            return Ok(());
        };
        let mine = match resp.to {
            RequestId::Command(c, s) => !p.query && c == self.id && s == p.seq,
            RequestId::Query(q) => p.query && q == p.qid,
            RequestId::Reconfig(_) => false,
        };
        if !mine {
            return Ok(());
        }
        let ret = match resp.result {
            Ok(bytes) => match codec::decode::<i64>("reply", &bytes) {
                Ok(v) => Ret::Value(v),
                Err(e) => return Err(format!("client {}: undecodable reply: {e}", self.idx)),
            },
            Err(RequestError::Application(_)) => Ret::Failed,
            Err(RequestError::NotLeader { leader }) => {
                if let Some(l) = leader.and_then(&member_index) {
                    self.route.follow(l);
                }
                p.resend_at = Some(now + 5);
                return Ok(());
            }
            Err(RequestError::Busy) => {
                p.resend_at = Some(now + 20);
                return Ok(());
            }
            Err(e) => {
                return Err(format!(
                    "client {}: unexpected error for {:?}: {e}",
                    self.idx, p.action
                ))
            }
        };
        if !p.query && matches!(ret, Ret::Value(_)) {
            self.acked.push((self.id, p.seq));
        }
        self.route.follow(p.target);
        self.slowest = self.slowest.max(now - p.invoked);
        checker.on_return(self.idx, ret);
        self.completed += 1;
        self.current = None;
        Ok(())
    }
}
