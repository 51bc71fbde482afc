//! The master group's own members on `dike node` processes: a master that
//! died for good is replaced by another node (`dike master replace`), the
//! cluster keeps working through the change and after it without the old
//! master's address, the new master is a voter that counts (the master
//! quorum holds with one of the old masters gone as well), and it hosts its
//! master replica again after a restart with its old `--masters` flags.
//! No acknowledged write is lost on the way.

mod common;

use common::{free_addr, masters_list, spawn_node, text, wait_until_blocking, ChildProcess};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

const COOKIE: &str = "master-membership-cookie";

struct Cluster {
    names: Vec<String>,
    addrs: Vec<SocketAddr>,
    masters: String,
    dirs: tempfile::TempDir,
    nodes: Vec<Option<ChildProcess>>,
}

impl Cluster {
    /// Masters mm1…mm3 and workers mm4, mm5 (which join), all durable.
    fn start() -> Cluster {
        let names: Vec<String> = (1..=5).map(|i| format!("mm{i}")).collect();
        let addrs: Vec<SocketAddr> = names.iter().map(|_| free_addr()).collect();
        let masters = masters_list(&names[..3], &addrs[..3]);
        let mut c = Cluster {
            names,
            addrs,
            masters,
            dirs: tempfile::tempdir().expect("tempdir"),
            nodes: Vec::new(),
        };
        for i in 0..5 {
            let node = c.spawn(i);
            c.nodes.push(Some(node));
        }
        c.wait_for("every node up", |c| {
            let t = c.json(&["routing-table", "-o", "json"], &[0, 1, 2])?;
            let up = t["nodes"]
                .as_array()
                .map_or(0, |ns| ns.iter().filter(|n| n["up"] == true).count());
            (up == 5).then_some(()).ok_or_else(|| t.to_string())
        });
        c
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.dirs.path().join(&self.names[i])
    }

    /// Starts node `i` on its data dir with the cluster's first masters
    /// list, whatever the masters are now.
    fn spawn(&self, i: usize) -> ChildProcess {
        let dir = self.dir(i);
        let mut args = vec!["--worker-threads", "2", "--data-dir"];
        args.push(dir.to_str().expect("a UTF-8 path"));
        if i >= 3 {
            args.push("--join");
        }
        spawn_node(
            "master-membership",
            &self.names[i],
            self.addrs[i],
            &self.masters,
            &args,
            COOKIE,
        )
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i].take() {
            n.kill().expect("kill");
        }
    }

    /// `dike ARGS…` through the nodes `via` only.
    fn dike(&self, args: &[&str], via: &[usize]) -> Output {
        let via: Vec<String> = via.iter().map(|&i| self.addrs[i].to_string()).collect();
        Command::new(env!("CARGO_BIN_EXE_dike"))
            .args(args)
            .args(["--via", &via.join(","), "--timeout", "10"])
            .env("DIKE_COOKIE", COOKIE)
            .output()
            .expect("run dike")
    }

    fn json(&self, args: &[&str], via: &[usize]) -> Result<serde_json::Value, String> {
        let out = self.dike(args, via);
        if !out.status.success() {
            return Err(text(&out));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", text(&out)))
    }

    fn logs(&self) -> String {
        common::log_tails(self.nodes.iter().flatten(), 15)
    }

    fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Cluster) -> Result<T, String>) -> T {
        wait_until_blocking(Duration::from_secs(60), what, || {
            check(self).map_err(|last| format!("{last}\n{}", self.logs()))
        })
    }

    /// Adds `n` to group `group` through `via`, retried until acknowledged
    /// (an arithmetic request carries a session: a retry is applied once).
    fn add(&self, group: &str, n: i64, via: &[usize]) {
        let add = format!(r#"{{"Add":{n}}}"#);
        self.wait_for(&format!("Add {n} to {group} acknowledged"), |c| {
            let out = c.dike(&["request", group, &add], via);
            out.status.success().then_some(()).ok_or_else(|| text(&out))
        });
    }

    fn read(&self, group: &str, via: &[usize]) -> String {
        self.wait_for(&format!("{group} read"), |c| {
            let out = c.dike(&["query", group, r#""Read""#], via);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
                .ok_or_else(|| text(&out))
        })
    }

    /// The voters `dike master list -o json` shows, sorted.
    fn masters_now(&self, via: &[usize]) -> Result<Vec<String>, String> {
        let view = self.json(&["master", "list", "-o", "json"], via)?;
        let mut voters: Vec<String> = view["masters"]
            .as_array()
            .ok_or_else(|| view.to_string())?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        voters.sort();
        Ok(voters)
    }
}

/// Asserts that `out` failed with exit code `code` saying `says`.
fn refused(out: &Output, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    assert!(text(out).contains(says), "{}", text(out));
}

#[test]
fn a_dead_master_is_replaced_and_the_new_master_counts_in_the_quorum() {
    let mut c = Cluster::start();
    let out = c.dike(&["add-group", "acct", "arithmetic", "--size", "5"], &[0]);
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    c.add("acct", 5, &[0, 1]);
    assert_eq!(
        c.masters_now(&[3]).as_deref(),
        Ok(&["mm1", "mm2", "mm3"].map(String::from)[..])
    );

    // A master is not removed; a typo names no node.
    refused(&c.dike(&["node", "remove", "mm1"], &[0]), 7, "is a master");
    refused(
        &c.dike(&["master", "add", "mm44"], &[0]),
        8,
        r#"no node named "mm44""#,
    );

    // mm3 dies for good: its data is gone with it.
    c.kill(2);
    std::fs::remove_dir_all(c.dir(2)).expect("remove mm3's data");
    let out = c.dike(
        &["master", "replace", "mm3", "mm4", "--wait", "90"],
        &[0, 1],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), c.logs());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("masters: mm1, mm2, mm4"), "{printed}");
    assert_eq!(
        c.masters_now(&[0]).as_deref(),
        Ok(&["mm1", "mm2", "mm4"].map(String::from)[..])
    );

    // Writes go on without mm3's address.
    c.add("acct", 7, &[0, 1, 3]);

    // mm4 counts: with mm2 gone too, mm1 and mm4 are the master quorum.
    c.kill(1);
    c.wait_for("a master change made by mm1 and mm4 alone", |c| {
        let out = c.dike(
            &["add-group", "after", "arithmetic", "--size", "3"],
            &[0, 3],
        );
        out.status.success().then_some(()).ok_or_else(|| text(&out))
    });

    // mm4 restarted with its old --masters flags (mm1, mm2, mm3) hosts its
    // master replica again, from what its data dir learned.
    c.kill(3);
    c.nodes[3] = Some(c.spawn(3));
    c.wait_for("the masters answer after mm4's restart", |c| {
        c.masters_now(&[0, 3])
    });
    c.wait_for("another master change after mm4's restart", |c| {
        let out = c.dike(
            &["add-group", "again", "arithmetic", "--size", "3"],
            &[0, 3],
        );
        out.status.success().then_some(()).ok_or_else(|| text(&out))
    });
    assert_eq!(
        c.read("acct", &[0, 3]),
        r#"{"Ok":12}"#,
        "no acknowledged write lost"
    );
}
