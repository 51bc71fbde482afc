//! Carrying out placement one membership change at a time: which change a
//! group needs next so that replicas move to a new node or away from a dead
//! one. Pure functions of the routing table and a group's configuration; the
//! master's rebalancer proposes the changes in each group's own log.
//!
//! A move of one replica is two changes: `AddLearner(to)` (the new member
//! receives the log, snapshot first), then, once it has caught up,
//! `Replace { old, new: to }`. Between the two the group has a learner, and
//! its next step is decided from its configuration alone, so a master that
//! takes over halfway (or a lost answer) just carries on.
//!
//! Invariants: no change adds or removes voters on its own (a `Replace`
//! swaps one voter for a caught-up learner, a `Remove` only drops a
//! learner), so no step leaves a configuration with fewer live voters than
//! the one before it; a learner is only ever placed on a live node that does
//! not host the group; a group changes at most once at a time.

use crate::config::Config;
use crate::ids::{MemberId, NodeId};
use crate::placement;
use crate::replica::ConfigChange;
use crate::routing::{GroupInfo, RoutingTable};
use std::collections::{BTreeMap, BTreeSet};

/// The nodes of `table` whose replicas are replaced: those being removed
/// by the operator, and those down since at least `grace` seconds before
/// `now` (the observer's clock, seconds).
pub fn dead_nodes(table: &RoutingTable, now: u64, grace: u64) -> BTreeSet<NodeId> {
    table
        .nodes
        .values()
        .filter(|n| {
            n.removing
                || table
                    .down_since(n.id)
                    .is_some_and(|since| now.saturating_sub(since) >= grace)
        })
        .map(|n| n.id)
        .collect()
}

/// The nodes of `dead` (see [`dead_nodes`]) that host no replica any more,
/// except those in `keep` (the master nodes, whose master replica is not in
/// the table): they leave the table. Each comes with whether its return is
/// refused, which is so for nodes the operator removed; a node that was
/// only down long may join again later as if new.
pub fn nodes_to_forget(
    table: &RoutingTable,
    dead: &BTreeSet<NodeId>,
    keep: &BTreeSet<NodeId>,
) -> Vec<(NodeId, bool)> {
    dead.iter()
        .filter(|n| !keep.contains(n) && table.groups_on(**n).next().is_none())
        .filter_map(|&n| table.node(n).map(|info| (n, info.removing)))
        .collect()
}

/// The change that finishes a move in flight in a group whose configuration
/// (as the group's leader knows it) is `config` and whose intended size is
/// `size`, or `None` when no learner is waiting.
///
/// Learners on nodes that are down or being removed are dropped (they
/// cannot catch up, or would have to move again), as are all but the first
/// learner. The first learner then takes the place of
/// the voter that should leave: one on a dead node, else one on a node that
/// is down, else the one on the most-loaded node (ties: higher node id). A
/// group with fewer voters than its size promotes the learner instead.
pub fn finish_move(
    table: &RoutingTable,
    config: &Config,
    size: usize,
    dead: &BTreeSet<NodeId>,
) -> Option<ConfigChange> {
    let takes = |node| table.node(node).is_some_and(|n| n.takes_new_replicas());
    if let Some(&stranded) = config.learners.iter().find(|l| !takes(l.node)) {
        return Some(ConfigChange::Remove(stranded));
    }
    if let [_, .., last] = config.learners.as_slice() {
        return Some(ConfigChange::Remove(*last));
    }
    let &new = config.learners.first()?;
    if config.voters.len() < size {
        return Some(ConfigChange::Promote(new));
    }
    let load = table.load();
    let old = config.voters.iter().copied().max_by_key(|v| {
        (
            dead.contains(&v.node),
            !table.is_up(v.node),
            load.get(&v.node).copied().unwrap_or(0),
            v.node,
        )
    })?;
    Some(ConfigChange::Replace { old, new })
}

/// New moves to start: for every group without a move in flight, the
/// learner to add. Replicas on dead nodes come first (to the least-loaded
/// live node not hosting the group), then the rebalancing plan
/// ([`placement::rebalance_moves`]) for the rest. At most one move per group.
pub fn start_moves(table: &RoutingTable, dead: &BTreeSet<NodeId>) -> Vec<(String, MemberId)> {
    let idle = |g: &GroupInfo| g.config.learners.is_empty();
    let mut moves: BTreeMap<String, MemberId> = BTreeMap::new();
    for &node in dead {
        for mv in placement::replacements(table, node) {
            let is_idle = table.group(&mv.group).is_some_and(idle);
            if is_idle && !moves.contains_key(&mv.group) {
                moves.insert(mv.group, mv.to);
            }
        }
    }
    for mv in placement::rebalance_moves(table) {
        let is_idle = table.group(&mv.group).is_some_and(idle);
        if is_idle && !moves.contains_key(&mv.group) {
            moves.insert(mv.group, mv.to);
        }
    }
    moves.into_iter().collect()
}

/// The next change of the master group, whose configuration (as its leader
/// knows it) is `config`, towards the masters the operator wants
/// ([`crate::routing::MasterGroup::wanted`]), or `None` when it has them
/// (or none were asked for).
///
/// In order: a learner that is not wanted, or whose node is down, is
/// dropped; a learner takes the place of a voter that is not wanted (one
/// on a down node first), or is promoted if none is left to replace; a
/// wanted node that is up and has no member is added as a learner (the
/// member of its current incarnation); and, last, a voter that is not
/// wanted is removed, never the last voter. So a replacement (`add` and
/// `remove` together) is one `Replace` once the new master has caught up,
/// and the group never runs on fewer voters than the operator left it.
pub fn next_master_change(table: &RoutingTable, config: &Config) -> Option<ConfigChange> {
    let wanted = table.masters.wanted.as_ref()?;
    let wants = |m: &MemberId| wanted.contains(&m.node);
    let stranded = |m: &&MemberId| !wants(m) || !table.is_up(m.node);
    if let Some(&learner) = config.learners.iter().find(stranded) {
        return Some(ConfigChange::Remove(learner));
    }
    let leaving = config
        .voters
        .iter()
        .copied()
        .filter(|v| !wants(v))
        .max_by_key(|v| (!table.is_up(v.node), v.node));
    if let Some(&new) = config.learners.first() {
        return Some(match leaving {
            Some(old) => ConfigChange::Replace { old, new },
            None => ConfigChange::Promote(new),
        });
    }
    let missing = wanted
        .iter()
        .filter(|&&n| !config.all_members().any(|m| m.node == n))
        .filter_map(|&n| table.node(n))
        .find(|n| n.is_up() && !n.removing);
    if let Some(node) = missing {
        return Some(ConfigChange::AddLearner(node.member()));
    }
    match leaving {
        Some(old) if config.voters.len() > 1 => Some(ConfigChange::Remove(old)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Incarnation;
    use crate::routing::RoutingError;

    fn table(nodes: u64) -> RoutingTable {
        let mut t = RoutingTable::new();
        for id in 1..=nodes {
            t.add_node(NodeId(id), format!("n{id}"), "h:1", Incarnation(1))
                .expect("fresh");
        }
        t
    }

    fn m(node: u64) -> MemberId {
        MemberId::new(node, 1)
    }

    /// Applies `change` to the table's copy of `group` (what the master
    /// records once the group has chosen it).
    fn apply(t: &mut RoutingTable, group: &str, change: ConfigChange) {
        let next = change
            .apply_to(&t.groups[group].config)
            .expect("the change fits the configuration");
        assert!(t.record_config(group, next).expect("known nodes"));
    }

    /// Runs the rebalancer's loop on the table alone until nothing is left
    /// to do; returns how many changes it made.
    fn settle(t: &mut RoutingTable, dead: &BTreeSet<NodeId>) -> usize {
        let mut changes = 0;
        for _ in 0..1000 {
            let mut moved = false;
            let names: Vec<String> = t.groups.keys().cloned().collect();
            for g in &names {
                let info = t.groups[g].clone();
                if let Some(c) = finish_move(t, &info.config, info.size, dead) {
                    apply(t, g, c);
                    changes += 1;
                    moved = true;
                }
            }
            for (g, to) in start_moves(t, dead) {
                apply(t, &g, ConfigChange::AddLearner(to));
                changes += 1;
                moved = true;
            }
            if !moved {
                return changes;
            }
        }
        panic!("the rebalancer did not settle in 1000 rounds");
    }

    /// Runs the master changes on `config` until none is left; returns the
    /// changes made.
    fn settle_masters(t: &RoutingTable, mut config: Config) -> (Config, Vec<ConfigChange>) {
        let mut made = Vec::new();
        while let Some(change) = next_master_change(t, &config) {
            config = change.apply_to(&config).expect("the change fits");
            made.push(change);
            assert!(
                made.len() < 20,
                "the master changes do not settle: {made:?}"
            );
        }
        (config, made)
    }

    fn masters(nodes: &[u64]) -> Config {
        Config::initial(nodes.iter().map(|&n| MemberId::new(n, 0)).collect())
    }

    #[test]
    fn replacing_a_dead_master_adds_the_new_one_as_a_learner_then_swaps_them_in_one_change() {
        let mut t = table(4);
        t.record_master_config(masters(&[1, 2, 3]));
        t.mark_down(NodeId(3), 1).expect("known");
        t.change_masters(Some(NodeId(4)), Some(NodeId(3)))
            .expect("wanted");
        let (config, made) = settle_masters(&t, masters(&[1, 2, 3]));
        assert_eq!(
            made,
            [
                ConfigChange::AddLearner(m(4)),
                ConfigChange::Replace {
                    old: MemberId::new(3, 0),
                    new: m(4)
                }
            ]
        );
        assert_eq!(config.voters.len(), 3, "never four voters");
    }

    #[test]
    fn adding_masters_promotes_and_removing_one_never_removes_the_last() {
        let mut t = table(3);
        t.record_master_config(masters(&[1]));
        t.change_masters(Some(NodeId(2)), None).expect("wanted");
        t.change_masters(Some(NodeId(3)), None).expect("wanted");
        let (config, made) = settle_masters(&t, masters(&[1]));
        assert!(made.contains(&ConfigChange::Promote(m(2))), "{made:?}");
        let mut nodes: Vec<u64> = config.voters.iter().map(|v| v.node.0).collect();
        nodes.sort_unstable();
        assert_eq!(nodes, [1, 2, 3]);
        assert!(config.learners.is_empty());
        t.change_masters(None, Some(NodeId(1))).expect("wanted");
        let (after, made) = settle_masters(&t, config);
        assert_eq!(made, [ConfigChange::Remove(MemberId::new(1, 0))]);
        assert_eq!(after.voters.len(), 2);
    }

    #[test]
    fn a_learner_for_a_master_that_went_down_or_is_no_longer_wanted_is_dropped() {
        let mut t = table(4);
        t.record_master_config(masters(&[1, 2, 3]));
        t.change_masters(Some(NodeId(4)), None).expect("wanted");
        let with_learner = ConfigChange::AddLearner(m(4))
            .apply_to(&masters(&[1, 2, 3]))
            .expect("fits");
        t.mark_down(NodeId(4), 1).expect("known");
        assert_eq!(
            next_master_change(&t, &with_learner),
            Some(ConfigChange::Remove(m(4)))
        );
        assert_eq!(
            next_master_change(&t, &masters(&[1, 2, 3])),
            None,
            "a wanted master that is down waits"
        );
    }

    #[test]
    fn without_wanted_masters_the_master_group_is_left_alone() {
        let t = table(4);
        assert_eq!(next_master_change(&t, &masters(&[1, 2, 3])), None);
    }

    fn loads(t: &RoutingTable) -> Vec<usize> {
        t.load().into_values().collect()
    }

    #[test]
    fn a_joining_node_receives_replicas_until_loads_are_within_one() {
        let mut t = table(5);
        for i in 0..16 {
            t.add_group(format!("g{i}"), "k", 3).expect("placed");
        }
        t.add_node(NodeId(6), "n6", "h:1", Incarnation(1))
            .expect("fresh");
        let changes = settle(&mut t, &BTreeSet::new());
        let l = loads(&t);
        assert!(changes > 0);
        assert!(l.iter().max().expect("nodes") - l.iter().min().expect("nodes") <= 1);
        assert!(t.groups.values().all(|g| g.config.learners.is_empty()));
        assert!(t.groups.values().all(|g| g.config.voters.len() == 3));
    }

    #[test]
    fn replicas_on_a_dead_node_move_to_live_nodes() {
        let mut t = table(6);
        for i in 0..6 {
            t.add_group(format!("g{i}"), "k", 5).expect("placed");
        }
        t.mark_down(NodeId(2), 100).expect("known");
        let dead = dead_nodes(&t, 130, 30);
        assert_eq!(dead, BTreeSet::from([NodeId(2)]));
        assert!(dead_nodes(&t, 129, 30).is_empty(), "still in its grace");
        settle(&mut t, &dead);
        assert_eq!(t.groups_on(NodeId(2)).count(), 0);
        assert!(t.groups.values().all(|g| g.config.voters.len() == 5));
    }

    #[test]
    fn a_removed_node_gives_up_every_replica_then_leaves_and_its_data_is_refused() {
        let mut t = table(5);
        for i in 0..8 {
            t.add_group(format!("g{i}"), "k", 3).expect("placed");
        }
        let n2 = NodeId(2);
        let hosted = t.groups_on(n2).count();
        assert!(hosted > 0);
        let (info, left) = t.remove_node(n2).expect("known");
        assert_eq!((info.name.as_str(), left), ("n2", hosted));
        assert!(
            !t.placement_load().contains_key(&n2),
            "takes no new replicas"
        );
        let dead = dead_nodes(&t, 0, 60);
        assert_eq!(
            dead,
            BTreeSet::from([n2]),
            "replaced without a grace period"
        );
        assert!(nodes_to_forget(&t, &dead, &BTreeSet::new()).is_empty());
        settle(&mut t, &dead);
        assert_eq!(t.groups_on(n2).count(), 0);
        assert!(t.groups.values().all(|g| g.config.voters.len() == 3));
        assert_eq!(
            nodes_to_forget(&t, &dead, &BTreeSet::from([n2])),
            vec![],
            "a master node is kept"
        );
        assert_eq!(
            nodes_to_forget(&t, &dead, &BTreeSet::new()),
            vec![(n2, true)]
        );
        let (_, left) = t.remove_node(n2).expect("still known");
        assert_eq!(left, 0);
        assert!(t.node(n2).is_none());
        let back = t.add_node(n2, "n2", "h:1", Incarnation(1));
        assert!(
            matches!(back, Err(RoutingError::NodeWasRemoved { ref name }) if name == "n2"),
            "{back:?}"
        );
        t.add_node(n2, "n2", "h:1", Incarnation(2))
            .expect("an empty data dir joins as a new node");
        assert!(t.removed.is_empty());
    }

    #[test]
    fn a_learner_on_a_node_being_removed_is_dropped() {
        let mut t = table(4);
        t.add_group("g", "k", 3).expect("placed");
        apply(&mut t, "g", ConfigChange::AddLearner(m(4)));
        t.remove_node(NodeId(4)).expect("known");
        let config = t.groups["g"].config.clone();
        let change = finish_move(&t, &config, 3, &BTreeSet::new());
        assert_eq!(change, Some(ConfigChange::Remove(m(4))));
    }

    #[test]
    fn a_dead_node_that_hosts_nothing_any_more_leaves_and_may_come_back() {
        let mut t = table(4);
        t.add_group("g", "k", 3).expect("placed");
        let down = t.groups["g"].config.voters[0].node;
        t.mark_down(down, 10).expect("known");
        let dead = dead_nodes(&t, 100, 60);
        settle(&mut t, &dead);
        assert_eq!(
            nodes_to_forget(&t, &dead, &BTreeSet::new()),
            vec![(down, false)]
        );
        t.forget_node(down, false).expect("hosts nothing");
        assert!(t.removed.is_empty());
        t.add_node(down, format!("n{}", down.0), "h:1", Incarnation(1))
            .expect("a replaced node joins again");
    }

    #[test]
    fn a_node_that_hosts_a_replica_is_not_forgotten() {
        let mut t = table(3);
        t.add_group("g", "k", 3).expect("placed");
        let err = t.forget_node(NodeId(1), false);
        assert!(
            matches!(err, Err(RoutingError::StillHosts { .. })),
            "{err:?}"
        );
        assert!(t.node(NodeId(1)).is_some());
    }

    #[test]
    fn a_move_in_flight_is_finished_from_the_configuration_alone() {
        let mut t = table(4);
        t.add_group("g", "k", 3).expect("placed");
        let config = t.groups["g"].config.clone();
        assert_eq!(finish_move(&t, &config, 3, &BTreeSet::new()), None);
        apply(&mut t, "g", ConfigChange::AddLearner(m(4)));
        let config = t.groups["g"].config.clone();
        let change = finish_move(&t, &config, 3, &BTreeSet::new());
        assert!(matches!(change, Some(ConfigChange::Replace { new, .. }) if new == m(4)));
    }

    #[test]
    fn the_voter_on_a_down_node_is_the_one_replaced() {
        let mut t = table(4);
        t.add_group("g", "k", 3).expect("placed");
        apply(&mut t, "g", ConfigChange::AddLearner(m(4)));
        t.mark_down(NodeId(1), 5).expect("known");
        let config = t.groups["g"].config.clone();
        let change = finish_move(&t, &config, 3, &BTreeSet::new());
        assert_eq!(
            change,
            Some(ConfigChange::Replace {
                old: m(1),
                new: m(4)
            })
        );
    }

    #[test]
    fn a_learner_on_a_down_node_and_extra_learners_are_removed() {
        let mut t = table(5);
        t.add_group("g", "k", 3).expect("placed");
        apply(&mut t, "g", ConfigChange::AddLearner(m(4)));
        apply(&mut t, "g", ConfigChange::AddLearner(m(5)));
        let config = t.groups["g"].config.clone();
        let change = finish_move(&t, &config, 3, &BTreeSet::new());
        assert_eq!(change, Some(ConfigChange::Remove(m(5))));
        t.mark_down(NodeId(4), 1).expect("known");
        let change = finish_move(&t, &config, 3, &BTreeSet::new());
        assert_eq!(change, Some(ConfigChange::Remove(m(4))));
    }

    #[test]
    fn a_group_short_of_voters_promotes_its_learner() {
        let mut t = table(4);
        t.add_group("g", "k", 3).expect("placed");
        apply(&mut t, "g", ConfigChange::Remove(m(1)));
        apply(&mut t, "g", ConfigChange::AddLearner(m(4)));
        let config = t.groups["g"].config.clone();
        let change = finish_move(&t, &config, 3, &BTreeSet::new());
        assert_eq!(change, Some(ConfigChange::Promote(m(4))));
    }

    #[test]
    fn no_move_starts_in_a_group_that_has_one_in_flight() {
        let mut t = table(3);
        t.add_group("a", "k", 3).expect("placed");
        t.add_group("b", "k", 3).expect("placed");
        for id in 4..=6 {
            t.add_node(NodeId(id), format!("n{id}"), "h:1", Incarnation(1))
                .expect("fresh");
        }
        apply(&mut t, "a", ConfigChange::AddLearner(m(4)));
        let moves = start_moves(&t, &BTreeSet::new());
        assert!(moves.iter().any(|(g, _)| g == "b"), "{moves:?}");
        assert!(moves.iter().all(|(g, _)| g != "a"), "{moves:?}");
    }
}
