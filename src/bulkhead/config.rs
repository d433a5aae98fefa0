use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::telemetry::{Listener, Telemetry};
use crate::validate;

/// Calls that may wait for a slot unless set: none (fail fast).
pub const DEFAULT_MAX_QUEUE: u32 = 0;
/// The name a bulkhead reports under unless given one: `"bulkhead"`.
pub const DEFAULT_NAME: &str = "bulkhead";
/// The largest limit, and the longest queue, a config accepts: 1 << 30.
pub const MAX_LIMIT: u32 = 1 << 30;
/// The longest `max_wait` a config accepts: one day.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// A validated bulkhead configuration. Build it with [`BulkheadConfig::builder`].
///
/// # Examples
///
/// ```
/// use palisade::bulkhead::BulkheadConfig;
/// use std::time::Duration;
///
/// let config = BulkheadConfig::builder()
///     .max_concurrent(10)
///     .max_queue(20)
///     .max_wait(Duration::from_millis(250))
///     .build()?;
/// assert_eq!(config.max_concurrent(), 10);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct BulkheadConfig {
    pub(super) max_concurrent: u32,
    pub(super) max_queue: u32,
    pub(super) max_wait: Option<Duration>,
    pub(super) telemetry: Telemetry,
}

impl BulkheadConfig {
    /// A builder; `max_concurrent` must be set before `build`.
    pub fn builder() -> BulkheadConfigBuilder {
        BulkheadConfigBuilder::default()
    }

    /// Calls allowed at once.
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent
    }

    /// Calls allowed to wait for a slot.
    pub fn max_queue(&self) -> u32 {
        self.max_queue
    }

    /// The longest a call waits in the queue, if bounded.
    pub fn max_wait(&self) -> Option<Duration> {
        self.max_wait
    }

    /// The name the bulkhead reports under.
    pub fn name(&self) -> &'static str {
        self.telemetry.name()
    }
}

impl fmt::Debug for BulkheadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadConfig")
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

/// Builds a [`BulkheadConfig`]; nothing is checked until [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use palisade::bulkhead::BulkheadConfig;
///
/// let err = BulkheadConfig::builder().build().unwrap_err();
/// assert_eq!(err.to_string(), "max_concurrent is required, got nothing");
/// ```
#[derive(Clone)]
pub struct BulkheadConfigBuilder {
    max_concurrent: Option<u32>,
    max_queue: u32,
    max_wait: Option<Duration>,
    name: Option<std::borrow::Cow<'static, str>>,
    listener: Option<Arc<dyn Listener>>,
}

impl Default for BulkheadConfigBuilder {
    fn default() -> Self {
        BulkheadConfigBuilder {
            max_concurrent: None,
            max_queue: DEFAULT_MAX_QUEUE,
            max_wait: None,
            name: None,
            listener: None,
        }
    }
}

impl fmt::Debug for BulkheadConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadConfigBuilder")
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BulkheadConfigBuilder {
    /// Calls allowed at once. Required; valid: 1 to [`MAX_LIMIT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    ///
    /// let config = BulkheadConfig::builder().max_concurrent(32).build()?;
    /// assert_eq!(config.max_concurrent(), 32);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.max_concurrent = Some(n);
        self
    }

    /// Calls allowed to wait, first in first out, when every slot is taken.
    ///
    /// Default [`DEFAULT_MAX_QUEUE`] (0: a full bulkhead rejects at once); valid: 0 to
    /// [`MAX_LIMIT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    ///
    /// let config = BulkheadConfig::builder().max_concurrent(4).max_queue(100).build()?;
    /// assert_eq!(config.max_queue(), 100);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_queue(mut self, n: u32) -> Self {
        self.max_queue = n;
        self
    }

    /// The longest a call waits in the queue before it is rejected with
    /// [`FullCause::WaitTimedOut`](crate::error::FullCause::WaitTimedOut).
    ///
    /// Default: unbounded; valid: greater than zero, at most [`MAX_WAIT`]; needs a queue.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    /// use std::time::Duration;
    ///
    /// let config = BulkheadConfig::builder().max_concurrent(4).max_queue(10).max_wait(Duration::from_millis(200)).build()?;
    /// assert_eq!(config.max_wait(), Some(Duration::from_millis(200)));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = Some(d);
        self
    }

    crate::telemetry::telemetry_setters!();

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: `max_concurrent` missing, zero or
    /// above [`MAX_LIMIT`]; `max_queue` above [`MAX_LIMIT`]; `max_wait` zero, above
    /// [`MAX_WAIT`] or set without a queue; `name` blank.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::BulkheadConfig;
    ///
    /// let err = BulkheadConfig::builder().max_concurrent(0).build().unwrap_err();
    /// assert_eq!(err.field(), "max_concurrent");
    /// ```
    #[track_caller]
    pub fn build(self) -> Result<BulkheadConfig, ConfigError> {
        let max_concurrent = self.max_concurrent.ok_or_else(|| {
            ConfigError::new("max_concurrent", "is required", format_args!("nothing"))
        })?;
        if !(1..=MAX_LIMIT).contains(&max_concurrent) {
            return Err(ConfigError::new(
                "max_concurrent",
                format!("must be in 1..={MAX_LIMIT}"),
                max_concurrent,
            ));
        }
        if self.max_queue > MAX_LIMIT {
            return Err(ConfigError::new(
                "max_queue",
                format!("must be at most {MAX_LIMIT}"),
                self.max_queue,
            ));
        }
        let max_wait = match self.max_wait {
            Some(_) if self.max_queue == 0 => {
                return Err(ConfigError::new(
                    "max_wait",
                    "needs max_queue above 0 (nothing waits in a fail-fast bulkhead)",
                    self.max_wait,
                ));
            }
            Some(d) => Some(validate::duration_in("max_wait", d, MAX_WAIT)?),
            None => None,
        };
        Ok(BulkheadConfig {
            max_concurrent,
            max_queue: self.max_queue,
            max_wait,
            telemetry: Telemetry::build(self.name, DEFAULT_NAME, self.listener)?,
        })
    }
}
