//! The shape of each config in a file, and its conversion to and from the validated config.
//!
//! Every field is optional (absent means the builder's default) and unknown keys are errors.
//! A file's values go through the same builder, and so the same validation, as code.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{DeserializeSeed, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration;
use crate::bulkhead::BulkheadConfig;
use crate::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerConfigBuilder, SlowCalls, TripModel,
};
use crate::error::ConfigError;
use crate::keyed::KeyedConfig;
use crate::rate_limiter::{MAX_PERIOD, RateLimiterConfig};
use crate::retry::{Backoff, Jitter, RetryBudget, RetryConfig};
use crate::timeout::TimeoutConfig;
use crate::validate;

use crate::circuit_breaker::DEFAULT_BUCKETS;
use crate::circuit_breaker::DEFAULT_MINIMUM_CALLS;
use crate::retry::Schedule;

/// A table of settings, never a sequence. serde's derived structs (and internally tagged
/// enums) also take their fields by position, so `["pool", 4, 2, "10ms"]` would load as a
/// bulkhead: a file that means something else, or nothing, must not.
#[derive(Debug, Default)]
pub(crate) struct Table<T>(pub(crate) T);

impl<T: Serialize> Serialize for Table<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Map<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Map<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of settings (keys and values)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Map(PhantomData)).map(Table)
    }
}

/// The tables of one kind, by name (`[rate_limiter.<name>]`). A name given twice is refused:
/// JSON and YAML maps would otherwise keep the last table silently (TOML refuses the
/// duplicate key itself), dropping the first, which may be the one meant.
#[derive(Debug)]
pub(crate) struct Sections<T>(pub(crate) BTreeMap<String, Table<T>>);

impl<T> Default for Sections<T> {
    fn default() -> Self {
        Sections(BTreeMap::new())
    }
}

impl<T> Sections<T> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Serialize> Serialize for Sections<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sections<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Names<T> {
            type Value = Sections<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let seen = out.contains_key(&name);
                    let table = map.next_value_seed(Once {
                        seen,
                        name: &name,
                        table: PhantomData,
                    })?;
                    out.insert(name, table);
                }
                Ok(Sections(out))
            }
        }
        deserializer.deserialize_map(Names(PhantomData))
    }
}

/// One name's table, refused if the name came before. Refused as the value, not after it,
/// so that the error's path ends at the name (`rate_limiter.api`).
struct Once<'n, T> {
    seen: bool,
    name: &'n str,
    table: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Once<'_, T> {
    type Value = Table<T>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Table<T>, D::Error> {
        if self.seen {
            return Err(serde::de::Error::custom(format_args!(
                "the name {:?} is given more than once (a name may appear once per kind)",
                self.name
            )));
        }
        Table::deserialize(deserializer)
    }
}

/// Builds a config with the name the file gives, else the key it sits under, else the policy's
/// plain default name (a config read on its own has no key; the caller-location suffix that an
/// unnamed builder gets would point into this file, which tells the user nothing).
///
/// The name is handed to the builder as a `String`: the builder checks every other field
/// first and interns the name (once per distinct name) only if the whole config passes, so a
/// refused config leaks nothing and a process that retries a bad file does not grow.
pub(super) fn build_named<B, C>(
    builder: B,
    name: Option<&str>,
    default: &'static str,
    set_name: fn(B, Cow<'static, str>) -> B,
    build: fn(B) -> Result<C, ConfigError>,
) -> Result<C, ConfigError> {
    let name = match name {
        Some(name) => Cow::Owned(name.to_owned()),
        None => Cow::Borrowed(default),
    };
    build(set_name(builder, name))
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeout {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    duration: Option<Duration>,
}

impl RawTimeout {
    pub(crate) fn build(self, default_name: Option<&str>) -> Result<TimeoutConfig, ConfigError> {
        let mut b = TimeoutConfig::builder();
        if let Some(d) = self.duration {
            b = b.duration(d);
        }
        let name = self.name.as_deref().or(default_name);
        build_named(
            b,
            name,
            crate::timeout::DEFAULT_NAME,
            |b, n| b.name(n),
            |b| b.build(),
        )
    }
}

impl From<&TimeoutConfig> for RawTimeout {
    fn from(c: &TimeoutConfig) -> Self {
        RawTimeout {
            name: Some(c.name().to_owned()),
            duration: Some(c.duration()),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBulkhead {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_queue: Option<u32>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_wait: Option<Duration>,
}

impl RawBulkhead {
    pub(crate) fn build(self, default_name: Option<&str>) -> Result<BulkheadConfig, ConfigError> {
        let mut b = BulkheadConfig::builder();
        if let Some(n) = self.max_concurrent {
            b = b.max_concurrent(n);
        }
        if let Some(n) = self.max_queue {
            b = b.max_queue(n);
        }
        if let Some(d) = self.max_wait {
            b = b.max_wait(d);
        }
        let name = self.name.as_deref().or(default_name);
        build_named(
            b,
            name,
            crate::bulkhead::DEFAULT_NAME,
            |b, n| b.name(n),
            |b| b.build(),
        )
    }
}

impl From<&BulkheadConfig> for RawBulkhead {
    fn from(c: &BulkheadConfig) -> Self {
        RawBulkhead {
            name: Some(c.name().to_owned()),
            max_concurrent: Some(c.max_concurrent()),
            max_queue: Some(c.max_queue()),
            max_wait: c.max_wait(),
        }
    }
}

/// `rate = 50`, `period = "1m"`: the rate as the builder takes it, `rate` calls per
/// `period`, each its own key; `burst` and `max_wait` beside them.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimiter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rate: Option<u32>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub(super) period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) burst: Option<u32>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub(super) max_wait: Option<Duration>,
}

impl RawRateLimiter {
    pub(crate) fn build(
        self,
        default_name: Option<&str>,
    ) -> Result<RateLimiterConfig, ConfigError> {
        let mut b = RateLimiterConfig::builder();
        match (self.rate, self.period) {
            // The period is checked here, so that its error names the key the file wrote.
            (Some(count), Some(period)) => {
                let period = validate::duration_in("period", period, MAX_PERIOD)?;
                b = b.rate(count, period);
            }
            // A count alone could be per second or per minute: the file must say which.
            (Some(count), None) => {
                return Err(ConfigError::new(
                    "period",
                    "is required with rate (the span the rate's calls are per, as \"1s\" or \"1m\")",
                    format_args!("nothing (rate = {count})"),
                ));
            }
            // The builder names the missing rate.
            (None, _) => {}
        }
        if let Some(n) = self.burst {
            b = b.burst(n);
        }
        if let Some(d) = self.max_wait {
            b = b.max_wait(d);
        }
        let name = self.name.as_deref().or(default_name);
        build_named(
            b,
            name,
            crate::rate_limiter::DEFAULT_NAME,
            |b, n| b.name(n),
            |b| b.build(),
        )
    }
}

impl From<&RateLimiterConfig> for RawRateLimiter {
    fn from(c: &RateLimiterConfig) -> Self {
        RawRateLimiter {
            name: Some(c.name().to_owned()),
            rate: Some(c.count()),
            period: Some(c.period()),
            burst: Some(c.burst()),
            max_wait: (!c.max_wait().is_zero()).then_some(c.max_wait()),
        }
    }
}

/// `max_keys = 10000`, `idle = "5m"`: the bounds of a per-key map ([`KeyedConfig`]). It has
/// no name: a map's instances report under their prototype's.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeyed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_keys: Option<u32>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub(super) idle: Option<Duration>,
}

impl RawKeyed {
    /// The config, through the builder; `_name` for the shape the other sections share.
    pub(crate) fn build(self, _name: Option<&str>) -> Result<KeyedConfig, ConfigError> {
        let mut b = KeyedConfig::builder();
        if let Some(n) = self.max_keys {
            b = b.max_keys(n);
        }
        if let Some(d) = self.idle {
            b = b.idle(d);
        }
        b.build()
    }
}

impl From<&KeyedConfig> for RawKeyed {
    fn from(c: &KeyedConfig) -> Self {
        RawKeyed {
            max_keys: Some(c.max_keys()),
            idle: Some(c.idle()),
        }
    }
}

/// `trip_model = { kind = "count_window", size = 100, failure_ratio = 0.5 }`: the model's
/// fields sit beside its kind, so an error names `trip_model.<field>` as the file spells it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawTripModel {
    ConsecutiveFailures {
        failures: u32,
    },
    CountWindow {
        size: u32,
        failure_ratio: f64,
        #[serde(default = "default_minimum_calls")]
        minimum_calls: u32,
    },
    TimeWindow {
        #[serde(with = "duration")]
        duration: Duration,
        #[serde(default = "default_buckets")]
        buckets: u32,
        failure_ratio: f64,
        #[serde(default = "default_minimum_calls")]
        minimum_calls: u32,
    },
    FailuresWithin {
        failures: u32,
        #[serde(with = "duration")]
        duration: Duration,
        #[serde(default = "default_buckets")]
        buckets: u32,
    },
}

fn default_buckets() -> u32 {
    DEFAULT_BUCKETS
}

fn default_minimum_calls() -> u32 {
    DEFAULT_MINIMUM_CALLS
}

impl From<RawTripModel> for TripModel {
    fn from(raw: RawTripModel) -> Self {
        match raw {
            RawTripModel::ConsecutiveFailures { failures } => {
                TripModel::ConsecutiveFailures(failures)
            }
            RawTripModel::CountWindow {
                size,
                failure_ratio,
                minimum_calls,
            } => TripModel::CountWindow {
                size,
                failure_ratio,
                minimum_calls,
            },
            RawTripModel::TimeWindow {
                duration,
                buckets,
                failure_ratio,
                minimum_calls,
            } => TripModel::TimeWindow {
                duration,
                buckets,
                failure_ratio,
                minimum_calls,
            },
            RawTripModel::FailuresWithin {
                failures,
                duration,
                buckets,
            } => TripModel::FailuresWithin {
                failures,
                duration,
                buckets,
            },
        }
    }
}

impl From<TripModel> for RawTripModel {
    fn from(model: TripModel) -> Self {
        match model {
            TripModel::ConsecutiveFailures(failures) => {
                RawTripModel::ConsecutiveFailures { failures }
            }
            TripModel::CountWindow {
                size,
                failure_ratio,
                minimum_calls,
            } => RawTripModel::CountWindow {
                size,
                failure_ratio,
                minimum_calls,
            },
            TripModel::TimeWindow {
                duration,
                buckets,
                failure_ratio,
                minimum_calls,
            } => RawTripModel::TimeWindow {
                duration,
                buckets,
                failure_ratio,
                minimum_calls,
            },
            TripModel::FailuresWithin {
                failures,
                duration,
                buckets,
            } => RawTripModel::FailuresWithin {
                failures,
                duration,
                buckets,
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlowCalls {
    #[serde(with = "duration")]
    threshold: Duration,
    ratio: f64,
    #[serde(default = "default_minimum_calls")]
    minimum_calls: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCircuitBreaker {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trip_model: Option<Table<RawTripModel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slow_calls: Option<Table<RawSlowCalls>>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    break_duration: Option<Duration>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_break_duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    break_growth_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    permitted_in_half_open: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    success_threshold: Option<u32>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_wait_in_half_open: Option<Duration>,
}

impl RawCircuitBreaker {
    pub(crate) fn build(
        self,
        default_name: Option<&str>,
    ) -> Result<CircuitBreakerConfig, ConfigError> {
        self.build_on(CircuitBreakerConfig::builder(), default_name)
    }

    /// [`build`](Self::build), starting from `b` rather than the breaker's defaults (the
    /// Redis link's breaker has defaults of its own).
    pub(super) fn build_on(
        self,
        mut b: CircuitBreakerConfigBuilder,
        default_name: Option<&str>,
    ) -> Result<CircuitBreakerConfig, ConfigError> {
        if let Some(Table(model)) = self.trip_model {
            b = b.trip_model(model.into());
        }
        if let Some(Table(s)) = self.slow_calls {
            b = b.slow_calls(SlowCalls::new(s.threshold, s.ratio).minimum_calls(s.minimum_calls));
        }
        if let Some(d) = self.break_duration {
            b = b.break_duration(d);
        }
        if let Some(d) = self.max_break_duration {
            b = b.max_break_duration(d);
        }
        if let Some(f) = self.break_growth_factor {
            b = b.break_growth_factor(f);
        }
        if let Some(n) = self.permitted_in_half_open {
            b = b.permitted_in_half_open(n);
        }
        if let Some(n) = self.success_threshold {
            b = b.success_threshold(n);
        }
        if let Some(d) = self.max_wait_in_half_open {
            b = b.max_wait_in_half_open(d);
        }
        let name = self.name.as_deref().or(default_name);
        build_named(
            b,
            name,
            crate::circuit_breaker::DEFAULT_NAME,
            |b, n| b.name(n),
            |b| b.build(),
        )
    }
}

impl From<&CircuitBreakerConfig> for RawCircuitBreaker {
    fn from(c: &CircuitBreakerConfig) -> Self {
        RawCircuitBreaker {
            name: Some(c.name().to_owned()),
            trip_model: Some(Table(c.trip_model().into())),
            slow_calls: c.slow_calls().map(|s| {
                Table(RawSlowCalls {
                    threshold: s.threshold(),
                    ratio: s.ratio(),
                    minimum_calls: s.calls_needed(),
                })
            }),
            break_duration: Some(c.break_duration()),
            max_break_duration: Some(c.max_break_duration()),
            break_growth_factor: Some(c.break_growth_factor()),
            permitted_in_half_open: Some(c.permitted_in_half_open()),
            success_threshold: Some(c.success_threshold()),
            max_wait_in_half_open: Some(c.max_wait_in_half_open()),
        }
    }
}

/// `jitter = "full"`, or `jitter = { proportional = 0.2 }`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawJitter {
    None,
    Full,
    Equal,
    Decorrelated,
    Proportional(f64),
}

/// `backoff = { kind = "exponential", initial = "100ms", factor = 2.0, max = "10s" }`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawBackoff {
    Constant {
        #[serde(with = "duration")]
        delay: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jitter: Option<RawJitter>,
    },
    Linear {
        #[serde(with = "duration")]
        initial: Duration,
        #[serde(with = "duration")]
        step: Duration,
        #[serde(with = "duration")]
        max: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jitter: Option<RawJitter>,
    },
    Exponential {
        #[serde(with = "duration")]
        initial: Duration,
        factor: f64,
        #[serde(with = "duration")]
        max: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jitter: Option<RawJitter>,
    },
}

impl From<RawBackoff> for Backoff {
    fn from(raw: RawBackoff) -> Self {
        let (backoff, jitter) = match raw {
            RawBackoff::Constant { delay, jitter } => (Backoff::constant(delay), jitter),
            RawBackoff::Linear {
                initial,
                step,
                max,
                jitter,
            } => (Backoff::linear(initial, step, max), jitter),
            RawBackoff::Exponential {
                initial,
                factor,
                max,
                jitter,
            } => (Backoff::exponential(initial, factor, max), jitter),
        };
        backoff.jitter(match jitter {
            None | Some(RawJitter::None) => Jitter::None,
            Some(RawJitter::Full) => Jitter::Full,
            Some(RawJitter::Equal) => Jitter::Equal,
            Some(RawJitter::Decorrelated) => Jitter::Decorrelated,
            Some(RawJitter::Proportional(p)) => Jitter::Proportional(p),
        })
    }
}

impl From<Backoff> for RawBackoff {
    fn from(b: Backoff) -> Self {
        let jitter = match b.jitter {
            Jitter::None => None,
            Jitter::Full => Some(RawJitter::Full),
            Jitter::Equal => Some(RawJitter::Equal),
            Jitter::Decorrelated => Some(RawJitter::Decorrelated),
            Jitter::Proportional(p) => Some(RawJitter::Proportional(p)),
        };
        match b.schedule {
            Schedule::Constant(delay) => RawBackoff::Constant { delay, jitter },
            Schedule::Linear { initial, step, max } => RawBackoff::Linear {
                initial,
                step,
                max,
                jitter,
            },
            Schedule::Exponential {
                initial,
                factor,
                max,
            } => RawBackoff::Exponential {
                initial,
                factor,
                max,
                jitter,
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    #[serde(with = "duration")]
    ttl: Duration,
    min_per_sec: u32,
    retry_ratio: f64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backoff: Option<Table<RawBackoff>>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    deadline: Option<Duration>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_hint: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_rejections: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    budget: Option<Table<RawBudget>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
}

impl RawRetry {
    pub(crate) fn build(self, default_name: Option<&str>) -> Result<RetryConfig, ConfigError> {
        let mut b = RetryConfig::builder();
        if let Some(n) = self.max_attempts {
            b = b.max_attempts(n);
        }
        if let Some(Table(backoff)) = self.backoff {
            b = b.backoff(backoff.into());
        }
        if let Some(d) = self.deadline {
            b = b.deadline(d);
        }
        if let Some(d) = self.max_hint {
            b = b.max_hint(d);
        }
        if let Some(yes) = self.retry_rejections {
            b = b.retry_rejections(yes);
        }
        if let Some(Table(r)) = self.budget {
            b = b.budget(RetryBudget::new(r.ttl, r.min_per_sec, r.retry_ratio));
        }
        if let Some(seed) = self.seed {
            b = b.seed(seed);
        }
        let name = self.name.as_deref().or(default_name);
        build_named(
            b,
            name,
            crate::retry::DEFAULT_NAME,
            |b, n| b.name(n),
            |b| b.build(),
        )
    }
}

impl From<&RetryConfig> for RawRetry {
    fn from(c: &RetryConfig) -> Self {
        RawRetry {
            name: Some(c.name().to_owned()),
            max_attempts: Some(c.max_attempts()),
            backoff: Some(Table(c.backoff().into())),
            deadline: c.deadline(),
            max_hint: Some(c.max_hint()),
            retry_rejections: Some(c.retry_rejections()),
            budget: c.budget().map(|b| {
                Table(RawBudget {
                    ttl: b.ttl(),
                    min_per_sec: b.min_per_sec(),
                    retry_ratio: b.retry_ratio(),
                })
            }),
            seed: c.seed(),
        }
    }
}
