//! `dike-node`: runs one dike-rs node with the built-in `counter` kind until
//! it is killed. Used by the multi-process tests. The cookie comes from
//! `--cookie` or, without it, from the `DIKE_COOKIE` variable (which keeps
//! it out of `ps`).
//!
//! ```text
//! DIKE_COOKIE=secret dike-node --name m1 --listen 127.0.0.1:4001 \
//!           --masters m1@127.0.0.1:4001,m2@127.0.0.1:4002,m3@127.0.0.1:4003 \
//!           [--in-memory | --data-dir DIR] [--group-size 3] [--replace-after SECS]
//! ```

use dike_actors::counter::Counter;
use dike_actors::{DikeNode, NodeConfig};
use std::process::ExitCode;

struct Args {
    name: String,
    listen: String,
    cookie: String,
    masters: Vec<String>,
    group_size: Option<usize>,
    data_dir: Option<String>,
    replace_after: Option<u64>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut name, mut listen, mut cookie) = (None, None, None);
    let mut masters = Vec::new();
    let mut group_size = None;
    let mut data_dir = None;
    let mut replace_after = None;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => name = Some(value()?),
            "--listen" => listen = Some(value()?),
            "--cookie" => cookie = Some(value()?),
            "--masters" => masters = value()?.split(',').map(str::to_owned).collect(),
            "--group-size" => {
                let v = value()?;
                group_size = Some(v.parse().map_err(|_| format!("bad group size {v:?}"))?);
            }
            "--in-memory" => data_dir = None,
            "--data-dir" => data_dir = Some(value()?),
            "--replace-after" => {
                let v = value()?;
                replace_after = Some(v.parse().map_err(|_| format!("bad seconds {v:?}"))?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        name: name.ok_or("--name is required")?,
        listen: listen.ok_or("--listen is required")?,
        cookie: cookie
            .or_else(|| std::env::var("DIKE_COOKIE").ok())
            .ok_or("--cookie (or DIKE_COOKIE) is required")?,
        masters,
        group_size,
        data_dir,
        replace_after,
    })
}

async fn run(args: Args) -> Result<(), String> {
    let listen = args
        .listen
        .parse()
        .map_err(|e| format!("bad --listen {:?}: {e}", args.listen))?;
    let mut b = NodeConfig::builder(args.name, listen).cookie(args.cookie);
    b = match &args.data_dir {
        Some(dir) => b.data_dir(dir),
        None => b.in_memory(),
    };
    for m in args.masters {
        b = b.master(m);
    }
    if let Some(size) = args.group_size {
        b = b.group_size(size);
    }
    if let Some(secs) = args.replace_after {
        b = b.replace_after(std::time::Duration::from_secs(secs));
    }
    let config = b.kind::<Counter>().build().map_err(|e| e.to_string())?;
    let node = DikeNode::start(config).await.map_err(|e| e.to_string())?;
    println!("ready {}", node.name());
    let cell = node.actor().get_cell();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => node.stop().await,
        _ = cell.wait(None) => return Err("the node stopped".into()),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dike-node: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dike-node: {e}");
            ExitCode::FAILURE
        }
    }
}
