//! Bounded restarts, as OTP supervisors do them: at most `intensity`
//! restarts within any window of `period`; one more and the supervisor gives
//! up and escalates (stops itself with an error).
//!
//! Invariant: the budget only looks at restarts inside the last `period`,
//! so a child that crashes rarely is restarted forever, and one that crashes
//! in a loop is given up on after `intensity + 1` crashes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Restart intensity and period of one supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `period`.
    pub intensity: usize,
    /// The sliding window.
    pub period: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            intensity: 5,
            period: Duration::from_secs(10),
        }
    }
}

/// The restarts a supervisor made recently.
#[derive(Clone, Debug)]
pub struct RestartBudget {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// An unused budget.
    pub fn new(policy: RestartPolicy) -> Self {
        RestartBudget {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// Records a crash at `now`: `true` if the child may be restarted,
    /// `false` if the supervisor must give up.
    pub fn allow(&mut self, now: Instant) -> bool {
        while let Some(first) = self.recent.front() {
            if now.duration_since(*first) >= self.policy.period {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.policy.intensity {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loop_exhausts_the_budget_and_quiet_time_refills_it() {
        let policy = RestartPolicy {
            intensity: 2,
            period: Duration::from_secs(10),
        };
        let mut b = RestartBudget::new(policy);
        let t0 = Instant::now();
        assert!(b.allow(t0));
        assert!(b.allow(t0 + Duration::from_secs(1)));
        assert!(
            !b.allow(t0 + Duration::from_secs(2)),
            "third crash within 10s"
        );
        assert!(
            b.allow(t0 + Duration::from_secs(11)),
            "the first restart left the window"
        );
    }

    #[test]
    fn zero_intensity_never_restarts() {
        let mut b = RestartBudget::new(RestartPolicy {
            intensity: 0,
            period: Duration::from_secs(1),
        });
        assert!(!b.allow(Instant::now()));
    }
}
