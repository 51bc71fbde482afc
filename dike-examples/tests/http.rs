//! `dike node --http`: a single-node `dike node` child process serves
//! `/health`, `/ready` and `/metrics`; the test drives it with the `dike`
//! program and reads the endpoints over plain `TcpStream`s. The metrics are
//! read with a strict parser of the Prometheus text format (below), not by
//! matching strings.

mod common;

use common::{free_addr, get, succeeded, wait_until_blocking};

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const COOKIE: &str = "http-test-cookie";

/// A single-node `dike node` child with an HTTP address, killed when the
/// test ends however it ends.
struct NodeProcess {
    node: common::ChildProcess,
    via: String,
    http: SocketAddr,
}

impl NodeProcess {
    fn start(name: &str, http: SocketAddr) -> NodeProcess {
        let addr = free_addr();
        let via = format!("{name}@{addr}");
        let http_addr = http.to_string();
        let args = ["--in-memory", "--http", http_addr.as_str()];
        let node = common::spawn_node("http", name, addr, &via, &args, COOKIE);
        NodeProcess { node, via, http }
    }

    fn log_text(&self) -> String {
        self.node.log()
    }

    /// Runs `dike ARGS --via <this node>`, failing the test if it fails.
    fn dike(&self, args: &[&str]) -> String {
        let out: Output = Command::new(env!("CARGO_BIN_EXE_dike"))
            .args(args)
            .args(["--via", &self.via])
            .env("DIKE_COOKIE", COOKIE)
            .output()
            .expect("run dike");
        assert!(
            out.status.success(),
            "dike {args:?} failed: {}\nstderr: {}\nnode log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Polls `GET path` until it answers 200 or `within` passes; returns
    /// the body.
    fn await_200(&mut self, path: &str, within: Duration) -> String {
        wait_until_blocking(within, &format!("GET {path} answering 200"), || {
            if let Some(status) = self.node.exited() {
                panic!("dike node exited with {status}\n{}", self.log_text());
            }
            match get(self.http, path) {
                Ok((200, body)) => Ok(body),
                last => Err(format!("{last:?}\n{}", self.log_text())),
            }
        })
    }

    fn metrics(&self) -> Exposition {
        let (status, body) = get(self.http, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        Exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
    }
}

#[test]
fn a_node_with_http_reports_health_readiness_and_metrics_that_move_with_requests() {
    let mut node = NodeProcess::start("web", free_addr());
    assert_eq!(node.await_200("/health", Duration::from_secs(30)), "ok\n");
    assert_eq!(node.await_200("/ready", Duration::from_secs(30)), "ready\n");

    let ok = [("kind", "arithmetic"), ("outcome", "ok")];
    let kind = [("kind", "arithmetic")];
    let before = node.metrics();
    node.dike(&["add-group", "calc", "arithmetic"]);
    const SENT: usize = 7;
    for _ in 0..SENT {
        node.dike(&["request", "calc", r#"{"Add":1}"#]);
    }
    let after = node.metrics();

    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels).unwrap_or(0.0) - before.value(name, labels).unwrap_or(0.0)
    };
    let served = moved("dike_requests_total", &ok);
    assert!(
        served >= SENT as f64,
        "{served} requests counted, {SENT} sent"
    );
    let timed = moved("dike_request_duration_seconds_count", &kind);
    assert!(timed >= SENT as f64, "{timed} requests timed, {SENT} sent");
    let applied = moved("dike_commands_applied_total", &[]);
    assert!(applied >= SENT as f64, "{applied} commands applied");
    // The master's replica and calc's.
    let hosted = after.value("dike_replicas_hosted", &[]);
    assert_eq!(hosted, Some(2.0), "replicas hosted");
    // The node's only replicas won their elections here.
    let won = after.value("dike_leaderships_won_total", &[]);
    assert!(won >= Some(2.0), "leaderships won: {won:?}");
    // CPU time counts in clock ticks (10 ms): a young node may show 0.
    let cpu = after.value("dike_process_cpu_seconds_total", &[]);
    assert!(cpu.is_some_and(|v| v >= 0.0), "cpu: {cpu:?}");
    let rss = after.value("dike_process_resident_memory_bytes", &[]);
    assert!(rss.is_some_and(|v| v > 0.0), "rss: {rss:?}");
}

/// Scrapes `/metrics` at `http`, parsed.
fn scrape(http: SocketAddr) -> Result<Exposition, String> {
    let (status, body) = get(http, "/metrics").map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    Exposition::parse(&body).map_err(|e| format!("{e}\n{body}"))
}

#[test]
fn after_a_kill_9_the_survivors_count_one_peer_less_and_a_new_leader() {
    let names = ["m1", "m2", "m3"];
    let addrs: Vec<SocketAddr> = names.iter().map(|_| free_addr()).collect();
    let https: Vec<SocketAddr> = names.iter().map(|_| free_addr()).collect();
    let masters = common::masters_list(&names, &addrs);
    let mut nodes: Vec<common::ChildProcess> = names
        .iter()
        .zip(addrs.iter().zip(&https))
        .map(|(n, (a, h))| {
            let http = h.to_string();
            let args = ["--in-memory", "--http", http.as_str()];
            common::spawn_node("metrics", n, *a, &masters, &args, COOKIE)
        })
        .collect();
    let logs = |nodes: &[common::ChildProcess]| {
        let texts: Vec<String> = nodes.iter().map(|n| n.log()).collect();
        texts.join("\n---\n")
    };
    let via = addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let dike = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dike"))
            .args(args)
            .args(["--via", &via])
            .env("DIKE_COOKIE", COOKIE)
            .output()
            .expect("run dike")
    };
    wait_until_blocking(Duration::from_secs(60), "add-group calc", || {
        let out = dike(&["add-group", "calc", "arithmetic", "--size", "3"]);
        succeeded(&out, || logs(&nodes))
    });
    for _ in 0..5 {
        let out = dike(&["request", "calc", r#"{"Add":1}"#]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Who leads calc, from the status every node serves.
    let (_, body) = get(https[0], "/status.json").expect("status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("json");
    let calc = status["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["name"] == "calc"))
        .expect("calc in the status");
    let leader = calc["leader"]
        .as_str()
        .expect("calc has a leader")
        .to_owned();
    let victim = names.iter().position(|n| *n == leader).expect("a node");
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();

    let before: Vec<Exposition> = survivors
        .iter()
        .map(|i| scrape(https[*i]).expect("scrape"))
        .collect();
    // One leader for calc and one for the masters, however placed.
    wait_until_blocking(Duration::from_secs(30), "two replicas leading", || {
        let leading: f64 = (0..3)
            .map(|i| scrape(https[i]).expect("scrape"))
            .map(|e| e.value("dike_replicas_leading", &[]).unwrap_or(0.0))
            .sum();
        if leading == 2.0 {
            Ok(())
        } else {
            Err(format!("{leading} replicas lead, not 2"))
        }
    });
    for e in &before {
        assert_eq!(e.value("dike_replicas_hosted", &[]), Some(2.0));
        let batches = e.value(
            "dike_transport_received_messages_total",
            &[("peer", &leader)],
        );
        assert!(
            batches.is_some_and(|b| b > 0.0),
            "batches from {leader}: {batches:?}"
        );
    }
    let won_before: f64 = before
        .iter()
        .map(|e| e.value("dike_leaderships_won_total", &[]).unwrap_or(0.0))
        .sum();

    nodes[victim].kill().expect("kill");

    // Each survivor sees one peer less, and one of them wins calc.
    wait_until_blocking(
        Duration::from_secs(60),
        "the survivors' metrics showing the kill",
        || {
            let now: Result<Vec<Exposition>, String> =
                survivors.iter().map(|i| scrape(https[*i])).collect();
            let why = match now {
                Ok(now) => {
                    let peers: Vec<Option<f64>> =
                        now.iter().map(|e| e.value("dike_peers_up", &[])).collect();
                    let won: f64 = now
                        .iter()
                        .map(|e| e.value("dike_leaderships_won_total", &[]).unwrap_or(0.0))
                        .sum();
                    let elections: f64 = now
                        .iter()
                        .map(|e| e.value("dike_elections_started_total", &[]).unwrap_or(0.0))
                        .sum();
                    let leading: f64 = now
                        .iter()
                        .map(|e| e.value("dike_replicas_leading", &[]).unwrap_or(0.0))
                        .sum();
                    if peers.iter().all(|p| *p == Some(1.0))
                        && won > won_before
                        && elections > 0.0
                        && leading >= 1.0
                    {
                        return Ok(());
                    }
                    format!(
                        "peers up {peers:?}, leaderships won {won} (before {won_before}), \
                     elections {elections}, leading {leading}"
                    )
                }
                Err(e) => e,
            };
            Err(format!("{why}\n{}", logs(&nodes)))
        },
    );
    let out = dike(&["request", "calc", r#"{"Add":1}"#]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"Ok":6}"#);
}

#[test]
fn a_node_whose_http_address_is_taken_does_not_start_and_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let http = taken.local_addr().expect("addr");
    let listen = free_addr();
    let out = Command::new(env!("CARGO_BIN_EXE_dike"))
        .args(["node", "--name", "busy", "--listen", &listen.to_string()])
        .args(["--masters", &format!("busy@{listen}"), "--in-memory"])
        .env("DIKE_HTTP", http.to_string())
        .env("DIKE_COOKIE", COOKIE)
        .stdin(Stdio::null())
        .output()
        .expect("run dike node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {stderr}");
    assert!(
        stderr.contains(&format!("cannot serve HTTP on {http}")),
        "{stderr}"
    );
    assert!(stderr.contains("already in use"), "{stderr}");
}

/// One metric family: its declared type.
#[derive(Debug)]
struct Family {
    kind: String,
}

/// A scrape, parsed strictly: every line is a comment, a `# HELP`, a
/// `# TYPE` before its family's samples, or a sample of a typed family
/// (`_bucket`, `_sum` and `_count` for histograms); label values are quoted
/// with the format's escapes; values are floats; histogram buckets are
/// cumulative and end with `+Inf` equal to `_count`.
#[derive(Debug, Default)]
struct Exposition {
    families: HashMap<String, Family>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    fn parse(text: &str) -> Result<Exposition, String> {
        let mut e = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            let at = |why: String| format!("line {}: {why}: {line:?}", n + 1);
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        check_name(name).map_err(at)?;
                        let known = ["counter", "gauge", "histogram", "summary", "untyped"];
                        if !known.contains(&kind) {
                            return Err(at(format!("unknown type {kind}")));
                        }
                        if e.samples.iter().any(|(s, ..)| family_of(s) == name) {
                            return Err(at("TYPE after the family's samples".into()));
                        }
                        let kind = kind.to_owned();
                        if e.families
                            .insert(name.to_owned(), Family { kind })
                            .is_some()
                        {
                            return Err(at("a second TYPE".into()));
                        }
                    }
                    (Some("HELP"), Some(name), _) => check_name(name).map_err(at)?,
                    _ => {}
                }
                continue;
            }
            let (name, labels, value) = sample(line).map_err(at)?;
            let family = e
                .family_name(&name)
                .ok_or_else(|| at(format!("{name} belongs to no typed family")))?;
            if e.families[&family].kind == "histogram"
                && name.ends_with("_bucket")
                && !labels.contains_key("le")
            {
                return Err(at("a bucket without le".into()));
            }
            e.samples.push((name, labels, value));
        }
        e.check_histograms()?;
        Ok(e)
    }

    /// The family a sample name belongs to, given the declared types.
    fn family_name(&self, sample: &str) -> Option<String> {
        if let Some(f) = self.families.get(sample) {
            return (f.kind != "histogram").then(|| sample.to_owned());
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = sample.strip_suffix(suffix)?;
            let f = self.families.get(base)?;
            (f.kind == "histogram").then(|| base.to_owned())
        })
    }

    fn check_histograms(&self) -> Result<(), String> {
        let mut buckets: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
        for (name, labels, value) in &self.samples {
            let Some(base) = name.strip_suffix("_bucket") else {
                continue;
            };
            let mut rest = labels.clone();
            let le = rest.remove("le").unwrap_or_default();
            let le: f64 = parse_value(&le).map_err(|e| format!("{name}: le: {e}"))?;
            let key = (base.to_owned(), format!("{rest:?}"));
            buckets.entry(key).or_default().push((le, *value));
        }
        for ((base, rest), list) in buckets {
            let ordered = list.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
            if !ordered {
                return Err(format!("{base} {rest}: buckets not cumulative: {list:?}"));
            }
            let last = list.last().copied().unwrap_or((0.0, 0.0));
            let count = self
                .samples
                .iter()
                .find(|(n, l, _)| *n == format!("{base}_count") && format!("{l:?}") == rest);
            match count {
                Some((.., c)) if last.0 == f64::INFINITY && last.1 == *c => {}
                _ => {
                    return Err(format!(
                        "{base} {rest}: +Inf bucket {last:?} vs count {count:?}"
                    ))
                }
            }
        }
        Ok(())
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(.., v)| *v)
    }
}

fn family_of(sample: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| sample.strip_suffix(s))
        .unwrap_or(sample)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|e| format!("bad value {v:?}: {e}")),
    }
}

/// `name{label="value",...} value [timestamp]`.
fn sample(line: &str) -> Result<(String, BTreeMap<String, String>, f64), String> {
    let end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..end];
    check_name(name)?;
    let mut labels = BTreeMap::new();
    let mut rest = &line[end..];
    if let Some(mut s) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = s.strip_prefix('}') {
                s = after;
                break;
            }
            let eq = s.find("=\"").ok_or("a label without =\"")?;
            let key = &s[..eq];
            check_name(key)?;
            let mut value = String::new();
            let mut chars = s[eq + 2..].char_indices();
            let close = loop {
                match chars.next().ok_or("an unclosed label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("a dangling escape")?.1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            s = &s[eq + 2 + close + 1..];
            s = s.strip_prefix(',').unwrap_or(s);
        }
        rest = s;
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ');
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("bad timestamp {ts:?}: {e}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok((name.to_owned(), labels, value))
}

#[test]
fn the_exposition_parser_refuses_what_the_format_does_not_allow() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v \\\"q\\\"\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 4\nh_count 2\n";
    let e = Exposition::parse(good).expect("valid");
    assert_eq!(e.value("a_total", &[("k", "v \"q\"")]), Some(3.0));
    for bad in [
        "untyped_sample 1\n",
        "# TYPE a counter\na{k=v} 1\n",
        "# TYPE a counter\na one\n",
        "# TYPE a counter\na 1\n# TYPE a counter\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
        "# TYPE a counter\na{k=\"v\"",
    ] {
        assert!(Exposition::parse(bad).is_err(), "accepted {bad:?}");
    }
}
