//! Node lifecycle on `dike node` processes: `dike node remove` moves a
//! node's replicas away and takes it out of the routing table, its data dir
//! is refused when it comes back, and a node that died and whose replicas
//! were replaced leaves the table too (and may come back as if new).
//! No acknowledged write is lost on the way (the fault suite's
//! `a_node_decommissioned_under_load_loses_nothing` checks the same under
//! load with its linearizability checker).

mod common;

use common::{free_addr, wait_until_blocking, ChildProcess};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const COOKIE: &str = "node-remove-cookie";

/// Three durable masters and `workers` durable nodes that join.
struct Cluster {
    label: String,
    names: Vec<String>,
    addrs: Vec<SocketAddr>,
    masters: String,
    dirs: tempfile::TempDir,
    nodes: Vec<Option<ChildProcess>>,
}

impl Cluster {
    fn start(label: &str, workers: usize, master_args: &[&str]) -> Cluster {
        let names: Vec<String> = (1..=3 + workers).map(|i| format!("{label}{i}")).collect();
        let addrs: Vec<SocketAddr> = names.iter().map(|_| free_addr()).collect();
        let masters = common::masters_list(&names[..3], &addrs[..3]);
        let mut c = Cluster {
            label: label.to_owned(),
            names,
            addrs,
            masters,
            dirs: tempfile::tempdir().expect("tempdir"),
            nodes: Vec::new(),
        };
        for i in 0..c.names.len() {
            let mut args: Vec<&str> = vec!["--worker-threads", "2"];
            if i < 3 {
                args.extend(master_args);
            } else {
                args.push("--join");
            }
            let node = c.spawn(i, &args);
            c.nodes.push(Some(node));
        }
        c.wait_for(Duration::from_secs(60), "every node is up", |c| {
            let t = c.table();
            let up = t["nodes"]
                .as_array()
                .map_or(0, |ns| ns.iter().filter(|n| n["up"] == true).count());
            (up == c.names.len()).then_some(()).ok_or(t.to_string())
        });
        c
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.dirs.path().join(&self.names[i])
    }

    fn spawn(&self, i: usize, args: &[&str]) -> ChildProcess {
        let dir = self.dir(i);
        let mut all = vec!["--data-dir", path_str(&dir)];
        all.extend(args);
        common::spawn_node(
            &self.label,
            &self.names[i],
            self.addrs[i],
            &self.masters,
            &all,
            COOKIE,
        )
    }

    /// Through the masters (the other nodes may be gone).
    fn dike(&self, args: &[&str]) -> Output {
        let via: Vec<String> = self.addrs[..3].iter().map(ToString::to_string).collect();
        Command::new(env!("CARGO_BIN_EXE_dike"))
            .args(args)
            .args(["--via", &via.join(","), "--timeout", "10"])
            .env("DIKE_COOKIE", COOKIE)
            .output()
            .expect("run dike")
    }

    fn table(&self) -> serde_json::Value {
        let out = self.dike(&["routing-table", "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn logs(&self) -> String {
        common::log_tails(self.nodes.iter().flatten(), 15)
    }

    /// [`wait_until_blocking`] on `check` on this cluster, the logs added to the last
    /// answer when it fails.
    fn wait_for<T>(
        &self,
        within: Duration,
        what: &str,
        mut check: impl FnMut(&Cluster) -> Result<T, String>,
    ) -> T {
        wait_until_blocking(within, what, || {
            check(self).map_err(|last| format!("{last}\n{}", self.logs()))
        })
    }

    /// Adds arithmetic group `name` of 3 replicas and adds `n` to it.
    fn add_group_with(&self, name: &str, n: i64) {
        let out = self.dike(&["add-group", name, "arithmetic", "--size", "3"]);
        assert!(out.status.success(), "{}\n{}", text(&out), self.logs());
        let add = format!(r#"{{"Add":{n}}}"#);
        self.wait_for(Duration::from_secs(30), "the group answers", |c| {
            let out = c.dike(&["request", name, &add]);
            out.status.success().then_some(()).ok_or_else(|| text(&out))
        });
    }

    fn read(&self, group: &str) -> String {
        let out = self.dike(&["query", group, r#""Read""#]);
        assert!(out.status.success(), "{}\n{}", text(&out), self.logs());
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The nodes the table lists, by name.
    fn table_nodes(&self) -> Vec<String> {
        let t = self.table();
        t["nodes"]
            .as_array()
            .map(|ns| {
                ns.iter()
                    .filter_map(|n| n["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Groups with a voter or learner on node `name`.
    fn groups_on(&self, name: &str) -> Vec<String> {
        let t = self.table();
        let on = |g: &serde_json::Value, key: &str| {
            g[key]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m == name))
        };
        t["groups"]
            .as_array()
            .map(|gs| {
                gs.iter()
                    .filter(|g| on(g, "members") || on(g, "learners"))
                    .filter_map(|g| g["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits (up to 30 s) for `node` to exit by itself; its exit code.
fn exit_code(node: &mut ChildProcess) -> Option<i32> {
    let status = wait_until_blocking(Duration::from_secs(30), "the node exiting", || {
        node.exited().ok_or_else(|| "it still runs".to_owned())
    });
    status.code()
}

#[test]
fn dike_node_remove_moves_the_replicas_away_and_the_removed_data_dir_is_refused() {
    let mut c = Cluster::start("nr", 1, &[]);
    let worker = c.names[3].clone();
    let groups: Vec<String> = (0..6).map(|i| format!("calc{i}")).collect();
    for (i, g) in groups.iter().enumerate() {
        c.add_group_with(g, i as i64 + 1);
    }
    let hosted = c.groups_on(&worker);
    assert!(!hosted.is_empty(), "the worker hosts some of the groups");

    let out = c.dike(&["node", "remove", &worker, "--wait", "120", "-o", "json"]);
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["removed"], worker.as_str());
    assert_eq!(answer["replicas_moved"], hosted.len());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replicas to move"),
        "progress on stderr: {}",
        text(&out)
    );
    assert!(!c.table_nodes().contains(&worker), "{}", c.table());
    assert!(c.groups_on(&worker).is_empty());
    for (i, g) in groups.iter().enumerate() {
        assert_eq!(
            c.read(g),
            format!(r#"{{"Ok":{}}}"#, i + 1),
            "{g} kept its value"
        );
    }

    // The removed node learns it, says so once, marks its data dir and
    // exits with code 9.
    let mut removed = c.nodes[3].take().expect("the worker runs");
    assert_eq!(exit_code(&mut removed), Some(9), "{}", removed.log());
    let log = removed.log();
    let said = |l: &&str| l.contains("was removed from the cluster");
    let logged = log.lines().filter(said).filter(|l| l.contains("ERROR"));
    assert_eq!(logged.count(), 1, "{log}");
    let last = log.lines().rfind(said).unwrap_or_default();
    assert!(last.starts_with("dike: node"), "the exit names it: {log}");

    // Restarted on its data dir, it is refused at once with exit code 9.
    let mut again = c.spawn(3, &["--join"]);
    assert_eq!(exit_code(&mut again), Some(9), "{}", again.log());
    let log = again.log();
    assert!(
        log.contains("was removed from the cluster") && log.contains("empty data dir"),
        "{log}"
    );

    let out = c.dike(&["node", "remove", &worker]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed already"));
    let out = c.dike(&["node", "remove", "nosuch"]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    let out = c.dike(&["node", "remove", &c.names[0]]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a master"));
}

#[test]
fn a_dead_node_whose_replicas_were_replaced_leaves_the_table_and_may_come_back() {
    let mut c = Cluster::start("nd", 1, &["--replace-after", "2"]);
    let worker = c.names[3].clone();
    for i in 0..4 {
        c.add_group_with(&format!("g{i}"), 1);
    }
    assert!(!c.groups_on(&worker).is_empty());
    c.nodes[3].as_mut().expect("running").kill().expect("kill");

    c.wait_for(
        Duration::from_secs(90),
        "the dead node leaves the table",
        |c| {
            let nodes = c.table_nodes();
            (!nodes.contains(&worker))
                .then_some(())
                .ok_or(format!("{nodes:?}"))
        },
    );
    for i in 0..4 {
        assert_eq!(c.read(&format!("g{i}")), r#"{"Ok":1}"#);
    }

    // Back on its data dir, it joins again by itself, hosting nothing yet.
    c.nodes[3] = Some(c.spawn(3, &[]));
    c.wait_for(
        Duration::from_secs(60),
        "the node is back in the table",
        |c| {
            let nodes = c.table_nodes();
            nodes
                .contains(&worker)
                .then_some(())
                .ok_or(format!("{nodes:?}"))
        },
    );
}

#[test]
fn a_node_removed_while_it_was_down_exits_9_when_it_comes_back() {
    let mut c = Cluster::start("nw", 1, &[]);
    let worker = c.names[3].clone();
    for i in 0..3 {
        c.add_group_with(&format!("w{i}"), 1);
    }
    c.nodes[3].as_mut().expect("running").kill().expect("kill");
    c.nodes[3] = None;

    let out = c.dike(&["node", "remove", &worker, "--wait", "120"]);
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    assert!(!c.table_nodes().contains(&worker), "{}", c.table());

    // Its data dir was not marked (it was down): the master refuses its
    // join, and it marks the dir and exits 9 all the same.
    let mut back = c.spawn(3, &["--join"]);
    assert_eq!(exit_code(&mut back), Some(9), "{}", back.log());
    let mut again = c.spawn(3, &["--join"]);
    assert_eq!(exit_code(&mut again), Some(9), "{}", again.log());
    assert!(again.log().contains("empty data dir"), "{}", again.log());
    assert!(!c.table_nodes().contains(&worker), "{}", c.table());
}
