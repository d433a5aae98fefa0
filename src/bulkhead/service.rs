use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tower::Service;

use super::future::{Reserve, ResponseFuture};
use super::{Bulkhead, OwnedBulkheadPermit};
use crate::error::{FullCause, Rejected};
use crate::timer::{DefaultTimer, Timer};

/// A tower service whose calls hold a bulkhead slot; made by
/// [`BulkheadLayer`](super::BulkheadLayer).
///
/// `poll_ready` reserves a slot (waiting while queued), then waits for the inner service,
/// holding the slot meanwhile. A full bulkhead is not a readiness error: `poll_ready` returns
/// `Ready(Ok(()))` at once, without asking the inner service, and the next `call` fails with
/// [`Rejected::BulkheadFull`] without calling it. A refusal is not kept: every `poll_ready`
/// asks again. A clone starts without a reservation; dropping the service gives a reserved
/// slot back. See the [module docs](super#tower-readiness) for the reasoning.
///
/// # Panics
///
/// `call` panics if `poll_ready` did not return `Ready(Ok(()))` since the last `call`.
///
/// # Examples
///
/// ```
/// use palisade::bulkhead::{Bulkhead, BulkheadService};
///
/// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(4).build()?);
/// let svc = BulkheadService::new(
///     tower::service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) }),
///     bulkhead,
/// );
/// # let _ = svc;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub struct BulkheadService<S, T = DefaultTimer> {
    inner: S,
    bulkhead: Bulkhead<T>,
    // A slot, or why there is none (reported as a rejection when the call is made).
    reserved: Option<Result<OwnedBulkheadPermit, FullCause>>,
    // Boxed only while this service waits in the queue; the fail-fast path never allocates.
    // A trait object, so that naming the service does not require `T` to be a timer (the
    // default timer is not one without the `tokio` feature).
    waiting: Option<Waiting>,
}

// `Sync` too, so that the service can be shared as frameworks ask (axum's `Router::layer`).
type Waiting = Pin<Box<dyn Future<Output = Result<OwnedBulkheadPermit, FullCause>> + Send + Sync>>;

impl<S: Clone, T: Clone> Clone for BulkheadService<S, T> {
    fn clone(&self) -> Self {
        BulkheadService {
            inner: self.inner.clone(),
            bulkhead: self.bulkhead.clone(),
            // A clone reserves its own slot in its own poll_ready.
            reserved: None,
            waiting: None,
        }
    }
}

impl<S, T> BulkheadService<S, T> {
    /// Wraps `inner`.
    pub fn new(inner: S, bulkhead: Bulkhead<T>) -> Self {
        BulkheadService {
            inner,
            bulkhead,
            reserved: None,
            waiting: None,
        }
    }

    /// The bulkhead guarding this service.
    pub fn bulkhead(&self) -> &Bulkhead<T> {
        &self.bulkhead
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service, giving back any slot reserved.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, T> Service<Req> for BulkheadService<S, T>
where
    S: Service<Req>,
    S::Error: From<Rejected>,
    T: Timer + Clone + Send + Sync,
    T::Sleep: Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // A refusal holds nothing, so it is not kept: a slot may have come free since.
        if let Some(Err(_)) = self.reserved {
            self.reserved = None;
        }
        if self.reserved.is_none() {
            // The happy path inline: a free slot, nobody in line, no waiting future.
            let shared = &self.bulkhead.shared;
            let fast = match self.waiting {
                None => shared.sem.try_acquire(),
                Some(_) => None,
            };
            let reserved = match fast {
                Some(in_flight) => Ok(OwnedBulkheadPermit::new(shared.clone(), in_flight)),
                None => ready!(self.poll_reserve(cx)),
            };
            self.reserved = Some(reserved);
        }
        if let Some(Ok(_)) = self.reserved {
            ready!(self.inner.poll_ready(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.reserved.take() {
            Some(Ok(permit)) => ResponseFuture::admitted(self.inner.call(req), permit),
            // Counted and reported here, once per refused call, however often poll_ready
            // asked.
            Some(Err(cause)) => Self::refused(&self.bulkhead, cause),
            None => panic!("BulkheadService: poll_ready must be called before call"),
        }
    }
}

impl<S, T> BulkheadService<S, T>
where
    T: Timer + Clone + Send + Sync,
    T::Sleep: Send + Sync + 'static,
{
    /// Counts and reports a refused call: out of line, so that `call` stays small enough to
    /// inline into the caller's happy path.
    #[cold]
    #[inline(never)]
    fn refused<F>(bulkhead: &Bulkhead<T>, cause: FullCause) -> ResponseFuture<F> {
        ResponseFuture::rejected(bulkhead.shared.reject(cause))
    }

    /// No free slot at the first try, or a wait already under way.
    #[cold]
    #[inline(never)]
    fn poll_reserve(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<OwnedBulkheadPermit, FullCause>> {
        let shared = &self.bulkhead.shared;
        // Out of `self` while polled: if a listener panics inside, the finished future goes
        // with the unwinding instead of staying behind to be polled again.
        let mut waiting = match self.waiting.take() {
            Some(waiting) => waiting,
            None => {
                if shared.config.max_queue == 0 {
                    return Poll::Ready(Err(FullCause::QueueFull));
                }
                Box::pin(Reserve::new(self.bulkhead.clone()))
            }
        };
        let slot = waiting.as_mut().poll(cx);
        if slot.is_pending() {
            self.waiting = Some(waiting);
        }
        slot
    }
}

impl<S: fmt::Debug, T> fmt::Debug for BulkheadService<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadService")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead)
            .field("reserved", &self.reserved)
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}
