//! Operating a cluster (issue 17) on real `dike node` processes: a data dir
//! belongs to one node of one cluster and to one process at a time; a node
//! listening on every address publishes the address it advertises; a node
//! that joined once re-joins by itself after a restart; the cookie may come
//! from a file.

mod common;

use common::{free_addr, succeeded, wait_until_blocking, ChildProcess};
use dike_harness::Launch;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

const COOKIE: &str = "identity-test-cookie";

/// How long a node may take to serve, or a refused one to exit.
const START: Duration = Duration::from_secs(30);

/// A `dike` command with none of the caller's `DIKE_*` settings.
fn dike_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dike"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DIKE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A `dike node` child, killed (SIGKILL) when dropped.
struct Node {
    process: ChildProcess,
}

impl Node {
    /// Starts `dike node ARGS` with the test cookie unless `args` give one.
    fn spawn(label: &str, args: &[&str]) -> Node {
        let log = std::env::temp_dir().join(format!(
            "dike-identity-{label}-{}-{}.log",
            std::process::id(),
            unique()
        ));
        // None of the caller's `DIKE_*` settings, as in [`dike_command`].
        let mut launch = std::env::vars_os()
            .map(|(key, _)| key)
            .filter(|key| key.to_string_lossy().starts_with("DIKE_"))
            .fold(Launch::new(env!("CARGO_BIN_EXE_dike")), Launch::env_remove)
            .arg("node")
            .args(args);
        if !args.iter().any(|a| a.starts_with("--cookie")) {
            launch = launch.env("DIKE_COOKIE", COOKIE);
        }
        let launch = launch.env("RUST_LOG", "info,ractor_cluster=warn");
        let process = ChildProcess::spawn(label, launch, log)
            .unwrap_or_else(|e| panic!("spawn dike node: {e}"))
            .removing_log();
        Node { process }
    }

    fn log_text(&self) -> String {
        self.process.log()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Polls `dike routing-table --via VIA` until it answers.
    fn wait_serving(&mut self, via: &str) {
        wait_until_blocking(START, "the node serving", || {
            if let Some(status) = self.exited() {
                panic!("dike node exited with {status}\n{}", self.log_text());
            }
            let out = dike(via, &["routing-table"]);
            succeeded(&out, || self.log_text())
        })
    }

    /// Waits for a node that must be refused to exit; fails if it exits
    /// successfully, says it is ready, or is still running at the deadline.
    /// Returns its log (stderr).
    fn refused(mut self) -> String {
        let status = wait_until_blocking(START, "the refused node exiting", || {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            let log = self.log_text();
            assert!(
                !log.contains("node ready"),
                "the node started instead of being refused:\n{log}"
            );
            Err(format!("it still runs:\n{log}"))
        });
        let log = self.log_text();
        assert!(!status.success(), "a refused node exits non-zero\n{log}");
        log
    }

    /// kill -9, and wait until it is gone.
    fn kill9(mut self) {
        self.process.kill().expect("SIGKILL");
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `dike ARGS --via VIA` with the test cookie.
fn dike(via: &str, args: &[&str]) -> Output {
    dike_command()
        .args(args)
        .args(["--via", via, "--cookie", COOKIE])
        .output()
        .expect("run dike")
}

/// Runs `dike ARGS --via VIA` and returns its stdout; fails the test if it
/// fails.
fn ok(via: &str, args: &[&str]) -> String {
    let out = dike(via, args);
    assert!(
        out.status.success(),
        "dike {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Whether `dike routing-table --via VIA` shows node `name` as `status`
/// (its line ends with it); if not, the table or why there is none.
fn table_shows(via: &str, name: &str, status: &str) -> Result<(), String> {
    let out = dike(via, &["routing-table"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let table = String::from_utf8_lossy(&out.stdout);
    table
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name) && l.trim_end().ends_with(status))
        .then_some(())
        .ok_or_else(|| table.into_owned())
}

/// A temporary directory for data dirs, removed at the end.
fn temp_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dike-identity-{label}-"))
        .tempdir()
        .expect("temp dir")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The arguments of a single-master node `name` at `addr` on `dir`.
fn single(name: &str, addr: SocketAddr, dir: &Path) -> Vec<String> {
    [
        "--name",
        name,
        "--listen",
        &addr.to_string(),
        "--masters",
        &format!("{name}@{addr}"),
        "--data-dir",
        path(dir),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_second_node_on_a_data_dir_in_use_is_refused_and_after_a_kill_9_the_dir_is_free() {
    let tmp = temp_dir("in-use");
    let dir = tmp.path().join("keeper");
    let addr = free_addr();
    let via = format!("keeper@{addr}");
    let mut first = Node::spawn("keeper", &strs(&single("keeper", addr, &dir)));
    first.wait_serving(&via);
    ok(&via, &["add-group", "calc", "arithmetic"]);
    assert_eq!(
        ok(&via, &["request", "calc", r#"{"Add":5}"#]).trim(),
        r#"{"Ok":5}"#
    );

    // The same name on another port, then another name: both refused, the
    // message naming the dir, that it is in use, and the holder.
    let same = Node::spawn("keeper-2", &strs(&single("keeper", free_addr(), &dir))).refused();
    assert!(
        same.contains(&format!("data dir {} is in use", dir.display())),
        "{same}"
    );
    assert!(
        same.contains(&format!(
            "pid {}, node keeper",
            first.pid().expect("running")
        )),
        "the message names the holder: {same}"
    );
    let other = Node::spawn("intruder", &strs(&single("intruder", free_addr(), &dir))).refused();
    assert!(other.contains("is in use"), "{other}");

    // The first node never noticed.
    assert_eq!(
        ok(&via, &["request", "calc", r#"{"Add":1}"#]).trim(),
        r#"{"Ok":6}"#
    );

    // kill -9 releases the lock: the same node starts again on its dir.
    first.kill9();
    let mut again = Node::spawn("keeper-3", &strs(&single("keeper", addr, &dir)));
    again.wait_serving(&via);
    let reply = wait_until_blocking(START, "calc answering after the restart", || {
        let out = dike(&via, &["request", "calc", r#"{"Add":0}"#]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                again.log_text()
            ))
        }
    });
    assert_eq!(reply, r#"{"Ok":6}"#, "{}", again.log_text());
}

#[test]
fn a_data_dir_is_refused_to_another_name_and_to_another_cluster() {
    let tmp = temp_dir("owner");
    let dir = tmp.path().join("owner");
    let addr = free_addr();
    let mut owner = Node::spawn("owner", &strs(&single("owner", addr, &dir)));
    owner.wait_serving(&format!("owner@{addr}"));
    owner.kill9();

    let renamed = Node::spawn("thief", &strs(&single("thief", addr, &dir))).refused();
    assert!(
        renamed.contains(&format!(
            r#"data dir {} belongs to node "owner", not "thief""#,
            dir.display()
        )),
        "{renamed}"
    );

    let mut args = single("owner", addr, &dir);
    args[5] = format!("owner@{addr},m2@{},m3@{}", free_addr(), free_addr());
    let other = Node::spawn("owner-elsewhere", &strs(&args)).refused();
    assert!(
        other.contains(
            "holds data of another cluster (masters owner), not of this one (masters m2,m3,owner)"
        ),
        "{other}"
    );
}

#[test]
fn a_node_listening_on_every_address_publishes_the_address_it_advertises() {
    let addr = SocketAddr::from(([127, 0, 0, 1], common::free_wildcard_port()));
    let every = format!("0.0.0.0:{}", addr.port());
    let via = format!("wide@{addr}");
    let mut node = Node::spawn(
        "wide",
        &[
            "--name",
            "wide",
            "--listen",
            &every,
            "--advertise",
            &addr.to_string(),
            "--masters",
            &via,
            "--in-memory",
        ],
    );
    node.wait_serving(&via);
    let table = ok(&via, &["routing-table"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("wide") && l.contains(&addr.to_string())),
        "{table}"
    );
    assert!(!table.contains("0.0.0.0"), "{table}");

    let port = common::free_wildcard_port();
    let unspecified = format!("0.0.0.0:{port}");
    let log = Node::spawn(
        "wide-unadvertised",
        &[
            "--name",
            "narrow",
            "--listen",
            &unspecified,
            "--masters",
            &format!("narrow@127.0.0.1:{port}"),
            "--in-memory",
        ],
    )
    .refused();
    assert!(
        log.contains(&format!("cannot advertise {unspecified}")) && log.contains("--advertise"),
        "{log}"
    );
}

#[test]
fn a_node_that_joined_once_is_up_again_after_a_kill_9_without_being_asked() {
    let tmp = temp_dir("rejoin");
    let master_addr = free_addr();
    let masters = format!("chief@{master_addr}");
    let mut chief = Node::spawn(
        "chief",
        &[
            "--name",
            "chief",
            "--listen",
            &master_addr.to_string(),
            "--masters",
            &masters,
            "--in-memory",
        ],
    );
    chief.wait_serving(&masters);

    let worker_addr = free_addr();
    let dir = tmp.path().join("worker");
    let worker_args = [
        "--name".to_owned(),
        "worker".to_owned(),
        "--listen".to_owned(),
        worker_addr.to_string(),
        "--masters".to_owned(),
        masters.clone(),
        "--data-dir".to_owned(),
        path(&dir).to_owned(),
    ];
    let worker = Node::spawn("worker", &strs(&worker_args));
    // Asked to join once, the way an operator adds a node.
    wait_until_blocking(START, "dike join succeeding", || {
        let out = dike(&masters, &["join", &format!("worker@{worker_addr}")]);
        succeeded(&out, || worker.log_text())
    });
    wait_until_blocking(START, "the worker up", || {
        table_shows(&masters, "worker", "up")
    });

    worker.kill9();
    wait_until_blocking(START, "the master seeing the worker down", || {
        table_shows(&masters, "worker", "down")
    });

    // The same command as before: no --join, and nobody runs `dike join`.
    let worker = Node::spawn("worker-again", &strs(&worker_args));
    wait_until_blocking(START, "the restarted worker up", || {
        table_shows(&masters, "worker", "up")
            .map_err(|table| format!("{table}\nworker log:\n{}", worker.log_text()))
    });
}

#[test]
fn the_cookie_may_come_from_a_file_given_alone() {
    let tmp = temp_dir("cookie");
    let file = tmp.path().join("cookie");
    std::fs::write(&file, format!("{COOKIE}\n")).expect("write cookie file");
    let addr = free_addr();
    let via = format!("secretive@{addr}");
    let mut node = Node::spawn(
        "secretive",
        &[
            "--name",
            "secretive",
            "--listen",
            &addr.to_string(),
            "--masters",
            &via,
            "--in-memory",
            "--cookie-file",
            path(&file),
        ],
    );
    // `dike` (in `wait_serving`) passes --cookie: the same secret, trimmed.
    node.wait_serving(&via);
    let from_file = dike_command()
        .args(["routing-table", "--via", &via, "--cookie-file", path(&file)])
        .output()
        .expect("run dike");
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );

    // A secret file others may read works, with a warning saying how to fix it.
    use std::os::unix::fs::PermissionsExt;
    let mode = |m| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m));
    mode(0o644).expect("chmod 644");
    let exposed = dike_command()
        .args(["routing-table", "--via", &via, "--cookie-file", path(&file)])
        .output()
        .expect("run dike");
    let stderr = String::from_utf8_lossy(&exposed.stderr);
    assert!(exposed.status.success(), "{stderr}");
    assert!(
        stderr.contains("accessible to other users (mode 644)") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    mode(0o600).expect("chmod 600");
    let private = dike_command()
        .args(["routing-table", "--via", &via, "--cookie-file", path(&file)])
        .output()
        .expect("run dike");
    let stderr = String::from_utf8_lossy(&private.stderr);
    assert!(
        private.status.success() && !stderr.contains("warning"),
        "{stderr}"
    );

    let both = dike_command()
        .args(["routing-table", "--via", &via, "--cookie-file", path(&file)])
        .env("DIKE_COOKIE", COOKIE)
        .output()
        .expect("run dike");
    assert!(!both.status.success(), "two cookie sources are refused");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("--cookie-file") && stderr.contains("--cookie"),
        "{stderr}"
    );

    let empty = tmp.path().join("empty");
    std::fs::write(&empty, "\n").expect("write empty cookie file");
    let log = Node::spawn(
        "empty-cookie",
        &[
            "--name",
            "e",
            "--listen",
            &free_addr().to_string(),
            "--masters",
            "e@127.0.0.1:1",
            "--in-memory",
            "--cookie-file",
            path(&empty),
        ],
    )
    .refused();
    assert!(
        log.contains(&format!("cookie file {} is empty", empty.display())),
        "{log}"
    );
    let missing = tmp.path().join("missing");
    let out = dike_command()
        .args([
            "routing-table",
            "--via",
            &via,
            "--cookie-file",
            path(&missing),
        ])
        .output()
        .expect("run dike");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("cannot read cookie file {}", missing.display())),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_node_flag_may_come_from_a_dike_variable_and_print_config_shows_the_result() {
    let tmp = temp_dir("env");
    let cookie = tmp.path().join("cookie");
    std::fs::write(&cookie, "from-a-file\n").expect("write cookie file");
    let dir = tmp.path().join("data");
    let out = dike_command()
        .args(["node", "--print-config", "--group-size", "3"])
        .env("DIKE_NAME", "env-node")
        .env("DIKE_LISTEN", "0.0.0.0:7100")
        .env("DIKE_ADVERTISE", "10.0.0.5:7100")
        .env(
            "DIKE_MASTERS",
            "m1@10.0.0.1:7000,m2@10.0.0.2:7000,m3@10.0.0.3:7000",
        )
        .env("DIKE_DATA_DIR", &dir)
        .env("DIKE_COOKIE_FILE", &cookie)
        .env("DIKE_JOIN", "true")
        .env("DIKE_GROUP_SIZE", "5")
        .env("DIKE_REPLACE_AFTER", "30")
        .env("DIKE_WORKER_THREADS", "2")
        .env("DIKE_METRICS_PER_GROUP", "true")
        .output()
        .expect("run dike node --print-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(config["name"], "env-node");
    assert_eq!(config["listen"], "0.0.0.0:7100");
    assert_eq!(config["advertise"], "10.0.0.5:7100");
    assert_eq!(config["masters"][2], "m3@10.0.0.3:7000");
    assert_eq!(config["master"], false);
    assert_eq!(config["data_dir"], path(&dir));
    assert_eq!(config["cookie"], format!("file {}", cookie.display()));
    assert_eq!(config["join"], true);
    assert_eq!(
        config["group_size"], 3,
        "the flag wins over DIKE_GROUP_SIZE"
    );
    assert_eq!(config["replace_after_secs"], 30);
    assert_eq!(config["worker_threads"], 2);
    assert_eq!(config["metrics_per_group"], true);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("from-a-file"),
        "the cookie itself is never printed"
    );
    assert!(
        !dir.exists(),
        "printing the configuration touches no data dir"
    );

    // Checked as a start would check it.
    let out = dike_command()
        .args(["node", "--print-config", "--cookie", "c"])
        .env("DIKE_NAME", "env-node")
        .env("DIKE_LISTEN", "0.0.0.0:7100")
        .env("DIKE_MASTERS", "env-node@127.0.0.1:7100")
        .env("DIKE_IN_MEMORY", "true")
        .output()
        .expect("run dike node --print-config");
    assert!(
        !out.status.success(),
        "0.0.0.0 without --advertise is refused"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--advertise"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dike node --config FILE`: the file's keys are flags' defaults; a
/// `DIKE_*` variable wins over the file and a flag over both; an unknown key
/// is refused naming it (exit 2).
#[test]
fn a_config_file_gives_every_flag_with_variables_and_flags_winning() {
    let tmp = temp_dir("config");
    let cookie = tmp.path().join("cookie");
    std::fs::write(&cookie, "from-a-file\n").expect("write cookie file");
    let file = tmp.path().join("node.toml");
    let text = format!(
        "name = \"file-node\"\nlisten = \"127.0.0.1:7200\"\nmasters = [\"file-node@127.0.0.1:7200\"]\n\
         in-memory = true\ncookie-file = \"{}\"\ngroup_size = 5\nreplace-after = 40\n",
        cookie.display()
    );
    std::fs::write(&file, text).expect("write config");
    let config = dike_command()
        .args(["node", "--config", path(&file), "--print-config"])
        .args(["--replace-after", "50"])
        .env_remove("DIKE_COOKIE")
        .env("DIKE_GROUP_SIZE", "3")
        .output()
        .expect("run dike node --print-config");
    assert!(
        config.status.success(),
        "{}",
        String::from_utf8_lossy(&config.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).expect("JSON");
    assert_eq!(config["name"], "file-node");
    assert_eq!(config["listen"], "127.0.0.1:7200");
    assert_eq!(config["masters"][0], "file-node@127.0.0.1:7200");
    assert_eq!(config["master"], true);
    assert_eq!(config["cookie"], format!("file {}", cookie.display()));
    assert_eq!(
        config["group_size"], 3,
        "DIKE_GROUP_SIZE wins over the file"
    );
    assert_eq!(
        config["replace_after_secs"], 50,
        "the flag wins over the file"
    );

    std::fs::write(&file, "name = \"x\"\nnmae = \"typo\"\n").expect("write config");
    let out = dike_command()
        .args(["node", "--config", path(&file)])
        .output()
        .expect("run dike node");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nmae"), "{err}");
}

/// `--log-format json`: every line the node writes to stderr is one JSON
/// object, the node's start among them.
#[test]
fn a_node_logs_one_json_object_per_line_when_asked() {
    use std::io::BufRead;
    let addr = free_addr();
    let me = format!("jsonlog@{addr}");
    let mut child = dike_command()
        .args(["node", "--name", "jsonlog", "--listen", &addr.to_string()])
        .args(["--masters", &me, "--in-memory", "--cookie", "c"])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn dike node");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Not `wait_until_blocking`: the lines are taken as they come, and this child (no
    // `Node`) is not killed on a panic, so it is killed before the assert.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    let ready = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break false;
        };
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let message = value["fields"]["message"].as_str().unwrap_or("").to_owned();
        seen.push(message.clone());
        if message == "node ready" {
            break true;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "no \"node ready\" line; messages seen: {seen:?}");
}
