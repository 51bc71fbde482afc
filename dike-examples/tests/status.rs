//! `dike status` and `GET /status.json` against `dike node` child
//! processes: three in-memory masters with one group on all three, then one
//! of them killed with SIGKILL; and one node's HTTP listener.

mod common;

use common::{free_addr, get, wait_until_blocking};

use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

const COOKIE: &str = "status-test-cookie";

/// A `dike node` child, killed when the test ends however it ends.
struct NodeProcess {
    name: String,
    node: common::ChildProcess,
}

impl NodeProcess {
    /// An in-memory node of the cluster of `masters`, with `extra` flags.
    fn start(name: &str, addr: SocketAddr, masters: &str, extra: &[&str]) -> NodeProcess {
        let mut args = vec!["--in-memory"];
        args.extend_from_slice(extra);
        let node = common::spawn_node("status", name, addr, masters, &args, COOKIE);
        NodeProcess {
            name: name.to_owned(),
            node,
        }
    }

    fn log_text(&self) -> String {
        let text = self.node.log();
        format!("--- {} log ---\n{text}", self.name)
    }

    /// Fails the test if the node exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.node.exited() {
            panic!(
                "dike node {} exited with {status}\n{}",
                self.name,
                self.log_text()
            );
        }
    }
}

/// Runs `dike ARGS --via VIA`.
fn dike(via: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dike"))
        .args(args)
        .args(["--via", via])
        .env("DIKE_COOKIE", COOKIE)
        .output()
        .expect("run dike")
}

/// `dike status -o json --via VIA`, parsed, or why not.
fn status_json(via: &str) -> Result<Value, String> {
    let out = dike(via, &["status", "-o", "json", "--timeout", "5"]);
    if !out.status.success() {
        return Err(format!(
            "dike status failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// [`common::wait_until_blocking`] while `nodes` run: fails at once if one exited, and
/// adds their logs to the last error.
fn poll_running<T>(
    what: &str,
    within: Duration,
    nodes: &mut [&mut NodeProcess],
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    wait_until_blocking(within, what, || {
        for n in nodes.iter_mut() {
            n.assert_running();
        }
        probe().map_err(|last| {
            let logs: Vec<String> = nodes.iter().map(|n| n.log_text()).collect();
            format!("{last}\n{}", logs.join("\n"))
        })
    })
}

/// The node of `status` named `name`.
fn node<'a>(status: &'a Value, name: &str) -> Result<&'a Value, String> {
    status["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["name"] == name))
        .ok_or_else(|| format!("no node {name}: {status:#}"))
}

/// The group of `status` named `name`.
fn group<'a>(status: &'a Value, name: &str) -> Result<&'a Value, String> {
    status["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["name"] == name))
        .ok_or_else(|| format!("no group {name}: {status:#}"))
}

/// The replicas of `group`, by node name.
fn replicas(group: &Value) -> Vec<&Value> {
    group["replicas"]
        .as_array()
        .map_or_else(Vec::new, |r| r.iter().collect())
}

#[test]
fn status_shows_every_replica_and_a_killed_node_as_down_with_its_replica_unreachable() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let names = ["s1", "s2", "s3"];
    let masters = common::masters_list(&names, &addrs);
    let mut nodes: Vec<NodeProcess> = names
        .iter()
        .zip(&addrs)
        .map(|(n, a)| NodeProcess::start(n, *a, &masters, &[]))
        .collect();
    // s3 is the one killed: ask the other two.
    let via = format!("{},{}", addrs[0], addrs[1]);
    let mut all: Vec<&mut NodeProcess> = nodes.iter_mut().collect();

    let healthy = poll_running("three nodes up", Duration::from_secs(60), &mut all, || {
        let s = status_json(&via)?;
        let up = names
            .iter()
            .map(|n| node(&s, n).map(|n| n["up"] == true && n["master"] == true))
            .collect::<Result<Vec<_>, _>>()?;
        if up.iter().all(|u| *u) {
            Ok(s)
        } else {
            Err(format!("not all up and masters: {s:#}"))
        }
    });
    assert!(
        healthy["nodes"].as_array().is_some_and(|n| n.len() == 3),
        "{healthy:#}"
    );

    let added = dike(&via, &["add-group", "calc", "arithmetic", "--size", "3"]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let reply = dike(&via, &["request", "calc", r#"{"Add":5}"#]);
    assert!(
        reply.status.success(),
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );

    let s = poll_running(
        "calc with a leader and 3 answering replicas",
        Duration::from_secs(30),
        &mut all,
        || {
            let s = status_json(&via)?;
            let calc = group(&s, "calc")?;
            let rs = replicas(calc);
            let applied = rs
                .iter()
                .filter(|r| r["applied"].as_u64().is_some_and(|a| a >= 1))
                .count();
            if calc["leader"].is_string() && rs.len() == 3 && applied == 3 {
                Ok(s)
            } else {
                Err(format!("calc not settled: {calc:#}"))
            }
        },
    );
    let calc = group(&s, "calc").expect("calc");
    assert_eq!(calc["kind"], "arithmetic");
    let mut on: Vec<&str> = replicas(calc)
        .iter()
        .filter_map(|r| r["node"].as_str())
        .collect();
    on.sort_unstable();
    assert_eq!(on, names, "one replica per node, by node name: {calc:#}");
    for r in replicas(calc) {
        assert!(r["member"].is_string(), "ids are strings: {r}");
        assert_eq!(r["reachable"], true, "{r}");
        assert!(r["lag"].is_u64(), "{r}");
    }
    assert_eq!(calc["problems"], serde_json::json!([]), "{calc:#}");

    // The table form succeeds too, and marks nothing.
    let table = dike(&via, &["status"]);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.lines().any(|l| l.starts_with("   calc")), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with('!') && l.len() > 1 && !l.starts_with("!  GROUP")),
        "{text}"
    );

    drop(all);
    let mut killed = nodes.pop().expect("s3");
    killed.node.kill().expect("kill");
    let mut alive: Vec<&mut NodeProcess> = nodes.iter_mut().collect();

    let after = poll_running(
        "s3 down, its replica unreachable, calc led",
        Duration::from_secs(60),
        &mut alive,
        || {
            let s = status_json(&via)?;
            let down = node(&s, "s3")?["up"] == false;
            let calc = group(&s, "calc")?;
            let gone = replicas(calc)
                .iter()
                .any(|r| r["node"] == "s3" && r["reachable"] == false);
            if down && gone && calc["leader"].is_string() {
                Ok(s)
            } else {
                Err(format!("not yet: {s:#}"))
            }
        },
    );
    let calc = group(&after, "calc").expect("calc");
    assert_ne!(calc["leader"], "s3", "{calc:#}");
    let problems = calc["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.starts_with("s3 unreachable"))),
        "{calc:#}"
    );
    // Informational: a troubled cluster is no failure.
    let table = dike(&via, &["status"]);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("\n! calc: s3 unreachable\n"), "{text}");
}

#[test]
fn status_json_on_the_http_listener_lists_the_groups_with_their_leader() {
    let (addr, http) = (free_addr(), free_addr());
    let masters = format!("web@{addr}");
    let mut web = NodeProcess::start("web", addr, &masters, &["--http", &http.to_string()]);
    poll_running(
        "add-group",
        Duration::from_secs(30),
        &mut [&mut web],
        || {
            let out = dike(&masters, &["add-group", "calc", "arithmetic"]);
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    );
    let status = poll_running(
        "/status.json with calc led by web",
        Duration::from_secs(30),
        &mut [&mut web],
        || {
            let (code, body) = get(http, "/status.json").map_err(|e| e.to_string())?;
            if code != 200 {
                return Err(format!("{code}: {body}"));
            }
            let s: Value =
                serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}"))?;
            let calc = group(&s, "calc")?;
            if calc["leader"] == "web" {
                Ok(s)
            } else {
                Err(format!("calc not led yet: {calc:#}"))
            }
        },
    );
    assert_eq!(node(&status, "web").expect("web")["up"], true);
    let calc = group(&status, "calc").expect("calc");
    assert_eq!(calc["kind"], "arithmetic");
    let rs = replicas(calc);
    assert_eq!(rs.len(), 1, "{calc:#}");
    assert_eq!(
        (rs[0]["node"].as_str(), rs[0]["lag"].as_u64()),
        (Some("web"), Some(0))
    );
    assert!(group(&status, "dike.master").is_ok(), "{status:#}");
}
