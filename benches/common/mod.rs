//! Helpers shared by the bench binaries: a ready echo service, synchronous polling and the
//! Markdown reports.

#![allow(dead_code)]

pub mod report;

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower::{BoxError, Service};

// Every measured case runs through one of these drivers, each kept out of line so that all
// contenders pay the same call, and none has its work folded into criterion's loop (a fully
// inlined tower retry around a ready service measured 0.47 ns: nothing at all). Inside a
// driver everything may inline, as it would in an application's own async code.

/// Polls `fut` once; the benchmarked futures must complete at their first poll.
#[inline(always)]
pub fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmarked futures must complete at their first poll"),
    }
}

/// Makes a future with `make` and polls it once, out of line. The future is built inside the
/// driver, so no contender's future is copied across the call, and the output stays in
/// memory the optimiser must assume is read.
#[inline(never)]
pub fn run_now<F: Future>(make: impl FnOnce() -> F) {
    let out = poll_now(make());
    black_box(&out);
}

/// One ready-then-call round trip through a tower service, out of line, its response kept
/// in memory the optimiser must assume is read (as [`run_now`] does).
#[inline(never)]
pub fn call_now<S: Service<u64>>(svc: &mut S, req: u64) {
    let svc = black_box(svc);
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("benchmarked services must be ready at once"),
    }
    let out = poll_now(svc.call(req));
    black_box(&out);
}

/// A tower service that answers at once with its request.
#[derive(Clone, Copy)]
pub struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = BoxError;
    type Future = Ready<Result<u64, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

/// tower-resilience's fallback, retry, circuit breaker, bulkhead and time limiter around
/// [`Echo`], in the order palisade's pipeline uses. Each wraps the error type of the layer
/// below, so the retry and the fallback must name the whole tower of them.
pub fn tower_resilience_stack() -> impl Service<u64, Response = u64, Error = impl std::fmt::Debug> {
    type E1 = tower_resilience::timelimiter::TimeLimiterError<BoxError>;
    type E2 = tower_resilience::bulkhead::BulkheadServiceError<E1>;
    type E3 = tower_resilience::circuitbreaker::CircuitBreakerError<E2>;
    tower::ServiceBuilder::new()
        .layer(tower_resilience::fallback::FallbackLayer::<u64, u64, E3>::value(0))
        .layer(
            tower_resilience::retry::RetryLayer::<u64, u64, E3>::builder()
                .max_attempts(3)
                .build(),
        )
        .layer(
            tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .consecutive_failures(5)
                .build()
                .unwrap(),
        )
        .layer(
            tower_resilience::bulkhead::BulkheadLayer::builder()
                .max_concurrent_calls(1024)
                .build()
                .unwrap(),
        )
        .layer(
            tower_resilience::timelimiter::TimeLimiterLayer::builder()
                .timeout_duration(std::time::Duration::from_secs(1))
                .build(),
        )
        .service(Echo)
}
