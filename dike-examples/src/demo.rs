//! `dike demo`: a real five-node cluster on this machine, shown step by
//! step. The program starts five `dike node` processes (children of itself,
//! every one a master, each with its own data directory), creates an
//! arithmetic group and a key-value ring of four groups (five replicas
//! each), sends requests, kills two nodes with SIGKILL (one of them the
//! arithmetic group's leader), shows that every group still answers,
//! restarts the two from their data directories and waits until their
//! replicas have caught up. The nodes are stopped and their data removed at
//! the end, on an error and on Ctrl-C ([`ProcessCluster`] kills them when
//! dropped).

use crate::arithmetic::{Arithmetic, ArithmeticRequest};
use crate::cli::args::{Cookie, Via};
use crate::cli::client::Client;
use crate::cli::CliError;
use crate::kv::{self, KvReply, KvRequest, KvServer};
use crate::processes::{ProcessCluster, ProcessError};
use dike_actors::DikeError;
use dike_core::MemberId;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Nodes in the demo cluster.
pub const NODES: usize = 5;
/// Groups of the key-value ring.
pub const VNODES: u32 = 4;
/// The arithmetic group.
pub const CALC: &str = "calc";
/// How long any one wait of the demo may take.
const WAIT: Duration = Duration::from_secs(30);

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Writing the commentary failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// The node processes could not be run.
    #[error("{0}")]
    Process(#[from] ProcessError),
    /// The cluster did not answer as asked.
    #[error("{0}")]
    Cli(#[from] CliError),
    /// A wait did not end in time (the message says which).
    #[error("{0}")]
    Stuck(String),
}

impl From<DikeError> for DemoError {
    fn from(e: DikeError) -> Self {
        DemoError::Cli(CliError::Cluster(e))
    }
}

struct Demo<'a, W: Write> {
    out: &'a mut W,
    cluster: ProcessCluster,
    client: Option<Client>,
}

/// Runs the demo with nodes of program `exe` (the `dike` binary itself),
/// writing its commentary to `out` and progress dots to stderr.
pub async fn run<W: Write>(out: &mut W, exe: &Path) -> Result<(), DemoError> {
    let cookie = format!("dike-demo-{}", std::process::id());
    writeln!(
        out,
        "1. Starting {NODES} dike nodes as child processes on loopback; every node is a master."
    )?;
    let cluster = ProcessCluster::start(exe, NODES, &cookie)?;
    let mut demo = Demo {
        out,
        cluster,
        client: None,
    };
    let result = demo.steps(cookie).await;
    if let Some(client) = demo.client.take() {
        client.stop().await;
    }
    demo.cluster.stop_all();
    if result.is_err() {
        // The logs go with the temporary directory: show their ends first.
        for n in demo.cluster.nodes() {
            eprintln!("--- end of {}'s log ---", n.name);
            eprint!("{}", demo.cluster.log_tail(&n.name, 8));
        }
    }
    result?;
    demo.say("8. Stopped every node and removed their data. That was dike-rs.")
}

impl<W: Write> Demo<'_, W> {
    fn say(&mut self, text: impl AsRef<str>) -> Result<(), DemoError> {
        writeln!(self.out, "{}", text.as_ref())?;
        self.out.flush()?;
        Ok(())
    }

    fn client(&self) -> Result<&Client, DemoError> {
        self.client
            .as_ref()
            .ok_or_else(|| DemoError::Stuck("not connected".into()))
    }

    async fn steps(&mut self, cookie: String) -> Result<(), DemoError> {
        for n in self.cluster.nodes().to_vec() {
            let pid = self.cluster.pid(&n.name).unwrap_or_default();
            self.say(format!(
                "   {}  {}  pid {pid}  data {}",
                n.name,
                n.addr,
                n.data_dir.display()
            ))?;
        }
        let via = Via {
            via: self.cluster.masters(),
            cookie: Cookie::given(cookie),
            tls: Default::default(),
            timeout: Some(WAIT.as_secs()),
            dial_timeout: 3,
            output: crate::cli::args::Output::Table,
        };
        self.cluster.check_running()?;
        let client = progress(Client::connect(&via)).await?;
        self.client = Some(client);
        self.await_all_up().await?;
        self.say(format!(
            "   The cluster is ready: {NODES} nodes up, the master group on all of them."
        ))?;

        self.say(format!(
            "\n2. Adding an arithmetic group {CALC:?} and a key-value ring of {VNODES} groups, \
             5 replicas each."
        ))?;
        self.add_groups().await?;

        self.say("\n3. Requests (each goes through the group's Paxos log):")?;
        for req in [
            ArithmeticRequest::Add(5),
            ArithmeticRequest::Mult(3),
            ArithmeticRequest::Sub(1),
            ArithmeticRequest::Div(0),
        ] {
            let reply = self.calc(req).await?;
            self.say(format!("   {CALC} {req:?} -> {}", show_calc(reply)))?;
        }
        for (k, v) in [("colour", "green"), ("shape", "circle")] {
            let prev = self.kv(KvRequest::Put(k.into(), v.into())).await?;
            self.say(format!(
                "   kv put {k}={v} on {} -> previous {prev}",
                kv::vnode_for(k, VNODES)
            ))?;
        }

        let victims = self.choose_victims().await?;
        self.say(format!(
            "\n4. Killing {} (the leader of {CALC}) and {} with SIGKILL; 3 of 5 masters and \
             3 of 5 replicas of every group stay up.",
            victims[0], victims[1]
        ))?;
        for v in &victims {
            self.cluster.kill(v)?;
        }

        self.say("\n5. The groups still answer:")?;
        let started = Instant::now();
        let reply = self.calc(ArithmeticRequest::Add(10)).await?;
        self.say(format!(
            "   {CALC} Add(10) -> {} (in {} ms: another replica took over as leader)",
            show_calc(reply),
            started.elapsed().as_millis()
        ))?;
        let prev = self
            .kv(KvRequest::Put("colour".into(), "blue".into()))
            .await?;
        self.say(format!("   kv put colour=blue -> previous {prev}"))?;
        let shape = self.kv(KvRequest::Get("shape".into())).await?;
        self.say(format!("   kv get shape -> {shape}"))?;
        self.say("   All groups answered with two of five nodes down.")?;

        self.say(format!(
            "\n6. Restarting {} and {} from their data directories.",
            victims[0], victims[1]
        ))?;
        for v in &victims {
            self.cluster.restart(v)?;
        }
        self.await_caught_up(&victims).await?;

        let value = self.calc(ArithmeticRequest::Read).await?;
        self.say(format!(
            "\n7. {CALC} reads {} on a cluster of {NODES} again.",
            show_calc(value)
        ))
    }

    /// Polls the routing table until every node is up.
    async fn await_all_up(&mut self) -> Result<(), DemoError> {
        let deadline = Instant::now() + WAIT;
        progress(async {
            loop {
                self.cluster.check_running()?;
                let table = self.client()?.table().await?;
                if table.live_nodes().count() == NODES {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(DemoError::Stuck(format!(
                        "only {} of {NODES} nodes joined within {WAIT:?}",
                        table.live_nodes().count()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
    }

    async fn add_groups(&mut self) -> Result<(), DemoError> {
        let groups: Vec<(String, &str)> = std::iter::once((CALC.to_owned(), "arithmetic"))
            .chain(kv::vnodes(VNODES).map(|g| (g, "kv")))
            .collect();
        let client = self.client()?;
        let added = progress(async {
            let mut lines = Vec::new();
            for (g, kind) in &groups {
                lines
                    .push(crate::cli::admin::add_group(client, g, kind, Some(NODES), false).await?);
            }
            Ok::<_, DemoError>(lines)
        })
        .await?;
        for line in added {
            self.say(format!("   {}", line.trim_end()))?;
        }
        Ok(())
    }

    /// Sends `req` to the arithmetic group: a command once (the dispatcher
    /// retries it with the same session until the deadline, so it is never
    /// applied twice), a read as a query, retried while the group elects.
    async fn calc(
        &self,
        req: ArithmeticRequest,
    ) -> Result<crate::arithmetic::ArithmeticReply, DemoError> {
        let client = self.client()?;
        let reply = if req == ArithmeticRequest::Read {
            let query = |n: dike_actors::NodeHandle| async move {
                n.group::<Arithmetic>(CALC).query(req).await
            };
            progress(client.retry(query)).await?
        } else {
            progress(client.node().group::<Arithmetic>(CALC).call(req)).await?
        };
        Ok(reply)
    }

    /// Sends `req` to its vnode (like [`Demo::calc`]); returns the value
    /// (read or previous) as shown.
    async fn kv(&self, req: KvRequest) -> Result<String, DemoError> {
        let client = self.client()?;
        let group = kv::vnode_for(req.key(), VNODES);
        let reply = if let KvRequest::Get(_) = req {
            let (req, group) = (&req, &group);
            let query = |n: dike_actors::NodeHandle| async move {
                n.group::<KvServer>(group).query(req.clone()).await
            };
            progress(client.retry(query)).await?
        } else {
            progress(client.node().group::<KvServer>(&group).call(req)).await?
        };
        Ok(match reply {
            KvReply::Value(Some(v)) => format!("{v:?}"),
            KvReply::Value(None) => "none".into(),
            KvReply::Cas(r) => format!("{r:?}"),
        })
    }

    /// The node of the arithmetic group's leader and another node hosting
    /// the group.
    async fn choose_victims(&self) -> Result<Vec<String>, DemoError> {
        let client = self.client()?;
        let table = client.table().await?;
        let members = table
            .group(CALC)
            .map(|g| g.config.voters.clone())
            .ok_or_else(|| DemoError::Stuck(format!("{CALC} is not in the routing table")))?;
        let name = |m: &MemberId| table.node(m.node).map(|n| n.name.clone());
        let mut leader = None;
        for m in &members {
            if let Ok(s) = client.node().replica_status(CALC, *m).await {
                leader = leader.or(s.leader);
            }
        }
        let leader = leader
            .or_else(|| members.first().copied())
            .ok_or_else(|| DemoError::Stuck(format!("{CALC} has no members")))?;
        let other = members
            .iter()
            .find(|m| **m != leader)
            .ok_or_else(|| DemoError::Stuck(format!("{CALC} has one member")))?;
        match (name(&leader), name(other)) {
            (Some(a), Some(b)) => Ok(vec![a, b]),
            _ => Err(DemoError::Stuck(
                "a member's node is not in the table".into(),
            )),
        }
    }

    /// Polls every replica of every group until all members of each group
    /// have applied the same slot, nudging each group with a command so
    /// its leader talks to the restarted replicas.
    async fn await_caught_up(&mut self, victims: &[String]) -> Result<(), DemoError> {
        let deadline = Instant::now() + WAIT;
        let groups: Vec<String> = std::iter::once(CALC.to_owned())
            .chain(kv::vnodes(VNODES))
            .collect();
        let applied = progress(async {
            loop {
                self.cluster.check_running()?;
                let client = self.client()?;
                let table = client.table().await?;
                let mut behind = Vec::new();
                let mut calc_applied = Vec::new();
                for g in &groups {
                    let Some(info) = table.group(g) else { continue };
                    let mut seen = Vec::new();
                    for m in &info.config.voters {
                        let node = table.node(m.node).map_or("?", |n| n.name.as_str());
                        match client.node().replica_status(g, *m).await {
                            Ok(s) => seen.push((node.to_owned(), s.applied)),
                            Err(_) => behind.push(format!("{g}@{node}")),
                        }
                    }
                    let max = seen.iter().map(|(_, a)| *a).max().unwrap_or(0);
                    behind.extend(
                        seen.iter()
                            .filter(|(_, a)| *a < max)
                            .map(|(n, _)| format!("{g}@{n}")),
                    );
                    if g == CALC {
                        calc_applied = seen;
                    }
                }
                if behind.is_empty() {
                    return Ok(calc_applied);
                }
                if Instant::now() > deadline {
                    return Err(DemoError::Stuck(format!(
                        "replicas still behind after {WAIT:?}: {}",
                        behind.join(", ")
                    )));
                }
                // A command wakes a hibernating leader, whose accepts tell
                // the restarted replicas what they missed.
                let _ = client
                    .node()
                    .group::<Arithmetic>(CALC)
                    .call(ArithmeticRequest::Add(0))
                    .await;
                for g in kv::vnodes(VNODES) {
                    let _ = client
                        .node()
                        .group::<KvServer>(&g)
                        .call(KvRequest::Get("colour".into()))
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
        .await?;
        let shown: Vec<String> = applied.iter().map(|(n, a)| format!("{n}={a}")).collect();
        self.say(format!(
            "   {} caught up: every replica of every group has applied the same slots \
             ({CALC}: {}).",
            victims.join(" and "),
            shown.join(" ")
        ))
    }
}

fn show_calc(reply: crate::arithmetic::ArithmeticReply) -> String {
    match reply {
        Ok(v) => v.to_string(),
        Err(e) => format!("error: {e} (the value is unchanged)"),
    }
}

/// Runs `f`, printing a dot on stderr every half second while it runs.
async fn progress<T>(f: impl Future<Output = T>) -> T {
    let mut dots = tokio::time::interval(Duration::from_millis(500));
    dots.tick().await;
    let mut printed = false;
    tokio::pin!(f);
    let out = loop {
        tokio::select! {
            out = &mut f => break out,
            _ = dots.tick() => {
                eprint!(".");
                printed = true;
            }
        }
    };
    if printed {
        eprintln!();
    }
    out
}
