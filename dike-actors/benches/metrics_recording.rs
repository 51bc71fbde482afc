//! What recording one request costs a node's metrics: the dispatcher's
//! count and latency of a finished request, and a replica's, each to a
//! group of a kind the node has seen before (the steady state).
//!
//! `cargo bench -p dike-actors --bench metrics_recording`

use criterion::{criterion_group, criterion_main, Criterion};
use dike_actors::node::metrics::{MetricsOptions, NodeMetrics};
use dike_actors::storage::provider::MemoryProvider;
use std::hint::black_box;
use std::time::Duration;

fn recording(c: &mut Criterion) {
    let options = MetricsOptions {
        record: true,
        per_group: false,
    };
    let metrics = NodeMetrics::new(&MemoryProvider::default(), options);
    let elapsed = Duration::from_micros(800);
    let ok: Result<(), dike_core::RequestError> = Ok(());
    c.bench_function("record_served ok", |b| {
        b.iter(|| metrics.record_served(black_box("kv"), &ok, elapsed))
    });
    let ok: Result<(), dike_actors::DikeError> = Ok(());
    c.bench_function("record_request ok", |b| {
        b.iter(|| metrics.record_request(black_box("kv"), &ok, elapsed))
    });
}

criterion_group!(benches, recording);
criterion_main!(benches);
