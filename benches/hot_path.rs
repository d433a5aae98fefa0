//! Hot-path overhead of palisade's policies against a bare call and the Rust peers doing the
//! same work, in one criterion run. Run with `cargo bench --bench hot_path`.
//!
//! Every case completes a call whose inner future is ready at once, so what is measured is the
//! policy's own overhead. Compare figures within a group only, as ratios: the machines are
//! shared and noisy.

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade::Rejected;
use palisade::timeout::{Timeout, TimeoutConfig};
use tower::{BoxError, Layer, Service};

fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmarked futures must complete at their first poll"),
    }
}

/// One ready-then-call round trip through a tower service.
fn call_now<S: Service<u64>>(svc: &mut S, req: u64) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("benchmarked services must be ready at once"),
    }
    poll_now(svc.call(req))
}

#[derive(Clone, Copy)]
struct Echo;

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

fn timeout_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // tokio's sleep (used eagerly by tower and tokio) needs the runtime's handle in scope.
    let _guard = rt.enter();
    let limit = Duration::from_secs(1);
    let timeout = Timeout::new(TimeoutConfig::builder().duration(limit).build().unwrap());

    let mut g = c.benchmark_group("timeout/future");
    g.bench_function("bare", |b| {
        b.iter(|| poll_now(ready(Ok::<_, Rejected>(black_box(1u64)))))
    });
    g.bench_function("palisade run_once", |b| {
        b.iter(|| poll_now(timeout.run_once(ready(Ok::<_, Rejected>(black_box(1u64))))))
    });
    g.bench_function("tokio::time::timeout", |b| {
        b.iter(|| {
            poll_now(tokio::time::timeout(
                limit,
                ready(Ok::<_, Rejected>(black_box(1u64))),
            ))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("timeout/layer");
    let mut bare = Echo;
    g.bench_function("bare service", |b| {
        b.iter(|| call_now(&mut bare, black_box(1)))
    });
    let mut ours = timeout.layer().layer(Echo);
    g.bench_function("palisade TimeoutLayer", |b| {
        b.iter(|| call_now(&mut ours, black_box(1)))
    });
    let mut tower_timeout = tower::timeout::TimeoutLayer::new(limit).layer(Echo);
    g.bench_function("tower TimeoutLayer", |b| {
        b.iter(|| call_now(&mut tower_timeout, black_box(1)))
    });
    let mut tr = tower_resilience::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(limit)
        .build()
        .layer(Echo);
    g.bench_function("tower-resilience TimeLimiter", |b| {
        b.iter(|| call_now(&mut tr, black_box(1)))
    });
    g.finish();
}

criterion_group!(benches, timeout_benches);
criterion_main!(benches);
