//! Finding a cluster through any of its nodes: a client that knows one
//! node's `HOST:PORT`, master or not, learns the masters from it.
//!
//! A node's masters are part of its configuration (the master group's
//! members follow from their names), so a client must know them before its
//! own node starts. [`masters_via`] therefore opens a short-lived cluster
//! session of its own (a `NodeServer` of a probe name, on a free loopback
//! port), asks the node's admin actor ([`AdminMsg::Masters`]) and closes the
//! session again.
//!
//! Invariant: every failure says which of the causes an operator can act on
//! it was: nothing listens at the address, the TLS handshake failed (and
//! why), the node requires TLS the client does not have, the node refused
//! the cookie, the node did not answer in time, or its answer could not be
//! read. A session the node closes before authentication is reported as
//! the cookie only once a connection of the probe's own has shown that TLS
//! is not the reason.

use crate::node::admin::{AdminMsg, ADMIN_PG};
use crate::node::config::MasterSpec;
use crate::node::dial::{dial, DialError};
use crate::node::tls::{closed_for_tls, ClosedForTls, Tls, TlsFailure};
use dike_core::routing::RoutingTable;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why the masters could not be learnt from a node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscoverError {
    /// No cluster connection to the address could be opened.
    #[error("cannot connect to {address}: {reason} (is a dike node listening there?)")]
    Refused {
        /// The address tried.
        address: String,
        /// What connecting said.
        reason: String,
    },
    /// The TLS handshake with the node failed.
    #[error("TLS handshake with {address} failed: {failure}")]
    Tls {
        /// The address tried.
        address: String,
        /// Why.
        failure: TlsFailure,
    },
    /// The node speaks TLS and the client does not.
    #[error(
        "the node at {address} requires TLS: pass --tls-cert, --tls-key and --tls-ca (or set \
         DIKE_TLS_CERT, DIKE_TLS_KEY and DIKE_TLS_CA) with a certificate of the cluster's CA"
    )]
    TlsRequired {
        /// The address tried.
        address: String,
    },
    /// The node closed the connection during authentication, and not for
    /// TLS: the cookies differ.
    #[error(
        "the node at {address} refused the cookie (authentication failed): the cookies differ"
    )]
    Cookie {
        /// The address tried.
        address: String,
    },
    /// The node did not answer within the deadline.
    #[error("the node at {address} did not answer within {after:?}")]
    NoAnswer {
        /// The address tried.
        address: String,
        /// How long the caller waited.
        after: Duration,
    },
    /// The answer could not be read (a node of another version?).
    #[error("cannot read the answer of the node at {address}: {reason}")]
    Decode {
        /// The address tried.
        address: String,
        /// What decoding said.
        reason: String,
    },
    /// The probe's own listener could not start.
    #[error("cannot start a local cluster listener: {0}")]
    Local(String),
}

/// What the probe's node server reports about a session.
#[derive(Clone, Copy, Debug)]
enum Event {
    Authenticated,
    Ready,
    Disconnected,
}

/// Every session event of the probe's node server, kept for the attempt
/// that dialled the session's address: an attempt learns its address only
/// once its dial returns, and the session may report before that.
#[derive(Default)]
struct SessionLog {
    /// (peer address, the server's id of the session, what happened).
    events: Mutex<Vec<(String, u64, Event)>>,
    changed: Notify,
}

impl SessionLog {
    fn record(&self, ses: &NodeServerSessionInformation, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((ses.peer_addr.clone(), ses.node_id, event));
        self.changed.notify_waiters();
    }

    /// The next event after the first `*seen` of the session to `peer`,
    /// waiting until `deadline`; `None` at the deadline.
    async fn next(&self, peer: &str, seen: &mut usize, deadline: Instant) -> Option<(u64, Event)> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
                let mine = events.iter().filter(|(p, _, _)| p == peer).nth(*seen);
                if let Some((_, id, event)) = mine {
                    *seen += 1;
                    return Some((*id, *event));
                }
            }
            tokio::time::timeout_at(deadline, changed).await.ok()?;
        }
    }
}

struct Events(Arc<SessionLog>);

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, _ses: NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.0.record(&ses, Event::Authenticated);
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        self.0.record(&ses, Event::Disconnected);
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        self.0.record(&ses, Event::Ready);
    }
}

/// Probes started by this process, for unique probe names.
static PROBES: AtomicU64 = AtomicU64::new(0);

/// What a node told about its cluster.
#[derive(Clone, Debug)]
pub struct Reached {
    /// The masters it knows.
    pub masters: Vec<MasterSpec>,
    /// Its cached routing table, if it had one to give: enough to route
    /// data requests while the master quorum is down.
    pub table: Option<RoutingTable>,
}

/// The masters (`NAME@HOST:PORT`) the node listening at `address`
/// (`HOST:PORT`) knows, asked with `cookie` (over `tls` if given), within
/// `within`.
pub async fn masters_via(
    address: &str,
    cookie: &str,
    tls: Option<&Tls>,
    within: Duration,
) -> Result<Vec<MasterSpec>, DiscoverError> {
    reach(address, cookie, tls, within).await.map(|r| r.masters)
}

/// The masters and the cached routing table of the node listening at
/// `address` (`HOST:PORT`), asked with `cookie` (over `tls` if given),
/// within `within`.
pub async fn reach(
    address: &str,
    cookie: &str,
    tls: Option<&Tls>,
    within: Duration,
) -> Result<Reached, DiscoverError> {
    let probe = Probe::start(cookie, tls).await?;
    let result = probe.ask(address, tls, within).await;
    probe.stop();
    result
}

/// How long [`reach_any`] waits for one node's answer before it also asks
/// the next.
pub const HEDGE_AFTER: Duration = Duration::from_millis(300);

/// What the first of `addresses` (`HOST:PORT` each) to answer tells, as
/// [`reach`] asks one: the first is asked at once, and the next as well
/// each time [`HEDGE_AFTER`] passes without an answer or an attempt fails,
/// each within `within`; so a hung node early in the list costs
/// [`HEDGE_AFTER`], not `within`. An answer that names no masters counts as
/// a failure. If none answers, every failure, in the order of `addresses`.
pub async fn reach_any(
    addresses: &[String],
    cookie: &str,
    tls: Option<&Tls>,
    within: Duration,
) -> Result<Reached, Vec<DiscoverError>> {
    let probe = Probe::start(cookie, tls).await.map_err(|e| vec![e])?;
    let probe_ref = &probe;
    let result = hedge(addresses.len(), HEDGE_AFTER, |i| async move {
        let address = &addresses[i];
        match probe_ref.ask(address, tls, within).await {
            Ok(r) if r.masters.is_empty() => Err(DiscoverError::Decode {
                address: address.clone(),
                reason: "it knows no masters".into(),
            }),
            other => other,
        }
    })
    .await;
    probe.stop();
    result
}

/// Runs `attempt(0)`, then `attempt(1)` beside it once `after` passed
/// without an answer or as soon as an attempt failed, and so on up to
/// `attempt(count - 1)`; the first success ends them all. Every failure,
/// in the order of the attempts' indices, if none succeeded.
async fn hedge<T, E, F, Fut>(count: usize, after: Duration, mut attempt: F) -> Result<T, Vec<E>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut running: Vec<(usize, Pin<Box<Fut>>)> = Vec::new();
    let mut failed: Vec<(usize, E)> = Vec::new();
    let mut next = 0;
    let mut hedge_at = Instant::now();
    loop {
        if next < count && (running.is_empty() || Instant::now() >= hedge_at) {
            running.push((next, Box::pin(attempt(next))));
            next += 1;
            hedge_at = Instant::now() + after;
            continue;
        }
        if running.is_empty() {
            break;
        }
        let finished = std::future::poll_fn(|cx| {
            for (k, (_, f)) in running.iter_mut().enumerate() {
                if let Poll::Ready(r) = f.as_mut().poll(cx) {
                    return Poll::Ready((k, r));
                }
            }
            Poll::Pending
        });
        let more = next < count;
        let finished = tokio::select! {
            r = finished => Some(r),
            () = tokio::time::sleep_until(hedge_at), if more => None,
        };
        if let Some((k, r)) = finished {
            let (i, _) = running.swap_remove(k);
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    failed.push((i, e));
                    hedge_at = Instant::now();
                }
            }
        }
    }
    failed.sort_by_key(|(i, _)| *i);
    Err(failed.into_iter().map(|(_, e)| e).collect())
}

/// A short-lived cluster listener of a probe name on a free loopback port,
/// which dials the nodes asked. One per call of [`reach`] or
/// [`reach_any`]: ractor_cluster numbers a server's sessions from 0, and
/// remote actors are known process-wide by that number, so two servers in
/// one process would mix up the nodes they reach.
struct Probe {
    server: ActorRef<NodeServerMessage>,
    log: Arc<SessionLog>,
}

impl Probe {
    async fn start(cookie: &str, tls: Option<&Tls>) -> Result<Probe, DiscoverError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| DiscoverError::Local(e.to_string()))?
            .port();
        let n = PROBES.fetch_add(1, Ordering::Relaxed);
        let name = format!("dike-probe-{}-{n}", std::process::id());
        let server = NodeServer::new(
            port,
            cookie.to_owned(),
            name.clone(),
            "127.0.0.1".to_owned(),
            tls.map(Tls::incoming),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(std::net::Ipv4Addr::LOCALHOST.into());
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| DiscoverError::Local(e.to_string()))?;
        let log = Arc::new(SessionLog::default());
        let subscribed = server.cast(NodeServerMessage::SubscribeToEvents {
            id: name,
            subscription: Box::new(Events(log.clone())),
        });
        if let Err(e) = subscribed {
            server.stop(None);
            return Err(DiscoverError::Local(e.to_string()));
        }
        Ok(Probe { server, log })
    }

    fn stop(&self) {
        self.server.stop(None);
    }

    async fn ask(
        &self,
        address: &str,
        tls: Option<&Tls>,
        within: Duration,
    ) -> Result<Reached, DiscoverError> {
        let deadline = Instant::now() + within;
        let no_answer = || DiscoverError::NoAnswer {
            address: address.to_owned(),
            after: within,
        };
        let refused = |reason: String| DiscoverError::Refused {
            address: address.to_owned(),
            reason,
        };
        let peer =
            match tokio::time::timeout_at(deadline, dial(&self.server, address, None, tls)).await {
                Ok(Ok(peer)) => peer.to_string(),
                Ok(Err(DialError::Tls(failure))) => {
                    return Err(DiscoverError::Tls {
                        address: address.to_owned(),
                        failure,
                    })
                }
                Ok(Err(e)) => return Err(refused(e.to_string())),
                Err(_) => return Err(no_answer()),
            };
        // Wait for the session: authenticated then ready, or closed during
        // the handshake: the node refused the cookie, or (the session's
        // first read failing) TLS: it speaks TLS and we do not, or it
        // refused our certificate.
        let mut authenticated = false;
        let mut seen = 0;
        let session = loop {
            match self.log.next(&peer, &mut seen, deadline).await {
                Some((_, Event::Authenticated)) => authenticated = true,
                Some((id, Event::Ready)) => break id,
                Some((_, Event::Disconnected)) if !authenticated => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let check = left.min(Duration::from_secs(1));
                    return Err(match closed_for_tls(address, tls, check).await {
                        Some(ClosedForTls::Required) => DiscoverError::TlsRequired {
                            address: address.to_owned(),
                        },
                        Some(ClosedForTls::Refused(failure)) => DiscoverError::Tls {
                            address: address.to_owned(),
                            failure,
                        },
                        None => DiscoverError::Cookie {
                            address: address.to_owned(),
                        },
                    });
                }
                Some((_, Event::Disconnected)) => {
                    return Err(refused("the connection closed".into()))
                }
                None => return Err(no_answer()),
            }
        };
        // The node's admin actor shows up in the process group once the
        // session has synchronised its groups; it is known by the
        // session's id.
        let admin = loop {
            let remote = ractor::pg::get_members(&ADMIN_PG.to_owned())
                .into_iter()
                .find(|c| {
                    let id = c.get_id();
                    !id.is_local() && id.node() == session
                });
            if let Some(cell) = remote {
                break ActorRef::<AdminMsg>::from(cell);
            }
            if Instant::now() >= deadline {
                return Err(no_answer());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        let bytes = match admin.call(AdminMsg::Masters, Some(wait)).await {
            Ok(ractor::rpc::CallResult::Success(b)) => b,
            _ => return Err(no_answer()),
        };
        let decode = |reason: String| DiscoverError::Decode {
            address: address.to_owned(),
            reason,
        };
        let specs: Vec<String> =
            dike_core::codec::decode("masters", &bytes).map_err(|e| decode(e.to_string()))?;
        let masters = specs
            .iter()
            .map(|s| s.parse::<MasterSpec>().map_err(|e| decode(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        // The table is a bonus: a node that cannot give it still told the
        // masters.
        let wait = deadline.saturating_duration_since(Instant::now());
        let table = match admin.call(AdminMsg::Table, Some(wait)).await {
            Ok(ractor::rpc::CallResult::Success(b)) => {
                dike_core::codec::decode::<Option<RoutingTable>>("routing table", &b)
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        Ok(Reached { masters, table })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Ends a test whose future would otherwise never finish.
    const GUARD: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn an_attempt_that_never_answers_does_not_hold_up_the_next() {
        let run = hedge(2, Duration::from_millis(10), |i| async move {
            match i {
                0 => std::future::pending::<Result<usize, ()>>().await,
                _ => Ok(i),
            }
        });
        let answer = tokio::time::timeout(GUARD, run).await;
        assert_eq!(answer.expect("the second attempt answered"), Ok(1));
    }

    #[tokio::test]
    async fn a_failed_attempt_starts_the_next_at_once() {
        let hour = Duration::from_secs(3600);
        let run = hedge(2, hour, |i| async move {
            match i {
                0 => Err("refused"),
                _ => Ok(i),
            }
        });
        let answer = tokio::time::timeout(GUARD, run).await;
        assert_eq!(answer.expect("no wait for the hedge"), Ok(1));
    }

    #[tokio::test]
    async fn an_answer_before_the_hedge_starts_no_other_attempt() {
        let started = Cell::new(0);
        let answer = hedge(3, Duration::from_secs(3600), |i| {
            started.set(started.get() + 1);
            async move {
                tokio::task::yield_now().await;
                Ok::<usize, ()>(i)
            }
        })
        .await;
        assert_eq!(answer, Ok(0));
        assert_eq!(started.get(), 1);
    }

    #[tokio::test]
    async fn every_failure_is_reported_in_the_order_of_the_attempts() {
        // The later attempts fail first.
        let answer = hedge(3, Duration::ZERO, |i| async move {
            tokio::time::sleep(Duration::from_millis(10 * (3 - i as u64))).await;
            Err::<(), usize>(i)
        })
        .await;
        assert_eq!(answer, Err(vec![0, 1, 2]));
    }

    #[tokio::test]
    async fn no_address_is_no_answer_and_no_failure() {
        let answer = hedge(0, Duration::ZERO, |_| async { Ok::<(), ()>(()) }).await;
        assert_eq!(answer, Err(vec![]));
    }
}
