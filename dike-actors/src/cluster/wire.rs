//! The wire protocol between nodes: the replica actor's message enum and the
//! rmp-serde payloads it carries.
//!
//! Invariants: every field that crosses the network is a `Vec<u8>` produced
//! by [`dike_core::codec::encode`] or, for what is never stored (protocol
//! messages, client requests and replies), [`dike_core::codec::encode_compact`],
//! so fields are only ever appended; a payload that fails to decode is logged
//! and dropped (or answered with [`ReplyError::Malformed`]), never a panic.
//! Variant names are the wire tags: never rename one.

use dike_core::replica::ConfigChange;
use dike_core::{codec, Command, Envelope, MemberId, RequestError};
use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

/// The process group of the replicas of `group`.
pub fn group_pg(group: &str) -> String {
    format!("dike/group/{group}")
}

/// The actor name of `member`'s replica of creation `generation` of
/// `group` (see `GroupInfo::generation`). Names travel with remote actor
/// references (the registry does not), so a peer finds a member's replica
/// among the process group's members by name. The generation is part of the
/// name, so a message for one creation of a group's name never reaches a
/// replica of another (a removed group's replica that still runs while the
/// group is created again under the same name).
pub fn replica_name(group: &str, generation: u64, member: MemberId) -> String {
    format!(
        "dike-replica/{}.{}/{generation}/{group}",
        member.node.0, member.incarnation.0
    )
}

/// The member and generation a replica actor name stands for, if it is one.
pub fn parse_replica_name(name: &str) -> Option<(MemberId, u64)> {
    let rest = name.strip_prefix("dike-replica/")?;
    let (member, rest) = rest.split_once('/')?;
    let (generation, _group) = rest.split_once('/')?;
    let (node, inc) = member.split_once('.')?;
    let member = MemberId::new(node.parse().ok()?, inc.parse().ok()?);
    Some((member, generation.parse().ok()?))
}

/// The member a replica actor name stands for, if it is one.
pub fn member_of_name(name: &str) -> Option<MemberId> {
    parse_replica_name(name).map(|(m, _)| m)
}

/// Messages to a replica actor, local or remote.
#[derive(RactorClusterMessage)]
pub enum ReplicaMsg {
    /// Protocol messages from the replicas of node `.0` (as it says; see
    /// [`crate::cluster::undecodable`]): an encoded `Vec<Envelope>`.
    Protocol(u64, Vec<u8>),
    /// A client request: an encoded [`ClientRequest`]; the reply is an
    /// encoded [`ClientReply`].
    #[rpc]
    Request(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// One logical tick (from the node's ticker), sent at this time of the
    /// node's clock (nanoseconds since its start).
    Tick(u64),
    /// Drives the replica: sent by the replica to itself so that inputs that
    /// arrived together are handled as one batch.
    Flush,
    /// The replica's view, an encoded [`ReplicaStatus`]; with its
    /// [`ReplicaStatus::state_digest`] if `.0` (which exports the whole
    /// state: costly for a large one).
    #[rpc]
    Status(bool, RpcReplyPort<Vec<u8>>),
    /// The node with this id is down (from the node's failure detector).
    NodeDown(u64),
    /// The write in flight with this token is durable (sent by the storage
    /// writer's completion to the replica itself; any other token is
    /// ignored).
    Persisted(u64),
    /// The write in flight with this token failed, with the reason.
    PersistFailed(u64, String),
    /// A client request forwarded by node `.0`'s transport under id `.1`:
    /// an encoded [`ClientRequest`] (`.2`); the encoded [`ClientReply`]
    /// goes back through this node's transport, as an
    /// [`crate::cluster::transport::Answer`] in its next batch to node `.0`.
    Forwarded(u64, u64, Vec<u8>),
    /// The node is stopping: the replica takes no leadership handed over
    /// from now on and, if it leads, hands leadership to the most advanced
    /// voter on one of the live nodes named (an encoded `Vec<u64>` of node
    /// ids). The reply is the encoded `Option<MemberId>` it hands over to.
    #[rpc]
    HandOver(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// The nodes the routing table marks draining, an encoded `Vec<u64>`
    /// of node ids (see `dike_core::Replica::set_draining_nodes`).
    Draining(Vec<u8>),
}

/// A client request as it travels to a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// A command, through the log, exactly once per `(client, seq)`.
    Command(Command),
    /// A read-index query, without a log write.
    Query(#[serde(with = "dike_core::codec::bytes")] Vec<u8>),
    /// A membership change of the group (leader only); the reply is the
    /// encoded new [`dike_core::Config`] once the change is chosen and applied.
    Change(ConfigChange),
    /// The group's configuration as its leader knows it (leader only); the
    /// reply is the encoded [`dike_core::Config`].
    Membership,
    /// Hand leadership to this voter (leader only). The reply, the encoded
    /// target, means the transfer started (or the target leads already);
    /// whether it succeeded shows as the target leading.
    Transfer(MemberId),
}

/// Why a replica did not answer a request with a reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyError {
    /// The replica's answer (not leader, application error, busy…).
    Request(RequestError),
    /// The request could not be decoded.
    Malformed(String),
    /// The leader refused a membership change (why).
    Reconfig(String),
    /// The leader refused a leadership transfer (why).
    Transfer(String),
}

/// A replica's answer to a [`ClientRequest`]: the encoded reply or why not.
pub type ClientReply = Result<Vec<u8>, ReplyError>;

/// What a replica says about itself (for tests and operators).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The replica's member id.
    pub member: MemberId,
    /// The leader it believes in.
    pub leader: Option<MemberId>,
    /// Every slot up to this one is applied.
    pub applied: u64,
    /// How many times this member was started on this node.
    pub starts: u64,
    /// FNV-1a of the exported server state at `applied` (`None` when it
    /// could not be exported): replicas at the same `applied` must agree.
    #[serde(default)]
    pub state_digest: Option<u64>,
    /// Whether the replica's group hibernates here (it skips ticks while
    /// idle); `None` from a node of a version before this field.
    #[serde(default)]
    pub hibernating: Option<bool>,
}

/// FNV-1a of `bytes`: the digest in [`ReplicaStatus::state_digest`].
pub fn digest(bytes: &[u8]) -> u64 {
    dike_core::hash::fnv1a(bytes)
}

/// Encodes a batch of envelopes for [`ReplicaMsg::Protocol`].
pub fn encode_envelopes(envs: &[Envelope]) -> Result<Vec<u8>, codec::CodecError> {
    codec::encode_compact("envelopes", envs)
}

/// The most envelopes one [`ReplicaMsg::Protocol`] may carry: what one
/// drive of a replica sends one member (a window of accepts, catch-up,
/// answers) is far below it.
pub const MAX_ENVELOPES: usize = 1 << 16;

/// Decodes a [`ReplicaMsg::Protocol`] payload (at most [`MAX_ENVELOPES`]
/// envelopes; a longer one is refused before they are decoded).
pub fn decode_envelopes(bytes: &[u8]) -> Result<Vec<Envelope>, codec::CodecError> {
    codec::bounded::decode_vec::<Envelope, MAX_ENVELOPES>("envelopes", bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_name_names_its_member() {
        let m = MemberId::new(17, 3);
        assert_eq!(member_of_name(&replica_name("a/b", 4, m)), Some(m));
        assert_eq!(parse_replica_name(&replica_name("a/b", 4, m)), Some((m, 4)));
        assert_ne!(replica_name("g", 4, m), replica_name("g", 5, m));
        assert_eq!(member_of_name("dike-replica/x.1/0/g"), None);
        assert_eq!(member_of_name("dike-replica/1.1/g"), None);
        assert_eq!(member_of_name("something-else"), None);
    }

    #[test]
    fn a_status_without_a_digest_still_decodes() {
        // What a node of the version before the digest sends.
        #[derive(Serialize)]
        struct Old {
            member: MemberId,
            leader: Option<MemberId>,
            applied: u64,
            starts: u64,
        }
        let m = MemberId::new(1, 1);
        let bytes = codec::encode(
            "status",
            &Old {
                member: m,
                leader: None,
                applied: 3,
                starts: 1,
            },
        )
        .expect("encode");
        let s: ReplicaStatus = codec::decode("status", &bytes).expect("decode");
        assert_eq!((s.applied, s.state_digest, s.hibernating), (3, None, None));
        assert_ne!(digest(b"a"), digest(b"b"));
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        assert!(decode_envelopes(&[0xc1, 0x00]).is_err());
        assert!(codec::decode::<ClientRequest>("request", b"\xff\xfe").is_err());
    }
}
