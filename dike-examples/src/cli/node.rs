//! `dike node`: one node of a cluster hosting the example kinds, running
//! until Ctrl-C or SIGTERM and then stopping its actors before it exits.

use super::args::NodeArgs;
use super::error::CliError;
use super::kinds;
use dike_actors::{DikeNode, MasterSpec, NodeConfig};

/// Builds the node's configuration from its arguments.
pub fn config(args: &NodeArgs) -> Result<NodeConfig, CliError> {
    let mut b = NodeConfig::builder(args.name.clone(), args.listen).cookie(args.cookie.clone());
    let mut is_master = false;
    for m in &args.masters {
        let spec: MasterSpec = m.parse()?;
        is_master |= spec.name == args.name;
        b = b.master(m.clone());
    }
    // A master is in the table anyway; another node joins only if asked.
    b = b.join(args.join || is_master);
    b = match &args.data_dir {
        Some(dir) => b.data_dir(dir)?,
        None => b.in_memory(),
    };
    if let Some(size) = args.group_size {
        b = b.group_size(size);
    }
    if let Some(secs) = args.replace_after {
        b = b.replace_after(std::time::Duration::from_secs(secs));
    }
    if let Some(addr) = args.http {
        b = b.http(addr);
    }
    Ok(b.build()?)
}

/// Runs the node until a stop signal, then stops it.
pub async fn run(args: NodeArgs) -> Result<(), CliError> {
    let node = DikeNode::start(config(&args)?).await?;
    kinds::register_all(&node);
    tracing::info!(name = %node.name(), kinds = ?kinds::KNOWN_KINDS, "node ready");
    let cell = node.actor().get_cell();
    tokio::select! {
        r = stop_signal() => {
            r?;
            tracing::info!("stop signal received; stopping the node");
            node.stop().await;
            Ok(())
        }
        _ = cell.wait(None) => Err(CliError::NodeStopped),
    }
}

/// Waits for Ctrl-C or, on Unix, SIGTERM.
async fn stop_signal() -> Result<(), CliError> {
    let failed = |e: std::io::Error| CliError::Usage(format!("cannot listen for signals: {e}"));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(failed)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(failed),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(failed)
    }
}
