//! A lossless, instantaneous in-memory group: every message is delivered and
//! every write is durable at once. For unit tests, benchmarks and demos that
//! want to drive replicas by hand (crash one, restart it, partition it)
//! without the randomised simulator. Every replica runs through
//! [`GroupDriver`], as in the runtime and the simulator, so what it makes
//! ready goes out in production's order (a replica's messages to itself
//! are fed back once their writes are done, before anything else).

use crate::config::{Config, ReplicaOptions};
use crate::driver::{Blocking, GroupDriver, Start};
use crate::entry::Command;
use crate::ids::{ClientId, MemberId, NodeId};
use crate::message::Envelope;
use crate::ready::Response;
use crate::replica::Replica;
use crate::server::StateMachine;
use crate::storage::MemoryStorage;
use std::collections::{BTreeSet, VecDeque};

type Driver<M> = GroupDriver<M, Blocking<MemoryStorage>>;

/// One member slot of the cluster.
pub struct Member<M: StateMachine> {
    /// The member's identity (its incarnation changes when wiped).
    pub id: MemberId,
    /// The replica and its storage, `None` while crashed.
    driver: Option<Driver<M>>,
    /// Its storage while crashed (it survives crashes).
    parked: MemoryStorage,
    boot: u64,
}

impl<M: StateMachine> Member<M> {
    /// The replica, `None` while crashed.
    pub fn replica(&self) -> Option<&Replica<M>> {
        self.driver.as_ref().map(GroupDriver::replica)
    }
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
            let driver = c
                .start(i, id, 1, MemoryStorage::new())
                .expect("a replica with empty storage starts");
            c.members.push(Member {
                id,
                driver: Some(driver),
                parked: MemoryStorage::new(),
                boot: 1,
            });
        }
        c
    }

    /// The first id of member `i` (incarnation 1).
    pub fn member(i: usize) -> MemberId {
        MemberId::new(i as u64 + 1, 1)
    }

    /// Starts member `i` as `id` in its life `boot` on `storage`.
    fn start(
        &self,
        i: usize,
        id: MemberId,
        boot: u64,
        storage: MemoryStorage,
    ) -> Result<Driver<M>, String> {
        let start = Start {
            member: id,
            config: self.config.clone(),
            machine: (self.make)(id),
            options: self.opts.clone(),
            boot,
            seed: i as u64,
        };
        let mut d = GroupDriver::start(start, Blocking(storage)).map_err(|e| e.to_string())?;
        d.set_draining_nodes(self.draining.iter().copied());
        Ok(d)
    }

    /// Restarts member `i` with an empty disk: a new incarnation, hence a
    /// new member the group does not know.
    pub fn wipe(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.id.incarnation.0 += 1;
        m.boot += 1;
        let (id, boot) = (m.id, m.boot);
        let driver = self
            .start(i, id, boot, MemoryStorage::new())
            .expect("a replica with empty storage starts");
        let m = &mut self.members[i];
        m.parked = MemoryStorage::new();
        m.driver = Some(driver);
    }

    /// Replica `i` (panics if crashed: a test bug).
    pub fn replica(&mut self, i: usize) -> &mut Replica<M> {
        self.members[i]
            .driver
            .as_mut()
            .expect("replica is crashed")
            .replica_mut()
    }

    /// Index of the current leader, if any live replica leads.
    pub fn leader(&self) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.driver.as_ref().is_some_and(|d| d.replica().is_leader()))
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
        let m = &mut self.members[i];
        if let Some(d) = m.driver.take() {
            m.parked = d.into_storage().0;
        }
    }

    /// Restarts replica `i` from its storage.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.crash(i);
        let m = &mut self.members[i];
        m.boot += 1;
        let (id, boot) = (m.id, m.boot);
        let storage = std::mem::take(&mut m.parked);
        let driver = self.start(i, id, boot, storage)?;
        self.members[i].driver = Some(driver);
        Ok(())
    }

    /// Marks the nodes of members `draining` (indices) draining, and no
    /// other, at every replica, as the runtime does from the routing table.
    pub fn set_draining(&mut self, draining: &[usize]) {
        self.draining = draining.iter().map(|&i| Self::member(i).node).collect();
        for m in &mut self.members {
            if let Some(d) = m.driver.as_mut() {
                d.set_draining_nodes(self.draining.iter().copied());
            }
        }
    }

    /// Ticks every live replica once.
    pub fn tick(&mut self) {
        for m in &mut self.members {
            if let Some(d) = m.driver.as_mut() {
                d.tick();
            }
        }
    }

    /// Drives member `i`: queues what it sends, keeps its answers, runs
    /// its effects. Returns whether it released anything.
    fn collect(&mut self, i: usize) -> bool {
        let id = self.members[i].id;
        let Some(d) = self.members[i].driver.as_mut() else {
            return false;
        };
        let out = match d.drive() {
            Ok(out) => out,
            Err(e) => panic!("memory storage failed: {e}"),
        };
        let busy = !out.to_peers.is_empty() || !out.responses.is_empty() || !out.effects.is_empty();
        self.queue.extend(out.to_peers.into_values().flatten());
        self.responses
            .extend(out.responses.into_iter().map(|r| (id, r)));
        for e in out.effects {
            e.run();
            self.effects_run += 1;
        }
        busy
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
                if let Some(d) = self.members[to]
                    .driver
                    .as_mut()
                    .filter(|d| d.replica().id() == env.to)
                {
                    self.delivered += 1;
                    d.step(vec![env]);
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
