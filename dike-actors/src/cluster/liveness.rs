//! The node-to-node liveness ping of DESIGN 4.3, as bookkeeping: which
//! peers stopped answering pings. ractor_cluster reports a session drop
//! when a peer's process exits, but a paused process or a cut link keeps
//! its session open, with messages queueing unanswered; the dispatcher
//! pings every connected node's admin actor once per refresh and feeds the
//! answers here.
//!
//! Invariant: a peer is reported unresponsive once per stretch of silence,
//! after [`MISSES_TO_SUSPECT`] pings in a row went unanswered, and becomes
//! a candidate again only after it answered.

use std::collections::{BTreeSet, HashMap};

/// Unanswered pings in a row after which a peer counts as down.
pub const MISSES_TO_SUSPECT: u32 = 3;

/// What one ping's outcome means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The peer just crossed the threshold: treat it as down.
    Unresponsive,
    /// The peer answers again after being suspected.
    Back,
}

/// Consecutive misses per peer. See the module documentation.
#[derive(Debug, Default)]
pub struct Liveness {
    misses: HashMap<String, u32>,
    suspected: BTreeSet<String>,
}

impl Liveness {
    /// Records whether `peer` answered its ping; returns what changed.
    pub fn record(&mut self, peer: &str, answered: bool) -> Option<Verdict> {
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

    #[test]
    fn a_peer_is_suspected_once_after_enough_misses_in_a_row() {
        let mut l = Liveness::default();
        assert_eq!(l.record("a", false), None);
        assert_eq!(l.record("a", true), None, "an answer resets the count");
        for _ in 1..MISSES_TO_SUSPECT {
            assert_eq!(l.record("a", false), None);
        }
        assert_eq!(l.record("a", false), Some(Verdict::Unresponsive));
        assert_eq!(l.record("a", false), None, "reported once");
        assert_eq!(l.record("b", false), None, "peers are counted apart");
        assert_eq!(l.record("a", true), Some(Verdict::Back));
        assert_eq!(l.record("a", true), None);
    }

    #[test]
    fn a_forgotten_peer_starts_afresh() {
        let mut l = Liveness::default();
        for _ in 0..MISSES_TO_SUSPECT {
            l.record("a", false);
        }
        l.forget("a");
        assert_eq!(l.record("a", true), None);
    }
}
