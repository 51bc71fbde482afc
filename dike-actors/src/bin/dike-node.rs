//! `dike-node`: runs one dike-rs node with the built-in `counter` kind until
//! it is killed. Used by the multi-process tests. The cookie comes from
//! `--cookie` or, without it, from the `DIKE_COOKIE` variable (which keeps
//! it out of `ps`).
//!
//! ```text
//! DIKE_COOKIE=secret dike-node --name m1 --listen 127.0.0.1:4001 \
//!           --masters m1@127.0.0.1:4001,m2@127.0.0.1:4002,m3@127.0.0.1:4003 \
//!           [--in-memory | --data-dir DIR] [--group-size 3] [--replace-after SECS]
//! ```

use clap::Parser;
use dike_actors::counter::Counter;
use dike_actors::{DikeNode, NodeConfig};
use std::net::SocketAddr;
use std::process::ExitCode;

/// Runs one dike-rs node hosting the `counter` kind until it is killed.
#[derive(Parser, Debug)]
#[command(name = "dike-node")]
struct Args {
    /// The node's name, unique in the cluster.
    #[arg(long)]
    name: String,
    /// Where the cluster listener binds, `HOST:PORT`.
    #[arg(long)]
    listen: SocketAddr,
    /// The cluster cookie.
    #[arg(long, env = "DIKE_COOKIE", hide_env_values = true)]
    cookie: String,
    /// The master nodes, `NAME@HOST:PORT,...` (none: the node is its own).
    #[arg(long, value_delimiter = ',')]
    masters: Vec<String>,
    /// Replicas per new group.
    #[arg(long)]
    group_size: Option<usize>,
    /// Keeps replicas in memory (the default).
    #[arg(long, conflicts_with = "data_dir")]
    in_memory: bool,
    /// Keeps replicas in this data directory.
    #[arg(long)]
    data_dir: Option<String>,
    /// Seconds a node may stay down before its replicas are replaced.
    #[arg(long)]
    replace_after: Option<u64>,
}

async fn run(args: Args) -> Result<(), String> {
    let mut b = NodeConfig::builder(args.name, args.listen).cookie(args.cookie);
    b = match &args.data_dir {
        Some(dir) => b.data_dir(dir),
        None => b.in_memory(),
    };
    for m in args.masters {
        b = b.master(m);
    }
    if let Some(size) = args.group_size {
        b = b.group_size(size);
    }
    if let Some(secs) = args.replace_after {
        b = b.replace_after(std::time::Duration::from_secs(secs));
    }
    let config = b.kind::<Counter>().build().map_err(|e| e.to_string())?;
    let node = DikeNode::start(config).await.map_err(|e| e.to_string())?;
    println!("ready {}", node.name());
    let cell = node.actor().get_cell();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => node.stop().await,
        _ = cell.wait(None) => return Err("the node stopped".into()),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // Bad arguments: clap prints why and exits with 2.
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dike-node: {e}");
            ExitCode::FAILURE
        }
    }
}
