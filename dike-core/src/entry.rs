//! What the log holds: batches of client commands, no-ops and (later)
//! configuration changes.

use crate::config::Config;
use crate::ids::{ClientId, MemberId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One client command, as proposed. `payload` is the encoded request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The client session issuing the command.
    pub client: ClientId,
    /// The command's sequence number within its session (starts at 1).
    pub seq: u64,
    /// Every sequence number below this one has been answered to the client:
    /// replicas may forget those replies.
    pub ack_floor: u64,
    /// The encoded request.
    #[serde(with = "crate::codec::bytes")]
    pub payload: Vec<u8>,
}

impl Command {
    /// A command whose client has every earlier reply (`ack_floor == seq`):
    /// the usual case of a client with one command in flight.
    pub fn new(client: ClientId, seq: u64, payload: Vec<u8>) -> Self {
        Command {
            client,
            seq,
            ack_floor: seq,
            payload,
        }
    }
}

/// Most commands one batch may carry, whatever `ReplicaOptions::max_batch`
/// says: a proposer never puts more in a slot, and a batch that claims more
/// (from a peer or from disk) is refused when it is decoded.
pub const MAX_BATCH_COMMANDS: usize = 1 << 16;

/// A batch of commands proposed together in one slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The replica that proposed the batch: it alone runs the commands'
    /// side effects.
    pub proposer: MemberId,
    /// The proposer's boot number when it proposed: a proposer that restarted
    /// never runs effects of batches proposed in an earlier life.
    pub boot: u64,
    /// The commands, applied in order; at most [`MAX_BATCH_COMMANDS`].
    #[serde(deserialize_with = "crate::codec::bounded::arc_slice::<_, _, MAX_BATCH_COMMANDS>")]
    pub commands: Arc<[Command]>,
}

/// A log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// Fills a hole left by a failed leader; applies nothing.
    Noop,
    /// Client commands.
    Batch(Batch),
    /// Closes the current configuration at this slot: every later slot
    /// belongs to this next configuration (a new epoch), which starts with a
    /// fresh phase 1 among its voters.
    StopSign(Config),
}

impl Entry {
    /// Number of client commands carried.
    pub fn len(&self) -> usize {
        match self {
            Entry::Noop | Entry::StopSign(_) => 0,
            Entry::Batch(b) => b.commands.len(),
        }
    }

    /// Whether the entry carries no client command.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
