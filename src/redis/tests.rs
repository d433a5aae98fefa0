//! Unit tests that need no server: configs, redaction, keys, reply parsing. The tests
//! against a real redis-server are in tests/net/tests/redis_*.rs.

use std::time::Duration;

use ::redis::Value;

use super::config::redact;
use super::scripts::{read_acquired, read_take};
use super::*;
use crate::error::LinkFailure;
use crate::rate_limiter::RateLimiterConfig;

#[test]
fn redaction_hides_every_form_of_password() {
    let cases = [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host/", "redis://user:***@host/"),
        ("redis://s3cret@host", "redis://***@host"),
        (
            "redis://user:p@ss@word@host:1/2",
            "redis://user:***@host:1/2",
        ),
        ("redis://host:6379/0", "redis://host:6379/0"),
        (
            "redis+unix:///tmp/r.sock?db=1&pass=s3cret",
            "redis+unix:///tmp/r.sock?***",
        ),
        ("not a url s3cret", "<not a URL>"),
    ];
    for (url, want) in cases {
        assert_eq!(redact(url), want, "{url}");
        assert!(!redact(url).contains("s3cret"));
    }
}

#[test]
fn no_password_in_debug_or_errors() {
    let config = RedisConfig::builder()
        .url("redis://admin:hunter2@127.0.0.1:6379/0")
        .build()
        .unwrap();
    let link = RedisLink::new(config.clone());
    for text in [
        format!("{config:?}"),
        format!("{link:?}"),
        config.url().to_string(),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }
    let err = RedisConfig::builder()
        .url("rediss//admin:hunter2@host")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "url");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let builder = RedisConfig::builder().url("redis://:hunter2@h/");
    assert!(!format!("{builder:?}").contains("hunter2"));
}

#[test]
fn link_config_is_checked() {
    assert_eq!(RedisConfig::builder().build().unwrap_err().field(), "url");
    let base = || RedisConfig::builder().url("redis://127.0.0.1/");
    assert_eq!(
        base().key_prefix("").build().unwrap_err().field(),
        "key_prefix"
    );
    assert_eq!(
        base()
            .round_trip_timeout(Duration::ZERO)
            .build()
            .unwrap_err()
            .field(),
        "round_trip_timeout"
    );
    assert_eq!(
        base()
            .connect_timeout(Duration::from_secs(61))
            .build()
            .unwrap_err()
            .field(),
        "connect_timeout"
    );
    assert_eq!(base().name(" ").build().unwrap_err().field(), "name");
    let ok = base().build().unwrap();
    assert_eq!(ok.round_trip_timeout(), DEFAULT_ROUND_TRIP_TIMEOUT);
    assert_eq!(ok.name(), DEFAULT_LINK_NAME);
}

fn limit(count: u32, period: Duration, burst: u32) -> RateLimiterConfig {
    RateLimiterConfig::builder()
        .name("t")
        .rate(count, period)
        .burst(burst)
        .build()
        .unwrap()
}

#[test]
fn rate_config_is_checked() {
    let err = RedisRateLimiterConfig::builder(limit(2_000_000, Duration::from_secs(1), 1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "rate");
    // An hour per token with a burst of 2^20: 120 years to refill, past exact doubles.
    let err = RedisRateLimiterConfig::builder(limit(1, Duration::from_secs(3_600), 1 << 20))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "burst");
    for share in [0.0, -0.5, 1.5, f64::NAN] {
        let err = RedisRateLimiterConfig::builder(limit(10, Duration::from_secs(1), 10))
            .fail_mode(FailMode::Local { share })
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "fail_mode", "{share}");
    }
    for (batch, hold) in [
        (1, Duration::from_millis(5)),
        (11, Duration::from_millis(5)),
        (4, Duration::ZERO),
    ] {
        let err = RedisRateLimiterConfig::builder(limit(10, Duration::from_secs(1), 10))
            .local_reservation(batch, hold)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "local_reservation", "{batch} {hold:?}");
    }
    // 1 µs per token exactly is accepted; the interval is rounded up to whole microseconds.
    let ok = RedisRateLimiterConfig::builder(limit(1_000_000, Duration::from_secs(1), 1))
        .build()
        .unwrap();
    assert_eq!(ok.interval_us, 1);
    let ok = RedisRateLimiterConfig::builder(limit(3, Duration::from_millis(1), 1))
        .build()
        .unwrap();
    assert_eq!(ok.interval_us, 334);
}

#[test]
fn local_share_scales_the_limit_down() {
    let config = RedisRateLimiterConfig::builder(limit(100, Duration::from_secs(1), 50))
        .fail_mode(FailMode::Local { share: 0.1 })
        .build()
        .unwrap();
    let local = config.local.as_ref().unwrap();
    assert_eq!(
        (local.count(), local.period(), local.burst()),
        (100, Duration::from_secs(10), 5)
    );
    assert_eq!(local.name(), "t");
    // A period that would pass a day keeps it and scales the count (at least 1).
    let config = RedisRateLimiterConfig::builder(limit(10, Duration::from_secs(86_400), 1))
        .fail_mode(FailMode::Local { share: 0.01 })
        .build()
        .unwrap();
    let local = config.local.as_ref().unwrap();
    assert_eq!(
        (local.count(), local.period(), local.burst()),
        (1, Duration::from_secs(86_400), 1)
    );
}

#[test]
fn session_config_is_checked() {
    let b = RedisSessionLimiterConfig::builder;
    assert_eq!(b().build().unwrap_err().field(), "max_per_key");
    assert_eq!(
        b().max_per_key(0).build().unwrap_err().field(),
        "max_per_key"
    );
    assert_eq!(
        b().max_per_key(MAX_SESSIONS + 1)
            .build()
            .unwrap_err()
            .field(),
        "max_per_key"
    );
    assert_eq!(
        b().max_per_key(1)
            .lease_ttl(Duration::from_millis(299))
            .build()
            .unwrap_err()
            .field(),
        "lease_ttl"
    );
    assert_eq!(
        b().max_per_key(1)
            .fail_mode(FailMode::Local { share: 2.0 })
            .build()
            .unwrap_err()
            .field(),
        "fail_mode"
    );
    assert_eq!(
        b().max_per_key(1).build().unwrap().lease_ttl(),
        DEFAULT_LEASE_TTL
    );
}

#[test]
fn keys_render_as_written() {
    let mut out = String::new();
    "ada".write_key(&mut out);
    Some(std::net::IpAddr::from([10, 0, 0, 1])).write_key(&mut out);
    None::<String>.write_key(&mut out);
    42u64.write_key(&mut out);
    assert_eq!(out, "ada10.0.0.142");
    let link = RedisLink::new(
        RedisConfig::builder()
            .url("redis://h/")
            .key_prefix("app")
            .build()
            .unwrap(),
    );
    let rl = RedisRateLimiter::new(
        &link,
        RedisRateLimiterConfig::builder(limit(1, Duration::from_secs(1), 1))
            .build()
            .unwrap(),
    );
    assert_eq!(rl.redis_key("u1"), "app:rl:t:u1");
    let ss = RedisSessionLimiter::new(
        &link,
        RedisSessionLimiterConfig::builder()
            .name("s")
            .max_per_key(1)
            .build()
            .unwrap(),
    );
    assert_eq!(ss.redis_key(&7u32), "app:ss:s:7");
}

fn ints(values: &[i64]) -> Value {
    Value::Array(values.iter().map(|&n| Value::Int(n)).collect())
}

#[test]
fn replies_of_the_wrong_shape_are_malformed_never_a_panic() {
    assert_eq!(
        read_take(&ints(&[1, 0, 1, 5]), 1, 1, 0).unwrap(),
        scripts::Take {
            admitted: true,
            wait_us: 0,
            taken: 1,
            tat: 5
        }
    );
    let bad = [
        Value::Nil,
        Value::Okay,
        Value::Int(1),
        ints(&[1, 0, 1]),
        ints(&[1, 0, 1, 5, 6]),
        ints(&[2, 0, 1, 5]),
        ints(&[1, -1, 1, 5]),
        // More tokens than the batch asked for, or fewer than the cost.
        ints(&[1, 0, 9, 5]),
        ints(&[1, 0, 0, 5]),
        Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"0".to_vec()),
            Value::Int(1),
            Value::Int(5),
        ]),
    ];
    for reply in &bad {
        assert_eq!(
            read_take(reply, 1, 2, 0),
            Err(LinkFailure::MalformedReply),
            "{reply:?}"
        );
    }
    // A wait longer than the caller allowed.
    assert_eq!(
        read_take(&ints(&[1, 1_001, 1, 5]), 1, 1, 1_000),
        Err(LinkFailure::MalformedReply)
    );
    assert!(read_take(&ints(&[1, 1_000, 1, 5]), 1, 1, 1_000).is_ok());
    assert_eq!(read_acquired(&ints(&[1, 2])).unwrap().held, 2);
    assert_eq!(read_acquired(&ints(&[0])), Err(LinkFailure::MalformedReply));
    assert_eq!(
        read_acquired(&Value::SimpleString("OK".into())),
        Err(LinkFailure::MalformedReply)
    );
}

#[test]
fn limits_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<RedisLink>();
    send_sync::<RedisRateLimiter>();
    send_sync::<RedisSessionLimiter>();
    send_sync::<SessionLease>();
    send::<future::Admit<()>>();
    send::<future::Admit<SessionLease>>();
}
