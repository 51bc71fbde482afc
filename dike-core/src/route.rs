//! Where a client's request goes next: the rule every caller of a group
//! follows, in the runtime's router and in the simulator's clients.
//!
//! Invariant: a leader hint is followed whatever the caller's list of the
//! group's members says. The list comes from a routing table, which learns
//! a membership change only after the group chose it; a replica that names
//! a leader knows the group's configuration at least as well as the table.
//! Refusing hints to members the list does not name leaves a caller unable
//! to reach a group whose leader is a member the table has not recorded yet
//! (a replica that just moved in), and if the caller is the master's
//! rebalancer, the table never learns it either.

use crate::ids::MemberId;

/// One request's way through a group's members: leader hints first, then
/// the listed members in turn. `M` names a member: a [`MemberId`] in the
/// runtime, a node's index in the simulator.
#[derive(Debug, Clone, Default)]
pub struct Route<M = MemberId> {
    hint: Option<M>,
    rotation: usize,
}

impl<M: Copy> Route<M> {
    /// A route that tries `hint` (e.g. the leader that answered last time)
    /// first.
    pub fn new(hint: Option<M>) -> Route<M> {
        Route::starting_at(hint, 0)
    }

    /// A route that tries `hint` first, then the listed members from the
    /// one after index `rotation` (callers that start at different places
    /// spread their first tries).
    pub fn starting_at(hint: Option<M>, rotation: usize) -> Route<M> {
        Route { hint, rotation }
    }

    /// A replica named `leader` as the group's leader: it is tried next,
    /// listed or not.
    pub fn follow(&mut self, leader: M) {
        self.hint = Some(leader);
    }

    /// The member to try next: the pending hint if there is one, else the
    /// next of `listed` in turn (`None` if `listed` is empty).
    pub fn next(&mut self, listed: &[M]) -> Option<M> {
        if let Some(h) = self.hint.take() {
            return Some(h);
        }
        if listed.is_empty() {
            return None;
        }
        self.rotation += 1;
        Some(listed[self.rotation % listed.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(node: u64) -> MemberId {
        MemberId::new(node, 1)
    }

    #[test]
    fn a_leader_hint_is_followed_even_to_a_member_the_list_does_not_name() {
        let listed = [m(1), m(2), m(3)];
        let mut r: Route = Route::new(None);
        let first = r.next(&listed).expect("a member");
        assert!(listed.contains(&first));
        r.follow(m(9));
        assert_eq!(r.next(&listed), Some(m(9)));
    }

    #[test]
    fn the_first_try_is_the_initial_hint() {
        let mut r = Route::new(Some(m(7)));
        assert_eq!(r.next(&[m(1)]), Some(m(7)));
        assert_eq!(r.next(&[m(1)]), Some(m(1)));
    }

    #[test]
    fn without_hints_every_listed_member_is_tried_in_turn() {
        let listed = [m(1), m(2), m(3)];
        let mut r: Route = Route::new(None);
        let tried: std::collections::BTreeSet<_> = (0..3).filter_map(|_| r.next(&listed)).collect();
        assert_eq!(tried.len(), 3);
    }

    #[test]
    fn a_hint_is_used_once() {
        let mut r = Route::new(None);
        r.follow(m(9));
        assert_eq!(r.next(&[m(1)]), Some(m(9)));
        assert_eq!(r.next(&[m(1)]), Some(m(1)));
        assert_eq!(r.next(&[] as &[MemberId]), None);
    }
}
