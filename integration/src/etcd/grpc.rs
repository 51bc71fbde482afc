//! A client for etcd's native gRPC API (`KV.Put`), through the `etcd-client`
//! crate (tonic). Built only with the `etcd-grpc` feature: etcd-client
//! compiles etcd's .proto files with protoc, which the test suite does not
//! need.

use super::EtcdError;
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
    /// A client for the members at `members`. Connections are opened on
    /// first use.
    pub async fn connect(members: &[SocketAddr]) -> Result<GrpcClient, EtcdError> {
        let endpoints: Vec<String> = members.iter().map(|a| format!("http://{a}")).collect();
        let client = etcd_client::Client::connect(endpoints, None).await?;
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
}
