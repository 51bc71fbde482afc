//! `dike status`: the cluster's status ([`ClusterStatus`]) as a table of
//! nodes and a table of replicas by group, or as JSON. Groups that need a
//! look are marked `!` and explained under the table; the command succeeds
//! all the same (the status is information, not a check).

use super::args::Output;
use super::client::Client;
use super::error::CliError;
use super::table::columns;
use dike_actors::node::status::ClusterStatus;
use std::time::Duration;

/// How long each replica may take to answer; one that does not is shown
/// as unreachable.
const PER_REPLICA: Duration = Duration::from_secs(1);

/// `dike status`: the text to print.
pub async fn run(client: &Client, output: Output) -> Result<String, CliError> {
    let status = client
        .retry(|n| async move { n.cluster_status(PER_REPLICA).await })
        .await?;
    match output {
        Output::Json => serde_json::to_string_pretty(&status)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Output(e.to_string())),
        Output::Table => Ok(to_text(&status)),
    }
}

/// The status as aligned columns: nodes, then one row per replica, then a
/// line per problem.
pub fn to_text(status: &ClusterStatus) -> String {
    let mut out = format!("routing table version {}\n\n", status.table_version);
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let nodes: Vec<[String; 6]> = status
        .nodes
        .iter()
        .map(|n| {
            let up = dike_actors::node::status::node_state(n.up, n.draining, n.removing);
            [
                n.name.clone(),
                n.address.clone(),
                up.to_owned(),
                yes_no(n.master),
                n.version.clone().unwrap_or_else(|| "-".into()),
                n.uptime_seconds
                    .map_or_else(|| "-".into(), dike_actors::node::page::uptime),
            ]
        })
        .collect();
    out += &columns(
        ["NODE", "ADDRESS", "STATUS", "MASTER", "VERSION", "UPTIME"],
        &nodes,
    );
    out += "\n";
    let dash = || "-".to_owned();
    let mut rows: Vec<[String; 9]> = Vec::new();
    for g in &status.groups {
        let mark = if g.has_problems() { "!" } else { "" };
        for r in &g.replicas {
            let role = if !r.reachable {
                dash()
            } else if g.leader.as_deref() == Some(r.node.as_str()) {
                "leader".to_owned()
            } else if r.learner {
                "learner".to_owned()
            } else {
                "follower".to_owned()
            };
            let state = match (r.reachable, r.hibernating) {
                (false, _) => "unreachable",
                (true, Some(true)) => "hibernating",
                (true, _) => "active",
            };
            rows.push([
                mark.to_owned(),
                g.name.clone(),
                g.kind.clone(),
                g.epoch.to_string(),
                r.node.clone(),
                role,
                r.applied.map_or_else(dash, |a| a.to_string()),
                r.lag.map_or_else(dash, |l| l.to_string()),
                state.to_owned(),
            ]);
        }
    }
    out += &columns(
        [
            "!", "GROUP", "KIND", "EPOCH", "REPLICA", "ROLE", "APPLIED", "LAG", "STATE",
        ],
        &rows,
    );
    let troubled: Vec<String> = status
        .troubled_groups()
        .flat_map(|g| {
            g.problems
                .iter()
                .map(move |p| format!("! {}: {p}\n", g.name))
        })
        .collect();
    if !troubled.is_empty() {
        out += "\n";
        out += &troubled.concat();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dike_actors::node::status::{GroupSummary, NodeSummary, ReplicaSummary};

    fn replica(node: &str, applied: Option<u64>, lag: Option<u64>) -> ReplicaSummary {
        ReplicaSummary {
            node: node.into(),
            member: format!("{node}-id"),
            learner: false,
            reachable: applied.is_some(),
            applied,
            lag,
            hibernating: applied.map(|_| node == "n2"),
            error: applied.is_none().then(|| "gone".into()),
        }
    }

    fn status(problems: Vec<String>) -> ClusterStatus {
        ClusterStatus {
            table_version: 4,
            nodes: vec![NodeSummary {
                name: "n1".into(),
                address: "127.0.0.1:7001".into(),
                up: true,
                draining: false,
                master: true,
                removing: false,
                version: Some("0.1.0".into()),
                uptime_seconds: Some(90),
            }],
            groups: vec![GroupSummary {
                name: "calc".into(),
                kind: "arithmetic".into(),
                epoch: 2,
                leader: Some("n1".into()),
                replicas: vec![
                    replica("n1", Some(7), Some(0)),
                    replica("n2", Some(6), Some(1)),
                    replica("n3", None, None),
                ],
                problems,
            }],
        }
    }

    #[test]
    fn every_replica_is_a_row_with_its_role_applied_slot_lag_and_state() {
        let text = to_text(&status(vec![]));
        assert!(
            text.contains(
                "NODE  ADDRESS         STATUS  MASTER  VERSION  UPTIME\nn1    127.0.0.1:7001  up      yes     0.1.0    1m 30s\n"
            ),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.starts_with("!  GROUP"))
            .expect("header");
        assert_eq!(
            &lines[header..],
            [
                "!  GROUP  KIND        EPOCH  REPLICA  ROLE      APPLIED  LAG  STATE",
                "   calc   arithmetic  2      n1       leader    7        0    active",
                "   calc   arithmetic  2      n2       follower  6        1    hibernating",
                "   calc   arithmetic  2      n3       -         -        -    unreachable",
            ]
        );
    }

    #[test]
    fn a_troubled_group_is_marked_and_its_problems_listed_under_the_table() {
        let text = to_text(&status(vec!["n3 unreachable: gone".into()]));
        let marked = text.lines().filter(|l| l.starts_with("!  calc")).count();
        assert_eq!(marked, 3, "{text}");
        assert!(
            text.ends_with("\n\n! calc: n3 unreachable: gone\n"),
            "{text}"
        );
    }

    #[test]
    fn a_draining_node_says_so_in_its_status_column() {
        let mut status = status(vec![]);
        status.nodes[0].draining = true;
        let text = to_text(&status);
        assert!(
            text.contains("n1    127.0.0.1:7001  up, draining  yes"),
            "{text}"
        );
    }
}
