use tower::Layer;

use super::{ConfiguredDuration, Timeout, TimeoutService};
use crate::timer::DefaultTimer;

/// Applies a [`Timeout`] to a tower service.
///
/// # Examples
///
/// ```
/// use palisade::timeout::{Timeout, TimeoutConfig, TimeoutLayer};
/// use std::time::Duration;
///
/// let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(1)).build()?);
/// // A request may ask for less time than the default.
/// let layer = TimeoutLayer::new(timeout)
///     .per_request(|budget_ms: &u64| Some(Duration::from_millis(*budget_ms)));
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TimeoutLayer<T = DefaultTimer, D = ConfiguredDuration> {
    timeout: Timeout<T>,
    per_request: D,
}

impl<T> TimeoutLayer<T> {
    /// A layer that applies `timeout` to every request.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::{Timeout, TimeoutLayer};
    /// use std::time::Duration;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let timeout = Timeout::new(Timeout::builder().duration(Duration::from_secs(1)).build()?);
    /// let mut svc = TimeoutLayer::new(timeout).layer(tower::service_fn(|_: ()| async {
    ///     tokio::time::sleep(Duration::from_secs(5)).await;
    ///     Ok::<_, BoxError>(())
    /// }));
    /// let err = svc.ready().await?.call(()).await.unwrap_err();
    /// assert!(err.downcast_ref::<palisade::Rejected>().is_some_and(|r| r.is_timeout()));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn new(timeout: Timeout<T>) -> Self {
        TimeoutLayer {
            timeout,
            per_request: ConfiguredDuration,
        }
    }
}

impl<T, D> TimeoutLayer<T, D> {
    /// Takes each request's duration from `f`; requests for which it returns `None` get the
    /// configured duration. A request may shorten its timeout, never lengthen it: a duration
    /// above the configured one is cut to it (as tonic takes the smaller of the client's
    /// `grpc-timeout` and the server's), so a client's header cannot hold a server's call
    /// open. Zero times out at once. For endpoints that need longer, configure the longest
    /// and let `f` shorten it for the rest.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::Timeout;
    /// use std::time::Duration;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let timeout = Timeout::new(Timeout::builder().duration(Duration::from_secs(10)).build()?);
    /// // The request carries its own budget in milliseconds.
    /// let mut svc = timeout
    ///     .layer()
    ///     .per_request(|ms: &u64| Some(Duration::from_millis(*ms)))
    ///     .layer(tower::service_fn(|_: u64| async {
    ///         tokio::time::sleep(Duration::from_secs(1)).await;
    ///         Ok::<_, BoxError>(())
    ///     }));
    /// assert!(svc.ready().await?.call(100).await.is_err(), "100 ms is not enough");
    /// assert!(svc.ready().await?.call(60_000).await.is_ok(), "cut to 10 s, still enough");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn per_request<F>(self, f: F) -> TimeoutLayer<T, F> {
        TimeoutLayer {
            timeout: self.timeout,
            per_request: f,
        }
    }
}

impl<T> From<Timeout<T>> for TimeoutLayer<T> {
    fn from(timeout: Timeout<T>) -> Self {
        TimeoutLayer::new(timeout)
    }
}

impl<S, T: Clone, D: Clone> Layer<S> for TimeoutLayer<T, D> {
    type Service = TimeoutService<S, T, D>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService::new(inner, self.timeout.clone(), self.per_request.clone())
    }
}
