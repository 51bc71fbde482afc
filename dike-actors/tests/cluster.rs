//! Three master nodes as separate OS processes (`dike-node`) on loopback,
//! and a client node in this test process that does not join: the cluster
//! forms, a group of three replicas is added and answers, and it keeps
//! answering after one of its replicas' processes is killed.
//!
//! ractor's registry and process groups are per process, so only separate
//! processes test the real wire path.

use dike_actors::counter::{Counter, CounterRequest};
use dike_actors::{DikeError, DikeNode, NodeConfig, NodeHandle};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

const COOKIE: &str = "cluster-test-cookie";

/// Kills every child process when dropped, also when the test panics.
struct Processes {
    children: Vec<(String, Child)>,
    logs: PathBuf,
}

impl Processes {
    fn kill(&mut self, name: &str) {
        if let Some((_, c)) = self.children.iter_mut().find(|(n, _)| n == name) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The tail of every node's log, for a failing test's message.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            let log =
                std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out += &format!("--- {name} ---\n");
            for l in tail.into_iter().rev() {
                out += l;
                out += "\n";
            }
        }
        out
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> Result<T, DikeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DikeError>>,
{
    let deadline = Instant::now() + within;
    loop {
        let r = f().await;
        if r.is_ok() || Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_masters(n: usize) -> (Processes, Vec<String>) {
    let logs = std::env::temp_dir().join(format!("dike-cluster-test-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let masters: Vec<(String, SocketAddr)> =
        (1..=n).map(|i| (format!("m{i}"), free_addr())).collect();
    let list: Vec<String> = masters.iter().map(|(n, a)| format!("{n}@{a}")).collect();
    let mut procs = Processes {
        children: Vec::new(),
        logs: logs.clone(),
    };
    for (name, addr) in &masters {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_dike-node"))
            .args(["--name", name, "--listen", &addr.to_string()])
            .args(["--cookie", COOKIE, "--masters", &list.join(",")])
            .args(["--in-memory", "--group-size", "3"])
            .env("RUST_LOG", "info,ractor_cluster=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dike-node");
        procs.children.push((name.clone(), child));
    }
    (procs, list)
}

async fn client(masters: &[String]) -> NodeHandle {
    let mut b = NodeConfig::builder("client", free_addr())
        .cookie(COOKIE)
        .join(false)
        .group_size(3)
        .request_timeout(Duration::from_secs(5));
    for m in masters {
        b = b.master(m.clone());
    }
    let node = DikeNode::start(b.build().expect("valid config"))
        .await
        .expect("client node starts");
    node.register::<Counter>();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_keeps_answering_after_one_replica_process_is_killed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (mut procs, masters) = start_masters(3);
    let node = client(&masters).await;

    let formed = eventually(Duration::from_secs(30), || async {
        let t = node.routing_table().await?;
        let up = t.live_nodes().count();
        if up == 3 {
            Ok(t)
        } else {
            Err(DikeError::NodeStopped(format!("{up} nodes up")))
        }
    })
    .await;
    assert!(formed.is_ok(), "{formed:?}\n{}", procs.log_tails());

    let group = eventually(Duration::from_secs(10), || node.add_group("g", "counter")).await;
    let group = match group {
        Ok(g) => g,
        Err(e) => panic!("add_group: {e}\n{}", procs.log_tails()),
    };
    assert_eq!(group.config.voters.len(), 3);

    let g = node.group::<Counter>("g");
    let first = eventually(Duration::from_secs(15), || g.call(CounterRequest::Add(1))).await;
    assert!(first.is_ok(), "{first:?}\n{}", procs.log_tails());
    let mut acked = 1;
    for _ in 0..20 {
        g.call(CounterRequest::Add(1))
            .await
            .expect("healthy group answers");
        acked += 1;
    }

    // Kill the process of the group's leader: the others elect a new one.
    let voters = group.config.voters.clone();
    let leader = eventually(Duration::from_secs(5), || async {
        let status = node.replica_status("g", voters[0]).await?;
        status
            .leader
            .ok_or_else(|| DikeError::NodeStopped("no leader known".into()))
    })
    .await
    .expect("the group has a leader");
    let table = node.routing_table().await.expect("table");
    let victim = table
        .node(leader.node)
        .map(|n| n.name.clone())
        .expect("the leader's node is in the table");
    procs.kill(&victim);

    // A call that fails at this level may still have been applied; one that
    // succeeds was applied exactly once.
    let (mut after, mut unsure) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while after < 10 {
        assert!(
            Instant::now() < deadline,
            "after killing the leader {victim}: {after} calls answered\n{}",
            procs.log_tails()
        );
        match g.call(CounterRequest::Add(1)).await {
            Ok(_) => after += 1,
            Err(_) => unsure += 1,
        }
    }
    let value = g.query(CounterRequest::Get).await.expect("query");
    let acked = acked + after;
    eprintln!("killed leader {victim}; value {value}, acknowledged {acked}, unsure {unsure}");
    assert!(
        (acked..=acked + unsure).contains(&value),
        "every acknowledged add applied once: value {value}, acknowledged {acked}, unsure {unsure}"
    );
    node.stop().await;
}
