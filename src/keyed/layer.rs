use std::fmt;

use tower::Layer;

use super::{Keyed, KeyedService};

/// Applies a [`Keyed`] map to a tower service: each request runs through the policy of the
/// key `key_of` reads from it (a client IP, a header, a host).
///
/// # Examples
///
/// ```
/// use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
/// use palisade::rate_limiter::RateLimiter;
/// use std::time::Duration;
///
/// let limiter = RateLimiter::new(RateLimiter::builder().rate(100, Duration::from_secs(1)).build()?);
/// let per_tenant: Keyed<String, _> = Keyed::new(KeyedConfig::default(), limiter);
/// // Requests here are (tenant, body) pairs; with http, read a header instead.
/// let layer = KeyedLayer::new(per_tenant, |req: &(String, u32)| req.0.clone());
/// # let _ = layer;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub struct KeyedLayer<K, P, F, C> {
    keyed: Keyed<K, P, C>,
    key_of: F,
}

impl<K, P, F: Clone, C> Clone for KeyedLayer<K, P, F, C> {
    fn clone(&self) -> Self {
        KeyedLayer {
            keyed: self.keyed.clone(),
            key_of: self.key_of.clone(),
        }
    }
}

impl<K, P, F, C> fmt::Debug for KeyedLayer<K, P, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLayer").finish_non_exhaustive()
    }
}

impl<K, P, F, C> KeyedLayer<K, P, F, C> {
    /// A layer whose services share `keyed`'s map and key each request with `key_of`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let sessions: Keyed<u64, _> = Keyed::new(KeyedConfig::default(), Bulkhead::new(Bulkhead::builder().max_concurrent(2).build()?));
    /// let layer = KeyedLayer::new(sessions, |user_and_query: &(u64, String)| user_and_query.0);
    /// # let _ = layer;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(keyed: Keyed<K, P, C>, key_of: F) -> Self {
        KeyedLayer { keyed, key_of }
    }
}

impl<K, P, C> Keyed<K, P, C> {
    /// A tower layer applying this map under the key `key_of` reads from each request: the
    /// same as [`KeyedLayer::new`], spelled like the fleet-wide limits'
    /// [`layer`](crate::redis) so that switching between them leaves the stack unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(100, Duration::from_secs(1)).build()?);
    /// let per_tenant: Keyed<String, _> = Keyed::new(KeyedConfig::default(), limiter);
    /// let layer = per_tenant.layer(|req: &(String, u32)| req.0.clone());
    /// # let _ = layer;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn layer<F>(&self, key_of: F) -> KeyedLayer<K, P, F, C> {
        KeyedLayer::new(self.clone(), key_of)
    }
}

impl<S, K, P, F: Clone, C> Layer<S> for KeyedLayer<K, P, F, C> {
    type Service = KeyedService<S, K, P, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedService::new(inner, self.keyed.clone(), self.key_of.clone())
    }
}
