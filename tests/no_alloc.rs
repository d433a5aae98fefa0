//! Counts heap allocations on the admitted hot paths; each must make none.
//!
//! The counting allocator keeps a per-thread count, so tests running in parallel on other
//! threads do not disturb each other. Each case warms up once (first-use setup such as lazy
//! statics may allocate), then counts a batch of calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates every call to the system allocator unchanged; the thread-local counter is
// const-initialised and has no destructor, so touching it never allocates or recurses.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread, after one warm-up call.
fn allocations(mut f: impl FnMut()) -> u64 {
    f();
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..100 {
        f();
    }
    ALLOCATIONS.with(Cell::get) - before
}

/// Polls a future that must be ready at its first poll.
fn poll_ready_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future was expected to be ready at once"),
    }
}

/// Allocations made by ready + call + completion through `layer` around a ready echo service.
#[cfg(feature = "tower")]
fn layer_allocations<L>(layer: L) -> u64
where
    L: tower::Layer<Echo>,
    L::Service: tower::Service<u32, Response = u32, Error = palisade::Rejected>,
{
    use tower::Service;
    let mut svc = layer.layer(Echo);
    allocations(|| {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        assert_eq!(poll_ready_now(svc.call(3)), Ok(3));
    })
}

/// A tower service that answers at once with its request.
#[cfg(feature = "tower")]
#[derive(Clone, Copy)]
struct Echo;

#[cfg(feature = "tower")]
impl tower::Service<u32> for Echo {
    type Response = u32;
    type Error = palisade::Rejected;
    type Future = std::future::Ready<Result<u32, palisade::Rejected>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        std::future::ready(Ok(req))
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Guards against a counter that always says zero.
    assert_eq!(
        allocations(|| drop(std::hint::black_box(Box::new(1u64)))),
        100
    );
}

#[cfg(feature = "tokio")]
mod timeout {
    use super::*;
    use palisade::Rejected;
    use palisade::timeout::{Timeout, TimeoutConfig};
    use std::time::Duration;

    fn timeout() -> Timeout {
        Timeout::new(
            TimeoutConfig::builder()
                .duration(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn run_once_on_a_ready_future_does_not_allocate() {
        let timeout = timeout();
        let n = allocations(|| {
            let out: Result<u32, Rejected> =
                poll_ready_now(timeout.run_once(std::future::ready(Ok(7))));
            assert_eq!(out, Ok(7));
        });
        assert_eq!(n, 0);
    }

    #[cfg(feature = "tower")]
    #[test]
    fn layer_on_a_ready_service_does_not_allocate() {
        assert_eq!(layer_allocations(timeout().layer()), 0);
    }
}

mod circuit_breaker {
    use super::*;
    use palisade::circuit_breaker::{CircuitBreaker, CircuitBreakerConfigBuilder, TripModel};
    use palisade::clock::MonotonicClock;
    use palisade::{Outcome, Rejected};
    use std::time::Duration;

    fn breaker(b: CircuitBreakerConfigBuilder) -> CircuitBreaker<MonotonicClock> {
        CircuitBreaker::with_clock(b.build().unwrap(), MonotonicClock::new())
    }

    fn every_model() -> Vec<CircuitBreaker<MonotonicClock>> {
        vec![
            breaker(CircuitBreaker::builder().consecutive_failures(1_000_000)),
            breaker(
                CircuitBreaker::builder().trip_model(TripModel::CountWindow {
                    size: 100,
                    failure_ratio: 1.0,
                    minimum_calls: 100,
                }),
            ),
            breaker(CircuitBreaker::builder().failures_within(1_000_000, Duration::from_secs(30))),
            breaker(CircuitBreaker::builder().slow_calls(
                palisade::circuit_breaker::SlowCalls::new(Duration::from_secs(10), 1.0),
            )),
        ]
    }

    #[test]
    fn closed_admit_and_record_do_not_allocate() {
        for breaker in every_model() {
            let n = allocations(|| {
                breaker.try_acquire().unwrap().success();
                breaker.try_acquire().unwrap().failure();
                breaker.try_acquire().unwrap().record(Outcome::Ignore);
                drop(breaker.try_acquire().unwrap());
            });
            assert_eq!(n, 0, "{:?}", breaker.config().trip_model());
        }
    }

    #[test]
    fn open_reject_does_not_allocate() {
        let breaker = breaker(CircuitBreaker::builder().consecutive_failures(1));
        breaker.try_acquire().unwrap().failure();
        let n = allocations(|| assert!(breaker.try_acquire().is_err()));
        assert_eq!(n, 0);
        breaker.isolate();
        let n = allocations(|| assert!(breaker.try_acquire().is_err()));
        assert_eq!(n, 0);
    }

    #[test]
    fn run_on_a_ready_future_does_not_allocate() {
        let breaker = breaker(CircuitBreaker::builder());
        let n = allocations(|| {
            let out: Result<u8, Rejected> =
                poll_ready_now(breaker.run(|| std::future::ready(Ok(1))));
            assert_eq!(out, Ok(1));
        });
        assert_eq!(n, 0);
    }

    #[cfg(feature = "tower")]
    #[test]
    fn layer_on_a_ready_service_does_not_allocate() {
        assert_eq!(
            layer_allocations(breaker(CircuitBreaker::builder()).layer()),
            0
        );
    }
}

mod bulkhead {
    use super::*;
    use palisade::bulkhead::Bulkhead;

    fn bulkheads() -> [Bulkhead; 2] {
        [
            Bulkhead::new(Bulkhead::builder().max_concurrent(4).build().unwrap()),
            // A queue that nobody is waiting in must cost nothing either.
            Bulkhead::new(
                Bulkhead::builder()
                    .max_concurrent(4)
                    .max_queue(8)
                    .build()
                    .unwrap(),
            ),
        ]
    }

    #[test]
    fn fail_fast_acquire_and_release_do_not_allocate() {
        for bulkhead in bulkheads() {
            let n = allocations(|| {
                let a = bulkhead.try_acquire().unwrap();
                let b = bulkhead.try_acquire_owned().unwrap();
                drop((a, b));
            });
            assert_eq!(n, 0);
        }
    }

    #[test]
    fn a_full_bulkhead_rejects_without_allocating() {
        let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
        let _held = bulkhead.try_acquire().unwrap();
        assert_eq!(allocations(|| assert!(bulkhead.try_acquire().is_err())), 0);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn run_with_a_free_slot_does_not_allocate() {
        for bulkhead in bulkheads() {
            let n = allocations(|| {
                let out: Result<u8, palisade::Rejected> =
                    poll_ready_now(bulkhead.run(|| std::future::ready(Ok(1))));
                assert_eq!(out, Ok(1));
                drop(poll_ready_now(bulkhead.acquire()).unwrap());
            });
            assert_eq!(n, 0);
        }
    }

    #[cfg(all(feature = "tokio", feature = "tower"))]
    #[test]
    fn layer_with_a_free_slot_does_not_allocate() {
        for bulkhead in bulkheads() {
            assert_eq!(layer_allocations(bulkhead.layer()), 0);
        }
    }

    #[cfg(all(feature = "tokio", feature = "tower"))]
    #[test]
    fn a_full_fail_fast_layer_refuses_without_allocating() {
        use tower::{Layer, Service};
        let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
        let _held = bulkhead.try_acquire().unwrap();
        let mut svc = bulkhead.layer().layer(Echo);
        let n = allocations(|| {
            let mut cx = Context::from_waker(Waker::noop());
            assert!(svc.poll_ready(&mut cx).is_ready());
            assert!(poll_ready_now(svc.call(3)).is_err());
        });
        assert_eq!(n, 0);
    }
}

#[cfg(feature = "tokio")]
mod retry {
    use super::*;
    use palisade::retry::Retry;

    #[test]
    fn a_first_attempt_success_does_not_allocate() {
        let retry = Retry::new(Retry::builder().build().unwrap());
        let n = allocations(|| {
            let out: Result<u8, palisade::Rejected> =
                poll_ready_now(retry.run(|| std::future::ready(Ok(1))));
            assert_eq!(out, Ok(1));
        });
        assert_eq!(n, 0);
    }

    #[cfg(feature = "tower")]
    #[test]
    fn the_layer_without_a_retry_does_not_allocate() {
        let retry = Retry::new(Retry::builder().build().unwrap());
        assert_eq!(layer_allocations(retry.layer()), 0);
        assert_eq!(
            layer_allocations(palisade::retry::RetryLayer::new(retry.clone())),
            0
        );
    }
}

#[cfg(feature = "tokio")]
mod pipeline {
    use super::*;
    use palisade::bulkhead::Bulkhead;
    use palisade::circuit_breaker::CircuitBreaker;
    use palisade::pipeline::{Pipeline, Stage};
    use palisade::rate_limiter::RateLimiter;
    use palisade::retry::Retry;
    use palisade::timeout::{Timeout, TimeoutConfig};
    use std::time::Duration;

    #[test]
    fn the_pipeline_on_a_ready_call_does_not_allocate() {
        let without_retry = Pipeline::builder()
            .circuit_breaker(CircuitBreaker::new(
                CircuitBreaker::builder().build().unwrap(),
            ))
            .bulkhead(Bulkhead::new(
                Bulkhead::builder().max_concurrent(8).build().unwrap(),
            ))
            .timeout(Timeout::new(
                TimeoutConfig::builder()
                    .duration(Duration::from_secs(1))
                    .build()
                    .unwrap(),
            ))
            .build();
        let with_retry = Pipeline::builder()
            .retry(Retry::new(Retry::builder().build().unwrap()))
            .circuit_breaker(CircuitBreaker::new(
                CircuitBreaker::builder().build().unwrap(),
            ))
            .build();
        // A custom order runs through the same future: nothing boxed either.
        let custom = Pipeline::builder()
            .retry(Retry::new(Retry::builder().build().unwrap()))
            .circuit_breaker(CircuitBreaker::new(
                CircuitBreaker::builder().build().unwrap(),
            ))
            .bulkhead(Bulkhead::new(
                Bulkhead::builder().max_concurrent(8).build().unwrap(),
            ))
            .timeout(Timeout::new(
                TimeoutConfig::builder()
                    .duration(Duration::from_secs(1))
                    .build()
                    .unwrap(),
            ))
            .build_in_order(&[
                Stage::Bulkhead,
                Stage::Timeout,
                Stage::Retry,
                Stage::CircuitBreaker,
            ])
            .unwrap();
        #[cfg(feature = "tower")]
        for pipeline in [&without_retry, &with_retry] {
            assert_eq!(layer_allocations(pipeline.layer()), 0);
        }
        for pipeline in [without_retry, with_retry, custom] {
            let n = allocations(|| {
                let out: Result<u8, palisade::Rejected> =
                    poll_ready_now(pipeline.run(|| std::future::ready(Ok(1))));
                assert_eq!(out, Ok(1));
            });
            assert_eq!(n, 0);
        }
    }

    /// Far more tokens than the test takes: every call is admitted at once, by a limiter
    /// that refuses (no `max_wait`) or one that would wait.
    fn limiter(max_wait: Duration) -> RateLimiter {
        RateLimiter::new(
            RateLimiter::builder()
                .rate(1_000_000_000, Duration::from_secs(1))
                .burst(1 << 20)
                .max_wait(max_wait)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn the_pipeline_with_a_rate_limiter_on_an_admitted_call_does_not_allocate() {
        let pipelines = [Duration::ZERO, Duration::from_secs(1)].map(|max_wait| {
            Pipeline::builder()
                .retry(Retry::new(
                    Retry::builder()
                        .deadline(Duration::from_secs(5))
                        .build()
                        .unwrap(),
                ))
                .circuit_breaker(CircuitBreaker::new(
                    CircuitBreaker::builder().build().unwrap(),
                ))
                .rate_limiter(limiter(max_wait))
                .bulkhead(Bulkhead::new(
                    Bulkhead::builder().max_concurrent(8).build().unwrap(),
                ))
                .build()
        });
        #[cfg(feature = "tower")]
        for pipeline in &pipelines {
            assert_eq!(layer_allocations(pipeline.layer()), 0);
        }
        for pipeline in pipelines {
            let n = allocations(|| {
                let out: Result<u8, palisade::Rejected> =
                    poll_ready_now(pipeline.run(|| std::future::ready(Ok(1))));
                assert_eq!(out, Ok(1));
            });
            assert_eq!(n, 0);
        }
    }
}

mod fallback {
    use super::*;
    use palisade::fallback::Fallback;
    use std::time::Duration;

    fn cached() -> Fallback<u32> {
        Fallback::new(
            Fallback::builder()
                .cache_max_age(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn a_primary_success_does_not_allocate_even_when_cached() {
        let fb = cached();
        let n = allocations(|| {
            let out: Result<u32, palisade::Rejected> = poll_ready_now(
                fb.run(|| std::future::ready(Ok(1)))
                    .or_else(|_| std::future::ready(Ok(2)))
                    .or_cached()
                    .or_value(3),
            );
            assert_eq!(out, Ok(1));
        });
        assert_eq!(n, 0);
    }

    #[test]
    fn serving_the_cache_again_and_again_does_not_allocate() {
        let fb = cached();
        let _: Result<u32, palisade::Rejected> =
            poll_ready_now(fb.run(|| std::future::ready(Ok(1))).or_cached());
        // The first serve after a store shares the value (one allocation, in the warm-up).
        let n = allocations(|| {
            let out = poll_ready_now(
                fb.run(|| {
                    std::future::ready(Err(palisade::Rejected::from(
                        palisade::error::CircuitOpen::isolated("db"),
                    )))
                })
                .or_cached(),
            );
            assert_eq!(out, Ok(1));
        });
        assert_eq!(n, 0);
    }

    #[cfg(feature = "tower")]
    #[test]
    fn the_layer_on_a_primary_success_does_not_allocate() {
        let fb = cached();
        assert_eq!(layer_allocations(fb.layer().or_cached().or_value(0)), 0);
    }
}

mod rate_limiter {
    use super::*;
    use palisade::rate_limiter::RateLimiter;
    use std::time::Duration;

    fn limiter() -> RateLimiter {
        // Far more tokens than the test takes: every call is admitted.
        RateLimiter::new(
            RateLimiter::builder()
                .rate(1_000_000_000, Duration::from_secs(1))
                .burst(1 << 20)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn an_admitted_call_does_not_allocate() {
        let l = limiter();
        assert_eq!(allocations(|| l.try_acquire_n(2).unwrap()), 0);
    }

    #[test]
    fn a_refusal_does_not_allocate() {
        let l = RateLimiter::new(
            RateLimiter::builder()
                .rate(1, Duration::from_secs(3600))
                .build()
                .unwrap(),
        );
        l.try_acquire().unwrap();
        assert_eq!(allocations(|| assert!(l.try_acquire().is_err())), 0);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn run_and_acquire_when_admitted_do_not_allocate() {
        let l = limiter();
        let n = allocations(|| {
            let out: Result<u8, palisade::Rejected> =
                poll_ready_now(l.run(|| std::future::ready(Ok(1))));
            assert_eq!(out, Ok(1));
            poll_ready_now(l.acquire()).unwrap();
        });
        assert_eq!(n, 0);
    }

    #[cfg(feature = "tower")]
    #[test]
    fn the_layer_admitting_at_once_does_not_allocate() {
        assert_eq!(layer_allocations(limiter().layer()), 0);
    }
}

mod keyed {
    use super::*;
    #[cfg(feature = "tokio")]
    use palisade::bulkhead::Bulkhead;
    use palisade::keyed::{Keyed, KeyedConfig};
    use palisade::rate_limiter::RateLimiter;
    use std::time::Duration;

    #[test]
    fn an_admitted_call_on_an_existing_key_does_not_allocate() {
        let limiter = RateLimiter::new(
            RateLimiter::builder()
                .rate(1_000_000_000, Duration::from_secs(1))
                .burst(1 << 20)
                .build()
                .unwrap(),
        );
        let per_user: Keyed<String, _> = Keyed::new(KeyedConfig::default(), limiter);
        // The first call makes the key's limiter (allocations expected); later ones must not.
        per_user.try_acquire("ada").unwrap();
        assert_eq!(allocations(|| per_user.try_acquire("ada").unwrap()), 0);
        assert_eq!(allocations(|| per_user.try_acquire_n("ada", 3).unwrap()), 0);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn run_on_an_existing_key_does_not_allocate() {
        let sessions: Keyed<u64, _> = Keyed::new(
            KeyedConfig::default(),
            Bulkhead::new(Bulkhead::builder().max_concurrent(4).build().unwrap()),
        );
        let _ =
            poll_ready_now(sessions.run(&7, || std::future::ready(Ok::<_, palisade::Rejected>(1))));
        let n = allocations(|| {
            let out = poll_ready_now(
                sessions.run(&7, || std::future::ready(Ok::<_, palisade::Rejected>(1))),
            );
            assert_eq!(out, Ok(1));
        });
        assert_eq!(n, 0);
    }
}
