//! Node configuration and the identities derived from it.
//!
//! Invariants: a node's [`NodeId`] is a pure function of its name
//! ([`node_id_of`]), so every node computes the same id for the same name
//! without asking anyone; the master group's members are the configured
//! master names, in the configured order, with incarnation 0 (see
//! docs/ARCHITECTURE.md, "Runtime").

use crate::error::StartError;
use crate::group::restart::RestartPolicy;
use crate::node::data_dir::DataDir;
pub use crate::node::identity::{node_id_of, MasterSpec};
use crate::node::tls::Tls;
use crate::storage::provider::{MemoryProvider, StorageProvider};
use dike_core::{
    Config, GroupContext, NodeId, PaxosServer, ReplicaOptions, ServerMachine, StateMachine,
};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Builds the state machine of a fresh replica of one kind.
pub type MachineFactory = Arc<dyn Fn(GroupContext) -> Box<dyn StateMachine> + Send + Sync>;

/// The server kinds a node can host, by [`PaxosServer::KIND`]. Filled on
/// the config builder ([`crate::NodeConfigBuilder::kind`]), so every kind
/// is known before the node starts its first replica.
#[derive(Clone, Default)]
pub struct Kinds(HashMap<String, MachineFactory>);

impl Kinds {
    /// Adds server kind `S` (again: replaces its constructor).
    pub fn insert<S: PaxosServer>(&mut self) {
        let make: MachineFactory = Arc::new(|ctx| Box::new(ServerMachine::<S>::new(ctx)));
        self.0.insert(S::KIND.to_owned(), make);
    }

    /// The constructor of `kind`, if registered.
    pub fn get(&self, kind: &str) -> Option<MachineFactory> {
        self.0.get(kind).cloned()
    }

    /// The names of the kinds, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The name of the master group in the routing and in process groups.
pub const MASTER_GROUP: &str = "dike.master";

/// The replica tuning the runtime starts from: the core's defaults with
/// smaller catch-up messages (16 slots of up to `max_batch` commands each,
/// rather than 256), so one cluster frame stays far below ractor_cluster's
/// 16 MiB limit and a lagging follower is not sent megabytes at once.
pub fn runtime_replica_options() -> ReplicaOptions {
    ReplicaOptions {
        catchup_batch: 16,
        ..ReplicaOptions::default()
    }
}

/// Everything a node needs to start. Build one with [`NodeConfig::builder`].
#[derive(Clone)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster.
    pub(crate) name: String,
    /// Where the cluster listener binds.
    pub(crate) listen: SocketAddr,
    /// Where other nodes reach this one, `HOST:PORT`: what the node
    /// publishes in the routing table (the listen address unless set).
    pub(crate) advertise: String,
    /// The shared secret every node of the cluster must present.
    pub(crate) cookie: String,
    /// The master nodes it starts from (1 to 7; 1, 3 or 5 for a new
    /// cluster): the seeds, see [`crate::node::masters`]. A node whose
    /// masters are only itself
    /// runs in single-node mode.
    pub(crate) masters: Vec<MasterSpec>,
    /// Where replicas keep their durable state.
    pub(crate) storage: Arc<dyn StorageProvider>,
    /// The data directory this node holds (locked, with its identity), if
    /// its state is kept in one.
    pub(crate) data_dir: Option<Arc<DataDir>>,
    /// Replicas per new group.
    pub(crate) group_size: usize,
    /// Whether the node registers itself with the master (and so may host
    /// replicas). A node that does not join is a pure client.
    pub(crate) join: bool,
    /// One logical tick of every replica on the node.
    pub(crate) tick: Duration,
    /// How often the dispatcher refreshes its routing table.
    pub(crate) refresh: Duration,
    /// How long a request may take, retries included.
    pub(crate) request_timeout: Duration,
    /// Replica tuning (in ticks).
    pub(crate) replica: ReplicaOptions,
    /// Restart bound for crashed replicas, the dispatcher and the group
    /// supervisor.
    pub(crate) restarts: RestartPolicy,
    /// How long a node may stay down before the master replaces its
    /// replicas on live nodes.
    pub(crate) replace_after: Duration,
    /// How often the master's rebalancer takes a step.
    pub(crate) rebalance_every: Duration,
    /// Where the HTTP endpoints (`/health`, `/ready`, `/metrics`) listen,
    /// if anywhere (see [`crate::node::http`]).
    pub(crate) http: Option<SocketAddr>,
    /// Whether `/metrics` also has series per group (requests by outcome,
    /// commands applied): one set per hosted group, so off by default.
    pub(crate) metrics_per_group: bool,
    /// Mutual TLS for every cluster session this node opens or accepts
    /// (see [`crate::node::tls`]); `None`: plain TCP.
    pub(crate) tls: Option<Tls>,
    /// The largest cluster frame the node takes from a peer, in bytes: a
    /// session whose peer announces a longer one is closed before any of
    /// it is read (see [`crate::cluster::undecodable`]).
    pub(crate) max_frame_bytes: u64,
    /// The server kinds the node can host (the master's is added by the
    /// node itself).
    pub(crate) kinds: Kinds,
}

/// The default of [`NodeConfig::max_frame_bytes`]: 16 MiB, ractor_cluster's.
pub const DEFAULT_MAX_FRAME_BYTES: u64 = ractor_cluster::node::DEFAULT_MAX_INBOUND_FRAME_SIZE;

/// The smallest [`NodeConfig::max_frame_bytes`] a node accepts: 1 MiB. The
/// replicas' catch-up messages are sized to stay below it with commands of
/// a few KiB; a limit below what peers send closes their sessions.
pub const MIN_MAX_FRAME_BYTES: u64 = 1 << 20;

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("data_dir", &self.data_dir.as_ref().map(|d| d.path()))
            .field("masters", &self.masters)
            .field("group_size", &self.group_size)
            .field("join", &self.join)
            .field("http", &self.http)
            .field("metrics_per_group", &self.metrics_per_group)
            .field("tls", &self.tls.as_ref().map(Tls::files))
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("kinds", &self.kinds.names())
            .finish_non_exhaustive()
    }
}

/// Read access to a built configuration; it changes only through
/// [`NodeConfigBuilder`], which checks it.
impl NodeConfig {
    /// The node's name, unique in the cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the cluster listener binds.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The master nodes it starts from.
    pub fn masters(&self) -> &[MasterSpec] {
        &self.masters
    }

    /// The data directory this node holds, if its state is kept in one.
    pub fn data_dir(&self) -> Option<&DataDir> {
        self.data_dir.as_deref()
    }

    /// Replicas per new group.
    pub fn group_size(&self) -> usize {
        self.group_size
    }

    /// Whether the node registers itself with the master (and so may host
    /// replicas).
    pub fn join(&self) -> bool {
        self.join
    }

    /// One logical tick of every replica on the node.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// How often the dispatcher refreshes its routing table.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// How long a request may take, retries included.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Replica tuning (in ticks).
    pub fn replica(&self) -> &ReplicaOptions {
        &self.replica
    }

    /// Restart bound for crashed replicas, the dispatcher and the group
    /// supervisor.
    pub fn restarts(&self) -> &RestartPolicy {
        &self.restarts
    }

    /// How long a node may stay down before the master replaces its
    /// replicas on live nodes.
    pub fn replace_after(&self) -> Duration {
        self.replace_after
    }

    /// How often the master's rebalancer takes a step.
    pub fn rebalance_every(&self) -> Duration {
        self.rebalance_every
    }

    /// Where the HTTP endpoints listen, if anywhere.
    pub fn http(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Whether `/metrics` also has series per group.
    pub fn metrics_per_group(&self) -> bool {
        self.metrics_per_group
    }

    /// Mutual TLS for every cluster session, if configured.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The largest cluster frame the node takes from a peer, in bytes.
    pub fn max_frame_bytes(&self) -> u64 {
        self.max_frame_bytes
    }

    /// The server kinds registered on the builder, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        self.kinds.names()
    }
}

impl NodeConfig {
    /// A builder for the node `name` listening on `listen`.
    pub fn builder(name: impl Into<String>, listen: SocketAddr) -> NodeConfigBuilder {
        NodeConfigBuilder {
            name: name.into(),
            listen,
            advertise: None,
            cookie: None,
            masters: Vec::new(),
            storage: None,
            data_dir: None,
            group_size: None,
            join: true,
            tick: Duration::from_millis(50),
            request_timeout: Duration::from_secs(5),
            replica: runtime_replica_options(),
            restarts: RestartPolicy::default(),
            replace_after: Duration::from_secs(60),
            http: None,
            metrics_per_group: false,
            segment_bytes: None,
            tls: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            kinds: Kinds::default(),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        node_id_of(&self.name)
    }

    /// Whether this node hosts a master replica.
    pub fn is_master(&self) -> bool {
        self.masters.iter().any(|m| m.name == self.name)
    }

    /// Whether the node runs alone (its masters are only itself).
    pub fn single_node(&self) -> bool {
        self.masters.len() == 1 && self.is_master()
    }

    /// The master group's configuration.
    pub fn master_config(&self) -> Config {
        Config::initial(self.masters.iter().map(MasterSpec::member).collect())
    }

    /// The address other nodes reach this one at.
    pub fn address(&self) -> String {
        self.advertise.clone()
    }

    /// The host part of [`NodeConfig::address`].
    pub fn advertised_host(&self) -> &str {
        self.advertise
            .rsplit_once(':')
            .map_or(self.advertise.as_str(), |(host, _)| host)
    }
}

/// Builds a [`NodeConfig`].
pub struct NodeConfigBuilder {
    name: String,
    listen: SocketAddr,
    advertise: Option<String>,
    cookie: Option<String>,
    masters: Vec<String>,
    storage: Option<Arc<dyn StorageProvider>>,
    data_dir: Option<PathBuf>,
    group_size: Option<usize>,
    join: bool,
    tick: Duration,
    request_timeout: Duration,
    replica: ReplicaOptions,
    restarts: RestartPolicy,
    replace_after: Duration,
    http: Option<SocketAddr>,
    metrics_per_group: bool,
    segment_bytes: Option<u64>,
    tls: Option<Tls>,
    max_frame_bytes: u64,
    kinds: Kinds,
}

impl NodeConfigBuilder {
    /// Registers server kind `S`, so the node can host groups of it from
    /// its first replica on. Call it once per kind the application serves.
    pub fn kind<S: PaxosServer>(mut self) -> Self {
        self.kinds.insert::<S>();
        self
    }

    /// The cluster cookie (required).
    pub fn cookie(mut self, cookie: impl Into<String>) -> Self {
        self.cookie = Some(cookie.into());
        self
    }

    /// Adds a master, `NAME@HOST:PORT`. Without masters the node is its own
    /// single master (single-node mode).
    pub fn master(mut self, spec: impl Into<String>) -> Self {
        self.masters.push(spec.into());
        self
    }

    /// Where other nodes reach this one, `HOST:PORT` (default: the listen
    /// address). Needed when the node listens on every address
    /// (`0.0.0.0` or `::`), which no other node can dial.
    pub fn advertise(mut self, address: impl Into<String>) -> Self {
        self.advertise = Some(address.into());
        self
    }

    /// Keeps replica state in memory (the default; lost when the process
    /// exits).
    pub fn in_memory(mut self) -> Self {
        self.storage = Some(Arc::new(MemoryProvider::default()));
        self.data_dir = None;
        self
    }

    /// Keeps replica state durably in the node log in `dir` (created if
    /// needed); the directory also keeps the node's incarnation, so a node
    /// restarted on it hosts its replicas again, and its identity (see
    /// [`crate::node::data_dir`]). [`NodeConfigBuilder::build`] locks and
    /// opens it, and refuses it if another process holds it or it belongs
    /// to another node or cluster.
    pub fn data_dir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.data_dir = Some(dir.as_ref().to_path_buf());
        self.storage = None;
        self
    }

    /// Keeps replica state in `provider` (for example a durable engine).
    pub fn storage(mut self, provider: Arc<dyn StorageProvider>) -> Self {
        self.storage = Some(provider);
        self.data_dir = None;
        self
    }

    /// Replicas per new group (default 5, or 1 in single-node mode).
    pub fn group_size(mut self, size: usize) -> Self {
        self.group_size = Some(size);
        self
    }

    /// Whether the node joins the cluster (default `true`); a node that does
    /// not join only sends requests.
    pub fn join(mut self, join: bool) -> Self {
        self.join = join;
        self
    }

    /// The logical tick (default 50 ms).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// The deadline of one request, retries included (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Replica tuning.
    pub fn replica_options(mut self, opts: ReplicaOptions) -> Self {
        self.replica = opts;
        self
    }

    /// The restart bound of the node's supervisors.
    pub fn restarts(mut self, policy: RestartPolicy) -> Self {
        self.restarts = policy;
        self
    }

    /// How long a node may stay down before its replicas are replaced on
    /// live nodes (default 60 s; matters on master nodes, which decide).
    pub fn replace_after(mut self, grace: Duration) -> Self {
        self.replace_after = grace;
        self
    }

    /// The size of the data dir's log segments (default 64 MiB): the log
    /// compacts when it rolls to a new segment, so smaller segments give
    /// disk space back sooner, at the cost of more compactions.
    pub fn log_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = Some(bytes);
        self
    }

    /// Serves `/health`, `/ready`, `/metrics` and `/status.json` over HTTP on `addr`
    /// (default: no HTTP listener).
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// Adds series per group to `/metrics` (default: off, so the number of
    /// series does not grow with the number of groups).
    pub fn metrics_per_group(mut self, on: bool) -> Self {
        self.metrics_per_group = on;
        self
    }

    /// Runs every cluster session of the node over mutual TLS (default:
    /// plain TCP): the listener requires a client certificate signed by
    /// the CA, and the node verifies every node it dials (see
    /// [`crate::node::tls`]). Every node of a cluster, and every client,
    /// must use TLS or none may.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The largest cluster frame the node takes from a peer (default
    /// [`DEFAULT_MAX_FRAME_BYTES`], at least [`MIN_MAX_FRAME_BYTES`]): a
    /// peer announcing a longer frame is disconnected before any of it is
    /// read. Every node of a cluster should have the same limit.
    pub fn max_frame_bytes(mut self, bytes: u64) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// Checks and builds the configuration; with a data dir, locks and
    /// opens it last, once everything else is known to be valid.
    pub fn build(self) -> Result<NodeConfig, StartError> {
        if self.name.is_empty() || self.name.contains(['@', '/']) {
            return Err(StartError::Config(format!(
                "node name {:?} must be non-empty and contain neither '@' nor '/'",
                self.name
            )));
        }
        let cookie = self
            .cookie
            .filter(|c| !c.is_empty())
            .ok_or_else(|| StartError::Config("a non-empty cookie is required".into()))?;
        let mut masters = self
            .masters
            .iter()
            .map(|m| m.parse())
            .collect::<Result<Vec<MasterSpec>, _>>()?;
        let advertise = self.advertise.unwrap_or_else(|| self.listen.to_string());
        check_advertise(&advertise)?;
        if masters.is_empty() {
            masters.push(MasterSpec {
                name: self.name.clone(),
                address: advertise.clone(),
            });
        }
        // Any size the master group may have: a node of a cluster whose
        // masters are changing may be given 2 or 4 (an odd count tolerates
        // as many failures as the next even one, so a new cluster should
        // start with 1, 3 or 5).
        let max = dike_core::routing::MAX_MASTERS;
        if masters.len() > max {
            return Err(StartError::Config(format!(
                "{} masters configured; a cluster has 1 to {max} (1, 3 or 5 are best)",
                masters.len()
            )));
        }
        let mut names: Vec<&str> = masters.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(StartError::Config(format!(
                "master {:?} is listed twice in --masters",
                twice[0]
            )));
        }
        let single = masters.len() == 1 && masters[0].name == self.name;
        let group_size = self.group_size.unwrap_or(if single { 1 } else { 5 });
        dike_core::routing::validate_group_size(group_size)
            .map_err(|e| StartError::Config(e.to_string()))?;
        if self.http.is_some_and(|h| h == self.listen) {
            return Err(StartError::Config(format!(
                "the HTTP address {} is the cluster listen address; give each its own port",
                self.listen
            )));
        }
        if self.max_frame_bytes < MIN_MAX_FRAME_BYTES {
            return Err(StartError::Config(format!(
                "the largest cluster frame ({} bytes) must be at least {MIN_MAX_FRAME_BYTES} \
                 bytes (1 MiB)",
                self.max_frame_bytes
            )));
        }
        if self.tick.is_zero() {
            return Err(StartError::Config("the tick must be positive".into()));
        }
        let (data_dir, storage): (Option<Arc<DataDir>>, Arc<dyn StorageProvider>) =
            match (&self.data_dir, self.storage) {
                (Some(dir), _) => {
                    let (held, log) = DataDir::open(dir, &self.name, &masters, self.segment_bytes)?;
                    (Some(Arc::new(held)), Arc::new(log))
                }
                (None, Some(storage)) => (None, storage),
                (None, None) => (None, Arc::new(MemoryProvider::default())),
            };
        // A node that joined once re-joins by itself after every restart.
        let join = self.join || data_dir.as_ref().is_some_and(|d| d.identity().joined);
        Ok(NodeConfig {
            name: self.name,
            listen: self.listen,
            advertise,
            cookie,
            masters,
            storage,
            data_dir,
            group_size,
            join,
            tick: self.tick,
            refresh: self.tick * 20,
            request_timeout: self.request_timeout,
            replica: self.replica,
            restarts: self.restarts,
            replace_after: self.replace_after,
            rebalance_every: self.tick * 10,
            http: self.http,
            metrics_per_group: self.metrics_per_group,
            tls: self.tls,
            max_frame_bytes: self.max_frame_bytes,
            kinds: self.kinds,
        })
    }
}

/// Refuses an address to publish that other nodes could not dial.
fn check_advertise(address: &str) -> Result<(), StartError> {
    let refuse = |reason: &str| StartError::Advertise {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| refuse("it is not HOST:PORT"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(refuse("it is not HOST:PORT"));
    }
    if address
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_unspecified())
    {
        return Err(refuse(
            "it stands for every address of this machine, which other nodes cannot dial; \
             give the address they reach this node at (dike node --advertise HOST:PORT)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4000))
    }

    #[test]
    fn masters_parse_as_name_at_host_port_and_garbage_is_refused() {
        let m: MasterSpec = "m1@127.0.0.1:4001".parse().expect("valid");
        assert_eq!(
            (m.name.as_str(), m.address.as_str()),
            ("m1", "127.0.0.1:4001")
        );
        for bad in ["m1", "@h:1", "m1@h", "m1@:1", "m1@h:port"] {
            assert!(bad.parse::<MasterSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn without_masters_a_node_is_single_with_groups_of_one() {
        let c = NodeConfig::builder("solo", addr())
            .cookie("c")
            .build()
            .expect("valid");
        assert!(c.single_node() && c.is_master());
        assert_eq!(c.group_size, 1);
        assert_eq!(
            c.master_config().voters,
            [MasterSpec::member(&c.masters[0])]
        );
    }

    #[test]
    fn a_cookie_and_a_sane_master_list_are_required() {
        let no_cookie = NodeConfig::builder("a", addr()).build();
        assert!(matches!(no_cookie, Err(StartError::Config(_))));
        let with = |masters: &[&str]| {
            let mut b = NodeConfig::builder("a", addr()).cookie("c");
            for m in masters {
                b = b.master(*m);
            }
            b.build()
        };
        // Two masters: a cluster whose masters are changing.
        assert!(with(&["a@h:1", "b@h:2"]).is_ok());
        let twice = with(&["a@h:1", "b@h:2", "a@h:3"]);
        assert!(
            matches!(&twice, Err(StartError::Config(m)) if m.contains("listed twice")),
            "{twice:?}"
        );
        let eight: Vec<String> = (0..8).map(|i| format!("m{i}@h:{i}")).collect();
        let eight: Vec<&str> = eight.iter().map(String::as_str).collect();
        assert!(matches!(with(&eight), Err(StartError::Config(_))));
    }

    #[test]
    fn an_unspecified_address_is_never_advertised() {
        let every = SocketAddr::from(([0, 0, 0, 0], 4000));
        let refused = NodeConfig::builder("a", every).cookie("c").build();
        assert!(
            matches!(&refused, Err(StartError::Advertise { address, .. }) if address == "0.0.0.0:4000"),
            "{refused:?}"
        );
        let c = NodeConfig::builder("a", every)
            .cookie("c")
            .advertise("10.1.2.3:4000")
            .build()
            .expect("valid");
        assert_eq!(c.address(), "10.1.2.3:4000");
        assert_eq!(c.masters[0].address, "10.1.2.3:4000", "the single master");
        for bad in ["[::]:4000", "host", ":4000", "h:port"] {
            let r = NodeConfig::builder("a", addr())
                .cookie("c")
                .advertise(bad)
                .build();
            assert!(matches!(r, Err(StartError::Advertise { .. })), "{bad}");
        }
        let named = NodeConfig::builder("a", every)
            .cookie("c")
            .advertise("node-a.example:4000")
            .build()
            .expect("a host name is fine");
        assert_eq!(named.advertised_host(), "node-a.example");
    }

    #[test]
    fn node_ids_are_stable_and_distinct() {
        assert_eq!(node_id_of("m1"), node_id_of("m1"));
        assert_ne!(node_id_of("m1"), node_id_of("m2"));
        assert_ne!(node_id_of(""), NodeId(0));
    }
}
