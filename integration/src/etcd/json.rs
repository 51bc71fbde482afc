//! A client for etcd's HTTP/JSON gateway (`POST /v3/kv/put`) over one
//! kept-alive HTTP/1.1 connection: one request in flight per connection.

use super::EtcdError;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One kept-alive HTTP/1.1 connection to an etcd member's JSON gateway.
pub struct JsonGatewayClient {
    addr: SocketAddr,
    conn: BufReader<TcpStream>,
}

impl JsonGatewayClient {
    /// Connects to the member at `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<JsonGatewayClient, EtcdError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(JsonGatewayClient {
            addr,
            conn: BufReader::new(stream),
        })
    }

    /// Writes `key = value` (a linearizable write through the Raft log)
    /// and waits for etcd's answer.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, base64(key), base64(value));
        let request = format!(
            "POST /v3/kv/put HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.conn.get_mut().write_all(request.as_bytes()).await?;
        let (status, body) = self.read_response().await?;
        if status != 200 {
            return Err(EtcdError::Response(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(())
    }

    /// Reads one response: its status and body (Content-Length or chunked).
    async fn read_response(&mut self) -> Result<(u16, Vec<u8>), EtcdError> {
        let mut line = String::new();
        if self.conn.read_line(&mut line).await? == 0 {
            return Err(EtcdError::Response("connection closed".into()));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| EtcdError::Response(format!("bad status line {line:?}")))?;
        let (mut length, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.conn.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| EtcdError::Response(format!("bad chunk size {line:?}")))?;
                let mut chunk = vec![0; size + 2];
                self.conn.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            self.conn.read_exact(&mut body).await?;
        }
        Ok((status, body))
    }
}

/// Standard base64 with padding (what etcd's gateway expects for bytes).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
