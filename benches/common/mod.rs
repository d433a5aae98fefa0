//! Helpers shared by the bench binaries: the out-of-line drivers every measured case runs
//! through, a ready echo service and one that is pending once, and the Markdown reports.

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
// driver everything may inline, as it would in an application's own async code. Each driver
// passes what the case returns (a rejection included) through `black_box`, so that no
// contender's result can be computed and thrown away unread.
//
// Futures are driven by hand with a no-op waker and no runtime: a poll loop, not an
// executor, so no contender pays for (or is spared) a task's scheduling. A runtime may be
// entered around the loop (`Runtime::enter`) for the peers whose futures need tokio's timer.

/// Does `op` once, out of line, its result kept in memory the optimiser must assume is read:
/// the driver for synchronous operations (a breaker's `try_acquire`, a semaphore's).
#[inline(never)]
pub fn sync_now<R>(op: impl FnOnce() -> R) {
    let out = op();
    black_box(&out);
}

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

/// Makes a future with `make` and polls it until it completes, out of line (the poll loop
/// of [`run_now`], for futures that are pending before they are ready). The waker does
/// nothing, so a future must wake itself or be ready at a later poll, as [`PendingOnce`] is.
#[inline(never)]
pub fn run_to_completion<F: Future>(make: impl FnOnce() -> F) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(make());
    let out = loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            break out;
        }
    };
    black_box(&out);
}

/// Polls `svc` until it is ready, calls it, and polls the response until it completes, out
/// of line (the loop of [`call_now`], for services or responses that are pending first).
#[inline(never)]
pub fn call_to_completion<S: Service<u64>>(svc: &mut S, req: u64) {
    let svc = black_box(svc);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(_)) => panic!("benchmarked services must not fail readiness"),
            Poll::Pending => {}
        }
    }
    let mut fut = pin!(svc.call(req));
    let out = loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            break out;
        }
    };
    black_box(&out);
}

/// A future that is pending at its first poll, after waking its task as a future whose
/// answer is on its way would, and ready with its value at the second: the least a call can
/// do to make a timeout arm its timer.
pub struct PendingOnce<T> {
    value: Option<T>,
    polled: bool,
}

/// A [`PendingOnce`] that completes with `value` at its second poll.
pub fn pending_once<T>(value: T) -> PendingOnce<T> {
    PendingOnce {
        value: Some(value),
        polled: false,
    }
}

impl<T: Unpin> Future for PendingOnce<T> {
    type Output = T;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        if !this.polled {
            this.polled = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(
            this.value
                .take()
                .expect("PendingOnce polled after completion"),
        )
    }
}

/// A tower service like [`Echo`] whose response is pending once before it answers.
#[derive(Clone, Copy)]
pub struct PendingOnceEcho;

impl Service<u64> for PendingOnceEcho {
    type Response = u64;
    type Error = BoxError;
    type Future = PendingOnce<Result<u64, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        pending_once(Ok(req))
    }
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
