//! Waiting for a condition with a deadline: every wait in the tests polls a
//! named condition, never sleeps for a fixed time and hopes.
//!
//! A condition is an async closure returning [`Check<T>`]: `Ok(value)` when
//! it holds, `Err(NotYet)` with the reason when it does not yet. Any error
//! that can be displayed converts into [`NotYet`] with `?`, so conditions
//! read like ordinary code:
//!
//! ```no_run
//! # async fn f(client: integration::Client) {
//! use integration::wait::{wait_until, NotYet};
//! use std::time::Duration;
//! let table = wait_until(Duration::from_secs(10), "the table shows 3 live nodes", || async {
//!     let t = client.routing_table().await?;
//!     let up = t.live_nodes().count();
//!     if up == 3 { Ok(t) } else { Err(NotYet::from(format!("{up} live"))) }
//! })
//! .await;
//! # }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Pause between two polls of a condition.
pub const POLL: Duration = Duration::from_millis(100);

/// Why a condition does not hold (yet): the text of the last failure.
#[derive(Debug)]
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
pub async fn wait_until<T, F, Fut>(within: Duration, what: &str, condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    match poll_until(within, condition).await {
        Ok(v) => v,
        Err(last) => panic!(
            "timed out after {within:?} waiting until {what}; last: {}",
            last.0
        ),
    }
}

/// [`wait_until`] that returns the last reason instead of panicking, for a
/// caller that adds context (node logs) to the failure.
pub async fn poll_until<T, F, Fut>(within: Duration, mut condition: F) -> Result<T, NotYet>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Check<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(left.max(POLL), condition()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
            Err(_) => NotYet(format!("one poll was still running at {within:?}")),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(POLL).await;
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
        let e: NotYet = dike_actors::DikeError::UnknownGroup("g".into()).into();
        assert!(e.0.contains("no group named \"g\""), "{}", e.0);
    }
}
