//! A real `reqwest::Client` under the layers, against real servers on 127.0.0.1.
//!
//! Real sockets race paused time, so these tests run on real time with short durations and
//! generous bounds; every loop is bounded and every server stops when its test ends.

#[path = "../support/server.rs"]
mod server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::circuit_breaker::{CircuitBreaker, CircuitState, TripModel};
use palisade::http::{StatusClassifier, WithStatus, retry_after};
use palisade::retry::{Backoff, GiveUp, Retry};
use palisade::telemetry::{Event, EventKind};
use palisade::timeout::Timeout;
use palisade::{Error, LiftLayer, Rejected};
use server::{Dropping, Reply, Scripted};
use tower::{Service, ServiceBuilder, ServiceExt};

type Answer = Result<reqwest::Response, Error<reqwest::Error>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn by_status() -> WithStatus<fn(&reqwest::Response) -> u16> {
    StatusClassifier::new().with_status(|r: &reqwest::Response| r.status().as_u16())
}

fn hint(answer: &Answer) -> Option<Duration> {
    answer.as_ref().ok().and_then(|r| retry_after(r.headers()))
}

async fn send<S>(svc: &mut S, req: reqwest::Request) -> Answer
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error<reqwest::Error>>,
{
    svc.ready().await?.call(req).await
}

fn get(url: &str) -> reqwest::Request {
    reqwest::Client::new().get(url).build().unwrap()
}

#[tokio::test]
async fn retries_wait_for_retry_after_capped_by_max_hint() {
    let server = Scripted::start().await;
    server.then([Reply::Status(503, Some("1")), Reply::Status(503, Some("1"))]);
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::ZERO))
            .max_hint(ms(200))
            .build()
            .unwrap(),
    );
    let mut client = ServiceBuilder::new()
        .layer(
            retry
                .layer()
                .classify(by_status())
                .hint(hint)
                .cloner(|r: &reqwest::Request| r.try_clone()),
        )
        .layer(LiftLayer)
        .service(reqwest::Client::new());

    let resp = send(&mut client, get(&server.url("/"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let hits = server.hits();
    assert_eq!(hits.len(), 3);
    for pair in hits.windows(2) {
        let gap = pair[1] - pair[0];
        // The backoff alone would not wait at all; Retry-After asked for 1 s; max_hint caps
        // it at 200 ms. The upper bound is loose for a busy machine, but below the 1 s asked.
        assert!(gap >= ms(195) && gap < ms(950), "gap {gap:?}");
    }
    assert_eq!(retry.metrics().retries, 2);
}

#[tokio::test]
async fn breaker_opens_after_the_failures_then_recovers_through_a_probe() {
    let server = Scripted::start().await;
    server.then([
        Reply::Status(500, None),
        Reply::Status(502, None),
        Reply::Status(503, None),
    ]);
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(3)
            .break_duration(ms(300))
            .build()
            .unwrap(),
    );
    let mut client = ServiceBuilder::new()
        .layer(breaker.layer().classify(by_status()))
        .layer(LiftLayer)
        .service(reqwest::Client::new());

    for expected in [500, 502, 503] {
        let resp = send(&mut client, get(&server.url("/"))).await.unwrap();
        assert_eq!(
            resp.status(),
            expected,
            "failures reach the caller as they are"
        );
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let open = match send(&mut client, get(&server.url("/"))).await {
        Err(Error::Rejected(r @ Rejected::CircuitOpen(_))) => r,
        other => panic!("expected CircuitOpen, got {other:?}"),
    };
    assert_eq!(
        server.hits().len(),
        3,
        "an open breaker does not call the server"
    );
    let wait = open
        .retry_after()
        .expect("an open breaker says when it probes");
    // The break starts from the trip's reading rounded up to a millisecond: never shorter
    // than configured, at most 1 ms longer.
    assert!(wait <= ms(301), "{wait:?}");

    tokio::time::sleep(wait + ms(50)).await;
    let probe = send(&mut client, get(&server.url("/"))).await.unwrap();
    assert_eq!(probe.status(), 200);
    assert_eq!(breaker.state(), CircuitState::Closed, "the probe closed it");
    assert_eq!(server.hits().len(), 4);
}

#[tokio::test]
async fn a_slow_response_times_out_and_is_counted_once() {
    let server = Scripted::start().await;
    server.then([Reply::Slow(Duration::from_secs(5))]);
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .trip_model(TripModel::CountWindow {
                size: 10,
                failure_ratio: 1.0,
                minimum_calls: 10,
            })
            .build()
            .unwrap(),
    );
    let timeout = Timeout::new(Timeout::builder().duration(ms(100)).build().unwrap());
    let mut client = ServiceBuilder::new()
        .layer(breaker.layer().classify(by_status()))
        .layer(timeout.layer())
        .layer(LiftLayer)
        .service(reqwest::Client::new());

    let slow = send(&mut client, get(&server.url("/slow"))).await;
    assert!(
        matches!(slow, Err(Error::Rejected(Rejected::Timeout(_)))),
        "{slow:?}"
    );
    let fast = send(&mut client, get(&server.url("/fast"))).await.unwrap();
    assert_eq!(fast.status(), 200);

    let m = breaker.metrics();
    assert_eq!(
        (m.calls, m.failures),
        (2, 1),
        "the timed-out call counted once"
    );
    assert_eq!(timeout.metrics().timed_out, 1);
    assert_eq!(server.hits().len(), 2);
}

#[tokio::test]
async fn dropped_connections_are_retried_then_the_transport_error_comes_out() {
    let server = Dropping::start().await;
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(ms(10)))
            .build()
            .unwrap(),
    );
    let mut client = ServiceBuilder::new()
        .layer(retry.layer().cloner(|r: &reqwest::Request| r.try_clone()))
        .layer(LiftLayer)
        .service(reqwest::Client::new());

    let url = format!("http://{}/", server.addr);
    match send(&mut client, get(&url)).await {
        Err(Error::Inner(e)) => assert!(e.is_request() || e.is_connect(), "{e}"),
        other => panic!("expected the transport error, got {other:?}"),
    }
    assert_eq!(server.accepted(), 3, "three attempts, three connections");
    assert_eq!(retry.metrics().gave_up, 1);
}

#[tokio::test]
async fn a_streaming_body_is_sent_once_and_the_retry_says_why() {
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
    let mut client = ServiceBuilder::new()
        .layer(
            retry
                .layer()
                .classify(by_status())
                .cloner(|r: &reqwest::Request| r.try_clone()),
        )
        .layer(LiftLayer)
        .service(reqwest::Client::new());

    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>("a streamed body")]);
    let req = reqwest::Client::new()
        .post(server.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .build()
        .unwrap();
    assert!(
        req.try_clone().is_none(),
        "a streamed body cannot be re-sent"
    );
    let resp = send(&mut client, req).await.unwrap();
    assert_eq!(resp.status(), 503, "the failed answer, as it was");
    assert_eq!(server.hits().len(), 1, "sent once");
    assert_eq!(*reasons.lock().unwrap(), [GiveUp::NotCloneable]);
}
