//! What a leader spends encoding one drive's protocol messages for its
//! followers: the same `Accept` (one slot's batch of commands) to 2 or 4
//! followers, each follower's envelope list encoded on its own
//! (`encode_envelopes`, as before `EnvelopeEncoder`) or with one
//! `EnvelopeEncoder` for the drive, which encodes the `Accept` once.
//!
//! `cargo bench -p dike-actors --bench envelope_encoding`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dike_actors::cluster::wire::{encode_envelopes, EnvelopeEncoder};
use dike_core::{Ballot, Batch, ClientId, Command, Entry, Envelope, MemberId, Message};
use std::hint::black_box;

/// Each follower's envelopes of one drive: one `Accept` of `commands`
/// commands of `bytes` bytes each.
fn drive(followers: u64, commands: usize, bytes: usize) -> Vec<Vec<Envelope>> {
    let leader = MemberId::new(1, 1);
    let batch = (0..commands)
        .map(|i| Command::new(ClientId(i as u64), 1, vec![7; bytes]))
        .collect::<Vec<_>>();
    let msg = Message::Accept {
        ballot: Ballot {
            epoch: 0,
            round: 3,
            leader,
        },
        slot: 1_000,
        entry: Entry::Batch(Batch {
            proposer: leader,
            boot: 1,
            commands: batch.into(),
        }),
        commit: 999,
    };
    (2..followers + 2)
        .map(|n| {
            vec![Envelope {
                from: leader,
                to: MemberId::new(n, 1),
                msg: msg.clone(),
            }]
        })
        .collect()
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("one drive's Accept to every follower");
    for (followers, commands) in [(1, 64), (2, 16), (4, 16), (4, 64)] {
        // A kv put of a 16-byte value is about 40 bytes encoded.
        let lists = drive(followers, commands, 40);
        let id = format!("{followers} followers, {commands} commands");
        group.bench_with_input(BenchmarkId::new("per follower", &id), &lists, |b, l| {
            b.iter(|| {
                for envs in l {
                    black_box(encode_envelopes(envs).expect("encodes"));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("shared", &id), &lists, |b, l| {
            b.iter(|| {
                let mut encoder = EnvelopeEncoder::default();
                for envs in l {
                    black_box(encoder.encode(envs).expect("encodes"));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
