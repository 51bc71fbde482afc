//! A group's membership configuration and a replica's tuning options.
//!
//! Invariant: every quorum is a strict majority of the voters of one
//! configuration, so any two quorums of the same configuration intersect.

use crate::ids::MemberId;
use serde::{Deserialize, Serialize};

/// Most voters, and most learners, one configuration may hold: a change
/// that would add one more is refused, and a configuration that claims more
/// (from a peer or from disk) is refused when it is decoded. Groups have 1
/// to 7 voters; the bound is far above that so it never refuses a
/// configuration a cluster can make.
pub const MAX_MEMBERS: usize = 256;

/// The members of a group at one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Increases by one with every membership change.
    pub epoch: u64,
    /// Members that vote (acceptors counted in quorums); at most
    /// [`MAX_MEMBERS`].
    #[serde(deserialize_with = "crate::codec::bounded::vec::<_, _, MAX_MEMBERS>")]
    pub voters: Vec<MemberId>,
    /// Members that receive the log but do not vote; at most
    /// [`MAX_MEMBERS`].
    #[serde(deserialize_with = "crate::codec::bounded::vec::<_, _, MAX_MEMBERS>")]
    pub learners: Vec<MemberId>,
}

impl Config {
    /// The first configuration of a group: `voters` at epoch 0.
    pub fn initial(voters: Vec<MemberId>) -> Self {
        Config {
            epoch: 0,
            voters,
            learners: Vec::new(),
        }
    }

    /// Number of votes that make a quorum.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether `m` votes in this configuration.
    pub fn is_voter(&self, m: MemberId) -> bool {
        self.voters.contains(&m)
    }

    /// Voters and learners: everyone who receives the log.
    pub fn all_members(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }
}

/// Tuning of one replica. Times are in ticks, the logical clock the runtime
/// (or the simulator) advances by calling `Replica::tick`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaOptions {
    /// A leader sends a heartbeat (commit index, read round) this often.
    pub heartbeat_ticks: u64,
    /// A follower that hears nothing from a leader for a random time in
    /// `[election_ticks, 2 * election_ticks)` starts an election; the
    /// group's preferred leader (its first voter) waits half as long, so
    /// while it is up it usually wins.
    pub election_ticks: u64,
    /// At most this many client commands ride in one slot.
    pub max_batch: usize,
    /// At most this many slots are proposed and not yet chosen at once.
    pub window: u64,
    /// A snapshot is taken every `snapshot_interval` applied slots …
    pub snapshot_interval: u64,
    /// … plus a random extra of up to this many, so replicas do not all pause
    /// together.
    pub snapshot_jitter: u64,
    /// At most this many chosen entries go in one catch-up message.
    pub catchup_batch: usize,
    /// At most this many client sessions are remembered; the least recently
    /// used is forgotten first.
    pub max_sessions: usize,
    /// At most this many commands wait at a leader for a slot; more are
    /// refused with `Busy`.
    pub max_queued: usize,
    /// A learner may be promoted to voter only if it is at most this many
    /// slots behind the leader's commit index.
    pub max_learner_lag: u64,
    /// A leader with nothing to do for this many ticks tells followers the
    /// group hibernates and stops heartbeating; elections then start only
    /// when the runtime reports the leader's node down (`node_down`).
    /// 0 disables hibernation.
    pub hibernate_after_ticks: u64,
    /// A replica whose group goes to sleep (hibernates) with at least this
    /// many slots applied since its last snapshot takes one then, drops its
    /// log up to it and shrinks its buffers: a sleeping group holds fewer
    /// than this many slots per replica, however much it was written
    /// before. 0: only `snapshot_interval` takes snapshots.
    pub hibernate_snapshot_slots: u64,
    /// A leader that is not its group's preferred leader (the first voter)
    /// hands leadership to it once it has been heard from and caught up for
    /// this many ticks in a row (so a voter that comes and goes does not
    /// make leadership flap). 0 disables the hand-back.
    #[serde(default)]
    pub preferred_leader_after_ticks: u64,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            heartbeat_ticks: 2,
            election_ticks: 10,
            max_batch: 1024,
            window: 32,
            snapshot_interval: 10_000,
            snapshot_jitter: 1_000,
            catchup_batch: 256,
            max_sessions: 100_000,
            max_queued: 1 << 16,
            max_learner_lag: 64,
            hibernate_after_ticks: 20,
            hibernate_snapshot_slots: 16,
            preferred_leader_after_ticks: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_strict_majority() {
        let m = |n| MemberId::new(n, 1);
        assert_eq!(Config::initial(vec![m(1)]).quorum(), 1);
        assert_eq!(Config::initial(vec![m(1), m(2), m(3)]).quorum(), 2);
        assert_eq!(Config::initial((1..=5).map(m).collect()).quorum(), 3);
        assert_eq!(Config::initial((1..=4).map(m).collect()).quorum(), 3);
    }
}
