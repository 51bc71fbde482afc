//! Asking a node's HTTP listener (`dike node --http`, see
//! [`crate::ClusterBuilder::http`]): `GET /ready` and `GET /metrics` from a
//! harness, and reading one series out of the Prometheus text a node
//! serves.
//!
//! One request per connection (HTTP/1.0: the node closes it after the
//! answer), each cut off after [`GET_WITHIN`], so a probe of a node that
//! is down or stuck fails instead of hanging the harness.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one [`get`] may take.
pub const GET_WITHIN: Duration = Duration::from_secs(3);

/// Why a `GET` gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection, the request or the answer failed.
    #[error("GET {path} from {addr}: {source}")]
    Io {
        /// The node's HTTP address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// No complete answer within [`GET_WITHIN`].
    #[error("GET {path} from {addr}: no answer within {GET_WITHIN:?}")]
    Timeout {
        /// The node's HTTP address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
    },
    /// The answer is not HTTP.
    #[error("GET {path} from {addr}: not an HTTP answer: {first_line:?}")]
    Malformed {
        /// The node's HTTP address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
        /// The answer's first line.
        first_line: String,
    },
}

/// A node's answer: its status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code (200, 503, …).
    pub status: u16,
    /// The body, after the headers.
    pub body: String,
}

/// `GET path` from the node listening on `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<HttpReply, HttpError> {
    let io = |source| HttpError::Io {
        addr,
        path: path.to_owned(),
        source,
    };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(io)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(io)?;
        Ok(raw)
    };
    let raw = tokio::time::timeout(GET_WITHIN, exchange)
        .await
        .map_err(|_| HttpError::Timeout {
            addr,
            path: path.to_owned(),
        })??;
    parse_reply(&String::from_utf8_lossy(&raw)).ok_or_else(|| HttpError::Malformed {
        addr,
        path: path.to_owned(),
        first_line: String::from_utf8_lossy(&raw)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
    })
}

/// The status and body of a raw HTTP/1.x answer.
fn parse_reply(raw: &str) -> Option<HttpReply> {
    let status_line = raw.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some(HttpReply {
        status,
        body: body.to_owned(),
    })
}

/// The value of `series` in the Prometheus text `metrics`: `series` is a
/// metric name, with its labels if it has any, exactly as the node writes
/// it (`dike_replicas_hosted`, `dike_requests_total{kind="kv",outcome="ok"}`).
/// `None` if no sample of that series is there.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            // The series must end where its name (and labels) end: a prefix
            // such as `dike_replicas` must not match `dike_replicas_hosted`.
            let rest = l.strip_prefix(series)?;
            if !rest.starts_with([' ', '\t']) {
                return None;
            }
            rest.split_whitespace().next()?.parse().ok()
        })
}

/// The sum of every sample of metric `name` in the Prometheus text
/// `metrics`, whatever its labels (`dike_transport_sent_messages_total`
/// over all peers); 0 if there is none.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once('}')?.1,
                None => rest,
            };
            if !rest.starts_with([' ', '\t']) {
                return None;
            }
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP dike_replicas_hosted Replicas running on this node, the master's included.
# TYPE dike_replicas_hosted gauge
dike_replicas_hosted 6001
# TYPE dike_replicas_hosted_extra gauge
dike_replicas_hosted_extra 7
dike_requests_total{kind=\"kv\",outcome=\"ok\"} 12 1700000000000
# EOF
";

    #[test]
    fn a_series_is_read_by_its_whole_name_and_labels() {
        assert_eq!(metric(METRICS, "dike_replicas_hosted"), Some(6001.0));
        assert_eq!(metric(METRICS, "dike_replicas_hosted_extra"), Some(7.0));
        assert_eq!(
            metric(METRICS, "dike_requests_total{kind=\"kv\",outcome=\"ok\"}"),
            Some(12.0)
        );
    }

    #[test]
    fn a_prefix_or_a_missing_series_has_no_value() {
        assert_eq!(metric(METRICS, "dike_replicas"), None);
        assert_eq!(metric(METRICS, "dike_requests_total"), None);
        assert_eq!(metric(METRICS, "dike_replicas_leading"), None);
    }

    #[test]
    fn a_sum_adds_every_labelled_sample_of_a_name_and_no_other_name() {
        let text = "dike_sent_total{peer=\"a\"} 3\ndike_sent_total{peer=\"b\"} 4.5\ndike_sent_total_bytes 100\n";
        assert_eq!(metric_sum(text, "dike_sent_total"), 7.5);
        assert_eq!(metric_sum(METRICS, "dike_replicas_hosted"), 6001.0);
        assert_eq!(metric_sum(METRICS, "dike_nothing"), 0.0);
    }

    #[test]
    fn an_answer_is_split_into_status_and_body() {
        let r = parse_reply("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 6\r\n\r\nnot yet");
        assert_eq!(
            r,
            Some(HttpReply {
                status: 503,
                body: "not yet".into()
            })
        );
        assert_eq!(parse_reply("SSH-2.0-OpenSSH"), None);
    }
}
