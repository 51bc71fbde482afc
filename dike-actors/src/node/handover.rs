//! Moving leaderships: [`NodeHandle::transfer_leadership`] (what `dike
//! leader transfer` does) and [`NodeHandle::hand_over_leaderships`] (what a
//! node does before a graceful stop).
//!
//! Invariant: nothing here decides anything a replica's ballots do not: a
//! request only makes a leader start a transfer, and success is read from
//! the target's own status (it says it leads), never assumed.

use super::status;
use super::NodeHandle;
use crate::cluster::wire::ReplicaMsg;
use crate::error::DikeError;
use crate::group::supervisor::GroupSupMsg;
use crate::routing::dispatcher::DispatcherMsg;
use dike_core::codec;
use ractor::ActorRef;
use std::time::{Duration, Instant};

/// What [`NodeHandle::hand_over_leaderships`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandOverReport {
    /// Groups whose leadership moved, with the member that now leads.
    pub handed_over: Vec<(String, dike_core::MemberId)>,
    /// Groups handed to a member that did not confirm it leads in time (or
    /// whose leadership went elsewhere meanwhile).
    pub not_confirmed: Vec<(String, dike_core::MemberId)>,
}

impl NodeHandle {
    /// Hands leadership of `group` to its voter `to` and waits (up to
    /// `within`) until `to` says it leads. The group's leader is found as
    /// for any request (following hints); it refuses if `to` is not a
    /// voter, or while a membership change is in flight. A transfer that
    /// gave up (the target was behind, or unreachable for a moment) is asked
    /// again every second until the deadline, which ends in
    /// [`DikeError::Timeout`] naming the leader as it stands.
    pub async fn transfer_leadership(
        &self,
        group: &str,
        to: dike_core::MemberId,
        within: Duration,
    ) -> Result<(), DikeError> {
        let deadline = Instant::now() + within;
        let mut asked_at: Option<Instant> = None;
        let mut leader = None;
        loop {
            if asked_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                let request = || format!("a leader transfer in group {group:?}");
                let group = group.to_owned();
                self.ask(request, |reply| DispatcherMsg::Transfer {
                    group,
                    to,
                    reply,
                })
                .await?;
                asked_at = Some(Instant::now());
            }
            let wait = Duration::from_millis(300);
            if let Ok(s) =
                status::replica_status_within(&self.ctx, group, None, to, wait, false).await
            {
                if s.leader == Some(to) {
                    return Ok(());
                }
                leader = s.leader;
            }
            if Instant::now() >= deadline {
                let leader = match leader {
                    Some(l) => self.member_name(l).await,
                    None => "unknown".to_owned(),
                };
                return Err(DikeError::Timeout {
                    group: group.to_owned(),
                    after: within,
                    detail: Some(format!(
                        "{} did not take over leadership; the leader is {leader}",
                        self.member_name(to).await
                    )),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How messages name `m`: its node's name from the cached routing
    /// table, else its id.
    pub(crate) async fn member_name(&self, m: dike_core::MemberId) -> String {
        match self.cached_table().await {
            Ok(t) => t.node(m.node).map(|n| n.name.clone()),
            Err(_) => None,
        }
        .unwrap_or_else(|| m.to_string())
    }

    /// Hands every leadership this node holds to a live voter of each
    /// group and waits, up to `within` overall, until each new leader says
    /// it leads: call it before [`NodeHandle::stop`] so a graceful restart
    /// costs the groups no election timeout (`dike node` does on SIGTERM
    /// and Ctrl-C). Every local replica is also marked as leaving, so no
    /// leadership is handed back to it meanwhile. Groups whose voters are
    /// all elsewhere down keep their leader here; they elect one after the
    /// stop as usual.
    pub async fn hand_over_leaderships(&self, within: Duration) -> HandOverReport {
        let deadline = Instant::now() + within;
        let me = self.node_id();
        let live: Vec<u64> = match self.cached_table().await {
            Ok(t) => t
                .nodes
                .values()
                .filter(|n| n.is_up() && n.id != me)
                .map(|n| n.id.0)
                .collect(),
            Err(_) => Vec::new(),
        };
        let replicas = match self.ctx.group_supervisor() {
            Some(g) => ractor::call_t!(g, GroupSupMsg::Replicas, 1000).unwrap_or_default(),
            None => Vec::new(),
        };
        let mut report = HandOverReport::default();
        let Ok(live) = codec::encode("live nodes", &live) else {
            return report;
        };
        let ask = |replica: ActorRef<ReplicaMsg>, live: Vec<u8>| async move {
            ractor::call_t!(replica, ReplicaMsg::HandOver, 1000, live)
                .ok()
                .and_then(|b| codec::decode::<Option<dike_core::MemberId>>("hand-over", &b).ok())
                .flatten()
        };
        let mut pending = Vec::new();
        for (group, replica) in replicas {
            if let Some(to) = ask(replica.clone(), live.clone()).await {
                pending.push((group, replica, to));
            }
        }
        let mut asked_at = Instant::now();
        while !pending.is_empty() && Instant::now() < deadline {
            // A transfer that gave up (its target was behind) is asked again.
            let again = asked_at.elapsed() >= Duration::from_secs(1);
            if again {
                asked_at = Instant::now();
            }
            let mut still = Vec::new();
            for (group, replica, to) in pending {
                let wait = Duration::from_millis(300);
                match status::replica_status_within(&self.ctx, &group, None, to, wait, false).await
                {
                    Ok(s) if s.leader == Some(to) => report.handed_over.push((group, to)),
                    _ if again => match ask(replica.clone(), live.clone()).await {
                        Some(to) => still.push((group, replica, to)),
                        // It no longer leads: someone else took over.
                        None => report.not_confirmed.push((group, to)),
                    },
                    _ => still.push((group, replica, to)),
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        report
            .not_confirmed
            .extend(pending.into_iter().map(|(g, _, to)| (g, to)));
        report
    }
}
