use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tower::Service;

use super::RateLimiter;
use super::future::ResponseFuture;
use super::shared::{Refusal, Shared, Turn};
use crate::clock::{Clock, DefaultClock};
use crate::error::Rejected;
use crate::sync::Arc;
use crate::timer::{DefaultTimer, Timer};

/// A tower service whose calls each take a turn of a rate limiter; made by
/// [`RateLimiterLayer`](super::RateLimiterLayer).
///
/// `poll_ready` takes the turn for the next call, then waits for the inner service, holding
/// the turn meanwhile:
///
/// - **a token now**: taken, then the inner service is asked;
/// - **a turn within `max_wait`**: taken, and `poll_ready` is `Pending` until it comes;
/// - **refused** (further away than `max_wait`, or none allowed): `poll_ready` returns
///   `Ready(Ok(()))` at once, without asking the inner service, and the next `call` fails
///   with [`Rejected::RateLimited`] without calling it. A refusal is never `Ready(Err)`,
///   which tower treats as fatal, and it is not kept: every `poll_ready` asks again.
///
/// A refusal's `retry_after` is counted when `poll_ready` refused, so a `call` made long
/// after reports a wait longer than what is left.
///
/// A clone starts without a turn. Dropping the service gives a turn it took back if no
/// later one was taken since (see the [module docs](super#cancellation)).
///
/// # Panics
///
/// `call` panics if `poll_ready` did not return `Ready(Ok(()))` since the last `call`.
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::{RateLimiter, RateLimiterService};
/// use std::time::Duration;
///
/// let limiter = RateLimiter::new(RateLimiter::builder().rate(10, Duration::from_secs(1)).build()?);
/// let svc = RateLimiterService::new(
///     tower::service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) }),
///     limiter,
/// );
/// # let _ = svc;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub struct RateLimiterService<S, T = DefaultTimer, C = DefaultClock> {
    inner: S,
    limiter: RateLimiter<T, C>,
    readiness: Readiness,
}

/// What `poll_ready` holds for the next call.
enum Readiness {
    /// Nothing: the next `poll_ready` asks for a turn.
    Idle,
    /// A turn that comes when the sleep ends.
    Waiting(Waiting, Held),
    /// A turn for the next call.
    Ready(Held),
    /// No turn: the next call fails, and is counted and reported then.
    Refused(Refusal),
}

// Boxed only while the service waits for its turn; a call admitted at once never allocates.
// A trait object, so that naming the service does not require `T` to be a timer, and `Sync`
// so that frameworks can share it (axum's `Router::layer`).
type Waiting = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// A turn taken and not used yet: dropped unused, it is given back if it is the latest.
struct Held {
    shared: Arc<Shared>,
    tat: u64,
    spent: bool,
}

impl Held {
    fn new(shared: &Arc<Shared>, tat: u64) -> Self {
        Held {
            shared: shared.clone(),
            tat,
            spent: false,
        }
    }

    /// The call goes ahead: the turn stands, and the call is counted as admitted.
    fn spend(mut self) {
        self.spent = true;
        self.shared.admitted();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.spent {
            self.shared.leave(self.tat, 1);
        }
    }
}

impl<S: Clone, T: Clone, C: Clone> Clone for RateLimiterService<S, T, C> {
    fn clone(&self) -> Self {
        RateLimiterService {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            // A clone takes its own turn in its own poll_ready.
            readiness: Readiness::Idle,
        }
    }
}

impl<S, T, C> RateLimiterService<S, T, C> {
    /// Wraps `inner`.
    pub fn new(inner: S, limiter: RateLimiter<T, C>) -> Self {
        RateLimiterService {
            inner,
            limiter,
            readiness: Readiness::Idle,
        }
    }

    /// The rate limiter guarding this service.
    pub fn rate_limiter(&self) -> &RateLimiter<T, C> {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service, giving back a turn it took if it is the latest.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, T, C> Service<Req> for RateLimiterService<S, T, C>
where
    S: Service<Req>,
    S::Error: From<Rejected>,
    T: Timer,
    T::Sleep: Send + Sync + 'static,
    C: Clock,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        loop {
            match &mut self.readiness {
                Readiness::Ready(_) => break,
                // A refusal holds nothing, so it is not kept: a token may have come since.
                Readiness::Idle | Readiness::Refused(_) => {
                    let shared = &self.limiter.shared;
                    self.readiness = match shared.take(&self.limiter.clock, 1, shared.max_wait_ns) {
                        Turn::Now { tat } => Readiness::Ready(Held::new(shared, tat)),
                        Turn::Later { tat, wait } => {
                            // Held before the timer (user code) runs: a panic there gives
                            // the turn back.
                            let held = Held::new(shared, tat);
                            Readiness::Waiting(Box::pin(self.limiter.timer.sleep(wait)), held)
                        }
                        Turn::Refused(refusal) => {
                            self.readiness = Readiness::Refused(refusal);
                            return Poll::Ready(Ok(()));
                        }
                    };
                }
                Readiness::Waiting(sleep, _) => {
                    ready!(sleep.as_mut().poll(cx));
                    let Readiness::Waiting(_, held) =
                        mem::replace(&mut self.readiness, Readiness::Idle)
                    else {
                        unreachable!("the service was just waiting");
                    };
                    self.readiness = Readiness::Ready(held);
                }
            }
        }
        ready!(self.inner.poll_ready(cx))?;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match mem::replace(&mut self.readiness, Readiness::Idle) {
            Readiness::Ready(held) => {
                held.spend();
                ResponseFuture::called(self.inner.call(req))
            }
            // Counted and reported here, once per refused call, however often poll_ready
            // asked.
            Readiness::Refused(refusal) => {
                ResponseFuture::rejected(self.limiter.shared.refuse(refusal))
            }
            Readiness::Waiting(..) | Readiness::Idle => not_ready(),
        }
    }
}

#[cold]
#[track_caller]
fn not_ready() -> ! {
    panic!("RateLimiterService: poll_ready must be called before call")
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Idle => f.write_str("Idle"),
            Readiness::Waiting(..) => f.write_str("Waiting"),
            Readiness::Ready(_) => f.write_str("Ready"),
            Readiness::Refused(refusal) => f.debug_tuple("Refused").field(refusal).finish(),
        }
    }
}

impl<S: fmt::Debug, T, C> fmt::Debug for RateLimiterService<S, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("readiness", &self.readiness)
            .finish()
    }
}
