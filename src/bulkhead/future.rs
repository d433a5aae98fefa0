//! The futures returned by [`Bulkhead`] and
//! [`BulkheadService`](super::BulkheadService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::semaphore::{Cancelled, Enqueued, Node};
use super::{Bulkhead, BulkheadPermit, OwnedBulkheadPermit, Shared};
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

impl<'a, T: Timer> Future for Acquire<'a, T> {
    type Output = Result<BulkheadPermit<'a>, Rejected>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let shared = &this.bulkhead.shared;
        let in_flight = ready!(this.waiter.poll_slot(shared, &this.bulkhead.timer, cx))
            .map_err(|cause| shared.reject(cause))?;
        Poll::Ready(Ok(BulkheadPermit::new(shared, in_flight)))
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut reserve = self.project().reserve;
        let slot = ready!(reserve.as_mut().poll(cx));
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
        make: Option<M>,
        #[pin]
        waiter: Waiter<T::Sleep>,
        permit: Option<BulkheadPermit<'a>>,
        rejected: Option<Rejected>,
        #[pin]
        call: Option<F>,
    }

    impl<M, F, T> PinnedDrop for RunFuture<'_, M, F, T>
    where
        T: Timer,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.waiter.abandon(&this.bulkhead.shared);
        }
    }
}

impl<'a, M, F, T: Timer> RunFuture<'a, M, F, T> {
    /// A run that already holds a slot (the fail-fast path) or will wait for one.
    pub(super) fn new(
        bulkhead: &'a Bulkhead<T>,
        make: M,
        slot: Result<BulkheadPermit<'a>, Option<Rejected>>,
    ) -> Self {
        let (permit, rejected) = match slot {
            Ok(permit) => (Some(permit), None),
            Err(rejected) => (None, rejected),
        };
        RunFuture {
            bulkhead,
            make: Some(make),
            waiter: Waiter::new(),
            permit,
            rejected,
            call: None,
        }
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
        let mut this = self.project();
        if let Some(rejected) = this.rejected.take() {
            return Poll::Ready(Err(E::from(rejected)));
        }
        if this.call.is_none() {
            let bulkhead: &'a Bulkhead<T> = this.bulkhead;
            if this.permit.is_none() {
                let shared = &bulkhead.shared;
                let in_flight = ready!(this.waiter.poll_slot(shared, &bulkhead.timer, cx))
                    .map_err(|cause| E::from(shared.reject(cause)))?;
                *this.permit = Some(BulkheadPermit::new(shared, in_flight));
            }
            let Some(make) = this.make.take() else {
                panic!("bulkhead run future polled after completion");
            };
            this.call.set(Some(make()));
        }
        let Some(call) = this.call.as_mut().as_pin_mut() else {
            unreachable!("the call was just made");
        };
        let out = ready!(call.poll(cx));
        this.call.set(None);
        // The slot goes back as soon as the call is done, not when this future is dropped.
        *this.permit = None;
        Poll::Ready(out)
    }
}

impl<M, F, T: Timer> std::fmt::Debug for RunFuture<'_, M, F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFuture")
            .field("policy", &self.bulkhead.shared.telemetry.name())
            .field("holds_slot", &self.permit.is_some())
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
        inner: Option<F>,
        permit: Option<OwnedBulkheadPermit>,
        rejected: Option<Rejected>,
    }
}

#[cfg(feature = "tower")]
impl<F> ResponseFuture<F> {
    pub(super) fn admitted(inner: F, permit: OwnedBulkheadPermit) -> Self {
        ResponseFuture {
            inner: Some(inner),
            permit: Some(permit),
            rejected: None,
        }
    }

    pub(super) fn rejected(rejected: Rejected) -> Self {
        ResponseFuture {
            inner: None,
            permit: None,
            rejected: Some(rejected),
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
        let mut this = self.project();
        if let Some(rejected) = this.rejected.take() {
            return Poll::Ready(Err(E::from(rejected)));
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            panic!("bulkhead response future polled after completion");
        };
        let out = ready!(inner.poll(cx));
        this.inner.set(None);
        *this.permit = None;
        Poll::Ready(out)
    }
}

#[cfg(feature = "tower")]
impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("permit", &self.permit)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}
