//! Data groups answer while the master quorum is down: three masters and
//! two workers as `dike node` processes, a group on all five; with two
//! masters killed, `dike` reaches the group through a worker (`--via` one
//! node's HOST:PORT: the client routes by that node's cached table), while a
//! command that needs the masters fails saying so (exit 5).

mod common;

use common::{free_addr, wait_until_blocking};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

const COOKIE: &str = "master-quorum-cookie";

/// `dike node` children, killed when the test ends however it ends.
struct Nodes {
    children: Vec<common::ChildProcess>,
}

impl Nodes {
    fn spawn(&mut self, name: &str, addr: SocketAddr, masters: &str, extra: &[&str]) {
        let mut args = vec!["--in-memory"];
        args.extend_from_slice(extra);
        let node = common::spawn_node("mq", name, addr, masters, &args, COOKIE);
        self.children.push(node);
    }

    fn kill(&mut self, name: &str) {
        for node in &mut self.children {
            if node.name() == name {
                node.kill().expect("kill");
            }
        }
    }

    fn logs(&self) -> String {
        common::log_tails(&self.children, 15)
    }
}

fn dike(via: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dike"))
        .args(args)
        .args(["--via", via, "--timeout", "5"])
        .env("DIKE_COOKIE", COOKIE)
        .output()
        .expect("run dike")
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `dike ARGS --via VIA` until it succeeds with `expected` on stdout
/// or `within` passes.
fn until_answers(nodes: &Nodes, via: &str, args: &[&str], expected: &str, within: Duration) {
    wait_until_blocking(
        within,
        &format!("dike {args:?} answering {expected}"),
        || {
            let out = dike(via, args);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == expected {
                Ok(())
            } else {
                Err(format!("{}\n{}", text(&out), nodes.logs()))
            }
        },
    )
}

#[test]
fn data_groups_answer_through_any_node_while_the_master_quorum_is_down() {
    let names = ["mq-m1", "mq-m2", "mq-m3", "mq-w1", "mq-w2"];
    let addrs: Vec<SocketAddr> = names.iter().map(|_| free_addr()).collect();
    let masters = common::masters_list(&names[..3], &addrs);
    let mut nodes = Nodes {
        children: Vec::new(),
    };
    for (i, (name, addr)) in names.iter().zip(&addrs).enumerate() {
        let extra: &[&str] = if i < 3 { &[] } else { &["--join"] };
        nodes.spawn(name, *addr, &masters, extra);
    }
    let worker = addrs[3].to_string();
    // Every node up, then a group on all five.
    wait_until_blocking(Duration::from_secs(60), "the cluster up", || {
        let out = dike(&worker, &["routing-table", "--json"]);
        let ups = String::from_utf8_lossy(&out.stdout)
            .matches("\"up\"")
            .count();
        if out.status.success() && ups == 5 {
            Ok(())
        } else {
            Err(format!("{}\n{}", text(&out), nodes.logs()))
        }
    });
    let out = dike(&worker, &["add-group", "calc", "arithmetic", "--size", "5"]);
    assert!(out.status.success(), "{}\n{}", text(&out), nodes.logs());
    until_answers(
        &nodes,
        &worker,
        &["request", "calc", r#"{"Add":5}"#],
        r#"{"Ok":5}"#,
        Duration::from_secs(30),
    );

    nodes.kill("mq-m1");
    nodes.kill("mq-m2");

    // The group (3 of 5 replicas) answers through a worker...
    until_answers(
        &nodes,
        &worker,
        &["query", "calc", r#""Read""#],
        r#"{"Ok":5}"#,
        Duration::from_secs(30),
    );
    let out = dike(&worker, &["request", "calc", r#"{"Add":1}"#]);
    assert!(out.status.success(), "{}\n{}", text(&out), nodes.logs());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"Ok":6}"#);
    // ... and through the last master, while what needs the masters says so.
    until_answers(
        &nodes,
        &addrs[2].to_string(),
        &["query", "calc", r#""Read""#],
        r#"{"Ok":6}"#,
        Duration::from_secs(30),
    );
    let out = dike(&worker, &["add-group", "other", "arithmetic"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
}
