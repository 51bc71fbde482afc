//! The replica's logical time and its election timer: when the timer fires,
//! how far elections that did not finish stretch it, and when following a
//! leader brings it back to its base.
//!
//! A plain part with no randomness of its own: it gives the range a
//! timeout is drawn from, and the replica draws it with its seeded
//! generator (which snapshot jitter shares) and hands it back.
//!
//! Invariants:
//! - time only moves forward, by the ticks given;
//! - the highest round seen never falls;
//! - the stretch (`backoff`) is a power of two from 1 to
//!   [`MAX_ELECTION_BACKOFF`].

use crate::ids::Ballot;

/// The most election timeouts are stretched by after elections that did
/// not finish (a power of two).
pub const MAX_ELECTION_BACKOFF: u64 = 8;

/// Logical time and the election timer of one replica.
#[derive(Debug)]
pub(super) struct ElectionClock {
    /// Ticks since the replica started.
    now: u64,
    /// The base election timeout, as configured (`election_ticks`).
    base: u64,
    /// When the election timer fires.
    deadline: u64,
    /// The highest round of any ballot seen, own ones included.
    max_round_seen: u64,
    /// Elections this replica started in a row without following a leader
    /// for a whole election timeout since (winning does not count: a new
    /// leader that went back to short timeouts would unseat its successor
    /// the same way it unseated its predecessor): each doubles its
    /// election timeouts, up to [`MAX_ELECTION_BACKOFF`] times the base.
    elections_in_a_row: u32,
    /// The leader's ballot this follower hears, and since when.
    following: Option<(Ballot, u64)>,
    /// When this replica last heard its leader, or the candidate it
    /// promised.
    heard_at: Option<u64>,
}

impl ElectionClock {
    /// Time 0, a timer due at once, no round seen, no election started,
    /// with timeouts based on `election_ticks`.
    pub(super) fn new(election_ticks: u64) -> Self {
        ElectionClock {
            now: 0,
            base: election_ticks,
            deadline: 0,
            max_round_seen: 0,
            elections_in_a_row: 0,
            following: None,
            heard_at: None,
        }
    }

    /// Notes that the leader, or the candidate this replica promises,
    /// was heard now.
    pub(super) fn heard(&mut self) {
        self.heard_at = Some(self.now);
    }

    /// How many ticks from now until the leader (or promised candidate)
    /// has been silent for a base election timeout (0: it already has, or
    /// was never heard): a suspicion of its node says less than its own
    /// messages until then.
    pub(super) fn ticks_until_silent(&self) -> u64 {
        self.heard_at
            .map_or(0, |at| (at + self.base.max(1)).saturating_sub(self.now))
    }

    /// The current logical time.
    pub(super) fn now(&self) -> u64 {
        self.now
    }

    /// Moves time forward by `ticks`.
    pub(super) fn advance(&mut self, ticks: u64) {
        self.now += ticks;
    }

    /// When the election timer fires.
    pub(super) fn deadline(&self) -> u64 {
        self.deadline
    }

    /// Whether the election timer has fired (its deadline is reached).
    pub(super) fn expired(&self) -> bool {
        self.now >= self.deadline
    }

    /// Ticks from now until time `at`, at least one.
    pub(super) fn ticks_until(&self, at: u64) -> u64 {
        at.saturating_sub(self.now).max(1)
    }

    /// Sets the timer to fire `timeout` ticks from now.
    pub(super) fn reset(&mut self, timeout: u64) {
        self.deadline = self.now + timeout;
    }

    /// Makes the timer fire at most `timeout` ticks from now: brings it
    /// forward if it is due later, never puts it off.
    pub(super) fn expire_within(&mut self, timeout: u64) {
        self.deadline = self.deadline.min(self.now + timeout);
    }

    /// Whether every election this replica started has settled: it has
    /// followed one leader for a whole timeout since its last (or never
    /// started one).
    pub(super) fn settled(&self) -> bool {
        self.elections_in_a_row == 0
    }

    /// The factor on election timeouts and on a candidate's retransmissions:
    /// 1 for the first election in a row, doubling with each further one up
    /// to [`MAX_ELECTION_BACKOFF`].
    pub(super) fn backoff(&self) -> u64 {
        let doublings = self.elections_in_a_row.saturating_sub(1);
        1 << doublings.min(MAX_ELECTION_BACKOFF.trailing_zeros())
    }

    /// The election timeout stretched by the current backoff: the base (at
    /// least one tick) times [`ElectionClock::backoff`].
    pub(super) fn timeout(&self) -> u64 {
        self.base.max(1) * self.backoff()
    }

    /// The range `[low, high)` to draw an election timeout from, for the
    /// stretched timeout `e`: `[e, 2e)`, or `[e/2, e)` (rounded up) for a
    /// replica that should usually win (`preferred`).
    pub(super) fn timeout_range(&self, preferred: bool) -> (u64, u64) {
        let e = self.timeout();
        if preferred {
            (e.div_ceil(2), e)
        } else {
            (e, 2 * e)
        }
    }

    /// The range `[low, high)` to draw the wait of a restarted replica for
    /// its catch-up answers from: that of the longest election timeout,
    /// [`MAX_ELECTION_BACKOFF`] times the base, whatever the backoff.
    pub(super) fn catch_up_wait_range(&self) -> (u64, u64) {
        let e = self.base.max(1) * MAX_ELECTION_BACKOFF;
        (e, 2 * e)
    }

    /// The highest round of any ballot seen.
    pub(super) fn max_round_seen(&self) -> u64 {
        self.max_round_seen
    }

    /// Notes a ballot's round seen anywhere.
    pub(super) fn note_round(&mut self, round: u64) {
        self.max_round_seen = self.max_round_seen.max(round);
    }

    /// Counts an election this replica starts: one more in a row.
    pub(super) fn count_election(&mut self) {
        self.elections_in_a_row = self.elections_in_a_row.saturating_add(1);
    }

    /// Notes that this follower hears the leader of `ballot` now. Once it
    /// has heard the same ballot for a whole (stretched) election timeout,
    /// elections are no longer in a row and timeouts go back to their
    /// base: sooner, and a round trip that is longer than the base timeout
    /// would unseat every new leader. Hearing another ballot starts the
    /// count again.
    pub(super) fn follow(&mut self, ballot: Ballot) {
        match self.following {
            Some((b, since)) if b == ballot => {
                // The configured base, not the drawn timeouts' "at least
                // one tick": the two differ only for `election_ticks` 0.
                let timeout = self.base * self.backoff();
                if self.now >= since + timeout {
                    self.elections_in_a_row = 0;
                }
            }
            _ => self.following = Some((ballot, self.now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemberId;

    const E: u64 = 10;

    fn ballot(round: u64) -> Ballot {
        Ballot::new(round, MemberId::new(1, 0))
    }

    /// A clock after `n` elections in a row.
    fn after_elections(n: u32) -> ElectionClock {
        let mut c = ElectionClock::new(E);
        for _ in 0..n {
            c.count_election();
        }
        c
    }

    #[test]
    fn time_starts_at_zero_and_moves_by_the_ticks_given() {
        let mut c = ElectionClock::new(E);
        assert_eq!(c.now(), 0);
        c.advance(1);
        c.advance(4);
        assert_eq!(c.now(), 5);
    }

    #[test]
    fn a_new_clock_is_due_at_once() {
        let c = ElectionClock::new(E);
        assert!(c.expired());
    }

    #[test]
    fn the_timer_fires_once_time_reaches_its_deadline() {
        let mut c = ElectionClock::new(E);
        c.advance(3);
        c.reset(4);
        assert_eq!(c.deadline(), 7);
        c.advance(3);
        assert!(!c.expired());
        c.advance(1);
        assert!(c.expired());
        c.advance(1);
        assert!(c.expired(), "and stays fired");
    }

    #[test]
    fn a_reset_may_put_the_deadline_off_or_bring_it_forward() {
        let mut c = ElectionClock::new(E);
        c.reset(20);
        c.reset(5);
        assert_eq!(c.deadline(), 5);
        c.reset(30);
        assert_eq!(c.deadline(), 30);
    }

    #[test]
    fn expiring_within_a_timeout_never_puts_the_deadline_off() {
        let mut c = ElectionClock::new(E);
        c.reset(20);
        c.expire_within(30);
        assert_eq!(c.deadline(), 20);
        c.expire_within(5);
        assert_eq!(c.deadline(), 5);
    }

    #[test]
    fn ticks_until_a_time_are_at_least_one() {
        let mut c = ElectionClock::new(E);
        c.advance(10);
        assert_eq!(c.ticks_until(14), 4);
        assert_eq!(c.ticks_until(10), 1);
        assert_eq!(c.ticks_until(3), 1);
    }

    #[test]
    fn the_first_election_in_a_row_keeps_the_base_timeout() {
        assert_eq!(after_elections(0).backoff(), 1);
        assert_eq!(after_elections(1).backoff(), 1);
        assert_eq!(after_elections(1).timeout(), E);
    }

    #[test]
    fn each_further_election_in_a_row_doubles_the_timeout_up_to_the_cap() {
        let factors: Vec<u64> = (1..=7).map(|n| after_elections(n).backoff()).collect();
        assert_eq!(factors, vec![1, 2, 4, 8, 8, 8, 8]);
        assert_eq!(after_elections(4).backoff(), MAX_ELECTION_BACKOFF);
        assert_eq!(after_elections(u32::MAX).backoff(), MAX_ELECTION_BACKOFF);
        assert_eq!(after_elections(3).timeout(), 4 * E);
    }

    #[test]
    fn a_timeout_is_drawn_between_the_stretched_base_and_twice_it() {
        assert_eq!(after_elections(0).timeout_range(false), (E, 2 * E));
        assert_eq!(after_elections(2).timeout_range(false), (2 * E, 4 * E));
    }

    #[test]
    fn a_preferred_replica_draws_between_half_the_stretched_base_and_it() {
        assert_eq!(after_elections(0).timeout_range(true), (E / 2, E));
        assert_eq!(after_elections(3).timeout_range(true), (2 * E, 4 * E));
        let odd = ElectionClock::new(7);
        assert_eq!(odd.timeout_range(true), (4, 7), "half rounds up");
    }

    #[test]
    fn a_zero_base_times_out_after_one_tick() {
        let c = ElectionClock::new(0);
        assert_eq!(c.timeout(), 1);
        assert_eq!(c.timeout_range(false), (1, 2));
    }

    #[test]
    fn a_catch_up_waits_the_longest_timeout_whatever_the_backoff() {
        let longest = E * MAX_ELECTION_BACKOFF;
        assert_eq!(
            after_elections(0).catch_up_wait_range(),
            (longest, 2 * longest)
        );
        assert_eq!(
            after_elections(2).catch_up_wait_range(),
            (longest, 2 * longest)
        );
    }

    #[test]
    fn the_highest_round_seen_only_rises() {
        let mut c = ElectionClock::new(E);
        assert_eq!(c.max_round_seen(), 0);
        c.note_round(5);
        c.note_round(3);
        assert_eq!(c.max_round_seen(), 5);
        c.note_round(6);
        assert_eq!(c.max_round_seen(), 6);
    }

    #[test]
    fn a_leader_heard_is_silent_only_a_base_timeout_later() {
        let mut c = ElectionClock::new(E);
        assert_eq!(c.ticks_until_silent(), 0, "nobody heard yet");
        c.advance(5);
        c.heard();
        c.advance(E - 1);
        assert_eq!(c.ticks_until_silent(), 1);
        c.advance(1);
        assert_eq!(c.ticks_until_silent(), 0, "silent for a whole timeout");
    }

    #[test]
    fn following_a_leader_for_a_whole_timeout_resets_the_backoff() {
        let mut c = after_elections(3);
        assert_eq!(c.backoff(), 4);
        c.follow(ballot(7));
        c.advance(4 * E);
        c.follow(ballot(7));
        assert_eq!(c.backoff(), 1);
        assert_eq!(c.timeout(), E);
    }

    #[test]
    fn following_a_leader_for_less_than_a_whole_timeout_keeps_the_backoff() {
        let mut c = after_elections(3);
        c.follow(ballot(7));
        c.advance(4 * E - 1);
        c.follow(ballot(7));
        assert_eq!(c.backoff(), 4, "the timeout is the stretched one");
    }

    #[test]
    fn hearing_another_ballot_starts_the_count_again() {
        let mut c = after_elections(2);
        c.follow(ballot(7));
        c.advance(2 * E - 1);
        c.follow(ballot(8));
        c.advance(1);
        c.follow(ballot(8));
        assert_eq!(c.backoff(), 2, "ballot 8 was heard for one tick");
        c.advance(2 * E);
        c.follow(ballot(8));
        assert_eq!(c.backoff(), 1);
    }

    #[test]
    fn the_first_message_of_a_leader_does_not_reset_the_backoff() {
        let mut c = after_elections(2);
        c.advance(100 * E);
        c.follow(ballot(7));
        assert_eq!(c.backoff(), 2);
    }
}
