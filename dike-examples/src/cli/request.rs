//! `dike request`, `dike query` and `dike cast`: a JSON request to any group, decoded as
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
    if is_error_reply(&reply) {
        return Err(CliError::ErrorReply(reply));
    }
    Ok(reply + "\n")
}

/// Whether a reply (JSON) is an application error: `{"Err": …}`, the serde
/// form of a `Result`'s error.
fn is_error_reply(reply: &str) -> bool {
    matches!(
        serde_json::from_str::<serde_json::Value>(reply),
        Ok(serde_json::Value::Object(m)) if m.len() == 1 && m.contains_key("Err")
    )
}

/// `dike cast`: hands the command of `args` to the client's dispatcher,
/// which sends it without anyone waiting for the reply; returns "sent" once
/// the dispatcher is done with it (so the program's exit does not cut off
/// its retries). The reply is not shown: read the group to see the effect.
pub async fn cast(client: &Client, args: &RequestArgs, json: bool) -> Result<String, CliError> {
    let kind = client.kind_of(&args.group).await?;
    let payload = kinds::encode_request(&kind, &args.group, &args.request)?;
    client.node().cast_encoded(&args.group, payload)?;
    if !client.drain_casts().await {
        tracing::warn!("the program exits while the cast is still being retried");
    }
    Ok(if json { "{\"sent\":true}\n" } else { "sent\n" }.to_owned())
}

#[cfg(test)]
mod tests {
    use super::is_error_reply;

    #[test]
    fn only_an_err_object_is_an_error_reply() {
        assert!(is_error_reply(r#"{"Err":"DivisionByZero"}"#));
        assert!(is_error_reply(r#"{"Err":{"Held":"a"}}"#));
        assert!(!is_error_reply(r#"{"Ok":5}"#));
        assert!(!is_error_reply("5"));
        assert!(!is_error_reply(r#"{"Err":1,"other":2}"#));
        assert!(!is_error_reply(r#""Err""#));
    }
}
