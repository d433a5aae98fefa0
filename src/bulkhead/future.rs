//! The futures returned by [`Bulkhead`] and
//! [`BulkheadService`](super::BulkheadService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::semaphore::{Cancelled, Enqueued, Node};
use super::shared::Shared;
use super::{Bulkhead, BulkheadPermit, OwnedBulkheadPermit};
use crate::error::{FullCause, Rejected};
use crate::sync::Arc;
use crate::timer::Timer;

pin_project! {
    /// Waiting for a slot: the shared state machine of every acquiring future.
    struct Waiter<S> {
        started: bool,
        // Our place in line while queued.
        node: Option<Arc<Node>>,
        // The max_wait timer, armed when we join the queue.
        #[pin]
        sleep: Option<S>,
    }
}

impl<S: Future<Output = ()>> Waiter<S> {
    fn new() -> Self {
        Waiter {
            started: false,
            node: None,
            sleep: None,
        }
    }

    /// Ready with `Ok(in_flight)` once this waiter owns a slot (to be wrapped in a permit at
    /// once), or with why it got none. Runs no user code: the caller reports the outcome once
    /// the waiter's state is settled.
    fn poll_slot<T: Timer<Sleep = S>>(
        self: Pin<&mut Self>,
        shared: &Shared,
        timer: &T,
        cx: &mut Context<'_>,
    ) -> Poll<Result<u32, FullCause>> {
        let mut this = self.project();
        if !*this.started {
            *this.started = true;
            match shared.sem.enqueue() {
                Enqueued::Admitted(in_flight) => return Poll::Ready(Ok(in_flight)),
                Enqueued::Full => return Poll::Ready(Err(FullCause::QueueFull)),
                Enqueued::Waiting(node) => {
                    *this.node = Some(node);
                    if let Some(max_wait) = shared.max_wait {
                        this.sleep.set(Some(timer.sleep(max_wait)));
                    }
                }
            }
        }
        let Some(node) = this.node.as_ref() else {
            panic!("bulkhead acquire future polled after completion");
        };
        if let Poll::Ready(in_flight) = shared.sem.poll_granted(node, cx) {
            *this.node = None;
            return Poll::Ready(Ok(in_flight));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
            if let Some(node) = this.node.take() {
                // The grant may have raced the timer: a granted slot is ours to keep.
                return Poll::Ready(match shared.sem.cancel(&node) {
                    Cancelled::WasGranted(in_flight) => Ok(in_flight),
                    Cancelled::Left => Err(FullCause::WaitTimedOut),
                });
            }
        }
        Poll::Pending
    }

    /// Leaves the line if still in it, giving back a slot granted meanwhile.
    fn abandon(self: Pin<&mut Self>, shared: &Shared) {
        if let Some(node) = self.project().node.take() {
            // Never admitted as far as listeners know, so the slot goes back unreported.
            if let Cancelled::WasGranted(_) = shared.sem.cancel(&node) {
                shared.sem.release();
            }
        }
    }
}

pin_project! {
    /// The future returned by [`Bulkhead::acquire`](super::Bulkhead::acquire).
    ///
    /// Dropped while queued, it leaves the queue and takes no slot.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, bulkhead::Bulkhead};
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let bulkhead = Bulkhead::new(
    ///     Bulkhead::builder().max_concurrent(1).max_queue(1).max_wait(Duration::from_millis(100)).build()?,
    /// );
    /// let _busy = bulkhead.try_acquire().unwrap();
    /// // Queued behind the held slot until `max_wait` runs out.
    /// let waited = bulkhead.acquire().await;
    /// assert!(matches!(waited, Err(Rejected::BulkheadFull(_))));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct Acquire<'a, T>
    where
        T: Timer,
    {
        bulkhead: &'a Bulkhead<T>,
        #[pin]
        waiter: Waiter<T::Sleep>,
    }

    impl<T> PinnedDrop for Acquire<'_, T>
    where
        T: Timer,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.waiter.abandon(&this.bulkhead.shared);
        }
    }
}

impl<'a, T: Timer> Acquire<'a, T> {
    pub(super) fn new(bulkhead: &'a Bulkhead<T>) -> Self {
        Acquire {
            bulkhead,
            waiter: Waiter::new(),
        }
    }
}

impl<'a, T: Timer> Acquire<'a, T> {
    /// The wait without tokio's budget: the pipeline polls this, since it goes on to await
    /// the call (which spends the budget itself when it touches tokio's resources) or hands
    /// a refusal to its own refusal path, which takes the unit.
    // The hint keeps this inlined into its callers now that the pipeline's future polls an
    // `Acquire` too (bulkhead_acquire_queue_enabled: 153 -> 137 instructions per call).
    #[inline]
    pub(crate) fn poll_slot(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BulkheadPermit<'a>, Rejected>> {
        let this = self.project();
        let shared = &this.bulkhead.shared;
        let in_flight = ready!(this.waiter.poll_slot(shared, &this.bulkhead.timer, cx))
            .map_err(|cause| shared.reject(cause))?;
        Poll::Ready(Ok(BulkheadPermit::new(shared, in_flight)))
    }
}

/// A slot or a refusal handed out at once completes without awaiting anything, so it takes
/// a unit of tokio's budget, as `tokio::sync::Semaphore::acquire` does: a task looping on
/// `acquire().await` still yields to its runtime (see `crate::coop`). A poll that stays
/// queued gives the unit back.
impl<'a, T: Timer> Future for Acquire<'a, T> {
    type Output = Result<BulkheadPermit<'a>, Rejected>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let budget = ready!(crate::coop::poll_proceed(cx));
        let out = ready!(self.poll_slot(cx));
        budget.made_progress();
        Poll::Ready(out)
    }
}

pin_project! {
    /// Waiting for an owned slot; a refusal is left to the caller to report (the tower
    /// service reports it when the refused call is made).
    pub(super) struct Reserve<T>
    where
        T: Timer,
    {
        bulkhead: Bulkhead<T>,
        #[pin]
        waiter: Waiter<T::Sleep>,
    }

    impl<T> PinnedDrop for Reserve<T>
    where
        T: Timer,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.waiter.abandon(&this.bulkhead.shared);
        }
    }
}

impl<T: Timer> Reserve<T> {
    pub(super) fn new(bulkhead: Bulkhead<T>) -> Self {
        Reserve {
            bulkhead,
            waiter: Waiter::new(),
        }
    }
}

impl<T: Timer> Future for Reserve<T> {
    type Output = Result<OwnedBulkheadPermit, FullCause>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let shared = &this.bulkhead.shared;
        let in_flight = ready!(this.waiter.poll_slot(shared, &this.bulkhead.timer, cx))?;
        Poll::Ready(Ok(OwnedBulkheadPermit::new(shared.clone(), in_flight)))
    }
}

pin_project! {
    /// The future returned by [`Bulkhead::acquire_owned`](super::Bulkhead::acquire_owned).
    ///
    /// Dropped while queued, it leaves the queue and takes no slot.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).max_queue(4).build()?);
    /// let first = bulkhead.acquire_owned().await?;
    /// let next = tokio::spawn({
    ///     let bulkhead = bulkhead.clone();
    ///     async move { bulkhead.acquire_owned().await.map(drop) }
    /// });
    /// tokio::task::yield_now().await;
    /// assert_eq!(bulkhead.metrics().queued, 1);
    /// drop(first);
    /// next.await??;
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireOwned<T>
    where
        T: Timer,
    {
        #[pin]
        reserve: Reserve<T>,
    }
}

impl<T: Timer> AcquireOwned<T> {
    pub(super) fn new(bulkhead: Bulkhead<T>) -> Self {
        AcquireOwned {
            reserve: Reserve::new(bulkhead),
        }
    }
}

impl<T: Timer> Future for AcquireOwned<T> {
    type Output = Result<OwnedBulkheadPermit, Rejected>;

    // Takes a unit of tokio's budget when it completes, as `Acquire` does.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let budget = ready!(crate::coop::poll_proceed(cx));
        let mut reserve = self.project().reserve;
        let slot = ready!(reserve.as_mut().poll(cx));
        budget.made_progress();
        Poll::Ready(slot.map_err(|cause| reserve.bulkhead.shared.reject(cause)))
    }
}

pin_project! {
    /// The future returned by [`Bulkhead::run`](super::Bulkhead::run) and
    /// [`run_once`](super::Bulkhead::run_once): waits for a slot if the bulkhead queues, then
    /// runs the call holding it.
    ///
    /// Resolves to the call's output, or to `Err(E::from(Rejected::BulkheadFull(..)))` (the call
    /// was then never made). The slot is given back when the call finishes, fails, panics or
    /// is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, bulkhead::Bulkhead};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let call = bulkhead.run(|| async { Ok::<_, Rejected>(7) });
    /// assert_eq!(call.await, Ok(7));
    /// assert_eq!(bulkhead.metrics().in_flight, 0, "the slot is given back");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RunFuture<'a, M, F, T>
    where
        T: Timer,
    {
        bulkhead: &'a Bulkhead<T>,
        #[pin]
        state: Run<'a, M, F, T::Sleep>,
    }

    impl<M, F, T> PinnedDrop for RunFuture<'_, M, F, T>
    where
        T: Timer,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut state = this.state;
            match state.as_mut().project() {
                RunProj::Waiting { waiter, .. } => waiter.abandon(&this.bulkhead.shared),
                // The call's future goes before its slot, so that no more than
                // `max_concurrent` calls hold resources even while a cancelled call's
                // destructor runs. The replace drops the future in place and hands the permit
                // out; if that destructor panics, the permit still drops with the unwinding.
                RunProj::Called { .. } => drop(state.project_replace(Run::Done)),
                // Done (a finished call, the usual case) holds nothing; a slot never used and
                // a rejection need no order.
                RunProj::Admitted { .. } | RunProj::Rejected { .. } | RunProj::Done => {}
            }
        }
    }
}

pin_project! {
    /// Where a [`RunFuture`] is: its slot, its call and its rejection are never held at once.
    #[project = RunProj]
    #[project_replace = RunReplace]
    // A tag of its own rather than a niche in the waiter's timer, so that each look at the
    // state is one compare (bulkhead_run: 132 -> 116 instructions per call under callgrind).
    #[repr(u8)]
    enum Run<'a, M, F, S> {
        // A slot taken at once; the call is made at the first poll.
        Admitted {
            make: M,
            permit: BulkheadPermit<'a>,
        },
        // In line for a slot.
        Waiting {
            make: M,
            #[pin]
            waiter: Waiter<S>,
        },
        // The call, holding its slot.
        Called {
            #[pin]
            fut: F,
            permit: BulkheadPermit<'a>,
        },
        // Refused before the first poll: no slot free and no queue.
        Rejected {
            error: Rejected,
        },
        Done,
    }
}

impl<'a, M, F, T: Timer> RunFuture<'a, M, F, T> {
    /// A run that already holds a slot (the fail-fast path), was refused one (`Err(Some)`), or
    /// will wait in line for one (`Err(None)`).
    pub(super) fn new(
        bulkhead: &'a Bulkhead<T>,
        make: M,
        slot: Result<BulkheadPermit<'a>, Option<Rejected>>,
    ) -> Self {
        let state = match slot {
            Ok(permit) => Run::Admitted { make, permit },
            Err(Some(error)) => Run::Rejected { error },
            Err(None) => Run::Waiting {
                make,
                waiter: Waiter::new(),
            },
        };
        RunFuture { bulkhead, state }
    }
}

impl<'a, M, F, T, R, E> Future for RunFuture<'a, M, F, T>
where
    M: FnOnce() -> F,
    F: Future<Output = Result<R, E>>,
    T: Timer,
    E: From<Rejected>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut state = this.state;
        if !matches!(state.as_ref().get_ref(), Run::Called { .. }) {
            ready!(state.as_mut().start(this.bulkhead, cx))?;
        }
        let RunProj::Called { fut, .. } = state.as_mut().project() else {
            unreachable!("the call was just made");
        };
        let out = ready!(fut.poll(cx));
        // The slot goes back as soon as the call is done, not when this future is dropped;
        // the replace drops the call's future before the permit, taken out by name so that
        // no drop glue for the whole state runs.
        let RunReplace::Called { permit, .. } = state.project_replace(Run::Done) else {
            unreachable!("the call was just polled");
        };
        drop(permit);
        Poll::Ready(out)
    }
}

impl<'a, M, F, S> Run<'a, M, F, S> {
    /// The refusal, which completes without awaiting anything: it takes a unit of tokio's
    /// budget first, so a loop over refused calls still yields (see `crate::coop`). Out of
    /// line, off the admitted call's path.
    #[cold]
    #[inline(never)]
    fn refuse<E: From<Rejected>>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>> {
        ready!(crate::coop::poll_proceed(cx)).made_progress();
        let RunReplace::Rejected { error } = self.project_replace(Run::Done) else {
            unreachable!("the run was just refused");
        };
        Poll::Ready(Err(E::from(error)))
    }

    /// Takes the run from admitted or waiting to `Called`, making the call: `Ready(Ok)` once
    /// called, `Ready(Err)` if refused (then `Done`).
    fn start<T, E>(
        mut self: Pin<&mut Self>,
        bulkhead: &'a Bulkhead<T>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), E>>
    where
        M: FnOnce() -> F,
        S: Future<Output = ()>,
        T: Timer<Sleep = S>,
        E: From<Rejected>,
    {
        let (make, permit) = match self.as_mut().project() {
            RunProj::Admitted { .. } => {
                let RunReplace::Admitted { make, permit } =
                    self.as_mut().project_replace(Run::Done)
                else {
                    unreachable!("the run was just admitted");
                };
                (make, permit)
            }
            RunProj::Waiting { waiter, .. } => {
                let shared = &bulkhead.shared;
                let in_flight = match ready!(waiter.poll_slot(shared, &bulkhead.timer, cx)) {
                    Ok(in_flight) => in_flight,
                    Err(cause) => {
                        self.set(Run::Done);
                        return Poll::Ready(Err(E::from(shared.reject(cause))));
                    }
                };
                // The slot is in a permit before anything else can panic: the listener hearing
                // of the admission, the timer's destructor, `make`.
                let permit = BulkheadPermit::new(shared, in_flight);
                let RunReplace::Waiting { make, .. } = self.as_mut().project_replace(Run::Done)
                else {
                    unreachable!("the run was just waiting");
                };
                (make, permit)
            }
            RunProj::Rejected { .. } => return self.refuse(cx),
            RunProj::Called { .. } => unreachable!("the call is already made"),
            RunProj::Done => panic!("bulkhead run future polled after completion"),
        };
        // If `make` panics, the permit drops with the unwinding.
        let called = Run::Called {
            fut: make(),
            permit,
        };
        // The run is `Done` here, which holds nothing. Binding the fields of the other states
        // (rather than matching them with `_` or a `let .. else`) leaves nothing for the
        // enum's drop glue, which would otherwise be called out of line on every call
        // (bulkhead_run: 16 instructions per call under callgrind).
        match self.project_replace(called) {
            RunReplace::Done => Poll::Ready(Ok(())),
            RunReplace::Admitted {
                make: _make,
                permit: _permit,
            } => unreachable!("the run was just taken out"),
            RunReplace::Waiting { make: _make, .. } => unreachable!("the run was just taken out"),
            RunReplace::Called {
                permit: _permit, ..
            } => unreachable!("the run was just taken out"),
            RunReplace::Rejected { .. } => unreachable!("the run was just taken out"),
        }
    }
}

impl<M, F, T: Timer> std::fmt::Debug for RunFuture<'_, M, F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            Run::Admitted { .. } => "admitted",
            Run::Waiting { .. } => "waiting",
            Run::Called { .. } => "called",
            Run::Rejected { .. } => "rejected",
            Run::Done => "done",
        };
        f.debug_struct("RunFuture")
            .field("policy", &self.bulkhead.shared.telemetry.name())
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<T: Timer> std::fmt::Debug for Acquire<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acquire")
            .field("policy", &self.bulkhead.shared.telemetry.name())
            .finish_non_exhaustive()
    }
}

impl<T: Timer> std::fmt::Debug for AcquireOwned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireOwned")
            .field("policy", &self.reserve.bulkhead.shared.telemetry.name())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "tower")]
pin_project! {
    /// The response future of [`BulkheadService`](super::BulkheadService): the inner call,
    /// holding its slot until it completes (or is dropped), or the rejection.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(all(feature = "tokio", feature = "tower"))]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(bulkhead.layer())
    ///     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) });
    /// let response = svc.ready().await?.call(21);
    /// assert_eq!(response.await?, 42);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio", feature = "tower")))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        call: Call<F>,
    }
}

#[cfg(feature = "tower")]
pin_project! {
    /// Where a [`ResponseFuture`] is: the call holding its slot, the rejection, or done.
    #[project = CallProj]
    #[project_replace = CallReplace]
    enum Call<F> {
        Called {
            #[pin]
            fut: F,
            permit: OwnedBulkheadPermit,
        },
        Rejected {
            error: Rejected,
        },
        Done,
    }

    // On the states rather than on `ResponseFuture`: one destructor, not two nested out of
    // line (bulkhead_layer: 168 -> 152 instructions per call under callgrind).
    impl<F> PinnedDrop for Call<F> {
        fn drop(mut this: Pin<&mut Self>) {
            // The call's future goes before its slot, as in `RunFuture`'s drop; done (the
            // usual case) and refused hold nothing that needs an order.
            if let CallProj::Called { .. } = this.as_mut().project() {
                drop(this.project_replace(Call::Done));
            }
        }
    }
}

#[cfg(feature = "tower")]
impl<F> ResponseFuture<F> {
    pub(super) fn admitted(fut: F, permit: OwnedBulkheadPermit) -> Self {
        ResponseFuture {
            call: Call::Called { fut, permit },
        }
    }

    pub(super) fn rejected(error: Rejected) -> Self {
        ResponseFuture {
            call: Call::Rejected { error },
        }
    }
}

#[cfg(feature = "tower")]
impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
    E: From<Rejected>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut call = self.project().call;
        match call.as_mut().project() {
            CallProj::Called { fut, .. } => {
                let out = ready!(fut.poll(cx));
                // The replace drops the call's future before the permit gives the slot back
                // (taken out by name, as in `RunFuture`).
                let CallReplace::Called { permit, .. } = call.project_replace(Call::Done) else {
                    unreachable!("the call was just polled");
                };
                drop(permit);
                Poll::Ready(out)
            }
            CallProj::Rejected { .. } => refuse(call, cx),
            CallProj::Done => panic!("bulkhead response future polled after completion"),
        }
    }
}

/// As `Run::refuse`: a unit of tokio's budget per refusal, out of line.
#[cfg(feature = "tower")]
#[cold]
#[inline(never)]
fn refuse<F, R, E: From<Rejected>>(
    call: Pin<&mut Call<F>>,
    cx: &mut Context<'_>,
) -> Poll<Result<R, E>> {
    ready!(crate::coop::poll_proceed(cx)).made_progress();
    let CallReplace::Rejected { error } = call.project_replace(Call::Done) else {
        unreachable!("the call was just refused");
    };
    Poll::Ready(Err(E::from(error)))
}

#[cfg(feature = "tower")]
impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        match &self.call {
            Call::Called { permit, .. } => d.field("permit", permit),
            Call::Rejected { error } => d.field("rejected", error),
            Call::Done => d.field("done", &true),
        };
        d.finish_non_exhaustive()
    }
}
