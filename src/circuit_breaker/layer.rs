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
    pub fn new(breaker: CircuitBreaker<C>) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: DefaultClassifier,
        }
    }
}

impl<C, Cl> CircuitBreakerLayer<C, Cl> {
    /// Classifies results with `classifier` instead.
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

impl<C> CircuitBreaker<C> {
    /// A tower layer guarded by this breaker; the same as [`CircuitBreakerLayer::new`] on a
    /// clone.
    pub fn layer(&self) -> CircuitBreakerLayer<C> {
        CircuitBreakerLayer::new(self.clone())
    }
}

impl<S, C: crate::clock::Clock, Cl: Clone> Layer<S> for CircuitBreakerLayer<C, Cl> {
    type Service = CircuitBreakerService<S, C, Cl>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}
