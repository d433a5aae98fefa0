use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::gcra::Rate;
use crate::error::ConfigError;
use crate::telemetry::{Listener, Telemetry};
use crate::validate;

/// The name a rate limiter reports under unless given one: `"rate_limiter"`.
pub const DEFAULT_NAME: &str = "rate_limiter";
/// The longest period, and the longest `max_wait`, a config accepts: one day.
pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest burst a config accepts: 1 << 30.
pub const MAX_BURST: u32 = 1 << 30;

/// A validated rate limiter configuration. Build it with [`RateLimiterConfig::builder`].
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::RateLimiterConfig;
/// use std::time::Duration;
///
/// // 100 calls a second, up to 20 at once after a quiet spell.
/// let config = RateLimiterConfig::builder()
///     .rate(100, Duration::from_secs(1))
///     .burst(20)
///     .build()?;
/// assert_eq!(config.burst(), 20);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RateLimiterConfig {
    pub(super) count: u32,
    pub(super) period: Duration,
    pub(super) burst: u32,
    pub(super) max_wait: Duration,
    pub(super) rate: Rate,
    pub(crate) telemetry: Telemetry,
}

impl RateLimiterConfig {
    /// A builder; the rate must be set before `build`.
    pub fn builder() -> RateLimiterConfigBuilder {
        RateLimiterConfigBuilder::default()
    }

    /// Calls allowed per [`period`](Self::period).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period the [`count`](Self::count) is per.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Calls admitted at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The longest a call waits for its turn; zero for none.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The name the rate limiter reports under.
    pub fn name(&self) -> &'static str {
        self.telemetry.name()
    }
}

impl fmt::Debug for RateLimiterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterConfig")
            .field("count", &self.count)
            .field("period", &self.period)
            .field("burst", &self.burst)
            .field("max_wait", &self.max_wait)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

/// Builds a [`RateLimiterConfig`]; nothing is checked until [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::RateLimiterConfig;
///
/// let err = RateLimiterConfig::builder().build().unwrap_err();
/// assert_eq!(err.field(), "rate");
/// ```
#[derive(Clone, Default)]
pub struct RateLimiterConfigBuilder {
    rate: Option<(u32, Duration)>,
    burst: Option<u32>,
    // The default burst's ceiling when `burst` is not set (see `default_burst_at_most`).
    burst_cap: Option<u32>,
    max_wait: Duration,
    name: Option<std::borrow::Cow<'static, str>>,
    listener: Option<Arc<dyn Listener>>,
}

impl fmt::Debug for RateLimiterConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterConfigBuilder")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("max_wait", &self.max_wait)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RateLimiterConfigBuilder {
    /// `count` calls per `period` on average, spaced evenly: one token every
    /// `period / count` (rounded up to a whole nanosecond, never shorter), on top of the
    /// [`burst`](Self::burst) a quiet spell leaves (see the module docs for the exact
    /// bound). Required; `count` at least 1,
    /// `period` above zero and at most [`MAX_PERIOD`], and at most one call per nanosecond.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use std::time::Duration;
    ///
    /// let config = RateLimiterConfig::builder().rate(600, Duration::from_secs(60)).build()?;
    /// assert_eq!((config.count(), config.period()), (600, Duration::from_secs(60)));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn rate(mut self, count: u32, period: Duration) -> Self {
        self.rate = Some((count, period));
        self
    }

    /// Calls admitted at once after a quiet spell (the bucket's size), and the largest cost
    /// one call may have. Default: the rate's `count` (a whole period's calls at once), or
    /// [`MAX_BURST`] for a larger count; valid: 1 to [`MAX_BURST`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use std::time::Duration;
    ///
    /// // Smooth: ten a second, never two within 100 ms.
    /// let config = RateLimiterConfig::builder().rate(10, Duration::from_secs(1)).burst(1).build()?;
    /// assert_eq!(config.burst(), 1);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// A default burst of the rate's count, but at most `cap`, for a preset whose burst must
    /// follow a rate the user may lower: an explicit [`burst`](Self::burst) wins.
    pub(crate) fn default_burst_at_most(mut self, cap: u32) -> Self {
        self.burst_cap = Some(cap);
        self
    }

    /// The longest a call waits for its turn before it is refused. Default: zero (a call
    /// over the rate is refused at once); valid: at most [`MAX_PERIOD`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use std::time::Duration;
    ///
    /// let config = RateLimiterConfig::builder()
    ///     .rate(10, Duration::from_secs(1))
    ///     .max_wait(Duration::from_millis(250))
    ///     .build()?;
    /// assert_eq!(config.max_wait(), Duration::from_millis(250));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    crate::telemetry::telemetry_setters!();

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: `rate` missing, with a zero count,
    /// a period of zero or above [`MAX_PERIOD`], or faster than one call per nanosecond;
    /// `burst` zero or above [`MAX_BURST`]; `max_wait` above [`MAX_PERIOD`]; `name` blank.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use std::time::Duration;
    ///
    /// let err = RateLimiterConfig::builder().rate(0, Duration::from_secs(1)).build().unwrap_err();
    /// assert_eq!(err.field(), "rate");
    /// ```
    #[track_caller]
    pub fn build(self) -> Result<RateLimiterConfig, ConfigError> {
        let (count, period) = self
            .rate
            .ok_or_else(|| ConfigError::new("rate", "is required", format_args!("nothing")))?;
        if count == 0 {
            return Err(ConfigError::new(
                "rate",
                "must allow at least 1 call per period",
                format_args!("{count} per {period:?}"),
            ));
        }
        validate::duration_in("period", period, MAX_PERIOD).map_err(|_| {
            ConfigError::new(
                "rate",
                format!("needs a period above zero and at most {MAX_PERIOD:?}"),
                format_args!("{count} per {period:?}"),
            )
        })?;
        if period.as_nanos() < u128::from(count) {
            return Err(ConfigError::new(
                "rate",
                "must be at most 1 call per nanosecond",
                format_args!("{count} per {period:?}"),
            ));
        }
        let burst = self.burst.unwrap_or(
            count
                .min(self.burst_cap.unwrap_or(MAX_BURST))
                .min(MAX_BURST),
        );
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(ConfigError::new(
                "burst",
                format!("must be in 1..={MAX_BURST}"),
                burst,
            ));
        }
        if self.max_wait > MAX_PERIOD {
            return Err(ConfigError::new(
                "max_wait",
                format!("must be at most {MAX_PERIOD:?}"),
                self.max_wait,
            ));
        }
        // A period of at most a day fits a u64 of nanoseconds. The core clamps a bucket that
        // would take longer than its span to refill; refuse such a config instead, since the
        // clamp would admit faster than asked.
        let rate = Rate::new(count, period.as_nanos() as u64, burst);
        let refill_ns = (period.as_nanos().div_ceil(u128::from(count))) * u128::from(burst);
        if refill_ns > u128::from(Rate::MAX_SPAN_NS) {
            return Err(ConfigError::new(
                "burst",
                "must refill within 2^62 ns, about 146 years (burst × period / count)",
                burst,
            ));
        }
        Ok(RateLimiterConfig {
            count,
            period,
            burst,
            max_wait: self.max_wait,
            rate,
            telemetry: Telemetry::build(self.name, DEFAULT_NAME, self.listener)?,
        })
    }
}
