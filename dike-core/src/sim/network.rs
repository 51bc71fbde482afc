//! The simulated network: seeded delays, drops, duplicates, reordering and
//! partitions (directed, so one-way cuts are possible).

use crate::entry::Command;
use crate::message::Envelope;
use crate::ready::Response;
use crate::rng::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// A client's request to a replica.
#[derive(Clone, Debug)]
pub(crate) enum ClientRequest {
    Command(Command),
    Query { id: u64, payload: Vec<u8> },
}

/// Something in transit.
#[derive(Clone, Debug)]
pub(crate) enum Packet {
    /// Between replicas (indices into the node table).
    Peer {
        from: usize,
        to: usize,
        env: Envelope,
    },
    /// Client to replica.
    Request {
        client: usize,
        to: usize,
        req: ClientRequest,
    },
    /// Replica to client.
    Response { client: usize, resp: Response },
}

impl Packet {
    /// The node a packet goes to (none for a response to a client).
    pub fn destination(&self) -> Option<usize> {
        match self {
            Packet::Peer { to, .. } | Packet::Request { to, .. } => Some(*to),
            Packet::Response { .. } => None,
        }
    }
}

/// Network fault settings.
#[derive(Clone, Debug)]
pub struct NetFaults {
    /// Percent of peer messages dropped.
    pub drop_pct: u64,
    /// Percent of peer messages delivered twice.
    pub dup_pct: u64,
    /// Messages take 1..=max_delay steps …
    pub max_delay: u64,
    /// … and messages between replicas at least this many (a congested
    /// transport; 0 or 1: no minimum).
    pub min_peer_delay: u64,
    /// Percent of client requests and responses lost (clients retry).
    pub client_drop_pct: u64,
}

/// Packets in flight, ordered by delivery step then by a random key, which
/// reorders packets that are due together.
pub(crate) struct Network {
    queue: BTreeMap<(u64, u64), Packet>,
    /// Directed links (from, to) that drop everything.
    pub blocked: BTreeSet<(usize, usize)>,
    pub faults: NetFaults,
    pub faults_on: bool,
    pub sent: u64,
    pub dropped: u64,
}

impl Network {
    pub fn new(faults: NetFaults) -> Self {
        Network {
            queue: BTreeMap::new(),
            blocked: BTreeSet::new(),
            faults,
            faults_on: true,
            sent: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, rng: &mut Rng, due: u64, p: Packet) {
        loop {
            let key = (due, rng.next_u64());
            if let std::collections::btree_map::Entry::Vacant(v) = self.queue.entry(key) {
                v.insert(p);
                return;
            }
        }
    }

    fn delay(&self, rng: &mut Rng, now: u64) -> u64 {
        now + rng.range(1, self.faults.max_delay.max(1) + 1)
    }

    fn peer_delay(&self, rng: &mut Rng, now: u64) -> u64 {
        self.delay(rng, now).max(now + self.faults.min_peer_delay)
    }

    /// Sends a packet between replicas, subject to faults and partitions.
    pub fn send_peer(&mut self, rng: &mut Rng, now: u64, from: usize, to: usize, env: Envelope) {
        self.sent += 1;
        if from == to {
            // Local delivery: never lost, but not instant either.
            self.push(rng, now + 1, Packet::Peer { from, to, env });
            return;
        }
        if self.blocked.contains(&(from, to))
            || (self.faults_on && rng.chance(self.faults.drop_pct))
        {
            self.dropped += 1;
            return;
        }
        if self.faults_on && rng.chance(self.faults.dup_pct) {
            let due = self.peer_delay(rng, now);
            self.push(
                rng,
                due,
                Packet::Peer {
                    from,
                    to,
                    env: env.clone(),
                },
            );
        }
        let due = self.peer_delay(rng, now);
        self.push(rng, due, Packet::Peer { from, to, env });
    }

    /// Sends a client packet; while faults are on, some are lost (the
    /// client retries on its timeout).
    pub fn send_client(&mut self, rng: &mut Rng, now: u64, p: Packet) {
        if self.faults_on && rng.chance(self.faults.client_drop_pct) {
            self.dropped += 1;
            return;
        }
        let due = self.delay(rng, now);
        self.push(rng, due, p);
    }

    /// Puts a packet back to be delivered at `due` (its receiver is
    /// paused).
    pub fn defer(&mut self, rng: &mut Rng, due: u64, p: Packet) {
        self.push(rng, due, p);
    }

    /// Takes the next packet due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Packet> {
        loop {
            let (&key, _) = self.queue.first_key_value()?;
            if key.0 > now {
                return None;
            }
            let p = self.queue.remove(&key)?;
            match &p {
                Packet::Peer { from, to, .. }
                    if from != to && self.blocked.contains(&(*from, *to)) =>
                {
                    self.dropped += 1;
                }
                _ => return Some(p),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
