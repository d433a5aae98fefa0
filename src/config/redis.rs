//! The file shapes of the Redis link (`[redis]`) and of the fleet-wide limits
//! (`[redis_rate_limiter.<name>]`, `[redis_session_limiter.<name>]`).
//!
//! The URL is a secret when it holds a password: nothing here formats it but through
//! [`RedisConfig::url`] (redacted), so errors, `Debug` and the serialized form never show it.

use std::borrow::Cow;
use std::env::VarError;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::raw::{RawCircuitBreaker, RawRateLimiter, Table, build_named};
use crate::circuit_breaker::CircuitBreakerConfig;
use crate::error::ConfigError;
use crate::redis::{
    DEFAULT_BREAKER_BREAK, DEFAULT_BREAKER_FAILURES, DEFAULT_LINK_NAME, DEFAULT_SESSIONS_NAME,
    FailMode, MAX_TIMEOUT, RedisConfig, RedisRateLimiterConfig, RedisSessionLimiterConfig, redact,
};
use crate::validate;

/// `url = "redis://host:6379/0"` or `url_env = "REDIS_URL"` (exactly one), and the link's
/// settings. No `Debug`: it holds the URL as written.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_prefix: Option<String>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    round_trip_timeout: Option<Duration>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    connect_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    breaker: Option<Table<RawCircuitBreaker>>,
}

impl RawRedis {
    /// The link's config, with `url_env` read from this process's environment. The name
    /// argument is unused (there is one `[redis]` table, not one per name); it is there so
    /// that every raw config builds alike.
    pub(crate) fn build(self, _: Option<&str>) -> Result<RedisConfig, ConfigError> {
        self.build_with_env(|name| std::env::var(name))
    }

    /// [`build`](Self::build), reading environment variables through `env` (tests give a
    /// map; setting the process's own environment is not thread-safe).
    fn build_with_env(
        self,
        env: impl FnOnce(&str) -> Result<String, VarError>,
    ) -> Result<RedisConfig, ConfigError> {
        let (url, url_env) = match (self.url, self.url_env) {
            (Some(url), None) => {
                refuse_redacted(&url)?;
                (url, None)
            }
            (None, Some(var)) => {
                // `std::env::var` may panic on such a name, and it names no variable anyway.
                if var.is_empty() || var.contains(['=', '\0']) {
                    return Err(ConfigError::new(
                        "url_env",
                        "must be an environment variable's name (not empty, no '=' or NUL)",
                        var,
                    ));
                }
                // The variable's value is never quoted: it is the secret.
                let url = env(&var).map_err(|e| {
                    let rule = match e {
                        VarError::NotPresent => {
                            "must name an environment variable that is set (it holds the URL, \
                             read when the file is loaded)"
                        }
                        VarError::NotUnicode(_) => {
                            "must name an environment variable that holds UTF-8 text"
                        }
                    };
                    // A URL written here by mistake is not a variable's name, and may hold a
                    // password: shown redacted.
                    ConfigError::new("url_env", rule, shown_name(&var))
                })?;
                refuse_redacted(&url).map_err(|e| in_variable(e, &var))?;
                (url, Some(var))
            }
            (Some(_), Some(var)) => {
                return Err(ConfigError::new(
                    "url_env",
                    "must not be given with url (one of the two gives the URL)",
                    shown_name(&var),
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "url",
                    "is required, or url_env naming an environment variable that holds it",
                    format_args!("nothing"),
                ));
            }
        };
        let mut b = RedisConfig::builder().url(url);
        if let Some(prefix) = self.key_prefix {
            b = b.key_prefix(prefix);
        }
        if let Some(d) = self.round_trip_timeout {
            b = b.round_trip_timeout(d);
        }
        if let Some(d) = self.connect_timeout {
            b = b.connect_timeout(d);
        }
        if let Some(name) = &self.name {
            validate::check_name(name)?;
        }
        let from_env = |e: ConfigError| match &url_env {
            Some(var) if e.field() == "url" => in_variable(e, var),
            _ => e,
        };
        let mut config = match self.breaker {
            // The builder interns the default breaker's name after every other check.
            None => {
                if let Some(name) = self.name {
                    b = b.name(name);
                }
                b.build().map_err(from_env)?
            }
            Some(Table(breaker)) => {
                if let (Some(link), Some(own)) = (&self.name, &breaker.name) {
                    if link != own {
                        return Err(ConfigError::new(
                            "breaker.name",
                            format!(
                                "must be the link's name ({link:?}) or be left out (the breaker \
                                 reports as the link)"
                            ),
                            own,
                        ));
                    }
                }
                // The link's fields first, so that a refused file interns no breaker name.
                b.clone().build().map_err(from_env)?;
                // From the link's own defaults, which differ from a plain breaker's.
                let base = CircuitBreakerConfig::builder()
                    .consecutive_failures(DEFAULT_BREAKER_FAILURES)
                    .break_duration(DEFAULT_BREAKER_BREAK);
                let link_name = self.name.as_deref().unwrap_or(DEFAULT_LINK_NAME);
                let breaker = breaker
                    .build_on(base, Some(link_name))
                    .map_err(|e| e.in_section("breaker"))?;
                b.breaker(breaker).build().map_err(from_env)?
            }
        };
        config.url_env = url_env.map(Into::into);
        Ok(config)
    }
}

/// A variable's name as an error shows it: a URL written in `url_env` by mistake is not a
/// name, and may hold a password, so it is shown redacted.
fn shown_name(var: &str) -> String {
    if var.contains("://") {
        crate::redis::redact(var)
    } else {
        var.to_string()
    }
}

/// An error about the URL a variable holds, named by the file's key: `url_env`, with the
/// variable's name and the URL redacted (as the builder gives it) as the value.
fn in_variable(e: ConfigError, var: &str) -> ConfigError {
    ConfigError::new(
        "url_env",
        format!("must name a variable whose value {}", e.rule()),
        format_args!("{} = {}", shown_name(var), e.value()),
    )
}

/// Refuses a URL whose password is the `***` of a serialized config: loaded, it would send
/// `***` as the password and fail at the first round trip, far from the cause.
fn refuse_redacted(url: &str) -> Result<(), ConfigError> {
    if url.contains(":***@") || url.contains("://***@") || url.ends_with("?***") {
        return Err(ConfigError::new(
            "url",
            "holds a password redacted as `***`, as palisade writes a URL it serializes \
             (a serialized config keeps no secret): give the URL itself, or url_env",
            redact(url),
        ));
    }
    Ok(())
}

impl From<&RedisConfig> for RawRedis {
    fn from(c: &RedisConfig) -> Self {
        let mut breaker = RawCircuitBreaker::from(c.breaker());
        // The breaker is named by the link, as a file that leaves its name out.
        breaker.name = None;
        RawRedis {
            // Redacted: the serialized form holds no secret (`url_env` keeps it out of files).
            url: c.url_env.is_none().then(|| c.url().to_owned()),
            url_env: c.url_env.as_deref().map(str::to_owned),
            name: Some(c.name().to_owned()),
            key_prefix: Some(c.key_prefix().to_owned()),
            round_trip_timeout: Some(c.round_trip_timeout()),
            connect_timeout: Some(c.connect_timeout()),
            breaker: Some(Table(breaker)),
        }
    }
}

/// `fail_mode = "open"`, `"closed"` or `{ local = 0.25 }`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawFailMode {
    Open,
    Closed,
    Local(f64),
}

impl From<RawFailMode> for FailMode {
    fn from(raw: RawFailMode) -> Self {
        match raw {
            RawFailMode::Open => FailMode::Open,
            RawFailMode::Closed => FailMode::Closed,
            RawFailMode::Local(share) => FailMode::Local { share },
        }
    }
}

impl From<FailMode> for RawFailMode {
    fn from(mode: FailMode) -> Self {
        match mode {
            FailMode::Open => RawFailMode::Open,
            FailMode::Closed => RawFailMode::Closed,
            FailMode::Local { share } => RawFailMode::Local(share),
        }
    }
}

/// `local_reservation = { batch = 10, hold = "50ms" }`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReservation {
    batch: u32,
    #[serde(with = "duration")]
    hold: Duration,
}

/// The keys of `[rate_limiter.<name>]`, and `fail_mode` and `local_reservation`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedisRateLimiter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<u32>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    max_wait: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fail_mode: Option<RawFailMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local_reservation: Option<Table<RawReservation>>,
}

impl RawRedisRateLimiter {
    pub(crate) fn build(
        self,
        default_name: Option<&str>,
    ) -> Result<RedisRateLimiterConfig, ConfigError> {
        let reservation = self.local_reservation.map(|Table(r)| r);
        if let Some(r) = reservation {
            // The builder's own rule, under the key the file wrote.
            validate::duration_in("hold", r.hold, MAX_TIMEOUT)
                .map_err(|e| e.in_section("local_reservation"))?;
        }
        let build = |name: Option<String>, default_name: Option<&str>| {
            let limit = RawRateLimiter {
                name,
                rate: self.rate,
                period: self.period,
                burst: self.burst,
                max_wait: self.max_wait,
            }
            .build(default_name)?;
            let mut b = RedisRateLimiterConfig::builder(limit);
            if let Some(mode) = self.fail_mode {
                b = b.fail_mode(mode.into());
            }
            if let Some(r) = reservation {
                b = b.local_reservation(r.batch, r.hold);
            }
            b.build().map_err(|e| {
                // The hold was checked above: what is left is the batch.
                if e.field() == "local_reservation" {
                    ConfigError::new(
                        "local_reservation.batch",
                        e.rule().to_owned(),
                        format_args!("{}", e.value()),
                    )
                } else {
                    e
                }
            })
        };
        // Every rule first under the plain default name, which is interned already, so that
        // a refused file interns no name of its own; then named.
        build(None, None)?;
        build(self.name.clone(), default_name)
    }
}

impl From<&RedisRateLimiterConfig> for RawRedisRateLimiter {
    fn from(c: &RedisRateLimiterConfig) -> Self {
        let limit = RawRateLimiter::from(c.limit());
        RawRedisRateLimiter {
            name: limit.name,
            rate: limit.rate,
            period: limit.period,
            burst: limit.burst,
            max_wait: limit.max_wait,
            fail_mode: Some(c.fail_mode().into()),
            local_reservation: c
                .reservation()
                .map(|(batch, hold)| Table(RawReservation { batch, hold })),
        }
    }
}

/// `max_per_key`, `lease_ttl`, `fail_mode`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedisSessionLimiter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_per_key: Option<u32>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    lease_ttl: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fail_mode: Option<RawFailMode>,
}

impl RawRedisSessionLimiter {
    pub(crate) fn build(
        self,
        default_name: Option<&str>,
    ) -> Result<RedisSessionLimiterConfig, ConfigError> {
        let mut b = RedisSessionLimiterConfig::builder();
        if let Some(n) = self.max_per_key {
            b = b.max_per_key(n);
        }
        if let Some(d) = self.lease_ttl {
            b = b.lease_ttl(d);
        }
        if let Some(mode) = self.fail_mode {
            b = b.fail_mode(mode.into());
        }
        // The builder interns the name after every other check.
        let name = self.name.as_deref().or(default_name);
        build_named(
            b,
            name,
            DEFAULT_SESSIONS_NAME,
            |b, n: Cow<'static, str>| b.name(n),
            |b| b.build(),
        )
    }
}

impl From<&RedisSessionLimiterConfig> for RawRedisSessionLimiter {
    fn from(c: &RedisSessionLimiterConfig) -> Self {
        RawRedisSessionLimiter {
            name: Some(c.name().to_owned()),
            max_per_key: Some(c.max_per_key()),
            lease_ttl: Some(c.lease_ttl()),
            fail_mode: Some(c.fail_mode().into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: Option<&str>, url_env: Option<&str>) -> RawRedis {
        RawRedis {
            url: url.map(str::to_owned),
            url_env: url_env.map(str::to_owned),
            ..RawRedis::default()
        }
    }

    fn env(
        vars: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Result<String, VarError> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
                .ok_or(VarError::NotPresent)
        }
    }

    const VARS: &[(&str, &str)] = &[
        ("REDIS_URL", "redis://:hunter2@10.0.0.5:6380/2"),
        ("NOT_REDIS", "mysql://root:hunter2@db/"),
        ("REDACTED", "redis://:***@10.0.0.5/"),
    ];

    #[test]
    fn url_env_is_read_and_kept_for_serialization() {
        let config = raw(None, Some("REDIS_URL"))
            .build_with_env(env(VARS))
            .unwrap();
        assert_eq!(config.url(), "redis://:***@10.0.0.5:6380/2");
        assert_eq!(config.url_env.as_deref(), Some("REDIS_URL"));
        let back = RawRedis::from(&config);
        assert_eq!(
            (back.url, back.url_env.as_deref()),
            (None, Some("REDIS_URL"))
        );
    }

    #[test]
    fn a_variable_that_is_missing_or_wrong_is_named_never_shown() {
        for (var, rule) in [
            ("UNSET", "that is set"),
            ("NOT_REDIS", "redis:// URL"),
            ("REDACTED", "redacted"),
            ("", "name"),
            ("A=B", "name"),
        ] {
            let err = raw(None, Some(var)).build_with_env(env(VARS)).unwrap_err();
            assert_eq!(err.field(), "url_env", "{err}");
            assert!(err.rule().contains(rule), "{err}");
            assert!(err.value().contains(var), "names the variable: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let err = raw(None, Some("NOT_UTF8"))
            .build_with_env(|_| Err(VarError::NotUnicode("hunter2".into())))
            .unwrap_err();
        assert!(err.rule().contains("UTF-8"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }

    #[test]
    fn exactly_one_of_url_and_url_env() {
        let err = raw(None, None).build_with_env(env(VARS)).unwrap_err();
        assert_eq!(err.field(), "url", "{err}");
        let err = raw(Some("redis://:hunter2@h/"), Some("REDIS_URL"))
            .build_with_env(env(VARS))
            .unwrap_err();
        assert_eq!(err.field(), "url_env", "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
