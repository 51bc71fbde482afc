//! The master group's own membership, as the routing table keeps it.
//!
//! The master group is a Paxos group like any other: its members change
//! through stop-signs in its own log. The table keeps two things about it:
//! - `config`: the master group's configuration as the master's rebalancer
//!   last read it from the master leader (none until the first read, a
//!   rebalancing step after the cluster starts). Every node learns the
//!   current masters from it, so the `--masters` flags are only seeds.
//! - `wanted`: the master nodes the operator asked for (`dike master add`,
//!   `remove`, `replace`); none until the first such request. The
//!   rebalancer changes the master group one step at a time until its
//!   voters are exactly these nodes ([`crate::rebalance::next_master_change`]).
//!
//! Invariants: a recorded configuration only moves to a higher epoch;
//! `wanted` always holds 1 to [`MAX_MASTERS`] nodes that joined the table.

use super::{RoutingError, RoutingTable};
use crate::config::Config;
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The most masters a cluster may ask for (the largest group size).
pub const MAX_MASTERS: usize = 7;

/// See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterGroup {
    /// The master group's configuration as last recorded.
    pub config: Option<Config>,
    /// The master nodes the operator asked for.
    pub wanted: Option<BTreeSet<NodeId>>,
}

impl MasterGroup {
    /// The nodes that are masters now or are wanted as masters: those the
    /// table never forgets.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        let members = self.config.iter().flat_map(Config::all_members);
        members
            .map(|m| m.node)
            .chain(self.wanted.iter().flatten().copied())
            .collect()
    }
}

impl RoutingTable {
    /// Records the master group's configuration if it is newer than the
    /// recorded one (or none is); returns whether it changed the table.
    /// Its members need not have joined: a seed master that never started
    /// is still a member.
    pub fn record_master_config(&mut self, config: Config) -> bool {
        let newer = self
            .masters
            .config
            .as_ref()
            .is_none_or(|c| config.epoch > c.epoch);
        if newer {
            tracing::debug!(epoch = config.epoch, voters = ?config.voters, learners = ?config.learners, "master configuration recorded");
            self.masters.config = Some(config);
            self.version += 1;
        }
        newer
    }

    /// The operator's change of the masters: `add` becomes a master,
    /// `remove` stops being one (both at once: a replacement). Repeating a
    /// change changes nothing. Answers the master group's state.
    ///
    /// The wanted set starts from the recorded configuration's voters, so
    /// the configuration must be recorded. A node to add must have joined
    /// and be up and not being removed; the result must keep 1 to
    /// [`MAX_MASTERS`] masters.
    pub fn change_masters(
        &mut self,
        add: Option<NodeId>,
        remove: Option<NodeId>,
    ) -> Result<&MasterGroup, RoutingError> {
        let config = self
            .masters
            .config
            .as_ref()
            .ok_or(RoutingError::MastersNotRecorded)?;
        let mut wanted = match &self.masters.wanted {
            Some(w) => w.clone(),
            None => config.voters.iter().map(|m| m.node).collect(),
        };
        if let Some(node) = remove {
            if !self.nodes.contains_key(&node) && !wanted.contains(&node) {
                return Err(RoutingError::UnknownNode { node });
            }
            wanted.remove(&node);
        }
        if let Some(node) = add {
            let info = self.node(node).ok_or(RoutingError::UnknownNode { node })?;
            let why = if info.removing {
                Some("being removed from the cluster")
            } else if !info.is_up() && !wanted.contains(&node) {
                Some("down")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(RoutingError::NotMasterMaterial {
                    name: info.name.clone(),
                    why,
                });
            }
            wanted.insert(node);
        }
        if wanted.is_empty() || wanted.len() > MAX_MASTERS {
            return Err(RoutingError::MasterCount {
                count: wanted.len(),
            });
        }
        if self.masters.wanted.as_ref() != Some(&wanted) {
            tracing::debug!(?wanted, "masters wanted");
            self.masters.wanted = Some(wanted);
            self.version += 1;
        }
        Ok(&self.masters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Incarnation, MemberId};

    fn table(nodes: u64) -> RoutingTable {
        let mut t = RoutingTable::new();
        for n in 1..=nodes {
            t.add_node(NodeId(n), format!("n{n}"), format!("a{n}"), Incarnation(1))
                .expect("a new node");
        }
        t
    }

    fn seeds(nodes: &[u64]) -> Config {
        Config::initial(nodes.iter().map(|&n| MemberId::new(n, 0)).collect())
    }

    #[test]
    fn a_recorded_master_configuration_only_moves_to_a_higher_epoch() {
        let mut t = table(3);
        assert!(t.record_master_config(seeds(&[1, 2, 3])));
        let v = t.version;
        assert!(!t.record_master_config(seeds(&[1, 2])), "same epoch");
        let next = Config {
            epoch: 1,
            ..seeds(&[1, 2])
        };
        assert!(t.record_master_config(next.clone()));
        assert_eq!((t.masters.config.as_ref(), t.version), (Some(&next), v + 1));
    }

    #[test]
    fn masters_change_only_once_the_configuration_is_recorded() {
        let mut t = table(4);
        assert_eq!(
            t.change_masters(Some(NodeId(4)), None).err(),
            Some(RoutingError::MastersNotRecorded)
        );
    }

    #[test]
    fn a_replacement_swaps_one_wanted_master_and_repeating_it_changes_nothing() {
        let mut t = table(4);
        t.record_master_config(seeds(&[1, 2, 3]));
        let wanted = t
            .change_masters(Some(NodeId(4)), Some(NodeId(3)))
            .expect("replaced")
            .wanted
            .clone();
        assert_eq!(wanted, Some([1, 2, 4].map(NodeId).into()));
        let v = t.version;
        t.change_masters(Some(NodeId(4)), Some(NodeId(3)))
            .expect("again");
        assert_eq!(t.version, v, "idempotent");
    }

    #[test]
    fn a_master_must_be_a_live_node_of_the_table_and_one_must_remain() {
        let mut t = table(4);
        t.record_master_config(seeds(&[1]));
        assert_eq!(
            t.change_masters(Some(NodeId(9)), None).err(),
            Some(RoutingError::UnknownNode { node: NodeId(9) })
        );
        t.mark_down(NodeId(4), 5).expect("known");
        assert!(matches!(
            t.change_masters(Some(NodeId(4)), None),
            Err(RoutingError::NotMasterMaterial { why: "down", .. })
        ));
        assert_eq!(
            t.change_masters(None, Some(NodeId(1))).err(),
            Some(RoutingError::MasterCount { count: 0 })
        );
        assert_eq!(t.masters.wanted, None, "refusals change nothing");
    }

    #[test]
    fn a_master_seed_that_never_joined_can_still_be_removed() {
        let mut t = table(2);
        t.record_master_config(seeds(&[1, 2, 7]));
        let m = t.change_masters(None, Some(NodeId(7))).expect("removed");
        assert_eq!(m.wanted, Some([1, 2].map(NodeId).into()));
        assert!(t.masters.nodes().contains(&NodeId(7)), "still a member");
    }
}
