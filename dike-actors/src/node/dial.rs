//! Opening a cluster session to another node: a TCP connection (from the
//! node's own listen address when it has one), the TLS handshake when TLS
//! is configured, and the stream handed to the node server, which runs the
//! cookie handshake.
//!
//! Invariant: with TLS configured, no stream reaches the node server
//! before the node's certificate was verified (see [`crate::node::tls`]).
//! Every site that connects to a node (the dispatcher, joins, the probe a
//! client reaches the cluster with) goes through `dial`.

use crate::node::tls::{Tls, TlsFailure};
use ractor::ActorRef;
use ractor_cluster::{NetworkStream, NodeServerMessage};
use std::net::IpAddr;

/// Why a cluster session could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// No TCP connection (nothing listens, no route, the name does not
    /// resolve).
    #[error("{0}")]
    Socket(String),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(TlsFailure),
    /// The local node server is gone.
    #[error("the local node server stopped: {0}")]
    Server(String),
}

/// Connects to the node at `address` (`HOST:PORT`), binding the socket to
/// `local` unless that is `None` or unspecified, and hands the session to
/// `server`; the address the session runs to (what `server` reports its
/// session events with).
///
/// Binding the source matters for nodes: every session between two nodes
/// then runs between their two listen addresses, so a firewall rule on an
/// address pair (the fault suite's network partitions) cuts exactly that
/// link.
pub(crate) async fn dial(
    server: &ActorRef<NodeServerMessage>,
    address: &str,
    local: Option<IpAddr>,
    tls: Option<&Tls>,
) -> Result<std::net::SocketAddr, DialError> {
    let socket = |e: std::io::Error| DialError::Socket(e.to_string());
    // Every address the name resolves to, in order, as a plain connect
    // would (`localhost` may give ::1 first to a node on 127.0.0.1).
    let (mut stream, mut last) = (None, None);
    for peer in tokio::net::lookup_host(address).await.map_err(socket)? {
        match connect_from(peer, local).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = stream.ok_or_else(|| match last {
        Some(e) => socket(e),
        None => DialError::Socket(format!("{address} resolves to nothing")),
    })?;
    stream.set_nodelay(true).map_err(socket)?;
    let (peer_addr, local_addr) = (
        stream.peer_addr().map_err(socket)?,
        stream.local_addr().map_err(socket)?,
    );
    let stream = match tls {
        None => NetworkStream::Raw {
            peer_addr,
            local_addr,
            stream,
        },
        Some(tls) => NetworkStream::TlsClient {
            peer_addr,
            local_addr,
            stream: tls.connect(address, stream).await.map_err(DialError::Tls)?,
        },
    };
    server
        .cast(NodeServerMessage::ConnectionOpened {
            stream: Box::new(stream),
            is_server: false,
        })
        .map_err(|e| DialError::Server(e.to_string()))?;
    Ok(peer_addr)
}

/// A TCP connection to `peer` from `local` (when given, specified and of
/// the same family).
async fn connect_from(
    peer: std::net::SocketAddr,
    local: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let tcp = if peer.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(local) = local.filter(|l| !l.is_unspecified() && l.is_ipv4() == peer.is_ipv4()) {
        tcp.bind(std::net::SocketAddr::new(local, 0))?;
    }
    tcp.connect(peer).await
}
