//! The cluster's status as an operator reads it (`dike status`,
//! `GET /status.json`): every node (up or down, master or not) and every
//! group (kind, epoch, members, leader) with what each of its replicas says
//! about itself (applied slot, lag, hibernating), or that it did not answer.
//!
//! [`ClusterStatus::of`] is a pure function of a routing table and the
//! replicas' answers; [`gather`] asks every replica at once, each within a
//! short timeout, so one dead or slow replica costs at most that timeout
//! and shows as unreachable instead of failing the whole status.
//!
//! Invariant: ids (64-bit numbers that JSON readers such as jq round) are
//! shown as node names or strings, never as JSON numbers.

use crate::cluster::transport::TransportMsg;
use crate::cluster::wire::{ClientReply, ClientRequest, ReplicaMsg, ReplicaStatus, ReplyError};
use crate::error::DikeError;
use crate::node::admin::{AdminMsg, NodeAbout};
use crate::node::config::MASTER_GROUP;
use crate::node::context::NodeContext;
use dike_core::routing::RoutingTable;
use dike_core::{codec, Config, MemberId, RequestError};
use ractor::rpc::CallResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The kind shown for the master group (which is not among the routing
/// table's groups: its members are the masters, `RoutingTable::masters`).
pub const MASTER_KIND: &str = "master";

/// A replica this many slots or more behind its group's most advanced
/// replica is flagged as lagging (a few slots behind is normal under load:
/// followers apply once they learn a slot is chosen).
pub const LAGGING_AFTER: u64 = 100;

/// The status of the cluster: nodes and groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The version of the routing table it was built from.
    pub table_version: u64,
    /// Every node in the table.
    pub nodes: Vec<NodeSummary>,
    /// The master group first, then every group of the table.
    pub groups: Vec<GroupSummary>,
}

/// One node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    /// Its name.
    pub name: String,
    /// Its cluster address.
    pub address: String,
    /// Whether the master counts it up.
    pub up: bool,
    /// Whether it is draining (`dike node drain`): it takes no new
    /// replicas and leads no group while another voter can.
    #[serde(default)]
    pub draining: bool,
    /// Whether it is one of the masters.
    pub master: bool,
    /// Whether the operator is removing it (`dike node remove`).
    #[serde(default)]
    pub removing: bool,
    /// The version it runs (`None`: it did not answer).
    #[serde(default)]
    pub version: Option<String>,
    /// Seconds since it started (`None`: it did not answer).
    #[serde(default)]
    pub uptime_seconds: Option<u64>,
}

/// How a node's state reads in a status column: "up" or "down", with
/// ", draining" while it drains or ", removing" while it is being removed.
pub fn node_state(up: bool, draining: bool, removing: bool) -> &'static str {
    match (up, removing, draining) {
        (true, false, false) => "up",
        (true, false, true) => "up, draining",
        (true, true, _) => "up, removing",
        (false, false, false) => "down",
        (false, false, true) => "down, draining",
        (false, true, _) => "down, removing",
    }
}

/// One group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// Its name.
    pub name: String,
    /// Its server kind ([`MASTER_KIND`] for the master group).
    pub kind: String,
    /// Its configuration epoch in the routing table.
    pub epoch: u64,
    /// The node of its leader: a replica that answered and says it leads
    /// (`None`: no answering replica leads).
    pub leader: Option<String>,
    /// Its replicas, voters first, then learners.
    pub replicas: Vec<ReplicaSummary>,
    /// What needs a look, one line each (no leader, a replica lagging or
    /// unreachable; the replica's `error` says why); empty when the group
    /// is healthy.
    pub problems: Vec<String>,
}

/// One replica of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSummary {
    /// The name of its node (its member id if the node is not in the table).
    pub node: String,
    /// Its member id, as a string.
    pub member: String,
    /// Whether it is a learner (not yet voting).
    pub learner: bool,
    /// Whether it answered; if not, `applied`, `lag` and `hibernating` are
    /// `None` and `error` says why.
    pub reachable: bool,
    /// Every slot up to this one is applied.
    pub applied: Option<u64>,
    /// Slots behind the most advanced replica of the group that answered.
    pub lag: Option<u64>,
    /// Whether the group hibernates at this replica (`None`: not said).
    pub hibernating: Option<bool>,
    /// Why it did not answer.
    pub error: Option<String>,
}

impl GroupSummary {
    /// Whether the group needs a look (see [`GroupSummary::problems`]).
    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// One group's members as [`ClusterStatus::of`] needs them.
struct GroupMembers<'a> {
    name: &'a str,
    kind: &'a str,
    generation: Option<u64>,
    config: &'a Config,
}

/// What the replicas answered, by group and member.
pub type Answers = BTreeMap<(String, MemberId), Result<ReplicaStatus, String>>;

/// What the nodes said about themselves, by node name (a node missing
/// did not answer).
pub type Abouts = BTreeMap<String, NodeAbout>;

fn groups_of<'a>(table: &'a RoutingTable, masters: &'a Config) -> Vec<GroupMembers<'a>> {
    let master = GroupMembers {
        name: MASTER_GROUP,
        kind: MASTER_KIND,
        generation: Some(0),
        config: masters,
    };
    std::iter::once(master)
        .chain(table.groups.values().map(|g| GroupMembers {
            name: &g.name,
            kind: &g.kind,
            generation: Some(g.generation),
            config: &g.config,
        }))
        .collect()
}

impl ClusterStatus {
    /// The status of the cluster of `table`, whose masters are the members
    /// of `masters`, given what its replicas answered (a member missing
    /// from `answers` shows as unreachable) and what its nodes said about
    /// themselves.
    pub fn of(
        table: &RoutingTable,
        masters: &Config,
        answers: &Answers,
        abouts: &Abouts,
    ) -> ClusterStatus {
        let node_name = |m: &MemberId| {
            table
                .node(m.node)
                .map_or_else(|| m.to_string(), |n| n.name.clone())
        };
        let nodes = table
            .nodes
            .values()
            .map(|n| NodeSummary {
                name: n.name.clone(),
                address: n.address.clone(),
                up: n.is_up(),
                draining: n.draining,
                master: masters.voters.iter().any(|m| m.node == n.id),
                removing: n.removing,
                version: abouts.get(&n.name).map(|a| a.version.clone()),
                uptime_seconds: abouts.get(&n.name).map(|a| a.uptime_seconds),
            })
            .collect();
        let groups = groups_of(table, masters)
            .into_iter()
            .map(|g| {
                let members = g.config.voters.iter().map(|m| (m, false));
                let learners = g.config.learners.iter().map(|m| (m, true));
                let answered: Vec<(&MemberId, bool, Result<&ReplicaStatus, String>)> = members
                    .chain(learners)
                    .map(|(m, learner)| {
                        let answer = match answers.get(&(g.name.to_owned(), *m)) {
                            Some(Ok(s)) => Ok(s),
                            Some(Err(e)) => Err(e.clone()),
                            None => Err("not asked".to_owned()),
                        };
                        (m, learner, answer)
                    })
                    .collect();
                let highest = answered
                    .iter()
                    .filter_map(|(_, _, a)| a.as_ref().ok().map(|s| s.applied))
                    .max();
                let leader = answered
                    .iter()
                    .filter_map(|(m, _, a)| a.as_ref().ok().map(|s| (**m, s)))
                    .filter(|(m, s)| s.leader == Some(*m))
                    .max_by_key(|(_, s)| s.applied)
                    .map(|(m, _)| node_name(&m));
                let replicas: Vec<ReplicaSummary> = answered
                    .iter()
                    .map(|(m, learner, a)| ReplicaSummary {
                        node: node_name(m),
                        member: m.to_string(),
                        learner: *learner,
                        reachable: a.is_ok(),
                        applied: a.as_ref().ok().map(|s| s.applied),
                        lag: a
                            .as_ref()
                            .ok()
                            .zip(highest)
                            .map(|(s, h)| h.saturating_sub(s.applied)),
                        hibernating: a.as_ref().ok().and_then(|s| s.hibernating),
                        error: a.as_ref().err().cloned(),
                    })
                    .collect();
                let mut problems = Vec::new();
                if leader.is_none() {
                    problems.push("no leader".to_owned());
                }
                for r in &replicas {
                    match (&r.error, r.lag) {
                        (Some(_), _) => problems.push(format!("{} unreachable", r.node)),
                        (None, Some(lag)) if lag >= LAGGING_AFTER => {
                            problems.push(format!("{} lags {lag} slots behind", r.node))
                        }
                        _ => {}
                    }
                }
                GroupSummary {
                    name: g.name.to_owned(),
                    kind: g.kind.to_owned(),
                    epoch: g.config.epoch,
                    leader,
                    replicas,
                    problems,
                }
            })
            .collect();
        ClusterStatus {
            table_version: table.version,
            nodes,
            groups,
        }
    }

    /// The groups that need a look.
    pub fn troubled_groups(&self) -> impl Iterator<Item = &GroupSummary> {
        self.groups.iter().filter(|g| g.has_problems())
    }
}

/// The status of the cluster of `table` with masters `masters`: asks every
/// replica of every group at once, each within `within`, from the node this
/// runs on (which must be connected to the cluster).
pub async fn gather(
    ctx: &Arc<NodeContext>,
    table: &RoutingTable,
    masters: &Config,
    within: Duration,
) -> ClusterStatus {
    let mut asks = tokio::task::JoinSet::new();
    for g in groups_of(table, masters) {
        let members = g.config.voters.iter().chain(&g.config.learners);
        for &member in members {
            let (group, generation) = (g.name.to_owned(), g.generation);
            let ctx = ctx.clone();
            asks.spawn(async move {
                let answer = replica_status_within(&ctx, &group, generation, member, within, false)
                    .await
                    .map_err(|e| match e {
                        DikeError::Unavailable { reason, .. } => reason,
                        other => other.to_string(),
                    });
                ((group, member), answer)
            });
        }
    }
    let mut abouts = tokio::task::JoinSet::new();
    for n in table.nodes.values().filter(|n| n.is_up()) {
        let name = n.name.clone();
        abouts.spawn(async move {
            let about = node_about_within(&name, within).await;
            (name, about)
        });
    }
    let mut answers = Answers::new();
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok((key, answer)) => {
                answers.insert(key, answer);
            }
            // A task that panicked leaves its replica "not asked".
            Err(e) => tracing::warn!("a replica status task failed: {e}"),
        }
    }
    let mut said = Abouts::new();
    while let Some(joined) = abouts.join_next().await {
        if let Ok((name, Some(about))) = joined {
            said.insert(name, about);
        }
    }
    ClusterStatus::of(table, masters, &answers, &said)
}

/// What node `name` says about itself, if it answers within `within`.
async fn node_about_within(name: &str, within: Duration) -> Option<NodeAbout> {
    let admin = crate::node::admin::find_admin(name)?;
    let wait = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
    let bytes: Vec<u8> = ractor::call_t!(admin, AdminMsg::About, wait).ok()?;
    codec::decode("node about", &bytes).ok()
}

/// The status of the cluster from the node of `ctx`, using the routing
/// table its dispatcher holds (no master round trip): for the node's own
/// `GET /status.json`.
pub(crate) async fn of_node(
    ctx: &Arc<NodeContext>,
    within: Duration,
) -> Result<ClusterStatus, String> {
    let dispatcher = ctx.dispatcher().ok_or("the node is stopping")?;
    let wait = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
    let table = ractor::call_t!(
        dispatcher,
        crate::routing::dispatcher::DispatcherMsg::RoutingTable,
        wait
    )
    .map_err(|e| format!("the dispatcher did not answer: {e}"))?;
    let masters = table.masters.config.clone();
    let masters = masters.unwrap_or_else(|| ctx.masters().config.clone());
    Ok(gather(ctx, &table, &masters, within).await)
}

/// What the replica of `member` in `group` (of creation `generation`, or
/// the one the cached routing table names) says about itself, within
/// `within`; with the digest of its state if `with_digest` (see
/// [`ClientRequest::Status`]). Asked from the node of `ctx`: directly if
/// the replica runs there, else through the node's transport, as client
/// requests go.
pub async fn replica_status_within(
    ctx: &NodeContext,
    group: &str,
    generation: Option<u64>,
    member: MemberId,
    within: Duration,
    with_digest: bool,
) -> Result<ReplicaStatus, DikeError> {
    let unavailable = |reason: &str| DikeError::Unavailable {
        group: group.to_owned(),
        reason: reason.to_owned(),
    };
    // The reasons name no member: callers say which node's replica it is
    // (`dike status` by its row, `NodeHandle::replica_status` by name).
    const GONE: &str = "not reachable (its node is down or cut off, or it does not run there)";
    let wait = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
    let transport = ctx.transport();
    let Some(transport) = transport.filter(|_| member.node != ctx.config.node_id()) else {
        let replica = crate::routing::router::find_replica(group, member, generation)
            .ok_or_else(|| unavailable(GONE))?;
        let bytes: Vec<u8> = ractor::call_t!(replica, ReplicaMsg::Status, wait, with_digest)
            .map_err(|e| unavailable(&format!("no answer: {e}")))?;
        return Ok(codec::decode("replica status", &bytes)?);
    };
    let generation = match (generation, ctx.router()) {
        (Some(g), _) => g,
        (None, Some(router)) => {
            // A node that just started (a CLI command's) may not have read
            // the table with this group yet: the replica's name holds the
            // generation, so a wrong one finds nothing.
            if group != MASTER_GROUP && router.table().group(group).is_none() {
                let _ = router.refresh().await;
            }
            router.generation(group)
        }
        (None, None) => 0,
    };
    let request = codec::encode_compact("status request", &ClientRequest::Status(with_digest))?;
    let (node, incarnation) = (member.node.0, member.incarnation.0);
    let group_name = group.to_owned();
    let answer = transport
        .call(
            |port| TransportMsg::Request(group_name, generation, node, incarnation, request, port),
            Some(within),
        )
        .await;
    match answer {
        Ok(CallResult::Success(bytes)) => {
            match codec::decode::<ClientReply>("status reply", &bytes)? {
                Ok(status) => Ok(codec::decode("replica status", &status)?),
                // What a transport answers for a replica that does not run
                // on its node.
                Err(ReplyError::Request(RequestError::NotLeader { .. })) => Err(unavailable(GONE)),
                Err(e) => Err(unavailable(&format!("refused: {e:?}"))),
            }
        }
        Ok(CallResult::Timeout) => Err(unavailable(&format!("no answer within {within:?}"))),
        Ok(CallResult::SenderError) | Err(_) => Err(unavailable(GONE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::config::node_id_of;
    use dike_core::Incarnation;

    /// Three nodes n1..n3 and group `calc` on all three.
    fn table() -> (RoutingTable, Config) {
        let mut t = RoutingTable::new();
        for (i, name) in ["n1", "n2", "n3"].into_iter().enumerate() {
            t.add_node(
                node_id_of(name),
                name,
                format!("127.0.0.1:700{i}"),
                Incarnation(u64::MAX - i as u64),
            )
            .expect("add node");
        }
        t.add_group("calc", "arithmetic", 3).expect("add group");
        let masters = Config::initial(vec![MemberId {
            node: node_id_of("n1"),
            incarnation: Incarnation(0),
        }]);
        (t, masters)
    }

    fn calc_members(t: &RoutingTable) -> Vec<MemberId> {
        t.voters("calc").expect("calc").to_vec()
    }

    fn answer(member: MemberId, leader: MemberId, applied: u64) -> ReplicaStatus {
        ReplicaStatus {
            member,
            leader: Some(leader),
            applied,
            starts: 1,
            state_digest: None,
            hibernating: Some(false),
        }
    }

    fn all_answer(t: &RoutingTable, masters: &Config, applied: [u64; 3]) -> Answers {
        let members = calc_members(t);
        let mut answers = Answers::new();
        for (m, a) in members.iter().zip(applied) {
            answers.insert(("calc".into(), *m), Ok(answer(*m, members[0], a)));
        }
        let master = masters.voters[0];
        answers.insert((MASTER_GROUP.into(), master), Ok(answer(master, master, 1)));
        answers
    }

    #[test]
    fn a_healthy_group_shows_its_leader_and_every_replicas_lag_by_node_name() {
        let (t, masters) = table();
        let s = ClusterStatus::of(
            &t,
            &masters,
            &all_answer(&t, &masters, [10, 9, 10]),
            &Abouts::new(),
        );
        let calc = s.groups.iter().find(|g| g.name == "calc").expect("calc");
        let leader_node = t.node(calc_members(&t)[0].node).expect("node").name.clone();
        assert_eq!(calc.leader.as_deref(), Some(leader_node.as_str()));
        assert_eq!(calc.kind, "arithmetic");
        let lags: Vec<_> = calc.replicas.iter().map(|r| r.lag).collect();
        assert_eq!(lags, [Some(0), Some(1), Some(0)]);
        assert!(calc.replicas.iter().all(|r| r.node.starts_with('n')));
        assert!(!calc.has_problems(), "{:?}", calc.problems);
        assert_eq!(s.troubled_groups().count(), 0);
        assert_eq!(s.groups[0].name, MASTER_GROUP);
        let masters: Vec<_> = s
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.master))
            .collect();
        assert!(masters.contains(&("n1", true)) && masters.contains(&("n2", false)));
    }

    #[test]
    fn a_group_without_a_leader_or_with_a_lagging_or_silent_replica_is_flagged() {
        let (t, masters) = table();
        let members = calc_members(&t);

        let mut lagging = all_answer(&t, &masters, [500, 500, 500 - LAGGING_AFTER]);
        let s = ClusterStatus::of(&t, &masters, &lagging, &Abouts::new());
        let calc = &s.groups[1];
        assert_eq!(calc.problems.len(), 1, "{:?}", calc.problems);
        assert!(
            calc.problems[0].contains("lags 100 slots"),
            "{:?}",
            calc.problems
        );

        lagging.insert(("calc".into(), members[2]), Err("gone".into()));
        let s = ClusterStatus::of(&t, &masters, &lagging, &Abouts::new());
        let silent = &s.groups[1].replicas[2];
        assert!(!silent.reachable);
        assert_eq!((silent.applied, silent.lag), (None, None));
        assert_eq!(
            s.groups[1].problems[0],
            format!("{} unreachable", silent.node)
        );
        assert_eq!(silent.error.as_deref(), Some("gone"));

        // The leader's replica is silent: the others' belief is not enough.
        lagging.insert(("calc".into(), members[0]), Err("gone".into()));
        let s = ClusterStatus::of(&t, &masters, &lagging, &Abouts::new());
        assert_eq!(s.groups[1].leader, None);
        assert_eq!(s.groups[1].problems[0], "no leader");
        assert_eq!(s.troubled_groups().count(), 1);
    }

    #[test]
    fn the_json_form_has_no_64_bit_ids_as_numbers() {
        let (t, masters) = table();
        let s = ClusterStatus::of(
            &t,
            &masters,
            &all_answer(&t, &masters, [1, 1, 1]),
            &Abouts::new(),
        );
        let json = serde_json::to_value(&s).expect("json");
        let member = &json["groups"][1]["replicas"][0]["member"];
        assert!(member.is_string(), "{member}");
        assert!(json["groups"][1]["leader"].is_string());
        let back: ClusterStatus = serde_json::from_value(json).expect("parse back");
        assert_eq!(back, s);
    }
}
