//! `dike master`: list the masters, or change them and wait until the
//! master group is made of the masters wanted.

use super::admin::json_line;
use super::args::MasterOp;
use super::client::Client;
use super::error::CliError;
use dike_actors::node::masters::MasterView;
use dike_actors::DikeError;
use std::time::{Duration, Instant};

/// Runs `op`; returns what to print.
pub async fn run(client: &Client, op: MasterOp, json: bool) -> Result<String, CliError> {
    let (add, remove, wait) = match &op {
        MasterOp::List { .. } => {
            let view = client.retry(|n| async move { n.masters().await }).await?;
            return output(&view, json);
        }
        MasterOp::Add { node, wait, .. } => (Some(node.as_str()), None, *wait),
        MasterOp::Remove { node, wait, .. } => (None, Some(node.as_str()), *wait),
        MasterOp::Replace { old, new, wait, .. } => (Some(new.as_str()), Some(old.as_str()), *wait),
    };
    let table = client.table().await?;
    for name in add.into_iter().chain(remove) {
        if !table.nodes.values().any(|n| n.name == name) && !is_master(client, name) {
            let known: Vec<&str> = table.nodes.values().map(|n| n.name.as_str()).collect();
            return Err(CliError::NoSuchNode {
                node: name.to_owned(),
                known: known.join(", "),
            });
        }
    }
    let started = Instant::now();
    let mut view = client.node().change_masters(add, remove).await?;
    let mut said = String::new();
    loop {
        if view.settled() {
            return output(&view, json);
        }
        let now = progress(&view);
        if now != said {
            eprintln!("{now}");
            said = now;
        }
        if started.elapsed() >= Duration::from_secs(wait) {
            let names = |n: &[String]| {
                if n.is_empty() {
                    "none".into()
                } else {
                    n.join(", ")
                }
            };
            return Err(CliError::MastersChanging {
                voters: names(&view.voters),
                learners: names(&view.learners),
                wanted: names(view.wanted.as_deref().unwrap_or_default()),
                waited: wait,
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        match client.node().masters().await {
            Ok(v) => view = v,
            // The master group is changing: a read may find no leader for a
            // moment.
            Err(DikeError::Unavailable { .. } | DikeError::Timeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `name` is one of the masters the client's node knows (a seed
/// master that never joined is not in the table's nodes).
fn is_master(client: &Client, name: &str) -> bool {
    let masters = client.node().master_specs();
    masters.iter().any(|s| s.name == name)
}

fn progress(view: &MasterView) -> String {
    let wanted = view.wanted.as_deref().unwrap_or_default().join(", ");
    format!(
        "masters: {} (epoch {}); being added: {}; wanted: {wanted}",
        view.voters.join(", "),
        view.epoch,
        if view.learners.is_empty() {
            "none".to_owned()
        } else {
            view.learners.join(", ")
        },
    )
}

fn output(view: &MasterView, json: bool) -> Result<String, CliError> {
    if json {
        return json_line(&serde_json::json!({
            "masters": view.voters,
            "learners": view.learners,
            "wanted": view.wanted,
            "epoch": view.epoch,
            "settled": view.settled(),
        }));
    }
    let mut text = format!(
        "masters: {} (epoch {})\n",
        view.voters.join(", "),
        view.epoch
    );
    if !view.learners.is_empty() {
        text += &format!("being added: {}\n", view.learners.join(", "));
    }
    if !view.settled() {
        let wanted = view.wanted.as_deref().unwrap_or_default().join(", ");
        text += &format!("wanted: {wanted} (changing)\n");
    }
    Ok(text)
}
