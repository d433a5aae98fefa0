//! The snapshot a fallback reports, from [`Fallback::metrics`](super::Fallback::metrics).

use std::time::Duration;

/// A snapshot of a fallback, from [`Fallback::metrics`](super::Fallback::metrics).
///
/// # Examples
///
/// ```
/// use palisade::fallback::{Fallback, FallbackMetrics};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade::ConfigError> {
/// let fallback = Fallback::new(Fallback::builder().build()?);
/// let _: Result<u8, &str> = fallback.run(|| async { Err("down") }).or_value(0).await;
/// let m: FallbackMetrics = fallback.clone().metrics();
/// assert_eq!((m.used, m.cache_hits), (1, 0), "clones share the counts");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackMetrics {
    /// Levels used since the handle was built, by any of its clones and either surface: one
    /// per [`FallbackUsed`](crate::telemetry::EventKind::FallbackUsed) event.
    pub used: u64,
    /// Of those, the calls answered from the cache.
    pub cache_hits: u64,
    /// The configured cache age limit; `None` when nothing is cached.
    pub cache_max_age: Option<Duration>,
}
