//! Messages from other nodes that do not decode: dropped, counted
//! (`dike_undecodable_received_total`) and logged the first time, then at
//! most once per [`LOG_EVERY`] with how many were dropped in between, so a
//! peer that keeps sending garbage cannot flood the log.
//!
//! A peer's frames that do not parse at all never get here: ractor_cluster
//! closes the session on a framing error. What gets here is a well-framed
//! message from an authenticated peer whose payload is not what this
//! version expects (another version, or a bug); the message does not say
//! which peer sent it, so the node drops it rather than the session.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest time between two warnings.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// The rate limit of the warnings. See the module documentation.
#[derive(Debug, Default)]
pub struct UndecodableLog {
    state: Mutex<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    last: Option<Instant>,
    /// Dropped since the last warning.
    unreported: u64,
}

impl UndecodableLog {
    /// One more message dropped at `now`: `Some(n)` if a warning is due,
    /// `n` being how many were dropped since the last one (this one
    /// included); `None` if it stays quiet.
    pub fn dropped(&self, now: Instant) -> Option<u64> {
        let Ok(mut s) = self.state.lock() else {
            return None;
        };
        s.unreported += 1;
        let due = s.last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        if !due {
            return None;
        }
        s.last = Some(now);
        Some(std::mem::take(&mut s.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_drop_is_logged_then_at_most_one_warning_a_minute_with_the_count() {
        let log = UndecodableLog::default();
        let t0 = Instant::now();
        assert_eq!(log.dropped(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(log.dropped(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.dropped(t0 + LOG_EVERY), Some(1000));
        assert_eq!(log.dropped(t0 + LOG_EVERY + Duration::from_secs(1)), None);
    }
}
