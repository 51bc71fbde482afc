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
use dike_core::{codec, Ballot, Command, Entry, Envelope, MemberId, Message, RequestError, Slot};
use ractor::RpcReplyPort;
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

/// Messages to a replica actor. They are local only: other nodes reach a
/// replica through their transports (protocol messages, client requests,
/// [`ClientRequest::Status`]), so ractor_cluster keeps no proxy of it on
/// every other node (a proxy cost about 11 KiB per remote member: 45 of a
/// hosted replica's 73 KiB of heap, docs/ARCHITECTURE.md).
pub enum ReplicaMsg {
    /// Protocol messages from the replicas of node `.0` (as it says; see
    /// [`crate::cluster::undecodable`]): an encoded `Vec<Envelope>`.
    Protocol(u64, Vec<u8>),
    /// A client request: an encoded [`ClientRequest`]; the reply is an
    /// encoded [`ClientReply`].
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
    Status(bool, RpcReplyPort<Vec<u8>>),
    /// The node with this id is down (from the node's failure detector),
    /// as it knows (a session closed, or pings unanswered).
    NodeDown(u64, dike_core::DownReport),
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
    HandOver(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// The nodes the routing table marks draining, an encoded `Vec<u64>`
    /// of node ids (see `dike_core::Replica::set_draining_nodes`).
    Draining(Vec<u8>),
}

impl ractor::Message for ReplicaMsg {}

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
    /// What the replica says about itself (any replica answers, leader or
    /// not); with its state's digest if `.0`. The reply is the encoded
    /// [`ReplicaStatus`].
    Status(bool),
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

/// Encodes the envelope lists one drive of a replica sends, one list per
/// member, as [`encode_envelopes`] does (the same bytes), but an `Accept`
/// that goes to several followers is encoded once: its bytes are copied
/// into each follower's list. Keep one encoder per drive: it holds the
/// bytes of every `Accept` it encoded.
///
/// An `Accept` is reused only for an equal message (same ballot, slot,
/// commit index and entry), so the bytes are always those of the message.
#[derive(Default)]
pub struct EnvelopeEncoder {
    /// Encoded `Accept`s by (ballot, slot, commit), with the entry encoded.
    accepts: std::collections::HashMap<(Ballot, Slot, Slot), (Entry, Vec<u8>)>,
    /// `Accept`s encoded, and encodings reused: for tests and benches.
    encoded: u64,
    reused: u64,
}

impl EnvelopeEncoder {
    /// `envs` encoded as one [`ReplicaMsg::Protocol`] payload.
    pub fn encode(&mut self, envs: &[Envelope]) -> Result<Vec<u8>, codec::CodecError> {
        let mut out = Vec::with_capacity(64 * envs.len());
        write_array_len(&mut out, envs.len());
        for e in envs {
            // An envelope is a struct of three fields: an array of three.
            write_array_len(&mut out, 3);
            write(&mut out, &e.from)?;
            write(&mut out, &e.to)?;
            match &e.msg {
                Message::Accept {
                    ballot,
                    slot,
                    entry,
                    commit,
                } => {
                    let key = (*ballot, *slot, *commit);
                    match self.accepts.get(&key) {
                        Some((cached, bytes)) if same_entry(cached, entry) => {
                            self.reused += 1;
                            out.extend_from_slice(bytes);
                        }
                        _ => {
                            let bytes = codec::encode_compact("envelopes", &e.msg)?;
                            self.encoded += 1;
                            out.extend_from_slice(&bytes);
                            self.accepts.insert(key, (entry.clone(), bytes));
                        }
                    }
                }
                other => write(&mut out, other)?,
            }
        }
        Ok(out)
    }

    /// How many `Accept`s it encoded, and how many times it reused one.
    pub fn accepts(&self) -> (u64, u64) {
        (self.encoded, self.reused)
    }
}

/// Whether two entries are equal, checking first whether two batches
/// share their commands (the followers' copies of one `Accept` do): `Arc`'s
/// own `==` compares a slice of commands element by element.
fn same_entry(a: &Entry, b: &Entry) -> bool {
    match (a, b) {
        (Entry::Batch(x), Entry::Batch(y)) => {
            x.proposer == y.proposer
                && x.boot == y.boot
                && (std::sync::Arc::ptr_eq(&x.commands, &y.commands) || x.commands == y.commands)
        }
        _ => a == b,
    }
}

/// Appends `value`, encoded as [`codec::encode_compact`] does.
fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), codec::CodecError> {
    rmp_serde::encode::write(out, value).map_err(|e| codec::CodecError::Encode {
        what: "envelopes",
        reason: e.to_string(),
    })
}

/// Appends a MessagePack array header of `len` elements, in the shortest
/// form, as rmp-serde writes a sequence's.
fn write_array_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=15 => out.push(0x90 | len as u8),
        16..=0xffff => {
            out.push(0xdc);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdd);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
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

/// One replica's batch of envelopes for one member, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    /// The group.
    pub group: String,
    /// The member it is for.
    pub to: MemberId,
    /// The encoded `Vec<Envelope>`.
    #[serde(with = "dike_core::codec::bytes")]
    pub envelopes: Vec<u8>,
    /// The group's generation (which creation of its name).
    #[serde(default)]
    pub generation: u64,
}

/// A client request for a replica, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    /// The sending transport's id for it (its reply carries it back).
    pub id: u64,
    /// The group.
    pub group: String,
    /// The member it is for.
    pub to: MemberId,
    /// The encoded [`ClientRequest`].
    #[serde(with = "dike_core::codec::bytes")]
    pub request: Vec<u8>,
    /// The group's generation (which creation of its name).
    #[serde(default)]
    pub generation: u64,
}

/// A replica's reply to a [`Forwarded`] request, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The id of the request.
    pub id: u64,
    /// The encoded [`ClientReply`].
    #[serde(with = "dike_core::codec::bytes")]
    pub reply: Vec<u8>,
}

/// The most parcels a [`Batch`] may carry: one per replica and member the
/// sender writes to on the receiver between two flushes, so far above any
/// real batch; a batch claiming more is refused before decoding them.
pub const MAX_PARCELS: usize = 1 << 18;
/// The most requests, and the most answers, a [`Batch`] may carry: a node
/// has at most 1,024 requests (the router's `MAX_IN_FLIGHT`) on the
/// wire per dispatcher.
pub const MAX_REQUESTS: usize = 1 << 16;

/// Everything one node's transport sends another at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The sending node's id.
    pub from: u64,
    /// Replicas' protocol messages (at most [`MAX_PARCELS`]).
    #[serde(deserialize_with = "codec::bounded::vec::<_, _, MAX_PARCELS>")]
    pub parcels: Vec<Parcel>,
    /// Clients' requests (at most [`MAX_REQUESTS`]).
    #[serde(deserialize_with = "codec::bounded::vec::<_, _, MAX_REQUESTS>")]
    pub requests: Vec<Forwarded>,
    /// Replies to requests the receiver forwarded (at most
    /// [`MAX_REQUESTS`]).
    #[serde(deserialize_with = "codec::bounded::vec::<_, _, MAX_REQUESTS>")]
    pub answers: Vec<Answer>,
}

impl Batch {
    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.parcels.is_empty() && self.requests.is_empty() && self.answers.is_empty()
    }
}

/// Encodes a [`TransportMsg::Deliver`](crate::cluster::transport::TransportMsg::Deliver) payload.
pub fn encode_batch(batch: &Batch) -> Result<Vec<u8>, codec::CodecError> {
    codec::encode_compact("transport batch", batch)
}

/// Decodes a [`TransportMsg::Deliver`](crate::cluster::transport::TransportMsg::Deliver) payload.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, codec::CodecError> {
    codec::decode("transport batch", bytes)
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

    fn accept(slot: Slot, value: u8, commit: Slot) -> Message {
        let command = Command::new(dike_core::ClientId(7), slot, vec![value; 16]);
        Message::Accept {
            ballot: Ballot {
                epoch: 0,
                round: 2,
                leader: MemberId::new(1, 1),
            },
            slot,
            entry: Entry::Batch(dike_core::Batch {
                proposer: MemberId::new(1, 1),
                boot: 3,
                commands: vec![command].into(),
            }),
            commit,
        }
    }

    fn envelopes(to: MemberId, msgs: &[Message]) -> Vec<Envelope> {
        let from = MemberId::new(1, 1);
        msgs.iter()
            .map(|msg| Envelope {
                from,
                to,
                msg: msg.clone(),
            })
            .collect()
    }

    #[test]
    fn shared_accepts_encode_to_the_bytes_of_each_list_and_once_each() {
        let mut encoder = EnvelopeEncoder::default();
        let msgs = [
            accept(5, 1, 4),
            Message::Nack {
                promised: Ballot::ZERO,
            },
            accept(6, 2, 4),
        ];
        for follower in 2..=5 {
            let envs = envelopes(MemberId::new(follower, 1), &msgs);
            let shared = encoder.encode(&envs).expect("encodes");
            assert_eq!(shared, encode_envelopes(&envs).expect("encodes"));
            assert_eq!(decode_envelopes(&shared).expect("decodes"), envs);
        }
        assert_eq!(encoder.accepts(), (2, 6), "two Accepts, each encoded once");
    }

    #[test]
    fn an_accept_that_differs_in_anything_is_encoded_anew() {
        let mut encoder = EnvelopeEncoder::default();
        let to = MemberId::new(2, 1);
        let first = envelopes(to, &[accept(5, 1, 4)]);
        encoder.encode(&first).expect("encodes");
        for other in [accept(5, 9, 4), accept(5, 1, 5), accept(6, 1, 4)] {
            let envs = envelopes(to, &[other]);
            let bytes = encoder.encode(&envs).expect("encodes");
            assert_eq!(decode_envelopes(&bytes).expect("decodes"), envs);
        }
        assert_eq!(encoder.accepts(), (4, 0));
    }

    #[test]
    fn a_leaders_accept_to_its_followers_is_encoded_once() {
        use crate::counter::{Counter, CounterRequest};
        use dike_core::{Blocking, Config, GroupContext, GroupDriver, MemoryStorage};
        use dike_core::{ServerMachine, Start};
        type Driver = GroupDriver<ServerMachine<Counter>, Blocking<MemoryStorage>>;
        let members: Vec<MemberId> = (1..=3).map(|n| MemberId::new(n, 1)).collect();
        let mut drivers: std::collections::BTreeMap<MemberId, Driver> = members
            .iter()
            .map(|&member| {
                let machine = ServerMachine::<Counter>::new(GroupContext {
                    group: "g".into(),
                    kind: "counter".into(),
                    member,
                });
                let start = Start {
                    member,
                    config: Config::initial(members.clone()),
                    machine,
                    options: crate::node::config::runtime_replica_options(),
                    boot: 1,
                    seed: member.node.0,
                };
                let storage = Blocking(MemoryStorage::default());
                (member, GroupDriver::start(start, storage).expect("starts"))
            })
            .collect();
        let leader = members[0];
        drivers.get_mut(&leader).expect("member").campaign();
        // Relay until nothing is sent: the election, and the leader's first
        // slot of its ballot.
        loop {
            let mut sent = Vec::new();
            for d in drivers.values_mut() {
                sent.extend(d.drive().expect("drives").to_peers);
            }
            if sent.is_empty() {
                break;
            }
            for (to, envs) in sent {
                drivers.get_mut(&to).expect("member").step(envs);
            }
        }
        let l = drivers.get_mut(&leader).expect("leader");
        assert!(l.replica().is_leader(), "member 1 leads");
        let add = codec::encode("request", &CounterRequest::Add(1)).expect("encodes");
        l.propose(Command::new(dike_core::ClientId(9), 1, add));
        let out = l.drive().expect("drives");
        assert_eq!(out.to_peers.len(), 2, "both followers are sent to");
        let mut encoder = EnvelopeEncoder::default();
        for envs in out.to_peers.values() {
            let bytes = encoder.encode(envs).expect("encodes");
            assert_eq!(bytes, encode_envelopes(envs).expect("encodes"));
        }
        assert_eq!(
            encoder.accepts(),
            (1, 1),
            "one Accept, encoded once for two"
        );
    }

    #[test]
    fn array_headers_are_the_shortest_form_at_every_boundary() {
        for len in [0usize, 1, 15, 16, 0xffff, 0x1_0000] {
            let mut header = Vec::new();
            write_array_len(&mut header, len);
            let encoded = codec::encode_compact("seq", &vec![0u8; len]).expect("encodes");
            assert_eq!(header, encoded[..header.len()], "length {len}");
        }
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        assert!(decode_envelopes(&[0xc1, 0x00]).is_err());
        assert!(codec::decode::<ClientRequest>("request", b"\xff\xfe").is_err());
    }
}
