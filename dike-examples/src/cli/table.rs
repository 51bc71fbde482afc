//! The routing table as the program shows it: one view, printed as a
//! readable table or as JSON, with member ids resolved to node names.

use dike_core::routing::{NodeStatus, RoutingTable};
use serde::Serialize;
use std::fmt::Write as _;

/// The routing table in the program's output form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableView {
    /// The table's version.
    pub version: u64,
    /// Every node the master knows.
    pub nodes: Vec<NodeView>,
    /// Every group.
    pub groups: Vec<GroupView>,
}

/// One node of the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// Its cluster address.
    pub address: String,
    /// Its incarnation, as a decimal string: it is a 64-bit number, and JSON
    /// readers such as jq round integers above 2^53.
    pub incarnation: String,
    /// Whether it is up.
    pub up: bool,
    /// Whether it is draining (`dike node drain`).
    pub draining: bool,
    /// Whether the operator is removing it (`dike node remove`).
    pub removing: bool,
}

/// One group of the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// Its name.
    pub name: String,
    /// Its server kind.
    pub kind: String,
    /// The nodes of its voting members (their ids if a node is unknown).
    pub members: Vec<String>,
    /// Its learners, likewise.
    pub learners: Vec<String>,
    /// Its configuration epoch.
    pub epoch: u64,
    /// The node of its leader, as its members report it (`None`: not
    /// asked, or no member knew one).
    pub leader: Option<String>,
}

impl TableView {
    /// The view of `table`.
    pub fn of(table: &RoutingTable) -> TableView {
        let name = |m: &dike_core::MemberId| {
            table
                .node(m.node)
                .map_or_else(|| m.to_string(), |n| n.name.clone())
        };
        TableView {
            version: table.version,
            nodes: table
                .nodes
                .values()
                .map(|n| NodeView {
                    name: n.name.clone(),
                    address: n.address.clone(),
                    incarnation: n.incarnation.0.to_string(),
                    up: n.status == NodeStatus::Up,
                    draining: n.draining,
                    removing: n.removing,
                })
                .collect(),
            groups: table
                .groups
                .values()
                .map(|g| GroupView {
                    name: g.name.clone(),
                    kind: g.kind.clone(),
                    members: g.config.voters.iter().map(name).collect(),
                    learners: g.config.learners.iter().map(name).collect(),
                    epoch: g.config.epoch,
                    leader: None,
                })
                .collect(),
        }
    }

    /// The view as aligned text columns.
    pub fn to_text(&self) -> String {
        let mut out = format!("routing table version {}\n\n", self.version);
        let nodes: Vec<[String; 3]> = self
            .nodes
            .iter()
            .map(|n| {
                let status = dike_actors::node::status::node_state(n.up, n.draining, n.removing);
                [n.name.clone(), n.address.clone(), status.to_owned()]
            })
            .collect();
        out += &columns(["NODE", "ADDRESS", "STATUS"], &nodes);
        out += "\n";
        let groups: Vec<[String; 5]> = self
            .groups
            .iter()
            .map(|g| {
                let mut members = g.members.join(",");
                if !g.learners.is_empty() {
                    let _ = write!(members, " (learning: {})", g.learners.join(","));
                }
                let leader = g.leader.clone().unwrap_or_else(|| "-".into());
                [
                    g.name.clone(),
                    g.kind.clone(),
                    members,
                    leader,
                    g.epoch.to_string(),
                ]
            })
            .collect();
        if groups.is_empty() {
            out += "no groups\n";
        } else {
            out += &columns(["GROUP", "KIND", "MEMBERS", "LEADER", "EPOCH"], &groups);
        }
        out
    }
}

/// Left-aligned columns, two spaces apart.
pub(crate) fn columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dike_core::Incarnation;

    fn table() -> RoutingTable {
        let mut t = RoutingTable::new();
        let id = dike_actors::node::config::node_id_of("n1");
        t.add_node(id, "n1", "127.0.0.1:7001", Incarnation(3))
            .expect("add node");
        t.add_group("calc", "arithmetic", 1).expect("add group");
        t
    }

    #[test]
    fn members_are_shown_by_node_name_with_kind_and_epoch() {
        let text = TableView::of(&table()).to_text();
        assert!(
            text.contains("GROUP  KIND        MEMBERS  LEADER  EPOCH"),
            "{text}"
        );
        assert!(
            text.contains("calc   arithmetic  n1       -       0"),
            "{text}"
        );
        let mut view = TableView::of(&table());
        view.groups[0].leader = Some("n1".into());
        assert!(
            view.to_text().contains("n1       n1      0"),
            "{}",
            view.to_text()
        );
        assert!(text.contains("n1    127.0.0.1:7001  up"), "{text}");
    }

    #[test]
    fn the_json_form_lists_groups_with_members() {
        let json = serde_json::to_value(TableView::of(&table())).expect("json");
        assert_eq!(json["groups"][0]["members"][0], "n1");
        assert_eq!(json["groups"][0]["kind"], "arithmetic");
        assert_eq!(
            json["nodes"][0]["incarnation"], "3",
            "64-bit ids are strings in JSON"
        );
    }
}
