//! A `reqwest::Client` under palisade's layers, against a flaky server it starts itself.
//!
//! ```sh
//! cargo run -p palisade-net --example reqwest_client
//! ```
//!
//! The server (on 127.0.0.1, a free port) answers 503 with `Retry-After` twice, then 200;
//! later it fails three times in a row. Watch the retry honour `Retry-After` (capped), then
//! the breaker open, reject without calling, and close through a probe.
//! (The server is the one `tests/http_reqwest.rs` uses.)

#[path = "../tests/net/support/server.rs"]
mod server;

use std::time::{Duration, Instant};

use palisade::circuit_breaker::CircuitBreaker;
use palisade::http::{StatusClassifier, retry_after};
use palisade::retry::{Backoff, Retry};
use palisade::telemetry::{Event, EventKind};
use palisade::timeout::Timeout;
use palisade::{Error, LiftLayer};
use server::{Reply, Scripted};
use tower::{Service, ServiceBuilder, ServiceExt};

type Answer = Result<reqwest::Response, Error<reqwest::Error>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Scripted::start().await;
    let started = Instant::now();
    let log = move |e: &Event| match e.kind() {
        EventKind::RetryScheduled { attempt, delay } => {
            println!(
                "  [{:>4} ms] retry: attempt {attempt} in {delay:?}",
                started.elapsed().as_millis()
            )
        }
        EventKind::StateChanged { from, to } => {
            println!(
                "  [{:>4} ms] breaker: {from:?} -> {to:?}",
                started.elapsed().as_millis()
            )
        }
        _ => {}
    };

    // One classifier for both: 5xx, 408 and 429 are failures.
    let by_status =
        StatusClassifier::new().with_status(|r: &reqwest::Response| r.status().as_u16());
    let retry = Retry::new(
        Retry::builder()
            .max_attempts(3)
            .backoff(Backoff::exponential(
                Duration::from_millis(50),
                2.0,
                Duration::from_secs(1),
            ))
            .max_hint(Duration::from_millis(300)) // Retry-After asks for 1 s; we wait 300 ms at most
            .listener(log)
            .build()?,
    );
    let breaker = CircuitBreaker::new(
        CircuitBreaker::builder()
            .consecutive_failures(3)
            .break_duration(Duration::from_millis(500))
            .listener(log)
            .build()?,
    );
    let timeout = Timeout::new(
        Timeout::builder()
            .duration(Duration::from_secs(2))
            .build()?,
    );

    let mut client = ServiceBuilder::new()
        .layer(
            retry
                .layer()
                .classify(by_status)
                .hint(|a: &Answer| a.as_ref().ok().and_then(|r| retry_after(r.headers())))
                // reqwest re-sends through try_clone; a streamed body would be sent once.
                .cloner(|r: &reqwest::Request| r.try_clone()),
        )
        .layer(breaker.layer().classify(by_status))
        .layer(timeout.layer())
        .layer(LiftLayer)
        .service(reqwest::Client::new());
    let url = server.url("/api");
    let mut get = async || -> Answer {
        let req = reqwest::Client::new()
            .get(&url)
            .build()
            .map_err(Error::Inner)?;
        client.ready().await?.call(req).await
    };

    println!("1. the server answers 503 + Retry-After: 1, twice:");
    server.then([Reply::Status(503, Some("1")), Reply::Status(503, Some("1"))]);
    let resp = get().await?;
    println!(
        "   -> {} after {} requests\n",
        resp.status(),
        server.hits().len()
    );

    println!("2. the server fails three times in a row:");
    server.then(std::iter::repeat_n(Reply::Status(500, None), 3));
    let resp = get().await?;
    println!(
        "   -> {} after 3 attempts; the breaker counted 3 failures",
        resp.status()
    );
    match get().await {
        Err(Error::Rejected(r)) => println!("   -> next call rejected without a request: {r}\n"),
        other => println!("   -> {other:?}\n"),
    }

    println!("3. after the break, a probe goes through:");
    tokio::time::sleep(Duration::from_millis(550)).await;
    let resp = get().await?;
    println!("   -> {}", resp.status());
    println!(
        "\nbreaker now {:?}; {} requests reached the server",
        breaker.state(),
        server.hits().len()
    );
    Ok(())
}
