//! The fallback chain as a tower layer: the inner service is the primary; alternatives are
//! steps tried in order, each with a copy of the request.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::Fallback;
use crate::classify::{AllErrors, Classifier, Outcome};
use crate::clock::{Clock, DefaultClock};

/// What every step of a tower fallback chain needs: the handle (events, cache) and the
/// classifier deciding what counts as a failure.
#[derive(Debug)]
pub struct Ctx<T, C, Cl> {
    fallback: Fallback<T, C>,
    classifier: Cl,
}

impl<T, C, Cl: Clone> Clone for Ctx<T, C, Cl> {
    fn clone(&self) -> Self {
        Ctx {
            fallback: self.fallback.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// One or more alternatives of a [`FallbackLayer`]; built by its methods, sealed.
pub trait Steps<Req, T, E, C, Cl>: Clone + sealed::Sealed {
    /// How many levels these steps are.
    const LEVELS: u8;

    /// The future running them.
    type Future: Future<Output = Result<T, E>>;

    /// Runs the steps after the levels before them (`base` of them) failed with `failed`.
    fn run(self, req: Req, failed: Result<T, E>, base: u8, ctx: &Ctx<T, C, Cl>) -> Self::Future;

    /// Sees each success of the primary service (the cache step stores it).
    fn primary_succeeded(&self, _value: &T, _ctx: &Ctx<T, C, Cl>) {}
}

mod sealed {
    pub trait Sealed {}
}

/// No alternative: the primary's result is final.
///
/// # Examples
///
/// ```
/// use palisade::fallback::layer::NoSteps;
/// use palisade::fallback::{Fallback, FallbackLayer};
///
/// let fallback: Fallback<u32> = Fallback::new(Fallback::builder().build()?);
/// // A layer with no alternative yet: the primary's result is final.
/// let layer: FallbackLayer<u32, _, _, NoSteps> = fallback.layer();
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSteps;

/// An async closure given the request and the failed result; from
/// [`FallbackLayer::or_else`].
///
/// # Examples
///
/// ```
/// use palisade::fallback::layer::{NoSteps, OrElseStep, ThenSteps};
/// use palisade::fallback::{Fallback, FallbackLayer};
/// use std::future::Ready;
///
/// type Alternative = fn(u8, Result<u8, ()>) -> Ready<Result<u8, ()>>;
/// let fallback: Fallback<u8> = Fallback::new(Fallback::builder().build()?);
/// let alternative: Alternative = |_req, _failed| std::future::ready(Ok(0));
/// let layer: FallbackLayer<u8, _, _, ThenSteps<NoSteps, OrElseStep<Alternative>>> =
///     fallback.layer().or_else(alternative);
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OrElseStep<A>(A);

/// Another service given the request; from [`FallbackLayer::or_service`].
///
/// # Examples
///
/// ```
/// use palisade::fallback::layer::{NoSteps, OrServiceStep, ThenSteps};
/// use palisade::fallback::{Fallback, FallbackLayer};
/// use tower::util::ServiceFn;
///
/// let fallback: Fallback<u8> = Fallback::new(Fallback::builder().build()?);
/// let replica = tower::service_fn(|x: u8| async move { Ok::<_, ()>(x) });
/// let layer: FallbackLayer<u8, _, _, ThenSteps<NoSteps, OrServiceStep<ServiceFn<_>>>> =
///     fallback.layer().or_service(replica);
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OrServiceStep<S>(S);

/// The primary's last success, while fresh; from [`FallbackLayer::or_cached`].
///
/// # Examples
///
/// ```
/// use palisade::fallback::layer::{NoSteps, OrCachedStep, ThenSteps};
/// use palisade::fallback::{Fallback, FallbackLayer};
///
/// let fallback: Fallback<u8> = Fallback::new(Fallback::builder().build()?);
/// let layer: FallbackLayer<u8, _, _, ThenSteps<NoSteps, OrCachedStep>> = fallback.layer().or_cached();
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct OrCachedStep;

/// A fixed value; from [`FallbackLayer::or_value`].
///
/// # Examples
///
/// ```
/// use palisade::fallback::layer::{NoSteps, OrValueStep, ThenSteps};
/// use palisade::fallback::{Fallback, FallbackLayer};
///
/// let fallback: Fallback<u8> = Fallback::new(Fallback::builder().build()?);
/// let layer: FallbackLayer<u8, _, _, ThenSteps<NoSteps, OrValueStep<u8>>> = fallback.layer().or_value(0);
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OrValueStep<V>(V);

/// Steps `A`, then steps `B` if `A` failed too.
///
/// # Examples
///
/// ```
/// use palisade::fallback::layer::{NoSteps, OrCachedStep, OrValueStep, ThenSteps};
/// use palisade::fallback::{Fallback, FallbackLayer};
///
/// let fallback: Fallback<u8> = Fallback::new(Fallback::builder().build()?);
/// // The cache first, then the fixed value.
/// let layer: FallbackLayer<u8, _, _, ThenSteps<ThenSteps<NoSteps, OrCachedStep>, OrValueStep<u8>>> =
///     fallback.layer().or_cached().or_value(0);
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ThenSteps<A, B>(A, B);

impl sealed::Sealed for NoSteps {}
impl<A> sealed::Sealed for OrElseStep<A> {}
impl<S> sealed::Sealed for OrServiceStep<S> {}
impl sealed::Sealed for OrCachedStep {}
impl<V> sealed::Sealed for OrValueStep<V> {}
impl<A, B> sealed::Sealed for ThenSteps<A, B> {}

impl<Req, T, E, C, Cl> Steps<Req, T, E, C, Cl> for NoSteps {
    const LEVELS: u8 = 0;
    type Future = Ready<Result<T, E>>;

    fn run(self, _: Req, failed: Result<T, E>, _: u8, _: &Ctx<T, C, Cl>) -> Self::Future {
        ready(failed)
    }
}

impl<Req, T, E, C, Cl, A, Fut> Steps<Req, T, E, C, Cl> for OrElseStep<A>
where
    A: FnOnce(Req, Result<T, E>) -> Fut + Clone,
    Fut: Future<Output = Result<T, E>>,
{
    const LEVELS: u8 = 1;
    type Future = Fut;

    fn run(self, req: Req, failed: Result<T, E>, base: u8, ctx: &Ctx<T, C, Cl>) -> Fut {
        ctx.fallback.report(base + 1);
        (self.0)(req, failed)
    }
}

impl<Req, T, E, C, Cl, S> Steps<Req, T, E, C, Cl> for OrServiceStep<S>
where
    S: Service<Req, Response = T, Error = E> + Clone,
{
    const LEVELS: u8 = 1;
    type Future = ServiceCall<S, Req>;

    fn run(self, req: Req, _: Result<T, E>, base: u8, ctx: &Ctx<T, C, Cl>) -> Self::Future {
        ctx.fallback.report(base + 1);
        ServiceCall {
            state: CallState::Ready {
                svc: self.0,
                req: Some(req),
            },
        }
    }
}

pin_project! {
    #[project = CallProj]
    enum CallState<S, Req>
    where
        S: Service<Req>,
    {
        Ready { svc: S, req: Option<Req> },
        Call { #[pin] fut: S::Future },
    }
}

pin_project! {
    /// A call to an alternative service: its readiness, then the call.
    #[must_use = "futures do nothing unless polled"]
    pub struct ServiceCall<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: CallState<S, Req>,
    }
}

impl<S: Service<Req>, Req> Future for ServiceCall<S, Req> {
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                CallProj::Ready { svc, req } => {
                    ready!(svc.poll_ready(cx))?;
                    let Some(req) = req.take() else {
                        panic!("fallback service call polled after completion");
                    };
                    let fut = svc.call(req);
                    state.set(CallState::Call { fut });
                }
                CallProj::Call { fut } => return fut.poll(cx),
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ServiceCall<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceCall").finish_non_exhaustive()
    }
}

impl<Req, T: Clone, E, C: Clock, Cl> Steps<Req, T, E, C, Cl> for OrCachedStep {
    const LEVELS: u8 = 1;
    type Future = Ready<Result<T, E>>;

    fn run(self, _: Req, failed: Result<T, E>, base: u8, ctx: &Ctx<T, C, Cl>) -> Self::Future {
        match ctx.fallback.cached() {
            Some(value) => {
                ctx.fallback.report(base + 1);
                ready(Ok(value))
            }
            None => ready(failed),
        }
    }

    fn primary_succeeded(&self, value: &T, ctx: &Ctx<T, C, Cl>) {
        ctx.fallback.store(value);
    }
}

impl<Req, T: Clone, E, C, Cl> Steps<Req, T, E, C, Cl> for OrValueStep<T> {
    const LEVELS: u8 = 1;
    type Future = Ready<Result<T, E>>;

    fn run(self, _: Req, _: Result<T, E>, base: u8, ctx: &Ctx<T, C, Cl>) -> Self::Future {
        ctx.fallback.report(base + 1);
        ready(Ok(self.0))
    }
}

impl<Req, T, E, C, Cl, A, B> Steps<Req, T, E, C, Cl> for ThenSteps<A, B>
where
    Req: Clone,
    A: Steps<Req, T, E, C, Cl>,
    B: Steps<Req, T, E, C, Cl>,
    Cl: Classifier<T, E> + Clone,
{
    const LEVELS: u8 = A::LEVELS + B::LEVELS;
    type Future = ThenFuture<A::Future, B, Req, T, C, Cl>;

    fn run(self, req: Req, failed: Result<T, E>, base: u8, ctx: &Ctx<T, C, Cl>) -> Self::Future {
        let ThenSteps(first, then) = self;
        ThenFuture {
            state: ThenState::First {
                fut: first.run(req.clone(), failed, base, ctx),
            },
            then: Some((then, req)),
            base: base + A::LEVELS,
            ctx: ctx.clone(),
        }
    }

    fn primary_succeeded(&self, value: &T, ctx: &Ctx<T, C, Cl>) {
        self.0.primary_succeeded(value, ctx);
        self.1.primary_succeeded(value, ctx);
    }
}

pin_project! {
    #[project = ThenProj]
    enum ThenState<F, G> {
        First { #[pin] fut: F },
        Second { #[pin] fut: G },
    }
}

pin_project! {
    /// The future of [`ThenSteps`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ThenFuture<F, B, Req, T, C, Cl>
    where
        B: Steps<Req, T, <F as TryOutput>::Err, C, Cl>,
        F: TryOutput<Ok = T>,
    {
        #[pin]
        state: ThenState<F, B::Future>,
        then: Option<(B, Req)>,
        base: u8,
        ctx: Ctx<T, C, Cl>,
    }
}

/// The `Ok` and `Err` types of a future resolving to a `Result`.
pub trait TryOutput: Future<Output = Result<Self::Ok, Self::Err>> {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;
}

impl<F, T, E> TryOutput for F
where
    F: Future<Output = Result<T, E>>,
{
    type Ok = T;
    type Err = E;
}

impl<F, B, Req, T, C, Cl> Future for ThenFuture<F, B, Req, T, C, Cl>
where
    F: TryOutput<Ok = T>,
    B: Steps<Req, T, F::Err, C, Cl>,
    Cl: Classifier<T, F::Err>,
{
    type Output = Result<T, F::Err>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ThenProj::First { fut } => {
                    let out = ready!(fut.poll(cx));
                    if this.ctx.classifier.classify(&out) != Outcome::Failure {
                        return Poll::Ready(out);
                    }
                    let Some((then, req)) = this.then.take() else {
                        panic!("fallback future polled after completion");
                    };
                    let fut = then.run(req, out, *this.base, this.ctx);
                    this.state.set(ThenState::Second { fut });
                }
                ThenProj::Second { fut } => return fut.poll(cx),
            }
        }
    }
}

impl<F, B, Req, T, C, Cl> fmt::Debug for ThenFuture<F, B, Req, T, C, Cl>
where
    F: TryOutput<Ok = T>,
    B: Steps<Req, T, F::Err, C, Cl>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThenFuture")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Applies a fallback chain to a tower service: the inner service is the primary, and the
/// alternatives added with [`or_else`](Self::or_else), [`or_service`](Self::or_service),
/// [`or_cached`](Self::or_cached) and [`or_value`](Self::or_value) are tried in that order,
/// each only if everything before it failed (every `Err` by default; see
/// [`classify`](Self::classify)). Alternatives get a copy of the request, so requests must be
/// `Clone`.
///
/// # Examples
///
/// ```
/// use palisade::fallback::{Fallback, FallbackLayer};
/// use tower::{BoxError, Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let fallback = Fallback::new(Fallback::builder().build()?);
/// let replica = tower::service_fn(|id: u32| async move { Ok::<_, BoxError>(format!("replica {id}")) });
/// let mut svc = FallbackLayer::new(fallback)
///     .or_service(replica)
///     .or_value("unknown".to_string())
///     .layer(tower::service_fn(|_: u32| async { Err::<String, BoxError>("primary down".into()) }));
/// assert_eq!(svc.ready().await?.call(7).await?, "replica 7");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FallbackLayer<T, C = DefaultClock, Cl = AllErrors, St = NoSteps> {
    ctx: Ctx<T, C, Cl>,
    steps: St,
}

impl<T, C> FallbackLayer<T, C> {
    /// A layer with no alternatives yet, falling back on every `Err`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Fallback, FallbackLayer};
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let layer = FallbackLayer::new(Fallback::new(Fallback::builder().build()?)).or_value(0_u32);
    /// let mut svc = layer.layer(tower::service_fn(|_: ()| async { Err::<u32, BoxError>("down".into()) }));
    /// assert_eq!(svc.ready().await?.call(()).await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(fallback: Fallback<T, C>) -> Self {
        FallbackLayer {
            ctx: Ctx {
                fallback,
                classifier: AllErrors,
            },
            steps: NoSteps,
        }
    }
}

impl<T, C> Fallback<T, C> {
    /// A tower layer applying this fallback (add alternatives to it); the same as
    /// [`FallbackLayer::new`] on a clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use tower::{BoxError, ServiceBuilder, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(fallback.layer().or_value("default"))
    ///     .service_fn(|_: ()| async { Err::<&str, BoxError>("down".into()) });
    /// assert_eq!(svc.ready().await?.call(()).await?, "default");
    /// # Ok(())
    /// # }
    /// ```
    pub fn layer(&self) -> FallbackLayer<T, C> {
        FallbackLayer::new(self.clone())
    }
}

impl<T, C, Cl, St> FallbackLayer<T, C, Cl, St> {
    /// Falls back on what `classifier` calls a failure, instead of on every `Err`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Outcome, fallback::Fallback};
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// // Fall back on a 5xx answered as `Ok`, not only on errors.
    /// let mut svc = fallback
    ///     .layer()
    ///     .classify(|r: &Result<u16, BoxError>| match r {
    ///         Ok(s) if *s < 500 => Outcome::Success,
    ///         _ => Outcome::Failure,
    ///     })
    ///     .or_value(200)
    ///     .layer(tower::service_fn(|_: ()| async { Ok::<u16, BoxError>(503) }));
    /// assert_eq!(svc.ready().await?.call(()).await?, 200);
    /// # Ok(())
    /// # }
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> FallbackLayer<T, C, Cl2, St> {
        FallbackLayer {
            ctx: Ctx {
                fallback: self.ctx.fallback,
                classifier,
            },
            steps: self.steps,
        }
    }

    fn then<X>(self, step: X) -> FallbackLayer<T, C, Cl, ThenSteps<St, X>> {
        FallbackLayer {
            ctx: self.ctx,
            steps: ThenSteps(self.steps, step),
        }
    }

    /// Then an async closure, given a copy of the request and the failed result.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let mut svc = fallback
    ///     .layer()
    ///     .or_else(|id: u32, _failed| async move { Ok::<_, BoxError>(format!("placeholder {id}")) })
    ///     .layer(tower::service_fn(|_: u32| async { Err::<String, BoxError>("down".into()) }));
    /// assert_eq!(svc.ready().await?.call(3).await?, "placeholder 3");
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_else<A>(
        self,
        alternative: A,
    ) -> FallbackLayer<T, C, Cl, ThenSteps<St, OrElseStep<A>>> {
        self.then(OrElseStep(alternative))
    }

    /// Then another service, given a copy of the request (a replica, a degraded endpoint).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let replica = tower::service_fn(|q: &'static str| async move { Ok::<_, BoxError>(format!("replica: {q}")) });
    /// let mut svc = fallback
    ///     .layer()
    ///     .or_service(replica)
    ///     .layer(tower::service_fn(|_: &'static str| async { Err::<String, BoxError>("down".into()) }));
    /// assert_eq!(svc.ready().await?.call("users").await?, "replica: users");
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_service<S>(
        self,
        service: S,
    ) -> FallbackLayer<T, C, Cl, ThenSteps<St, OrServiceStep<S>>> {
        self.then(OrServiceStep(service))
    }

    /// Then the primary's last success while younger than the fallback's `cache_max_age`
    /// (the primary's successes are stored as they pass).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::time::Duration;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// static DOWN: AtomicBool = AtomicBool::new(false);
    /// let fallback = Fallback::new(Fallback::builder().cache_max_age(Duration::from_secs(60)).build()?);
    /// let mut svc = fallback.layer().or_cached().layer(tower::service_fn(|_: ()| async {
    ///     if DOWN.load(Ordering::Relaxed) { Err::<u32, BoxError>("down".into()) } else { Ok(7) }
    /// }));
    /// assert_eq!(svc.ready().await?.call(()).await?, 7);
    /// DOWN.store(true, Ordering::Relaxed);
    /// assert_eq!(svc.ready().await?.call(()).await?, 7, "served from the cache");
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_cached(self) -> FallbackLayer<T, C, Cl, ThenSteps<St, OrCachedStep>> {
        self.then(OrCachedStep)
    }

    /// Then a fixed value.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let mut svc = fallback
    ///     .layer()
    ///     .or_value(Vec::<String>::new())
    ///     .layer(tower::service_fn(|_: ()| async { Err::<Vec<String>, BoxError>("down".into()) }));
    /// assert!(svc.ready().await?.call(()).await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_value(self, value: T) -> FallbackLayer<T, C, Cl, ThenSteps<St, OrValueStep<T>>> {
        self.then(OrValueStep(value))
    }
}

impl<S, T, C, Cl: Clone, St: Clone> Layer<S> for FallbackLayer<T, C, Cl, St> {
    type Service = FallbackService<S, T, C, Cl, St>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService {
            inner,
            ctx: self.ctx.clone(),
            steps: self.steps.clone(),
        }
    }
}

/// A tower service with a fallback chain; made by [`FallbackLayer`].
///
/// Readiness is the primary's: alternatives are polled for readiness only when used.
///
/// # Examples
///
/// ```
/// use palisade::fallback::{Fallback, FallbackService};
/// use tower::{BoxError, Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let fallback = Fallback::new(Fallback::builder().build()?);
/// let primary = tower::service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) });
/// let mut svc: FallbackService<_, u32> = fallback.layer().layer(primary);
/// assert_eq!(svc.ready().await?.call(1).await?, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FallbackService<S, T, C = DefaultClock, Cl = AllErrors, St = NoSteps> {
    inner: S,
    ctx: Ctx<T, C, Cl>,
    steps: St,
}

impl<S, Req, T, C, Cl, St> Service<Req> for FallbackService<S, T, C, Cl, St>
where
    S: Service<Req, Response = T>,
    Req: Clone,
    Cl: Classifier<T, S::Error> + Clone,
    St: Steps<Req, T, S::Error, C, Cl>,
{
    type Response = T;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St, Req, T, C, Cl>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let copy = req.clone();
        ResponseFuture {
            state: ResponseState::Primary {
                fut: self.inner.call(req),
            },
            rest: Some((self.steps.clone(), copy)),
            ctx: self.ctx.clone(),
        }
    }
}

pin_project! {
    #[project = ResponseProj]
    enum ResponseState<F, G> {
        Primary { #[pin] fut: F },
        Fallback { #[pin] fut: G },
    }
}

pin_project! {
    /// The response future of [`FallbackService`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let mut svc = fallback
    ///     .layer()
    ///     .or_value("default")
    ///     .layer(tower::service_fn(|_: ()| async { Err::<&str, BoxError>("down".into()) }));
    /// // The primary runs first; the alternatives only if it failed.
    /// let response = svc.ready().await?.call(());
    /// assert_eq!(response.await?, "default");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, St, Req, T, C, Cl>
    where
        F: TryOutput<Ok = T>,
        St: Steps<Req, T, <F as TryOutput>::Err, C, Cl>,
    {
        #[pin]
        state: ResponseState<F, St::Future>,
        rest: Option<(St, Req)>,
        ctx: Ctx<T, C, Cl>,
    }
}

impl<F, St, Req, T, C, Cl> Future for ResponseFuture<F, St, Req, T, C, Cl>
where
    F: TryOutput<Ok = T>,
    St: Steps<Req, T, F::Err, C, Cl>,
    Cl: Classifier<T, F::Err>,
{
    type Output = Result<T, F::Err>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ResponseProj::Primary { fut } => {
                    let out = ready!(fut.poll(cx));
                    let Some((steps, req)) = this.rest.take() else {
                        panic!("fallback response future polled after completion");
                    };
                    match (this.ctx.classifier.classify(&out), &out) {
                        (Outcome::Failure, _) => {
                            let fut = steps.run(req, out, 0, this.ctx);
                            this.state.set(ResponseState::Fallback { fut });
                        }
                        (Outcome::Success, Ok(value)) => {
                            steps.primary_succeeded(value, this.ctx);
                            return Poll::Ready(out);
                        }
                        _ => return Poll::Ready(out),
                    }
                }
                ResponseProj::Fallback { fut } => return fut.poll(cx),
            }
        }
    }
}

impl<F, St, Req, T, C, Cl> fmt::Debug for ResponseFuture<F, St, Req, T, C, Cl>
where
    F: TryOutput<Ok = T>,
    St: Steps<Req, T, F::Err, C, Cl>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
