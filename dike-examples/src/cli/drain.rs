//! `dike node drain NAME` and `dike node undrain NAME`: mark a node
//! draining (or not) in the routing table; drain then waits until no group
//! is led from it and prints what moved.

use super::admin::json_line;
use super::client::Client;
use super::error::CliError;
use super::table::columns;
use std::time::Duration;

/// How long `dike node drain` waits without `--timeout`, in seconds.
pub const DEFAULT_DRAIN_TIMEOUT: u64 = 30;

/// `dike node drain`: drains `node`, waits up to `within` until it leads
/// no group, and prints the groups that moved with their new leaders.
pub async fn drain(
    client: &Client,
    node: &str,
    within: Duration,
    json: bool,
) -> Result<String, CliError> {
    known_node(client, node).await?;
    let report = client.node().drain_node(node, within).await?;
    if !report.still_led.is_empty() {
        return Err(CliError::DrainTimeout {
            node: node.to_owned(),
            after: within,
            groups: report.still_led,
        });
    }
    if json {
        let moved: Vec<serde_json::Value> = report
            .moved
            .iter()
            .map(|(g, to)| serde_json::json!({ "group": g, "from": node, "to": to }))
            .collect();
        return json_line(&serde_json::json!({ "drained": node, "moved": moved }));
    }
    if report.moved.is_empty() {
        return Ok(format!("{node} is draining; it led no group\n"));
    }
    let rows: Vec<[String; 3]> = report
        .moved
        .iter()
        .map(|(g, to)| {
            let to = to.clone().unwrap_or_else(|| "-".into());
            [g.clone(), node.to_owned(), to]
        })
        .collect();
    Ok(format!(
        "{node} is draining; leadership moved:\n{}",
        columns(["GROUP", "FROM", "TO"], &rows)
    ))
}

/// `dike node undrain`: marks `node` as not draining.
pub async fn undrain(client: &Client, node: &str, json: bool) -> Result<String, CliError> {
    known_node(client, node).await?;
    client.node().set_draining(node, false).await?;
    if json {
        return json_line(&serde_json::json!({ "undrained": node }));
    }
    Ok(format!(
        "{node} is no longer draining; groups it is the preferred leader of move back\n"
    ))
}

/// Fails with [`CliError::NoSuchNode`] unless the routing table has a node
/// named `node`.
async fn known_node(client: &Client, node: &str) -> Result<(), CliError> {
    let table = client.table().await?;
    if table.nodes.values().any(|n| n.name == node) {
        return Ok(());
    }
    let known: Vec<&str> = table.nodes.values().map(|n| n.name.as_str()).collect();
    Err(CliError::NoSuchNode {
        node: node.to_owned(),
        known: known.join(", "),
    })
}
