//! Messages between the replicas of one group.
//!
//! Every message names its ballot where it has one, so a receiver can judge
//! it alone: nothing depends on delivery order, and duplicates are harmless.

use crate::entry::Entry;
use crate::ids::{Ballot, MemberId, Slot};
use crate::storage::{Accepted, Snapshot};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A protocol message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Phase 1a: "promise me `ballot` and tell me what you accepted at or
    /// after `from`".
    Prepare {
        /// The candidate's ballot.
        ballot: Ballot,
        /// First slot the candidate does not know to be chosen.
        from: Slot,
    },
    /// Phase 1b: the promise, with every accepted entry at or after `from`.
    Promise {
        /// The promised ballot.
        ballot: Ballot,
        /// Echo of the prepare's `from`.
        from: Slot,
        /// Accepted entries at or after `from`.
        accepted: Vec<(Slot, Accepted)>,
        /// Every slot up to this one is chosen (with the value sent).
        commit: Slot,
        /// Entries at or below this slot were compacted into a snapshot.
        snapshot_slot: Slot,
    },
    /// Phase 2a: "accept `entry` at `slot` in `ballot`".
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
        /// The proposed value.
        entry: Entry,
        /// The leader's commit index: every slot up to it is chosen.
        commit: Slot,
    },
    /// Phase 2b: the acceptor durably accepted `slot` in `ballot`.
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
    },
    /// A rejection: the sender promised a higher ballot.
    Nack {
        /// The ballot the sender has promised.
        promised: Ballot,
    },
    /// A leader's periodic message: commit index and read-index round.
    Heartbeat {
        /// The leader's ballot.
        ballot: Ballot,
        /// The leader's commit index.
        commit: Slot,
        /// The read round to acknowledge (0: none).
        read_round: u64,
        /// The group is idle: followers stop their election timers until
        /// they hear from the leader again or its node is reported down.
        hibernate: bool,
    },
    /// "No ballot above yours is promised here" for a read round.
    HeartbeatAck {
        /// The leader's ballot.
        ballot: Ballot,
        /// The read round acknowledged (0: none).
        read_round: u64,
        /// The sender's commit index (how far a learner has caught up).
        commit: Slot,
    },
    /// "Send me chosen entries from `from` on."
    CatchUp {
        /// The first slot the sender lacks.
        from: Slot,
    },
    /// Chosen entries, for a lagging replica.
    Chosen {
        /// Chosen entries in slot order.
        entries: Vec<(Slot, Accepted)>,
        /// The sender's commit index.
        commit: Slot,
    },
    /// The sender's snapshot, for a replica behind its compaction point.
    InstallSnapshot {
        /// The snapshot.
        snapshot: Arc<Snapshot>,
    },
    /// The sender compacted everything up to `upto`; ask it to catch up.
    Compacted {
        /// The sender's snapshot slot.
        upto: Slot,
    },
    /// Leadership transfer: the leader of `ballot`, which has seen the
    /// receiver accept everything it proposed, asks it to start an election
    /// at once (an ordinary phase 1 with a ballot above every one it has
    /// seen). Acted on only while the receiver has promised nothing above
    /// `ballot`, so a stale or duplicated one is harmless.
    TimeoutNow {
        /// The sending leader's ballot.
        ballot: Ballot,
    },
}

impl Message {
    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "Prepare",
            Message::Promise { .. } => "Promise",
            Message::Accept { .. } => "Accept",
            Message::Accepted { .. } => "Accepted",
            Message::Nack { .. } => "Nack",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::HeartbeatAck { .. } => "HeartbeatAck",
            Message::CatchUp { .. } => "CatchUp",
            Message::Chosen { .. } => "Chosen",
            Message::InstallSnapshot { .. } => "InstallSnapshot",
            Message::Compacted { .. } => "Compacted",
            Message::TimeoutNow { .. } => "TimeoutNow",
        }
    }
}

/// A message with its addressing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender.
    pub from: MemberId,
    /// The receiver (may be the sender itself).
    pub to: MemberId,
    /// The message.
    pub msg: Message,
}
