//! Adversarial probes of the rate limiter's surfaces, in paused tokio time: waiters that
//! leave in the middle of a line or after their timer fired, tower readiness held, cloned,
//! repeated and dropped, panicking calls, extreme configs and `retry_after`s, the pipeline's
//! breaker and deadline around the limiter, and the counters after all of it.

#![cfg(all(feature = "tokio", feature = "tower"))]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;
use std::time::Duration;

use palisade::Rejected;
use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
use palisade::error::{ConfigError, LimitCause, RateLimited};
use palisade::pipeline::Pipeline;
use palisade::rate_limiter::{MAX_BURST, MAX_PERIOD, RateLimiter, RateLimiterConfigBuilder};
use palisade::retry::{Backoff, Retry};
use palisade::timeout::Timeout;
use support::AppError;
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready, task};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Ten a second (a token every 100 ms), in bursts of `burst`, waiting up to `max_wait`.
fn ten_a_second(burst: u32, max_wait: Duration) -> RateLimiter {
    RateLimiter::new(
        RateLimiter::builder()
            .name("api")
            .rate(10, Duration::from_secs(1))
            .burst(burst)
            .max_wait(max_wait)
            .build()
            .unwrap(),
    )
}

fn limited(r: Result<(), Rejected>) -> RateLimited {
    match r {
        Err(Rejected::RateLimited(l)) => l,
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

// ===== acquire: waiters that leave =====

#[tokio::test(start_paused = true)]
async fn a_waiter_leaving_from_the_middle_of_the_line_keeps_the_others_turns_and_admits_no_one_early()
 {
    let l = ten_a_second(1, Duration::from_secs(1));
    let start = Instant::now();
    l.try_acquire().unwrap();
    let mut a = task::spawn(l.acquire()); // 100 ms
    let mut b = task::spawn(l.acquire()); // 200 ms
    let mut c = task::spawn(l.acquire()); // 300 ms
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_pending!(c.poll());
    drop(b);
    // B's turn stays taken (C is behind it): a newcomer's turn is after C's.
    let mut d = task::spawn(l.acquire());
    assert_pending!(d.poll());
    advance(ms(100)).await;
    assert_ready!(a.poll()).unwrap();
    assert_pending!(c.poll());
    assert_pending!(d.poll());
    advance(ms(100)).await;
    // B's turn: nobody takes it, not even a fresh caller.
    assert!(l.try_acquire().is_err(), "a turn kept for a waiter behind");
    assert_pending!(c.poll());
    advance(ms(100)).await;
    assert_ready!(c.poll()).unwrap();
    assert_pending!(d.poll());
    advance(ms(100)).await;
    assert_ready!(d.poll()).unwrap();
    assert_eq!(start.elapsed(), ms(400));
    let m = l.metrics();
    assert_eq!((m.admitted, m.limited, m.tokens), (4, 1, 0), "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_dropped_after_its_timer_fired_but_before_its_poll_gives_its_turn_back_once() {
    let l = ten_a_second(1, Duration::from_secs(1));
    l.try_acquire().unwrap();
    let mut a = task::spawn(l.acquire());
    assert_pending!(a.poll());
    advance(ms(100)).await;
    assert!(a.is_woken(), "its timer fired");
    drop(a);
    // Its turn (100 ms) was never used: one token, no more.
    l.try_acquire().unwrap();
    assert!(l.try_acquire().is_err(), "given back once, not twice");
    let m = l.metrics();
    assert_eq!((m.admitted, m.limited, m.tokens), (2, 1, 0), "{m:?}");

    // The same with a later waiter behind it: the turn stays taken, the later one keeps
    // its own, and nobody is admitted twice in one interval.
    let l = ten_a_second(1, Duration::from_secs(1));
    l.try_acquire().unwrap();
    let mut a = task::spawn(l.acquire()); // 100 ms
    let mut b = task::spawn(l.acquire()); // 200 ms
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    advance(ms(100)).await;
    drop(a);
    assert!(
        l.try_acquire().is_err(),
        "the turn is not handed to a newcomer"
    );
    assert_pending!(b.poll());
    advance(ms(100)).await;
    assert_ready!(b.poll()).unwrap();
    let m = l.metrics();
    assert_eq!((m.admitted, m.limited, m.tokens), (2, 1, 0), "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn a_weighted_waiter_that_leaves_as_the_latest_gives_back_its_whole_cost() {
    let l = ten_a_second(5, Duration::from_secs(1));
    l.try_acquire_n(5).unwrap();
    let mut a = task::spawn(l.acquire_n(3)); // 300 ms
    assert_pending!(a.poll());
    drop(a);
    advance(ms(300)).await;
    l.try_acquire_n(3).unwrap();
    assert_eq!(l.metrics().tokens, 0);
    assert_eq!(l.metrics().admitted, 2);
}

// ===== tower readiness =====

mod tower_surface {
    use super::*;
    use tower::Layer;
    use tower_test::{assert_request_eq, mock};

    #[tokio::test(start_paused = true)]
    async fn poll_ready_twice_then_one_call_takes_one_token_and_counts_one_admission() {
        let l = ten_a_second(3, Duration::ZERO);
        let (svc, mut handle) = mock::pair::<&str, &str>();
        handle.allow(1);
        let mut svc = mock::Spawn::new(l.layer().layer(svc));
        for _ in 0..3 {
            assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
        }
        assert_eq!(
            l.metrics().tokens,
            2,
            "readiness holds one turn, however often asked"
        );
        let call = tokio::spawn(svc.call("a"));
        assert_request_eq!(handle, "a").send_response("A");
        assert_eq!(call.await.unwrap().unwrap(), "A");
        let m = l.metrics();
        assert_eq!((m.admitted, m.limited, m.tokens), (1, 0, 2), "{m:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_held_across_an_inner_service_that_is_not_ready_is_kept_then_given_back() {
        let l = ten_a_second(1, Duration::ZERO);
        let (svc, mut handle) = mock::pair::<&str, &str>();
        handle.allow(0);
        let mut svc = mock::Spawn::new(l.layer().layer(svc));
        assert!(
            svc.poll_ready().is_pending(),
            "the inner service is not ready"
        );
        assert!(svc.poll_ready().is_pending());
        assert_eq!(l.metrics().tokens, 0, "one turn held, not taken again");
        drop(svc);
        let m = l.metrics();
        assert_eq!((m.admitted, m.limited, m.tokens), (0, 0, 1), "{m:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn clones_each_hold_their_own_readiness() {
        let l = ten_a_second(2, Duration::ZERO);
        let (svc, mut handle) = mock::pair::<&str, &str>();
        handle.allow(2);
        let first = l.layer().layer(svc);
        let second = first.clone();
        let mut first = mock::Spawn::new(first);
        let mut second = mock::Spawn::new(second);
        assert!(first.poll_ready().is_ready());
        assert!(second.poll_ready().is_ready());
        assert_eq!(l.metrics().tokens, 0, "a turn each");
        // A third clone finds the bucket empty: ready, and its call refused.
        let mut third = mock::Spawn::new(first.get_ref().clone());
        assert!(matches!(third.poll_ready(), Poll::Ready(Ok(()))));
        let refused = third.call("c").await.unwrap_err();
        assert!(refused.downcast_ref::<Rejected>().is_some(), "{refused}");
        let a = tokio::spawn(first.call("a"));
        let b = tokio::spawn(second.call("b"));
        assert_request_eq!(handle, "a").send_response("A");
        assert_request_eq!(handle, "b").send_response("B");
        assert_eq!(a.await.unwrap().unwrap(), "A");
        assert_eq!(b.await.unwrap().unwrap(), "B");
        let m = l.metrics();
        assert_eq!((m.admitted, m.limited, m.tokens), (2, 1, 0), "{m:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn with_max_wait_a_turn_too_far_away_is_ready_and_the_call_fails_without_the_service() {
        let l = ten_a_second(1, ms(150));
        let (svc, mut handle) = mock::pair::<&str, &str>();
        handle.allow(0);
        l.try_acquire().unwrap();
        l.acquire().await.unwrap(); // waited 100 ms: the next turn is 100 ms away
        let _ = l.try_acquire();
        let mut waiting = task::spawn(l.acquire()); // takes the turn 100 ms away
        assert_pending!(waiting.poll());
        // This service's turn would be 200 ms away, past 150 ms.
        let mut svc = mock::Spawn::new(l.layer().layer(svc));
        assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
        let err = svc.call("x").await.unwrap_err();
        let rejected = err.downcast_ref::<Rejected>().unwrap();
        assert_eq!(rejected.retry_after(), Some(ms(200)));
        drop(waiting);
    }
}

// ===== run / run_once with calls that panic =====

#[tokio::test(start_paused = true)]
async fn a_call_that_panics_spends_its_token_and_nothing_else() {
    let l = ten_a_second(3, Duration::ZERO);
    let made = std::panic::AssertUnwindSafe(
        l.run(|| -> std::future::Ready<Result<(), AppError>> { panic!("make") }),
    );
    assert!(futures_util::FutureExt::catch_unwind(made).await.is_err());
    let polled = std::panic::AssertUnwindSafe(l.run_once(async {
        panic!("poll");
        #[allow(unreachable_code)]
        Ok::<(), AppError>(())
    }));
    assert!(futures_util::FutureExt::catch_unwind(polled).await.is_err());
    // Each call went ahead (its turn came): its token is spent, counted once as admitted.
    let m = l.metrics();
    assert_eq!((m.admitted, m.limited, m.tokens), (2, 0, 1), "{m:?}");
    l.try_acquire().unwrap();
    assert!(l.try_acquire().is_err());
}

// ===== retry_after =====

#[tokio::test(start_paused = true)]
async fn retry_after_is_exact_to_the_nanosecond_and_never_short() {
    // 3 a second: a token every 333_333_334 ns (rounded up).
    let l = RateLimiter::new(
        RateLimiter::builder()
            .rate(3, Duration::from_secs(1))
            .burst(1)
            .build()
            .unwrap(),
    );
    l.try_acquire().unwrap();
    let after = limited(l.try_acquire()).retry_after().unwrap();
    assert_eq!(after, Duration::from_nanos(333_333_334));
    advance(after - Duration::from_nanos(1)).await;
    assert_eq!(
        limited(l.try_acquire()).retry_after(),
        Some(Duration::from_nanos(1))
    );
    advance(Duration::from_nanos(1)).await;
    l.try_acquire().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_slowest_rate_and_the_largest_bucket_never_overflow() {
    // One a day, with the largest burst that refills within the word's span.
    let burst = (u64::MAX / 4 / MAX_PERIOD.as_nanos() as u64) as u32;
    let l = RateLimiter::new(
        RateLimiter::builder()
            .rate(1, MAX_PERIOD)
            .burst(burst)
            .max_wait(MAX_PERIOD)
            .build()
            .unwrap(),
    );
    l.try_acquire_n(burst).unwrap();
    let after = limited(l.try_acquire_n(burst)).retry_after().unwrap();
    assert_eq!(after, MAX_PERIOD * burst);
    let after = limited(l.acquire_n(2).await).retry_after().unwrap();
    assert_eq!(after, MAX_PERIOD * 2, "past max_wait: refused at once");
    let start = Instant::now();
    l.acquire().await.unwrap();
    assert_eq!(start.elapsed(), MAX_PERIOD);
    assert_eq!(
        limited(l.try_acquire_n(burst + 1)).cause(),
        LimitCause::CostAboveBurst
    );
    assert!(
        RateLimiter::builder()
            .rate(1, MAX_PERIOD)
            .burst(burst + 1)
            .build()
            .is_err_and(|e| e.field() == "burst")
    );
    // The fastest: one a nanosecond, the largest burst.
    let l = RateLimiter::new(
        RateLimiter::builder()
            .rate(u32::MAX, Duration::from_nanos(u64::from(u32::MAX)))
            .burst(MAX_BURST)
            .build()
            .unwrap(),
    );
    l.try_acquire_n(MAX_BURST).unwrap();
    assert_eq!(
        limited(l.try_acquire()).retry_after(),
        Some(Duration::from_nanos(1))
    );
}

#[cfg(feature = "http")]
mod shed {
    use super::*;
    use palisade::LiftLayer;
    use palisade::http::ShedLayer;
    use std::convert::Infallible;
    use tower::{Service, ServiceBuilder, ServiceExt};

    async fn answer(l: &RateLimiter, shed: ShedLayer) -> http::Response<String> {
        let mut server = ServiceBuilder::new()
            .layer(shed)
            .layer(l.layer())
            .layer(LiftLayer)
            .service_fn(|_: http::Request<()>| async {
                Ok::<_, Infallible>(http::Response::new(String::from("ok")))
            });
        server
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_sub_second_retry_after_is_sent_as_one_second_never_zero() {
        let l = ten_a_second(1, Duration::ZERO);
        assert_eq!(answer(&l, ShedLayer::new()).await.status(), 200);
        advance(ms(70)).await;
        let resp = answer(&l, ShedLayer::new()).await;
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "1", "30 ms rounded up");
        advance(ms(30)).await;
        assert_eq!(answer(&l, ShedLayer::new()).await.status(), 200);
        // A day's wait, in seconds.
        let daily = RateLimiter::new(RateLimiter::builder().rate(1, MAX_PERIOD).build().unwrap());
        assert_eq!(answer(&daily, ShedLayer::new()).await.status(), 200);
        advance(ms(300)).await;
        let resp = answer(&daily, ShedLayer::new()).await;
        assert_eq!(
            resp.headers()["retry-after"],
            "86400",
            "86 399.7 s rounded up"
        );
    }
}

// ===== config =====

#[test]
fn extreme_configs_are_refused_with_field_rule_and_value_never_a_panic() {
    let day = MAX_PERIOD;
    let cases: [(RateLimiterConfigBuilder, &str, &str); 8] = [
        (
            RateLimiter::builder().rate(0, Duration::ZERO),
            "rate",
            "0 per 0ns",
        ),
        (
            RateLimiter::builder().rate(u32::MAX, Duration::MAX),
            "rate",
            "per",
        ),
        (
            RateLimiter::builder().rate(u32::MAX, Duration::from_nanos(1)),
            "rate",
            "nanosecond",
        ),
        (RateLimiter::builder().rate(1, day).burst(0), "burst", "0"),
        (
            RateLimiter::builder().rate(1, day).burst(u32::MAX),
            "burst",
            "4294967295",
        ),
        (
            RateLimiter::builder()
                .rate(1, ms(1))
                .max_wait(Duration::MAX),
            "max_wait",
            "18446744073709551615",
        ),
        (
            RateLimiter::builder()
                .rate(1, ms(1))
                .max_wait(day + Duration::from_nanos(1)),
            "max_wait",
            "86400.000000001s",
        ),
        (
            RateLimiter::builder().rate(1, ms(1)).name("  "),
            "name",
            "must not be empty",
        ),
    ];
    for (builder, field, shown) in cases {
        let err: ConfigError = builder.clone().build().unwrap_err();
        assert_eq!(err.field(), field, "{builder:?}: {err}");
        assert!(err.to_string().contains(shown), "{builder:?}: {err}");
    }
    // The default burst of a count above MAX_BURST.
    let c = RateLimiter::builder()
        .rate(2_000_000_000, Duration::from_secs(2))
        .build()
        .unwrap();
    assert_eq!(c.burst(), MAX_BURST);
}

#[cfg(feature = "json")]
#[test]
fn a_config_survives_a_round_trip_through_a_file() {
    use palisade::config::Policies;
    let text = r#"{"rate_limiter": {"api": {"rate": 3, "period": "1.5s", "burst": 2, "max_wait": "250ms"}}}"#;
    let policies = Policies::from_json_str(text).unwrap();
    let c = &policies.rate_limiter["api"];
    assert_eq!(
        (c.count(), c.period(), c.burst(), c.max_wait(), c.name()),
        (3, ms(1500), 2, ms(250), "api")
    );
    let zero_wait =
        Policies::from_json_str(r#"{"rate_limiter": {"api": {"rate": 1, "period": "0s"}}}"#)
            .unwrap_err();
    assert!(zero_wait.field().contains("period"), "{zero_wait}");
    let long_wait = Policies::from_json_str(
        r#"{"rate_limiter": {"api": {"rate": 1, "period": "1s", "max_wait": "25h"}}}"#,
    )
    .unwrap_err();
    assert!(long_wait.field().contains("max_wait"), "{long_wait}");
}

// ===== the pipeline =====

fn breaker(failures: u32) -> CircuitBreaker {
    CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(failures)
            .break_duration(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn the_layer_takes_no_token_for_a_call_the_breaker_refuses() {
    use tower::{Layer, Service, ServiceExt};
    let cb = breaker(1);
    let l = ten_a_second(3, Duration::ZERO);
    let pipeline = Pipeline::builder()
        .circuit_breaker(cb.clone())
        .rate_limiter(l.clone())
        .build();
    let mut svc = pipeline
        .layer()
        .layer(tower::service_fn(|fail: bool| async move {
            if fail {
                Err(AppError::Backend("down"))
            } else {
                Ok("served")
            }
        }));
    let out = svc.ready().await.unwrap().call(true).await;
    assert_eq!(out, Err(AppError::Backend("down")));
    assert_eq!(cb.state(), CircuitState::Open);
    for _ in 0..5 {
        let out = svc.ready().await.unwrap().call(false).await;
        assert!(
            matches!(out, Err(AppError::Rejected(Rejected::CircuitOpen(_)))),
            "{out:?}"
        );
    }
    let m = l.metrics();
    assert_eq!((m.admitted, m.limited, m.tokens), (1, 0, 2), "{m:?}");
}

#[tokio::test(start_paused = true)]
async fn a_limited_attempt_in_half_open_gives_the_probe_back() {
    let cb = breaker(1);
    let l = ten_a_second(1, Duration::ZERO);
    let pipeline = Pipeline::builder()
        .circuit_breaker(cb.clone())
        .rate_limiter(l.clone())
        .build();
    let out: Result<(), AppError> = pipeline
        .run(|| async { Err(AppError::Backend("down")) })
        .await;
    assert!(out.is_err());
    advance(Duration::from_secs(30)).await;
    l.try_acquire().unwrap();
    // Half-open: the probe is admitted, then the limiter refuses the attempt.
    let out: Result<(), AppError> = pipeline.run(|| async { Ok(()) }).await;
    assert!(
        matches!(out, Err(AppError::Rejected(Rejected::RateLimited(_)))),
        "{out:?}"
    );
    advance(ms(100)).await;
    let out: Result<(), AppError> = pipeline.run(|| async { Ok(()) }).await;
    assert_eq!(
        out,
        Ok(()),
        "the probe slot came back and the next probe closed it"
    );
    assert_eq!(cb.state(), CircuitState::Closed);
}

/// A turn that comes at the retry's deadline, or so close to it that the timer (whose sleeps
/// end up to a tick late) wakes the attempt at the deadline, leaves the attempt no time: the
/// call is not made. Such a turn must be refused at once, as one past the deadline is,
/// rather than spent on nothing.
#[tokio::test(start_paused = true)]
async fn a_turn_too_close_to_the_deadline_is_refused_at_once_and_takes_no_token() {
    // The turn comes exactly at the deadline, then half a millisecond before it (the tokio
    // timer's sleep for it ends at the deadline).
    for interval in [Duration::from_secs(1), Duration::from_micros(999_500)] {
        let l = RateLimiter::new(
            RateLimiter::builder()
                .rate(1, interval)
                .burst(1)
                .max_wait(Duration::from_secs(5))
                .build()
                .unwrap(),
        );
        let pipeline = Pipeline::builder()
            .retry(Retry::new(
                Retry::builder()
                    .max_attempts(3)
                    .backoff(Backoff::constant(ms(10)))
                    .deadline(Duration::from_secs(1))
                    .build()
                    .unwrap(),
            ))
            .rate_limiter(l.clone())
            .timeout(Timeout::new(
                Timeout::builder().duration(ms(500)).build().unwrap(),
            ))
            .build();
        let start = Instant::now();
        l.try_acquire().unwrap();
        let calls = AtomicU32::new(0);
        let out: Result<(), AppError> = pipeline
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            })
            .await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "{interval:?}: no time for the call"
        );
        assert!(
            matches!(out, Err(AppError::Rejected(Rejected::RateLimited(_)))),
            "{interval:?}: {out:?}"
        );
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "{interval:?}: refused at once"
        );
        // The turn was not taken: it is there for the next caller when it comes.
        tokio::time::sleep_until(start + interval).await;
        l.try_acquire().unwrap_or_else(|e| {
            panic!(
                "{interval:?}: a token spent on a call never made: {e}; {:?}",
                l.metrics()
            )
        });
    }
}

#[tokio::test(start_paused = true)]
async fn the_layer_retries_a_limited_attempt_only_when_asked_then_after_retry_after() {
    use tower::{Layer, Service, ServiceExt};
    for retry_rejections in [false, true] {
        let l = ten_a_second(1, Duration::ZERO);
        let pipeline = Pipeline::builder()
            .retry(Retry::new(
                Retry::builder()
                    .max_attempts(3)
                    .backoff(Backoff::constant(ms(10)))
                    .retry_rejections(retry_rejections)
                    .build()
                    .unwrap(),
            ))
            .rate_limiter(l.clone())
            .build();
        let calls = std::sync::Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let mut svc = pipeline.layer().layer(tower::service_fn(move |_: ()| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, AppError>("served") }
        }));
        l.try_acquire().unwrap();
        let start = Instant::now();
        let out = svc.ready().await.unwrap().call(()).await;
        if retry_rejections {
            assert_eq!(out, Ok("served"));
            assert_eq!(start.elapsed(), ms(100), "the limiter's retry_after");
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        } else {
            assert!(
                matches!(out, Err(AppError::Rejected(Rejected::RateLimited(_)))),
                "{out:?}"
            );
            assert_eq!(start.elapsed(), Duration::ZERO);
            assert_eq!(calls.load(Ordering::SeqCst), 0);
        }
        let m = l.metrics();
        assert_eq!(
            (m.admitted, m.limited),
            (1 + u64::from(retry_rejections), 1),
            "{m:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_service_dropped_after_its_turn_came_but_before_its_poll_gives_it_back() {
    use tower::Layer;
    use tower_test::mock;
    let l = ten_a_second(1, Duration::from_secs(1));
    let (svc, mut handle) = mock::pair::<&str, &str>();
    handle.allow(1);
    l.try_acquire().unwrap();
    let mut waiting = mock::Spawn::new(l.layer().layer(svc));
    assert!(waiting.poll_ready().is_pending());
    advance(ms(100)).await;
    drop(waiting);
    l.try_acquire().unwrap();
    assert!(l.try_acquire().is_err(), "given back once");
    let m = l.metrics();
    assert_eq!((m.admitted, m.limited, m.tokens), (2, 1, 0), "{m:?}");
}
