use tower::Layer;

use super::{RateLimiter, RateLimiterService};
use crate::clock::DefaultClock;
use crate::timer::DefaultTimer;

/// Applies a [`RateLimiter`] to a tower service.
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::{RateLimiter, RateLimiterLayer};
/// use std::time::Duration;
///
/// let limiter = RateLimiter::new(RateLimiter::builder().rate(100, Duration::from_secs(1)).build()?);
/// let layer = RateLimiterLayer::new(limiter);
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiterLayer<T = DefaultTimer, C = DefaultClock> {
    limiter: RateLimiter<T, C>,
}

impl<T, C> RateLimiterLayer<T, C> {
    /// A layer whose services share `limiter`'s bucket.
    pub fn new(limiter: RateLimiter<T, C>) -> Self {
        RateLimiterLayer { limiter }
    }
}

impl<T, C> From<RateLimiter<T, C>> for RateLimiterLayer<T, C> {
    fn from(limiter: RateLimiter<T, C>) -> Self {
        RateLimiterLayer::new(limiter)
    }
}

impl<S, T: Clone, C: Clone> Layer<S> for RateLimiterLayer<T, C> {
    type Service = RateLimiterService<S, T, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimiterService::new(inner, self.limiter.clone())
    }
}
