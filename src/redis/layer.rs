//! The tower layer of the fleet-wide limits.

use std::fmt;

use tower::Layer;

use super::future::Admit;
use super::key::RedisKey;
use super::{RedisLimitService, RedisRateLimiter, RedisSessionLimiter, SessionLease};

/// A fleet-wide limit a [`RedisLimitLayer`] applies: [`RedisRateLimiter`] (one token per
/// request, waiting up to its `max_wait`) or [`RedisSessionLimiter`] (a lease held until
/// the response future ends). Sealed.
pub trait FleetLimit: sealed::Sealed + Clone + Send + Sync + 'static {}

pub(crate) mod sealed {
    use super::{Admit, RedisKey};

    pub trait Sealed {
        /// What holds a request's admission until its response future ends.
        type Guard: Send + 'static;
        /// The admission of one request for the full Redis key `key`.
        fn admit_for(&self, key: String) -> Admit<Self::Guard>;
        /// The full Redis key of a caller's key.
        fn full_key(&self, key: &dyn RedisKeyDyn) -> String;
    }

    /// Object-safe view of [`RedisKey`], for the sealed trait.
    pub trait RedisKeyDyn {
        fn write(&self, out: &mut String);
    }

    impl<K: RedisKey + ?Sized> RedisKeyDyn for K {
        fn write(&self, out: &mut String) {
            self.write_key(out);
        }
    }
}

use sealed::RedisKeyDyn;

impl FleetLimit for RedisRateLimiter {}

impl sealed::Sealed for RedisRateLimiter {
    type Guard = ();

    fn admit_for(&self, key: String) -> Admit<()> {
        self.admit(key, 1)
    }

    fn full_key(&self, key: &dyn RedisKeyDyn) -> String {
        self.redis_key(&DynKey(key))
    }
}

impl FleetLimit for RedisSessionLimiter {}

impl sealed::Sealed for RedisSessionLimiter {
    type Guard = SessionLease;

    fn admit_for(&self, key: String) -> Admit<SessionLease> {
        self.admit(key)
    }

    fn full_key(&self, key: &dyn RedisKeyDyn) -> String {
        self.redis_key(&DynKey(key))
    }
}

struct DynKey<'a>(&'a dyn RedisKeyDyn);

impl RedisKey for DynKey<'_> {
    fn write_key(&self, out: &mut String) {
        self.0.write(out);
    }
}

/// Applies a fleet-wide limit to a tower service: each request is admitted under the key
/// `key_of` reads from it (a client IP, a header), by one round trip to Redis, before the
/// inner service is called. Made by [`RedisRateLimiter::layer`] and
/// [`RedisSessionLimiter::layer`].
///
/// A session lease is held until the inner service's response future ends: for an HTTP
/// server, when the response head is ready, not after a streamed body (as the in-process
/// layers). Hold a [`SessionLease`] in the body yourself to count a download's whole length.
///
/// A refusal fails the request's future with the limit's rejection (converted with
/// `S::Error: From<Rejected>`); `poll_ready` is the inner service's, since whether a request
/// is admitted depends on its key. Put [`ShedLayer`](crate::http::ShedLayer) above it in a
/// server to answer refusals with 429 and `Retry-After`.
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::RateLimiterConfig;
/// use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
/// use std::time::Duration;
///
/// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
/// let limit = RateLimiterConfig::builder().rate(100, Duration::from_secs(1)).build()?;
/// let per_tenant = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
/// // Requests here are (tenant, body) pairs; with http, read a header instead.
/// let layer = per_tenant.layer(|req: &(String, u32)| req.0.clone());
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub struct RedisLimitLayer<P, F> {
    limit: P,
    key_of: F,
}

impl<P: Clone, F: Clone> Clone for RedisLimitLayer<P, F> {
    fn clone(&self) -> Self {
        RedisLimitLayer {
            limit: self.limit.clone(),
            key_of: self.key_of.clone(),
        }
    }
}

impl<P: fmt::Debug, F> fmt::Debug for RedisLimitLayer<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimitLayer")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<P: FleetLimit, F> RedisLimitLayer<P, F> {
    /// A layer applying `limit` under the key `key_of` reads from each request.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{RedisConfig, RedisLimitLayer, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let sessions = RedisSessionLimiter::new(&link, RedisSessionLimiterConfig::builder().max_per_key(2).build()?);
    /// let layer = RedisLimitLayer::new(sessions, |req: &(u64, String)| req.0);
    /// # let _ = layer;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(limit: P, key_of: F) -> Self {
        RedisLimitLayer { limit, key_of }
    }
}

impl<S, P: Clone, F: Clone> Layer<S> for RedisLimitLayer<P, F> {
    type Service = RedisLimitService<S, P, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisLimitService::new(inner, self.limit.clone(), self.key_of.clone())
    }
}

impl RedisRateLimiter {
    /// A tower layer taking one token per request for the key `key_of` reads from it.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// use std::time::Duration;
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let limit = RateLimiterConfig::builder().rate(100, Duration::from_secs(1)).build()?;
    /// let per_user = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// let layer = per_user.layer(|req: &(u64, String)| req.0);
    /// # let _ = layer;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn layer<F>(&self, key_of: F) -> RedisLimitLayer<Self, F> {
        RedisLimitLayer::new(self.clone(), key_of)
    }
}

impl RedisSessionLimiter {
    /// A tower layer holding a lease per request, for the key `key_of` reads from it, until
    /// the response future ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let sessions = RedisSessionLimiter::new(&link, RedisSessionLimiterConfig::builder().max_per_key(2).build()?);
    /// let layer = sessions.layer(|req: &(String, Vec<u8>)| req.0.clone());
    /// # let _ = layer;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn layer<F>(&self, key_of: F) -> RedisLimitLayer<Self, F> {
        RedisLimitLayer::new(self.clone(), key_of)
    }
}
