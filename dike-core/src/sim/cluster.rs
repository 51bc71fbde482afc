//! A lossless, instantaneous in-memory group: every message is delivered and
//! every write is durable at once. For unit tests, benchmarks and demos that
//! want to drive replicas by hand (crash one, restart it, partition it)
//! without the randomised simulator.

use crate::config::{Config, ReplicaOptions};
use crate::entry::Command;
use crate::ids::{ClientId, MemberId, NodeId};
use crate::message::Envelope;
use crate::ready::Response;
use crate::replica::Replica;
use crate::server::StateMachine;
use crate::storage::{MemoryStorage, Storage};
use std::collections::{BTreeSet, VecDeque};

/// One member slot of the cluster.
pub struct Member<M: StateMachine> {
    /// The member's identity (its incarnation changes when wiped).
    pub id: MemberId,
    /// The replica, `None` while crashed.
    pub replica: Option<Replica<M>>,
    /// Its durable storage (survives crashes).
    pub storage: MemoryStorage,
    boot: u64,
}

/// A group of replicas wired together in memory.
pub struct LocalCluster<M: StateMachine> {
    /// The members, index `i` is `MemberId::new(i + 1, 1)`.
    pub members: Vec<Member<M>>,
    config: Config,
    opts: ReplicaOptions,
    make: Box<dyn Fn(MemberId) -> M>,
    queue: VecDeque<Envelope>,
    /// Links that drop every message, as (from index, to index).
    pub cut: BTreeSet<(usize, usize)>,
    /// Responses to clients, in order.
    pub responses: Vec<(MemberId, Response)>,
    /// Effects run so far.
    pub effects_run: usize,
    /// Messages delivered so far.
    pub delivered: u64,
    /// The nodes marked draining (`set_draining`), also told to restarted
    /// replicas.
    draining: BTreeSet<NodeId>,
}

impl<M: StateMachine> LocalCluster<M> {
    /// `n` fresh replicas built with `make`.
    pub fn new(n: usize, opts: ReplicaOptions, make: impl Fn(MemberId) -> M + 'static) -> Self {
        Self::with_spares(n, 0, opts, make)
    }

    /// `n` replicas forming the group plus `spares` replicas outside it
    /// (candidates for membership changes).
    pub fn with_spares(
        n: usize,
        spares: usize,
        opts: ReplicaOptions,
        make: impl Fn(MemberId) -> M + 'static,
    ) -> Self {
        let config = Config::initial((0..n).map(Self::member).collect());
        let mut c = LocalCluster {
            members: Vec::new(),
            config,
            opts,
            make: Box::new(make),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            responses: Vec::new(),
            effects_run: 0,
            delivered: 0,
            draining: BTreeSet::new(),
        };
        for i in 0..n + spares {
            let id = Self::member(i);
            let r = Replica::new(
                id,
                c.config.clone(),
                (c.make)(id),
                c.opts.clone(),
                i as u64,
                1,
            );
            c.members.push(Member {
                id,
                replica: Some(r),
                storage: MemoryStorage::new(),
                boot: 1,
            });
        }
        c
    }

    /// The first id of member `i` (incarnation 1).
    pub fn member(i: usize) -> MemberId {
        MemberId::new(i as u64 + 1, 1)
    }

    /// Restarts member `i` with an empty disk: a new incarnation, hence a
    /// new member the group does not know.
    pub fn wipe(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.id.incarnation.0 += 1;
        m.boot += 1;
        m.storage = MemoryStorage::new();
        let mut r = Replica::new(
            m.id,
            self.config.clone(),
            (self.make)(m.id),
            self.opts.clone(),
            i as u64,
            m.boot,
        );
        r.set_draining_nodes(self.draining.iter().copied());
        m.replica = Some(r);
    }

    /// Replica `i` (panics if crashed: a test bug).
    pub fn replica(&mut self, i: usize) -> &mut Replica<M> {
        self.members[i]
            .replica
            .as_mut()
            .expect("replica is crashed")
    }

    /// Index of the current leader, if any live replica leads.
    pub fn leader(&self) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.replica.as_ref().is_some_and(|r| r.is_leader()))
    }

    /// Makes replica `i` campaign and runs until quiet; returns the leader.
    pub fn elect(&mut self, i: usize) -> Option<usize> {
        self.replica(i).campaign();
        self.run_until_quiet();
        self.leader()
    }

    /// Proposes a command at replica `i`.
    pub fn propose(&mut self, i: usize, client: u64, seq: u64, payload: Vec<u8>) {
        let cmd = Command {
            client: ClientId(client),
            seq,
            ack_floor: seq,
            payload,
        };
        self.replica(i).propose(cmd);
    }

    /// Crashes replica `i` (its storage survives: every write was durable).
    pub fn crash(&mut self, i: usize) {
        self.members[i].replica = None;
    }

    /// Restarts replica `i` from its storage.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        let m = &mut self.members[i];
        let id = m.id;
        m.boot += 1;
        let recovered = m.storage.load().map_err(|e| e.to_string())?;
        let mut r = Replica::recover(
            id,
            self.config.clone(),
            (self.make)(id),
            self.opts.clone(),
            i as u64,
            m.boot,
            recovered,
        )
        .map_err(|e| e.to_string())?;
        r.set_draining_nodes(self.draining.iter().copied());
        m.replica = Some(r);
        Ok(())
    }

    /// Marks the nodes of members `draining` (indices) draining, and no
    /// other, at every replica, as the runtime does from the routing table.
    pub fn set_draining(&mut self, draining: &[usize]) {
        self.draining = draining.iter().map(|&i| Self::member(i).node).collect();
        for m in &mut self.members {
            if let Some(r) = m.replica.as_mut() {
                r.set_draining_nodes(self.draining.iter().copied());
            }
        }
    }

    /// Ticks every live replica once.
    pub fn tick(&mut self) {
        for m in &mut self.members {
            if let Some(r) = m.replica.as_mut() {
                r.tick();
            }
        }
    }

    fn collect(&mut self, i: usize) -> bool {
        let Some(r) = self.members[i].replica.as_mut() else {
            return false;
        };
        if !r.has_ready() {
            return false;
        }
        let ready = r.take_ready();
        if let Err(e) = self.members[i].storage.write(&ready.writes) {
            panic!("memory storage failed: {e}");
        }
        self.queue.extend(ready.messages);
        self.queue.extend(ready.after_write);
        let id = self.members[i].id;
        self.responses
            .extend(ready.responses.into_iter().map(|r| (id, r)));
        for e in ready.effects {
            e.run();
            self.effects_run += 1;
        }
        true
    }

    /// Delivers messages and drains every replica's output until nothing is
    /// left to do.
    pub fn run_until_quiet(&mut self) {
        loop {
            let mut busy = false;
            for i in 0..self.members.len() {
                busy |= self.collect(i);
            }
            while let Some(env) = self.queue.pop_front() {
                busy = true;
                let (from, to) = ((env.from.node.0 - 1) as usize, (env.to.node.0 - 1) as usize);
                if self.cut.contains(&(from, to)) {
                    continue;
                }
                if let Some(r) = self.members[to]
                    .replica
                    .as_mut()
                    .filter(|r| r.id() == env.to)
                {
                    self.delivered += 1;
                    r.step(env.from, env.msg);
                }
            }
            if !busy {
                return;
            }
        }
    }

    /// Takes the responses gathered so far.
    pub fn take_responses(&mut self) -> Vec<(MemberId, Response)> {
        std::mem::take(&mut self.responses)
    }
}
