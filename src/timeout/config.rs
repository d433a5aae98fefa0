use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::telemetry::{Listener, Telemetry};
use crate::validate;

/// The duration a call gets unless configured otherwise: 30 seconds (Polly's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest timeout a config accepts: 365 days. Anything longer is almost certainly a unit
/// mistake, and would overflow some runtimes' deadline arithmetic.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The name a timeout reports under unless given one: `"timeout"`.
pub const DEFAULT_NAME: &str = "timeout";

/// A validated timeout configuration. Build it with [`TimeoutConfig::builder`].
///
/// # Examples
///
/// ```
/// use palisade::timeout::TimeoutConfig;
/// use std::time::Duration;
///
/// let config = TimeoutConfig::builder()
///     .duration(Duration::from_millis(800))
///     .name("search")
///     .build()?;
/// assert_eq!(config.duration(), Duration::from_millis(800));
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct TimeoutConfig {
    pub(super) duration: Duration,
    pub(super) telemetry: Telemetry,
}

impl TimeoutConfig {
    /// A builder with every field at its default.
    pub fn builder() -> TimeoutConfigBuilder {
        TimeoutConfigBuilder::default()
    }

    /// The time a call gets before it is cut short.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The name the policy reports under.
    pub fn name(&self) -> &'static str {
        self.telemetry.name()
    }
}

impl fmt::Debug for TimeoutConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutConfig")
            .field("duration", &self.duration)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

/// Builds a [`TimeoutConfig`]; nothing is checked until [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use palisade::timeout::TimeoutConfig;
/// use std::time::Duration;
///
/// let err = TimeoutConfig::builder().name("").build().unwrap_err();
/// assert_eq!(err.field(), "name");
/// ```
#[derive(Clone)]
pub struct TimeoutConfigBuilder {
    duration: Duration,
    name: Option<std::borrow::Cow<'static, str>>,
    listener: Option<Arc<dyn Listener>>,
}

impl Default for TimeoutConfigBuilder {
    fn default() -> Self {
        TimeoutConfigBuilder {
            duration: DEFAULT_TIMEOUT,
            name: None,
            listener: None,
        }
    }
}

impl fmt::Debug for TimeoutConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutConfigBuilder")
            .field("duration", &self.duration)
            .field("name", &self.name)
            .field("listener", &self.listener.as_ref().map(|_| "..."))
            .finish()
    }
}

impl TimeoutConfigBuilder {
    /// The time a call gets before it is cut short.
    ///
    /// Default [`DEFAULT_TIMEOUT`] (30 s); valid range: greater than zero, at most
    /// [`MAX_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::TimeoutConfig;
    /// use std::time::Duration;
    ///
    /// let config = TimeoutConfig::builder().duration(Duration::from_millis(750)).build()?;
    /// assert_eq!(config.duration(), Duration::from_millis(750));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    crate::telemetry::telemetry_setters!();

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: `duration` when zero or longer than
    /// [`MAX_TIMEOUT`], `name` when blank.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::timeout::TimeoutConfig;
    /// use std::time::Duration;
    ///
    /// let err = TimeoutConfig::builder().duration(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(err.field(), "duration");
    /// ```
    #[track_caller]
    pub fn build(self) -> Result<TimeoutConfig, ConfigError> {
        let duration = validate::duration_in("duration", self.duration, MAX_TIMEOUT)?;
        Ok(TimeoutConfig {
            duration,
            telemetry: Telemetry::build(self.name, DEFAULT_NAME, self.listener)?,
        })
    }
}
