//! `dike node`: one node of a cluster hosting the example kinds, running
//! until Ctrl-C or SIGTERM; then it hands every leadership it holds to
//! another live voter (bounded wait) and stops its actors before it exits.

use super::args::NodeArgs;
use super::error::CliError;
use super::kinds;
use dike_actors::{DikeNode, MasterSpec, NodeConfig, NodeConfigBuilder};

/// How long a stopping node waits, overall, for the leaderships it holds
/// to move to other nodes (each takes about a round trip and a write when
/// the target is caught up; one that gives up costs an election timeout).
const HAND_OVER_WITHIN: std::time::Duration = std::time::Duration::from_millis(2500);

/// Builds the node's configuration from its arguments (with a data dir,
/// this locks and opens it).
pub fn config(args: &NodeArgs) -> Result<NodeConfig, CliError> {
    let b = builder(args)?;
    let b = match &args.data_dir {
        Some(dir) => b.data_dir(dir),
        None => b.in_memory(),
    };
    Ok(b.build()?)
}

/// Everything of the configuration but the storage.
fn builder(args: &NodeArgs) -> Result<NodeConfigBuilder, CliError> {
    let b = NodeConfig::builder(args.name.clone(), args.listen).cookie(args.cookie.secret()?);
    let mut b = kinds::with_all(b);
    if let Some(tls) = args.tls.load()? {
        b = b.tls(tls);
    }
    if let Some(address) = &args.advertise {
        b = b.advertise(address.clone());
    }
    let mut is_master = false;
    for m in &args.masters {
        let spec: MasterSpec = m.parse()?;
        is_master |= spec.name == args.name;
        b = b.master(m.clone());
    }
    // A master is in the table anyway; another node joins only if asked
    // (or if its data dir says it joined before).
    b = b.join(args.join || is_master);
    if let Some(size) = args.group_size {
        b = b.group_size(size);
    }
    if let Some(secs) = args.replace_after {
        b = b.replace_after(std::time::Duration::from_secs(secs));
    }
    if let Some(addr) = args.http {
        b = b.http(addr);
    }
    b = b.metrics_per_group(args.metrics_per_group);
    if let Some(mib) = args.log_segment_mib {
        b = b.log_segment_bytes(mib << 20);
    }
    if let Some(mib) = args.max_frame_mib {
        b = b.max_frame_bytes(mib << 20);
    }
    Ok(b)
}

/// The configuration `dike node --print-config` shows: what the flags and
/// `DIKE_*` variables make, checked as a start would check them and with
/// the defaults filled in, the cookie left out. The data dir is only named:
/// a running node may hold it.
pub fn effective_config(args: &NodeArgs) -> Result<serde_json::Value, CliError> {
    let c = builder(args)?.in_memory().build()?;
    Ok(serde_json::json!({
        "name": c.name(),
        "listen": c.listen().to_string(),
        "advertise": c.address(),
        "masters": c.masters().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "master": c.is_master(),
        "data_dir": args.data_dir.as_ref().map(|d| d.display().to_string()),
        "cookie": args.cookie.source(),
        "tls": c.tls().map(|t| serde_json::json!({
            "cert": t.files().cert.display().to_string(),
            "key": t.files().key.display().to_string(),
            "ca": t.files().ca.display().to_string(),
        })),
        "join": c.join(),
        "group_size": c.group_size(),
        "replace_after_secs": c.replace_after().as_secs(),
        "tick_ms": c.tick().as_millis() as u64,
        "request_timeout_ms": c.request_timeout().as_millis() as u64,
        "worker_threads": args.worker_threads.map(|n| n.get()),
        "http": c.http().map(|a| a.to_string()),
        "metrics_per_group": c.metrics_per_group(),
        "max_frame_mib": c.max_frame_bytes() >> 20,
        "log_format": format!("{:?}", args.log_format).to_lowercase(),
    }))
}

/// Runs the node until a stop signal, then stops it; with
/// `--print-config`, prints the configuration instead. A node that learns
/// the operator removed it from the cluster stops and fails with
/// [`CliError::Removed`] (exit code 9, as a start on its data dir would).
pub async fn run(args: NodeArgs) -> Result<(), CliError> {
    if args.print_config {
        let text = serde_json::to_string_pretty(&effective_config(&args)?)
            .map_err(|e| CliError::Output(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    let node = DikeNode::start(config(&args)?).await?;
    tracing::info!(name = %node.name(), kinds = ?kinds::KNOWN_KINDS, "node ready");
    let cell = node.actor().get_cell();
    tokio::select! {
        r = stop_signal() => {
            r?;
            tracing::info!("stop signal received; handing leaderships over");
            let report = node.hand_over_leaderships(HAND_OVER_WITHIN).await;
            tracing::info!(
                handed_over = report.handed_over.len(),
                not_confirmed = report.not_confirmed.len(),
                "leaderships handed over; stopping the node"
            );
            node.stop().await;
            Ok(())
        }
        reason = node.removed() => {
            tracing::info!("removed from the cluster; stopping the node");
            node.stop().await;
            Err(CliError::Removed(reason))
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
