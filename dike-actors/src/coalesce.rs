//! When an actor that batches its inputs should act on them: the rule the
//! replica actor (drive once per batch of inputs) and the transport (one
//! message per peer node per batch) share.
//!
//! The first input of a batch makes the actor cast itself a `Flush`, which
//! lands behind whatever is already in its mailbox. If other inputs were
//! handled while that `Flush` waited its turn, the mailbox is busy and a
//! burst may still be arriving (a peer's batch fanned out to several
//! actors, a leader's answers to one slot): the `Flush` goes to the back
//! once more, at most [`MAX_FLUSH_DEFERRALS`] times in a row. An idle
//! mailbox costs nothing extra: a lone input is acted on at the first
//! `Flush`.
//!
//! Invariant: every input is followed by a `Flush` that acts (a scheduled
//! `Flush` is deferred a bounded number of times, and a failed cast leaves
//! nothing scheduled, so the next input tries again).

/// How often a `Flush` may go back to the end of a busy mailbox.
pub const MAX_FLUSH_DEFERRALS: u32 = 2;

/// The state of one actor's `Flush`. See the module documentation.
#[derive(Debug, Default)]
pub struct Coalescer {
    scheduled: bool,
    behind: usize,
    deferred: u32,
}

impl Coalescer {
    /// An input was handled: returns whether to cast a `Flush` now (then
    /// report the outcome with [`Coalescer::cast`]).
    pub fn on_input(&mut self) -> bool {
        if self.scheduled {
            self.behind += 1;
            false
        } else {
            true
        }
    }

    /// Whether the `Flush` asked for was cast.
    pub fn cast(&mut self, ok: bool) {
        self.scheduled = ok;
        if ok {
            self.behind = 0;
        }
    }

    /// The `Flush` came up: returns `true` to act now, `false` to cast it
    /// again (then report with [`Coalescer::recast`]).
    pub fn on_flush(&mut self) -> bool {
        if self.behind > 0 && self.deferred < MAX_FLUSH_DEFERRALS {
            return false;
        }
        self.scheduled = false;
        self.behind = 0;
        self.deferred = 0;
        true
    }

    /// Whether the deferred `Flush` was cast again; if not, act now.
    pub fn recast(&mut self, ok: bool) -> bool {
        if ok {
            self.deferred += 1;
            self.behind = 0;
            false
        } else {
            self.scheduled = false;
            self.behind = 0;
            self.deferred = 0;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_input_is_acted_on_at_the_first_flush() {
        let mut c = Coalescer::default();
        assert!(c.on_input());
        c.cast(true);
        assert!(c.on_flush());
        assert!(c.on_input(), "a new batch schedules again");
    }

    #[test]
    fn a_busy_mailbox_defers_the_flush_a_bounded_number_of_times() {
        let mut c = Coalescer::default();
        assert!(c.on_input());
        c.cast(true);
        for _ in 0..MAX_FLUSH_DEFERRALS {
            assert!(!c.on_input(), "one flush is enough");
            assert!(!c.on_flush(), "busy: defer");
            assert!(!c.recast(true));
        }
        assert!(!c.on_input());
        assert!(c.on_flush(), "deferred enough: act");
        assert!(c.on_input());
    }

    #[test]
    fn failed_casts_never_leave_an_input_without_a_flush() {
        let mut c = Coalescer::default();
        assert!(c.on_input());
        c.cast(false);
        assert!(c.on_input(), "nothing scheduled: the next input casts");
        c.cast(true);
        assert!(!c.on_input());
        assert!(!c.on_flush());
        assert!(c.recast(false), "the recast failed: act now");
        assert!(c.on_input());
    }
}
