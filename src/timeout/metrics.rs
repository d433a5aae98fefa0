//! The snapshot a timeout reports, from [`Timeout::metrics`](super::Timeout::metrics).

use std::time::Duration;

/// A snapshot of a timeout policy, from [`Timeout::metrics`](super::Timeout::metrics).
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
/// let timeout = Timeout::new(Timeout::builder().duration(Duration::from_millis(10)).build()?);
/// let _ = timeout.run_once(std::future::pending::<Result<(), Rejected>>()).await;
/// assert_eq!(timeout.clone().metrics().timed_out, 1, "clones share the count");
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "tokio"))] fn main() {}
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutMetrics {
    /// Calls cut short since the handle was built, by any of its clones.
    pub timed_out: u64,
    /// The configured duration.
    pub duration: Duration,
}
