//! Throughput of the consensus core alone: 5 replicas in one thread,
//! messages passed in memory, memory storage, the simulator's register
//! server. Closed loop: `outstanding` clients each keep one command in
//! flight; a client sends its next command when the previous one is
//! answered. Commands queued while earlier slots are in flight share a slot.
//!
//! `cargo bench -p dike-core --bench core_throughput`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dike_core::codec;
use dike_core::sim::register::{Action, Register, RegisterRequest};
use dike_core::sim::LocalCluster;
use dike_core::{GroupContext, ReplicaOptions, RequestId, ServerMachine};
use std::time::{Duration, Instant};

type Machine = ServerMachine<Register>;

fn cluster() -> LocalCluster<Machine> {
    let opts = ReplicaOptions {
        snapshot_interval: 1 << 40,
        ..ReplicaOptions::default()
    };
    let mut c = LocalCluster::new(5, opts, |id| {
        ServerMachine::new(GroupContext {
            group: "bench".into(),
            kind: "sim-register".into(),
            member: id,
        })
    });
    c.elect(0);
    c
}

/// Runs `total` commands through `outstanding` closed-loop clients.
fn run(c: &mut LocalCluster<Machine>, outstanding: u64, total: u64, seqs: &mut [u64]) {
    let payload = codec::encode(
        "request",
        &RegisterRequest {
            op: 0,
            action: Action::Add(1),
        },
    )
    .expect("encode");
    let mut sent = 0;
    let mut done = 0;
    for client in 0..outstanding.min(total) {
        seqs[client as usize] += 1;
        c.propose(0, client, seqs[client as usize], payload.clone());
        sent += 1;
    }
    while done < total {
        c.run_until_quiet();
        for (_, r) in c.take_responses() {
            let RequestId::Command(client, _) = r.to else {
                continue;
            };
            assert!(r.result.is_ok(), "command failed: {:?}", r.result);
            done += 1;
            if sent < total {
                let i = client.0 as usize;
                seqs[i] += 1;
                c.propose(0, client.0, seqs[i], payload.clone());
                sent += 1;
            }
        }
    }
}

fn throughput(crit: &mut Criterion) {
    let mut g = crit.benchmark_group("core_commit");
    g.measurement_time(Duration::from_secs(5));
    for outstanding in [1u64, 64, 1024] {
        let per_iter = (outstanding * 16).max(256);
        g.throughput(Throughput::Elements(per_iter));
        g.bench_with_input(
            BenchmarkId::new("outstanding", outstanding),
            &outstanding,
            |b, &n| {
                let mut c = cluster();
                let mut seqs = vec![0u64; n as usize];
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        run(&mut c, n, per_iter, &mut seqs);
                    }
                    start.elapsed()
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
