use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::map::OwnedLease;
use super::{Keyed, PerKey, WrapsInner};
use crate::clock::Clock;
use crate::error::Rejected;

/// A tower service whose requests each run through the policy of their key; made by
/// [`KeyedLayer`](super::KeyedLayer).
///
/// The key is known only once the request is, so `poll_ready` asks the inner service alone,
/// and `call` takes a lease on the key and runs the request through the key's policy as that
/// policy's own service would (its `poll_ready`, then its `call`) inside the returned future:
/// a rate limiter with `max_wait` waits for the key's turn there, a bulkhead takes the key's
/// slot there. The inner service is cloned for each request (tower's usual way of handing a
/// readied service to a future; axum's routers and hyper's clients are cheap to clone), and
/// the clone made ready by `poll_ready` is the one the request goes to, unless the key's
/// policy makes the request wait (its bulkhead's queue, its limiter's turn). Then the readied
/// clone is dropped at once, giving back what its readiness holds, and a fresh clone is made
/// ready once the key admits the request: a call waiting for its key holds none of the
/// inner service's capacity (a global bulkhead or limit behind a per-user one), which other
/// keys' calls may need. Backpressure from the inner service still shows in `poll_ready`.
///
/// # Cancellation
///
/// Dropping the future drops the key's policy service and the call in flight (giving back
/// the slot, turn or permit as that policy documents), then the lease.
///
/// # Examples
///
/// ```
/// use palisade::Rejected;
/// use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
/// use palisade::rate_limiter::RateLimiter;
/// use std::time::Duration;
/// use tower::{Layer, Service};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(60)).build()?);
/// let per_user: Keyed<String, _> = Keyed::new(KeyedConfig::default(), limiter);
/// let mut svc = KeyedLayer::new(per_user, |req: &(String, u32)| req.0.clone())
///     .layer(tower::service_fn(|req: (String, u32)| async move { Ok::<_, Rejected>(req.1) }));
/// std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
/// assert_eq!(svc.call(("ada".into(), 1)).await?, 1);
/// std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
/// assert!(matches!(svc.call(("ada".into(), 2)).await, Err(Rejected::RateLimited(_))));
/// std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
/// assert_eq!(svc.call(("grace".into(), 3)).await?, 3);
/// # Ok(())
/// # }
/// ```
pub struct KeyedService<S, K, P, F, C> {
    inner: S,
    keyed: Keyed<K, P, C>,
    key_of: F,
}

impl<S: Clone, K, P, F: Clone, C> Clone for KeyedService<S, K, P, F, C> {
    fn clone(&self) -> Self {
        KeyedService {
            inner: self.inner.clone(),
            keyed: self.keyed.clone(),
            key_of: self.key_of.clone(),
        }
    }
}

impl<S: fmt::Debug, K, P, F, C> fmt::Debug for KeyedService<S, K, P, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, P, F, C> KeyedService<S, K, P, F, C> {
    /// Wraps `inner`, keying each request with `key_of`.
    pub fn new(inner: S, keyed: Keyed<K, P, C>, key_of: F) -> Self {
        KeyedService {
            inner,
            keyed,
            key_of,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, P, F, C, Req> Service<Req> for KeyedService<S, K, P, F, C>
where
    S: Service<Req> + Clone,
    S::Error: From<Rejected>,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    P: PerKey,
    P::Layer: Layer<S>,
    <P::Layer as Layer<S>>::Service:
        Service<Req, Response = S::Response, Error = S::Error> + WrapsInner<S>,
    F: Fn(&Req) -> K,
    C: Clock,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<<P::Layer as Layer<S>>::Service, Req, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key_of)(&req);
        // The readied service goes with this request; the clone waits for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        match self.keyed.shared.lease_owned(&key) {
            Ok(lease) => {
                let svc = lease.policy().tower_layer().layer(inner);
                ResponseFuture {
                    state: State::Readying {
                        svc,
                        req: Some(req),
                        lease: Some(lease),
                        release: Some(release_inner::<S, _>),
                    },
                }
            }
            Err(rejected) => ResponseFuture {
                state: State::Refused { rejected },
            },
        }
    }
}

/// Swaps the readied inner service inside the key's policy service for a fresh clone (see
/// [`release_readied`]).
fn release_inner<S: Clone, Svc: WrapsInner<S>>(svc: &mut Svc) {
    release_readied(svc.inner_mut());
}

/// Swaps a readied service for a fresh clone, dropping the readied one and what its
/// readiness holds (a slot, a turn, a permit of a policy further in): a call about to wait
/// (for its key's turn, for Redis's answer) must not hold the inner service's capacity
/// meanwhile, which other calls may be waiting for. The clone is made ready when the wait
/// is over.
pub(crate) fn release_readied<S: Clone>(svc: &mut S) {
    *svc = svc.clone();
}

pin_project! {
    /// The future of a [`KeyedService`] call: the key's policy service made ready, then its
    /// call; or a refusal for a new key when the map is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::service::ResponseFuture;
    /// fn is_send<T: Send>() {}
    /// is_send::<ResponseFuture<tower::util::BoxService<(), (), palisade::Rejected>, (), palisade::bulkhead::Bulkhead>>();
    /// ```
    pub struct ResponseFuture<Svc, Req, P>
    where
        Svc: Service<Req>,
    {
        #[pin]
        state: State<Svc, Req, P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Svc, Req, P>
    where
        Svc: Service<Req>,
    {
        // `req` and `lease` are taken together, when the call is made; `release` when the
        // key's policy first makes the call wait (see `release_inner`).
        Readying {
            svc: Svc,
            req: Option<Req>,
            lease: Option<OwnedLease<P>>,
            release: Option<fn(&mut Svc)>,
        },
        // The key's policy service's future first: dropped before the lease.
        Called { #[pin] fut: Svc::Future, lease: OwnedLease<P> },
        Refused { rejected: Rejected },
        Done,
    }
}

impl<Svc, Req, P> fmt::Debug for ResponseFuture<Svc, Req, P>
where
    Svc: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<Svc, Req, P> Future for ResponseFuture<Svc, Req, P>
where
    Svc: Service<Req>,
    Svc::Error: From<Rejected>,
{
    type Output = Result<Svc::Response, Svc::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Readying {
                    svc,
                    req,
                    lease,
                    release,
                } => {
                    let readiness = match svc.poll_ready(cx) {
                        Poll::Ready(readiness) => readiness,
                        Poll::Pending => {
                            // The inner service was made ready by `KeyedService::poll_ready`
                            // and stays so, so the wait is the key's own (its bulkhead's
                            // queue, its limiter's turn): the readied inner goes back now,
                            // and a fresh clone is made ready once the key admits the call.
                            if let Some(release) = release.take() {
                                release(svc);
                            }
                            return Poll::Pending;
                        }
                    };
                    if let Err(e) = readiness {
                        state.set(State::Done);
                        return Poll::Ready(Err(e));
                    }
                    let (Some(req), Some(lease)) = (req.take(), lease.take()) else {
                        unreachable!("a call is made once");
                    };
                    // The policy service hands its slot or turn to `fut`; the lease goes along.
                    let fut = svc.call(req);
                    state.set(State::Called { fut, lease });
                }
                StateProj::Called { fut, .. } => {
                    let out = ready!(fut.poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Refused { rejected } => {
                    let rejected = *rejected;
                    let budget = ready!(crate::coop::poll_proceed(cx));
                    budget.made_progress();
                    state.set(State::Done);
                    return Poll::Ready(Err(Svc::Error::from(rejected)));
                }
                StateProj::Done => panic!("keyed ResponseFuture polled after completion"),
            }
        }
    }
}
