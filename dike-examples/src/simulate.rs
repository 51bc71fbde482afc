//! `dike simulate`: a replicated arithmetic group inside one process, shown
//! step by step, then the fault simulator.
//!
//! It runs the group inside one process on dike-core's in-memory
//! cluster (the same replica code the runtime drives; messages and disk
//! writes are in memory), then runs the randomised fault simulator. It shows
//! requests being answered, two of five replicas crashing (one the leader),
//! the group carrying on, the crashed replicas catching up, and a retried
//! request applied once.

use crate::arithmetic::{Arithmetic, ArithmeticReply, ArithmeticRequest};
use dike_core::sim::{run_traced, LocalCluster, SimConfig};
use dike_core::{
    codec, GroupContext, PaxosServer, ReplicaOptions, RequestError, RequestId, ServerMachine,
};
use std::io::Write;

type Machine = ServerMachine<Arithmetic>;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Writing the commentary failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// The group did not behave as it must (a bug: please report it).
    #[error("the demo found a problem: {0}")]
    Broken(String),
}

/// What the demo saw, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// The final value on every replica.
    pub values: Vec<i64>,
    /// Fault schedules the simulator ran.
    pub schedules: u64,
}

struct Demo<'a, W: Write> {
    out: &'a mut W,
    group: LocalCluster<Machine>,
    next_client: u64,
}

impl<W: Write> Demo<'_, W> {
    fn say(&mut self, text: impl AsRef<str>) -> Result<(), DemoError> {
        writeln!(self.out, "{}", text.as_ref())?;
        Ok(())
    }

    /// Ticks until some replica leads (bounded).
    fn await_leader(&mut self) -> Result<usize, DemoError> {
        for _ in 0..500 {
            self.group.run_until_quiet();
            if let Some(l) = self.group.leader() {
                return Ok(l);
            }
            self.group.tick();
        }
        Err(DemoError::Broken(
            "no leader was elected within 500 ticks".into(),
        ))
    }

    /// Sends `req` as a new command through the leader and returns the reply.
    fn call(&mut self, req: ArithmeticRequest) -> Result<ArithmeticReply, DemoError> {
        self.next_client += 1;
        let client = self.next_client;
        self.call_as(client, 1, req)
    }

    fn call_as(
        &mut self,
        client: u64,
        seq: u64,
        req: ArithmeticRequest,
    ) -> Result<ArithmeticReply, DemoError> {
        let leader = self.await_leader()?;
        let payload =
            codec::encode("request", &req).map_err(|e| DemoError::Broken(e.to_string()))?;
        self.group.propose(leader, client, seq, payload);
        self.group.run_until_quiet();
        let id = RequestId::Command(dike_core::ClientId(client), seq);
        let responses = self.group.take_responses();
        let Some((_, r)) = responses.into_iter().find(|(_, r)| r.to == id) else {
            return Err(DemoError::Broken(format!("no reply to {req:?}")));
        };
        let bytes = r
            .result
            .map_err(|e: RequestError| DemoError::Broken(e.to_string()))?;
        codec::decode("reply", &bytes).map_err(|e| DemoError::Broken(e.to_string()))
    }

    fn show(&mut self, req: ArithmeticRequest) -> Result<(), DemoError> {
        let reply = self.call(req)?;
        let leader = self.group.leader().map_or(0, |l| l + 1);
        let req = format!("{req:?}");
        match reply {
            Ok(v) => self.say(format!("  {req:<10} -> {v:<6} (via leader n{leader})")),
            Err(e) => self.say(format!("  {req:<10} -> error: {e} (value unchanged)")),
        }
    }

    fn values(&mut self) -> Vec<Option<(i64, u64)>> {
        self.group
            .members
            .iter()
            .map(|m| {
                m.replica()
                    .map(|r| (r.machine().server().value(), r.applied()))
            })
            .collect()
    }

    fn show_values(&mut self) -> Result<(), DemoError> {
        for (i, v) in self.values().into_iter().enumerate() {
            match v {
                Some((value, slot)) => self.say(format!(
                    "  replica n{}: value {value:<5} applied up to slot {slot}",
                    i + 1
                ))?,
                None => self.say(format!("  replica n{}: DOWN", i + 1))?,
            }
        }
        Ok(())
    }
}

/// Runs the demo, writing its commentary to `out`; `schedules` fault
/// schedules of the simulator run at the end.
pub fn run(out: &mut impl Write, schedules: u64) -> Result<DemoSummary, DemoError> {
    let opts = ReplicaOptions {
        snapshot_interval: 4,
        snapshot_jitter: 2,
        ..ReplicaOptions::default()
    };
    let group = LocalCluster::new(5, opts, |id| {
        ServerMachine::new(GroupContext {
            group: "arith-1".into(),
            kind: Arithmetic::KIND.into(),
            member: id,
        })
    });
    let mut d = Demo {
        out,
        group,
        next_client: 0,
    };
    d.say("dike demo: one arithmetic group replicated on 5 replicas with Multi-Paxos.")?;
    d.say("(In-process: the replica code is the real one; messages and disk writes stay in memory.)\n")?;

    d.say("1. Electing a leader...")?;
    let leader = d.await_leader()?;
    d.say(format!(
        "   n{} is leader after phase 1 with a majority.\n",
        leader + 1
    ))?;

    d.say(
        "2. Requests go through the leader; each is chosen by a majority, then applied everywhere:",
    )?;
    use ArithmeticRequest::*;
    for req in [Add(10), Mult(3), Sub(4), Div(0), Div(2), Read] {
        d.show(req)?;
    }
    d.say("")?;

    let leader = d.await_leader()?;
    let follower = (leader + 2) % 5;
    d.say(format!(
        "3. Crashing the leader n{} and follower n{} (2 of 5: a majority remains).",
        leader + 1,
        follower + 1
    ))?;
    d.group.crash(leader);
    d.group.crash(follower);
    let new_leader = d.await_leader()?;
    d.say(format!(
        "   the election timeout fired; n{} leads now.",
        new_leader + 1
    ))?;
    for req in [Add(7), Mult(2), Read] {
        d.show(req)?;
    }
    d.show_values()?;
    d.say("")?;

    d.say("4. Restarting both from their storage; they catch up (log or snapshot):")?;
    d.group.restart(leader).map_err(DemoError::Broken)?;
    d.group.restart(follower).map_err(DemoError::Broken)?;
    for _ in 0..20 {
        d.group.tick();
        d.group.run_until_quiet();
    }
    d.show_values()?;
    let values: Vec<i64> = d.values().into_iter().flatten().map(|(v, _)| v).collect();
    if values.len() != 5 || values.iter().any(|v| *v != values[0]) {
        return Err(DemoError::Broken(format!("replicas disagree: {values:?}")));
    }
    d.say("   all 5 replicas hold the same value.\n")?;

    d.say("5. A client retries a request it already sent (say, after a timeout):")?;
    let first = d.call_as(9_999, 1, Add(1))?;
    let again = d.call_as(9_999, 1, Add(1))?;
    d.say(format!(
        "   first answer {first:?}, retry answered {again:?} from the session table: applied once."
    ))?;
    d.say("")?;

    d.say(format!(
        "6. The fault simulator: {schedules} random schedules of drops, duplicates, partitions,"
    ))?;
    d.say("   crashes losing unsynced writes and failing fsyncs, each checked for agreement,")?;
    d.say("   exactly-once application and linearizability:")?;
    let mut totals = (0u64, 0u64, 0usize);
    for seed in 0..schedules {
        let r =
            run_traced(SimConfig::faulty(seed, 5)).map_err(|f| DemoError::Broken(f.to_string()))?;
        totals.0 += r.crashes;
        totals.1 += r.partitions;
        totals.2 += r.ops;
        if (seed + 1) % (schedules / 20).max(1) == 0 || seed + 1 == schedules {
            let done = ((seed + 1) * 20 / schedules.max(1)) as usize;
            write!(
                d.out,
                "\r   [{}{}] {}/{schedules}",
                "#".repeat(done),
                " ".repeat(20 - done),
                seed + 1
            )?;
            d.out.flush()?;
        }
    }
    d.say("")?;
    d.say(format!(
        "   all passed: {} operations, {} crashes, {} partitions injected.",
        totals.2, totals.0, totals.1
    ))?;
    // Let the last commit index reach every follower.
    for _ in 0..4 {
        d.group.tick();
        d.group.run_until_quiet();
    }
    let values = d.values().into_iter().flatten().map(|(v, _)| v).collect();
    Ok(DemoSummary { values, schedules })
}
