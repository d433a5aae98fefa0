use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::telemetry::{Listener, Telemetry};
use crate::validate;

/// The name a fallback reports under unless given one: `"fallback"`.
pub const DEFAULT_NAME: &str = "fallback";
/// The oldest a cached value may be configured to get: seven days.
pub const MAX_CACHE_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A validated fallback configuration. Build it with [`FallbackConfig::builder`].
///
/// # Examples
///
/// ```
/// use palisade::fallback::FallbackConfig;
/// use std::time::Duration;
///
/// let config = FallbackConfig::builder().cache_max_age(Duration::from_secs(30)).build()?;
/// assert_eq!(config.cache_max_age(), Some(Duration::from_secs(30)));
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct FallbackConfig {
    pub(super) cache_max_age: Option<Duration>,
    pub(super) telemetry: Telemetry,
}

impl FallbackConfig {
    /// A builder with every field at its default.
    pub fn builder() -> FallbackConfigBuilder {
        FallbackConfigBuilder::default()
    }

    /// How old a cached value may be and still be served, if caching is on.
    pub fn cache_max_age(&self) -> Option<Duration> {
        self.cache_max_age
    }

    /// The name the policy reports under.
    pub fn name(&self) -> &'static str {
        self.telemetry.name()
    }
}

impl fmt::Debug for FallbackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackConfig")
            .field("cache_max_age", &self.cache_max_age)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

/// Builds a [`FallbackConfig`]; nothing is checked until [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use palisade::fallback::FallbackConfig;
/// use std::time::Duration;
///
/// let err = FallbackConfig::builder().cache_max_age(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "cache_max_age");
/// ```
#[derive(Clone, Default)]
pub struct FallbackConfigBuilder {
    cache_max_age: Option<Duration>,
    name: Option<std::borrow::Cow<'static, str>>,
    listener: Option<Arc<dyn Listener>>,
}

impl fmt::Debug for FallbackConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackConfigBuilder")
            .field("cache_max_age", &self.cache_max_age)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl FallbackConfigBuilder {
    /// Remembers the primary call's last success and serves it (through
    /// [`or_cached`](super::future::RunFuture::or_cached)) while it is younger than `max_age`.
    ///
    /// Default: off; valid: greater than zero, at most [`MAX_CACHE_AGE`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::FallbackConfig;
    /// use std::time::Duration;
    ///
    /// let config = FallbackConfig::builder().cache_max_age(Duration::from_secs(300)).build()?;
    /// assert_eq!(config.cache_max_age(), Some(Duration::from_secs(300)));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn cache_max_age(mut self, max_age: Duration) -> Self {
        self.cache_max_age = Some(max_age);
        self
    }

    crate::telemetry::telemetry_setters!();

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `cache_max_age` (zero or above [`MAX_CACHE_AGE`]) or `name`
    /// (blank).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::FallbackConfig;
    ///
    /// let config = FallbackConfig::builder().build()?;
    /// assert_eq!(config.cache_max_age(), None, "no cache unless asked for");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[track_caller]
    pub fn build(self) -> Result<FallbackConfig, ConfigError> {
        let cache_max_age = match self.cache_max_age {
            Some(d) => Some(validate::duration_in("cache_max_age", d, MAX_CACHE_AGE)?),
            None => None,
        };
        Ok(FallbackConfig {
            cache_max_age,
            telemetry: Telemetry::build(self.name, DEFAULT_NAME, self.listener)?,
        })
    }
}
