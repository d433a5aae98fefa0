//! The policies take part in tokio's cooperative budget: a loop over calls they answer at once
//! (refusals of every surface, and the bulkhead's `acquire` futures, which hand out a slot
//! without awaiting anything) still gives its worker back, so other tasks and timers on it are
//! not starved. Each test spawns a task on a current-thread runtime and loops over such calls:
//! the task can only run if the loop yields.
#![cfg(feature = "tokio")]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use palisade::Rejected;
use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::pipeline::Pipeline;

/// Calls `call` until the spawned task has run or `limit` calls were made; returns how many.
async fn calls_until_another_task_runs<Fut: Future>(mut call: impl FnMut() -> Fut) -> u32 {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    let mut calls = 0;
    while !ran.load(Ordering::SeqCst) && calls < 10_000 {
        call().await;
        calls += 1;
    }
    assert!(
        ran.load(Ordering::SeqCst),
        "the other task never ran in {calls} calls: the loop never yielded"
    );
    calls
}

fn open_breaker() -> CircuitBreaker {
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    breaker.try_acquire().unwrap().failure();
    breaker
}

#[tokio::test]
async fn a_loop_over_a_pipelines_refusals_yields_to_its_runtime() {
    let pipeline = Pipeline::builder().circuit_breaker(open_breaker()).build();
    let calls = calls_until_another_task_runs(|| async {
        let out: Result<(), Rejected> = pipeline.run(|| async { Ok(()) }).await;
        assert!(out.is_err());
    })
    .await;
    // tokio's budget is 128 units a scheduling.
    assert!(calls <= 200, "{calls}");
}

#[tokio::test]
async fn a_loop_over_a_pipelines_full_bulkhead_yields_to_its_runtime() {
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let _held = bulkhead.try_acquire().unwrap();
    let pipeline = Pipeline::builder().bulkhead(bulkhead.clone()).build();
    let calls = calls_until_another_task_runs(|| async {
        let out: Result<(), Rejected> = pipeline.run(|| async { Ok(()) }).await;
        assert!(matches!(out, Err(Rejected::BulkheadFull(_))));
    })
    .await;
    assert!(calls <= 200, "{calls}");
    assert_eq!(
        bulkhead.metrics().rejected,
        u64::from(calls),
        "each refusal counted once"
    );
}

#[tokio::test]
async fn a_loop_over_an_open_breakers_refusals_yields_to_its_runtime() {
    let breaker = open_breaker();
    let calls = calls_until_another_task_runs(|| async {
        let out: Result<(), Rejected> = breaker.run(|| async { Ok(()) }).await;
        assert!(matches!(out, Err(Rejected::CircuitOpen(_))));
    })
    .await;
    assert!(calls <= 200, "{calls}");
}

#[tokio::test]
async fn a_loop_over_a_full_bulkheads_refusals_yields_to_its_runtime() {
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let _held = bulkhead.try_acquire().unwrap();
    let calls = calls_until_another_task_runs(|| async {
        let out: Result<(), Rejected> = bulkhead.run(|| async { Ok(()) }).await;
        assert!(matches!(out, Err(Rejected::BulkheadFull(_))));
    })
    .await;
    assert!(calls <= 200, "{calls}");
    assert_eq!(bulkhead.metrics().rejected, u64::from(calls));
}

#[cfg(feature = "tower")]
#[tokio::test]
async fn a_loop_over_refusing_tower_layers_yields_to_its_runtime() {
    use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

    let echo = service_fn(|x: u32| async move { Ok::<_, BoxError>(x) });
    let breaker = open_breaker().layer().layer(echo);
    let calls = calls_until_another_task_runs(|| {
        let mut svc = breaker.clone();
        async move {
            let out = svc.ready().await.unwrap().call(1).await;
            assert!(out.is_err());
        }
    })
    .await;
    assert!(calls <= 200, "{calls}");

    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let _held = bulkhead.try_acquire().unwrap();
    let full = bulkhead.layer().layer(echo);
    let calls = calls_until_another_task_runs(|| {
        let mut svc = full.clone();
        async move {
            let out = svc.ready().await.unwrap().call(1).await;
            assert!(out.is_err());
        }
    })
    .await;
    assert!(calls <= 200, "{calls}");
}

#[tokio::test]
async fn a_loop_over_bulkhead_acquires_that_get_a_slot_at_once_yields_to_its_runtime() {
    let bulkhead = Bulkhead::new(
        Bulkhead::builder()
            .max_concurrent(1)
            .max_queue(1)
            .build()
            .unwrap(),
    );
    let calls = calls_until_another_task_runs(|| async {
        assert!(bulkhead.acquire().await.is_ok());
    })
    .await;
    assert!(calls <= 200, "{calls}");
    let calls = calls_until_another_task_runs(|| async {
        assert!(bulkhead.acquire_owned().await.is_ok());
    })
    .await;
    assert!(calls <= 200, "{calls}");
    assert_eq!(bulkhead.metrics().in_flight, 0, "every slot given back");
}

#[tokio::test]
async fn a_loop_over_bulkhead_acquires_refused_at_once_yields_to_its_runtime() {
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let _held = bulkhead.try_acquire().unwrap();
    let calls = calls_until_another_task_runs(|| async {
        assert!(matches!(
            bulkhead.acquire().await,
            Err(Rejected::BulkheadFull(_))
        ));
    })
    .await;
    assert!(calls <= 200, "{calls}");
    let calls = calls_until_another_task_runs(|| async {
        assert!(bulkhead.acquire_owned().await.is_err());
    })
    .await;
    assert!(calls <= 200, "{calls}");
}

#[tokio::test]
async fn a_loop_over_a_rate_limiters_refusals_yields_to_its_runtime() {
    use palisade::rate_limiter::RateLimiter;
    let limiter = RateLimiter::new(
        RateLimiter::builder()
            .rate(1, Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    limiter.try_acquire().unwrap();
    let calls = calls_until_another_task_runs(|| async {
        let out: Result<(), Rejected> = limiter.run(|| async { Ok(()) }).await;
        assert!(matches!(out, Err(Rejected::RateLimited(_))));
    })
    .await;
    assert!(calls <= 200, "{calls}");
    let acquires = calls_until_another_task_runs(|| async {
        assert!(limiter.acquire().await.is_err());
    })
    .await;
    assert!(acquires <= 200, "{acquires}");
    assert_eq!(
        limiter.metrics().limited,
        u64::from(calls + acquires),
        "each refusal counted once"
    );
}
