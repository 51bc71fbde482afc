//! Requests that are retried until a deadline, many at a time.
//!
//! Invariant: a request that failed is either retried or reported with its
//! last error; none is dropped silently, and every retried failure is
//! counted by its kind ([`DikeError::label`]).

use dike_actors::DikeError;
use integration::wait::POLL;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a request retried until a deadline ended.
#[derive(Debug)]
pub struct Attempt<T> {
    /// Its answer, or the last error once the deadline passed (or at once,
    /// for an error that a retry cannot fix).
    pub result: Result<T, DikeError>,
    /// Failures that were retried, by kind.
    pub retried: BTreeMap<&'static str, u64>,
    /// When it ended.
    pub at: Instant,
}

/// Whether a retry cannot fix `e`: the kind is not registered, the
/// request or the server is broken, or the master speaks another version.
/// Anything else (no leader yet, a group not yet in the cached table, a
/// master busy or refusing for want of live nodes) may pass.
fn permanent(e: &DikeError) -> bool {
    matches!(
        e,
        DikeError::UnknownKind(_)
            | DikeError::Decode(_)
            | DikeError::Application(_)
            | DikeError::UnexpectedReply { .. }
    )
}

/// Sends `request()` until it succeeds, fails for good, or `deadline`
/// passes, pausing [`POLL`] between tries. Only for requests that are safe
/// to repeat.
pub async fn retry_until<T, F, Fut>(deadline: Instant, mut request: F) -> Attempt<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DikeError>>,
{
    let mut retried = BTreeMap::new();
    loop {
        match request().await {
            Ok(v) => {
                return Attempt {
                    result: Ok(v),
                    retried,
                    at: Instant::now(),
                }
            }
            Err(e) if permanent(&e) || Instant::now() >= deadline => {
                return Attempt {
                    result: Err(e),
                    retried,
                    at: Instant::now(),
                }
            }
            Err(e) => {
                *retried.entry(e.label()).or_default() += 1;
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Adds the retried failures of `attempt` to `into`.
pub fn count_retries<T>(into: &mut BTreeMap<String, u64>, attempt: &Attempt<T>) {
    for (kind, n) in &attempt.retried {
        *into.entry((*kind).to_owned()).or_default() += n;
    }
}

/// Runs `op` on every item, at most `concurrency` at a time; the results
/// come back in the items' order.
pub async fn each_concurrently<T, R, F, Fut>(items: Vec<T>, concurrency: usize, op: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    let count = items.len();
    let queue = Arc::new(Mutex::new(items.into_iter().enumerate()));
    let op = Arc::new(op);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (queue, op) = (queue.clone(), op.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                // The guard is dropped at the end of this statement, before
                // any await.
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((i, item)) = next else {
                    return done;
                };
                done.push((i, op(item).await));
            }
        });
    }
    let mut results: Vec<Option<R>> = (0..count).map(|_| None).collect();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(done) => {
                for (i, r) in done {
                    results[i] = Some(r);
                }
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every item was taken by a worker that finished"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn every_item_is_done_once_in_order_and_never_more_than_the_limit_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let out = each_concurrently((0..50).collect(), 4, move |i: u32| {
            let (r, m) = (r.clone(), m.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                r.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 4);
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_and_counted() {
        let tries = AtomicUsize::new(0);
        let a = retry_until(Instant::now() + Duration::from_secs(5), || async {
            if tries.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(DikeError::UnknownGroup("g".into()))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(a.result.ok(), Some(7));
        assert_eq!(a.retried.get("unknown_group"), Some(&2));
    }

    #[tokio::test]
    async fn a_permanent_failure_ends_at_once_and_a_transient_one_at_the_deadline() {
        let far = Instant::now() + Duration::from_secs(60);
        let a = retry_until(far, || async {
            Err::<(), _>(DikeError::UnknownKind("nope".into()))
        })
        .await;
        assert!(matches!(a.result, Err(DikeError::UnknownKind(_))));
        assert!(a.retried.is_empty());
        let soon = Instant::now() + Duration::from_millis(250);
        let b = retry_until(soon, || async {
            Err::<(), _>(DikeError::NodeStopped("down".into()))
        })
        .await;
        assert!(b.result.is_err() && b.at >= soon);
    }
}
