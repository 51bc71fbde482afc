//! The admin commands: create and delete groups, show the routing table.
//! Each returns the text to print.

use super::client::Client;
use super::error::CliError;
use super::kinds::KNOWN_KINDS;
use super::table::TableView;
use dike_actors::master::MASTER_KIND;
use dike_actors::node::config::MASTER_GROUP;
use dike_actors::{DikeError, JoinOutcome, NodeRemoval};
use dike_core::routing::{GroupInfo, GROUP_SIZES};
use std::time::{Duration, Instant};

/// `dike add-group`: creates `group` of `kind`; prints the new group's row.
pub async fn add_group(
    client: &Client,
    group: &str,
    kind: &str,
    size: Option<usize>,
    json: bool,
) -> Result<String, CliError> {
    if !KNOWN_KINDS.contains(&kind) {
        return Err(CliError::Usage(format!(
            "unknown kind {kind:?}; known kinds: {}",
            KNOWN_KINDS.join(", ")
        )));
    }
    let table = client.table().await?;
    if let Some(g) = table.group(group) {
        // An existing group of this kind is kept (a retry is safe); another
        // kind, or another size asked for, is refused.
        if g.kind != kind || size.is_some_and(|s| s != g.size) {
            return Err(CliError::Cluster(DikeError::Rejected(
                dike_core::routing::RoutingError::GroupExists {
                    group: group.to_owned(),
                    kind: g.kind.clone(),
                    size: g.size,
                }
                .to_string(),
            )));
        }
    }
    let size = match (size, table.group(group)) {
        (Some(s), _) => s,
        (None, Some(g)) => g.size,
        (None, None) => default_size(table.live_nodes().count()),
    };
    // Adding a group that exists returns it unchanged, so a retry is safe.
    let g = client
        .retry(|n| async move { n.add_group_of_kind(group, kind, Some(size)).await })
        .await?;
    if json {
        return json_line(&serde_json::json!({
            "group": g.name,
            "kind": g.kind,
            "replicas": g.config.voters.len(),
            "epoch": g.config.epoch,
            "generation": g.generation.to_string(),
        }));
    }
    Ok(format!(
        "group {} ({}) on {} replicas, epoch {}\n",
        g.name,
        g.kind,
        g.config.voters.len(),
        g.config.epoch
    ))
}

/// `value` as one JSON line.
pub(super) fn json_line(value: &serde_json::Value) -> Result<String, CliError> {
    serde_json::to_string(value)
        .map(|s| s + "\n")
        .map_err(|e| CliError::Output(e.to_string()))
}

/// The largest allowed group size up to `live` nodes and at most 5.
pub fn default_size(live: usize) -> usize {
    GROUP_SIZES
        .iter()
        .copied()
        .filter(|s| *s <= live.min(5))
        .max()
        .unwrap_or(1)
}

/// `dike join`: asks node `spec` (NAME@HOST:PORT), running and not joined,
/// to join the cluster.
pub async fn join(client: &Client, spec: &str, json: bool) -> Result<String, CliError> {
    let node: dike_actors::MasterSpec = spec
        .parse()
        .map_err(|_| CliError::Usage(format!("{spec:?} is not NAME@HOST:PORT")))?;
    let outcome = client.node().join_node(&node.name, &node.address).await?;
    let (what, n) = match outcome {
        JoinOutcome::Joined(n) => ("joined", n),
        JoinOutcome::AlreadyKnown(n) => ("already known", n),
    };
    if json {
        return json_line(&serde_json::json!({
            "outcome": what, "node": n.name, "address": n.address,
        }));
    }
    Ok(format!("{what}: {} ({})\n", n.name, n.address))
}

/// `dike remove-group`.
pub async fn remove_group(client: &Client, group: &str, json: bool) -> Result<String, CliError> {
    if client.table().await?.group(group).is_none() {
        return Err(CliError::NoSuchGroup(group.to_owned()));
    }
    let g = client.node().remove_group(group).await?;
    if json {
        return json_line(&serde_json::json!({ "removed": g.name, "kind": g.kind }));
    }
    Ok(format!("removed group {} ({})\n", g.name, g.kind))
}

/// `dike leader transfer`: hands leadership of `group` to its voter on
/// node `node` and waits until that node leads.
pub async fn transfer_leader(
    client: &Client,
    group: &str,
    node: &str,
    json: bool,
) -> Result<String, CliError> {
    let table = client.table().await?;
    // The master group is not in the table; its members are the masters.
    let master = (group == MASTER_GROUP).then(|| GroupInfo {
        name: MASTER_GROUP.to_owned(),
        kind: MASTER_KIND.to_owned(),
        size: client.node().master_config().voters.len(),
        config: client.node().master_config(),
        generation: 0,
    });
    let g = match &master {
        Some(m) => m,
        None => table
            .group(group)
            .ok_or_else(|| CliError::NoSuchGroup(group.to_owned()))?,
    };
    let name_of = |m: &dike_core::MemberId| {
        table
            .node(m.node)
            .map_or_else(|| m.to_string(), |n| n.name.clone())
    };
    let Some(target) = table.nodes.values().find(|n| n.name == node) else {
        let known: Vec<&str> = table.nodes.values().map(|n| n.name.as_str()).collect();
        return Err(CliError::NoSuchNode {
            node: node.to_owned(),
            known: known.join(", "),
        });
    };
    let Some(&to) = g.config.voters.iter().find(|v| v.node == target.id) else {
        let voters: Vec<String> = g.config.voters.iter().map(name_of).collect();
        return Err(CliError::NotAVoter {
            group: group.to_owned(),
            node: node.to_owned(),
            voters: voters.join(", "),
        });
    };
    let before = leader_of(client, g).await;
    client
        .node()
        .transfer_leadership(group, to, client.timeout())
        .await?;
    let previous = before.as_ref().map(name_of);
    if json {
        return json_line(&serde_json::json!({
            "group": group, "leader": node, "previous": previous,
        }));
    }
    Ok(match previous {
        Some(p) if p == node => format!("{node} already leads {group}\n"),
        Some(p) => format!("{node} leads {group} (was {p})\n"),
        None => format!("{node} leads {group}\n"),
    })
}

/// `dike node remove`: decommissions node `name` and waits (up to `wait`)
/// until its replicas have moved and it has left the routing table,
/// printing on stderr how many replicas are left whenever that changes.
pub async fn remove_node(
    client: &Client,
    name: &str,
    wait: Duration,
    json: bool,
) -> Result<String, CliError> {
    let table = client.table().await?;
    let Some(node) = table.nodes.values().find(|n| n.name == name) else {
        if table.removed.values().any(|r| r.name == name) {
            return removed_output(name, None, json);
        }
        let known: Vec<&str> = table.nodes.values().map(|n| n.name.as_str()).collect();
        return Err(CliError::NoSuchNode {
            node: name.to_owned(),
            known: known.join(", "),
        });
    };
    let id = node.id;
    let hosted = table.groups_on(id).count();
    let started = Instant::now();
    let mut left = match client.node().remove_node(name).await? {
        NodeRemoval::Removed(_) => return removed_output(name, Some(hosted), json),
        NodeRemoval::Removing { replicas, .. } => replicas,
    };
    eprintln!("removing node {name}: {left} replicas to move to other nodes");
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let table = client.table().await?;
        if table.node(id).is_none() {
            return removed_output(name, Some(hosted), json);
        }
        let now = table.groups_on(id).count();
        if now != left {
            left = now;
            eprintln!("removing node {name}: {left} replicas left");
        }
        if started.elapsed() >= wait {
            return Err(CliError::StillRemoving {
                node: name.to_owned(),
                replicas: left,
                waited: wait.as_secs(),
            });
        }
    }
}

/// What `dike node remove` prints once `name` is gone (`moved`: the
/// replicas it hosted when the command started; `None`: it was removed
/// before).
fn removed_output(name: &str, moved: Option<usize>, json: bool) -> Result<String, CliError> {
    if json {
        return json_line(&serde_json::json!({
            "removed": name, "replicas_moved": moved, "already_removed": moved.is_none(),
        }));
    }
    Ok(match moved {
        Some(n) => format!("removed node {name} ({n} replicas moved to other nodes)\n"),
        None => format!("node {name} was removed already\n"),
    })
}

/// `dike routing-table`: text, or JSON with `json`.
pub async fn routing_table(client: &Client, json: bool) -> Result<String, CliError> {
    let table = client.table().await?;
    let mut view = TableView::of(&table);
    for (g, info) in view.groups.iter_mut().zip(table.groups.values()) {
        g.leader = leader_of(client, info)
            .await
            .and_then(|m| table.node(m.node).map(|n| n.name.clone()));
    }
    if json {
        serde_json::to_string_pretty(&view)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Output(e.to_string()))
    } else {
        Ok(view.to_text())
    }
}

/// The leader of `group` as the first of its voters that answers and knows
/// one says (a best effort for display; `None` if none does).
async fn leader_of(
    client: &Client,
    group: &dike_core::routing::GroupInfo,
) -> Option<dike_core::MemberId> {
    for &voter in &group.config.voters {
        if let Ok(status) = client.node().replica_status(&group.name, voter).await {
            if status.leader.is_some() {
                return status.leader;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::default_size;

    #[test]
    fn the_default_group_size_is_odd_and_fits_the_live_nodes() {
        assert_eq!(default_size(0), 1);
        assert_eq!(default_size(1), 1);
        assert_eq!(default_size(2), 1);
        assert_eq!(default_size(3), 3);
        assert_eq!(default_size(4), 3);
        assert_eq!(default_size(9), 5);
    }
}
