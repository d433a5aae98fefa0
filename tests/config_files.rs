//! Policies from files: a full file round-trips, and every rule a builder enforces is
//! reachable from a file, reported as a `ConfigError` naming the key's full path.

use std::time::Duration;

use palisade::circuit_breaker::{CircuitBreakerConfig, SlowCalls, TripModel};
use palisade::config::Policies;
use palisade::retry::{Backoff, Jitter, RetryBudget};
use palisade::timeout::TimeoutConfig;

const FULL: &str = r#"
[timeout.search]
duration = "800ms"

[retry.api]
max_attempts = 4
deadline = "10s"
max_hint = "30s"
retry_rejections = true
seed = 7
backoff = { kind = "exponential", initial = "100ms", factor = 2.5, max = "2s", jitter = { proportional = 0.2 } }
budget = { ttl = "10s", min_per_sec = 2, retry_ratio = 0.1 }

[retry.db]
backoff = { kind = "linear", initial = "10ms", step = "20ms", max = "100ms", jitter = "equal" }

[circuit_breaker.payments]
name = "payments-v2"
trip_model = { kind = "failures_within", failures = 5, duration = "30s" }
break_duration = "10s"
max_break_duration = "2m"
break_growth_factor = 1.5
permitted_in_half_open = 3
success_threshold = 2
max_wait_in_half_open = "45s"
slow_calls = { threshold = "2s", ratio = 0.5, minimum_calls = 20 }

[circuit_breaker.search]
trip_model = { kind = "time_window", duration = "1m", buckets = 12, failure_ratio = 0.25, minimum_calls = 50 }

[rate_limiter.llm]
rate = 50
period = "1m"
burst = 10
max_wait = "30s"

[rate_limiter.search]
rate = 100
period = "1s"

[bulkhead.pool]
max_concurrent = 20
max_queue = 50
max_wait = "250ms"
"#;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn load_toml(text: &str) -> Result<Policies, palisade::ConfigError> {
    Policies::load(toml::Deserializer::parse(text).expect("valid TOML syntax"))
}

#[test]
fn a_full_file_reads_into_the_configs_it_says() {
    let p = load_toml(FULL).unwrap();

    let search = &p.timeout["search"];
    assert_eq!((search.name(), search.duration()), ("search", ms(800)));

    let api = &p.retry["api"];
    assert_eq!(api.name(), "api");
    assert_eq!(api.max_attempts(), 4);
    assert_eq!(api.deadline(), Some(Duration::from_secs(10)));
    assert_eq!(api.max_hint(), Duration::from_secs(30));
    assert!(api.retry_rejections());
    assert_eq!(api.seed(), Some(7));
    assert_eq!(
        api.backoff(),
        Backoff::exponential(ms(100), 2.5, Duration::from_secs(2))
            .jitter(Jitter::Proportional(0.2))
    );
    assert_eq!(
        api.budget(),
        Some(RetryBudget::new(Duration::from_secs(10), 2, 0.1))
    );
    assert_eq!(
        p.retry["db"].backoff(),
        Backoff::linear(ms(10), ms(20), ms(100)).jitter(Jitter::Equal)
    );
    assert_eq!(
        p.retry["db"].max_attempts(),
        3,
        "absent keys take the defaults"
    );

    let pay = &p.circuit_breaker["payments"];
    assert_eq!(
        pay.name(),
        "payments-v2",
        "an explicit name wins over the key"
    );
    assert_eq!(
        pay.trip_model(),
        TripModel::FailuresWithin {
            failures: 5,
            duration: Duration::from_secs(30),
            buckets: 10
        }
    );
    assert_eq!(pay.break_duration(), Duration::from_secs(10));
    assert_eq!(pay.max_break_duration(), Duration::from_secs(120));
    assert_eq!(pay.break_growth_factor(), 1.5);
    assert_eq!(pay.permitted_in_half_open(), 3);
    assert_eq!(pay.success_threshold(), 2);
    assert_eq!(pay.max_wait_in_half_open(), Duration::from_secs(45));
    assert_eq!(
        pay.slow_calls(),
        Some(SlowCalls::new(Duration::from_secs(2), 0.5).minimum_calls(20))
    );
    assert_eq!(
        p.circuit_breaker["search"].trip_model(),
        TripModel::TimeWindow {
            duration: Duration::from_secs(60),
            buckets: 12,
            failure_ratio: 0.25,
            minimum_calls: 50
        }
    );

    let pool = &p.bulkhead["pool"];
    assert_eq!(
        (
            pool.name(),
            pool.max_concurrent(),
            pool.max_queue(),
            pool.max_wait()
        ),
        ("pool", 20, 50, Some(ms(250)))
    );

    let llm = &p.rate_limiter["llm"];
    assert_eq!(
        (
            llm.name(),
            llm.count(),
            llm.period(),
            llm.burst(),
            llm.max_wait()
        ),
        (
            "llm",
            50,
            Duration::from_secs(60),
            10,
            Duration::from_secs(30)
        )
    );
    let search = &p.rate_limiter["search"];
    assert_eq!(
        (search.burst(), search.max_wait()),
        (100, Duration::ZERO),
        "absent keys take the defaults: a period's calls, no wait"
    );
}

#[test]
fn a_file_round_trips_through_toml_and_json() {
    let first = load_toml(FULL).unwrap();

    let as_toml = toml::to_string(&first).unwrap();
    let again = load_toml(&as_toml).unwrap();
    assert_eq!(
        toml::to_string(&again).unwrap(),
        as_toml,
        "stable through TOML"
    );

    let as_json = serde_json::to_string(&first).unwrap();
    let from_json = Policies::load(&mut serde_json::Deserializer::from_str(&as_json)).unwrap();
    assert_eq!(
        toml::to_string(&from_json).unwrap(),
        as_toml,
        "stable through JSON"
    );

    assert_eq!(again.retry["api"].backoff(), first.retry["api"].backoff());
    assert_eq!(again.circuit_breaker["payments"].name(), "payments-v2");
    assert_eq!(again.retry["api"].name(), "api");
    let llm = &again.rate_limiter["llm"];
    assert_eq!(
        (llm.count(), llm.period(), llm.burst(), llm.max_wait()),
        (50, Duration::from_secs(60), 10, Duration::from_secs(30))
    );
    assert!(
        as_toml.contains("[rate_limiter.llm]\nname = \"llm\"\nrate = 50\nperiod = \"1m\"\nburst = 10\nmax_wait = \"30s\"\n"),
        "written as a person would write it:\n{as_toml}"
    );
}

#[test]
fn a_single_config_deserializes_through_its_builder() {
    let ok: TimeoutConfig = serde_json::from_str(r#"{ "duration": "2s", "name": "x" }"#).unwrap();
    assert_eq!((ok.name(), ok.duration()), ("x", Duration::from_secs(2)));

    let err = serde_json::from_str::<TimeoutConfig>(r#"{ "duration": "0s" }"#).unwrap_err();
    assert!(
        err.to_string()
            .contains("duration must be greater than zero"),
        "{err}"
    );

    let cb: CircuitBreakerConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(
        cb.trip_model(),
        TripModel::ConsecutiveFailures(5),
        "defaults"
    );
}

#[test]
fn a_single_config_without_a_name_gets_its_policys_plain_default_name() {
    // Not `circuit_breaker@src/config/raw.rs:NN`: a place inside the crate tells the user
    // nothing about which config it was.
    let cb: CircuitBreakerConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cb.name(), palisade::circuit_breaker::DEFAULT_NAME);
    let t: TimeoutConfig = serde_json::from_str(r#"{ "duration": "2s" }"#).unwrap();
    assert_eq!(t.name(), palisade::timeout::DEFAULT_NAME);
    let b: palisade::bulkhead::BulkheadConfig =
        serde_json::from_str(r#"{ "max_concurrent": 4 }"#).unwrap();
    assert_eq!(b.name(), palisade::bulkhead::DEFAULT_NAME);
    let r: palisade::retry::RetryConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(r.name(), palisade::retry::DEFAULT_NAME);
    let l: palisade::rate_limiter::RateLimiterConfig =
        serde_json::from_str(r#"{ "rate": 5, "period": "1s" }"#).unwrap();
    assert_eq!(l.name(), palisade::rate_limiter::DEFAULT_NAME);
}

/// Every rule, from a file: (the file, the field the error must name).
const BAD: &[(&str, &str)] = &[
    // Timeout.
    ("[timeout.t]\nduration = \"0s\"", "timeout.t.duration"),
    ("[timeout.t]\nduration = \"400d\"", "timeout.t.duration"),
    ("[timeout.t]\nduration = \"9000h\"", "timeout.t.duration"),
    ("[timeout.t]\nname = \" \"", "timeout.t.name"),
    // Bulkhead.
    ("[bulkhead.b]\nmax_queue = 1", "bulkhead.b.max_concurrent"),
    (
        "[bulkhead.b]\nmax_concurrent = 0",
        "bulkhead.b.max_concurrent",
    ),
    (
        "[bulkhead.b]\nmax_concurrent = 2000000000",
        "bulkhead.b.max_concurrent",
    ),
    (
        "[bulkhead.b]\nmax_concurrent = 1\nmax_queue = 2000000000",
        "bulkhead.b.max_queue",
    ),
    (
        "[bulkhead.b]\nmax_concurrent = 1\nmax_wait = \"1s\"",
        "bulkhead.b.max_wait",
    ),
    (
        "[bulkhead.b]\nmax_concurrent = 1\nmax_queue = 1\nmax_wait = \"0s\"",
        "bulkhead.b.max_wait",
    ),
    (
        "[bulkhead.b]\nmax_concurrent = -1",
        "bulkhead.b.max_concurrent",
    ),
    (
        "[bulkhead.b]\nmax_concurrent = \"ten\"",
        "bulkhead.b.max_concurrent",
    ),
    // Circuit breaker: each model's fields.
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"consecutive_failures\", failures = 0 }",
        "circuit_breaker.c.trip_model.failures",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"count_window\", size = 0, failure_ratio = 0.5 }",
        "circuit_breaker.c.trip_model.size",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"count_window\", size = 10, failure_ratio = 1.5 }",
        "circuit_breaker.c.trip_model.failure_ratio",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"count_window\", size = 10, failure_ratio = 0.5, minimum_calls = 11 }",
        "circuit_breaker.c.trip_model.minimum_calls",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"time_window\", duration = \"0s\", failure_ratio = 0.5 }",
        "circuit_breaker.c.trip_model.duration",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"time_window\", duration = \"1m\", buckets = 0, failure_ratio = 0.5 }",
        "circuit_breaker.c.trip_model.buckets",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"time_window\", duration = \"1m\", failure_ratio = nan }",
        "circuit_breaker.c.trip_model.failure_ratio",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"time_window\", duration = \"1m\", failure_ratio = 0.5, minimum_calls = 0 }",
        "circuit_breaker.c.trip_model.minimum_calls",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"failures_within\", failures = 0, duration = \"30s\" }",
        "circuit_breaker.c.trip_model.failures",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"failures_within\", failures = 5, duration = \"30s\", buckets = 5000 }",
        "circuit_breaker.c.trip_model.buckets",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"sometimes\" }",
        "circuit_breaker.c.trip_model.kind",
    ),
    (
        "[circuit_breaker.c]\ntrip_model = { kind = \"consecutive_failures\", failures = 3, size = 3 }",
        "circuit_breaker.c.trip_model",
    ),
    (
        "[circuit_breaker.c]\nslow_calls = { threshold = \"0s\", ratio = 0.5 }",
        "circuit_breaker.c.slow_calls.threshold",
    ),
    (
        "[circuit_breaker.c]\nslow_calls = { threshold = \"1s\", ratio = 0 }",
        "circuit_breaker.c.slow_calls.ratio",
    ),
    (
        "[circuit_breaker.c]\nslow_calls = { threshold = \"1s\", ratio = 0.5, minimum_calls = 0 }",
        "circuit_breaker.c.slow_calls.minimum_calls",
    ),
    (
        "[circuit_breaker.c]\nbreak_duration = \"0s\"",
        "circuit_breaker.c.break_duration",
    ),
    (
        "[circuit_breaker.c]\nbreak_duration = \"10s\"\nmax_break_duration = \"5s\"",
        "circuit_breaker.c.max_break_duration",
    ),
    (
        "[circuit_breaker.c]\nbreak_growth_factor = 0.5",
        "circuit_breaker.c.break_growth_factor",
    ),
    (
        "[circuit_breaker.c]\npermitted_in_half_open = 0",
        "circuit_breaker.c.permitted_in_half_open",
    ),
    (
        "[circuit_breaker.c]\npermitted_in_half_open = 2\nsuccess_threshold = 3",
        "circuit_breaker.c.success_threshold",
    ),
    (
        "[circuit_breaker.c]\nmax_wait_in_half_open = \"0s\"",
        "circuit_breaker.c.max_wait_in_half_open",
    ),
    (
        "[circuit_breaker.c]\nbreak_duration = \"soon\"",
        "circuit_breaker.c.break_duration",
    ),
    // Retry.
    ("[retry.r]\nmax_attempts = 0", "retry.r.max_attempts"),
    ("[retry.r]\nmax_attempts = 1001", "retry.r.max_attempts"),
    (
        "[retry.r]\nbackoff = { kind = \"exponential\", initial = \"1s\", factor = 0.5, max = \"10s\" }",
        "retry.r.backoff.factor",
    ),
    (
        "[retry.r]\nbackoff = { kind = \"exponential\", initial = \"20s\", factor = 2.0, max = \"10s\" }",
        "retry.r.backoff.initial",
    ),
    (
        "[retry.r]\nbackoff = { kind = \"linear\", initial = \"0s\", step = \"1s\", max = \"0s\" }",
        "retry.r.backoff.max",
    ),
    (
        "[retry.r]\nbackoff = { kind = \"constant\", delay = \"2d\" }",
        "retry.r.backoff",
    ),
    (
        "[retry.r]\nbackoff = { kind = \"constant\", delay = \"48h\" }",
        "retry.r.backoff.max",
    ),
    (
        "[retry.r]\nbackoff = { kind = \"constant\", delay = \"1s\", jitter = { proportional = 1.5 } }",
        "retry.r.backoff.jitter",
    ),
    (
        "[retry.r]\nbackoff = { kind = \"constant\", delay = \"0s\", jitter = \"decorrelated\" }",
        "retry.r.backoff.initial",
    ),
    (
        "[retry.r]\nbackoff = { kind = \"constant\", delay = \"1s\", jitter = \"wobbly\" }",
        "retry.r.backoff",
    ),
    (
        "[retry.r]\nbackoff = { kind = \"constant\", delay = \"1s\", factor = 2.0 }",
        "retry.r.backoff",
    ),
    ("[retry.r]\ndeadline = \"0s\"", "retry.r.deadline"),
    ("[retry.r]\nmax_hint = \"0s\"", "retry.r.max_hint"),
    (
        "[retry.r]\nbudget = { ttl = \"0s\", min_per_sec = 1, retry_ratio = 0.2 }",
        "retry.r.budget.ttl",
    ),
    (
        "[retry.r]\nbudget = { ttl = \"10s\", min_per_sec = 1, retry_ratio = 0 }",
        "retry.r.budget.retry_ratio",
    ),
    ("[retry.r]\nmax_atempts = 3", "retry.r.max_atempts"),
    // Rate limiter.
    ("[rate_limiter.l]\nburst = 3", "rate_limiter.l.rate"),
    ("[rate_limiter.l]\nrate = 3", "rate_limiter.l.period"),
    (
        "[rate_limiter.l]\nrate = 0\nperiod = \"1s\"",
        "rate_limiter.l.rate",
    ),
    (
        "[rate_limiter.l]\nrate = -1\nperiod = \"1s\"",
        "rate_limiter.l.rate",
    ),
    (
        "[rate_limiter.l]\nrate = 3\nperiod = \"0s\"",
        "rate_limiter.l.period",
    ),
    (
        "[rate_limiter.l]\nrate = 3\nperiod = \"25h\"",
        "rate_limiter.l.period",
    ),
    (
        "[rate_limiter.l]\nrate = 3\nperiod = \"1ns\"",
        "rate_limiter.l.rate",
    ),
    (
        "[rate_limiter.l]\nrate = 3\nperiod = \"1s\"\nburst = 0",
        "rate_limiter.l.burst",
    ),
    (
        "[rate_limiter.l]\nrate = 3\nperiod = \"1s\"\nmax_wait = \"25h\"",
        "rate_limiter.l.max_wait",
    ),
    (
        "[rate_limiter.l]\nrate = 3\nper = \"1s\"",
        "rate_limiter.l.per",
    ),
    // The file itself.
    ("[rate_limit.x]\nrate = 3", "rate_limit"),
    ("timeout = 3", "timeout"),
];

#[test]
fn every_rule_is_reachable_from_a_file_and_names_the_key() {
    let mut wrong = Vec::new();
    for &(file, field) in BAD {
        match load_toml(file) {
            Ok(_) => wrong.push(format!("{file:?} loaded")),
            Err(e) if e.field() != field => wrong.push(format!(
                "{file:?}: named {:?} ({e}), want {field:?}",
                e.field()
            )),
            Err(e) => assert!(!e.rule().is_empty(), "{e}"),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_unknown_key_says_which_keys_exist() {
    let err = load_toml("[retry.r]\nmax_atempts = 3").unwrap_err();
    assert_eq!(err.rule(), "cannot be read");
    assert!(err.value().contains("unknown field `max_atempts`"), "{err}");
    assert!(
        err.value().contains("max_attempts"),
        "the keys that exist: {err}"
    );
    assert!(err.value().contains("line 2"), "where: {err}");
}

fn load_json(text: &str) -> Result<Policies, palisade::ConfigError> {
    Policies::load(&mut serde_json::Deserializer::from_str(text))
}

#[test]
fn an_empty_key_is_refused_and_named() {
    for (file, field) in [
        (
            r#"{ "retry": { "": { "max_attempts": 2 } } }"#,
            r#"retry."""#,
        ),
        (
            r#"{ "timeout": { "  ": { "duration": "1s" } } }"#,
            r#"timeout."  ""#,
        ),
        (
            r#"{ "bulkhead": { "": { "max_concurrent": 0 } } }"#,
            r#"bulkhead."""#,
        ),
        (r#"{ "": {} }"#, r#""""#),
    ] {
        let err = load_json(file).unwrap_err();
        assert_eq!(err.field(), field, "{file}: {err}");
        assert!(err.to_string().starts_with(field), "{file}: {err}");
    }
    let err = load_toml("[retry.\"\"]\nmax_attempts = 2").unwrap_err();
    assert_eq!(err.field(), r#"retry."""#, "{err}");
    assert!(err.rule().contains("empty key"), "{err}");
    // A problem inside the table of an empty key still shows where it is.
    let err = load_json(r#"{ "retry": { "": { "max_atempts": 2 } } }"#).unwrap_err();
    assert_eq!(err.field(), r#"retry."".max_atempts"#, "{err}");
}

#[test]
fn a_sequence_is_refused_where_a_table_is_expected() {
    for (file, field) in [
        (
            r#"{ "bulkhead": { "db": ["pool", 4, 2, "10ms"] } }"#,
            "bulkhead.db",
        ),
        (r#"{ "timeout": { "t": ["t", "1s"] } }"#, "timeout.t"),
        (r#"{ "retry": { "r": ["r", 3] } }"#, "retry.r"),
        (
            r#"{ "circuit_breaker": { "c": ["c"] } }"#,
            "circuit_breaker.c",
        ),
        (
            r#"{ "circuit_breaker": { "c": { "trip_model": ["consecutive_failures", 3] } } }"#,
            "circuit_breaker.c.trip_model",
        ),
        (
            r#"{ "circuit_breaker": { "c": { "slow_calls": ["2s", 0.5, 10] } } }"#,
            "circuit_breaker.c.slow_calls",
        ),
        (
            r#"{ "retry": { "r": { "backoff": ["constant", "10ms"] } } }"#,
            "retry.r.backoff",
        ),
        (
            r#"{ "retry": { "r": { "budget": ["10s", 1, 0.2] } } }"#,
            "retry.r.budget",
        ),
        (r#"[{}, {}, {}, {}]"#, "<file>"),
    ] {
        let err = load_json(file).unwrap_err();
        assert_eq!(err.field(), field, "{file}: {err}");
        assert_eq!(err.rule(), "cannot be read", "{file}: {err}");
        assert!(err.value().contains("sequence"), "{file}: {err}");
        assert!(
            err.value().contains("table"),
            "says what was expected: {err}"
        );
    }
    // One config on its own, too.
    let err =
        serde_json::from_str::<palisade::bulkhead::BulkheadConfig>(r#"["db", 4]"#).unwrap_err();
    assert!(err.to_string().contains("sequence"), "{err}");
}

#[test]
fn sub_millisecond_durations_load_exactly_and_round_trip() {
    let policies = load_toml(
        r#"
[timeout.fast]
duration = "500us"

[timeout.tiny]
duration = "1ns"

[bulkhead.db]
max_concurrent = 1
max_queue = 1
max_wait = "0.5ms"
"#,
    )
    .unwrap();
    assert_eq!(
        policies.timeout["fast"].duration(),
        Duration::from_micros(500)
    );
    assert_eq!(policies.timeout["tiny"].duration(), Duration::from_nanos(1));
    assert_eq!(
        policies.bulkhead["db"].max_wait(),
        Some(Duration::from_micros(500))
    );
    let text = toml::to_string(&policies).unwrap();
    assert!(text.contains(r#"duration = "500us""#), "{text}");
    assert!(text.contains(r#"duration = "1ns""#), "{text}");
    assert!(text.contains(r#"max_wait = "500us""#), "{text}");
    let again = load_toml(&text).unwrap();
    assert_eq!(again.timeout["tiny"].duration(), Duration::from_nanos(1));

    // Less than a nanosecond cannot be held: refused, never rounded down to zero.
    for (file, field) in [
        ("[timeout.t]\nduration = \"0.5ns\"", "timeout.t.duration"),
        (
            "[bulkhead.b]\nmax_concurrent = 1\nmax_queue = 1\nmax_wait = \"0.0000000001s\"",
            "bulkhead.b.max_wait",
        ),
    ] {
        let err = load_toml(file).unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(err.value().contains("whole number of nanoseconds"), "{err}");
    }
}

// ===== Policies::from_path, from_*_str and pipeline =====

/// A file in the temp dir under a name no other test or process uses, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("palisade-config-files-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The same policies in each format.
const SMALL_TOML: &str = r#"
[timeout.search]
duration = "800ms"

[retry.search]
max_attempts = 4
backoff = { kind = "constant", delay = "50ms" }

[bulkhead.db]
max_concurrent = 2
"#;

const SMALL_YAML: &str = r#"
timeout:
  search:
    duration: 800ms
retry:
  search:
    max_attempts: 4
    backoff: { kind: constant, delay: 50ms }
bulkhead:
  db:
    max_concurrent: 2
"#;

const SMALL_JSON: &str = r#"{
  "timeout": { "search": { "duration": "800ms" } },
  "retry": { "search": { "max_attempts": 4, "backoff": { "kind": "constant", "delay": "50ms" } } },
  "bulkhead": { "db": { "max_concurrent": 2 } }
}"#;

fn assert_small(p: &Policies) {
    assert_eq!(p.timeout["search"].duration(), ms(800));
    assert_eq!(p.retry["search"].max_attempts(), 4);
    assert_eq!(p.retry["search"].backoff(), Backoff::constant(ms(50)));
    assert_eq!(p.bulkhead["db"].max_concurrent(), 2);
    assert_eq!(p.bulkhead["db"].name(), "db");
}

#[cfg(feature = "toml")]
#[test]
fn from_path_reads_a_toml_file() {
    let file = TempFile::new("policies.toml", SMALL_TOML);
    assert_small(&Policies::from_path(file.path()).unwrap());
    assert_small(&Policies::from_toml_str(SMALL_TOML).unwrap());
    let upper = TempFile::new("POLICIES.TOML", SMALL_TOML);
    assert_small(&Policies::from_path(upper.path()).unwrap());
}

#[cfg(feature = "yaml")]
#[test]
fn from_path_reads_a_yaml_file() {
    for name in ["policies.yaml", "policies.yml"] {
        let file = TempFile::new(name, SMALL_YAML);
        assert_small(&Policies::from_path(file.path()).unwrap());
    }
    assert_small(&Policies::from_yaml_str(SMALL_YAML).unwrap());
}

#[cfg(feature = "json")]
#[test]
fn from_path_reads_a_json_file() {
    let file = TempFile::new("policies.json", SMALL_JSON);
    assert_small(&Policies::from_path(file.path()).unwrap());
    assert_small(&Policies::from_json_str(SMALL_JSON).unwrap());
}

#[test]
fn a_file_without_a_known_extension_is_refused_and_named() {
    for name in ["policies.ini", "policies", "policies.toml.bak"] {
        // Refused by its name, before it is read: it need not exist.
        let err = Policies::from_path(name).unwrap_err();
        assert_eq!(err.file(), Some(std::path::Path::new(name)), "{err}");
        assert_eq!(err.field(), "<file>", "{err}");
        assert!(err.rule().contains(".toml, .yaml, .yml or .json"), "{err}");
        assert!(err.to_string().starts_with(&format!("{name}: ")), "{err}");
    }
}

#[cfg(not(feature = "yaml"))]
#[test]
fn a_file_whose_format_is_off_says_which_feature_to_enable() {
    let err = Policies::from_path("policies.yml").unwrap_err();
    assert_eq!(err.field(), "<file>", "{err}");
    assert!(err.rule().contains("`yaml` feature"), "{err}");
    assert!(err.to_string().starts_with("policies.yml: "), "{err}");
}

#[cfg(feature = "toml")]
#[test]
fn a_missing_file_is_named() {
    let file = TempFile::new("present.toml", "");
    let missing = file.path().with_file_name("missing.toml");
    let err = Policies::from_path(&missing).unwrap_err();
    assert_eq!(err.file(), Some(missing.as_path()));
    assert_eq!((err.field(), err.rule()), ("<file>", "cannot be read"));
    assert!(
        err.to_string().starts_with(&format!(
            "{}: <file> cannot be read, got ",
            missing.display()
        )),
        "{err}"
    );
    assert!(
        Policies::from_path(file.path()).unwrap().timeout.is_empty(),
        "empty is fine"
    );
}

/// (format's file name, its text with `retry.api.backoff.factor` refused by the builder).
const BAD_FACTOR: &[(&str, &str)] = &[
    (
        "bad.toml",
        "[retry.api]\nbackoff = { kind = \"exponential\", initial = \"1s\", factor = 0.5, max = \"10s\" }\n",
    ),
    (
        "bad.yaml",
        "retry:\n  api:\n    backoff: { kind: exponential, initial: 1s, factor: 0.5, max: 10s }\n",
    ),
    (
        "bad.json",
        r#"{ "retry": { "api": { "backoff": { "kind": "exponential", "initial": "1s", "factor": 0.5, "max": "10s" } } } }"#,
    ),
];

#[test]
fn a_bad_value_in_a_file_names_the_file_and_the_key() {
    let mut checked = 0;
    for &(name, text) in BAD_FACTOR {
        let enabled = match name.rsplit('.').next() {
            Some("toml") => cfg!(feature = "toml"),
            Some("yaml") => cfg!(feature = "yaml"),
            _ => cfg!(feature = "json"),
        };
        if !enabled {
            continue;
        }
        let file = TempFile::new(name, text);
        let err = Policies::from_path(file.path()).unwrap_err();
        assert_eq!(err.file(), Some(file.path()), "{err}");
        assert_eq!(err.field(), "retry.api.backoff.factor", "{name}: {err}");
        assert_eq!(err.value(), "0.5", "{name}: {err}");
        let shown = err.to_string();
        let head = format!(
            "{}: retry.api.backoff.factor must be ",
            file.path().display()
        );
        assert!(shown.starts_with(&head), "{name}: {shown}");
        assert!(shown.ends_with(", got 0.5"), "{name}: {shown}");
        checked += 1;
    }
    let formats = [
        cfg!(feature = "toml"),
        cfg!(feature = "yaml"),
        cfg!(feature = "json"),
    ];
    assert_eq!(checked, formats.iter().filter(|&&on| on).count());
}

#[cfg(feature = "toml")]
#[test]
fn a_toml_syntax_error_is_one_short_line_with_line_and_column() {
    let text = "[timeout.search]\nduration = \"800ms\"\n[retry.api\nmax_attempts = 4\n";
    let file = TempFile::new("syntax.toml", text);
    let err = Policies::from_path(file.path()).unwrap_err();
    assert_eq!(
        (err.field(), err.rule()),
        ("<file>", "is not valid TOML"),
        "{err}"
    );
    let shown = err.to_string();
    assert!(err.value().contains("(line 3, column "), "{shown}");
    assert!(!shown.contains('\n'), "one line: {shown}");
    for line in text.lines() {
        assert!(!shown.contains(line), "no source line {line:?} in: {shown}");
    }
    assert!(shown.len() < 200, "short: {shown}");
}

#[cfg(feature = "toml")]
#[test]
fn a_toml_error_inside_a_table_is_told_once_with_its_place() {
    let err = Policies::from_toml_str("[retry.r]\nmax_atempts = 3\n").unwrap_err();
    assert_eq!(err.field(), "retry.r.max_atempts");
    assert!(err.value().contains("unknown field `max_atempts`"), "{err}");
    assert!(err.value().ends_with("(line 2, column 1)"), "{err}");
    assert!(!err.value().contains("max_atempts = 3"), "no source: {err}");
    assert_eq!(err.to_string().matches("unknown field").count(), 1, "{err}");
}

#[cfg(feature = "yaml")]
#[test]
fn a_yaml_error_is_one_line_with_its_place() {
    let err = Policies::from_yaml_str("retry:\n  r:\n    max_atempts: 3\n").unwrap_err();
    assert_eq!(err.field(), "retry.r.max_atempts", "{err}");
    assert!(err.value().contains("unknown field `max_atempts`"), "{err}");
    assert!(err.value().contains("line 3"), "{err}");
    assert!(
        !err.value().contains("retry.r"),
        "the key is told once: {err}"
    );
    let err = Policies::from_yaml_str("retry: [unclosed\n").unwrap_err();
    assert!(err.value().contains("line"), "{err}");
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[cfg(feature = "json")]
#[test]
fn json_after_the_document_is_refused() {
    let err = Policies::from_json_str(r#"{ "timeout": {} } {}"#).unwrap_err();
    assert_eq!(err.field(), "<file>", "{err}");
    assert!(err.value().contains("trailing characters"), "{err}");
}

#[cfg(all(feature = "toml", feature = "tokio"))]
#[tokio::test(start_paused = true)]
async fn a_pipeline_by_name_runs_a_call_through_its_policies() {
    use palisade::Error;

    let file = TempFile::new(
        "pipeline.toml",
        r#"
[timeout.search]
duration = "200ms"

[retry.search]
max_attempts = 3
backoff = { kind = "constant", delay = "50ms" }

[circuit_breaker.search]
trip_model = { kind = "consecutive_failures", failures = 5 }

[rate_limiter.search]
rate = 10
period = "1s"
burst = 2

[bulkhead.search]
max_concurrent = 2

[bulkhead.db]
max_concurrent = 1

[rate_limiter.quota]
rate = 1
period = "1m"
"#,
    );
    let policies = Policies::from_path(file.path()).unwrap();
    let search = policies.pipeline("search").unwrap();
    assert_eq!(search.timeout().map(|t| t.duration()), Some(ms(200)));
    assert_eq!(search.retry().map(|r| r.name()), Some("search"));
    assert_eq!(search.circuit_breaker().map(|c| c.name()), Some("search"));
    assert_eq!(search.rate_limiter().map(|l| l.name()), Some("search"));
    assert_eq!(search.bulkhead().map(|b| b.name()), Some("search"));

    let mut attempts = 0;
    let out: Result<&str, Error<&str>> = search
        .run(|| {
            attempts += 1;
            let n = attempts;
            async move {
                if n < 2 {
                    // The first attempt outlives its timeout.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok("results")
            }
        })
        .await;
    assert_eq!(out, Ok("results"));
    assert_eq!(attempts, 2);
    let retry = search.retry().unwrap().metrics();
    assert_eq!((retry.calls, retry.retries), (1, 1));

    // Each call builds new handles: nothing is shared with the first pipeline.
    let again = policies.pipeline("search").unwrap();
    assert_eq!(again.retry().unwrap().metrics().calls, 0);
    search.circuit_breaker().unwrap().isolate();
    let out: Result<&str, Error<&str>> = again.run(|| async { Ok("fresh") }).await;
    assert_eq!(out, Ok("fresh"));

    // A name with only some kinds builds the stages it has.
    let db = policies.pipeline("db").unwrap();
    assert!(db.bulkhead().is_some());
    assert!(db.retry().is_none() && db.timeout().is_none() && db.circuit_breaker().is_none());
    assert!(db.rate_limiter().is_none());

    // A rate limiter alone is a pipeline too, and it limits.
    let quota = policies.pipeline("quota").unwrap();
    assert!(quota.rate_limiter().is_some() && quota.retry().is_none());
    let first: Result<&str, Error<&str>> = quota.run(|| async { Ok("first") }).await;
    assert_eq!(first, Ok("first"));
    let second: Result<&str, Error<&str>> = quota.run(|| async { Ok("second") }).await;
    assert!(
        matches!(
            second,
            Err(Error::Rejected(palisade::Rejected::RateLimited(_)))
        ),
        "{second:?}"
    );
}

#[cfg(feature = "toml")]
#[test]
fn a_pipeline_name_that_names_no_policy_is_an_error() {
    let policies = Policies::from_toml_str(SMALL_TOML).unwrap();
    let err = policies.pipeline("serach").unwrap_err();
    assert_eq!(err.field(), "serach", "{err}");
    assert_eq!(err.value(), r#""serach""#, "{err}");
    assert!(err.rule().contains("the names are db, search"), "{err}");
    assert!(
        err.rule()
            .contains("timeout, retry, circuit_breaker, rate_limiter or bulkhead"),
        "{err}"
    );
    let only_a_limiter = Policies::from_toml_str("[rate_limiter.api]\nrate = 1\nperiod = \"1s\"")
        .unwrap()
        .pipeline("apj")
        .unwrap_err();
    assert!(
        only_a_limiter.rule().contains("the names are api"),
        "{only_a_limiter}"
    );
    let err = Policies::default().pipeline("").unwrap_err();
    assert_eq!(err.field(), r#""""#, "{err}");
    assert!(err.rule().contains("there are none"), "{err}");
}

// ===== The Redis link and the fleet-wide limits =====

#[cfg(not(feature = "redis"))]
#[test]
fn a_redis_table_without_the_feature_says_which_feature() {
    for (file, key) in [
        ("[redis]\nurl = \"redis://127.0.0.1/\"", "redis"),
        (
            "[redis_rate_limiter.api]\nrate = 5\nperiod = \"1s\"",
            "redis_rate_limiter",
        ),
        (
            "[redis_session_limiter.s]\nmax_per_key = 2",
            "redis_session_limiter",
        ),
    ] {
        let err = load_toml(file).unwrap_err();
        assert_eq!(err.field(), key, "{err}");
        assert!(err.rule().contains("`redis` feature"), "{err}");
    }
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use palisade::redis::{FailMode, RedisConfig, RedisRateLimiterConfig};

    const REDIS: &str = r#"
[redis]
url = "redis://cache.internal:6380/2"
name = "limits"
key_prefix = "shop"
round_trip_timeout = "50ms"
connect_timeout = "500ms"
breaker = { trip_model = { kind = "consecutive_failures", failures = 3 }, max_break_duration = "30s" }

[redis_rate_limiter.api]
rate = 100
period = "1s"
burst = 20
max_wait = "250ms"
fail_mode = { local = 0.25 }
local_reservation = { batch = 10, hold = "50ms" }

[redis_rate_limiter.login]
rate = 5
period = "1m"
fail_mode = "closed"

[redis_session_limiter.sessions]
max_per_key = 3
lease_ttl = "10s"
fail_mode = "open"

[redis_session_limiter.exports]
max_per_key = 1
"#;

    #[test]
    fn redis_tables_read_into_the_configs_they_say() {
        let p = load_toml(REDIS).unwrap();

        let link = p.redis.as_ref().expect("a [redis] table");
        assert_eq!(link.url(), "redis://cache.internal:6380/2");
        assert_eq!(
            (link.name(), link.key_prefix()),
            ("limits", "shop"),
            "the breaker reports as the link"
        );
        assert_eq!(
            (link.round_trip_timeout(), link.connect_timeout()),
            (ms(50), ms(500))
        );
        let breaker = link.breaker();
        assert_eq!(breaker.trip_model(), TripModel::ConsecutiveFailures(3));
        assert_eq!(
            breaker.break_duration(),
            palisade::redis::DEFAULT_BREAKER_BREAK,
            "a breaker table starts from the link's defaults, not a plain breaker's"
        );
        assert_eq!(breaker.max_break_duration(), Duration::from_secs(30));

        let api = &p.redis_rate_limiter["api"];
        let limit = api.limit();
        assert_eq!(limit.name(), "api", "named by its key, as in Redis's keys");
        assert_eq!(
            (
                limit.count(),
                limit.period(),
                limit.burst(),
                limit.max_wait()
            ),
            (100, Duration::from_secs(1), 20, ms(250))
        );
        assert_eq!(api.fail_mode(), FailMode::Local { share: 0.25 });
        assert_eq!(api.reservation(), Some((10, ms(50))));
        let login = &p.redis_rate_limiter["login"];
        assert_eq!(
            (login.fail_mode(), login.reservation()),
            (FailMode::Closed, None)
        );

        let sessions = &p.redis_session_limiter["sessions"];
        assert_eq!(
            (
                sessions.name(),
                sessions.max_per_key(),
                sessions.lease_ttl(),
                sessions.fail_mode()
            ),
            ("sessions", 3, Duration::from_secs(10), FailMode::Open)
        );
        let exports = &p.redis_session_limiter["exports"];
        assert_eq!(
            (exports.lease_ttl(), exports.fail_mode()),
            (palisade::redis::DEFAULT_LEASE_TTL, FailMode::Open),
            "absent keys take the builder's defaults"
        );
    }

    #[test]
    fn a_link_without_a_breaker_table_gets_the_links_defaults() {
        let p = load_toml("[redis]\nurl = \"redis://127.0.0.1/\"").unwrap();
        let link = p.redis.unwrap();
        assert_eq!(link.name(), palisade::redis::DEFAULT_LINK_NAME);
        assert_eq!(link.key_prefix(), palisade::redis::DEFAULT_KEY_PREFIX);
        assert_eq!(
            link.round_trip_timeout(),
            palisade::redis::DEFAULT_ROUND_TRIP_TIMEOUT
        );
        assert_eq!(
            link.breaker().trip_model(),
            TripModel::ConsecutiveFailures(palisade::redis::DEFAULT_BREAKER_FAILURES)
        );
        assert_eq!(
            link.breaker().break_duration(),
            palisade::redis::DEFAULT_BREAKER_BREAK
        );
    }

    #[test]
    fn redis_tables_round_trip_through_toml_and_json() {
        let first = load_toml(REDIS).unwrap();
        let as_toml = toml::to_string(&first).unwrap();
        let again = load_toml(&as_toml).unwrap();
        assert_eq!(
            toml::to_string(&again).unwrap(),
            as_toml,
            "stable through TOML"
        );
        let as_json = serde_json::to_string(&first).unwrap();
        let from_json = load_json(&as_json).unwrap();
        assert_eq!(
            toml::to_string(&from_json).unwrap(),
            as_toml,
            "stable through JSON"
        );

        let link = again.redis.as_ref().unwrap();
        assert_eq!((link.name(), link.breaker().name()), ("limits", "limits"));
        assert_eq!(link.breaker().max_break_duration(), Duration::from_secs(30));
        let api = &again.redis_rate_limiter["api"];
        assert_eq!(api.fail_mode(), FailMode::Local { share: 0.25 });
        assert_eq!(api.reservation(), Some((10, ms(50))));
        assert_eq!(api.limit().max_wait(), ms(250));
        assert_eq!(again.redis_session_limiter["sessions"].max_per_key(), 3);
        for line in [
            "fail_mode = \"closed\"",
            "url = \"redis://cache.internal:6380/2\"",
        ] {
            assert!(as_toml.contains(line), "{line}:\n{as_toml}");
        }
    }

    #[test]
    fn one_redis_config_deserializes_through_its_builder() {
        let limit: RedisRateLimiterConfig = serde_json::from_str(
            r#"{ "rate": 10, "period": "1s", "fail_mode": { "local": 0.5 } }"#,
        )
        .unwrap();
        assert_eq!(limit.fail_mode(), FailMode::Local { share: 0.5 });
        assert_eq!(
            limit.limit().name(),
            palisade::rate_limiter::DEFAULT_NAME,
            "the plain default name"
        );
        let err = serde_json::from_str::<RedisConfig>(
            r#"{ "url": "redis://h/", "round_trip_timeout": "0s" }"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("round_trip_timeout"), "{err}");
        let link: RedisConfig = serde_json::from_str(r#"{ "url": "redis://h/" }"#).unwrap();
        let json = serde_json::to_string(&link).unwrap();
        let again: RedisConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&again).unwrap(), json);
    }

    /// Every Redis rule, from a file: (the file, the field the error must name).
    const BAD: &[(&str, &str)] = &[
        // The link.
        ("[redis]\nkey_prefix = \"x\"", "redis.url"),
        ("[redis]\nurl = \"http://example.com/\"", "redis.url"),
        ("[redis]\nurl = 6379", "redis.url"),
        (
            "[redis]\nurl = \"redis://h/\"\nurl_env = \"REDIS_URL\"",
            "redis.url_env",
        ),
        (
            "[redis]\nurl_env = \"PALISADE_TEST_SURELY_UNSET_VARIABLE\"",
            "redis.url_env",
        ),
        ("[redis]\nurl_env = \"\"", "redis.url_env"),
        ("[redis]\nurl = \"redis://:***@h/\"", "redis.url"),
        (
            "[redis]\nurl = \"redis://h/\"\nround_trip_timeout = \"0s\"",
            "redis.round_trip_timeout",
        ),
        (
            "[redis]\nurl = \"redis://h/\"\nround_trip_timeout = \"2m\"",
            "redis.round_trip_timeout",
        ),
        (
            "[redis]\nurl = \"redis://h/\"\nround_trip_timeout = \"soon\"",
            "redis.round_trip_timeout",
        ),
        (
            "[redis]\nurl = \"redis://h/\"\nconnect_timeout = \"0s\"",
            "redis.connect_timeout",
        ),
        (
            "[redis]\nurl = \"redis://h/\"\nkey_prefix = \"\"",
            "redis.key_prefix",
        ),
        ("[redis]\nurl = \"redis://h/\"\nname = \" \"", "redis.name"),
        (
            "[redis]\nurl = \"redis://h/\"\nname = \" \"\nbreaker = { break_duration = \"1s\" }",
            "redis.name",
        ),
        (
            "[redis]\nurl = \"redis://h/\"\nbreaker = { break_duration = \"0s\" }",
            "redis.breaker.break_duration",
        ),
        (
            "[redis]\nurl = \"redis://h/\"\nbreaker = { trip_model = { kind = \"consecutive_failures\", failures = 0 } }",
            "redis.breaker.trip_model.failures",
        ),
        (
            "[redis]\nurl = \"redis://h/\"\nname = \"a\"\nbreaker = { name = \"b\" }",
            "redis.breaker.name",
        ),
        (
            "[redis]\nurl = \"redis://h/\"\nbreaker = { brake_duration = \"1s\" }",
            "redis.breaker.brake_duration",
        ),
        ("[redis]\nurl = \"redis://h/\"\nurls = \"x\"", "redis.urls"),
        ("[redis.main]\nurl = \"redis://h/\"", "redis.main"),
        ("redis = \"redis://h/\"", "redis"),
        // The rate limit: the in-process limiter's keys and rules, then Redis's own.
        (
            "[redis_rate_limiter.api]\nburst = 3",
            "redis_rate_limiter.api.rate",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 3",
            "redis_rate_limiter.api.period",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 3\nperiod = \"1s\"\nburst = 0",
            "redis_rate_limiter.api.burst",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 3\nperiod = \"1s\"\nmax_wait = \"25h\"",
            "redis_rate_limiter.api.max_wait",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 2000000\nperiod = \"1s\"",
            "redis_rate_limiter.api.rate",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 3\nperiod = \"1s\"\nfail_mode = { local = 1.5 }",
            "redis_rate_limiter.api.fail_mode",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 3\nperiod = \"1s\"\nfail_mode = { local = nan }",
            "redis_rate_limiter.api.fail_mode",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 3\nperiod = \"1s\"\nfail_mode = \"sometimes\"",
            "redis_rate_limiter.api.fail_mode",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 3\nperiod = \"1s\"\nfail_mode = \"local\"",
            "redis_rate_limiter.api.fail_mode.local",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 30\nperiod = \"1s\"\nlocal_reservation = { batch = 1, hold = \"50ms\" }",
            "redis_rate_limiter.api.local_reservation.batch",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 30\nperiod = \"1s\"\nburst = 5\nlocal_reservation = { batch = 10, hold = \"50ms\" }",
            "redis_rate_limiter.api.local_reservation.batch",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 30\nperiod = \"1s\"\nlocal_reservation = { batch = 10, hold = \"0s\" }",
            "redis_rate_limiter.api.local_reservation.hold",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 30\nperiod = \"1s\"\nlocal_reservation = { batch = 10, hold = \"2m\" }",
            "redis_rate_limiter.api.local_reservation.hold",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 30\nperiod = \"1s\"\nlocal_reservation = { batch = 10 }",
            "redis_rate_limiter.api.local_reservation",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 3\nperiod = \"1s\"\nname = \" \"",
            "redis_rate_limiter.api.name",
        ),
        (
            "[redis_rate_limiter.api]\nrate = 3\nper = \"1s\"",
            "redis_rate_limiter.api.per",
        ),
        (
            "[redis_rate_limiter.\"\"]\nrate = 3\nperiod = \"1s\"",
            "redis_rate_limiter.\"\"",
        ),
        // The session limit.
        (
            "[redis_session_limiter.s]\nlease_ttl = \"10s\"",
            "redis_session_limiter.s.max_per_key",
        ),
        (
            "[redis_session_limiter.s]\nmax_per_key = 0",
            "redis_session_limiter.s.max_per_key",
        ),
        (
            "[redis_session_limiter.s]\nmax_per_key = 2\nlease_ttl = \"10ms\"",
            "redis_session_limiter.s.lease_ttl",
        ),
        (
            "[redis_session_limiter.s]\nmax_per_key = 2\nfail_mode = { local = 0 }",
            "redis_session_limiter.s.fail_mode",
        ),
        (
            "[redis_session_limiter.s]\nmax_per_key = 2\nmax_per_user = 2",
            "redis_session_limiter.s.max_per_user",
        ),
    ];

    #[test]
    fn every_redis_rule_is_reachable_from_a_file_and_names_the_key() {
        let mut wrong = Vec::new();
        for &(file, field) in BAD {
            match load_toml(file) {
                Ok(_) => wrong.push(format!("{file:?} loaded")),
                Err(e) if e.field() != field => wrong.push(format!(
                    "{file:?}: named {:?} ({e}), want {field:?}",
                    e.field()
                )),
                Err(e) => assert!(!e.rule().is_empty(), "{e}"),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn a_missing_url_env_names_the_variable() {
        let err =
            load_toml("[redis]\nurl_env = \"PALISADE_TEST_SURELY_UNSET_VARIABLE\"").unwrap_err();
        assert_eq!(err.field(), "redis.url_env");
        assert!(err.rule().contains("set"), "{err}");
        assert_eq!(err.value(), "\"PALISADE_TEST_SURELY_UNSET_VARIABLE\"");
    }

    const SECRET: &str = "hunter2";

    /// A `[redis]` table with a password and one bad line.
    fn with_password(bad: &str) -> String {
        format!("[redis]\nurl = \"redis://ops:{SECRET}@cache.internal:6379/0\"\n{bad}\n")
    }

    #[test]
    fn a_password_in_the_url_is_in_no_error_debug_or_serialized_form() {
        let mut files: Vec<String> = [
            "round_trip_timeout = \"0s\"",
            "round_trip_timeout = 5",
            "connect_timeout = \"fast\"",
            "key_prefix = \"\"",
            "name = \" \"",
            "breaker = { break_duration = \"0s\" }",
            "url_env = \"REDIS_URL\"",
            "urll = \"redis://ops:hunter2@cache.internal/\"",
            "[redis_rate_limiter.api]\nrate = 0\nperiod = \"1s\"",
            "key_prefix = \"unterminated",
            "breaker = \"redis://ops:hunter2@cache.internal/\"",
        ]
        .iter()
        .map(|bad| with_password(bad))
        .collect();
        files.push(format!("[redis]\nurl = \"mysql://root:{SECRET}@db/\"\n"));
        files.push(format!(
            "[redis]\nurl = \"redis://{SECRET}@db/\"\nname = \"\"\n"
        ));
        files.push(format!("[redis]\nurl = \"redis://:{SECRET}@db\n"));
        for file in &files {
            let mut errors = Vec::new();
            if toml::Deserializer::parse(file).is_ok() {
                // `toml`'s own messages quote the line they failed on.
                errors.push(load_toml(file).err());
            }
            #[cfg(feature = "toml")]
            errors.push(Policies::from_toml_str(file).err());
            for err in errors {
                let err = err.unwrap_or_else(|| panic!("{file:?} loaded"));
                assert!(
                    !err.to_string().contains(SECRET) && !format!("{err:?}").contains(SECRET),
                    "{file:?}: {err}"
                );
            }
        }

        let file = with_password("round_trip_timeout = \"20ms\"");
        let policies = load_toml(&file).unwrap();
        assert!(!format!("{policies:?}").contains(SECRET), "{policies:?}");
        assert!(format!("{policies:?}").contains("redis://ops:***@cache.internal:6379/0"));
        let as_toml = toml::to_string(&policies).unwrap();
        let as_json = serde_json::to_string(&policies).unwrap();
        for text in [&as_toml, &as_json] {
            assert!(!text.contains(SECRET), "{text}");
            assert!(
                text.contains("redis://ops:***@cache.internal:6379/0"),
                "{text}"
            );
        }
        // A serialized URL, redacted, is refused rather than sent as the password `***`.
        let err = load_toml(&as_toml).unwrap_err();
        assert_eq!(err.field(), "redis.url", "{err}");
        assert!(err.rule().contains("redacted"), "{err}");
    }

    #[cfg(all(feature = "yaml", feature = "json"))]
    #[test]
    fn a_password_is_in_no_yaml_or_json_error() {
        let yaml = format!("redis:\n  url: \"redis://:{SECRET}@h/\"\n  round_trip_timeout: 5\n");
        let json = format!(
            r#"{{ "redis": {{ "url": "redis://:{SECRET}@h/", "connect_timeout": "0s" }} }}"#
        );
        for err in [
            Policies::from_yaml_str(&yaml).unwrap_err(),
            Policies::from_json_str(&json).unwrap_err(),
            Policies::from_yaml_str(&format!("redis:\n  url: redis://:{SECRET}@h/\n url2: x\n"))
                .unwrap_err(),
            Policies::from_yaml_str(&format!(
                "redis:\n  url: redis://:{SECRET}@h/\n  breaker: redis://:{SECRET}@h/\n"
            ))
            .unwrap_err(),
        ] {
            assert!(!err.to_string().contains(SECRET), "{err}");
        }
    }

    /// The child's half of [`url_env_is_read_at_load_and_written_back_unchanged`].
    const URL_VARIABLE: &str = "PALISADE_CONFIG_TEST_REDIS_URL";

    /// Reads a URL from the environment: in a child process of this test binary, started with
    /// the variable set, since setting this process's environment races with other tests.
    #[test]
    fn url_env_is_read_at_load_and_written_back_unchanged() {
        let Ok(url) = std::env::var(URL_VARIABLE) else {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "redis::url_env_is_read_at_load_and_written_back_unchanged",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(URL_VARIABLE, format!("redis://:{SECRET}@10.1.2.3:6390/4"))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("1 passed"),
                "the child ran the test: {stdout}"
            );
            return;
        };
        assert!(url.contains(SECRET));
        let file = format!("[redis]\nurl_env = \"{URL_VARIABLE}\"\nkey_prefix = \"shop\"\n");
        let policies = load_toml(&file).unwrap();
        let link = policies.redis.as_ref().unwrap();
        assert_eq!(link.url(), "redis://:***@10.1.2.3:6390/4");
        assert!(!format!("{policies:?}").contains(SECRET));

        let as_toml = toml::to_string(&policies).unwrap();
        assert!(
            as_toml.contains(&format!("url_env = \"{URL_VARIABLE}\"")),
            "{as_toml}"
        );
        assert!(
            !as_toml.contains("url ="),
            "the URL is not written: {as_toml}"
        );
        assert!(!as_toml.contains(SECRET), "{as_toml}");
        let again = load_toml(&as_toml).unwrap();
        assert_eq!(again.redis.unwrap().url(), link.url(), "read again");
        assert_eq!(
            toml::to_string(&load_toml(&as_toml).unwrap()).unwrap(),
            as_toml
        );

        // A variable holding something other than a Redis URL is named, its value redacted.
        let err = load_toml(&format!(
            "[redis]\nurl_env = \"{URL_VARIABLE}\"\nname = \" \"\n"
        ))
        .unwrap_err();
        assert_eq!(err.field(), "redis.name", "{err}");
    }
}

/// A name written twice under one kind is two policies for one name: JSON and YAML maps
/// would keep the last silently (TOML refuses it as a duplicate key), so the first, maybe
/// the one meant, would be dropped without a word. Found by feeding each format duplicate
/// sections (`probe/config`).
#[cfg(all(feature = "json", feature = "yaml"))]
#[test]
fn a_policy_named_twice_under_one_kind_is_refused_in_every_format() {
    let kinds = [
        ("timeout", r#"{"duration":"1s"}"#, r#"{"duration":"2s"}"#),
        ("retry", r#"{"max_attempts":2}"#, r#"{"max_attempts":3}"#),
        (
            "circuit_breaker",
            r#"{"break_duration":"1s"}"#,
            r#"{"break_duration":"2s"}"#,
        ),
        (
            "rate_limiter",
            r#"{"rate":3,"period":"1s"}"#,
            r#"{"rate":5,"period":"1s"}"#,
        ),
        (
            "bulkhead",
            r#"{"max_concurrent":1}"#,
            r#"{"max_concurrent":2}"#,
        ),
    ];
    for (kind, first, second) in kinds {
        let json = format!(r#"{{"{kind}":{{"api":{first},"api":{second}}}}}"#);
        // JSON is YAML too; a block mapping as well, to be sure of the YAML reader's own path.
        let yaml = format!("{kind}:\n  api: {first}\n  api: {second}\n");
        for (format, result) in [
            ("json", Policies::from_json_str(&json)),
            ("yaml", Policies::from_yaml_str(&yaml)),
        ] {
            let err = match result {
                Ok(p) => panic!("{format} {kind}: a duplicate name loaded: {p:?}"),
                Err(e) => e,
            };
            assert_eq!(err.field(), format!("{kind}.api"), "{format}: {err}");
            assert!(err.value().contains("api"), "{format}: {err}");
            assert!(err.value().contains("more than once"), "{format}: {err}");
        }
    }
    // The same name under two kinds is one pipeline, not a duplicate.
    let p = Policies::from_json_str(
        r#"{"timeout":{"api":{"duration":"1s"}},"retry":{"api":{"max_attempts":2}}}"#,
    )
    .unwrap();
    assert!(p.pipeline("api").is_ok());
}

/// A rate limiter built in code, written out in each format and read back, is the same
/// config and admits the same calls at the same instants: odd periods (not a whole number
/// of milliseconds, not divisible by the count), a default burst, the largest burst and a
/// burst above the rate.
#[cfg(all(
    feature = "test-util",
    feature = "json",
    feature = "yaml",
    feature = "toml"
))]
#[test]
fn a_rate_limiter_round_trips_through_every_format_with_the_same_admissions() {
    use palisade::clock::FakeClock;
    use palisade::rate_limiter::{RateLimiter, RateLimiterConfig};

    let configs = [
        RateLimiterConfig::builder()
            .name("odd")
            .rate(7, Duration::from_nanos(1_000_000_003))
            .build(),
        RateLimiterConfig::builder()
            .name("llm")
            .rate(50, Duration::from_secs(60))
            .burst(10)
            .max_wait(Duration::from_millis(1500))
            .build(),
        RateLimiterConfig::builder()
            .name("bursty")
            .rate(3, Duration::from_secs(1))
            .burst(20)
            .build(),
        RateLimiterConfig::builder()
            .name("huge")
            .rate(u32::MAX, Duration::from_secs(24 * 60 * 60))
            .build(),
    ];
    for config in configs {
        let config = config.unwrap();
        let mut policies = Policies::default();
        policies
            .rate_limiter
            .insert(config.name().to_owned(), config.clone());
        let toml = toml::to_string(&policies).unwrap();
        let json = serde_json::to_string(&policies).unwrap();
        let yaml = serde_norway::to_string(&policies).unwrap();
        for (format, again) in [
            ("toml", Policies::from_toml_str(&toml)),
            ("json", Policies::from_json_str(&json)),
            ("yaml", Policies::from_yaml_str(&yaml)),
        ] {
            let again = again.unwrap_or_else(|e| panic!("{format}: {e}"));
            let back = &again.rate_limiter[config.name()];
            assert_eq!(
                (back.name(), back.count(), back.period(), back.burst()),
                (
                    config.name(),
                    config.count(),
                    config.period(),
                    config.burst()
                ),
                "{format}"
            );
            assert_eq!(back.max_wait(), config.max_wait(), "{format}");

            let clock = FakeClock::new();
            let timer = |_: Duration| std::future::ready(());
            let a = RateLimiter::with_timer_and_clock(config.clone(), timer, clock.clone());
            let b = RateLimiter::with_timer_and_clock(back.clone(), timer, clock.clone());
            // Drain, then step by a fraction of the emission interval so that every
            // admission edge is crossed.
            let step = config.period() / config.count() / 3 + Duration::from_nanos(1);
            let mut admitted = 0u32;
            for i in 0..3 * config.burst().min(64) + 200 {
                let (x, y) = (a.try_acquire().is_ok(), b.try_acquire().is_ok());
                assert_eq!(x, y, "{format} {}: call {i} differs", config.name());
                admitted += u32::from(x);
                if i >= config.burst().min(64) {
                    clock.advance(step);
                }
            }
            assert!(admitted > 0, "{format} {}: nothing admitted", config.name());
        }
    }
}
