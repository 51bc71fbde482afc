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

/// A sequence with a bound of its own, for what comes from the network:
/// `#[serde(deserialize_with = "codec::bounded::vec::<_, _, MAX>")]` on a
/// `Vec<T>` field, or [`bounded::decode_vec`] for a whole message. A
/// longer sequence is refused when its length header says so (before any
/// element is decoded) or, if it has none, at element `MAX + 1`. Serialised
/// as a plain sequence, so a bound changes no bytes.
pub mod bounded {
    use serde::de::{DeserializeOwned, Error as _, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer};
    use std::marker::PhantomData;

    /// Most elements reserved ahead, whatever the length header claims.
    const MAX_PREALLOCATED: usize = 1024;

    struct Bounded<T, const MAX: usize>(Vec<T>);

    impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Bounded<T, MAX> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Seq<T, const MAX: usize>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for Seq<T, MAX> {
                type Value = Bounded<T, MAX>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    write!(f, "a sequence of at most {MAX} elements")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                    let claimed = a.size_hint().unwrap_or(0);
                    if claimed > MAX {
                        return Err(A::Error::custom(format!(
                            "{claimed} elements where at most {MAX} are allowed"
                        )));
                    }
                    let mut out = Vec::with_capacity(claimed.min(MAX_PREALLOCATED));
                    while let Some(x) = a.next_element()? {
                        if out.len() == MAX {
                            return Err(A::Error::custom(format!(
                                "more than the {MAX} elements allowed"
                            )));
                        }
                        out.push(x);
                    }
                    Ok(Bounded(out))
                }
            }
            d.deserialize_seq(Seq::<T, MAX>(PhantomData))
        }
    }

    /// Deserialises a `Vec<T>` of at most `MAX` elements.
    pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>, const MAX: usize>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Bounded::<T, MAX>::deserialize(d).map(|b| b.0)
    }

    /// Deserialises an `Arc<[T]>` of at most `MAX` elements.
    pub fn arc_slice<'de, D: Deserializer<'de>, T: Deserialize<'de>, const MAX: usize>(
        d: D,
    ) -> Result<std::sync::Arc<[T]>, D::Error> {
        vec::<D, T, MAX>(d).map(std::sync::Arc::from)
    }

    /// Decodes bytes of [`super::encode`] or [`super::encode_compact`] of a
    /// sequence into a `Vec<T>` of at most `MAX` elements.
    pub fn decode_vec<T: DeserializeOwned, const MAX: usize>(
        what: &'static str,
        bytes: &[u8],
    ) -> Result<Vec<T>, super::CodecError> {
        super::decode::<Bounded<T, MAX>>(what, bytes).map(|b| b.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_sequence_decodes_up_to_its_bound_and_refuses_one_element_more() {
        let three = encode_compact("v", &vec![1u32, 2, 3]).expect("encode");
        assert_eq!(
            bounded::decode_vec::<u32, 3>("v", &three),
            Ok(vec![1, 2, 3])
        );
        let refused = bounded::decode_vec::<u32, 2>("v", &three).unwrap_err();
        assert!(refused.to_string().contains("at most 2"), "{refused}");
        // A length header claiming 4 billion elements is refused before
        // any element is read.
        let lie = [0xdd, 0xff, 0xff, 0xff, 0xff, 0x01];
        let refused = bounded::decode_vec::<u32, 1000>("v", &lie).unwrap_err();
        assert!(
            refused.to_string().contains("4294967295 elements"),
            "{refused}"
        );
        #[derive(serde::Deserialize, Debug)]
        struct Holder {
            #[serde(deserialize_with = "bounded::vec::<_, _, 2>")]
            items: Vec<u32>,
        }
        let holder = encode_compact("h", &(vec![7u32, 8],)).expect("encode");
        assert_eq!(
            decode::<Holder>("h", &holder).map(|h| h.items),
            Ok(vec![7, 8])
        );
        let over = encode_compact("h", &(vec![7u32, 8, 9],)).expect("encode");
        assert!(decode::<Holder>("h", &over).is_err());
    }

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
