//! A client for etcd's native gRPC API (`KV.Put`), through the `etcd-client`
//! crate (tonic). Built only with the `etcd-grpc` feature: etcd-client
//! compiles etcd's .proto files with protoc, which the test suite does not
//! need.

use super::{EtcdError, EtcdTls};
use std::net::SocketAddr;

/// An etcd client over all the given members, as etcd's own clients are:
/// one tonic channel that keeps one HTTP/2 connection per member, carries
/// concurrent requests as streams multiplexed on those connections, and
/// spreads them over the members (a follower forwards a write to the
/// leader through Raft). Clones share the connections.
#[derive(Clone)]
pub struct GrpcClient {
    client: etcd_client::Client,
}

impl GrpcClient {
    /// A client for the members at `members`, over mutual TLS with `tls`'s
    /// files if given (the members' certificates checked for `localhost`).
    /// Connections are opened on first use.
    pub async fn connect(
        members: &[SocketAddr],
        tls: Option<&EtcdTls>,
    ) -> Result<GrpcClient, EtcdError> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = members.iter().map(|a| format!("{scheme}://{a}")).collect();
        let options = match tls {
            Some(t) => {
                let ca = std::fs::read(&t.ca)?;
                let (cert, key) = (std::fs::read(&t.cert)?, std::fs::read(&t.key)?);
                let tls = etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(ca))
                    .identity(etcd_client::Identity::from_pem(cert, key))
                    .domain_name("localhost");
                Some(etcd_client::ConnectOptions::new().with_tls(tls))
            }
            None => None,
        };
        let client = etcd_client::Client::connect(endpoints, options).await?;
        Ok(GrpcClient { client })
    }

    /// Writes `key = value` (a linearizable write through the Raft log)
    /// and waits for etcd's answer.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        // A `KvClient` is a handle on the shared channel: cheap to clone, and
        // `put` needs it mutably.
        self.client.kv_client().put(key, value, None).await?;
        Ok(())
    }

    /// The client address of the member that leads, as the members at
    /// `members` say (each asked for its status until one says it is the
    /// leader).
    pub async fn leader(
        members: &[SocketAddr],
        tls: Option<&EtcdTls>,
    ) -> Result<SocketAddr, EtcdError> {
        for &member in members {
            let mut one = GrpcClient::connect(&[member], tls).await?.client;
            let status = one.status().await?;
            if status.header().map(|h| h.member_id()) == Some(status.leader()) {
                return Ok(member);
            }
        }
        Err(EtcdError::NotReady("no member says it leads".into()))
    }
}
