//! The `wire` target.
//!
//! Every message a node decodes from the network, fed arbitrary bytes: the
//! first byte picks the decoder, the rest is the payload. A decoder must
//! return a value or an error, never panic, and never allocate more than
//! the input can justify (libFuzzer's `-malloc_limit_mb` catches a huge
//! preallocation from a length that lies). Protocol envelopes that decode
//! must re-encode to the same bytes through `EnvelopeEncoder` (which shares
//! an `Accept` among followers) as through `encode_envelopes`.

use dike_actors::cluster::transport::{decode_batch, TransportMsg};
use dike_actors::cluster::wire::{
    decode_envelopes, encode_envelopes, ClientReply, ClientRequest, EnvelopeEncoder, ReplicaStatus,
};
use dike_actors::master::{MasterReply, MasterRequest};
use dike_actors::node::admin::{AdminMsg, AdminReply, JoinRequest};
use dike_core::{codec, Config, MemberId, Snapshot};
use ractor::message::SerializedMessage;
use ractor::Message;

/// Variant names of the cluster messages (their wire tags), so the fuzzer
/// reaches each variant's argument decoding. (A name no message has, such
/// as the retired `TransportMsg` tags `Send` and `Reply`, is one too.)
const VARIANTS: [&str; 19] = [
    "Protocol",
    "Request",
    "Tick",
    "Flush",
    "Status",
    "NodeDown",
    "Persisted",
    "PersistFailed",
    "Forwarded",
    "HandOver",
    "Draining",
    "Send",
    "Reply",
    "Deliver",
    "Sweep",
    "PeerDown",
    "Join",
    "Ping",
    "About",
];

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) {
    let _ = codec::decode::<T>("fuzz", bytes);
}

/// A cast or a call (the tag's top bit) as ractor_cluster hands it to the
/// receiving actor.
fn serialized(tag: u8, args: &[u8]) -> SerializedMessage {
    let variant = VARIANTS[usize::from(tag & 0x7f) % VARIANTS.len()].to_owned();
    let args = args.to_vec();
    if tag & 0x80 == 0 {
        SerializedMessage::Cast {
            variant,
            args,
            metadata: None,
        }
    } else {
        let (reply, _) = ractor::concurrency::oneshot();
        SerializedMessage::Call {
            variant,
            args,
            reply: reply.into(),
            metadata: None,
        }
    }
}

/// A call's reply port is bridged by a task (ractor_cluster's derive), so
/// decoding runs inside a runtime, as it does in a node.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// The `wire` target's body.
pub fn run(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 14 {
        0 => {
            // What decodes re-encodes to the same bytes whichever encoder
            // a replica uses (the one that shares Accepts, or the plain one).
            if let Ok(envs) = decode_envelopes(rest) {
                let plain = encode_envelopes(&envs);
                let shared = EnvelopeEncoder::default().encode(&envs);
                assert_eq!(plain.ok(), shared.ok(), "the two encoders differ");
            }
        }
        1 => drop(decode_batch(rest)),
        2 => decode::<ClientRequest>(rest),
        3 => decode::<ClientReply>(rest),
        4 => decode::<ReplicaStatus>(rest),
        5 => decode::<JoinRequest>(rest),
        6 => decode::<AdminReply>(rest),
        7 => decode::<MasterRequest>(rest),
        8 => decode::<MasterReply>(rest),
        9 => decode::<Snapshot>(rest),
        10 => {
            decode::<Vec<u64>>(rest);
            decode::<Option<MemberId>>(rest);
            decode::<Config>(rest);
        }
        // The cluster messages' own argument framing (ractor_cluster's
        // derive, which turns a panic in an argument's decoding into an
        // error; see `crate::expect_caught_panics`).
        11..=13 => {
            let Some((&tag, args)) = rest.split_first() else {
                return;
            };
            let _runtime = runtime().enter();
            crate::expect_caught_panics(|| match pick % 14 {
                // Replica messages are local only (no wire form).
                11 | 12 => drop(TransportMsg::deserialize(serialized(tag, args))),
                _ => drop(AdminMsg::deserialize(serialized(tag, args))),
            });
        }
        _ => unreachable!(),
    }
}
