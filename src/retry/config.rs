use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::{Backoff, Jitter, MAX_DELAY};
use super::budget::RetryBudget;
use crate::error::ConfigError;
use crate::telemetry::{Listener, Telemetry};
use crate::validate;

/// Attempts in all, the first call included, unless set: 3.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The delays unless set: exponential from 100 ms, doubling, capped at 10 s, full jitter.
pub const DEFAULT_BACKOFF: Backoff =
    Backoff::exponential(Duration::from_millis(100), 2.0, Duration::from_secs(10))
        .jitter(Jitter::Full);
/// The longest delay a server may ask for (`Retry-After`) unless set: 10 s, the default
/// backoff's own cap. A server cannot make a client sleep longer between attempts than the
/// client would have chosen itself; raise it for servers whose hints you trust (a rate-limited
/// API that says "come back in a minute").
pub const DEFAULT_MAX_HINT: Duration = Duration::from_secs(10);
/// The name a retry reports under unless given one: `"retry"`.
pub const DEFAULT_NAME: &str = "retry";
/// The most attempts a config accepts: 1000.
pub const MAX_ATTEMPTS: u32 = 1000;

/// A validated retry configuration. Build it with [`RetryConfig::builder`].
///
/// # Examples
///
/// ```
/// use palisade::retry::{Backoff, Jitter, RetryConfig};
/// use std::time::Duration;
///
/// let config = RetryConfig::builder()
///     .max_attempts(4)
///     .backoff(Backoff::exponential(Duration::from_millis(200), 2.0, Duration::from_secs(5)).jitter(Jitter::Equal))
///     .deadline(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(config.max_attempts(), 4);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryConfig {
    pub(super) max_attempts: u32,
    pub(super) backoff: Backoff,
    pub(super) deadline: Option<Duration>,
    pub(super) max_hint: Duration,
    pub(super) retry_rejections: bool,
    pub(super) budget: Option<RetryBudget>,
    pub(super) seed: Option<u64>,
    pub(super) telemetry: Telemetry,
}

impl RetryConfig {
    /// A builder with every field at its default.
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder::default()
    }

    /// Attempts in all, the first call included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delays between attempts.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The total time allowed from the first attempt, if bounded.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The longest delay a server hint may impose.
    pub fn max_hint(&self) -> Duration {
        self.max_hint
    }

    /// Whether open circuits and full bulkheads below are retried (after their
    /// `retry_after`).
    pub fn retry_rejections(&self) -> bool {
        self.retry_rejections
    }

    /// The retry budget, if any.
    pub fn budget(&self) -> Option<RetryBudget> {
        self.budget
    }

    /// The jitter's seed, if one was set (otherwise each handle seeds from entropy).
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The name the policy reports under.
    pub fn name(&self) -> &'static str {
        self.telemetry.name()
    }
}

impl fmt::Debug for RetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryConfig")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("deadline", &self.deadline)
            .field("max_hint", &self.max_hint)
            .field("retry_rejections", &self.retry_rejections)
            .field("budget", &self.budget)
            .field("seed", &self.seed)
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

/// Builds a [`RetryConfig`]; nothing is checked until [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use palisade::retry::RetryConfig;
///
/// let err = RetryConfig::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.to_string(), "max_attempts must be in 1..=1000, got 0");
/// ```
#[derive(Clone)]
pub struct RetryConfigBuilder {
    max_attempts: u32,
    backoff: Backoff,
    deadline: Option<Duration>,
    max_hint: Duration,
    retry_rejections: bool,
    budget: Option<RetryBudget>,
    seed: Option<u64>,
    name: Option<std::borrow::Cow<'static, str>>,
    listener: Option<Arc<dyn Listener>>,
}

impl Default for RetryConfigBuilder {
    fn default() -> Self {
        RetryConfigBuilder {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            deadline: None,
            max_hint: DEFAULT_MAX_HINT,
            retry_rejections: false,
            budget: None,
            seed: None,
            name: None,
            listener: None,
        }
    }
}

impl fmt::Debug for RetryConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryConfigBuilder")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RetryConfigBuilder {
    /// Attempts in all, **the first call included**: 3 means one call and up to two retries.
    ///
    /// Default [`DEFAULT_MAX_ATTEMPTS`]; valid: 1 to [`MAX_ATTEMPTS`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::RetryConfig;
    ///
    /// // One call and up to four retries.
    /// let config = RetryConfig::builder().max_attempts(5).build()?;
    /// assert_eq!(config.max_attempts(), 5);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The delays between attempts. Default [`DEFAULT_BACKOFF`]; the cap must be non-zero
    /// (but for a constant delay) and at most [`MAX_DELAY`], `initial` at most the cap, the
    /// factor finite and at least 1, a proportional jitter in (0, 1].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Backoff, RetryConfig};
    /// use std::time::Duration;
    ///
    /// let backoff = Backoff::exponential(Duration::from_millis(100), 2.0, Duration::from_secs(5));
    /// let config = RetryConfig::builder().backoff(backoff).build()?;
    /// assert_eq!(config.backoff(), backoff);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The total time allowed from the start of the first attempt. A delay that would use up
    /// the time left (delay ≥ time left) is not waited: the retry gives up with
    /// [`GiveUp::Deadline`](super::GiveUp::Deadline) and returns the last result, so no
    /// attempt starts at or after the deadline.
    ///
    /// Default: none; valid: greater than zero, at most [`MAX_DELAY`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::RetryConfig;
    /// use std::time::Duration;
    ///
    /// let config = RetryConfig::builder().deadline(Duration::from_secs(3)).build()?;
    /// assert_eq!(config.deadline(), Some(Duration::from_secs(3)));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }

    /// The longest delay a server hint (such as `Retry-After`) may impose; longer hints are
    /// cut to it.
    ///
    /// Default [`DEFAULT_MAX_HINT`]; valid: greater than zero, at most [`MAX_DELAY`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::RetryConfig;
    /// use std::time::Duration;
    ///
    /// let config = RetryConfig::builder().max_hint(Duration::from_secs(60)).build()?;
    /// assert_eq!(config.max_hint(), Duration::from_secs(60));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn max_hint(mut self, d: Duration) -> Self {
        self.max_hint = d;
        self
    }

    /// Retry calls that an inner circuit breaker or bulkhead refused, waiting the
    /// rejection's `retry_after()` when it has one. Default: `false` (they are not retried:
    /// retrying an open circuit is what it exists to prevent).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::RetryConfig;
    ///
    /// let config = RetryConfig::builder().retry_rejections(true).build()?;
    /// assert!(config.retry_rejections());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn retry_rejections(mut self, yes: bool) -> Self {
        self.retry_rejections = yes;
        self
    }

    /// Limits retries to a fraction of recent first attempts, across every clone of the
    /// handle. Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{RetryBudget, RetryConfig};
    /// use std::time::Duration;
    ///
    /// // Retries may add 10 % to the last 10 s of first attempts, plus 1 a second.
    /// let budget = RetryBudget::new(Duration::from_secs(10), 1, 0.1);
    /// let config = RetryConfig::builder().budget(budget).build()?;
    /// assert_eq!(config.budget(), Some(budget));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Seeds the jitter, so the same calls get the same delays on every run. Default: seeded
    /// from the operating system.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::RetryConfig;
    ///
    /// let config = RetryConfig::builder().seed(42).build()?;
    /// assert_eq!(config.seed(), Some(42));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    crate::telemetry::telemetry_setters!();

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field (`backoff.<field>` and
    /// `budget.<field>` for the nested settings).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::RetryConfig;
    ///
    /// let err = RetryConfig::builder().max_attempts(0).build().unwrap_err();
    /// assert_eq!(err.field(), "max_attempts");
    /// ```
    #[track_caller]
    pub fn build(self) -> Result<RetryConfig, ConfigError> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ConfigError::new(
                "max_attempts",
                format!("must be in 1..={MAX_ATTEMPTS}"),
                self.max_attempts,
            ));
        }
        let backoff = self.backoff.validate()?;
        let deadline = match self.deadline {
            Some(d) => Some(validate::duration_in("deadline", d, MAX_DELAY)?),
            None => None,
        };
        let max_hint = validate::duration_in("max_hint", self.max_hint, MAX_DELAY)?;
        let budget = match self.budget {
            Some(b) => Some(b.validate()?),
            None => None,
        };
        Ok(RetryConfig {
            max_attempts: self.max_attempts,
            backoff,
            deadline,
            max_hint,
            retry_rejections: self.retry_rejections,
            budget,
            seed: self.seed,
            telemetry: Telemetry::build(self.name, DEFAULT_NAME, self.listener)?,
        })
    }
}
