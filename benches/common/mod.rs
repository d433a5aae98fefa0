//! Helpers shared by the bench binaries: a ready echo service, synchronous polling and the
//! Markdown reports.

#![allow(dead_code)]

pub mod report;

use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower::{BoxError, Service};

/// Polls `fut` once; the benchmarked futures must complete at their first poll.
pub fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmarked futures must complete at their first poll"),
    }
}

/// One ready-then-call round trip through a tower service.
pub fn call_now<S: Service<u64>>(svc: &mut S, req: u64) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("benchmarked services must be ready at once"),
    }
    poll_now(svc.call(req))
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
