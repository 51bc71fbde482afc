//! When a leader hands leadership back to its group's preferred leader
//! (the first voter), and how long it waits to try a transfer of its own
//! again after one gave up (see `transfer` and `drain`).
//!
//! A plain part with no IO, kept by the leader for one leadership.
//!
//! Rules:
//! - leadership goes back only to a preferred leader this leader saw
//!   silent for an election timeout (a failover, a partition) or draining,
//!   never to one an operator moved it away from while it was live;
//! - silence counts only from the start of the leadership or its last wake
//!   from hibernation: members are not heard from while the group sleeps;
//! - the hand-back starts once the preferred leader has been heard from and
//!   caught up for `after` ticks in a row; a break (or a sleep, or a
//!   transfer that gave up) starts the count over;
//! - after each transfer the leader started by itself that gave up, it
//!   waits twice as long as after the one before (`after` times 2, 4, …,
//!   at most 32) before it starts another.

/// The preferred leader as one leader saw it, and the backoff of the
/// transfers that leader starts by itself.
#[derive(Debug)]
pub(crate) struct HandBack {
    /// How long the preferred leader must be ready, in a row, before the
    /// hand-back (`preferred_leader_after_ticks`); also the unit of the
    /// backoff.
    after: u64,
    /// Silence for this long makes the preferred leader missed (an
    /// election timeout).
    timeout: u64,
    /// Since this tick the preferred leader has been heard from and caught
    /// up without a break.
    ready_since: Option<u64>,
    /// No transfer this leader starts by itself before this tick.
    retry_at: u64,
    /// Transfers this leader started by itself that gave up.
    given_up: u32,
    /// The preferred leader was silent for an election timeout (or
    /// draining) during this leadership.
    missed: bool,
    /// Silence counts from this tick: the start of the leadership or its
    /// last wake from hibernation.
    since: u64,
    /// The leader was seen asleep since it last looked (`since` moves
    /// when it next looks).
    slept: bool,
}

impl HandBack {
    /// A leadership that began at `now`: the preferred leader not missed,
    /// no backoff.
    pub(super) fn new(now: u64, after: u64, timeout: u64) -> Self {
        HandBack {
            after,
            timeout: timeout.max(1),
            ready_since: None,
            retry_at: 0,
            given_up: 0,
            missed: false,
            since: now,
            slept: false,
        }
    }

    /// Whether a hand-back is coming (the preferred leader is back and
    /// caught up, and no backoff holds it): the group stays awake for it,
    /// so an idle group sleeps under its preferred leader.
    pub(super) fn due(&self, now: u64) -> bool {
        self.ready_since.is_some() && self.may_retry(now)
    }

    /// Whether no backoff holds a transfer the leader starts by itself.
    pub(super) fn may_retry(&self, now: u64) -> bool {
        now >= self.retry_at
    }

    /// The leader is asleep: the preferred leader's run of being ready
    /// breaks, and silence counts again from the leader's next look.
    pub(super) fn note_asleep(&mut self) {
        self.slept = true;
        self.ready_since = None;
    }

    /// The preferred leader's node is draining: no hand-back to it, and it
    /// counts as missed, so once undrained it gets leadership back as after
    /// a failover.
    pub(super) fn note_draining(&mut self) {
        self.missed = true;
        self.ready_since = None;
    }

    /// A transfer gave up at `now`: the run starts over, and if the leader
    /// started it by itself (`automatic`), the next waits twice as long.
    pub(super) fn note_gave_up(&mut self, now: u64, automatic: bool) {
        self.ready_since = None;
        if automatic {
            self.given_up = self.given_up.saturating_add(1);
            let wait = self.after.max(1).saturating_mul(1 << self.given_up.min(5));
            self.retry_at = now + wait;
        }
    }

    /// An awake leader's look at the preferred leader at `now`: it was
    /// last heard from at `last_heard`, and it is `ready` (heard from
    /// recently, caught up, and nothing else holds a transfer). Whether to
    /// start handing leadership back now.
    pub(super) fn look(&mut self, now: u64, last_heard: Option<u64>, ready: bool) -> bool {
        if std::mem::take(&mut self.slept) {
            self.since = now;
        }
        if now >= last_heard.unwrap_or(0).max(self.since) + self.timeout {
            self.missed = true;
        }
        if !self.missed {
            return false;
        }
        if !ready {
            self.ready_since = None;
            return false;
        }
        let since = *self.ready_since.get_or_insert(now);
        now >= since + self.after && self.may_retry(now)
    }
}

#[cfg(test)]
mod tests {
    use super::HandBack;

    const AFTER: u64 = 10;
    const TIMEOUT: u64 = 5;

    /// A hand-back whose leadership began at tick 0.
    fn hand_back() -> HandBack {
        HandBack::new(0, AFTER, TIMEOUT)
    }

    /// Looks at a preferred leader heard from at every tick of `ticks`,
    /// ready as `ready` says; whether the last look starts the hand-back.
    fn look_heard(h: &mut HandBack, ticks: std::ops::RangeInclusive<u64>, ready: bool) -> bool {
        let mut start = false;
        for now in ticks {
            start = h.look(now, Some(now), ready);
        }
        start
    }

    #[test]
    fn a_preferred_leader_never_missed_gets_no_leadership_back() {
        let mut h = hand_back();
        assert!(!look_heard(&mut h, 0..=100, true));
        assert!(!h.due(100));
    }

    #[test]
    fn a_preferred_leader_silent_for_an_election_timeout_is_missed() {
        let mut h = hand_back();
        assert!(!h.look(TIMEOUT - 1, None, true), "not silent long enough");
        h.look(TIMEOUT, None, true);
        assert!(h.due(TIMEOUT), "missed, and ready from here");
    }

    #[test]
    fn leadership_goes_back_once_the_preferred_leader_was_ready_for_after_ticks_in_a_row() {
        let mut h = hand_back();
        h.look(TIMEOUT, None, true);
        assert!(!look_heard(&mut h, TIMEOUT + 1..=TIMEOUT + AFTER - 1, true));
        assert!(look_heard(&mut h, TIMEOUT + AFTER..=TIMEOUT + AFTER, true));
    }

    #[test]
    fn a_break_in_readiness_starts_the_count_over() {
        let mut h = hand_back();
        h.look(TIMEOUT, None, true);
        look_heard(&mut h, TIMEOUT + 1..=TIMEOUT + AFTER - 1, true);
        assert!(!h.look(TIMEOUT + AFTER, Some(TIMEOUT + AFTER), false));
        assert!(!h.due(TIMEOUT + AFTER));
        let again = TIMEOUT + AFTER + 1;
        assert!(!look_heard(&mut h, again..=again + AFTER - 1, true));
        assert!(look_heard(&mut h, again + AFTER..=again + AFTER, true));
    }

    #[test]
    fn silence_counts_only_from_the_last_wake_from_sleep() {
        let mut h = hand_back();
        h.look(1, Some(1), true);
        h.note_asleep();
        // Asleep from tick 1 to 100, hearing nobody: on waking, the
        // preferred leader is not missed until a timeout after the wake.
        assert!(!h.look(100, Some(1), true));
        assert!(!h.look(100 + TIMEOUT - 1, Some(1), true));
        h.look(100 + TIMEOUT, Some(1), true);
        assert!(h.due(100 + TIMEOUT));
    }

    #[test]
    fn sleeping_breaks_the_run_of_readiness() {
        let mut h = hand_back();
        h.look(TIMEOUT, None, true);
        assert!(h.due(TIMEOUT));
        h.note_asleep();
        assert!(!h.due(TIMEOUT + 1));
    }

    #[test]
    fn a_draining_preferred_leader_counts_as_missed() {
        let mut h = hand_back();
        h.note_draining();
        assert!(!h.due(1));
        assert!(!look_heard(&mut h, 1..=AFTER, true));
        assert!(look_heard(&mut h, AFTER + 1..=AFTER + 1, true));
    }

    #[test]
    fn each_automatic_transfer_that_gave_up_doubles_the_wait_before_the_next() {
        let mut h = hand_back();
        h.note_gave_up(100, true);
        assert!(!h.may_retry(100 + 2 * AFTER - 1));
        assert!(h.may_retry(100 + 2 * AFTER));
        h.note_gave_up(200, true);
        assert!(!h.may_retry(200 + 4 * AFTER - 1));
        assert!(h.may_retry(200 + 4 * AFTER));
    }

    #[test]
    fn the_backoff_stops_doubling_at_32_times_after() {
        let mut h = hand_back();
        for _ in 0..10 {
            h.note_gave_up(0, true);
        }
        assert!(!h.may_retry(32 * AFTER - 1));
        assert!(h.may_retry(32 * AFTER));
    }

    #[test]
    fn a_transfer_a_caller_asked_for_that_gave_up_sets_no_backoff_but_breaks_the_run() {
        let mut h = hand_back();
        h.look(TIMEOUT, None, true);
        h.note_gave_up(TIMEOUT + 1, false);
        assert!(h.may_retry(TIMEOUT + 1));
        assert!(!h.due(TIMEOUT + 1));
    }

    #[test]
    fn a_backoff_holds_the_hand_back_even_once_the_preferred_leader_is_ready() {
        let mut h = hand_back();
        h.note_gave_up(0, true);
        h.look(TIMEOUT, None, true);
        assert!(!h.due(TIMEOUT), "backoff until {}", 2 * AFTER);
        assert!(!look_heard(&mut h, TIMEOUT + 1..=2 * AFTER - 1, true));
        assert!(look_heard(&mut h, 2 * AFTER..=2 * AFTER, true));
    }
}
