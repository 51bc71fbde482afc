//! Which nodes are the masters now, as this node knows it (the operator's
//! commands that change them, `dike master add|remove|replace`, are in
//! `node/change_masters.rs`).
//!
//! The master group changes its members like any group (stop-signs in its
//! own log, carried out by the master's rebalancer towards the masters the
//! operator asked for: [`dike_core::rebalance::next_master_change`]). A node
//! starts from the masters its data dir last learned, or from its
//! `--masters` flags (the seeds), and learns every later configuration
//! from the routing table ([`dike_core::routing::MasterGroup`]), writing it
//! to its data dir. So the flags only have to name one reachable master
//! quorum of some past configuration, and a master added by the operator
//! hosts its master replica after a restart whatever its flags say.
//!
//! Invariants: the known configuration only moves to a higher epoch; a node
//! hosts a master replica only for a member of the known configuration on
//! its node whose incarnation is its own (or 0: the seeds' members, which
//! are derived from their names alone).

use crate::node::identity::{node_id_of, MasterSpec};
use dike_core::routing::{MasterGroup, RoutingTable};
use dike_core::{Config, Incarnation, MemberId, NodeId};
use serde::{Deserialize, Serialize};

/// The master group as a node knows it: its configuration and where its
/// members listen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Masters {
    /// The master group's configuration.
    pub config: Config,
    /// Every member's node name and address (those known).
    pub specs: Vec<MasterSpec>,
}

impl Masters {
    /// The masters of the `--masters` flags: every one a voter, member of
    /// incarnation 0.
    pub fn seeds(seeds: &[MasterSpec]) -> Self {
        Masters {
            config: Config::initial(seeds.iter().map(MasterSpec::member).collect()),
            specs: seeds.to_vec(),
        }
    }

    /// `stored` (what a data dir learned) with the addresses of `seeds`
    /// where they name the same node: the operator's flags are the newer
    /// word on where a master listens.
    pub fn stored_over_seeds(stored: Masters, seeds: &[MasterSpec]) -> Self {
        let specs = stored
            .specs
            .into_iter()
            .map(|s| {
                seeds
                    .iter()
                    .find(|f| f.name == s.name)
                    .cloned()
                    .unwrap_or(s)
            })
            .collect();
        Masters {
            config: stored.config,
            specs,
        }
    }

    /// The member of the master group this node hosts, if any: the
    /// member on `node` of incarnation `incarnation`, or 0.
    pub fn member_on(&self, node: NodeId, incarnation: Incarnation) -> Option<MemberId> {
        self.config
            .all_members()
            .find(|m| m.node == node && (m.incarnation == incarnation || m.incarnation.0 == 0))
    }

    /// Where the master on `node` listens, if known.
    pub fn spec(&self, node: NodeId) -> Option<&MasterSpec> {
        self.specs.iter().find(|s| node_id_of(&s.name) == node)
    }

    /// The masters the routing table `table` shows, if they differ from
    /// these: its master configuration if newer, with the addresses its
    /// nodes published (a member the table has no node for keeps the
    /// address known here).
    pub fn learned(&self, table: &RoutingTable) -> Option<Masters> {
        let config = match &table.masters.config {
            Some(c) if c.epoch > self.config.epoch => c.clone(),
            _ => self.config.clone(),
        };
        let specs = config
            .all_members()
            .filter_map(|m| match table.node(m.node) {
                Some(n) => Some(MasterSpec {
                    name: n.name.clone(),
                    address: n.address.clone(),
                }),
                None => self.spec(m.node).cloned(),
            })
            .collect();
        let next = Masters { config, specs };
        (next != *self).then_some(next)
    }
}

/// The master group's membership as the table shows it, for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterView {
    /// The voters' names (the masters), in configuration order.
    pub voters: Vec<String>,
    /// The learners' names (masters being added, catching up).
    pub learners: Vec<String>,
    /// The names of the masters the operator asked for, if any were.
    pub wanted: Option<Vec<String>>,
    /// The configuration's epoch.
    pub epoch: u64,
}

impl MasterView {
    /// The view of `group` in `table` (names for ids the table knows).
    pub fn of(table: &RoutingTable, group: &MasterGroup, known: &Masters) -> Self {
        let name = |node: NodeId| {
            table
                .node(node)
                .map(|n| n.name.clone())
                .or_else(|| known.spec(node).map(|s| s.name.clone()))
                .unwrap_or_else(|| format!("n{}", node.0))
        };
        let config = group.config.as_ref().unwrap_or(&known.config);
        MasterView {
            voters: config.voters.iter().map(|m| name(m.node)).collect(),
            learners: config.learners.iter().map(|m| name(m.node)).collect(),
            wanted: group
                .wanted
                .as_ref()
                .map(|w| w.iter().map(|&n| name(n)).collect()),
            epoch: config.epoch,
        }
    }

    /// Whether the masters are the ones the operator asked for (or none
    /// were asked for) and no master is being added.
    pub fn settled(&self) -> bool {
        let mut voters = self.voters.clone();
        voters.sort();
        self.learners.is_empty()
            && self.wanted.as_ref().is_none_or(|w| {
                let mut w = w.clone();
                w.sort();
                w == voters
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, address: &str) -> MasterSpec {
        MasterSpec {
            name: name.into(),
            address: address.into(),
        }
    }

    #[test]
    fn a_newer_configuration_in_the_table_is_learned_with_its_nodes_addresses() {
        let seeds = Masters::seeds(&[spec("a", "h:1"), spec("b", "h:2"), spec("c", "h:3")]);
        let mut table = RoutingTable::new();
        let d = node_id_of("d");
        table
            .add_node(d, "d", "h:4", Incarnation(9))
            .expect("a new node");
        assert_eq!(seeds.learned(&table), None, "nothing recorded");
        let mut config = seeds.config.clone();
        config.epoch = 2;
        config.voters[2] = MemberId {
            node: d,
            incarnation: Incarnation(9),
        };
        table.record_master_config(config.clone());
        let learned = seeds.learned(&table).expect("newer");
        assert_eq!(learned.config, config);
        let names: Vec<&str> = learned.specs.iter().map(|s| s.address.as_str()).collect();
        assert_eq!(
            names,
            ["h:1", "h:2", "h:4"],
            "c is gone, d comes from the table"
        );
        assert_eq!(learned.learned(&table), None, "learned once");
        assert_eq!(
            learned.member_on(d, Incarnation(9)).map(|m| m.incarnation),
            Some(Incarnation(9))
        );
        assert_eq!(
            learned.member_on(d, Incarnation(10)),
            None,
            "a node that lost its data does not host the member of its earlier life"
        );
        assert_eq!(learned.member_on(node_id_of("c"), Incarnation(3)), None);
    }

    #[test]
    fn flags_give_the_addresses_of_stored_masters_they_name() {
        let stored = Masters::seeds(&[spec("a", "old:1"), spec("b", "old:2")]);
        let m = Masters::stored_over_seeds(stored, &[spec("a", "new:1")]);
        let addresses: Vec<&str> = m.specs.iter().map(|s| s.address.as_str()).collect();
        assert_eq!(addresses, ["new:1", "old:2"]);
    }
}
