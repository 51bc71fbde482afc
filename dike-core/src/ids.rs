//! Identities and orderings shared by every part of the protocol.
//!
//! Invariant: ballots are totally ordered, first by round and then by the
//! proposing member, so two distinct proposers never hold equal ballots.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A position in a group's replicated log. Slot 0 is never used: the first
/// command goes to slot 1, so "applied up to 0" means "nothing applied".
pub type Slot = u64;

/// A node of the cluster. The runtime maps node names to these ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// One life of a node's data directory. A node that loses its disk comes back
/// with a new incarnation and is a different member: it never votes with the
/// promises of its previous life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Incarnation(pub u64);

/// A replica's identity within a group: the node it runs on and that node's
/// incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId {
    /// The node hosting the replica.
    pub node: NodeId,
    /// The incarnation of the node's data directory.
    pub incarnation: Incarnation,
}

impl MemberId {
    /// A member on `node` with incarnation `incarnation`.
    pub const fn new(node: u64, incarnation: u64) -> Self {
        MemberId {
            node: NodeId(node),
            incarnation: Incarnation(incarnation),
        }
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}.{}", self.node.0, self.incarnation.0)
    }
}

/// A client session's identity. Every request carries one together with a
/// sequence number so that retries are applied once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub u64);

/// A Paxos ballot: `(epoch, round, leader)`, totally ordered.
///
/// The configuration epoch comes first: every ballot of a later
/// configuration is above every ballot of an earlier one, so acceptors that
/// joined the new configuration fence off leaders of the old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// The configuration epoch the ballot belongs to.
    pub epoch: u64,
    /// Monotonic round number; a candidate picks one above every round it saw.
    pub round: u64,
    /// The member that owns this ballot (deterministic tie-break).
    pub leader: MemberId,
}

impl Ballot {
    /// The ballot below every real ballot: nothing promised yet.
    pub const ZERO: Ballot = Ballot {
        epoch: 0,
        round: 0,
        leader: MemberId::new(0, 0),
    };

    /// A ballot of epoch 0.
    pub const fn new(round: u64, leader: MemberId) -> Self {
        Ballot {
            epoch: 0,
            round,
            leader,
        }
    }

    /// Whether this is [`Ballot::ZERO`].
    pub fn is_zero(&self) -> bool {
        *self == Ballot::ZERO
    }
}

impl Default for Ballot {
    fn default() -> Self {
        Ballot::ZERO
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.epoch, self.round, self.leader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_leader() {
        let a = Ballot {
            epoch: 0,
            round: 1,
            leader: MemberId::new(9, 1),
        };
        let b = Ballot {
            epoch: 0,
            round: 2,
            leader: MemberId::new(1, 1),
        };
        let c = Ballot {
            epoch: 0,
            round: 2,
            leader: MemberId::new(2, 1),
        };
        assert!(Ballot::ZERO < a && a < b && b < c);
    }
}
