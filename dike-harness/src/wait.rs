//! Waiting for a condition with a deadline: every wait in the tests polls a
//! named condition, never sleeps for a fixed time and hopes.
//!
//! One rule, async ([`wait_until`], [`poll_until`]) and blocking
//! ([`wait_until_blocking`], [`poll_until_blocking`]): the condition is
//! polled every [`POLL`] until it holds or `within` has passed; a wait that
//! gives up names what was awaited and the last reason the condition gave.
//!
//! A condition returns `Ok(value)` when it holds, `Err(reason)` when it does
//! not yet. The reason is anything that converts into [`NotYet`]: a
//! [`NotYet`], a `String`, any error that can be displayed, so conditions
//! read like ordinary code and `?` works in them:
//!
//! ```no_run
//! # async fn routing_table() -> Result<Vec<u8>, std::io::Error> { Ok(vec![]) }
//! use dike_harness::wait::{wait_until, NotYet};
//! use std::time::Duration;
//! let table = wait_until(Duration::from_secs(10), "the table shows 3 live nodes", || async {
//!     let t = routing_table().await?;
//!     let up = t.len();
//!     if up == 3 { Ok(t) } else { Err(NotYet::from(format!("{up} live"))) }
//! });
//! ```

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// Pause between two polls of a condition.
pub const POLL: Duration = Duration::from_millis(100);

/// Why a condition does not hold (yet): the text of the last failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotYet(pub String);

impl<E: Display> From<E> for NotYet {
    fn from(e: E) -> Self {
        NotYet(e.to_string())
    }
}

/// The outcome of one poll of a condition.
pub type Check<T> = Result<T, NotYet>;

/// Polls `condition` until it holds and returns its value; panics once
/// `within` has passed, naming `what` was awaited and the last reason it did
/// not hold. One poll that hangs is cut off at the deadline.
pub async fn wait_until<T, E, F, Fut>(within: Duration, what: &str, condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<NotYet>,
{
    held_or_panic(within, what, poll_until(within, condition).await)
}

/// [`wait_until`] that returns the last reason instead of panicking, for a
/// caller that adds context (node logs) to the failure.
pub async fn poll_until<T, E, F, Fut>(within: Duration, mut condition: F) -> Check<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<NotYet>,
{
    let wait = Deadline::start(within);
    loop {
        let last = match tokio::time::timeout(wait.poll_budget(), condition()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.into(),
            Err(_) => wait.cut_off(),
        };
        if wait.passed() {
            return Err(last);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for synchronous code: the same rule, sleeping on this
/// thread between polls. A poll that hangs is not cut off. In an async test,
/// call it inside `tokio::task::block_in_place` (or use [`wait_until`]).
pub fn wait_until_blocking<T, E>(
    within: Duration,
    what: &str,
    condition: impl FnMut() -> Result<T, E>,
) -> T
where
    E: Into<NotYet>,
{
    held_or_panic(within, what, poll_until_blocking(within, condition))
}

/// [`poll_until`] for synchronous code (see [`wait_until_blocking`]).
pub fn poll_until_blocking<T, E>(
    within: Duration,
    mut condition: impl FnMut() -> Result<T, E>,
) -> Check<T>
where
    E: Into<NotYet>,
{
    let wait = Deadline::start(within);
    loop {
        let last = match condition() {
            Ok(v) => return Ok(v),
            Err(e) => e.into(),
        };
        if wait.passed() {
            return Err(last);
        }
        std::thread::sleep(POLL);
    }
}

/// The deadline of one wait; the part of the rule both flavours share.
struct Deadline {
    within: Duration,
    at: Instant,
}

impl Deadline {
    fn start(within: Duration) -> Deadline {
        Deadline {
            within,
            at: Instant::now() + within,
        }
    }

    /// Whether the wait should give up after a failed poll.
    fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// How long the next poll may run: until the deadline, but at least one
    /// [`POLL`] (a last poll at the deadline still gets its chance).
    fn poll_budget(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now()).max(POLL)
    }

    /// The reason of a poll that was still running when cut off.
    fn cut_off(&self) -> NotYet {
        NotYet(format!("one poll was still running at {:?}", self.within))
    }
}

/// The value of a wait that ended, or the panic of one that gave up.
fn held_or_panic<T>(within: Duration, what: &str, outcome: Check<T>) -> T {
    match outcome {
        Ok(v) => v,
        Err(last) => panic!(
            "timed out after {within:?} waiting until {what}; last: {}",
            last.0
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_condition_that_comes_true_returns_its_value() {
        let polls = AtomicU32::new(0);
        let v = wait_until(Duration::from_secs(5), "the third poll", || async {
            let n = polls.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= 3 {
                Ok(n)
            } else {
                Err(NotYet::from(format!("poll {n}")))
            }
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting until the impossible; last: still 42")]
    async fn a_condition_that_never_holds_panics_with_its_name_and_last_reason() {
        wait_until(Duration::from_millis(300), "the impossible", || async {
            Err::<(), _>(NotYet::from("still 42"))
        })
        .await;
    }

    #[tokio::test]
    async fn a_hanging_poll_is_cut_off_at_the_deadline() {
        let r = poll_until(Duration::from_millis(200), || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), NotYet>(())
        })
        .await;
        assert!(r.unwrap_err().0.contains("still running"));
    }

    #[test]
    fn any_displayable_error_is_a_reason() {
        let e: NotYet = std::io::Error::other("disk on fire").into();
        assert_eq!(e, NotYet("disk on fire".into()));
    }

    #[test]
    fn the_blocking_wait_returns_the_value_once_the_condition_holds() {
        let mut polls = 0;
        let v = wait_until_blocking(Duration::from_secs(5), "the second poll", || {
            polls += 1;
            if polls >= 2 {
                Ok(polls)
            } else {
                Err(format!("poll {polls}"))
            }
        });
        assert_eq!(v, 2);
    }

    #[test]
    #[should_panic(expected = "timed out after 200ms waiting until the impossible; last: still 7")]
    fn the_blocking_wait_panics_with_the_same_message() {
        wait_until_blocking(Duration::from_millis(200), "the impossible", || {
            Err::<(), _>("still 7".to_owned())
        });
    }

    #[test]
    fn the_blocking_poll_returns_the_last_reason() {
        let mut polls = 0;
        let r = poll_until_blocking(Duration::from_millis(250), || {
            polls += 1;
            Err::<(), _>(format!("poll {polls}"))
        });
        assert_eq!(r, Err(NotYet(format!("poll {polls}"))));
        assert!(polls >= 2, "polled until the deadline: {polls}");
    }
}
