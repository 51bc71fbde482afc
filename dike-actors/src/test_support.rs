//! Helpers of the unit tests.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An actor that counts the messages `counts` accepts and does nothing
/// else: a stand-in for a replica or a peer transport.
pub(crate) struct Counting<M>(std::marker::PhantomData<fn() -> M>);

/// What [`Counting`] starts with.
pub(crate) struct CountingArgs<M> {
    /// Counted messages so far.
    pub count: Arc<AtomicUsize>,
    /// Which messages count.
    pub counts: fn(&M) -> bool,
    /// A process group to join when started, if any.
    pub group: Option<String>,
}

impl<M: ractor::Message> Counting<M> {
    /// Spawns one, named `name`.
    pub(crate) async fn spawn(
        name: Option<String>,
        args: CountingArgs<M>,
    ) -> (ActorRef<M>, tokio::task::JoinHandle<()>) {
        Actor::spawn(name, Counting(std::marker::PhantomData), args)
            .await
            .expect("spawn a counting actor")
    }
}

impl<M: ractor::Message> Actor for Counting<M> {
    type Msg = M;
    type State = CountingArgs<M>;
    type Arguments = CountingArgs<M>;

    async fn pre_start(
        &self,
        myself: ActorRef<M>,
        args: CountingArgs<M>,
    ) -> Result<CountingArgs<M>, ActorProcessingErr> {
        if let Some(group) = &args.group {
            ractor::pg::join(group.clone(), vec![myself.get_cell()]);
        }
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<M>,
        msg: M,
        state: &mut CountingArgs<M>,
    ) -> Result<(), ActorProcessingErr> {
        if (state.counts)(&msg) {
            state.count.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Waits until `count` is above zero, for up to 10 s; the panic names
/// `what`.
pub(crate) async fn until_counted(count: &AtomicUsize, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
