//! The `dike` program against a real node: `dike node` runs as a child
//! process in single-node mode, and every other command is a separate `dike`
//! process talking to it as a client.

mod common;

use common::{free_addr, succeeded, wait_until_blocking};

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

const COOKIE: &str = "cli-test-cookie";

/// The `dike node` child, killed when the test ends however it ends.
struct NodeProcess {
    node: common::ChildProcess,
    via: String,
}

impl NodeProcess {
    /// A node that is its own single master.
    fn start(name: &str) -> NodeProcess {
        let addr = free_addr();
        Self::start_with(name, addr, &format!("{name}@{addr}"))
    }

    /// A node of the cluster of `masters` that does not join by itself;
    /// its `via` is the masters.
    fn start_with(name: &str, addr: SocketAddr, masters: &str) -> NodeProcess {
        Self::spawn(name, addr, masters, &["--in-memory"])
    }

    /// A single-master node keeping its data in `dir`.
    fn start_durable(name: &str, addr: SocketAddr, dir: &std::path::Path) -> NodeProcess {
        let dir = dir.to_str().expect("utf-8 path");
        Self::spawn(name, addr, &format!("{name}@{addr}"), &["--data-dir", dir])
    }

    fn spawn(name: &str, addr: SocketAddr, masters: &str, storage: &[&str]) -> NodeProcess {
        let via = masters.to_owned();
        let node = common::spawn_node("cli", name, addr, masters, storage, COOKIE);
        NodeProcess { node, via }
    }

    /// Runs `dike ARGS --via <this node>` and returns what it did.
    fn dike(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dike"))
            .args(args)
            .args(["--via", &self.via])
            .env("DIKE_COOKIE", COOKIE)
            .output()
            .expect("run dike")
    }

    /// Runs `dike ARGS` and returns its stdout, failing the test with both
    /// outputs and the node's log if it fails.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.dike(args);
        assert!(
            out.status.success(),
            "dike {args:?} failed: {}\nstdout: {}\nstderr: {}\nnode log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    fn log_text(&self) -> String {
        self.node.log()
    }

    /// Polls `dike routing-table` until it succeeds or `within` passes.
    fn wait_until_serving(&mut self, within: Duration) {
        wait_until_blocking(within, "the node serving the routing table", || {
            if let Some(status) = self.node.exited() {
                panic!("dike node exited with {status}\n{}", self.log_text());
            }
            let out = self.dike(&["routing-table"]);
            succeeded(&out, || self.log_text())
        })
    }
}

#[test]
fn a_single_node_serves_groups_requests_and_a_kv_ring_from_the_command_line() {
    let mut node = NodeProcess::start("solo");
    node.wait_until_serving(Duration::from_secs(30));

    let added = node.ok(&["add-group", "calc", "arithmetic"]);
    assert!(
        added.contains("group calc (arithmetic) on 1 replicas"),
        "{added}"
    );

    let reply = node.ok(&["request", "calc", r#"{"Add":5}"#]);
    assert_eq!(reply.trim(), r#"{"Ok":5}"#);
    let read = node.ok(&["query", "calc", r#""Read""#]);
    assert_eq!(read.trim(), r#"{"Ok":5}"#);

    let table = node.ok(&["routing-table"]);
    assert!(
        table.contains("calc") && table.contains("arithmetic"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&node.ok(&["routing-table", "--json"])).expect("JSON table");
    assert_eq!(json["groups"][0]["name"], "calc");
    assert_eq!(json["groups"][0]["members"][0], "solo");
    assert_eq!(
        json["groups"][0]["leader"], "solo",
        "the leader as its replica reports it"
    );

    node.ok(&["add-group", "vnode-1", "kv"]);
    let previous = node.ok(&["kv", "put", "colour", "green"]);
    assert_eq!(previous.trim(), "null");
    let value = node.ok(&["kv", "get", "colour"]);
    assert_eq!(value.trim(), r#""green""#);
    node.ok(&["kv", "del", "colour"]);
    assert_eq!(node.ok(&["kv", "get", "colour"]).trim(), "null");

    let removed = node.ok(&["remove-group", "calc"]);
    assert!(removed.contains("removed group calc"), "{removed}");
}

#[test]
fn a_malformed_request_fails_with_a_clear_error_and_a_nonzero_exit() {
    let mut node = NodeProcess::start("strict");
    node.wait_until_serving(Duration::from_secs(30));
    node.ok(&["add-group", "calc", "arithmetic"]);

    let out = node.dike(&["request", "calc", "{Add:5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a malformed request must fail");
    assert!(
        stderr.contains("not a valid arithmetic request") && stderr.contains(r#"{"Add":5}"#),
        "{stderr}"
    );

    let out = node.dike(&["request", "nowhere", r#"{"Add":5}"#]);
    assert!(!out.status.success(), "an unknown group must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no group named \"nowhere\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `dike ARGS` until it succeeds or `within` passes; returns stdout.
fn ok_within(node: &NodeProcess, args: &[&str], within: Duration) -> String {
    wait_until_blocking(within, &format!("dike {args:?} succeeding"), || {
        let out = node.dike(args);
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).expect("utf-8 output"))
        } else {
            Err(format!(
                "{}\nnode log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                node.log_text()
            ))
        }
    })
}

#[test]
fn join_cast_and_compare_and_set_from_the_command_line() {
    let mut chief = NodeProcess::start("chief");
    chief.wait_until_serving(Duration::from_secs(30));
    let helper_addr = free_addr();
    let helper = NodeProcess::start_with("helper", helper_addr, &chief.via);
    let spec = format!("helper@{helper_addr}");

    let joined = ok_within(&chief, &["join", &spec], Duration::from_secs(30));
    assert_eq!(joined.trim(), format!("joined: helper ({helper_addr})"));
    let again = chief.ok(&["join", &spec]);
    assert!(again.starts_with("already known: helper"), "{again}");
    let table = chief.ok(&["routing-table"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("helper") && l.ends_with("up")),
        "{table}\nhelper log:\n{}",
        helper.log_text()
    );

    let nobody = format!("ghost@{}", free_addr());
    let out = chief.dike(&["join", &nobody, "--timeout", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "joining a dead address must fail");
    assert!(stderr.contains("not reachable"), "{stderr}");

    let misnamed = format!("stranger@{helper_addr}");
    let out = chief.dike(&["join", &misnamed, "--timeout", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "joining a node by the wrong name must fail"
    );
    assert!(stderr.contains(r#"no node named "stranger""#), "{stderr}");

    chief.ok(&["add-group", "calc", "arithmetic", "--size", "1"]);
    assert_eq!(chief.ok(&["cast", "calc", r#"{"Add":7}"#]).trim(), "sent");
    wait_until_blocking(Duration::from_secs(10), "the cast applied", || {
        let read = chief.ok(&["query", "calc", r#""Read""#]);
        if read.trim() == r#"{"Ok":7}"# {
            Ok(())
        } else {
            Err(format!("calc reads {read}"))
        }
    });

    chief.ok(&["add-group", "vnode-1", "kv", "--size", "1"]);
    assert_eq!(chief.ok(&["kv", "cas", "k", "", "v1"]).trim(), "null");
    let out = chief.dike(&["kv", "cas", "k", "wrong", "v2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a failed compare-and-set exits non-zero"
    );
    assert!(stderr.contains(r#""k" holds "v1""#), "{stderr}");
    assert_eq!(chief.ok(&["kv", "cas", "k", "v1", "v2"]).trim(), r#""v1""#);
    assert_eq!(chief.ok(&["kv", "get", "k"]).trim(), r#""v2""#);
}

#[test]
fn a_two_second_bench_against_one_node_reports_its_load() {
    let mut node = NodeProcess::start("bencher");
    node.wait_until_serving(Duration::from_secs(30));
    let out = node.ok(&[
        "bench",
        "--kind",
        "kv",
        "--groups",
        "2",
        "--concurrency",
        "4",
        "--duration",
        "2",
        "--value-size",
        "32",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(report["kind"], "kv");
    assert!(report["ops"].as_u64().is_some_and(|n| n > 0), "{out}");
    assert!(report["p99_us"].as_u64().is_some(), "{out}");
    let text = node.ok(&["bench", "--groups", "1", "--duration", "1"]);
    assert!(
        text.contains("arithmetic on 1 groups") && text.contains("p99"),
        "{text}"
    );
    let table = node.ok(&["routing-table"]);
    assert!(
        table.contains("vnode-2") && table.contains("bench-1"),
        "{table}"
    );
}

#[test]
fn a_group_removed_and_added_again_starts_empty_also_after_a_kill_9() {
    let dir = std::env::temp_dir().join(format!("dike-cli-recreate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let addr = free_addr();
    let mut node = NodeProcess::start_durable("durable", addr, &dir);
    node.wait_until_serving(Duration::from_secs(30));
    node.ok(&["add-group", "calc", "arithmetic"]);
    assert_eq!(
        node.ok(&["request", "calc", r#"{"Add":7}"#]).trim(),
        r#"{"Ok":7}"#
    );
    node.ok(&["remove-group", "calc"]);
    node.ok(&["add-group", "calc", "arithmetic"]);
    assert_eq!(
        node.ok(&["request", "calc", r#"{"Add":1}"#]).trim(),
        r#"{"Ok":1}"#,
        "the re-created group must not keep the removed group's state"
    );
    // kill -9, then the same data dir: still only what came after.
    drop(node);
    let mut node = NodeProcess::start_durable("durable", addr, &dir);
    node.wait_until_serving(Duration::from_secs(30));
    let reply = wait_until_blocking(
        Duration::from_secs(30),
        "calc answering after the restart",
        || {
            let out = node.dike(&["request", "calc", r#"{"Add":0}"#]);
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
            } else {
                Err(format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    node.log_text()
                ))
            }
        },
    );
    assert_eq!(
        reply,
        r#"{"Ok":1}"#,
        "after the restart\n{}",
        node.log_text()
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_existing_group_name_with_another_kind_is_refused_and_casts_reach_set_groups() {
    let mut node = NodeProcess::start("edges");
    node.wait_until_serving(Duration::from_secs(30));
    node.ok(&["add-group", "calc", "arithmetic"]);
    let other = node.dike(&["add-group", "calc", "kv"]);
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(
        !other.status.success(),
        "a second kind under one name must fail: {}",
        String::from_utf8_lossy(&other.stdout)
    );
    assert!(
        stderr.contains("already exists as arithmetic"),
        "the error names the existing kind: {stderr}"
    );
    let again = node.ok(&["add-group", "calc", "arithmetic"]);
    assert!(again.contains("group calc (arithmetic)"), "{again}");

    node.ok(&["add-group", "tags", "set"]);
    let sent = node.ok(&["cast", "tags", r#"{"Add":{"set":"s","element":7}}"#]);
    assert_eq!(sent.trim(), "sent");
    wait_until_blocking(Duration::from_secs(20), "the cast arriving", || {
        let read = node.ok(&["request", "tags", r#"{"Read":"s"}"#]);
        if read.contains('7') {
            Ok(())
        } else {
            Err(format!("tags reads {read}"))
        }
    });
}

#[test]
fn kv_commands_find_the_rings_size_in_the_routing_table_and_refuse_a_wrong_one() {
    let mut node = NodeProcess::start("ring");
    node.wait_until_serving(Duration::from_secs(30));
    node.ok(&["add-group", "vnode-1", "kv"]);
    node.ok(&["add-group", "vnode-2", "kv"]);
    // Keys on both vnodes: each read must find its key on a 2-vnode ring.
    for key in ["a", "b", "c", "d"] {
        node.ok(&["kv", "put", key, &format!("v-{key}")]);
    }
    for key in ["a", "b", "c", "d"] {
        let value = node.ok(&["kv", "get", key]);
        assert_eq!(value.trim(), format!("\"v-{key}\""), "key {key}");
    }
    let wrong = node.dike(&["kv", "get", "b", "--vnodes", "1"]);
    assert!(!wrong.status.success(), "a wrong ring size is an error");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("has 2 vnodes"), "{stderr}");
    let zero = node.dike(&["kv", "get", "b", "--vnodes", "0"]);
    assert!(!zero.status.success(), "--vnodes 0 is refused");
}

#[test]
fn a_second_node_on_a_port_in_use_fails_naming_the_address() {
    let mut first = NodeProcess::start("holder");
    first.wait_until_serving(Duration::from_secs(30));
    let addr = first.via.split('@').nth(1).expect("NAME@ADDR").to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_dike"))
        .args(["node", "--name", "second", "--listen", &addr])
        .args(["--masters", &format!("second@{addr}"), "--in-memory"])
        .env("DIKE_COOKIE", COOKIE)
        .output()
        .expect("run dike node");
    assert!(!out.status.success(), "the second node must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("already in use"),
        "{stderr}"
    );
}

/// Runs `dike ARGS --via VIA` with `cookie`, without the node's own `--via`.
fn dike_via(args: &[&str], via: &str, cookie: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dike"))
        .args(args)
        .args(["--via", via, "--dial-timeout", "3", "--timeout", "10"])
        .env("DIKE_COOKIE", cookie)
        .output()
        .expect("run dike")
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `--via` takes any node as plain HOST:PORT (a dead or hung entry in the
/// list is skipped), and every failure has its own exit code and names its cause:
/// nothing listening (3), a wrong cookie (4), no such group or ring (8), an error
/// reply (7, the reply still on stdout).
#[test]
fn any_node_as_host_port_reaches_the_cluster_and_failures_exit_by_cause() {
    let mut node = NodeProcess::start("anyvia");
    node.wait_until_serving(Duration::from_secs(30));
    node.ok(&["add-group", "calc", "arithmetic"]);
    let addr = node.via.split_once('@').expect("NAME@ADDR").1.to_owned();
    let dead = free_addr().to_string();

    let out = dike_via(&["request", "calc", r#"{"Add":2}"#], &addr, COOKIE);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"Ok":2}"#);

    let out = dike_via(&["routing-table"], &format!("{dead},{addr}"), COOKIE);
    assert!(
        out.status.success(),
        "a dead first entry: {}",
        describe(&out)
    );

    // A hung first entry: it accepts connections and never answers, as a
    // stopped process's kernel does. The next entry is asked after a short
    // wait, not after the first one's dial timeout (120 s here).
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a silent listener");
    let hung_addr = hung.local_addr().expect("its address").to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dike"))
        .args(["routing-table", "--via", &format!("{hung_addr},{addr}")])
        .args(["--dial-timeout", "120", "--timeout", "120"])
        .env("DIKE_COOKIE", COOKIE)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dike");
    wait_until_blocking(
        Duration::from_secs(60),
        "the command ends without waiting for the hung node",
        || match cmd.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err("it still runs".to_owned()),
        },
    );
    let out = cmd.wait_with_output().expect("its output");
    assert!(
        out.status.success(),
        "a hung first entry: {}",
        describe(&out)
    );
    drop(hung);

    let out = dike_via(&["routing-table"], &dead, COOKIE);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&dead),
        "{}",
        describe(&out)
    );

    let out = dike_via(&["routing-table"], &addr, "not-the-cookie");
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cookie came from --cookie or DIKE_COOKIE"),
        "{}",
        describe(&out)
    );
    // A wrong cookie from a file: the message names the file.
    let wrong = std::env::temp_dir().join(format!("dike-cli-wrong-cookie-{}", std::process::id()));
    std::fs::write(&wrong, "not-the-cookie\n").expect("write the cookie file");
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("make it private");
    let out = Command::new(env!("CARGO_BIN_EXE_dike"))
        .args([
            "routing-table",
            "--via",
            &addr,
            "--dial-timeout",
            "3",
            "--timeout",
            "10",
        ])
        .env_remove("DIKE_COOKIE")
        .env("DIKE_COOKIE_FILE", &wrong)
        .output()
        .expect("run dike");
    let _ = std::fs::remove_file(&wrong);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("cookie came from file {}", wrong.display())),
        "{}",
        describe(&out)
    );

    let out = dike_via(&["request", "nosuch", r#"{"Add":1}"#], &addr, COOKIE);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    let out = dike_via(&["remove-group", "nosuch"], &addr, COOKIE);
    assert_eq!(out.status.code(), Some(8), "{}", describe(&out));
    let out = dike_via(&["kv", "get", "k"], &addr, COOKIE);
    assert_eq!(out.status.code(), Some(8), "no ring: {}", describe(&out));
    let out = dike_via(&["join", &format!("ghost@{dead}")], &addr, COOKIE);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Os {"),
        "{}",
        describe(&out)
    );

    let out = dike_via(&["request", "calc", r#"{"Div":0}"#], &addr, COOKIE);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Err"),
        "{}",
        describe(&out)
    );

    let out = dike_via(&["routing-table"], "not-an-address", COOKIE);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

/// The bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Groups written to and then removed give their disk space back once the
/// log rolls past them: on a `dike node` process with 1 MiB log segments,
/// the data dir grows by tens of MiB under a kv bench, and after the ring's
/// groups are removed and another group keeps writing, it shrinks back to
/// within a few segments of its size before.
#[test]
fn a_nodes_disk_use_returns_near_its_size_before_once_its_groups_are_removed() {
    let dir = std::env::temp_dir().join(format!("dike-cli-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let addr = free_addr();
    let data = dir.to_str().expect("utf-8 path");
    let masters = format!("disk@{addr}");
    let mut node = NodeProcess::spawn(
        "disk",
        addr,
        &masters,
        &["--data-dir", data, "--log-segment-mib", "1"],
    );
    node.wait_until_serving(Duration::from_secs(30));
    node.ok(&["add-group", "keep", "arithmetic"]);
    node.ok(&["request", "keep", r#"{"Add":1}"#]);
    let before = dir_bytes(&dir);
    let groups = "8";
    node.ok(&[
        "bench",
        "--kind",
        "kv",
        "--groups",
        groups,
        "--duration",
        "3",
        "--value-size",
        "4096",
    ]);
    let peak = dir_bytes(&dir);
    assert!(
        peak > before + 16 * (1 << 20),
        "the bench should have written tens of MiB: {before} bytes before, {peak} after"
    );
    for g in 1..=8 {
        node.ok(&["remove-group", &format!("vnode-{g}")]);
    }
    // Another group keeps writing, so the log rolls and compacts; poll
    // (driving writes) until the space is back.
    let now = wait_until_blocking(Duration::from_secs(60), "the disk space back", || {
        let now = dir_bytes(&dir);
        if now <= before + 4 * (1 << 20) {
            return Ok(now);
        }
        node.ok(&[
            "bench",
            "--kind",
            "arithmetic",
            "--groups",
            "1",
            "--duration",
            "1",
        ]);
        Err(format!(
            "disk use {now} bytes, {before} before the bench, {peak} at its peak\n{}",
            node.log_text()
        ))
    });
    eprintln!("disk use: {before} bytes before, {peak} at the peak, {now} at the end");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-o json` on every client command: one JSON document on stdout.
#[test]
fn every_client_command_prints_json_with_o_json() {
    let mut node = NodeProcess::start("jsonout");
    node.wait_until_serving(Duration::from_secs(30));
    let parse = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = node.ok(&all);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    };
    let added = parse(&["add-group", "calc", "arithmetic"]);
    assert_eq!(added["group"], "calc");
    assert_eq!(added["replicas"], 1);
    assert_eq!(parse(&["request", "calc", r#"{"Add":2}"#])["Ok"], 2);
    assert_eq!(parse(&["cast", "calc", r#"{"Add":1}"#])["sent"], true);
    let table = parse(&["routing-table"]);
    assert!(table.to_string().contains("calc"), "{table}");
    let status = parse(&["status"]);
    assert!(status.to_string().contains("calc"), "{status}");
    assert_eq!(parse(&["remove-group", "calc"])["removed"], "calc");
}
