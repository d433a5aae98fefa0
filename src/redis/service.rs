//! The tower service of the fleet-wide limits, and its response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::Service;

use super::future::Admit;
use super::key::RedisKey;
use super::layer::FleetLimit;
use crate::error::Rejected;
use crate::keyed::service::release_readied;

/// The service of a [`RedisLimitLayer`](super::RedisLimitLayer): admits each request under
/// its key by one round trip to Redis, then calls the inner service.
///
/// `poll_ready` is the inner service's. `call` hands the readied inner service to the
/// request's future (a clone waits for the next request), which calls it once the request
/// is admitted; a refused request never reaches it. While the round trip (and any wait for
/// a turn) is under way, the future holds none of the inner service's capacity: at its
/// first wait it drops the readied service, giving back what its readiness holds (a slot
/// of a bulkhead further in), and makes a fresh clone ready once the request is admitted,
/// so requests waiting on Redis do not keep others from a local limit behind this one.
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::RateLimiterConfig;
/// use palisade::redis::{RedisConfig, RedisLimitService, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
/// use std::time::Duration;
///
/// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
/// let limit = RateLimiterConfig::builder().rate(10, Duration::from_secs(1)).build()?;
/// let limiter = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
/// let svc = RedisLimitService::new(
///     tower::service_fn(|x: u32| async move { Ok::<_, palisade::Rejected>(x) }),
///     limiter,
///     |x: &u32| *x,
/// );
/// # let _ = svc;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub struct RedisLimitService<S, P, F> {
    inner: S,
    limit: P,
    key_of: F,
}

impl<S: Clone, P: Clone, F: Clone> Clone for RedisLimitService<S, P, F> {
    fn clone(&self) -> Self {
        RedisLimitService {
            inner: self.inner.clone(),
            limit: self.limit.clone(),
            key_of: self.key_of.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug, F> fmt::Debug for RedisLimitService<S, P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimitService")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<S, P, F> RedisLimitService<S, P, F> {
    /// Wraps `inner`, admitting each request under the key `key_of` reads from it.
    pub fn new(inner: S, limit: P, key_of: F) -> Self {
        RedisLimitService {
            inner,
            limit,
            key_of,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, F, K, Req> Service<Req> for RedisLimitService<S, P, F>
where
    S: Service<Req> + Clone,
    S::Error: From<Rejected>,
    P: FleetLimit,
    F: Fn(&Req) -> K,
    K: RedisKey,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, P::Guard>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.limit.full_key(&(self.key_of)(&req));
        // The readied service goes with this request; the clone waits for the next one.
        let clone = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Admitting {
                admit: self.limit.admit_for(key),
                call: Some((svc, req)),
                release: Some(release_readied::<S>),
            },
        }
    }
}

pin_project! {
    /// The future of a [`RedisLimitService`] call: the admission, then the inner call,
    /// holding the admission (a session lease) until it ends or is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::service::ResponseFuture;
    /// fn is_send<T: Send>() {}
    /// is_send::<ResponseFuture<tower::util::BoxService<(), (), palisade::Rejected>, (), palisade::redis::SessionLease>>();
    /// ```
    pub struct ResponseFuture<S, Req, G>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, G>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, G>
    where
        S: Service<Req>,
    {
        // `release` is taken when the readied service is swapped for a fresh clone (at
        // the admission's first wait), which is then made ready in `Readying`.
        Admitting { admit: Admit<G>, call: Option<(S, Req)>, release: Option<fn(&mut S)> },
        Readying { svc: S, req: Option<Req>, guard: Option<G> },
        // The inner future first: dropped before the guard.
        Called { #[pin] fut: S::Future, guard: G },
        Done,
    }
}

impl<S, Req, G> fmt::Debug for ResponseFuture<S, Req, G>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, Req, G> Future for ResponseFuture<S, Req, G>
where
    S: Service<Req>,
    S::Error: From<Rejected>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Admitting {
                    admit,
                    call,
                    release,
                } => {
                    let admitted = match Pin::new(admit).poll(cx) {
                        Poll::Ready(admitted) => admitted,
                        Poll::Pending => {
                            if let (Some(release), Some((svc, _))) = (release.take(), call) {
                                release(svc);
                            }
                            return Poll::Pending;
                        }
                    };
                    let Some((mut svc, req)) = call.take() else {
                        unreachable!("a call is made once");
                    };
                    match admitted {
                        Ok(guard) if release.is_some() => {
                            // Admitted at the first poll: the readied service is still held.
                            let fut = svc.call(req);
                            state.set(State::Called { fut, guard });
                        }
                        Ok(guard) => state.set(State::Readying {
                            svc,
                            req: Some(req),
                            guard: Some(guard),
                        }),
                        Err(rejected) => {
                            state.set(State::Done);
                            return Poll::Ready(Err(S::Error::from(rejected)));
                        }
                    }
                }
                StateProj::Readying { svc, req, guard } => {
                    // Holding the admission (a session lease) while the inner service gets
                    // ready, as a policy holds its slot while its inner one does.
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        state.set(State::Done);
                        return Poll::Ready(Err(e));
                    }
                    let (Some(req), Some(guard)) = (req.take(), guard.take()) else {
                        unreachable!("a call is made once");
                    };
                    let fut = svc.call(req);
                    state.set(State::Called { fut, guard });
                }
                StateProj::Called { fut, .. } => {
                    let out = ready!(fut.poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Done => panic!("redis limit ResponseFuture polled after completion"),
            }
        }
    }
}
