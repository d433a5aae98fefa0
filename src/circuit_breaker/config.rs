use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::state::{MAX_PROBES, Timing};
use super::window::{Rule, SlowRule};
use crate::error::ConfigError;
use crate::telemetry::{Listener, Telemetry};
use crate::validate;

/// Failures in a row that trip the default model: 5.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// Failure ratio at which a window model trips unless set: 0.5.
pub const DEFAULT_FAILURE_RATIO: f64 = 0.5;
/// Calls a window needs before its ratios count, unless set: 10.
pub const DEFAULT_MINIMUM_CALLS: u32 = 10;
/// Buckets a time window is split into unless set: 10.
pub const DEFAULT_BUCKETS: u32 = 10;
/// How long the breaker stays open before it lets a probe through: 5 seconds (Polly's).
pub const DEFAULT_BREAK_DURATION: Duration = Duration::from_secs(5);
/// Factor by which the break grows on each re-open, when a maximum above the base is set: 2.
pub const DEFAULT_BREAK_GROWTH_FACTOR: f64 = 2.0;
/// Probes allowed in flight while half-open: 1.
pub const DEFAULT_PERMITTED_IN_HALF_OPEN: u32 = 1;
/// How long half-open waits for its probes before it opens again: 30 seconds.
pub const DEFAULT_MAX_WAIT_IN_HALF_OPEN: Duration = Duration::from_secs(30);
/// The name a breaker reports under unless given one: `"circuit_breaker"`.
pub const DEFAULT_NAME: &str = "circuit_breaker";

/// The longest break, half-open wait or time window a config accepts: one day.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest count window: 65 536 calls.
pub const MAX_WINDOW_SIZE: u32 = 1 << 16;
/// The most buckets a time window may have: 1000.
pub const MAX_BUCKETS: u32 = 1000;

/// What trips a closed breaker.
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreakerConfig, TripModel};
/// use std::time::Duration;
///
/// // The seeds' "5 failures within 30 s".
/// let config = CircuitBreakerConfig::builder()
///     .trip_model(TripModel::FailuresWithin {
///         failures: 5,
///         duration: Duration::from_secs(30),
///         buckets: 10,
///     })
///     .build()?;
/// # let _ = config;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum TripModel {
    /// Trips on `n` failures in a row; any success starts the count again. The cheapest
    /// model: a closed breaker neither reads the clock nor writes shared memory on success.
    ConsecutiveFailures(u32),
    /// Trips when, over the last `size` calls, at least `failure_ratio` failed, once at least
    /// `minimum_calls` calls were seen.
    CountWindow {
        /// Calls remembered, 1 to [`MAX_WINDOW_SIZE`].
        size: u32,
        /// In (0, 1].
        failure_ratio: f64,
        /// 1 to `size`.
        minimum_calls: u32,
    },
    /// Trips when, over the last `duration`, at least `failure_ratio` of the calls failed, once
    /// at least `minimum_calls` were seen. The window moves in steps of `duration / buckets`.
    TimeWindow {
        /// Up to [`MAX_DURATION`], at least one millisecond per bucket.
        duration: Duration,
        /// 1 to [`MAX_BUCKETS`].
        buckets: u32,
        /// In (0, 1].
        failure_ratio: f64,
        /// At least 1.
        minimum_calls: u32,
    },
    /// Trips on `failures` failures within the last `duration`, whatever the number of
    /// successes (Polly's and the seeds' "5 failures per 30 s").
    ///
    /// Successes cannot bring the trip nearer, so unless [`SlowCalls`] are detected (whose
    /// ratio needs every call) a closed breaker does not record them: a success reads no
    /// clock and writes no shared memory, as cheap as under the consecutive model. The
    /// window's calls in [`metrics`](super::CircuitBreaker::metrics) are then its failures.
    FailuresWithin {
        /// At least 1.
        failures: u32,
        /// Up to [`MAX_DURATION`], at least one millisecond per bucket.
        duration: Duration,
        /// 1 to [`MAX_BUCKETS`].
        buckets: u32,
    },
}

/// Calls slower than `threshold` count as slow; the breaker trips when at least `ratio` of the
/// window's calls were slow, once `minimum_calls` were seen. A slow success is slow, not a
/// failure; a slow failure is both.
///
/// Under the consecutive model, the ratio is taken over the last `minimum_calls` calls.
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::SlowCalls;
/// use std::time::Duration;
///
/// let slow = SlowCalls::new(Duration::from_secs(2), 0.5).minimum_calls(20);
/// # let _ = slow;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowCalls {
    threshold: Duration,
    ratio: f64,
    minimum_calls: u32,
}

impl SlowCalls {
    /// Calls of `threshold` or longer are slow; trip at a slow `ratio` (in (0, 1]).
    /// `minimum_calls` defaults to [`DEFAULT_MINIMUM_CALLS`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{DEFAULT_MINIMUM_CALLS, SlowCalls};
    /// use std::time::Duration;
    ///
    /// let slow = SlowCalls::new(Duration::from_secs(1), 0.8);
    /// assert_eq!(slow.calls_needed(), DEFAULT_MINIMUM_CALLS);
    /// ```
    pub const fn new(threshold: Duration, ratio: f64) -> Self {
        SlowCalls {
            threshold,
            ratio,
            minimum_calls: DEFAULT_MINIMUM_CALLS,
        }
    }

    /// Calls needed before the slow ratio counts (at least 1, at most
    /// [`MAX_WINDOW_SIZE`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::SlowCalls;
    /// use std::time::Duration;
    ///
    /// let slow = SlowCalls::new(Duration::from_secs(1), 0.8).minimum_calls(50);
    /// assert_eq!(slow.calls_needed(), 50);
    /// ```
    pub const fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// The duration from which a call is slow.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::SlowCalls;
    /// use std::time::Duration;
    ///
    /// assert_eq!(SlowCalls::new(Duration::from_millis(500), 0.5).threshold(), Duration::from_millis(500));
    /// ```
    pub const fn threshold(&self) -> Duration {
        self.threshold
    }

    /// The slow ratio that trips the breaker.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::SlowCalls;
    /// use std::time::Duration;
    ///
    /// assert_eq!(SlowCalls::new(Duration::from_millis(500), 0.25).ratio(), 0.25);
    /// ```
    pub const fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Calls needed before the slow ratio counts.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::SlowCalls;
    /// use std::time::Duration;
    ///
    /// assert_eq!(SlowCalls::new(Duration::from_secs(1), 0.5).minimum_calls(8).calls_needed(), 8);
    /// ```
    pub const fn calls_needed(&self) -> u32 {
        self.minimum_calls
    }
}

/// A validated circuit breaker configuration. Build it with [`CircuitBreakerConfig::builder`].
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreakerConfig, TripModel};
/// use std::time::Duration;
///
/// let config = CircuitBreakerConfig::builder()
///     .trip_model(TripModel::ConsecutiveFailures(3))
///     .break_duration(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(config.break_duration(), Duration::from_secs(10));
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreakerConfig {
    pub(super) model: TripModel,
    pub(super) slow: Option<SlowCalls>,
    pub(super) break_duration: Duration,
    pub(super) max_break_duration: Duration,
    pub(super) break_growth_factor: f64,
    pub(super) permitted_in_half_open: u32,
    pub(super) success_threshold: u32,
    pub(super) max_wait_in_half_open: Duration,
    pub(super) telemetry: Telemetry,
}

impl CircuitBreakerConfig {
    /// A builder with every field at its default.
    pub fn builder() -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfigBuilder::default()
    }

    /// What trips the closed breaker.
    pub fn trip_model(&self) -> TripModel {
        self.model
    }

    /// The slow-call rule, if any.
    pub fn slow_calls(&self) -> Option<SlowCalls> {
        self.slow
    }

    /// The first break duration.
    pub fn break_duration(&self) -> Duration {
        self.break_duration
    }

    /// The longest break duration after repeated re-opens.
    pub fn max_break_duration(&self) -> Duration {
        self.max_break_duration
    }

    /// How much the break grows on each re-open without a close in between (1 = fixed).
    pub fn break_growth_factor(&self) -> f64 {
        self.break_growth_factor
    }

    /// Probes admitted at once in half-open.
    pub fn permitted_in_half_open(&self) -> u32 {
        self.permitted_in_half_open
    }

    /// Successful probes that close the breaker.
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold
    }

    /// How long half-open waits for its probes.
    pub fn max_wait_in_half_open(&self) -> Duration {
        self.max_wait_in_half_open
    }

    /// The name the breaker reports under.
    pub fn name(&self) -> &'static str {
        self.telemetry.name()
    }

    pub(super) fn timing(&self) -> Timing {
        // Rounded up: the core counts whole milliseconds, and a break or wait that a rounding
        // made shorter (or zero) would end before its configured duration.
        let ms = |d: Duration| d.as_nanos().div_ceil(1_000_000) as u64;
        Timing {
            break_ms: ms(self.break_duration),
            max_break_ms: ms(self.max_break_duration),
            break_factor: self.break_growth_factor,
            half_open_wait_ms: ms(self.max_wait_in_half_open),
            permitted_probes: self.permitted_in_half_open,
            success_threshold: self.success_threshold,
        }
    }

    pub(super) fn slow_rule(&self) -> Option<SlowRule> {
        self.slow.map(|s| SlowRule {
            ratio: s.ratio,
            min_calls: s.minimum_calls,
        })
    }

    pub(super) fn rule(&self) -> Option<Rule> {
        match self.model {
            TripModel::ConsecutiveFailures(_) => None,
            TripModel::CountWindow {
                failure_ratio,
                minimum_calls,
                ..
            }
            | TripModel::TimeWindow {
                failure_ratio,
                minimum_calls,
                ..
            } => Some(Rule::Ratio {
                ratio: failure_ratio,
                min_calls: minimum_calls,
            }),
            TripModel::FailuresWithin { failures, .. } => Some(Rule::Count { failures }),
        }
    }
}

impl fmt::Debug for CircuitBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfig")
            .field("model", &self.model)
            .field("slow", &self.slow)
            .field("break_duration", &self.break_duration)
            .field("max_break_duration", &self.max_break_duration)
            .field("break_growth_factor", &self.break_growth_factor)
            .field("permitted_in_half_open", &self.permitted_in_half_open)
            .field("success_threshold", &self.success_threshold)
            .field("max_wait_in_half_open", &self.max_wait_in_half_open)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

/// Builds a [`CircuitBreakerConfig`]; nothing is checked until [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreakerConfig, TripModel};
///
/// let err = CircuitBreakerConfig::builder()
///     .trip_model(TripModel::CountWindow { size: 100, failure_ratio: 1.5, minimum_calls: 10 })
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "trip_model.failure_ratio must be in (0, 1], got 1.5");
/// ```
#[derive(Clone)]
pub struct CircuitBreakerConfigBuilder {
    model: TripModel,
    slow: Option<SlowCalls>,
    break_duration: Duration,
    max_break_duration: Option<Duration>,
    break_growth_factor: f64,
    permitted_in_half_open: u32,
    success_threshold: Option<u32>,
    max_wait_in_half_open: Duration,
    name: Option<std::borrow::Cow<'static, str>>,
    listener: Option<Arc<dyn Listener>>,
}

impl Default for CircuitBreakerConfigBuilder {
    fn default() -> Self {
        CircuitBreakerConfigBuilder {
            model: TripModel::ConsecutiveFailures(DEFAULT_CONSECUTIVE_FAILURES),
            slow: None,
            break_duration: DEFAULT_BREAK_DURATION,
            max_break_duration: None,
            break_growth_factor: DEFAULT_BREAK_GROWTH_FACTOR,
            permitted_in_half_open: DEFAULT_PERMITTED_IN_HALF_OPEN,
            success_threshold: None,
            max_wait_in_half_open: DEFAULT_MAX_WAIT_IN_HALF_OPEN,
            name: None,
            listener: None,
        }
    }
}

impl fmt::Debug for CircuitBreakerConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfigBuilder")
            .field("model", &self.model)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerConfigBuilder {
    /// What trips the closed breaker.
    ///
    /// Default: [`TripModel::ConsecutiveFailures`]`(`[`DEFAULT_CONSECUTIVE_FAILURES`]`)`. Each
    /// variant documents its valid ranges.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, TripModel};
    ///
    /// let model = TripModel::ConsecutiveFailures(3);
    /// let config = CircuitBreakerConfig::builder().trip_model(model).build()?;
    /// assert_eq!(config.trip_model(), model);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn trip_model(mut self, model: TripModel) -> Self {
        self.model = model;
        self
    }

    /// Shortcut for [`TripModel::ConsecutiveFailures`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, TripModel};
    ///
    /// let config = CircuitBreakerConfig::builder().consecutive_failures(3).build()?;
    /// assert_eq!(config.trip_model(), TripModel::ConsecutiveFailures(3));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn consecutive_failures(self, n: u32) -> Self {
        self.trip_model(TripModel::ConsecutiveFailures(n))
    }

    /// Shortcut for [`TripModel::FailuresWithin`] with [`DEFAULT_BUCKETS`] buckets.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, DEFAULT_BUCKETS, TripModel};
    /// use std::time::Duration;
    ///
    /// let config = CircuitBreakerConfig::builder().failures_within(5, Duration::from_secs(30)).build()?;
    /// let expected = TripModel::FailuresWithin { failures: 5, duration: Duration::from_secs(30), buckets: DEFAULT_BUCKETS };
    /// assert_eq!(config.trip_model(), expected);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn failures_within(self, failures: u32, duration: Duration) -> Self {
        self.trip_model(TripModel::FailuresWithin {
            failures,
            duration,
            buckets: DEFAULT_BUCKETS,
        })
    }

    /// Slow calls can trip the breaker too. Default: off.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, SlowCalls};
    /// use std::time::Duration;
    ///
    /// let slow = SlowCalls::new(Duration::from_secs(2), 0.5);
    /// let config = CircuitBreakerConfig::builder().slow_calls(slow).build()?;
    /// assert_eq!(config.slow_calls(), Some(slow));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn slow_calls(mut self, slow: SlowCalls) -> Self {
        self.slow = Some(slow);
        self
    }

    /// How long the breaker stays open before it admits a probe.
    ///
    /// Default [`DEFAULT_BREAK_DURATION`]; valid: greater than zero, at most
    /// [`MAX_DURATION`]. The breaker counts whole milliseconds: a duration with a fraction of
    /// one is rounded up, never down.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use std::time::Duration;
    ///
    /// let config = CircuitBreakerConfig::builder().break_duration(Duration::from_secs(60)).build()?;
    /// assert_eq!(config.break_duration(), Duration::from_secs(60));
    /// assert!(CircuitBreakerConfig::builder().break_duration(Duration::ZERO).build().is_err());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn break_duration(mut self, d: Duration) -> Self {
        self.break_duration = d;
        self
    }

    /// Lets the break grow on each re-open from half-open without a close in between,
    /// multiplied by [`break_growth_factor`](Self::break_growth_factor) up to `max`; a close
    /// brings it back to the base.
    ///
    /// Default: the break duration (no growth); valid: at least the break duration, at most
    /// [`MAX_DURATION`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use std::time::Duration;
    ///
    /// // 10 s, then 20 s, 40 s, ... up to 5 min while the breaker keeps re-opening.
    /// let config = CircuitBreakerConfig::builder()
    ///     .break_duration(Duration::from_secs(10))
    ///     .max_break_duration(Duration::from_secs(300))
    ///     .build()?;
    /// assert_eq!(config.max_break_duration(), Duration::from_secs(300));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_break_duration(mut self, max: Duration) -> Self {
        self.max_break_duration = Some(max);
        self
    }

    /// The factor the break grows by on each re-open.
    ///
    /// Default [`DEFAULT_BREAK_GROWTH_FACTOR`]; valid: finite, at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    ///
    /// let config = CircuitBreakerConfig::builder().break_growth_factor(1.5).build()?;
    /// assert_eq!(config.break_growth_factor(), 1.5);
    /// assert!(CircuitBreakerConfig::builder().break_growth_factor(0.5).build().is_err());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn break_growth_factor(mut self, factor: f64) -> Self {
        self.break_growth_factor = factor;
        self
    }

    /// Probes allowed in flight while half-open.
    ///
    /// Default [`DEFAULT_PERMITTED_IN_HALF_OPEN`]; valid: 1 to 63.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    ///
    /// let config = CircuitBreakerConfig::builder().permitted_in_half_open(3).build()?;
    /// assert_eq!(config.permitted_in_half_open(), 3);
    /// assert_eq!(config.success_threshold(), 3, "all of them, by default");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn permitted_in_half_open(mut self, n: u32) -> Self {
        self.permitted_in_half_open = n;
        self
    }

    /// Successful probes that close the breaker; it re-opens as soon as enough probes have
    /// failed that this many can no longer succeed.
    ///
    /// Default: all of [`permitted_in_half_open`](Self::permitted_in_half_open); valid: 1 to
    /// that number.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    ///
    /// let config = CircuitBreakerConfig::builder().permitted_in_half_open(5).success_threshold(3).build()?;
    /// assert_eq!(config.success_threshold(), 3);
    /// assert!(CircuitBreakerConfig::builder().success_threshold(2).build().is_err(), "more than the probes");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = Some(n);
        self
    }

    /// How long half-open waits for its probes to report before it opens again, so probes
    /// that hang can never leave it stuck.
    ///
    /// Default [`DEFAULT_MAX_WAIT_IN_HALF_OPEN`]; valid: greater than zero, at most
    /// [`MAX_DURATION`]; rounded up to whole milliseconds.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use std::time::Duration;
    ///
    /// let config = CircuitBreakerConfig::builder().max_wait_in_half_open(Duration::from_secs(10)).build()?;
    /// assert_eq!(config.max_wait_in_half_open(), Duration::from_secs(10));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_wait_in_half_open(mut self, d: Duration) -> Self {
        self.max_wait_in_half_open = d;
        self
    }

    crate::telemetry::telemetry_setters!();

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field (`trip_model.<field>` for the model's
    /// own fields, `slow_calls.<field>` for the slow-call rule) with the rule it broke.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreakerConfig, SlowCalls};
    /// use std::time::Duration;
    ///
    /// let err = CircuitBreakerConfig::builder()
    ///     .slow_calls(SlowCalls::new(Duration::from_secs(1), 0.0))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "slow_calls.ratio");
    /// ```
    #[track_caller]
    pub fn build(self) -> Result<CircuitBreakerConfig, ConfigError> {
        let model = validate_model(self.model).map_err(|e| e.in_section("trip_model"))?;
        let slow = match self.slow {
            Some(s) => Some(validate_slow(s).map_err(|e| e.in_section("slow_calls"))?),
            None => None,
        };
        let break_duration =
            validate::duration_in("break_duration", self.break_duration, MAX_DURATION)?;
        let max_break_duration = match self.max_break_duration {
            None => break_duration,
            Some(max) if max < break_duration => {
                return Err(ConfigError::new(
                    "max_break_duration",
                    "must be at least break_duration",
                    max,
                ));
            }
            Some(max) => validate::duration_in("max_break_duration", max, MAX_DURATION)?,
        };
        let factor = self.break_growth_factor;
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(ConfigError::new(
                "break_growth_factor",
                "must be finite and at least 1",
                factor,
            ));
        }
        let permitted = self.permitted_in_half_open;
        if !(1..=MAX_PROBES).contains(&permitted) {
            return Err(ConfigError::new(
                "permitted_in_half_open",
                format!("must be in 1..={MAX_PROBES}"),
                permitted,
            ));
        }
        let success_threshold = self.success_threshold.unwrap_or(permitted);
        if !(1..=permitted).contains(&success_threshold) {
            return Err(ConfigError::new(
                "success_threshold",
                "must be in 1..=permitted_in_half_open",
                success_threshold,
            ));
        }
        let max_wait_in_half_open = validate::duration_in(
            "max_wait_in_half_open",
            self.max_wait_in_half_open,
            MAX_DURATION,
        )?;
        Ok(CircuitBreakerConfig {
            model,
            slow,
            break_duration,
            max_break_duration,
            break_growth_factor: factor,
            permitted_in_half_open: permitted,
            success_threshold,
            max_wait_in_half_open,
            telemetry: Telemetry::build(self.name, DEFAULT_NAME, self.listener)?,
        })
    }
}

fn validate_model(model: TripModel) -> Result<TripModel, ConfigError> {
    match model {
        TripModel::ConsecutiveFailures(n) => {
            at_least_one("failures", n)?;
        }
        TripModel::CountWindow {
            size,
            failure_ratio,
            minimum_calls,
        } => {
            if !(1..=MAX_WINDOW_SIZE).contains(&size) {
                return Err(ConfigError::new(
                    "size",
                    format!("must be in 1..={MAX_WINDOW_SIZE}"),
                    size,
                ));
            }
            validate::ratio("failure_ratio", failure_ratio)?;
            if !(1..=size).contains(&minimum_calls) {
                return Err(ConfigError::new(
                    "minimum_calls",
                    "must be in 1..=size",
                    minimum_calls,
                ));
            }
        }
        TripModel::TimeWindow {
            duration,
            buckets,
            failure_ratio,
            minimum_calls,
        } => {
            validate_time_window(duration, buckets)?;
            validate::ratio("failure_ratio", failure_ratio)?;
            at_least_one("minimum_calls", minimum_calls)?;
        }
        TripModel::FailuresWithin {
            failures,
            duration,
            buckets,
        } => {
            at_least_one("failures", failures)?;
            validate_time_window(duration, buckets)?;
        }
    }
    Ok(model)
}

fn validate_time_window(duration: Duration, buckets: u32) -> Result<(), ConfigError> {
    validate::duration_in("duration", duration, MAX_DURATION)?;
    if !(1..=MAX_BUCKETS).contains(&buckets) {
        return Err(ConfigError::new(
            "buckets",
            format!("must be in 1..={MAX_BUCKETS}"),
            buckets,
        ));
    }
    if duration < Duration::from_millis(u64::from(buckets)) {
        return Err(ConfigError::new(
            "duration",
            "must give each bucket at least 1ms",
            duration,
        ));
    }
    Ok(())
}

fn validate_slow(slow: SlowCalls) -> Result<SlowCalls, ConfigError> {
    validate::duration_in("threshold", slow.threshold, MAX_DURATION)?;
    validate::ratio("ratio", slow.ratio)?;
    if !(1..=MAX_WINDOW_SIZE).contains(&slow.minimum_calls) {
        return Err(ConfigError::new(
            "minimum_calls",
            format!("must be in 1..={MAX_WINDOW_SIZE}"),
            slow.minimum_calls,
        ));
    }
    Ok(slow)
}

fn at_least_one(field: &'static str, n: u32) -> Result<(), ConfigError> {
    if n == 0 {
        return Err(ConfigError::new(field, "must be at least 1", n));
    }
    Ok(())
}
