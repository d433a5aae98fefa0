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
            deadline: secs(4 * 30 + 3 * 30),
            backoff: Backoff::exponential(secs(2), 2.0, secs(30)),
            breaker: Some((5, secs(30))),
            timeout: secs(30),
            concurrent: Some(10),
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
