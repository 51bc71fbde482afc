//! Which replicas a node must host, as pure functions of the routing table.
//!
//! Invariants: after a node carries out [`plan`], it runs exactly one replica
//! per group assigned to it (with the member, kind and configuration the
//! table gives) and none of any other group, pinned groups (the master)
//! aside; a member of an earlier incarnation of the node is never hosted,
//! because its promises were lost with that incarnation's data.

use crate::group::replica::Assignment;
use dike_core::routing::RoutingTable;
use dike_core::MemberId;
use std::collections::{BTreeMap, BTreeSet};

/// The replicas the table assigns to node `me` in its current incarnation,
/// by group.
pub fn assignments(table: &RoutingTable, me: MemberId) -> BTreeMap<String, Assignment> {
    table
        .groups_on(me.node)
        .filter_map(|g| {
            g.member_on(me.node).filter(|m| *m == me).map(|member| {
                let a = Assignment {
                    group: g.name.clone(),
                    kind: g.kind.clone(),
                    member,
                    generation: g.generation,
                    config: g.config.clone(),
                };
                (g.name.clone(), a)
            })
        })
        .collect()
}

/// Whether a running replica is the one `desired`: same member, kind and
/// creation of the group (a group removed and added again under the same
/// name is a new group, whose replica starts from empty storage).
fn same_replica(running: &Assignment, desired: &Assignment) -> bool {
    running.member == desired.member
        && running.kind == desired.kind
        && running.generation == desired.generation
}

/// What to change to go from `running` to `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Groups whose replica must stop (unassigned, or assigned differently).
    pub stop: Vec<String>,
    /// Replicas to start.
    pub start: Vec<Assignment>,
}

/// The changes that make `running` match `desired`, leaving `pinned`
/// groups alone. A replica whose member or kind changed is stopped and
/// started again; a configuration change alone is not (the replica follows
/// its own log's configuration).
pub fn plan(
    running: &BTreeMap<String, Assignment>,
    desired: &BTreeMap<String, Assignment>,
    pinned: &BTreeSet<String>,
) -> Plan {
    let mut p = Plan::default();
    for (name, a) in running {
        if pinned.contains(name) {
            continue;
        }
        match desired.get(name) {
            Some(d) if same_replica(a, d) => {}
            _ => p.stop.push(name.clone()),
        }
    }
    for (name, d) in desired {
        if pinned.contains(name) {
            continue;
        }
        let keep = running.get(name).is_some_and(|a| same_replica(a, d));
        if !keep {
            p.start.push(d.clone());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use dike_core::{Incarnation, NodeId};

    fn me(n: u64) -> MemberId {
        MemberId::new(n, 1)
    }

    fn table() -> RoutingTable {
        let mut t = RoutingTable::new();
        for id in 1..=3 {
            t.add_node(NodeId(id), format!("n{id}"), "h:1", Incarnation(1))
                .expect("fresh");
        }
        t.add_group("all", "counter", 3).expect("placed");
        t.add_group("one", "counter", 1).expect("placed on n1");
        t
    }

    #[test]
    fn a_node_hosts_exactly_the_groups_with_a_member_on_it() {
        let t = table();
        let on1: Vec<String> = assignments(&t, me(1)).into_keys().collect();
        let on2: Vec<String> = assignments(&t, me(2)).into_keys().collect();
        assert_eq!(on1, ["all", "one"]);
        assert_eq!(on2, ["all"]);
    }

    #[test]
    fn members_of_an_earlier_incarnation_are_not_hosted() {
        let t = table();
        assert!(assignments(&t, MemberId::new(1, 2)).is_empty());
    }

    #[test]
    fn the_plan_starts_the_missing_stops_the_extra_and_keeps_the_rest() {
        let t = table();
        let desired = assignments(&t, me(1));
        let mut running = BTreeMap::new();
        running.insert("all".to_string(), desired["all"].clone());
        let mut gone = desired["all"].clone();
        gone.group = "gone".into();
        running.insert("gone".to_string(), gone);
        let pinned = BTreeSet::from(["dike.master".to_string()]);
        let mut master = desired["all"].clone();
        master.group = "dike.master".into();
        running.insert("dike.master".to_string(), master);
        let p = plan(&running, &desired, &pinned);
        assert_eq!(p.stop, ["gone"]);
        assert_eq!(p.start, [desired["one"].clone()]);
    }

    #[test]
    fn a_group_removed_and_added_again_restarts_its_replica() {
        let mut t = table();
        let running = assignments(&t, me(1));
        t.remove_group("one").expect("known");
        t.add_group("one", "counter", 1)
            .expect("placed on n1 again");
        let desired = assignments(&t, me(1));
        assert_eq!(desired["one"].member, running["one"].member);
        assert!(desired["one"].generation > running["one"].generation);
        let p = plan(&running, &desired, &BTreeSet::new());
        assert_eq!(p.stop, ["one"]);
        assert_eq!(p.start, [desired["one"].clone()]);
    }

    #[test]
    fn a_new_member_on_the_same_node_restarts_the_replica() {
        let t = table();
        let desired = assignments(&t, me(1));
        let mut running = desired.clone();
        if let Some(a) = running.get_mut("one") {
            a.member.incarnation = Incarnation(0);
        }
        let p = plan(&running, &desired, &BTreeSet::new());
        assert_eq!(p.stop, ["one"]);
        assert_eq!(p.start, [desired["one"].clone()]);
    }
}
