//! Encoding helpers: MessagePack (rmp-serde) for everything that leaves a
//! replica — requests, replies, snapshots, log records.
//!
//! Encoding is pure computation, so it lives in the core; the runtime and the
//! storage engine use the same functions, so the bytes are the same everywhere.

use serde::{de::DeserializeOwned, Serialize};

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The value could not be serialised.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serialiser's message.
        reason: String,
    },
    /// The bytes are not a valid encoding of the expected type.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The deserialiser's message.
        reason: String,
    },
}

/// Encodes `value` as MessagePack (struct fields by name, so records stay
/// readable by later versions that add fields).
pub fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|e| CodecError::Encode {
        what,
        reason: e.to_string(),
    })
}

/// Encodes `value` as compact MessagePack: struct fields by position, not
/// by name. For what only travels between nodes and is never stored
/// (protocol messages, client requests and replies): the field names are a
/// good part of those small messages' bytes and of their encoding and
/// decoding time. [`decode`] reads both forms. A later version may append a
/// field (with `#[serde(default)]`) but never reorder or remove one.
pub fn encode_compact<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec(value).map_err(|e| CodecError::Encode {
        what,
        reason: e.to_string(),
    })
}

/// Decodes MessagePack bytes produced by [`encode`] or [`encode_compact`].
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|e| CodecError::Decode {
        what,
        reason: e.to_string(),
    })
}

/// `#[serde(with = "crate::codec::bytes")]`: a `Vec<u8>` as a binary string
/// rather than an array of integers.
pub mod bytes {
    use serde::{Deserializer, Serializer};

    /// Most bytes reserved ahead for an array of integers: its length comes
    /// from the sender and may lie, so a larger array grows as it is read
    /// (each element is at least one byte of input).
    const MAX_PREALLOCATED: usize = 4096;

    /// Serialises bytes as a binary string.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    /// Accepts a binary string or an array of integers.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let reserve = a.size_hint().unwrap_or(0).min(MAX_PREALLOCATED);
                let mut out = Vec::with_capacity(reserve);
                while let Some(b) = a.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let err = decode::<(u64, String)>("pair", &[0xc1, 0xff, 0x00]).unwrap_err();
        assert!(matches!(err, CodecError::Decode { what: "pair", .. }));
    }

    #[test]
    fn compact_bytes_decode_to_the_same_value_as_named_ones_and_are_smaller() {
        use crate::{Ballot, Batch, ClientId, Command, Entry, Envelope, MemberId, Message};
        let leader = MemberId::new(3, 7);
        let value = vec![Envelope {
            from: leader,
            to: MemberId::new(1, 2),
            msg: Message::Accept {
                ballot: Ballot {
                    epoch: 1,
                    round: 4,
                    leader,
                },
                slot: 42,
                entry: Entry::Batch(Batch {
                    proposer: leader,
                    boot: 2,
                    commands: vec![Command::new(ClientId(9), 10, vec![1, 2, 3])].into(),
                }),
                commit: 41,
            },
        }];
        let named = encode("envelopes", &value).expect("named");
        let compact = encode_compact("envelopes", &value).expect("compact");
        assert!(
            compact.len() < named.len(),
            "{} vs {}",
            compact.len(),
            named.len()
        );
        let from_named: Vec<Envelope> = decode("envelopes", &named).expect("decode named");
        let from_compact: Vec<Envelope> = decode("envelopes", &compact).expect("decode compact");
        assert_eq!(from_named, value);
        assert_eq!(from_compact, value);
    }
}
