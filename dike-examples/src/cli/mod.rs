//! The `dike` program's commands, one concern per module: the command line
//! ([`args`]), running a node ([`node`]), the short-lived client node of the
//! other commands ([`client`]), admin commands ([`admin`]), JSON requests
//! ([`request`]), the key-value ring ([`kv`]), the example kinds' JSON forms
//! ([`kinds`]), how the routing table is shown ([`table`]), the cluster's
//! status ([`status`]) and the certificates of mutual TLS ([`certs`]).
//!
//! Every command either prints its result on stdout and succeeds, or
//! returns a [`CliError`] whose message says what to fix.

pub mod admin;
pub mod args;
pub mod bench;
pub mod certs;
pub mod client;
pub mod config_file;
pub mod drain;
pub mod error;
pub mod kinds;
pub mod kv;
pub mod master;
pub mod node;
pub mod request;
pub mod status;
pub mod table;

pub use args::{Cli, Command};
pub use error::CliError;

use args::Output;
use client::Client;
use kinds::Mode;
use std::io::Write;

/// Runs a command other than `simulate` (which needs no runtime) to the end.
pub async fn run(command: Command) -> Result<(), CliError> {
    let (via, action) = match command {
        Command::Simulate { .. } => {
            return Err(CliError::Usage("simulate runs without a runtime".into()));
        }
        Command::Demo => return demo().await,
        Command::Node(args::NodeCli {
            command: Some(command),
            ..
        }) => (command.via().clone(), Action::Node(command)),
        Command::Node(args::NodeCli { run: Some(run), .. }) => return node::run(*run).await,
        Command::Node(args::NodeCli { .. }) => {
            return Err(CliError::Usage(
                "dike node needs --name, --listen and --masters to run a node, or a command \
                 (drain, undrain, remove); see dike node --help"
                    .into(),
            ));
        }
        Command::AddGroup {
            via,
            group,
            kind,
            size,
        } => (via, Action::AddGroup { group, kind, size }),
        Command::RemoveGroup { via, group } => (via, Action::RemoveGroup { group }),
        Command::RoutingTable { via, json } => (via, Action::Table { json }),
        Command::Status { via } => (via, Action::Status),
        Command::Join { via, node } => (via, Action::Join { node }),
        Command::Leader(args::LeaderOp::Transfer { via, group, node }) => {
            (via, Action::LeaderTransfer { group, node })
        }
        Command::Master(op) => (op.via().clone(), Action::Master(op)),
        Command::Request(args) => (args.via.clone(), Action::Request(args, Mode::Call)),
        Command::Cast(args) => (args.via.clone(), Action::Cast(args)),
        Command::Query(args) => (args.via.clone(), Action::Request(args, Mode::Query)),
        Command::Kv(op) => (op.ring().via.clone(), Action::Kv(op)),
        Command::Bench(args) => (args.via.clone(), Action::Bench(args)),
        Command::Certs(op) => return certs::run(&op).map(|text| print!("{text}")),
    };
    let client = Client::connect(&via).await?;
    let out = action.run(&client, via.output).await;
    client.stop().await;
    let mut stdout = std::io::stdout();
    stdout
        .write_all(out?.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Output(e.to_string()))
}

/// `dike demo`, stopped early (its nodes killed, their data removed) on
/// Ctrl-C.
async fn demo() -> Result<(), CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Usage(format!("cannot find this program's path: {e}")))?;
    let mut stdout = std::io::stdout();
    tokio::select! {
        r = crate::demo::run(&mut stdout, &exe) => r.map_err(|e| CliError::Demo(e.to_string())),
        _ = tokio::signal::ctrl_c() => Err(CliError::Demo("interrupted; the nodes were stopped".into())),
    }
}

/// A client command, once its cluster address is taken out.
enum Action {
    AddGroup {
        group: String,
        kind: String,
        size: Option<usize>,
    },
    RemoveGroup {
        group: String,
    },
    Table {
        json: bool,
    },
    Status,
    Join {
        node: String,
    },
    LeaderTransfer {
        group: String,
        node: String,
    },
    Node(args::NodeCommand),
    Master(args::MasterOp),
    Request(args::RequestArgs, Mode),
    Cast(args::RequestArgs),
    Kv(args::KvOp),
    Bench(args::BenchArgs),
}

impl Action {
    async fn run(self, client: &Client, output: Output) -> Result<String, CliError> {
        let json = output == Output::Json;
        match self {
            Action::AddGroup { group, kind, size } => {
                admin::add_group(client, &group, &kind, size, json).await
            }
            Action::RemoveGroup { group } => admin::remove_group(client, &group, json).await,
            Action::Table { json: asked } => admin::routing_table(client, json || asked).await,
            Action::Status => status::run(client, output).await,
            Action::Join { node } => admin::join(client, &node, json).await,
            Action::LeaderTransfer { group, node } => {
                admin::transfer_leader(client, &group, &node, json).await
            }
            Action::Node(args::NodeCommand::Drain { via, node }) => {
                let secs = via.timeout.unwrap_or(drain::DEFAULT_DRAIN_TIMEOUT);
                let within = std::time::Duration::from_secs(secs.max(1));
                drain::drain(client, &node, within, json).await
            }
            Action::Node(args::NodeCommand::Remove { node, wait, .. }) => {
                let wait = std::time::Duration::from_secs(wait);
                admin::remove_node(client, &node, wait, json).await
            }
            Action::Node(args::NodeCommand::Undrain { node, .. }) => {
                drain::undrain(client, &node, json).await
            }
            Action::Master(op) => master::run(client, op, json).await,
            Action::Request(args, mode) => request::run(client, &args, mode).await,
            Action::Cast(args) => request::cast(client, &args, json).await,
            Action::Kv(op) => kv::run(client, op).await,
            Action::Bench(args) => bench::run(client, &args.config(), json || args.json).await,
        }
    }
}
