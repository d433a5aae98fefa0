/// A snapshot of a retry policy's counters, from [`Retry::metrics`](super::Retry::metrics).
///
/// Counts are since the handle was built and shared by its clones.
///
/// # Examples
///
/// ```
/// use palisade::retry::{Backoff, Retry};
/// use palisade::Error;
/// use std::time::Duration;
///
/// # #[cfg(feature = "tokio")]
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade::ConfigError> {
/// let retry = Retry::new(Retry::builder().backoff(Backoff::constant(Duration::ZERO)).build()?);
/// let mut failures = 1;
/// let _: Result<(), Error<&str>> = retry
///     .run(|| {
///         let fail = failures > 0;
///         failures -= 1;
///         async move { if fail { Err(Error::Inner("503")) } else { Ok(()) } }
///     })
///     .await;
/// let m = retry.metrics();
/// assert_eq!((m.calls, m.retries, m.attempts, m.recovered), (1, 1, 2, 1));
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "tokio"))] fn main() {}
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryMetrics {
    /// Calls made through the policy (each call's first attempt).
    pub calls: u64,
    /// Attempts started in all: `calls + retries`.
    pub attempts: u64,
    /// Retries started (a retry whose call was dropped during the backoff is not one).
    pub retries: u64,
    /// Calls that succeeded after at least one retry.
    pub recovered: u64,
    /// Calls that ended without a success after being found retryable or failed (every
    /// [`RetryGaveUp`](crate::telemetry::EventKind::RetryGaveUp) event).
    pub gave_up: u64,
    /// Retries the budget allows right now; `None` without a budget. A retry waiting out its
    /// backoff holds its token already; it comes back if the call is dropped before the retry
    /// starts.
    pub budget_left: Option<f64>,
}
