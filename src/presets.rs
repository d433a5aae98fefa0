//! Ready-made policies for the four kinds of dependency most services call: a
//! large-language-model API, a database, a third-party HTTP API and a message broker.
//!
//! Each preset is a [pipeline](crate::pipeline::Pipeline) of a retry, a timeout per attempt
//! and, where the dependency calls for them, a circuit breaker, a rate limiter and a
//! bulkhead, with values sized for that kind of dependency:
//!
//! | Preset | Retry | Circuit breaker | Rate limiter | Timeout | Bulkhead |
//! |---|---|---|---|---|---|
//! | [`Preset::llm_api`] | 3 retries, exponential 2 s ×2 ≤ 30 s | 5 failures / 30 s, open 30 s | 50 / min, burst 10, waits ≤ 30 s | 30 s | 10 concurrent |
//! | [`Preset::database`] | 2 retries, linear 100 ms + 100 ms ≤ 1 s | none | none | 5 s | none |
//! | [`Preset::external_api`] | 3 retries, exponential 1 s ×2 ≤ 10 s | 3 failures / 60 s, open 30 s | none | 10 s | 5 concurrent |
//! | [`Preset::message_queue`] | 5 retries, exponential 200 ms ×2 ≤ 10 s | 10 failures / 60 s, open 30 s | none | 5 s | 20 concurrent |
//!
//! The retry, breaker, timeout and bulkhead values are the seeds' table of policies per
//! dependency. The table has no rate column, but LLM APIs sell requests per minute, so the
//! LLM preset keeps to a quota: 50 requests a minute, the lowest usage tier of Anthropic's
//! API (the provider the seeds' LLM client calls) when this preset was written; bursts of 10,
//! the seeds' concurrency for LLM calls (or of the whole rate, when you set a rate below 10
//! a minute); and a call waits up to 30 s for its turn, the
//! seeds' LLM timeout (a call waits no longer for its turn than for its answer). Set your
//! own tier's rate with [`rate_limiter`](Preset::rate_limiter) (a quota counted as a token
//! bucket, as Anthropic's is, is kept by any burst up to the quota; one counted in fixed
//! minutes needs `burst + rate ≤ quota`, see the [rate limiter](crate::rate_limiter)). The
//! other presets have no limiter: the seeds give no quota for them, and a database or broker
//! is bounded by its pool or its concurrency instead.
//!
//! Every preset also has:
//! - **jitter**: equal jitter (each delay is at least half its base), so a fleet retrying at
//!   once spreads out without ever retrying immediately;
//! - **a retry budget**: retries may add 20 % to the first attempts of the last 10 s, plus
//!   1 retry per second, shared by every clone of the pipeline, so an outage cannot be
//!   multiplied by the retries of many callers;
//! - **a total deadline** on the retry equal to the attempts' worst case (every timeout,
//!   every longest delay and, with a rate limiter, every longest wait for a turn), so a call
//!   never outlives what the table promises. The pipeline cuts each attempt's timeout, and
//!   its wait for a turn, to the time left. It is computed by
//!   [`build`](Preset::build) from the values as they are then, so changing the timeout,
//!   the attempts or the backoff moves it too; clear
//!   [`worst_case_deadline`](Preset::worst_case_deadline) to keep a deadline of your own
//!   (or none).
//!
//! "N retries" means N + 1 attempts ([`max_attempts`](crate::retry::RetryConfig::max_attempts)
//! counts the first call). A breaker's "N failures / D" trips on N failures within a window of
//! D, with [`TripModel::FailuresWithin`](crate::circuit_breaker::TripModel::FailuresWithin) over
//! 10 buckets.
//!
//! A [`Preset`] holds the policies' config **builders**, so any value can be changed before
//! [`build`](Preset::build) (feature `tokio`); the pipeline it builds holds real handles,
//! readable through `Pipeline::retry` and its siblings.
//!
//! # Examples
//!
//! ```
//! use palisade::presets::Preset;
//! use std::time::Duration;
//! # #[cfg(feature = "tokio")]
//! # fn main() -> Result<(), palisade::ConfigError> {
//!
//! let mut preset = Preset::external_api();
//! preset.timeout = preset.timeout.duration(Duration::from_secs(3)); // tighter than 10 s
//! let pipeline = preset.build("geocoder")?;
//! assert_eq!(pipeline.timeout().unwrap().duration(), Duration::from_secs(3));
//! assert_eq!(pipeline.bulkhead().unwrap().config().max_concurrent(), 5);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))] fn main() {}
//! ```

use std::time::Duration;

use crate::bulkhead::{BulkheadConfig, BulkheadConfigBuilder};
use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerConfigBuilder};
use crate::rate_limiter::{RateLimiterConfig, RateLimiterConfigBuilder};
use crate::retry::{Backoff, Jitter, RetryBudget, RetryConfig, RetryConfigBuilder};
use crate::timeout::{TimeoutConfig, TimeoutConfigBuilder};
#[cfg(feature = "tokio")]
use crate::{
    bulkhead::Bulkhead, circuit_breaker::CircuitBreaker, error::ConfigError, pipeline::Pipeline,
    rate_limiter::RateLimiter, retry::Retry, timeout::Timeout,
};

/// The budget every preset's retry gets: 20 % of the first attempts of the last 10 s, plus
/// one retry per second.
pub const PRESET_BUDGET: RetryBudget = RetryBudget::new(Duration::from_secs(10), 1, 0.2);

/// How long every preset's breaker stays open before a probe.
pub const PRESET_BREAK: Duration = Duration::from_secs(30);

// Requests a minute of the LLM preset's limiter; see the module docs.
const LLM_RATE: u32 = 50;

/// The config builders of a preset's policies; see the [module docs](self) for the values.
///
/// Fields are public so that any value can be changed before [`build`](Self::build); a
/// `None` policy is left out of the pipeline.
///
/// # Examples
///
/// ```
/// use palisade::presets::Preset;
///
/// let mut preset = Preset::message_queue();
/// preset.bulkhead = None; // the broker client already bounds its concurrency
/// preset.retry = preset.retry.max_attempts(3);
/// # #[cfg(feature = "tokio")]
/// # {
/// let pipeline = preset.build("orders")?;
/// assert!(pipeline.bulkhead().is_none());
/// assert_eq!(pipeline.retry().unwrap().config().max_attempts(), 3);
/// # }
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Preset {
    /// The retry (with its deadline, jitter and budget).
    pub retry: RetryConfigBuilder,
    /// The breaker, if the preset has one.
    pub circuit_breaker: Option<CircuitBreakerConfigBuilder>,
    /// The rate limiter, if the preset has one (each attempt takes a token).
    pub rate_limiter: Option<RateLimiterConfigBuilder>,
    /// The bulkhead, if the preset has one.
    pub bulkhead: Option<BulkheadConfigBuilder>,
    /// Each attempt's timeout.
    pub timeout: TimeoutConfigBuilder,
    /// Whether [`build`](Self::build) sets the retry's deadline to the attempts' worst case
    /// (default `true`); `false` leaves the retry's own deadline, if any.
    pub worst_case_deadline: bool,
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Preset {
    /// For calls to a large-language-model API: slow, rate-limited, expensive.
    ///
    /// 3 retries with exponential backoff from 2 s, doubling up to 30 s; a breaker that opens
    /// for 30 s on 5 failures within 30 s; 50 requests a minute in bursts of 10 (of the
    /// rate, when you set one below 10; an explicit `burst` wins), a call waiting up to 30 s
    /// for its turn; a 30 s timeout per attempt; 10 calls at once. See
    /// the [module docs](self) for where the rate comes from, and set your own.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::presets::Preset;
    /// use std::time::Duration;
    /// # #[cfg(feature = "tokio")]
    /// # fn main() -> Result<(), palisade::ConfigError> {
    ///
    /// let llm = Preset::llm_api().build("anthropic")?;
    /// assert_eq!(llm.retry().unwrap().config().max_attempts(), 4);
    /// assert_eq!(llm.rate_limiter().unwrap().config().count(), 50);
    ///
    /// // A higher tier's quota: 1000 requests a minute.
    /// let mut preset = Preset::llm_api();
    /// preset.rate_limiter = preset.rate_limiter.map(|l| l.rate(1000, Duration::from_secs(60)));
    /// let llm = preset.build("anthropic")?;
    /// assert_eq!(llm.rate_limiter().unwrap().config().count(), 1000);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn llm_api() -> Self {
        Preset {
            rate_limiter: Some(
                RateLimiterConfig::builder()
                    .rate(LLM_RATE, secs(60))
                    // Not `burst(10)`: a tier's lower rate set over the preset (as the
                    // docs show) would keep a burst above its quota.
                    .default_burst_at_most(10)
                    .max_wait(secs(30)),
            ),
            ..Preset::new(
                3,
                Backoff::exponential(secs(2), 2.0, secs(30)),
                Some((5, secs(30))),
                secs(30),
                Some(10),
            )
        }
    }

    /// For calls to a database: quick, local, retried briefly; no breaker or bulkhead (the
    /// connection pool already bounds concurrency).
    ///
    /// 2 retries with linear backoff from 100 ms, 100 ms more each time, up to 1 s; a 5 s
    /// timeout per attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::presets::Preset;
    /// # #[cfg(feature = "tokio")]
    /// # fn main() -> Result<(), palisade::ConfigError> {
    ///
    /// let db = Preset::database().build("postgres")?;
    /// assert!(db.circuit_breaker().is_none() && db.bulkhead().is_none());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn database() -> Self {
        Preset::new(
            2,
            Backoff::linear(ms(100), ms(100), secs(1)),
            None,
            secs(5),
            None,
        )
    }

    /// For calls to a third-party HTTP API.
    ///
    /// 3 retries with exponential backoff from 1 s, doubling up to 10 s; a breaker that opens
    /// for 30 s on 3 failures within 60 s; a 10 s timeout per attempt; 5 calls at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::presets::Preset;
    /// # #[cfg(feature = "tokio")]
    /// # fn main() -> Result<(), palisade::ConfigError> {
    ///
    /// let api = Preset::external_api().build("payments")?;
    /// assert_eq!(api.timeout().unwrap().duration(), std::time::Duration::from_secs(10));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn external_api() -> Self {
        Preset::new(
            3,
            Backoff::exponential(secs(1), 2.0, secs(10)),
            Some((3, secs(60))),
            secs(10),
            Some(5),
        )
    }

    /// For publishing to or consuming from a message broker.
    ///
    /// 5 retries with exponential backoff from 200 ms, doubling up to 10 s; a breaker that
    /// opens for 30 s on 10 failures within 60 s; a 5 s timeout per attempt; 20 calls at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::presets::Preset;
    /// # #[cfg(feature = "tokio")]
    /// # fn main() -> Result<(), palisade::ConfigError> {
    ///
    /// let mq = Preset::message_queue().build("orders")?;
    /// assert_eq!(mq.retry().unwrap().config().max_attempts(), 6);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn message_queue() -> Self {
        Preset::new(
            5,
            Backoff::exponential(ms(200), 2.0, secs(10)),
            Some((10, secs(60))),
            secs(5),
            Some(20),
        )
    }

    fn new(
        retries: u32,
        backoff: Backoff,
        breaker: Option<(u32, Duration)>,
        timeout: Duration,
        concurrent: Option<u32>,
    ) -> Self {
        Preset {
            retry: RetryConfig::builder()
                .max_attempts(retries + 1)
                .backoff(backoff.jitter(Jitter::Equal))
                .budget(PRESET_BUDGET),
            circuit_breaker: breaker.map(|(failures, within)| {
                CircuitBreakerConfig::builder()
                    .failures_within(failures, within)
                    .break_duration(PRESET_BREAK)
            }),
            rate_limiter: None,
            bulkhead: concurrent.map(|n| BulkheadConfig::builder().max_concurrent(n)),
            timeout: TimeoutConfig::builder().duration(timeout),
            worst_case_deadline: true,
        }
    }

    /// Builds every policy, each named `name` (events, rejections and metrics label them by
    /// it), into one [`Pipeline`] on the default timer and clock.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `name` is blank or a changed value is invalid; the error names
    /// the policy's section (`retry.max_attempts`, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::presets::Preset;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # fn main() -> Result<(), palisade::ConfigError> {
    /// let api = Preset::external_api().build("geocoder")?;
    /// assert_eq!(api.circuit_breaker().unwrap().name(), "geocoder");
    /// // The worst case: 4 attempts of 10 s, and 3 delays of at most 10 s.
    /// assert_eq!(api.retry().unwrap().config().deadline(), Some(Duration::from_secs(70)));
    ///
    /// let mut broken = Preset::external_api();
    /// broken.retry = broken.retry.max_attempts(0);
    /// assert_eq!(broken.build("geocoder").unwrap_err().field(), "retry.max_attempts");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn build(self, name: &'static str) -> Result<Pipeline, ConfigError> {
        let section = |s: &'static str| move |e: ConfigError| e.in_section(s);
        let retry = self.retry.name(name);
        let mut retry_config = retry.clone().build().map_err(section("retry"))?;
        let timeout = self
            .timeout
            .name(name)
            .build()
            .map_err(section("timeout"))?;
        let limiter = match self.rate_limiter {
            Some(b) => Some(b.name(name).build().map_err(section("rate_limiter"))?),
            None => None,
        };
        if self.worst_case_deadline {
            // Every attempt may wait its longest for a turn, take its whole timeout and be
            // followed by the longest delay; read from the built configs, so the values are
            // the ones that will run.
            let attempts = retry_config.max_attempts();
            let wait = limiter.as_ref().map_or(Duration::ZERO, |l| l.max_wait());
            let worst = timeout
                .duration()
                .saturating_add(wait)
                .saturating_mul(attempts)
                .saturating_add(
                    retry_config
                        .backoff()
                        .cap()
                        .saturating_mul(attempts.saturating_sub(1)),
                );
            retry_config = retry.deadline(worst).build().map_err(section("retry"))?;
        }
        let mut builder = Pipeline::builder()
            .retry(Retry::new(retry_config))
            .timeout(Timeout::new(timeout));
        if let Some(b) = self.circuit_breaker {
            let config = b.name(name).build().map_err(section("circuit_breaker"))?;
            builder = builder.circuit_breaker(CircuitBreaker::new(config));
        }
        if let Some(config) = limiter {
            builder = builder.rate_limiter(RateLimiter::new(config));
        }
        if let Some(b) = self.bulkhead {
            let config = b.name(name).build().map_err(section("bulkhead"))?;
            builder = builder.bulkhead(Bulkhead::new(config));
        }
        Ok(builder.build())
    }
}
