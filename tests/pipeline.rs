//! The pipeline (closures) and composed tower stacks, with paused tokio time.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
use palisade::error::Elapsed;
use palisade::fallback::Fallback;
use palisade::pipeline::{Pipeline, PipelineBuilder, Stage};
use palisade::rate_limiter::RateLimiter;
use palisade::retry::{Backoff, Retry};
use palisade::timeout::{Timeout, TimeoutConfig};
use palisade::{Error, Rejected};
use support::AppError;
use tokio::time::{Instant, sleep};
use tower::{BoxError, Layer, Service};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn retry(attempts: u32) -> Retry {
    Retry::new(
        Retry::builder()
            .max_attempts(attempts)
            .backoff(Backoff::constant(ms(10)))
            .build()
            .unwrap(),
    )
}

fn breaker(failures: u32) -> CircuitBreaker {
    CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(failures)
            .break_duration(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
}

fn timeout(d: Duration) -> Timeout {
    Timeout::new(
        TimeoutConfig::builder()
            .duration(d)
            .name("timeout")
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_during_retries_and_the_retry_stops_on_circuit_open() {
    let cb = breaker(2);
    let pipeline = Pipeline::builder()
        .retry(retry(5))
        .circuit_breaker(cb.clone())
        .build();
    let calls = AtomicU32::new(0);
    let out: Result<(), AppError> = pipeline
        .run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(AppError::Backend("down")) }
        })
        .await;
    assert!(
        matches!(out, Err(AppError::Rejected(Rejected::CircuitOpen(_)))),
        "{out:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the third attempt was refused, not made"
    );
    assert_eq!(cb.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_order_does_not_depend_on_the_builder_calls() {
    let builders: Vec<fn(CircuitBreaker) -> PipelineBuilder> = vec![
        |cb| Pipeline::builder().retry(retry(5)).circuit_breaker(cb),
        |cb| Pipeline::builder().circuit_breaker(cb).retry(retry(5)),
        |cb| {
            Pipeline::builder()
                .timeout(timeout(Duration::from_secs(1)))
                .circuit_breaker(cb)
                .bulkhead(Bulkhead::new(
                    Bulkhead::builder().max_concurrent(2).build().unwrap(),
                ))
                .retry(retry(5))
        },
    ];
    for make in builders {
        let cb = breaker(2);
        let pipeline = make(cb.clone()).build();
        let calls = AtomicU32::new(0);
        let out: Result<(), AppError> = pipeline
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(AppError::Backend("down")) }
            })
            .await;
        // Retry outermost, breaker inside it: the same outcome whatever the call order.
        assert!(matches!(
            out,
            Err(AppError::Rejected(Rejected::CircuitOpen(_)))
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

fn deadline_retry(backoff: Duration, deadline: Duration) -> Retry {
    Retry::new(
        Retry::builder()
            .max_attempts(10)
            .backoff(Backoff::constant(backoff))
            .deadline(deadline)
            .build()
            .unwrap(),
    )
}

/// A call that never answers, recording when each attempt started.
async fn hang(start: Instant, starts: &std::sync::Mutex<Vec<Duration>>) -> Result<(), AppError> {
    starts.lock().unwrap().push(start.elapsed());
    sleep(Duration::from_secs(60)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_the_last_attempts_timeout() {
    let pipeline = Pipeline::builder()
        .retry(deadline_retry(ms(100), ms(700)))
        .timeout(timeout(ms(400)))
        .build();
    let start = Instant::now();
    let starts = std::sync::Mutex::new(Vec::new());
    let out: Result<(), AppError> = pipeline.run(|| hang(start, &starts)).await;
    // The attempt at 0 times out after 400 ms; the one at 500 ms has 200 ms left, and its
    // timeout is cut to them. At 700 ms no time is left for a delay: the run ends.
    assert_eq!(starts.into_inner().unwrap(), [ms(0), ms(500)]);
    assert_eq!(start.elapsed(), ms(700));
    match out {
        Err(AppError::Rejected(Rejected::Timeout(elapsed))) => {
            assert_eq!(elapsed.duration(), ms(200))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_timeout_cut_by_the_deadline_is_not_a_breaker_failure() {
    use palisade::pipeline::Stage;
    for custom in [false, true] {
        let cb = breaker(2);
        let builder = Pipeline::builder()
            .retry(deadline_retry(ms(100), ms(700)))
            .circuit_breaker(cb.clone())
            .timeout(timeout(ms(400)));
        let pipeline = if custom {
            builder
                .build_in_order(&[Stage::Retry, Stage::CircuitBreaker, Stage::Timeout])
                .unwrap()
        } else {
            builder.build()
        };
        let start = Instant::now();
        let starts = std::sync::Mutex::new(Vec::new());
        let out: Result<(), AppError> = pipeline.run(|| hang(start, &starts)).await;
        assert_eq!(
            starts.into_inner().unwrap(),
            [ms(0), ms(500)],
            "custom {custom}"
        );
        assert!(
            matches!(out, Err(AppError::Rejected(Rejected::Timeout(_)))),
            "{out:?}"
        );
        // The first attempt's own 400 ms timeout counts; the second, cut to 200 ms by the
        // deadline, says nothing about the dependency.
        assert_eq!(cb.state(), CircuitState::Closed, "custom {custom}");
        assert_eq!(cb.metrics().failures, 1, "custom {custom}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_delay_past_the_deadline_leaves_the_callers_error_and_the_breaker_closed() {
    let cb = breaker(2);
    let pipeline = Pipeline::builder()
        .retry(deadline_retry(
            Duration::from_secs(2),
            Duration::from_secs(1),
        ))
        .circuit_breaker(cb.clone())
        .timeout(timeout(Duration::from_secs(5)))
        .build();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let out: Result<(), AppError> = pipeline
        .run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(AppError::Backend("down")) }
        })
        .await;
    assert_eq!(
        out,
        Err(AppError::Backend("down")),
        "the caller's own error"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no wait for an attempt never made"
    );
    assert_eq!(cb.state(), CircuitState::Closed);
    assert_eq!(cb.metrics().failures, 1, "one real failure, counted once");
}

#[tokio::test(start_paused = true)]
async fn the_layer_gives_up_on_a_delay_past_the_deadline_with_the_breaker_closed() {
    use tower::ServiceExt;
    let cb = breaker(2);
    let pipeline = Pipeline::builder()
        .retry(deadline_retry(
            Duration::from_secs(2),
            Duration::from_secs(1),
        ))
        .circuit_breaker(cb.clone())
        .timeout(timeout(Duration::from_secs(5)))
        .build();
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let mut svc = pipeline.layer().layer(tower::service_fn(move |_: ()| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(AppError::Backend("down")) }
    }));
    let out = svc.ready().await.unwrap().call(()).await;
    assert_eq!(out, Err(AppError::Backend("down")));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cb.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_left_no_time_by_its_wait_for_a_slot_is_not_made_or_counted() {
    let cb = breaker(1);
    let bulkhead = Bulkhead::new(
        Bulkhead::builder()
            .max_concurrent(1)
            .max_queue(1)
            .build()
            .unwrap(),
    );
    let pipeline = Pipeline::builder()
        .retry(deadline_retry(ms(100), Duration::from_secs(1)))
        .circuit_breaker(cb.clone())
        .bulkhead(bulkhead.clone())
        .timeout(timeout(Duration::from_secs(5)))
        .build();
    let busy = bulkhead.try_acquire().unwrap();
    let calls = AtomicU32::new(0);
    let run = pipeline.run(|| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), AppError>(()) }
    });
    // The slot frees up after the whole deadline has gone by in the queue.
    let release = async {
        sleep(ms(1500)).await;
        drop(busy);
    };
    let (out, ()) = tokio::join!(run, release);
    assert!(
        matches!(out, Err(AppError::Rejected(Rejected::Timeout(_)))),
        "{out:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no call without time to make it"
    );
    assert_eq!(
        cb.state(),
        CircuitState::Closed,
        "no failure of the dependency"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_falls_back_to_the_cached_value() {
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let pipeline = Pipeline::builder()
        .bulkhead(bulkhead.clone())
        .retry(retry(3))
        .build();
    let fallback = Fallback::new(
        Fallback::builder()
            .cache_max_age(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let fresh: Result<String, AppError> = fallback
        .run(|| pipeline.run(|| async { Ok("live".to_string()) }))
        .or_cached()
        .await;
    assert_eq!(fresh.unwrap(), "live");

    let _busy = bulkhead.try_acquire().unwrap();
    let served: Result<String, AppError> = fallback
        .run(|| pipeline.run(|| async { Ok("never made".to_string()) }))
        .or_cached()
        .await;
    assert_eq!(
        served.unwrap(),
        "live",
        "the rejection fell back to the cache"
    );
}

#[tokio::test(start_paused = true)]
async fn the_callers_error_type_comes_out_unchanged() {
    let pipeline = Pipeline::builder()
        .retry(retry(2))
        .circuit_breaker(breaker(100))
        .bulkhead(Bulkhead::new(
            Bulkhead::builder().max_concurrent(4).build().unwrap(),
        ))
        .timeout(timeout(ms(50)))
        .build();
    let inner: Result<(), AppError> = pipeline.run(|| async { Err(AppError::Backend("x")) }).await;
    assert_eq!(inner, Err(AppError::Backend("x")));
    let slow: Result<(), AppError> = pipeline
        .run(|| async {
            sleep(Duration::from_secs(1)).await;
            Ok(())
        })
        .await;
    assert_eq!(
        slow,
        Err(AppError::Rejected(Rejected::Timeout(Elapsed::new(
            "timeout",
            ms(50)
        ))))
    );
    let foreign: Result<(), Error<std::io::Error>> = pipeline
        .run(|| async { Err(Error::Inner(std::io::Error::other("reset"))) })
        .await;
    assert!(matches!(foreign, Err(Error::Inner(_))));
}

/// Every order of the four tower layers keeps the inner service's error type: checked by the
/// compiler for all 24 permutations.
#[test]
fn every_permutation_of_the_layers_keeps_the_error_type() {
    fn same_error<S: Service<u32, Error = BoxError>>(_: &S) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let r = || retry(2).layer();
    let c = || breaker(5).layer();
    let b = || Bulkhead::new(Bulkhead::builder().max_concurrent(4).build().unwrap()).layer();
    let t = || timeout(ms(100)).layer();
    let svc = || tower::service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
    macro_rules! stack {
        ($($l:ident)*) => {{
            let s = svc();
            $( let s = $l().layer(s); )*
            same_error(&s);
        }};
    }
    macro_rules! permutations {
        ($($a:ident $b:ident $c:ident $d:ident),*) => {{ $( stack!($a $b $c $d); )* }};
    }
    permutations!(
        r c b t, r c t b, r b c t, r b t c, r t c b, r t b c,
        c r b t, c r t b, c b r t, c b t r, c t r b, c t b r,
        b r c t, b r t c, b c r t, b c t r, b t r c, b t c r,
        t r c b, t r b c, t c r b, t c b r, t b r c, t b c r
    );
}

#[tokio::test(start_paused = true)]
async fn the_layer_runs_the_same_order_as_run() {
    use tower::ServiceExt;
    let cb = breaker(2);
    let pipeline = Pipeline::builder()
        .timeout(timeout(Duration::from_secs(1)))
        .circuit_breaker(cb.clone())
        .retry(retry(5))
        .build();
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let mut svc = pipeline.layer().layer(tower::service_fn(move |_: ()| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(AppError::Backend("down")) }
    }));
    let out: Result<(), AppError> = svc.ready().await.unwrap().call(()).await;
    assert!(
        matches!(out, Err(AppError::Rejected(Rejected::CircuitOpen(_)))),
        "{out:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "retry outside the breaker, as with run"
    );
    assert_eq!(cb.state(), CircuitState::Open);

    // With nothing configured the layer is the inner service.
    let empty: Pipeline = Pipeline::builder().build();
    let mut bare = empty.layer().layer(tower::service_fn(
        |x: u8| async move { Ok::<_, AppError>(x) },
    ));
    assert_eq!(bare.ready().await.unwrap().call(9).await, Ok(9));
}

#[tokio::test(start_paused = true)]
async fn a_custom_order_is_asked_for_by_name_and_followed() {
    use palisade::pipeline::Stage;
    let make = |custom: bool| {
        let b = Pipeline::builder()
            .retry(Retry::new(
                Retry::builder()
                    .max_attempts(3)
                    .backoff(Backoff::constant(ms(100)))
                    .build()
                    .unwrap(),
            ))
            .bulkhead(Bulkhead::new(
                Bulkhead::builder().max_concurrent(1).build().unwrap(),
            ));
        if custom {
            b.build_in_order(&[Stage::Bulkhead, Stage::Retry]).unwrap()
        } else {
            b.build()
        }
    };
    for custom in [false, true] {
        let pipeline = make(custom);
        // A call that fails and retries; while it sleeps between attempts, another arrives.
        let mut failing = tokio_test::task::spawn(
            pipeline.run(|| async { Err::<&str, AppError>(AppError::Backend("down")) }),
        );
        assert!(
            failing.poll().is_pending(),
            "sleeping before its second attempt"
        );
        let other: Result<&str, AppError> = pipeline.run(|| async { Ok("served") }).await;
        if custom {
            // Bulkhead outside retry: one slot held across every attempt and sleep.
            assert!(
                matches!(other, Err(AppError::Rejected(Rejected::BulkheadFull(_)))),
                "{other:?}"
            );
        } else {
            // The recommended order: each attempt takes a slot, so the sleep frees it.
            assert_eq!(other, Ok("served"));
        }
    }
}

#[test]
fn a_custom_order_must_name_each_configured_policy_once() {
    use palisade::pipeline::Stage;
    let with_retry = || Pipeline::builder().retry(retry(2)).timeout(timeout(ms(10)));
    let twice = with_retry()
        .build_in_order(&[Stage::Retry, Stage::Timeout, Stage::Retry])
        .unwrap_err();
    assert_eq!(twice.field(), "order");
    let missing = with_retry().build_in_order(&[Stage::Timeout]).unwrap_err();
    assert_eq!(missing.field(), "order");
    assert!(missing.rule().contains("Retry"), "{missing}");
    assert!(
        with_retry()
            .build_in_order(&[Stage::Timeout, Stage::Retry])
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn the_builder_takes_a_fallback_and_run_chains_its_alternatives() {
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let fallback = Fallback::new(
        Fallback::builder()
            .cache_max_age(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let pipeline = Pipeline::builder()
        .retry(retry(2))
        .fallback(fallback.clone())
        .bulkhead(bulkhead.clone())
        .build();
    let fresh: Result<String, AppError> = pipeline
        .run(|| async { Ok("live".to_string()) })
        .or_cached()
        .await;
    assert_eq!(fresh.unwrap(), "live");
    assert_eq!(fallback.cached().as_deref(), Some("live"));

    let _busy = bulkhead.try_acquire().unwrap();
    let served: Result<String, AppError> = pipeline
        .run(|| async { Ok("never made".to_string()) })
        .or_cached()
        .or_value("default".to_string())
        .await;
    assert_eq!(
        served.unwrap(),
        "live",
        "the full bulkhead fell back to the cache"
    );
}

#[tokio::test(start_paused = true)]
async fn a_listener_panicking_inside_the_pipeline_leaves_every_policy_as_it_was() {
    use palisade::retry::RetryBudget;
    use palisade::telemetry::{Event, EventKind};
    use std::sync::atomic::AtomicBool;
    let armed = std::sync::Arc::new(AtomicBool::new(true));
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(10)))
            .budget(RetryBudget::new(Duration::from_secs(10), 0, 1.0))
            .listener(move |e: &Event| {
                if matches!(e.kind(), EventKind::RetryScheduled { .. })
                    && armed.swap(false, Ordering::SeqCst)
                {
                    panic!("listener");
                }
            })
            .build()
            .unwrap(),
    );
    let cb = breaker(5);
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let pipeline = Pipeline::builder()
        .retry(retry.clone())
        .circuit_breaker(cb.clone())
        .bulkhead(bulkhead.clone())
        .timeout(timeout(Duration::from_secs(1)))
        .build();
    let calls = AtomicU32::new(0);
    let flaky = || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n % 2 == 0 {
                Err(AppError::Backend("down"))
            } else {
                Ok(n)
            }
        }
    };
    {
        use futures_util::FutureExt;
        let caught = std::panic::AssertUnwindSafe(pipeline.run(flaky))
            .catch_unwind()
            .await;
        assert!(caught.is_err());
    }
    let m = retry.metrics();
    assert_eq!(
        (m.calls, m.retries, m.budget_left),
        (1, 0, Some(1.0)),
        "the retry that never started gave its token back"
    );
    assert_eq!(bulkhead.metrics().in_flight, 0, "the slot was given back");
    assert_eq!(cb.metrics().failures, 1, "the real failure, counted once");
    assert_eq!(
        pipeline.run(flaky).await,
        Ok(1),
        "every policy works afterwards"
    );
}

#[tokio::test(start_paused = true)]
async fn in_a_custom_order_the_deadline_counts_from_the_retrys_first_attempt() {
    use palisade::pipeline::Stage;
    let bulkhead = Bulkhead::new(
        Bulkhead::builder()
            .max_concurrent(1)
            .max_queue(1)
            .build()
            .unwrap(),
    );
    // One slot held across all the attempts, taken after a 500 ms wait.
    let pipeline = Pipeline::builder()
        .retry(deadline_retry(ms(100), Duration::from_secs(1)))
        .bulkhead(bulkhead.clone())
        .timeout(timeout(ms(400)))
        .build_in_order(&[Stage::Bulkhead, Stage::Retry, Stage::Timeout])
        .unwrap();
    let busy = bulkhead.try_acquire().unwrap();
    let start = Instant::now();
    let starts = std::sync::Mutex::new(Vec::new());
    let run = pipeline.run(|| hang(start, &starts));
    let release = async {
        sleep(ms(500)).await;
        drop(busy);
    };
    let (out, ()) = tokio::join!(run, release);
    // The deadline runs from 500 ms to 1500 ms: both attempts get their whole 400 ms, and
    // at 1400 ms the 100 ms delay would use up the rest.
    assert_eq!(starts.into_inner().unwrap(), [ms(500), ms(1000)]);
    match out {
        Err(AppError::Rejected(Rejected::Timeout(elapsed))) => {
            assert_eq!(elapsed.duration(), ms(400))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn in_a_custom_order_a_timeout_outside_the_retry_bounds_the_attempts_and_their_delays() {
    let retry = retry(10);
    let pipeline = Pipeline::builder()
        .retry(retry.clone())
        .timeout(timeout(ms(250)))
        .build_in_order(&[Stage::Timeout, Stage::Retry])
        .unwrap();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let out: Result<(), AppError> = pipeline
        .run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                sleep(ms(90)).await;
                Err(AppError::Backend("down"))
            }
        })
        .await;
    // Attempts at 0, 100 and 200 ms (90 ms each, then a 10 ms delay); the third is cut at 250.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), ms(250));
    assert_eq!(
        out,
        Err(AppError::Rejected(Rejected::Timeout(Elapsed::new(
            "timeout",
            ms(250)
        ))))
    );
    let m = retry.metrics();
    assert_eq!(
        (m.calls, m.retries, m.gave_up),
        (1, 2, 0),
        "cut, not given up"
    );
}

#[tokio::test(start_paused = true)]
async fn in_a_custom_order_a_timeout_outside_the_bulkhead_covers_the_wait_and_counts_nothing() {
    let cb = breaker(1);
    let bulkhead = Bulkhead::new(
        Bulkhead::builder()
            .max_concurrent(1)
            .max_queue(1)
            .build()
            .unwrap(),
    );
    let pipeline = Pipeline::builder()
        .circuit_breaker(cb.clone())
        .bulkhead(bulkhead.clone())
        .timeout(timeout(ms(100)))
        .build_in_order(&[Stage::Timeout, Stage::CircuitBreaker, Stage::Bulkhead])
        .unwrap();
    let busy = bulkhead.try_acquire().unwrap();
    let calls = AtomicU32::new(0);
    let out: Result<(), AppError> = pipeline
        .run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await;
    assert!(
        matches!(out, Err(AppError::Rejected(Rejected::Timeout(_)))),
        "{out:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no slot, no call");
    assert_eq!(bulkhead.metrics().queued, 0, "the wait left the queue");
    assert_eq!(
        (cb.state(), cb.metrics().failures),
        (CircuitState::Closed, 0),
        "the breaker's permit went back uncounted"
    );
    drop(busy);
    assert_eq!(
        pipeline.run(|| async { Ok::<_, AppError>(()) }).await,
        Ok(())
    );
    assert_eq!(bulkhead.metrics().in_flight, 0);
}

// ===== one classifier for the whole pipeline =====

/// A 5xx status answered as `Ok` is a failure.
fn by_status<E>(r: &Result<u16, E>) -> palisade::Outcome {
    match r {
        Ok(status) if *status >= 500 => palisade::Outcome::Failure,
        Ok(_) => palisade::Outcome::Success,
        Err(_) => palisade::Outcome::Failure,
    }
}

#[tokio::test(start_paused = true)]
async fn the_pipelines_classifier_makes_an_ok_503_a_failure_for_retry_and_breaker() {
    for order in [None, Some([Stage::Retry, Stage::CircuitBreaker])] {
        let breaker = breaker(3);
        let builder = Pipeline::builder()
            .retry(retry(3))
            .circuit_breaker(breaker.clone())
            .classify(by_status::<AppError>);
        let pipeline = match order {
            Some(order) => builder.build_in_order(&order).unwrap(),
            None => builder.build(),
        };
        let calls = AtomicU32::new(0);
        let out: Result<u16, AppError> = pipeline
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok(503) }
            })
            .await;
        assert_eq!(
            out,
            Ok(503),
            "{order:?}: the last result comes out as it was"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "{order:?}: each 503 was retried"
        );
        assert_eq!(
            breaker.state(),
            CircuitState::Open,
            "{order:?}: and counted"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_preset_takes_a_classifier_after_it_is_built() {
    let pipeline = palisade::presets::Preset::database()
        .build("orders")
        .unwrap()
        .classify(by_status::<Rejected>);
    let calls = AtomicU32::new(0);
    let out = pipeline
        .run(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(if n == 0 { 502 } else { 200 }) }
        })
        .await;
    assert_eq!(out, Ok(200));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_layer_takes_the_classifier_a_cloner_and_a_hint() {
    use tower::ServiceExt;
    let breaker = breaker(5);
    let pipeline = Pipeline::builder()
        .retry(retry(3))
        .circuit_breaker(breaker.clone())
        .build();
    /// A request that is not `Clone`: the cloner makes the copies.
    struct Req(u32);
    let copies = AtomicU32::new(0);
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let times = std::sync::Mutex::new(Vec::new());
    let mut svc = pipeline
        .layer()
        .classify(by_status::<BoxError>)
        .cloner(|r: &Req| {
            copies.fetch_add(1, Ordering::SeqCst);
            Some(Req(r.0))
        })
        // The server says when to come back: 2 s, not the backoff's 10 ms.
        .hint(|r: &Result<u16, BoxError>| match r {
            Ok(503) => Some(Duration::from_secs(2)),
            _ => None,
        })
        .layer(tower::service_fn(|req: Req| {
            times.lock().unwrap().push(start.elapsed());
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(if n == 0 { 503 } else { req.0 as u16 }) }
        }));
    let out = svc.ready().await.unwrap().call(Req(200)).await.unwrap();
    assert_eq!(out, 200);
    assert_eq!(*times.lock().unwrap(), [ms(0), ms(2_000)]);
    assert!(copies.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        breaker.metrics().failures,
        0,
        "the success after the 503 reset the run"
    );
}

/// A layer over a tower-test mock follows the mock's readiness and keeps nothing from one
/// `poll_ready` to the next: pending while the mock is, ready once it is, then the call goes
/// through.
async fn follows_readiness<S>(
    name: &str,
    wrap: impl FnOnce(tower_test::mock::Mock<&'static str, &'static str>) -> S,
) where
    S: Service<&'static str, Response = &'static str>,
    S::Error: std::fmt::Debug,
{
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower_test::{assert_request_eq, mock};
    let (inner, mut handle) = mock::pair::<&'static str, &'static str>();
    let mut svc = mock::Spawn::new(wrap(inner));
    handle.allow(0);
    assert_pending!(svc.poll_ready(), "{name}");
    assert_pending!(svc.poll_ready(), "{name}");
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready(), "{name}");
    let mut call = tokio_test::task::spawn(svc.call("req"));
    assert_request_eq!(handle, "req").send_response("ok");
    assert_eq!(assert_ready_ok!(call.poll()), "ok", "{name}");
}

/// Every re-executing layer (retry, fallback, the pipeline's) passes readiness through.
#[tokio::test(start_paused = true)]
async fn retry_fallback_and_pipeline_layers_keep_nothing_across_poll_ready() {
    follows_readiness("retry", |m| retry(2).layer().layer(m)).await;
    let fallback: Fallback<&str> = Fallback::new(Fallback::builder().build().unwrap());
    follows_readiness("fallback", |m| fallback.layer().or_value("cached").layer(m)).await;
    let pipeline = Pipeline::builder()
        .retry(retry(2))
        .circuit_breaker(breaker(5))
        .build();
    follows_readiness("pipeline", |m| pipeline.layer().layer(m)).await;
}

// ===== the recommended order runs as the same order asked for by name =====

/// One call's story: what each attempt does (how long it takes, whether it fails; past the
/// last entry, the last again), and the policies around it.
#[derive(Debug, Clone, Copy)]
struct Story {
    name: &'static str,
    attempts: &'static [(u64, bool)],
    breaker_failures: u32,
    queue: u32,
    // A slot held by someone else for this long (ms) as the call starts.
    held: Option<u64>,
    deadline: Option<u64>,
    // The rate limiter's burst and max_wait (ms), at ten calls a second.
    limit: (u32, u64),
}

/// What a call did: its result, the attempts made, the time it took, and every policy's
/// events in the order they came.
type Trace = (
    Result<u64, AppError>,
    u32,
    Duration,
    Vec<(&'static str, palisade::telemetry::EventKind)>,
);

async fn trace(story: Story, spelt_out: bool) -> Trace {
    use palisade::telemetry::Event;
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = || {
        let events = events.clone();
        move |e: &Event| events.lock().unwrap().push((e.policy_name(), e.kind()))
    };
    let mut retry = Retry::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(10)))
        .name("retry")
        .listener(sink());
    if let Some(deadline) = story.deadline {
        retry = retry.deadline(ms(deadline));
    }
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(story.breaker_failures)
        .name("breaker")
        .listener(sink());
    let limiter = RateLimiter::builder()
        .rate(10, Duration::from_secs(1))
        .burst(story.limit.0)
        .max_wait(ms(story.limit.1))
        .name("limiter")
        .listener(sink());
    let bulkhead = Bulkhead::new(
        Bulkhead::builder()
            .max_concurrent(1)
            .max_queue(story.queue)
            .name("bulkhead")
            .listener(sink())
            .build()
            .unwrap(),
    );
    let timeout = TimeoutConfig::builder()
        .duration(ms(50))
        .name("timeout")
        .listener(sink());
    let builder = Pipeline::builder()
        .retry(Retry::new(retry.build().unwrap()))
        .circuit_breaker(CircuitBreaker::new(breaker.build().unwrap()))
        .rate_limiter(RateLimiter::new(limiter.build().unwrap()))
        .bulkhead(bulkhead.clone())
        .timeout(Timeout::new(timeout.build().unwrap()));
    let pipeline = if spelt_out {
        builder
            .build_in_order(&[
                Stage::Retry,
                Stage::CircuitBreaker,
                Stage::RateLimiter,
                Stage::Bulkhead,
                Stage::Timeout,
            ])
            .unwrap()
    } else {
        builder.build()
    };
    let held = story.held.map(|_| bulkhead.try_acquire().unwrap());
    events.lock().unwrap().clear();
    let start = Instant::now();
    let made = AtomicU32::new(0);
    let run = pipeline.run(|| {
        let n = made.fetch_add(1, Ordering::SeqCst) as usize;
        let (takes, fails) = story.attempts[n.min(story.attempts.len() - 1)];
        async move {
            sleep(ms(takes)).await;
            match fails {
                true => Err(AppError::Backend("down")),
                false => Ok(n as u64),
            }
        }
    });
    let release = async {
        sleep(ms(story.held.unwrap_or(0))).await;
        drop(held);
    };
    let (out, ()) = tokio::join!(run, release);
    let took = start.elapsed();
    let events = events.lock().unwrap().clone();
    (out, made.load(Ordering::SeqCst), took, events)
}

#[tokio::test(start_paused = true)]
async fn the_recommended_order_runs_as_the_same_order_asked_for_by_name() {
    let story = |name, attempts| Story {
        name,
        attempts,
        breaker_failures: 5,
        queue: 0,
        held: None,
        deadline: None,
        limit: (10, 0),
    };
    let stories = [
        story("answers at once", &[(0, false)]),
        story("answers after a while", &[(20, false)]),
        story("fails, then answers", &[(0, true), (5, false)]),
        story("always fails", &[(0, true)]),
        story(
            "hangs past the timeout, then answers",
            &[(80, false), (0, false)],
        ),
        story("always hangs", &[(80, false)]),
        Story {
            breaker_failures: 2,
            ..story("trips the breaker", &[(0, true)])
        },
        Story {
            held: Some(30),
            ..story("finds the bulkhead full", &[(0, false)])
        },
        Story {
            held: Some(30),
            queue: 1,
            ..story("waits for a slot", &[(0, false)])
        },
        Story {
            deadline: Some(100),
            ..story("runs into the deadline", &[(80, false)])
        },
        Story {
            held: Some(200),
            queue: 1,
            deadline: Some(100),
            ..story("waits past the deadline", &[(0, false)])
        },
        Story {
            limit: (1, 0),
            ..story("is rate limited on its second attempt", &[(0, true)])
        },
        Story {
            limit: (1, 1000),
            ..story(
                "waits for its turn on each retry",
                &[(0, true), (0, true), (0, false)],
            )
        },
        Story {
            limit: (1, 1000),
            deadline: Some(150),
            ..story("finds its turn past the deadline", &[(0, true)])
        },
        Story {
            limit: (1, 1000),
            deadline: Some(100),
            ..story("waits for its turn until the deadline", &[(0, true)])
        },
    ];
    for story in stories {
        let straight = trace(story, false).await;
        let spelt_out = trace(story, true).await;
        assert_eq!(straight, spelt_out, "{}", story.name);
        assert!(!straight.3.is_empty(), "{}: the policies spoke", story.name);
    }
}

// ===== the rate limiter in the pipeline =====

/// `count` a second, in bursts of `burst`, waiting up to `max_wait` for a turn.
fn limiter(count: u32, burst: u32, max_wait: Duration) -> RateLimiter {
    RateLimiter::new(
        RateLimiter::builder()
            .name("limiter")
            .rate(count, Duration::from_secs(1))
            .burst(burst)
            .max_wait(max_wait)
            .build()
            .unwrap(),
    )
}

fn is_rate_limited<T: std::fmt::Debug>(out: &Result<T, AppError>) -> bool {
    matches!(out, Err(AppError::Rejected(Rejected::RateLimited(_))))
}

#[tokio::test(start_paused = true)]
async fn a_limited_attempt_is_not_counted_by_the_breaker() {
    let cb = breaker(1);
    let limiter = limiter(1, 1, Duration::ZERO);
    let pipeline = Pipeline::builder()
        .circuit_breaker(cb.clone())
        .rate_limiter(limiter.clone())
        .build();
    limiter.try_acquire().unwrap();
    let calls = AtomicU32::new(0);
    for _ in 0..3 {
        let out: Result<(), AppError> = pipeline
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            })
            .await;
        assert!(is_rate_limited(&out), "{out:?}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a limited call is not made"
    );
    assert_eq!(
        cb.state(),
        CircuitState::Closed,
        "one failure would open it"
    );
    assert_eq!(cb.metrics().failures, 0);
    assert_eq!(limiter.metrics().limited, 3);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_takes_no_token() {
    let cb = breaker(1);
    let limiter = limiter(1, 2, Duration::ZERO);
    let pipeline = Pipeline::builder()
        .rate_limiter(limiter.clone())
        .circuit_breaker(cb.clone())
        .build();
    let out: Result<(), AppError> = pipeline
        .run(|| async { Err(AppError::Backend("down")) })
        .await;
    assert_eq!(out, Err(AppError::Backend("down")));
    assert_eq!(cb.state(), CircuitState::Open);
    for _ in 0..3 {
        let out: Result<(), AppError> = pipeline.run(|| async { Ok(()) }).await;
        assert!(
            matches!(out, Err(AppError::Rejected(Rejected::CircuitOpen(_)))),
            "{out:?}"
        );
    }
    let m = limiter.metrics();
    assert_eq!((m.admitted, m.limited, m.tokens), (1, 0, 1), "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn each_retry_attempt_takes_its_own_token() {
    let limiter = limiter(1, 5, Duration::ZERO);
    let pipeline = Pipeline::builder()
        .retry(retry(3))
        .rate_limiter(limiter.clone())
        .build();
    let calls = AtomicU32::new(0);
    let out: Result<(), AppError> = pipeline
        .run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(AppError::Backend("down")) }
        })
        .await;
    assert_eq!(out, Err(AppError::Backend("down")));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let m = limiter.metrics();
    assert_eq!((m.admitted, m.tokens), (3, 2), "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn a_limited_attempt_is_not_retried_unless_asked_then_after_retry_after() {
    for retry_rejections in [false, true] {
        let limiter = limiter(10, 1, Duration::ZERO);
        let pipeline = Pipeline::builder()
            .retry(Retry::new(
                Retry::builder()
                    .max_attempts(3)
                    .backoff(Backoff::constant(ms(10)))
                    .retry_rejections(retry_rejections)
                    .build()
                    .unwrap(),
            ))
            .rate_limiter(limiter.clone())
            .build();
        limiter.try_acquire().unwrap();
        let start = Instant::now();
        let out: Result<&str, AppError> = pipeline.run(|| async { Ok("served") }).await;
        if retry_rejections {
            assert_eq!(out, Ok("served"));
            assert_eq!(
                start.elapsed(),
                ms(100),
                "the limiter's retry_after, not the backoff's 10 ms"
            );
        } else {
            assert!(is_rate_limited(&out), "{out:?}");
            assert_eq!(start.elapsed(), Duration::ZERO);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_waits_for_its_turn_outside_the_bulkhead_and_the_timeout() {
    let limiter = limiter(1, 1, Duration::from_secs(5));
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let pipeline = Pipeline::builder()
        .rate_limiter(limiter.clone())
        .bulkhead(bulkhead.clone())
        .timeout(timeout(ms(500)))
        .build();
    limiter.try_acquire().unwrap();
    let start = Instant::now();
    let mut waiting = tokio_test::task::spawn(pipeline.run(|| async {
        sleep(ms(300)).await;
        Ok::<_, AppError>("served")
    }));
    assert!(waiting.poll().is_pending());
    assert_eq!(
        bulkhead.metrics().available,
        1,
        "no slot held while waiting for a turn"
    );
    let out = waiting.await;
    assert_eq!(
        out,
        Ok("served"),
        "the second's wait is not charged to the 500 ms timeout"
    );
    assert_eq!(start.elapsed(), ms(1300));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_dropped_gives_its_turn_back() {
    let limiter = limiter(1, 1, Duration::from_secs(5));
    let pipeline = Pipeline::builder()
        .retry(retry(3))
        .rate_limiter(limiter.clone())
        .build();
    limiter.try_acquire().unwrap();
    let mut waiting =
        tokio_test::task::spawn(pipeline.run(|| async { Ok::<_, AppError>("served") }));
    assert!(waiting.poll().is_pending(), "its turn is a second away");
    drop(waiting);
    tokio::time::advance(Duration::from_secs(1)).await;
    // Had the dropped call kept its turn, the next would be two seconds after the first.
    limiter.try_acquire().unwrap();
    let m = limiter.metrics();
    assert_eq!((m.admitted, m.limited), (2, 0), "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn a_turn_after_the_retrys_deadline_is_refused_at_once_and_takes_nothing() {
    let limiter = limiter(1, 1, Duration::from_secs(10));
    let pipeline = Pipeline::builder()
        .retry(deadline_retry(ms(10), ms(500)))
        .rate_limiter(limiter.clone())
        .build();
    limiter.try_acquire().unwrap();
    let start = Instant::now();
    let out: Result<(), AppError> = pipeline.run(|| async { Ok(()) }).await;
    assert!(is_rate_limited(&out), "{out:?}");
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait past the deadline");
    // The refused turn was not taken: the next one is still a second after the first.
    tokio::time::advance(Duration::from_secs(1)).await;
    limiter.try_acquire().unwrap();

    // With the deadline further than the turn, the call waits for it.
    let pipeline = Pipeline::builder()
        .retry(deadline_retry(ms(10), Duration::from_secs(2)))
        .rate_limiter(limiter.clone())
        .build();
    let start = Instant::now();
    let out: Result<(), AppError> = pipeline.run(|| async { Ok(()) }).await;
    assert_eq!(out, Ok(()));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_custom_order_can_put_the_rate_limiter_outside_the_retry() {
    let make = |limiter: &RateLimiter, custom: bool| {
        let b = Pipeline::builder()
            .retry(retry(3))
            .rate_limiter(limiter.clone());
        if custom {
            b.build_in_order(&[Stage::RateLimiter, Stage::Retry])
                .unwrap()
        } else {
            b.build()
        }
    };
    for (custom, tokens_spent) in [(false, 3), (true, 1)] {
        let limiter = limiter(1, 5, Duration::ZERO);
        let pipeline = make(&limiter, custom);
        let out: Result<(), AppError> = pipeline
            .run(|| async { Err(AppError::Backend("down")) })
            .await;
        assert_eq!(out, Err(AppError::Backend("down")));
        assert_eq!(
            limiter.metrics().tokens,
            5 - tokens_spent,
            "custom order: {custom}"
        );
    }
    let missing = Pipeline::builder()
        .retry(retry(3))
        .rate_limiter(limiter(1, 1, Duration::ZERO))
        .build_in_order(&[Stage::Retry])
        .unwrap_err();
    assert!(missing.rule().contains("RateLimiter"), "{missing}");
}

#[tokio::test(start_paused = true)]
async fn the_layer_refuses_with_rate_limited_and_the_breaker_stays_closed() {
    use tower::ServiceExt;
    let cb = breaker(1);
    let limiter = limiter(1, 1, Duration::ZERO);
    let pipeline = Pipeline::builder()
        .retry(retry(3))
        .circuit_breaker(cb.clone())
        .rate_limiter(limiter.clone())
        .build();
    let calls = std::sync::Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let mut svc = pipeline.layer().layer(tower::service_fn(move |_: ()| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, AppError>("served") }
    }));
    assert_eq!(svc.ready().await.unwrap().call(()).await, Ok("served"));
    let out = svc.ready().await.unwrap().call(()).await;
    assert!(is_rate_limited(&out), "{out:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cb.state(), CircuitState::Closed);
    assert_eq!(cb.metrics().failures, 0);
}
