//! The long fault soak: the fault suite's run (see `integration::runner`)
//! for as long as asked, with a chosen mix of faults.
//!
//! ```sh
//! cargo run -p integration --bin soak -- --minutes 30 --nodes 5 \
//!     --faults kill,pause,partition,isolate-leader,bridge,one-way,loss --seed 7 --out /tmp/soak
//! ```
//!
//! Prints the run's summary (operations by outcome, faults, recovery times,
//! the checker's verdict); a failing run also writes its history and node
//! logs to a directory under `--out`, and the program exits with status 1.

use clap::Parser;
use integration::faults::{parse_kinds, FaultKind};
use integration::linearizability;
use integration::nft::{self, Partition};
use integration::runner::{self, RunConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Runs the fault suite for a long time against real node processes.
#[derive(Parser, Debug)]
#[command(name = "soak")]
struct Args {
    /// How long faults are injected under load.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Nodes in the cluster (the first 5 are masters).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Fault kinds, comma-separated: kill, pause, partition, isolate-leader,
    /// bridge, one-way, loss, drain, transfer, churn, decommission, or all.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Seed of the fault schedule and the workload (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Where a failing run writes its history and node logs.
    #[arg(long, default_value = "soak-failures")]
    out: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    workers: usize,
    /// Length of a round, in seconds: the workload pauses at the end of
    /// each round for the checks, so each checked history stays small.
    #[arg(long, default_value_t = 180)]
    round_seconds: u64,
    /// Instead of a run: check a `history.json` a failing run wrote, and
    /// print the checker's verdict.
    #[arg(long, value_name = "HISTORY_JSON")]
    check_history: Option<PathBuf>,
    /// Longest hold of one fault, in seconds (the shortest is half of it).
    #[arg(long, default_value_t = 6)]
    hold: u64,
}

/// Checks a dumped history again (e.g. with a longer budget).
fn check_history(path: &std::path::Path) -> ExitCode {
    let file: Result<integration::history::HistoryFile, String> = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
    match file {
        Ok(h) => {
            let verdict = linearizability::check(&h.records, Duration::from_secs(120));
            println!("{}: {}", integration::history::count(&h.records), verdict);
            if verdict.is_linearizable() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("soak: cannot read {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check_history {
        return check_history(path);
    }
    let mut kinds = match parse_kinds(&args.faults) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    let partition = if kinds.iter().any(|k| k.needs_nft()) {
        match nft::available().and_then(|()| Partition::new()) {
            Ok(p) => Some(p),
            Err(e) => {
                let skipped: Vec<&str> = kinds
                    .iter()
                    .filter(|k| k.needs_nft())
                    .map(|k| k.name())
                    .collect();
                eprintln!("soak: not running {skipped:?}: nftables cannot be used here: {e}");
                kinds.retain(|k| !k.needs_nft());
                None
            }
        }
    } else {
        None
    };
    if kinds.is_empty() {
        eprintln!("soak: no fault kind left to run");
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let mut config = RunConfig::new("soak", &kinds, seed);
    config.nodes = args.nodes;
    config.duration = Duration::from_secs(args.minutes * 60);
    config.workload.workers = args.workers;
    let hold = Duration::from_secs(args.hold.max(1));
    config.hold = (hold / 2, hold);
    config.out = Some(args.out);
    config.round = Duration::from_secs(args.round_seconds.max(10));
    let names: Vec<&str> = kinds.iter().map(|k: &FaultKind| k.name()).collect();
    eprintln!(
        "soak: {} minutes, {} nodes, faults {names:?}, seed {seed}",
        args.minutes, args.nodes
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = runtime.block_on(runner::run(config, partition));
    println!("{report}");
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
