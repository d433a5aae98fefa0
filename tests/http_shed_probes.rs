//! Adversarial probes of `ShedLayer` through its `Service` face: every rejection kind,
//! sub-second and unknown waits, problem details for hostile policy names, errors that are
//! not rejections, and readiness errors.
#![cfg(all(feature = "http", feature = "tower", feature = "tokio"))]

use std::task::{Context, Poll};
use std::time::Duration;

use palisade::Rejected;
use palisade::error::{
    BulkheadFull, CircuitOpen, Elapsed, FullCause, LimitCause, LinkFailure, RateLimited,
    TooManyKeys, Unavailable,
};
use palisade::http::{ShedBody, ShedLayer};
use tower::{BoxError, Layer, Service, ServiceExt};

type Answer = http::Response<String>;

/// The answer of a shed layer over a service that fails every call with `error`.
async fn shed<E: Into<BoxError> + Clone + Send + 'static>(layer: ShedLayer, error: E) -> Answer {
    let inner = tower::service_fn(move |_req: http::Request<()>| {
        let error = error.clone();
        async move { Err::<Answer, BoxError>(error.into()) }
    });
    layer
        .layer(inner)
        .oneshot(http::Request::new(()))
        .await
        .unwrap()
}

fn retry_after(resp: &Answer) -> Option<&str> {
    resp.headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test(start_paused = true)]
async fn every_rejection_kind_gets_its_status_and_retry_after() {
    let layer = ShedLayer::new();
    let cases: [(Rejected, u16, Option<&str>); 12] = [
        (Elapsed::new("t", Duration::from_secs(3)).into(), 504, None),
        (
            CircuitOpen::new("cb", Duration::from_nanos(1)).into(),
            503,
            Some("1"),
        ),
        (
            CircuitOpen::new("cb", Duration::from_millis(2_001)).into(),
            503,
            Some("3"),
        ),
        (CircuitOpen::isolated("cb").into(), 503, Some("1")),
        (
            BulkheadFull::new("b", 1, FullCause::WaitTimedOut).into(),
            503,
            Some("1"),
        ),
        (
            BulkheadFull::new("b", 1, FullCause::QueueFull)
                .for_key()
                .into(),
            429,
            Some("1"),
        ),
        (
            RateLimited::new("r", LimitCause::OverRate, Some(Duration::from_nanos(1))).into(),
            429,
            Some("1"),
        ),
        (
            RateLimited::new("r", LimitCause::OverRate, None).into(),
            429,
            Some("1"),
        ),
        (
            RateLimited::new(
                "r",
                LimitCause::CostAboveBurst,
                Some(Duration::from_secs(5)),
            )
            .into(),
            429,
            None,
        ),
        (TooManyKeys::new("k", 10).into(), 503, Some("1")),
        (
            Unavailable::new(
                "redis",
                LinkFailure::BreakerOpen,
                Some(Duration::from_millis(7_500)),
            )
            .into(),
            503,
            Some("8"),
        ),
        (
            Unavailable::new("redis", LinkFailure::Connection, None).into(),
            503,
            Some("1"),
        ),
    ];
    for (rejected, status, after) in cases {
        let resp = shed(layer, rejected).await;
        assert_eq!(resp.status(), status, "{rejected}");
        assert_eq!(retry_after(&resp), after, "{rejected}");
    }
    // A default that is not whole seconds rounds up too, and never says 0 for a wait.
    let layer = ShedLayer::new().retry_after(Duration::from_millis(1));
    let resp = shed(layer, Rejected::from(TooManyKeys::new("k", 10))).await;
    assert_eq!(retry_after(&resp), Some("1"));
}

#[tokio::test(start_paused = true)]
async fn problem_details_stay_valid_json_for_any_policy_name() {
    const NAME: &str = "q\"b\\s/\u{0}\u{1}\t\n\r\u{1f}\u{7f}\u{2028}\u{2029}é😀</script>";
    let rejected = Rejected::from(CircuitOpen::isolated(NAME));
    let resp = shed(ShedLayer::new().body(ShedBody::ProblemJson), rejected).await;
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let parsed: serde_json::Value = serde_json::from_str(resp.body()).expect("valid JSON");
    assert_eq!(parsed["detail"], rejected.to_string());
    assert_eq!(parsed["status"], 503);
    let object = parsed.as_object().unwrap();
    assert_eq!(object.len(), 4, "type, title, status, detail: {object:?}");

    // A status with no canonical reason still gives valid problem details.
    let odd = http::StatusCode::from_u16(599).unwrap();
    let resp = shed(
        ShedLayer::new()
            .overload_status(odd)
            .body(ShedBody::ProblemJson),
        rejected,
    )
    .await;
    assert_eq!(resp.status(), 599);
    let parsed: serde_json::Value = serde_json::from_str(resp.body()).expect("valid JSON");
    assert_eq!(parsed["status"], 599);
}

#[derive(Debug, Clone)]
struct NotARejection;

impl std::fmt::Display for NotARejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("db \"down\"")
    }
}

impl std::error::Error for NotARejection {}

#[tokio::test(start_paused = true)]
async fn an_error_that_is_not_a_rejection_is_a_500_without_its_message() {
    for body in [ShedBody::Empty, ShedBody::Text, ShedBody::ProblemJson] {
        let resp = shed(ShedLayer::new().body(body), NotARejection).await;
        assert_eq!(resp.status(), 500);
        assert_eq!(retry_after(&resp), None);
        assert!(
            !resp.body().contains("down"),
            "an inner error's message is not shown to clients: {:?}",
            resp.body()
        );
    }
}

/// Fails its first readiness with `error`, then serves.
struct FailsReadyOnce(Option<BoxError>);

impl Service<http::Request<()>> for FailsReadyOnce {
    type Response = Answer;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Answer, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.0.take() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(String::from("served"))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_readiness_error_is_answered_once_and_the_service_serves_again() {
    for (error, status) in [
        (
            BoxError::from(Rejected::from(BulkheadFull::new(
                "b",
                1,
                FullCause::QueueFull,
            ))),
            503,
        ),
        (BoxError::from(NotARejection), 500),
    ] {
        let mut svc = ShedLayer::new().layer(FailsReadyOnce(Some(error)));
        let first = svc
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        assert_eq!(first.status(), status);
        let second = svc
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        assert_eq!(second.status(), 200);
        assert_eq!(second.body(), "served");
    }
}
