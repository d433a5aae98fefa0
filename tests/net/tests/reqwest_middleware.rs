//! `PipelineMiddleware` in a real `reqwest_middleware` client, against real servers on
//! 127.0.0.1.
//!
//! Real sockets race paused time, so these tests run on real time with short durations and
//! generous bounds; every loop is bounded and every server stops when its test ends.

#[path = "../support/server.rs"]
mod server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Extensions;
use palisade::bulkhead::Bulkhead;
use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
use palisade::http::middleware::PipelineMiddleware;
use palisade::pipeline::{Pipeline, Stage};
use palisade::retry::{Backoff, GiveUp, Retry};
use palisade::telemetry::{Event, EventKind};
use palisade::timeout::Timeout;
use palisade::{AsRejected, Rejected};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use server::{Reply, Scripted};

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn client(middleware: impl Middleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

/// Counts the requests that reach it: added after the palisade middleware, once per attempt.
#[derive(Clone, Default)]
struct Attempts(Arc<AtomicUsize>);

fn counting(
    attempts: &Attempts,
) -> impl for<'a> Fn(
    reqwest::Request,
    &'a mut Extensions,
    Next<'a>,
) -> BoxFuture<'a, reqwest_middleware::Result<reqwest::Response>>
+ Send
+ Sync
+ 'static {
    let n = attempts.0.clone();
    move |req, extensions, next| {
        n.fetch_add(1, Ordering::SeqCst);
        next.run(req, extensions)
    }
}

fn retry(max_attempts: u32, backoff: Backoff) -> Retry {
    Retry::new(
        Retry::builder()
            .max_attempts(max_attempts)
            .backoff(backoff)
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn retries_a_503_then_returns_the_success() {
    let server = Scripted::start().await;
    server.then([Reply::Status(503, None), Reply::Status(503, None)]);
    let retry = retry(3, Backoff::constant(ms(10)));
    let attempts = Attempts::default();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(PipelineMiddleware::from(retry.clone()))
        .with(counting(&attempts))
        .build();

    let resp = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    assert_eq!(server.hits().len(), 3);
    assert_eq!(
        attempts.0.load(Ordering::SeqCst),
        3,
        "the middleware below runs once per attempt"
    );
    let m = retry.metrics();
    assert_eq!((m.calls, m.retries, m.recovered), (1, 2, 1));
}

#[tokio::test]
async fn gives_back_the_last_failing_response_as_it_was() {
    let server = Scripted::start().await;
    server.then([Reply::Status(502, None), Reply::Status(503, None)]);
    let client = client(PipelineMiddleware::from(retry(2, Backoff::constant(ms(5)))));

    let resp = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "a 503 stays a 503, not an error");
    assert_eq!(server.hits().len(), 2);
}

#[tokio::test]
async fn retry_after_sets_the_delay_capped_by_max_hint() {
    let server = Scripted::start().await;
    server.then([Reply::Status(503, Some("1")), Reply::Status(429, Some("1"))]);
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::ZERO))
            .max_hint(ms(150))
            .build()
            .unwrap(),
    );
    let client = client(PipelineMiddleware::from(retry.clone()));

    let resp = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let hits = server.hits();
    assert_eq!(hits.len(), 3);
    for pair in hits.windows(2) {
        let gap = pair[1] - pair[0];
        // The backoff alone would not wait; Retry-After asked for 1 s; max_hint caps it at
        // 150 ms. The upper bound is loose for a busy machine, but below the 1 s asked.
        assert!(gap >= ms(145) && gap < ms(950), "gap {gap:?}");
    }
    assert_eq!(retry.metrics().retries, 2);
}

#[tokio::test]
async fn the_breaker_opens_and_as_rejected_finds_the_rejection() {
    let server = Scripted::start().await;
    server.then([Reply::Status(500, None), Reply::Status(503, None)]);
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(2)
            .break_duration(ms(200))
            .build()
            .unwrap(),
    );
    let client = client(PipelineMiddleware::from(breaker.clone()));

    for expected in [500, 503] {
        let resp = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(
            resp.status(),
            expected,
            "failures reach the caller as they are"
        );
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_middleware(), "{err:?}");
    let open = match err.as_rejected() {
        Some(r @ Rejected::CircuitOpen(_)) => *r,
        other => panic!("expected CircuitOpen, got {other:?}"),
    };
    assert_eq!(
        server.hits().len(),
        2,
        "an open breaker does not call the server"
    );

    let wait = open
        .retry_after()
        .expect("an open breaker says when it probes");
    tokio::time::sleep(wait + ms(50)).await;
    let probe = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(probe.status(), 200);
    assert_eq!(breaker.state(), CircuitState::Closed, "the probe closed it");
}

#[tokio::test]
async fn an_open_breaker_inside_the_pipeline_stops_the_retries() {
    let server = Scripted::start().await;
    server.then([Reply::Status(503, None), Reply::Status(503, None)]);
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(2)
            .break_duration(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let pipeline = Pipeline::builder()
        .retry(retry(5, Backoff::constant(ms(5))))
        .circuit_breaker(breaker.clone())
        .build();
    let client = client(PipelineMiddleware::new(pipeline));

    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(
        err.as_rejected()
            .is_some_and(|r| matches!(r, Rejected::CircuitOpen(_))),
        "{err:?}"
    );
    assert_eq!(
        server.hits().len(),
        2,
        "two failures opened it; no retry storm"
    );
}

#[tokio::test]
async fn a_streamed_body_is_sent_once_and_the_retry_says_why() {
    let server = Scripted::start().await;
    server.then([Reply::Status(503, None)]);
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let seen = reasons.clone();
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::ZERO))
            .listener(move |e: &Event| {
                if let EventKind::RetryGaveUp { reason, .. } = e.kind() {
                    seen.lock().unwrap().push(reason);
                }
            })
            .build()
            .unwrap(),
    );
    let client = client(PipelineMiddleware::from(retry));

    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>("a streamed body")]);
    let resp = client
        .post(server.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "the failed answer, as it was");
    assert_eq!(server.hits().len(), 1, "sent once");
    assert_eq!(*reasons.lock().unwrap(), [GiveUp::NotCloneable]);
}

#[tokio::test]
async fn a_slow_response_times_out() {
    let server = Scripted::start().await;
    server.then([Reply::Slow(Duration::from_secs(5))]);
    let timeout = Timeout::new(Timeout::builder().duration(ms(100)).build().unwrap());
    let client = client(PipelineMiddleware::from(timeout.clone()));

    let started = std::time::Instant::now();
    let err = client.get(server.url("/slow")).send().await.unwrap_err();
    assert!(
        err.as_rejected().is_some_and(Rejected::is_timeout),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "did not wait for the server"
    );
    let fast = client.get(server.url("/fast")).send().await.unwrap();
    assert_eq!(fast.status(), 200);
    assert_eq!(timeout.metrics().timed_out, 1);
}

#[tokio::test]
async fn a_custom_order_retries_too_and_sends_a_streamed_body_once() {
    let server = Scripted::start().await;
    server.then([Reply::Status(503, None), Reply::Status(503, None)]);
    let pipeline = Pipeline::builder()
        .retry(retry(3, Backoff::constant(ms(5))))
        .timeout(Timeout::new(
            Timeout::builder()
                .duration(Duration::from_secs(5))
                .build()
                .unwrap(),
        ))
        .build_in_order(&[Stage::Timeout, Stage::Retry])
        .unwrap();
    let client = client(PipelineMiddleware::new(pipeline));

    let resp = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "two 503s retried");
    assert_eq!(server.hits().len(), 3);

    server.then([Reply::Status(503, None)]);
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>("a streamed body")]);
    let resp = client
        .post(server.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "sent once, its failure as it was");
    assert_eq!(server.hits().len(), 4);
}

#[tokio::test]
async fn dropping_the_send_future_gives_the_bulkhead_slot_back() {
    let server = Scripted::start().await;
    server.then([Reply::Slow(Duration::from_secs(5))]);
    let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build().unwrap());
    let client = client(PipelineMiddleware::from(bulkhead.clone()));

    let slow = client.get(server.url("/slow")).send();
    let cut = tokio::time::timeout(ms(150), slow).await;
    assert!(cut.is_err(), "the caller gave up on the slow request");
    let resp = client.get(server.url("/fast")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the dropped attempt's slot was released"
    );
}
