//! A real tonic `Channel` under the layers, and tonic calls under the closure wrappers,
//! against a real gRPC server on 127.0.0.1 that fails on command with `UNAVAILABLE`.
//! Real time, short durations, generous bounds; the server stops with its test.

#[path = "../support/grpc.rs"]
mod grpc;

use std::time::Duration;

use grpc::{GrpcServer, Trouble};
use palisade::LiftLayer;
use palisade::circuit_breaker::{CircuitBreaker, CircuitState, TripModel};
use palisade::http::GrpcClassifier;
use palisade::retry::{Backoff, Retry};
use palisade::timeout::Timeout;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tower::ServiceBuilder;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn channel(server: &GrpcServer) -> Channel {
    Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn check() -> tonic::Request<HealthCheckRequest> {
    tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    })
}

type Checked = Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status>;

fn code_of(r: &Checked) -> i32 {
    r.as_ref().map_or_else(|s| s.code() as i32, |_| 0)
}

/// A health check under `retry`, which reads the code from tonic's `Status`.
async fn checked_with_retry(retry: &Retry, client: &HealthClient<Channel>) -> Checked {
    retry
        .run(|| {
            let mut client = client.clone();
            async move { client.check(check()).await }
        })
        .classify(GrpcClassifier::new().with_code(code_of))
        .await
}

#[tokio::test]
async fn unavailable_is_retried_around_the_client_until_it_serves() {
    let server = GrpcServer::start().await;
    server.fail_next([Code::Unavailable, Code::Unavailable]);
    let client = HealthClient::new(channel(&server).await);
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(4)
            .backoff(Backoff::constant(ms(10)))
            .build()
            .unwrap(),
    );

    let answer = checked_with_retry(&retry, &client).await;
    let status = answer
        .expect("served on the third attempt")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    assert_eq!(server.hits(), 3);
    assert_eq!(retry.metrics().retries, 2);

    // A caller error is an answer, not a reason to retry.
    server.fail_next([Code::InvalidArgument]);
    let answer = checked_with_retry(&retry, &client).await;
    assert_eq!(answer.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(server.hits(), 4, "not retried");
}

#[tokio::test]
async fn a_breaker_over_the_channel_opens_on_unavailable_and_recovers_through_a_probe() {
    let server = GrpcServer::start().await;
    server.fail_next([Code::Unavailable; 3]);
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(3)
            .break_duration(ms(300))
            .build()
            .unwrap(),
    );
    let stack = ServiceBuilder::new()
        .layer(breaker.layer().classify(GrpcClassifier::new()))
        .layer(LiftLayer)
        .service(channel(&server).await);
    let mut client = HealthClient::new(stack);

    for _ in 0..3 {
        let status = client.check(check()).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unavailable,
            "read from the trailers-only answer"
        );
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    let rejected = client.check(check()).await.unwrap_err();
    assert!(
        rejected.message().contains("circuit open"),
        "tonic carries the rejection: {rejected:?}"
    );
    assert_eq!(server.hits(), 3, "an open breaker does not call the server");

    tokio::time::sleep(ms(350)).await;
    let probe = client.check(check()).await.expect("the probe is served");
    assert_eq!(probe.into_inner().status, ServingStatus::Serving as i32);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(server.hits(), 4);
}

/// A proxy's bare 503 (no `grpc-status`) is UNAVAILABLE to tonic; the breaker over the
/// channel must count it as the caller sees it. It counted it a success and never opened.
#[tokio::test]
async fn a_proxys_bare_503_without_grpc_status_opens_the_breaker() {
    let server = GrpcServer::start().await;
    server.then([Trouble::Http(503); 3]);
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(3)
            .break_duration(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let stack = ServiceBuilder::new()
        .layer(breaker.layer().classify(GrpcClassifier::new()))
        .layer(LiftLayer)
        .service(channel(&server).await);
    let mut client = HealthClient::new(stack);

    for _ in 0..3 {
        let status = client.check(check()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "tonic maps the 503");
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn a_slow_call_is_cut_by_the_timeout_and_the_channel_keeps_serving() {
    let server = GrpcServer::start().await;
    let timeout = Timeout::new(Timeout::builder().duration(ms(100)).build().unwrap());
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
    let stack = ServiceBuilder::new()
        .layer(breaker.layer().classify(GrpcClassifier::new()))
        .layer(timeout.layer())
        .layer(LiftLayer)
        .service(channel(&server).await);
    let mut client = HealthClient::new(stack);

    server.then([Trouble::Delay(Duration::from_secs(5))]);
    let cut = client.check(check()).await.unwrap_err();
    assert!(cut.message().contains("timed out"), "{cut:?}");
    assert_eq!(timeout.metrics().timed_out, 1);

    let served = client
        .check(check())
        .await
        .expect("the channel still serves");
    assert_eq!(served.into_inner().status, ServingStatus::Serving as i32);
    assert_eq!(server.hits(), 2);
    let m = breaker.metrics();
    assert_eq!(
        (m.calls, m.failures),
        (2, 1),
        "the cut call counted once, as a failure"
    );
}
