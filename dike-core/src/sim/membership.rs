//! The simulator's operator: membership changes during faults, disks lost on
//! restart (new incarnations), and the bookkeeping that keeps a quorum of
//! every configuration recoverable (at most `f` voters down or lost).

use super::{Node, Simulation, TICK};
use crate::config::Config;
use crate::ids::MemberId;
use crate::replica::ConfigChange;

impl Simulation {
    /// The configuration with the highest epoch any live replica knows.
    pub(super) fn latest_config(&self) -> Config {
        self.nodes
            .iter()
            .filter_map(Node::replica)
            .map(|r| r.config())
            .max_by_key(|c| c.epoch)
            .cloned()
            .unwrap_or_else(|| self.config.clone())
    }

    /// Voters of the latest configuration without a live replica (down, or
    /// lost with a wiped disk).
    fn unavailable_voters(&self, config: &Config) -> usize {
        config
            .voters
            .iter()
            .filter(|v| {
                !self
                    .nodes
                    .iter()
                    .any(|n| n.member == **v && n.driver.is_some())
            })
            .count()
    }

    /// The configurations whose quorums must stay recoverable: the one
    /// every live replica is in (a replica behind the latest can learn the
    /// stop-sign that moved the group on only from a quorum of its own
    /// configuration, once the members that knew it are gone), the latest
    /// one, and every one a change still in flight could start (a stop-sign
    /// proposed by an earlier leader may be chosen after later proposals).
    pub(super) fn guarded_configs(&self) -> Vec<Config> {
        let latest = self.latest_config();
        let mut v: Vec<Config> = Vec::new();
        for c in self
            .nodes
            .iter()
            .filter_map(Node::replica)
            .map(|r| r.config())
        {
            if !v.iter().any(|k| k.epoch == c.epoch) {
                v.push(c.clone());
            }
        }
        if !v.iter().any(|k| k.epoch == latest.epoch) {
            v.push(latest.clone());
        }
        v.extend(
            self.pending_configs
                .iter()
                .filter(|p| p.epoch > latest.epoch)
                .cloned(),
        );
        v
    }

    /// Whether `config` keeps a live majority with one more voter down,
    /// counting `extra` as unavailable too.
    fn can_lose_one(&self, config: &Config, extra: MemberId) -> bool {
        let f = (config.voters.len() - 1) / 2;
        let unavailable = self.unavailable_voters(config) + usize::from(config.is_voter(extra));
        unavailable <= f
    }

    /// Whether node `i` may go down now without taking a quorum of a
    /// guarded configuration below a majority.
    pub(super) fn may_lose(&self, i: usize) -> bool {
        let m = self.nodes[i].member;
        let down_nodes = self.nodes.iter().filter(|n| n.driver.is_none()).count();
        down_nodes < 2
            && self
                .guarded_configs()
                .iter()
                .all(|c| self.can_lose_one(c, m))
    }

    /// Whether a restarting node may come back with an empty disk: only
    /// while membership changes run (so the lost member can be replaced) and
    /// while losing it keeps a majority recoverable.
    pub(super) fn may_wipe(&mut self) -> bool {
        if self.cfg.membership_per_10k == 0 || !self.rng.chance(self.cfg.wipe_pct) {
            return false;
        }
        // The node is down now, so it already counts as unavailable.
        self.guarded_configs().iter().all(|c| {
            let f = (c.voters.len() - 1) / 2;
            self.unavailable_voters(c) <= f
        })
    }

    /// Asks the leader for one membership change, chosen at random among
    /// those that make sense for the current configuration.
    pub(super) fn change_membership(&mut self) {
        let Some(li) = self
            .nodes
            .iter()
            .position(|n| n.replica().is_some_and(|r| r.is_leader()))
        else {
            return;
        };
        let config = self.latest_config();
        // Like the rebalancer, change only a configuration the table holds.
        if config.epoch > self.table.epoch {
            return;
        }
        let strangers: Vec<MemberId> = self
            .nodes
            .iter()
            .filter(|n| n.driver.is_some() && !config.all_members().any(|m| m == n.member))
            .map(|n| n.member)
            .collect();
        let lost: Vec<MemberId> = config
            .voters
            .iter()
            .copied()
            .filter(|v| !self.nodes.iter().any(|n| n.member == *v))
            .collect();
        let pick = |sim: &mut Simulation, v: &[MemberId]| v[sim.rng.below(v.len() as u64) as usize];
        let change = match self.rng.below(4) {
            0 if !strangers.is_empty() => ConfigChange::AddLearner(pick(self, &strangers)),
            1 if !config.learners.is_empty() => {
                let new = pick(self, &config.learners);
                let old = if !lost.is_empty() {
                    pick(self, &lost)
                } else {
                    pick(self, &config.voters)
                };
                ConfigChange::Replace { old, new }
            }
            2 if !config.learners.is_empty() && config.voters.len() < 5 => {
                ConfigChange::Promote(pick(self, &config.learners))
            }
            3 if config.voters.len() > 3 => ConfigChange::Remove(pick(self, &config.voters)),
            3 if !config.learners.is_empty() => ConfigChange::Remove(pick(self, &config.learners)),
            _ if !strangers.is_empty() => ConfigChange::AddLearner(pick(self, &strangers)),
            _ => return,
        };
        // Like a careful operator (or the master's placement), never make a
        // change that leaves the new configuration without a live majority.
        let Ok(next) = change.apply_to(&config) else {
            return;
        };
        let f = (next.voters.len() - 1) / 2;
        if self.unavailable_voters(&next) > f {
            return;
        }
        self.next_change += 1;
        let id = self.next_change;
        let Some(r) = self.nodes[li].driver.as_mut() else {
            return;
        };
        let leader_epoch = r.replica().config().epoch;
        let result = r.propose_change(id, change);
        self.log(|| format!("CHANGE {change:?}: {result:?}"));
        if result.is_ok() {
            self.report.changes += 1;
            let epoch = self.latest_config().epoch;
            self.pending_configs.retain(|p| p.epoch > epoch);
            let epoch = next.epoch;
            self.pending_configs.push(next);
            self.after_change(change, leader_epoch, epoch);
        }
    }

    /// Follows a change a leader of configuration `leader_epoch` accepted
    /// (it would make configuration `epoch`): a new learner has not run yet
    /// (and now and then starts late), and a promoted one must have since
    /// the change that added it, as the promoting leader knows it (a stale
    /// leader may promote a learner of an older configuration, which ran).
    fn after_change(&mut self, change: ConfigChange, leader_epoch: u64, epoch: u64) {
        match change {
            ConfigChange::AddLearner(m) => {
                self.new_learners.entry(m).or_default().push((epoch, false));
                if self.cfg.late_learner_pct > 0 && self.rng.chance(self.cfg.late_learner_pct) {
                    let e = TICK * self.cfg.options.election_ticks.max(1);
                    let until = self.now + self.rng.range(e, 6 * e);
                    if let Some(n) = self.nodes.iter_mut().find(|n| n.member == m) {
                        if n.driver.is_some() {
                            n.paused_until = n.paused_until.max(Some(until));
                        }
                    }
                    self.log(|| format!("LATE START {m} until {until}"));
                }
            }
            ConfigChange::Promote(m) | ConfigChange::Replace { new: m, .. } => {
                let added = self.new_learners.get(&m).and_then(|adds| {
                    adds.iter()
                        .filter(|(added, _)| *added <= leader_epoch)
                        .max_by_key(|(added, _)| *added)
                });
                if added.is_some_and(|(_, ran)| !ran) {
                    self.checker.fail(format!(
                        "learner {m} was promoted to voter before its replica ran: it cannot have caught up"
                    ));
                }
            }
            ConfigChange::Remove(_) => {}
        }
    }

    /// Asks the leader to hand leadership to a random voter of the latest
    /// configuration, whatever its state (down, lagging, cut off); one time
    /// in ten to any node at all, which the leader must refuse unless it is
    /// a voter.
    pub(super) fn transfer_leadership(&mut self) {
        let Some(li) = self
            .nodes
            .iter()
            .position(|n| n.replica().is_some_and(|r| r.is_leader()))
        else {
            return;
        };
        let config = self.latest_config();
        let to = if self.rng.chance(90) && !config.voters.is_empty() {
            config.voters[self.rng.below(config.voters.len() as u64) as usize]
        } else {
            self.nodes[self.rng.below(self.nodes.len() as u64) as usize].member
        };
        let Some(d) = self.nodes[li].driver.as_mut() else {
            return;
        };
        let from = d.replica().id();
        let result = d.transfer_leadership(to);
        self.log(|| format!("TRANSFER {from} -> {to}: {result:?}"));
        if result.is_ok() {
            self.report.transfers += 1;
        }
    }

    /// Drains a random node, or undrains it if it is draining, and tells
    /// every live replica (as the runtime does from the routing table).
    pub(super) fn drain_or_undrain(&mut self) {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let node = self.nodes[i].member.node;
        let draining = !self.draining.remove(&node);
        if draining {
            self.draining.insert(node);
        }
        self.report.drains += 1;
        let nodes = self.draining.clone();
        self.log(|| format!("DRAIN n{}: {draining} (draining: {nodes:?})", node.0));
        for n in &mut self.nodes {
            if let Some(d) = n.driver.as_mut() {
                d.set_draining_nodes(nodes.iter().copied());
            }
        }
    }

    /// After the heal: a node kept out that a late change made a member
    /// again comes back.
    pub(super) fn readmit(&mut self) {
        let config = self.latest_config();
        for n in &mut self.nodes {
            if n.excluded && config.all_members().any(|m| m == n.member) {
                n.excluded = false;
                n.restart_at = Some(self.now);
            }
        }
    }

    /// Members of the latest configuration with a live replica.
    pub(super) fn live_members(&self) -> Vec<usize> {
        let config = self.latest_config();
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].driver.is_some()
                    && config.all_members().any(|m| m == self.nodes[i].member)
            })
            .collect()
    }
}
