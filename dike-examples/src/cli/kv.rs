//! `dike kv`: get, put, delete and compare-and-set on a key-value ring of `kv` groups
//! `vnode-1` … `vnode-N`, each key sent to the vnode
//! [`vnode_for`](crate::kv::vnode_for) names.

use super::args::KvOp;
use super::client::Client;
use super::error::CliError;
use super::kinds::Mode;
use crate::kv::{vnode_for, KvReply, KvRequest, KvServer};
use dike_actors::DikeError;

/// Runs `op` on its ring; returns the value (read, or previous)
/// as a JSON line: a string, or `null` if the key was absent.
pub async fn run(client: &Client, op: KvOp) -> Result<String, CliError> {
    let table = client.table().await?;
    let vnodes = crate::kv::ring_size(&table).map_err(CliError::Ring)?;
    if let Some(asked) = op.ring().vnodes.filter(|n| *n != vnodes) {
        return Err(CliError::Usage(format!(
            "--vnodes {asked}, but the ring in the routing table has {vnodes} vnodes \
             (vnode-1 … vnode-{vnodes}); drop --vnodes to use the table's"
        )));
    }
    let (key, req, mode) = match op {
        KvOp::Get { key, .. } => (key.clone(), KvRequest::Get(key), Mode::Query),
        KvOp::Put { key, value, .. } => (key.clone(), KvRequest::Put(key, value), Mode::Call),
        KvOp::Del { key, .. } => (key.clone(), KvRequest::Delete(key), Mode::Call),
        KvOp::Cas {
            key, expected, new, ..
        } => {
            let req = KvRequest::Cas {
                key: key.clone(),
                expect: absent_if_empty(expected),
                new: absent_if_empty(new),
            };
            (key, req, Mode::Call)
        }
    };
    let group = vnode_for(&key, vnodes);
    let node = client.node();
    let reply = match mode {
        Mode::Call => node
            .group::<KvServer>(&group)
            .call(req)
            .await
            .map_err(CliError::from),
        Mode::Query => {
            let (group, req) = (&group, &req);
            client
                .retry(|n| async move { n.group::<KvServer>(group).query(req.clone()).await })
                .await
        }
    };
    let value = match reply {
        Ok(KvReply::Value(v)) => v,
        Ok(KvReply::Cas(Ok(previous))) => previous,
        Ok(KvReply::Cas(Err(current))) => return Err(CliError::CasMismatch { key, current }),
        Err(CliError::Cluster(DikeError::UnknownGroup(g))) => {
            return Err(CliError::Usage(format!(
                "the ring's group {g:?} is gone (removed meanwhile?); see `dike routing-table`"
            )))
        }
        Err(e) => return Err(e),
    };
    serde_json::to_string(&value)
        .map(|s| s + "\n")
        .map_err(|e| CliError::Output(e.to_string()))
}

/// The command line's spelling of "no value": the empty string.
fn absent_if_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}
