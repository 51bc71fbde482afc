//! The master's routing table: which nodes belong to the cluster, whether they
//! are up, and which members serve each group, as plain data with pure methods.
//!
//! Invariants: a group never has two members on one node, and every change to
//! the table bumps [`RoutingTable::version`], so a dispatcher holding a copy
//! with the same version holds the same table. Placement decisions (where a new
//! group goes, which replica moves where) live in [`crate::placement`]; this
//! module only records them.

use crate::config::Config;
use crate::ids::{Incarnation, MemberId, NodeId};
use crate::placement;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

mod masters;

pub use masters::{MasterGroup, MAX_MASTERS};

/// The replica counts a group may be configured with: odd, so a group of
/// `size` replicas survives `size / 2` failures, and at most seven, so a quorum
/// stays cheap to reach.
pub const GROUP_SIZES: [usize; 4] = [1, 3, 5, 7];

/// Whether a node is believed to be running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    /// The node is reachable and may host replicas.
    Up,
    /// The node has been unreachable since the given tick; the master replaces
    /// its replicas once it has been down longer than the grace period.
    Down {
        /// The master's tick at which the node was first seen down.
        since_tick: u64,
    },
}

/// A node known to the master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id, fixed for the node's name.
    pub id: NodeId,
    /// The node's name as configured by the operator.
    pub name: String,
    /// Where the node's cluster listener can be reached (`host:port`).
    pub address: String,
    /// The life of the node's data directory; members placed on the node use it.
    pub incarnation: Incarnation,
    /// Whether the node is up.
    pub status: NodeStatus,
    /// An operator is draining the node (`dike node drain`): it keeps its
    /// replicas, but no new group or learner is placed on it and its
    /// replicas hand their leaderships to other nodes.
    #[serde(default)]
    pub draining: bool,
    /// The operator asked to remove the node (`dike node remove`): it takes
    /// no new replicas, its replicas move to other nodes, and once it hosts
    /// none it leaves the table for good.
    #[serde(default)]
    pub removing: bool,
}

impl NodeInfo {
    /// Whether the node is up and may host replicas.
    pub fn is_up(&self) -> bool {
        self.status == NodeStatus::Up
    }

    /// Whether new replicas (of a new group, or learners) may be placed on
    /// the node: it is up, not draining and not being removed.
    pub fn takes_new_replicas(&self) -> bool {
        self.is_up() && !self.draining && !self.removing
    }

    /// The member a replica placed on this node now would be.
    pub fn member(&self) -> MemberId {
        MemberId {
            node: self.id,
            incarnation: self.incarnation,
        }
    }
}

/// A group and the members that serve it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group's name, unique in the cluster.
    pub name: String,
    /// The kind of paxos server the group runs.
    pub kind: String,
    /// The configured number of replicas (one of [`GROUP_SIZES`]).
    pub size: usize,
    /// The group's current members and configuration epoch.
    pub config: Config,
    /// Which creation of the name this is: the table's version when the
    /// group was added, so a group removed and added again under the same
    /// name is a new group whose replicas start empty (0 for groups of
    /// tables older than generations, and for the master group).
    #[serde(default)]
    pub generation: u64,
}

impl GroupInfo {
    /// The group's member on `node`, if it has one.
    pub fn member_on(&self, node: NodeId) -> Option<MemberId> {
        self.config.all_members().find(|m| m.node == node)
    }

    /// Whether the group has a member on `node`.
    pub fn hosts(&self, node: NodeId) -> bool {
        self.member_on(node).is_some()
    }
}

/// Why the routing table refused a lookup or a change.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RoutingError {
    /// No group has this name.
    #[error("no group named {group:?}; create it with add_group first")]
    UnknownGroup {
        /// The name that was looked up.
        group: String,
    },
    /// A group of this name exists with another kind or size.
    #[error(
        "group {group:?} already exists as {kind} with {size} replicas; remove it first or choose another name"
    )]
    GroupExists {
        /// The name.
        group: String,
        /// The existing group's kind.
        kind: String,
        /// The existing group's configured size.
        size: usize,
    },
    /// No node has this id.
    #[error("node n{} is not in the routing table; it must join the cluster first", .node.0)]
    UnknownNode {
        /// The id that was looked up.
        node: NodeId,
    },
    /// A node tried to join twice.
    #[error(
        "node n{} already joined (incarnation {}); a restarted node is marked up, not added again",
        .node.0, .incarnation.0
    )]
    NodeAlreadyKnown {
        /// The node that is already known.
        node: NodeId,
        /// The incarnation the table knows it by.
        incarnation: Incarnation,
    },
    /// Two nodes would share one name.
    #[error("node name {name:?} is already used by node n{}; give every node its own name", .node.0)]
    DuplicateNodeName {
        /// The name in use.
        name: String,
        /// The node that holds it.
        node: NodeId,
    },
    /// Fewer live nodes than a group needs replicas.
    #[error(
        "a group of {needed} replicas needs {needed} live nodes but only {available} are up \
         (not counting draining nodes); start more nodes, undrain one or choose a smaller \
         group size"
    )]
    NotEnoughNodes {
        /// Replicas the group needs.
        needed: usize,
        /// Live nodes in the cluster that are not draining.
        available: usize,
    },
    /// A group size that is not one of [`GROUP_SIZES`].
    #[error("group size {size} is not supported; use 1, 3, 5 or 7")]
    InvalidGroupSize {
        /// The size asked for.
        size: usize,
    },
    /// A group name that is empty.
    #[error("a group name must not be empty")]
    EmptyGroupName,
    /// A join from the data dir of a node the operator removed.
    #[error(
        "node {name:?} was removed from the cluster (dike node remove); its data dir cannot \
         rejoin: start it with an empty data dir to add it again as a new node"
    )]
    NodeWasRemoved {
        /// The node's name.
        name: String,
    },
    /// A node left the table while a group still has a member on it.
    #[error("node {name:?} still hosts a replica of group {group:?}; move it away first")]
    StillHosts {
        /// The node's name.
        name: String,
        /// A group with a member on it.
        group: String,
    },
    /// A change of the masters before the master group's configuration is
    /// in the table (the master records it within a rebalancing step of
    /// its start).
    #[error("the master group's configuration is not recorded yet; retry in a moment")]
    MastersNotRecorded,
    /// A change that would leave the master group with no member, or more
    /// than [`MAX_MASTERS`].
    #[error("the cluster would have {count} masters; it needs 1 to {max}", max = MAX_MASTERS)]
    MasterCount {
        /// How many masters the change would leave.
        count: usize,
    },
    /// A node that cannot become a master now.
    #[error("node {name:?} cannot become a master: it is {why}")]
    NotMasterMaterial {
        /// The node's name.
        name: String,
        /// Why (down, being removed).
        why: &'static str,
    },
    /// A node that is a master cannot be removed from the cluster.
    #[error(
        "node {name:?} is a master; take it out of the masters first (dike master remove {name})"
    )]
    IsMaster {
        /// The node's name.
        name: String,
    },
}

/// Checks that `size` is one of [`GROUP_SIZES`].
pub fn validate_group_size(size: usize) -> Result<(), RoutingError> {
    if GROUP_SIZES.contains(&size) {
        Ok(())
    } else {
        Err(RoutingError::InvalidGroupSize { size })
    }
}

/// The routing table the master replicates and every dispatcher caches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingTable {
    /// Increases by one with every change to the table.
    pub version: u64,
    /// Every node that ever joined, up or down.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Every group, by name. Read it freely; change it only through the
    /// methods (`add_group`, `remove_group`, `record_config`), which keep
    /// the per-node counts placement uses.
    pub groups: BTreeMap<String, GroupInfo>,
    /// Nodes removed by the operator, with the incarnation (data dir) they
    /// had: that data dir is refused if it comes back. A node may join again
    /// with an empty data dir, as a new member.
    #[serde(default)]
    pub removed: BTreeMap<NodeId, RemovedNode>,
    /// The master group's own membership: its configuration as last
    /// recorded and the master nodes the operator asked for. Boxed: the
    /// table travels in messages, and this is seldom read.
    #[serde(default)]
    pub masters: Box<MasterGroup>,
    /// Per-node counts derived from `groups`, computed at first use and then
    /// kept up to date by the methods that change groups (so `groups` must
    /// change only through them). Not part of the table: never sent, never
    /// compared.
    #[serde(skip)]
    counts: Derived,
}

/// What placement needs per node, derived from the groups: how many
/// members it hosts, and of how many groups it is the first voter (the
/// preferred leader). Kept up to date instead of counted per decision: the
/// master places each new group, and counting over 10,000 groups for each
/// made creating them, and replaying the master's log after a restart,
/// quadratic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct MemberCounts {
    members: BTreeMap<NodeId, usize>,
    firsts: BTreeMap<NodeId, usize>,
}

impl MemberCounts {
    fn of<'a>(groups: impl Iterator<Item = &'a GroupInfo>) -> Self {
        let mut c = MemberCounts::default();
        for g in groups {
            c.add(&g.config);
        }
        c
    }

    fn add(&mut self, config: &Config) {
        for m in config.all_members() {
            *self.members.entry(m.node).or_default() += 1;
        }
        if let Some(first) = config.voters.first() {
            *self.firsts.entry(first.node).or_default() += 1;
        }
    }

    fn remove(&mut self, config: &Config) {
        let drop_one = |map: &mut BTreeMap<NodeId, usize>, node: NodeId| {
            if let Some(n) = map.get_mut(&node) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&node);
                }
            }
        };
        for m in config.all_members() {
            drop_one(&mut self.members, m.node);
        }
        if let Some(first) = config.voters.first() {
            drop_one(&mut self.firsts, first.node);
        }
    }
}

/// A cache that is not part of its table's value: every two are equal.
/// Boxed, so a table (and every message carrying one) grows by a pointer.
#[derive(Clone, Debug, Default)]
struct Derived(std::sync::OnceLock<Box<MemberCounts>>);

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Derived {}

/// A node the operator removed from the cluster (`dike node remove`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedNode {
    /// Its name.
    pub name: String,
    /// The data dir's life it had; a join with it is refused.
    pub incarnation: Incarnation,
}

impl RoutingTable {
    /// An empty table at version 0.
    pub fn new() -> Self {
        RoutingTable::default()
    }

    fn counts(&self) -> &MemberCounts {
        self.counts
            .0
            .get_or_init(|| Box::new(MemberCounts::of(self.groups.values())))
    }

    /// Updates the counts, if computed, for a group whose configuration
    /// goes from `old` to `new` (`None`: the group is new, or gone).
    fn recount(&mut self, old: Option<&Config>, new: Option<&Config>) {
        if let Some(c) = self.counts.0.get_mut() {
            if let Some(old) = old {
                c.remove(old);
            }
            if let Some(new) = new {
                c.add(new);
            }
        }
    }

    /// Of how many groups `node` is the first voter (the preferred leader).
    pub fn first_voter_of(&self, node: NodeId) -> usize {
        self.counts().firsts.get(&node).copied().unwrap_or(0)
    }

    /// A fingerprint of the whole table: equal tables have equal digests,
    /// as the encoding is deterministic (every map is ordered). The version
    /// alone names a table only while the master keeps its state: masters
    /// that all lost it (in memory, restarted) count versions again from 0.
    pub fn digest(&self) -> u64 {
        // Encoding a table cannot fail (string keys, no floats); were it to,
        // every table would share one digest and be sent whole each time.
        let bytes = crate::codec::encode("routing table", self).unwrap_or_default();
        crate::hash::fnv1a(&bytes)
    }

    /// The node with id `id`, if it joined.
    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(&id)
    }

    /// The group named `name`, if it exists.
    pub fn group(&self, name: &str) -> Option<&GroupInfo> {
        self.groups.get(name)
    }

    /// The voting members of group `name`: where a dispatcher sends requests.
    pub fn voters(&self, name: &str) -> Result<&[MemberId], RoutingError> {
        self.groups
            .get(name)
            .map(|g| g.config.voters.as_slice())
            .ok_or_else(|| RoutingError::UnknownGroup {
                group: name.to_owned(),
            })
    }

    /// Whether `node` is known and up.
    pub fn is_up(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(NodeInfo::is_up)
    }

    /// The nodes that are up, in id order.
    pub fn live_nodes(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.nodes.values().filter(|n| n.is_up())
    }

    /// Replicas hosted by every live node, including live nodes that host none.
    /// Down nodes are left out: they take no new replicas and give none up by
    /// rebalancing (their replicas are replaced instead).
    pub fn load(&self) -> BTreeMap<NodeId, usize> {
        let members = &self.counts().members;
        self.live_nodes()
            .map(|n| (n.id, members.get(&n.id).copied().unwrap_or(0)))
            .collect()
    }

    /// The groups with a member on `node`, in name order.
    pub fn groups_on(&self, node: NodeId) -> impl Iterator<Item = &GroupInfo> + '_ {
        self.groups.values().filter(move |g| g.hosts(node))
    }

    /// The member a replica placed on `node` now would be: the node with its
    /// current incarnation.
    pub fn member_of(&self, node: NodeId) -> Option<MemberId> {
        self.nodes.get(&node).map(NodeInfo::member)
    }

    /// Records that a node joined the cluster; it starts up and empty.
    pub fn add_node(
        &mut self,
        id: NodeId,
        name: impl Into<String>,
        address: impl Into<String>,
        incarnation: Incarnation,
    ) -> Result<&NodeInfo, RoutingError> {
        if let Some(known) = self.nodes.get(&id) {
            return Err(RoutingError::NodeAlreadyKnown {
                node: id,
                incarnation: known.incarnation,
            });
        }
        let name = name.into();
        if let Some(gone) = self.removed.get(&id) {
            if gone.incarnation == incarnation {
                return Err(RoutingError::NodeWasRemoved { name });
            }
        }
        if let Some(holder) = self.nodes.values().find(|n| n.name == name) {
            return Err(RoutingError::DuplicateNodeName {
                name,
                node: holder.id,
            });
        }
        tracing::debug!(node = id.0, %name, "node joined the routing table");
        self.removed.remove(&id);
        self.version += 1;
        let info = NodeInfo {
            id,
            name,
            address: address.into(),
            incarnation,
            status: NodeStatus::Up,
            draining: false,
            removing: false,
        };
        Ok(self.nodes.entry(id).or_insert(info))
    }

    /// Records that `node` was seen down at `tick`. A node already down keeps
    /// the tick it was first seen down, so its grace period is not restarted;
    /// the table (and its version) is then left unchanged.
    pub fn mark_down(&mut self, node: NodeId, tick: u64) -> Result<(), RoutingError> {
        let info = self
            .nodes
            .get_mut(&node)
            .ok_or(RoutingError::UnknownNode { node })?;
        if info.is_up() {
            tracing::debug!(node = node.0, tick, "node marked down");
            info.status = NodeStatus::Down { since_tick: tick };
            self.version += 1;
        }
        Ok(())
    }

    /// Marks `node` draining or not; returns whether the table changed (a
    /// node already so is left unchanged, and so is the version).
    pub fn set_draining(&mut self, node: NodeId, draining: bool) -> Result<bool, RoutingError> {
        let info = self
            .nodes
            .get_mut(&node)
            .ok_or(RoutingError::UnknownNode { node })?;
        if info.draining == draining {
            return Ok(false);
        }
        tracing::debug!(node = node.0, draining, "node drain changed");
        info.draining = draining;
        self.version += 1;
        Ok(true)
    }

    /// The nodes marked draining, in id order.
    pub fn draining_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.values().filter(|n| n.draining).map(|n| n.id)
    }

    /// Replicas hosted by every node that takes new replicas (up, not
    /// draining and not being removed), including those that host none:
    /// what placement spreads new groups and learners over. A draining node
    /// is left out like a down one, so it neither receives nor gives up
    /// replicas by rebalancing; a node being removed gives its replicas up
    /// through replacements (see `rebalance::dead_nodes`).
    pub fn placement_load(&self) -> BTreeMap<NodeId, usize> {
        let members = &self.counts().members;
        self.nodes
            .values()
            .filter(|n| n.takes_new_replicas())
            .map(|n| (n.id, members.get(&n.id).copied().unwrap_or(0)))
            .collect()
    }

    /// Records that `node` is up again. A node already up is left unchanged.
    pub fn mark_up(&mut self, node: NodeId) -> Result<(), RoutingError> {
        let info = self
            .nodes
            .get_mut(&node)
            .ok_or(RoutingError::UnknownNode { node })?;
        if !info.is_up() {
            tracing::debug!(node = node.0, "node marked up");
            info.status = NodeStatus::Up;
            self.version += 1;
        }
        Ok(())
    }

    /// Creates group `name` running `kind` with `size` replicas on the
    /// least-loaded live nodes (see [`placement::place_new_group`]).
    ///
    /// As in the original Dike, adding a group whose name exists already
    /// with the same kind and size is not an error: the existing entry is
    /// returned unchanged, so a client may retry an `add_group` whose answer
    /// it lost. Another kind or size for an existing name is refused
    /// ([`RoutingError::GroupExists`]).
    pub fn add_group(
        &mut self,
        name: impl Into<String>,
        kind: impl Into<String>,
        size: usize,
    ) -> Result<&GroupInfo, RoutingError> {
        let name = name.into();
        let kind = kind.into();
        if let Some(g) = self.groups.get(&name) {
            if g.kind != kind || g.size != size {
                return Err(RoutingError::GroupExists {
                    group: name,
                    kind: g.kind.clone(),
                    size: g.size,
                });
            }
            return Ok(&self.groups[&name]);
        }
        if name.is_empty() {
            return Err(RoutingError::EmptyGroupName);
        }
        let members = placement::place_new_group(self, size)?;
        tracing::debug!(group = %name, size, ?members, "group placed");
        self.version += 1;
        let info = GroupInfo {
            name: name.clone(),
            kind,
            size,
            config: Config::initial(members),
            generation: self.version,
        };
        self.recount(None, Some(&info.config));
        Ok(self.groups.entry(name).or_insert(info))
    }

    /// Deletes group `name` and returns its last entry.
    pub fn remove_group(&mut self, name: &str) -> Result<GroupInfo, RoutingError> {
        let removed = self
            .groups
            .remove(name)
            .ok_or_else(|| RoutingError::UnknownGroup {
                group: name.to_owned(),
            })?;
        tracing::debug!(group = %name, "group removed");
        self.version += 1;
        self.recount(Some(&removed.config), None);
        Ok(removed)
    }

    /// Records the configuration group `name` has chosen in its own log, if
    /// it is newer (a higher epoch) than the one the table holds. Returns
    /// whether the table changed. Every member must be on a known node.
    ///
    /// This is how the table follows membership changes: the master reads a
    /// group's configuration from the group's leader and records it, so an
    /// answer lost on the way is recovered by reading again.
    pub fn record_config(&mut self, name: &str, config: Config) -> Result<bool, RoutingError> {
        if let Some(m) = config
            .all_members()
            .find(|m| !self.nodes.contains_key(&m.node))
        {
            return Err(RoutingError::UnknownNode { node: m.node });
        }
        let group = self
            .groups
            .get_mut(name)
            .ok_or_else(|| RoutingError::UnknownGroup {
                group: name.to_owned(),
            })?;
        if config.epoch <= group.config.epoch {
            return Ok(false);
        }
        tracing::debug!(group = %name, epoch = config.epoch, voters = ?config.voters, learners = ?config.learners, "configuration recorded");
        let old = std::mem::replace(&mut group.config, config.clone());
        self.version += 1;
        self.recount(Some(&old), Some(&config));
        Ok(true)
    }

    /// Starts removing `node` (see [`NodeInfo::removing`]). Returns the node
    /// with how many replicas it still hosts; a node that hosts none leaves
    /// at once (the answer then has 0 and the node is no longer in the
    /// table).
    pub fn remove_node(&mut self, node: NodeId) -> Result<(NodeInfo, usize), RoutingError> {
        if self.masters.nodes().contains(&node) {
            let name = self
                .node(node)
                .map_or_else(|| format!("n{}", node.0), |n| n.name.clone());
            return Err(RoutingError::IsMaster { name });
        }
        let info = self
            .nodes
            .get_mut(&node)
            .ok_or(RoutingError::UnknownNode { node })?;
        if !info.removing {
            tracing::info!(node = %info.name, "node is being removed");
            info.removing = true;
            self.version += 1;
        }
        let info = info.clone();
        let hosted = self.groups_on(node).count();
        if hosted == 0 {
            self.forget_node(node, true)?;
        }
        Ok((info, hosted))
    }

    /// Takes `node`, which hosts no replica, out of the table. With
    /// `refuse_return` its data dir is refused if it comes back (an
    /// operator's removal); without, a node replaced after it died may
    /// join again later as if new.
    pub fn forget_node(
        &mut self,
        node: NodeId,
        refuse_return: bool,
    ) -> Result<NodeInfo, RoutingError> {
        let info = self
            .nodes
            .get(&node)
            .ok_or(RoutingError::UnknownNode { node })?;
        if self.masters.nodes().contains(&node) {
            let name = info.name.clone();
            return Err(RoutingError::IsMaster { name });
        }
        if let Some(group) = self.groups_on(node).next() {
            return Err(RoutingError::StillHosts {
                name: info.name.clone(),
                group: group.name.clone(),
            });
        }
        let info = self.nodes.remove(&node).expect("looked up above");
        tracing::info!(node = %info.name, refuse_return, "node left the routing table");
        if refuse_return {
            self.removed.insert(
                node,
                RemovedNode {
                    name: info.name.clone(),
                    incarnation: info.incarnation,
                },
            );
        }
        self.version += 1;
        Ok(info)
    }

    /// Since when (the observer's clock) `node` has been down, if it is.
    pub fn down_since(&self, node: NodeId) -> Option<u64> {
        match self.nodes.get(&node)?.status {
            NodeStatus::Down { since_tick } => Some(since_tick),
            NodeStatus::Up => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with nodes 1..=n, all up, incarnation 1.
    fn table_with_nodes(n: u64) -> RoutingTable {
        let mut t = RoutingTable::new();
        for id in 1..=n {
            let name = format!("node{id}");
            t.add_node(NodeId(id), name, format!("h{id}:1"), Incarnation(1))
                .expect("fresh node");
        }
        t
    }

    fn nodes_of(g: &GroupInfo) -> Vec<u64> {
        g.config.voters.iter().map(|m| m.node.0).collect()
    }

    #[test]
    fn a_node_joins_once_and_under_its_own_name() {
        let mut t = table_with_nodes(1);
        let again = t.add_node(NodeId(1), "other", "x:1", Incarnation(2)).err();
        let known = RoutingError::NodeAlreadyKnown {
            node: NodeId(1),
            incarnation: Incarnation(1),
        };
        assert_eq!(again, Some(known));
        let taken = t.add_node(NodeId(2), "node1", "x:1", Incarnation(1)).err();
        let name = RoutingError::DuplicateNodeName {
            name: "node1".into(),
            node: NodeId(1),
        };
        assert_eq!(taken, Some(name));
        assert_eq!(t.nodes.len(), 1);
    }

    #[test]
    fn draining_is_idempotent_and_an_unknown_node_is_refused() {
        let mut t = table_with_nodes(2);
        let v = t.version;
        assert_eq!(t.set_draining(NodeId(1), true), Ok(true));
        assert_eq!(t.version, v + 1);
        assert_eq!(t.set_draining(NodeId(1), true), Ok(false), "no change");
        assert_eq!(t.version, v + 1);
        assert_eq!(t.draining_nodes().collect::<Vec<_>>(), [NodeId(1)]);
        assert!(t.is_up(NodeId(1)), "a draining node is up");
        assert_eq!(t.set_draining(NodeId(1), false), Ok(true));
        assert_eq!(t.draining_nodes().count(), 0);
        assert_eq!(
            t.set_draining(NodeId(9), true),
            Err(RoutingError::UnknownNode { node: NodeId(9) })
        );
    }

    #[test]
    fn a_table_written_before_draining_existed_reads_as_not_draining() {
        #[derive(Serialize)]
        struct OldNodeInfo {
            id: NodeId,
            name: String,
            address: String,
            incarnation: Incarnation,
            status: NodeStatus,
        }
        let old = OldNodeInfo {
            id: NodeId(1),
            name: "a".into(),
            address: "a:1".into(),
            incarnation: Incarnation(1),
            status: NodeStatus::Up,
        };
        let bytes = crate::codec::encode("node", &old).expect("encode");
        let n: NodeInfo = crate::codec::decode("node", &bytes).expect("decode");
        assert!(!n.draining);
    }

    #[test]
    fn the_counts_placement_uses_follow_every_change_to_the_groups() {
        let mut t = RoutingTable::new();
        for i in 1..=6 {
            t.add_node(NodeId(i), format!("n{i}"), format!("h:{i}"), Incarnation(1))
                .expect("add");
        }
        let fresh = |t: &RoutingTable| MemberCounts::of(t.groups.values());
        for g in 0..12 {
            t.add_group(format!("g{g}"), "kv", if g % 2 == 0 { 3 } else { 5 })
                .expect("placed");
            assert_eq!(t.counts(), &fresh(&t), "after adding g{g}");
        }
        let mut copy: RoutingTable =
            crate::codec::decode("table", &crate::codec::encode("table", &t).expect("encode"))
                .expect("decode");
        t.remove_group("g3").expect("remove");
        let moved = {
            let mut c = t.groups["g4"].config.clone();
            c.epoch += 1;
            c.voters.reverse();
            c
        };
        t.record_config("g4", moved.clone()).expect("record");
        assert_eq!(t.counts(), &fresh(&t));
        assert_eq!(
            t.first_voter_of(moved.voters[0].node),
            fresh(&t).firsts[&moved.voters[0].node]
        );
        // A copy decoded from the wire counts for itself, and then keeps up.
        copy.remove_group("g3").expect("remove");
        copy.record_config("g4", moved).expect("record");
        assert_eq!(copy, t);
        assert_eq!(copy.counts(), t.counts());
        assert_eq!(copy.placement_load(), t.placement_load());
    }

    #[test]
    fn equal_tables_have_equal_digests_and_a_change_changes_it() {
        let mut t = RoutingTable::new();
        t.add_node(NodeId(1), "a", "h:1", Incarnation(1))
            .expect("add");
        let copy = t.clone();
        assert_eq!(t.digest(), copy.digest());
        let before = t.digest();
        t.mark_down(NodeId(1), 5).expect("down");
        assert_ne!(t.digest(), before);
        let mut other = copy.clone();
        other.nodes.get_mut(&NodeId(1)).expect("node").address = "h:2".into();
        assert_eq!(other.version, copy.version);
        assert_ne!(other.digest(), copy.digest(), "same version, other table");
    }

    #[test]
    fn every_change_bumps_the_version_and_no_op_does_not() {
        let mut t = table_with_nodes(3);
        assert_eq!(t.version, 3);
        t.add_group("g", "kv", 3).expect("placed");
        assert_eq!(t.version, 4);
        t.add_group("g", "kv", 3).expect("existing");
        assert_eq!(t.version, 4, "re-adding an existing group changes nothing");
        t.mark_down(NodeId(1), 7).expect("known");
        assert_eq!(t.version, 5);
        t.mark_down(NodeId(1), 9).expect("known");
        assert_eq!(t.version, 5, "already down");
        let first_seen = NodeStatus::Down { since_tick: 7 };
        assert_eq!(
            t.nodes[&NodeId(1)].status,
            first_seen,
            "grace is not restarted"
        );
        t.mark_up(NodeId(1)).expect("known");
        t.mark_up(NodeId(1)).expect("known");
        assert_eq!(t.version, 6);
        t.remove_group("g").expect("exists");
        assert_eq!(t.version, 7);
        assert!(t.remove_group("g").is_err());
        assert_eq!(t.version, 7, "a refused change changes nothing");
    }

    #[test]
    fn load_covers_live_nodes_only_and_members_use_the_current_incarnation() {
        let mut t = table_with_nodes(3);
        t.add_group("g", "kv", 1).expect("placed");
        t.add_node(NodeId(4), "n4", "x:4", Incarnation(42))
            .expect("fresh");
        assert_eq!(t.member_of(NodeId(4)), Some(MemberId::new(4, 42)));
        assert_eq!(t.member_of(NodeId(5)), None);
        t.mark_down(NodeId(3), 0).expect("known");
        let load: Vec<(NodeId, usize)> = t.load().into_iter().collect();
        assert_eq!(load, [(NodeId(1), 1), (NodeId(2), 0), (NodeId(4), 0)]);
    }

    #[test]
    fn groups_on_a_node_are_exactly_those_with_a_member_there() {
        let mut t = table_with_nodes(3);
        t.add_group("a", "kv", 1).expect("placed on n1");
        t.add_group("b", "kv", 1).expect("placed on n2");
        t.add_group("c", "kv", 3).expect("placed on all");
        let on = |n| {
            t.groups_on(NodeId(n))
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(on(1), ["a", "c"]);
        assert_eq!(on(2), ["b", "c"]);
        assert_eq!(on(3), ["c"]);
        assert_eq!(on(9), Vec::<&str>::new());
    }

    #[test]
    fn a_new_group_starts_at_epoch_0_on_the_least_loaded_nodes() {
        let mut t = table_with_nodes(5);
        t.add_group("a", "kv", 3).expect("placed");
        let b = t.add_group("b", "kv", 3).expect("placed");
        assert_eq!((nodes_of(b), b.config.epoch), (vec![4, 5, 1], 0));
    }

    #[test]
    fn adding_an_existing_group_again_returns_it_unchanged() {
        let mut t = table_with_nodes(5);
        let first = t.add_group("g", "kv", 3).expect("placed").clone();
        let again = t.add_group("g", "kv", 3).expect("existing");
        assert_eq!(*again, first);
    }

    #[test]
    fn adding_an_existing_name_with_another_kind_or_size_is_refused() {
        let mut t = table_with_nodes(5);
        t.add_group("g", "kv", 3).expect("placed");
        let exists = RoutingError::GroupExists {
            group: "g".into(),
            kind: "kv".into(),
            size: 3,
        };
        assert_eq!(t.add_group("g", "arithmetic", 3), Err(exists.clone()));
        assert_eq!(t.add_group("g", "kv", 5), Err(exists));
    }

    #[test]
    fn a_group_needs_a_supported_size_a_name_and_enough_live_nodes() {
        let mut t = table_with_nodes(3);
        assert_eq!(
            t.add_group("g", "kv", 4),
            Err(RoutingError::InvalidGroupSize { size: 4 })
        );
        assert_eq!(
            t.add_group("g", "kv", 0),
            Err(RoutingError::InvalidGroupSize { size: 0 })
        );
        assert_eq!(t.add_group("", "kv", 1), Err(RoutingError::EmptyGroupName));
        t.mark_down(NodeId(2), 0).expect("known");
        assert_eq!(
            t.add_group("g", "kv", 3),
            Err(RoutingError::NotEnoughNodes {
                needed: 3,
                available: 2
            })
        );
        assert!(t.groups.is_empty());
    }

    #[test]
    fn unknown_names_are_typed_errors() {
        let mut t = table_with_nodes(1);
        let unknown_node = Err(RoutingError::UnknownNode { node: NodeId(9) });
        assert!(matches!(
            t.voters("nope"),
            Err(RoutingError::UnknownGroup { .. })
        ));
        assert_eq!(t.mark_down(NodeId(9), 0), unknown_node);
        assert_eq!(t.mark_up(NodeId(9)), unknown_node);
    }

    #[test]
    fn errors_tell_the_user_what_to_do() {
        let mut t = table_with_nodes(3);
        let refusal = |e: Option<RoutingError>| e.map(|e| e.to_string()).unwrap_or_default();
        let msg = refusal(t.add_group("g", "kv", 5).err());
        assert!(
            msg.contains("only 3 are up") && msg.contains("start more"),
            "{msg}"
        );
        let msg = refusal(t.mark_up(NodeId(7)).err());
        assert!(msg.contains("n7") && msg.contains("join"), "{msg}");
    }

    #[test]
    fn the_table_survives_a_wire_round_trip() {
        let mut t = table_with_nodes(3);
        t.add_group("g", "kv", 3).expect("placed");
        t.mark_down(NodeId(2), 5).expect("known");
        let bytes = rmp_serde::to_vec(&t).expect("encodes");
        let back: RoutingTable = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, t);
    }

    #[test]
    fn a_recorded_configuration_replaces_only_an_older_one() {
        let mut t = RoutingTable::new();
        for id in 1..=4 {
            t.add_node(NodeId(id), format!("n{id}"), "h:1", Incarnation(1))
                .expect("fresh");
        }
        t.add_group("g", "k", 3).expect("placed");
        let mut next = t.groups["g"].config.clone();
        next.epoch += 1;
        next.learners.push(MemberId::new(4, 1));
        let v = t.version;
        assert_eq!(t.record_config("g", next.clone()), Ok(true));
        assert_eq!(t.version, v + 1);
        assert!(t.groups["g"].hosts(NodeId(4)));
        assert_eq!(t.record_config("g", next.clone()), Ok(false), "same epoch");
        let mut stranger = next.clone();
        stranger.epoch += 1;
        stranger.learners.push(MemberId::new(9, 1));
        assert!(matches!(
            t.record_config("g", stranger),
            Err(RoutingError::UnknownNode { .. })
        ));
        assert!(matches!(
            t.record_config("nope", next),
            Err(RoutingError::UnknownGroup { .. })
        ));
    }
}
