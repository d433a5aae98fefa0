//! A tonic client with palisade: a breaker over the `Channel` (a tower layer) and a retry
//! around the calls (a closure), against a gRPC server it starts itself.
//!
//! ```sh
//! cargo run -p palisade-net --example tonic_client
//! ```
//!
//! The server is tonic-health's service on 127.0.0.1 (no protoc needed), behind a layer that
//! answers `UNAVAILABLE` on command (the server `tests/grpc_tonic.rs` uses).

#[path = "../tests/net/support/grpc.rs"]
mod grpc;

use std::time::Duration;

use grpc::GrpcServer;
use palisade::LiftLayer;
use palisade::circuit_breaker::CircuitBreaker;
use palisade::http::GrpcClassifier;
use palisade::retry::{Backoff, Retry};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;

type Checked = Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status>;

/// The serving status's name, as the proto spells it.
fn serving(resp: tonic::Response<tonic_health::pb::HealthCheckResponse>) -> &'static str {
    ServingStatus::try_from(resp.into_inner().status).map_or("?", |s| s.as_str_name())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = GrpcServer::start().await;
    let channel = tonic::transport::Channel::from_shared(server.url())?
        .connect()
        .await?;

    // Layer: the breaker reads grpc-status from trailers-only answers.
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(3)
            .break_duration(Duration::from_millis(300))
            .build()?,
    );
    let stack = ServiceBuilder::new()
        .layer(breaker.layer().classify(GrpcClassifier::new()))
        .layer(LiftLayer)
        .service(channel);
    let client = HealthClient::new(stack);

    // Closure: the retry reads tonic's Status (a gRPC request body cannot be cloned below
    // the client, so retries go around it).
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(20)))
            .build()?,
    );
    let code_of = |r: &Checked| r.as_ref().map_or_else(|s| s.code() as i32, |_| 0);
    let check = || {
        let mut client = client.clone();
        async move {
            let req = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            client.check(req).await
        }
    };

    println!("1. the server answers UNAVAILABLE twice:");
    server.fail_next([Code::Unavailable; 2]);
    let answer = retry
        .run(check)
        .classify(GrpcClassifier::new().with_code(code_of))
        .await;
    println!(
        "   -> {:?} after {} requests",
        answer.map(serving),
        server.hits()
    );

    println!("\n2. then three more times: the retries fail, the breaker opens:");
    server.fail_next([Code::Unavailable; 3]);
    let answer = retry
        .run(check)
        .classify(GrpcClassifier::new().with_code(code_of))
        .await;
    println!("   -> {:?}", answer.map_err(|s| s.code()));
    println!("   breaker: {:?}", breaker.state());
    let answer = check().await;
    println!(
        "   -> next call: {:?} ({} requests so far)",
        answer.map_err(|s| s.message().to_owned()),
        server.hits()
    );

    println!("\n3. after the break, a probe is served and closes it:");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let answer = check().await;
    println!(
        "   -> {:?}; breaker {:?}",
        answer.map(serving),
        breaker.state()
    );
    Ok(())
}
