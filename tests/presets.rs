//! Every preset's values, read back through the handles its pipeline holds, and one preset
//! pipeline at work under paused time.

use std::time::Duration;

use palisade::circuit_breaker::{CircuitState, TripModel};
use palisade::presets::{PRESET_BREAK, PRESET_BUDGET, Preset};
use palisade::retry::{Backoff, Jitter};
use palisade::{Error, Rejected};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the seed table asks of a preset, in the crate's terms.
struct Expected {
    attempts: u32,
    /// The attempts' worst case, worked out by hand from the seed table.
    deadline: Duration,
    backoff: Backoff,
    breaker: Option<(u32, Duration)>,
    timeout: Duration,
    concurrent: Option<u32>,
    /// Calls a minute, burst, longest wait for a turn.
    limit: Option<(u32, u32, Duration)>,
}

fn check(name: &'static str, preset: Preset, want: Expected) {
    let pipeline = preset.build(name).unwrap();

    let retry = pipeline.retry().expect("every preset retries").config();
    assert_eq!(retry.max_attempts(), want.attempts, "{name}: attempts");
    assert_eq!(
        retry.backoff(),
        want.backoff.jitter(Jitter::Equal),
        "{name}: backoff"
    );
    assert_eq!(retry.budget(), Some(PRESET_BUDGET), "{name}: budget");
    assert_eq!(retry.deadline(), Some(want.deadline), "{name}: deadline");
    assert_eq!(retry.name(), name);

    let timeout = pipeline.timeout().expect("every preset has a timeout");
    assert_eq!(timeout.duration(), want.timeout, "{name}: timeout");
    assert_eq!(timeout.name(), name);

    match (pipeline.circuit_breaker(), want.breaker) {
        (Some(b), Some((failures, duration))) => {
            let c = b.config();
            assert_eq!(
                c.trip_model(),
                TripModel::FailuresWithin {
                    failures,
                    duration,
                    buckets: 10
                },
                "{name}: trip model"
            );
            assert_eq!(c.break_duration(), PRESET_BREAK, "{name}: break");
            assert_eq!(b.state(), CircuitState::Closed);
            assert_eq!(b.name(), name);
        }
        (None, None) => {}
        (got, want) => panic!(
            "{name}: breaker {:?}, want {want:?}",
            got.map(|b| b.config())
        ),
    }

    match (pipeline.rate_limiter(), want.limit) {
        (Some(l), Some((count, burst, max_wait))) => {
            let c = l.config();
            assert_eq!(
                (c.count(), c.period(), c.burst(), c.max_wait()),
                (count, secs(60), burst, max_wait),
                "{name}: rate limiter"
            );
            assert_eq!(l.name(), name);
        }
        (None, None) => {}
        (got, want) => panic!(
            "{name}: rate limiter {:?}, want {want:?}",
            got.map(|l| l.config())
        ),
    }

    match (pipeline.bulkhead(), want.concurrent) {
        (Some(b), Some(n)) => {
            assert_eq!(b.config().max_concurrent(), n, "{name}: concurrency");
            assert_eq!(b.config().max_queue(), 0, "{name}: fails fast");
            assert_eq!(b.name(), name);
        }
        (None, None) => {}
        (got, want) => panic!(
            "{name}: bulkhead {:?}, want {want:?}",
            got.map(|b| b.config())
        ),
    }
}

#[tokio::test]
async fn llm_api() {
    check(
        "llm",
        Preset::llm_api(),
        Expected {
            attempts: 4,
            // Each attempt may wait 30 s for its turn and take 30 s; three delays of 30 s.
            deadline: secs(4 * (30 + 30) + 3 * 30),
            backoff: Backoff::exponential(secs(2), 2.0, secs(30)),
            breaker: Some((5, secs(30))),
            timeout: secs(30),
            concurrent: Some(10),
            limit: Some((50, 10, secs(30))),
        },
    );
}

#[tokio::test]
async fn database() {
    check(
        "db",
        Preset::database(),
        Expected {
            attempts: 3,
            deadline: secs(3 * 5 + 2),
            backoff: Backoff::linear(ms(100), ms(100), secs(1)),
            breaker: None,
            timeout: secs(5),
            concurrent: None,
            limit: None,
        },
    );
}

#[tokio::test]
async fn external_api() {
    check(
        "api",
        Preset::external_api(),
        Expected {
            attempts: 4,
            deadline: secs(4 * 10 + 3 * 10),
            backoff: Backoff::exponential(secs(1), 2.0, secs(10)),
            breaker: Some((3, secs(60))),
            timeout: secs(10),
            concurrent: Some(5),
            limit: None,
        },
    );
}

#[tokio::test]
async fn message_queue() {
    check(
        "mq",
        Preset::message_queue(),
        Expected {
            attempts: 6,
            deadline: secs(6 * 5 + 5 * 10),
            backoff: Backoff::exponential(ms(200), 2.0, secs(10)),
            breaker: Some((10, secs(60))),
            timeout: secs(5),
            concurrent: Some(20),
            limit: None,
        },
    );
}

#[tokio::test]
async fn the_deadline_follows_changed_values_unless_turned_off() {
    let mut preset = Preset::external_api();
    preset.timeout = preset.timeout.duration(secs(3));
    preset.retry = preset.retry.max_attempts(2);
    let pipeline = preset.clone().build("api").unwrap();
    assert_eq!(
        pipeline.retry().unwrap().config().deadline(),
        Some(secs(2 * 3 + 10)),
        "two attempts of 3 s and one delay of at most 10 s"
    );

    preset.worst_case_deadline = false;
    preset.retry = preset.retry.deadline(secs(1));
    let pipeline = preset.build("api").unwrap();
    assert_eq!(pipeline.retry().unwrap().config().deadline(), Some(secs(1)));
}

#[tokio::test]
async fn a_changed_value_is_validated_and_named_by_section() {
    let mut preset = Preset::llm_api();
    preset.retry = preset.retry.max_attempts(0);
    let err = preset.build("llm").unwrap_err();
    assert_eq!(err.field(), "retry.max_attempts");

    let mut preset = Preset::external_api();
    preset.bulkhead = preset.bulkhead.map(|b| b.max_concurrent(0));
    assert_eq!(
        preset.build("api").unwrap_err().field(),
        "bulkhead.max_concurrent"
    );

    assert_eq!(
        Preset::database().build(" ").unwrap_err().field(),
        "retry.name"
    );

    let mut preset = Preset::llm_api();
    preset.rate_limiter = preset.rate_limiter.map(|l| l.burst(0));
    assert_eq!(
        preset.build("llm").unwrap_err().field(),
        "rate_limiter.burst"
    );
}

#[tokio::test]
async fn the_deadline_counts_the_limiters_wait_only_with_a_limiter() {
    let mut preset = Preset::llm_api();
    preset.rate_limiter = preset.rate_limiter.map(|l| l.max_wait(secs(5)));
    let pipeline = preset.clone().build("llm").unwrap();
    assert_eq!(
        pipeline.retry().unwrap().config().deadline(),
        Some(secs(4 * (30 + 5) + 3 * 30))
    );
    preset.rate_limiter = None;
    let pipeline = preset.build("llm").unwrap();
    assert!(pipeline.rate_limiter().is_none());
    assert_eq!(
        pipeline.retry().unwrap().config().deadline(),
        Some(secs(4 * 30 + 3 * 30))
    );
}

#[tokio::test(start_paused = true)]
async fn llm_api_preset_keeps_to_its_quota_and_waits_for_turns() {
    let pipeline = Preset::llm_api().build("llm").unwrap();
    let started = tokio::time::Instant::now();
    // A burst of 10 goes at once (one after the other, so the bulkhead of 10 is never full).
    for n in 0..10 {
        let out: Result<u32, Error<&str>> = pipeline.run(|| async move { Ok(n) }).await;
        assert_eq!(out, Ok(n));
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Then one every 60 s / 50 = 1.2 s, each waiting for its turn.
    for n in 10..13 {
        let out: Result<u32, Error<&str>> = pipeline.run(|| async move { Ok(n) }).await;
        assert_eq!(out, Ok(n));
    }
    assert_eq!(started.elapsed(), ms(3 * 1200));
    let m = pipeline.rate_limiter().unwrap().metrics();
    assert_eq!((m.admitted, m.limited), (13, 0));
}

#[tokio::test(start_paused = true)]
async fn external_api_preset_retries_then_its_breaker_stops_the_retries() {
    let pipeline = Preset::external_api().build("api").unwrap();
    let started = tokio::time::Instant::now();

    // One failure then a success: retried once, after an equal-jittered delay in [0.5 s, 1 s].
    let mut calls = 0;
    let out: Result<u32, Error<&str>> = pipeline
        .run(|| {
            calls += 1;
            let n = calls;
            async move {
                if n == 1 {
                    Err(Error::Inner("503"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    assert_eq!(out, Ok(2));
    let waited = started.elapsed();
    assert!((ms(500)..=secs(1)).contains(&waited), "waited {waited:?}");

    // Always failing: the breaker (3 failures in 60 s; one is already counted) opens on the
    // third failure, and the retry does not retry the rejection that follows.
    let mut calls = 0;
    let out: Result<u32, Error<&str>> = pipeline
        .run(|| {
            calls += 1;
            async { Err(Error::Inner("503")) }
        })
        .await;
    assert_eq!(calls, 2, "two more failures open the breaker");
    assert!(
        matches!(out, Err(Error::Rejected(Rejected::CircuitOpen(_)))),
        "{out:?}"
    );
    assert_eq!(
        pipeline.circuit_breaker().unwrap().state(),
        CircuitState::Open
    );
}

/// A lower tier's rate set over the LLM preset, as its docs show, keeps to its quota: the
/// preset's burst of 10 follows a rate below it (with `burst(10)` fixed, a rate of 5 a
/// minute kept a burst of 10, twice the quota), and an explicit burst still wins.
#[tokio::test(start_paused = true)]
async fn a_lowered_llm_rate_keeps_its_burst_within_the_quota() {
    let lowered = |preset: Preset| preset.build("small-tier").unwrap();
    let mut preset = Preset::llm_api();
    preset.rate_limiter = preset.rate_limiter.map(|l| l.rate(5, secs(60)));
    let config = lowered(preset).rate_limiter().unwrap().config().clone();
    assert_eq!((config.count(), config.burst()), (5, 5));

    let mut preset = Preset::llm_api();
    preset.rate_limiter = preset.rate_limiter.map(|l| l.rate(1000, secs(60)));
    let config = lowered(preset).rate_limiter().unwrap().config().clone();
    assert_eq!((config.count(), config.burst()), (1000, 10));

    let mut preset = Preset::llm_api();
    preset.rate_limiter = preset.rate_limiter.map(|l| l.rate(5, secs(60)).burst(3));
    let config = lowered(preset).rate_limiter().unwrap().config().clone();
    assert_eq!((config.count(), config.burst()), (5, 3));
}
