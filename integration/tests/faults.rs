//! The fault suite on real processes: 5 `dike node` processes with durable
//! storage on their own loopback addresses, a workload of kv registers,
//! counters and sets, and one kind of fault per test (a random mix in the
//! last), then heal and check (see `integration::runner`).
//!
//! Partition tests need nftables as root; where it cannot be used they print
//! exactly why and that they were skipped (in CI, where `.ci/setup`
//! installs it, they fail instead), and the others still run. A
//! failing run prints its summary and the directory holding its history and
//! node logs. `DIKE_FAULT_SEED=N` replays a seed.

use integration::cluster::one_at_a_time;
use integration::faults::FaultKind;
use integration::nft::{self, Partition};
use integration::runner::{self, RunConfig};
use std::time::Duration;

fn seed(default: u64) -> u64 {
    std::env::var("DIKE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// nft for a test that needs it, or why not.
fn partition_for(kinds: &[FaultKind]) -> Result<Option<Partition>, String> {
    if !kinds.iter().any(|k| k.needs_nft()) {
        return Ok(None);
    }
    nft::available()
        .and_then(|()| Partition::new())
        .map(Some)
        .map_err(|e| e.to_string())
}

async fn fault_run(test: &str, kinds: &[FaultKind], default_seed: u64, load: Duration) {
    fault_run_with(test, kinds, default_seed, load, |_| {}).await
}

async fn fault_run_with(
    test: &str,
    kinds: &[FaultKind],
    default_seed: u64,
    load: Duration,
    tune: impl FnOnce(&mut RunConfig),
) {
    let _one = one_at_a_time().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let partition = match partition_for(kinds) {
        Ok(p) => p,
        Err(why) => {
            nft::skip_or_fail(test, &why);
            return;
        }
    };
    let mut config = RunConfig::new(test, kinds, seed(default_seed));
    config.duration = load;
    tune(&mut config);
    let report = runner::run(config, partition).await;
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_of_leaders_and_followers_loses_nothing() {
    fault_run("kill", &[FaultKind::Kill], 11, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_the_election_timeout_loses_nothing() {
    fault_run("pause", &[FaultKind::Pause], 12, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_minority_split_loses_nothing() {
    fault_run("split", &[FaultKind::Split], 13, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_loses_nothing() {
    fault_run(
        "isolate",
        &[FaultKind::IsolateLeader],
        14,
        Duration::from_secs(15),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_node_between_two_sides_loses_nothing() {
    fault_run("bridge", &[FaultKind::Bridge], 15, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_cuts_at_a_leader_lose_nothing() {
    fault_run("oneway", &[FaultKind::OneWay], 16, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_packet_loss_loses_nothing() {
    fault_run("loss", &[FaultKind::Loss], 17, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_and_a_node_removed_under_load_lose_nothing() {
    // Join: groups move onto the new node; then the new node is killed for
    // good and, 5 s later, its replicas are replaced on the others.
    fault_run_with(
        "churn",
        &[FaultKind::Churn],
        19,
        Duration::from_secs(30),
        |c| c.recover_within = Duration::from_secs(90),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_decommissioned_under_load_loses_nothing() {
    // Join: groups move onto the new node; then `dike node remove` of that
    // node while it runs: its replicas move back to the others, each caught
    // up before the old one leaves, and the node leaves the table.
    fault_run_with(
        "decom",
        &[FaultKind::Decommission],
        20,
        Duration::from_secs(30),
        |c| c.recover_within = Duration::from_secs(90),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_replaced_under_load_loses_nothing() {
    // Join; then the master group's leader is killed for good and the
    // operator replaces it by the node that joined (`dike master replace`):
    // it catches up as a learner and takes the dead master's place, while
    // the clients write and read through the change.
    fault_run_with(
        "remaster",
        &[FaultKind::ReplaceMaster],
        23,
        Duration::from_secs(30),
        |c| c.recover_within = Duration::from_secs(90),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_mix_of_faults_loses_nothing() {
    let all = FaultKind::ALL.to_vec();
    // Without nft the mix still runs the faults that need none.
    let kinds: Vec<FaultKind> = match nft::available() {
        Ok(()) => all,
        Err(e) => {
            nft::skip_or_fail(
                "a_random_mix_of_faults_loses_nothing (its partitions)",
                &e.to_string(),
            );
            let skipped: Vec<&str> = all
                .iter()
                .filter(|k| k.needs_nft())
                .map(|k| k.name())
                .collect();
            eprintln!("the mix runs without {skipped:?}: nftables cannot be used here: {e}");
            all.into_iter().filter(|k| !k.needs_nft()).collect()
        }
    };
    fault_run("mix", &kinds, 18, Duration::from_secs(25)).await;
}
