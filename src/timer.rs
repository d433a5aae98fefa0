//! Sleeping, as the policies that wait (timeout, retry) need it.
//!
//! A [`Timer`] makes a named sleep future, so policies stay generic over the runtime and never
//! box a future. [`TokioTimer`] (feature `tokio`, the default) uses `tokio::time::sleep`; any
//! `Fn(Duration) -> impl Future<Output = ()>` is a timer too, which is how other runtimes plug
//! in.
//!
//! Without the `tokio` feature, [`DefaultTimer`] is
//! `EnableTokioFeatureOrPassATimer` (a type that exists only then), which is not a timer: code that relies on the default
//! then fails to compile with that name in the error, instead of failing at run time.

use std::future::Future;
use std::time::Duration;

/// Makes sleep futures.
///
/// # Examples
///
/// A timer from a closure (here tokio's, but any runtime's sleep fits):
///
/// ```
/// use palisade::timer::Timer;
/// use std::time::Duration;
///
/// fn assert_timer<T: Timer>(_: &T) {}
///
/// let timer = |d: Duration| tokio::time::sleep(d);
/// assert_timer(&timer);
/// ```
pub trait Timer: Send + Sync + 'static {
    /// The sleep future.
    type Sleep: Future<Output = ()>;

    /// A future that completes `duration` after it is created.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timer::Timer;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let timer = |d: Duration| tokio::time::sleep(d);
    /// let start = tokio::time::Instant::now();
    /// timer.sleep(Duration::from_millis(250)).await;
    /// assert_eq!(start.elapsed(), Duration::from_millis(250));
    /// # }
    /// ```
    fn sleep(&self, duration: Duration) -> Self::Sleep;

    /// How late a sleep may end by the timer's own granularity: a sleep of `d` ends by
    /// `d + resolution()` when the runtime is not busy. A retry's deadline counts it, so that a
    /// delay just under the time left cannot start an attempt at the deadline. Default: 1 ms,
    /// the tick of tokio's timer and of most runtimes'; a finer timer may say so.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timer::Timer;
    /// use std::time::Duration;
    ///
    /// let timer = |d: Duration| tokio::time::sleep(d);
    /// assert_eq!(timer.resolution(), Duration::from_millis(1));
    /// ```
    #[inline]
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
}

impl<F, Fut> Timer for F
where
    F: Fn(Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()>,
{
    type Sleep = Fut;

    #[inline]
    fn sleep(&self, duration: Duration) -> Fut {
        self(duration)
    }
}

/// A timer backed by `tokio::time::sleep`; follows `tokio::time::pause()`.
///
/// Its sleep futures must be polled inside a tokio runtime with the time driver enabled.
///
/// # Examples
///
/// ```
/// use palisade::timer::{Timer, TokioTimer};
/// use std::time::Duration;
///
/// #[tokio::main(flavor = "current_thread", start_paused = true)]
/// async fn main() {
///     let start = tokio::time::Instant::now();
///     TokioTimer.sleep(Duration::from_secs(60)).await;
///     assert_eq!(start.elapsed(), Duration::from_secs(60));
/// }
/// # #[cfg(not(all(feature = "tokio")))] fn main() {}
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

#[cfg(feature = "tokio")]
impl Timer for TokioTimer {
    type Sleep = tokio::time::Sleep;

    #[inline]
    fn sleep(&self, duration: Duration) -> tokio::time::Sleep {
        tokio::time::sleep(duration)
    }
}

/// The timer policies use unless given another: [`TokioTimer`] with the `tokio` feature.
#[cfg(feature = "tokio")]
pub type DefaultTimer = TokioTimer;

/// The timer policies use unless given another. Without the `tokio` feature there is none:
/// this is [`EnableTokioFeatureOrPassATimer`], which does not implement [`Timer`].
#[cfg(not(feature = "tokio"))]
pub type DefaultTimer = EnableTokioFeatureOrPassATimer;

/// Stands in for a timer when none is available, so that relying on the default fails to
/// compile with a message that says what to do: enable palisade's `tokio` feature, or pass a
/// [`Timer`] (for example a closure around your runtime's sleep) with `with_timer`.
///
/// # Examples
///
/// ```compile_fail
/// use palisade::timer::{EnableTokioFeatureOrPassATimer, Timer};
///
/// fn needs_a_timer<T: Timer>(_: T) {}
/// // Not a timer: code relying on it fails to compile, naming it.
/// needs_a_timer(EnableTokioFeatureOrPassATimer);
/// ```
#[cfg(not(feature = "tokio"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct EnableTokioFeatureOrPassATimer;
