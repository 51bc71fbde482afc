//! The master: a Dike group of a built-in kind whose state is the cluster's
//! [`RoutingTable`]. It runs on the master nodes (the `--masters` seeds, then whatever `dike master` made them); every node's
//! dispatcher reads the table from it and sends it joins and group changes.
//!
//! Invariants: the table changes only through commands applied in the
//! master group's log, so every master replica holds the same table;
//! `Join` of a known node and `AddGroup` of an existing name change nothing
//! and answer with the existing entry, so clients may retry them.
//!
//! The table follows each group's membership through `SetConfig`: the
//! master's rebalancer ([`crate::master::rebalancer`]) proposes a change in the
//! group's own log and records the configuration the group chose; a
//! configuration older than the recorded one changes nothing.

pub mod rebalancer;

use crate::error::DikeError;
use crate::node::config::node_id_of;
use crate::node::config::MASTER_GROUP;
use dike_core::routing::{GroupInfo, MasterGroup, NodeInfo, RoutingError, RoutingTable};
use dike_core::{Config, GroupContext, Incarnation, NodeId, Outcome, PaxosServer};
use serde::{Deserialize, Serialize};

/// The server kind of the master group.
pub const MASTER_KIND: &str = "dike.master";

/// A request to the master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MasterRequest {
    /// A node registers itself (its id is derived from its name).
    Join {
        /// The node's name.
        name: String,
        /// Where its cluster listener is reachable.
        address: String,
        /// The life of its data directory.
        incarnation: u64,
    },
    /// Creates a group on the least-loaded live nodes.
    AddGroup {
        /// The group's name.
        name: String,
        /// The server kind.
        kind: String,
        /// Number of replicas.
        size: usize,
    },
    /// Deletes a group.
    RemoveGroup {
        /// The group's name.
        name: String,
    },
    /// A node was seen down (`since` is the observer's clock, in seconds).
    NodeDown {
        /// The node.
        node: NodeId,
        /// When it was first seen down.
        since: u64,
    },
    /// A node is up again.
    NodeUp {
        /// The node.
        node: NodeId,
    },
    /// A group chose a new configuration (recorded if newer).
    SetConfig {
        /// The group.
        group: String,
        /// The configuration its leader reported.
        config: Config,
    },
    /// The operator removes a node (`dike node remove`): it takes no new
    /// replicas, the rebalancer moves its replicas away, and once it hosts
    /// none it leaves the table and its data dir may not rejoin. Repeating
    /// it is harmless; it answers how far the removal is.
    RemoveNode {
        /// The node.
        node: NodeId,
    },
    /// A node down longer than the grace period whose replicas were all
    /// replaced leaves the table (sent by the rebalancer). It may join
    /// again later, as if new.
    ForgetNode {
        /// The node.
        node: NodeId,
    },
    /// The whole table (answered as a read-index query).
    GetTable,
    /// The table, unless the asker's copy is the current one: then
    /// [`MasterReply::TableUnchanged`]. A read-index query, like
    /// `GetTable`. Dispatchers refresh with it every second, so an idle
    /// cluster of 10,000 groups does not ship its whole table to every node
    /// that often.
    GetTableIfChanged {
        /// The version of the asker's copy.
        version: u64,
        /// Its [`RoutingTable::digest`].
        digest: u64,
    },
    /// Marks a node draining or not (`dike node drain`/`undrain`):
    /// idempotent; an unknown node is refused.
    SetDraining {
        /// The node.
        node: NodeId,
        /// Draining (true) or not.
        draining: bool,
    },
    /// The operator changes the masters (`dike master add|remove|replace`):
    /// `add` becomes a master, `remove` stops being one. Recorded as the
    /// masters wanted ([`dike_core::routing::MasterGroup`]); the rebalancer
    /// changes the master group towards them. Idempotent.
    ChangeMasters {
        /// The node to make a master.
        add: Option<NodeId>,
        /// The master to take out.
        remove: Option<NodeId>,
    },
}

impl MasterRequest {
    /// The request's kind, as its variant is named (`AddGroup`): what an
    /// error names, without the request's contents.
    pub fn kind(&self) -> &'static str {
        match self {
            MasterRequest::Join { .. } => "Join",
            MasterRequest::AddGroup { .. } => "AddGroup",
            MasterRequest::RemoveGroup { .. } => "RemoveGroup",
            MasterRequest::NodeDown { .. } => "NodeDown",
            MasterRequest::NodeUp { .. } => "NodeUp",
            MasterRequest::SetConfig { .. } => "SetConfig",
            MasterRequest::RemoveNode { .. } => "RemoveNode",
            MasterRequest::ForgetNode { .. } => "ForgetNode",
            MasterRequest::GetTable => "GetTable",
            MasterRequest::GetTableIfChanged { .. } => "GetTableIfChanged",
            MasterRequest::SetDraining { .. } => "SetDraining",
            MasterRequest::ChangeMasters { .. } => "ChangeMasters",
        }
    }

    /// Whether the request only reads (a read-index query, never a log
    /// entry).
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            MasterRequest::GetTable | MasterRequest::GetTableIfChanged { .. }
        )
    }
}

/// The master's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MasterReply {
    /// The node was added.
    Joined(NodeInfo),
    /// The node was known already (and is marked up).
    AlreadyKnown(NodeInfo),
    /// The group (new, or existing under that name).
    Group(GroupInfo),
    /// The removed group's last entry.
    Removed(GroupInfo),
    /// The routing table.
    Table(RoutingTable),
    /// The asker's copy of the table is the current one
    /// ([`MasterRequest::GetTableIfChanged`]).
    TableUnchanged,
    /// The change was recorded (or there was nothing to change).
    Done,
    /// A node is being removed and still hosts this many replicas.
    Removing {
        /// The node.
        node: NodeInfo,
        /// Replicas it still hosts.
        replicas: usize,
    },
    /// The node left the table.
    NodeRemoved(NodeInfo),
    /// A join from a data dir the operator removed from the cluster; the
    /// text says what to do.
    WasRemoved(String),
    /// The change was refused, with the reason.
    Refused(String),
    /// The master group's membership ([`MasterRequest::ChangeMasters`]).
    Masters(MasterGroup),
}

impl MasterReply {
    /// The reply's kind, as its variant is named (`Table`): what an error
    /// names, without the reply's contents (a whole routing table, say).
    pub fn kind(&self) -> &'static str {
        match self {
            MasterReply::Joined(_) => "Joined",
            MasterReply::AlreadyKnown(_) => "AlreadyKnown",
            MasterReply::Group(_) => "Group",
            MasterReply::Removed(_) => "Removed",
            MasterReply::Table(_) => "Table",
            MasterReply::TableUnchanged => "TableUnchanged",
            MasterReply::Done => "Done",
            MasterReply::Removing { .. } => "Removing",
            MasterReply::NodeRemoved(_) => "NodeRemoved",
            MasterReply::WasRemoved(_) => "WasRemoved",
            MasterReply::Refused(_) => "Refused",
            MasterReply::Masters(_) => "Masters",
        }
    }

    /// The error for this reply coming as the answer to a request of kind
    /// `request` ([`MasterRequest::kind`]) that it does not answer.
    pub fn unexpected(&self, request: &str) -> DikeError {
        DikeError::UnexpectedReply {
            request: request.to_owned(),
            reply: self.kind().to_owned(),
        }
    }
}

/// The master paxos server. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct MasterServer {
    table: RoutingTable,
    /// The table's digest, computed at the first query that needs it
    /// after a change (every command clears it).
    digest: std::sync::OnceLock<u64>,
}

impl MasterServer {
    /// The table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    fn join(&mut self, name: String, address: String, incarnation: u64) -> MasterReply {
        let id = node_id_of(&name);
        if let Some(known) = self.table.node(id) {
            if known.name == name {
                // A restarted node is marked up, never added twice. If its
                // data is new (a new incarnation), new replicas placed on it
                // use the new incarnation; its members of the old life stay
                // in their groups' configurations, never hosted again, until
                // membership changes replace them.
                if let Some(n) = self.table.nodes.get_mut(&id) {
                    if n.incarnation.0 != incarnation || n.address != address {
                        n.incarnation = Incarnation(incarnation);
                        n.address = address;
                        self.table.version += 1;
                    }
                }
                if let Err(e) = self.table.mark_up(id) {
                    return MasterReply::Refused(e.to_string());
                }
                return MasterReply::AlreadyKnown(self.table.nodes[&id].clone());
            }
        }
        match self
            .table
            .add_node(id, name, address, Incarnation(incarnation))
        {
            Ok(info) => MasterReply::Joined(info.clone()),
            Err(e @ RoutingError::NodeWasRemoved { .. }) => MasterReply::WasRemoved(e.to_string()),
            Err(e) => MasterReply::Refused(e.to_string()),
        }
    }

    fn refused(e: RoutingError) -> MasterReply {
        MasterReply::Refused(e.to_string())
    }
}

impl PaxosServer for MasterServer {
    const KIND: &'static str = MASTER_KIND;
    type Request = MasterRequest;
    type Reply = MasterReply;
    type State = RoutingTable;

    fn init(_ctx: &GroupContext) -> Self {
        MasterServer::default()
    }

    fn restore(table: RoutingTable, _ctx: &GroupContext) -> Self {
        MasterServer {
            table,
            digest: std::sync::OnceLock::new(),
        }
    }

    fn export_state(&self) -> RoutingTable {
        self.table.clone()
    }

    fn handle_call(&mut self, req: MasterRequest) -> Outcome<MasterReply> {
        self.digest = std::sync::OnceLock::new();
        let reply = match req {
            MasterRequest::Join {
                name,
                address,
                incarnation,
            } => self.join(name, address, incarnation),
            MasterRequest::AddGroup { name, kind, size } => {
                match self.table.add_group(name, kind, size) {
                    Ok(g) => MasterReply::Group(g.clone()),
                    Err(e) => Self::refused(e),
                }
            }
            MasterRequest::RemoveGroup { name } => match self.table.remove_group(&name) {
                Ok(g) => MasterReply::Removed(g),
                Err(e) => Self::refused(e),
            },
            MasterRequest::NodeDown { node, since } => match self.table.mark_down(node, since) {
                Ok(()) => MasterReply::Done,
                Err(e) => Self::refused(e),
            },
            MasterRequest::NodeUp { node } => match self.table.mark_up(node) {
                Ok(()) => MasterReply::Done,
                Err(e) => Self::refused(e),
            },
            MasterRequest::SetConfig { group, config } if group == MASTER_GROUP => {
                self.table.record_master_config(config);
                MasterReply::Done
            }
            MasterRequest::SetConfig { group, config } => {
                match self.table.record_config(&group, config) {
                    Ok(_) => MasterReply::Done,
                    Err(e) => Self::refused(e),
                }
            }
            MasterRequest::RemoveNode { node } => match self.table.remove_node(node) {
                Ok((info, 0)) => MasterReply::NodeRemoved(info),
                Ok((info, replicas)) => MasterReply::Removing {
                    node: info,
                    replicas,
                },
                Err(e) => Self::refused(e),
            },
            // Decided from an older table: a node that came back meanwhile
            // stays.
            MasterRequest::ForgetNode { node } if self.table.is_up(node) => MasterReply::Done,
            MasterRequest::ForgetNode { node } => match self.table.forget_node(node, false) {
                Ok(info) => MasterReply::NodeRemoved(info),
                Err(e) => Self::refused(e),
            },
            MasterRequest::GetTable | MasterRequest::GetTableIfChanged { .. } => {
                MasterReply::Table(self.table.clone())
            }
            MasterRequest::SetDraining { node, draining } => {
                match self.table.set_draining(node, draining) {
                    Ok(_) => MasterReply::Done,
                    Err(e) => Self::refused(e),
                }
            }
            MasterRequest::ChangeMasters { add, remove } => {
                match self.table.change_masters(add, remove) {
                    Ok(group) => MasterReply::Masters(group.clone()),
                    Err(e) => Self::refused(e),
                }
            }
        };
        Outcome::reply(reply)
    }

    fn handle_query(&self, req: &MasterRequest) -> Option<MasterReply> {
        match *req {
            MasterRequest::GetTableIfChanged { version, digest }
                if version == self.table.version
                    && digest == *self.digest.get_or_init(|| self.table.digest()) =>
            {
                Some(MasterReply::TableUnchanged)
            }
            MasterRequest::GetTable | MasterRequest::GetTableIfChanged { .. } => {
                Some(MasterReply::Table(self.table.clone()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dike_core::MemberId;

    fn master() -> MasterServer {
        MasterServer::init(&GroupContext {
            group: crate::node::config::MASTER_GROUP.into(),
            kind: MASTER_KIND.into(),
            member: MemberId::new(1, 0),
        })
    }

    fn call(m: &mut MasterServer, req: MasterRequest) -> MasterReply {
        m.handle_call(req).reply
    }

    fn join(name: &str) -> MasterRequest {
        MasterRequest::Join {
            name: name.into(),
            address: format!("{name}:1"),
            incarnation: 7,
        }
    }

    #[test]
    fn joining_twice_answers_already_known_and_marks_the_node_up() {
        let mut m = master();
        assert!(matches!(call(&mut m, join("a")), MasterReply::Joined(_)));
        let id = node_id_of("a");
        call(&mut m, MasterRequest::NodeDown { node: id, since: 3 });
        assert!(!m.table().is_up(id));
        let again = call(&mut m, join("a"));
        assert!(matches!(again, MasterReply::AlreadyKnown(ref n) if n.is_up()));
        assert_eq!(m.table().nodes.len(), 1);
    }

    #[test]
    fn a_node_back_with_new_data_keeps_its_old_members_but_gets_new_ones() {
        let mut m = master();
        for n in ["a", "b", "c"] {
            call(&mut m, join(n));
        }
        let add = |name: &str| MasterRequest::AddGroup {
            name: name.into(),
            kind: "counter".into(),
            size: 3,
        };
        call(&mut m, add("old"));
        let reborn = MasterRequest::Join {
            name: "a".into(),
            address: "a:2".into(),
            incarnation: 8,
        };
        let MasterReply::AlreadyKnown(info) = call(&mut m, reborn) else {
            panic!("known")
        };
        assert_eq!((info.incarnation.0, info.address.as_str()), (8, "a:2"));
        let a = node_id_of("a");
        let old = &m.table().groups["old"];
        assert_eq!(old.member_on(a).map(|m| m.incarnation.0), Some(7));
        call(&mut m, add("new"));
        let new = &m.table().groups["new"];
        assert_eq!(new.member_on(a).map(|m| m.incarnation.0), Some(8));
    }

    #[test]
    fn groups_go_to_distinct_live_nodes_and_an_existing_name_is_returned_not_resized() {
        let mut m = master();
        for n in ["a", "b", "c"] {
            call(&mut m, join(n));
        }
        let add = |size| MasterRequest::AddGroup {
            name: "g".into(),
            kind: "counter".into(),
            size,
        };
        let MasterReply::Group(g) = call(&mut m, add(3)) else {
            panic!("placed")
        };
        let mut nodes: Vec<_> = g.config.voters.iter().map(|v| v.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        assert_eq!(nodes.len(), 3);
        assert_eq!(call(&mut m, add(3)), MasterReply::Group(g));
        assert!(
            matches!(call(&mut m, add(1)), MasterReply::Refused(e) if e.contains("already exists")),
            "another size for an existing name is refused"
        );
    }

    #[test]
    fn too_few_live_nodes_is_refused_not_clamped() {
        let mut m = master();
        call(&mut m, join("a"));
        let reply = call(
            &mut m,
            MasterRequest::AddGroup {
                name: "g".into(),
                kind: "counter".into(),
                size: 3,
            },
        );
        assert!(matches!(reply, MasterReply::Refused(ref r) if r.contains("only 1 are up")));
    }

    #[test]
    fn draining_a_node_is_idempotent_and_keeps_new_groups_off_it() {
        let mut m = master();
        for n in ["a", "b", "c", "d"] {
            call(&mut m, join(n));
        }
        let a = node_id_of("a");
        let drain = |draining| MasterRequest::SetDraining { node: a, draining };
        assert_eq!(call(&mut m, drain(true)), MasterReply::Done);
        let version = m.table().version;
        assert_eq!(call(&mut m, drain(true)), MasterReply::Done, "again: no-op");
        assert_eq!(m.table().version, version);
        assert!(m.table().nodes[&a].draining && m.table().is_up(a));
        let MasterReply::Group(g) = call(
            &mut m,
            MasterRequest::AddGroup {
                name: "g".into(),
                kind: "counter".into(),
                size: 3,
            },
        ) else {
            panic!("placed")
        };
        assert!(!g.hosts(a), "no replica on the draining node");
        assert_eq!(call(&mut m, drain(false)), MasterReply::Done);
        assert!(!m.table().nodes[&a].draining);
    }

    #[test]
    fn draining_an_unknown_node_is_refused() {
        let mut m = master();
        let reply = call(
            &mut m,
            MasterRequest::SetDraining {
                node: node_id_of("ghost"),
                draining: true,
            },
        );
        assert!(
            matches!(reply, MasterReply::Refused(ref r) if r.contains("not in the routing table")),
            "{reply:?}"
        );
    }

    #[test]
    fn a_removed_node_leaves_once_empty_and_its_data_dir_is_refused_but_a_fresh_one_joins() {
        let mut m = master();
        for n in ["a", "b", "c", "d"] {
            call(&mut m, join(n));
        }
        call(
            &mut m,
            MasterRequest::AddGroup {
                name: "g".into(),
                kind: "counter".into(),
                size: 3,
            },
        );
        let on = |m: &MasterServer, n| m.table().groups["g"].hosts(node_id_of(n));
        let busy = ["a", "b", "c", "d"]
            .into_iter()
            .find(|n| on(&m, n))
            .expect("the group is somewhere");
        let remove = MasterRequest::RemoveNode {
            node: node_id_of(busy),
        };
        assert!(matches!(
            call(&mut m, remove.clone()),
            MasterReply::Removing { replicas: 1, .. }
        ));
        assert!(
            matches!(
                call(&mut m, remove.clone()),
                MasterReply::Removing { replicas: 1, .. }
            ),
            "repeating it answers the same"
        );
        let idle = ["a", "b", "c", "d"]
            .into_iter()
            .find(|n| !on(&m, n))
            .expect("one node is free");
        let removed = call(
            &mut m,
            MasterRequest::RemoveNode {
                node: node_id_of(idle),
            },
        );
        assert!(matches!(removed, MasterReply::NodeRemoved(ref n) if n.name == idle));
        assert!(m.table().node(node_id_of(idle)).is_none());
        assert!(
            matches!(call(&mut m, join(idle)), MasterReply::WasRemoved(ref why) if why.contains("empty data dir")),
            "the same data dir is refused"
        );
        let fresh = MasterRequest::Join {
            name: idle.into(),
            address: "x:1".into(),
            incarnation: 8,
        };
        assert!(matches!(call(&mut m, fresh), MasterReply::Joined(_)));
    }

    #[test]
    fn a_dead_node_is_forgotten_only_while_down_and_empty() {
        let mut m = master();
        for n in ["a", "b"] {
            call(&mut m, join(n));
        }
        let a = node_id_of("a");
        assert_eq!(
            call(&mut m, MasterRequest::ForgetNode { node: a }),
            MasterReply::Done,
            "an up node stays"
        );
        call(&mut m, MasterRequest::NodeDown { node: a, since: 1 });
        assert!(matches!(
            call(&mut m, MasterRequest::ForgetNode { node: a }),
            MasterReply::NodeRemoved(_)
        ));
        assert!(
            matches!(call(&mut m, join("a")), MasterReply::Joined(_)),
            "it may come back as if new"
        );
    }

    #[test]
    fn the_table_is_answered_as_a_query() {
        let mut m = master();
        call(&mut m, join("a"));
        let Some(MasterReply::Table(t)) = m.handle_query(&MasterRequest::GetTable) else {
            panic!("a query")
        };
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(m.handle_query(&join("b")), None);
    }

    #[test]
    fn the_table_is_sent_only_to_an_asker_whose_copy_is_not_current() {
        let mut m = master();
        call(&mut m, join("a"));
        let copy = m.table().clone();
        let ask = |t: &RoutingTable| MasterRequest::GetTableIfChanged {
            version: t.version,
            digest: t.digest(),
        };
        assert_eq!(
            m.handle_query(&ask(&copy)),
            Some(MasterReply::TableUnchanged)
        );
        // A change: the copy is old, and the digest cached for it is gone.
        call(&mut m, join("b"));
        assert!(
            matches!(m.handle_query(&ask(&copy)), Some(MasterReply::Table(t)) if t.nodes.len() == 2)
        );
        let current = m.table().clone();
        assert_eq!(
            m.handle_query(&ask(&current)),
            Some(MasterReply::TableUnchanged)
        );
        // Another table of the same version (masters that lost their
        // state and counted again) is not taken for the current one.
        let mut other = current.clone();
        other
            .nodes
            .values_mut()
            .for_each(|n| n.address = "elsewhere:1".into());
        assert!(matches!(
            m.handle_query(&ask(&other)),
            Some(MasterReply::Table(_))
        ));
    }
}
