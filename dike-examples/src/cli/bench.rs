//! `dike bench`: creates the bench's groups if they are missing, waits until
//! each answers, then runs [`crate::bench`]'s closed-loop load through the
//! client node and prints the report.

use super::admin;
use super::client::Client;
use super::error::CliError;
use crate::arithmetic::{Arithmetic, ArithmeticRequest};
use crate::bench::{self, BenchConfig, BenchKind};
use crate::kv::{KvRequest, KvServer};

/// Runs the bench of `config`; returns the report as text, or as one JSON
/// line with `json`.
pub async fn run(client: &Client, config: &BenchConfig, json: bool) -> Result<String, CliError> {
    let groups = config.kind.groups(config.groups);
    for g in &groups {
        admin::add_group(client, g, config.kind.kind(), None, false).await?;
    }
    // A new group elects its leader first: wait until every group answers.
    for g in &groups {
        match config.kind {
            BenchKind::Arithmetic => {
                // The reply is the group's value; only the answer matters.
                let _value = client
                    .retry(|n| async move {
                        n.group::<Arithmetic>(g)
                            .query(ArithmeticRequest::Read)
                            .await
                    })
                    .await?;
            }
            BenchKind::Kv => {
                client
                    .retry(|n| async move {
                        n.group::<KvServer>(g)
                            .query(KvRequest::Get("bench".into()))
                            .await
                    })
                    .await?;
            }
        }
    }
    let report = bench::run(client.node(), config)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if json {
        report
            .to_json()
            .map_err(|e| CliError::Output(e.to_string()))
    } else {
        Ok(report.to_text())
    }
}
