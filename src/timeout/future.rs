//! The futures returned by [`Timeout`](super::Timeout) and [`TimeoutService`](super::TimeoutService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

use crate::error::{Elapsed, Rejected};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Shared;
use crate::telemetry::EventKind;
use crate::timer::Timer;

/// The future returned by [`TimeoutService`](super::TimeoutService): the same type as
/// [`RunFuture`], as a timeout holds nothing that differs between the two surfaces.
#[cfg(feature = "tower")]
pub type ResponseFuture<F, T> = RunFuture<F, T>;

pin_project! {
    /// The future returned by [`Timeout::run`](super::Timeout::run) and
    /// [`Timeout::run_once`](super::Timeout::run_once).
    ///
    /// It resolves to the inner future's output, or to `Err(E::from(Rejected::Timeout(..)))`
    /// once the duration has passed since its first poll, at which point the inner future is
    /// dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, timeout::Timeout};
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let timeout = Timeout::new(Timeout::builder().duration(Duration::from_secs(1)).build()?);
    /// let slow = timeout.run(|| async {
    ///     tokio::time::sleep(Duration::from_secs(10)).await;
    ///     Ok::<_, Rejected>("too late")
    /// });
    /// let out = slow.await;
    /// assert!(matches!(out, Err(Rejected::Timeout(e)) if e.duration() == Duration::from_secs(1)));
    /// assert_eq!(timeout.metrics().timed_out, 1);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RunFuture<F, T>
    where
        T: Timer,
    {
        #[pin]
        state: State<F, T::Sleep>,
        timer: T,
        duration: Duration,
        shared: Arc<Shared>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S> {
        Running {
            #[pin]
            inner: F,
            // Created at the first poll, so the clock starts when the call does.
            #[pin]
            sleep: Option<S>,
        },
        Done,
    }
}

impl<F, T: Timer> RunFuture<F, T> {
    pub(super) fn new(inner: F, timer: T, duration: Duration, shared: Arc<Shared>) -> Self {
        RunFuture {
            state: State::Running { inner, sleep: None },
            timer,
            duration,
            shared,
        }
    }
}

impl<F, T, R, E> Future for RunFuture<F, T>
where
    F: Future<Output = Result<R, E>>,
    T: Timer,
    E: From<Rejected>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let StateProj::Running { inner, mut sleep } = this.state.as_mut().project() else {
            panic!("palisade::timeout::RunFuture polled after completion");
        };
        // The inner future goes first, so a result that is ready at the deadline wins.
        if let Poll::Ready(out) = inner.poll(cx) {
            this.state.set(State::Done);
            return Poll::Ready(out);
        }
        if sleep.is_none() {
            sleep.set(Some(this.timer.sleep(*this.duration)));
        }
        if let Some(sleep) = sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        // Dropping the inner future here cancels the work now, not when the caller gets around
        // to dropping this future.
        this.state.set(State::Done);
        let after = *this.duration;
        this.shared.timed_out.fetch_add(1, Ordering::Relaxed);
        let telemetry = &this.shared.telemetry;
        telemetry.emit(|| EventKind::TimedOut { after });
        let elapsed = Elapsed::new(telemetry.name(), after);
        Poll::Ready(Err(E::from(Rejected::Timeout(elapsed))))
    }
}

impl<F, T: Timer> std::fmt::Debug for RunFuture<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFuture")
            .field("policy", &self.shared.telemetry.name())
            .field("duration", &self.duration)
            .field("done", &matches!(self.state, State::Done))
            .finish_non_exhaustive()
    }
}
