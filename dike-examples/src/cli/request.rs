//! `dike request` and `dike query`: a JSON request to any group, decoded as
//! the request type of the group's kind (read from the routing table), the
//! reply printed as JSON.

use super::args::RequestArgs;
use super::client::Client;
use super::error::CliError;
use super::kinds::{self, Mode};

/// Sends the request of `args` and returns the reply as a JSON line.
pub async fn run(client: &Client, args: &RequestArgs, mode: Mode) -> Result<String, CliError> {
    let kind = client.kind_of(&args.group).await?;
    // Checked before sending, so a typo never reaches the group.
    kinds::check_request(&kind, &args.group, &args.request)?;
    let reply = match mode {
        // A command is sent once: after a timeout it may have been applied.
        Mode::Call => {
            kinds::send_json(client.node(), &kind, &args.group, &args.request, mode).await?
        }
        Mode::Query => {
            let (kind, group, req) = (&kind, &args.group, &args.request);
            client
                .retry(|n| async move { kinds::send_json(&n, kind, group, req, mode).await })
                .await?
        }
    };
    Ok(reply + "\n")
}
