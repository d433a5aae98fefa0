//! The futures returned by [`Retry`] and [`RetryService`](super::RetryService),
//! and the small traits their builder methods take.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

use super::{Attempts, Classified, Defaults, Next, Retry, RetryPredicate, Verdict};
use crate::clock::Clock;
use crate::timer::Timer;

/// The delay a result asks for (such as an HTTP `Retry-After`); any
/// `Fn(&Result<R, E>) -> Option<Duration>` is one.
///
/// # Examples
///
/// ```
/// use palisade::retry::future::Hint;
/// use std::time::Duration;
///
/// let from_seconds = |r: &Result<(), u64>| r.as_ref().err().map(|s| Duration::from_secs(*s));
/// assert_eq!(from_seconds.hint(&Err(3)), Some(Duration::from_secs(3)));
/// assert_eq!(from_seconds.hint(&Ok(())), None);
/// ```
pub trait Hint<R, E> {
    /// The delay `result` asks for, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::future::{Hint, NoHint};
    ///
    /// assert_eq!(Hint::<(), ()>::hint(&NoHint, &Err(())), None);
    /// ```
    fn hint(&self, result: &Result<R, E>) -> Option<Duration>;
}

impl<R, E, F> Hint<R, E> for F
where
    F: Fn(&Result<R, E>) -> Option<Duration>,
{
    #[inline]
    fn hint(&self, result: &Result<R, E>) -> Option<Duration> {
        self(result)
    }
}

/// No hints: the backoff decides every delay.
///
/// # Examples
///
/// ```
/// use palisade::retry::future::{Hint, NoHint};
///
/// // What `Retry::run` uses until `.hint(..)` replaces it: the backoff decides.
/// assert_eq!(Hint::<u8, &str>::hint(&NoHint, &Err("busy")), None);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHint;

impl<R, E> Hint<R, E> for NoHint {
    #[inline]
    fn hint(&self, _: &Result<R, E>) -> Option<Duration> {
        None
    }
}

/// Called before each retry with the result being retried, the number of the attempt that
/// produced it, and the delay before the next; any `Fn(&Result<R, E>, u32, Duration)` is one.
///
/// # Examples
///
/// ```
/// use palisade::retry::future::Notify;
/// use std::time::Duration;
///
/// let log = |r: &Result<(), &str>, attempt: u32, delay: Duration| {
///     println!("attempt {attempt} failed with {r:?}; next in {delay:?}");
/// };
/// log.notify(&Err("reset"), 1, Duration::from_millis(100));
/// ```
pub trait Notify<R, E> {
    /// Sees a result about to be retried.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::future::Notify;
    /// use std::cell::Cell;
    /// use std::time::Duration;
    ///
    /// let calls = Cell::new(0);
    /// let count = |_: &Result<(), ()>, _: u32, _: Duration| calls.set(calls.get() + 1);
    /// count.notify(&Err(()), 1, Duration::ZERO);
    /// assert_eq!(calls.get(), 1);
    /// ```
    fn notify(&self, result: &Result<R, E>, attempt: u32, delay: Duration);
}

impl<R, E, F> Notify<R, E> for F
where
    F: Fn(&Result<R, E>, u32, Duration),
{
    #[inline]
    fn notify(&self, result: &Result<R, E>, attempt: u32, delay: Duration) {
        self(result, attempt, delay)
    }
}

/// No callback.
///
/// # Examples
///
/// ```
/// use palisade::retry::future::{NoNotify, Notify};
/// use std::time::Duration;
///
/// // What `Retry::run` uses until `.on_retry(..)` replaces it: nothing is called.
/// Notify::<(), ()>::notify(&NoNotify, &Err(()), 1, Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotify;

impl<R, E> Notify<R, E> for NoNotify {
    #[inline]
    fn notify(&self, _: &Result<R, E>, _: u32, _: Duration) {}
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Start,
        Attempt {
            #[pin]
            fut: F,
        },
        // The sleep itself is in `Attempts`, boxed: only a retry sleeps, and a timer's sleep
        // (88 bytes for tokio's) would more than double the future every first-attempt
        // success builds and moves.
        Sleep,
    }
}

pin_project! {
    /// The future returned by [`Retry::run`](super::Retry::run): makes attempts until one is
    /// final, then resolves to its result, unchanged.
    ///
    /// Before it is first polled, [`classify`](Self::classify), [`hint`](Self::hint) and
    /// [`on_retry`](Self::on_retry) adjust it; nothing happens until it is polled.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Error, retry::Retry};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
    /// let calls = AtomicU32::new(0);
    /// let out: Result<u32, Error<&str>> = retry
    ///     .run(|| async {
    ///         match calls.fetch_add(1, Ordering::Relaxed) {
    ///             0 => Err(Error::Inner("reset")),
    ///             n => Ok(n),
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(out, Ok(1), "the second attempt succeeded");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RunFuture<'a, M, F, T, C, P, H, N>
    where
        T: Timer,
    {
        retry: &'a Retry<T, C>,
        make: M,
        predicate: P,
        hint: H,
        notify: N,
        // Before `state`: fields drop in order, and a drop that cannot unwind first leaves the
        // future's drop glue no cleanup path, which keeps it small enough to inline.
        attempts: Attempts<T::Sleep>,
        #[pin]
        state: State<F>,
    }
}

impl<'a, M, F, T: Timer, C> RunFuture<'a, M, F, T, C, Defaults, NoHint, NoNotify> {
    pub(super) fn new(retry: &'a Retry<T, C>, make: M) -> Self {
        RunFuture {
            retry,
            make,
            predicate: Defaults,
            hint: NoHint,
            notify: NoNotify,
            attempts: Attempts::new(),
            state: State::Start,
        }
    }
}

impl<'a, M, F, T: Timer, C, P, H, N> RunFuture<'a, M, F, T, C, P, H, N> {
    /// Retries what `classifier` calls a [`Failure`](crate::Outcome::Failure), and nothing
    /// else, instead of the default rules.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Error, Outcome, retry::Retry};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
    /// let attempts = AtomicU32::new(0);
    /// // A 404 is final: retrying will not make the item appear.
    /// let out: Result<u16, Error<u16>> = retry
    ///     .run(|| async {
    ///         attempts.fetch_add(1, Ordering::Relaxed);
    ///         Err(Error::Inner(404))
    ///     })
    ///     .classify(|r: &Result<u16, Error<u16>>| match r {
    ///         Err(Error::Inner(404)) => Outcome::Success,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .await;
    /// assert_eq!(out, Err(Error::Inner(404)));
    /// assert_eq!(attempts.load(Ordering::Relaxed), 1);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn classify<Cl>(self, classifier: Cl) -> RunFuture<'a, M, F, T, C, Classified<Cl>, H, N> {
        self.with_predicate(Classified(classifier))
    }

    /// Decides what is retried with `predicate`.
    pub(crate) fn with_predicate<P2>(self, predicate: P2) -> RunFuture<'a, M, F, T, C, P2, H, N> {
        RunFuture {
            retry: self.retry,
            make: self.make,
            predicate,
            hint: self.hint,
            notify: self.notify,
            attempts: self.attempts,
            state: self.state,
        }
    }

    /// Takes the delay before a retry from the result when `hint` returns one (capped by the
    /// config's `max_hint`), instead of the backoff. A hint at least as long as the time left
    /// before the deadline ends the call with its result instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    /// use std::time::Duration;
    ///
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(Retry::builder().max_attempts(2).build()?);
    /// let start = tokio::time::Instant::now();
    /// // The server answers "busy, come back in 3 s": (status, retry-after seconds).
    /// let out: Result<u16, palisade::Error<(u16, u64)>> = retry
    ///     .run(|| async { Err(palisade::Error::Inner((503, 3))) })
    ///     .hint(|r: &Result<u16, palisade::Error<(u16, u64)>>| match r {
    ///         Err(palisade::Error::Inner((_, secs))) => Some(Duration::from_secs(*secs)),
    ///         _ => None,
    ///     })
    ///     .await;
    /// assert!(out.is_err());
    /// assert_eq!(start.elapsed(), Duration::from_secs(3));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    pub fn hint<H2>(self, hint: H2) -> RunFuture<'a, M, F, T, C, P, H2, N> {
        RunFuture {
            retry: self.retry,
            make: self.make,
            predicate: self.predicate,
            hint,
            notify: self.notify,
            attempts: self.attempts,
            state: self.state,
        }
    }

    /// Calls `notify` before each retry with the result being retried, its attempt number
    /// and the delay before the next attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Error, retry::{Backoff, Retry}};
    /// use std::sync::Mutex;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(
    ///     Retry::builder().max_attempts(3).backoff(Backoff::constant(Duration::from_millis(100))).build()?,
    /// );
    /// let seen = Mutex::new(Vec::new());
    /// let _: Result<(), Error<&str>> = retry
    ///     .run(|| async { Err(Error::Inner("reset")) })
    ///     .on_retry(|_: &Result<(), Error<&str>>, attempt: u32, delay: Duration| {
    ///         seen.lock().unwrap().push((attempt, delay));
    ///     })
    ///     .await;
    /// let every = Duration::from_millis(100);
    /// assert_eq!(*seen.lock().unwrap(), [(1, every), (2, every)]);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn on_retry<N2>(self, notify: N2) -> RunFuture<'a, M, F, T, C, P, H, N2> {
        RunFuture {
            retry: self.retry,
            make: self.make,
            predicate: self.predicate,
            hint: self.hint,
            notify,
            attempts: self.attempts,
            state: self.state,
        }
    }
}

impl<M, F, T, C, P, H, N, R, E> Future for RunFuture<'_, M, F, T, C, P, H, N>
where
    M: FnMut(u32) -> F,
    F: Future<Output = Result<R, E>>,
    T: Timer,
    C: Clock,
    P: RetryPredicate<R, E>,
    H: super::future::Hint<R, E>,
    N: Notify<R, E>,
{
    type Output = Result<R, E>;

    /// The happy path inline (a first attempt that succeeds), everything else out of line.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.as_mut().project();
        if let StateProj::Start = this.state.as_mut().project() {
            start_attempt(this.retry, this.attempts, this.make, this.state.as_mut());
        }
        if let StateProj::Attempt { fut } = this.state.as_mut().project() {
            let out = ready!(fut.poll(cx));
            let verdict = this.predicate.verdict(&out, this.retry.retry_rejections());
            if this.attempts.first_success(verdict, out.is_err()) {
                return Poll::Ready(out);
            }
            if let Some(out) = self.as_mut().settle(out, verdict) {
                return Poll::Ready(out);
            }
        }
        self.poll_retrying(cx)
    }
}

impl<M, F, T, C, P, H, N, R, E> RunFuture<'_, M, F, T, C, P, H, N>
where
    M: FnMut(u32) -> F,
    F: Future<Output = Result<R, E>>,
    T: Timer,
    C: Clock,
    P: RetryPredicate<R, E>,
    H: super::future::Hint<R, E>,
    N: Notify<R, E>,
{
    /// After an attempt: its result to return, or `None` with the next attempt under way.
    ///
    /// The finished attempt stays in place when its result is returned: moving to `Done`
    /// would run the whole state's drop glue on every call. Polling again after that is a
    /// caller's contract breach, which the finished attempt itself answers.
    #[inline(never)]
    fn settle(self: Pin<&mut Self>, out: Result<R, E>, verdict: Verdict) -> Option<Result<R, E>> {
        let mut this = self.project();
        let shared = &*this.retry;
        let hint = match verdict {
            Verdict::Retry { after: None } => this.hint.hint(&out),
            _ => None,
        };
        match shared.next(this.attempts, verdict, out.is_err(), hint, true) {
            Next::Return => Some(out),
            Next::RetryAfter(delay) => {
                this.notify.notify(&out, this.attempts.made(), delay);
                drop(out);
                if delay.is_zero() {
                    start_attempt(shared, this.attempts, this.make, this.state);
                } else {
                    this.attempts.sleep(shared.timer.sleep(delay));
                    this.state.set(State::Sleep);
                }
                None
            }
        }
    }

    #[inline(never)]
    fn poll_retrying(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, E>> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Start => unreachable!("poll starts the first attempt itself"),
                StateProj::Attempt { fut } => {
                    let out = ready!(fut.poll(cx));
                    let verdict = this.predicate.verdict(&out, this.retry.retry_rejections());
                    if let Some(out) = self.as_mut().settle(out, verdict) {
                        return Poll::Ready(out);
                    }
                }
                StateProj::Sleep => {
                    ready!(this.attempts.poll_sleep(cx));
                    start_attempt(this.retry, this.attempts, this.make, this.state.as_mut());
                }
            }
        }
    }
}

/// Counts the next attempt and makes its future.
#[inline]
fn start_attempt<M, F, T: Timer, C: Clock>(
    retry: &Retry<T, C>,
    attempts: &mut Attempts<T::Sleep>,
    make: &mut M,
    mut state: Pin<&mut State<F>>,
) where
    M: FnMut(u32) -> F,
{
    let n = retry.begin(attempts);
    state.set(State::Attempt { fut: make(n) });
}

impl<M, F, T: Timer, C, P, H, N> std::fmt::Debug for RunFuture<'_, M, F, T, C, P, H, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFuture")
            .field("policy", &self.retry.name())
            .field("attempts", &self.attempts.made())
            .finish_non_exhaustive()
    }
}
