//! Embedding dike-rs in a ractor application: the application's own root
//! actor starts a dike node linked to itself (so it sees the node fail),
//! registers its paxos server kind, and serves its own messages by calling a
//! replicated group.
//!
//! Run: `cargo run -p dike-actors --example embed` (a single node: no
//! masters configured, so the node is its own master and groups have one
//! replica; add `.master("n1@host:port")` entries for a real cluster).

use dike_actors::{DikeError, DikeNode, NodeConfig, NodeHandle};
use dike_core::{GroupContext, Outcome, PaxosServer};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The application's paxos server: stock levels of one warehouse.
#[derive(Default)]
struct Stock(BTreeMap<String, u64>);

/// Requests to a warehouse group.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum StockRequest {
    Receive(String, u64),
    Ship(String, u64),
    Count(String),
}

impl PaxosServer for Stock {
    const KIND: &'static str = "stock";
    type Request = StockRequest;
    /// The new level, or why the request was refused.
    type Reply = Result<u64, String>;
    type State = BTreeMap<String, u64>;

    fn init(_: &GroupContext) -> Self {
        Stock::default()
    }
    fn restore(state: Self::State, _: &GroupContext) -> Self {
        Stock(state)
    }
    fn export_state(&self) -> Self::State {
        self.0.clone()
    }
    fn handle_call(&mut self, req: StockRequest) -> Outcome<Self::Reply> {
        let reply = match req {
            StockRequest::Receive(item, n) => {
                let level = self.0.entry(item).or_default();
                *level += n;
                Ok(*level)
            }
            StockRequest::Ship(item, n) => match self.0.get_mut(&item) {
                Some(level) if *level >= n => {
                    *level -= n;
                    Ok(*level)
                }
                _ => Err(format!("not enough {item} in stock")),
            },
            StockRequest::Count(item) => Ok(self.0.get(&item).copied().unwrap_or(0)),
        };
        Outcome::reply(reply)
    }
    fn handle_query(&self, req: &StockRequest) -> Option<Self::Reply> {
        match req {
            StockRequest::Count(item) => Some(Ok(self.0.get(item).copied().unwrap_or(0))),
            _ => None,
        }
    }
}

/// The application's root actor.
struct App;

/// Its messages: a stock request, answered from the replicated group, and
/// the node's handle (for setting up groups).
enum AppMsg {
    Node(RpcReplyPort<NodeHandle>),
    Stock(
        StockRequest,
        RpcReplyPort<Result<Result<u64, String>, DikeError>>,
    ),
}

impl ractor::Message for AppMsg {}

impl Actor for App {
    type Msg = AppMsg;
    type State = NodeHandle;
    type Arguments = NodeConfig;

    async fn pre_start(
        &self,
        myself: ActorRef<AppMsg>,
        config: NodeConfig,
    ) -> Result<NodeHandle, ActorProcessingErr> {
        // The node is a child of this actor: if it gives up, we hear of it.
        let node = DikeNode::start_linked(config, myself.get_cell()).await?;
        Ok(node)
    }

    async fn handle(
        &self,
        _myself: ActorRef<AppMsg>,
        msg: AppMsg,
        node: &mut NodeHandle,
    ) -> Result<(), ActorProcessingErr> {
        let (req, reply) = match msg {
            AppMsg::Node(port) => {
                let _ = port.send(node.clone());
                return Ok(());
            }
            AppMsg::Stock(req, reply) => (req, reply),
        };
        let group = node.group::<Stock>("warehouse-1");
        // Answer from a task: the actor keeps serving while Paxos runs.
        tokio::spawn(async move {
            let answer = match req {
                StockRequest::Count(_) => group.query(req).await,
                _ => group.call(req).await,
            };
            let _ = reply.send(answer);
        });
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<AppMsg>,
        evt: SupervisionEvent,
        _node: &mut NodeHandle,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(_, e) => Err(format!("the dike node failed: {e}").into()),
            _ => Ok(()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = NodeConfig::builder("app-1", listen)
        .cookie("secret")
        .kind::<Stock>() // a PaxosServer of the application
        .build()?;
    let (app, handle) = Actor::spawn(None, App, config).await?;

    // A single node joins its own master first: wait for that, then create
    // the group (an existing group of that name is kept as it is).
    let node = ractor::call!(app, AppMsg::Node)?;
    node.ready(Duration::from_secs(15)).await?;
    node.add_group::<Stock>("warehouse-1").await?;

    for req in [
        StockRequest::Receive("bolts".into(), 10),
        StockRequest::Ship("bolts".into(), 4),
        StockRequest::Ship("bolts".into(), 9),
        StockRequest::Count("bolts".into()),
    ] {
        let shown = format!("{req:?}");
        let reply = ractor::call!(app, |port| AppMsg::Stock(req, port))?;
        println!("{shown:<24} -> {reply:?}");
    }

    node.stop().await;
    app.stop(None);
    handle.await?;
    Ok(())
}
