//! Request routing, shared by the dispatcher and its request tasks: the
//! cached routing table, the believed leader of every group, the client
//! session, and the retry loop of one request.
//!
//! Invariants: every command of one router carries the router's client id
//! and a fresh sequence number, and a retry reuses both, so a command is
//! applied at most once however often it is retried (or sent to a second
//! member while the first has not answered: see [`HEDGE_AFTER`]);
//! `ack_floor` is the lowest sequence number still in flight, so replicas
//! forget only replies the router no longer waits for.

use crate::cluster::transport::{local_replica, TransportMsg};
use crate::cluster::wire::{self, ClientReply, ClientRequest, ReplicaMsg, ReplyError};
use crate::error::DikeError;
use crate::master::{MasterReply, MasterRequest};
use crate::node::config::MASTER_GROUP;
use crate::node::context::{wall_nanos, NodeContext};
use dike_core::route::Route;
use dike_core::routing::RoutingTable;
use dike_core::{codec, ClientId, Command, Config, MemberId, RequestError};
use ractor::rpc::CallResult;
use ractor::ActorRef;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// At most this many requests of one dispatcher are on the wire at once;
/// more wait for a turn (within their deadline). ractor_cluster has no
/// backpressure, so this bounds what one node can queue at leaders.
const MAX_IN_FLIGHT: usize = 1024;
/// One attempt may wait at most this long for a replica.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// An attempt that has waited this long for its replica asks another voter
/// too, and again each time this passes. A replica that does not answer
/// may be on a node that hangs (its connections stay open, so nothing
/// tells the router): the group elects a new leader within an election
/// timeout or two, and the other voter's answer names it (or it is the new
/// leader and serves the command) long before the attempt's own timeout.
/// An answer that only says "wait" (the leader waited on, no leader yet,
/// busy, no answer) leaves the attempt waiting. The second member gets the
/// same command (client id and sequence number), so it is applied once.
/// Half a base election timeout (10 ticks of 50 ms): a probe costs a
/// follower one message to decode and refuse, and no new leader can be
/// known sooner.
pub const HEDGE_AFTER: Duration = Duration::from_millis(250);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(400);

/// The client session of one router.
#[derive(Debug)]
pub struct ClientSession {
    id: ClientId,
    next: u64,
    in_flight: BTreeSet<u64>,
}

impl ClientSession {
    /// A session with a fresh id.
    pub fn new(id: ClientId) -> Self {
        ClientSession {
            id,
            next: 1,
            in_flight: BTreeSet::new(),
        }
    }

    /// A command for `payload`: the next sequence number, with the lowest
    /// one in flight as the acknowledgement floor.
    pub fn begin(&mut self, payload: Vec<u8>) -> Command {
        let seq = self.next;
        self.next += 1;
        self.in_flight.insert(seq);
        let ack_floor = self.in_flight.first().copied().unwrap_or(seq);
        Command {
            client: self.id,
            seq,
            ack_floor,
            payload,
        }
    }

    /// The command `seq` is answered (or given up on).
    pub fn end(&mut self, seq: u64) {
        self.in_flight.remove(&seq);
    }
}

/// What to do after one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Done: the reply.
    Reply(Vec<u8>),
    /// Done: a final error.
    Fail(DikeError),
    /// Try `MemberId` at once (a leader hint).
    Redirect(MemberId),
    /// Try the next member after a backoff: the target answered without
    /// serving the request (why).
    Retry(String),
    /// Try the next member after a backoff: the target did not answer in
    /// time (if that is the last thing seen, the request timed out).
    NoAnswer,
}

/// Classifies a replica's answer (or `None`: no answer); `name` is how
/// messages name the target (its node's name and address).
pub fn classify(target: MemberId, name: &str, answer: Option<ClientReply>) -> Next {
    match answer {
        None => Next::NoAnswer,
        Some(Ok(bytes)) => Next::Reply(bytes),
        Some(Err(ReplyError::Malformed(m))) => Next::Fail(DikeError::Decode(m)),
        Some(Err(ReplyError::Reconfig(e) | ReplyError::Transfer(e))) => {
            Next::Fail(DikeError::Rejected(e))
        }
        Some(Err(ReplyError::Request(e))) => match e {
            RequestError::NotLeader {
                leader: Some(l), ..
            } if l != target => Next::Redirect(l),
            RequestError::NotLeader { .. } => Next::Retry(format!("{name} knows no leader")),
            RequestError::Busy => Next::Retry(format!("{name} is busy")),
            RequestError::Application(m) => Next::Fail(DikeError::Application(m)),
            RequestError::QueryUnsupported => Next::Fail(DikeError::Application(
                "the server does not answer this request as a query".into(),
            )),
            RequestError::Stale => Next::Fail(DikeError::Application(
                "stale request: already answered".into(),
            )),
            // The group is filled in by the retry loop.
            RequestError::SessionExpired => Next::Fail(DikeError::SessionExpired {
                group: String::new(),
            }),
        },
    }
}

/// The error of a request whose retries ran out: the last reason for
/// retrying (with `quorum`, how many replicas are up against how many a
/// quorum needs), or a timeout if the last attempt got no answer.
fn gave_up(
    group: &str,
    timeout: Duration,
    last: Option<String>,
    quorum: Option<String>,
) -> DikeError {
    match last {
        None => DikeError::Timeout {
            group: group.to_owned(),
            after: timeout,
            detail: quorum,
        },
        Some(reason) => DikeError::Unavailable {
            group: group.to_owned(),
            reason: match quorum {
                Some(q) => format!("{reason} ({q})"),
                None => reason,
            },
        },
    }
}

/// "`up` of `n` replicas reachable, a quorum needs `q`", for an error
/// message.
pub fn quorum_note(up: usize, n: usize) -> String {
    format!(
        "{up} of {n} replicas reachable, a quorum needs {}",
        n / 2 + 1
    )
}

/// Doubling backoff, capped.
pub fn backoff(attempt: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(8))
        .min(BACKOFF_MAX)
}

/// How long to wait before retry `attempt`: [`backoff`] with "equal
/// jitter", a uniform draw between half of it and all of it. Without it,
/// every router that saw the same leader fail retries in lockstep and the
/// new leader gets their requests all at once, attempt after attempt.
pub fn retry_delay(attempt: u32) -> Duration {
    let full = backoff(attempt);
    let half = full / 2;
    let span = u64::try_from((full - half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(next_random() % span.saturating_add(1))
}

/// A SplitMix64 sequence shared by the process, seeded from the clock:
/// enough to spread retries, not for anything secret.
fn next_random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    let _ = STATE.compare_exchange(0, wall_nanos() | 1, Ordering::Relaxed, Ordering::Relaxed);
    let mut z = STATE
        .fetch_add(GAMMA, Ordering::Relaxed)
        .wrapping_add(GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The cached routing table, with its [`RoutingTable::digest`].
struct Cached {
    table: Arc<RoutingTable>,
    digest: u64,
}

/// The routing state of one node. See the module documentation.
pub struct Router {
    ctx: Arc<NodeContext>,
    table: RwLock<Cached>,
    leaders: Mutex<HashMap<String, MemberId>>,
    session: Mutex<ClientSession>,
    in_flight: tokio::sync::Semaphore,
    /// [`ATTEMPT_TIMEOUT`] (the tests take a longer one).
    attempt_timeout: Duration,
}

impl Router {
    /// A router with an empty table and a fresh session.
    pub fn new(ctx: Arc<NodeContext>) -> Self {
        let client = ClientId(wall_nanos() ^ ctx.config.node_id().0.rotate_left(32));
        Router {
            ctx,
            table: RwLock::new(Cached {
                digest: RoutingTable::new().digest(),
                table: Arc::new(RoutingTable::new()),
            }),
            leaders: Mutex::new(HashMap::new()),
            session: Mutex::new(ClientSession::new(client)),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            attempt_timeout: ATTEMPT_TIMEOUT,
        }
    }

    /// Starts a new client session: the group forgot the old one, so its
    /// commands would all be refused.
    fn renew_session(&self) {
        let client = ClientId(wall_nanos() ^ self.ctx.config.node_id().0.rotate_left(32));
        if let Ok(mut s) = self.session.lock() {
            tracing::warn!(
                old = s.id.0,
                new = client.0,
                "client session expired: starting a new one"
            );
            *s = ClientSession::new(client);
        }
    }

    /// How messages name `m`: its node's name and address (from the cached
    /// table, or the masters' list), else its internal id.
    fn member_name(&self, m: MemberId) -> String {
        if let Some(n) = self.table().node(m.node) {
            return format!("node {} ({})", n.name, n.address);
        }
        match self.ctx.masters().spec(m.node) {
            Some(s) => format!("node {} ({})", s.name, s.address),
            None => format!("node {m}"),
        }
    }

    /// The cached table.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table
            .read()
            .map(|c| c.table.clone())
            .unwrap_or_else(|_| Arc::new(RoutingTable::new()))
    }

    /// The version and digest of the cached table.
    fn held(&self) -> (u64, u64) {
        self.table
            .read()
            .map_or((0, 0), |c| (c.table.version, c.digest))
    }

    /// Replaces the cached table if `t` is newer, or another table of the
    /// same version, and learns the masters it shows; returns whether it
    /// replaced it.
    pub fn install(&self, t: RoutingTable) -> bool {
        let digest = t.digest();
        let table = Arc::new(t);
        {
            let Ok(mut cur) = self.table.write() else {
                return false;
            };
            let held = cur.table.version;
            if table.version < held || (table.version == held && digest == cur.digest) {
                return false;
            }
            *cur = Cached {
                table: table.clone(),
                digest,
            };
        }
        self.ctx.learn_masters(&table);
        true
    }

    /// The generation of `group` in the table (0 for the master group and
    /// for a group the table does not know).
    pub(crate) fn generation(&self, group: &str) -> u64 {
        if group == MASTER_GROUP {
            return 0;
        }
        self.table().group(group).map_or(0, |g| g.generation)
    }

    fn voters(&self, group: &str) -> Option<Vec<MemberId>> {
        if group == MASTER_GROUP {
            return Some(self.ctx.masters().config.voters.clone());
        }
        self.table().voters(group).ok().map(<[MemberId]>::to_vec)
    }

    /// Fetches the table from the master and installs it. The read is a
    /// read-index query, so its success proves a master quorum answered:
    /// the node's readiness (`GET /ready`) is recorded here.
    pub async fn refresh(&self) -> Result<Arc<RoutingTable>, DikeError> {
        let (version, digest) = self.held();
        let ask = MasterRequest::GetTableIfChanged { version, digest };
        let kind = ask.kind();
        let result = match self.master(ask).await {
            Ok(MasterReply::Table(t)) => {
                self.install(t);
                Ok(self.table())
            }
            Ok(MasterReply::TableUnchanged) => Ok(self.table()),
            Ok(other) => Err(other.unexpected(kind)),
            Err(e) => Err(e),
        };
        if let Ok(mut r) = self.ctx.readiness().lock() {
            match &result {
                Ok(_) => r.table_read(std::time::Instant::now()),
                Err(e) => r.read_failed(e.to_string()),
            }
        }
        result
    }

    /// Sends `req` to the master group.
    pub async fn master(&self, req: MasterRequest) -> Result<MasterReply, DikeError> {
        let query = req.is_query();
        let payload = codec::encode("master request", &req)?;
        let voters = self.ctx.masters().config.voters.clone();
        let bytes = self.send(MASTER_GROUP, &voters, payload, query).await?;
        Ok(codec::decode("master reply", &bytes)?)
    }

    /// Sends an encoded request to `group`'s leader, following hints and
    /// retrying with backoff until the node's request timeout. Counted and
    /// timed in the node's metrics by the group's kind and the outcome.
    pub async fn request(
        &self,
        group: &str,
        payload: Vec<u8>,
        query: bool,
    ) -> Result<Vec<u8>, DikeError> {
        let started = Instant::now();
        let result = self.request_untimed(group, payload, query).await;
        let table = self.table();
        let kind = table
            .groups
            .get(group)
            .map_or("unknown", |g| g.kind.as_str());
        self.ctx
            .metrics
            .record_request(kind, &result, started.elapsed());
        result
    }

    async fn request_untimed(
        &self,
        group: &str,
        payload: Vec<u8>,
        query: bool,
    ) -> Result<Vec<u8>, DikeError> {
        let voters = match self.voters(group) {
            Some(v) => v,
            None => {
                // Maybe the table is old: ask the master once.
                if let Err(e) = self.refresh().await {
                    tracing::debug!(%group, "refresh for an unknown group failed: {e}");
                }
                self.voters(group)
                    .ok_or_else(|| DikeError::UnknownGroup(group.to_owned()))?
            }
        };
        self.send(group, &voters, payload, query).await
    }

    /// Sends a membership request (a change, or reading the
    /// configuration) to `group`'s leader, following hints, within the
    /// request timeout. Returns the leader's configuration after it.
    pub async fn membership(
        &self,
        group: &str,
        request: ClientRequest,
    ) -> Result<Config, DikeError> {
        let reply = self.to_leader(group, &request).await?;
        Ok(codec::decode("configuration", &reply)?)
    }

    /// Asks `group`'s leader to hand leadership to `to`, following hints,
    /// within the request timeout. `Ok` means the transfer started (or `to`
    /// leads already), not that it succeeded.
    pub async fn transfer(&self, group: &str, to: MemberId) -> Result<(), DikeError> {
        let reply = self.to_leader(group, &ClientRequest::Transfer(to)).await?;
        let _: MemberId = codec::decode("transfer target", &reply)?;
        Ok(())
    }

    /// Sends a request that only the leader answers (no session: it is
    /// not a command of the log) to `group`'s leader, following hints.
    async fn to_leader(&self, group: &str, request: &ClientRequest) -> Result<Vec<u8>, DikeError> {
        let voters = self
            .voters(group)
            .ok_or_else(|| DikeError::UnknownGroup(group.to_owned()))?;
        let timeout = self.ctx.config.request_timeout;
        let deadline = Instant::now() + timeout;
        let bytes = codec::encode("leader request", request)?;
        self.attempts(group, &voters, &bytes, deadline)
            .await
            .map_err(|(last, quorum)| gave_up(group, timeout, last, quorum))?
    }

    /// Sends to `voters` of `group`: the retry loop with the session.
    async fn send(
        &self,
        group: &str,
        voters: &[MemberId],
        payload: Vec<u8>,
        query: bool,
    ) -> Result<Vec<u8>, DikeError> {
        let timeout = self.ctx.config.request_timeout;
        let deadline = Instant::now() + timeout;
        if voters.is_empty() {
            return Err(DikeError::UnknownGroup(group.to_owned()));
        }
        let timed_out = || DikeError::Timeout {
            group: group.to_owned(),
            after: timeout,
            detail: None,
        };
        let _permit = match tokio::time::timeout_at(deadline, self.in_flight.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(DikeError::NodeStopped("router closed".into())),
            Err(_) => return Err(timed_out()),
        };
        let (request, seq) = if query {
            (ClientRequest::Query(payload), None)
        } else {
            let cmd = match self.session.lock() {
                Ok(mut s) => s.begin(payload),
                Err(_) => return Err(DikeError::NodeStopped("session lock poisoned".into())),
            };
            let seq = (cmd.client, cmd.seq);
            // The id the replicas' spans show too (see `request_id`).
            if tracing::enabled!(tracing::Level::DEBUG) {
                tracing::Span::current().record("request", request_id(cmd.client, cmd.seq));
            }
            (ClientRequest::Command(cmd), Some(seq))
        };
        let bytes = codec::encode_compact("client request", &request)?;
        let result = self.attempts(group, voters, &bytes, deadline).await;
        if let (Some((client, seq)), Ok(mut s)) = (seq, self.session.lock()) {
            // A session renewed meanwhile has its own sequence numbers.
            if s.id == client {
                s.end(seq);
            }
        }
        result.map_err(|(last, quorum)| gave_up(group, timeout, last, quorum))?
    }

    /// The retry loop; `Err` carries the last reason for retrying (`None`:
    /// the last attempt got no answer in time) and, if some replica could
    /// never be reached, how many could against how many a quorum needs.
    async fn attempts(
        &self,
        group: &str,
        voters: &[MemberId],
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<Result<Vec<u8>, DikeError>, (Option<String>, Option<String>)> {
        let mut heard: BTreeSet<MemberId> = BTreeSet::new();
        let mut silent: BTreeSet<MemberId> = BTreeSet::new();
        let mut route = Route::new(self.leaders.lock().ok().and_then(|l| l.get(group).copied()));
        let mut retries = 0u32;
        let mut hops = 0usize;
        let mut last = Some(format!("no replica of {group} reached"));
        let mut voters = voters.to_vec();
        while Instant::now() < deadline {
            // The group's members may change while the request waits (a
            // replica moved): re-read them from the table, which the
            // dispatcher keeps fresh. Hints are followed whatever the table
            // says (see `dike_core::route`).
            if group != MASTER_GROUP {
                if let Some(now) = self.voters(group).filter(|v| !v.is_empty()) {
                    voters = now;
                }
            }
            let Some(target) = route.next(&voters) else {
                break;
            };
            let generation = self.generation(group);
            tracing::debug!(member = %target, generation, "sending to a replica");
            let (target, answer) = self
                .hedged_call(group, generation, target, &voters, bytes, deadline)
                .await;
            let name = self.member_name(target);
            let next = match answer {
                // Each member counts as its latest attempt found it.
                Ok(answer) => {
                    // Reached, answered or not (a leader that cannot commit
                    // does not answer in time): it is up.
                    heard.insert(target);
                    silent.remove(&target);
                    classify(target, &name, answer)
                }
                Err(()) => {
                    silent.insert(target);
                    heard.remove(&target);
                    Next::Retry(format!("{name} is not reachable"))
                }
            };
            match next {
                Next::Reply(r) => {
                    tracing::debug!(from = %name, "answered");
                    if let Ok(mut l) = self.leaders.lock() {
                        l.insert(group.to_owned(), target);
                    }
                    return Ok(Ok(r));
                }
                Next::Fail(DikeError::SessionExpired { .. }) => {
                    self.renew_session();
                    let group = group.to_owned();
                    return Ok(Err(DikeError::SessionExpired { group }));
                }
                Next::Fail(e) => return Ok(Err(e)),
                Next::Redirect(l) if hops < voters.len() => {
                    hops += 1;
                    route.follow(l);
                }
                Next::Redirect(l) => {
                    route.follow(l);
                    let l = self.member_name(l);
                    last = Some(format!("leader hints go round in circles at {l}"));
                    sleep_until_min(deadline, retry_delay(retries)).await;
                    retries += 1;
                    hops = 0;
                }
                Next::Retry(why) => {
                    tracing::debug!(%group, %why, "retrying");
                    last = Some(why);
                    sleep_until_min(deadline, retry_delay(retries)).await;
                    retries += 1;
                }
                Next::NoAnswer => {
                    tracing::debug!(%group, %target, "no answer; retrying");
                    last = None;
                    sleep_until_min(deadline, retry_delay(retries)).await;
                    retries += 1;
                }
            }
        }
        let some_unreachable = !silent.is_empty();
        let reached = voters.iter().filter(|v| heard.contains(v)).count();
        Err((
            last,
            some_unreachable.then(|| quorum_note(reached, voters.len())),
        ))
    }

    /// One attempt at `target`, hedged: each time [`HEDGE_AFTER`] passes
    /// without its answer, the same request goes to another of `voters` in
    /// turn, and an answer from it that does more than say "wait" (see
    /// [`decisive`]) ends the attempt in its place. Returns who answered
    /// and what.
    async fn hedged_call(
        &self,
        group: &str,
        generation: u64,
        target: MemberId,
        voters: &[MemberId],
        bytes: &[u8],
        deadline: Instant,
    ) -> (MemberId, Result<Option<ClientReply>, ()>) {
        let first = self.call_member(group, generation, target, bytes, deadline);
        tokio::pin!(first);
        let others: Vec<MemberId> = voters.iter().copied().filter(|m| *m != target).collect();
        if others.is_empty() {
            return (target, first.await);
        }
        // Requests waiting on the same replica ask different others first.
        let mut turn = usize::try_from(next_random() % others.len() as u64).unwrap_or(0);
        loop {
            if let Ok(answer) = tokio::time::timeout(HEDGE_AFTER, &mut first).await {
                return (target, answer);
            }
            let other = others[turn % others.len()];
            turn += 1;
            tracing::debug!(%group, waiting_on = %target, asking = %other, "no answer yet; asking another voter");
            let probe = self.call_member(group, generation, other, bytes, deadline);
            tokio::select! {
                answer = &mut first => return (target, answer),
                answer = probe => {
                    if decisive(target, &answer) {
                        return (other, answer);
                    }
                }
            }
        }
    }

    /// One attempt at `member`'s replica of `group`: directly if it runs
    /// on this node, else through the node's transport, which coalesces
    /// the requests (and brings back the replies) of many callers.
    /// `Err(())`: it is not reachable; `Ok(None)`: no answer in time.
    async fn call_member(
        &self,
        group: &str,
        generation: u64,
        member: MemberId,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<Option<ClientReply>, ()> {
        let transport = self.ctx.transport();
        let Some(transport) = transport.filter(|_| member.node != self.ctx.config.node_id()) else {
            let actor = local_replica(group, generation, member)
                .or_else(|| find_replica(group, member, Some(generation)))
                .ok_or(())?;
            return call(&actor, bytes, self.attempt_wait(deadline)).await;
        };
        let wait = self.attempt_wait(deadline);
        let (group, payload) = (group.to_owned(), bytes.to_vec());
        let (node, incarnation) = (member.node.0, member.incarnation.0);
        let result = transport
            .call(
                |port| TransportMsg::Request(group, generation, node, incarnation, payload, port),
                Some(wait),
            )
            .await;
        answer_of(result)
    }
}

async fn sleep_until_min(deadline: Instant, d: Duration) {
    tokio::time::sleep_until((Instant::now() + d).min(deadline)).await;
}

/// The replica actor of `member` of `group`, found in the group's process
/// group (local or remote): of generation `generation`, or of the newest
/// generation running if `None`.
pub fn find_replica(
    group: &str,
    member: MemberId,
    generation: Option<u64>,
) -> Option<ActorRef<ReplicaMsg>> {
    ractor::pg::get_members(&wire::group_pg(group))
        .into_iter()
        .filter_map(|c| {
            let (m, g) = wire::parse_replica_name(&c.get_name()?)?;
            (m == member && generation.is_none_or(|want| want == g)).then_some((g, c))
        })
        .max_by_key(|(g, _)| *g)
        .map(|(_, c)| c.into())
}

/// Whether another voter's `answer`, given while the attempt waits on
/// `waited_on`, ends the attempt: it served or refused the request, or
/// names a leader other than `waited_on`. Not when it says to wait: it
/// believes in `waited_on` too, knows no leader yet (an election may be
/// under way), is busy, did not answer or cannot be reached.
fn decisive(waited_on: MemberId, answer: &Result<Option<ClientReply>, ()>) -> bool {
    match answer {
        Err(()) | Ok(None) => false,
        Ok(Some(Err(ReplyError::Request(e)))) => match e {
            RequestError::NotLeader { leader: Some(l) } => *l != waited_on,
            RequestError::NotLeader { leader: None } | RequestError::Busy => false,
            _ => true,
        },
        Ok(Some(_)) => true,
    }
}

impl Router {
    /// How long one attempt may wait.
    fn attempt_wait(&self, deadline: Instant) -> Duration {
        deadline
            .saturating_duration_since(Instant::now())
            .min(self.attempt_timeout)
    }
}

/// One call straight to a replica actor, waiting at most `wait`.
async fn call(
    actor: &ActorRef<ReplicaMsg>,
    bytes: &[u8],
    wait: Duration,
) -> Result<Option<ClientReply>, ()> {
    let payload = bytes.to_vec();
    let result = actor
        .call(|port| ReplicaMsg::Request(payload, port), Some(wait))
        .await;
    answer_of(result)
}

/// A call's outcome as an attempt's: the decoded reply, `None` when none
/// came in time, `Err(())` when the reply port was dropped unanswered (the
/// replica or its node is not reachable).
fn answer_of<E>(result: Result<CallResult<Vec<u8>>, E>) -> Result<Option<ClientReply>, ()> {
    match result {
        Ok(CallResult::Success(reply)) => Ok(Some(
            match codec::decode::<ClientReply>("client reply", &reply) {
                Ok(r) => r,
                Err(e) => Err(ReplyError::Malformed(e.to_string())),
            },
        )),
        Ok(CallResult::SenderError) => Err(()),
        Ok(CallResult::Timeout) | Err(_) => Ok(None),
    }
}

/// How a command shows in logs: its session and sequence number, as the
/// dispatcher's `request` span and the replica's `replica_request` span
/// both print it, so one command's path can be followed across nodes.
pub fn request_id(client: ClientId, seq: u64) -> String {
    format!("{:016x}.{seq}", client.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_grow_and_the_floor_is_the_oldest_in_flight() {
        let mut s = ClientSession::new(ClientId(1));
        let a = s.begin(vec![]);
        let b = s.begin(vec![]);
        assert_eq!((a.seq, a.ack_floor, b.seq, b.ack_floor), (1, 1, 2, 1));
        s.end(1);
        let c = s.begin(vec![]);
        assert_eq!((c.seq, c.ack_floor), (3, 2));
    }

    #[test]
    fn hints_redirect_errors_end_and_no_answer_retries() {
        let me = MemberId::new(1, 1);
        let other = MemberId::new(2, 1);
        let not_leader =
            |leader| Some(Err(ReplyError::Request(RequestError::NotLeader { leader })));
        assert_eq!(
            classify(me, "n1", not_leader(Some(other))),
            Next::Redirect(other)
        );
        assert!(matches!(
            classify(me, "n1", not_leader(Some(me))),
            Next::Retry(_)
        ));
        assert!(matches!(
            classify(me, "n1", not_leader(None)),
            Next::Retry(_)
        ));
        assert_eq!(classify(me, "n1", None), Next::NoAnswer);
        let app = Some(Err(ReplyError::Request(RequestError::Application(
            "boom".into(),
        ))));
        assert_eq!(
            classify(me, "n1", app),
            Next::Fail(DikeError::Application("boom".into()))
        );
        assert_eq!(classify(me, "n1", Some(Ok(vec![1]))), Next::Reply(vec![1]));
    }

    #[test]
    fn a_refused_transfer_ends_the_request_as_rejected() {
        let me = MemberId::new(1, 1);
        let refused = Some(Err(ReplyError::Transfer(
            "n3.1 is not a voter of the group".into(),
        )));
        assert_eq!(
            classify(me, "n1", refused),
            Next::Fail(DikeError::Rejected(
                "n3.1 is not a voter of the group".into()
            ))
        );
    }

    #[test]
    fn retry_reasons_name_the_node_not_its_internal_id() {
        let me = MemberId::new(626_980_046_172_116_160, 1);
        let not_leader = Some(Err(ReplyError::Request(RequestError::NotLeader {
            leader: None,
        })));
        let Next::Retry(why) = classify(me, "node n2 (127.0.0.1:7002)", not_leader) else {
            panic!("a retry")
        };
        assert!(why.contains("node n2 (127.0.0.1:7002)"), "{why}");
        assert!(!why.contains("626980046172116160"), "{why}");
    }

    /// A stand-in for a replica actor of group `group`: it keeps every
    /// request unanswered, or answers each with `NotLeader` naming a
    /// member, or with a reply.
    struct FakeReplica;

    enum Answers {
        Never,
        NotLeader(MemberId),
        Reply(Vec<u8>),
    }

    impl ractor::Actor for FakeReplica {
        type Msg = ReplicaMsg;
        type State = (Answers, Vec<ractor::RpcReplyPort<Vec<u8>>>);
        type Arguments = Answers;

        async fn pre_start(
            &self,
            _: ActorRef<ReplicaMsg>,
            answers: Answers,
        ) -> Result<Self::State, ractor::ActorProcessingErr> {
            Ok((answers, Vec::new()))
        }

        async fn handle(
            &self,
            _: ActorRef<ReplicaMsg>,
            msg: ReplicaMsg,
            (answers, kept): &mut Self::State,
        ) -> Result<(), ractor::ActorProcessingErr> {
            let ReplicaMsg::Request(_, port) = msg else {
                return Ok(());
            };
            let reply: ClientReply = match answers {
                Answers::Never => {
                    kept.push(port);
                    return Ok(());
                }
                Answers::NotLeader(l) => Err(ReplyError::Request(RequestError::NotLeader {
                    leader: Some(*l),
                })),
                Answers::Reply(r) => Ok(r.clone()),
            };
            let _ = port.send(codec::encode_compact("client reply", &reply)?);
            Ok(())
        }
    }

    type Spawned = (ActorRef<ReplicaMsg>, tokio::task::JoinHandle<()>);

    /// Fake replicas of `group` (generation 0), one per member, answering
    /// as told.
    async fn fake_replicas(
        group: &str,
        members: impl IntoIterator<Item = (MemberId, Answers)>,
    ) -> Vec<Spawned> {
        let mut actors = Vec::new();
        for (m, answers) in members {
            let name = wire::replica_name(group, 0, m);
            actors.push(
                ractor::Actor::spawn(Some(name), FakeReplica, answers)
                    .await
                    .expect("spawn a fake replica"),
            );
        }
        actors
    }

    async fn stop_all(actors: Vec<Spawned>) {
        for (actor, handle) in actors {
            actor.stop(None);
            handle.await.expect("stopped");
        }
    }

    /// A router of a node without a transport (every replica is local) that
    /// believes `leader` leads `group`, with an attempt timeout longer than
    /// any test: only a hedge can end an attempt at a silent replica.
    fn router_believing(name: &str, group: &str, leader: MemberId) -> Router {
        let config =
            crate::node::config::NodeConfig::builder(name, "127.0.0.1:1".parse().expect("address"))
                .cookie("c")
                .in_memory()
                .request_timeout(Duration::from_secs(60))
                .build()
                .expect("config");
        let mut router = Router::new(NodeContext::new(config));
        router.attempt_timeout = Duration::from_secs(600);
        router
            .leaders
            .lock()
            .expect("lock")
            .insert(group.to_owned(), leader);
        router
    }

    #[tokio::test]
    async fn a_request_whose_leader_hangs_is_answered_by_the_leader_another_voter_names() {
        let group = "hedge-hung-leader";
        let (hung, follower, new_leader) = (
            MemberId::new(1, 1),
            MemberId::new(2, 1),
            MemberId::new(3, 1),
        );
        let actors = fake_replicas(
            group,
            [
                (hung, Answers::Never),
                (follower, Answers::NotLeader(new_leader)),
                (new_leader, Answers::Reply(vec![42])),
            ],
        )
        .await;
        let router = router_believing("hedge-a", group, hung);
        let voters = [hung, follower, new_leader];
        let answered = router.send(group, &voters, vec![1], false).await;
        assert_eq!(answered, Ok(vec![42]));
        stop_all(actors).await;
    }

    #[tokio::test]
    async fn a_request_waits_on_its_leader_while_the_others_name_it_too() {
        let group = "hedge-slow-leader";
        let (slow, f1, f2) = (
            MemberId::new(1, 1),
            MemberId::new(2, 1),
            MemberId::new(3, 1),
        );
        let actors = fake_replicas(
            group,
            [
                (slow, Answers::Never),
                (f1, Answers::NotLeader(slow)),
                (f2, Answers::NotLeader(slow)),
            ],
        )
        .await;
        let mut router = router_believing("hedge-b", group, slow);
        // The request's deadline ends the wait: the others' answers never
        // do, nor send it elsewhere.
        router.attempt_timeout = ATTEMPT_TIMEOUT;
        let timeout = Duration::from_millis(3 * HEDGE_AFTER.as_millis() as u64);
        let deadline = Instant::now() + timeout;
        let bytes = codec::encode_compact("client request", &ClientRequest::Query(vec![1]))
            .expect("encode");
        let (from, answer) = router
            .hedged_call(group, 0, slow, &[slow, f1, f2], &bytes, deadline)
            .await;
        assert_eq!((from, answer), (slow, Ok(None)));
        stop_all(actors).await;
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), BACKOFF_MIN);
        assert_eq!(backoff(1), BACKOFF_MIN * 2);
        assert_eq!(backoff(30), BACKOFF_MAX);
    }

    #[test]
    fn retries_after_the_same_failure_are_spread_over_the_upper_half_of_the_backoff() {
        for attempt in [0, 3, 30] {
            let full = backoff(attempt);
            let delays: BTreeSet<Duration> = (0..200).map(|_| retry_delay(attempt)).collect();
            assert!(
                delays.iter().all(|d| *d >= full / 2 && *d <= full),
                "{delays:?}"
            );
            // Lockstep would be one delay; 200 draws give many.
            assert!(delays.len() > 100, "{attempt}: {} distinct", delays.len());
        }
    }
}
