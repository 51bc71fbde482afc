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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
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

/// What the probe's node server reports about its one session.
#[derive(Debug)]
enum Event {
    Authenticated,
    Ready,
    Disconnected,
}

struct Events(mpsc::UnboundedSender<Event>);

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, _ses: NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, _ses: NodeServerSessionInformation) {
        let _ = self.0.send(Event::Authenticated);
    }
    fn node_session_disconnected(&self, _ses: NodeServerSessionInformation) {
        let _ = self.0.send(Event::Disconnected);
    }
    fn node_session_ready(&self, _ses: NodeServerSessionInformation) {
        let _ = self.0.send(Event::Ready);
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
    let deadline = Instant::now() + within;
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
    let (tx, rx) = mpsc::unbounded_channel();
    let subscribed = server.cast(NodeServerMessage::SubscribeToEvents {
        id: name,
        subscription: Box::new(Events(tx)),
    });
    let result = match subscribed {
        Ok(()) => ask(&server, address, tls, rx, within, deadline).await,
        Err(e) => Err(DiscoverError::Local(e.to_string())),
    };
    server.stop(None);
    result
}

async fn ask(
    server: &ActorRef<NodeServerMessage>,
    address: &str,
    tls: Option<&Tls>,
    mut events: mpsc::UnboundedReceiver<Event>,
    within: Duration,
    deadline: Instant,
) -> Result<Reached, DiscoverError> {
    let no_answer = || DiscoverError::NoAnswer {
        address: address.to_owned(),
        after: within,
    };
    let refused = |reason: String| DiscoverError::Refused {
        address: address.to_owned(),
        reason,
    };
    match tokio::time::timeout_at(deadline, dial(server, address, None, tls)).await {
        Ok(Ok(())) => {}
        Ok(Err(DialError::Tls(failure))) => {
            return Err(DiscoverError::Tls {
                address: address.to_owned(),
                failure,
            })
        }
        Ok(Err(e)) => return Err(refused(e.to_string())),
        Err(_) => return Err(no_answer()),
    }
    // Wait for the session: authenticated then ready, or closed during the
    // handshake: the node refused the cookie, or (the session's first read
    // failing) TLS: it speaks TLS and we do not, or it refused our
    // certificate.
    let mut authenticated = false;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Authenticated)) => authenticated = true,
            Ok(Some(Event::Ready)) => break,
            Ok(Some(Event::Disconnected)) if !authenticated => {
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
            Ok(Some(Event::Disconnected)) | Ok(None) => {
                return Err(refused("the connection closed".into()))
            }
            Err(_) => return Err(no_answer()),
        }
    }
    // The node's admin actor shows up in the process group once the
    // session has synchronised its groups.
    let admin = loop {
        let remote = ractor::pg::get_members(&ADMIN_PG.to_owned())
            .into_iter()
            .find(|c| !c.get_id().is_local());
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
