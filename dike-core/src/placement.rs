//! Placement of group replicas on nodes: where a new group goes, which
//! replicas move when the cluster is unbalanced, and where the replicas of a
//! dead node go. Pure functions of a [`RoutingTable`]; the master carries the
//! resulting moves out through each group's log ([`crate::rebalance`]) and
//! records each configuration the group chose with
//! [`RoutingTable::record_config`].
//!
//! Invariants: no placement or plan puts two replicas of one group on one
//! node or a new replica on a down or draining node; every move replaces exactly one member
//! of one group; a plan holds at most one move per group, because membership
//! changes go through a group's log one at a time. Ties are broken by node id
//! and group name, so the same table always yields the same plan.

use crate::ids::{MemberId, NodeId};
use crate::routing::{validate_group_size, GroupInfo, RoutingError, RoutingTable};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One membership change: in `group`, member `to` takes the place of `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The group whose membership changes.
    pub group: String,
    /// The member leaving the group.
    pub from: MemberId,
    /// The member joining the group (first as a learner, then as a voter).
    pub to: MemberId,
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.group, self.from, self.to)
    }
}

/// The members for a new group of `size` replicas: `size` distinct live nodes
/// that are not draining, least-loaded first, ties broken by lower node id; except that the first
/// member, the group's preferred leader, is the chosen node that is first in
/// the fewest groups (ties in that same order), so preferred leaders spread
/// over the nodes as groups are added.
pub fn place_new_group(table: &RoutingTable, size: usize) -> Result<Vec<MemberId>, RoutingError> {
    validate_group_size(size)?;
    let by_load = sorted_by_load(&table.placement_load());
    if by_load.len() < size {
        return Err(RoutingError::NotEnoughNodes {
            needed: size,
            available: by_load.len(),
        });
    }
    let mut members: Vec<MemberId> = by_load
        .into_iter()
        .take(size)
        .filter_map(|(_, node)| table.member_of(node))
        .collect();
    let preferred = (0..members.len()).min_by_key(|&i| (table.first_voter_of(members[i].node), i));
    if let Some(i) = preferred {
        members[..=i].rotate_right(1);
    }
    Ok(members)
}

/// A plan that moves replicas from the most-loaded live nodes to the
/// least-loaded ones (typically a node that just joined).
///
/// Each move takes a replica from a node to one holding at least two fewer,
/// so repeating "plan, carry out, plan again" ends with every live node's load
/// within one of every other's. A plan moves each group at most once and may
/// stop short of balance for that reason; the next plan continues. Groups with
/// a member on a node that is not up are left alone: they wait for
/// [`replacements`], and their membership is not changed twice at once.
/// Draining nodes take no part (they keep their replicas).
pub fn rebalance_moves(table: &RoutingTable) -> Vec<Move> {
    let mut load = table.placement_load();
    let mut movable_on: BTreeMap<NodeId, Vec<&GroupInfo>> = BTreeMap::new();
    for group in table.groups.values() {
        if group.config.all_members().all(|m| table.is_up(m.node)) {
            for member in group.config.all_members() {
                movable_on.entry(member.node).or_default().push(group);
            }
        }
    }
    let mut moved: BTreeSet<&str> = BTreeSet::new();
    let mut plan = Vec::new();
    while let Some((group, donor, receiver)) = next_move(&load, &movable_on, &moved) {
        let (Some(from), Some(to)) = (group.member_on(donor), table.member_of(receiver)) else {
            break; // unreachable: the donor hosts the group, the receiver is live
        };
        decrement(&mut load, donor);
        *load.entry(receiver).or_default() += 1;
        moved.insert(&group.name);
        plan.push(Move {
            group: group.name.clone(),
            from,
            to,
        });
    }
    plan
}

/// The next rebalancing step: the first group, in name order, that can go
/// from the most-loaded donor to the least-loaded receiver holding at least
/// two fewer replicas and no replica of the group (ties by lower node id).
fn next_move<'t>(
    load: &BTreeMap<NodeId, usize>,
    movable_on: &BTreeMap<NodeId, Vec<&'t GroupInfo>>,
    moved: &BTreeSet<&str>,
) -> Option<(&'t GroupInfo, NodeId, NodeId)> {
    let receivers = sorted_by_load(load);
    let mut donors = receivers.clone();
    donors.sort_unstable_by_key(|&(l, node)| (Reverse(l), node));
    for &(donor_load, donor) in &donors {
        for &(receiver_load, receiver) in &receivers {
            if receiver_load + 2 > donor_load {
                break; // receivers are in ascending load: none further qualifies
            }
            let candidates = movable_on.get(&donor).into_iter().flatten();
            if let Some(group) = candidates
                .copied()
                .find(|g| !moved.contains(g.name.as_str()) && !g.hosts(receiver))
            {
                return Some((group, donor, receiver));
            }
        }
    }
    None
}

/// A plan that replaces every replica on `dead`: for each group with a member
/// there, a move to the least-loaded live node, not draining, not already
/// hosting the group (ties by lower node id). Groups for which every live node already hosts a
/// replica are skipped; they stay one replica short until a node joins.
pub fn replacements(table: &RoutingTable, dead: NodeId) -> Vec<Move> {
    let mut load = table.placement_load();
    let mut plan = Vec::new();
    for group in table.groups_on(dead) {
        let Some(from) = group.member_on(dead) else {
            continue;
        };
        let target = sorted_by_load(&load)
            .into_iter()
            .map(|(_, node)| node)
            .find(|&node| !group.hosts(node));
        let Some(to) = target.and_then(|node| table.member_of(node)) else {
            tracing::warn!(group = %group.name, dead = dead.0, "no live node can take the replica");
            continue;
        };
        decrement(&mut load, dead);
        *load.entry(to.node).or_default() += 1;
        plan.push(Move {
            group: group.name.clone(),
            from,
            to,
        });
    }
    plan
}

/// The nodes of `load` (those that take new replicas, see
/// [`RoutingTable::placement_load`]) as
/// `(load, node)`, least-loaded first, ties by lower node id.
fn sorted_by_load(load: &BTreeMap<NodeId, usize>) -> Vec<(usize, NodeId)> {
    let mut nodes: Vec<(usize, NodeId)> = load.iter().map(|(&n, &l)| (l, n)).collect();
    nodes.sort_unstable();
    nodes
}

/// One replica fewer on `node`, if it is counted at all (down nodes are not).
fn decrement(load: &mut BTreeMap<NodeId, usize>, node: NodeId) {
    if let Some(count) = load.get_mut(&node) {
        *count = count.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Incarnation;
    use crate::replica::ConfigChange;

    fn table_with_nodes(n: u64) -> RoutingTable {
        let mut t = RoutingTable::new();
        for id in 1..=n {
            join(&mut t, id);
        }
        t
    }

    fn join(t: &mut RoutingTable, id: u64) {
        t.add_node(
            NodeId(id),
            format!("node{id}"),
            format!("h{id}:1"),
            Incarnation(1),
        )
        .expect("fresh node");
    }

    fn nodes(members: &[MemberId]) -> Vec<u64> {
        members.iter().map(|m| m.node.0).collect()
    }

    /// Carries out `mv` the way the master does: the group adds `mv.to` as
    /// a learner, then swaps it in for `mv.from`, and the table records each
    /// configuration the group chose.
    pub(super) fn carry_out_move<'t>(
        t: &'t mut RoutingTable,
        mv: &Move,
    ) -> Result<&'t GroupInfo, String> {
        let swap = ConfigChange::Replace {
            old: mv.from,
            new: mv.to,
        };
        for change in [ConfigChange::AddLearner(mv.to), swap] {
            let group = t.group(&mv.group).ok_or(format!("{mv}: no such group"))?;
            let next = change
                .apply_to(&group.config)
                .map_err(|e| format!("{mv}: {e}"))?;
            t.record_config(&mv.group, next)
                .map_err(|e| format!("{mv}: {e}"))?;
        }
        t.group(&mv.group).ok_or(format!("{mv}: no such group"))
    }

    fn spread(t: &RoutingTable) -> usize {
        let load = t.load();
        load.values().max().unwrap_or(&0) - load.values().min().unwrap_or(&0)
    }

    #[test]
    fn a_new_group_goes_to_the_least_loaded_nodes_ties_by_node_id() {
        let mut t = table_with_nodes(4);
        assert_eq!(nodes(&place_new_group(&t, 3).expect("room")), [1, 2, 3]);
        t.add_group("a", "kv", 3).expect("placed");
        assert_eq!(nodes(&place_new_group(&t, 3).expect("room")), [4, 1, 2]);
    }

    #[test]
    fn first_members_rotate_over_the_nodes_so_preferred_leaders_spread() {
        let mut t = table_with_nodes(5);
        for g in 0..10 {
            t.add_group(format!("g{g}"), "kv", 5).expect("placed");
        }
        let mut firsts: BTreeMap<NodeId, usize> = BTreeMap::new();
        for g in t.groups.values() {
            assert_eq!(g.config.voters.len(), 5);
            *firsts.entry(g.config.voters[0].node).or_default() += 1;
        }
        assert_eq!(
            firsts.values().copied().collect::<Vec<_>>(),
            [2, 2, 2, 2, 2],
            "each node is the first member of two of ten groups"
        );
    }

    #[test]
    fn a_new_group_never_lands_on_a_down_node() {
        let mut t = table_with_nodes(4);
        t.mark_down(NodeId(1), 0).expect("known");
        assert_eq!(nodes(&place_new_group(&t, 3).expect("room")), [2, 3, 4]);
        assert_eq!(
            place_new_group(&t, 5),
            Err(RoutingError::NotEnoughNodes {
                needed: 5,
                available: 3
            })
        );
    }

    #[test]
    fn no_new_group_lands_on_a_draining_node() {
        let mut t = table_with_nodes(4);
        t.set_draining(NodeId(1), true).expect("known");
        assert_eq!(nodes(&place_new_group(&t, 3).expect("room")), [2, 3, 4]);
        assert_eq!(
            place_new_group(&t, 5),
            Err(RoutingError::NotEnoughNodes {
                needed: 5,
                available: 3
            })
        );
        t.set_draining(NodeId(1), false).expect("known");
        assert_eq!(nodes(&place_new_group(&t, 3).expect("room")), [1, 2, 3]);
    }

    #[test]
    fn no_learner_lands_on_a_draining_node_and_a_draining_node_keeps_its_replicas() {
        let mut t = table_with_nodes(3);
        for g in ["a", "b", "c", "d"] {
            t.add_group(g, "kv", 1).expect("placed");
        }
        // n4 is empty and draining, n5 empty: rebalancing fills n5 only.
        join(&mut t, 4);
        join(&mut t, 5);
        t.set_draining(NodeId(4), true).expect("known");
        let plan = rebalance_moves(&t);
        assert!(!plan.is_empty());
        assert!(plan.iter().all(|mv| mv.to.node == NodeId(5)), "{plan:?}");
        // A dead node's replicas skip the draining node too.
        t.set_draining(NodeId(5), true).expect("known");
        t.mark_down(NodeId(1), 0).expect("known");
        let plan = replacements(&t, NodeId(1));
        assert!(
            plan.iter().all(|mv| ![4, 5].contains(&mv.to.node.0)),
            "{plan:?}"
        );
        // A draining node gives up nothing by rebalancing.
        let mut t = table_with_nodes(2);
        for g in ["a", "b", "c", "d"] {
            t.add_group(g, "kv", 1).expect("placed");
        }
        join(&mut t, 3);
        t.set_draining(NodeId(1), true).expect("known");
        assert!(
            rebalance_moves(&t)
                .iter()
                .all(|mv| mv.from.node != NodeId(1)),
            "n1 keeps its replicas"
        );
    }

    #[test]
    fn a_balanced_cluster_needs_no_moves() {
        let mut t = table_with_nodes(3);
        for g in ["a", "b", "c", "d"] {
            t.add_group(g, "kv", 1).expect("placed");
        }
        assert_eq!(spread(&t), 1);
        assert_eq!(rebalance_moves(&t), []);
    }

    #[test]
    fn replicas_move_from_the_most_loaded_nodes_to_a_newly_joined_one() {
        let mut t = table_with_nodes(3);
        for g in ["a", "b", "c"] {
            t.add_group(g, "kv", 3).expect("placed");
        }
        join(&mut t, 4);
        let plan = rebalance_moves(&t);
        // 9 replicas on 4 nodes: two move to n4, one from each of n1 and n2.
        assert_eq!(
            plan,
            [
                Move {
                    group: "a".into(),
                    from: MemberId::new(1, 1),
                    to: MemberId::new(4, 1)
                },
                Move {
                    group: "b".into(),
                    from: MemberId::new(2, 1),
                    to: MemberId::new(4, 1)
                },
            ]
        );
        for mv in &plan {
            carry_out_move(&mut t, mv).expect("valid move");
        }
        assert_eq!(spread(&t), 1);
        assert_eq!(rebalance_moves(&t), []);
    }

    #[test]
    fn a_plan_moves_each_group_at_most_once() {
        let mut t = table_with_nodes(1);
        for g in ["a", "b", "c", "d"] {
            t.add_group(g, "kv", 1).expect("placed on n1");
        }
        for id in 2..=4 {
            join(&mut t, id);
        }
        // "a" is still first on n1 in the table the plan is made from; once
        // planned it must not be picked again.
        let plan = rebalance_moves(&t);
        let groups: Vec<&str> = plan.iter().map(|mv| mv.group.as_str()).collect();
        assert_eq!(groups, ["a", "b", "c"]);
        assert_eq!(
            nodes(&plan.iter().map(|mv| mv.to).collect::<Vec<_>>()),
            [2, 3, 4]
        );
    }

    #[test]
    fn rebalancing_leaves_groups_with_a_down_member_to_replacement() {
        let mut t = table_with_nodes(3);
        t.add_group("a", "kv", 3).expect("placed");
        t.add_group("b", "kv", 1).expect("placed on n1");
        t.mark_down(NodeId(3), 0).expect("known");
        join(&mut t, 4);
        join(&mut t, 5);
        let plan = rebalance_moves(&t);
        assert!(plan.iter().all(|mv| mv.group != "a"), "{plan:?}");
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].from, MemberId::new(1, 1));
    }

    #[test]
    fn replacements_go_to_the_least_loaded_live_node_outside_the_group() {
        let mut t = table_with_nodes(5);
        t.add_group("a", "kv", 3).expect("on n1 n2 n3");
        t.add_group("b", "kv", 1).expect("on n4");
        t.mark_down(NodeId(2), 3).expect("known");
        // n5 is empty; n4 holds one replica; n2 is down.
        let plan = replacements(&t, NodeId(2));
        assert_eq!(
            plan,
            [Move {
                group: "a".into(),
                from: MemberId::new(2, 1),
                to: MemberId::new(5, 1)
            }]
        );
    }

    #[test]
    fn replacements_of_one_dead_node_spread_over_the_live_ones() {
        let mut t = table_with_nodes(2);
        for g in ["a", "b", "c", "d"] {
            t.add_group(g, "kv", 1).expect("placed");
        }
        join(&mut t, 3);
        join(&mut t, 4);
        t.mark_down(NodeId(1), 0).expect("known");
        let plan = replacements(&t, NodeId(1));
        assert_eq!(
            nodes(&plan.iter().map(|mv| mv.to).collect::<Vec<_>>()),
            [3, 4]
        );
    }

    #[test]
    fn replacements_skip_a_group_every_live_node_already_hosts() {
        let mut t = table_with_nodes(3);
        t.add_group("a", "kv", 3).expect("placed");
        t.mark_down(NodeId(1), 0).expect("known");
        assert_eq!(replacements(&t, NodeId(1)), []);
        assert_eq!(
            replacements(&t, NodeId(9)),
            [],
            "an unknown node hosts nothing"
        );
    }

    #[test]
    fn the_same_table_always_gives_the_same_plan() {
        let mut t = table_with_nodes(2);
        for g in 0..10 {
            t.add_group(format!("g{g}"), "kv", 1).expect("placed");
        }
        join(&mut t, 3);
        join(&mut t, 4);
        let copy: RoutingTable = t.clone();
        assert_eq!(rebalance_moves(&t), rebalance_moves(&copy));
        assert_eq!(replacements(&t, NodeId(1)), replacements(&copy, NodeId(1)));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::ids::Incarnation;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// A cluster grown the way real ones are: some nodes join (a few of them
    /// briefly down), groups are placed, more nodes join, some nodes die.
    #[derive(Clone, Debug)]
    struct Scenario {
        first: u64,
        total: u64,
        sizes: Vec<usize>,
        down_while_placing: Vec<bool>,
        down_at_end: Vec<bool>,
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        (1..=12u64).prop_flat_map(|total| {
            (
                1..=total,
                vec(select(vec![1usize, 3, 5]), 0..=40),
                vec(any::<bool>(), 12),
                vec(any::<bool>(), 12),
            )
                .prop_map(move |(first, sizes, down_while_placing, down_at_end)| {
                    Scenario {
                        first,
                        total,
                        sizes,
                        down_while_placing,
                        down_at_end,
                    }
                })
        })
    }

    fn join(t: &mut RoutingTable, id: u64) -> Result<(), TestCaseError> {
        t.add_node(
            NodeId(id),
            format!("node{id}"),
            format!("h{id}:1"),
            Incarnation(id * 7),
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        Ok(())
    }

    fn flag(flags: &[bool], id: u64) -> bool {
        flags.get((id - 1) as usize).copied().unwrap_or(false)
    }

    /// Builds the scenario's table with every node up, checking each placement.
    fn grow(s: &Scenario) -> Result<RoutingTable, TestCaseError> {
        let mut t = RoutingTable::new();
        for id in 1..=s.first {
            join(&mut t, id)?;
            if flag(&s.down_while_placing, id) {
                t.mark_down(NodeId(id), 0)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        for (i, &size) in s.sizes.iter().enumerate() {
            match t.add_group(format!("g{i}"), "kv", size) {
                Ok(g) => {
                    let members = g.config.voters.clone();
                    prop_assert_eq!(members.len(), size);
                    for m in &members {
                        prop_assert!(t.is_up(m.node), "placed on down node {m}");
                        prop_assert_eq!(Some(*m), t.member_of(m.node));
                    }
                }
                Err(RoutingError::NotEnoughNodes { needed, available }) => {
                    prop_assert_eq!(needed, size);
                    prop_assert!(available < size && available == t.live_nodes().count());
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            assert_no_doubled_replicas(&t)?;
        }
        for id in 1..=s.first {
            t.mark_up(NodeId(id))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        for id in s.first + 1..=s.total {
            join(&mut t, id)?;
        }
        Ok(t)
    }

    fn kill(t: &mut RoutingTable, s: &Scenario) -> Result<Vec<NodeId>, TestCaseError> {
        let dead: Vec<NodeId> = (1..=s.total)
            .filter(|&id| flag(&s.down_at_end, id))
            .map(NodeId)
            .collect();
        for &node in &dead {
            t.mark_down(node, 1)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        Ok(dead)
    }

    fn assert_no_doubled_replicas(t: &RoutingTable) -> Result<(), TestCaseError> {
        for g in t.groups.values() {
            let on: BTreeSet<NodeId> = g.config.all_members().map(|m| m.node).collect();
            prop_assert_eq!(
                on.len(),
                g.config.all_members().count(),
                "group {} doubled: {:?}",
                g.name,
                g.config
            );
            prop_assert_eq!(g.config.voters.len(), g.size);
        }
        Ok(())
    }

    /// Carries out a plan, checking that it moves each group at most once and
    /// that every move keeps all but one member, hence a majority.
    fn carry_out(t: &mut RoutingTable, plan: &[Move]) -> Result<(), TestCaseError> {
        let mut seen = BTreeSet::new();
        for mv in plan {
            prop_assert!(
                seen.insert(mv.group.clone()),
                "group {} moved twice in one plan",
                mv.group
            );
            prop_assert!(
                t.is_up(mv.to.node),
                "move {mv} targets a node that is not up"
            );
            let before = t.group(&mv.group).map(|g| g.config.clone());
            let after = super::tests::carry_out_move(t, mv).map_err(TestCaseError::fail)?;
            let (Some(before), size) = (before, after.size) else {
                return Err(TestCaseError::fail("group vanished"));
            };
            let kept = after
                .config
                .voters
                .iter()
                .filter(|m| before.voters.contains(m))
                .count();
            prop_assert_eq!(kept, size - 1, "{} changed more than one member", mv);
            // A single replica is handed over whole (learner first); any
            // larger group keeps a majority of its old members throughout.
            prop_assert!(
                size == 1 || kept >= before.quorum(),
                "{} loses a majority",
                mv
            );
            // Two changes: the learner added, then swapped in.
            prop_assert_eq!(after.config.epoch, before.epoch + 2);
            assert_no_doubled_replicas(t)?;
        }
        Ok(())
    }

    /// Plans and carries out rebalancing until the plan is empty, failing if
    /// that takes more rounds than the bound below.
    fn rebalance_until_done(t: &mut RoutingTable) -> Result<(), TestCaseError> {
        // Each move lowers the sum of squared loads by at least 2, so this
        // bounds the number of moves, hence of rounds.
        let bound = t.load().values().map(|l| l * l).sum::<usize>() / 2 + 1;
        for _ in 0..=bound {
            let plan = rebalance_moves(t);
            if plan.is_empty() {
                return Ok(());
            }
            carry_out(t, &plan)?;
        }
        Err(TestCaseError::fail(format!(
            "rebalancing did not converge in {bound} rounds"
        )))
    }

    fn assert_balanced(t: &RoutingTable) -> Result<(), TestCaseError> {
        let load = t.load();
        let (min, max) = (load.values().min(), load.values().max());
        if let (Some(min), Some(max)) = (min, max) {
            prop_assert!(max - min <= 1, "loads not within one: {:?}", load);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn rebalancing_converges_to_loads_within_one_without_doubling(s in scenario()) {
            let mut t = grow(&s)?;
            rebalance_until_done(&mut t)?;
            assert_balanced(&t)?;
        }

        #[test]
        fn replacing_dead_nodes_then_rebalancing_keeps_every_invariant(s in scenario()) {
            let mut t = grow(&s)?;
            for dead in kill(&mut t, &s)? {
                let plan = replacements(&t, dead);
                for mv in &plan {
                    prop_assert_eq!(mv.from.node, dead);
                    let group = t.group(&mv.group).ok_or_else(|| TestCaseError::fail("no group"))?;
                    prop_assert!(!group.hosts(mv.to.node), "{} targets a node in the group", mv);
                }
                for g in t.groups_on(dead) {
                    if !plan.iter().any(|mv| mv.group == g.name) {
                        prop_assert!(t.live_nodes().all(|n| g.hosts(n.id)), "{} skipped needlessly", g.name);
                    }
                }
                carry_out(&mut t, &plan)?;
            }
            rebalance_until_done(&mut t)?;
            assert_balanced(&t)?;
        }

        #[test]
        fn plans_depend_only_on_the_table(s in scenario()) {
            let (mut a, mut b) = (grow(&s)?, grow(&s)?);
            prop_assert_eq!(rebalance_moves(&a), rebalance_moves(&b));
            let dead = kill(&mut a, &s)?;
            kill(&mut b, &s)?;
            for node in dead {
                prop_assert_eq!(replacements(&a, node), replacements(&b, node));
            }
        }
    }
}
