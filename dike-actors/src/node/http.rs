//! The node's HTTP endpoints (`--http HOST:PORT`, [`NodeConfig::http`]):
//!
//! - `GET /health`: 200 `ok` while the node runs, 503 once it stops;
//! - `GET /ready`: 200 `ready` once the node has read the routing table
//!   from a master quorum and did so recently, else 503 with a one-line
//!   reason ([`Readiness`]);
//! - `GET /metrics`: the node's metrics in the Prometheus text format
//!   ([`crate::node::metrics`]);
//! - `GET /status.json`: the cluster's status ([`ClusterStatus`]) from the
//!   node's cached routing table and its replicas' answers;
//! - `GET /`: the same as a page that reloads itself every few seconds
//!   ([`crate::node::page`]; `?refresh=N` sets the seconds, 0 none).
//!
//! Served by `tiny_http` on a thread of the node's own (see
//! docs/ARCHITECTURE.md, "Monitoring", for why this crate).
//!
//! Invariants: the HTTP thread never waits on the network or on an actor;
//! `/health`, `/ready` and `/metrics` only read state the node keeps up to
//! date anyway (a flag, the readiness record, the metrics registry), so a
//! probe is answered at once even while the node's actors are busy or
//! stuck. `/status.json` and `/` must ask the replicas: it is answered from a task
//! on the node's runtime, within [`STATUS_DEADLINE`]. The listener is bound
//! before the node's actors start (an unusable address is a
//! [`StartError::HttpListen`] naming it) and released when the node stops
//! (tiny_http's accept thread closes it a moment after).
//!
//! [`NodeConfig::http`]: crate::node::config::NodeConfig::http

use crate::error::StartError;
use crate::node::context::{NodeContext, NodePart, Part};
use crate::node::status::{self, ClusterStatus};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the node last heard from the master group, for `/ready`.
///
/// A routing-table read is a read-index query at the master leader,
/// answered only after a quorum of masters confirmed its leadership: each
/// successful read proves a master quorum was reachable then.
#[derive(Debug, Default)]
pub struct Readiness {
    last_read: Option<Instant>,
    last_error: Option<String>,
}

impl Readiness {
    /// The routing table was read from the masters at `at`.
    pub(crate) fn table_read(&mut self, at: Instant) {
        self.last_read = Some(at);
        self.last_error = None;
    }

    /// Reading the routing table failed.
    pub(crate) fn read_failed(&mut self, why: String) {
        self.last_error = Some(why);
    }

    /// Ready if the table was read from the masters within `within` of
    /// `now`; else why not, in one line.
    pub fn check(&self, now: Instant, within: Duration) -> Result<(), String> {
        let error = self.last_error.as_deref();
        match (self.last_read, error) {
            (Some(t), _) if now.saturating_duration_since(t) <= within => Ok(()),
            (None, None) => {
                Err("no routing table yet: the first read from the masters has not finished".into())
            }
            (None, Some(e)) => Err(format!("no routing table yet: {e}")),
            (Some(t), e) => Err(format!(
                "no master quorum answered for {:.1} s (last error: {})",
                now.saturating_duration_since(t).as_secs_f64(),
                e.unwrap_or("none yet; a read is in flight")
            )),
        }
    }
}

/// One answer of the endpoints.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

const TEXT: &str = "text/plain; charset=utf-8";

/// How long `/status.json` may wait for one replica's answer.
pub const STATUS_PER_REPLICA: Duration = Duration::from_millis(800);

/// How long `/status.json` may take in all (then it answers 503).
pub const STATUS_DEADLINE: Duration = Duration::from_secs(3);

/// The path answered by [`status_reply`] rather than [`answer`].
const STATUS_PATH: &str = "/status.json";

fn text(status: u16, body: impl Into<String>) -> Reply {
    let mut body = body.into();
    body.push('\n');
    Reply {
        status,
        content_type: TEXT,
        body,
    }
}

/// The answer to `method path` on the node of `ctx`.
pub(crate) fn answer(ctx: &NodeContext, method: &str, path: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        return text(405, format!("method {method} not allowed: only GET"));
    }
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/health" if ctx.running() => text(200, "ok"),
        "/health" => text(503, "stopped"),
        "/ready" => {
            let within = ctx.config.refresh * 3;
            let check = match ctx.readiness().lock() {
                Ok(r) => r.check(Instant::now(), within),
                Err(_) => Err("readiness record poisoned".into()),
            };
            match check {
                Ok(()) if ctx.running() => text(200, "ready"),
                Ok(()) => text(503, "stopped"),
                Err(why) => text(503, why),
            }
        }
        "/metrics" => match ctx.metrics.encode() {
            Ok(body) => Reply {
                status: 200,
                content_type: crate::node::metrics::CONTENT_TYPE,
                body,
            },
            Err(e) => text(500, format!("cannot encode the metrics: {e}")),
        },
        _ => text(
            404,
            format!("no {path} here: try /, /health, /ready, /metrics or {STATUS_PATH}"),
        ),
    }
}

/// The answer to `GET /status.json` (`page` false) or `GET /` (`page`
/// true, reloading every `refresh` seconds) on the node of `ctx`: 200 with
/// the cluster's status as JSON or as the status page, or 503 with why not
/// (the node is stopping, or the status took longer than
/// [`STATUS_DEADLINE`]).
pub(crate) async fn status_reply(ctx: &Arc<NodeContext>, page: Option<u32>) -> Reply {
    let gathering = status::of_node(ctx, STATUS_PER_REPLICA);
    let status = match tokio::time::timeout(STATUS_DEADLINE, gathering).await {
        Ok(Ok(s)) => s,
        Ok(Err(why)) => return text(503, why),
        Err(_) => {
            let secs = STATUS_DEADLINE.as_secs_f64();
            return text(503, format!("the status took longer than {secs} s"));
        }
    };
    if let Some(refresh) = page {
        return Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: crate::node::page::render(&status, &ctx.config.name, refresh),
        };
    }
    match serde_json::to_string_pretty::<ClusterStatus>(&status) {
        Ok(body) => Reply {
            status: 200,
            content_type: "application/json",
            body: body + "\n",
        },
        Err(e) => text(500, format!("cannot encode the status: {e}")),
    }
}

/// What a request for [`status_reply`] asks: `Some(None)` the JSON,
/// `Some(Some(refresh))` the page; `None` for any other request.
fn status_request(method: &str, url: &str) -> Option<Option<u32>> {
    if method != "GET" && method != "HEAD" {
        return None;
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match path {
        STATUS_PATH => Some(None),
        "/" | "/index.html" => {
            let refresh = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("refresh="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(crate::node::page::DEFAULT_REFRESH);
            Some(Some(refresh))
        }
        _ => None,
    }
}

/// Binds the HTTP listener on `addr`.
pub(crate) fn bind(addr: SocketAddr) -> Result<tiny_http::Server, StartError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| StartError::HttpListen {
        addr,
        reason: crate::node::bind_failure(&e),
    })?;
    tiny_http::Server::from_listener(listener, None).map_err(|e| StartError::HttpListen {
        addr,
        reason: e.to_string(),
    })
}

impl NodePart for Mutex<Readiness> {
    const PART: Part = Part::Readiness;
}

impl NodePart for Mutex<Option<HttpServer>> {
    const PART: Part = Part::Http;
}

impl NodeContext {
    /// What the node last heard from the masters (`GET /ready`).
    pub(crate) fn readiness(&self) -> &Mutex<Readiness> {
        self.part()
    }

    /// Keeps `server`, the node's running HTTP endpoints, until
    /// [`NodeContext::take_http`].
    pub(crate) fn keep_http(&self, server: HttpServer) {
        if let Ok(mut kept) = self.part::<Mutex<Option<HttpServer>>>().lock() {
            *kept = Some(server);
        }
    }

    /// The node's running HTTP endpoints, if kept, to stop them.
    pub(crate) fn take_http(&self) -> Option<HttpServer> {
        self.part::<Mutex<Option<HttpServer>>>().lock().ok()?.take()
    }
}

/// The running HTTP endpoints of a node; [`HttpServer::stop`] ends them.
pub(crate) struct HttpServer {
    server: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl HttpServer {
    /// Serves `server` for the node of `ctx` on a thread of its own;
    /// `/status.json` is answered from tasks on `runtime`.
    pub(crate) fn start(
        server: tiny_http::Server,
        ctx: Arc<NodeContext>,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<HttpServer> {
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let (s, stop) = (server.clone(), stopping.clone());
        let thread = std::thread::Builder::new()
            .name("dike-http".into())
            .spawn(move || serve(&s, &ctx, &runtime, &stop))?;
        Ok(HttpServer {
            server,
            stopping,
            thread,
        })
    }

    /// Stops answering, waits for the thread, and releases the listener.
    pub(crate) fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
        if self.thread.join().is_err() {
            tracing::warn!("the HTTP thread panicked");
        }
    }
}

fn serve(
    server: &tiny_http::Server,
    ctx: &Arc<NodeContext>,
    runtime: &tokio::runtime::Handle,
    stopping: &AtomicBool,
) {
    loop {
        let request = match server.recv() {
            Ok(r) => r,
            Err(_) if stopping.load(Ordering::SeqCst) => return,
            Err(e) => {
                tracing::debug!("HTTP accept failed: {e}");
                continue;
            }
        };
        if let Some(page) = status_request(request.method().as_str(), request.url()) {
            let ctx = ctx.clone();
            runtime.spawn(async move {
                let reply = status_reply(&ctx, page).await;
                // Writing the answer may block on a slow reader.
                let _ = tokio::task::spawn_blocking(move || respond(request, reply)).await;
            });
            continue;
        }
        let reply = answer(ctx, request.method().as_str(), request.url());
        respond(request, reply);
    }
}

fn respond(request: tiny_http::Request, reply: Reply) {
    let header = tiny_http::Header::from_bytes("Content-Type", reply.content_type)
        .expect("a constant header is valid");
    let response = tiny_http::Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(header);
    if let Err(e) = request.respond(response) {
        tracing::debug!("cannot answer an HTTP request: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::config::NodeConfig;
    use std::io::{Read, Write};

    fn ctx() -> Arc<NodeContext> {
        let config = NodeConfig::builder("h", "127.0.0.1:1".parse().expect("addr"))
            .cookie("c")
            .build()
            .expect("config");
        NodeContext::new(config)
    }

    #[test]
    fn health_is_ok_while_the_node_runs_and_503_once_it_stopped() {
        let ctx = ctx();
        ctx.set_running(true);
        assert_eq!(answer(&ctx, "GET", "/health"), text(200, "ok"));
        ctx.set_running(false);
        assert_eq!(answer(&ctx, "GET", "/health").status, 503);
    }

    #[test]
    fn ready_says_why_not_until_the_masters_answered_and_again_when_they_fall_silent() {
        let ctx = ctx();
        ctx.set_running(true);
        let r = answer(&ctx, "GET", "/ready");
        assert_eq!(r.status, 503);
        assert!(r.body.starts_with("no routing table yet"), "{}", r.body);
        assert_eq!(r.body.lines().count(), 1, "{}", r.body);

        ctx.readiness()
            .lock()
            .expect("lock")
            .table_read(Instant::now());
        assert_eq!(answer(&ctx, "GET", "/ready"), text(200, "ready"));

        let within = Duration::from_secs(3);
        let mut silent = Readiness::default();
        let then = Instant::now();
        silent.table_read(then);
        silent.read_failed("group \"dike.master\" is unavailable".into());
        assert_eq!(silent.check(then + within, within), Ok(()));
        let why = silent
            .check(then + within * 2, within)
            .expect_err("stale table");
        assert!(why.contains("no master quorum answered for 6.0 s"), "{why}");
        assert!(why.contains("dike.master"), "{why}");
    }

    #[test]
    fn metrics_are_served_in_the_prometheus_text_format() {
        let ctx = ctx();
        let r = answer(&ctx, "GET", "/metrics");
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            r.body
                .contains("\n# TYPE dike_commands_applied_total counter\n"),
            "{}",
            r.body
        );
    }

    #[tokio::test]
    async fn the_status_of_a_node_without_a_dispatcher_is_503_with_the_reason() {
        let ctx = ctx();
        assert_eq!(status_request("GET", "/status.json"), Some(None));
        assert_eq!(status_request("GET", "/status.json?x=1"), Some(None));
        assert_eq!(status_request("POST", "/status.json"), None);
        assert_eq!(status_request("GET", "/"), Some(Some(5)));
        assert_eq!(status_request("GET", "/?refresh=0"), Some(Some(0)));
        assert_eq!(
            status_request("GET", "/index.html?a=b&refresh=30"),
            Some(Some(30))
        );
        assert_eq!(status_request("GET", "/health"), None);
        let r = status_reply(&ctx, None).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "the node is stopping\n");
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let ctx = ctx();
        assert_eq!(answer(&ctx, "GET", "/nope").status, 404);
        assert_eq!(answer(&ctx, "POST", "/health").status, 405);
        assert_eq!(answer(&ctx, "GET", "/metrics?x=1").status, 200);
    }

    #[test]
    fn an_address_in_use_is_a_start_error_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        match bind(addr) {
            Err(e @ StartError::HttpListen { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&addr.to_string()), "{msg}");
                assert!(msg.contains("already in use"), "{msg}");
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("bound a port in use"),
        }
    }

    #[test]
    fn the_server_answers_over_tcp_and_releases_its_port_when_stopped() {
        let ctx = ctx();
        ctx.set_running(true);
        let server = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = server.server_addr().to_ip().expect("an IP listener");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let http = HttpServer::start(server, ctx, runtime.handle().clone()).expect("start");
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
        http.stop();
        // tiny_http's accept thread lets go of the listener a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpListener::bind(addr).is_err() {
            assert!(Instant::now() < deadline, "port still held");
            std::thread::yield_now();
        }
    }
}
