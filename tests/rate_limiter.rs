//! The rate limiter on the closure surface, in paused tokio time: refusals with their
//! `retry_after`, waits in the order asked, turns given back by callers that leave, costs
//! above the burst, long idle, and how the other policies treat its refusals.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::circuit_breaker::CircuitBreaker;
use palisade::error::{LimitCause, RateLimited};
use palisade::rate_limiter::{RateLimiter, RateLimiterConfigBuilder};
use palisade::retry::{Backoff, Retry};
use palisade::telemetry::{Event, EventKind};
use palisade::{Rejected, error::ConfigError};
use support::AppError;
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready, task};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Ten a second (a token every 100 ms).
fn ten_a_second() -> RateLimiterConfigBuilder {
    RateLimiter::builder()
        .name("api")
        .rate(10, Duration::from_secs(1))
}

fn limiter(b: RateLimiterConfigBuilder) -> RateLimiter {
    RateLimiter::new(b.build().unwrap())
}

fn limited(r: Result<(), Rejected>) -> RateLimited {
    match r {
        Err(Rejected::RateLimited(l)) => l,
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_then_one_token_per_interval_with_the_wait_as_retry_after() {
    let l = limiter(ten_a_second().burst(3));
    for _ in 0..3 {
        l.try_acquire().unwrap();
    }
    let refused = limited(l.try_acquire());
    assert_eq!(refused.cause(), LimitCause::OverRate);
    assert_eq!(refused.retry_after(), Some(ms(100)));
    assert_eq!(refused.policy_name(), "api");
    advance(ms(60)).await;
    assert_eq!(limited(l.try_acquire()).retry_after(), Some(ms(40)));
    advance(ms(40)).await;
    l.try_acquire().unwrap();
    assert!(l.try_acquire().is_err());
    let m = l.metrics();
    assert_eq!((m.admitted, m.limited, m.tokens, m.burst), (4, 3, 0, 3));
}

#[tokio::test(start_paused = true)]
async fn a_long_idle_spell_refills_the_burst_and_no_more() {
    let l = limiter(ten_a_second().burst(5));
    for _ in 0..5 {
        l.try_acquire().unwrap();
    }
    for idle in [Duration::from_secs(3600), Duration::from_secs(86_400 * 30)] {
        advance(idle).await;
        assert_eq!(l.metrics().tokens, 5);
        for _ in 0..5 {
            l.try_acquire().unwrap();
        }
        assert!(
            l.try_acquire().is_err(),
            "after {idle:?}, a burst of 5 and no more"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_cost_above_the_burst_is_refused_for_good() {
    let l = limiter(ten_a_second().burst(4).max_wait(Duration::from_secs(60)));
    let never = limited(l.try_acquire_n(5));
    assert_eq!(never.cause(), LimitCause::CostAboveBurst);
    assert_eq!(never.retry_after(), None);
    let waited = limited(l.acquire_n(5).await);
    assert_eq!(waited.cause(), LimitCause::CostAboveBurst);
    assert_eq!(l.metrics().tokens, 4, "a refusal takes nothing");
    l.try_acquire_n(4).unwrap();
    l.try_acquire_n(0).unwrap();
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_the_order_they_asked_within_max_wait() {
    let l = limiter(ten_a_second().burst(1).max_wait(ms(250)));
    let start = Instant::now();
    l.acquire().await.unwrap();
    let mut second = task::spawn(l.acquire());
    let mut third = task::spawn(l.acquire());
    assert_pending!(second.poll());
    assert_pending!(third.poll());
    // The fourth's turn would be 300 ms away, past max_wait: refused at once, with it.
    let fourth = limited(l.acquire().await);
    assert_eq!(fourth.retry_after(), Some(ms(300)));
    advance(ms(100)).await;
    assert_ready!(second.poll()).unwrap();
    assert_pending!(third.poll());
    advance(ms(100)).await;
    assert_ready!(third.poll()).unwrap();
    assert_eq!(start.elapsed(), ms(200));
    assert_eq!(l.metrics().admitted, 3);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_leaves_gives_its_turn_back_when_it_is_the_latest() {
    let l = limiter(ten_a_second().burst(1).max_wait(Duration::from_secs(1)));
    l.try_acquire().unwrap();
    let mut first = task::spawn(l.acquire());
    assert_pending!(first.poll());
    let mut second = task::spawn(l.acquire());
    assert_pending!(second.poll());
    // The first leaves with the second behind it: its turn (100 ms) stays taken.
    drop(first);
    // The second leaves as the latest: its turn (200 ms) is free again.
    drop(second);
    let start = Instant::now();
    l.acquire().await.unwrap();
    assert_eq!(
        start.elapsed(),
        ms(200),
        "the newcomer takes the turn given back"
    );
    assert_eq!(l.metrics().admitted, 2, "turns given up are not admissions");
}

#[tokio::test(start_paused = true)]
async fn run_never_starts_a_refused_call_and_counts_its_refusal_once() {
    let l = limiter(ten_a_second().burst(1));
    let calls = AtomicU32::new(0);
    let call = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, AppError>(())
    };
    l.run(call).await.unwrap();
    let refused = l.run(call).await;
    assert!(matches!(
        refused,
        Err(AppError::Rejected(Rejected::RateLimited(_)))
    ));
    assert!(l.run_once(call()).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(l.metrics().limited, 2);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_never_counts_a_rate_limit_as_a_failure() {
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .build()
            .unwrap(),
    );
    let l = limiter(ten_a_second().burst(1));
    l.try_acquire().unwrap();
    for _ in 0..5 {
        let out = breaker
            .run(|| l.run(|| async { Ok::<_, AppError>(()) }))
            .await;
        assert!(out.is_err());
    }
    assert_eq!(breaker.metrics().failures, 0);
    assert!(breaker.try_acquire().is_ok(), "still closed");
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_out_a_rate_limit_only_when_asked() {
    let l = limiter(ten_a_second().burst(1));
    let plain = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(1)))
            .build()
            .unwrap(),
    );
    l.try_acquire().unwrap();
    let out = plain
        .run(|| l.run(|| async { Ok::<_, AppError>(()) }))
        .await;
    assert!(out.is_err(), "not retried by default");

    let asked = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(1)))
            .retry_rejections(true)
            .build()
            .unwrap(),
    );
    let start = Instant::now();
    let out = asked
        .run(|| l.run(|| async { Ok::<_, AppError>(()) }))
        .await;
    assert!(out.is_ok());
    assert_eq!(start.elapsed(), ms(100), "after the limiter's retry_after");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_complete_before_a_panicking_listener_hears_of_it() {
    let heard = Arc::new(Mutex::new(0));
    let count = heard.clone();
    let l = limiter(ten_a_second().burst(1).listener(move |e: &Event| {
        if let EventKind::Rejected(Rejected::RateLimited(_)) = e.kind() {
            *count.lock().unwrap() += 1;
            panic!("listener");
        }
    }));
    l.try_acquire().unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.try_acquire()));
    assert!(panicked.is_err());
    assert_eq!(*heard.lock().unwrap(), 1);
    let m = l.metrics();
    assert_eq!((m.admitted, m.limited, m.tokens), (1, 1, 0));
    advance(ms(100)).await;
    l.try_acquire().unwrap();
}

#[test]
fn every_invalid_config_names_its_field() {
    let day = Duration::from_secs(86_400);
    let cases: [(RateLimiterConfigBuilder, &str); 8] = [
        (RateLimiter::builder(), "rate"),
        (RateLimiter::builder().rate(0, day), "rate"),
        (RateLimiter::builder().rate(1, Duration::ZERO), "rate"),
        (
            RateLimiter::builder().rate(1, day + Duration::from_nanos(1)),
            "rate",
        ),
        (
            RateLimiter::builder().rate(11, Duration::from_nanos(10)),
            "rate",
        ),
        (RateLimiter::builder().rate(1, day).burst(0), "burst"),
        (RateLimiter::builder().rate(1, day).burst(1 << 30), "burst"),
        (
            RateLimiter::builder()
                .rate(1, Duration::from_secs(1))
                .max_wait(day * 2),
            "max_wait",
        ),
    ];
    for (builder, field) in cases {
        let err: ConfigError = builder.clone().build().unwrap_err();
        assert_eq!(err.field(), field, "{builder:?}: {err}");
    }
    assert!(
        RateLimiter::builder()
            .rate(10, Duration::from_nanos(10))
            .build()
            .is_ok()
    );
    assert!(
        RateLimiter::builder()
            .rate(1, day)
            .burst(1000)
            .build()
            .is_ok()
    );
}

// ===== tower =====

mod tower_surface {
    use super::*;
    use tower::Layer;
    use tower_test::{assert_request_eq, mock};

    #[tokio::test(start_paused = true)]
    async fn poll_ready_waits_for_the_turn_then_the_call_goes_through() {
        let l = limiter(ten_a_second().burst(1).max_wait(Duration::from_secs(1)));
        let (svc, mut handle) = mock::pair::<&str, &str>();
        let mut svc = mock::Spawn::new(l.layer().layer(svc));
        handle.allow(2);
        assert!(svc.poll_ready().is_ready());
        let first = tokio::spawn(svc.call("a"));
        assert_request_eq!(handle, "a").send_response("A");
        assert_eq!(first.await.unwrap().unwrap(), "A");
        // The next turn is 100 ms away: Pending, holding it.
        assert!(svc.poll_ready().is_pending());
        assert_eq!(l.metrics().tokens, 0);
        advance(ms(100)).await;
        assert!(svc.poll_ready().is_ready());
        let second = tokio::spawn(svc.call("b"));
        assert_request_eq!(handle, "b").send_response("B");
        assert_eq!(second.await.unwrap().unwrap(), "B");
        assert_eq!(l.metrics().admitted, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_ready_not_an_error_and_the_call_fails_without_reaching_the_service() {
        let l = limiter(ten_a_second().burst(1));
        l.try_acquire().unwrap();
        let (svc, mut handle) = mock::pair::<&str, &str>();
        let mut svc = mock::Spawn::new(l.layer().layer(svc));
        handle.allow(0);
        for _ in 0..3 {
            assert!(matches!(svc.poll_ready(), std::task::Poll::Ready(Ok(()))));
        }
        let out = svc.call("a").await;
        let err = out.unwrap_err();
        let rejected = err.downcast_ref::<Rejected>().expect("a rejection");
        assert_eq!(rejected.retry_after(), Some(ms(100)));
        assert_eq!(l.metrics().limited, 1, "counted once per refused call");
        // A token later, poll_ready asks again and takes it.
        advance(ms(100)).await;
        handle.allow(1);
        assert!(svc.poll_ready().is_ready());
        assert_eq!(l.metrics().tokens, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_and_its_listener_are_freed_once_every_handle_and_service_is_gone() {
        let marker = Arc::new(());
        let held = marker.clone();
        let l = limiter(ten_a_second().listener(move |_: &Event| {
            let _ = &held;
        }));
        let (svc, mut handle) = mock::pair::<&str, &str>();
        handle.allow(3);
        let mut svc = mock::Spawn::new(l.layer().layer(svc));
        for req in ["a", "b", "c"] {
            assert!(svc.poll_ready().is_ready());
            let call = tokio::spawn(svc.call(req));
            assert_request_eq!(handle, req).send_response("ok");
            call.await.unwrap().unwrap();
        }
        assert_eq!(l.metrics().admitted, 3);
        drop((svc, l));
        assert_eq!(
            Arc::strong_count(&marker),
            1,
            "the listener was dropped with the limiter"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_clone_starts_without_a_turn_and_call_before_poll_ready_panics() {
        let l = limiter(ten_a_second().burst(2));
        let (svc, mut handle) = mock::pair::<&str, &str>();
        handle.allow(2);
        let mut first = l.layer().layer(svc);
        let waker = futures_noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(tower::Service::poll_ready(&mut first, &mut cx).is_ready());
        let mut clone = first.clone();
        assert_eq!(l.metrics().tokens, 1, "only the original holds a turn");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(tower::Service::call(&mut clone, "x"))
        }));
        assert!(panicked.is_err(), "call before poll_ready panics");
        drop((first, clone));
        assert_eq!(l.metrics().tokens, 2, "the unused turn came back");
        assert_eq!(
            l.metrics().admitted,
            0,
            "a turn given back is not an admission"
        );
    }

    fn futures_noop_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_dropped_between_poll_ready_and_call_gives_its_turn_back() {
        let l = limiter(ten_a_second().burst(1).max_wait(Duration::from_secs(1)));
        let (svc, mut handle) = mock::pair::<&str, &str>();
        handle.allow(1);
        let mut ready = mock::Spawn::new(l.layer().layer(svc.clone()));
        assert!(ready.poll_ready().is_ready());
        assert_eq!(l.metrics().tokens, 0);
        drop(ready);
        assert_eq!(l.metrics().tokens, 1, "the unused token came back");
        // Also while waiting: the reserved turn goes back.
        l.try_acquire().unwrap();
        let mut waiting = mock::Spawn::new(l.layer().layer(svc));
        assert!(waiting.poll_ready().is_pending());
        drop(waiting);
        let start = Instant::now();
        l.acquire().await.unwrap();
        assert_eq!(
            start.elapsed(),
            ms(100),
            "the turn the service left is free"
        );
    }
}

#[test]
fn a_timer_that_panics_while_a_turn_is_taken_gives_the_turn_back() {
    use palisade::clock::FakeClock;
    use std::future::Future;
    let clock = FakeClock::new();
    let timer = |_: Duration| -> std::future::Ready<()> { panic!("timer") };
    let l = RateLimiter::with_timer_and_clock(
        ten_a_second()
            .burst(1)
            .max_wait(Duration::from_secs(1))
            .build()
            .unwrap(),
        timer,
        clock.clone(),
    );
    l.try_acquire().unwrap();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut fut = std::pin::pin!(l.acquire());
        let _ = fut.as_mut().poll(&mut cx);
    }));
    assert!(panicked.is_err());
    // The turn it took (100 ms) is free again: at 100 ms a token is there.
    clock.advance(ms(100));
    l.try_acquire().unwrap();
    assert_eq!(l.metrics().admitted, 2);
}
