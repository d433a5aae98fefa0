use std::time::Duration;

use crate::error::ConfigError;
use crate::validate;

/// Keys kept at once unless set: 10 000.
pub const DEFAULT_MAX_KEYS: u32 = 10_000;
/// How long a key stays at rest before it may be evicted, unless set: five minutes.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(5 * 60);
/// The most keys a config accepts: 1 << 30.
pub const MAX_KEYS: u32 = 1 << 30;
/// The longest idle time a config accepts: one day.
pub const MAX_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// How many keys a [`Keyed`](super::Keyed) policy keeps, and when it forgets one. Build it
/// with [`KeyedConfig::builder`]; the default keeps [`DEFAULT_MAX_KEYS`] keys and evicts
/// those at rest for [`DEFAULT_IDLE`]. With the `serde` feature it reads and writes as
/// `{ max_keys = 10000, idle = "5m" }` through the same builder (see
/// [`config`](crate::config)), absent keys taking the defaults.
///
/// # Examples
///
/// ```
/// use palisade::keyed::KeyedConfig;
/// use std::time::Duration;
///
/// let config = KeyedConfig::builder().max_keys(50_000).idle(Duration::from_secs(60)).build()?;
/// assert_eq!(config.max_keys(), 50_000);
/// assert_eq!(config.idle(), Duration::from_secs(60));
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedConfig {
    max_keys: u32,
    idle: Duration,
}

impl Default for KeyedConfig {
    fn default() -> Self {
        KeyedConfig {
            max_keys: DEFAULT_MAX_KEYS,
            idle: DEFAULT_IDLE,
        }
    }
}

impl KeyedConfig {
    /// A builder starting from the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{KeyedConfig, DEFAULT_MAX_KEYS};
    ///
    /// assert_eq!(KeyedConfig::builder().build()?.max_keys(), DEFAULT_MAX_KEYS);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn builder() -> KeyedConfigBuilder {
        KeyedConfigBuilder {
            config: KeyedConfig::default(),
        }
    }

    /// The most keys kept at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::KeyedConfig;
    ///
    /// assert_eq!(KeyedConfig::builder().max_keys(3).build()?.max_keys(), 3);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_keys(&self) -> u32 {
        self.max_keys
    }

    /// How long a key must be at rest before it may be evicted.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{KeyedConfig, DEFAULT_IDLE};
    ///
    /// assert_eq!(KeyedConfig::default().idle(), DEFAULT_IDLE);
    /// ```
    pub fn idle(&self) -> Duration {
        self.idle
    }
}

/// Builds a [`KeyedConfig`]; nothing is checked until [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use palisade::keyed::KeyedConfig;
///
/// let err = KeyedConfig::builder().max_keys(0).build().unwrap_err();
/// assert_eq!(err.to_string(), "max_keys must be in 1..=1073741824, got 0");
/// ```
#[derive(Debug, Clone)]
pub struct KeyedConfigBuilder {
    config: KeyedConfig,
}

impl KeyedConfigBuilder {
    /// The most keys kept at once. Default [`DEFAULT_MAX_KEYS`]; valid: 1 to [`MAX_KEYS`].
    ///
    /// When every key is in use, a call for a new key is refused with
    /// [`Rejected::TooManyKeys`](crate::Rejected::TooManyKeys).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::KeyedConfig;
    ///
    /// assert_eq!(KeyedConfig::builder().max_keys(100).build()?.max_keys(), 100);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_keys(mut self, n: u32) -> Self {
        self.config.max_keys = n;
        self
    }

    /// How long a key must be at rest (no call in flight, nothing to remember) before it may
    /// be evicted. Default [`DEFAULT_IDLE`]; valid: greater than zero, at most [`MAX_IDLE`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::KeyedConfig;
    /// use std::time::Duration;
    ///
    /// let config = KeyedConfig::builder().idle(Duration::from_secs(30)).build()?;
    /// assert_eq!(config.idle(), Duration::from_secs(30));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn idle(mut self, d: Duration) -> Self {
        self.config.idle = d;
        self
    }

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: `max_keys` zero or above
    /// [`MAX_KEYS`]; `idle` zero or above [`MAX_IDLE`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::KeyedConfig;
    /// use std::time::Duration;
    ///
    /// let err = KeyedConfig::builder().idle(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(err.field(), "idle");
    /// ```
    pub fn build(self) -> Result<KeyedConfig, ConfigError> {
        let KeyedConfig { max_keys, idle } = self.config;
        if !(1..=MAX_KEYS).contains(&max_keys) {
            return Err(ConfigError::new(
                "max_keys",
                format!("must be in 1..={MAX_KEYS}"),
                max_keys,
            ));
        }
        validate::duration_in("idle", idle, MAX_IDLE)?;
        Ok(self.config)
    }
}
