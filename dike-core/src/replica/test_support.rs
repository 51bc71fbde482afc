//! What the replica's rule tests share: the simulator's register as the
//! state machine, the tuning they start from, and ticking a
//! `LocalCluster` with everything delivered in between.

use crate::codec;
use crate::config::ReplicaOptions;
use crate::ids::MemberId;
use crate::server::{GroupContext, ServerMachine};
use crate::sim::register::{Action, Register, RegisterRequest};
use crate::sim::LocalCluster;

/// The state machine of the tests' replicas.
pub(super) type Machine = ServerMachine<Register>;

/// A group of the tests' replicas, delivering by hand.
pub(super) type Cluster = LocalCluster<Machine>;

/// A fresh register for member `id` of group `g`.
pub(super) fn machine(id: MemberId) -> Machine {
    ServerMachine::new(GroupContext {
        group: "g".into(),
        kind: "sim-register".into(),
        member: id,
    })
}

/// The defaults, with snapshots far apart and never jittered.
pub(super) fn opts() -> ReplicaOptions {
    ReplicaOptions {
        snapshot_interval: 1_000,
        snapshot_jitter: 0,
        ..ReplicaOptions::default()
    }
}

/// An encoded register request.
pub(super) fn req(op: u64, action: Action) -> Vec<u8> {
    codec::encode("request", &RegisterRequest { op, action }).expect("encode")
}

/// Ticks every replica `n` times, delivering everything after each tick.
pub(super) fn ticks(c: &mut Cluster, n: usize) {
    for _ in 0..n {
        c.tick();
        c.run_until_quiet();
    }
}
