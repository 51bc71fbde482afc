//! Grow-only sets of numbers, many per group: the fault suite's "every
//! acknowledged add is in the final read" workload.
//!
//! Requests: `Add { set, element }` → `Added(true)` if the element was new,
//! `Added(false)` if it was there already; `Read(set)` → `Elements(all)`
//! (also answered as a read-index query). A set that was never added to
//! reads as empty.

use dike_core::{GroupContext, Outcome, PaxosServer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A request to a set group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetRequest {
    /// Adds `element` to `set`.
    Add {
        /// The set's name.
        set: String,
        /// The element.
        element: u64,
    },
    /// Reads every element of a set.
    Read(String),
}

/// A reply from a set group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetReply {
    /// Whether the added element was new.
    Added(bool),
    /// The elements of the set read.
    Elements(BTreeSet<u64>),
}

/// The set paxos server: named grow-only sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetServer {
    sets: BTreeMap<String, BTreeSet<u64>>,
}

impl SetServer {
    fn read(&self, set: &str) -> SetReply {
        SetReply::Elements(self.sets.get(set).cloned().unwrap_or_default())
    }
}

impl PaxosServer for SetServer {
    const KIND: &'static str = "set";
    type Request = SetRequest;
    type Reply = SetReply;
    type State = BTreeMap<String, BTreeSet<u64>>;

    fn init(_ctx: &GroupContext) -> Self {
        SetServer::default()
    }

    fn restore(state: Self::State, _ctx: &GroupContext) -> Self {
        SetServer { sets: state }
    }

    fn export_state(&self) -> Self::State {
        self.sets.clone()
    }

    fn handle_call(&mut self, req: SetRequest) -> Outcome<SetReply> {
        let reply = match req {
            SetRequest::Add { set, element } => {
                SetReply::Added(self.sets.entry(set).or_default().insert(element))
            }
            SetRequest::Read(set) => self.read(&set),
        };
        Outcome::reply(reply)
    }

    fn handle_query(&self, req: &SetRequest) -> Option<SetReply> {
        match req {
            SetRequest::Read(set) => Some(self.read(set)),
            SetRequest::Add { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SetServer {
        SetServer::init(&GroupContext {
            group: "sets".into(),
            kind: SetServer::KIND.into(),
            member: dike_core::MemberId::new(1, 1),
        })
    }

    fn add(set: &str, element: u64) -> SetRequest {
        SetRequest::Add {
            set: set.into(),
            element,
        }
    }

    #[test]
    fn adds_report_whether_the_element_was_new_and_reads_see_every_add() {
        let mut s = server();
        assert_eq!(s.handle_call(add("a", 1)).reply, SetReply::Added(true));
        assert_eq!(s.handle_call(add("a", 1)).reply, SetReply::Added(false));
        assert_eq!(s.handle_call(add("a", 2)).reply, SetReply::Added(true));
        assert_eq!(s.handle_call(add("b", 9)).reply, SetReply::Added(true));
        assert_eq!(
            s.handle_query(&SetRequest::Read("a".into())),
            Some(SetReply::Elements([1, 2].into()))
        );
        assert_eq!(
            s.handle_call(SetRequest::Read("none".into())).reply,
            SetReply::Elements(BTreeSet::new())
        );
        assert_eq!(s.handle_query(&add("a", 3)), None);
    }

    #[test]
    fn the_state_round_trips_through_export_and_restore() {
        let mut s = server();
        s.handle_call(add("a", 5));
        let back = SetServer::restore(
            s.export_state(),
            &GroupContext {
                group: "sets".into(),
                kind: SetServer::KIND.into(),
                member: dike_core::MemberId::new(2, 1),
            },
        );
        assert_eq!(back, s);
    }
}
