//! The node-to-node liveness ping of DESIGN 4.3, as bookkeeping: which
//! peers stopped answering pings. ractor_cluster reports a session drop
//! when a peer's process exits, but a paused process or a cut link keeps
//! its session open, with messages queueing unanswered; the dispatcher
//! pings every connected node's admin actor, and its own, once per refresh
//! and feeds each round's answers here.
//!
//! A ping timeout cannot tell a silent peer from a busy cluster: when
//! every node is short of CPU (a node restarting with 10,000 replicas,
//! thousands of groups being created), pings take seconds everywhere. Each
//! peer reported down makes the replicas it led elsewhere campaign, which
//! adds load, which slows pings further: measured at 10,000 groups, every
//! node reported every other down, over and over, and no write was served
//! for minutes (docs/BENCHMARKS.md). So a round counts as evidence against
//! the peers that missed it only when most of the nodes pinged, this node
//! included, answered in time: then the cluster works and those peers do
//! not. A round most nodes missed says nothing about any one peer (this
//! node is busy, or cut off from most of the cluster, where its replicas
//! could not win an election anyway); it neither counts a miss nor clears
//! one. A peer whose process exits is still reported at once, by its
//! session's drop.
//!
//! Invariant: a peer is reported unresponsive once per stretch of silence,
//! after [`MISSES_TO_SUSPECT`] counted misses in a row, and becomes a
//! candidate again only after it answered.

use std::collections::{BTreeSet, HashMap};

/// Counted misses in a row after which a peer counts as down.
pub const MISSES_TO_SUSPECT: u32 = 3;

/// What one ping's outcome means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The peer just crossed the threshold: treat it as down.
    Unresponsive,
    /// The peer answers again after being suspected.
    Back,
}

/// One liveness round: whether this node's own admin actor answered its
/// ping in time, and whether each peer's did, by node name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// This node answered itself in time.
    pub me: bool,
    /// Each peer pinged, and whether it answered in time.
    pub peers: Vec<(String, bool)>,
}

impl Round {
    /// Whether the round can count misses: most of the nodes pinged, this
    /// one included, answered in time.
    pub fn conclusive(&self) -> bool {
        let answered = usize::from(self.me) + self.peers.iter().filter(|(_, ok)| *ok).count();
        2 * answered > self.peers.len() + 1
    }
}

/// Consecutive misses per peer. See the module documentation.
#[derive(Debug, Default)]
pub struct Liveness {
    misses: HashMap<String, u32>,
    suspected: BTreeSet<String>,
}

impl Liveness {
    /// Records a round; returns what changed, by peer.
    pub fn record_round(&mut self, round: &Round) -> Vec<(String, Verdict)> {
        let counts = round.conclusive();
        round
            .peers
            .iter()
            .filter(|(_, answered)| *answered || counts)
            .filter_map(|(peer, answered)| Some((peer.clone(), self.record(peer, *answered)?)))
            .collect()
    }

    /// Records whether `peer` answered its ping; returns what changed.
    fn record(&mut self, peer: &str, answered: bool) -> Option<Verdict> {
        if answered {
            self.misses.remove(peer);
            return self.suspected.remove(peer).then_some(Verdict::Back);
        }
        let misses = self.misses.entry(peer.to_owned()).or_default();
        *misses += 1;
        if *misses >= MISSES_TO_SUSPECT && self.suspected.insert(peer.to_owned()) {
            Some(Verdict::Unresponsive)
        } else {
            None
        }
    }

    /// Forgets `peer` (its session is gone; a new one starts afresh).
    pub fn forget(&mut self, peer: &str) {
        self.misses.remove(peer);
        self.suspected.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round of five nodes (this one and four peers, "a" to "d") in which
    /// this node and the peers not in `missed` answered.
    fn round(missed: &[&str]) -> Round {
        Round {
            me: true,
            peers: ["a", "b", "c", "d"]
                .iter()
                .map(|p| (p.to_string(), !missed.contains(p)))
                .collect(),
        }
    }

    #[test]
    fn a_peer_is_suspected_once_after_enough_misses_in_a_row() {
        let mut l = Liveness::default();
        assert_eq!(l.record_round(&round(&["a"])), vec![]);
        assert_eq!(
            l.record_round(&round(&[])),
            vec![],
            "an answer resets the count"
        );
        for _ in 1..MISSES_TO_SUSPECT {
            assert_eq!(l.record_round(&round(&["a"])), vec![]);
        }
        let down = vec![("a".to_string(), Verdict::Unresponsive)];
        assert_eq!(l.record_round(&round(&["a"])), down);
        assert_eq!(l.record_round(&round(&["a", "b"])), vec![], "reported once");
        let back = vec![("a".to_string(), Verdict::Back)];
        assert_eq!(l.record_round(&round(&[])), back);
        assert_eq!(l.record_round(&round(&[])), vec![]);
    }

    #[test]
    fn two_silent_peers_of_five_are_suspected() {
        let mut l = Liveness::default();
        let mut verdicts = Vec::new();
        for _ in 0..MISSES_TO_SUSPECT {
            verdicts = l.record_round(&round(&["a", "b"]));
        }
        assert_eq!(
            verdicts,
            vec![
                ("a".to_string(), Verdict::Unresponsive),
                ("b".to_string(), Verdict::Unresponsive)
            ]
        );
    }

    /// A busy cluster: most pings are late, and nobody is reported down
    /// however long it lasts; misses counted before it stay counted.
    #[test]
    fn rounds_most_nodes_missed_count_no_miss() {
        let mut l = Liveness::default();
        assert_eq!(l.record_round(&round(&["a"])), vec![]);
        for _ in 0..10 * MISSES_TO_SUSPECT {
            assert_eq!(l.record_round(&round(&["a", "b", "c"])), vec![]);
            assert_eq!(l.record_round(&round(&["a", "b", "c", "d"])), vec![]);
        }
        // This node answered nobody, itself included, in time.
        let late = Round {
            me: false,
            peers: vec![("a".into(), false), ("b".into(), true)],
        };
        for _ in 0..10 * MISSES_TO_SUSPECT {
            assert_eq!(l.record_round(&late), vec![]);
        }
        for _ in 2..MISSES_TO_SUSPECT {
            assert_eq!(l.record_round(&round(&["a"])), vec![]);
        }
        let down = vec![("a".to_string(), Verdict::Unresponsive)];
        assert_eq!(
            l.record_round(&round(&["a"])),
            down,
            "the miss before counts"
        );
    }

    #[test]
    fn an_answer_in_an_inconclusive_round_still_clears_a_suspicion() {
        let mut l = Liveness::default();
        for _ in 0..MISSES_TO_SUSPECT {
            l.record_round(&round(&["a"]));
        }
        let back = vec![("a".to_string(), Verdict::Back)];
        assert_eq!(l.record_round(&round(&["b", "c", "d"])), back);
    }

    #[test]
    fn with_one_peer_a_silent_peer_is_never_suspected_by_ping() {
        // Two nodes: this one alone is no majority. Groups spread over both
        // need both anyway; a peer that exits is seen by its session.
        let mut l = Liveness::default();
        let alone = Round {
            me: true,
            peers: vec![("a".into(), false)],
        };
        assert!(!alone.conclusive());
        for _ in 0..10 * MISSES_TO_SUSPECT {
            assert_eq!(l.record_round(&alone), vec![]);
        }
    }

    #[test]
    fn a_forgotten_peer_starts_afresh() {
        let mut l = Liveness::default();
        for _ in 0..MISSES_TO_SUSPECT {
            l.record_round(&round(&["a"]));
        }
        l.forget("a");
        assert_eq!(l.record_round(&round(&[])), vec![]);
    }
}
