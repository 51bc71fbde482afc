//! The `cli_json` target.
//!
//! A request typed at the `dike` program, as JSON, parsed and encoded the
//! way the CLI does it (`dike_examples::cli::kinds::encode_request`) for
//! every example kind: a value or a typed error, never a panic. What
//! encodes must decode back to the same bytes' meaning (the servers decode
//! it with `dike_core::codec`).

use dike_core::codec;
use dike_examples::arithmetic::ArithmeticRequest;
use dike_examples::cli::kinds::{check_request, encode_request, KNOWN_KINDS};
use dike_examples::kv::KvRequest;
use dike_examples::lock::LockRequest;
use dike_examples::set::SetRequest;

fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(bytes: &[u8]) {
    let value: T = codec::decode("request", bytes).expect("an encoded request decodes");
    let again = codec::encode("request", &value).expect("a decoded request encodes");
    assert_eq!(again, bytes, "a request's encoding is stable");
}

/// The `cli_json` target's body.
pub fn run(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    for kind in KNOWN_KINDS {
        let checked = check_request(kind, "g", json).is_ok();
        let Ok(bytes) = encode_request(kind, "g", json) else {
            assert!(!checked, "check_request and encode_request agree");
            continue;
        };
        assert!(checked, "check_request and encode_request agree");
        match kind {
            "arithmetic" => round_trips::<ArithmeticRequest>(&bytes),
            "kv" => round_trips::<KvRequest>(&bytes),
            "lock" => round_trips::<LockRequest>(&bytes),
            "set" => round_trips::<SetRequest>(&bytes),
            _ => {}
        }
    }
    assert!(encode_request("no-such-kind", "g", json).is_err());
}
