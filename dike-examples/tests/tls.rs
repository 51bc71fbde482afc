//! Mutual TLS (issue 19) on real `dike node` processes with certificates
//! made by `dike certs`: a TLS cluster serves and survives a kill -9, and
//! every way of getting TLS wrong is refused with a message that names the
//! cause (exit 10 for a failed handshake, 2 for unusable files), never as
//! a wrong cookie.

mod common;

use common::{free_addr, text, wait_until_blocking, ChildProcess, Cluster};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const COOKIE: &str = "tls-test-cookie";

/// The exit code of a failed TLS handshake.
const EXIT_TLS: i32 = 10;
/// The exit code of a usage or configuration error.
const EXIT_USAGE: i32 = 2;

/// Runs `dike ARGS` (no `--via` added) and returns what it did.
fn dike(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dike"))
        .args(args)
        .env("DIKE_COOKIE", COOKIE)
        .output()
        .expect("run dike")
}

/// `dike ARGS`, which must succeed.
fn ok(args: &[&str]) -> String {
    let out = dike(args);
    assert!(out.status.success(), "dike {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA in `dir` and a certificate for each of `names` (written to `dir`),
/// valid for the loopback address the harness's nodes listen on.
fn certs(dir: &Path, names: &[&str]) {
    let d = dir.to_str().expect("utf-8 path");
    ok(&["certs", "create-ca", "--out", d]);
    let host = free_addr().ip().to_string();
    for n in names {
        ok(&[
            "certs", "issue", n, "--ca-dir", d, "--out", d, "--host", &host,
        ]);
    }
}

/// The TLS flags for certificate `name` of the CA in `dir`.
fn tls_args(dir: &Path, name: &str) -> Vec<String> {
    let file = |f: String| dir.join(f).display().to_string();
    vec![
        "--tls-cert".into(),
        file(format!("{name}.pem")),
        "--tls-key".into(),
        file(format!("{name}-key.pem")),
        "--tls-ca".into(),
        file("ca.pem".into()),
    ]
}

/// `dike routing-table --via ADDR` with `client_args`.
fn table_via(addr: SocketAddr, client_args: &[String]) -> Output {
    let addr = addr.to_string();
    let mut args = vec!["routing-table", "--via", &addr, "--timeout", "5"];
    args.extend(client_args.iter().map(String::as_str));
    dike(&args)
}

/// A node that is its own single master, started with `node_args`, once
/// `dike routing-table` with `client_args` answers through it.
fn single_node(
    label: &str,
    node_args: &[String],
    client_args: &[String],
) -> (ChildProcess, SocketAddr) {
    let addr = free_addr();
    let mut args = vec!["--in-memory", "--worker-threads", "2"];
    args.extend(node_args.iter().map(String::as_str));
    let masters = format!("{label}@{addr}");
    let mut node = common::spawn_node("tls", label, addr, &masters, &args, COOKIE);
    wait_until_blocking(Duration::from_secs(30), "the node serving", || {
        if let Some(status) = node.exited() {
            panic!("dike node exited with {status}\n{}", node.log());
        }
        let out = table_via(addr, client_args);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{}\n{}", text(&out), node.log()))
        }
    });
    (node, addr)
}

/// Asserts that `out` failed with `code` and a stderr holding every one
/// of `words`, and not the cookie's message.
fn refused(out: &Output, code: i32, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    for w in words {
        assert!(stderr.contains(w), "{w:?} not in: {stderr}");
    }
    assert!(
        !stderr.contains("cookie"),
        "reported as the cookie: {stderr}"
    );
}

#[test]
fn a_tls_cluster_made_with_dike_certs_serves_kv_and_survives_a_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &["t1", "t2", "t3", "client"]);
    let client = tls_args(dir.path(), "client");
    let mut cluster = Cluster::start_with(
        "t",
        COOKIE,
        |name| tls_args(dir.path(), name),
        client.clone(),
    );
    let out = cluster.dike(&["add-group", "vnode-1", "kv", "--size", "3"]);
    assert!(out.status.success(), "{}\n{}", text(&out), cluster.logs());
    let out = cluster.dike(&["kv", "put", "colour", "green"]);
    assert!(out.status.success(), "{}\n{}", text(&out), cluster.logs());

    // Any node may go: the group keeps a quorum of two.
    let victim = cluster.index_of(&cluster.leader_of("vnode-1"));
    cluster.nodes[victim]
        .as_mut()
        .expect("running")
        .kill()
        .expect("kill");
    cluster.nodes[victim] = None;
    wait_until_blocking(Duration::from_secs(30), "a write after the kill", || {
        let out = cluster.dike(&["kv", "put", "colour", "blue"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{}\n{}", text(&out), cluster.logs()))
        }
    });
    let out = cluster.dike(&["kv", "get", "colour"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "\"blue\"",
        "{}",
        text(&out)
    );
}

#[test]
fn a_client_of_another_ca_is_refused_naming_the_ca() {
    let ours = tempfile::tempdir().expect("tempdir");
    let theirs = tempfile::tempdir().expect("tempdir");
    certs(ours.path(), &["ca1"]);
    certs(theirs.path(), &["stranger"]);
    let (_node, addr) = single_node(
        "ca1",
        &tls_args(ours.path(), "ca1"),
        &tls_args(ours.path(), "ca1"),
    );

    // Certificates and CA of another cluster: the node's certificate is
    // not one the client trusts.
    let out = table_via(addr, &tls_args(theirs.path(), "stranger"));
    refused(
        &out,
        EXIT_TLS,
        &[
            &format!("TLS handshake with {addr} failed"),
            "the node's certificate is not signed by your CA (--tls-ca)",
        ],
    );

    // Another CA's certificate with this cluster's CA: refused before
    // dialling, naming the file.
    let mut mixed = tls_args(theirs.path(), "stranger");
    mixed[5] = ours.path().join("ca.pem").display().to_string();
    let out = table_via(addr, &mixed);
    refused(
        &out,
        EXIT_USAGE,
        &["stranger.pem", "is not signed by the CA in"],
    );
}

#[test]
fn a_client_without_tls_is_told_the_node_requires_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &["req1"]);
    let tls = tls_args(dir.path(), "req1");
    let (_node, addr) = single_node("req1", &tls, &tls);
    let out = table_via(addr, &[]);
    refused(
        &out,
        EXIT_TLS,
        &[
            &format!("the node at {addr} requires TLS"),
            "--tls-cert, --tls-key and --tls-ca",
        ],
    );
    // Half the flags are a usage error.
    let out = table_via(addr, &tls[..4]);
    refused(&out, EXIT_USAGE, &["missing: --tls-ca"]);
}

#[test]
fn a_tls_client_dialling_a_node_without_tls_is_told_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &["client"]);
    let (_node, addr) = single_node("plain1", &[], &[]);
    let out = table_via(addr, &tls_args(dir.path(), "client"));
    refused(
        &out,
        EXIT_TLS,
        &[
            &format!("TLS handshake with {addr} failed"),
            "does it run without TLS?",
        ],
    );
}

#[test]
fn an_expired_certificate_is_refused_by_client_and_node_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &["exp1"]);
    let d = dir.path().to_str().expect("utf-8 path");
    ok(&[
        "certs", "issue", "old", "--ca-dir", d, "--out", d, "--days", "0",
    ]);
    let old = tls_args(dir.path(), "old");

    let (_node, addr) = single_node(
        "exp1",
        &tls_args(dir.path(), "exp1"),
        &tls_args(dir.path(), "exp1"),
    );
    let out = table_via(addr, &old);
    refused(&out, EXIT_USAGE, &["old.pem", "has expired"]);

    // A node with it does not start.
    let addr = free_addr();
    let masters = format!("old@{addr}");
    let mut args = vec!["--in-memory"];
    args.extend(old.iter().map(String::as_str));
    let mut node = common::spawn_node("tls", "old", addr, &masters, &args, COOKIE);
    let status = wait_until_blocking(Duration::from_secs(20), "the node exiting", || {
        node.exited().ok_or_else(|| "it still runs".to_owned())
    });
    assert_eq!(status.code(), Some(EXIT_USAGE), "{}", node.log());
    let log = node.log();
    assert!(
        log.contains("old.pem") && log.contains("has expired"),
        "{log}"
    );
}
