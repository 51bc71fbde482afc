//! The example kinds as the program knows them: registering them on a node,
//! and turning a JSON request into the kind's request and its reply back
//! into JSON, chosen by the group's kind at run time.

use super::error::CliError;
use crate::arithmetic::{Arithmetic, ArithmeticRequest};
use crate::kv::{KvRequest, KvServer};
use crate::lock::{LockRequest, LockServer};
use crate::set::{SetRequest, SetServer};
use dike_actors::{NodeConfigBuilder, NodeHandle};
use dike_core::{codec, PaxosServer};

/// The kinds this program registers and can speak JSON to.
pub const KNOWN_KINDS: [&str; 4] = [
    Arithmetic::KIND,
    KvServer::KIND,
    LockServer::KIND,
    SetServer::KIND,
];

/// `builder` with every example kind registered.
pub fn with_all(builder: NodeConfigBuilder) -> NodeConfigBuilder {
    builder
        .kind::<Arithmetic>()
        .kind::<KvServer>()
        .kind::<LockServer>()
        .kind::<SetServer>()
}

/// Whether a request goes through the log or is a read-index query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Through the group's log, applied once.
    Call,
    /// Answered by the leader after a read-index round.
    Query,
}

/// Parses `json` as a request of server kind `S`; the error shows an example
/// request of that kind.
pub fn parse_request<S: PaxosServer>(
    json: &str,
    example: S::Request,
) -> Result<S::Request, CliError> {
    serde_json::from_str(json).map_err(|e| CliError::BadRequest {
        kind: S::KIND.to_owned(),
        reason: e.to_string(),
        example: serde_json::to_string(&example).unwrap_or_default(),
    })
}

/// Parses `json` as a request of `kind` (validation only, without sending).
pub fn check_request(kind: &str, group: &str, json: &str) -> Result<(), CliError> {
    match kind {
        Arithmetic::KIND => parse_request::<Arithmetic>(json, ArithmeticRequest::Add(5)).map(drop),
        KvServer::KIND => parse_request::<KvServer>(json, kv_example()).map(drop),
        LockServer::KIND => parse_request::<LockServer>(json, lock_example()).map(drop),
        SetServer::KIND => parse_request::<SetServer>(json, set_example()).map(drop),
        other => Err(unknown(group, other)),
    }
}

/// Parses `json` as a request of `kind` and encodes it as the group's
/// servers decode it.
pub fn encode_request(kind: &str, group: &str, json: &str) -> Result<Vec<u8>, CliError> {
    let encoded = match kind {
        Arithmetic::KIND => codec::encode(
            "request",
            &parse_request::<Arithmetic>(json, ArithmeticRequest::Add(5))?,
        ),
        KvServer::KIND => codec::encode("request", &parse_request::<KvServer>(json, kv_example())?),
        LockServer::KIND => codec::encode(
            "request",
            &parse_request::<LockServer>(json, lock_example())?,
        ),
        SetServer::KIND => {
            codec::encode("request", &parse_request::<SetServer>(json, set_example())?)
        }
        other => return Err(unknown(group, other)),
    };
    encoded.map_err(|e| CliError::Cluster(e.into()))
}

/// Sends `json` to `group` of `kind` and returns the reply as JSON.
pub async fn send_json(
    node: &NodeHandle,
    kind: &str,
    group: &str,
    json: &str,
    mode: Mode,
) -> Result<String, CliError> {
    match kind {
        Arithmetic::KIND => {
            let req = parse_request::<Arithmetic>(json, ArithmeticRequest::Add(5))?;
            send::<Arithmetic>(node, group, req, mode).await
        }
        KvServer::KIND => {
            let req = parse_request::<KvServer>(json, kv_example())?;
            send::<KvServer>(node, group, req, mode).await
        }
        LockServer::KIND => {
            let req = parse_request::<LockServer>(json, lock_example())?;
            send::<LockServer>(node, group, req, mode).await
        }
        SetServer::KIND => {
            let req = parse_request::<SetServer>(json, set_example())?;
            send::<SetServer>(node, group, req, mode).await
        }
        other => Err(unknown(group, other)),
    }
}

/// Sends a typed request and returns the reply as JSON.
pub async fn send<S: PaxosServer>(
    node: &NodeHandle,
    group: &str,
    req: S::Request,
    mode: Mode,
) -> Result<String, CliError> {
    let handle = node.group::<S>(group);
    let reply = match mode {
        Mode::Call => handle.call(req).await?,
        Mode::Query => handle.query(req).await?,
    };
    serde_json::to_string(&reply).map_err(|e| CliError::Output(e.to_string()))
}

fn kv_example() -> KvRequest {
    KvRequest::Put("key".into(), "value".into())
}

fn lock_example() -> LockRequest {
    LockRequest::Acquire {
        lock: "l".into(),
        owner: "me".into(),
    }
}

fn set_example() -> SetRequest {
    SetRequest::Add {
        set: "s".into(),
        element: 1,
    }
}

fn unknown(group: &str, kind: &str) -> CliError {
    CliError::UnknownKind {
        group: group.to_owned(),
        kind: kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_in_the_kinds_serde_form_is_accepted() {
        assert!(check_request("arithmetic", "g", r#"{"Add":5}"#).is_ok());
        assert!(check_request("arithmetic", "g", r#""Read""#).is_ok());
        assert!(check_request("kv", "g", r#"{"Put":["k","v"]}"#).is_ok());
        assert!(check_request("lock", "g", r#"{"Acquire":{"lock":"l","owner":"a"}}"#).is_ok());
        assert!(check_request("set", "g", r#"{"Add":{"set":"s","element":1}}"#).is_ok());
        assert!(check_request("set", "g", r#"{"Read":"s"}"#).is_ok());
        assert!(
            encode_request("set", "g", r#"{"Add":{"set":"s","element":1}}"#).is_ok(),
            "a cast to a set group encodes"
        );
    }

    #[test]
    fn a_malformed_request_names_the_kind_and_shows_an_example() {
        let e = check_request("arithmetic", "g", "{Add:5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid arithmetic request"), "{e}");
        assert!(e.contains(r#"{"Add":5}"#), "{e}");
    }

    #[test]
    fn an_unknown_kind_is_refused_by_name() {
        let e = check_request("counter", "c1", "1").unwrap_err().to_string();
        assert!(e.contains("\"counter\""), "{e}");
    }
}
