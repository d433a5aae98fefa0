//! What a policy must offer to be kept per key: a fresh instance like itself, and whether an
//! instance is at rest (a fresh one would behave the same), so that evicting it changes
//! nothing a caller could notice.

use crate::bulkhead::Bulkhead;
use crate::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::clock::Clock;
use crate::rate_limiter::RateLimiter;

/// A policy a [`Keyed`](super::Keyed) map can keep one of per key: the
/// [`RateLimiter`], the [`Bulkhead`] and the [`CircuitBreaker`]. Sealed.
///
/// # Examples
///
/// ```
/// use palisade::keyed::PerKey;
/// use palisade::rate_limiter::RateLimiter;
///
/// fn per_key<P: PerKey>(_: &P) {}
/// per_key(&RateLimiter::new(RateLimiter::builder().rate(10, std::time::Duration::from_secs(1)).build()?));
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub trait PerKey: sealed::Sealed + Clone + Send + Sync + 'static {
    /// The policy's tower layer, which a [`KeyedService`](super::KeyedService) puts around
    /// each request with the key's instance.
    #[cfg(feature = "tower")]
    type Layer;

    /// The layer of this instance.
    #[cfg(feature = "tower")]
    #[doc(hidden)]
    fn tower_layer(&self) -> Self::Layer;
}

/// A per-key policy's tower service, whose inner service a
/// [`KeyedService`](super::KeyedService) call that must wait for its key's turn swaps for a
/// fresh clone (see its docs). Implemented by the services of the [`PerKey`] policies' layers.
#[cfg(feature = "tower")]
#[doc(hidden)]
pub trait WrapsInner<S> {
    /// The wrapped service.
    fn inner_mut(&mut self) -> &mut S;
}

pub(crate) mod sealed {
    /// The methods behind [`PerKey`](super::PerKey), out of users' reach.
    pub trait Sealed {
        /// A new instance with this one's config, timer and clock, sharing no state with it,
        /// whose events carry `key`. It reports no `Created` event: a per-key instance is part
        /// of its map.
        fn sibling(&self, key: Option<std::sync::Arc<str>>) -> Self;

        /// Whether a listener is set: only then is a key's label worth making.
        fn has_listener(&self) -> bool;

        /// Whether a fresh sibling would behave exactly as this instance does now (it is at
        /// rest); if so, makes it refuse the callers that take no lease (see
        /// [`Keyed::try_acquire`](super::super::Keyed::try_acquire)), so that it stays at
        /// rest until it is removed. Called only while eviction holds the key's leases.
        fn retire(&self, idle: std::time::Duration) -> bool;

        /// The name the instance reports under.
        fn policy_name(&self) -> &'static str;
    }
}

impl<T: Clone + Send + Sync + 'static, C: Clock + Clone> PerKey for RateLimiter<T, C> {
    #[cfg(feature = "tower")]
    type Layer = crate::rate_limiter::RateLimiterLayer<T, C>;

    #[cfg(feature = "tower")]
    fn tower_layer(&self) -> Self::Layer {
        self.layer()
    }
}

impl<T: Clone + Send + Sync + 'static, C: Clock + Clone> sealed::Sealed for RateLimiter<T, C> {
    fn sibling(&self, key: Option<std::sync::Arc<str>>) -> Self {
        RateLimiter::sibling(self, key)
    }

    fn has_listener(&self) -> bool {
        self.telemetry().has_listener()
    }

    /// A bucket full again for the idle time: its TAT at least `idle` behind the clock (an
    /// admission moves the TAT past its own time; a waiter holding a reserved turn keeps it
    /// ahead). `try_acquire` on a key takes no lease, so the bucket is this key's record of
    /// its last use, and the TAT itself is retired, in the same compare-and-swap that finds
    /// it idle.
    fn retire(&self, idle: std::time::Duration) -> bool {
        self.try_retire(idle)
    }

    fn policy_name(&self) -> &'static str {
        self.name()
    }
}

impl<T: Clone + Send + Sync + 'static> PerKey for Bulkhead<T> {
    #[cfg(feature = "tower")]
    type Layer = crate::bulkhead::BulkheadLayer<T>;

    #[cfg(feature = "tower")]
    fn tower_layer(&self) -> Self::Layer {
        self.layer()
    }
}

impl<T: Clone + Send + Sync + 'static> sealed::Sealed for Bulkhead<T> {
    fn sibling(&self, key: Option<std::sync::Arc<str>>) -> Self {
        Bulkhead::sibling(self, key)
    }

    fn has_listener(&self) -> bool {
        self.telemetry().has_listener()
    }

    /// No slot taken and no call waiting for one. Every call holds a lease, whose end the
    /// map notes, so the map alone knows how long the key has been idle.
    fn retire(&self, _idle: std::time::Duration) -> bool {
        let m = self.metrics();
        m.in_flight == 0 && m.queued == 0
    }

    fn policy_name(&self) -> &'static str {
        self.name()
    }
}

impl<C: Clock + Clone> PerKey for CircuitBreaker<C> {
    #[cfg(feature = "tower")]
    type Layer = crate::circuit_breaker::CircuitBreakerLayer<C>;

    #[cfg(feature = "tower")]
    fn tower_layer(&self) -> Self::Layer {
        self.layer()
    }
}

impl<C: Clock + Clone> sealed::Sealed for CircuitBreaker<C> {
    fn sibling(&self, key: Option<std::sync::Arc<str>>) -> Self {
        CircuitBreaker::sibling(self, key)
    }

    fn has_listener(&self) -> bool {
        self.telemetry().has_listener()
    }

    /// Closed, or open with its break over (it reads half-open) and no probe in flight,
    /// which the lease count guarantees. A breaker in its break remembers that its host is
    /// failing and stays. A closed one forgets the results in its window when it is
    /// evicted; so does one whose break is over, which a fresh sibling replaces with a
    /// closed breaker that trips again after its minimum of failures: after the idle time
    /// those results have little left to say, and no host's breaker stays for ever.
    fn retire(&self, _idle: std::time::Duration) -> bool {
        matches!(self.state(), CircuitState::Closed | CircuitState::HalfOpen)
    }

    fn policy_name(&self) -> &'static str {
        self.name()
    }
}

#[cfg(feature = "tower")]
impl<S, T, C> WrapsInner<S> for crate::rate_limiter::RateLimiterService<S, T, C> {
    fn inner_mut(&mut self) -> &mut S {
        self.get_mut()
    }
}

#[cfg(feature = "tower")]
impl<S, T> WrapsInner<S> for crate::bulkhead::BulkheadService<S, T> {
    fn inner_mut(&mut self) -> &mut S {
        self.get_mut()
    }
}

#[cfg(feature = "tower")]
impl<S, C: Clock, Cl> WrapsInner<S> for crate::circuit_breaker::CircuitBreakerService<S, C, Cl> {
    fn inner_mut(&mut self) -> &mut S {
        self.get_mut()
    }
}
