use std::fmt;
use std::future::Future;
use std::mem;
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
    readiness: Readiness,
}

/// What `poll_ready` holds for the next call: one of these, never two.
enum Readiness {
    /// Nothing: the next `poll_ready` asks for a slot.
    Idle,
    /// In line for a slot.
    Waiting(Waiting),
    /// A slot for the next call.
    Reserved(OwnedBulkheadPermit),
    /// No slot: the next call fails, and is counted and reported then.
    Refused(FullCause),
}

// Boxed only while this service waits in the queue; the fail-fast path never allocates. A
// trait object, so that naming the service does not require `T` to be a timer (the default
// timer is not one without the `tokio` feature). `Sync` too, so that the service can be shared
// as frameworks ask (axum's `Router::layer`).
type Waiting = Pin<Box<dyn Future<Output = Result<OwnedBulkheadPermit, FullCause>> + Send + Sync>>;

impl<S: Clone, T: Clone> Clone for BulkheadService<S, T> {
    fn clone(&self) -> Self {
        BulkheadService {
            inner: self.inner.clone(),
            bulkhead: self.bulkhead.clone(),
            // A clone reserves its own slot in its own poll_ready.
            readiness: Readiness::Idle,
        }
    }
}

impl<S, T> BulkheadService<S, T> {
    /// Wraps `inner`.
    pub fn new(inner: S, bulkhead: Bulkhead<T>) -> Self {
        BulkheadService {
            inner,
            bulkhead,
            readiness: Readiness::Idle,
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
        match self.readiness {
            Readiness::Reserved(_) => {}
            // A refusal holds nothing, so it is not kept: a slot may have come free since.
            Readiness::Idle | Readiness::Refused(_) => {
                // The happy path inline: a free slot, nobody in line.
                let shared = &self.bulkhead.shared;
                self.readiness = match shared.sem.try_acquire() {
                    Some(in_flight) => {
                        Readiness::Reserved(OwnedBulkheadPermit::new(shared.clone(), in_flight))
                    }
                    None => ready!(self.poll_reserve(cx)),
                };
            }
            // In line already: a newcomer's try would overtake the queue.
            Readiness::Waiting(_) => self.readiness = ready!(self.poll_reserve(cx)),
        }
        if let Readiness::Reserved(_) = self.readiness {
            ready!(self.inner.poll_ready(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // Every state's parts are bound by name, so nothing is left for the whole state's
        // drop glue: the state taken out then needs no copy in memory, and each part is read
        // as wide as `poll_ready` wrote it. Matched with `_`, it was copied in 16-byte loads
        // from a tag and a pointer stored separately, which the CPU cannot forward from its
        // store buffer (bulkhead_layer: 29 ns a call before the state was one enum, 36 after,
        // 30 with this, on the icount driver).
        match mem::replace(&mut self.readiness, Readiness::Idle) {
            Readiness::Reserved(permit) => ResponseFuture::admitted(self.inner.call(req), permit),
            // Counted and reported here, once per refused call, however often poll_ready
            // asked.
            Readiness::Refused(cause) => Self::refused(&self.bulkhead, cause),
            Readiness::Waiting(_waiting) => not_ready(),
            Readiness::Idle => not_ready(),
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

    /// No free slot at the first try, or a wait already under way: what to hold next, or
    /// `Pending` with the wait stored.
    #[cold]
    #[inline(never)]
    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<Readiness> {
        // Out of `self` while polled: if a listener panics inside, the finished future goes
        // with the unwinding instead of staying behind to be polled again.
        let mut waiting = match mem::replace(&mut self.readiness, Readiness::Idle) {
            Readiness::Waiting(waiting) => waiting,
            // Idle or refused: poll_ready never gets here holding a slot.
            _ => {
                if self.bulkhead.shared.config.max_queue == 0 {
                    return Poll::Ready(Readiness::Refused(FullCause::QueueFull));
                }
                Box::pin(Reserve::new(self.bulkhead.clone()))
            }
        };
        match waiting.as_mut().poll(cx) {
            Poll::Pending => {
                self.readiness = Readiness::Waiting(waiting);
                Poll::Pending
            }
            Poll::Ready(Ok(permit)) => Poll::Ready(Readiness::Reserved(permit)),
            Poll::Ready(Err(cause)) => Poll::Ready(Readiness::Refused(cause)),
        }
    }
}

#[cold]
#[track_caller]
fn not_ready() -> ! {
    panic!("BulkheadService: poll_ready must be called before call")
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Idle => f.write_str("Idle"),
            Readiness::Waiting(_) => f.write_str("Waiting"),
            Readiness::Reserved(permit) => f.debug_tuple("Reserved").field(permit).finish(),
            Readiness::Refused(cause) => f.debug_tuple("Refused").field(cause).finish(),
        }
    }
}

impl<S: fmt::Debug, T> fmt::Debug for BulkheadService<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadService")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead)
            .field("readiness", &self.readiness)
            .finish()
    }
}
