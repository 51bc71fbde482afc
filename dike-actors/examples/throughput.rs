//! Rough throughput and latency of `call`: `C` concurrent callers through
//! one node's typed handle for a few seconds, on a single-node cluster in
//! this process, or (with a masters list) from a client node to a running
//! cluster of `dike-node` processes, on a group of as many replicas as
//! masters.
//!
//! ```text
//! cargo run --release -p dike-actors --example throughput -- [callers] [seconds] [NAME@HOST:PORT,...]
//! ```

use dike_actors::counter::{Counter, CounterRequest};
use dike_actors::{DikeNode, NodeConfig};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let callers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut b = NodeConfig::builder("bench", listen)
        .cookie("bench")
        .kind::<Counter>();
    if let Some(masters) = args.next() {
        let masters: Vec<&str> = masters.split(',').collect();
        b = b.join(false).group_size(masters.len());
        for m in masters {
            b = b.master(m);
        }
    }
    let node = DikeNode::start(b.build()?).await?;
    node.ready(Duration::from_secs(10)).await?;
    node.add_group::<Counter>("bench").await?;
    let g = node.group::<Counter>("bench");
    // The first call also waits for the new group to elect its leader.
    g.call(CounterRequest::Add(0)).await?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let g = node.group::<Counter>("bench");
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    if g.call(CounterRequest::Add(1)).await.is_ok() {
                        lat.push(t.elapsed());
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    lat.sort();
    let pct = |p: usize| lat.get(lat.len() * p / 100).copied().unwrap_or_default();
    println!(
        "{callers} callers: {:.0} calls/s, p50 {:?}, p99 {:?}",
        lat.len() as f64 / seconds as f64,
        pct(50),
        pct(99)
    );
    if let Ok(table) = node.routing_table().await {
        for m in table.voters("bench").unwrap_or_default() {
            println!("{m}: {:?}", node.replica_status("bench", *m).await);
        }
    }
    let value = g.query(CounterRequest::Get).await?;
    println!("counter {value} (every answered call added 1)");
    node.stop().await;
    Ok(())
}
