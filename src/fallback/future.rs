//! The futures of a fallback: [`RunFuture`], from [`Fallback::run`], and [`ResponseFuture`],
//! from [`FallbackService`](super::FallbackService).
//!
//! Both drive the same chain: the primary call, then the alternatives in order, by the rules
//! in the [module docs](super#semantics). Their last type parameter is the list of
//! alternatives added so far, a type this crate builds and nobody needs to write.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::Fallback;
use super::chain::{Chain, Ctx, NoSteps, OrCached, OrElse, OrValue, Steps, Then, TryOutput};
use crate::classify::{AllErrors, Classifier};
use crate::clock::{Clock, DefaultClock};

pin_project! {
    /// A fallback chain run with closures: the primary call from [`Fallback::run`], and the
    /// alternatives added with [`or_else`](Self::or_else), [`or_cached`](Self::or_cached) and
    /// [`or_value`](Self::or_value), each tried only if everything before it failed.
    ///
    /// Add alternatives before awaiting it; awaited as is, it is just the primary call.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Fallback, future::RunFuture};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let primary: RunFuture<'_, _, u8> = fallback.run(|| async { Err::<u8, _>("down") });
    /// assert_eq!(primary.await, Err("down"));
    /// let out: Result<u8, &str> = fallback
    ///     .run(|| async { Err("primary down") })
    ///     .or_else(|_| async { Err("replica down") })
    ///     .or_value(0)
    ///     .await;
    /// assert_eq!(out, Ok(0));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Adding an alternative to a future already polled, or polling it after it completed.
    #[must_use = "futures do nothing unless polled"]
    pub struct RunFuture<'a, F, T, C = DefaultClock, Cl = AllErrors, St = NoSteps>
    where
        F: TryOutput<Ok = T>,
        St: Steps<(), T, <F as TryOutput>::Err, C, Cl>,
    {
        fallback: &'a Fallback<T, C>,
        classifier: Cl,
        #[pin]
        chain: Chain<F, St, (), St::Running>,
    }
}

impl<'a, F, T, C> RunFuture<'a, F, T, C>
where
    F: TryOutput<Ok = T>,
{
    pub(crate) fn new(fallback: &'a Fallback<T, C>, call: F) -> Self {
        RunFuture {
            fallback,
            classifier: AllErrors,
            chain: Chain::new(call, NoSteps, ()),
        }
    }
}

impl<'a, F, T, C, Cl, St> RunFuture<'a, F, T, C, Cl, St>
where
    F: TryOutput<Ok = T>,
    St: Steps<(), T, F::Err, C, Cl>,
{
    /// Adds `step` after the alternatives so far.
    fn add<L>(self, step: L) -> RunFuture<'a, F, T, C, Cl, Then<St, L>>
    where
        Then<St, L>: Steps<(), T, F::Err, C, Cl>,
    {
        let (call, steps, ()) = self.chain.into_parts();
        RunFuture {
            fallback: self.fallback,
            classifier: self.classifier,
            chain: Chain::new(call, Then(steps, step), ()),
        }
    }

    /// Falls back on what `classifier` calls a [`Failure`](crate::Outcome::Failure), instead
    /// of on every `Err`. It decides after every level (the primary and each alternative)
    /// whether the next one runs; it may be set before or after adding alternatives.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Outcome, fallback::Fallback};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// // An `Ok(503)` is a failure here; a plain `Err` is passed on as it is.
    /// let by_status = |r: &Result<u16, &str>| match r {
    ///     Ok(s) if *s >= 500 => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    ///     Err(_) => Outcome::Ignore,
    /// };
    /// let out = fallback.run(|| async { Ok(503) }).classify(by_status).or_value(200).await;
    /// assert_eq!(out, Ok(200));
    /// let out = fallback.run(|| async { Err("bad request") }).classify(by_status).or_value(200).await;
    /// assert_eq!(out, Err("bad request"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> RunFuture<'a, F, T, C, Cl2, St>
    where
        St: Steps<(), T, F::Err, C, Cl2>,
    {
        let (call, steps, ()) = self.chain.into_parts();
        RunFuture {
            fallback: self.fallback,
            classifier,
            chain: Chain::new(call, steps, ()),
        }
    }

    /// If everything before failed, calls `alternative` with the failed result and uses its
    /// result.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let out: Result<String, String> = fallback
    ///     .run(|| async { Err("primary down".to_string()) })
    ///     .or_else(|failed| async move { Ok(format!("replica ({})", failed.unwrap_err())) })
    ///     .await;
    /// assert_eq!(out.as_deref(), Ok("replica (primary down)"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_else<A, Fut>(self, alternative: A) -> RunFuture<'a, F, T, C, Cl, Then<St, OrElse<A>>>
    where
        A: FnOnce(Result<T, F::Err>) -> Fut,
        Fut: Future<Output = Result<T, F::Err>>,
        Cl: Classifier<T, F::Err>,
    {
        self.add(OrElse(alternative))
    }

    /// If everything before failed, serves the primary call's last success while it is
    /// younger than the configured max age; otherwise passes the failure on. Also stores the
    /// primary's successes as they pass.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().cache_max_age(Duration::from_secs(60)).build()?);
    /// let first: Result<u32, &str> = fallback.run(|| async { Ok(42) }).or_cached().await;
    /// let second: Result<u32, &str> = fallback.run(|| async { Err("down") }).or_cached().await;
    /// assert_eq!((first, second), (Ok(42), Ok(42)));
    /// // The default clock reads tokio's time, so a paused test can age the cache.
    /// tokio::time::advance(Duration::from_secs(61)).await;
    /// // Too old to serve: the failure is passed on.
    /// let stale: Result<u32, &str> = fallback.run(|| async { Err("down") }).or_cached().await;
    /// assert_eq!(stale, Err("down"));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn or_cached(self) -> RunFuture<'a, F, T, C, Cl, Then<St, OrCached>>
    where
        T: Clone,
        C: Clock,
        Cl: Classifier<T, F::Err>,
    {
        self.add(OrCached)
    }

    /// If everything before failed, returns `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let ok: Result<Vec<u8>, &str> = fallback.run(|| async { Ok(vec![1]) }).or_value(vec![]).await;
    /// let failed: Result<Vec<u8>, &str> = fallback.run(|| async { Err("down") }).or_value(vec![]).await;
    /// assert_eq!((ok, failed), (Ok(vec![1]), Ok(vec![])));
    /// # Ok(())
    /// # }
    /// ```
    pub fn or_value(self, value: T) -> RunFuture<'a, F, T, C, Cl, Then<St, OrValue<T>>>
    where
        Cl: Classifier<T, F::Err>,
    {
        self.add(OrValue(value))
    }
}

impl<F, T, C, Cl, St> Future for RunFuture<'_, F, T, C, Cl, St>
where
    F: TryOutput<Ok = T>,
    St: Steps<(), T, F::Err, C, Cl>,
    Cl: Classifier<T, F::Err>,
{
    type Output = Result<T, F::Err>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let ctx = Ctx {
            fallback: *this.fallback,
            classifier: &*this.classifier,
        };
        this.chain.poll_chain(cx, ctx)
    }
}

impl<F, T, C, Cl, St> fmt::Debug for RunFuture<'_, F, T, C, Cl, St>
where
    F: TryOutput<Ok = T>,
    St: Steps<(), T, F::Err, C, Cl>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunFuture")
            .field("fallback", self.fallback)
            .field("levels", &St::LEVELS)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "tower")]
pub use tower_future::ResponseFuture;

#[cfg(feature = "tower")]
mod tower_future {
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use pin_project_lite::pin_project;

    use super::super::Fallback;
    use super::super::chain::{Chain, Ctx, NoSteps, Steps, TryOutput};
    use crate::classify::{AllErrors, Classifier};
    use crate::clock::DefaultClock;

    pin_project! {
        /// The response future of [`FallbackService`](crate::fallback::FallbackService): the
        /// inner service's call, then the layer's alternatives, each given a copy of the
        /// request.
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
        ///
        /// # Panics
        ///
        /// Polled after it completed.
        #[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
        #[must_use = "futures do nothing unless polled"]
        pub struct ResponseFuture<F, Req, T, C = DefaultClock, Cl = AllErrors, St = NoSteps>
        where
            F: TryOutput<Ok = T>,
            St: Steps<Req, T, <F as TryOutput>::Err, C, Cl>,
        {
            fallback: Fallback<T, C>,
            classifier: Cl,
            #[pin]
            chain: Chain<F, St, Req, St::Running>,
        }
    }

    impl<F, Req, T, C, Cl, St> ResponseFuture<F, Req, T, C, Cl, St>
    where
        F: TryOutput<Ok = T>,
        St: Steps<Req, T, F::Err, C, Cl>,
    {
        pub(crate) fn new(
            call: F,
            req: Req,
            fallback: Fallback<T, C>,
            classifier: Cl,
            steps: St,
        ) -> Self {
            ResponseFuture {
                fallback,
                classifier,
                chain: Chain::new(call, steps, req),
            }
        }
    }

    impl<F, Req, T, C, Cl, St> Future for ResponseFuture<F, Req, T, C, Cl, St>
    where
        F: TryOutput<Ok = T>,
        St: Steps<Req, T, F::Err, C, Cl>,
        Cl: Classifier<T, F::Err>,
    {
        type Output = Result<T, F::Err>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            let ctx = Ctx {
                fallback: &*this.fallback,
                classifier: &*this.classifier,
            };
            this.chain.poll_chain(cx, ctx)
        }
    }

    impl<F, Req, T, C, Cl, St> fmt::Debug for ResponseFuture<F, Req, T, C, Cl, St>
    where
        F: TryOutput<Ok = T>,
        St: Steps<Req, T, F::Err, C, Cl>,
    {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ResponseFuture")
                .field("fallback", &self.fallback)
                .field("levels", &St::LEVELS)
                .finish_non_exhaustive()
        }
    }
}
