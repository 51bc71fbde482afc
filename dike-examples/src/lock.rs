//! A lock service whose side effects do real work: when a lock is released,
//! the next waiter becomes its owner inside the replicated state, and the
//! effect — run once, on the replica that proposed the release — notifies
//! that waiter through the application's [`Notifier`].
//!
//! Requests: `Acquire { lock, owner }` → `Granted` or `Queued(position)`;
//! `Release { lock, owner }` → `Released { next }` or `NotOwner`;
//! `Owner(lock)` → `OwnedBy(owner)` (also a read-index query).

use dike_core::{GroupContext, Outcome, PaxosServer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

/// A request to the lock service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockRequest {
    /// Take `lock` for `owner`, or wait in line for it.
    Acquire {
        /// The lock's name.
        lock: String,
        /// Who wants it.
        owner: String,
    },
    /// Give `lock` up; the first waiter gets it.
    Release {
        /// The lock's name.
        lock: String,
        /// Who holds it.
        owner: String,
    },
    /// Who holds `lock`.
    Owner(String),
}

/// A reply from the lock service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockReply {
    /// The lock is yours (or already was).
    Granted,
    /// You wait; this many are before you.
    Queued(usize),
    /// Released; `next` holds the lock now (and was notified).
    Released {
        /// The new owner, if anyone waited.
        next: Option<String>,
    },
    /// Only the owner may release.
    NotOwner,
    /// The current owner.
    OwnedBy(Option<String>),
}

/// Receives "you hold `lock` now" notifications. Installed once per process
/// by the application; effects call it on the proposing replica.
pub type Notifier = Arc<dyn Fn(&str, &str) + Send + Sync>;

static NOTIFIER: OnceLock<Notifier> = OnceLock::new();

/// Installs the process's notifier (the first call wins).
pub fn set_notifier(n: Notifier) -> bool {
    NOTIFIER.set(n).is_ok()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LockState {
    owner: Option<String>,
    waiters: VecDeque<String>,
}

/// The lock service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockServer {
    locks: BTreeMap<String, LockStateExport>,
}

/// Exported state of one lock.
pub type LockStateExport = (Option<String>, Vec<String>);

impl LockServer {
    fn get(&mut self, lock: &str) -> LockState {
        let (owner, waiters) = self.locks.remove(lock).unwrap_or_default();
        LockState {
            owner,
            waiters: waiters.into(),
        }
    }

    fn put(&mut self, lock: String, s: LockState) {
        if s.owner.is_some() || !s.waiters.is_empty() {
            self.locks.insert(lock, (s.owner, s.waiters.into()));
        }
    }
}

impl PaxosServer for LockServer {
    const KIND: &'static str = "lock";
    type Request = LockRequest;
    type Reply = LockReply;
    type State = BTreeMap<String, LockStateExport>;

    fn init(_ctx: &GroupContext) -> Self {
        LockServer::default()
    }

    fn restore(state: Self::State, _ctx: &GroupContext) -> Self {
        LockServer { locks: state }
    }

    fn export_state(&self) -> Self::State {
        self.locks.clone()
    }

    fn handle_call(&mut self, req: LockRequest) -> Outcome<LockReply> {
        match req {
            LockRequest::Acquire { lock, owner } => {
                let mut s = self.get(&lock);
                let reply = match &s.owner {
                    None => {
                        s.owner = Some(owner);
                        LockReply::Granted
                    }
                    Some(o) if *o == owner => LockReply::Granted,
                    Some(_) => match s.waiters.iter().position(|w| *w == owner) {
                        Some(p) => LockReply::Queued(p),
                        None => {
                            s.waiters.push_back(owner);
                            LockReply::Queued(s.waiters.len() - 1)
                        }
                    },
                };
                self.put(lock, s);
                Outcome::reply(reply)
            }
            LockRequest::Release { lock, owner } => {
                let mut s = self.get(&lock);
                if s.owner.as_deref() != Some(owner.as_str()) {
                    self.put(lock, s);
                    return Outcome::reply(LockReply::NotOwner);
                }
                s.owner = s.waiters.pop_front();
                let next = s.owner.clone();
                self.put(lock.clone(), s);
                let out = Outcome::reply(LockReply::Released { next: next.clone() });
                match next {
                    // The effect runs once, after the release is chosen.
                    Some(n) => out.with_effect(move || {
                        if let Some(notify) = NOTIFIER.get() {
                            notify(&lock, &n);
                        }
                    }),
                    None => out,
                }
            }
            LockRequest::Owner(lock) => Outcome::reply(LockReply::OwnedBy(
                self.locks.get(&lock).and_then(|(o, _)| o.clone()),
            )),
        }
    }

    fn handle_query(&self, req: &LockRequest) -> Option<LockReply> {
        match req {
            LockRequest::Owner(lock) => Some(LockReply::OwnedBy(
                self.locks.get(lock).and_then(|(o, _)| o.clone()),
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn acquire(s: &mut LockServer, owner: &str) -> LockReply {
        s.handle_call(LockRequest::Acquire {
            lock: "L".into(),
            owner: owner.into(),
        })
        .reply
    }

    #[test]
    fn waiters_get_the_lock_in_order_and_are_notified_by_the_effect() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        set_notifier(Arc::new(move |lock, owner| {
            if let Ok(mut v) = sink.lock() {
                v.push(format!("{lock}:{owner}"));
            }
        }));
        let mut s = LockServer::default();
        assert_eq!(acquire(&mut s, "a"), LockReply::Granted);
        assert_eq!(acquire(&mut s, "b"), LockReply::Queued(0));
        assert_eq!(acquire(&mut s, "c"), LockReply::Queued(1));
        let out = s.handle_call(LockRequest::Release {
            lock: "L".into(),
            owner: "b".into(),
        });
        assert_eq!(out.reply, LockReply::NotOwner);
        let out = s.handle_call(LockRequest::Release {
            lock: "L".into(),
            owner: "a".into(),
        });
        assert_eq!(
            out.reply,
            LockReply::Released {
                next: Some("b".into())
            }
        );
        assert!(
            seen.lock().map(|v| v.is_empty()).unwrap_or(false),
            "nothing runs before the effect"
        );
        out.effect.expect("an effect").run();
        assert_eq!(*seen.lock().expect("lock"), vec!["L:b".to_string()]);
        assert_eq!(
            s.handle_query(&LockRequest::Owner("L".into())),
            Some(LockReply::OwnedBy(Some("b".into())))
        );
    }
}
