//! The snapshot a rate limiter reports, from [`RateLimiter::metrics`](super::RateLimiter::metrics).

/// A snapshot of a rate limiter, from [`RateLimiter::metrics`](super::RateLimiter::metrics).
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::{RateLimiter, RateLimiterMetrics};
/// use std::time::Duration;
///
/// let limiter = RateLimiter::new(RateLimiter::builder().rate(2, Duration::from_secs(60)).build()?);
/// limiter.try_acquire()?;
/// limiter.try_acquire()?;
/// assert!(limiter.try_acquire().is_err());
/// let m: RateLimiterMetrics = limiter.metrics();
/// assert_eq!((m.admitted, m.limited, m.tokens, m.burst), (2, 1, 0, 2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimiterMetrics {
    /// Calls admitted since the limiter was built (a waiting call once its turn came).
    pub admitted: u64,
    /// Calls refused since the limiter was built.
    pub limited: u64,
    /// Whole tokens in the bucket now: calls of cost 1 that would be admitted at once.
    pub tokens: u32,
    /// The bucket's size.
    pub burst: u32,
}
