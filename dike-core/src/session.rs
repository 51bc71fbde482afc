//! Client sessions: exactly-once application of retried commands.
//!
//! Invariant: a `(client, seq)` pair changes the state machine at most once.
//! Every replica applies the same commands in the same order to this table, so
//! every replica answers a retry with the same cached reply. Trimming depends
//! only on applied commands, so it is deterministic too.
//!
//! Bound: the table remembers at most `max_sessions` clients. A client
//! trimmed away is remembered as expired (up to [`EXPIRED_PER_SESSION`]
//! times `max_sessions` of them, the most recent): its later commands are
//! refused with [`SessionCheck::Expired`], never applied again as new. Only a
//! client that stays silent while more than that many others expire after
//! it could have a retry applied twice.

use crate::ids::{ClientId, Slot};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// How many expired clients the table remembers, per session it keeps.
pub const EXPIRED_PER_SESSION: usize = 4;

/// The recorded outcome of one applied command: the encoded reply, or the
/// message of an application error (a panic in the server).
pub type StoredReply = Result<Vec<u8>, String>;

/// What the table says about an incoming command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCheck {
    /// Never applied: apply it.
    New,
    /// Applied before: answer with this reply, do not apply again.
    Duplicate(StoredReply),
    /// Older than what the client already acknowledged receiving: the client
    /// has moved on, so this is a stray duplicate whose reply is gone.
    Stale,
    /// The client's session was trimmed away: whether this command was
    /// applied before cannot be told, so it is not applied.
    Expired,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// Replies below this sequence number were acknowledged and forgotten.
    floor: u64,
    /// Replies at or above `floor`, sorted by sequence number (usually one:
    /// clients rarely have many commands in flight).
    replies: VecDeque<(u64, StoredReply)>,
    /// The slot of the last command applied for this client (for trimming).
    last_slot: Slot,
}

/// Per-group table of client sessions. Part of every snapshot.
///
/// A hash map: lookups are on every command's path. Nothing depends on its
/// iteration order (trimming sorts), so replicas stay deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTable {
    sessions: HashMap<ClientId, Session>,
    /// Clients trimmed away, with the slot of their last command.
    #[serde(default)]
    expired: BTreeMap<ClientId, Slot>,
}

impl Session {
    fn reply(&self, seq: u64) -> Option<&StoredReply> {
        self.replies.iter().find(|(s, _)| *s == seq).map(|(_, r)| r)
    }

    fn insert(&mut self, seq: u64, reply: StoredReply) {
        match self.replies.back() {
            Some((last, _)) if *last >= seq => {
                let at = self.replies.partition_point(|(s, _)| *s < seq);
                if self.replies.get(at).is_some_and(|(s, _)| *s == seq) {
                    self.replies[at].1 = reply;
                } else {
                    self.replies.insert(at, (seq, reply));
                }
            }
            _ => self.replies.push_back((seq, reply)),
        }
    }
}

impl SessionTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of remembered clients.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Classifies `(client, seq)` without changing anything.
    pub fn check(&self, client: ClientId, seq: u64) -> SessionCheck {
        match self.sessions.get(&client) {
            None if self.expired.contains_key(&client) => SessionCheck::Expired,
            None => SessionCheck::New,
            Some(s) if seq < s.floor => SessionCheck::Stale,
            Some(s) => match s.reply(seq) {
                Some(r) => SessionCheck::Duplicate(r.clone()),
                None => SessionCheck::New,
            },
        }
    }

    /// Records that `(client, seq)` was applied at `slot` with `reply`, and
    /// forgets replies below `ack_floor`. Then forgets the least recently used
    /// clients while more than `max_sessions` are remembered.
    pub fn record(
        &mut self,
        client: ClientId,
        seq: u64,
        ack_floor: u64,
        reply: StoredReply,
        slot: Slot,
        max_sessions: usize,
    ) {
        let s = self.sessions.entry(client).or_default();
        s.last_slot = slot;
        s.insert(seq, reply);
        Self::raise_floor(s, ack_floor);
        if self.sessions.len() > max_sessions.max(1) {
            self.trim(max_sessions.max(1));
        }
    }

    /// Notes a client's acknowledgement floor carried by a duplicate.
    pub fn acknowledge(&mut self, client: ClientId, ack_floor: u64) {
        if let Some(s) = self.sessions.get_mut(&client) {
            Self::raise_floor(s, ack_floor);
        }
    }

    fn raise_floor(s: &mut Session, ack_floor: u64) {
        if ack_floor > s.floor {
            s.floor = ack_floor;
            while s.replies.front().is_some_and(|(seq, _)| *seq < ack_floor) {
                s.replies.pop_front();
            }
        }
    }

    /// Forgets least recently used clients (ties: lower client id first)
    /// until at most nine tenths of `max` remain, so trimming is rare.
    fn trim(&mut self, max: usize) {
        let keep = (max - max / 10).max(1);
        let mut by_age: Vec<(Slot, ClientId)> = self
            .sessions
            .iter()
            .map(|(c, s)| (s.last_slot, *c))
            .collect();
        by_age.sort_unstable();
        let drop = self.sessions.len().saturating_sub(keep);
        for (slot, c) in by_age.into_iter().take(drop) {
            self.sessions.remove(&c);
            self.expired.insert(c, slot);
        }
        let bound = max.saturating_mul(EXPIRED_PER_SESSION).max(1);
        if self.expired.len() > bound {
            let mut by_age: Vec<(Slot, ClientId)> =
                self.expired.iter().map(|(c, s)| (*s, *c)).collect();
            by_age.sort_unstable();
            for (_, c) in by_age.into_iter().take(self.expired.len() - bound) {
                self.expired.remove(&c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ClientId = ClientId(7);

    #[test]
    fn a_retry_of_an_applied_command_is_a_duplicate_with_the_same_reply() {
        let mut t = SessionTable::new();
        assert_eq!(t.check(C, 1), SessionCheck::New);
        t.record(C, 1, 1, Ok(vec![42]), 10, 100);
        assert_eq!(t.check(C, 1), SessionCheck::Duplicate(Ok(vec![42])));
        assert_eq!(t.check(C, 2), SessionCheck::New);
    }

    #[test]
    fn acknowledged_replies_are_forgotten_and_their_retries_are_stale() {
        let mut t = SessionTable::new();
        t.record(C, 1, 1, Ok(vec![1]), 1, 100);
        t.record(C, 2, 1, Ok(vec![2]), 2, 100);
        t.record(C, 3, 3, Ok(vec![3]), 3, 100);
        assert_eq!(t.check(C, 1), SessionCheck::Stale);
        assert_eq!(t.check(C, 2), SessionCheck::Stale);
        assert_eq!(t.check(C, 3), SessionCheck::Duplicate(Ok(vec![3])));
    }

    #[test]
    fn pipelined_clients_keep_every_unacknowledged_reply() {
        let mut t = SessionTable::new();
        for seq in 1..=5 {
            t.record(C, seq, 1, Ok(vec![seq as u8]), seq, 100);
        }
        for seq in 1..=5 {
            assert_eq!(
                t.check(C, seq),
                SessionCheck::Duplicate(Ok(vec![seq as u8]))
            );
        }
    }

    #[test]
    fn a_client_trimmed_away_is_refused_as_expired_never_applied_again() {
        let mut t = SessionTable::new();
        t.record(C, 1, 1, Ok(vec![1]), 1, 2);
        for i in 0..3u64 {
            t.record(ClientId(100 + i), 1, 1, Ok(vec![]), 2 + i, 2);
        }
        assert_eq!(t.check(C, 1), SessionCheck::Expired, "the retry");
        assert_eq!(t.check(C, 2), SessionCheck::Expired, "a later command");
        assert_eq!(t.check(ClientId(999), 1), SessionCheck::New);
    }

    #[test]
    fn expired_clients_are_bounded_keeping_the_most_recent() {
        let mut t = SessionTable::new();
        for i in 0..200u64 {
            t.record(ClientId(i), 1, 1, Ok(vec![]), i + 1, 2);
        }
        assert!(t.expired.len() <= 2 * EXPIRED_PER_SESSION);
        assert_eq!(t.check(ClientId(0), 1), SessionCheck::New, "long forgotten");
        assert_eq!(t.check(ClientId(196), 1), SessionCheck::Expired);
    }

    #[test]
    fn trimming_forgets_the_least_recently_used_clients_deterministically() {
        let mut a = SessionTable::new();
        let mut b = SessionTable::new();
        for i in 0..50u64 {
            a.record(ClientId(i % 17), i, 0, Ok(vec![]), i, 10);
            b.record(ClientId(i % 17), i, 0, Ok(vec![]), i, 10);
        }
        assert!(a.len() <= 10);
        assert_eq!(a, b);
        // The most recent client survives.
        assert_ne!(a.check(ClientId(49 % 17), 49), SessionCheck::New);
    }
}
