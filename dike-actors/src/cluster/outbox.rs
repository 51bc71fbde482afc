//! What waits to leave this node for other nodes, per destination node:
//! the queue the node's transport sends from.
//!
//! Replicas put their protocol messages and their answers to forwarded
//! requests here themselves, under a short lock, instead of casting each
//! to the transport. With thousands of replicas on a node, one message per
//! replica batch through the one transport actor made that actor the
//! node's bottleneck: it is one task among thousands for the scheduler, so
//! its mailbox grew faster than it drained (measured: 40 s behind at 2,000
//! groups, see docs/BENCHMARKS.md). Now the transport's mailbox carries
//! only what arrives from peers, clients' requests and one
//! [`TransportMsg::Flush`](crate::cluster::transport::TransportMsg::Flush)
//! per batch.
//!
//! When to send follows [`crate::coalesce`]: the first item of a batch
//! asks for a `Flush`, which lands behind whatever is in the transport's
//! mailbox; if more items came meanwhile, the `Flush` goes to the back once
//! more, a bounded number of times; then the whole queue leaves, one
//! message per destination node.
//!
//! Invariants: items one sender queues for one node leave in the order it
//! queued them (one queue per node, appended under the lock, taken whole);
//! while anything is queued a `Flush` is scheduled or a cast of one failed
//! (the transport is gone: the next item, or the next transport's start,
//! schedules again).

use crate::cluster::wire::Batch;
use crate::coalesce::Coalescer;
use crate::node::context::{NodeContext, NodePart, Part};
use std::collections::HashMap;
use std::sync::Mutex;

/// The node's outgoing queues. See the module documentation.
#[derive(Default)]
pub struct Outbox {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    queued: HashMap<u64, Batch>,
    flush: Coalescer,
}

/// What the transport does with a `Flush` that came up.
pub(crate) enum FlushNow {
    /// Send these batches, by destination node.
    Send(HashMap<u64, Batch>),
    /// The `Flush` went to the back of the mailbox again.
    Deferred,
}

impl Outbox {
    /// Queues an item for node `node` (`add` puts it in that node's batch).
    /// Calls `schedule` to cast a `Flush` if none is scheduled; `schedule`
    /// returns whether the cast went through.
    pub(crate) fn push(
        &self,
        node: u64,
        add: impl FnOnce(&mut Batch),
        schedule: impl FnOnce() -> bool,
    ) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        add(inner.queued.entry(node).or_default());
        if inner.flush.on_input() {
            // Under the lock, so exactly one `Flush` is scheduled.
            let ok = schedule();
            inner.flush.cast(ok);
        }
    }

    /// A `Flush` came up: the batches to send now, or `Deferred` after
    /// `recast` cast it again (it returns whether that went through; if not,
    /// the batches go now).
    pub(crate) fn on_flush(&self, recast: impl FnOnce() -> bool) -> FlushNow {
        let Ok(mut inner) = self.inner.lock() else {
            return FlushNow::Send(HashMap::new());
        };
        if !inner.flush.on_flush() && !inner.flush.recast(recast()) {
            return FlushNow::Deferred;
        }
        let queued = std::mem::take(&mut inner.queued);
        FlushNow::Send(queued.into_iter().filter(|(_, b)| !b.is_empty()).collect())
    }

    /// A transport starts: forgets any `Flush` its predecessor had
    /// scheduled (it went with its mailbox) and schedules one with
    /// `schedule` if anything waits.
    pub(crate) fn restart(&self, schedule: impl FnOnce() -> bool) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.flush = Coalescer::default();
        if inner.queued.values().any(|b| !b.is_empty()) && inner.flush.on_input() {
            let ok = schedule();
            inner.flush.cast(ok);
        }
    }
}

impl NodePart for Outbox {
    const PART: Part = Part::Outbox;
}

impl NodeContext {
    /// What waits to leave this node for other nodes (sent by the
    /// transport; it outlives a transport that restarts).
    pub(crate) fn outbox(&self) -> &Outbox {
        self.part()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::Answer;
    use std::cell::Cell;

    fn answer(id: u64) -> impl FnOnce(&mut Batch) {
        move |b: &mut Batch| b.answers.push(Answer { id, reply: vec![] })
    }

    fn ids(now: FlushNow, node: u64) -> Vec<u64> {
        match now {
            FlushNow::Send(mut b) => b
                .remove(&node)
                .map(|b| b.answers.iter().map(|a| a.id).collect())
                .unwrap_or_default(),
            FlushNow::Deferred => panic!("deferred"),
        }
    }

    #[test]
    fn one_flush_is_scheduled_per_batch_and_items_leave_in_order() {
        let outbox = Outbox::default();
        let casts = Cell::new(0);
        let schedule = || {
            casts.set(casts.get() + 1);
            true
        };
        outbox.push(2, answer(1), schedule);
        outbox.push(2, answer(2), schedule);
        outbox.push(3, answer(3), schedule);
        assert_eq!(casts.get(), 1, "one Flush for the batch");
        // Items came after the Flush was cast: it goes back, bounded.
        let mut deferrals = 0;
        let sent = loop {
            match outbox.on_flush(|| true) {
                FlushNow::Deferred => deferrals += 1,
                now => break now,
            }
            outbox.push(2, answer(10 + deferrals), || panic!("already scheduled"));
        };
        assert_eq!(deferrals, crate::coalesce::MAX_FLUSH_DEFERRALS as u64);
        assert_eq!(ids(sent, 2), vec![1, 2, 11, 12]);
        // The next item schedules a new Flush.
        outbox.push(2, answer(20), schedule);
        assert_eq!(casts.get(), 2);
        assert_eq!(ids(outbox.on_flush(|| true), 2), vec![20]);
    }

    #[test]
    fn a_failed_cast_leaves_the_next_item_to_schedule_again() {
        let outbox = Outbox::default();
        outbox.push(2, answer(1), || false);
        let casts = Cell::new(0);
        outbox.push(2, answer(2), || {
            casts.set(casts.get() + 1);
            true
        });
        assert_eq!(casts.get(), 1);
        assert_eq!(ids(outbox.on_flush(|| true), 2), vec![1, 2]);
    }

    #[test]
    fn a_new_transport_schedules_a_flush_for_what_waits() {
        let outbox = Outbox::default();
        // The old transport's Flush was cast, then lost with its mailbox.
        outbox.push(2, answer(1), || true);
        let casts = Cell::new(0);
        outbox.restart(|| {
            casts.set(casts.get() + 1);
            true
        });
        assert_eq!(casts.get(), 1);
        assert_eq!(ids(outbox.on_flush(|| true), 2), vec![1]);
        outbox.restart(|| panic!("nothing waits"));
    }
}
