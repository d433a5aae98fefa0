//! Retry on both surfaces, with paused tokio time.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::error::{BulkheadFull, CircuitOpen, FullCause};
use palisade::retry::{
    Backoff, GiveUp, Jitter, Retry, RetryBudget, RetryConfigBuilder, RetryLayer,
};
use palisade::telemetry::{Event, EventKind};
use palisade::{Outcome, Rejected};
use proptest::prelude::*;
use support::AppError;
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready, task};
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_test::{assert_request_eq, mock};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Log = Arc<Mutex<Vec<EventKind>>>;

/// A retry built from `b`, with every event it reports logged.
fn logged(b: RetryConfigBuilder) -> (Retry, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let retry = Retry::new(
        b.name("api")
            .listener(move |e: &Event| seen.lock().unwrap().push(e.kind()))
            .build()
            .unwrap(),
    );
    // The tests look at what calls report, not at the handle's `Created`.
    log.lock().unwrap().clear();
    (retry, log)
}

/// Runs a call that fails `failures` times, then succeeds; returns the result and the times
/// (since the start) at which each attempt began.
async fn flaky(retry: &Retry, failures: u32) -> (Result<u32, AppError>, Vec<Duration>) {
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let out = retry
        .run_with_attempt(|n| {
            times.lock().unwrap().push(start.elapsed());
            async move {
                if n <= failures {
                    Err(AppError::Backend("down"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    (out, times.into_inner().unwrap())
}

fn gave_up(log: &Log) -> Option<GiveUp> {
    log.lock().unwrap().iter().find_map(|e| match e {
        EventKind::RetryGaveUp { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[tokio::test(start_paused = true)]
async fn each_backoff_gives_its_exact_delays() {
    let cases = [
        (Backoff::constant(ms(50)), [0, 50, 100, 150]),
        (
            Backoff::linear(ms(100), ms(50), ms(1000)),
            [0, 100, 250, 450],
        ),
        (
            Backoff::exponential(ms(100), 2.0, ms(300)),
            [0, 100, 300, 600],
        ),
    ];
    for (backoff, starts) in cases {
        let (retry, log) = logged(Retry::builder().max_attempts(4).backoff(backoff));
        let (out, times) = flaky(&retry, 10).await;
        assert_eq!(
            out,
            Err(AppError::Backend("down")),
            "the last error, unchanged"
        );
        assert_eq!(times, starts.map(ms), "{backoff:?}");
        assert_eq!(gave_up(&log), Some(GiveUp::AttemptsExhausted));
        let scheduled: Vec<_> = log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                EventKind::RetryScheduled { attempt, delay } => Some((*attempt, *delay)),
                _ => None,
            })
            .collect();
        let want: Vec<_> = (1..4)
            .map(|i| (i as u32 + 1, starts[i] - starts[i - 1]))
            .map(|(a, d)| (a, ms(d)))
            .collect();
        assert_eq!(scheduled, want);
    }
}

#[tokio::test(start_paused = true)]
async fn a_success_returns_at_once_and_reports_the_attempts() {
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(5)
            .backoff(Backoff::constant(ms(10))),
    );
    let (out, times) = flaky(&retry, 2).await;
    assert_eq!(out, Ok(3));
    assert_eq!(times.len(), 3);
    assert!(
        log.lock()
            .unwrap()
            .contains(&EventKind::RetrySucceeded { attempts: 3 })
    );
    log.lock().unwrap().clear();
    let (out, _) = flaky(&retry, 0).await;
    assert_eq!(out, Ok(1));
    assert!(
        log.lock().unwrap().is_empty(),
        "a first-attempt success reports nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_stays_within_bounds_and_repeats() {
    let backoff = Backoff::exponential(ms(100), 2.0, ms(1600));
    for jitter in [
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
        Jitter::Proportional(0.5),
    ] {
        let (retry, _) = logged(
            Retry::builder()
                .max_attempts(8)
                .seed(5)
                .backoff(backoff.jitter(jitter)),
        );
        let (_, a) = flaky(&retry, 10).await;
        let (retry2, _) = retry_with_seed(backoff.jitter(jitter), 5);
        let (_, b) = flaky(&retry2, 10).await;
        assert_eq!(a, b, "{jitter:?}: same seed, same delays");
        for (i, pair) in a.windows(2).enumerate() {
            let delay = pair[1] - pair[0];
            let base = ms(100 * (1 << i)).min(ms(1600));
            let ok = match jitter {
                Jitter::Full => delay <= base,
                Jitter::Equal => delay >= base / 2 && delay <= base,
                Jitter::Decorrelated => delay >= ms(100) && delay <= ms(1600),
                _ => delay <= ms(1600) && delay >= base / 2,
            };
            assert!(ok, "{jitter:?}: delay {delay:?} for base {base:?}");
        }
    }
}

fn retry_with_seed(backoff: Backoff, seed: u64) -> (Retry, Log) {
    logged(Retry::builder().max_attempts(8).seed(seed).backoff(backoff))
}

#[tokio::test(start_paused = true)]
async fn a_delay_that_would_pass_the_deadline_is_not_waited_and_no_attempt_starts_after_it() {
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(10)
            .backoff(Backoff::exponential(ms(100), 2.0, ms(10_000)))
            .deadline(ms(500)),
    );
    let start = Instant::now();
    let (out, times) = flaky(&retry, 10).await;
    assert_eq!(out, Err(AppError::Backend("down")), "the last real result");
    // 0, +100, +200, then +400 would need 400 ms of the 200 ms left: no sleep, no attempt.
    assert_eq!(times, [0, 100, 300].map(ms));
    assert_eq!(start.elapsed(), ms(300), "the give-up does not wait");
    assert_eq!(gave_up(&log), Some(GiveUp::Deadline));
}

#[tokio::test(start_paused = true)]
async fn a_delay_longer_than_the_deadline_gives_up_with_the_callers_own_error() {
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_secs(2)))
            .deadline(Duration::from_secs(1)),
    );
    let start = Instant::now();
    let (out, times) = flaky(&retry, 10).await;
    assert_eq!(out, Err(AppError::Backend("down")));
    assert_eq!(
        times,
        [ms(0)],
        "one attempt, and no attempt with no time left"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        *log.lock().unwrap(),
        [EventKind::RetryGaveUp {
            attempts: 1,
            reason: GiveUp::Deadline
        }]
    );
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.gave_up), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_delay_equal_to_the_time_left_gives_up() {
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(10)
            .backoff(Backoff::constant(ms(500)))
            .deadline(ms(1000)),
    );
    let (out, times) = flaky(&retry, 10).await;
    assert_eq!(out, Err(AppError::Backend("down")));
    // At 500 ms, 500 ms are left: waiting them would start an attempt with none.
    assert_eq!(times, [0, 500].map(ms));
    assert_eq!(gave_up(&log), Some(GiveUp::Deadline));
}

#[tokio::test(start_paused = true)]
async fn a_server_hint_longer_than_the_time_left_gives_up_at_once() {
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(10)))
            .deadline(Duration::from_secs(1)),
    );
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let out: Result<(), palisade::Error<u64>> = retry
        .run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(palisade::Error::Inner(5)) }
        })
        .hint(|r: &Result<(), palisade::Error<u64>>| match r {
            Err(palisade::Error::Inner(secs)) => Some(Duration::from_secs(*secs)),
            _ => None,
        })
        .await;
    assert_eq!(out, Err(palisade::Error::Inner(5)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(start.elapsed(), Duration::ZERO, "nothing was waited");
    assert_eq!(gave_up(&log), Some(GiveUp::Deadline));
}

#[tokio::test(start_paused = true)]
async fn jittered_schedules_never_start_an_attempt_at_or_after_the_deadline() {
    let deadline = ms(1000);
    for jitter in [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
        Jitter::Proportional(0.5),
    ] {
        for seed in 0..20 {
            let (retry, log) = logged(
                Retry::builder()
                    .max_attempts(50)
                    .seed(seed)
                    .backoff(Backoff::exponential(ms(50), 2.0, ms(800)).jitter(jitter))
                    .deadline(deadline),
            );
            let (out, times) = flaky(&retry, 1000).await;
            assert_eq!(out, Err(AppError::Backend("down")));
            assert!(
                times.iter().all(|t| *t < deadline),
                "{jitter:?} seed {seed}: {times:?}"
            );
            assert_eq!(gave_up(&log), Some(GiveUp::Deadline), "{jitter:?} {seed}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_layer_gives_up_on_a_delay_longer_than_the_deadline() {
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_secs(2)))
            .deadline(Duration::from_secs(1)),
    );
    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    let mut svc = RetryLayer::new(retry.clone()).layer(tower::service_fn(move |_: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Err::<u32, _>(AppError::Backend("down")) }
    }));
    let start = Instant::now();
    let out = svc.ready().await.unwrap().call(1).await;
    assert_eq!(out, Err(AppError::Backend("down")));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(gave_up(&log), Some(GiveUp::Deadline));
    assert_eq!(retry.metrics().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn ok_results_are_retried_through_a_classifier() {
    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(4)
            .backoff(Backoff::constant(ms(10))),
    );
    let statuses = Mutex::new(vec![503, 503, 200].into_iter());
    let out: Result<u16, AppError> = retry
        .run(|| {
            let status = statuses.lock().unwrap().next().unwrap();
            async move { Ok(status) }
        })
        .classify(|r: &Result<u16, AppError>| match r {
            Ok(s) if *s >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .await;
    assert_eq!(out, Ok(200));
}

#[tokio::test(start_paused = true)]
async fn server_hints_replace_the_backoff_and_are_capped() {
    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(10)))
            .max_hint(Duration::from_secs(5)),
    );
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let asked = Mutex::new(vec![2u64, 60].into_iter());
    let out: Result<(), palisade::Error<u64>> = retry
        .run(|| {
            times.lock().unwrap().push(start.elapsed());
            let secs = asked.lock().unwrap().next().unwrap_or(0);
            async move { Err(palisade::Error::Inner(secs)) }
        })
        .hint(|r: &Result<(), palisade::Error<u64>>| match r {
            Err(palisade::Error::Inner(secs)) => Some(Duration::from_secs(*secs)),
            _ => None,
        })
        .await;
    assert!(out.is_err());
    // The server asked for 2 s, then 60 s, which the 5 s cap cuts.
    assert_eq!(*times.lock().unwrap(), [0, 2_000, 7_000].map(ms));
}

#[tokio::test(start_paused = true)]
async fn by_default_a_server_cannot_make_the_client_sleep_past_the_backoff_cap() {
    let retry = Retry::new(Retry::builder().max_attempts(2).build().unwrap());
    assert_eq!(retry.config().max_hint(), Duration::from_secs(10));
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let out: Result<(), palisade::Error<u64>> = retry
        .run(|| {
            times.lock().unwrap().push(start.elapsed());
            async { Err(palisade::Error::Inner(0)) }
        })
        // A server asking for an hour.
        .hint(|_: &Result<(), palisade::Error<u64>>| Some(Duration::from_secs(3_600)))
        .await;
    assert!(out.is_err());
    assert_eq!(*times.lock().unwrap(), [0, 10_000].map(ms));
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops_retries_until_it_refills() {
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(5)
            .backoff(Backoff::constant(ms(1)))
            .budget(RetryBudget::new(Duration::from_secs(10), 0, 0.5)),
    );
    // Each first attempt deposits half a retry (50%). One success on the handle, then a
    // failing call on a clone: together one retry's worth, which only a shared budget has.
    assert!(flaky(&retry, 0).await.0.is_ok());
    let (_, times) = flaky(&retry.clone(), 10).await;
    assert_eq!(
        times.len(),
        2,
        "one retry allowed, from the budget the clone shares"
    );
    let (_, times) = flaky(&retry, 10).await;
    assert_eq!(times.len(), 1, "the budget is spent");
    assert_eq!(gave_up(&log), Some(GiveUp::Budget));
    advance(Duration::from_secs(11)).await;
    for _ in 0..4 {
        let (out, _) = flaky(&retry, 0).await;
        assert!(out.is_ok());
    }
    let (_, times) = flaky(&retry, 10).await;
    assert!(times.len() > 1, "new first attempts refilled the budget");
}

#[tokio::test(start_paused = true)]
async fn inner_rejections_are_not_retried_unless_asked() {
    let open = Rejected::CircuitOpen(CircuitOpen::new("db", ms(700)));
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(10))),
    );
    let calls = AtomicU32::new(0);
    let out: Result<(), AppError> = retry
        .run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Err(AppError::Rejected(open)) }
        })
        .await;
    assert_eq!(out, Err(AppError::Rejected(open)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(gave_up(&log), Some(GiveUp::NotRetryable));

    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(10)))
            .retry_rejections(true),
    );
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let full = Rejected::BulkheadFull(BulkheadFull::new("pool", 4, FullCause::QueueFull));
    let out: Result<(), AppError> = retry
        .run_with_attempt(|n| {
            times.lock().unwrap().push(start.elapsed());
            async move { Err(AppError::Rejected(if n == 1 { open } else { full })) }
        })
        .await;
    assert_eq!(out, Err(AppError::Rejected(full)));
    // The open circuit said 700 ms; the full bulkhead says nothing, so the backoff applies.
    assert_eq!(*times.lock().unwrap(), [0, 700, 710].map(ms));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_sleep_stops_everything() {
    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(5)
            .backoff(Backoff::constant(Duration::from_secs(1))),
    );
    let calls = AtomicU32::new(0);
    let mut fut = task::spawn(retry.run(|| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(AppError::Backend("down")) }
    }));
    assert_pending!(fut.poll());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    advance(ms(500)).await;
    drop(fut);
    advance(Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no attempt after the drop");
}

#[tokio::test(start_paused = true)]
async fn the_layer_polls_readiness_again_before_each_retry() {
    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(100))),
    );
    let (svc, mut handle) = mock::pair::<&str, &str>();
    let mut svc = RetryLayer::new(retry).layer(svc);
    handle.allow(1);
    let mut call = task::spawn(async move { svc.ready().await?.call("req").await });
    assert_pending!(call.poll());
    assert_request_eq!(handle, "req").send_error("down");
    assert_pending!(call.poll());
    advance(ms(100)).await;
    assert_pending!(
        call.poll(),
        "the inner service is not ready: the retry waits for it"
    );
    assert!(handle.poll_request().is_pending());
    handle.allow(1);
    assert_pending!(call.poll());
    assert_request_eq!(handle, "req").send_response("ok");
    assert_eq!(assert_ready!(call.poll()).unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn layers_from_clones_of_a_handle_share_its_budget_and_counters() {
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(5)
            .backoff(Backoff::constant(ms(1)))
            .budget(RetryBudget::new(Duration::from_secs(10), 0, 0.5)),
    );
    let clone = retry.clone();
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    // Request 0 succeeds; any other always fails.
    let svc = tower::service_fn(move |req: u32| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            match req {
                0 => Ok(req),
                _ => Err::<u32, BoxError>("down".into()),
            }
        }
    });
    let mut through_origin = retry.layer().layer(svc.clone());
    let mut through_clone = RetryLayer::new(clone.clone()).layer(svc);

    // Each first attempt deposits half a retry: one on the original handle's layer and one
    // on the clone's make one retry, which only a shared budget holds.
    assert_eq!(
        through_origin.ready().await.unwrap().call(0).await.unwrap(),
        0
    );
    let failed = tokio::spawn(through_clone.ready().await.unwrap().call(1));
    advance(ms(5)).await;
    assert!(failed.await.unwrap().is_err());
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "1 + a first attempt + one retry"
    );
    assert_eq!(gave_up(&log), Some(GiveUp::Budget));
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.gave_up), (2, 1, 1));
    assert_eq!(m, clone.metrics(), "one set of counters");
}

/// A request that cannot be cloned (a one-shot body).
#[derive(Debug, PartialEq)]
struct Upload(&'static str);

#[tokio::test(start_paused = true)]
async fn a_request_without_clone_is_resent_through_a_cloner() {
    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(1))),
    );
    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    let inner = tower::service_fn(move |req: Upload| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n < 3 {
                Err(palisade::Error::Inner("flaky"))
            } else {
                Ok(req.0)
            }
        }
    });
    let mut svc = RetryLayer::new(retry)
        .cloner(|r: &Upload| Some(Upload(r.0)))
        .layer(inner);
    let out = svc.ready().await.unwrap().call(Upload("file")).await;
    assert_eq!(out, Ok("file"));
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_cloned_is_sent_once_and_says_why() {
    let (retry, log) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(1))),
    );
    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    let inner = tower::service_fn(move |_: Upload| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(palisade::Error::Inner("flaky")) }
    });
    let mut svc = RetryLayer::new(retry)
        .cloner(|_: &Upload| None)
        .layer(inner);
    let out = svc.ready().await.unwrap().call(Upload("stream")).await;
    assert_eq!(out, Err(palisade::Error::Inner("flaky")));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(gave_up(&log), Some(GiveUp::NotCloneable));
}

#[tokio::test(start_paused = true)]
async fn on_retry_sees_each_retried_outcome() {
    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(5))),
    );
    let seen = Mutex::new(Vec::new());
    let _: Result<(), AppError> = retry
        .run(|| async { Err(AppError::Backend("down")) })
        .on_retry(|r: &Result<(), AppError>, attempt: u32, delay: Duration| {
            seen.lock().unwrap().push((r.is_err(), attempt, delay));
        })
        .await;
    assert_eq!(*seen.lock().unwrap(), [(true, 1, ms(5)), (true, 2, ms(5))]);
}

#[test]
fn every_invalid_config_names_its_field() {
    let d = Duration::from_secs;
    let cases = [
        (Retry::builder().max_attempts(0), "max_attempts"),
        (Retry::builder().max_attempts(1001), "max_attempts"),
        (
            Retry::builder().backoff(Backoff::exponential(ms(10), f64::NAN, d(1))),
            "backoff.factor",
        ),
        (
            Retry::builder().backoff(Backoff::exponential(ms(10), 0.5, d(1))),
            "backoff.factor",
        ),
        (
            Retry::builder().backoff(Backoff::exponential(ms(10), 2.0, Duration::ZERO)),
            "backoff.max",
        ),
        (
            Retry::builder().backoff(Backoff::linear(d(2), ms(1), d(1))),
            "backoff.initial",
        ),
        (
            Retry::builder().backoff(Backoff::constant(d(2 * 86_400))),
            "backoff.max",
        ),
        (
            Retry::builder().backoff(Backoff::constant(d(1)).jitter(Jitter::Proportional(1.5))),
            "backoff.jitter",
        ),
        (
            Retry::builder()
                .backoff(Backoff::constant(Duration::ZERO).jitter(Jitter::Decorrelated)),
            "backoff.initial",
        ),
        (Retry::builder().deadline(Duration::ZERO), "deadline"),
        (Retry::builder().max_hint(Duration::ZERO), "max_hint"),
        (
            Retry::builder().budget(RetryBudget::new(ms(10), 1, 0.2)),
            "budget.ttl",
        ),
        (
            Retry::builder().budget(RetryBudget::new(d(10), 1, f64::NAN)),
            "budget.retry_ratio",
        ),
        (Retry::builder().name(""), "name"),
    ];
    for (b, field) in cases {
        let err = b.build().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(err.to_string().starts_with(field), "{err}");
    }
}

#[test]
fn handles_services_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Retry>();
    send_sync::<RetryLayer>();
    send::<palisade::retry::RetryService<tower::util::BoxCloneSyncService<(), (), BoxError>>>();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For random schedules and deadlines, the waits add up to less than the deadline (every
    /// attempt starts before it) and each is within [0, cap].
    #[test]
    fn delays_respect_the_cap_and_the_deadline(
        initial_ms in 0u64..500,
        factor in 1.0f64..4.0,
        cap_ms in 1u64..5_000,
        deadline_ms in 1u64..20_000,
        jitter in prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Proportional(0.3))],
        seed in any::<u64>(),
    ) {
        let initial_ms = initial_ms.min(cap_ms);
        let backoff = Backoff::exponential(ms(initial_ms), factor, ms(cap_ms)).jitter(jitter);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let (times, delays) = rt.block_on(async {
            let (retry, log) = logged(Retry::builder().max_attempts(50).seed(seed).backoff(backoff).deadline(ms(deadline_ms)));
            let (_, times) = flaky(&retry, 1000).await;
            let delays: Vec<Duration> = log.lock().unwrap().iter().filter_map(|e| match e {
                EventKind::RetryScheduled { delay, .. } => Some(*delay),
                _ => None,
            }).collect();
            (times, delays)
        });
        prop_assert!(delays.iter().sum::<Duration>() < ms(deadline_ms));
        prop_assert!(delays.iter().all(|d| *d <= ms(cap_ms)));
        prop_assert!(times.iter().all(|t| *t < ms(deadline_ms)), "{:?}", times);
    }
}

/// A sleep that counts its drops.
struct CountedSleep {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    drops: Arc<AtomicU32>,
}

impl std::future::Future for CountedSleep {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.sleep.as_mut().poll(cx)
    }
}

impl Drop for CountedSleep {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_backoffs_sleep_is_dropped_once_when_it_fires_or_with_the_call() {
    let drops = Arc::new(AtomicU32::new(0));
    let counter = drops.clone();
    let retry = Retry::with_timer_and_clock(
        Retry::builder()
            .max_attempts(5)
            .backoff(Backoff::constant(Duration::from_secs(1)))
            .build()
            .unwrap(),
        move |d: Duration| CountedSleep {
            sleep: Box::pin(tokio::time::sleep(d)),
            drops: counter.clone(),
        },
        palisade::clock::TokioClock::default(),
    );
    // Attempts 1 and 3 fail at once; attempt 2 hangs until its caller gives up on it.
    let calls = AtomicU32::new(0);
    let mut fut = task::spawn(retry.run(|| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 2 {
                std::future::pending::<()>().await;
            }
            Err::<(), _>(AppError::Backend("down"))
        }
    }));
    assert_pending!(fut.poll());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the first backoff is running"
    );
    advance(Duration::from_secs(1)).await;
    assert_pending!(fut.poll());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "attempt 2 is in flight");
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the sleep is dropped when it fires, not kept until the next one"
    );
    drop(fut);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "no sleep was in progress");

    // A call dropped during its backoff drops the sleep with it, once.
    let mut fut = task::spawn(retry.run(|| async { Err::<(), _>(AppError::Backend("down")) }));
    assert_pending!(fut.poll());
    advance(ms(500)).await;
    assert_pending!(fut.poll());
    drop(fut);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "the sleep in progress is dropped with the call"
    );
}

// ===== the budget counts retries made =====

/// A budget of exactly one retry per first attempt, and nothing else.
fn one_for_one() -> RetryBudget {
    RetryBudget::new(Duration::from_secs(10), 0, 1.0)
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_during_its_backoff_gives_its_budget_token_back() {
    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_secs(1)))
            .budget(one_for_one()),
    );
    let mut fut = task::spawn(retry.run(|| async { Err::<(), _>(AppError::Backend("down")) }));
    assert_pending!(fut.poll(), "the first attempt failed; the retry waits");
    assert_eq!(
        retry.metrics().budget_left,
        Some(0.0),
        "held by the waiting retry"
    );
    drop(fut);
    let m = retry.metrics();
    assert_eq!(m.budget_left, Some(1.0), "the retry never happened");
    assert_eq!((m.calls, m.retries, m.attempts), (1, 0, 1));

    // The token is usable: this call's deposit and the one given back make two retries.
    let (out, times) = flaky(&retry, 10).await;
    assert!(out.is_err());
    assert_eq!(times.len(), 3);
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.budget_left), (2, 2, Some(0.0)));
}

/// A sleep whose destructor panics (unless the thread is unwinding already).
struct PanicsWhenDropped(std::pin::Pin<Box<tokio::time::Sleep>>);

impl std::future::Future for PanicsWhenDropped {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the sleep panics when dropped");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_sleep_that_panics_when_dropped_unwinds_and_the_token_still_goes_back() {
    let retry = Retry::with_timer_and_clock(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_secs(1)))
            .budget(one_for_one())
            .build()
            .unwrap(),
        |d: Duration| PanicsWhenDropped(Box::pin(tokio::time::sleep(d))),
        palisade::clock::TokioClock::default(),
    );
    let mut fut = task::spawn(retry.run(|| async { Err::<(), _>(AppError::Backend("down")) }));
    assert_pending!(fut.poll(), "the first attempt failed; the retry waits");
    assert_eq!(retry.metrics().budget_left, Some(0.0));
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(fut)));
    assert!(
        dropped.is_err(),
        "the panic reached the caller instead of aborting"
    );
    let m = retry.metrics();
    assert_eq!(m.budget_left, Some(1.0), "the retry never happened");
    assert_eq!((m.calls, m.retries, m.attempts), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_layer_call_dropped_during_its_backoff_gives_its_budget_token_back() {
    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_secs(1)))
            .budget(one_for_one()),
    );
    let mut svc = retry.layer().layer(tower::service_fn(|_: u32| async {
        Err::<u32, _>(AppError::Backend("down"))
    }));
    svc.ready().await.unwrap();
    let mut fut = task::spawn(svc.call(1));
    assert_pending!(fut.poll());
    assert_eq!(retry.metrics().budget_left, Some(0.0));
    drop(fut);
    let m = retry.metrics();
    assert_eq!(m.budget_left, Some(1.0));
    assert_eq!((m.calls, m.retries), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_layer_call_dropped_while_waiting_for_readiness_gives_its_token_back() {
    let (retry, _) = logged(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(100)))
            .budget(one_for_one()),
    );
    let (svc, mut handle) = mock::pair::<&str, &str>();
    let mut svc = retry.layer().layer(svc);
    handle.allow(1);
    let mut call = task::spawn(async move { svc.ready().await?.call("req").await });
    assert_pending!(call.poll());
    assert_request_eq!(handle, "req").send_error("down");
    assert_pending!(call.poll());
    advance(ms(100)).await;
    assert_pending!(
        call.poll(),
        "the backoff is over; the inner service is not ready"
    );
    assert_eq!(retry.metrics().budget_left, Some(0.0));
    drop(call);
    let m = retry.metrics();
    assert_eq!(m.budget_left, Some(1.0), "the retry was never sent");
    assert_eq!((m.calls, m.retries), (1, 0));
}

// ===== user code runs last =====

/// A retry whose listener panics the first time it sees an event that `hits` picks.
fn panics_once_on(hits: fn(&EventKind) -> bool, b: RetryConfigBuilder) -> Retry {
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    Retry::new(
        b.name("api")
            .listener(move |e: &Event| {
                if hits(&e.kind()) && armed.swap(false, Ordering::SeqCst) {
                    panic!("listener");
                }
            })
            .build()
            .unwrap(),
    )
}

fn budgeted() -> RetryConfigBuilder {
    Retry::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(10)))
        .budget(one_for_one())
}

/// Awaits `fut`, which must panic; the future is dropped before this returns.
async fn must_panic<F: std::future::Future>(fut: F) {
    use futures_util::FutureExt;
    let caught = std::panic::AssertUnwindSafe(fut).catch_unwind().await;
    assert!(caught.is_err(), "the callback's panic reaches the caller");
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_on_each_retry_event_leaves_the_budget_and_counters_right() {
    // RetryScheduled: the retry was never made, so its token comes back.
    let retry = panics_once_on(
        |k| matches!(k, EventKind::RetryScheduled { .. }),
        budgeted(),
    );
    must_panic(flaky(&retry, 10)).await;
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.gave_up), (1, 0, 0));
    assert_eq!(m.budget_left, Some(1.0));
    assert_eq!(
        flaky(&retry, 1).await.0,
        Ok(2),
        "the policy works afterwards"
    );
    assert_eq!(retry.metrics().retries, 1);

    // RetryGaveUp: the give-up is counted first.
    let retry = panics_once_on(
        |k| matches!(k, EventKind::RetryGaveUp { .. }),
        budgeted().max_attempts(1),
    );
    must_panic(flaky(&retry, 10)).await;
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.gave_up), (1, 0, 1));
    assert_eq!(m.budget_left, Some(1.0));
    assert_eq!(flaky(&retry, 0).await.0, Ok(1));

    // RetrySucceeded: the recovery is counted first; the retry made spent its token.
    let retry = panics_once_on(
        |k| matches!(k, EventKind::RetrySucceeded { .. }),
        budgeted(),
    );
    must_panic(flaky(&retry, 1)).await;
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.recovered), (1, 1, 1));
    assert_eq!(m.budget_left, Some(0.0));
    assert_eq!(flaky(&retry, 1).await.0, Ok(2));
    assert_eq!(retry.metrics().recovered, 2);
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_on_a_layers_scheduled_retry_gives_the_token_back() {
    let retry = panics_once_on(
        |k| matches!(k, EventKind::RetryScheduled { .. }),
        budgeted(),
    );
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let mut svc = retry.layer().layer(tower::service_fn(move |_: u32| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err(AppError::Backend("down"))
            } else {
                Ok(n)
            }
        }
    }));
    svc.ready().await.unwrap();
    must_panic(svc.call(1)).await;
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.budget_left), (1, 0, Some(1.0)));
    svc.ready().await.unwrap();
    assert_eq!(svc.call(2).await, Ok(2), "the policy works afterwards");
    assert_eq!(retry.metrics().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_classifier_hint_or_on_retry_holds_no_budget_token() {
    // The classifier, on the first result: nothing was taken yet.
    let (retry, _) = logged(budgeted());
    must_panic(
        retry
            .run(|| async { Err::<(), _>(AppError::Backend("down")) })
            .classify(|_: &Result<(), AppError>| -> Outcome { panic!("classifier") }),
    )
    .await;
    let m = retry.metrics();
    assert_eq!(
        (m.calls, m.retries, m.gave_up, m.budget_left),
        (1, 0, 0, Some(1.0))
    );
    assert_eq!(flaky(&retry, 1).await.0, Ok(2));

    // The hint, on the first result.
    let (retry, _) = logged(budgeted());
    must_panic(
        retry
            .run(|| async { Err::<(), _>(AppError::Backend("down")) })
            .hint(|_: &Result<(), AppError>| -> Option<Duration> { panic!("hint") }),
    )
    .await;
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.budget_left), (1, 0, Some(1.0)));
    assert_eq!(flaky(&retry, 1).await.0, Ok(2));

    // on_retry, which sees a retry already scheduled: the retry is not made, and its token
    // comes back.
    let (retry, _) = logged(budgeted());
    must_panic(
        retry
            .run(|| async { Err::<(), _>(AppError::Backend("down")) })
            .on_retry(|_: &Result<(), AppError>, _: u32, _: Duration| panic!("on_retry")),
    )
    .await;
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.budget_left), (1, 0, Some(1.0)));
    assert_eq!(flaky(&retry, 1).await.0, Ok(2));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_request_cloner_leaves_nothing_counted_or_held() {
    let (retry, _) = logged(budgeted());
    let clones = Arc::new(AtomicU32::new(0));
    let seen = clones.clone();
    // Panics on the 1st copy (made before the first attempt) and on the 3rd (made before the
    // first retry of the next call).
    let cloner = move |r: &u32| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 || n == 3 {
            panic!("cloner");
        }
        Some(*r)
    };
    let calls = Arc::new(AtomicU32::new(0));
    let made = calls.clone();
    let mut svc = retry
        .layer()
        .cloner(cloner)
        .layer(tower::service_fn(move |_: u32| {
            let n = made.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(AppError::Backend("down"))
                } else {
                    Ok(n)
                }
            }
        }));

    svc.ready().await.unwrap();
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| svc.call(1)));
    assert!(first.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no call was sent");
    let m = retry.metrics();
    assert_eq!(
        (m.calls, m.budget_left),
        (0, Some(0.0)),
        "no call was counted"
    );

    svc.ready().await.unwrap();
    must_panic(svc.call(2)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the first attempt was sent"
    );
    let m = retry.metrics();
    assert_eq!(
        (m.calls, m.retries, m.budget_left),
        (1, 0, Some(1.0)),
        "the retry was not sent: its token is back"
    );

    svc.ready().await.unwrap();
    assert_eq!(svc.call(3).await, Ok(1), "the policy works afterwards");
}

#[test]
fn a_backoff_may_be_capped_at_exactly_one_day_and_start_at_its_cap() {
    use palisade::retry::MAX_DELAY;
    assert_eq!(MAX_DELAY, Duration::from_secs(24 * 60 * 60));
    let day = Backoff::exponential(MAX_DELAY, 2.0, MAX_DELAY);
    assert!(Retry::builder().backoff(day).build().is_ok());
    let linear = Backoff::linear(ms(500), ms(100), ms(500));
    assert!(Retry::builder().backoff(linear).build().is_ok());
    let over = Backoff::exponential(ms(1), 2.0, MAX_DELAY + Duration::from_nanos(1));
    let err = Retry::builder().backoff(over).build().unwrap_err();
    assert_eq!(err.field(), "backoff.max");
}

/// The mean of the first 2000 delays of `backoff` from a fixed seed, in seconds.
fn mean_delay(backoff: Backoff) -> f64 {
    backoff
        .iter(7)
        .take(2000)
        .map(|d| d.as_secs_f64())
        .sum::<f64>()
        / 2000.0
}

#[test]
fn equal_jitter_spreads_delays_evenly_over_the_upper_half_of_the_base() {
    let backoff = Backoff::constant(Duration::from_secs(1)).jitter(Jitter::Equal);
    assert!(
        backoff
            .iter(7)
            .take(2000)
            .all(|d| d >= ms(500) && d <= ms(1000))
    );
    let mean = mean_delay(backoff);
    // Uniform over [0.5, 1] s: a mean of 0.75 s (2000 draws: within about 0.01 s).
    assert!((0.73..=0.77).contains(&mean), "{mean}");
}

#[test]
fn proportional_jitter_spreads_delays_evenly_around_the_base() {
    // A base of 1 s under a cap of 2 s (a constant schedule's cap is its delay, which
    // would clip the upper half).
    let backoff = Backoff::exponential(Duration::from_secs(1), 1.0, Duration::from_secs(2))
        .jitter(Jitter::Proportional(0.5));
    let delays: Vec<_> = backoff.iter(7).take(2000).collect();
    assert!(delays.iter().all(|d| *d >= ms(500) && *d <= ms(1500)));
    assert!(delays.iter().any(|d| *d < ms(700)) && delays.iter().any(|d| *d > ms(1300)));
    let mean = mean_delay(backoff);
    // Uniform over [0.5, 1.5] s: a mean of 1 s.
    assert!((0.97..=1.03).contains(&mean), "{mean}");
}

#[test]
fn proportional_jitter_must_be_above_zero_and_at_most_one() {
    for p in [0.0, -0.1, 1.01, f64::NAN] {
        let backoff = Backoff::constant(ms(100)).jitter(Jitter::Proportional(p));
        let err = Retry::builder().backoff(backoff).build().unwrap_err();
        assert_eq!(err.field(), "backoff.jitter", "{p}");
    }
    for p in [0.01, 1.0] {
        let backoff = Backoff::constant(ms(100)).jitter(Jitter::Proportional(p));
        assert!(Retry::builder().backoff(backoff).build().is_ok(), "{p}");
    }
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_http_classifiers_let_a_retry_wait_out_an_inner_rejection() {
    use palisade::http::{GrpcClassifier, StatusClassifier};
    type Resp = http::Response<()>;
    let open = Rejected::CircuitOpen(CircuitOpen::new("db", ms(700)));
    let run = |classifier: &'static str| async move {
        let retry = Retry::new(
            Retry::builder()
                .max_attempts(3)
                .backoff(Backoff::constant(ms(10)))
                .retry_rejections(true)
                .build()
                .unwrap(),
        );
        let start = Instant::now();
        let times = Mutex::new(Vec::new());
        let attempt = |n: u32| {
            times.lock().unwrap().push(start.elapsed());
            async move {
                if n == 1 {
                    Err(AppError::Rejected(open))
                } else {
                    Ok::<_, AppError>(Resp::new(()))
                }
            }
        };
        let out = match classifier {
            "status" => {
                retry
                    .run_with_attempt(attempt)
                    .classify(StatusClassifier::new())
                    .await
            }
            _ => {
                retry
                    .run_with_attempt(attempt)
                    .classify(GrpcClassifier::new())
                    .await
            }
        };
        assert!(out.is_ok(), "{classifier}: {out:?}");
        // The open circuit said 700 ms: the retry waited that long, as with the default
        // classifier.
        assert_eq!(*times.lock().unwrap(), [0, 700].map(ms), "{classifier}");
    };
    run("status").await;
    run("grpc").await;
}
