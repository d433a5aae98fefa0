use tower::Layer;

use super::{CircuitBreaker, CircuitBreakerService};
use crate::classify::DefaultClassifier;
use crate::clock::DefaultClock;

/// Applies a [`CircuitBreaker`] to a tower service.
///
/// # Examples
///
/// ```
/// use palisade::{Outcome, circuit_breaker::{CircuitBreaker, CircuitBreakerLayer}};
///
/// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
/// // Count 5xx responses as failures.
/// let layer = CircuitBreakerLayer::new(breaker).classify(
///     |r: &Result<u16, tower::BoxError>| match r {
///         Ok(status) if *status >= 500 => Outcome::Failure,
///         Ok(_) => Outcome::Success,
///         Err(_) => Outcome::Failure,
///     },
/// );
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClock, Cl = DefaultClassifier> {
    breaker: CircuitBreaker<C>,
    classifier: Cl,
}

impl<C> CircuitBreakerLayer<C> {
    /// A layer that guards services with `breaker`, classifying with the
    /// [`DefaultClassifier`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// let mut svc = CircuitBreakerLayer::new(breaker)
    ///     .layer(tower::service_fn(|x: u8| async move { Ok::<_, BoxError>(x) }));
    /// assert_eq!(svc.ready().await?.call(3).await?, 3);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn new(breaker: CircuitBreaker<C>) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: DefaultClassifier,
        }
    }
}

impl<C, Cl> CircuitBreakerLayer<C, Cl> {
    /// Classifies results with `classifier` instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    /// use palisade::Outcome;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).build()?);
    /// let by_status = |r: &Result<u16, BoxError>| match r {
    ///     Ok(s) if *s < 500 => Outcome::Success,
    ///     _ => Outcome::Failure,
    /// };
    /// let mut svc = breaker
    ///     .layer()
    ///     .classify(by_status)
    ///     .layer(tower::service_fn(|_: ()| async { Ok::<u16, BoxError>(502) }));
    /// assert_eq!(svc.ready().await?.call(()).await?, 502);
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> CircuitBreakerLayer<C, Cl2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }
}

impl<C> From<CircuitBreaker<C>> for CircuitBreakerLayer<C> {
    fn from(breaker: CircuitBreaker<C>) -> Self {
        CircuitBreakerLayer::new(breaker)
    }
}

impl<S, C: crate::clock::Clock, Cl: Clone> Layer<S> for CircuitBreakerLayer<C, Cl> {
    type Service = CircuitBreakerService<S, C, Cl>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}
