//! Messages between the replicas of one group.
//!
//! Every message names its ballot where it has one, so a receiver can judge
//! it alone: nothing depends on delivery order, and duplicates are harmless.

use crate::entry::Entry;
use crate::ids::{Ballot, MemberId, Slot};
use crate::storage::{Accepted, Snapshot};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most entries one [`Message::Chosen`] may carry, whatever
/// `ReplicaOptions::catchup_batch` says: a replica never sends more, and a
/// message that claims more is refused when it is decoded.
///
/// A [`Message::Promise`] has no such bound: it must carry every entry the
/// acceptor accepted from the candidate's `from` on (leaving one out could
/// lose a chosen value), and how many that is follows the snapshot options.
/// The frame's size bounds it, and a length header that lies reserves no
/// more memory than the frame could fill.
pub const MAX_CHOSEN_ENTRIES: usize = 1 << 16;

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
        /// Chosen entries in slot order; at most [`MAX_CHOSEN_ENTRIES`].
        #[serde(deserialize_with = "crate::codec::bounded::vec::<_, _, MAX_CHOSEN_ENTRIES>")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode_compact};
    use crate::config::{Config, MAX_MEMBERS};
    use crate::entry::{Batch, Command, MAX_BATCH_COMMANDS};
    use crate::ids::ClientId;

    fn entries(n: usize) -> Vec<(Slot, Accepted)> {
        (1..=n as u64)
            .map(|s| {
                let entry = Entry::Noop;
                (
                    s,
                    Accepted {
                        ballot: Ballot::ZERO,
                        entry,
                    },
                )
            })
            .collect()
    }

    fn round_trip(msg: &Message) -> Result<Message, crate::codec::CodecError> {
        decode("message", &encode_compact("message", msg).expect("encode"))
    }

    #[test]
    fn a_catch_up_of_more_entries_than_its_bound_is_refused() {
        let at_bound = Message::Chosen {
            entries: entries(MAX_CHOSEN_ENTRIES),
            commit: 1,
        };
        assert_eq!(round_trip(&at_bound).as_ref(), Ok(&at_bound));
        let over = Message::Chosen {
            entries: entries(MAX_CHOSEN_ENTRIES + 1),
            commit: 1,
        };
        let err = round_trip(&over).unwrap_err().to_string();
        assert!(
            err.contains(&format!("at most {MAX_CHOSEN_ENTRIES}")),
            "{err}"
        );
    }

    #[test]
    fn a_batch_of_more_commands_than_its_bound_is_refused() {
        let batch = |n: usize| {
            let commands = (1..=n as u64)
                .map(|s| Command::new(ClientId(1), s, Vec::new()))
                .collect::<Vec<_>>();
            Message::Accept {
                ballot: Ballot::ZERO,
                slot: 1,
                entry: Entry::Batch(Batch {
                    proposer: MemberId::new(1, 1),
                    boot: 1,
                    commands: commands.into(),
                }),
                commit: 0,
            }
        };
        let at_bound = batch(MAX_BATCH_COMMANDS);
        assert_eq!(round_trip(&at_bound).as_ref(), Ok(&at_bound));
        let err = round_trip(&batch(MAX_BATCH_COMMANDS + 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("at most {MAX_BATCH_COMMANDS}")),
            "{err}"
        );
    }

    #[test]
    fn a_configuration_of_more_members_than_its_bound_is_refused() {
        let members = |n: u64| (1..=n).map(|i| MemberId::new(i, 1)).collect::<Vec<_>>();
        let stop = |voters: Vec<MemberId>, learners: Vec<MemberId>| Message::Accept {
            ballot: Ballot::ZERO,
            slot: 1,
            entry: Entry::StopSign(Config {
                epoch: 1,
                voters,
                learners,
            }),
            commit: 0,
        };
        let n = MAX_MEMBERS as u64;
        let at_bound = stop(members(n), members(n));
        assert_eq!(round_trip(&at_bound).as_ref(), Ok(&at_bound));
        assert!(round_trip(&stop(members(n + 1), Vec::new())).is_err());
        assert!(round_trip(&stop(Vec::new(), members(n + 1))).is_err());
    }

    /// A promise has no bound of its own (it must carry every accepted
    /// entry): a long one decodes, and one whose length header lies is
    /// refused when the bytes run out (serde reserves at most 1 MiB ahead
    /// for a claimed length, so the lie costs no more than that).
    #[test]
    fn a_promise_is_bounded_by_its_frame_only_and_a_lying_length_is_refused() {
        let promise = |accepted| Message::Promise {
            ballot: Ballot::ZERO,
            from: 1,
            accepted,
            commit: 0,
            snapshot_slot: 0,
        };
        let long = promise(entries(4 * MAX_CHOSEN_ENTRIES));
        assert_eq!(round_trip(&long).as_ref(), Ok(&long));

        let one = promise(vec![(7, entries(1).remove(0).1)]);
        let bytes = encode_compact("message", &one).expect("encode");
        // The entries' array header (one element: a (slot 7, …) pair)
        // becomes a 32-bit header claiming 4,294,967,295 elements.
        let at = bytes
            .windows(3)
            .position(|w| w == [0x91, 0x92, 0x07])
            .expect("the entries' header");
        let mut lie = bytes[..at].to_vec();
        lie.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        lie.extend_from_slice(&bytes[at + 1..]);
        assert!(decode::<Message>("message", &lie).is_err());
    }
}
