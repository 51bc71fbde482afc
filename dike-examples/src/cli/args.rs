//! The command line of the `dike` program (clap derive): what each command
//! takes, with its `--help` text.

use super::error::CliError;
use crate::bench::{BenchConfig, BenchKind};
use clap::{Args, Parser, Subcommand};
use dike_actors::node::tls::{Tls, TlsConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// dike-rs: consistent, replicated application logic on Multi-Paxos.
#[derive(Parser, Debug)]
#[command(name = "dike", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `dike` commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a local 5-node cluster as child processes, add groups, send
    /// requests, kill two nodes with SIGKILL, show the groups still answer,
    /// restart the two and show they catch up; then stop everything.
    Demo,
    /// The same story inside one process on dike-core's in-memory cluster,
    /// then the randomised fault simulator.
    Simulate {
        /// Fault schedules the simulator runs at the end.
        #[arg(long, default_value_t = 200)]
        schedules: u64,
    },
    /// Run one node hosting the example kinds (arithmetic, kv, lock, set) until
    /// Ctrl-C or SIGTERM (`dike node --name …`), or act on a node of the
    /// cluster (`dike node drain NAME`, `dike node undrain NAME`).
    Node(NodeCli),
    /// Create a group of a kind (an existing group of that name is kept).
    AddGroup {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The group's name.
        group: String,
        /// Its server kind: arithmetic, kv, lock or set.
        kind: String,
        /// Replicas (1, 3, 5 or 7); default: the live nodes, at most 5, made odd.
        #[arg(long)]
        size: Option<usize>,
    },
    /// Delete a group; its replicas stop.
    RemoveGroup {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The group's name.
        group: String,
    },
    /// Print the routing table: nodes, and groups with kind, members, epoch.
    RoutingTable {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// Print JSON instead of a table (the same as `-o json`).
        #[arg(long)]
        json: bool,
    },
    /// Print the cluster's status: nodes (up or down, master or not) and
    /// groups (kind, epoch, leader, and per replica its applied slot, lag
    /// and whether it hibernates or did not answer). Groups without a
    /// leader or with a replica lagging or unreachable are marked `!`; the
    /// exit code is 0 all the same.
    Status {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
    },
    /// Ask a running node that has not joined to join the cluster (it then
    /// hosts replicas); prints "joined" or "already known".
    Join {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The node, NAME@HOST:PORT (its --name and --listen).
        node: String,
    },
    /// Leadership of a group.
    #[command(subcommand)]
    Leader(LeaderOp),
    /// The masters: list them, or change them (a Paxos reconfiguration of
    /// the master group, one change at a time; a new master catches up as
    /// a learner first).
    #[command(subcommand)]
    Master(MasterOp),
    /// Send a request through a group's log; the reply is printed as JSON.
    Request(RequestArgs),
    /// Send a command through a group's log without showing its reply
    /// (fire-and-forget); prints "sent" once it was handed on.
    Cast(RequestArgs),
    /// Ask a group with a read-index query (no log write); the reply is
    /// printed as JSON.
    Query(RequestArgs),
    /// Use a key-value ring of `kv` groups named vnode-1 … vnode-N.
    #[command(subcommand)]
    Kv(KvOp),
    /// Closed-loop load: C tasks each send a write and wait for its reply,
    /// for S seconds; prints ops, errors, throughput and latency
    /// percentiles. Creates the groups if missing (arithmetic: bench-1 …
    /// bench-G; kv: the ring vnode-1 … vnode-G).
    Bench(BenchArgs),
    /// Make a private CA and the certificates of nodes and clients for
    /// mutual TLS (--tls-cert, --tls-key, --tls-ca).
    #[command(subcommand)]
    Certs(CertsOp),
}

/// What `dike certs` does.
#[derive(Subcommand, Debug)]
pub enum CertsOp {
    /// Create a CA: writes DIR/ca.pem (the certificate every node and
    /// client gets as --tls-ca) and DIR/ca-key.pem (its private key, mode
    /// 0600: keep it off the nodes). Refuses to overwrite either.
    CreateCa {
        /// The directory to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Issue a certificate signed by the CA in --ca-dir, for a node or a
    /// client (it serves as both): writes DIR/NAME.pem and DIR/NAME-key.pem
    /// (mode 0600). Its names are NAME, every --host and, unless
    /// --no-local-hosts, localhost and 127.0.0.1: a node's certificate must
    /// name the host other nodes and clients dial it at (its --advertise
    /// or --listen host).
    Issue {
        /// The certificate's name (a node's --name, or a client's).
        name: String,
        /// The directory of ca.pem and ca-key.pem (from create-ca).
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// A host name or IP address the node is reached at (repeatable).
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Leave out localhost and 127.0.0.1.
        #[arg(long)]
        no_local_hosts: bool,
        /// Days the certificate is valid. 0 issues one that has already
        /// expired (to try how nodes refuse it).
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// The directory to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// How a command prints its result.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

/// What `dike leader` does.
#[derive(Subcommand, Debug)]
pub enum LeaderOp {
    /// Hand leadership of GROUP to its replica on NODE (a voter), and wait
    /// until NODE leads; prints the new and the previous leader. Fails
    /// (exit 8) if the group or node is unknown, (exit 7) if NODE hosts no
    /// voter of GROUP or the leader refuses, and (exit 6) if NODE did not
    /// take over within --timeout.
    Transfer {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The group's name.
        group: String,
        /// The node that is to lead (its name).
        node: String,
    },
}

/// What `dike master` does. The changes record the masters wanted at
/// once, then wait (at most --wait seconds) until the master group is made
/// of them, printing progress on stderr; they fail (exit 8) if a node is
/// unknown, (exit 7) if the change is refused (a node that is down, no
/// master left, more than 7), and (exit 6) if the masters are still
/// changing at the deadline (the change goes on; `dike master list`
/// shows how far it is).
#[derive(Subcommand, Debug)]
pub enum MasterOp {
    /// Print the masters (the master group's voters), the masters being
    /// added (learners) and the masters wanted, if a change was asked for.
    List {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
    },
    /// Make node NAME (one that joined the cluster) a master.
    Add {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The node (its name).
        node: String,
        /// How long to wait for the change, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Take master NAME out of the masters (it stays a node).
    Remove {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The master (its name).
        node: String,
        /// How long to wait for the change, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Replace master OLD (a dead one, say) by node NEW in one change, once
    /// NEW has caught up: the master group never has more voters than now.
    Replace {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The master to take out.
        old: String,
        /// The node to make a master in its place.
        new: String,
        /// How long to wait for the change, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
}

impl MasterOp {
    /// How the command reaches the cluster.
    pub fn via(&self) -> &Via {
        match self {
            MasterOp::List { via }
            | MasterOp::Add { via, .. }
            | MasterOp::Remove { via, .. }
            | MasterOp::Replace { via, .. } => via,
        }
    }
}

/// One key-value operation.
#[derive(Subcommand, Debug)]
pub enum KvOp {
    /// Read a key (a read-index query).
    Get {
        /// The cluster and the ring.
        #[command(flatten)]
        ring: Ring,
        /// The key.
        key: String,
    },
    /// Write a key; prints the previous value.
    Put {
        /// The cluster and the ring.
        #[command(flatten)]
        ring: Ring,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove a key; prints the previous value.
    Del {
        /// The cluster and the ring.
        #[command(flatten)]
        ring: Ring,
        /// The key.
        key: String,
    },
    /// Compare-and-set: store NEW only if the key holds EXPECTED now; prints
    /// the previous value, or fails (exit 1) showing the current one. An
    /// empty string stands for "absent": EXPECTED "" requires the key to be
    /// absent, NEW "" deletes it.
    Cas {
        /// The cluster and the ring.
        #[command(flatten)]
        ring: Ring,
        /// The key.
        key: String,
        /// The value the key must hold ("" = absent).
        expected: String,
        /// The value to store ("" = delete).
        new: String,
    },
}

impl KvOp {
    /// The cluster and ring the operation goes to.
    pub fn ring(&self) -> &Ring {
        match self {
            KvOp::Get { ring, .. }
            | KvOp::Put { ring, .. }
            | KvOp::Del { ring, .. }
            | KvOp::Cas { ring, .. } => ring,
        }
    }
}

/// Where a key-value ring is.
#[derive(Args, Debug, Clone)]
pub struct Ring {
    /// How to reach the cluster.
    #[command(flatten)]
    pub via: Via,
    /// Vnodes of the ring, checked against the routing table (by default
    /// the ring's size is read from it: its kv groups vnode-1 … vnode-N).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub vnodes: Option<u32>,
}

/// `dike node`: either run a node (its flags, [`NodeArgs`]) or one of the
/// [`NodeCommand`]s, never both. Exactly one of the two fields is `Some`.
///
/// Written out rather than derived: a derived optional flatten of
/// [`NodeArgs`] comes out `None` whatever the flags, and a plain one would
/// require `--name` with a subcommand too.
#[derive(Debug)]
pub struct NodeCli {
    /// What to do to a node of the cluster.
    pub command: Option<NodeCommand>,
    /// The flags of the node to run (when there is no command); boxed, as
    /// they are many.
    pub run: Option<Box<NodeArgs>>,
}

impl clap::FromArgMatches for NodeCli {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        if matches.subcommand_name().is_some() {
            return Ok(NodeCli {
                command: Some(NodeCommand::from_arg_matches(matches)?),
                run: None,
            });
        }
        Ok(NodeCli {
            command: None,
            run: Some(Box::new(NodeArgs::from_arg_matches(matches)?)),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = NodeCli::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for NodeCli {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = NodeArgs::augment_args(cmd);
        NodeCommand::augment_subcommands(cmd)
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        NodeCli::augment_args(cmd)
    }
}

/// What `dike node` does to a node of the cluster.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Drain node NAME: it takes no new replicas (no new group, no learner)
    /// and hands every leadership it holds to other nodes' voters (it
    /// keeps its replicas). Waits until no group is led from NAME (at most
    /// --timeout, default 30 s here) and prints what moved. Fails (exit 8)
    /// if NAME is unknown and (exit 6) if groups are still led from NAME
    /// at the deadline (e.g. their other voters are down: a draining node
    /// still leads a group nobody else can), naming them; NAME stays
    /// draining either way.
    Drain {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The node to drain (its name).
        node: String,
    },
    /// Undrain node NAME: it takes new replicas again, and groups whose
    /// preferred leader it is hand leadership back to it. Fails (exit 8) if
    /// NAME is unknown.
    Undrain {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The node to undrain (its name).
        node: String,
    },
    /// Decommission node NAME: it takes no new replicas, its replicas move
    /// to other nodes (each caught up before the old one leaves), then it
    /// leaves the routing table and its data dir is refused if it comes
    /// back. Waits until done, printing progress on stderr; fails (exit 8)
    /// if NAME is unknown, (exit 7) if NAME is a master, and (exit 6) if
    /// replicas are still left after --wait (the removal goes on; run the
    /// command again to wait more).
    Remove {
        /// How to reach the cluster.
        #[command(flatten)]
        via: Via,
        /// The node to remove (its name).
        node: String,
        /// How long to wait for the node's replicas to move, in seconds.
        #[arg(long, default_value_t = 300)]
        wait: u64,
    },
}

impl NodeCommand {
    /// How the command reaches the cluster.
    pub fn via(&self) -> &Via {
        match self {
            NodeCommand::Drain { via, .. }
            | NodeCommand::Undrain { via, .. }
            | NodeCommand::Remove { via, .. } => via,
        }
    }
}

/// Arguments of `dike node` that runs a node. Every flag may also come from
/// the `DIKE_*` variable named in `--help` (a flag given on the command line
/// wins).
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The node's name, unique in the cluster. A data dir belongs to the
    /// name it was first used with.
    #[arg(long, env = "DIKE_NAME")]
    pub name: String,
    /// Where the cluster listener binds, HOST:PORT.
    #[arg(long, env = "DIKE_LISTEN")]
    pub listen: SocketAddr,
    /// Where other nodes reach this one, HOST:PORT, as published in the
    /// routing table (default: the --listen address; required when that is
    /// 0.0.0.0 or ::).
    #[arg(long, env = "DIKE_ADVERTISE")]
    pub advertise: Option<String>,
    /// The master nodes, NAME@HOST:PORT, comma-separated: a new cluster's
    /// masters (1, 3 or 5), or any masters the cluster had, as seeds (the
    /// node learns the current masters from the cluster and keeps them in
    /// its data dir; `dike master`). Only this node's own entry:
    /// single-node mode.
    #[arg(long, value_delimiter = ',', required = true, env = "DIKE_MASTERS")]
    pub masters: Vec<String>,
    /// Keep replica state durably in this directory. One node uses it at a
    /// time (it is locked), under the name and masters it was created
    /// with.
    #[arg(long, conflicts_with = "in_memory", env = "DIKE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep replica state in memory only (the default).
    #[arg(long, env = "DIKE_IN_MEMORY")]
    pub in_memory: bool,
    /// The cluster's shared secret.
    #[command(flatten)]
    pub cookie: Cookie,
    /// Mutual TLS with the other nodes and clients.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Register with the master so the node hosts replicas. Master nodes
    /// always do; a node that is not a master and does not join only routes
    /// requests. A node on a data dir that joined once re-joins by itself.
    #[arg(long, env = "DIKE_JOIN")]
    pub join: bool,
    /// Replicas per new group created from this node.
    #[arg(long, env = "DIKE_GROUP_SIZE")]
    pub group_size: Option<usize>,
    /// Seconds a node may be down before the master moves its replicas to
    /// live nodes (default 60).
    #[arg(long, env = "DIKE_REPLACE_AFTER")]
    pub replace_after: Option<u64>,
    /// Size of the data dir's log segments in MiB (default 64): the log
    /// gives the space of removed groups back when it rolls to a new
    /// segment, so smaller segments return it sooner.
    #[arg(long, env = "DIKE_LOG_SEGMENT_MIB", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub log_segment_mib: Option<u64>,
    /// The largest cluster frame taken from a peer, in MiB (default 16): a
    /// peer announcing a longer one is disconnected before any of it is
    /// read. Give every node of a cluster the same value.
    #[arg(long, env = "DIKE_MAX_FRAME_MIB", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_frame_mib: Option<u64>,
    /// Serve the status page (/), /health, /ready, /metrics (Prometheus)
    /// and /status.json over HTTP on HOST:PORT (default: no HTTP listener).
    #[arg(long, env = "DIKE_HTTP")]
    pub http: Option<SocketAddr>,
    /// Add series per group to /metrics (requests by outcome and commands
    /// applied, labelled with the group's name): one set per group hosted
    /// here, so only for clusters of a few groups.
    #[arg(long, env = "DIKE_METRICS_PER_GROUP")]
    pub metrics_per_group: bool,
    /// Threads of the node's async runtime (default: one per core), e.g. to
    /// keep several nodes sharing a few cores from oversubscribing them.
    #[arg(long, env = "DIKE_WORKER_THREADS")]
    pub worker_threads: Option<std::num::NonZeroUsize>,
    /// Print the configuration these flags and variables make (as JSON,
    /// the cookie left out) and exit, without starting the node.
    #[arg(long)]
    pub print_config: bool,
    /// A TOML file of flags: `name = "n1"`, `masters = ["n1@…", …]`,
    /// `in-memory = true`, … (each key a flag's long name). Flags win over
    /// `DIKE_*` variables, which win over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How log lines look on stderr: `text` (for people) or `json` (one
    /// object per line, for log collectors).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "DIKE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// The format of a node's log lines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The cluster's shared secret, from exactly one source.
#[derive(Args, Debug, Clone)]
pub struct Cookie {
    /// The cluster's shared secret.
    #[arg(long, env = "DIKE_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// A file holding the cluster's shared secret (a trailing newline is
    /// dropped); instead of --cookie.
    #[arg(long, env = "DIKE_COOKIE_FILE")]
    pub cookie_file: Option<PathBuf>,
}

impl Cookie {
    /// A cookie given as it is.
    pub fn given(cookie: impl Into<String>) -> Cookie {
        Cookie {
            cookie: Some(cookie.into()),
            cookie_file: None,
        }
    }

    /// The secret: from --cookie (or DIKE_COOKIE), or read from
    /// --cookie-file (or DIKE_COOKIE_FILE); exactly one of them.
    pub fn secret(&self) -> Result<String, CliError> {
        match (&self.cookie, &self.cookie_file) {
            (Some(_), Some(_)) => Err(CliError::Usage(
                "the cookie is given twice: use --cookie (or DIKE_COOKIE) or --cookie-file \
                 (or DIKE_COOKIE_FILE), not both"
                    .into(),
            )),
            (None, None) => Err(CliError::Usage(
                "no cookie: pass --cookie or --cookie-file (or set DIKE_COOKIE or DIKE_COOKIE_FILE)"
                    .into(),
            )),
            (Some(cookie), None) => Ok(cookie.clone()),
            (None, Some(path)) => {
                if let Some(warning) = exposed_secret_warning(path) {
                    eprintln!("dike: warning: {warning}");
                }
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError::Usage(format!("cannot read cookie file {}: {e}", path.display()))
                })?;
                let secret = text.trim_end_matches(['\n', '\r']);
                if secret.trim().is_empty() {
                    return Err(CliError::Usage(format!(
                        "cookie file {} is empty",
                        path.display()
                    )));
                }
                Ok(secret.to_owned())
            }
        }
    }

    /// Where the secret comes from, without the secret.
    pub fn source(&self) -> String {
        match (&self.cookie, &self.cookie_file) {
            (_, Some(path)) => format!("file {}", path.display()),
            (Some(_), None) => "--cookie or DIKE_COOKIE".into(),
            (None, None) => "none".into(),
        }
    }
}

/// What to say if the secret file at `path` may be read or changed by
/// other users than its owner (any group or other permission bit, as ssh
/// checks its keys), or `None`. The file is still used: the warning says
/// how to fix it.
pub fn exposed_secret_warning(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "secret file {} is accessible to other users (mode {mode:03o}); make it private \
             with: chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

/// Mutual TLS: this process's certificate and key and the cluster's CA,
/// all three or none (see `dike certs`). Every node and client of a
/// cluster uses TLS, or none does.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// This process's certificate (PEM, signed by the cluster's CA), for
    /// mutual TLS; needs --tls-key and --tls-ca.
    #[arg(long, env = "DIKE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; keep it private, mode 600).
    #[arg(long, env = "DIKE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): every node and client must
    /// present a certificate it signed.
    #[arg(long, env = "DIKE_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The files, if TLS is asked for: all three flags, or none.
    pub fn files(&self) -> Result<Option<TlsConfig>, CliError> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            })),
            (cert, key, ca) => {
                let missing: Vec<&str> = [
                    (cert.is_none(), "--tls-cert (DIKE_TLS_CERT)"),
                    (key.is_none(), "--tls-key (DIKE_TLS_KEY)"),
                    (ca.is_none(), "--tls-ca (DIKE_TLS_CA)"),
                ]
                .into_iter()
                .filter_map(|(m, flag)| m.then_some(flag))
                .collect();
                Err(CliError::Usage(format!(
                    "TLS needs --tls-cert, --tls-key and --tls-ca together; missing: {}",
                    missing.join(", ")
                )))
            }
        }
    }

    /// The loaded TLS setup, if asked for; warns (on stderr) about a key
    /// file other users may read.
    pub fn load(&self) -> Result<Option<Tls>, CliError> {
        let Some(files) = self.files()? else {
            return Ok(None);
        };
        if let Some(warning) = exposed_secret_warning(&files.key) {
            eprintln!("dike: warning: {warning}");
        }
        Ok(Some(files.load()?))
    }
}

/// How a client command reaches the cluster: it starts a short-lived node
/// that does not join and talks to the masters.
#[derive(Args, Debug, Clone)]
pub struct Via {
    /// Any nodes of the cluster, HOST:PORT, comma-separated: the first that
    /// answers tells the masters. NAME@HOST:PORT entries are taken as
    /// masters as they are.
    #[arg(long, value_delimiter = ',', required = true, env = "DIKE_VIA")]
    pub via: Vec<String>,
    /// The cluster's shared secret.
    #[command(flatten)]
    pub cookie: Cookie,
    /// Mutual TLS with the cluster.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// How long to wait for the cluster, in seconds (default 10; `dike node
    /// drain` waits 30 for leaderships to move).
    #[arg(long, env = "DIKE_TIMEOUT")]
    pub timeout: Option<u64>,
    /// How long to wait for each --via node to answer, in seconds.
    #[arg(long, default_value_t = 3, env = "DIKE_DIAL_TIMEOUT")]
    pub dial_timeout: u64,
    /// Output format: `table` (text for people) or `json` (one JSON
    /// document on stdout); diagnostics always go to stderr.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table, env = "DIKE_OUTPUT")]
    pub output: Output,
}

/// Arguments of `dike request` and `dike query`.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// How to reach the cluster.
    #[command(flatten)]
    pub via: Via,
    /// The group's name.
    pub group: String,
    /// The request as JSON in its kind's serde form, e.g. '{"Add":5}',
    /// '"Read"', '{"Put":["k","v"]}'.
    pub request: String,
}

/// Arguments of `dike bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// How to reach the cluster.
    #[command(flatten)]
    pub via: Via,
    /// What to load: arithmetic adds, or kv puts (1,024 keys per task, as
    /// the vs-etcd harness writes them).
    #[arg(long, value_enum, default_value_t = BenchKind::Arithmetic)]
    pub kind: BenchKind,
    /// Number of groups (G).
    #[arg(long, default_value_t = 4)]
    pub groups: u32,
    /// Concurrent closed-loop tasks (C).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long to send, in seconds (S), after the warm-up.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before the measured part (not counted): leaders
    /// settle, connections open, caches fill.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Bytes per value (kv only).
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The bench's configuration.
    pub fn config(&self) -> BenchConfig {
        BenchConfig {
            kind: self.kind,
            groups: self.groups,
            concurrency: self.concurrency,
            duration: std::time::Duration::from_secs(self.duration),
            warmup: std::time::Duration::from_secs(self.warmup),
            value_size: self.value_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<NodeCli, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("dike").chain(args.iter().copied()))?;
        match cli.command {
            Command::Node(n) => Ok(n),
            other => panic!("not a node command: {other:?}"),
        }
    }

    #[test]
    fn dike_node_with_flags_runs_a_node_as_before() {
        let n = parse(&[
            "node",
            "--name",
            "a",
            "--listen",
            "127.0.0.1:7001",
            "--masters",
            "a@127.0.0.1:7001",
        ])
        .expect("parses");
        assert!(n.command.is_none());
        assert_eq!(n.run.expect("a node to run").name, "a");
        assert!(parse(&["node"]).is_err(), "its flags are still required");
    }

    #[test]
    fn dike_node_drain_and_undrain_name_a_node_and_take_no_node_flags() {
        let n = parse(&["node", "drain", "b", "--via", "h:1", "--timeout", "5"]).expect("parses");
        assert!(n.run.is_none());
        let Some(NodeCommand::Drain { via, node }) = n.command else {
            panic!("a drain")
        };
        assert_eq!((node.as_str(), via.timeout), ("b", Some(5)));
        let n = parse(&["node", "undrain", "b", "--via", "h:1"]).expect("parses");
        assert!(matches!(n.command, Some(NodeCommand::Undrain { .. })));
        assert!(parse(&["node", "--name", "a", "drain", "b", "--via", "h:1"]).is_err());
        assert!(parse(&["node", "drain", "b", "--via", "h:1", "--name", "a"]).is_err());
    }
}
