//! Compile-time checks: every public future and handle is `Send` (and `Sync` where it
//! should be) when what it is given is, so it can be awaited in an axum handler or
//! `tokio::spawn`ed. Nothing here runs: each check is a bound the compiler proves.

use std::time::Duration;

use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::fallback::{Fallback, FallbackLayer};
use palisade::pipeline::{Pipeline, Stage};
use palisade::presets::Preset;
use palisade::rate_limiter::RateLimiter;
use palisade::retry::{Retry, RetryLayer};
use palisade::timeout::{Timeout, TimeoutConfig};
use palisade::{Outcome, Rejected};
use tower::{BoxError, Layer, Service};

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync<T: Send + Sync>(_: &T) {}
fn _assert_send<T: Send>() {}
fn _assert_send_sync<T: Send + Sync>() {}

/// The service's response future is `Send`.
fn response_future_is_send<S, Req>(_: &S)
where
    S: Service<Req>,
    S::Future: Send,
{
}

type Out = Result<u32, Rejected>;

async fn call() -> Out {
    Ok(1)
}

/// A `Send + Sync + Clone` inner service whose future is `Send`.
fn inner() -> tower::util::BoxCloneSyncService<u32, u32, BoxError> {
    tower::util::BoxCloneSyncService::new(tower::service_fn(|x: u32| async move { Ok(x) }))
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::new(CircuitBreaker::builder().build().unwrap())
}

fn bulkhead() -> Bulkhead {
    Bulkhead::new(
        Bulkhead::builder()
            .max_concurrent(2)
            .max_queue(2)
            .build()
            .unwrap(),
    )
}

/// A limiter that waits for turns, so the pipeline's future holds its wait.
fn rate_limiter() -> RateLimiter {
    RateLimiter::new(
        RateLimiter::builder()
            .rate(10, Duration::from_secs(1))
            .max_wait(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
}

fn retry() -> Retry {
    Retry::new(
        Retry::builder()
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
}

fn timeout() -> Timeout {
    Timeout::new(
        TimeoutConfig::builder()
            .duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
}

#[test]
fn handles_are_send_and_sync() {
    _assert_send_sync::<CircuitBreaker>();
    _assert_send_sync::<Bulkhead>();
    _assert_send_sync::<Retry>();
    _assert_send_sync::<&'static Retry>();
    _assert_send_sync::<Timeout>();
    _assert_send_sync::<Fallback<String>>();
    _assert_send_sync::<Pipeline>();
    _assert_send_sync::<Preset>();
}

#[test]
fn circuit_breaker_futures_permits_layers_and_services() {
    let cb = breaker();
    assert_send(&cb.run(call));
    assert_send(&cb.run_once(call()));
    assert_send(&cb.run(call).classify(|_: &Out| Outcome::Success));
    let permit = cb.try_acquire().unwrap();
    assert_send_sync(&permit);
    drop(permit);
    assert_send_sync(&cb.try_acquire_owned().unwrap());
    let layer = cb.layer();
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
}

#[test]
fn rate_limiter_handles_and_futures() {
    let l = RateLimiter::new(
        RateLimiter::builder()
            .rate(10, std::time::Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    assert_send_sync(&l);
    assert_send(&l.run(call));
    assert_send(&l.run_once(call()));
    assert_send(&l.acquire());
    assert_send(&l.acquire_n(2));
    assert_send_sync(&l.metrics());
    let layer = l.layer();
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
}

#[test]
fn keyed_maps_futures_layers_and_services() {
    use palisade::keyed::{Keyed, KeyedConfig, KeyedLayer};
    use palisade::rate_limiter::RateLimiter;
    let l = RateLimiter::new(
        RateLimiter::builder()
            .rate(10, std::time::Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let limiters: Keyed<String, _> = Keyed::new(KeyedConfig::default(), l);
    assert_send_sync(&limiters);
    assert_send(&limiters.run("ada", call));
    let sessions: Keyed<u32, _> = Keyed::new(KeyedConfig::default(), bulkhead());
    assert_send_sync(&sessions);
    assert_send(&sessions.run(&1, call));
    let hosts: Keyed<String, _> = Keyed::new(KeyedConfig::default(), breaker());
    assert_send_sync(&hosts);
    assert_send(&hosts.run("a", call));
    let layer = KeyedLayer::new(sessions, |x: &u32| *x);
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
    let svc = KeyedLayer::new(limiters, |x: &u32| x.to_string()).layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
    let svc = KeyedLayer::new(hosts, |x: &u32| x.to_string()).layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
}

#[test]
fn bulkhead_futures_permits_layers_and_services() {
    let b = bulkhead();
    assert_send(&b.run(call));
    assert_send(&b.run_once(call()));
    assert_send(&b.acquire());
    assert_send(&b.acquire_owned());
    assert_send_sync(&b.try_acquire().unwrap());
    assert_send_sync(&b.try_acquire_owned().unwrap());
    let layer = b.layer();
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
}

#[test]
fn retry_futures_layers_and_services() {
    let r = retry();
    assert_send(&r.run(call));
    assert_send(&r.run_with_attempt(|_| call()));
    assert_send(
        &r.run(call)
            .classify(|_: &Out| Outcome::Failure)
            .hint(|_: &Out| Some(Duration::from_secs(1)))
            .on_retry(|_: &Out, _: u32, _: Duration| {}),
    );
    for layer in [r.layer(), RetryLayer::new(r.clone())] {
        assert_send_sync(&layer);
        let svc = layer.layer(inner());
        assert_send_sync(&svc);
        response_future_is_send::<_, u32>(&svc);
    }
    let layer = RetryLayer::new(retry()).cloner(|x: &u32| Some(*x));
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
}

#[test]
fn timeout_futures_layers_and_services() {
    let t = timeout();
    assert_send(&t.run(call));
    assert_send(&t.run_once(call()));
    let layer = t.layer();
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
}

#[test]
fn fallback_chains_layers_and_services() {
    let fb: Fallback<u32> = Fallback::new(Fallback::builder().build().unwrap());
    assert_send(&fb.run(call));
    assert_send(
        &fb.run(call)
            .classify(|_: &Out| Outcome::Failure)
            .or_else(|_| call())
            .or_cached()
            .or_value(0),
    );
    let layer = FallbackLayer::new(fb.clone())
        .or_else(|_: u32, _: Result<u32, BoxError>| async { Ok::<u32, BoxError>(0) })
        .or_service(inner())
        .or_cached()
        .or_value(0);
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
}

fn full_pipeline() -> palisade::pipeline::PipelineBuilder {
    Pipeline::builder()
        .retry(retry())
        .circuit_breaker(breaker())
        .rate_limiter(rate_limiter())
        .bulkhead(bulkhead())
        .timeout(timeout())
}

#[test]
fn pipeline_futures_layers_and_services() {
    let pipeline = full_pipeline().build();
    assert_send_sync(&pipeline);
    assert_send(&pipeline.run(call));

    let custom = full_pipeline()
        .build_in_order(&[
            Stage::Bulkhead,
            Stage::Retry,
            Stage::RateLimiter,
            Stage::Timeout,
            Stage::CircuitBreaker,
        ])
        .unwrap();
    assert_send(&custom.run(call));

    let with_fallback = full_pipeline()
        .fallback(Fallback::new(Fallback::builder().build().unwrap()))
        .build();
    assert_send_sync(&with_fallback);
    assert_send(&with_fallback.run(call).or_cached().or_value(0));

    let layer = pipeline.layer();
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);

    // With a classifier of the pipeline's own, on both surfaces, and a cloner and hint.
    let by_value = |r: &Out| match r {
        Ok(0) | Err(_) => palisade::Outcome::Failure,
        Ok(_) => palisade::Outcome::Success,
    };
    let classified = full_pipeline().classify(by_value).build();
    assert_send_sync(&classified);
    assert_send(&classified.run(call));
    let layer = pipeline
        .layer()
        .classify(|r: &Result<u32, BoxError>| match r {
            Ok(_) => palisade::Outcome::Success,
            Err(_) => palisade::Outcome::Failure,
        })
        .cloner(|x: &u32| Some(*x))
        .hint(|_: &Result<u32, BoxError>| None::<std::time::Duration>);
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
}

/// The futures and the service by the names a user writes: `Send` (and the service `Sync`)
/// when what they hold is.
#[test]
fn the_pipelines_named_futures_and_service_are_send() {
    use palisade::pipeline::PipelineService;
    use palisade::pipeline::future::{ResponseFuture, RunFuture};

    type Call = std::future::Ready<Out>;
    _assert_send::<RunFuture<'static, fn() -> Call, Call>>();
    type Inner = tower::util::BoxCloneSyncService<u32, u32, BoxError>;
    _assert_send_sync::<PipelineService<Inner>>();
    _assert_send::<ResponseFuture<Inner, u32>>();
}

/// With the feature on, the root tests reach reqwest-middleware as the (optional) dependency
/// it is; no dev-dependency on reqwest is needed.
#[cfg(feature = "reqwest-middleware")]
#[test]
fn the_reqwest_middleware_is_send_and_sync() {
    use palisade::http::middleware::PipelineMiddleware;

    fn is_middleware<M: reqwest_middleware::Middleware>(_: &M) {}
    let middleware = PipelineMiddleware::new(full_pipeline().build());
    assert_send_sync(&middleware);
    is_middleware(&middleware);
    is_middleware(&PipelineMiddleware::from(retry()));
    is_middleware(&PipelineMiddleware::from(breaker()));
    is_middleware(&PipelineMiddleware::from(bulkhead()));
    is_middleware(&PipelineMiddleware::from(timeout()));
}

#[test]
fn every_presets_pipeline_runs_send_futures() {
    for preset in [
        Preset::llm_api(),
        Preset::database(),
        Preset::external_api(),
        Preset::message_queue(),
    ] {
        assert_send_sync(&preset);
        let pipeline = preset.build("api").unwrap();
        assert_send_sync(&pipeline);
        assert_send(&pipeline.run(call));
    }
}

/// The reason the checks above matter: the futures can be spawned.
#[tokio::test(start_paused = true)]
async fn a_pipeline_run_can_be_spawned() {
    let pipeline = full_pipeline().build();
    let out = tokio::spawn(async move { pipeline.run(call).await })
        .await
        .unwrap();
    assert_eq!(out, Ok(1));
}

/// `Send` is passed through, not required: a call holding an `Rc` runs on one thread.
#[tokio::test(start_paused = true)]
async fn a_call_that_is_not_send_still_runs_through_every_order() {
    let shared = std::rc::Rc::new(7);
    let custom = full_pipeline()
        .build_in_order(&[
            Stage::Timeout,
            Stage::RateLimiter,
            Stage::Bulkhead,
            Stage::CircuitBreaker,
            Stage::Retry,
        ])
        .unwrap();
    for pipeline in [full_pipeline().build(), custom] {
        let out: Out = pipeline
            .run(|| {
                let shared = shared.clone();
                async move { Ok(*shared) }
            })
            .await;
        assert_eq!(out, Ok(7));
    }
}

/// The fleet-wide limits: handles, leases, admission and run futures, layers and services.
#[cfg(feature = "redis")]
#[test]
fn redis_limits_futures_layers_and_services() {
    use palisade::redis::{
        RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig, RedisSessionLimiter,
        RedisSessionLimiterConfig,
    };
    let link = RedisLink::new(
        RedisConfig::builder()
            .url("redis://127.0.0.1/")
            .build()
            .unwrap(),
    );
    assert_send_sync(&link);
    let limit = RateLimiter::builder()
        .rate(10, Duration::from_secs(1))
        .build()
        .unwrap();
    let rate = RedisRateLimiter::new(
        &link,
        RedisRateLimiterConfig::builder(limit).build().unwrap(),
    );
    assert_send_sync(&rate);
    assert_send(&rate.try_acquire("ada"));
    assert_send(&rate.acquire_n("ada", 2));
    assert_send(&rate.run("ada", call));
    assert_send(&link.ping());
    let sessions = RedisSessionLimiter::new(
        &link,
        RedisSessionLimiterConfig::builder()
            .max_per_key(2)
            .build()
            .unwrap(),
    );
    assert_send_sync(&sessions);
    assert_send(&sessions.acquire("ada"));
    assert_send(&sessions.run("ada", call));
    _assert_send_sync::<palisade::redis::SessionLease>();
    let layer = rate.layer(|x: &u32| *x);
    assert_send_sync(&layer);
    let svc = layer.layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
    let svc = sessions.layer(|x: &u32| x.to_string()).layer(inner());
    assert_send_sync(&svc);
    response_future_is_send::<_, u32>(&svc);
}

/// The production default clock (the tests here run on `TokioClock`, the `test-util`
/// default): the clock and the handles built on it are `Send + Sync`.
#[test]
fn handles_on_the_production_default_clock_are_send_and_sync() {
    use palisade::clock::TscClock;
    _assert_send_sync::<TscClock>();
    let breaker =
        CircuitBreaker::with_clock(CircuitBreaker::builder().build().unwrap(), TscClock::new());
    assert_send_sync(&breaker);
    let limiter = RateLimiter::with_timer_and_clock(
        RateLimiter::builder()
            .rate(10, Duration::from_secs(1))
            .build()
            .unwrap(),
        palisade::timer::TokioTimer,
        TscClock::new(),
    );
    assert_send_sync(&limiter);
    assert_send(&limiter.acquire());
}
