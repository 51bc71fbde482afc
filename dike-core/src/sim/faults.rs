//! Partition shapes: which directed links a fault cuts.

use super::{member, SimDriver, Simulation};
use crate::ids::NodeId;
use crate::replica::DownReport;
use crate::rng::Rng;
use std::collections::BTreeSet;

/// Cuts links in `blocked` (pairs of node indices, directed) in one of the
/// shapes below, chosen at random, and describes what it did. `leader` is
/// the index of the current leader, if any.
pub(crate) fn partition(
    rng: &mut Rng,
    blocked: &mut BTreeSet<(usize, usize)>,
    n: usize,
    leader: Option<usize>,
) -> String {
    let mut cut = |a: usize, b: usize| {
        blocked.insert((a, b));
        blocked.insert((b, a));
    };
    match rng.below(6) {
        0 => "healed".to_string(),
        1 | 2 => {
            // Majority/minority split, the leader on either side.
            let mut order: Vec<usize> = (0..n).collect();
            for k in (1..n).rev() {
                let j = rng.below(k as u64 + 1) as usize;
                order.swap(k, j);
            }
            let minority = &order[..n / 2];
            for &a in minority {
                for b in (0..n).filter(|b| !minority.contains(b)) {
                    cut(a, b);
                }
            }
            format!(
                "split: minority {:?}",
                minority.iter().map(|&i| member(i)).collect::<Vec<_>>()
            )
        }
        3 => {
            let l = leader.unwrap_or(0);
            for b in (0..n).filter(|&b| b != l) {
                cut(l, b);
            }
            format!("leader {} isolated", member(l))
        }
        4 => {
            // One-way: the leader can send but hears nothing (or the reverse).
            let l = leader.unwrap_or(0);
            let inbound = rng.chance(50);
            for b in (0..n).filter(|&b| b != l) {
                blocked.insert(if inbound { (b, l) } else { (l, b) });
            }
            format!(
                "one-way cut at {} ({})",
                member(l),
                if inbound { "deaf" } else { "mute" }
            )
        }
        _ => {
            // A bridge: two sides that only one node sees both of.
            let bridge = rng.below(n as u64) as usize;
            let others: Vec<usize> = (0..n).filter(|&i| i != bridge).collect();
            let (left, right) = others.split_at(others.len() / 2);
            for &a in left {
                for &b in right {
                    cut(a, b);
                }
            }
            format!("bridge through {}", member(bridge))
        }
    }
}

/// Cuts the link between two nodes only, the leader (or a random node) and
/// another: each is heard by everyone else, so each can win an election
/// and depose the other, and leadership keeps flipping between them.
pub(crate) fn duel(
    rng: &mut Rng,
    blocked: &mut BTreeSet<(usize, usize)>,
    n: usize,
    leader: Option<usize>,
) -> String {
    let a = leader.unwrap_or_else(|| rng.below(n as u64) as usize);
    let b = (a + 1 + rng.below(n as u64 - 1) as usize) % n;
    blocked.insert((a, b));
    blocked.insert((b, a));
    format!(
        "duel: {} and {} cannot hear each other",
        member(a),
        member(b)
    )
}

/// Reports `node` down to `d`; in a duel (`duel`: `node` runs, only the
/// link is cut) the first voter off that node campaigns at once if its
/// leader is there, whatever its election history. The runtime's
/// `GroupDriver::on_node_down` campaigns at once only when the replica's
/// elections have settled, so that false reports cannot keep a small group
/// electing; the dueling schedule forces the campaign itself, so that its
/// leadership keeps flipping between the two nodes as it is meant to.
fn duel_report(d: &mut SimDriver, node: NodeId, duel: bool, report: DownReport) {
    let succeeds = d.succeeds_leader_on(node);
    let campaigned = d.on_node_down(node, report);
    if duel && succeeds && !campaigned {
        d.campaign();
    }
}

/// Ticks a node must stay unreachable before an observer reports it down.
pub(super) const SUSPECT_AFTER: u32 = 3;

impl Simulation {
    /// The node-level failure detector of the runtime, simulated: an
    /// observer that cannot hear from a node reports it down to its
    /// replica, once per outage: a crashed node (its sessions closed) after
    /// `SUSPECT_AFTER` ticks, a paused one or one whose link towards the
    /// observer is cut after `unresponsive_after` ticks (the runtime's
    /// pings).
    pub(super) fn detect_failures(&mut self) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                let unreachable =
                    !self.nodes[b].running(self.now) || self.net.blocked.contains(&(b, a));
                let count = &mut self.suspicion[a][b];
                *count = if unreachable {
                    count.saturating_add(1)
                } else {
                    0
                };
                // A crashed node's sessions close; a paused node's and a
                // cut link's stay open, and only pings go unanswered.
                let (report, after) = if self.nodes[b].crashed() {
                    (DownReport::SessionClosed, SUSPECT_AFTER)
                } else {
                    (DownReport::Unresponsive, self.cfg.unresponsive_after)
                };
                if *count == after {
                    let running = self.nodes[b].running(self.now);
                    // A duel's cut (the other node runs): see `duel_report`.
                    let duel = self.cfg.duel_pct > 0 && running;
                    if let Some(d) = self.nodes[a].driver.as_mut() {
                        duel_report(d, NodeId(b as u64 + 1), duel, report);
                    }
                }
            }
        }
    }

    /// A false positive of the failure detector: a random node's replica
    /// hears that another node, which runs, is down.
    pub(super) fn suspect_wrongly(&mut self) {
        let n = self.nodes.len() as u64;
        let a = self.rng.below(n) as usize;
        let b = (a + 1 + self.rng.below(n - 1) as usize) % self.nodes.len();
        if !self.nodes[b].running(self.now) {
            return;
        }
        if let Some(d) = self.nodes[a].driver.as_mut() {
            // Pings that went unanswered: a suspicion (a live node's
            // session does not close).
            d.on_node_down(NodeId(b as u64 + 1), DownReport::Unresponsive);
            self.log(|| format!("{} wrongly hears that {} is down", member(a), member(b)));
        }
    }
}
