//! The command line of the `dike` program (clap derive): what each command
//! takes, with its `--help` text.

use clap::{Args, Parser, Subcommand};
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
    /// Show a replicated arithmetic group surviving crashes, then run the
    /// fault simulator.
    Demo {
        /// Fault schedules the simulator runs at the end.
        #[arg(long, default_value_t = 200)]
        schedules: u64,
    },
    /// Run one node hosting the example kinds (arithmetic, kv, lock, set) until
    /// Ctrl-C or SIGTERM.
    Node(NodeArgs),
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
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send a request through a group's log; the reply is printed as JSON.
    Request(RequestArgs),
    /// Ask a group with a read-index query (no log write); the reply is
    /// printed as JSON.
    Query(RequestArgs),
    /// Use a key-value ring of `kv` groups named vnode-1 … vnode-N.
    #[command(subcommand)]
    Kv(KvOp),
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
}

impl KvOp {
    /// The cluster and ring the operation goes to.
    pub fn ring(&self) -> &Ring {
        match self {
            KvOp::Get { ring, .. } | KvOp::Put { ring, .. } | KvOp::Del { ring, .. } => ring,
        }
    }
}

/// Where a key-value ring is.
#[derive(Args, Debug, Clone)]
pub struct Ring {
    /// How to reach the cluster.
    #[command(flatten)]
    pub via: Via,
    /// Vnodes of the ring (the groups vnode-1 … vnode-N must exist).
    #[arg(long, default_value_t = 1)]
    pub vnodes: u32,
}

/// Arguments of `dike node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The node's name, unique in the cluster.
    #[arg(long)]
    pub name: String,
    /// Where the cluster listener binds, HOST:PORT.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The master nodes, NAME@HOST:PORT, comma-separated (1, 3 or 5). Only
    /// this node's own entry: single-node mode.
    #[arg(long, value_delimiter = ',', required = true)]
    pub masters: Vec<String>,
    /// Keep replica state durably in this directory.
    #[arg(long, conflicts_with = "in_memory")]
    pub data_dir: Option<PathBuf>,
    /// Keep replica state in memory only (the default).
    #[arg(long)]
    pub in_memory: bool,
    /// The cluster's shared secret.
    #[arg(long, env = "DIKE_COOKIE", hide_env_values = true)]
    pub cookie: String,
    /// Register with the master so the node hosts replicas. Master nodes
    /// always do; a node that is not a master and does not join only routes
    /// requests.
    #[arg(long)]
    pub join: bool,
    /// Replicas per new group created from this node.
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Seconds a node may be down before the master moves its replicas to
    /// live nodes (default 60).
    #[arg(long)]
    pub replace_after: Option<u64>,
}

/// How a client command reaches the cluster: it starts a short-lived node
/// that does not join and talks to the masters.
#[derive(Args, Debug, Clone)]
pub struct Via {
    /// The cluster's masters, NAME@HOST:PORT, comma-separated (the list the
    /// nodes were started with).
    #[arg(long, value_delimiter = ',', required = true, env = "DIKE_VIA")]
    pub via: Vec<String>,
    /// The cluster's shared secret.
    #[arg(long, env = "DIKE_COOKIE", hide_env_values = true)]
    pub cookie: String,
    /// How long to wait for the cluster, in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
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
