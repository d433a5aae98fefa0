//! The futures of a fallback chain: the primary call, then one wrapper per alternative.
//!
//! Each future in the chain resolves to a `Result<T, E>` and can be awaited as is; the
//! [`Chain`] methods add the next alternative on top.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::Fallback;
use crate::classify::{Classifier, Outcome};
use crate::clock::Clock;

mod sealed {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use crate::fallback::Fallback;

    /// A result and the level that produced it (0 for the primary call).
    pub(super) type Served<T, E> = (Result<T, E>, u8);

    /// A level of the chain: what it resolved to and which level produced it, plus what the
    /// next level needs.
    pub trait Level {
        type Ok;
        type Err;
        type Clock;
        type Cl;

        fn poll_level(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Served<Self::Ok, Self::Err>>;

        fn parts(&self) -> (&Fallback<Self::Ok, Self::Clock>, &Self::Cl, u8);
    }
}

use sealed::{Level, Served};

/// Adds alternatives to a fallback chain; implemented by every future of the chain.
///
/// # Examples
///
/// ```
/// use palisade::fallback::{Chain, Fallback};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade::ConfigError> {
/// let fallback = Fallback::new(Fallback::builder().build()?);
/// let out: Result<&str, &str> = fallback
///     .run(|| async { Err("primary down") })
///     .or_else(|_| async { Ok("from the replica") })
///     .or_value("default")
///     .await;
/// assert_eq!(out, Ok("from the replica"));
/// # Ok(())
/// # }
/// ```
pub trait Chain: Level + Sized {
    /// If everything before failed, calls `alternative` with the failed result and uses its
    /// result.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Chain, Fallback};
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
    fn or_else<A, Fut>(self, alternative: A) -> OrElse<Self, A, Fut>
    where
        A: FnOnce(Result<Self::Ok, Self::Err>) -> Fut,
        Fut: Future<Output = Result<Self::Ok, Self::Err>>,
        Self::Cl: Clone,
    {
        let (fallback, classifier, depth) = self.parts();
        OrElse {
            fallback: fallback.clone(),
            classifier: classifier.clone(),
            level: depth.saturating_add(1),
            alternative: Some(alternative),
            state: ElseState::First { prev: self },
        }
    }

    /// If everything before failed, serves the primary call's last success while it is
    /// younger than the configured max age; otherwise passes the failure on. Also stores the
    /// primary's successes as they pass.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Chain, Fallback};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().cache_max_age(Duration::from_secs(30)).build()?);
    /// let first: Result<u32, &str> = fallback.run(|| async { Ok(42) }).or_cached().await;
    /// let second: Result<u32, &str> = fallback.run(|| async { Err("down") }).or_cached().await;
    /// assert_eq!((first, second), (Ok(42), Ok(42)));
    /// # Ok(())
    /// # }
    /// ```
    fn or_cached(self) -> OrCached<Self>
    where
        Self::Ok: Clone,
        Self::Clock: Clock,
        Self::Cl: Clone,
    {
        let (fallback, classifier, depth) = self.parts();
        OrCached {
            fallback: fallback.clone(),
            classifier: classifier.clone(),
            level: depth.saturating_add(1),
            prev: self,
        }
    }

    /// If everything before failed, returns `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Chain, Fallback};
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
    fn or_value(self, value: Self::Ok) -> OrValue<Self>
    where
        Self::Cl: Clone,
    {
        let (fallback, classifier, depth) = self.parts();
        OrValue {
            fallback: fallback.clone(),
            classifier: classifier.clone(),
            level: depth.saturating_add(1),
            value: Some(value),
            prev: self,
        }
    }
}

impl<X: Level> Chain for X {}

pin_project! {
    /// The primary call of a fallback chain, from [`Fallback::run`](super::Fallback::run).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Fallback, Primary};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// // Awaited on its own, the primary call is just the call.
    /// let primary = fallback.run(|| async { Err::<u8, _>("down") });
    /// assert_eq!(primary.await, Err("down"));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct Primary<'a, F, T, C, Cl> {
        fallback: &'a Fallback<T, C>,
        classifier: Cl,
        #[pin]
        call: F,
    }
}

impl<'a, F, T, C, Cl> Primary<'a, F, T, C, Cl> {
    pub(crate) fn new(fallback: &'a Fallback<T, C>, call: F, classifier: Cl) -> Self {
        Primary {
            fallback,
            classifier,
            call,
        }
    }

    /// Falls back on what `classifier` calls a [`Failure`](Outcome::Failure), instead of on
    /// every `Err`. Chain it before any alternative.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Outcome, fallback::{Chain, Fallback}};
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
    pub fn classify<Cl2>(self, classifier: Cl2) -> Primary<'a, F, T, C, Cl2> {
        Primary {
            fallback: self.fallback,
            classifier,
            call: self.call,
        }
    }
}

impl<F, T, E, C, Cl> Level for Primary<'_, F, T, C, Cl>
where
    F: Future<Output = Result<T, E>>,
{
    type Ok = T;
    type Err = E;
    type Clock = C;
    type Cl = Cl;

    fn poll_level(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Served<T, E>> {
        self.project().call.poll(cx).map(|out| (out, 0))
    }

    fn parts(&self) -> (&Fallback<T, C>, &Cl, u8) {
        (self.fallback, &self.classifier, 0)
    }
}

impl<F, T, E, C, Cl> Future for Primary<'_, F, T, C, Cl>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        self.project().call.poll(cx)
    }
}

pin_project! {
    #[project = ElseProj]
    enum ElseState<P, Fut> {
        First {
            #[pin]
            prev: P,
        },
        Second {
            #[pin]
            fut: Fut,
        },
        Done,
    }
}

pin_project! {
    /// A chain with an async alternative on top; from [`Chain::or_else`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Chain, Fallback};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let primary_ok: Result<&str, &str> = fallback
    ///     .run(|| async { Ok("primary") })
    ///     .or_else(|_| async { Ok("replica") })
    ///     .await;
    /// assert_eq!(primary_ok, Ok("primary"), "alternatives only run after a failure");
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct OrElse<P, A, Fut>
    where
        P: Level,
    {
        fallback: Fallback<P::Ok, P::Clock>,
        classifier: P::Cl,
        level: u8,
        alternative: Option<A>,
        #[pin]
        state: ElseState<P, Fut>,
    }
}

impl<P, A, Fut> Level for OrElse<P, A, Fut>
where
    P: Level,
    A: FnOnce(Result<P::Ok, P::Err>) -> Fut,
    Fut: Future<Output = Result<P::Ok, P::Err>>,
    P::Cl: Classifier<P::Ok, P::Err>,
{
    type Ok = P::Ok;
    type Err = P::Err;
    type Clock = P::Clock;
    type Cl = P::Cl;

    fn poll_level(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(Result<P::Ok, P::Err>, u8)> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ElseProj::First { prev } => {
                    let (out, level) = ready!(prev.poll_level(cx));
                    if this.classifier.classify(&out) != Outcome::Failure {
                        this.state.set(ElseState::Done);
                        return Poll::Ready((out, level));
                    }
                    let Some(alternative) = this.alternative.take() else {
                        unreachable!("the alternative is only taken here, once");
                    };
                    this.fallback.report(*this.level);
                    this.state.set(ElseState::Second {
                        fut: alternative(out),
                    });
                }
                ElseProj::Second { fut } => {
                    let out = ready!(fut.poll(cx));
                    this.state.set(ElseState::Done);
                    return Poll::Ready((out, *this.level));
                }
                ElseProj::Done => panic!("fallback future polled after completion"),
            }
        }
    }

    fn parts(&self) -> (&Fallback<P::Ok, P::Clock>, &P::Cl, u8) {
        (&self.fallback, &self.classifier, self.level)
    }
}

pin_project! {
    /// A chain with the cached last success on top; from [`Chain::or_cached`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Chain, Fallback};
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().cache_max_age(Duration::from_secs(60)).build()?);
    /// let _: Result<&str, &str> = fallback.run(|| async { Ok("fresh") }).or_cached().await;
    /// tokio::time::advance(Duration::from_secs(61)).await;
    /// // Too old to serve: the failure is passed on.
    /// let stale: Result<&str, &str> = fallback.run(|| async { Err("down") }).or_cached().await;
    /// assert_eq!(stale, Err("down"));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct OrCached<P>
    where
        P: Level,
    {
        fallback: Fallback<P::Ok, P::Clock>,
        classifier: P::Cl,
        level: u8,
        #[pin]
        prev: P,
    }
}

impl<P> Level for OrCached<P>
where
    P: Level,
    P::Ok: Clone,
    P::Clock: Clock,
    P::Cl: Classifier<P::Ok, P::Err>,
{
    type Ok = P::Ok;
    type Err = P::Err;
    type Clock = P::Clock;
    type Cl = P::Cl;

    fn poll_level(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(Result<P::Ok, P::Err>, u8)> {
        let this = self.project();
        let (out, level) = ready!(this.prev.poll_level(cx));
        match (this.classifier.classify(&out), &out) {
            (Outcome::Failure, _) => match this.fallback.cached() {
                Some(value) => {
                    this.fallback.report(*this.level);
                    Poll::Ready((Ok(value), *this.level))
                }
                None => Poll::Ready((out, level)),
            },
            // Only the primary's own successes are worth remembering as "the last good answer".
            (Outcome::Success, Ok(value)) if level == 0 => {
                this.fallback.store(value);
                Poll::Ready((out, level))
            }
            _ => Poll::Ready((out, level)),
        }
    }

    fn parts(&self) -> (&Fallback<P::Ok, P::Clock>, &P::Cl, u8) {
        (&self.fallback, &self.classifier, self.level)
    }
}

pin_project! {
    /// A chain with a fixed value on top; from [`Chain::or_value`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Chain, Fallback};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let out: Result<&str, &str> = fallback
    ///     .run(|| async { Err("primary down") })
    ///     .or_else(|_| async { Err("replica down") })
    ///     .or_value("default")
    ///     .await;
    /// assert_eq!(out, Ok("default"));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct OrValue<P>
    where
        P: Level,
    {
        fallback: Fallback<P::Ok, P::Clock>,
        classifier: P::Cl,
        level: u8,
        value: Option<P::Ok>,
        #[pin]
        prev: P,
    }
}

impl<P> Level for OrValue<P>
where
    P: Level,
    P::Cl: Classifier<P::Ok, P::Err>,
{
    type Ok = P::Ok;
    type Err = P::Err;
    type Clock = P::Clock;
    type Cl = P::Cl;

    fn poll_level(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(Result<P::Ok, P::Err>, u8)> {
        let this = self.project();
        let (out, level) = ready!(this.prev.poll_level(cx));
        if this.classifier.classify(&out) != Outcome::Failure {
            return Poll::Ready((out, level));
        }
        match this.value.take() {
            Some(value) => {
                this.fallback.report(*this.level);
                Poll::Ready((Ok(value), *this.level))
            }
            None => panic!("fallback future polled after completion"),
        }
    }

    fn parts(&self) -> (&Fallback<P::Ok, P::Clock>, &P::Cl, u8) {
        (&self.fallback, &self.classifier, self.level)
    }
}

macro_rules! level_future {
    ($($ty:ident<$($p:ident),*>),*) => {$(
        impl<$($p),*> Future for $ty<$($p),*>
        where
            P: Level,
            $ty<$($p),*>: Level,
        {
            type Output = Result<<Self as Level>::Ok, <Self as Level>::Err>;

            #[inline]
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                self.poll_level(cx).map(|(out, _)| out)
            }
        }

        impl<$($p),*> std::fmt::Debug for $ty<$($p),*>
        where
            P: Level,
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty)).field("level", &self.level).finish_non_exhaustive()
            }
        }
    )*};
}

level_future!(OrElse<P, A, Fut>, OrCached<P>, OrValue<P>);

impl<F, T, C, Cl> std::fmt::Debug for Primary<'_, F, T, C, Cl> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary")
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}
