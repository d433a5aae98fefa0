//! Policies from config files: TOML, YAML, JSON or any other serde format.
//!
//! With the `serde` feature, every config ([`TimeoutConfig`], [`RetryConfig`],
//! [`CircuitBreakerConfig`], [`RateLimiterConfig`], [`BulkheadConfig`],
//! [`KeyedConfig`](crate::keyed::KeyedConfig) (a per-key map's `max_keys` and `idle`, for a
//! section of your own: [`Policies`] has no keyed kind), and with the `redis`
//! feature too the [Redis configs](#fleet-wide-limits-in-redis)) implements `Deserialize` and
//! `Serialize`.
//! A file's values go through the same builder as code, so a value the builder refuses is
//! refused from a file too, with the same [`ConfigError`]. Absent keys take the builder's
//! defaults; unknown keys are errors (a typo must not silently mean "default").
//!
//! [`Policies`] reads a whole file of named policies, one table per kind, from a path
//! ([`Policies::from_path`], the format chosen by the extension), from the text of one format
//! ([`from_toml_str`](Policies::from_toml_str), [`from_yaml_str`](Policies::from_yaml_str),
//! [`from_json_str`](Policies::from_json_str)) or from any serde deserializer
//! ([`Policies::load`]); [`Policies::pipeline`] then builds the [`Pipeline`] of one name:
//!
//! ```toml
//! [timeout.search]
//! duration = "800ms"
//!
//! [retry.api]
//! max_attempts = 4
//! deadline = "10s"
//! backoff = { kind = "exponential", initial = "100ms", factor = 2.0, max = "2s", jitter = "full" }
//! budget = { ttl = "10s", min_per_sec = 1, retry_ratio = 0.2 }
//!
//! [circuit_breaker.payments]
//! trip_model = { kind = "failures_within", failures = 5, duration = "30s" }
//! break_duration = "10s"
//!
//! [rate_limiter.payments]
//! rate = 100
//! period = "1m"
//! burst = 10
//! max_wait = "2s"
//!
//! [bulkhead.db]
//! max_concurrent = 20
//! max_queue = 50
//! max_wait = "250ms"
//! ```
//!
//! # Values
//!
//! - **Durations** are strings of a number and a unit: `"250ms"`, `"1.5s"`, `"2m"` (units
//!   `ns`, `us`, `ms`, `s`, `m`, `h`).
//! - **`trip_model`** has a `kind` (`consecutive_failures` with `failures`;
//!   `count_window` with `size`, `failure_ratio`, `minimum_calls`; `time_window` with
//!   `duration`, `buckets`, `failure_ratio`, `minimum_calls`; `failures_within` with
//!   `failures`, `duration`, `buckets`), its fields beside it. `slow_calls` is
//!   `{ threshold, ratio, minimum_calls }`.
//! - **A rate limiter's rate** is `rate` calls per `period`, two keys that go together (a
//!   count alone could mean per second or per minute); `burst` defaults to `rate`, and
//!   `max_wait` to none (a call over the rate is refused at once).
//! - **`backoff`** has a `kind` (`constant` with `delay`; `linear` with `initial`, `step`,
//!   `max`; `exponential` with `initial`, `factor`, `max`) and an optional `jitter`:
//!   `"none"`, `"full"`, `"equal"`, `"decorrelated"` or `{ proportional = 0.2 }`.
//! - **`name`** is optional; under [`Policies`] a policy is named by its key, which must not
//!   be empty and may appear once per kind (a JSON or YAML map would otherwise keep the last
//!   of two tables silently).
//! - **Tables** are tables: a config, a `trip_model`, `slow_calls`, `backoff` or `budget`
//!   written as a sequence (`"db": ["pool", 4]`, which serde would otherwise read field by
//!   field in declaration order) is refused.
//! - **Durations** are exact to the nanosecond and never rounded: `"1ns"` and `"500us"` are
//!   kept as written, and a value that is not a whole number of nanoseconds (`"0.5ns"`) is
//!   refused rather than rounded down, possibly to zero.
//!
//! # Formats
//!
//! Each format has its feature, which turns on `serde` too:
//!
//! | Feature | Extensions | Text | Crate |
//! |---|---|---|---|
//! | `toml` | `.toml` | `Policies::from_toml_str` | `toml` |
//! | `yaml` | `.yaml`, `.yml` | `Policies::from_yaml_str` | `serde_norway` |
//! | `json` | `.json` | `Policies::from_json_str` | `serde_json` |
//!
//! The extension is matched in any case. With `serde` alone, [`Policies::load`] takes a
//! deserializer of any format.
//!
//! # Errors
//!
//! Every reader returns a [`ConfigError`] whose [`field`](ConfigError::field) is the
//! key's full path in the file: `retry.api.backoff.factor` for a value the builder refuses,
//! `bulkhead.db.max_queue` for a value of the wrong type, `retry.api.max_atempts` for a key
//! that does not exist (the format's own message, with its line and column where it has
//! them, is the error's [`value`](ConfigError::value)). A key that is empty, blank or holds a
//! dot is quoted in the path (`retry."".max_attempts`). Inside a `trip_model` or `backoff`
//! table, a value of the wrong type or a bad duration is reported against the table
//! (`retry.api.backoff`): serde reads those tables whole before it knows their `kind`.
//!
//! An error from [`Policies::from_path`] names the file as well: its
//! [`file`](ConfigError::file) is the path, and its message starts with it
//! (`policies.toml: retry.api.backoff.factor must be ...`). An error about the file as a
//! whole (it cannot be read, its extension names no format, its syntax is broken) has the
//! field `<file>`. The format's own message appears once, on one line, with its line and
//! column, never with the file's text around it.
//!
//! # Fleet-wide limits in Redis
//!
//! With the `redis` feature, a file may also hold the link to Redis, one `[redis]` table,
//! and the limits the fleet shares through it, `[redis_rate_limiter.<name>]` and
//! `[redis_session_limiter.<name>]` (see [`palisade::redis`](crate::redis)):
//!
//! ```toml
//! [redis]
//! url_env = "REDIS_URL"          # or url = "redis://cache.internal:6379/0", not both
//! key_prefix = "shop"
//! round_trip_timeout = "50ms"
//! connect_timeout = "1s"
//! breaker = { trip_model = { kind = "consecutive_failures", failures = 3 }, break_duration = "1s" }
//!
//! [redis_rate_limiter.per_user]
//! rate = 100
//! period = "1s"
//! burst = 20
//! fail_mode = { local = 0.1 }
//! local_reservation = { batch = 10, hold = "50ms" }
//!
//! [redis_session_limiter.sessions]
//! max_per_key = 3
//! lease_ttl = "30s"
//! fail_mode = "closed"
//! ```
//!
//! - **`[redis]`** ([`RedisConfig`]) needs exactly one of `url` and
//!   `url_env`, the name of an environment variable that holds the URL, read when the file
//!   is loaded. `name` is the link's (its breaker reports under it, the health report lists
//!   it); `key_prefix`, `round_trip_timeout` and `connect_timeout` are the builder's.
//!   `breaker` is a table of the `[circuit_breaker.<name>]` keys, starting from the link's
//!   defaults ([`DEFAULT_BREAKER_FAILURES`](crate::redis::DEFAULT_BREAKER_FAILURES)
//!   consecutive failures, a break of
//!   [`DEFAULT_BREAKER_BREAK`](crate::redis::DEFAULT_BREAKER_BREAK)) and named like the link.
//! - **`[redis_rate_limiter.<name>]`**
//!   ([`RedisRateLimiterConfig`]) has the keys of
//!   `[rate_limiter.<name>]`, and `local_reservation = { batch, hold }`.
//! - **`[redis_session_limiter.<name>]`**
//!   ([`RedisSessionLimiterConfig`]) has
//!   `max_per_key` (required) and `lease_ttl`.
//! - **`fail_mode`**, in both limits, is `"open"` (the default), `"closed"` or
//!   `{ local = <share> }` ([`FailMode`](crate::redis::FailMode)).
//! - **A limit's name is part of its keys in Redis** (`{prefix}:rl:{name}:{key}`): every
//!   instance of a fleet must load the same name, under the same prefix, to share the limit.
//! - **Secrets**: a URL's password appears in no error, `Debug` output or serialized form. A
//!   [`Policies`] serializes the URL redacted (`redis://:***@host`), so a serialized config
//!   holds no secret and cannot connect where the server wants a password; a file holding
//!   such a URL is refused rather than sending `***` as the password. Keep the password out
//!   of files with `url_env`, which is written back as it was read.
//! - Without the `redis` feature, these tables are refused with an error that names it.
//!
//! ```
//! # #[cfg(all(feature = "redis", feature = "toml"))]
//! # fn main() -> Result<(), palisade::ConfigError> {
//! use palisade::config::Policies;
//! use palisade::redis::{FailMode, RedisLink, RedisRateLimiter, RedisSessionLimiter};
//!
//! let policies = Policies::from_toml_str(
//!     r#"
//! [redis]
//! url = "redis://:s3cret@127.0.0.1:6379/0"
//! round_trip_timeout = "50ms"
//!
//! [redis_rate_limiter.per_user]
//! rate = 100
//! period = "1s"
//! fail_mode = { local = 0.1 }
//!
//! [redis_session_limiter.sessions]
//! max_per_key = 3
//! fail_mode = "closed"
//! "#,
//! )?;
//! let link_config = policies.redis.clone().expect("the file has a [redis] table");
//! assert_eq!(link_config.url(), "redis://:***@127.0.0.1:6379/0");
//! assert!(!format!("{policies:?}").contains("s3cret"));
//!
//! // No I/O yet: the link connects on first use.
//! let link = RedisLink::new(link_config);
//! let per_user = RedisRateLimiter::new(&link, policies.redis_rate_limiter["per_user"].clone());
//! let sessions =
//!     RedisSessionLimiter::new(&link, policies.redis_session_limiter["sessions"].clone());
//! assert_eq!(
//!     policies.redis_session_limiter["sessions"].fail_mode(),
//!     FailMode::Closed
//! );
//! # let _ = (per_user, sessions);
//!
//! let err = Policies::from_toml_str(
//!     "[redis_rate_limiter.per_user]\nrate = 100\nperiod = \"1s\"\nfail_mode = { local = 2.0 }",
//! )
//! .unwrap_err();
//! assert_eq!(err.field(), "redis_rate_limiter.per_user.fail_mode");
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "redis", feature = "toml")))] fn main() {}
//! ```
//!
//! # Names
//!
//! Policies report under a `&'static str` name, so that events stay `Copy` and
//! allocation-free. A name read from a file is interned: each distinct name is allocated
//! once for the life of the process and reused by every later load, so reloading a file does
//! not grow memory. Only the names of configs that pass validation are interned: a file
//! refused again and again, under names that change each time, leaks nothing.
//!
//! # Examples
//!
//! A file read by its path, and a pipeline built from it (features `toml` and `tokio`):
//!
//! ```
//! # #[cfg(all(feature = "toml", feature = "tokio"))]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use palisade::Rejected;
//! use palisade::config::Policies;
//!
//! let path = std::env::temp_dir().join(format!("palisade-{}.toml", std::process::id()));
//! std::fs::write(
//!     &path,
//!     r#"
//! [timeout.search]
//! duration = "800ms"
//!
//! [retry.search]
//! max_attempts = 3
//! backoff = { kind = "exponential", initial = "100ms", factor = 2.0, max = "1s" }
//!
//! [bulkhead.search]
//! max_concurrent = 20
//! "#,
//! )?;
//! let policies = Policies::from_path(&path);
//! std::fs::remove_file(&path)?;
//! let search = policies?.pipeline("search")?;
//! let out: Result<&str, Rejected> = search.run(|| async { Ok("results") }).await;
//! assert_eq!(out, Ok("results"));
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "toml", feature = "tokio")))] fn main() {}
//! ```
//!
//! Any serde format, through its deserializer:
//!
//! ```
//! use palisade::config::Policies;
//!
//! let file = r#"{ "timeout": { "search": { "duration": "800ms" } },
//!                 "bulkhead": { "db": { "max_concurrent": 0 } } }"#;
//! let err = Policies::load(&mut serde_json::Deserializer::from_str(file)).unwrap_err();
//! assert_eq!(err.field(), "bulkhead.db.max_concurrent");
//! assert_eq!(err.to_string(), "bulkhead.db.max_concurrent must be in 1..=1073741824, got 0");
//! ```

mod duration;
mod file;
mod raw;
#[cfg(feature = "redis")]
mod redis;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bulkhead::{Bulkhead, BulkheadConfig};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};
use crate::clock::{Clock, DefaultClock};
use crate::error::ConfigError;
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::rate_limiter::{RateLimiter, RateLimiterConfig};
use crate::retry::{Retry, RetryConfig};
use crate::timeout::{Timeout, TimeoutConfig};
use crate::timer::DefaultTimer;

use self::raw::{
    RawBulkhead, RawCircuitBreaker, RawRateLimiter, RawRetry, RawTimeout, Sections, Table,
};
#[cfg(feature = "redis")]
use self::redis::{RawRedis, RawRedisRateLimiter, RawRedisSessionLimiter};
#[cfg(feature = "redis")]
use crate::redis::{RedisConfig, RedisRateLimiterConfig, RedisSessionLimiterConfig};

/// Named policy configs, as read from one file; see the [module docs](self) for the format.
///
/// # Examples
///
/// ```
/// use palisade::config::Policies;
/// use std::time::Duration;
///
/// let file = r#"{ "retry": { "api": { "max_attempts": 4,
///     "backoff": { "kind": "constant", "delay": "50ms" } } } }"#;
/// let policies = Policies::load(&mut serde_json::Deserializer::from_str(file))?;
/// let api = &policies.retry["api"];
/// assert_eq!(api.name(), "api", "named by its key");
/// assert_eq!(api.max_attempts(), 4);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Policies {
    /// `[timeout.<name>]` tables.
    pub timeout: BTreeMap<String, TimeoutConfig>,
    /// `[retry.<name>]` tables.
    pub retry: BTreeMap<String, RetryConfig>,
    /// `[circuit_breaker.<name>]` tables.
    pub circuit_breaker: BTreeMap<String, CircuitBreakerConfig>,
    /// `[rate_limiter.<name>]` tables.
    pub rate_limiter: BTreeMap<String, RateLimiterConfig>,
    /// `[bulkhead.<name>]` tables.
    pub bulkhead: BTreeMap<String, BulkheadConfig>,
    /// The `[redis]` table: the link the fleet-wide limits share.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub redis: Option<RedisConfig>,
    /// `[redis_rate_limiter.<name>]` tables.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub redis_rate_limiter: BTreeMap<String, RedisRateLimiterConfig>,
    /// `[redis_session_limiter.<name>]` tables.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub redis_session_limiter: BTreeMap<String, RedisSessionLimiterConfig>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicies {
    #[serde(default, skip_serializing_if = "Sections::is_empty")]
    timeout: Sections<RawTimeout>,
    #[serde(default, skip_serializing_if = "Sections::is_empty")]
    retry: Sections<RawRetry>,
    #[serde(default, skip_serializing_if = "Sections::is_empty")]
    circuit_breaker: Sections<RawCircuitBreaker>,
    #[serde(default, skip_serializing_if = "Sections::is_empty")]
    rate_limiter: Sections<RawRateLimiter>,
    #[serde(default, skip_serializing_if = "Sections::is_empty")]
    bulkhead: Sections<RawBulkhead>,
    #[cfg(feature = "redis")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redis: Option<Table<RawRedis>>,
    #[cfg(feature = "redis")]
    #[serde(default, skip_serializing_if = "Sections::is_empty")]
    redis_rate_limiter: Sections<RawRedisRateLimiter>,
    #[cfg(feature = "redis")]
    #[serde(default, skip_serializing_if = "Sections::is_empty")]
    redis_session_limiter: Sections<RawRedisSessionLimiter>,
    // Without the feature, the Redis tables are read only to say which feature they need
    // (rather than "unknown field").
    #[cfg(not(feature = "redis"))]
    #[serde(default, skip_serializing)]
    redis: Option<serde::de::IgnoredAny>,
    #[cfg(not(feature = "redis"))]
    #[serde(default, skip_serializing)]
    redis_rate_limiter: Option<serde::de::IgnoredAny>,
    #[cfg(not(feature = "redis"))]
    #[serde(default, skip_serializing)]
    redis_session_limiter: Option<serde::de::IgnoredAny>,
}

impl Policies {
    /// Reads named policies from any serde deserializer (`toml::Deserializer`,
    /// `serde_json::Deserializer`, `serde_norway::Deserializer`...) and validates each.
    ///
    /// For a file on disk, or the text of a format palisade has a feature for, prefer
    /// [`from_path`](Self::from_path) and `from_toml_str` and the like: their errors name the
    /// file and tell the format's message in one line.
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`ConfigError`] whose field is the key's full path:
    /// a syntax or type error from the format (the rule "cannot be read", the format's
    /// message, as its `Display` writes it, as the value, with the password of any URL it
    /// quotes replaced by `***`), an unknown key, or a value the policy's builder refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::config::Policies;
    ///
    /// let file = r#"{ "circuit_breaker": { "payments": { "break_duration": "10s" } } }"#;
    /// let policies = Policies::load(&mut serde_json::Deserializer::from_str(file))?;
    /// assert_eq!(policies.circuit_breaker["payments"].break_duration().as_secs(), 10);
    ///
    /// let typo = r#"{ "circuit_breaker": { "payments": { "break_durations": "10s" } } }"#;
    /// let err = Policies::load(&mut serde_json::Deserializer::from_str(typo)).unwrap_err();
    /// assert_eq!(err.field(), "circuit_breaker.payments.break_durations");
    /// assert_eq!(err.rule(), "cannot be read");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn load<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, ConfigError> {
        Self::load_with(deserializer, |e, _| e.to_string())
    }

    /// [`load`](Self::load), with the format's errors told by `describe` (which is also given
    /// the path of the key where it happened).
    fn load_with<'de, D: Deserializer<'de>>(
        deserializer: D,
        describe: impl FnOnce(&D::Error, &serde_path_to_error::Path) -> String,
    ) -> Result<Self, ConfigError> {
        let Table(raw): Table<RawPolicies> = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| {
                let field = key_path(e.path());
                let message = describe(e.inner(), e.path());
                let message = without_passwords(&message);
                ConfigError::new(
                    field,
                    "cannot be read",
                    format_args!("{}", message.trim_end()),
                )
            })?;
        fn each<R, C>(
            kind: &str,
            Sections(tables): Sections<R>,
            build: impl Fn(R, Option<&str>) -> Result<C, ConfigError>,
        ) -> Result<BTreeMap<String, C>, ConfigError> {
            tables
                .into_iter()
                .map(|(name, Table(raw))| {
                    let section = format!("{kind}.{}", show_key(&name));
                    // The key names the policy: an empty one would name it nothing.
                    if name.trim().is_empty() {
                        return Err(ConfigError::new(
                            section,
                            "must not be an empty key (a policy is named by its key)",
                            name,
                        ));
                    }
                    let config = build(raw, Some(&name)).map_err(|e| e.in_section(&section))?;
                    Ok((name, config))
                })
                .collect()
        }
        #[cfg(not(feature = "redis"))]
        for (key, table) in [
            ("redis", &raw.redis),
            ("redis_rate_limiter", &raw.redis_rate_limiter),
            ("redis_session_limiter", &raw.redis_session_limiter),
        ] {
            if table.is_some() {
                return Err(ConfigError::new(
                    key,
                    "needs palisade's `redis` feature (it is off)",
                    format_args!("a [{key}] table"),
                ));
            }
        }
        Ok(Policies {
            timeout: each("timeout", raw.timeout, RawTimeout::build)?,
            retry: each("retry", raw.retry, RawRetry::build)?,
            circuit_breaker: each(
                "circuit_breaker",
                raw.circuit_breaker,
                RawCircuitBreaker::build,
            )?,
            rate_limiter: each("rate_limiter", raw.rate_limiter, RawRateLimiter::build)?,
            bulkhead: each("bulkhead", raw.bulkhead, RawBulkhead::build)?,
            #[cfg(feature = "redis")]
            redis: raw
                .redis
                .map(|Table(r)| r.build(None).map_err(|e| e.in_section("redis")))
                .transpose()?,
            #[cfg(feature = "redis")]
            redis_rate_limiter: each(
                "redis_rate_limiter",
                raw.redis_rate_limiter,
                RawRedisRateLimiter::build,
            )?,
            #[cfg(feature = "redis")]
            redis_session_limiter: each(
                "redis_session_limiter",
                raw.redis_session_limiter,
                RawRedisSessionLimiter::build,
            )?,
        })
    }
}

impl Policies {
    /// A [`Pipeline`] of the policies named `name`: `timeout.<name>`, `retry.<name>`,
    /// `circuit_breaker.<name>`, `rate_limiter.<name>` and `bulkhead.<name>`, each one the
    /// file has (at least one), on the default timer and clock.
    ///
    /// Every call builds new handles: two pipelines from the same name share no state (no
    /// breaker, bucket, slots or budget). To share a breaker or a quota, keep one pipeline
    /// and clone it.
    ///
    /// Without the `tokio` feature there is no default timer, and the pipeline cannot run;
    /// use [`pipeline_with_timer_and_clock`](Self::pipeline_with_timer_and_clock).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose field is `name` when no policy of any kind has that key.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Rejected;
    /// use palisade::config::Policies;
    ///
    /// # #[cfg(all(feature = "tokio", feature = "toml"))]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let policies = Policies::from_toml_str(
    ///     r#"
    /// [timeout.search]
    /// duration = "800ms"
    ///
    /// [retry.search]
    /// max_attempts = 3
    ///
    /// [rate_limiter.search]
    /// rate = 20
    /// period = "1s"
    /// "#,
    /// )?;
    /// let search = policies.pipeline("search")?;
    /// assert!(search.timeout().is_some() && search.retry().is_some());
    /// assert_eq!(search.rate_limiter().map(|l| l.config().count()), Some(20));
    /// assert!(search.circuit_breaker().is_none(), "the file has no circuit_breaker.search");
    /// let out: Result<&str, Rejected> = search.run(|| async { Ok("results") }).await;
    /// assert_eq!(out, Ok("results"));
    ///
    /// let err = policies.pipeline("serach").unwrap_err();
    /// assert_eq!(err.field(), "serach");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio", feature = "toml")))] fn main() {}
    /// ```
    pub fn pipeline(&self, name: &str) -> Result<Pipeline, ConfigError> {
        self.pipeline_with_timer_and_clock(name, DefaultTimer::default(), DefaultClock::default())
    }

    /// [`pipeline`](Self::pipeline), with handles that sleep on `timer` and read `clock`
    /// (and a pipeline that reads `clock` for the retry's deadline).
    ///
    /// # Errors
    ///
    /// As [`pipeline`](Self::pipeline).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::MonotonicClock;
    /// use palisade::config::Policies;
    /// use std::time::Duration;
    ///
    /// let policies = Policies::load(&mut serde_json::Deserializer::from_str(
    ///     r#"{ "retry": { "db": { "max_attempts": 2 } } }"#,
    /// ))?;
    /// let db = policies.pipeline_with_timer_and_clock(
    ///     "db",
    ///     |d: Duration| tokio::time::sleep(d),
    ///     MonotonicClock::new(),
    /// )?;
    /// assert_eq!(db.retry().map(|r| r.config().max_attempts()), Some(2));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn pipeline_with_timer_and_clock<T: Clone, C: Clock + Clone>(
        &self,
        name: &str,
        timer: T,
        clock: C,
    ) -> Result<Pipeline<T, C>, ConfigError> {
        let timeout = self.timeout.get(name);
        let retry = self.retry.get(name);
        let breaker = self.circuit_breaker.get(name);
        let limiter = self.rate_limiter.get(name);
        let bulkhead = self.bulkhead.get(name);
        if timeout.is_none()
            && retry.is_none()
            && breaker.is_none()
            && limiter.is_none()
            && bulkhead.is_none()
        {
            return Err(self.no_policy_named(name));
        }
        let mut builder = PipelineBuilder::with_clock(clock.clone());
        if let Some(c) = timeout {
            builder = builder.timeout(Timeout::with_timer(c.clone(), timer.clone()));
        }
        if let Some(c) = retry {
            builder = builder.retry(Retry::with_timer_and_clock(
                c.clone(),
                timer.clone(),
                clock.clone(),
            ));
        }
        if let Some(c) = breaker {
            builder = builder.circuit_breaker(CircuitBreaker::with_clock(c.clone(), clock.clone()));
        }
        if let Some(c) = limiter {
            builder = builder.rate_limiter(RateLimiter::with_timer_and_clock(
                c.clone(),
                timer.clone(),
                clock,
            ));
        }
        if let Some(c) = bulkhead {
            builder = builder.bulkhead(Bulkhead::with_timer(c.clone(), timer));
        }
        Ok(builder.build())
    }

    #[cold]
    fn no_policy_named(&self, name: &str) -> ConfigError {
        const SHOWN: usize = 10;
        let mut names: Vec<&str> = (self.timeout.keys())
            .chain(self.retry.keys())
            .chain(self.circuit_breaker.keys())
            .chain(self.rate_limiter.keys())
            .chain(self.bulkhead.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        let known = match names.len() {
            0 => "there are none".to_owned(),
            n if n <= SHOWN => format!("the names are {}", names.join(", ")),
            n => format!(
                "the names include {} and {} more",
                names[..SHOWN].join(", "),
                n - SHOWN
            ),
        };
        ConfigError::new(
            show_key(name).into_owned(),
            format!(
                "must name a policy, a key under timeout, retry, circuit_breaker, rate_limiter \
                 or bulkhead ({known})"
            ),
            name,
        )
    }
}

impl Serialize for Policies {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn raw<C, R: for<'a> From<&'a C>>(m: &BTreeMap<String, C>) -> Sections<R> {
            Sections(
                m.iter()
                    .map(|(k, c)| (k.clone(), Table(R::from(c))))
                    .collect(),
            )
        }
        RawPolicies {
            timeout: raw(&self.timeout),
            retry: raw(&self.retry),
            circuit_breaker: raw(&self.circuit_breaker),
            rate_limiter: raw(&self.rate_limiter),
            bulkhead: raw(&self.bulkhead),
            #[cfg(feature = "redis")]
            redis: self.redis.as_ref().map(|c| Table(RawRedis::from(c))),
            #[cfg(feature = "redis")]
            redis_rate_limiter: raw(&self.redis_rate_limiter),
            #[cfg(feature = "redis")]
            redis_session_limiter: raw(&self.redis_session_limiter),
            #[cfg(not(feature = "redis"))]
            redis: None,
            #[cfg(not(feature = "redis"))]
            redis_rate_limiter: None,
            #[cfg(not(feature = "redis"))]
            redis_session_limiter: None,
        }
        .serialize(serializer)
    }
}

/// `Serialize` and `Deserialize` for a config through its file shape and its builder.
macro_rules! file_shape {
    ($config:ty, $raw:ty) => {
        impl Serialize for $config {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$raw>::from(self).serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $config {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                <Table<$raw>>::deserialize(deserializer)?
                    .0
                    .build(None)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

file_shape!(TimeoutConfig, RawTimeout);
file_shape!(BulkheadConfig, RawBulkhead);
file_shape!(CircuitBreakerConfig, RawCircuitBreaker);
file_shape!(RetryConfig, RawRetry);
file_shape!(RateLimiterConfig, RawRateLimiter);
file_shape!(crate::keyed::KeyedConfig, raw::RawKeyed);
#[cfg(feature = "redis")]
file_shape!(RedisConfig, RawRedis);
#[cfg(feature = "redis")]
file_shape!(RedisRateLimiterConfig, RawRedisRateLimiter);
#[cfg(feature = "redis")]
file_shape!(RedisSessionLimiterConfig, RawRedisSessionLimiter);

/// A key's path as the file spells it: `retry.api.backoff`; a key that is empty, blank or
/// holds a dot is quoted (`retry."".max_attempts`), so it cannot vanish from the path.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
                continue;
            }
            _ if !out.is_empty() => out.push('.'),
            _ => {}
        }
        match segment {
            serde_path_to_error::Segment::Map { key } => out.push_str(&show_key(key)),
            other => {
                let _ = write!(out, "{other}");
            }
        }
    }
    if out.is_empty() {
        "<file>".to_owned()
    } else {
        out
    }
}

/// `message` with the password of every URL in it replaced by `***`, and its query (which may
/// hold one too, as `?password=`) dropped. A format's message may quote the line it failed on
/// (`toml`'s `Display` does) or a string value (serde's "invalid type: string ..."), and a
/// Redis URL there may carry a password.
fn without_passwords(message: &str) -> Cow<'_, str> {
    if !message.contains("://") {
        return Cow::Borrowed(message);
    }
    // A URL in a message ends at a space or a quote.
    let ends = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>');
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail.find(ends).unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        match authority.rfind('@') {
            Some(at) => {
                match authority[..at].split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:***")),
                    None => out.push_str("***"),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        match path.find(['?', '#']) {
            Some(q) => {
                out.push_str(&path[..q]);
                out.push_str("?***");
            }
            None => out.push_str(path),
        }
        rest = after;
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn show_key(key: &str) -> Cow<'_, str> {
    if key.trim().is_empty() || key.contains('.') {
        Cow::Owned(format!("{key:?}"))
    } else {
        Cow::Borrowed(key)
    }
}

#[cfg(test)]
use crate::telemetry::{intern, interned};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_returns_one_allocation_per_name() {
        let a = intern("palisade-intern-test");
        let b = intern(&String::from("palisade-intern-test"));
        assert!(std::ptr::eq(a, b));
        assert_ne!(intern("another"), a);
    }

    #[test]
    fn a_refused_config_interns_no_name() {
        let file = r#"{ "bulkhead": { "refused-by-key": { "max_concurrent": 0 } },
                        "timeout": { "t": { "name": "refused-by-name", "duration": "0s" } } }"#;
        assert!(Policies::load(&mut serde_json::Deserializer::from_str(file)).is_err());
        let single = r#"{ "name": "refused-single", "max_concurrent": 0 }"#;
        assert!(serde_json::from_str::<BulkheadConfig>(single).is_err());
        let blank_name = r#"{ "retry": { "r": { "name": " ", "max_attempts": 2 } } }"#;
        let err = Policies::load(&mut serde_json::Deserializer::from_str(blank_name)).unwrap_err();
        assert_eq!(err.field(), "retry.r.name");
        for name in ["refused-by-key", "refused-by-name", "refused-single", " "] {
            assert!(
                !interned(name),
                "{name:?} was interned for a refused config"
            );
        }

        let file = r#"{ "bulkhead": { "built-by-key": { "max_concurrent": 1 } } }"#;
        let policies = Policies::load(&mut serde_json::Deserializer::from_str(file)).unwrap();
        assert!(interned("built-by-key"));
        assert_eq!(policies.bulkhead["built-by-key"].name(), "built-by-key");
    }

    #[test]
    fn a_keyed_config_round_trips_and_names_what_it_refuses() {
        let config = crate::keyed::KeyedConfig::builder()
            .max_keys(500)
            .idle(std::time::Duration::from_secs(90))
            .build()
            .unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(json, r#"{"max_keys":500,"idle":"90s"}"#);
        let again: crate::keyed::KeyedConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(again, config);
        let defaults: crate::keyed::KeyedConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(defaults, crate::keyed::KeyedConfig::default());

        let err = serde_json::from_str::<crate::keyed::KeyedConfig>(r#"{"max_keys":0}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_keys") && err.contains('0'), "{err}");
        let err = serde_json::from_str::<crate::keyed::KeyedConfig>(r#"{"idle":"25h"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("idle"), "{err}");
        let err = serde_json::from_str::<crate::keyed::KeyedConfig>(r#"{"max_key":5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_key"), "an unknown key is refused: {err}");
    }

    #[test]
    fn a_rate_limiter_round_trips_and_names_what_it_refuses() {
        let config = RateLimiterConfig::builder()
            .name("llm")
            .rate(50, std::time::Duration::from_secs(60))
            .burst(10)
            .max_wait(std::time::Duration::from_millis(1500))
            .build()
            .unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            json,
            r#"{"name":"llm","rate":50,"period":"1m","burst":10,"max_wait":"1500ms"}"#
        );
        let again: RateLimiterConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (again.name(), again.count(), again.period(), again.burst()),
            ("llm", 50, config.period(), 10)
        );
        assert_eq!(again.max_wait(), config.max_wait());

        let file = r#"{ "rate_limiter": { "api": { "rate": 5, "period": "1s", "burst": 0 } } }"#;
        let err = Policies::load(&mut serde_json::Deserializer::from_str(file)).unwrap_err();
        assert_eq!(
            (err.field(), err.rule(), err.value()),
            ("rate_limiter.api.burst", "must be in 1..=1073741824", "0")
        );
        let file = r#"{ "rate_limiter": { "api": { "rate": 5 } } }"#;
        let err = Policies::load(&mut serde_json::Deserializer::from_str(file)).unwrap_err();
        assert_eq!(err.field(), "rate_limiter.api.period", "{err}");
    }

    #[test]
    fn a_message_loses_the_passwords_of_its_urls() {
        for (message, want) in [
            ("no url here", "no url here"),
            (
                "3 | url = \"redis://ops:pw@h:6379/0\" and redis://pw@h2",
                "3 | url = \"redis://ops:***@h:6379/0\" and redis://***@h2",
            ),
            (
                "string `redis+unix:///run/r.sock?db=1&pass=pw`, expected",
                "string `redis+unix:///run/r.sock?***`, expected",
            ),
            ("a://b@c:d@e/f x", "a://b@c:***@e/f x"),
            ("redis://h/ ok", "redis://h/ ok"),
            ("ends with ://", "ends with ://"),
        ] {
            assert_eq!(without_passwords(message), want);
        }
    }

    #[test]
    fn a_key_path_quotes_keys_that_would_vanish() {
        let file = r#"{ "retry": { "a.b": { "max_atempts": 1 } } }"#;
        let err = Policies::load(&mut serde_json::Deserializer::from_str(file)).unwrap_err();
        assert_eq!(err.field(), r#"retry."a.b".max_atempts"#);
    }
}
